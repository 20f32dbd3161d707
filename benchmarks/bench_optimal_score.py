"""asv benchmarks for the empirical optimal score s* (bigstep.optimal_score).

One class per data shape: 1-D data (x of shape (n,)) and d-D data (x of shape (n, d)).
Each runs n queries against n data points (n^2 pairs), with x ~ N(0, I), y ~ N(0, 1.44 I),
mu = 0.9, at sigma = 1 (every data point matters) and sigma = 1e-3 (only neighbours
matter).  ``time_optimal_score`` is the wall time of one call; ``track_pairs_per_second``
the rate, n^2 / (best of up to 3 calls), in pairs/s.
"""

from __future__ import annotations

import bigstep

try:
    from . import _common  # asv imports the suite as a package
except ImportError:  # imported as a plain module
    import _common

MU = 0.9
SIGMAS = [1.0, 1e-3]
BACKENDS = ["cpp", "numba"]
DTYPES = ["float32", "float64"]


class _OptimalScoreBase:
    """Shared setup/time/track.  Subclasses set ``params``, ``param_names``, ``dims`` and their
    own ``setup_cache`` (asv keys the cache by the function's source, so an inherited one
    would be shared between the classes)."""

    timeout = 180
    dims: int | None = None  # None: 1-D data

    def setup(self, data, dtype, n, sigma, backend):
        reason = _common.bigstep_backend_error(backend, self.dims)
        if reason is not None:
            raise NotImplementedError(f"backend {backend!r} cannot run s* here: {reason}")
        x, y = data[n]
        self.x, self.y = x.astype(dtype), y.astype(dtype)
        self.pairs = float(n) * n
        bigstep.optimal_score(self.y[:4], self.x, MU, sigma, backend=backend)  # compile / load

    def time_optimal_score(self, data, dtype, n, sigma, backend):
        bigstep.optimal_score(self.y, self.x, MU, sigma, backend=backend)

    def track_pairs_per_second(self, data, dtype, n, sigma, backend):
        run = lambda: bigstep.optimal_score(self.y, self.x, MU, sigma, backend=backend)  # noqa: E731
        return self.pairs / _common.timed(run, repeat=3, warmup=False, max_seconds=1.0).best

    track_pairs_per_second.unit = "pairs/s"


class OptimalScore1D(_OptimalScoreBase):
    """s* for 1-D data: x (n,), y (n,)."""

    params = (DTYPES, [1_000, 10_000], SIGMAS, BACKENDS)
    param_names = ["dtype", "n", "sigma", "backend"]
    dims = None

    def setup_cache(self):
        return {n: _common.score_inputs(n, n, None) for n in self.params[1]}


class OptimalScore64D(_OptimalScoreBase):
    """s* for d = 64 data: x (n, 64), y (n, 64)."""

    params = (DTYPES, [1_000, 4_000], SIGMAS, BACKENDS)
    param_names = ["dtype", "n", "sigma", "backend"]
    dims = 64

    def setup_cache(self):
        return {n: _common.score_inputs(n, n, 64) for n in self.params[1]}


class SmallCall:
    """Per-call cost of tiny inputs (n = q = 4, 1-D and d = 3), where the Python layer and
    thread start-up, not the arithmetic, set the time: kernels below ~6.5e4 operations
    run on the calling thread (isa.hpp kParallelWork), as a team costs ~10 us idle and
    up to ~0.2 ms while other processes hold the cores."""

    params = (BACKENDS,)
    param_names = ["backend"]

    def setup(self, backend):
        reason = _common.bigstep_backend_error(backend, 3)
        if reason is not None:
            raise NotImplementedError(f"backend {backend!r} cannot run s* here: {reason}")
        self.x1, self.y1 = _common.score_inputs(4, 4, None)
        self.xd, self.yd = _common.score_inputs(4, 4, 3)
        bigstep.optimal_score(self.y1, self.x1, MU, 0.5, backend=backend)
        bigstep.optimal_score(self.yd, self.xd, MU, 0.5, backend=backend)

    def time_small_1d(self, backend):
        bigstep.optimal_score(self.y1, self.x1, MU, 0.5, backend=backend)

    def time_small_nd(self, backend):
        bigstep.optimal_score(self.yd, self.xd, MU, 0.5, backend=backend)
