"""Conversion at the API boundary: the caller's arrays in, the kernels' arrays, and
outputs back in the caller's array type on the caller's device.

Inputs: numpy arrays and scalars, Python numbers and sequences, torch tensors, and any
array that speaks DLPack (``__dlpack__``/``__dlpack_device__``: CuPy, JAX, numpy,
torch, ...) or ``__cuda_array_interface__``.  A contiguous input on the CPU reaches the
kernels without a copy, read-only and memory-mapped arrays included.  float32 stays
float32, float64 stays float64, integers and bools become float64, float16/bfloat16
become float32; any other dtype is a TypeError.

Device: :func:`device_of` names where an array lives ("cpu", "cuda:0", "mps:0", ...);
:func:`common_device` checks that the arrays of one call agree and raises a ValueError
naming both otherwise.  The CPU backends take numpy arrays (:func:`as_numpy` refuses an
array on another device, naming it); the GPU backends take device arrays.

Gradients: a torch tensor that requires grad is refused with a TypeError by a function
that is not differentiable (grad mode on), rather than silently detached.
"""

from __future__ import annotations

import ctypes

import numpy as np

_FLOATS = (np.float32, np.float64)
# DLPack device types (dlpack.h's DLDeviceType): the ones whose memory the CPU can read.
_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_ROCM, _DL_ROCM_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 10, 11, 13
_DL_NAMES = {2: "cuda", 4: "opencl", 7: "vulkan", 8: "metal", 9: "vpi", 10: "rocm", 13: "cuda", 14: "oneapi",
             15: "webgpu", 16: "hexagon", 17: "maia"}
_HOST_READABLE = (_DL_CPU, _DL_CUDA_HOST, _DL_ROCM_HOST)


def kind(a) -> str:
    """The array library of ``a``: "numpy", "torch", "cupy", "jax", "dlpack" (another
    DLPack producer), "cai" (only ``__cuda_array_interface__``) or "other" (numbers,
    sequences, buffers)."""
    if isinstance(a, (np.ndarray, np.generic)):
        return "numpy"
    root = type(a).__module__.split(".", 1)[0]
    if root == "torch" and hasattr(a, "device") and hasattr(a, "detach"):
        return "torch"
    if root == "cupy" and hasattr(a, "__cuda_array_interface__"):
        return "cupy"
    if root in ("jax", "jaxlib") and hasattr(a, "__dlpack__"):
        return "jax"
    if hasattr(a, "__dlpack__") and hasattr(a, "__dlpack_device__"):
        return "dlpack"
    if hasattr(a, "__cuda_array_interface__"):
        return "cai"
    return "other"


def is_torch(a) -> bool:
    return kind(a) == "torch"


def device_of(a) -> str:
    """Where ``a`` lives: "cpu" for host memory (numbers and sequences included), else
    "<type>:<index>" ("cuda:0", "mps:0", "rocm:1", ...)."""
    k = kind(a)
    if k in ("numpy", "other"):
        return "cpu"
    if k == "torch":
        dev = a.device
        return "cpu" if dev.type == "cpu" else f"{dev.type}:{0 if dev.index is None else dev.index}"
    if k == "cupy":
        return f"cuda:{int(a.device.id)}"
    if k == "cai":
        return f"cuda:{_cai_device(a)}"
    try:
        dev_type, dev_id = a.__dlpack_device__()
    except Exception as exc:  # a producer that cannot say where it lives
        raise TypeError(f"__dlpack_device__() of a {type(a).__name__} failed: {exc}") from None
    dev_type = int(getattr(dev_type, "value", dev_type))
    if dev_type in _HOST_READABLE:
        return "cpu"
    return f"{_DL_NAMES.get(dev_type, f'device{dev_type}')}:{int(dev_id)}"


def _cai_device(a) -> int:
    """Device index of a ``__cuda_array_interface__`` pointer (0 when it cannot be asked)."""
    try:
        from . import _backend

        cuda = _backend.cuda_module()
        ptr = a.__cuda_array_interface__["data"][0]
        return int(cuda.pointer_device(ptr)) if cuda is not None and ptr else 0
    except Exception:
        return 0


def common_device(named: dict) -> str:
    """The one device of the arrays ``{name: array}``.  None values, Python numbers and
    0-d host arrays (numpy scalars, 0-d CPU tensors: torch's rule for scalars, which may
    join arrays on any device) are ignored; a call with only those is on the CPU.  Arrays
    on different devices raise a ValueError naming both."""
    first = None
    for name, a in named.items():
        if a is None or kind(a) == "other" or (getattr(a, "ndim", None) == 0 and device_of(a) == "cpu"):
            continue
        dev = device_of(a)
        if first is None:
            first = (name, dev)
        elif dev != first[1]:
            raise ValueError(f"{first[0]} is on {first[1]} but {name} is on {dev}: "
                             f"move them to one device")
    return "cpu" if first is None else first[1]


def _refuse_grad(a, name: str) -> None:
    if getattr(a, "requires_grad", False):
        import torch

        if torch.is_grad_enabled():
            raise TypeError(f"{name} requires grad, but bigstep does not differentiate this function with respect "
                            f"to {name}; pass {name}.detach() (or call it under torch.no_grad())")


def as_numpy(a, name: str, *, grad: bool = False) -> np.ndarray:
    """numpy view of a host array (a copy only for dtypes the kernels do not take).

    Raises ValueError for an array on another device (naming it), TypeError for a
    non-numeric dtype, and TypeError for a torch tensor that requires grad unless
    ``grad`` (the caller is differentiable and handles it)."""
    k = kind(a)
    if k == "torch":
        if a.device.type != "cpu":
            raise ValueError(f"{name} is a torch tensor on {a.device}; the CPU backends ('cpp', 'numba') need CPU "
                             f"arrays (backend='auto' picks a backend by the inputs' device)")
        if not grad:
            _refuse_grad(a, name)
        a = a.detach()
        if a.dtype.is_complex or not (a.dtype.is_floating_point or str(a.dtype) in _TORCH_INTS):
            raise TypeError(f"{name} must have a real numeric dtype, got {a.dtype}")
        if not a.dtype.is_floating_point or str(a.dtype) in ("torch.float16", "torch.bfloat16"):
            a = a.double() if not a.dtype.is_floating_point else a.float()
        return a.numpy()
    if k in ("cupy", "cai", "jax", "dlpack"):
        dev = device_of(a)
        if dev != "cpu":
            raise ValueError(f"{name} is a {type(a).__name__} on {dev}; the CPU backends ('cpp', 'numba') need "
                             f"host arrays (backend='auto' picks a backend by the inputs' device)")
        try:
            arr = np.from_dlpack(a)
        except Exception as exc:  # e.g. a dtype numpy cannot represent (bfloat16)
            try:
                arr = np.asarray(a)
            except Exception:
                raise TypeError(f"{name} could not be read through DLPack ({exc})") from None
    elif isinstance(a, (str, bytes)):
        raise TypeError(f"{name} must be numeric, got {type(a).__name__}")
    else:
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
    """C-contiguous, native byte order, given dtype: the array itself when it already is
    (read-only and memory-mapped arrays included), else a converted copy."""
    return np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("="))


def writable_alias(a):
    """``a`` itself if writeable, else a writeable-flagged view of the same memory (no copy).

    For kernels whose compiled signatures ask for mutable arrays (Numba's explicit
    signatures) but never write the argument.  Only for C-contiguous arrays."""
    if not isinstance(a, np.ndarray) or a.flags.writeable or a.size == 0:
        return a
    if not a.flags.c_contiguous:
        return np.array(a, order="C")
    buf = (ctypes.c_char * a.nbytes).from_address(a.ctypes.data)
    buf.owner = a  # the view's memory belongs to `a`: keep it alive as long as the view
    return np.frombuffer(buf, dtype=a.dtype).reshape(a.shape)


def wrap_like(out, like):
    """``out`` (a numpy array, a device array of another library, or None) in the array
    type of ``like``: numpy for numpy, numbers, sequences and unknown DLPack producers;
    torch for torch (same device); CuPy for CuPy; JAX for JAX.  A device result for an
    unknown producer stays a torch tensor (there is no array type to give it)."""
    if out is None:
        return None
    k = kind(like)
    if k == "torch":
        import torch

        if isinstance(out, np.ndarray) or np.isscalar(out):
            arr = np.asarray(out)  # keeps 0-d results 0-d (np.ascontiguousarray would not)
            t = torch.from_numpy(arr if arr.flags.c_contiguous and arr.flags.writeable else arr.copy(order="C"))
            return t if like.device.type == "cpu" else t.to(like.device)
        return out if isinstance(out, torch.Tensor) else torch.from_dlpack(out)
    if k == "cupy":
        import cupy

        return cupy.asarray(out) if isinstance(out, np.ndarray) else cupy.from_dlpack(out)
    if k == "jax":
        import jax.numpy as jnp

        return jnp.asarray(out) if isinstance(out, np.ndarray) else jnp.from_dlpack(out)
    if isinstance(out, np.ndarray) or np.isscalar(out):
        return out
    if device_of(like) != "cpu":  # an unknown producer on a device: the result stays a torch tensor
        return out
    if device_of(out) != "cpu":  # host caller, device result (backend="cuda" on host arrays)
        out = out.cpu()
    arr = np.from_dlpack(out)
    return arr[()] if arr.ndim == 0 else arr  # 0-d results as numpy scalars, as the host path gives
