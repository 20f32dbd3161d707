"""rf.asymptotic_errors: train loss, test loss and score error of random-features DSM in the
limit d, n, p -> infinity with psi_n = n / d and psi_p = p / d fixed (docs/rf_asymptotics.md).

Everything below is in the normalisation of :class:`bigstep.rf.RFModel` (module docs of
bigstep.rf): features f = rho(W y / sqrt(d)) unnormalised, K = (1/N) sum f f^T,
R = (1/N) sum f xi^T, Z = (K + lam I)^{-1} R, and

    train = (xi2 - tr R^T (K + lam)^{-1} R) / d          (the minimum of the objective,
                                                            ridge penalty included)
    test  = (tr Z^T U Z - 2 sigma tr Z^T C + d) / d      (U = E f f^T, C = E f y^T)
    score = (test - mu^2) / Delta                          (mu = e^{-t}, Delta = 1 - mu^2)

The activation enters through five numbers of its Hermite expansion (g ~ N(0, 1)):
mu_1 = E[g rho(g)], the kernel k(r) = E[rho(g) rho(g')] (corr(g, g') = r) at r = 1 and
r = mu^2, and the mean mu_0 = E rho(g), which drops out (see _constants).  Q = W W^T / d has
the Marchenko-Pastur law of ratio gamma = psi_p; every trace reduces to its Stieltjes
transform m(a) = E_Q (Q + a)^{-1} and E_Q (Q + a)^{-2}, both closed form (_mp).  One scalar
fixed point per (psi_n, psi_p) is solved numerically (bisection on a monotone function,
vectorised over the grid): kappa for n_noise = 1, tau for n_noise = inf.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from .._arrays import as_numpy
from . import _gaussian, _model

# bisection steps of the scalar fixed points: the bracket [lo, hi] shrinks to 2^-200 of its
# width, below one ulp of any root larger than 1e-44 of the initial width
_STEPS = 200
_SERIES_TERMS = 120  # Hermite terms of k(mu^2) for tanh (tail below 1e-11, see _kernel)


class AsymptoticErrors(NamedTuple):
    """Limiting losses (a named tuple), each an array of the broadcast shape of
    (psi_n, psi_p) (a float when both are scalars).

    Attributes
    ----------
    train_loss, test_loss, score_error : numpy.ndarray or float
        As :meth:`RFModel.train_loss`, :meth:`RFModel.test_loss` and
        :meth:`RFModel.score_error`.
    """

    train_loss: np.ndarray
    test_loss: np.ndarray
    score_error: np.ndarray


# --------------------------------------------------------------------------- activation


def _kernel(rho: str, r: float) -> float:
    """k(r) = E[rho(g) rho(g')], g, g' standard normal with correlation r in [0, 1]."""
    if rho in ("relu", "relu_centered"):
        r = min(max(r, -1.0), 1.0)
        value = (math.sqrt(max(0.0, 1.0 - r * r)) + (math.pi - math.acos(r)) * r) / (2.0 * math.pi)
        return value - (_gaussian.RELU_MEAN ** 2 if rho == "relu_centered" else 0.0)
    if rho == "erf":
        return (2.0 / math.pi) * math.asin(2.0 * r / 3.0)
    if rho == "linear":
        return r
    # tanh: Mehler series with Gauss-Hermite coefficients; at r = 1 the direct second moment
    if r == 1.0:
        return float(_gaussian.second_moment(rho, np.zeros(1), np.ones(1))[0])
    h = _gaussian.hermite_coefficients(rho, np.zeros(1), np.ones(1), _SERIES_TERMS)[:, 0]
    return float(np.sum(h * h * r ** np.arange(h.size)))


def _constants(rho: str, t: float) -> dict:
    """The Hermite numbers the limit depends on (docs/rf_asymptotics.md, section 2).

    alpha = mu_1^2 and beta = k(1) - mu_0^2 - mu_1^2: the population features are
    equivalent to mu_0 1 + mu_1 W y / sqrt(d) + sqrt(beta) z, z ~ N(0, I_p) independent.
    For a training point x and noise xi (y = mu x + sigma xi): kappa1 = mu mu_1 and
    kappa_star^2 = k(mu^2) - mu_0^2 - mu^2 mu_1^2 (the part that depends on x alone),
    g1 = sigma mu_1 (the part linear in xi) and v = k(1) - k(mu^2) - sigma^2 mu_1^2 (the
    part of higher order in xi: an implicit ridge of the noise-averaged Gram).
    mu_0 only adds the rank-one p mu_0^2 1 1^T to K and U, which lam << p mu_0^2 projects out:
    it does not enter."""
    mu, sigma, delta = _model.schedule(t)
    h = _gaussian.hermite_coefficients(rho, np.zeros(1), np.ones(1), 1)[:, 0]
    mu0, mu1 = float(h[0]), float(h[1])
    k1, kmu = _kernel(rho, 1.0), _kernel(rho, mu * mu)
    alpha = mu1 * mu1
    beta = max(0.0, k1 - mu0 * mu0 - alpha)
    ks2 = max(0.0, kmu - mu0 * mu0 - mu * mu * alpha)
    v = max(0.0, k1 - kmu - delta * alpha)
    if rho == "linear":  # exact zeros (the formulas above give rounding noise)
        beta = ks2 = v = 0.0
    return dict(mu=mu, sigma=sigma, delta=delta, alpha=alpha, beta=beta, kappa1=mu * mu1, ks2=ks2,
                g1=sigma * mu1, v=v, mu1=mu1)


# --------------------------------------------------------------------------- Marchenko-Pastur


def _mp(a, gamma):
    """(m, m2) = (E (Q + a)^{-1}, E (Q + a)^{-2}) for Q of Marchenko-Pastur law with ratio gamma
    and mean 1 (the eigenvalues of W W^T / d, W of shape (gamma d, d)), a > 0.

    m = 2 / (S + u + a) with u = 1 - gamma, S = sqrt((1 + gamma + a)^2 - 4 gamma); the
    denominator is evaluated without cancellation (S^2 - (u + a)^2 = 4 gamma a)."""
    u = 1.0 - gamma
    s = np.sqrt((1.0 + gamma + a) ** 2 - 4.0 * gamma)
    ua = u + a
    with np.errstate(divide="ignore", invalid="ignore"):
        den = np.where(ua >= 0, s + ua, 4.0 * gamma * a / (s - ua))
        m = 2.0 / den
        m2 = 2.0 * (1.0 + (1.0 + gamma + a) / s) / (den * den)
    return m, m2


def _ratio_moments(coef, e, gamma, m, m2):
    """(E P(Q)/(Q + e), E P(Q)/(Q + e)^2) for P = sum_j coef[j] Q^j of degree <= 3: Taylor
    expansion of P about -e, then E Q = 1 and E Q^2 = 1 + gamma."""
    c = list(coef) + [0.0] * (4 - len(coef))
    # P(Q) = sum_j b_j (Q + e)^j
    b0 = c[0] - c[1] * e + c[2] * e * e - c[3] * e ** 3
    b1 = c[1] - 2.0 * c[2] * e + 3.0 * c[3] * e * e
    b2 = c[2] - 3.0 * c[3] * e
    b3 = c[3]
    shift1 = 1.0 + e  # E (Q + e)
    shift2 = 1.0 + gamma + 2.0 * e + e * e  # E (Q + e)^2
    first = b0 * m + b1 + b2 * shift1 + b3 * shift2
    second = b0 * m2 + b1 * m + b2 + b3 * shift1
    return first, second


def _bisect(predicate, lo, hi):
    """Largest x in [lo, hi] with predicate(x) True, elementwise (predicate True on [lo, root),
    False on (root, hi])."""
    for _ in range(_STEPS):
        mid = 0.5 * (lo + hi)
        below = predicate(mid)
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- n_noise = 1


def _one_sample(psi_n, psi_p, lam, c):
    """n_noise = 1: ridge regression of xi on f over N = n i.i.d. samples y ~ N(0, I) with
    Gaussian-equivalent features of covariance Omega = alpha Q + beta (docs, section 3).
    kappa solves kappa (1 - df1(kappa) / n) = lam, df_k = tr Omega^k (Omega + kappa)^{-k}."""
    alpha, beta, delta = c["alpha"], c["beta"], c["delta"]
    gamma, ratio = psi_p, psi_p / psi_n
    b0 = beta / alpha

    def dfs(kappa):
        a = b0 + kappa / alpha
        m, m2 = _mp(a, gamma)
        q1 = 1.0 - a * m  # E Q / (Q + a)
        df1 = q1 + b0 * m  # df1 / p = E (Q + b0) / (Q + a)
        s = kappa / alpha
        df2 = 1.0 - 2.0 * s * m + s * s * m2  # df2 / p = E (Q + b0)^2 / (Q + a)^2
        return a, m, m2, q1, df1, df2

    hi = lam + ratio * (alpha + beta) * (1.0 + 1e-12) + 1e-300
    kappa = _bisect(lambda k: k * (1.0 - ratio * dfs(k)[4]) < lam, np.zeros_like(hi), hi)
    a, m, m2, q1, df1, df2 = dfs(kappa)
    tr_q1 = psi_p * q1 / alpha  # (1/d) tr Q (Omega + kappa)^{-1}
    tr_q2 = psi_p * (m - a * m2) / (alpha * alpha)  # (1/d) tr Q (Omega + kappa)^{-2}
    with np.errstate(divide="ignore", invalid="ignore"):
        # lam / kappa = 1 - df1 / n at the root; the quotient is exact where kappa > 0
        shrink = np.where(kappa > 0, lam / np.where(kappa > 0, kappa, 1.0), 1.0 - ratio * df1)
        train = shrink * (1.0 - delta * alpha * tr_q1)
        test = (1.0 - delta * alpha * (tr_q1 + kappa * tr_q2)) / (1.0 - ratio * df2)
    test = np.where(1.0 - ratio * df2 > 0, test, np.inf)
    return train, test


# --------------------------------------------------------------------------- n_noise = inf


def _noise_averaged(psi_n, psi_p, lam, c):
    """n_noise = inf: K = Phi^T Phi / n + g1^2 Q + v I with Phi's rows i.i.d. of covariance
    Omega_x = kappa1^2 Q + kappa_star^2, R = g1 W / sqrt(d) (docs, section 4).  The resolvent
    (K + lam)^{-1} is equivalent to G = (tau Omega_x + g1^2 Q + v + lam)^{-1}, with tau
    solving tau (1 + (p / n) E Omega_x G) = 1; its second-order equivalent adds tau' G Omega_x G."""
    alpha, beta, delta, sigma = c["alpha"], c["beta"], c["delta"], c["sigma"]
    k1, ks2, g1, v, mu1 = c["kappa1"], c["ks2"], c["g1"], c["v"], c["mu1"]
    gamma, ratio = psi_p, psi_p / psi_n

    def parts(tau):
        scale = tau * k1 * k1 + g1 * g1  # G = (Q + e)^{-1} / scale
        e = (tau * ks2 + v + lam) / scale
        m, m2 = _mp(e, gamma)
        q1 = 1.0 - e * m
        e_og = (k1 * k1 * q1 + ks2 * m) / scale  # E Omega_x G
        return scale, e, m, m2, q1, e_og

    tau = _bisect(lambda x: x * (1.0 + ratio * parts(x)[5]) < 1.0, np.zeros_like(ratio), np.ones_like(ratio))
    scale, e, m, m2, q1, _ = parts(tau)
    ox = (ks2, k1 * k1)  # Omega_x = ks2 + kappa1^2 Q
    uu = (beta, alpha)  # U = beta + alpha Q (the mean drops out)
    s2 = scale * scale
    e_ouo = _ratio_moments(np.polynomial.polynomial.polymul(ox, uu), e, gamma, m, m2)[1] / s2
    e_oo = _ratio_moments(np.polynomial.polynomial.polymul(ox, ox), e, gamma, m, m2)[1] / s2
    e_qu = _ratio_moments(np.polynomial.polynomial.polymul((0.0, 1.0), uu), e, gamma, m, m2)[1] / s2
    e_qo = _ratio_moments(np.polynomial.polynomial.polymul((0.0, 1.0), ox), e, gamma, m, m2)[1] / s2
    t2 = tau * tau * ratio
    tau_prime = t2 * e_ouo / (1.0 - t2 * e_oo)
    e_qg = q1 / scale  # E Q G
    train = 1.0 - g1 * g1 * psi_p * e_qg
    zuz = g1 * g1 * psi_p * (e_qu + tau_prime * e_qo)  # (1/d) tr Z^T U Z
    zc = g1 * mu1 * psi_p * e_qg  # (1/d) tr Z^T C
    test = zuz - 2.0 * sigma * zc + 1.0
    return train, test


# --------------------------------------------------------------------------- public


def _check_n_noise(n_noise):
    if isinstance(n_noise, (bool, np.bool_)) or not isinstance(n_noise, numbers.Real):
        raise TypeError(f"n_noise must be 1 or math.inf, got {type(n_noise).__name__}")
    if n_noise == 1:
        return 1
    if math.isinf(n_noise) and n_noise > 0:
        return math.inf
    raise ValueError(f"n_noise must be 1 or math.inf (the two limits derived), got {n_noise!r}")


def _ratios(value, name):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a positive number or an array of them, got bool")
    arr = as_numpy(value, name)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = ~(np.isfinite(arr) & (arr > 0)).reshape(-1)
    if bad.any():
        raise ValueError(f"{name} must be positive finite numbers, got {arr.reshape(-1)[np.argmax(bad)]!r}")
    return arr


def asymptotic_errors(psi_n, psi_p, t, *, n_noise, rho="relu", lam) -> AsymptoticErrors:
    """Train loss, test loss and score error of the random-features ridge fit in the high-dimensional limit.

    The limit d, n, p -> infinity with n / d = psi_n, p / d = psi_p (George, Veiga and
    Macris' setting; derivation and assumptions in docs/rf_asymptotics.md), of the same
    quantities and normalisation as :meth:`RFModel.train_loss` (the minimum of the
    objective, ridge penalty included), :meth:`RFModel.test_loss` and
    :meth:`RFModel.score_error` of ``rf.fit(x, t, p=p, n_noise=n_noise, rho=rho, lam=lam)``
    on x ~ N(0, I_d) data; for finite d those are random, and they converge to these
    values.  Cost O(size) x 200 bisection steps; memory O(size).

    Parameters
    ----------
    psi_n, psi_p : float or array
        n / d and p / d, positive (broadcast together).
    t : float
        Diffusion time > 0.
    n_noise : int or float
        1 or math.inf: noise samples per data point (as in :func:`fit`).
    rho : str
        "relu", "relu_centered", "tanh", "erf" or "linear" (relu and relu_centered have
        the same limit: the mean of the features is projected out when
        ``lam << p mu_0^2``).
    lam : float
        The ridge, >= 0, in RFModel's normalisation (lam = 0 is the lam -> 0+ limit; it
        needs lam > 0 for "linear", whose features carry no implicit ridge).

    Returns
    -------
    AsymptoticErrors
        ``(train_loss, test_loss, score_error)``: float64 arrays of the broadcast shape
        (floats when psi_n and psi_p are scalars).  test_loss is inf where the
        n_noise = 1 fit interpolates at lam = 0 and p = n.

    Notes
    -----
    What is closed form and what is solved: the activation enters through its Hermite
    coefficients (closed form for relu, relu_centered, erf and linear, a Gauss-Hermite
    series for tanh); every trace over the random weights is a closed-form
    Marchenko-Pastur integral.  One scalar fixed point per point is solved numerically
    (vectorised bisection on a monotone function, to the last bit): for n_noise = 1 the
    effective ridge kappa of

        kappa (1 - (p / n) E[Omega / (Omega + kappa)]) = lam,   Omega = mu_1^2 Q + beta

    and for n_noise = inf the factor tau of the generalized Marchenko-Pastur equation

        tau (1 + (p / n) E[Omega_x G(tau)]) = 1

    Given it, the losses are closed form:

        n_noise = 1:   train = (1 - df1 / n) (1 - Delta mu_1^2 tr Q (Omega + kappa)^{-1} / d)
                       test  = (1 - Delta mu_1^2 tr Q (Omega + 2 kappa)(Omega + kappa)^{-2} / d) / (1 - df2 / n)
        n_noise = inf: train = 1 - Delta mu_1^2 tr Q G / d
                       test  = 1 - 2 Delta mu_1^2 tr Q G / d + Delta mu_1^2 tr Q (G U G + tau' G Omega_x G) / d
        score_error = (test - e^{-2t}) / Delta,   Delta = 1 - e^{-2t}

    Examples
    --------
    >>> import math
    >>> from bigstep import rf
    >>> out = rf.asymptotic_errors(1.0, [0.5, 2.0], 0.5, lam=1e-2, n_noise=math.inf)
    >>> [round(float(v), 4) for v in out.test_loss]
    [0.8015, 0.5596]
    >>> err = rf.asymptotic_errors(1.0, 0.5, 0.5, lam=1e-2, n_noise=1)
    >>> round(err.train_loss, 4), round(err.test_loss, 4)
    (0.4299, 1.4113)
    """
    rho = _model.check_rho(rho)
    t = _model.check_positive(t, "t")
    lam = _model.check_lam(lam)
    n_noise = _check_n_noise(n_noise)
    if rho == "linear" and lam == 0:
        raise ValueError("lam must be positive for rho='linear': linear features have no implicit ridge, so the "
                         "lam -> 0 limit is singular where p > d")
    pn = _ratios(psi_n, "psi_n")
    pp = _ratios(psi_p, "psi_p")
    try:
        pn, pp = np.broadcast_arrays(pn, pp)
    except ValueError as exc:
        raise ValueError(f"psi_n and psi_p must broadcast together, got shapes {pn.shape} and {pp.shape}") from exc
    shape = pn.shape
    pn, pp = pn.reshape(-1), pp.reshape(-1)
    c = _constants(rho, t)
    solve = _one_sample if n_noise == 1 else _noise_averaged
    train, test = solve(pn, pp, lam, c) if pn.size else (np.empty(0), np.empty(0))
    score = (test - c["mu"] ** 2) / c["delta"]
    out = [np.asarray(v, dtype=np.float64).reshape(shape) for v in (train, test, score)]
    if not shape:
        out = [float(v) for v in out]
    return AsymptoticErrors(*out)
