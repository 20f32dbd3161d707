"""What the CUDA launchers share: the compiled module, devices, streams, workspaces.

Each launcher takes torch tensors on one CUDA device (numpy arrays and Python numbers are
accepted too and moved there), runs on that device's current stream
(``torch.cuda.current_stream(device).cuda_stream``), allocates outputs and scratch with
torch on that device (torch's caching allocator: an out-of-memory is torch's
``OutOfMemoryError``), and passes raw pointers to ``bigstep._cuda``.  Inputs that are not
contiguous (or have another dtype) are copied first; contiguous ones, offset views
included, are read in place.  Arguments updated in place (the sampler state, the
trainer's parameters) are written back to the caller's array when a copy was needed.

Host inputs give host outputs: when none of the array arguments is a torch tensor (numpy
arrays from the CPU-side plumbing of the public functions), the results come back as
numpy arrays (computed on the current CUDA device); otherwise as tensors on the inputs'
device.

The kernels are enqueued and the launcher returns at once (torch orders later work on
the same stream after them); functions that return Python numbers (the metrics' sums)
wait for their result.

Tests run the same launchers over ``bigstep._cuda_emu`` (the kernels compiled for a CPU
emulation of CUDA) with CPU tensors: :func:`use_module`.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

_state = threading.local()


def module():
    """The compiled module the launchers call: bigstep._cuda, or the one use_module set."""
    mod = getattr(_state, "module", None)
    if mod is None:
        from .. import _cuda

        mod = _cuda
    return mod


@contextlib.contextmanager
def use_module(mod):
    """Run the launchers over ``mod`` (bigstep._cuda_emu in the tests) in this thread."""
    old = getattr(_state, "module", None)
    _state.module = mod
    try:
        yield mod
    finally:
        _state.module = old


def emulated() -> bool:
    return bool(getattr(module(), "emulated", False))


def _torch():
    import torch

    return torch


def default_device():
    """Where arrays that are not tensors go: the current CUDA device (the host when emulated)."""
    torch = _torch()
    if emulated():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def device_of(*arrays):
    """The one device of the torch tensors among ``arrays`` (default_device() if none);
    ValueError naming both if they differ, or if a tensor is not where the kernels run."""
    torch = _torch()
    dev = None
    for a in arrays:
        if isinstance(a, torch.Tensor):
            if dev is None:
                dev = a.device
            elif a.device != dev:
                raise ValueError(f"arrays on different devices: {dev} and {a.device}; move them to one device")
    if dev is None:
        return default_device()
    want = "cpu" if emulated() else "cuda"
    if dev.type != want:
        raise ValueError(f"the cuda backend needs CUDA tensors, got a tensor on {dev}")
    return dev


@contextlib.contextmanager
def on(device):
    """The CUDA runtime's current device is ``device`` inside (kernels launch there)."""
    if device.type == "cuda":
        with _torch().cuda.device(device):
            yield
    else:
        yield


def stream(device) -> int:
    """The cudaStream_t of the current torch stream on ``device`` (0 when emulated)."""
    if device.type != "cuda":
        return 0
    return int(_torch().cuda.current_stream(device).cuda_stream)


def ptr(t) -> int:
    return 0 if t is None else int(t.data_ptr())


def dtype_name(t) -> str:
    return {"torch.float32": "float32", "torch.float64": "float64"}[str(t.dtype)]


def tensor(a, device, dtype=None):
    """``a`` as a contiguous tensor on ``device`` (of ``dtype`` if given): the tensor itself
    when it already is one (offset views included), else a copy."""
    torch = _torch()
    if not isinstance(a, torch.Tensor):
        arr = np.asarray(a)
        if arr.dtype == np.uint64:  # torch's uint64 support is thin: the same bits as int64
            arr = arr.view(np.int64)
        arr = np.ascontiguousarray(arr)
        if not arr.flags.writeable:  # torch.from_numpy warns on read-only memory; it only reads it here
            arr = arr.copy()
        a = torch.from_numpy(arr)
    if dtype is not None and a.dtype != dtype:
        a = a.to(dtype)
    if a.device != device:
        a = a.to(device)
    return a if a.is_contiguous() else a.contiguous()


def float_dtype(*arrays):
    """torch.float32 if every floating input is float32, else torch.float64."""
    torch = _torch()
    kinds = []
    for a in arrays:
        if isinstance(a, torch.Tensor):
            if a.dtype.is_floating_point:
                kinds.append(a.dtype)
        else:
            arr = np.asarray(a)
            if arr.dtype.kind == "f":
                kinds.append(torch.float32 if arr.dtype.itemsize <= 4 else torch.float64)
    if kinds and all(k in (torch.float32, torch.float16, torch.bfloat16) for k in kinds):
        return torch.float32
    return torch.float64


def any_tensor(*arrays) -> bool:
    torch = _torch()
    return any(isinstance(a, torch.Tensor) for a in arrays)


def returned(outs, as_tensors: bool):
    """The launcher's outputs: tensors as they are, or numpy arrays for host callers
    (None entries stay None; tuples stay tuples)."""
    if as_tensors:
        return outs
    if isinstance(outs, tuple):
        return tuple(None if o is None else o.cpu().numpy() for o in outs)
    return outs.cpu().numpy()


def workspace(nbytes: int, device):
    """Scratch of ``nbytes`` on ``device`` (a uint8 tensor; keep it alive until the kernels
    that use it are done: the caching allocator orders its reuse on the stream)."""
    return _torch().empty(max(int(nbytes), 1), dtype=_torch().uint8, device=device)


class InPlace:
    """An argument the kernels update in place: ``.t`` is a contiguous tensor of ``dtype``
    on ``device``; ``done()`` copies it back into the caller's array if it is not that
    tensor itself (numpy arrays, non-contiguous views, other devices or dtypes)."""

    def __init__(self, a, device, dtype):
        torch = _torch()
        self.orig = a
        if isinstance(a, torch.Tensor):
            t = a if (a.device == device and a.dtype == dtype) else a.to(device=device, dtype=dtype)
            self.t = t if t.is_contiguous() else t.contiguous()
        else:
            arr = np.asarray(a)
            if not arr.flags.writeable:
                raise ValueError("an array the kernels update in place must be writeable")
            if arr.dtype == np.uint64:
                arr = arr.view(np.int64)
            self.t = torch.from_numpy(np.ascontiguousarray(arr)).to(device=device, dtype=dtype)

    def done(self):
        torch = _torch()
        if isinstance(self.orig, torch.Tensor):
            if self.t is not self.orig:
                self.orig.copy_(self.t)
            return
        host = self.t.cpu().numpy()
        if self.orig.dtype == np.uint64:
            host = host.view(np.uint64)
        np.copyto(self.orig, host, casting="unsafe")
