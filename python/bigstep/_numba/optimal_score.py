"""Empirical optimal score family: Numba mirror of the C++ kernels.

Mirrors csrc/include/bigstep/optimal_score.hpp (per-element math),
csrc/cpu/optimal_score_1d_kernels.cpp and csrc/cpu/optimal_score_nd_*.cpp
(launchers), with the same outputs, dtypes and NaN handling.  Weights

    w_i(y) = softmax_i( -||y - mu x_i||^2 / (2 sigma^2) ),
    s*(y) = (mu sum_i w_i x_i - y) / sigma^2,   E[W|y] = sum_i w_i x_i,
    log p(y) = log( (1/n) sum_i N(y; mu x_i, sigma^2 I) ).

Called by bigstep.optimal_score with C-contiguous arrays of one dtype (float32 or
float64), mu and sigma of shape (1,) (broadcast) or (q,), and a bit mask ``what``
(1 score, 2 log-density, 4 posterior mean, 8 derivatives); outputs not asked for
are None.  Memory O(inputs + outputs): no q x n temporaries.

Floating-point flags: everything is compiled without fast-math except two narrow
overrides that mirror what the C++ build does.  Loops that only add terms into a sum
get ``reassoc`` so LLVM can keep the sum in vector lanes (the C++ sums in explicit
vector lanes); the polynomial exp and the small matrix products get ``contract`` so
a * b + c may become one FMA (GCC's default -ffp-contract=fast on the FMA builds).
The exp's rounding trick ((x + magic) - magic) lives in a function without
``reassoc``, so it is never folded away.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import jit
from ._fast_exp import exp_nonpos
from ._intrinsics import as_dtype_of, fma

__all__ = ["optimal_score_1d", "optimal_score_nd", "optimal_score_vjp_y", "optimal_score_vjp_x"]

_SCORE, _LOGP, _MEAN, _DERIV = 1, 2, 4, 8
_LOG_SQRT_2PI = 0.91893853320467274178  # log(2 pi) / 2
_BLOCK_1D = 512  # terms summed in the input type before they are added to the double sums


def _sigs(template):
    """Explicit signatures for float64 and float32 from a template with {T} for the dtype."""
    return [template.format(T=t) for t in ("float64", "float32")]


# ----------------------------------------------------------------------------------
# 1-D: shifted logits about the nearest data point, window of non-underflowing terms
# ----------------------------------------------------------------------------------
#
# With x_s the data point nearest to y/mu, u_i = x_i - x_s, e = y - mu x_s,
# a_i = (mu/sigma) u_i and e' = e/sigma, the logits shifted by the largest one are
#   l_i = -((e - mu u_i)^2 - e^2) / (2 sigma^2) = a_i (e' - a_i / 2) <= 0,
# a product of well-conditioned factors.  Terms with l_i below the exp underflow
# threshold L are skipped by a window |y - mu x_i| <= sqrt(2 sigma^2 L + e^2) found by
# binary search.  Moments are taken about x_s (S_j = sum_i exp(l_i) u_i^j).


@jit(_sigs("int64({T}[::1], int64, int64, {T})"))
def _lower_bound(x, lo, hi, key):
    """First k in [lo, hi) with not (x[k] < key), else hi (std::lower_bound)."""
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if x[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@jit(_sigs("int64({T}[::1], int64, int64, {T})"))
def _upper_bound(x, lo, hi, key):
    """First k in [lo, hi) with key < x[k], else hi (std::upper_bound)."""
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if key < x[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@jit(_sigs("UniTuple({T}, 4)({T}[::1], int64, int64, {T}, {T}, {T})"), fastmath={"reassoc", "contract"})
def _block_sums_moments(x, start, stop, xs, r, es):
    """sum p_i u_i^j, j = 0..3, over start <= i < stop in the input type T, with
    u_i = x_i - x_s, p_i = exp(l_i), l_i = a_i (e' - a_i/2), a_i = r u_i
    (shifted_logit_1d and window_sums in the C++)."""
    half = as_dtype_of(x, 0.5)
    s0 = as_dtype_of(x, 0.0)
    s1 = s0
    s2 = s0
    s3 = s0
    xw = x[start:stop]  # indices from 0: no negative-index wraparound, so the loop vectorises
    for i in range(xw.shape[0]):
        u = xw[i] - xs
        a = r * u
        p = exp_nonpos(a * (es - half * a))
        pu = p * u
        s0 += p
        s1 += pu
        s2 += pu * u
        s3 += pu * u * u
    return s0, s1, s2, s3


@jit(_sigs("UniTuple({T}, 2)({T}[::1], int64, int64, {T}, {T}, {T})"), fastmath={"reassoc", "contract"})
def _block_sums(x, start, stop, xs, r, es):
    """sum p_i and sum p_i u_i over start <= i < stop (see _block_sums_moments)."""
    half = as_dtype_of(x, 0.5)
    s0 = as_dtype_of(x, 0.0)
    s1 = s0
    xw = x[start:stop]
    for i in range(xw.shape[0]):
        u = xw[i] - xs
        a = r * u
        p = exp_nonpos(a * (es - half * a))
        s0 += p
        s1 += p * u
    return s0, s1


@jit(_sigs("UniTuple(float64, 4)({T}[::1], int64, int64, {T}, {T}, {T}, boolean)"))
def _window_sums(x, lo, hi, xs, r, es, moments):
    """S_0..S_3 over the window lo <= i < hi, in double: blocks of 512 terms are summed
    in the input type (vector lanes), then added to the double sums.  float32 flushes
    every 512 terms as the C++ does; float64 too, which keeps the rounding error of the
    lane sums at or below that of the C++ (one block of 4 vectors of lanes there)."""
    s0 = s1 = s2 = s3 = 0.0
    for start in range(lo, hi, _BLOCK_1D):
        stop = min(hi, start + _BLOCK_1D)
        if moments:
            b0, b1, b2, b3 = _block_sums_moments(x, start, stop, xs, r, es)
            s2 += np.float64(b2)
            s3 += np.float64(b3)
        else:
            b0, b1 = _block_sums(x, start, stop, xs, r, es)
        s0 += np.float64(b0)
        s1 += np.float64(b1)
    return s0, s1, s2, s3


@jit("UniTuple(float64, 5)(float64, float64, float64, float64, float64, float64, float64, float64, float64)")
def _finish_1d(s0, s1, s2, s3, xs, e, mu, sigma, log_n):
    """Every output from the sums of one query (finish_1d), log-density already minus log n:
      E[W] = x_s + m1, s* = (mu m1 - e)/sigma^2, log p = log S0 - e^2/(2 sigma^2)
      - log sigma - log(2 pi)/2 - log n, s*' = (-1 + mu^2 Var W/sigma^2)/sigma^2,
      s*'' = mu^3 M3/sigma^6, with m_j = S_j/S0, Var W = m2 - m1^2,
      M3 = m3 - 3 m1 m2 + 2 m1^3."""
    inv_s2 = 1.0 / (sigma * sigma)
    m1 = s1 / s0
    mean = xs + m1
    score = (mu * m1 - e) * inv_s2
    log_density = math.log(s0) - 0.5 * e * e * inv_s2 - math.log(sigma) - _LOG_SQRT_2PI
    m2 = s2 / s0
    m3 = s3 / s0
    var = m2 - m1 * m1
    third = m3 - 3.0 * m1 * m2 + 2.0 * m1 * m1 * m1
    d1 = (-1.0 + mu * mu * var * inv_s2) * inv_s2
    d2 = mu * mu * mu * third * inv_s2 * inv_s2 * inv_s2
    return score, log_density - log_n, mean, d1, d2


@jit(_sigs("Tuple((float64, float64, int64, int64))({T}, {T}[::1], float64, float64)"))
def _setup_1d(y_t, x, mu, sigma):
    """Everything one finite query needs before the sums (setup in the C++):
    (x_s, e, lo, hi) with x_s the data point nearest to y/mu, e = y - mu x_s (one
    rounding) and [lo, hi) the window |y - mu x_i| <= sqrt(2 sigma^2 L + e^2) of the
    terms that do not underflow in the input type (L = 104 float32, 745.5 float64)."""
    y = np.float64(y_t)
    n = x.shape[0]
    z = y / mu
    s = _lower_bound(x, 0, n, as_dtype_of(x, z))
    if s == n or (s > 0 and abs(z - np.float64(x[s - 1])) <= abs(np.float64(x[s]) - z)):
        s -= 1
    xs = np.float64(x[s])
    e = fma(-mu, xs, y)
    big_l = 104.0 if x.itemsize == 4 else 745.5  # underflow_logit<T>()
    radius = math.sqrt(2.0 * sigma * sigma * big_l + e * e)
    lo = min(_lower_bound(x, 0, s, as_dtype_of(x, (y - radius) / mu)), s)
    hi = max(_upper_bound(x, s, n, as_dtype_of(x, (y + radius) / mu)), s + 1)
    return xs, e, lo, hi


# Cache blocking (as the C++): queries are processed in order of y/mu, in groups of
# _GROUP; a group walks the union of its windows in chunks of _CHUNK data points that
# stay in L1 while every query of the group uses them.
_GROUP = 8
_CHUNK = 2048

# columns of the per-group query table: the scalars of setup (x_s, e), the noise level
# and the running sums S_0..S_3
_Q_MU, _Q_SIGMA, _Q_XS, _Q_E, _Q_S0, _Q_S1, _Q_S2, _Q_S3 = range(8)


@jit(_sigs("void({T}[::1], {T}[::1], {T}[::1], {T}[::1], int64, int64[::1], "
           "{T}[::1], {T}[::1], {T}[::1], {T}[::1], {T}[::1])"), parallel=True)
def _optimal_score_1d(y, x, mu, sigma, what, order, score, log_density, mean, d1, d2):
    """Fills the asked-for outputs (arrays of length q; the others have length 0);
    ``order`` lists the queries by increasing y/mu."""
    q = y.shape[0]
    n = x.shape[0]
    mu_stride = 0 if mu.shape[0] == 1 else 1
    sigma_stride = 0 if sigma.shape[0] == 1 else 1
    moments = (what & _DERIV) != 0
    log_n = math.log(np.float64(n))
    for g in numba.prange((q + _GROUP - 1) // _GROUP):
        g0 = g * _GROUP
        gn = min(_GROUP, q - g0)
        qs = np.zeros((_GROUP, 8))
        window = np.zeros((_GROUP, 2), np.int64)  # [lo, hi) per query; empty if not finite
        lo = n  # union of the group's windows
        hi = 0
        for k in range(gn):
            i = order[g0 + k]
            qs[k, _Q_MU] = np.float64(mu[i * mu_stride])
            qs[k, _Q_SIGMA] = np.float64(sigma[i * sigma_stride])
            if math.isfinite(np.float64(y[i])):
                xs, e, qlo, qhi = _setup_1d(y[i], x, qs[k, _Q_MU], qs[k, _Q_SIGMA])
                qs[k, _Q_XS] = xs
                qs[k, _Q_E] = e
                window[k, 0] = qlo
                window[k, 1] = qhi
                lo = min(lo, qlo)
                hi = max(hi, qhi)
        for c in range(lo // _CHUNK * _CHUNK, hi, _CHUNK):  # aligned: results independent of the group
            c_end = min(hi, c + _CHUNK)
            for k in range(gn):
                a = max(c, window[k, 0])
                b = min(c_end, window[k, 1])
                if a >= b:
                    continue
                mu_k = qs[k, _Q_MU]
                sigma_k = qs[k, _Q_SIGMA]
                s0, s1, s2, s3 = _window_sums(x, a, b, as_dtype_of(x, qs[k, _Q_XS]), as_dtype_of(x, mu_k / sigma_k),
                                              as_dtype_of(x, qs[k, _Q_E] / sigma_k), moments)
                qs[k, _Q_S0] += s0
                qs[k, _Q_S1] += s1
                qs[k, _Q_S2] += s2
                qs[k, _Q_S3] += s3
        for k in range(gn):
            i = order[g0 + k]
            if window[k, 1] > window[k, 0]:  # finite query (its window holds at least x_s)
                r = _finish_1d(qs[k, _Q_S0], qs[k, _Q_S1], qs[k, _Q_S2], qs[k, _Q_S3], qs[k, _Q_XS], qs[k, _Q_E],
                               qs[k, _Q_MU], qs[k, _Q_SIGMA], log_n)
            else:  # NaN (or infinite) queries give NaN in their row only
                r = (np.nan, np.nan, np.nan, np.nan, np.nan)
            if what & (_SCORE | _DERIV):
                score[i] = r[0]
            if what & _LOGP:
                log_density[i] = r[1]
            if what & _MEAN:
                mean[i] = r[2]
            if what & _DERIV:
                d1[i] = r[3]
                d2[i] = r[4]


def optimal_score_1d(y, x_sorted, mu, sigma, what):
    """1-D optimal-score family on sorted data (same contract as bigstep._core).

    y (q,), x_sorted (n,) ascending, n >= 1, mu and sigma (1,) or (q,), one dtype.
    Returns (score, log_density, mean, d1, d2), each (q,) or None unless asked for by
    ``what`` (score is also returned with the derivatives).
    """
    what = int(what)
    q = y.shape[0]
    want = (bool(what & (_SCORE | _DERIV)), bool(what & _LOGP), bool(what & _MEAN),
            bool(what & _DERIV), bool(what & _DERIV))
    outs = [np.empty(q if w else 0, dtype=y.dtype) for w in want]
    with np.errstate(all="ignore"):  # NaN keys (NaN queries) sort last, as in the C++
        key = y.astype(np.float64) / mu.astype(np.float64)
    order = np.argsort(np.where(np.isnan(key), np.inf, key), kind="stable").astype(np.int64)
    _optimal_score_1d(y, x_sorted, mu, sigma, what, order, *outs)
    return tuple(o if w else None for o, w in zip(outs, want))


# ----------------------------------------------------------------------------------
# d-D: flash-attention scheme with GEMM-form logits and an online log-sum-exp
# ----------------------------------------------------------------------------------
#
# Queries in tiles of QB rows, data in tiles of NB points.  For each pair of tiles:
#   G = Y X^T                    (sums over k in order, vectorised over data points)
#   l_ij = a_i G_ij - c_i ||x_j||^2,  a_i = mu_i / sigma_i^2, c_i = mu_i^2 / (2 sigma_i^2)
#   online softmax per query: running max m_i, S_i = sum_j exp(l_ij - m_i), rescaled
#   when m_i grows
#   Acc += P X                   (vectorised over coordinates)
# The query's constant -||y_i||^2 / (2 sigma_i^2) is added back for the log-density.
# A is the type products and sums are formed in: double for float64 inputs; for
# float32 inputs float when the GEMM-form logits are accurate enough
# (_float_logits_accurate), double otherwise.  Memory: the data packed once in A
# (O(n d)) and O(QB (NB + d)) per tile; nothing of size q x n.

_QB = 64  # queries per tile
_NB = 128  # data points per tile
_DOT_MAX_D = 16  # Acc += P X as dot products up to this d, as vector updates of Acc rows above

_ND_PAIRS = (("float64", "float64"), ("float32", "float32"), ("float32", "float64"))  # (T, A)


def _nd_sigs(template):
    """Signatures for the (input type T, accumulation type A) pairs the launcher uses."""
    return [template.format(T=t, A=a) for t, a in _ND_PAIRS]


def _a_sigs(template):
    """Signatures for the accumulation types A."""
    return [template.format(A=a) for a in ("float64", "float32")]


@jit(_nd_sigs("void({T}[:, ::1], {A}[:, :, ::1], {A}[:, ::1], {A}[::1])"))
def _pack(x, xt, rows, norm2):
    """Data in type A: rows [n, d], per tile of nb = xt.shape[2] points (NB, or n if
    smaller) its transpose xt [tiles, d, nb] (pad entries 0), and ||x_j||^2 formed in
    double from the A values, rounded once (norm2 [tiles * nb], pad entries 0)."""
    n, d = x.shape
    nb = xt.shape[2]
    for t in range(xt.shape[0]):
        for j in range(t * nb, min(n, (t + 1) * nb)):
            s = 0.0
            for k in range(d):
                v = as_dtype_of(rows, x[j, k])
                rows[j, k] = v
                xt[t, k, j - t * nb] = v
                s += np.float64(v) * np.float64(v)
            norm2[j] = s


@jit(_a_sigs("void({A}[:, ::1], {A}[:, :, ::1], int64, int64, {A}[:, ::1])"), fastmath={"contract"})
def _gemm_yxt(yt, xt, t, qn, g):
    """G[i, j] = sum_k Y[i, k] X[j, k] for the rows i < qn of the query tile and the nb
    points of data tile t, summed over k in order (vectorised over j)."""
    d = yt.shape[1]
    nb = xt.shape[2]
    xtt = xt[t]
    for i in range(qn):
        gi = g[i]
        for j in range(nb):
            gi[j] = 0
        for k in range(d):
            yik = yt[i, k]
            xk = xtt[k]
            for j in range(nb):
                gi[j] += yik * xk[j]


@jit(_a_sigs("void({A}[:, ::1], {A}[:, ::1], int64, int64, int64, {A}[:, ::1])"), fastmath={"contract"})
def _gemm_px(g, rows, j0, jn, qn, acc):
    """Acc[i, k] += sum_j P[i, j] X[j0 + j, k] for i < qn, j < jn, summed over j in order
    (vectorised over k; the faster form for large d)."""
    d = rows.shape[1]
    for i in range(qn):
        gi = g[i]
        acci = acc[i]
        for j in range(jn):
            p = gi[j]
            xj = rows[j0 + j]
            for k in range(d):
                acci[k] += p * xj[k]


@jit(_a_sigs("{A}({A}[::1], {A}[::1], int64)"), fastmath={"reassoc", "contract"})
def _dot(a, b, n):
    """sum_{j < n} a[j] b[j], in vector lanes."""
    s = as_dtype_of(a, 0.0)
    for j in range(n):
        s += a[j] * b[j]
    return s


@jit(_a_sigs("void({A}[:, ::1], {A}[:, :, ::1], int64, int64, int64, {A}[:, ::1])"))
def _gemm_px_dot(g, xt, t, jn, qn, acc):
    """Acc[i, k] += sum_j P[i, j] X[j, k] for i < qn, j < jn as one dot product per
    (i, k) with the transposed data tile t, summed in vector lanes (the faster form for
    small d, where a loop over k is too short to vectorise)."""
    d = acc.shape[1]
    xtt = xt[t]
    for i in range(qn):
        gi = g[i]
        for k in range(d):
            acc[i, k] += _dot(gi, xtt[k], jn)


@jit(_a_sigs("void({A}[::1], {A}[::1], int64, {A}, {A})"), fastmath={"contract"})
def _logits(gi, norm2, j0, a, c):
    """l_j = a G_j - c ||x_j||^2 in place for the nb points of the tile at j0 (gemm_logit)."""
    nt = norm2[j0:j0 + gi.shape[0]]  # indices from 0: no negative-index wraparound, so the loop vectorises
    for j in range(gi.shape[0]):
        gi[j] = a * gi[j] - c * nt[j]


@jit(_a_sigs("{A}({A}[::1], int64)"))
def _row_max(gi, jn):
    """max_j gi[j] over j < jn, comparing as the C++ does (NaN entries are skipped);
    -inf if no entry is larger."""
    best = as_dtype_of(gi, -np.inf)
    for j in range(jn):
        v = gi[j]
        best = v if v > best else best
    return best


@jit(_a_sigs("void({A}[::1], {A})"))
def _exp_shifted(gi, shift):
    """gi[j] = exp(gi[j] - shift) (exp_nonpos: every argument is <= 0)."""
    for j in range(gi.shape[0]):
        gi[j] = exp_nonpos(gi[j] - shift)


@jit(_a_sigs("{A}({A}[::1])"), fastmath={"reassoc", "contract"})
def _row_sum(gi):
    """sum_j gi[j] in A, in vector lanes like the C++."""
    s = as_dtype_of(gi, 0.0)
    for j in range(gi.shape[0]):
        s += gi[j]
    return s


@jit(_nd_sigs("void({T}[:, ::1], int64, int64, {A}[:, :, ::1], {A}[:, ::1], {A}[::1], {T}[::1], {T}[::1], "
              "int64, {T}[:, ::1], {T}[::1], {T}[:, ::1])"))
def _query_tile(y, q0, qn, xt, rows, norm2, mu, sigma, what, score, log_density, mean):
    """All outputs for the queries q0 .. q0 + qn - 1 against all data (query_tile)."""
    n, d = rows.shape
    nb = xt.shape[2]
    mu_stride = 0 if mu.shape[0] == 1 else 1
    sigma_stride = 0 if sigma.shape[0] == 1 else 1
    yt = np.zeros((qn, d), rows.dtype)  # qn <= QB rows: O(q d) memory for small q
    g = np.zeros((qn, nb), rows.dtype)
    acc = np.zeros((qn, d), rows.dtype)
    m = np.full(_QB, -np.inf)
    s0 = np.zeros(_QB)
    a = np.zeros(_QB, rows.dtype)
    c = np.zeros(_QB, rows.dtype)
    bad = np.zeros(_QB, np.bool_)
    for i in range(qn):
        mui = np.float64(mu[(q0 + i) * mu_stride])
        si = np.float64(sigma[(q0 + i) * sigma_stride])
        a[i] = mui / (si * si)
        c[i] = mui * mui / (2.0 * si * si)
        for k in range(d):
            v = np.float64(y[q0 + i, k])
            yt[i, k] = v
            bad[i] = bad[i] or not math.isfinite(v)
    for t in range(xt.shape[0]):
        j0 = t * nb
        jn = min(nb, n - j0)
        _gemm_yxt(yt, xt, t, qn, g)
        for i in range(qn):  # logits and online softmax, row by row
            gi = g[i]
            _logits(gi, norm2, j0, a[i], c[i])
            tile_max = np.float64(_row_max(gi, jn))
            if not tile_max > -np.inf:  # NaN/inf rows: made NaN at the end
                tile_max = 0.0
            new_m = tile_max if m[i] < tile_max else m[i]
            _exp_shifted(gi, as_dtype_of(gi, new_m))
            for j in range(jn, nb):  # pad points carry no weight
                gi[j] = 0
            tile_sum = np.float64(_row_sum(gi))
            if new_m > m[i]:
                scale = math.exp(m[i] - new_m)
                s0[i] *= scale
                for k in range(d):
                    acc[i, k] = acc[i, k] * scale
                m[i] = new_m
            s0[i] += tile_sum
        if d <= _DOT_MAX_D:
            _gemm_px_dot(g, xt, t, jn, qn, acc)
        else:
            _gemm_px(g, rows, j0, jn, qn, acc)
    log_n = math.log(np.float64(n))
    for i in range(qn):
        row = q0 + i
        mui = np.float64(mu[row * mu_stride])
        si = np.float64(sigma[row * sigma_stride])
        if what & _LOGP:
            if bad[i]:
                log_density[row] = np.nan
            else:
                ynorm2 = 0.0
                for k in range(d):
                    ynorm2 += np.float64(y[row, k]) * np.float64(y[row, k])
                lse = m[i] + math.log(s0[i]) - ynorm2 / (2.0 * si * si)
                log_density[row] = lse - log_n - d * (math.log(si) + _LOG_SQRT_2PI)
        for k in range(d):
            w = np.nan if bad[i] else np.float64(acc[i, k]) / s0[i]
            if what & _MEAN:
                mean[row, k] = w
            if what & _SCORE:
                score[row, k] = (mui * w - np.float64(y[row, k])) / (si * si)


@jit(_nd_sigs("void({T}[:, ::1], {A}[:, :, ::1], {A}[:, ::1], {A}[::1], {T}[::1], {T}[::1], int64, "
              "{T}[:, ::1], {T}[::1], {T}[:, ::1])"), parallel=True)
def _optimal_score_nd(y, xt, rows, norm2, mu, sigma, what, score, log_density, mean):
    """Query tiles spread over threads; outputs not asked for have length 0."""
    q = y.shape[0]
    for t in numba.prange((q + _QB - 1) // _QB):
        q0 = t * _QB
        _query_tile(y, q0, min(_QB, q - q0), xt, rows, norm2, mu, sigma, what, score, log_density, mean)


@jit(_sigs("boolean({T}[:, ::1], {T}[:, ::1], {T}[::1], {T}[::1])"))
def _float_logits_accurate(y, x, mu, sigma):
    """Whether float sums give accurate enough GEMM-form logits for every query
    (float_logits_accurate): the bound u (sqrt(d) a |y| max|x| + 2 c max||x||^2),
    u = 2^-24, is below 1e-4 logit units for every finite query."""
    n, d = x.shape
    xmax = 0.0
    for j in range(n):
        s = 0.0
        for k in range(d):
            s += np.float64(x[j, k]) * np.float64(x[j, k])
        xmax = max(xmax, s)
    xmax = math.sqrt(xmax)
    u = 5.9604644775390625e-8
    mu_stride = 0 if mu.shape[0] == 1 else 1
    sigma_stride = 0 if sigma.shape[0] == 1 else 1
    for i in range(y.shape[0]):
        s = 0.0
        for k in range(d):
            s += np.float64(y[i, k]) * np.float64(y[i, k])
        mui = np.float64(mu[i * mu_stride])
        si = np.float64(sigma[i * sigma_stride])
        bound = u * (math.sqrt(np.float64(d)) * (mui / (si * si)) * math.sqrt(s) * xmax
                     + 2.0 * mui * mui / (2 * si * si) * xmax * xmax)
        if math.isfinite(s) and not bound < 1e-4:
            return False
    return True


def optimal_score_nd(y, x, mu, sigma, what):
    """d-D optimal-score family (same contract as bigstep._core).

    y (q, d), x (n, d), n >= 1, mu and sigma (1,) or (q,), one dtype.  Returns
    (score, log_density, mean) of shapes (q, d), (q,), (q, d), each None unless asked
    for by ``what``.
    """
    what = int(what)
    q = y.shape[0]
    n, d = x.shape
    acc_type = np.float64
    if x.dtype == np.float32 and _float_logits_accurate(y, x, mu, sigma):
        acc_type = np.float32
    nb = min(_NB, n)  # tile width: O(n d) packed data for n < NB too
    tiles = (n + nb - 1) // nb
    xt = np.zeros((tiles, d, nb), dtype=acc_type)
    rows = np.empty((n, d), dtype=acc_type)
    norm2 = np.zeros(tiles * nb, dtype=acc_type)
    _pack(x, xt, rows, norm2)
    want = (bool(what & _SCORE), bool(what & _LOGP), bool(what & _MEAN))
    score = np.empty((q if want[0] else 0, d), dtype=y.dtype)
    log_density = np.empty(q if want[1] else 0, dtype=y.dtype)
    mean = np.empty((q if want[2] else 0, d), dtype=y.dtype)
    _optimal_score_nd(y, xt, rows, norm2, mu, sigma, what, score, log_density, mean)
    return tuple(o if w else None for o, w in zip((score, log_density, mean), want))


# ----------------------------------------------------------------------------------
# Backward pass (vector-Jacobian products), float64: mirrors
# csrc/cpu/optimal_score_vjp_kernels.cpp.  w_qi = exp(-||y_q - mu_q x_i||^2/(2 sigma_q^2) - lse_q).
# ----------------------------------------------------------------------------------


@jit("float64(float64[:, ::1], int64, float64, float64[:, ::1], int64)", fastmath={"reassoc", "contract"})
def _dist2(y, p, m, x, i):
    s = 0.0
    for k in range(x.shape[1]):
        r = y[p, k] - m * x[i, k]
        s += r * r
    return s


@jit("float64(float64[:, ::1], int64, float64[:, ::1], int64)", fastmath={"reassoc", "contract"})
def _dot_rows(a, p, x, i):
    s = 0.0
    for k in range(x.shape[1]):
        s += a[p, k] * x[i, k]
    return s


@jit("void(float64[:, ::1], float64[:, ::1], float64[::1], float64[::1], float64[::1], float64[:, ::1], "
     "float64[:, ::1], float64[:, ::1])", parallel=True)
def _vjp_y(y, x, mu, sigma, lse, mean, g, out):
    q, d = y.shape
    n = x.shape[0]
    mu_step = 1 if mu.shape[0] > 1 else 0
    sigma_step = 1 if sigma.shape[0] > 1 else 0
    for p in numba.prange(q):
        m = mu[p * mu_step]
        s = sigma[p * sigma_step]
        neg_h = -0.5 / (s * s)
        for k in range(d):
            out[p, k] = 0.0
        for i in range(n):
            w = math.exp(_dist2(y, p, m, x, i) * neg_h - lse[p])
            if w == 0.0:
                continue
            s = 0.0
            for k in range(d):
                s += g[p, k] * (x[i, k] - mean[p, k])
            wt = w * s
            for k in range(d):
                out[p, k] += wt * (x[i, k] - mean[p, k])


@jit("void(float64[:, ::1], float64[:, ::1], float64[::1], float64[::1], float64[::1], float64[:, ::1], "
     "float64[:, ::1], float64[:, ::1], float64[::1], float64[::1], float64[:, ::1])", parallel=True)
def _vjp_x(y, x, mu, sigma, lse, a, b, u, e, f, out):
    q, d = y.shape
    n = x.shape[0]
    mu_step = 1 if mu.shape[0] > 1 else 0
    sigma_step = 1 if sigma.shape[0] > 1 else 0
    for j in numba.prange(n):
        for k in range(d):
            out[j, k] = 0.0
        cx = 0.0
        for p in range(q):
            m = mu[p * mu_step]
            s = sigma[p * sigma_step]
            w = math.exp(_dist2(y, p, m, x, j) * (-0.5 / (s * s)) - lse[p])
            if w == 0.0:
                continue
            t = _dot_rows(b, p, x, j)
            for k in range(d):
                out[j, k] += w * a[p, k] + (w * t) * u[p, k]
            cx += w * (e[p] + f[p] * t)
        for k in range(d):
            out[j, k] += cx * x[j, k]


def optimal_score_vjp_y(y, x, mu, sigma, lse, mean, g):
    """out_q = sum_i w_qi (g_q . (x_i - mean_q)) (x_i - mean_q) = Cov(W|y_q) g_q, shape (q, d),
    centred term by term (bigstep._core.optimal_score_vjp_y)."""
    out = np.empty(y.shape)
    _vjp_y(y, x, mu, sigma, lse, mean, g, out)
    return out


def optimal_score_vjp_x(y, x, mu, sigma, lse, a, b, u, e, f):
    """out_j = sum_q w_qj (a_q + t u_q + (e_q + f_q t) x_j), t = b_q . x_j, shape (n, d)
    (bigstep._core.optimal_score_vjp_x)."""
    out = np.empty(x.shape)
    _vjp_x(y, x, mu, sigma, lse, a, b, u, e, f, out)
    return out
