"""CUDA launcher of the batched 1-D SGD trainer (csrc/cuda/sgd.cu): the name and parameters
of bigstep._backend.FAMILIES["sgd"], the contract of bigstep._core.sgd_train.

Steps [k0, k1) of R networks, one thread block each; w1, w2, b (R, m) and diverged_step,
loss_sum, loss_count (R,) are updated in place (CUDA tensors, or host arrays copied to the
device and back); x (n,), lr (R,) and seed (R,) (uint64, or int64 holding the same bits)
may be host arrays.  Same draws and summation order as the CPU trainer: the results agree
with it up to rounding.
"""

from __future__ import annotations

import math

from . import _common as c

__all__ = ["sgd_train"]


def sgd_train(x, mu, sigma, lr, seed, w1, w2, b, batch, train_inner, clip, k0, k1, diverged_step, loss_sum,
              loss_count):
    """Fused SGD steps [k0, k1) for R networks (parameters and state updated in place)."""
    torch = c._torch()
    device = c.device_of(x, lr, seed, w1, w2, b, diverged_step, loss_sum, loss_count)
    xt = c.tensor(x, device, torch.float64).reshape(-1)
    lrt = c.tensor(lr, device, torch.float64).reshape(-1)
    seedt = c.tensor(seed, device, torch.int64).reshape(-1)
    params = [c.InPlace(a, device, torch.float64) for a in (w1, w2, b)]
    div = c.InPlace(diverged_step, device, torch.int64)
    lsum = c.InPlace(loss_sum, device, torch.float64)
    lcount = c.InPlace(loss_count, device, torch.int64)
    R = lrt.shape[0]
    if params[0].t.dim() != 2:
        raise ValueError(f"w1 must have shape (R, m), got {tuple(params[0].t.shape)}")
    m = params[0].t.shape[1]
    for name, p in zip(("w1", "w2", "b"), params):
        if tuple(p.t.shape) != (R, m):
            raise ValueError(f"w1, w2, b must have shape ({R}, {m}), got {name} of shape {tuple(p.t.shape)}")
    for name, t in (("seed", seedt), ("diverged_step", div.t), ("loss_sum", lsum.t), ("loss_count", lcount.t)):
        if tuple(t.shape) != (R,):
            raise ValueError(f"{name} must have {R} entries like lr, got shape {tuple(t.shape)}")
    if xt.shape[0] < 1:
        raise ValueError("x must have at least one point")
    if not bool(torch.all((lrt > 0) & torch.isfinite(lrt))):
        raise ValueError("lr entries must be positive and finite")
    if not math.isfinite(float(clip)):
        raise ValueError(f"clip must be finite (<= 0: no clipping), got {clip}")
    k0, k1, batch = int(k0), int(k1), int(batch)
    if R and k1 > k0:
        with c.on(device):
            nbytes = c.module().sgd_workspace(R, m, batch)
            ws = c.workspace(nbytes, device)
            c.module().sgd_train(c.ptr(xt), xt.shape[0], float(mu), float(sigma), R, m, batch, c.ptr(lrt),
                                 c.ptr(seedt), c.ptr(params[0].t), c.ptr(params[1].t), c.ptr(params[2].t),
                                 bool(train_inner), float(clip), k0, k1, c.ptr(div.t), c.ptr(lsum.t),
                                 c.ptr(lcount.t), c.ptr(ws), nbytes, c.stream(device))
    for p in (*params, div, lsum, lcount):
        p.done()
