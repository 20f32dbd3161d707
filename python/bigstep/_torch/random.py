"""Philox4x32-10 streams in torch integer operations, on any device.

The stream layout of csrc/include/bigstep/philox.hpp, bit for bit:
  key = (seed & 0xffffffff, seed >> 32); counter = (block lo, block hi, stream lo,
  stream hi).
  uniform element i : 53 bits from words (2(i%2), 2(i%2)+1) of block i / 2.
  normal element i  : Box-Muller, both branches, on block i / 4: words (2h, 2h+1),
                      h = (i/2)%2, cos for even i, sin for odd i.
32-bit words are held in int64 tensors.  The 32 x 32 -> 64-bit products of a round are
formed from two 16-bit halves of the counter word (each partial product < 2^48), so no
int64 operation overflows; the Philox words, and so the uniforms, are bit-identical to
the CPU backends'.  Normals use torch's float64 log, sqrt, cos and sin (within an ulp of
libm's), so they agree with the CPU streams to rounding.

Besides the family's kernels (host-style signatures, results as CPU tensors) the module
gives the device samplers and trainers :func:`normals` and :func:`uniforms`, which take
the key as Python ints or as int64 tensors of shape (R, 1) (one stream per row) and
return the stream segment [offset, offset + count) on a device.
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import F64, budget

__all__ = ["gaussian_noise", "uniform", "philox4x32_10", "normals", "uniforms"]

_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = 0xFFFFFFFF
_TWO_POW_M32 = 2.3283064365386963e-10
_TWO_POW_M53 = 1.1102230246251565e-16
_TWO_PI = 6.283185307179586
_BLOCKS_PER_PASS = None  # Philox blocks per pass of the integer rounds: budget / 8 (tests set it)


def _rounds(c0, c1, c2, c3, k0, k1):
    """Philox4x32 with 10 rounds; words int64 tensors < 2^32 of one shape, keys ints or
    tensors that broadcast to it.

    The two products of a round are taken together on the stacked words P = (c0, c2),
    with Q = (c1, c3) and K = (k0, k1):  (hi, lo) = mulhilo((M0, M1), P),
    P <- (hi1, hi0) ^ Q ^ K,  Q <- (lo1, lo0)."""
    dev = c0.device
    extra = (1,) * c0.dim()
    mult = torch.tensor([_M0, _M1], dtype=torch.int64, device=dev).view((2,) + extra)
    p = torch.stack((c0, c2))
    q = torch.stack((c1, c3))
    if isinstance(k0, torch.Tensor):
        key = torch.stack((k0, k1)).to(dev)
        bump = torch.tensor([_W0, _W1], dtype=torch.int64, device=dev).view((2,) + (1,) * k0.dim())
        keys = [key]
        for _ in range(9):
            keys.append((keys[-1] + bump) & _MASK)
    else:
        keys = [torch.tensor([(k0 + r * _W0) & _MASK, (k1 + r * _W1) & _MASK], dtype=torch.int64,
                             device=dev).view((2,) + extra) for r in range(10)]
    for r in range(10):
        a = mult * (p >> 16)  # < 2^48: the 32 x 32-bit product M c = a 2^16 + b without overflow
        b = mult * (p & 0xFFFF)
        lo = (((a & 0xFFFF) << 16) + b) & _MASK
        hi = (a + (b >> 16)) >> 16
        p = hi.flip(0) ^ q ^ keys[r]
        q = lo.flip(0)
    return p[0], q[0], p[1], q[1]


def _keys(seed):
    """(k0, k1) of a seed: Python ints for an int, (R, 1) int64 tensors for a tensor of
    seeds (the uint64 bit patterns stored in int64)."""
    if isinstance(seed, torch.Tensor):
        s = seed.reshape(-1, 1).to(torch.int64)
        return s & _MASK, (s >> 32) & _MASK
    seed = int(seed)
    return seed & _MASK, seed >> 32


def _rows(k0) -> int:
    return k0.shape[0] if isinstance(k0, torch.Tensor) else 1


def _blocks(k0, k1, stream: int, b0: int, nb: int, device):
    """The four words of Philox blocks b0 .. b0 + nb - 1 of (key, stream): tensors of
    shape (nb,) or (R, nb) for (R, 1) keys."""
    blk = b0 + torch.arange(nb, dtype=torch.int64, device=device)
    c0 = blk & _MASK
    c1 = blk >> 32
    s0 = torch.full_like(c0, stream & _MASK)
    s1 = torch.full_like(c0, stream >> 32)
    if isinstance(k0, torch.Tensor):
        shape = (k0.shape[0], nb)
        c0, c1, s0, s1 = (v.expand(shape) for v in (c0, c1, s0, s1))
    return _rounds(c0, c1, s0, s1, k0, k1)


def _u01_open(w: torch.Tensor) -> torch.Tensor:
    return (w.to(F64) + 0.5) * _TWO_POW_M32


def _box_muller(w1, w2):
    """(r cos(2 pi u2), r sin(2 pi u2)), r = sqrt(-2 log u1), in float64, stacked on a
    new last dimension."""
    radius = torch.sqrt(-2.0 * torch.log(_u01_open(w1)))
    angle = _TWO_PI * _u01_open(w2)
    return torch.stack((radius * torch.cos(angle), radius * torch.sin(angle)), dim=-1)


def _segments(offset: int, count: int, per_block: int, device, rows: int):
    """(first block, number of blocks, skip, count) passes covering elements [offset,
    offset + count) of ``rows`` streams: a pass holds about a dozen int64 temporaries of
    rows x its block count, budget / 8 blocks in all (one chunk budget)."""
    passes = _BLOCKS_PER_PASS or max(1, budget(torch.device(device)) // (8 * rows))
    done = 0
    while done < count:
        start = offset + done
        b0 = start // per_block
        skip = start - b0 * per_block
        take = min(count - done, passes * per_block - skip)
        nb = (skip + take + per_block - 1) // per_block
        yield b0, nb, skip, take
        done += take


def normals(seed, stream: int, offset: int, count: int, device="cpu") -> torch.Tensor:
    """Standard normals at counters offset .. offset + count - 1 of (seed, stream),
    float64 on ``device``: shape (count,), or (R, count) for a tensor of R seeds."""
    k0, k1 = _keys(seed)
    parts = []
    for b0, nb, skip, take in _segments(int(offset), int(count), 4, device, _rows(k0)):
        r0, r1, r2, r3 = _blocks(k0, k1, int(stream), b0, nb, device)
        # normals 4b + 2h + j of block b: pair h of its words, cos (j = 0) or sin (j = 1)
        z = _box_muller(torch.stack((r0, r2), dim=-1), torch.stack((r1, r3), dim=-1)).flatten(-3)
        parts.append(z[..., skip:skip + take])
    if not parts:
        shape = (0,) if not isinstance(k0, torch.Tensor) else (k0.shape[0], 0)
        return torch.empty(shape, dtype=F64, device=device)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def uniforms(seed, stream: int, offset: int, count: int, device="cpu") -> torch.Tensor:
    """Uniforms in [0, 1) with 53 random bits at counters offset .. offset + count - 1 of
    (seed, stream), float64 on ``device`` (bit-identical to the CPU streams)."""
    k0, k1 = _keys(seed)
    parts = []
    for b0, nb, skip, take in _segments(int(offset), int(count), 2, device, _rows(k0)):
        r0, r1, r2, r3 = _blocks(k0, k1, int(stream), b0, nb, device)
        hi = torch.stack((r0, r2), dim=-1).flatten(-2)
        lo = torch.stack((r1, r3), dim=-1).flatten(-2)
        u = ((hi << 21) ^ (lo >> 11)).to(F64) * _TWO_POW_M53
        parts.append(u[..., skip:skip + take])
    if not parts:
        shape = (0,) if not isinstance(k0, torch.Tensor) else (k0.shape[0], 0)
        return torch.empty(shape, dtype=F64, device=device)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def _torch_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    return torch.float32 if np.dtype(dtype) == np.float32 else F64


def gaussian_noise(seed, stream, offset, count, dtype=np.float64):
    """Standard normals at counters offset .. offset + count - 1 of stream (seed, stream),
    a 1-D CPU tensor of dtype (float32 values are the float64 normals rounded)."""
    return normals(seed, stream, offset, count).to(_torch_dtype(dtype))


def uniform(seed, stream, offset, count, dtype=np.float64):
    """Uniforms in [0, 1) at counters offset .. offset + count - 1 of stream (seed,
    stream), a 1-D CPU tensor of dtype; in float32 a value rounded up to 1 becomes the
    largest float32 below 1 (as the CPU backends)."""
    u = uniforms(seed, stream, offset, count)
    if _torch_dtype(dtype) == torch.float32:
        u = u.to(torch.float32)
        return torch.where(u < 1, u, torch.tensor(np.float32(0.99999994)))
    return u


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Raw Philox4x32-10 block for counter (c0, c1, c2, c3) and key (k0, k1), all uint32;
    returns the four output words as ints (same as bigstep._core.philox4x32_10)."""
    words = [torch.tensor(int(v) & _MASK, dtype=torch.int64) for v in (c0, c1, c2, c3)]
    out = _rounds(*words, int(k0) & _MASK, int(k1) & _MASK)
    return tuple(int(v) for v in out)
