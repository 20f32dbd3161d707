"""Shared pieces of the torch kernels: chunk sizes, full-precision float32 matrix
products whatever the user's global setting, tree sums whose rounding does not depend on
the device, the thread count or the batch size."""

from __future__ import annotations

import contextlib
import threading

import torch

F64 = torch.float64

#: Elements of one temporary (a q-chunk x n-chunk block of logits or distances).  CPU:
#: 2^20 (8 MB in float64), so a call's peak stays well below the O(inputs + outputs)
#: bound of the memory tests; GPUs: 2^26 (512 MB in float64), large enough for full
#: matrix-product speed.  Tests shrink them to exercise the chunk loops.
CHUNK_ELEMENTS = {"cpu": 1 << 20, "other": 1 << 26}


def budget(device: torch.device) -> int:
    """Elements one temporary may hold on ``device``."""
    return CHUNK_ELEMENTS["cpu" if torch.device(device).type == "cpu" else "other"]


# ----------------------------------------------------------------- matmul precision
#
# torch lets the user trade float32 matmul accuracy for speed globally: TF32 on NVIDIA
# GPUs (10-bit mantissa), bfloat16 on CPUs with AMX/AVX512-BF16 (oneDNN).  The s*
# kernels' float32 products must be IEEE float32 products (at sigma = 0.002 an error of
# 1e-4 in a squared distance moves a logit by 12), so every kernel runs its products
# inside ieee_matmul(), which sets the per-backend precision flags to "ieee" and
# restores the caller's values when the last concurrent bigstep call leaves.  The flags
# are process-wide: a matmul another thread runs meanwhile also gets full precision.

_lock = threading.Lock()
_depth = 0
_saved: list = []


def _precision_flags() -> list:
    """The (object, attribute) pairs of the per-backend fp32 precision flags this torch has."""
    flags = []
    for owner in (getattr(torch.backends.cuda, "matmul", None), getattr(getattr(torch.backends, "mkldnn", None),
                                                                        "matmul", None)):
        if owner is not None:
            try:
                getattr(owner, "fp32_precision")
            except (AttributeError, RuntimeError):
                continue
            flags.append(owner)
    return flags


@contextlib.contextmanager
def ieee_matmul():
    """float32 matrix products in IEEE float32 (no TF32, no bfloat16) inside the block."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            flags = _precision_flags()
            if flags:  # torch >= 2.9: the per-backend API (the legacy one would clash with it)
                _saved = [("flag", f, f.fp32_precision) for f in flags]
                for f in flags:
                    f.fp32_precision = "ieee"
            else:  # older torch
                _saved = [("legacy", None, torch.get_float32_matmul_precision())]
                torch.set_float32_matmul_precision("highest")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for kind, f, value in _saved:
                    if kind == "flag":
                        f.fp32_precision = value
                    else:
                        torch.set_float32_matmul_precision(value)
                _saved = []


# ----------------------------------------------------------------------- tree sums


def tree_sum(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum over ``dim`` by pairwise halving (zero-padded to a power of two): elementwise
    additions only, so every element of the result is rounded the same way on every
    device, for any thread count and whatever the other dimensions are."""
    t = t.movedim(dim, -1)
    size = t.shape[-1]
    if size == 0:
        return t.new_zeros(t.shape[:-1])
    width = 1 << (size - 1).bit_length()
    if width != size:
        t = torch.nn.functional.pad(t, (0, width - size))
    while width > 1:
        width //= 2
        t = t[..., :width] + t[..., width:]
    return t[..., 0]


def two_product(a, b):
    """(p, e) with p = fl(a b) and a b = p + e exactly (Dekker/Veltkamp, float64)."""
    p = a * b
    split = 134217729.0  # 2^27 + 1
    ca, cb = split * a, split * b
    ah = ca - (ca - a)
    bh = cb - (cb - b)
    al, bl = a - ah, b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, torch.where(torch.isfinite(e), e, torch.zeros_like(e))
