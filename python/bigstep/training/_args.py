"""Limits and argument checks shared by the trainers."""

from __future__ import annotations

import numpy as np

from .._validate import integer

PARAM_LIMIT = 1e8  # |theta| above this counts as a blow-up (as csrc/include/bigstep/sgd.hpp)
LOSS_LIMIT = 1e16  # batch loss (SGD) or risk (GD) above this counts as a blow-up


def torch_module():
    try:
        import torch
    except ImportError:
        raise ImportError("bigstep's d-D trainers need PyTorch: pip install bigstep[torch]") from None
    return torch


def check_device(torch, device):
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string or a torch.device, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device; use device='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return dev


def check_dtype(torch, dtype):
    names = {"float32": torch.float32, "float64": torch.float64}
    if isinstance(dtype, str) and dtype in names:
        return names[dtype]
    if dtype in (torch.float32, torch.float64):
        return dtype
    try:
        npd = np.dtype(dtype)
    except TypeError:
        npd = None
    if npd == np.float32:
        return torch.float32
    if npd == np.float64:
        return torch.float64
    raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")


def check_record_every(value):
    if value is None:
        return None
    return integer(value, "record_every", minimum=1)
