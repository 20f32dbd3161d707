"""Fused batched 1-D SGD trainer in torch operations (the ``"torch"`` backend).

``sgd_train(x, mu, sigma, lr, seed, w1, w2, b, batch, train_inner, clip, k0, k1,
diverged_step, loss_sum, loss_count)`` runs steps [k0, k1) of R networks of width m, as
bigstep._core.sgd_train (csrc/include/bigstep/sgd.hpp has the formulas), on the device
of the tensors: x (n,) float64; lr (R,) float64; seed (R,) int64 holding the uint64 seeds'
bits; w1, w2, b (R, m) float64, updated in place; diverged_step (R,) int64 (-1 while
training), loss_sum (R,) float64 and loss_count (R,) int64, updated in place.

Draws: step j, slot b of network r uses element j B + b of the Philox streams (seed_r,
3) (uniform: the data index) and (seed_r, 4) (normal: the noise), generated on the
device for a block of steps at once; the words are bit-identical to the CPU's, so every
backend trains on the same data.  Sums (the forward pass over neurons, the loss over the
batch, SA and SAY over the batch) are pairwise tree sums of elementwise additions
(``_common.tree_sum``): each network's arithmetic is the same whatever the number of
networks trained beside it, the chunking of the steps and the device's thread count (the
CPU backends add in another fixed order, so they agree to rounding).  A step whose batch
loss is not finite or above 1e16, or whose new parameters are not finite or above 1e8 in
absolute value, is refused and the network stops with diverged_step = j, as on the CPU.
Networks are trained in groups of at most ``_common.budget / (B m)`` at a time: memory
O(R m + budget).
"""

from __future__ import annotations

import torch

from .. import _streams as streams
from ..training._args import LOSS_LIMIT, PARAM_LIMIT
from ._common import F64, budget, tree_sum
from .random import normals, uniforms

__all__ = ["sgd_train"]


def _train_group(x, mu, sigma, lr, seed, w1, w2, bias, B, train_inner, clip, k0, k1, ds, ls, lc):
    """Steps [k0, k1) of one group of networks (all training at k0); returns the new
    (w1, w2, b, diverged_step, loss_sum, loss_count)."""
    rows, m = w1.shape
    n = x.shape[0]
    dev = x.device
    inv_s2 = 1.0 / (sigma * sigma)
    coef = (2.0 * lr / B)[:, None]
    alive = torch.ones(rows, dtype=torch.bool, device=dev)
    zero = torch.zeros((), dtype=F64, device=dev)
    block = max(1, min(k1 - k0, budget(dev) // max(1, 16 * rows * B)))  # steps whose draws are made at once
    for j0 in range(k0, k1, block):
        j1 = min(k1, j0 + block)
        u = uniforms(seed, streams.SGD_INDEX, j0 * B, (j1 - j0) * B, device=dev)
        z = normals(seed, streams.SGD_NOISE, j0 * B, (j1 - j0) * B, device=dev)
        i = (u * n).to(torch.int64).clamp_(max=n - 1)
        c = mu * x[i]
        y_all = c + sigma * z
        r_all = (y_all - c) * inv_s2
        for j in range(j0, j1):
            cols = slice((j - j0) * B, (j - j0 + 1) * B)
            y, r = y_all[:, cols], r_all[:, cols]
            pre = w1[:, None, :] * y[:, :, None] + bias[:, None, :]  # (rows, B, m)
            act = torch.where(pre > 0, pre, zero)
            f = tree_sum(w2[:, None, :] * act, -1) / m + r
            loss = tree_sum(f * f, 1) / B
            g = coef * f
            on = pre > 0
            sa = tree_sum(torch.where(on, g[:, :, None], zero), 1)
            say = tree_sum(torch.where(on, (g * y)[:, :, None], zero), 1)
            n2 = w2 - (w1 * say + bias * sa)
            if clip > 0:
                n2 = n2.clamp(-clip, clip)
            nb = bias - w2 * sa
            n1 = w1 - w2 * say if train_inner else w1
            big = torch.stack((n1.abs(), nb.abs(), n2.abs())).amax(dim=(0, 2))  # NaN if any is NaN
            ok = alive & (loss <= LOSS_LIMIT) & (big <= PARAM_LIMIT)
            ds = torch.where(alive & ~ok, j, ds)
            alive = ok
            keep = ok[:, None]
            w1 = torch.where(keep, n1, w1)
            w2 = torch.where(keep, n2, w2)
            bias = torch.where(keep, nb, bias)
            ls = ls + torch.where(ok, loss, zero)
            lc = lc + ok.to(lc.dtype)
    return w1, w2, bias, ds, ls, lc


def sgd_train(x, mu, sigma, lr, seed, w1, w2, b, batch, train_inner, clip, k0, k1, diverged_step, loss_sum,
              loss_count):
    """Same contract as bigstep._core.sgd_train on torch tensors: steps [k0, k1), the
    parameters and the per-network state updated in place."""
    k0, k1, B = int(k0), int(k1), int(batch)
    R, m = w1.shape
    if k1 <= k0 or R == 0:
        return
    active = torch.nonzero(diverged_step < 0).flatten()
    group = max(1, budget(x.device) // max(1, B * m))
    mu, sigma, clip = float(mu), float(sigma), float(clip)
    for g0 in range(0, active.numel(), group):
        idx = active[g0:g0 + group]
        out = _train_group(x, mu, sigma, lr[idx], seed[idx], w1[idx], w2[idx], b[idx], B, bool(train_inner), clip,
                           k0, k1, diverged_step[idx], loss_sum[idx], loss_count[idx])
        for dst, src in zip((w1, w2, b, diverged_step, loss_sum, loss_count), out):
            dst[idx] = src
