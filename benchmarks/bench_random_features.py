"""asv benchmarks for the random-features family (bigstep.rf).

- ``Gram``: the streamed feature Gram kernel (K = sum f f^T, R = sum f xi^T over n m noisy
  samples, noise generated inside) for relu features, d = 100, n = 200, m = 8 (N = 1,600),
  p in {256, 1024}; ``track_flops``: (N p^2 / 2 + 2 N p d) multiply-adds x 2 per second.
- ``LearningCurve``: rf.learning_curve at d = 50, psi_n = 4, 10 psi_p up to 8, m in {1, 8}.
"""

from __future__ import annotations

import numpy as np

import bigstep

try:
    from . import _common
except ImportError:
    import _common

BACKENDS = ["cpp", "numba"]


class Gram:
    params = ([256, 1024], BACKENDS)
    param_names = ["p", "backend"]
    timeout = 180
    d, n, m = 100, 200, 8

    def setup(self, p, backend):
        reason = _common.bigstep_backend_error(backend)
        if reason is not None:
            raise NotImplementedError(f"backend {backend!r} cannot run here: {reason}")
        from bigstep.rf import _model

        self.impl = _model.impl(backend)
        self.x = bigstep.gaussian_noise(0, (self.n, self.d), stream=8)
        self.w = bigstep.gaussian_noise(0, (p, self.d), stream=6)
        self.impl.rf_gram(self.x[:4], self.w[:8], 0.6, 0.8, 1, 0, 7, 0)  # compile / load

    def call(self):
        return self.impl.rf_gram(self.x, self.w, 0.6, 0.8, self.m, 0, 7, 0)

    def time_gram(self, p, backend):
        self.call()

    def track_flops(self, p, backend):
        N = self.n * self.m
        work = 2.0 * (N * p * p / 2 + 2 * N * p * self.d)
        return work / _common.timed(self.call, repeat=3, warmup=False, max_seconds=1.0).best

    track_flops.unit = "flop/s"


class LearningCurve:
    params = (BACKENDS,)
    param_names = ["backend"]
    timeout = 300

    def setup(self, backend):
        reason = _common.bigstep_backend_error(backend)
        if reason is not None:
            raise NotImplementedError(f"backend {backend!r} cannot run here: {reason}")
        from bigstep import rf

        self.rf = rf
        rf.learning_curve(8, 1.0, [1.0], 0.5, n_noise=[1], backend=backend)

    def time_learning_curve(self, backend):
        self.rf.learning_curve(50, 4.0, np.linspace(0.8, 8, 10), 0.5, n_noise=[1, 8], rho="relu", lam=1e-3, seed=0,
                               backend=backend)
