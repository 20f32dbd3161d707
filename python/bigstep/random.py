"""Counter-based random streams (Philox4x32-10) shared bit-for-bit by every backend.

Element i (row-major flat index) of ``gaussian_noise(seed, shape, stream, offset)``
is the normal at counter ``offset + i`` of the stream (seed, stream), so a long
stream can be produced in chunks and replayed outside the kernels.  Layout (see
csrc/include/bigstep/philox.hpp): key = (seed & 0xffffffff, seed >> 32), counter =
(block lo, block hi, stream lo, stream hi).  Uniform element i: 53 bits of words
2(i%2), 2(i%2)+1 of block i // 2.  Normal element i: Box-Muller, both branches, on
block i // 4: words (w_2h, w_2h+1) with h = (i // 2) % 2 give sqrt(-2 log u(w_2h)) times
cos (even i) or sin (odd i) of 2 pi u(w_2h+1), u(w) = (w + 1/2) 2^-32.

The stream numbers the samplers, trainers and experiments use are listed, each with its
use, in python/bigstep/_streams.py (mirrored in csrc/include/bigstep/streams.hpp; the
map is in docs/design.md section 3).
"""

from __future__ import annotations

import numpy as np

from . import _backend
from ._validate import integer

__all__ = ["gaussian_noise", "uniform"]

_U64 = 1 << 64


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {type(shape).__name__}") from None
    for s in shape:
        integer(s, "shape entries", minimum=0)
    return tuple(int(s) for s in shape)


def _draw(kind, seed, shape, stream, offset, dtype, backend):
    seed = integer(seed, "seed", minimum=0)
    stream = integer(stream, "stream", minimum=0)
    offset = integer(offset, "offset", minimum=0)
    for name, v in (("seed", seed), ("stream", stream), ("offset", offset)):
        if v >= _U64:
            raise ValueError(f"{name} must be < 2**64, got {v}")
    shape = _shape(shape)
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if offset + count > _U64:
        raise ValueError(f"offset + size must be <= 2**64, got {offset} + {count}")
    impl = _backend.kernels("random", _backend.resolve(backend, family="random"))
    out = getattr(impl, kind)(seed, stream, offset, count, dt)
    if not isinstance(out, np.ndarray):  # a device backend's tensor: these functions return numpy arrays
        out = out.cpu().numpy()
    return out.reshape(shape)


def gaussian_noise(seed, shape, *, stream=0, offset=0, dtype=np.float64, backend="auto"):
    """Standard normals from the Philox stream (seed, stream), starting at counter offset.

    Element i (row-major) is the normal at counter ``offset + i``, identical on every
    backend and for any thread count (Box-Muller on both branches, four normals per
    Philox block), so a long stream can be drawn in chunks and replayed.

    Parameters
    ----------
    seed : int
        The Philox key, 0 <= seed < 2**64.
    shape : int or tuple of int
        The shape of the result.
    stream : int
        The stream number, 0 <= stream < 2**64 (bigstep's own uses are listed in
        docs/design.md section 3).
    offset : int
        The counter of element 0; ``offset + size <= 2**64``.
    dtype : numpy.dtype
        float64 (default) or float32.
    backend : str
        "auto" (cpp, then numba), "cpp" or "numba": the same numbers on each.

    Returns
    -------
    numpy.ndarray
        Of the given shape and dtype.

    Examples
    --------
    >>> import bigstep, numpy as np
    >>> a = bigstep.gaussian_noise(7, (2, 3))
    >>> b = bigstep.gaussian_noise(7, 3, offset=3)
    >>> bool(np.array_equal(a[1], b))
    True
    """
    return _draw("gaussian_noise", seed, shape, stream, offset, dtype, backend)


def uniform(seed, shape, *, stream=0, offset=0, dtype=np.float64, backend="auto"):
    """Uniforms in [0, 1) from the Philox stream (seed, stream), 53 random bits each.

    Element i (row-major) is the uniform at counter ``offset + i`` (two per Philox
    block), identical on every backend and for any thread count.

    Parameters
    ----------
    seed, shape, stream, offset, dtype, backend
        As in :func:`gaussian_noise`.

    Returns
    -------
    numpy.ndarray
        Of the given shape and dtype, in [0, 1).

    Examples
    --------
    >>> import bigstep
    >>> u = bigstep.uniform(0, 1000)
    >>> bool((u >= 0).all() and (u < 1).all())
    True
    """
    return _draw("uniform", seed, shape, stream, offset, dtype, backend)
