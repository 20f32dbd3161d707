"""Local and equivariant local denoisers: Numba mirror of the C++ kernels.

Mirrors csrc/include/bigstep/local.hpp (per-element math) and csrc/cpu/local_kernels.cpp
(launcher), with the same function name, parameters, outputs and dtypes.  For a query y
and training images x_1..x_n of shape (H, W, C), windows of half-widths (rh, rw) and a
noise level (mu, sigma), the patch distance and logit of the query window at pixel u and
the training window at pixel v are

    D = sum_delta sum_c (y(u + delta, c) - mu x_i(v + delta, c))^2,   l = -D / (2 sigma^2),

read through the padding rule (0: zeros, 1: reflect).  The local machine takes v = u,
the equivariant one every v; E_u = softmax-weighted mean of the x_i(v) and the score
(mu E - y) / sigma^2.

Algorithm, as in the C++: training images in blocks of _L, one per lane (the innermost
array axis, so that LLVM vectorises over it); for each block and shift t = v - u the
per-pixel squared differences e, vertical then horizontal box sums (each in order), and
every pixel's online softmax per lane, rescaled exactly when its maximum grows.  float32
states are folded into float64 every _FOLD_TERMS terms; lanes, then ranges of blocks,
are merged exactly at the end.  Memory: the packed data O(n Hp Wp C) and O(H W C _L)
per task; no patch matrix.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import jit
from ._fast_exp import exp_nonpos
from ._intrinsics import as_dtype_of

__all__ = ["local_posterior_mean"]

_SCORE, _MEAN = 1, 4
_PAD_ZEROS, _PAD_REFLECT = 0, 1
_L = 8  # training images per block, one per lane
_FOLD_TERMS = 256  # terms per lane and pixel summed in float32 before a fold into float64
_MIN_TASKS = 16  # (query, range of blocks) tasks: at least this many where the blocks allow
_BLOCKED_WINDOW = 25  # windows of at least this many pixels along an axis: blocked sums (kernels' kBlockedWindow)


def _sigs(template):
    """Explicit signatures for float64 and float32 from a template with {T} for the dtype."""
    return [template.format(T=t) for t in ("float64", "float32")]


@jit("int64(int64, int64, int64)")
def _pad_source(i, n, padding):
    """Source index of padded coordinate i of an axis of length n (local.hpp pad_source):
    i inside, its mirror image for reflect padding, -1 (a zero) for zero padding."""
    if 0 <= i < n:
        return i
    if padding != _PAD_REFLECT:
        return -1
    return -i if i < 0 else 2 * (n - 1) - i


@jit("int64(int64, int64, int64)")
def _effective_radius(r, n, padding):
    """local.hpp effective_radius: zero padding never needs more than n - 1."""
    return n - 1 if padding == _PAD_ZEROS and r > n - 1 else r


@jit("void(float64[::1], float64[::1])")
def _merge(dst, src):
    """Folds the state src = (m, S, A_0, ..) into dst exactly (local.hpp merge_states)."""
    if not src[1] > 0:
        return
    if not dst[1] > 0:
        dst[:] = src
        return
    if src[0] > dst[0]:
        f = math.exp(dst[0] - src[0])
        dst[1] = dst[1] * f + src[1]
        for c in range(2, dst.shape[0]):
            dst[c] = dst[c] * f + src[c]
        dst[0] = src[0]
    else:
        f = math.exp(src[0] - dst[0])
        dst[1] += src[1] * f
        for c in range(2, dst.shape[0]):
            dst[c] += src[c] * f


@jit(_sigs("void({T}[:, :, :, ::1], int64, int64, int64, {T}[:, :, :, :, ::1])"), parallel=True)
def _pack(x, ph, pw, padding, out):
    """out [blocks, Hp, Wp, C, _L]: lane k of block b holds image b _L + k padded by
    (ph, pw) with the padding rule (zero images past n)."""
    n, H, W, C = x.shape
    Hp, Wp = out.shape[1], out.shape[2]
    for b in numba.prange(out.shape[0]):
        for pr in range(Hp):
            sr = _pad_source(pr - ph, H, padding)
            for pc in range(Wp):
                sc = _pad_source(pc - pw, W, padding)
                for c in range(C):
                    for k in range(_L):
                        i = b * _L + k
                        out[b, pr, pc, c, k] = 0 if (sr < 0 or sc < 0 or i >= n) else x[i, sr, sc, c]


@jit(_sigs("void({T}[:, :, ::1], {T}[:, :, ::1], int64, int64, int64, int64, {T}[:, :, ::1], {T}[:, :, ::1], "
           "{T}[:, :, ::1])"))
def _box(e, v, h, w, kh, kw, out, pre, suf):
    """out[i, j] = sum_{a <= kh} sum_{b <= kw} e[i + a, j + b] (vectors of lanes) for i < h,
    j < w: vertical sums first (v), then horizontal ones.  Windows shorter than
    _BLOCKED_WINDOW add their terms in order; longer ones use prefix and suffix sums within
    blocks of the window's length (van Herk / Gil-Werman, O(1) additions per output), as
    the C++ does (blocked_sums); pre, suf: scratch of e's shape."""
    if kh + 1 >= _BLOCKED_WINDOW:
        B, N = kh + 1, h + kh
        for s0 in range(0, N, B):
            e0 = min(N, s0 + B)
            pre[s0, :w + kw] = e[s0, :w + kw]
            for t in range(s0 + 1, e0):
                for j in range(w + kw):
                    for k in range(_L):
                        pre[t, j, k] = pre[t - 1, j, k] + e[t, j, k]
            suf[e0 - 1, :w + kw] = e[e0 - 1, :w + kw]
            for t in range(e0 - 2, s0 - 1, -1):
                for j in range(w + kw):
                    for k in range(_L):
                        suf[t, j, k] = suf[t + 1, j, k] + e[t, j, k]
        for i in range(h):
            for j in range(w + kw):
                for k in range(_L):
                    v[i, j, k] = suf[i, j, k] if i % B == 0 else suf[i, j, k] + pre[i + kh, j, k]
    else:
        for i in range(h):
            for j in range(w + kw):
                for k in range(_L):
                    v[i, j, k] = e[i, j, k]
                for a in range(1, kh + 1):
                    for k in range(_L):
                        v[i, j, k] += e[i + a, j, k]
    for i in range(h):
        if kw + 1 >= _BLOCKED_WINDOW:
            B, N = kw + 1, w + kw
            for s0 in range(0, N, B):
                e0 = min(N, s0 + B)
                pre[0, s0] = v[i, s0]
                for t in range(s0 + 1, e0):
                    for k in range(_L):
                        pre[0, t, k] = pre[0, t - 1, k] + v[i, t, k]
                suf[0, e0 - 1] = v[i, e0 - 1]
                for t in range(e0 - 2, s0 - 1, -1):
                    for k in range(_L):
                        suf[0, t, k] = suf[0, t + 1, k] + v[i, t, k]
            for j in range(w):
                for k in range(_L):
                    out[i, j, k] = suf[0, j, k] if j % B == 0 else suf[0, j, k] + pre[0, j + kw, k]
        else:
            for j in range(w):
                for k in range(_L):
                    out[i, j, k] = v[i, j, k]
                for b in range(1, kw + 1):
                    for k in range(_L):
                        out[i, j, k] += v[i, j + b, k]


@jit(_sigs("void({T}[:, :, ::1], int64, int64, int64, int64, int64, {T}, {T}[::1], {T}[:, ::1], {T}[:, ::1], "
           "{T}[:, :, ::1], {T}[:, :, :, ::1], int64, int64)"), fastmath={"contract"})
def _push(d, r0, c0, h, w, W, scale, valid, m, s, acc, xb, xr0, xc0):
    """Pushes the logits l = -d[i, j] scale of output pixels u = (r0 + i) W + c0 + j into
    their states (m, s [H W, _L], acc [H W, C, _L]), with training values
    xb[xr0 + i, xc0 + j, :]: a lane's state is rescaled exactly when l exceeds its
    maximum, then p = exp(l - m) is added (lanes without an image: l = -inf)."""
    C = acc.shape[1]
    neg_inf = as_dtype_of(d, -np.inf)
    zero = as_dtype_of(d, 0.0)
    for i in range(h):
        for j in range(w):
            u = (r0 + i) * W + c0 + j
            for k in range(_L):
                lk = zero - d[i, j, k] * scale if valid[k] > zero else neg_inf
                mk = m[u, k]
                if lk > mk:
                    f = exp_nonpos(mk - lk)
                    m[u, k] = lk
                    s[u, k] *= f
                    for c in range(C):
                        acc[u, c, k] *= f
                    mk = lk
                p = exp_nonpos(lk - mk)
                s[u, k] += p
                for c in range(C):
                    acc[u, c, k] += p * xb[xr0 + i, xc0 + j, c, k]


@jit(_sigs("void({T}[:, ::1], {T}[:, ::1], {T}[:, :, ::1], float64[:, :, ::1], {T})"))
def _fold(m, s, acc, outer, lowest):
    """Folds the states (m, s, acc) into the float64 states outer [H W, _L, C + 2] and
    empties them (m = lowest, the most negative finite number)."""
    C = acc.shape[1]
    src = np.empty(C + 2)
    for u in range(m.shape[0]):
        for k in range(_L):
            src[0] = np.float64(m[u, k])
            src[1] = np.float64(s[u, k])
            for c in range(C):
                src[2 + c] = np.float64(acc[u, c, k])
            _merge(outer[u, k], src)
            m[u, k] = lowest
            s[u, k] = 0
            for c in range(C):
                acc[u, c, k] = 0


@jit(_sigs("void({T}[:, :, :, ::1], int64, {T}[:, :, :, :, ::1], int64, int64, int64, int64, int64, int64, "
           "boolean, {T}, {T}, {T}, int64, float64[:, ::1])"), fastmath={"contract"})
def _task(y, j, xb, b0, b1, n, rh, rw, padding, equivariant, mu, sigma, lowest, fold_terms, out):
    """Query j against the blocks b0 .. b1 - 1: the lane-merged states out [H W, C + 2].
    lowest: the dtype's most negative finite number (the empty state's maximum);
    fold_terms: terms per lane and pixel between folds into float64."""
    H, W, C = y.shape[1], y.shape[2], y.shape[3]
    ph = rh if equivariant else 0
    pw = rw if equivariant else 0
    Hp, Wp = H + 2 * ph, W + 2 * pw
    yp = np.zeros((Hp, Wp, C), y.dtype)  # the query, padded like the data
    for pr in range(Hp):
        sr = _pad_source(pr - ph, H, padding)
        for pc in range(Wp):
            sc = _pad_source(pc - pw, W, padding)
            if sr >= 0 and sc >= 0:
                for c in range(C):
                    yp[pr, pc, c] = y[j, sr, sc, c]
    e = np.zeros((H + 2 * rh, W + 2 * rw, _L), y.dtype)
    v = np.empty((H, W + 2 * rw, _L), y.dtype)
    pre = np.empty_like(e)
    suf = np.empty_like(e)
    d = np.empty((H, W, _L), y.dtype)
    m = np.empty((H * W, _L), y.dtype)
    s = np.zeros((H * W, _L), y.dtype)
    acc = np.zeros((H * W, C, _L), y.dtype)
    m[:] = lowest
    outer = np.zeros((H * W, _L, C + 2))
    outer[:, :, 0] = -np.inf
    scale = as_dtype_of(y, 0.5 / (np.float64(sigma) * np.float64(sigma)))
    valid = np.empty(_L, y.dtype)
    terms = 0
    for b in range(b0, b1):
        for k in range(_L):
            valid[k] = 1 if b * _L + k < n else 0
        xbb = xb[b]
        if not equivariant:
            for r in range(H):
                for c in range(W):
                    for k in range(_L):
                        dv = yp[r, c, 0] - mu * xbb[r, c, 0, k]
                        t = dv * dv
                        for ch in range(1, C):
                            dv = yp[r, c, ch] - mu * xbb[r, c, ch, k]
                            t += dv * dv
                        e[r + rh, c + rw, k] = t
            if padding == _PAD_REFLECT:  # y and x are mirrored alike at t = 0, so e is too
                for r in range(rh, H + rh):
                    for q in range(1, rw + 1):
                        for k in range(_L):
                            e[r, rw - q, k] = e[r, rw + q, k]
                            e[r, W - 1 + rw + q, k] = e[r, W - 1 + rw - q, k]
                for pr in range(H + 2 * rh):
                    if pr < rh or pr >= H + rh:
                        e[pr] = e[_pad_source(pr - rh, H, _PAD_REFLECT) + rh]
            _box(e, v, H, W, 2 * rh, 2 * rw, d, pre, suf)
            _push(d, 0, 0, H, W, W, scale, valid, m, s, acc, xbb, 0, 0)
            terms += 1
        else:
            for a in range(-(H - 1), H):
                r0 = max(0, -a)
                h = min(H, H - a) - r0
                for sh in range(-(W - 1), W):
                    c0 = max(0, -sh)
                    w = min(W, W - sh) - c0
                    for i in range(h + 2 * rh):
                        for jj in range(w + 2 * rw):
                            for k in range(_L):
                                dv = yp[r0 + i, c0 + jj, 0] - mu * xbb[r0 + i + a, c0 + jj + sh, 0, k]
                                t = dv * dv
                                for ch in range(1, C):
                                    dv = yp[r0 + i, c0 + jj, ch] - mu * xbb[r0 + i + a, c0 + jj + sh, ch, k]
                                    t += dv * dv
                                e[i, jj, k] = t
                    _box(e, v, h, w, 2 * rh, 2 * rw, d, pre, suf)
                    _push(d, r0, c0, h, w, W, scale, valid, m, s, acc, xbb, r0 + a + rh, c0 + sh + rw)
            terms += H * W
        if terms >= fold_terms:
            _fold(m, s, acc, outer, lowest)
            terms = 0
    _fold(m, s, acc, outer, lowest)
    for u in range(H * W):
        out[u, 0] = -np.inf
        out[u, 1:] = 0.0
        for k in range(_L):
            _merge(out[u], outer[u, k])


@jit(_sigs("void({T}[:, :, :, ::1], {T}[:, :, :, :, ::1], int64, int64, int64, int64, boolean, {T}[::1], "
           "{T}[::1], int64, {T}, int64, float64[:, :, :, ::1])"), parallel=True)
def _run(y, xb, n, rh, rw, padding, equivariant, mu, sigma, per_chunk, lowest, fold_terms, partial):
    """Every (query, range of blocks) task: partial [q, chunks, H W, C + 2]."""
    q, chunks = partial.shape[0], partial.shape[1]
    blocks = xb.shape[0]
    mu_stride = 0 if mu.shape[0] == 1 else 1
    sigma_stride = 0 if sigma.shape[0] == 1 else 1
    for t in numba.prange(q * chunks):
        j, k = t // chunks, t % chunks
        b0 = min(blocks, k * per_chunk)
        b1 = min(blocks, b0 + per_chunk)
        _task(y, j, xb, b0, b1, n, rh, rw, padding, equivariant, mu[j * mu_stride], sigma[j * sigma_stride],
              lowest, fold_terms, partial[j, k])


@jit("void(float64[:, :, :, ::1])")
def _merge_chunks(partial):
    """partial[j, 0] <- every partial[j, k] merged in order."""
    for j in range(partial.shape[0]):
        for k in range(1, partial.shape[1]):
            for u in range(partial.shape[2]):
                _merge(partial[j, 0, u], partial[j, k, u])


def local_posterior_mean(y, x, mu, sigma, rh, rw, padding, equivariant, what):
    """Local family (same contract as bigstep._core.local_posterior_mean).

    y (q, H, W, C), x (n, H, W, C), n >= 1, one dtype; mu and sigma (1,) or (q,); rh, rw
    the window half-widths; padding 0 (zeros) or 1 (reflect, rh <= H - 1, rw <= W - 1).
    Returns (score, mean), each of shape (q, H, W, C) or None unless asked for by ``what``
    (1 score, 4 mean).
    """
    what = int(what)
    padding = int(padding)
    equivariant = bool(equivariant)
    q, H, W, C = y.shape
    n = x.shape[0]
    rh = int(_effective_radius(int(rh), H, padding))
    rw = int(_effective_radius(int(rw), W, padding))
    score = np.empty(y.shape, y.dtype) if what & _SCORE else None
    mean = np.empty(y.shape, y.dtype) if what & _MEAN else None
    if q == 0:
        return score, mean
    ph, pw = (rh, rw) if equivariant else (0, 0)
    blocks = (n + _L - 1) // _L
    xb = np.empty((blocks, H + 2 * ph, W + 2 * pw, C, _L), x.dtype)
    _pack(x, ph, pw, padding, xb)
    chunks = 1 if q >= _MIN_TASKS else min(blocks, -(-_MIN_TASKS // q))
    per_chunk = -(-blocks // chunks)
    partial = np.empty((q, chunks, H * W, C + 2))
    lowest = y.dtype.type(np.finfo(y.dtype).min)
    fold_terms = _FOLD_TERMS if y.dtype == np.float32 else np.iinfo(np.int64).max
    _run(y, xb, n, rh, rw, padding, equivariant, mu, sigma, per_chunk, lowest, fold_terms, partial)
    _merge_chunks(partial)
    e = partial[:, 0, :, 2:] / partial[:, 0, :, 1:2]  # (q, H W, C)
    mu64 = mu.astype(np.float64).reshape(-1, 1, 1)
    s64 = sigma.astype(np.float64).reshape(-1, 1, 1)
    if mean is not None:
        mean[...] = e.reshape(y.shape)
    if score is not None:
        score[...] = ((mu64 * e - y.reshape(q, H * W, C)) / (s64 * s64)).reshape(y.shape)
    return score, mean
