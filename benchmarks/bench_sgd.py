"""asv benchmarks for the fused batched 1-D SGD trainer (bigstep.train_sgd).

The paper's 1-D setting (Figures 1, 2, 5): n = 20 training points x ~ N(0, 1) (seed 0),
(mu, sigma) = bigstep.noise_schedule(0.05), practical network (w1 ~ N(0, 1) trained, b = 0),
batch B = 50, learning rate 0.01 (no divergence), width m in {100, 1000}, R in {1, 8}
networks (seeds 0..R-1) trained in one fused call, no records (the kernel alone, plus the
O(R m) set-up).  ``time_train_sgd`` is the wall time of ``STEPS`` steps;
``track_network_steps_per_second`` the rate R x steps / best time.  A backend that cannot
run here is skipped in ``setup``.
"""

from __future__ import annotations

import numpy as np

import bigstep

try:
    from . import _common  # asv imports the suite as a package
except ImportError:  # imported as a plain module
    import _common

N = 20
T = 0.05
BATCH = 50
LR = 0.01
BACKENDS = ["cpp", "numba"]


def sgd_inputs(n: int = N, seed: int = 0) -> tuple[np.ndarray, float, float]:
    """(x, mu, sigma): x ~ N(0, 1) of shape (n,) (numpy Generator ``seed``), noise_schedule(T)."""
    mu, sigma = bigstep.noise_schedule(T)
    return np.random.default_rng(seed).standard_normal(n), float(mu), float(sigma)


def steps_for(m: int, backend: str) -> int:
    """Steps per timed call: about 0.1-0.5 s on one core."""
    per_step = m * BATCH * (2e-10 if backend == "cpp" else 4e-9)
    return int(max(50, min(5_000, 0.2 / per_step)))


def run(x, mu, sigma, m, networks, steps, backend):
    return bigstep.train_sgd(x, mu, sigma, lr=LR, seed=list(range(networks)), steps=steps, batch_size=BATCH, width=m,
                             record=(), record_every=steps, backend=backend)


class TrainSGD:
    """train_sgd(x, mu, sigma, lr=0.01, seed=range(R), width=m, batch_size=50), no records."""

    params = ([100, 1_000], [1, 8], BACKENDS)
    param_names = ["m", "networks", "backend"]
    timeout = 300

    def setup_cache(self):
        return sgd_inputs()

    def setup(self, data, m, networks, backend):
        x, mu, sigma = data
        try:
            run(x, mu, sigma, m, 1, 2, backend)  # compile / load
        except Exception as exc:  # backend not built or not available here
            raise NotImplementedError(f"backend {backend!r}: {type(exc).__name__}: {exc}") from exc
        self.steps = steps_for(m, backend)

    def time_train_sgd(self, data, m, networks, backend):
        run(*data, m, networks, self.steps, backend)

    def track_network_steps_per_second(self, data, m, networks, backend):
        t = _common.timed(lambda: run(*data, m, networks, self.steps, backend), repeat=3, warmup=False,
                          max_seconds=2.0)
        return networks * self.steps / t.best

    track_network_steps_per_second.unit = "network-steps/s"
