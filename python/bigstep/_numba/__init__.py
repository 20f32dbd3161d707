"""Numba fallbacks: pure-Python mirrors of the compiled kernels, same semantics.

Every fallback is compiled through :func:`jit` so the options are fixed in one place.
"""

from __future__ import annotations

import numba

_OPTIONS = dict(nogil=True, cache=True, error_model="numpy", fastmath=False)


def jit(signatures=None, **overrides):
    """numba.njit with bigstep's fixed options (cache, numpy error model, no fastmath)."""
    opts = {**_OPTIONS, **overrides}
    if signatures is None:
        return numba.njit(**opts)
    return numba.njit(signatures, **opts)
