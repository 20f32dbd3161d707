"""asv benchmarks for reverse-diffusion sampling (bigstep.sample_reverse).

``SampleReverseEmpirical``: the fused Euler-Maruyama loop with the empirical optimal score
s* of n training points x ~ N(0, I) in d dimensions (n in {10, 1000}, d in {2, 64}),
10,000 particles.  ``SampleReverseScores``: the three built-in score kinds (s*, fitted
Gaussian, time-conditional ReLU net of width 128) at n = 10, d = 2.  ``time_*`` is the wall
time of one call; ``track_particle_steps_per_second`` the rate particles x steps / best time.
Backends: ``cpp`` (the fused C++ loop, bigstep._core) and ``numba``; one that cannot run
here is skipped (NotImplementedError in ``setup``).
"""

from __future__ import annotations

import numpy as np

import bigstep

try:
    from . import _common  # asv imports the suite as a package
except ImportError:  # imported as a plain module
    import _common

PARTICLES = 10_000
BACKENDS = ["cpp", "numba"]


def _skip_unavailable(backend):
    from bigstep import _backend

    reason = _backend.why_unavailable(backend)
    if reason is not None:
        raise NotImplementedError(f"backend {backend!r}: {reason}")


def _steps(n, d):
    return 100 if n * d <= 2_000 else 10  # the large cases: a few seconds per call


def _run(score, d, steps, backend):
    return bigstep.sample_reverse(score, PARTICLES, d, n_steps=steps, seed=0, backend=backend)


class SampleReverseEmpirical:
    """sample_reverse(EmpiricalScore(x), 10,000, d): s* of n points in d dimensions."""

    params = ([10, 1_000], [2, 64], BACKENDS)
    param_names = ["n", "d", "backend"]
    timeout = 300

    def setup_cache(self):
        return {(n, d): _common.score_inputs(n, 1, d)[0] for n in self.params[0] for d in self.params[1]}

    def setup(self, data, n, d, backend):
        _skip_unavailable(backend)
        self.score = bigstep.EmpiricalScore(data[(n, d)])
        self.steps = _steps(n, d)
        bigstep.sample_reverse(self.score, 64, d, n_steps=2, backend=backend)  # compile / load

    def time_sample_reverse(self, data, n, d, backend):
        _run(self.score, d, self.steps, backend)

    def track_particle_steps_per_second(self, data, n, d, backend):
        t = _common.timed(lambda: _run(self.score, d, self.steps, backend), repeat=3, warmup=False, max_seconds=2.0)
        return PARTICLES * self.steps / t.best

    track_particle_steps_per_second.unit = "particle-steps/s"


class SampleReverseScores:
    """The built-in score kinds at n = 10, d = 2, 10,000 particles, 100 steps."""

    params = (["empirical", "gaussian", "relu128"], BACKENDS)
    param_names = ["score", "backend"]

    def setup(self, kind, backend):
        _skip_unavailable(backend)
        rng = np.random.default_rng(0)
        x = 2.0 * rng.normal(size=(10, 2))
        if kind == "empirical":
            self.score = bigstep.EmpiricalScore(x)
        elif kind == "gaussian":
            self.score = bigstep.GaussianScore.fit(x)
        else:
            m = 128
            self.score = bigstep.TimeReLUScore(rng.normal(0, 1 / np.sqrt(3), (m, 3)), np.zeros(m),
                                               rng.normal(size=(2, m)))
        bigstep.sample_reverse(self.score, 64, 2, n_steps=2, backend=backend)

    def time_sample_reverse(self, kind, backend):
        _run(self.score, 2, 100, backend)

    def track_particle_steps_per_second(self, kind, backend):
        t = _common.timed(lambda: _run(self.score, 2, 100, backend), repeat=3, warmup=False, max_seconds=2.0)
        return PARTICLES * 100 / t.best

    track_particle_steps_per_second.unit = "particle-steps/s"
