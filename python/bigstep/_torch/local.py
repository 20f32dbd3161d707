"""Local family in torch operations (the ``"torch"`` backend).

Same contract as bigstep._core and bigstep._numba.local: ``y`` (q, H, W, C) and ``x``
(n, H, W, C), n >= 1, tensors of one dtype (float32 or float64) on one device; ``mu``
and ``sigma`` of shape (1,) (broadcast) or (q,); ``rh``, ``rw`` the window half-widths;
``padding`` 0 (zeros) or 1 (reflect, rh <= H - 1 and rw <= W - 1); ``equivariant`` the
machine; ``what`` a bit mask (1 score, 4 posterior mean).  Returns (score, mean), each a
tensor of y's shape and dtype on y's device, or None unless asked for.

For a displacement t = v - u the patch distance

    D(u, i, u + t) = sum_{delta in [-rh, rh] x [-rw, rw]} sum_c (y(u + delta, c) - mu x_i(u + t + delta, c))^2

is a box sum over u of the per-pixel squared differences of the padded images: the
local machine is t = 0, the equivariant one runs every t in [-(H - 1), H - 1] x
[-(W - 1), W - 1], restricted to the pixels u with u + t inside the image.  The logit
is l = -D / (2 sigma^2) and E_u = sum w x_i(u + t).

Everything is computed in float64, whatever the input type: the differences y - mu x
with one rounding (float32 products are exact in float64; float64 products are split
exactly by Dekker's two-product), the squares and the box sums (nonnegative terms
only: no cancellation), the logits, the exps and the sums; the result is rounded to the
input type at the end.  Every pixel keeps an online softmax (its own running maximum
m, S = sum exp(l - m), A_c = sum exp(l - m) x_c); each chunk of terms is shifted by its
own per-pixel maximum and merged into the state by the exact log-sum-exp rule, never
normalised on its own.  Sums over a chunk are pairwise tree sums (``_common.tree_sum``),
so the bits do not depend on the thread count; the running sums S and A_c across chunks
are compensated (Neumaier), so thousands of merges (one per shift of the equivariant
machine) add no more than a few roundings.

Memory O(inputs + outputs + chunk): the states (q H W (C + 2) float64) and, per chunk
of training images, their padded copy and the chunk's temporaries (at most about
``_common.budget(device)`` elements each); the patch matrix is never formed.
"""

from __future__ import annotations

import torch

from ._common import F64, budget, tree_sum, two_product

__all__ = ["local_posterior_mean"]

_SCORE, _MEAN = 1, 4
_PAD_ZEROS, _PAD_REFLECT = 0, 1


def _effective_radius(r: int, n: int, padding: int) -> int:
    """Zero padding never needs a half-width beyond n - 1 (local.hpp effective_radius)."""
    return n - 1 if padding == _PAD_ZEROS and r > n - 1 else r


def _pad(a: torch.Tensor, rh: int, rw: int, padding: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H + 2 rh, W + 2 rw) with the padding rule: zeros, or mirrored
    about the edge pixel (torch's and numpy's "reflect")."""
    if rh == 0 and rw == 0:
        return a.contiguous()
    mode = "reflect" if padding == _PAD_REFLECT else "constant"
    return torch.nn.functional.pad(a, (rw, rw, rh, rh), mode=mode)


def _window_sums(e: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Sums of k + 1 consecutive entries of e along ``dim`` (length shrinks by k), from
    sums of 2^j entries built by doubling: O(log k) passes, nonnegative terms only."""
    length = k + 1
    out_len = e.shape[dim] - k
    result, offset, cur, width = None, 0, e, 1
    while True:
        if length & width:
            piece = cur.narrow(dim, offset, out_len)
            result = piece.clone() if result is None else result.add_(piece)
            offset += width
        if 2 * width > length:
            return result
        size = cur.shape[dim] - width
        cur = cur.narrow(dim, 0, size) + cur.narrow(dim, width, size)  # sums of 2 width entries
        width *= 2


def _add(total, comp, term):
    """total + term with Neumaier's compensation: total and comp (views) updated in place,
    the rounding error of each addition kept in comp."""
    t = total + term
    comp.add_(torch.where(total.abs() >= term.abs(), (total - t) + term, (term - t) + total))
    total.copy_(t)


def _merge(state, mc, sc, ac):
    """Folds the chunk states (mc, sc, ac) into ``state`` = (m, S, S's compensation, A, A's
    compensation) (views, updated in place) by the exact log-sum-exp rule: both rescaled
    to the larger maximum, the sums compensated (a pixel merges one chunk per shift and
    chunk of images: thousands for the equivariant machine)."""
    m, s, cs, acc, ca = state
    new = torch.maximum(m, mc)
    f1 = torch.exp(m - new)  # 0 for an empty state (m = -inf), exactly 1 while the maximum stays
    f2 = torch.exp(mc - new)
    for t, f in ((s, f1), (cs, f1), (acc, f1[:, None]), (ca, f1[:, None])):
        t.mul_(f)
    _add(s, cs, sc * f2)
    _add(acc, ca, ac * f2[:, None])
    m.copy_(new)


def local_posterior_mean(y, x, mu, sigma, rh, rw, padding, equivariant, what):
    """Local family (same contract as bigstep._core.local_posterior_mean).

    y (q, H, W, C), x (n, H, W, C), n >= 1, one dtype; mu and sigma (1,) or (q,); rh, rw
    the window half-widths; padding 0 (zeros) or 1 (reflect, rh <= H - 1, rw <= W - 1).
    Returns (score, mean), each of shape (q, H, W, C) or None unless asked for by ``what``
    (1 score, 4 mean).
    """
    what, padding, equivariant = int(what), int(padding), bool(equivariant)
    q, H, W, C = (int(s) for s in y.shape)
    n = int(x.shape[0])
    dev, T = y.device, y.dtype
    rh = _effective_radius(int(rh), H, padding)
    rw = _effective_radius(int(rw), W, padding)
    score = torch.empty(y.shape, dtype=T, device=dev) if what & _SCORE else None
    mean = torch.empty(y.shape, dtype=T, device=dev) if what & _MEAN else None
    if q == 0:
        return score, mean
    mu64 = mu.to(F64).expand(q)
    sig64 = sigma.to(F64).expand(q)
    scale = 0.5 / (sig64 * sig64)  # finite: checked by the public functions
    lowest = torch.finfo(F64).min  # logits are clamped here (never -inf: no -inf - -inf)
    Hp, Wp = H + 2 * rh, W + 2 * rw
    # chunks: Qc queries x Nc images of padded size, the largest temporaries of a step;
    # Nc a power of two below n (the tree sums over images then need no zero padding)
    unit = Hp * Wp * C
    pairs = max(1, budget(dev) // unit)
    Nc = n if n <= pairs else 1 << (pairs.bit_length() - 1)
    Qc = max(1, min(q, pairs // Nc))
    shared_mu = mu.shape[0] == 1  # mu x is then the same for every query
    yp_all = _pad(y.to(F64).permute(0, 3, 1, 2), rh, rw, padding)  # (q, C, Hp, Wp), O(inputs)
    m = torch.full((q, H, W), float("-inf"), dtype=F64, device=dev)
    s, cs = (torch.zeros((q, H, W), dtype=F64, device=dev) for _ in range(2))
    acc, ca = (torch.zeros((q, C, H, W), dtype=F64, device=dev) for _ in range(2))
    if equivariant:
        shifts = [(a, b) for a in range(-(H - 1), H) for b in range(-(W - 1), W)]
    else:
        shifts = [(0, 0)]
    for i0 in range(0, n, Nc):
        xc = x[i0:i0 + Nc].permute(0, 3, 1, 2)  # (Nc, C, H, W)
        xp = _pad(xc, rh, rw, padding)
        xv = xc.to(F64).contiguous()  # the centre values x_i(v)
        for j0 in range(0, q, Qc):
            j1 = min(q, j0 + Qc)
            if j0 == 0 or not shared_mu:  # mu x = px + ex exactly, (1 or Qc, Nc, C, Hp, Wp)
                muj = mu64[0:1] if shared_mu else mu64[j0:j1]
                if xp.dtype == F64:
                    px, ex = two_product(muj.reshape(-1, 1, 1, 1, 1), xp[None])
                else:  # float32 x float32 products are exact in float64
                    px, ex = muj.reshape(-1, 1, 1, 1, 1) * xp[None].to(F64), None
            yp = yp_all[j0:j1, None]  # (Qc, 1, C, Hp, Wp)
            scj = scale[j0:j1].reshape(-1, 1, 1, 1)
            for a, b in shifts:
                r0, c0 = max(0, -a), max(0, -b)
                h, w = min(H, H - a) - r0, min(W, W - b) - c0
                hh, ww = h + 2 * rh, w + 2 * rw  # padded rows r0 .. r0 + hh - 1 of y, shifted by (a, b) in x
                d = yp[..., r0:r0 + hh, c0:c0 + ww] - px[..., r0 + a:r0 + a + hh, c0 + b:c0 + b + ww]
                if ex is not None:
                    d -= ex[..., r0 + a:r0 + a + hh, c0 + b:c0 + b + ww]  # y - mu x, one rounding
                d.square_()
                e = d[:, :, 0]
                for c in range(1, C):
                    e = e + d[:, :, c]  # (Qc, Nc, hh, ww)
                del d
                logits = _window_sums(_window_sums(e, 2 * rh, 2), 2 * rw, 3)  # the patch distances D
                del e
                logits.mul_(-scj).clamp_(min=lowest)  # (Qc, Nc, h, w)
                mc = logits.amax(dim=1)  # each pixel's own maximum over the chunk
                p = logits.sub_(mc[:, None]).exp_()
                sc = tree_sum(p, 1)
                vals = xv[None, :, :, r0 + a:r0 + a + h, c0 + b:c0 + b + w]  # x_i(u + t), (1, Nc, C, h, w)
                ac = torch.stack([tree_sum(p * vals[:, :, c], 1) for c in range(C)], dim=1)  # (Qc, C, h, w)
                del p
                _merge([m[j0:j1, r0:r0 + h, c0:c0 + w], s[j0:j1, r0:r0 + h, c0:c0 + w],
                        cs[j0:j1, r0:r0 + h, c0:c0 + w], acc[j0:j1, :, r0:r0 + h, c0:c0 + w],
                        ca[j0:j1, :, r0:r0 + h, c0:c0 + w]], mc, sc, ac)
    e_mean = ((acc + ca) / (s + cs)[:, None]).permute(0, 2, 3, 1)  # float64 (q, H, W, C)
    if mean is not None:
        mean.copy_(e_mean)
    if score is not None:
        lv = mu64.reshape(-1, 1, 1, 1)
        sg = sig64.reshape(-1, 1, 1, 1)
        score.copy_((lv * e_mean - y.to(F64)) / (sg * sg))
    return score, mean
