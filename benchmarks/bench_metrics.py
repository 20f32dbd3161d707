"""asv benchmarks for the metrics family (bigstep.mmd2, bigstep.nearest_neighbors).

- ``MMD2``: biased squared MMD (Gaussian kernel, h = 1) between two samples of n points,
  a ~ N(0, I) and b ~ N(0.1, 1.21 I), in d = 2 and d = 64.  ``track_pairs_per_second``:
  kernel values evaluated per second, 2 n^2 (n^2/2 for each of the aa and bb triangles, n^2
  for ab) over the best of up to 3 calls.
- ``NearestNeighbors``: the 2 nearest of n training points for n samples (the memorization
  ratio's work), d = 2 and d = 64; ``track_pairs_per_second``: n^2 distances per second.
"""

from __future__ import annotations

import numpy as np

import bigstep

try:
    from . import _common  # asv imports the suite as a package
except ImportError:  # imported as a plain module
    import _common

BACKENDS = ["cpp", "numba"]
DTYPES = ["float32", "float64"]
DIMS = [2, 64]


def _samples(n: int, d: int):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)), 1.1 * rng.standard_normal((n, d)) + 0.1


class _MetricsBase:
    """Shared sizes, data and rates; subclasses give call(a, b, backend) and pairs(n)."""

    timeout = 180
    params = (DTYPES, [2_000, 10_000], DIMS, BACKENDS)
    param_names = ["dtype", "n", "d", "backend"]

    def setup_cache(self):
        return {(n, d): _samples(n, d) for n in self.params[1] for d in self.params[2]}

    def setup(self, data, dtype, n, d, backend):
        reason = _common.bigstep_backend_error(backend)
        if reason is not None:
            raise NotImplementedError(f"backend {backend!r} cannot run here: {reason}")
        a, b = data[(n, d)]
        self.a, self.b = a.astype(dtype), b.astype(dtype)
        self.call(self.a[:8], self.b[:8], backend)  # compile / load

    def time_call(self, data, dtype, n, d, backend):
        self.call(self.a, self.b, backend)

    def track_pairs_per_second(self, data, dtype, n, d, backend):
        run = lambda: self.call(self.a, self.b, backend)  # noqa: E731
        return self.pairs(n) / _common.timed(run, repeat=3, warmup=False, max_seconds=1.0).best

    track_pairs_per_second.unit = "pairs/s"


class MMD2(_MetricsBase):
    """bigstep.mmd2(a, b) for a, b of shape (n, d)."""

    @staticmethod
    def call(a, b, backend):
        return bigstep.mmd2(a, b, bandwidth=1.0, backend=backend)

    @staticmethod
    def pairs(n):
        return 2.0 * n * n


class NearestNeighbors(_MetricsBase):
    """bigstep.nearest_neighbors(samples, train, k=2) for n samples and n training points."""

    @staticmethod
    def call(a, b, backend):
        return bigstep.nearest_neighbors(a, b, k=2, backend=backend)

    @staticmethod
    def pairs(n):
        return float(n) * n
