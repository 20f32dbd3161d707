"""asv benchmarks for the exact DSM risk of 1-D two-layer ReLU networks (bigstep.relu_risk).

All at n = 20 training points x ~ N(0, 1) (seed 0), (mu, sigma) = bigstep.noise_schedule(0.05)
(mu = 0.951, sigma = 0.308), width m in {100, 1000, 10000}, w1 in {+1, -1}, w2 ~ N(0, 1),
biases uniform in [-3, 3] (kinks spread over the data; see :func:`relu_inputs`).

- ``ReLURisk``: the risk R_n(theta) (``time_risk``) and its rate in (data point, neuron)
  pairs per second (``track_pairs_per_second``, n m / best time).
- ``ReLURiskDerivatives``: the gradient, one Hessian-vector product and the sharpness
  (lambda_max; dense eigensolver up to 1024 parameters, Lanczos on the exact HVP above),
  for wrt="outer_bias" (theta = (w2, b), 2m) and wrt="all" (theta = (w1, w2, b), 3m).
- ``ReLURiskHessian``: the dense exact Hessian (``time_hessian``) and its rate in entries
  per second (``track_entries_per_second``, P^2 / best time).  Skipped at m = 10,000:
  its output alone would be (2m)^2 = 4e8 doubles = 3.2 GB (7.2 GB for wrt="all").

Each call includes the O(n m) preparation (sorting the kinks, the truncated Gaussian
moments), as a user's call does.  A backend that cannot run here (cpp before its kernels
exist, numba not installed) is skipped in ``setup`` with the reason.
"""

from __future__ import annotations

import functools

import numpy as np

import bigstep

try:
    from . import _common  # asv imports the suite as a package
except ImportError:  # imported as a plain module
    import _common

N = 20
T = 0.05  # (mu, sigma) = noise_schedule(T)
SIZES = [100, 1_000, 10_000]
BACKENDS = ["cpp", "numba"]
WRTS = ["outer_bias", "all"]
DENSE_MAX_BYTES = 2**31  # the dense Hessian benchmark is skipped above this output size


def relu_inputs(m: int, n: int = N, seed: int = 0) -> dict:
    """The ReLU-risk benchmarks' inputs: training data x ~ N(0, 1) of shape (n,) (numpy
    Generator ``seed``), a width-m network with w1 uniform in {+1, -1}, w2 ~ N(0, 1) (both from
    ``ReLUNet1D.init(m, seed, inner="sign")``) and biases uniform in [-3, 3] (Generator ``seed + 1``), so that
    the kinks -b/w1 spread over the data, and a direction v ~ N(0, 1) of length 3m
    (Generator ``seed + 2``; its first 2m entries for wrt="outer_bias")."""
    x = np.random.default_rng(seed).standard_normal(n)
    bias = np.random.default_rng(seed + 1).uniform(-3.0, 3.0, m)
    net = bigstep.ReLUNet1D.init(m, seed, inner="sign", bias=bias)
    v = np.random.default_rng(seed + 2).standard_normal(3 * m)
    return {"x": x, "w1": net.W1.copy(), "w2": net.W2.copy(), "b": net.b1.copy(), "v": v}


def noise_level() -> tuple[float, float]:
    mu, sigma = bigstep.noise_schedule(T)
    return float(mu), float(sigma)


@functools.lru_cache(maxsize=None)
def relu_backend_error(backend: str) -> str | None:
    """None if every exact ReLU-risk routine runs with ``backend`` here, else why not."""
    net = bigstep.ReLUNet1D([1.0, -1.0, 0.5], [0.1, 0.2, -0.3], [0.3, -0.2, 1.0])
    x = np.array([-1.0, 0.0, 1.0])
    try:
        for wrt in WRTS:
            bigstep.dsm_risk_hessian(net, x, 0.9, 0.5, wrt=wrt, backend=backend)
            bigstep.dsm_risk_hvp(net, x, 0.9, 0.5, np.ones(len(net.theta(wrt=wrt))), wrt=wrt, backend=backend)
            bigstep.dsm_risk_grad(net, x, 0.9, 0.5, wrt=wrt, backend=backend)
    except Exception as exc:  # missing kernels (AttributeError), missing backend (ValueError), ...
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_backend(backend: str) -> None:
    reason = relu_backend_error(backend)
    if reason is not None:
        raise NotImplementedError(f"backend {backend!r} cannot compute the ReLU risk here: {reason}")


def _net(data: dict) -> bigstep.ReLUNet1D:
    return bigstep.ReLUNet1D(data["w1"], data["b"], data["w2"])


class ReLURisk:
    """The exact risk R_n(theta) at n = 20."""

    params = (SIZES, BACKENDS)
    param_names = ["m", "backend"]
    timeout = 120

    def setup_cache(self):
        return {m: relu_inputs(m) for m in self.params[0]}

    def setup(self, data, m, backend):
        _check_backend(backend)
        self.net, self.x = _net(data[m]), data[m]["x"]
        self.mu, self.sigma = noise_level()
        bigstep.dsm_risk(self.net, self.x, self.mu, self.sigma, backend=backend)  # compile / load

    def time_risk(self, data, m, backend):
        bigstep.dsm_risk(self.net, self.x, self.mu, self.sigma, backend=backend)

    def track_pairs_per_second(self, data, m, backend):
        run = lambda: bigstep.dsm_risk(self.net, self.x, self.mu, self.sigma, backend=backend)  # noqa: E731
        return float(len(self.x)) * m / _common.timed(run, repeat=20, warmup=False, max_seconds=1.0).best

    track_pairs_per_second.unit = "pairs/s"


class ReLURiskDerivatives:
    """Gradient, one Hessian-vector product and the sharpness at n = 20."""

    params = (SIZES, WRTS, BACKENDS)
    param_names = ["m", "wrt", "backend"]
    timeout = 180

    def setup_cache(self):
        return {m: relu_inputs(m) for m in self.params[0]}

    def setup(self, data, m, wrt, backend):
        _check_backend(backend)
        self.net, self.x = _net(data[m]), data[m]["x"]
        self.mu, self.sigma = noise_level()
        self.v = data[m]["v"][:(2 if wrt == "outer_bias" else 3) * m]
        bigstep.dsm_risk_hvp(self.net, self.x, self.mu, self.sigma, self.v, wrt=wrt, backend=backend)

    def time_grad(self, data, m, wrt, backend):
        bigstep.dsm_risk_grad(self.net, self.x, self.mu, self.sigma, wrt=wrt, backend=backend)

    def time_hvp(self, data, m, wrt, backend):
        bigstep.dsm_risk_hvp(self.net, self.x, self.mu, self.sigma, self.v, wrt=wrt, backend=backend)

    def time_sharpness(self, data, m, wrt, backend):
        bigstep.sharpness(self.net, self.x, self.mu, self.sigma, wrt=wrt, backend=backend)


class ReLURiskHessian:
    """The dense exact Hessian at n = 20; skipped where its output would exceed 2 GiB
    (m = 10,000: 3.2 GB for outer_bias, 7.2 GB for all)."""

    params = (SIZES, WRTS, BACKENDS)
    param_names = ["m", "wrt", "backend"]
    timeout = 180

    def setup_cache(self):
        return {m: relu_inputs(m) for m in self.params[0]}

    def setup(self, data, m, wrt, backend):
        P = (2 if wrt == "outer_bias" else 3) * m
        if 8 * P * P > DENSE_MAX_BYTES:
            raise NotImplementedError(f"dense Hessian at m={m}, wrt={wrt!r} would be {P}^2 doubles = "
                                      f"{8 * P * P / 1e9:.1f} GB; skipped (use dsm_risk_hvp / sharpness)")
        _check_backend(backend)
        self.net, self.x = _net(data[m]), data[m]["x"]
        self.mu, self.sigma = noise_level()
        self.entries = float(P) * P
        bigstep.dsm_risk_hessian(self.net, self.x, self.mu, self.sigma, wrt=wrt, backend=backend)

    def time_hessian(self, data, m, wrt, backend):
        bigstep.dsm_risk_hessian(self.net, self.x, self.mu, self.sigma, wrt=wrt, backend=backend)

    def track_entries_per_second(self, data, m, wrt, backend):
        run = lambda: bigstep.dsm_risk_hessian(self.net, self.x, self.mu, self.sigma,  # noqa: E731
                                               wrt=wrt, backend=backend)
        return self.entries / _common.timed(run, repeat=5, warmup=False, max_seconds=2.0).best

    track_entries_per_second.unit = "entries/s"
