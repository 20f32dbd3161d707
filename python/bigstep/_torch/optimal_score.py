"""Empirical optimal score family in torch operations (the ``"torch"`` backend).

Same contract as bigstep._core and bigstep._numba.optimal_score: ``y``, ``x``, ``mu``,
``sigma`` tensors of one dtype (float32 or float64) on one device, mu and sigma of shape
(1,) (broadcast) or (q,), a bit mask ``what`` (1 score, 2 log-density, 4 posterior mean,
8 derivatives); outputs not asked for are None.  Weights, score and log-density

    w_i(y) = softmax_i( -||y - mu x_i||^2 / (2 sigma^2) ),
    s*(y) = (mu sum_i w_i x_i - y) / sigma^2,   E[W|y] = sum_i w_i x_i,
    log p(y) = log( (1/n) sum_i N(y; mu x_i, sigma^2 I) ).

Memory O(inputs + outputs + chunk): queries and data are processed in blocks of at most
``_common.budget(device)`` logits, with a max-shifted log-sum-exp carried online across
data blocks.  NaN or infinite queries give NaN in their row only.

1-D (as the C++ kernel): logits in the shifted product form about the data point x_s
nearest to y/mu, l_i = a_i (e' - a_i/2), a_i = (mu/sigma)(x_i - x_s), e' = (y - mu
x_s)/sigma, whose error is that of rounding the inputs at any sigma; queries are sorted
by y/mu and each block of them reads only the union of their windows of non-underflowing
terms (or gathers each query's own window when the union is much wider), so small sigma
is fast.  Logits and exps in the input type, sums in float64.

d-D: GEMM-form logits l_ij = a_i <y_i, x_j> - c_i ||x_j||^2 (a = mu/sigma^2,
c = mu^2/(2 sigma^2)) from matrix products, never TF32 or bfloat16 (``ieee_matmul``).
float64 inputs compute in float64.  float32 inputs compute in float32 where a rounding
bound keeps the weights' error below 1e-4 (the C++ rule, per query); elsewhere (small
sigma) they are screened: float32 logits with a rigorous error bound E select the points
within 40 + 2E of the largest logit (at most 32 per query), whose logits are recomputed
in float64 in difference form -||y - mu x_j||^2/(2 sigma^2); a query with more
candidates is recomputed by the float64 GEMM path.  Points left out by the screen weigh
less than n e^-40 relative.

Backward (the vector-Jacobian products of bigstep._autograd), float64: the weights
w_qi = exp(-||y_q - mu_q x_i||^2/(2 sigma_q^2) - lse_q) from difference-form distances
(``torch.cdist`` without the matrix-product shortcut, on y_q/mu_q and x_i), the sums over
queries and points as float64 matrix products, in blocks (no q x n buffer).
"""

from __future__ import annotations

import math

import torch

from ._common import F64, budget, ieee_matmul, two_product

__all__ = ["optimal_score_1d", "optimal_score_nd", "optimal_score_vjp_y", "optimal_score_vjp_x"]

_SCORE, _LOGP, _MEAN, _DERIV = 1, 2, 4, 8
_LOG_SQRT_2PI = 0.91893853320467274178  # log(2 pi) / 2
_U32 = 5.9604644775390625e-8  # 2^-24
_DROP = 40.0  # screen: logits more than this below the largest are left out
_CAP = 32  # screen: candidates kept per query
_ACCURATE = 1e-4  # float32 GEMM-form logits are used where their error bound is below this


def _levels(mu, sigma, q):
    """mu and sigma as float64 tensors of shape (q,)."""
    return mu.to(F64).expand(q), sigma.to(F64).expand(q)


# ---------------------------------------------------------------------------- 1-D


def _setup_1d(y, x, mu, sigma):
    """Per query: x_s (nearest data point to y/mu), e = y - mu x_s (as if by one fma),
    the window [lo, hi) of terms that do not underflow in the input type, and whether
    the query is finite.  float64 (q,) tensors and int64 windows."""
    n = x.shape[0]
    yd = y.to(F64)
    finite = torch.isfinite(yd)
    yd = torch.where(finite, yd, torch.zeros_like(yd))
    z = yd / mu
    s = torch.searchsorted(x, z.to(x.dtype))  # lower bound
    above = x[s.clamp(max=n - 1)].to(F64)
    below = x[(s - 1).clamp(min=0)].to(F64)
    down = (s == n) | ((s > 0) & ((z - below).abs() <= (above - z).abs()))
    s = torch.where(down, s - 1, s)
    xs = x[s].to(F64)
    p, err = two_product(mu, xs)
    e = (yd - p) - err
    big_l = 104.0 if x.dtype == torch.float32 else 745.5  # the exp underflow threshold of the input type
    radius = torch.sqrt(2.0 * sigma * sigma * big_l + e * e)
    lo = torch.minimum(torch.searchsorted(x, ((yd - radius) / mu).to(x.dtype)), s)
    hi = torch.maximum(torch.searchsorted(x, ((yd + radius) / mu).to(x.dtype), right=True), s + 1)
    lo = torch.where(finite, lo, torch.zeros_like(lo))
    hi = torch.where(finite, hi, torch.zeros_like(hi))
    return xs, e, lo, hi, finite


def _window_sums(x, lo, hi, xs, r, es, moments):
    """S_j = sum_{lo <= i < hi} p_i u_i^j (j = 0..3, float64 (Q,) each) for a block of Q
    queries, u_i = x_i - x_s, p_i = exp(a_i (e' - a_i/2)), a_i = r u_i, in the input type.

    Reads the union of the windows when it is not much wider than the widest window
    (terms outside a query's own window underflow to 0), else gathers each window."""
    T = x.dtype
    Q = lo.shape[0]
    dev = x.device
    sums = [torch.zeros(Q, dtype=F64, device=dev) for _ in range(4 if moments else 2)]
    lo_u, hi_u = int(lo.min()), int(hi.max())
    width = int((hi - lo).max())
    if hi_u <= lo_u or width <= 0:
        return sums + [None] * (4 - len(sums))
    xs_t, r_t, es_t = xs.to(T)[:, None], r.to(T)[:, None], es.to(T)[:, None]
    half = torch.tensor(0.5, dtype=T, device=dev)
    union = hi_u - lo_u <= 2 * width
    span = hi_u - lo_u if union else width
    step = max(1, budget(dev) // Q)
    for c0 in range(0, span, step):
        c1 = min(span, c0 + step)
        if union:
            xw = x[lo_u + c0:lo_u + c1][None, :]
            mask = None
        else:
            idx = lo[:, None] + torch.arange(c0, c1, device=dev)[None, :]
            mask = idx < hi[:, None]
            xw = x[idx.clamp(max=x.shape[0] - 1)]
        u = xw - xs_t
        a = r_t * u
        p = torch.exp(a * (es_t - half * a))
        if mask is not None:
            p = torch.where(mask, p, torch.zeros((), dtype=T, device=dev))
        pu = p * u
        sums[0] += p.sum(1, dtype=F64)
        sums[1] += pu.sum(1, dtype=F64)
        if moments:
            pu = pu * u
            sums[2] += pu.sum(1, dtype=F64)
            sums[3] += (pu * u).sum(1, dtype=F64)
    return sums + [None] * (4 - len(sums))


def optimal_score_1d(y, x_sorted, mu, sigma, what):
    """1-D optimal-score family on sorted data: y (q,), x_sorted (n,) ascending, n >= 1,
    mu and sigma (1,) or (q,), one dtype.  Returns (score, log_density, mean, d1, d2),
    each (q,) or None unless asked for by ``what`` (score also with the derivatives)."""
    what = int(what)
    q, n = y.shape[0], x_sorted.shape[0]
    T, dev = y.dtype, y.device
    want = (bool(what & (_SCORE | _DERIV)), bool(what & _LOGP), bool(what & _MEAN), bool(what & _DERIV),
            bool(what & _DERIV))
    outs = [torch.empty(q, dtype=T, device=dev) if w else None for w in want]
    if q == 0:
        return tuple(outs)
    mu, sigma = _levels(mu, sigma, q)
    xs, e, lo, hi, finite = _setup_1d(y, x_sorted, mu, sigma)
    z = torch.where(finite, y.to(F64) / mu, torch.full_like(mu, math.inf))
    order = torch.argsort(z, stable=True)  # neighbouring queries read neighbouring windows
    moments = bool(what & _DERIV)
    block = max(1, min(q, 4096 if dev.type != "cpu" else 512))
    log_n = math.log(n)
    for q0 in range(0, q, block):
        rows = order[q0:q0 + block]
        mu_b, s_b, xs_b, e_b = mu[rows], sigma[rows], xs[rows], e[rows]
        s0, s1, s2, s3 = _window_sums(x_sorted, lo[rows], hi[rows], xs_b, mu_b / s_b, e_b / s_b, moments)
        inv_s2 = 1.0 / (s_b * s_b)
        m1 = s1 / s0
        bad = ~finite[rows]
        nan = torch.full_like(m1, math.nan)
        vals = [None] * 5
        vals[0] = (mu_b * m1 - e_b) * inv_s2
        if want[1]:
            vals[1] = torch.log(s0) - 0.5 * e_b * e_b * inv_s2 - torch.log(s_b) - _LOG_SQRT_2PI - log_n
        if want[2]:
            vals[2] = xs_b + m1
        if moments:
            m2, m3 = s2 / s0, s3 / s0
            var = m2 - m1 * m1
            third = m3 - 3.0 * m1 * m2 + 2.0 * m1 * m1 * m1
            vals[3] = (-1.0 + mu_b * mu_b * var * inv_s2) * inv_s2
            vals[4] = mu_b * mu_b * mu_b * third * inv_s2 * inv_s2 * inv_s2
        for out, v in zip(outs, vals):
            if out is not None:
                out[rows] = torch.where(bad, nan, v).to(T)
    return tuple(outs)


# ---------------------------------------------------------------------------- d-D


class NDData:
    """Data (n, d) prepared once for many d-D calls (the sampler's steps): ||x_j||^2 in
    float64 (rounded to the compute type where used) and the largest norm."""

    def __init__(self, x):
        self.x = x
        self.n, self.d = x.shape
        step = max(1, budget(x.device) // max(1, self.d))
        self.norm2 = torch.cat([x[j:j + step].to(F64).square().sum(1) for j in range(0, self.n, step)])
        self.xmax = math.sqrt(float(self.norm2.max())) if self.n else 0.0
        self._as = {}

    def norm2_as(self, A):
        if A not in self._as:
            self._as[A] = self.norm2.to(A)
        return self._as[A]


def _blocks(rows: int, n: int, d: int, dev) -> tuple[int, int]:
    """(query rows, data points) per block: Qc x Nc logits and Qc x d, Nc x d operands
    within the chunk budget."""
    b = budget(dev)
    qc = max(1, min(rows, max(256, b // max(n, 1)), max(1, b // max(d, 1))))
    nc = max(1, min(n, max(256, b // qc), max(1, b // max(d, 1))))
    return qc, nc


def _flash(y, data: NDData, mu, sigma, A):
    """GEMM-form log-sum-exp over all data for query rows y (r, d) (finite), in type A.

    Yields (row slice, posterior mean (Qc, d) float64, log sum_j exp(l_ij) (Qc,) float64,
    the full logits -||y - mu x_j||^2/(2 sigma^2))."""
    r, d = y.shape
    x, n = data.x, data.n
    norm2 = data.norm2_as(A)
    qc, nc = _blocks(r, n, d, y.device)
    for q0 in range(0, r, qc):
        sl = slice(q0, min(r, q0 + qc))
        yc = y[sl].to(A)
        mu_c, s_c = mu[sl], sigma[sl]
        a = (mu_c / (s_c * s_c)).to(A)
        c = (mu_c * mu_c / (2.0 * s_c * s_c)).to(A)
        m = torch.full_like(mu_c, -math.inf)
        s0 = torch.zeros_like(mu_c)
        acc = torch.zeros((yc.shape[0], d), dtype=A, device=y.device)
        for j0 in range(0, n, nc):
            xc = x[j0:j0 + nc].to(A)
            g = yc @ xc.T
            g.mul_(a[:, None]).addr_(c, norm2[j0:j0 + nc], alpha=-1)  # l = a G - c ||x||^2
            new_m = torch.maximum(m, g.amax(1).to(F64))
            g.sub_(new_m.to(A)[:, None]).exp_()
            scale = torch.exp(m - new_m)  # 0 on the first block (m = -inf)
            s0 = s0 * scale + g.sum(1, dtype=F64)
            acc.mul_(scale.to(A)[:, None]).add_(g @ xc)
            m = new_m
        yn2 = y[sl].to(F64).square().sum(1)
        yield sl, acc.to(F64) / s0[:, None], m + torch.log(s0) - yn2 / (2.0 * s_c * s_c)


def _float_accurate(y, data: NDData, mu, sigma):
    """Per query: whether float32 GEMM-form logits are accurate to 1e-4: the bound
    u (sqrt(d) a |y| max|x| + 2 c max||x||^2) of float_logits_accurate in the C++."""
    yn = y.to(F64).square().sum(1).sqrt()
    a = mu / (sigma * sigma)
    c = mu * mu / (2.0 * sigma * sigma)
    xm = data.xmax
    bound = _U32 * (math.sqrt(data.d) * a * yn * xm + 2.0 * c * xm * xm)
    return bound < _ACCURATE


def _screen(y, data: NDData, mu, sigma):
    """float32 rows at small sigma: float32 logits select the candidates, float64
    difference-form logits finish them.  Yields (row index tensor, mean, lse) for the
    rows it finishes and, last, (fallback row index tensor, None, None)."""
    r, d = y.shape
    x, n = data.x, data.n
    dev = y.device
    norm2 = data.norm2_as(torch.float32)
    keep = min(_CAP + 1, n)  # one more than kept: tells whether a query has more than _CAP candidates
    qc, nc = _blocks(r, n, d, dev)
    fallback = []
    for q0 in range(0, r, qc):
        sl = slice(q0, min(r, q0 + qc))
        yc = y[sl]
        rows = yc.shape[0]
        mu_c, s_c = mu[sl], sigma[sl]
        ad = mu_c / (s_c * s_c)
        cd = mu_c * mu_c / (2.0 * s_c * s_c)
        yn = yc.to(F64).square().sum(1).sqrt()
        xm = data.xmax * (1 + 1e-6)
        err = 1.01 * _U32 * ((d + 3.0) * ad * yn * xm + 4.0 * cd * xm * xm)  # |float logit - logit| <= err
        margin = (_DROP + 2.0 * err).to(torch.float32)
        a, c = ad.to(torch.float32), cd.to(torch.float32)
        vals = torch.full((rows, 0), -math.inf, dtype=torch.float32, device=dev)
        idx = torch.zeros((rows, 0), dtype=torch.int64, device=dev)
        for j0 in range(0, n, nc):
            xc = x[j0:j0 + nc]
            g = yc @ xc.T
            g.mul_(a[:, None]).addr_(c, norm2[j0:j0 + nc], alpha=-1)
            gv, gi = g.topk(min(keep, g.shape[1]), dim=1)  # this block's best, then merged with the best so far
            vals, pos = torch.cat((vals, gv), 1).topk(min(keep, vals.shape[1] + gv.shape[1]), dim=1)
            idx = torch.cat((idx, gi + j0), 1).gather(1, pos)
        thr = vals[:, 0] - margin
        over = (vals[:, -1] >= thr) if keep > _CAP else torch.zeros_like(thr, dtype=torch.bool)
        vals, idx = vals[:, :_CAP], idx[:, :_CAP]
        cand = vals >= thr[:, None]
        bad = over | ~torch.isfinite(margin)
        good_rows = torch.arange(q0, q0 + rows, device=dev)
        fallback.append(good_rows[bad])
        step = max(1, budget(dev) // max(1, idx.shape[1] * d))
        for e0 in range(0, rows, step):
            e1 = min(rows, e0 + step)
            xg = x[idx[e0:e1]].to(F64)  # (rows, cap, d)
            yd = yc[e0:e1].to(F64)
            diff = yd[:, None, :] - mu_c[e0:e1, None, None] * xg
            lg = -(diff * diff).sum(2) / (2.0 * s_c[e0:e1, None] ** 2)
            lg = torch.where(cand[e0:e1], lg, torch.full_like(lg, -math.inf))
            lmax = lg.amax(1)
            p = torch.exp(lg - lmax[:, None])
            s0 = p.sum(1)
            mean = torch.bmm(p[:, None, :], xg)[:, 0, :] / s0[:, None]
            yield good_rows[e0:e1], mean, lmax + torch.log(s0)
    yield torch.cat(fallback), None, None


def optimal_score_nd(y, x, mu, sigma, what):
    """d-D optimal-score family: y (q, d), x (n, d), n >= 1, mu and sigma (1,) or (q,),
    one dtype.  Returns (score, log_density, mean) of shapes (q, d), (q,), (q, d), each
    None unless asked for by ``what``."""
    return optimal_score_nd_data(y, NDData(x), mu, sigma, what)


def optimal_score_nd_data(y, data: NDData, mu, sigma, what):
    """optimal_score_nd with the data prepared once (:class:`NDData`)."""
    what = int(what)
    q, d = y.shape
    T, dev = y.dtype, y.device
    want = (bool(what & _SCORE), bool(what & _LOGP), bool(what & _MEAN))
    score = torch.empty((q, d), dtype=T, device=dev) if want[0] else None
    logp = torch.empty(q, dtype=T, device=dev) if want[1] else None
    mean = torch.empty((q, d), dtype=T, device=dev) if want[2] else None
    if q == 0:
        return score, logp, mean
    mu, sigma = _levels(mu, sigma, q)
    bad = ~torch.isfinite(y).all(1)
    yc = torch.where(bad[:, None], torch.zeros((), dtype=T, device=dev), y)
    log_norm = math.log(data.n) + d * _LOG_SQRT_2PI

    def write(rows, w, lse):
        mu_r, s_r = mu[rows], sigma[rows]
        if want[0]:
            score[rows] = ((mu_r[:, None] * w - yc[rows].to(F64)) / (s_r * s_r)[:, None]).to(T)
        if want[1]:
            logp[rows] = (lse - log_norm - d * torch.log(s_r)).to(T)
        if want[2]:
            mean[rows] = w.to(T)

    def run_flash(rows, A):
        if rows is None:
            for sl, w, lse in _flash(yc, data, mu, sigma, A):
                write(sl, w, lse)
            return
        for sl, w, lse in _flash(yc[rows], data, mu[rows], sigma[rows], A):
            write(rows[sl], w, lse)

    with ieee_matmul():
        if T == F64:
            run_flash(None, F64)
        else:
            fast = _float_accurate(yc, data, mu, sigma)
            if bool(fast.all()):
                run_flash(None, torch.float32)
            else:
                slow = torch.nonzero(~fast).flatten()
                if bool(fast.any()):
                    run_flash(torch.nonzero(fast).flatten(), torch.float32)
                for rows, w, lse in _screen(yc[slow], data, mu[slow], sigma[slow]):
                    if w is None:
                        if rows.numel():
                            run_flash(slow[rows], F64)
                    else:
                        write(slow[rows], w, lse)
    nan = torch.tensor(math.nan, dtype=T, device=dev)
    for out in (score, mean):
        if out is not None:
            out[bad] = nan
    if logp is not None:
        logp[bad] = nan
    return score, logp, mean


# ----------------------------------------------------------------------- backward


def _vjp_weights(y, x, mu, sigma, lse):
    """w_qi for a block of queries (float64 (Q, d), mu/sigma/lse (Q,)) and points x (N, d)."""
    r = mu[:, None] * torch.cdist(y / mu[:, None], x, compute_mode="donot_use_mm_for_euclid_dist")
    return torch.exp(-(r * r) / (2.0 * sigma * sigma)[:, None] - lse[:, None])


def optimal_score_vjp_y(y, x, mu, sigma, lse, mean, g):
    """out_q = sum_i w_qi (g_q . (x_i - mean_q)) (x_i - mean_q) = Cov(W|y_q) g_q, shape (q, d),
    float64, centred term by term (no cancellation where the posterior is concentrated;
    bigstep._core.optimal_score_vjp_y).  Blocks of queries x points x coordinates within
    the chunk budget."""
    q, d = y.shape
    n = x.shape[0]
    mu, sigma = _levels(mu, sigma, q)
    out = torch.zeros((q, d), dtype=F64, device=y.device)
    qc, nc = _blocks(q, n, d, y.device)
    nc = max(1, min(nc, budget(y.device) // max(1, qc * d)))
    for q0 in range(0, q, qc):
        sl = slice(q0, q0 + qc)
        for j0 in range(0, n, nc):
            xc = x[j0:j0 + nc]
            w = _vjp_weights(y[sl], xc, mu[sl], sigma[sl], lse[sl])
            dev = xc[None, :, :] - mean[sl, None, :]  # (Q, N, d): x_i - mean_q
            t = (dev * g[sl, None, :]).sum(2)
            out[sl] += ((w * t)[:, :, None] * dev).sum(1)
    return out


def optimal_score_vjp_x(y, x, mu, sigma, lse, a, b, u, e, f):
    """out_j = sum_q w_qj (a_q + t u_q + (e_q + f_q t) x_j), t = b_q . x_j, shape (n, d),
    float64 (bigstep._core.optimal_score_vjp_x)."""
    q, d = y.shape
    n = x.shape[0]
    mu, sigma = _levels(mu, sigma, q)
    out = torch.zeros((n, d), dtype=F64, device=y.device)
    qc, nc = _blocks(q, n, d, y.device)
    for q0 in range(0, q, qc):
        sl = slice(q0, q0 + qc)
        for j0 in range(0, n, nc):
            xc = x[j0:j0 + nc]
            w = _vjp_weights(y[sl], xc, mu[sl], sigma[sl], lse[sl])
            t = b[sl] @ xc.T
            wt = w * t
            cx = (w * e[sl][:, None] + wt * f[sl][:, None]).sum(0)
            out[j0:j0 + nc] += w.T @ a[sl] + wt.T @ u[sl] + cx[:, None] * xc
    return out
