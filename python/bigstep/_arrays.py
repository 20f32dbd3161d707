"""Conversion at the API boundary: inputs of any supported kind in, numpy arrays of
one float dtype for the kernels, and outputs back in the caller's array type.

Supported inputs: numpy arrays and scalars, Python numbers and sequences, torch CPU
tensors (zero-copy through ``.numpy()``), and anything numpy can read through the
buffer protocol or ``__array__``.  float32 stays float32, float64 stays float64,
integers and bools become float64; any other dtype is a TypeError.
"""

from __future__ import annotations

import numpy as np

_FLOATS = (np.float32, np.float64)


def _is_torch(a) -> bool:
    return type(a).__module__.startswith("torch") and hasattr(a, "detach") and hasattr(a, "device")


def as_numpy(a, name: str) -> np.ndarray:
    """numpy view (or copy when unavoidable) of a supported input."""
    if _is_torch(a):
        if a.device.type != "cpu":
            raise ValueError(f"{name} is a torch tensor on {a.device}; the CPU backends need CPU tensors")
        a = a.detach()
        if a.dtype.is_complex or not (a.dtype.is_floating_point or str(a.dtype) in _TORCH_INTS):
            raise TypeError(f"{name} must have a real numeric dtype, got {a.dtype}")
        if not a.dtype.is_floating_point or str(a.dtype) in ("torch.float16", "torch.bfloat16"):
            a = a.double() if not a.dtype.is_floating_point else a.float()
        return a.numpy()
    if isinstance(a, (str, bytes)):
        raise TypeError(f"{name} must be numeric, got {type(a).__name__}")
    try:
        arr = np.asarray(a)
    except Exception as exc:
        raise TypeError(f"{name} must be an array of numbers, got {type(a).__name__} ({exc})") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must have a real numeric dtype, got {arr.dtype}")
    return arr


_TORCH_INTS = ("torch.int8", "torch.uint8", "torch.int16", "torch.int32", "torch.int64", "torch.bool")


def result_dtype(*arrays: np.ndarray) -> np.dtype:
    """float32 if every floating input is float32 (and there is one), else float64."""
    kinds = [a.dtype for a in arrays if a.dtype.kind == "f"]
    if kinds and all(k.itemsize <= 4 for k in kinds):  # float16/float32, either byte order
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def prepare(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous, writable, native byte order, given dtype (copies only when needed).

    Read-only inputs (np.broadcast_to views, arrays with writeable=False, np.load with
    mmap_mode="r") are copied: the Numba kernels' explicit signatures accept mutable
    arrays only, and would otherwise fail with numba's "No matching definition"."""
    out = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("="))
    if not out.flags.writeable:
        out = out.copy()
    return out


def wrap_like(out, like):
    """Return `out` as the array type of `like` (torch tensor in, torch tensor out)."""
    if out is None:
        return None
    if _is_torch(like):
        import torch

        arr = np.asarray(out)  # keeps 0-d results 0-d (np.ascontiguousarray would not)
        return torch.from_numpy(arr if arr.flags.c_contiguous else arr.copy(order="C"))
    return out
