"""Risk of the empirical optimal score, R_n(s*), by adaptive Gauss-Kronrod quadrature.

For 1-D data x_1..x_n and a noise level (mu, sigma),

    R_n(s*) = (1/n) sum_i E_{Y ~ N(mu x_i, sigma^2)} [ (s*(Y) + (Y - mu x_i)/sigma^2)^2 ].

Cancellation-free form.  s*(y) + (y - mu x_i)/sigma^2 = (mu/sigma^2) sum_j w_j(y) (x_j - x_i),
and N(y; mu x_i, sigma^2) = n p(y) w_i(y) with p = (1/n) sum_i N(y; mu x_i, sigma^2), so

    R_n(s*) = (mu^2 / sigma^4) int p(y) Var[W(y)] dy,

W(y) taking the value x_j with probability w_j(y) (docs/design.md section 2).  The weights
come from a log-sum-exp and Var W from moments about the most likely point, so the
integrand is accurate to a few ulps relative wherever it matters, including where
Var W ~ 1e-300: R_n(s*) is computed directly, never as a difference of O(1/sigma^2)
terms, and stays accurate when it is tiny (1e-50 and below at sigma = 1e-3).

Quadrature.  At small sigma the integrand is exponentially small except in layers of
width ~ sigma^2 / (mu gap) around the midpoints between consecutive data points, and
Gauss-Hermite or Monte Carlo miss them.  The line is split at the data points (thinned
to one per sigma), at the midpoints of every gap wider than sigma/mu, at any extra
breakpoints, and at mu x_(1) - 40 sigma and mu x_(n) + 40 sigma (beyond which the
Gaussian factor is below 1e-348: zero in float64).  Each piece is subdivided
geometrically (steps of 2) away from its ends, starting at the local scale
(sigma^2 / (mu gap) at a sharp midpoint, sigma elsewhere), and then integrated by
vectorised adaptive G7-K15 Gauss-Kronrod with QUADPACK's error estimate.  A subinterval
is accepted when its error estimate is below 1e-12 of its own integral (the integrand is
non-negative, so this bounds the relative error of the total) or below 1e-13 of the
running total times its share of the range.  Nodes are held in local coordinates
y = anchor + t, anchor the nearest breakpoint, and y - mu x_j is formed from
(anchor - mu x_j) + t (see :class:`bigstep._quadrature.Centres`), so a layer far narrower than the float
spacing of y (gap / sigma^2 >> 1 / (eps |y|)) is still resolved.

Accuracy: better than 1e-10 relative for sigma in [1e-3, 10] (measured against 40-digit
mpmath quadrature: ~1e-15 typical, 2e-15 worst, including R_n(s*) ~ 5e-42); see
tests/test_optimal_risk.py.  Duplicate data points are merged into weighted points
(they have no transition between them).  Values below the float64 range come out as
0.0.  A RuntimeWarning is raised if the quadrature's own error estimate exceeds 1e-10.

Cost: O(K w) for K quadrature nodes (~ 15 * a few dozen subintervals per data point)
and w the number of data points within reach of a node (all of them when sigma is
comparable to the data spread, a few when it is small); about 10 ms for n = 20 and
0.3 s for n = 2000.  Only numpy is used.
"""

from __future__ import annotations

import numpy as np

from ._validate import real_scalar
from ._quadrature import TAIL, Centres, check_converged, data_1d, integrate, min_width, subintervals

__all__ = ["optimal_risk"]

# ------------------------------------------------------------------ public API


def optimal_risk(x, mu, sigma) -> float:
    """DSM risk of the empirical optimal score, ``R_n(s*)``, for 1-D data:

        R_n(s*) = (1/n) sum_i E_{Y ~ N(mu x_i, sigma^2)} [(s*(Y) + (Y - mu x_i)/sigma^2)^2]
                = (mu^2 / sigma^4) int p(y) Var[W(y)] dy

    the minimum of the risk over all score functions: for any s,
    ``R_n(s) - R_n(s*) = (1/n) sum_i E_i[(s(Y) - s*(Y))^2]``.  Computed directly (not as
    a difference), to better than 1e-10 relative for sigma in [1e-3, 10], by adaptive
    Gauss-Kronrod quadrature split at the midpoints between data points (see the module
    docstring).  One point, or only copies of one point: ``s*`` is the Gaussian score
    and ``R_n(s*) = 0`` exactly.

    Parameters
    ----------
    x : array
        1-D training data, shape (n,), n >= 1, finite (duplicates allowed).
    mu, sigma : float
        The noise level, positive and finite.

    Returns
    -------
    float
        A Python float (0.0 when the exact value is below the float64 range, e.g. for
        well-separated data at tiny sigma).

    Examples
    --------
    >>> import bigstep
    >>> from bigstep.optimal_risk import optimal_risk
    >>> optimal_risk([0.0], 1.0, 0.5)
    0.0
    >>> round(optimal_risk([-1.0, 1.0], 1.0, 1.0), 10)  # E[sech^2(Y)], Y ~ N(1, 1)
    0.4495995092
    """
    xa = data_1d(x)
    mu_v = real_scalar(mu, "mu")
    sigma_v = real_scalar(sigma, "sigma")
    cs = Centres(xa, mu_v, sigma_v)
    if cs.c.shape[0] == 1:
        return 0.0
    lo = cs.c[0] - TAIL * sigma_v
    hi = cs.c[-1] + TAIL * sigma_v
    value, err, _, converged = integrate(cs.var_density, subintervals(cs.c, sigma_v, lo, hi),
                                          min_width=min_width(cs.c, sigma_v))
    check_converged("optimal_risk", value, err, converged, 1e-10)
    if value == 0.0:
        return 0.0
    return float(value / sigma_v**2 / sigma_v**2)


def _mean_squared_gap(g, x, mu, sigma, breakpoints=()) -> float:
    """(1/n) sum_i E_{Y ~ N(mu x_i, sigma^2)}[(g(Y) - s*(Y))^2] = int p(y) (g(y) - s*(y))^2 dy
    for a vectorised callable g (array in, array out), e.g. a ReLUNet1D.

    The excess risk identity R_n(g) - R_n(s*) = this, computed without the difference.
    Split at the same points as :func:`optimal_risk` and at ``breakpoints`` (e.g. the
    kinks of a network, where g is not smooth).  g - s* is formed as a difference of two
    O(1/sigma^2) numbers, so its absolute error is ~ eps (|g| + |s*|) per node (the
    quadrature stops refining at that level); tails beyond 40 sigma from the data are
    dropped (their Gaussian weight is < 1e-348).
    """
    xa = data_1d(x)
    mu_v = real_scalar(mu, "mu")
    sigma_v = real_scalar(sigma, "sigma")
    cs = Centres(xa, mu_v, sigma_v)
    lo = cs.c[0] - TAIL * sigma_v
    hi = cs.c[-1] + TAIL * sigma_v

    eps = np.finfo(np.float64).eps

    def integrand(anchor, t):  # p (g - s*)^2, and the size of its rounding error / eps
        p, s, size = cs.score_density(anchor, t)
        gv = np.asarray(g(anchor + t), dtype=np.float64)
        gap = gv - s
        size = size + np.abs(gv)
        return p * gap * gap, p * size * (np.abs(gap) + eps * size)

    parts = subintervals(cs.c, sigma_v, lo, hi, breakpoints)
    value, err, noise, converged = integrate(integrand, parts, min_width=min_width(cs.c, sigma_v))
    check_converged("_mean_squared_gap", value, err, converged, 1e-9, noise)
    return float(value)
