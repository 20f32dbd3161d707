"""CUDA launchers of the metrics family (csrc/cuda/metrics.cu): the names and parameters of
bigstep._backend.FAMILIES, torch CUDA tensors in; sums come back as Python floats (the
call waits for them), neighbours as tensors on the inputs' device (numpy arrays for host
inputs).
"""

from __future__ import annotations

from . import _common as c

__all__ = ["gaussian_kernel_sum", "mmd2", "nearest_neighbors"]


def _points(a, device, dtype, name):
    t = c.tensor(a, device, dtype)
    if t.dim() == 1:
        t = t.reshape(-1, 1)
    if t.dim() != 2 or t.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N, d) with d >= 1, got {tuple(t.shape)}")
    return t


def _sum_async(xt, yt, bandwidth, symmetric, device):
    """Enqueues the kernel sum; returns the (1,) float64 device tensor that will hold it."""
    torch = c._torch()
    out = torch.empty(1, dtype=torch.float64, device=device)
    n, m, d = xt.shape[0], yt.shape[0], xt.shape[1]
    nbytes = c.module().kernel_sum_workspace(n, m)
    ws = c.workspace(nbytes, device)
    c.module().gaussian_kernel_sum(c.dtype_name(xt), c.ptr(xt), n, c.ptr(yt), m, d, float(bandwidth),
                                   bool(symmetric), c.ptr(out), c.ptr(ws), nbytes, c.stream(device))
    return out, ws


def gaussian_kernel_sum(x, y, bandwidth, symmetric):
    """sum_{i,j} exp(-||x_i - y_j||^2 / (2 bandwidth^2)) in float64 (a Python float);
    symmetric: y is x (one triangle of tiles)."""
    device = c.device_of(x, y)
    dtype = c.float_dtype(x, y)
    xt = _points(x, device, dtype, "x")
    yt = xt if (symmetric and y is x) else _points(y, device, dtype, "y")
    if yt.shape[1] != xt.shape[1]:
        raise ValueError(f"y must have {xt.shape[1]} columns like x, got {yt.shape[1]}")
    if symmetric and yt is not xt:
        raise ValueError("symmetric sums need y to be x itself")
    with c.on(device):
        out, _ws = _sum_async(xt, yt, bandwidth, symmetric, device)
        return float(out.item())


def mmd2(a, b, bandwidth, unbiased):
    """Squared MMD with the Gaussian kernel from the three kernel sums (biased V- or
    unbiased U-statistic), a Python float."""
    device = c.device_of(a, b)
    dtype = c.float_dtype(a, b)
    at = _points(a, device, dtype, "a")
    bt = _points(b, device, dtype, "b")
    if bt.shape[1] != at.shape[1]:
        raise ValueError(f"b must have {at.shape[1]} columns like a, got {bt.shape[1]}")
    n, m = at.shape[0], bt.shape[0]
    need = 2 if unbiased else 1
    if n < need or m < need:
        raise ValueError(f"a and b need at least {need} points each, got {n} and {m}")
    with c.on(device):
        s_aa, w1 = _sum_async(at, at, bandwidth, True, device)
        s_bb, w2 = _sum_async(bt, bt, bandwidth, True, device)
        s_ab, w3 = _sum_async(at, bt, bandwidth, False, device)
        saa, sbb, sab = (float(v.item()) for v in (s_aa, s_bb, s_ab))
    cross = 2.0 * sab / (n * m)
    if unbiased:
        return (saa - n) / (n * (n - 1.0)) + (sbb - m) / (m * (m - 1.0)) - cross
    return saa / (n * n) + sbb / (m * m) - cross


def nearest_neighbors(samples, train, k):
    """(dist (n, k) in the inputs' dtype, idx (n, k) int64): the k nearest training points
    of each sample, ascending, ties to the lower index."""
    torch = c._torch()
    device = c.device_of(samples, train)
    dtype = c.float_dtype(samples, train)
    xt = _points(samples, device, dtype, "samples")
    yt = _points(train, device, dtype, "train")
    n, m, d = xt.shape[0], yt.shape[0], xt.shape[1]
    if yt.shape[1] != d:
        raise ValueError(f"train must have {d} columns like samples, got {yt.shape[1]}")
    k = int(k)
    if not 1 <= k <= m:
        raise ValueError(f"k must be between 1 and the number of training points {m}, got {k}")
    dist = torch.empty((n, k), dtype=dtype, device=device)
    idx = torch.empty((n, k), dtype=torch.int64, device=device)
    if n:
        with c.on(device):
            nbytes = c.module().nearest_neighbors_workspace(n, k)
            ws = c.workspace(nbytes, device)
            c.module().nearest_neighbors(c.dtype_name(xt), c.ptr(xt), n, c.ptr(yt), m, d, k, c.ptr(dist),
                                         c.ptr(idx), c.ptr(ws), nbytes, c.stream(device))
    return c.returned((dist, idx), c.any_tensor(samples, train))
