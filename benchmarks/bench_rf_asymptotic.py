"""asv benchmarks for the d -> infinity limit of random-features DSM (bigstep.rf.asymptotic_errors).

- ``PhaseDiagram``: the full 100 x 100 grid of (psi_n, psi_p), log-spaced over [0.1, 10], relu,
  t = 0.05, lam = 1e-3, for n_noise = 1 (fixed point kappa) and n_noise = inf (fixed point tau);
  ``track_points_per_second``: grid points per second.
"""

from __future__ import annotations

import math

import numpy as np

N_GRID = 100


class PhaseDiagram:
    params = (["1", "inf"],)
    param_names = ["n_noise"]
    timeout = 120

    def setup(self, n_noise):
        from bigstep import rf

        self.rf = rf
        self.m = 1 if n_noise == "1" else math.inf
        psi = np.geomspace(0.1, 10.0, N_GRID)
        self.psi_n, self.psi_p = psi[:, None], psi[None, :]
        rf.asymptotic_errors(1.0, 1.0, 0.05, lam=1e-3, n_noise=self.m)  # imports, Hermite constants

    def call(self):
        return self.rf.asymptotic_errors(self.psi_n, self.psi_p, 0.05, lam=1e-3, n_noise=self.m)

    def time_phase_diagram(self, n_noise):
        self.call()

    def track_points_per_second(self, n_noise):
        import time

        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            self.call()
            best = min(best, time.perf_counter() - t0)
        return N_GRID * N_GRID / best

    track_points_per_second.unit = "points/s"
