"""Philox4x32-10 streams: Numba mirror of csrc/include/bigstep/philox.hpp and csrc/cpu/random.cpp.

Stream layout, shared bit-for-bit with the C++ and CUDA backends:
  key = (seed & 0xffffffff, seed >> 32); counter = (block lo, block hi, stream lo,
  stream hi).
  uniform element i : 53 bits from words (2(i%2), 2(i%2)+1) of block i / 2.
  normal element i  : Box-Muller, both branches, on block i / 4: words (2h, 2h+1),
                      h = (i/2)%2, cos for even i, sin for odd i.
Every element depends on its counter only, so the bits do not depend on chunking or
on the thread count.  32-bit words are held in uint64 and masked after each
operation that can carry past bit 31; normals use math.log/math.cos in double, the
same libm calls as the C++ (no fast-math).
"""

from __future__ import annotations

import math

import numpy as np
import numba

from . import jit
from ._intrinsics import as_dtype_of

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_ONE = np.uint64(1)
_TWO = np.uint64(2)
_TWO_POW_M32 = 2.3283064365386963e-10  # 2^-32
_TWO_POW_M53 = 1.1102230246251565e-16  # 2^-53
_TWO_PI = 6.283185307179586
_BELOW_ONE_F32 = np.float32(0.99999994)  # largest float32 below 1
_PARALLEL_MIN = 65536  # as csrc/cpu/random.cpp: threads only for longer streams

_U64 = numba.types.uint64


@jit(numba.types.UniTuple(_U64, 4)(_U64, _U64, _U64, _U64, _U64, _U64))
def _philox_rounds(c0, c1, c2, c3, k0, k1):
    """Philox4x32 with 10 rounds on counter (c0..c3) and key (k0, k1), words in uint64.

    Each round: (hi0, lo0) = M0 c0, (hi1, lo1) = M1 c2 (32x32 -> 64 products),
    c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); then the key is bumped by (W0, W1).
    """
    for _ in range(10):
        p0 = _M0 * c0  # < 2^64: exact
        p1 = _M1 * c2
        c0 = (p1 >> _SHIFT32) ^ c1 ^ k0
        c1 = p1 & _MASK32
        c2 = (p0 >> _SHIFT32) ^ c3 ^ k1
        c3 = p0 & _MASK32
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return c0, c1, c2, c3


@jit(numba.types.UniTuple(_U64, 2)(_U64, _U64, _U64))
def _words_at(seed, stream, i):
    """The two words of uniform element i of stream (seed, stream): words (2(i%2), 2(i%2)+1) of
    block i / 2, counter (block lo, block hi, stream lo, stream hi), key (seed lo, seed hi)."""
    block = i >> _ONE
    r0, r1, r2, r3 = _philox_rounds(block & _MASK32, block >> _SHIFT32, stream & _MASK32, stream >> _SHIFT32,
                                    seed & _MASK32, seed >> _SHIFT32)
    if i & _ONE:
        return r2, r3
    return r0, r1


@jit("float64(uint64)")
def _u01_open(w):
    """Uniform in (0, 1) from 32 bits: (w + 0.5) 2^-32, never 0 or 1."""
    return (np.float64(w) + 0.5) * _TWO_POW_M32


@jit("float64(uint64, uint64)")
def _u01_53(hi, lo):
    """Uniform in [0, 1) with 53 random bits: ((hi << 21) ^ (lo >> 11)) 2^-53."""
    return np.float64((hi << np.uint64(21)) ^ (lo >> np.uint64(11))) * _TWO_POW_M53


@jit(inline="always")
def _box_muller(w1, w2, sine):
    """Box-Muller in double: sqrt(-2 log u1) times cos (sine False) or sin (sine True) of
    2 pi u2, with u1, u2 the open uniforms of two words (philox.hpp box_muller)."""
    radius = math.sqrt(-2.0 * math.log(_u01_open(w1)))
    angle = _TWO_PI * _u01_open(w2)
    return radius * (math.sin(angle) if sine else math.cos(angle))


@jit(inline="always")
def _block_normal(r0, r1, r2, r3, i):
    """Normal i % 4 of a block with words r0..r3: pair (i / 2) % 2, cos for even i, sin
    for odd i (philox.hpp block_normal)."""
    sine = (i & _ONE) != 0
    if i & _TWO:
        return _box_muller(r2, r3, sine)
    return _box_muller(r0, r1, sine)


@jit("float64(uint64, uint64, uint64)")
def _normal_at(seed, stream, i):
    """Element i of the standard normal stream: normal i % 4 of block i / 4."""
    block = i >> _TWO
    r0, r1, r2, r3 = _philox_rounds(block & _MASK32, block >> _SHIFT32, stream & _MASK32, stream >> _SHIFT32,
                                    seed & _MASK32, seed >> _SHIFT32)
    return _block_normal(r0, r1, r2, r3, i)


@jit("void(uint64, uint64, uint64, int64, uint64[:, ::1])")
def _blocks(seed, stream, b0, nb, words):
    """words[:, b] = Philox4x32-10 output of block b0 + b of stream (seed, stream), b < nb:
    the rounds of _philox_rounds written out in one loop over blocks with the words in
    separate rows, so LLVM vectorises it (32 x 32 -> 64 products in vector lanes)."""
    k0 = seed & _MASK32
    k1 = seed >> _SHIFT32
    s0 = stream & _MASK32
    s1 = stream >> _SHIFT32
    for b in range(nb):
        blk = b0 + np.uint64(b)
        c0 = blk & _MASK32
        c1 = blk >> _SHIFT32
        c2 = s0
        c3 = s1
        ka = k0
        kb = k1
        for _ in range(10):
            p0 = _M0 * c0  # < 2^64: exact
            p1 = _M1 * c2
            c0 = (p1 >> _SHIFT32) ^ c1 ^ ka
            c1 = p1 & _MASK32
            c2 = (p0 >> _SHIFT32) ^ c3 ^ kb
            c3 = p0 & _MASK32
            ka = (ka + _W0) & _MASK32
            kb = (kb + _W1) & _MASK32
        words[0, b] = c0
        words[1, b] = c1
        words[2, b] = c2
        words[3, b] = c3


@jit("void(uint64, uint64, uint64, int64, float64[::1], uint64[:, ::1])")
def _normals(seed, stream, start, count, out, words):
    """out[i] = element start + i of the normal stream (seed, stream), i < count: the
    values of _normal_at, with the blocks computed first by the vectorised :func:`_blocks`;
    ``words`` is scratch of shape (4, >= count // 4 + 2)."""
    if count <= 0:
        return
    b0 = start >> _TWO
    _blocks(seed, stream, b0, np.int64(((start + np.uint64(count - 1)) >> _TWO) - b0) + 1, words)
    for i in range(count):
        e = start + np.uint64(i)
        b = (e >> _TWO) - b0
        out[i] = _block_normal(words[0, b], words[1, b], words[2, b], words[3, b], e)


@jit("float64(uint64, uint64, uint64)")
def _uniform_at(seed, stream, i):
    """Element i of the uniform stream, in [0, 1)."""
    hi, lo = _words_at(seed, stream, i)
    return _u01_53(hi, lo)


_FILL_SIGS = ["void(uint64, uint64, uint64, float64[::1], int64, int64)",
              "void(uint64, uint64, uint64, float32[::1], int64, int64)"]


@jit(_FILL_SIGS)
def _gaussian_range(seed, stream, offset, out, start, stop):
    """out[i] = normal at counter offset + i, for start <= i < stop (rounded to out's type)."""
    for i in range(start, stop):
        out[i] = _normal_at(seed, stream, offset + np.uint64(i))


@jit(_FILL_SIGS)
def _uniform_range(seed, stream, offset, out, start, stop):
    """out[i] = uniform at counter offset + i, for start <= i < stop; in float32 a value
    rounded up to 1 becomes the largest float below 1 (as random.cpp)."""
    for i in range(start, stop):
        u = as_dtype_of(out, _uniform_at(seed, stream, offset + np.uint64(i)))
        out[i] = u if u < 1 else _BELOW_ONE_F32


_CHUNK = 8192  # elements per parallel task

_PAR_SIGS = ["void(uint64, uint64, uint64, float64[::1], int64)",
             "void(uint64, uint64, uint64, float32[::1], int64)"]


@jit(_PAR_SIGS, parallel=True)
def _gaussian_parallel(seed, stream, offset, out, chunk):
    """_gaussian_range over all of out, in chunks spread over threads."""
    n = out.shape[0]
    for c in numba.prange((n + chunk - 1) // chunk):
        _gaussian_range(seed, stream, offset, out, c * chunk, min(n, (c + 1) * chunk))


@jit(_PAR_SIGS, parallel=True)
def _uniform_parallel(seed, stream, offset, out, chunk):
    """_uniform_range over all of out, in chunks spread over threads."""
    n = out.shape[0]
    for c in numba.prange((n + chunk - 1) // chunk):
        _uniform_range(seed, stream, offset, out, c * chunk, min(n, (c + 1) * chunk))


def _fill(serial, parallel, seed, stream, offset, count, dtype):
    out = np.empty(int(count), dtype=np.dtype(dtype))
    args = (np.uint64(seed), np.uint64(stream), np.uint64(offset), out)
    if out.size > _PARALLEL_MIN:
        parallel(*args, _CHUNK)
    else:
        serial(*args, 0, out.size)
    return out


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Raw Philox4x32-10 block for counter (c0, c1, c2, c3) and key (k0, k1), all uint32;
    returns the four output words as ints (same as bigstep._core.philox4x32_10)."""
    words = [np.uint64(int(v) & 0xFFFFFFFF) for v in (c0, c1, c2, c3, k0, k1)]
    return tuple(int(v) for v in _philox_rounds(*words))


def gaussian_noise(seed, stream, offset, count, dtype=np.float64):
    """Standard normals at counters offset .. offset + count - 1 of stream (seed, stream),
    as a 1-D array of dtype (float32 values are the float64 normals rounded)."""
    return _fill(_gaussian_range, _gaussian_parallel, seed, stream, offset, count, dtype)


def uniform(seed, stream, offset, count, dtype=np.float64):
    """Uniforms in [0, 1) (53 random bits) at counters offset .. offset + count - 1 of
    stream (seed, stream), as a 1-D array of dtype."""
    return _fill(_uniform_range, _uniform_parallel, seed, stream, offset, count, dtype)
