"""The ``"torch"`` backend: every kernel family written in torch operations.

``bigstep._torch.<family>`` holds the kernels of one family, with exactly the function
and parameter names of ``bigstep._backend.FAMILIES[family]``.  They take torch tensors
(already checked by the public functions) and return torch tensors on the inputs'
device, whatever it is (CUDA, ROCm, MPS, CPU); work is chunked so that memory is
O(inputs + outputs + one chunk).  The public functions reach them through
``bigstep._backend.kernels(family, "torch")``; :mod:`bigstep._torch._api` holds the
device-array paths of the public functions (conversion to torch, validation on the
device, results back in the caller's array type).

This package must not import torch at import time: ``bigstep._backend`` looks its
modules up with ``importlib.util.find_spec`` to list the backend's families.
"""

from __future__ import annotations

DEVICE_BACKENDS = ("torch", "cuda")


def device_route(backend, named: dict) -> bool:
    """Whether a public call goes the device-array way: the backend is "torch" or
    "cuda", or it is "auto" and the arrays ``{name: array}`` live on a device.  Arrays
    on different devices raise ValueError naming both (``_arrays.common_device``).
    ``backend="cuda"`` with host arrays stays on the host path: the CUDA launchers take
    host arrays themselves (copied to the current device, numpy arrays back).  Invalid
    backend values return False (the host path reports them); ``backend="torch"`` where
    torch does not import raises the registry's ValueError."""
    if not isinstance(backend, str):
        return False
    if backend not in DEVICE_BACKENDS and backend != "auto":
        return False
    from .._arrays import common_device

    if backend == "torch":  # without torch the device path cannot even import: say so
        from .. import _backend

        _backend.resolve("torch")  # ValueError naming the backend, why, and what is available
    on_device = common_device(named) != "cpu"
    return on_device or backend == "torch"
