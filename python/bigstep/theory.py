"""Section 5-6 of the paper: the weighted total variation TV_pi and the bounds on it.

Notation (DESIGN.md section 2; x sorted, x_(1) <= ... <= x_(n)):

    Delta = min_k (x_(k+1) - x_(k))                                 (min_spacing)
    TV_pi(s) = int |s''(y)| pi(y) dy                                 (tv_derivative)
    pi(y) = E_{xi ~ N(0, sigma^2)}[min(pi_+(y - xi), pi_-(y - xi))]  on [mu x_(1), mu x_(n)], 0 outside
    pi_-(z) = P(mu U < z)^2 E[z - mu U | mu U < z]                   (U uniform on the data)
    pi_+(z) = P(mu U > z)^2 E[mu U - z | mu U > z]                   (tv_weight)

The paper prints TV_pi(s*) = int |s*'| pi (Section 5); the superscript (1), "TV of the first
derivative", the proofs (Theorem 4, Proposition 10) and DESIGN.md all use |s*''|, which is
what is computed here.

pi in closed form.  With N(z) points at or left of z, pi_-(z) = (N/n^2) sum_{mu x_j < z} (z - mu x_j)
is linear between data points (slope N^2/n^2, jumping up at each point) and pi_+ likewise
(slope -(n-N)^2/n^2); pi_- increases and pi_+ decreases, so g = min(pi_-, pi_+) is
piecewise linear with breakpoints at the data points and at the one crossing.  Each
piece a + b z integrates against the Gaussian exactly:
int_l^r (c + b (z - y)) phi_sigma(z - y) dz = c [Phi(u_r) - Phi(u_l)] + b sigma [phi(u_l) - phi(u_r)],
u = (z - y)/sigma, with each Phi difference taken from the erfc tail that avoids
cancellation.  Accuracy ~1e-14 relative to max(pi) (tests compare with quadrature of
the definition).

Bounds.  Each bound function returns a :class:`Bound` with the value as printed in the
paper, whether every hypothesis that can be checked holds, the hypotheses one by one
and the numbers in them.  Reading the appendix proofs against the statements found
these inconsistencies (details at each function):

- Theorem 4 and Proposition 7: the proofs need n >= 10 (not in the statements); it is
  checked as a hypothesis.
- Proposition 6: case 2 of the proof claims D subset [-sigma, |tau - mu x_i|], but D
  extends to |tau - mu x_i| + |f|/(4A); using only the lower half of D costs a factor 2,
  i.e. (2 sqrt(2 pi e) A sigma n R)^(1/3) in place of the printed (sqrt(2 pi) e A sigma n R)^(1/3)
  (6.6% larger third term).  ``proved_value`` carries the corrected bound.
- Proposition 7: the proof's last step claims (mu n^2 Delta / 1024)(1/2 - e^-32)(1 - 1/(2 sqrt 2))/sigma^2
  >= mu n^2 Delta / (2^11 sigma^2), but the left side is mu n^2 Delta / (3168.1 sigma^2);
  ``proved_value`` is that.
- Theorem 8: the proof combines Proposition 7 with 2^11 and Proposition 6 with
  sqrt(e) (its e^(1/6) factor), the printed e would give e^(1/3).  With the constants
  the proofs do give (above), the threshold 2^12 sigma^2 / (mu n^2 Delta) survives but
  the excess-risk constant shrinks from pi/(2^36 sqrt e) to
  pi (2 kappa / 3)^3 / (2 sqrt e), kappa = c7 - 2^-13 (c7 the Proposition 7 constant),
  about 13.5 times smaller; ``proved_value`` / ``proved_holds`` carry that version.
  The sigma_2 condition printed in the proof drops a factor Delta^3 (it is restored).
- Proposition 9 (used by Theorem 4) prints (n-i)^2 (n-i+1)/2 where the argument gives
  (n-i)^2 (n-i-1)/2; the final constant of Theorem 4 is unaffected.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ._arrays import as_numpy
from ._numba import jit
from ._validate import integer, real_scalar
from .optimal_risk import _Centres, _check_converged, _data_1d, _integrate, _min_width, _scalar, _subintervals

__all__ = [
    "Bound",
    "min_spacing",
    "tv_weight",
    "tv_derivative",
    "optimal_risk_bound",
    "theorem4_bound",
    "proposition6_bound",
    "proposition7_bound",
    "lr_threshold",
    "excess_risk_lower_bound",
]

_INV_SQRT_2PI = 0.39894228040143267794
_INV_SQRT_2 = 0.70710678118654752440
_REACH = 40.0  # pieces further than 40 sigma from y contribute < 1e-348 of their size
_TV_RTOL = 1e-10

# Proposition 7's constant as its proof gives it (the statement prints 2^-11), and
# Theorem 8's excess-risk constant rebuilt from it (module docstring).
_C7 = (0.5 - math.exp(-32.0)) * (1.0 - 1.0 / (2.0 * math.sqrt(2.0))) / 1024.0
_KAPPA = _C7 - 2.0**-13


@dataclass(frozen=True)
class Bound:
    """One bound of the paper evaluated on given data.

    statement   : which result ("Theorem 4", ...) and what it bounds
    value       : the bound as printed in the paper
    holds       : True when every hypothesis that could be checked holds (those listed
                  in ``unchecked`` are the caller's responsibility)
    conditions  : hypothesis -> whether it holds (read-only mapping)
    quantities  : the numbers in the hypotheses and in the bound (read-only mapping)
    unchecked   : hypotheses that could not be checked from the arguments given
    proved_value, proved_holds : the bound the appendix's argument supports and whether
                  its hypotheses hold (equal to value / holds where statement and
                  proof agree; see the module docstring)
    """

    statement: str
    value: float
    holds: bool
    conditions: Mapping[str, bool] = field(default_factory=dict)
    quantities: Mapping[str, float] = field(default_factory=dict)
    unchecked: tuple = ()
    proved_value: float = math.nan
    proved_holds: bool = False

    def __post_init__(self):
        object.__setattr__(self, "conditions", types.MappingProxyType(dict(self.conditions)))
        object.__setattr__(self, "quantities", types.MappingProxyType(dict(self.quantities)))
        object.__setattr__(self, "unchecked", tuple(self.unchecked))


# ------------------------------------------------------------------ spacing and pi


def min_spacing(x) -> float:
    """Delta = min_k (x_(k+1) - x_(k)), the smallest gap between sorted data points.

    x : array (n,), n >= 2, finite.  Duplicated points give Delta = 0.0 (the paper
    assumes Delta > 0; with Delta = 0 every bound below reports its hypotheses as not
    holding).  Raises ValueError for fewer than two points.

    Example
    -------
    >>> from bigstep import theory
    >>> theory.min_spacing([0.0, 1.0, 0.25])
    0.25
    """
    xa = _data_1d(x)
    if xa.shape[0] < 2:
        raise ValueError(f"x must have at least two points for a spacing, got {xa.shape[0]}")
    return float(np.diff(np.sort(xa)).min())


def _pieces(cs: _Centres):
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


@jit()
def _gauss_mass(ul, ur):
    """P(ul < Z < ur) for ul <= ur, Z ~ N(0, 1), from the tail that avoids cancellation."""
    if ul >= 0.0:
        return 0.5 * (math.erfc(ul * _INV_SQRT_2) - math.erfc(ur * _INV_SQRT_2))
    if ur <= 0.0:
        return 0.5 * (math.erfc(-ur * _INV_SQRT_2) - math.erfc(-ul * _INV_SQRT_2))
    return 1.0 - 0.5 * (math.erfc(-ul * _INV_SQRT_2) + math.erfc(ur * _INV_SQRT_2))


@jit()
def _weight_kernel(anchor, t, l, r, gl, gr, lo, hi, sigma, out):
    """pi at the nodes anchor + t: sum over the pieces within 40 sigma of the node, each
    piece's offsets l - anchor, r - anchor rounded once per (anchor, piece)."""
    for q in range(t.shape[0]):
        aq = anchor[q]
        tq = t[q]
        yq = aq + tq
        if yq != yq:
            out[q] = math.nan
            continue
        if yq < lo or yq > hi:
            out[q] = 0.0
            continue
        a = np.searchsorted(r, yq - _REACH * sigma)
        b = np.searchsorted(l, yq + _REACH * sigma)
        acc = 0.0
        for p in range(a, b):
            width = r[p] - l[p]
            if width <= 0.0:
                continue
            dl = (l[p] - aq) - tq          # l - y
            dr = (r[p] - aq) - tq          # r - y
            slope = (gr[p] - gl[p]) / width
            cval = gl[p] - slope * dl      # the piece's line at y
            ul = dl / sigma
            ur = dr / sigma
            acc += cval * _gauss_mass(ul, ur) + slope * sigma * _INV_SQRT_2PI * (
                math.exp(-0.5 * ul * ul) - math.exp(-0.5 * ur * ur))
        out[q] = acc


def _weight(anchor, t, cs: _Centres, pieces) -> np.ndarray:
    """pi at anchor + t (same shapes; anchor alone with t = 0 for absolute queries)."""
    l, r, gl, gr = pieces
    shape = np.shape(anchor)
    an = np.ascontiguousarray(anchor, dtype=np.float64).ravel()
    tt = np.ascontiguousarray(np.broadcast_to(t, shape), dtype=np.float64).ravel()
    out = np.empty_like(an)
    if l.shape[0] == 0:  # one distinct point: pi = 0 (NaN stays NaN)
        out[:] = np.where(np.isnan(an + tt), np.nan, 0.0)
    else:
        _weight_kernel(an, tt, l, r, gl, gr, cs.c[0], cs.c[-1], cs.sigma, out)
    return out.reshape(shape)


def tv_weight(y, x, mu, sigma):
    """The weight pi(y) of TV_pi (Section 5), for 1-D data x and queries y of any shape.

    pi(y) = E_{xi ~ N(0, sigma^2)}[min(pi_+(y - xi), pi_-(y - xi))] for mu x_(1) <= y <= mu x_(n),
    0 outside, with pi_-(z) = P(mu U < z)^2 E[z - mu U | mu U < z] and
    pi_+(z) = P(mu U > z)^2 E[mu U - z | mu U > z], U uniform on the data (duplicates
    counted).  Exact closed form (module docstring), O(q n).

    Parameters
    ----------
    y : array of any shape (float64 result of the same shape); NaN gives NaN
    x : array (n,), finite; mu, sigma : positive finite scalars

    Example
    -------
    >>> from bigstep import theory
    >>> p = theory.tv_weight([0.0, 0.5, 2.0], [-1.0, 1.0], 1.0, 1e-6)  # sigma -> 0: tent of height 1/4
    >>> [round(float(v), 6) for v in p]
    [0.25, 0.125, 0.0]
    """
    xa = _data_1d(x)
    mu_v = _scalar(mu, "mu")
    sigma_v = _scalar(sigma, "sigma")
    ya = as_numpy(y, "y")
    cs = _Centres(xa, mu_v, sigma_v)
    out = _weight(np.asarray(ya, dtype=np.float64), 0.0, cs, _pieces(cs))
    return out if out.ndim else float(out)


# ------------------------------------------------------------------ TV_pi


def tv_derivative(net, x, mu, sigma) -> float:
    """TV_pi(s) = int |s''(y)| pi(y) dy for a ReLU network, or for s* when net is None.

    Network (bigstep.ReLUNet1D): s'' = (1/m) sum_l |w1_l| w2_l delta(y - tau_l), so

        TV_pi(s_theta) = (1/m) sum over distinct kinks tau of |sum_{l: tau_l = tau} |w1_l| w2_l| pi(tau),

    exact (neurons whose kinks -b/w1 are equal as floats share a kink and can cancel;
    neurons with w1 = 0 have no kink; kinks outside [mu x_(1), mu x_(n)] have pi = 0).

    None: TV_pi(s*) = int_{mu x_(1)}^{mu x_(n)} |s*''(y)| pi(y) dy with
    s*'' = mu^3 E[(W - EW)^3] / sigma^6 (eq. 9), by the adaptive Gauss-Kronrod quadrature of
    :func:`bigstep.optimal_risk.optimal_risk` (split at the data points, the sharp
    midpoints and the breakpoints of pi, in local coordinates), with the zeros of s*''
    (kinks of the integrand) located by bisection and used as subinterval ends.
    Estimated relative error below 1e-10; measured 1e-16 .. 2e-11 against scipy quad for
    sigma from 1e-3 to 10 with data spread ~4.  When sigma is much larger than the data
    spread, s*'' is a small difference of nearly symmetric moments and is only known to
    ~ eps (sigma / (mu spread))^2 of its terms; the result is then that accurate and a
    RuntimeWarning says so.  Returns inf where TV_pi(s*) exceeds the float64 range.

    Example
    -------
    >>> import bigstep
    >>> from bigstep import theory
    >>> net = bigstep.ReLUNet1D([1.0, -1.0], [2.0, 2.0], [0.0, 0.0])   # both kinks at 0
    >>> round(theory.tv_derivative(net, [-1.0, 1.0], 1.0, 1e-6), 6)    # (1/2) * |2 + 2| * pi(0)
    0.5
    """
    xa = _data_1d(x)
    mu_v = _scalar(mu, "mu")
    sigma_v = _scalar(sigma, "sigma")
    cs = _Centres(xa, mu_v, sigma_v)
    pieces = _pieces(cs)
    if net is None:
        return _tv_optimal(cs, pieces)
    from .relu_risk import ReLUNet1D

    if not isinstance(net, ReLUNet1D):
        raise TypeError(f"net must be a bigstep.ReLUNet1D or None (for s*), got {type(net).__name__}")
    tau = net.kinks
    coef = np.abs(net.w1) * net.w2
    keep = np.isfinite(tau)
    tau, coef = tau[keep], coef[keep]
    if tau.shape[0] == 0:
        return 0.0
    uniq, inv = np.unique(tau, return_inverse=True)
    jump = np.abs(np.bincount(inv.ravel(), weights=coef, minlength=uniq.shape[0]))
    return float(jump @ _weight(uniq, 0.0, cs, pieces) / net.m)


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


def _tv_optimal(cs: _Centres, pieces) -> float:
    sigma = cs.sigma
    if cs.c.shape[0] < 2:
        return 0.0

    def integrand(anchor, t):  # sigma^6 |s*''| pi, and the size of its rounding error / eps
        k3, scale = cs.third_cumulant(anchor, t)
        w = _weight(anchor, t, cs, pieces)
        return np.abs(k3) * w, scale * w

    l, r = pieces[0], pieces[1]
    parts = _subintervals(cs.c, sigma, cs.c[0], cs.c[-1], np.concatenate([l, r]))
    parts = _split_at_sign_changes(cs.third_cumulant, parts)
    value, err, _, converged = _integrate(integrand, parts, _TV_RTOL, _min_width(cs.c, sigma))
    _check_converged("tv_derivative", value, err, converged, _TV_RTOL)
    if value == 0.0:
        return 0.0
    s2 = sigma * sigma
    with np.errstate(over="ignore"):
        return float(np.float64(value) / s2 / s2 / s2)  # inf where TV_pi(s*) exceeds float64


# ------------------------------------------------------------------ bounds


def _setup(x, mu, sigma):
    xa = _data_1d(x)
    mu_v = _scalar(mu, "mu")
    sigma_v = _scalar(sigma, "sigma")
    delta = min_spacing(xa)
    return xa, int(xa.shape[0]), mu_v, sigma_v, delta


def _exp_ratio(mu, delta, sigma, k):
    """exp(-mu^2 Delta^2 / (k sigma^2))."""
    return math.exp(-((mu * delta / sigma) ** 2) / k)


def optimal_risk_bound(x, mu, sigma) -> Bound:
    """Corollary 3, eq. (10): R_n(s*) <= 4 mu^2 (x_(n) - x_(1))^2 exp(-mu^2 Delta^2 / (32 sigma^2)) / sigma^4,
    under Delta >= 2 sigma / mu (and n >= 2, used as n Delta <= 2 (x_(n) - x_(1))).

    Example
    -------
    >>> from bigstep import theory
    >>> b = theory.optimal_risk_bound([0.0, 1.0, 2.0], 1.0, 0.05)
    >>> b.holds, round(b.value, 1)
    (True, 9.5)
    """
    xa, n, mu, sigma, delta = _setup(x, mu, sigma)
    spread = float(xa.max() - xa.min())
    value = 4 * mu**2 * spread**2 / sigma**4 * _exp_ratio(mu, delta, sigma, 32)
    cond = {"Delta >= 2 sigma / mu": delta >= 2 * sigma / mu}
    return Bound("Corollary 3 (eq. 10): upper bound on R_n(s*)", value, all(cond.values()), cond,
                 {"n": n, "Delta": delta, "spread": spread}, (), value, all(cond.values()))


def theorem4_bound(x, mu, sigma) -> Bound:
    """Theorem 4: TV_pi(s*) >= mu^3 n Delta^3 / (2^12 sigma^4) if 16 n^3 exp(-mu^2 Delta^2 / (4 sigma^2)) <= 1.

    Hypotheses checked: that condition (quantity "condition_lhs"), and n >= 10, which
    the proof uses ("at least n/4 indices between ceil(n/4)+1 and floor(3n/4)-1") but
    the statement omits.  Compare ``value`` with ``tv_derivative(None, x, mu, sigma)``.

    Example
    -------
    >>> from bigstep import theory
    >>> b = theory.theorem4_bound(list(range(12)), 1.0, 0.1)
    >>> b.holds, round(b.value, 2)
    (True, 29.3)
    """
    xa, n, mu, sigma, delta = _setup(x, mu, sigma)
    lhs = 16.0 * n**3 * _exp_ratio(mu, delta, sigma, 4)
    value = mu**3 * n * delta**3 / (2.0**12 * sigma**4)
    cond = {"16 n^3 exp(-mu^2 Delta^2 / (4 sigma^2)) <= 1": lhs <= 1.0, "n >= 10 (used by the proof)": n >= 10}
    ok = all(cond.values())
    return Bound("Theorem 4: lower bound on TV_pi(s*)", value, ok, cond,
                 {"n": n, "Delta": delta, "condition_lhs": lhs}, (), value, ok)


def _net_checks(net, A):
    """(conditions, quantities) of the model class S: w1 in {-1, +1}, |w2| <= A."""
    w2max = float(np.abs(net.w2).max())
    cond = {"|w1_l| = 1 for every neuron (theory setting)": bool(np.all(np.abs(net.w1) == 1.0)),
            "max_l |w2_l| <= A": w2max <= A}
    return cond, {"max_abs_w2": w2max}


def _check_net(net):
    from .relu_risk import ReLUNet1D

    if not isinstance(net, ReLUNet1D):
        raise TypeError(f"net must be a bigstep.ReLUNet1D, got {type(net).__name__}")


def _finite(value, name, *, nonneg=False) -> float:
    return real_scalar(value, name, "nonnegative" if nonneg else "finite")


def _prop6_third(A, sigma, n, risk, cube_factor):
    """(A / (sqrt(2 pi) sigma)) max(sqrt(2 n R), (cube_factor A sigma n R)^(1/3))."""
    return A * _INV_SQRT_2PI / sigma * max(math.sqrt(2 * n * risk), (cube_factor * A * sigma * n * risk) ** (1 / 3))


def proposition6_bound(x, mu, sigma, *, net=None, lambda_max=None, risk=None, m=None, A=None) -> Bound:
    """Proposition 6: upper bound on TV_pi(s_theta) from the sharpness and the risk,

        TV_pi(s_theta) <= lambda_max m / 4 + sqrt(R_n(theta)) / 2
                          + (A / (sqrt(2 pi) sigma)) max(sqrt(2 n R_n), (sqrt(2 pi) e A sigma n R_n)^(1/3)).

    At a linearly stable minimum lambda_max <= 2 / (m eta), so passing
    lambda_max = 2 / (m eta) gives the second form (1/(2 eta) + ...).

    Give either ``net`` (a bigstep.ReLUNet1D; lambda_max = bigstep.sharpness and
    R_n = bigstep.dsm_risk with wrt="outer_bias" are computed unless passed, m = net.m,
    A defaults to max(max|w2|, 1/sigma^2)) or the numbers lambda_max, risk, m and A.

    Hypotheses: A >= 1/sigma^2 (used for the Lipschitz constant of s_theta + (y - mu x_i)/sigma^2),
    and for the model class w1 in {-1, +1}, max|w2| <= A (checked when net is given).
    The bound only uses |Dirac term|, so the sign error of the printed eq. (15) does not
    affect it.  ``proved_value`` has (2 sqrt(2 pi e) A sigma n R)^(1/3) in the last term
    (module docstring: the proof's case 2 needs it).

    Example
    -------
    >>> from bigstep import theory
    >>> b = theory.proposition6_bound([-1.0, 0.0, 1.0], 1.0, 0.5, lambda_max=2.0, risk=0.1, m=10, A=4.0)
    >>> round(b.value, 4), b.holds
    (10.2613, True)
    """
    xa = _data_1d(x)
    n = int(xa.shape[0])
    mu_v = _scalar(mu, "mu")
    sigma_v = _scalar(sigma, "sigma")
    cond, quant, unchecked = {}, {}, []
    if net is not None:
        _check_net(net)
        from .relu_risk import dsm_risk, sharpness

        if lambda_max is None:
            lambda_max = sharpness(net, xa, mu_v, sigma_v)
        if risk is None:  # a tiny risk can come out a rounding error below 0
            risk = max(dsm_risk(net, xa, mu_v, sigma_v), 0.0)
        if m is None:
            m = net.m
        if A is None:
            A = max(float(np.abs(net.w2).max()), 1.0 / sigma_v**2)
    missing = [k for k, v in (("lambda_max", lambda_max), ("risk", risk), ("m", m), ("A", A)) if v is None]
    if missing:
        raise ValueError(f"proposition6_bound needs net or {', '.join(missing)}; got none for {', '.join(missing)}")
    lam = _finite(lambda_max, "lambda_max")
    risk_v = _finite(risk, "risk", nonneg=True)
    A_v = _scalar(A, "A")
    m_v = integer(m, "m", minimum=1)
    if net is not None:
        if net.m != m_v:
            raise ValueError(f"m must equal net.m = {net.m}, got {m_v}")
        c, q = _net_checks(net, A_v)
        cond.update(c)
        quant.update(q)
    else:
        unchecked += ["|w1_l| = 1 for every neuron (theory setting)", "max_l |w2_l| <= A"]
    cond["A >= 1/sigma^2"] = A_v >= 1.0 / sigma_v**2
    t1, t2 = lam * m_v / 4.0, math.sqrt(risk_v) / 2.0
    t3 = _prop6_third(A_v, sigma_v, n, risk_v, math.sqrt(2 * math.pi) * math.e)
    t3p = _prop6_third(A_v, sigma_v, n, risk_v, 2 * math.sqrt(2 * math.pi * math.e))
    quant.update({"n": n, "m": m_v, "A": A_v, "lambda_max": lam, "risk": risk_v,
                  "sharpness_term": t1, "risk_term": t2, "dirac_term": t3, "dirac_term_proved": t3p})
    ok = all(cond.values())
    return Bound("Proposition 6: upper bound on TV_pi(s_theta)", t1 + t2 + t3, ok, cond, quant, unchecked,
                 t1 + t2 + t3p, ok)


def proposition7_bound(x, mu, sigma, *, risk=None, net=None) -> Bound:
    """Proposition 7: TV_pi(s_theta) >= mu n^2 Delta / (2^11 sigma^2) for every theta with
    R_n(theta) <= 1/(16 n sigma^2), if Delta >= 8 sigma / mu.

    risk : R_n(theta), or net (bigstep.dsm_risk is computed); without either the risk
    hypothesis is listed in ``unchecked``.  n >= 10 (used by the proof) is checked too.
    ``proved_value`` = c7 mu n^2 Delta / sigma^2 with c7 = (1/2 - e^-32)(1 - 2^-3/2)/1024
    = 1/3168.1 (the proof's last inequality does not give 1/2^11).

    Example
    -------
    >>> from bigstep import theory
    >>> b = theory.proposition7_bound(list(range(12)), 1.0, 0.1, risk=0.0)
    >>> b.holds, round(b.value, 3)
    (True, 7.031)
    """
    xa, n, mu_v, sigma_v, delta = _setup(x, mu, sigma)
    unchecked = []
    if risk is None and net is not None:
        _check_net(net)
        from .relu_risk import dsm_risk

        risk = max(dsm_risk(net, xa, mu_v, sigma_v), 0.0)  # a tiny risk can come out a rounding error below 0
    cond = {"Delta >= 8 sigma / mu": delta >= 8 * sigma_v / mu_v, "n >= 10 (used by the proof)": n >= 10}
    quant = {"n": n, "Delta": delta, "risk_limit": 1.0 / (16 * n * sigma_v**2)}
    if risk is None:
        unchecked.append("R_n(theta) <= 1/(16 n sigma^2)")
    else:
        r = _finite(risk, "risk", nonneg=True)
        cond["R_n(theta) <= 1/(16 n sigma^2)"] = r <= quant["risk_limit"]
        quant["risk"] = r
    value = mu_v * n**2 * delta / (2.0**11 * sigma_v**2)
    ok = all(cond.values())
    return Bound("Proposition 7: lower bound on TV_pi(s_theta)", value, ok, cond, quant, unchecked,
                 _C7 * mu_v * n**2 * delta / sigma_v**2, ok)


def _theorem8(x, mu, sigma, A):
    """Shared part of Theorem 8: threshold, the two excess-risk constants and the
    conditions behind sigma <= sigma_0 (checked directly instead of through sigma_0)."""
    xa, n, mu, sigma, delta = _setup(x, mu, sigma)
    threshold = math.inf if delta == 0 else 2.0**12 * sigma**2 / (mu * n**2 * delta)
    quant = {"n": n, "Delta": delta, "lr_threshold": threshold}
    cond = {"n >= 10 (Proposition 7)": n >= 10,
            "sigma <= sigma_1 = mu Delta / 8": sigma <= mu * delta / 8}
    pcond = dict(cond)
    unchecked = []
    if A is None:
        unchecked += ["A >= 1/sigma^2", "sigma <= sigma_2", "sigma <= sigma_3", "sigma <= sigma_4"]
        return n, mu, sigma, delta, threshold, math.nan, math.nan, cond, pcond, quant, unchecked
    spread = float(xa.max() - xa.min())
    core = math.pi * n**5 * mu**3 * delta**3 / (math.sqrt(math.e) * A**4 * sigma**4)
    b_paper = core / 2.0**36
    b_proved = core * (2 * _KAPPA / 3) ** 3 / 2
    r_star = 4 * mu**2 * spread**2 / sigma**4 * _exp_ratio(mu, delta, sigma, 32)  # Corollary 3
    scale = mu * n**2 * delta / sigma**2
    quant.update({"A": A, "optimal_risk_bound": r_star, "excess_bound": b_paper, "excess_bound_proved": b_proved})
    for c, b, share in ((cond, b_paper, 2.0**-13), (pcond, b_proved, _KAPPA / 3)):
        c["A >= 1/sigma^2"] = A >= 1.0 / sigma**2
        # sigma_2 (the printed condition drops Delta^3): R_n(s*) bound <= excess bound, so R_n(theta*) <= 2 b
        c["sigma <= sigma_2: 4 mu^2 (x_n - x_1)^2 e^(-mu^2 Delta^2/(32 sigma^2)) / sigma^4 <= bound"] = r_star <= b
        # sigma_3: 2 b <= 1/(16 n sigma^2), so Proposition 7 applies
        c["sigma <= sigma_3: 2 bound <= 1/(16 n sigma^2)"] = 2 * b <= 1.0 / (16 * n * sigma**2)
        # sigma_4: sqrt(R_n(theta*))/2 <= share * mu n^2 Delta / sigma^2
        c["sigma <= sigma_4: sqrt(2 bound)/2 <= share mu n^2 Delta / sigma^2"] = math.sqrt(2 * b) / 2 <= share * scale
    return n, mu, sigma, delta, threshold, b_paper, b_proved, cond, pcond, quant, unchecked


def lr_threshold(x, mu, sigma, A=None) -> Bound:
    """Theorem 8's learning-rate threshold eta_c = 2^12 sigma^2 / (mu n^2 Delta).

    For eta > eta_c and sigma <= sigma_0, a linearly stable minimum of R_n has excess
    risk above :func:`excess_risk_lower_bound`.  ``holds`` says whether sigma <= sigma_0,
    checked as the inequalities the proof needs (sigma_1 .. sigma_4, n >= 10, A >= 1/sigma^2);
    without A (the bound on |w2| of the model class) only the A-free ones are checked.

    Example
    -------
    >>> from bigstep import theory
    >>> b = theory.lr_threshold(list(range(12)), 1.0, 0.05)
    >>> round(b.value, 6)
    0.071111
    """
    A_v = None if A is None else _scalar(A, "A")
    n, mu, sigma, delta, thr, bp, bq, cond, pcond, quant, unchecked = _theorem8(x, mu, sigma, A_v)
    return Bound("Theorem 8: learning-rate threshold", thr, all(cond.values()), cond, quant, unchecked,
                 thr, all(pcond.values()))


def excess_risk_lower_bound(x, mu, sigma, A, *, lr=None, net=None) -> Bound:
    """Theorem 8: if theta* is a linearly stable local minimum of R_n, eta > 2^12 sigma^2 / (mu n^2 Delta)
    and sigma <= sigma_0, then

        R_n(theta*) - R_n(s*) > pi n^5 mu^3 Delta^3 / (2^36 e^(1/2) A^4 sigma^4).

    A : the bound on |w2| of the model class (the paper's safe choice is C_n / sigma^6).
    lr : the learning rate eta (checks eta > threshold); net : theta* as a
    bigstep.ReLUNet1D (checks w1 in {-1, +1}, max|w2| <= A and, with lr, linear
    stability sharpness <= 2/(m eta)).  That theta* is a local minimum is never checked.
    ``proved_value`` / ``proved_holds``: the constant pi (2 kappa/3)^3 / (2 sqrt e) the
    proofs support (module docstring), with its own sigma_2..sigma_4 checks.

    Example
    -------
    >>> from bigstep import theory
    >>> b = theory.excess_risk_lower_bound(list(range(12)), 1.0, 0.05, A=400.0, lr=1.0)
    >>> b.conditions["lr > threshold"], b.value > 0
    (True, True)
    """
    A_v = _scalar(A, "A")
    n, mu_v, sigma_v, delta, thr, bp, bq, cond, pcond, quant, unchecked = _theorem8(x, mu, sigma, A_v)
    extra = {}
    if lr is None:
        unchecked.append("lr > threshold")
    else:
        lr_v = _scalar(lr, "lr")
        extra["lr > threshold"] = lr_v > thr
        quant["lr"] = lr_v
    if net is None:
        unchecked += ["|w1_l| = 1 for every neuron (theory setting)", "max_l |w2_l| <= A",
                      "theta* linearly stable: sharpness <= 2/(m lr)"]
    else:
        _check_net(net)
        c, q = _net_checks(net, A_v)
        extra.update(c)
        quant.update(q)
        if lr is None:
            unchecked.append("theta* linearly stable: sharpness <= 2/(m lr)")
        else:
            from .relu_risk import sharpness

            lam = sharpness(net, _data_1d(x), mu_v, sigma_v)
            quant["lambda_max"] = lam
            extra["theta* linearly stable: sharpness <= 2/(m lr)"] = lam <= 2.0 / (net.m * quant["lr"])
    unchecked.append("theta* is a local minimum of R_n")
    cond.update(extra)
    pcond.update(extra)
    return Bound("Theorem 8: lower bound on the excess risk R_n(theta*) - R_n(s*)", bp, all(cond.values()),
                 cond, quant, unchecked, bq, all(pcond.values()))
