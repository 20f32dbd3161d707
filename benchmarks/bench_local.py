"""asv benchmarks for the local and equivariant local denoisers (bigstep.local).

Queries y = mu x_i + sigma xi (noised training images) against n training images of
standard normal pixels, mu = 0.9, sigma = 0.5, zero padding.  ``time_posterior_mean`` is
the wall time of one call; ``track_pairs_per_second`` the rate in (query pixel, training
term) pairs per second: q H W n for the local machine, q (H W)^2 n for the equivariant one.
"""

from __future__ import annotations

import numpy as np

import bigstep

try:
    from . import _common  # asv imports the suite as a package
except ImportError:  # imported as a plain module
    import _common

MU, SIGMA = 0.9, 0.5
BACKENDS = ["cpp", "numba"]
DTYPES = ["float32", "float64"]


def _inputs(n: int, q: int, shape: tuple, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + shape)
    y = MU * x[rng.integers(0, n, q)] + SIGMA * rng.standard_normal((q,) + shape)
    return x, y


def _backend_error(backend: str) -> str | None:
    from bigstep import _backend

    return None if backend in _backend.backends("local") else f"no local kernels on {backend!r} here"


class _LocalBase:
    """Shared setup/time/track; subclasses set params, the sizes and their own setup_cache
    (asv keys the cache by the function's source)."""

    timeout = 300
    equivariant = False
    shape = (8, 8, 1)
    q = 64
    n = 1797

    def setup(self, data, dtype, patch, backend):
        reason = _backend_error(backend)
        if reason is not None:
            raise NotImplementedError(reason)
        x, y = data
        self.x, self.y = x.astype(dtype), y.astype(dtype)
        hw = self.shape[0] * self.shape[1]
        self.pairs = float(self.q) * hw * self.n * (hw if self.equivariant else 1)
        self._call(self.y[:1], self.x[:16], patch, backend)  # compile / load

    def _call(self, y, x, patch, backend):
        return bigstep.local.posterior_mean(y, x, MU, SIGMA, patch=patch, equivariant=self.equivariant,
                                            backend=backend)

    def time_posterior_mean(self, data, dtype, patch, backend):
        self._call(self.y, self.x, patch, backend)

    def track_pairs_per_second(self, data, dtype, patch, backend):
        run = lambda: self._call(self.y, self.x, patch, backend)  # noqa: E731
        return self.pairs / _common.timed(run, repeat=3, warmup=False, max_seconds=1.0).best

    track_pairs_per_second.unit = "pairs/s"


class LocalDigitsSize(_LocalBase):
    """Local machine, 8 x 8 images (the digits' size), n = 1797, q = 64."""

    params = (DTYPES, [3, 5], BACKENDS)
    param_names = ["dtype", "patch", "backend"]

    def setup_cache(self):
        return _inputs(1797, 64, (8, 8, 1))


class EquivariantDigitsSize(_LocalBase):
    """Equivariant local machine, 8 x 8 images, n = 1797, q = 8."""

    params = (DTYPES, [3, 5], BACKENDS)
    param_names = ["dtype", "patch", "backend"]
    equivariant = True
    q = 8

    def setup_cache(self):
        return _inputs(1797, 8, (8, 8, 1))


class LocalRGB32(_LocalBase):
    """Local machine, 32 x 32 x 3 images, n = 1000, q = 8."""

    params = (DTYPES, [3, 7], BACKENDS)
    param_names = ["dtype", "patch", "backend"]
    shape = (32, 32, 3)
    n = 1000
    q = 8

    def setup_cache(self):
        return _inputs(1000, 8, (32, 32, 3))


class EquivariantRGB32(_LocalBase):
    """Equivariant local machine, 32 x 32 x 3 images, n = 64, q = 2."""

    params = (DTYPES, [3, 7], BACKENDS)
    param_names = ["dtype", "patch", "backend"]
    equivariant = True
    shape = (32, 32, 3)
    n = 64
    q = 2

    def setup_cache(self):
        return _inputs(64, 2, (32, 32, 3))
