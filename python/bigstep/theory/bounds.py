"""The paper's bounds (Corollary 3, Theorem 4, Propositions 6 and 7, Theorem 8); notation
in :mod:`bigstep.theory`.

Each bound function returns a :class:`Bound` with the value as printed in the
paper, whether every hypothesis that can be checked holds, the hypotheses one by one
and the numbers in them.  Reading the appendix proofs against the statements found
these inconsistencies (details at each function):

- Theorem 4 and Proposition 7: the proofs need n >= 10 (not in the statements); it is
  checked as a hypothesis.
- Proposition 6: case 2 of the proof claims D subset [-sigma, |tau - mu x_i|], but D
  extends to |tau - mu x_i| + |f|/(4A); using only the lower half of D costs a factor 2,
  i.e. (2 sqrt(2 pi e) A sigma n R)^(1/3) in place of the printed (sqrt(2 pi) e A sigma n R)^(1/3)
  (6.6% larger third term).  ``proved_value`` carries the corrected bound.
- Proposition 7: the proof's last step claims
  ``(mu n^2 Delta / 1024)(1/2 - e^-32)(1 - 1/(2 sqrt 2))/sigma^2 >= mu n^2 Delta / (2^11 sigma^2)``,
  but the left side is ``mu n^2 Delta / (3168.1 sigma^2)``; ``proved_value`` is that.
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

from .._quadrature import data_1d
from .._validate import integer, real_scalar
from .tv import min_spacing

__all__ = [
    "Bound",
    "optimal_risk_bound",
    "theorem4_bound",
    "proposition6_bound",
    "proposition7_bound",
    "lr_threshold",
    "excess_risk_lower_bound",
]

_INV_SQRT_2PI = 0.39894228040143267794

# Proposition 7's constant as its proof gives it (the statement prints 2^-11), and
# Theorem 8's excess-risk constant rebuilt from it (module docstring).
_C7 = (0.5 - math.exp(-32.0)) * (1.0 - 1.0 / (2.0 * math.sqrt(2.0))) / 1024.0
_KAPPA = _C7 - 2.0**-13


@dataclass(frozen=True)
class Bound:
    """One bound of the paper evaluated on given data (frozen).

    Attributes
    ----------
    statement : str
        Which result ("Theorem 4", ...) and what it bounds.
    value : float
        The bound as printed in the paper.
    holds : bool
        True when every hypothesis that could be checked holds (those listed in
        ``unchecked`` are the caller's responsibility).
    conditions : Mapping[str, bool]
        Hypothesis -> whether it holds (read-only).
    quantities : Mapping[str, float]
        The numbers in the hypotheses and in the bound (read-only).
    unchecked : tuple of str
        Hypotheses that could not be checked from the arguments given.
    proved_value : float
        The bound the appendix's argument supports (equal to ``value`` where statement
        and proof agree; see :mod:`bigstep.theory.bounds`).
    proved_holds : bool
        Whether the hypotheses of ``proved_value`` hold.
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


def _setup(x, mu, sigma):
    xa = data_1d(x)
    mu_v = real_scalar(mu, "mu")
    sigma_v = real_scalar(sigma, "sigma")
    delta = min_spacing(xa)
    return xa, int(xa.shape[0]), mu_v, sigma_v, delta


def _exp_ratio(mu, delta, sigma, k):
    """exp(-mu^2 Delta^2 / (k sigma^2))."""
    return math.exp(-((mu * delta / sigma) ** 2) / k)


def optimal_risk_bound(x, mu, sigma) -> Bound:
    """Corollary 3, eq. (10): an upper bound on the risk of the optimal score,

        R_n(s*) <= 4 mu^2 (x_(n) - x_(1))^2 exp(-mu^2 Delta^2 / (32 sigma^2)) / sigma^4

    under ``Delta >= 2 sigma / mu`` (and n >= 2, used as ``n Delta <= 2 (x_(n) - x_(1))``).

    Parameters
    ----------
    x : array
        1-D data, shape (n,), finite.
    mu, sigma : float
        The noise level, positive and finite.

    Returns
    -------
    Bound

    Examples
    --------
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
    """Theorem 4: a lower bound on the weighted total variation of the optimal score,

        TV_pi(s*) >= mu^3 n Delta^3 / (2^12 sigma^4)   if   16 n^3 exp(-mu^2 Delta^2 / (4 sigma^2)) <= 1

    Hypotheses checked: that condition (quantity "condition_lhs"), and n >= 10, which
    the proof uses ("at least n/4 indices between ceil(n/4)+1 and floor(3n/4)-1") but
    the statement omits.  Compare ``value`` with ``tv_derivative(None, x, mu, sigma)``.

    Parameters
    ----------
    x : array
        1-D data, shape (n,), finite.
    mu, sigma : float
        The noise level, positive and finite.

    Returns
    -------
    Bound

    Examples
    --------
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
    w2max = float(np.abs(net.W2).max())
    cond = {"|w1_l| = 1 for every neuron (theory setting)": bool(np.all(np.abs(net.W1) == 1.0)),
            "max_l |w2_l| <= A": w2max <= A}
    return cond, {"max_abs_w2": w2max}


def _check_net(net):
    from ..nets import ReLUNet1D

    if not isinstance(net, ReLUNet1D):
        raise TypeError(f"net must be a bigstep.ReLUNet1D, got {type(net).__name__}")


def _finite(value, name, *, nonneg=False) -> float:
    return real_scalar(value, name, "nonnegative" if nonneg else "finite")


def _prop6_third(A, sigma, n, risk, cube_factor):
    """(A / (sqrt(2 pi) sigma)) max(sqrt(2 n R), (cube_factor A sigma n R)^(1/3))."""
    return A * _INV_SQRT_2PI / sigma * max(math.sqrt(2 * n * risk), (cube_factor * A * sigma * n * risk) ** (1 / 3))


def proposition6_bound(x, mu, sigma, *, A=None, net=None, lambda_max=None, risk=None, width=None) -> Bound:
    """Proposition 6: an upper bound on ``TV_pi(s_theta)`` from the sharpness and the risk:

        TV_pi(s_theta) <= lambda_max m / 4 + sqrt(R_n(theta)) / 2
                          + (A / (sqrt(2 pi) sigma)) max(sqrt(2 n R_n), (sqrt(2 pi) e A sigma n R_n)^(1/3))

    At a linearly stable minimum ``lambda_max <= 2 / (m eta)``, so passing
    ``lambda_max = 2 / (m eta)`` gives the second form ``(1/(2 eta) + ...)``.

    Give either ``net`` or the numbers ``lambda_max``, ``risk``, ``width`` (m) and
    ``A``.  Hypotheses: ``A >= 1/sigma^2`` (used for the Lipschitz constant of
    ``s_theta + (y - mu x_i)/sigma^2``), and for the model class w1 in {-1, +1},
    ``max|w2| <= A`` (checked when net is given).  The bound only uses the absolute value
    of the Dirac term, so the sign error of the printed eq. (15) does not affect it.
    ``proved_value`` has ``(2 sqrt(2 pi e) A sigma n R)^(1/3)`` in the last term (the
    proof's case 2 needs it: :mod:`bigstep.theory.bounds`).

    Parameters
    ----------
    x : array
        1-D data, shape (n,), finite.
    mu, sigma : float
        The noise level, positive and finite.
    A : float or None
        The bound on ``|w2|`` of the model class; with ``net``, defaults to
        ``max(max|W2|, 1/sigma^2)``.
    net : ReLUNet1D or None
        The network: ``lambda_max = bigstep.sharpness`` and ``R_n = bigstep.dsm_risk``
        (``wrt="outer_bias"``) are computed unless passed, m = net.width.
    lambda_max, risk : float or None
        The sharpness and the risk ``R_n(theta)``.
    width : int or None
        m, without ``net``.

    Returns
    -------
    Bound

    Examples
    --------
    >>> from bigstep import theory
    >>> b = theory.proposition6_bound([-1.0, 0.0, 1.0], 1.0, 0.5, lambda_max=2.0, risk=0.1, width=10, A=4.0)
    >>> round(b.value, 4), b.holds
    (10.2613, True)
    """
    xa = data_1d(x)
    n = int(xa.shape[0])
    mu_v = real_scalar(mu, "mu")
    sigma_v = real_scalar(sigma, "sigma")
    cond, quant, unchecked = {}, {}, []
    if net is not None:
        _check_net(net)
        from ..relu_risk import dsm_risk, sharpness

        if lambda_max is None:
            lambda_max = sharpness(net, xa, mu_v, sigma_v)
        if risk is None:  # a tiny risk can come out a rounding error below 0
            risk = max(dsm_risk(net, xa, mu_v, sigma_v), 0.0)
        if width is None:
            width = net.width
        if A is None:
            A = max(float(np.abs(net.W2).max()), 1.0 / sigma_v**2)
    missing = [k for k, v in (("lambda_max", lambda_max), ("risk", risk), ("width", width), ("A", A)) if v is None]
    if missing:
        raise ValueError(f"proposition6_bound needs net or {', '.join(missing)}; got none for {', '.join(missing)}")
    lam = _finite(lambda_max, "lambda_max")
    risk_v = _finite(risk, "risk", nonneg=True)
    A_v = real_scalar(A, "A")
    m_v = integer(width, "width", minimum=1)
    if net is not None:
        if net.width != m_v:
            raise ValueError(f"width must equal net.width = {net.width}, got {m_v}")
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


def proposition7_bound(x, mu, sigma, *, net=None, risk=None) -> Bound:
    """Proposition 7: a lower bound on ``TV_pi(s_theta)`` for every network of small risk,

        TV_pi(s_theta) >= mu n^2 Delta / (2^11 sigma^2)   if   R_n(theta) <= 1/(16 n sigma^2)

    when ``Delta >= 8 sigma / mu``.  n >= 10 (used by the proof) is checked too.
    ``proved_value = c7 mu n^2 Delta / sigma^2`` with
    ``c7 = (1/2 - e^-32)(1 - 2^-3/2)/1024 = 1/3168.1`` (the proof's last inequality does
    not give 1/2^11).

    Parameters
    ----------
    x : array
        1-D data, shape (n,), finite.
    mu, sigma : float
        The noise level, positive and finite.
    net : ReLUNet1D or None
        The network (:func:`bigstep.dsm_risk` is computed).
    risk : float or None
        ``R_n(theta)``; without it or ``net`` the risk hypothesis is listed in
        ``unchecked``.

    Returns
    -------
    Bound

    Examples
    --------
    >>> from bigstep import theory
    >>> b = theory.proposition7_bound(list(range(12)), 1.0, 0.1, risk=0.0)
    >>> b.holds, round(b.value, 3)
    (True, 7.031)
    """
    xa, n, mu_v, sigma_v, delta = _setup(x, mu, sigma)
    unchecked = []
    if risk is None and net is not None:
        _check_net(net)
        from ..relu_risk import dsm_risk

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


def lr_threshold(x, mu, sigma, *, A=None) -> Bound:
    """Theorem 8's learning-rate threshold ``eta_c = 2^12 sigma^2 / (mu n^2 Delta)``.

    For eta > eta_c and sigma <= sigma_0, a linearly stable minimum of ``R_n`` has excess
    risk above :func:`excess_risk_lower_bound`.  ``holds`` says whether
    sigma <= sigma_0, checked as the inequalities the proof needs (sigma_1 .. sigma_4,
    n >= 10, ``A >= 1/sigma^2``).

    Parameters
    ----------
    x : array
        1-D data, shape (n,), finite.
    mu, sigma : float
        The noise level, positive and finite.
    A : float or None
        The bound on ``|w2|`` of the model class; without it only the A-free hypotheses
        are checked.

    Returns
    -------
    Bound

    Examples
    --------
    >>> from bigstep import theory
    >>> b = theory.lr_threshold(list(range(12)), 1.0, 0.05)
    >>> round(b.value, 6)
    0.071111
    """
    A_v = None if A is None else real_scalar(A, "A")
    n, mu, sigma, delta, thr, bp, bq, cond, pcond, quant, unchecked = _theorem8(x, mu, sigma, A_v)
    return Bound("Theorem 8: learning-rate threshold", thr, all(cond.values()), cond, quant, unchecked,
                 thr, all(pcond.values()))


def excess_risk_lower_bound(x, mu, sigma, *, A, net=None, lr=None) -> Bound:
    """Theorem 8: a lower bound on the excess risk of linearly stable minima at large learning rates.

    If ``theta*`` is a linearly stable local minimum of ``R_n``,
    ``eta > 2^12 sigma^2 / (mu n^2 Delta)`` and sigma <= sigma_0, then

        R_n(theta*) - R_n(s*) > pi n^5 mu^3 Delta^3 / (2^36 e^(1/2) A^4 sigma^4)

    That ``theta*`` is a local minimum is never checked.  ``proved_value`` /
    ``proved_holds``: the constant ``pi (2 kappa/3)^3 / (2 sqrt e)`` the proofs support
    (:mod:`bigstep.theory.bounds`), with its own sigma_2..sigma_4 checks.

    Parameters
    ----------
    x : array
        1-D data, shape (n,), finite.
    mu, sigma : float
        The noise level, positive and finite.
    A : float
        The bound on ``|w2|`` of the model class (the paper's safe choice is
        ``C_n / sigma^6``).
    net : ReLUNet1D or None
        ``theta*`` (checks w1 in {-1, +1}, ``max|w2| <= A`` and, with ``lr``, linear
        stability ``sharpness <= 2/(m eta)``).
    lr : float or None
        The learning rate eta (checks eta > threshold).

    Returns
    -------
    Bound

    Examples
    --------
    >>> from bigstep import theory
    >>> b = theory.excess_risk_lower_bound(list(range(12)), 1.0, 0.05, A=400.0, lr=1.0)
    >>> b.conditions["lr > threshold"], b.value > 0
    (True, True)
    """
    A_v = real_scalar(A, "A")
    n, mu_v, sigma_v, delta, thr, bp, bq, cond, pcond, quant, unchecked = _theorem8(x, mu, sigma, A_v)
    extra = {}
    if lr is None:
        unchecked.append("lr > threshold")
    else:
        lr_v = real_scalar(lr, "lr")
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
            from ..relu_risk import sharpness

            lam = sharpness(net, data_1d(x), mu_v, sigma_v)
            quant["lambda_max"] = lam
            extra["theta* linearly stable: sharpness <= 2/(m lr)"] = lam <= 2.0 / (net.width * quant["lr"])
    unchecked.append("theta* is a local minimum of R_n")
    cond.update(extra)
    pcond.update(extra)
    return Bound("Theorem 8: lower bound on the excess risk R_n(theta*) - R_n(s*)", bp, all(cond.values()),
                 cond, quant, unchecked, bq, all(pcond.values()))
