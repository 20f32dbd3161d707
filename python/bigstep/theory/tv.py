"""pi, TV_pi and Delta (paper Section 5; notation in :mod:`bigstep.theory`).

pi in closed form.  With N(z) points at or left of z, pi_-(z) = (N/n^2) sum_{mu x_j < z} (z - mu x_j)
is linear between data points (slope N^2/n^2, jumping up at each point) and pi_+ likewise
(slope -(n-N)^2/n^2); pi_- increases and pi_+ decreases, so g = min(pi_-, pi_+) is
piecewise linear with breakpoints at the data points and at the one crossing.  Each
piece a + b z integrates against the Gaussian exactly:
int_l^r (c + b (z - y)) phi_sigma(z - y) dz = c [Phi(u_r) - Phi(u_l)] + b sigma [phi(u_l) - phi(u_r)],
u = (z - y)/sigma, with each Phi difference taken from the erfc tail that avoids
cancellation (the loop over the pieces is compiled: :mod:`bigstep._numba.tv`).
Accuracy ~1e-14 relative to max(pi) (tests compare with quadrature of the definition).
"""

from __future__ import annotations

import numpy as np

from .._arrays import as_numpy, wrap_like
from .._quadrature import Centres, check_converged, data_1d, integrate, min_width, subintervals
from .._validate import real_scalar

__all__ = ["min_spacing", "tv_weight", "tv_derivative"]

_TV_RTOL = 1e-10


def min_spacing(x) -> float:
    """``Delta = min_k (x_(k+1) - x_(k))``, the smallest gap between sorted data points.

    Duplicated points give Delta = 0.0 (the paper assumes Delta > 0; with Delta = 0
    every bound of :mod:`bigstep.theory` reports its hypotheses as not holding).

    Parameters
    ----------
    x : array
        1-D data, shape (n,), n >= 2, finite.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For fewer than two points.

    Examples
    --------
    >>> from bigstep import theory
    >>> theory.min_spacing([0.0, 1.0, 0.25])
    0.25
    """
    xa = data_1d(x)
    if xa.shape[0] < 2:
        raise ValueError(f"x must have at least two points for a spacing, got {xa.shape[0]}")
    return float(np.diff(np.sort(xa)).min())


def _pieces(cs: Centres):
    """g = min(pi_-, pi_+) as linear pieces (l, r, g(l), g(r)) on [c_0, c_{K-1}]."""
    c = cs.c
    n = float(cs.n)
    cnt = cs.counts.astype(np.float64)
    if c.shape[0] < 2:
        e = np.empty(0)
        return e, e, e, e
    h = np.diff(c)
    N = np.cumsum(cnt)[:-1]                        # points at or left of c_k
    M = n - N                                      # points at or right of c_{k+1}
    D = np.concatenate([[0.0], np.cumsum(N[:-1] * h[:-1])])          # sum_{j<=k} cnt_j (c_k - c_j)
    E = np.concatenate([np.cumsum((M[1:] * h[1:])[::-1])[::-1], [0.0]])  # sum_{j>k} cnt_j (c_j - c_{k+1})
    n2 = n * n
    pm_l, pm_r = N * D / n2, N * (N * h + D) / n2
    pp_l, pp_r = M * (M * h + E) / n2, M * E / n2
    plus = pm_l >= pp_l                            # g = pi_+ on the whole interval
    minus = ~plus & (pm_r <= pp_r)                 # g = pi_- on the whole interval
    cross = ~plus & ~minus
    t = np.where(cross, (M * M * h + M * E - N * D) / (N * N + M * M), 0.0)
    t = np.clip(t, 0.0, h)
    gc = N * (N * t + D) / n2
    L, R = c[:-1], c[1:]
    gl = np.where(plus, pp_l, pm_l)
    gr = np.where(plus, pp_r, np.where(minus, pm_r, gc))
    rr = np.where(cross, L + t, R)
    l_all = np.concatenate([L, (L + t)[cross]])
    r_all = np.concatenate([rr, R[cross]])
    gl_all = np.concatenate([gl, gc[cross]])
    gr_all = np.concatenate([gr, pp_r[cross]])
    order = np.argsort(l_all, kind="stable")
    return l_all[order], r_all[order], gl_all[order], gr_all[order]


def _weight(anchor, t, cs: Centres, pieces) -> np.ndarray:
    """pi at anchor + t (same shapes; anchor alone with t = 0 for absolute queries)."""
    l, r, gl, gr = pieces
    shape = np.shape(anchor)
    an = np.ascontiguousarray(anchor, dtype=np.float64).ravel()
    tt = np.ascontiguousarray(np.broadcast_to(t, shape), dtype=np.float64).ravel()
    out = np.empty_like(an)
    if l.shape[0] == 0:  # one distinct point: pi = 0 (NaN stays NaN)
        out[:] = np.where(np.isnan(an + tt), np.nan, 0.0)
    else:
        from .._numba.tv import weight_kernel

        weight_kernel(an, tt, l, r, gl, gr, cs.c[0], cs.c[-1], cs.sigma, out)
    return out.reshape(shape)


def tv_weight(y, x, mu, sigma):
    """The weight ``pi(y)`` of ``TV_pi`` (Section 5), for 1-D data x and queries y of any shape.

    With U uniform on the data (duplicates counted), for ``mu x_(1) <= y <= mu x_(n)``
    (0 outside):

        pi(y)   = E_{xi ~ N(0, sigma^2)}[min(pi_+(y - xi), pi_-(y - xi))]
        pi_-(z) = P(mu U < z)^2 E[z - mu U | mu U < z]
        pi_+(z) = P(mu U > z)^2 E[mu U - z | mu U > z]

    Exact closed form (the module :mod:`bigstep.theory.tv`), O(q n).

    Parameters
    ----------
    y : array
        Queries of any shape; NaN gives NaN.
    x : array
        1-D data, shape (n,), finite.
    mu, sigma : float
        The noise level, positive and finite.

    Returns
    -------
    array or float
        float64 of y's shape and array type (a float for a scalar y).

    Examples
    --------
    >>> from bigstep import theory
    >>> p = theory.tv_weight([0.0, 0.5, 2.0], [-1.0, 1.0], 1.0, 1e-6)  # sigma -> 0: tent of height 1/4
    >>> [round(float(v), 6) for v in p]
    [0.25, 0.125, 0.0]
    """
    xa = data_1d(x)
    mu_v = real_scalar(mu, "mu")
    sigma_v = real_scalar(sigma, "sigma")
    ya = as_numpy(y, "y")
    cs = Centres(xa, mu_v, sigma_v)
    out = _weight(np.asarray(ya, dtype=np.float64), 0.0, cs, _pieces(cs))
    return wrap_like(out, y) if out.ndim else float(out)


# ------------------------------------------------------------------ TV_pi


def tv_derivative(net, x, mu, sigma) -> float:
    """Weighted total variation ``TV_pi(s) = int |s''(y)| pi(y) dy`` of a ReLU network, or of ``s*``.

    For a network (a :class:`bigstep.ReLUNet1D`),
    ``s'' = (1/m) sum_l |w1_l| w2_l delta(y - tau_l)``, so exactly

        TV_pi(s_theta) = (1/m) sum over distinct kinks tau of |sum_{l: tau_l = tau} |w1_l| w2_l| pi(tau)

    (neurons whose kinks ``-b/w1`` are equal as floats share a kink and can cancel;
    neurons with w1 = 0 have no kink; kinks outside ``[mu x_(1), mu x_(n)]`` have
    pi = 0).  For ``net=None``, with ``s*'' = mu^3 E[(W - EW)^3] / sigma^6`` (eq. 9):

        TV_pi(s*) = int_{mu x_(1)}^{mu x_(n)} |s*''(y)| pi(y) dy

    by the adaptive Gauss-Kronrod quadrature of :func:`bigstep.optimal_risk.optimal_risk`
    (split at the data points, the sharp midpoints and the breakpoints of pi, in local
    coordinates), with the zeros of ``s*''`` (kinks of the integrand) located by
    bisection and used as subinterval ends.

    Parameters
    ----------
    net : ReLUNet1D or None
        The network, or None for ``s*``.
    x : array
        1-D data, shape (n,), finite.
    mu, sigma : float
        The noise level, positive and finite.

    Returns
    -------
    float
        inf where ``TV_pi(s*)`` exceeds the float64 range.

    Notes
    -----
    Accuracy for ``s*``: estimated relative error below 1e-10; measured 1e-16 .. 2e-11
    against scipy quad for sigma from 1e-3 to 10 with data spread ~4.  When sigma is much
    larger than the data spread, ``s*''`` is a small difference of nearly symmetric
    moments and is only known to ``~ eps (sigma / (mu spread))^2`` of its terms; the
    result is then that accurate and a RuntimeWarning says so.

    Examples
    --------
    >>> import bigstep
    >>> from bigstep import theory
    >>> net = bigstep.ReLUNet1D(W1=[1.0, -1.0], b1=[0.0, 0.0], W2=[2.0, 2.0])   # both kinks at 0
    >>> round(theory.tv_derivative(net, [-1.0, 1.0], 1.0, 1e-6), 6)    # (1/2) * |2 + 2| * pi(0)
    0.5
    """
    xa = data_1d(x)
    mu_v = real_scalar(mu, "mu")
    sigma_v = real_scalar(sigma, "sigma")
    cs = Centres(xa, mu_v, sigma_v)
    pieces = _pieces(cs)
    if net is None:
        return _tv_optimal(cs, pieces)
    from ..nets import ReLUNet1D

    if not isinstance(net, ReLUNet1D):
        raise TypeError(f"net must be a bigstep.ReLUNet1D or None (for s*), got {type(net).__name__}")
    tau = net.kinks
    coef = np.abs(net.W1) * net.W2
    keep = np.isfinite(tau)
    tau, coef = tau[keep], coef[keep]
    if tau.shape[0] == 0:
        return 0.0
    uniq, inv = np.unique(tau, return_inverse=True)
    jump = np.abs(np.bincount(inv.ravel(), weights=coef, minlength=uniq.shape[0]))
    return float(jump @ _weight(uniq, 0.0, cs, pieces) / net.width)


def _significant_sign(res):
    """sign of values known to +- 64 eps * scale (0 where the sign is not known)."""
    v, scale = res
    return np.where(np.abs(v) > 64 * np.finfo(np.float64).eps * scale, np.sign(v), 0.0)


def _split_at_sign_changes(fn, parts, samples: int = 16):
    """Split the subintervals anchor + [ta, tb] at the sign changes of fn(anchor, t) (which
    returns (values, scale of their rounding error / eps); signs below the rounding level
    are ignored).

    |fn| has a kink at each zero of fn, where Gauss-Kronrod converges slowly and its
    error estimate can be far too small; as subinterval ends the kinks cost nothing.
    Each subinterval is sampled at ``samples`` + 1 equispaced points and every bracketed
    sign change is located by bisection to the float spacing of t (a pair of zeros
    closer than the sampling step is missed, but |fn| is then tiny between them)."""
    an, ta, tb = parts
    u = np.linspace(0.0, 1.0, samples + 1)
    T = ta[:, None] + (tb - ta)[:, None] * u[None, :]
    T[:, -1] = tb
    sg = _significant_sign(fn(np.repeat(an, samples + 1), T.ravel())).reshape(T.shape)
    rows, cols = np.nonzero(sg[:, :-1] * sg[:, 1:] < 0)
    lo, hi, s_lo = T[rows, cols], T[rows, cols + 1], sg[rows, cols]
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        live = (mid > lo) & (mid < hi)
        if not live.any():
            break
        s_mid = np.sign(fn(an[rows], mid)[0])
        left = s_mid * s_lo > 0
        lo = np.where(left, mid, lo)
        hi = np.where(left, hi, mid)
    cut_rows = rows
    cuts = 0.5 * (lo + hi)
    if cut_rows.shape[0] == 0:
        return parts
    m = an.shape[0]
    row = np.concatenate([np.arange(m), np.arange(m), cut_rows])
    pt = np.concatenate([ta, tb, cuts])
    order = np.lexsort((pt, row))
    row, pt = row[order], pt[order]
    same = row[1:] == row[:-1]
    new_a, new_b, new_row = pt[:-1][same], pt[1:][same], row[:-1][same]
    keep = new_b > new_a
    return an[new_row[keep]], new_a[keep], new_b[keep]


def _tv_optimal(cs: Centres, pieces) -> float:
    sigma = cs.sigma
    if cs.c.shape[0] < 2:
        return 0.0

    def integrand(anchor, t):  # sigma^6 |s*''| pi, and the size of its rounding error / eps
        k3, scale = cs.third_cumulant(anchor, t)
        w = _weight(anchor, t, cs, pieces)
        return np.abs(k3) * w, scale * w

    l, r = pieces[0], pieces[1]
    parts = subintervals(cs.c, sigma, cs.c[0], cs.c[-1], np.concatenate([l, r]))
    parts = _split_at_sign_changes(cs.third_cumulant, parts)
    value, err, _, converged = integrate(integrand, parts, _TV_RTOL, min_width(cs.c, sigma))
    check_converged("tv_derivative", value, err, converged, _TV_RTOL)
    if value == 0.0:
        return 0.0
    s2 = sigma * sigma
    with np.errstate(over="ignore"):
        return float(np.float64(value) / s2 / s2 / s2)  # inf where TV_pi(s*) exceeds float64


# ------------------------------------------------------------------ bounds
