"""torch.autograd for the s* family: gradients of optimal_score, log_density and
posterior_mean with respect to the queries y and the data x, by exact streaming
vector-Jacobian products (never a q x n buffer).

With w_i = softmax_i(-||y - mu x_i||^2 / (2 sigma^2)), m = E[W|y] = sum_i w_i x_i,
c = mu / sigma^2 and a cotangent g (one per query):

- posterior mean: g^T dm/dy = c E[(g.(W - m)) (W - m)]  (dm/dy = c Cov(W|y), symmetric; the
  kernel sums the centred form: E[(g.W) W] - (g.m) m would cancel where the weights are
  sharp, losing all digits of a covariance ~ exp(-1/sigma^2) at small sigma);
  g^T dm/dx_j = w_j (g + c (g.(x_j - m)) (y - mu x_j));
- s* = (mu m - y) / sigma^2: the mean's products with g' = c g, minus g / sigma^2 for y
  (ds*/dy = c^2 Cov(W|y) - I / sigma^2);
- log p (scalar g): d/dy = g s*(y),  d/dx_j = g w_j c (y - mu x_j).

The sums over queries and data points run in two backend kernels
(``optimal_score_vjp_y``, ``optimal_score_vjp_x`` of bigstep._backend.FAMILIES) in the
distance form of the logits, in float64 whatever the input dtype; the gradients are
returned in the inputs' dtypes.  mu and sigma are not differentiated (a tensor that
requires grad there is refused); second derivatives are not supported.
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend
from ._arrays import as_numpy, device_of, is_torch, writable_alias
from ._arrays import kind as array_kind

_SCORE, _LOGP, _MEAN = 1, 2, 4
_LOG_2PI = math.log(2.0 * math.pi)


def wants_graph(*arrays) -> bool:
    """True when a torch tensor among ``arrays`` requires grad and grad mode is on."""
    if not any(is_torch(a) and a.requires_grad for a in arrays):
        return False
    import torch

    return torch.is_grad_enabled()


def apply(kind: int, y, x, mu, sigma, backend: str, compute):
    """One output (``kind``: score, log-density or mean) of ``compute`` as a torch tensor
    with a graph to y and x.  ``compute(y, x, mu, sigma, what, backend)`` is the
    forward pass (bigstep.optimal_score._compute); it returns (outputs, backend used)."""
    import torch

    for name, v in (("mu", mu), ("sigma", sigma)):
        if is_torch(v) and v.requires_grad:
            raise TypeError(f"{name} requires grad, but the s* family is differentiated with respect to y and x "
                            f"only; pass {name}.detach()")
    return _Function.apply(_tensor(y, "y"), _tensor(x, "x"), kind, mu, sigma, backend, compute)


def _tensor(a, name: str):
    """``a`` as a torch tensor without a copy: device arrays through DLPack, host arrays
    through numpy (read-only ones, from DLPack or memory maps, as writeable aliases, which
    torch takes without a warning and this module never writes)."""
    import torch

    if is_torch(a):
        return a
    if array_kind(a) != "other" and device_of(a) != "cpu":
        return torch.from_dlpack(a)
    return torch.as_tensor(writable_alias(as_numpy(a, name)))


def _function():
    import torch

    class SStar(torch.autograd.Function):
        @staticmethod
        def forward(ctx, y, x, kind, mu, sigma, backend, compute):
            outs, used, levels = compute(y.detach(), x.detach(), mu, sigma, kind | _LOGP | _MEAN, backend)
            score, logp, mean = outs[0], outs[1], outs[2]
            ctx.kind, ctx.backend, ctx.levels = kind, used, levels
            ctx.save_for_backward(y.detach(), x.detach(), _as_tensor(mean, y), _as_tensor(logp, y))
            out = {_SCORE: score, _LOGP: logp, _MEAN: mean}[kind]
            return _as_tensor(out, y)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad):
            y, x, mean, logp = ctx.saved_tensors
            want_y, want_x = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            gy, gx = _vjp(ctx.kind, ctx.backend, ctx.levels, y, x, mean, logp, grad, want_y, want_x)
            return gy, gx, None, None, None, None, None

    return SStar


class _Lazy:
    """The torch.autograd.Function class, built on first use (importing torch lazily)."""

    _cls = None

    def apply(self, *args):
        if _Lazy._cls is None:
            _Lazy._cls = _function()
        return _Lazy._cls.apply(*args)


_Function = _Lazy()


def _as_tensor(a, like):
    import torch

    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    return t.to(device=like.device)


def _vjp(kind, backend, levels, y, x, mean, logp, grad, want_y, want_x):
    """(grad_y, grad_x) for the cotangent ``grad`` of output ``kind``.

    Queries whose cotangent is zero contribute nothing, whatever their value: a NaN query
    masked out of the loss leaves the data's gradient finite (the forward pass keeps NaN
    in its own row too)."""
    import torch

    f64 = torch.float64
    dev = y.device
    n = x.shape[0]
    d = 1 if x.ndim == 1 else x.shape[1]
    q = y.reshape(-1, d).shape[0]
    zero_y = torch.zeros_like(y) if want_y else None
    if q == 0:
        return zero_y, (torch.zeros_like(x) if want_x else None)
    g = grad.reshape(q, -1).to(f64)  # (q, d), or (q, 1) for log p
    live = (g != 0).any(1)
    idx = None if bool(live.all()) else live.nonzero().squeeze(1)

    def rows(t):  # float64, the live queries' rows of a per-query array (a shared level stays)
        t = torch.as_tensor(t, dtype=f64, device=dev)
        return t if idx is None or t.shape[0] != q else t[idx]

    y2, g, m = rows(y.reshape(q, d)), rows(g), rows(mean.reshape(q, d))
    mu, sigma, logp = rows(levels[0]).reshape(-1), rows(levels[1]).reshape(-1), rows(logp.reshape(q))
    ql = y2.shape[0]
    gx = torch.zeros((n, d), dtype=f64, device=dev) if want_x else None
    gy = torch.zeros((ql, d), dtype=f64, device=dev) if want_y else None
    if ql:
        gy, gx = _live_vjp(kind, backend, y2, x.reshape(n, d).to(f64), mu, sigma, m, logp, g, want_y, want_x)
    if want_y:
        if idx is not None:
            gy = torch.zeros((q, d), dtype=f64, device=dev).index_copy_(0, idx, gy)
        gy = gy.reshape(y.shape).to(y.dtype)
    if want_x:
        gx = gx.reshape(x.shape).to(x.dtype)
    return gy, gx


def _live_vjp(kind, backend, y2, x2, mu, sigma, m, logp, g, want_y, want_x):
    """The products for q queries y2 [q, d] (float64) with cotangents g [q, d] (or [q, 1]
    for log p), levels of shape (1,) or (q,), posterior means m [q, d], log-densities
    logp [q]: (grad_y [q, d], grad_x [n, d]), each None unless wanted."""
    q, d = y2.shape
    n = x2.shape[0]
    s2 = (sigma * sigma).expand(q)
    mu_q = mu.expand(q)
    c = mu_q / s2
    lse = logp + math.log(n) + 0.5 * d * (_LOG_2PI + s2.log())
    kernels = _backend.kernels("optimal_score", backend)
    run = _host_call if backend in ("cpp", "numba") else _device_call
    gy = gx = None
    if kind in (_MEAN, _SCORE):
        g_m = g * c[:, None] if kind == _SCORE else g  # the cotangent of the posterior mean
        if want_y:  # c Cov(W|y) g_m, the covariance centred in the kernel (no cancellation)
            gy = c[:, None] * run(kernels.optimal_score_vjp_y, y2, x2, mu, sigma, lse, m, g_m)
            if kind == _SCORE:
                gy = gy - g / s2[:, None]
        if want_x:
            gm = (g_m * m).sum(1)
            a = g_m - (c * gm)[:, None] * y2
            u = c[:, None] * y2
            gx = run(kernels.optimal_score_vjp_x, y2, x2, mu, sigma, lse, a, g_m, u, c * mu_q * gm, -c * mu_q)
    else:
        g = g.reshape(q)
        if want_y:
            gy = g[:, None] * (mu_q[:, None] * m - y2) / s2[:, None]
        if want_x:
            zeros = y2.new_zeros(y2.shape)
            gx = run(kernels.optimal_score_vjp_x, y2, x2, mu, sigma, lse, (g * c)[:, None] * y2, zeros, zeros,
                     -g * c * mu_q, g.new_zeros(q))
    return gy, gx


def _host_call(fn, *tensors):
    import torch

    arrays = [np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float64) for t in tensors]
    return torch.from_numpy(np.asarray(fn(*arrays)))


def _device_call(fn, *tensors):
    return fn(*(t.contiguous() for t in tensors))
