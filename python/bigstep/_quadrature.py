"""Adaptive Gauss-Kronrod quadrature of functions of the empirical posterior, shared by
:func:`bigstep.optimal_risk` and :mod:`bigstep.theory` (TV_pi of s*).

- :class:`Centres`: the distinct noised centres c_j = mu x_j with their multiplicities,
  and the softmax moments of W(y) at quadrature nodes given in local coordinates
  y = anchor + t (so t keeps its full precision near the anchor);
- :func:`subintervals`: the initial partition of the line, split at the centres, the
  midpoints of the gaps wider than sigma (the sharp transition layers of s*) and any
  extra breakpoints, graded towards each breakpoint;
- :func:`integrate`: adaptive G7-K15 (QUADPACK's rule and error estimate) over that
  partition, bisecting the unfinished subintervals round by round;
- :func:`check_converged`: the RuntimeWarning when the target was not reached.

Only numpy is used.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ._validate import training_data

# Gauss-Kronrod 7-15 (QUADPACK dqk15): Kronrod abscissae x_k (descending) and weights;
# the Gauss-7 nodes are the odd-indexed ones of the symmetric 15-node array below.
_XGK = np.array([
    0.991455371120812639206854697526329, 0.949107912342758524526189684047851,
    0.864864423359769072789712788640926, 0.741531185599394439863864773280788,
    0.586087235467691130294144845693013, 0.405845151377397166906606412076961,
    0.207784955007898467600689403773245, 0.0])
_WGK = np.array([
    0.022935322010529224963732008058970, 0.063092092629978553290700663189204,
    0.104790010322250183839876322541518, 0.140653259715525918745189590510238,
    0.169004726639267902826583426598550, 0.190350578064785409913256402421014,
    0.204432940075298892414161999234649, 0.209482141084727828012999174891714])
_WG = np.array([
    0.129484966168869693270611432679082, 0.279705391489276667901467771423780,
    0.381830050505118944950369775488975, 0.417959183673469387755102040816327])
_X15 = np.concatenate([-_XGK[:7], [0.0], _XGK[6::-1]])
_W15 = np.concatenate([_WGK[:7], [_WGK[7]], _WGK[6::-1]])
_WG7 = np.concatenate([_WG[:3], [_WG[3]], _WG[2::-1]])  # weights of _X15[1::2]

_RTOL = 1e-12        # local acceptance: error estimate <= _RTOL * |integral of the subinterval|
_FLOOR = 0.1         # ... or <= _FLOOR * _RTOL * |total| * (its share of the range)
TAIL = 40.0         # tails cut at 40 sigma beyond the outermost data points
_MAX_ROUNDS = 200    # bisection rounds (each halves every unfinished subinterval)
_MAX_ACTIVE = 4096   # unfinished subintervals at most, beyond 4x the initial count (a noisy
                     # integrand stops there, with a warning)
_CHUNK = 1 << 21     # elements of the (nodes, data) temporaries per block
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def data_1d(x) -> np.ndarray:
    """1-D training data (n,), n >= 1, finite, as float64."""
    return np.asarray(training_data(x, ndim=1), dtype=np.float64)


class Centres:
    """Distinct noised centres c_j = mu u_j (sorted) with their multiplicities, and the
    softmax moments at nodes given in local coordinates y = anchor + t.

    Local coordinates keep the integrand smooth in t where it varies on scales far below
    the float spacing of y (a transition layer of width sigma^2/gap at |y| >> that
    width): with a_j = anchor - c_j, rounded once per anchor (a shift of the data by a
    few ulps, the same for all nodes of that anchor, instead of noise from node to
    node), the logit differences are formed in the product form
    l_j - l_k = log(cnt_j/cnt_k) + (c_j - c_k)((a_k + a_j) + 2 t) / (2 sigma^2),
    in which t keeps its full precision.
    """

    def __init__(self, x: np.ndarray, mu: float, sigma: float):
        u, counts = np.unique(x, return_counts=True)
        self.n = int(x.shape[0])
        self.c = mu * u
        self.log_count = np.log(counts.astype(np.float64))
        self.counts = counts
        self.sigma = sigma
        # log of the density normaliser 1 / (n sqrt(2 pi) sigma)
        self.log_norm = -math.log(self.n) - _LOG_SQRT_2PI - math.log(sigma)

    def _moments(self, anchor: np.ndarray, t: np.ndarray, lo: int, hi: int):
        """For nodes anchor + t (N,) and the centres lo:hi: (log p, y - c_k, w (N, K), c_j - c_k (N, K)),
        c_k the most likely centre.

        With a_j = anchor - c_j (rounded once per anchor and centre) the logit differences
        are l_j - l_0 = log(cnt_j/cnt_0) + (c_j - c_0) ((a_0 + a_j) + 2 t) / (2 sigma^2), so t
        keeps its full precision near the anchor (a_0 + a_j is small between the two
        centres that an anchored transition separates)."""
        c = self.c[lo:hi]
        lc = self.log_count[lo:hi]
        sig = self.sigma
        rows = np.arange(t.shape[0])
        y = anchor + t
        j = np.clip(np.searchsorted(c, y), 1, max(c.shape[0] - 1, 1))
        jl = j - 1
        jr = np.minimum(j, c.shape[0] - 1)
        k0 = np.where(np.abs(y - c[jl]) <= np.abs(y - c[jr]), jl, jr)
        a = anchor[:, None] - c[None, :]
        a0 = a[rows, k0]
        dj = c[None, :] - c[k0][:, None]
        with np.errstate(invalid="ignore", over="ignore"):
            rel = (lc[None, :] - lc[k0][:, None]) + 0.5 * (dj / sig) * (((a0[:, None] + a) + 2.0 * t[:, None]) / sig)
        rel = np.where(np.isnan(rel), -np.inf, rel)
        rel[rows, k0] = 0.0
        k = np.argmax(rel, axis=1)
        relk = rel[rows, k]
        ex = np.exp(rel - relk[:, None])
        tot = ex.sum(axis=1)
        logp = lc[k0] - 0.5 * ((a0 + t) / sig) ** 2 + relk + np.log(tot) + self.log_norm
        return logp, a[rows, k] + t, ex / tot[:, None], c[None, :] - c[k][:, None]

    def _apply(self, anchor: np.ndarray, t: np.ndarray, fn, nout: int = 1):
        """fn(logp, y - c_k, w, c - c_k, anchor, t) over blocks of nodes; each block only sees
        the centres whose weight can be nonzero: one further than sqrt(d0^2 + 1600 sigma^2)
        from a node (d0: distance to the nearest centre) has a logit more than 800 below
        the largest, and its weight underflows to 0 in float64."""
        outs = [np.empty_like(t) for _ in range(nout)]
        y = anchor + t
        order = np.argsort(y, kind="stable")
        ys = y[order]
        c = self.c
        j = np.clip(np.searchsorted(c, ys), 1, max(c.shape[0] - 1, 1))
        d0 = np.minimum(np.abs(ys - c[j - 1]), np.abs(ys - c[np.minimum(j, c.shape[0] - 1)]))
        with np.errstate(over="ignore"):
            reach = np.maximum(self.sigma * np.sqrt((d0 / self.sigma) ** 2 + 1600.0), d0) * (1.0 + 1e-12)
        step = max(256, _CHUNK // max(c.shape[0], 1))
        # blocks of at most `step` nodes spanning at most 64 sigma, so that sparse nodes
        # spread over many data points do not all see every centre
        with np.errstate(over="ignore", invalid="ignore"):
            cell = np.floor((ys - ys[0]) / (64.0 * self.sigma)) if ys.shape[0] else ys
        breaks = np.flatnonzero(cell[1:] != cell[:-1]) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [ys.shape[0]]])
        bounds = [(s0, min(s0 + step, e0)) for s0_, e0 in zip(starts, ends) for s0 in range(s0_, e0, step)]
        for start, stop in bounds:
            yb = ys[start:stop]
            ob = order[start:stop]
            w = float(reach[start:stop].max())
            lo = int(np.searchsorted(c, yb[0] - w, side="left"))
            hi = int(np.searchsorted(c, yb[-1] + w, side="right"))
            sub = max(1, _CHUNK // max(hi - lo, 1))
            for s0 in range(0, yb.shape[0], sub):
                pos = ob[s0:s0 + sub]
                res = fn(*self._moments(anchor[pos], t[pos], lo, hi), anchor[pos], t[pos])
                for o, r in zip(outs, res if nout > 1 else (res,)):
                    o[pos] = r
        return outs if nout > 1 else outs[0]

    def var_density(self, anchor: np.ndarray, t: np.ndarray) -> np.ndarray:
        """p(y) Var[mu W(y)] (the integrand of sigma^4 R_n(s*)), from moments about the
        most likely centre c_k: Var = E(c - c_k)^2 - (E(c - c_k))^2, whose cancellation is
        at most a factor 1/w_k <= K."""

        def fn(logp, ek, w, d, anchor, t):
            m1 = np.einsum("ij,ij->i", w, d)
            m2 = np.einsum("ij,ij->i", w, d * d)
            return np.exp(logp) * np.maximum(m2 - m1 * m1, 0.0)

        return self._apply(anchor, t, fn)

    def score_density(self, anchor: np.ndarray, t: np.ndarray):
        """(p(y), s*(y), size), s* = (E[c - c_k] - (y - c_k)) / sigma^2 about the most likely
        centre, size = (|E[c - c_k]| + |y - c_k|) / sigma^2 the terms that cancel in it."""
        s2 = self.sigma**2

        def fn(logp, ek, w, d, anchor, t):
            m1 = np.einsum("ij,ij->i", w, d)
            return np.exp(logp), (m1 - ek) / s2, (np.abs(m1) + np.abs(ek)) / s2

        return self._apply(anchor, t, fn, 3)

    def third_cumulant(self, anchor: np.ndarray, t: np.ndarray):
        """(kappa_3, scale) at the nodes: kappa_3(mu W(y)) = sigma^6 s*''(y) (eq. 9), the
        third central moment from raw moments about the most likely centre, and the size
        of the terms that cancel in it, E|c - c_k|^3 + |m1| (3 m2 + 2 m1^2), so that its
        rounding error is a few eps * scale (where the weights are nearly symmetric,
        kappa_3 is far below its terms and only known to that level)."""

        def fn(logp, ek, w, d, anchor, t):
            d2 = d * d
            m1 = np.einsum("ij,ij->i", w, d)
            m2 = np.einsum("ij,ij->i", w, d2)
            m3 = np.einsum("ij,ij->i", w, d2 * d)
            a3 = np.einsum("ij,ij->i", w, d2 * np.abs(d))
            return m3 - m1 * (3.0 * m2 - 2.0 * m1 * m1), a3 + np.abs(m1) * (3.0 * m2 + 2.0 * m1 * m1)

        return self._apply(anchor, t, fn, 2)


# ------------------------------------------------------------------ partition


def subintervals(c: np.ndarray, sigma: float, lo: float, hi: float, extra=()):
    """Initial subintervals covering [lo, hi] in local coordinates: (anchor, ta, tb) arrays,
    the subinterval being anchor + [ta, tb], graded towards every breakpoint.

    Breakpoints: lo, hi, the centres thinned to one per sigma, the midpoints of the
    gaps wider than sigma (where the transition layer of s* is sharper than sigma) and
    the finite ``extra`` points in (lo, hi).  Each has a scale: sigma^2 / gap at a sharp
    midpoint, sigma elsewhere, capped by (distance + scale) to the nearest sharp
    midpoints so that no layer is stepped over.  Between two breakpoints L < R the
    subintervals end at L + scale_L 2^j and R - scale_R 2^j (j = 0, 1, ... up to the middle
    of the piece), anchored at L and R with exact offsets; the middle subinterval is
    anchored at L.
    """
    gaps = np.diff(c)
    sharp = gaps > sigma
    mids = c[:-1][sharp] + 0.5 * gaps[sharp]
    mid_scale = sigma * (sigma / gaps[sharp])
    bins = np.floor((c - c[0]) / sigma)
    _, first = np.unique(bins, return_index=True)
    ex = np.asarray(extra, dtype=np.float64).ravel()
    b = np.concatenate([np.array([lo, hi]), c[first], c[-1:], mids, ex[np.isfinite(ex)]])
    b = np.unique(b[(b >= lo) & (b <= hi)])
    scale = np.full(b.shape, sigma)
    if mids.size:
        j = np.searchsorted(mids, b)
        for nb in (j - 1, j):
            ok = (nb >= 0) & (nb < mids.size)
            nbc = np.clip(nb, 0, mids.size - 1)
            scale = np.where(ok, np.minimum(scale, mid_scale[nbc] + np.abs(b - mids[nbc])), scale)
    L, R = b[:-1], b[1:]
    width = R - L
    half = 0.5 * width
    powers = np.concatenate([[0.0], 2.0 ** np.arange(64)])
    off_l = scale[:-1, None] * powers[None, :]          # offsets from L: 0, s, 2s, 4s, ...
    off_r = scale[1:, None] * powers[None, :]           # offsets from R
    in_l = off_l < half[:, None]
    in_r = off_r < half[:, None]
    in_l[:, 0] = True
    in_r[:, 0] = True
    last_l = np.where(in_l, off_l, -np.inf).max(axis=1)
    last_r = np.where(in_r, off_r, -np.inf).max(axis=1)
    step_l = in_l[:, :-1] & in_l[:, 1:]                 # [off_j, off_{j+1}] both inside
    step_r = in_r[:, :-1] & in_r[:, 1:]
    rows_l = np.broadcast_to(np.arange(L.shape[0])[:, None], step_l.shape)[step_l]
    rows_r = np.broadcast_to(np.arange(L.shape[0])[:, None], step_r.shape)[step_r]
    anchor = np.concatenate([L[rows_l], L, R[rows_r]])
    ta = np.concatenate([off_l[:, :-1][step_l], last_l, -off_r[:, 1:][step_r]])
    tb = np.concatenate([off_l[:, 1:][step_l], width - last_r, -off_r[:, :-1][step_r]])
    keep = tb > ta
    return anchor[keep], ta[keep], tb[keep]


# ------------------------------------------------------------------ quadrature


def _gk15(f, anchor: np.ndarray, a: np.ndarray, b: np.ndarray):
    """G7-K15 of f(anchor, t) over t in [a_k, b_k]: (Kronrod estimates, QUADPACK error estimates)."""
    centre = 0.5 * (a + b)
    h = 0.5 * (b - a)
    t = centre[:, None] + h[:, None] * _X15[None, :]
    an = np.broadcast_to(anchor[:, None], t.shape)
    res = f(an.ravel(), t.ravel())
    if isinstance(res, tuple):  # (values, size of the terms that cancel in them)
        fv = np.asarray(res[0], dtype=np.float64).reshape(t.shape)
        noise = 64 * np.finfo(np.float64).eps * (np.abs(np.asarray(res[1], dtype=np.float64)).reshape(t.shape) @ _W15)
    else:
        fv = np.asarray(res, dtype=np.float64).reshape(t.shape)
        noise = np.zeros(t.shape[0])
    if not np.isfinite(fv).all():
        raise FloatingPointError("integrand is not finite on the quadrature nodes")
    resk = fv @ _W15
    resg = fv[:, 1::2] @ _WG7
    resabs = np.abs(fv) @ _W15
    resasc = np.abs(fv - 0.5 * resk[:, None]) @ _W15
    err = np.abs(resk - resg)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = resasc * np.minimum(1.0, (200.0 * err / resasc) ** 1.5)
    err = np.where((resasc != 0) & (err != 0), scaled, err)
    eps = np.finfo(np.float64).eps
    err = np.where(resabs > np.finfo(np.float64).tiny / (50 * eps), np.maximum(50 * eps * resabs, err), err)
    ah = np.abs(h)
    return resk * h, err * ah, noise * ah


def min_width(c: np.ndarray, sigma: float) -> float:
    """Subintervals narrower than 1e-9 of the finest layer width min(sigma, sigma^2 / largest gap)
    are not split further: the integrand does not change on that scale, only its rounding does."""
    gmax = float(np.diff(c).max()) if c.shape[0] > 1 else 0.0
    return 1e-9 * min(sigma, sigma * (sigma / gmax)) if gmax > 0 else 1e-9 * sigma


def integrate(f, parts, rtol: float = _RTOL, min_width: float = 0.0):
    """Adaptive G7-K15 of a non-negative integrand f(anchor, t) (vectorised) over the
    subintervals anchor + [ta, tb] of ``parts``; subintervals narrower than ``min_width``
    are accepted as they are.  f may return (values, scale) where scale bounds the terms
    that cancel in the values: a subinterval whose error estimate is below 64 eps times
    the integral of the scale is at its rounding-noise level and is accepted too (its
    error estimate counts in the total).  Returns (integral, error estimate, the part of
    it from subintervals accepted at their noise level, converged)."""
    anchor, a, b = (np.array(p, dtype=np.float64) for p in parts)
    span = float((b - a).sum())
    max_active = _MAX_ACTIVE + 4 * a.shape[0]
    done, done_err, done_noise = 0.0, 0.0, 0.0
    eps = np.finfo(np.float64).eps
    for _ in range(_MAX_ROUNDS):
        val, err, noise = _gk15(f, anchor, a, b)
        total = abs(done + val.sum())
        ok = (err <= rtol * np.abs(val)) | (err <= _FLOOR * rtol * total * (b - a) / span) | (err <= noise) \
            | (b - a <= np.maximum(min_width, 64 * eps * np.maximum(np.abs(a), np.abs(b))))
        done += float(val[ok].sum())
        done_err += float(err[ok].sum())
        at_noise = ok & (err <= noise)
        done_noise += float(err[at_noise].sum())
        if ok.all():
            return done, done_err, done_noise, True
        anchor, a, b = anchor[~ok], a[~ok], b[~ok]
        if a.shape[0] > max_active:
            break
        m = 0.5 * (a + b)
        anchor, a, b = np.concatenate([anchor, anchor]), np.concatenate([a, m]), np.concatenate([m, b])
    val, err, _ = _gk15(f, anchor, a, b)
    return done + float(val.sum()), done_err + float(err.sum()), done_noise, False


def check_converged(name: str, value: float, err: float, converged: bool, rtol: float, noise: float = 0.0) -> None:
    """RuntimeWarning unless the quadrature converged to rtol (or to the rounding-noise
    level ``noise`` of the integrand, when the caller accepts that)."""
    if not converged or err > max(rtol * abs(value), 2.0 * noise):
        warnings.warn(f"{name}: adaptive quadrature reached {err / abs(value) if value else err:.2e} "
                      f"estimated relative error (target {rtol:.0e})", RuntimeWarning, stacklevel=3)
