"""Independent references for the ReLU-network DSM risk (tests/test_relu_risk.py).

Nothing here imports bigstep.  Networks are passed as three float64 arrays
(w1, w2, b) of shape (m,), data as x (n,), the noise level as scalars (mu, sigma).

    s(y)   = (1/m) sum_l w2_l relu(w1_l y + b_l)
    f_i(y) = s(y) + (y - mu x_i) / sigma^2
    R      = (1/n) sum_i E_{Y ~ N(mu x_i, sigma^2)} [ f_i(Y)^2 ]

Three references, each independent of the others and of the kernels' algorithm:

- :func:`risk_quad` and :func:`grad_quad`: scipy.integrate.quad of the
  cancellation-free integrands f_i(y)^2 p_i(y) and f_i(y) d s/d theta(y) p_i(y),
  integrated piecewise between the sorted kinks for each data point, in the
  standardised variable t = (y - mu x_i) / sigma on [-40, 40] (the Gaussian mass
  beyond 40 standard deviations is below 1e-340).  On each piece the integrand is a
  polynomial of degree <= 2 times the Gaussian density, which QUADPACK integrates to
  rounding.
- :func:`risk_mc`: plain Monte Carlo with a fixed numpy seed, stratified over the data
  points (the same number of draws per point), with its standard error.
- :func:`analytic`: the closed forms of docs/design.md section 2 in the centred variable t,
  O(n m^2): the risk and gradient summed over the segments between sorted kinks, the
  Gauss-Newton part of the Hessian from the Gaussian mass of each pair's common active
  interval (no prefix sums), the curvature part of each neuron's (w2, b) and (w2, w1)
  entries, and the Dirac part with a selectable sign (``dirac_sign=+1`` is the
  corrected eq. (15), ``-1`` the paper's printed sign).  The tests check it against
  the quadrature and against finite differences of itself before using it.

Central finite differences with per-coordinate steps (:func:`fd_steps`) and a
Richardson-extrapolated variant for the points where two kinks coincide (there the
Hessian is continuous but not differentiable, so a plain central difference of the
gradient converges only linearly in the step).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import integrate, special

T_MAX = 40.0  # integration window in standard deviations
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


# ------------------------------------------------------------------------ network


def params(w1, w2, b):
    """The three parameter arrays as float64 (m,) copies."""
    return tuple(np.array(v, dtype=np.float64).reshape(-1) for v in (w1, w2, b))


def net_eval(w1, w2, b, y):
    """s(y) by the direct formula, y any shape (float64)."""
    w1, w2, b = params(w1, w2, b)
    y = np.asarray(y, dtype=np.float64)
    pre = y[..., None] * w1 + b
    return np.maximum(pre, 0.0) @ w2 / w1.shape[0]


def theta_of(w1, w2, b, wrt):
    """Flat parameter vector in bigstep's order: (w2, b) or (w1, w2, b)."""
    return np.concatenate((w2, b) if wrt == "outer_bias" else (w1, w2, b))


def split_theta(theta, w1, wrt):
    """(w1, w2, b) from a flat vector; for "outer_bias" w1 is the fixed one given."""
    theta = np.asarray(theta, dtype=np.float64)
    m = np.asarray(w1).shape[0]
    if wrt == "outer_bias":
        return np.array(w1, dtype=np.float64), theta[:m].copy(), theta[m:].copy()
    return theta[:m].copy(), theta[m:2 * m].copy(), theta[2 * m:].copy()


def kinks(w1, b):
    """-b / w1, NaN where w1 == 0."""
    w1 = np.asarray(w1, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.full(w1.shape, np.nan)
    nz = w1 != 0
    out[nz] = -b[nz] / w1[nz]
    return out


def segments(w1, w2, b):
    """The segments between sorted distinct kinks and s on each.

    Returns (K, A, alpha, beta): K the sorted distinct finite kinks (S - 1,), segment k
    is (K[k-1], K[k]) with K[-1] = -inf, K[S-1] = +inf; A (m, S) bool, neuron l active
    on segment k (decided combinatorially from the kink's rank, not by evaluating at a
    point); s(y) = alpha[k] y + beta[k] on segment k."""
    w1, w2, b = params(w1, w2, b)
    m = w1.shape[0]
    tau = kinks(w1, b)
    finite = np.isfinite(tau)
    K = np.unique(tau[finite])
    S = K.shape[0] + 1
    seg = np.arange(S)
    A = np.zeros((m, S), dtype=bool)
    rank = np.searchsorted(K, np.where(finite, tau, 0.0))
    for l in range(m):
        if w1[l] > 0:
            A[l] = seg > rank[l]
        elif w1[l] < 0:
            A[l] = seg <= rank[l]
        else:
            A[l] = b[l] > 0
    alpha = (w2 * w1) @ A / m
    beta = (w2 * b) @ A / m
    return K, A, alpha, beta


# ------------------------------------------------------------- truncated moments


def _phi(t):
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        out = _INV_SQRT_2PI * np.exp(-0.5 * t * t)
    return np.where(np.isinf(t), 0.0, out)


def _endpoint(z):
    """Per-endpoint values (erfc(z/sqrt2), erfc(-z/sqrt2), erf(z/sqrt2), phi(z), z phi(z))
    of standardised endpoints z (may be +-inf)."""
    z = np.asarray(z, dtype=np.float64)
    zc = np.where(np.isinf(z), np.sign(z) * 1e3, z)  # erf/erfc saturate exactly long before 1e3
    ph = _phi(z)
    return (special.erfc(zc * _INV_SQRT_2), special.erfc(-zc * _INV_SQRT_2), special.erf(zc * _INV_SQRT_2),
            ph, np.where(np.isinf(z), 0.0, zc * ph))


def _moments_from(lo, L, hi, U):
    """Moments over (lo, hi) from the endpoint values L = _endpoint(lo), U = _endpoint(hi)."""
    up_l, dn_l, erf_l, ph_l, zph_l = L
    up_h, dn_h, erf_h, ph_h, zph_h = U
    M0 = np.where(lo >= 0, 0.5 * (up_l - up_h), np.where(hi <= 0, 0.5 * (dn_h - dn_l), 0.5 * (erf_h - erf_l)))
    M1 = ph_l - ph_h
    M2 = M0 + zph_l - zph_h
    empty = ~(lo < hi)
    return tuple(np.where(empty, 0.0, M) for M in (M0, M1, M2))


def moments(lo, hi):
    """E[Z^p 1{lo < Z < hi}], p = 0, 1, 2, for Z ~ N(0, 1), elementwise; lo, hi may be
    +-inf, and lo >= hi gives 0.  The mass is taken from the tail (erfc) on the side
    of zero where the interval lies, and from erf when it straddles zero, so it has
    small relative error whenever the interval is not tiny."""
    lo, hi = np.broadcast_arrays(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
    return _moments_from(lo, _endpoint(lo), hi, _endpoint(hi))


def pair_moments(lo, hi):
    """moments(max(lo_j, lo_l), min(hi_j, hi_l)) for all pairs (j, l) of per-neuron
    standardised intervals (lo, hi) (m,): the erf values are computed once per
    neuron and the pair's endpoints picked from them (O(m) special functions)."""
    Lv, Uv = _endpoint(lo), _endpoint(hi)
    pick_lo = lo[:, None] >= lo[None, :]
    pick_hi = hi[:, None] <= hi[None, :]
    LO = np.where(pick_lo, lo[:, None], lo[None, :])
    HI = np.where(pick_hi, hi[:, None], hi[None, :])
    L = tuple(np.where(pick_lo, v[:, None], v[None, :]) for v in Lv)
    U = tuple(np.where(pick_hi, v[:, None], v[None, :]) for v in Uv)
    return _moments_from(LO, L, HI, U)


# ------------------------------------------------------------------- quadrature


def _pieces(K, c, sigma):
    """Integration pieces in t for the data point with centre c: (t_lo, t_hi, segment)."""
    tk = (K - c) / sigma
    inside = (tk > -T_MAX) & (tk < T_MAX)
    edges = np.concatenate(([-T_MAX], tk[inside], [T_MAX]))
    first = int(np.searchsorted(tk, -T_MAX, side="right"))  # segment containing t = -T_MAX
    out = []
    for j in range(edges.shape[0] - 1):
        if edges[j + 1] > edges[j]:
            out.append((float(edges[j]), float(edges[j + 1]), first + j))
    return out


def _quad(fun, lo, hi):
    """quad to 1e-13 relative.  QUADPACK warns when rounding stops it short of that
    target on a piece it has in fact converged on (the pieces are smooth); the warning
    is replaced by a check of its error estimate: 1e-11 of the value, or of the
    integral of |fun| when the integrand changes sign (f_i is odd about the data point,
    so the gradient's integrals cancel)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        val, err = integrate.quad(fun, lo, hi, epsabs=0.0, epsrel=1e-13, limit=200)
        if err > 1e-11 * abs(val):
            scale, _ = integrate.quad(lambda t: abs(fun(t)), lo, hi, epsabs=0.0, epsrel=1e-10, limit=200)
            if not err <= 1e-11 * scale + 1e-300:
                raise RuntimeError(f"quad on [{lo}, {hi}]: error estimate {err:.3e} for value {val:.17g} "
                                   f"(integral of |f| {scale:.3e})")
    return val


def risk_quad(w1, w2, b, x, mu, sigma):
    """R by scipy.integrate.quad, piecewise between kinks, per data point."""
    w1, w2, b = params(w1, w2, b)
    K, _, alpha, beta = segments(w1, w2, b)
    total = 0.0
    for xi in np.asarray(x, dtype=np.float64):
        c = mu * xi
        for lo, hi, k in _pieces(K, c, sigma):
            a, d = float(alpha[k]), float(beta[k])

            def integrand(t, a=a, d=d):
                f = a * (c + sigma * t) + d + t / sigma
                return f * f * _INV_SQRT_2PI * math.exp(-0.5 * t * t)

            total += _quad(integrand, lo, hi)
    return total / len(x)


def grad_quad(w1, w2, b, x, mu, sigma, wrt="outer_bias"):
    """Gradient (2/n) sum_i E_i[f_i ds/dtheta] by quad, piecewise; order as bigstep's theta.
    One quad per (data point, piece, component): meant for m <= ~10."""
    w1, w2, b = params(w1, w2, b)
    m = w1.shape[0]
    K, A, alpha, beta = segments(w1, w2, b)
    g1, g2, gb = np.zeros(m), np.zeros(m), np.zeros(m)
    for xi in np.asarray(x, dtype=np.float64):
        c = mu * xi
        for lo, hi, k in _pieces(K, c, sigma):
            a, d = float(alpha[k]), float(beta[k])
            for l in np.flatnonzero(A[:, k]):
                u, v = float(w1[l] * c + b[l]), float(w1[l] * sigma)

                def fp(t, a=a, d=d):  # f(t) times the density
                    return (a * (c + sigma * t) + d + t / sigma) * _INV_SQRT_2PI * math.exp(-0.5 * t * t)

                g2[l] += _quad(lambda t: fp(t) * (u + v * t), lo, hi) / m
                gb[l] += w2[l] * _quad(fp, lo, hi) / m
                if wrt == "all":
                    g1[l] += w2[l] * _quad(lambda t: fp(t) * (c + sigma * t), lo, hi) / m
    scale = 2.0 / len(x)
    parts = (g2, gb) if wrt == "outer_bias" else (g1, g2, gb)
    return scale * np.concatenate(parts)


# ------------------------------------------------------------------- Monte Carlo


def risk_mc(w1, w2, b, x, mu, sigma, n_samples=10**6, seed=12345):
    """(estimate, standard error) of R from n_samples draws (n_samples // n per data
    point, fixed numpy seed), Y = mu x_i + sigma xi, integrand (s(Y) + xi/sigma)^2."""
    w1, w2, b = params(w1, w2, b)
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    per = n_samples // n
    rng = np.random.default_rng(seed)
    means, variances = np.empty(n), np.empty(n)
    for i, xi in enumerate(x):
        xi_noise = rng.standard_normal(per)
        y = mu * xi + sigma * xi_noise
        vals = np.empty(per)
        step = max(1, (1 << 21) // w1.shape[0])
        for s in range(0, per, step):
            f = net_eval(w1, w2, b, y[s:s + step]) + xi_noise[s:s + step] / sigma
            vals[s:s + step] = f * f
        means[i] = vals.mean()
        variances[i] = vals.var(ddof=1)
    return float(means.mean()), float(math.sqrt(variances.sum() / per) / n)


# ------------------------------------------------------------------- closed forms


def _intervals(w1, b):
    """Each neuron's active set as an interval (lo, hi) in y (lo >= hi: never active)."""
    tau = kinks(w1, b)
    lo = np.where(w1 > 0, tau, -np.inf)
    hi = np.where(w1 < 0, tau, np.inf)
    dead = (w1 == 0) & ~(b > 0)
    lo = np.where(dead, np.inf, lo)
    hi = np.where(dead, -np.inf, hi)
    return lo, hi


def analytic(w1, w2, b, x, mu, sigma, wrt="outer_bias", *, hessian=True, dirac_sign=1.0):
    """(risk, gradient, Hessian or None) from the closed forms, in bigstep's theta order.

    Per data point i (centre c, t = (y - c)/sigma), on segment k f_i = F0 + F1 t with
    F0 = alpha_k c + beta_k, F1 = alpha_k sigma + 1/sigma; with (M0, M1, M2) the
    segment's standard-normal moments:
        E_i[f_i^2]            = sum_k F0^2 M0 + 2 F0 F1 M1 + F1^2 M2
        P0_l = E_i[f_i 1_l]   = sum_{k: l active} F0 M0 + F1 M1
        P1_l = E_i[f_i t 1_l] = sum_{k: l active} F0 M1 + F1 M2
    dR/dw2_l = (2/(n m)) sum_i (u_l P0 + v_l P1), u_l = w1_l c + b_l, v_l = w1_l sigma,
    dR/db_l = (2/(n m)) w2_l sum_i P0,  dR/dw1_l = (2/(n m)) w2_l sum_i (c P0 + sigma P1).
    Gauss-Newton: (2/n) sum_i E_i[grad s grad s^T], each pair (j, l) over the
    intersection of their active intervals, moments of degree <= 2.
    Curvature: (w2_l, b_l) += (2/(n m)) sum_i P0_l; (w2_l, w1_l) += (2/(n m)) sum_i (c P0 + sigma P1).
    Dirac: D_l = dirac_sign (2/(n m)) (w2_l/|w1_l|) sum_i f_i(tau_l) p_i(tau_l) on (b_l, b_l),
    tau_l D_l on (w1_l, b_l), tau_l^2 D_l on (w1_l, w1_l) (0 where w1_l = 0)."""
    w1, w2, b = params(w1, w2, b)
    x = np.asarray(x, dtype=np.float64)
    n, m = x.shape[0], w1.shape[0]
    K, A, alpha, beta = segments(w1, w2, b)
    Af = A.astype(np.float64)
    bounds_lo = np.concatenate(([-np.inf], K))
    bounds_hi = np.concatenate((K, [np.inf]))
    lo_y, hi_y = _intervals(w1, b)
    wrt_all = wrt == "all"
    risk = 0.0
    P0s, Pys = np.zeros(m), np.zeros(m)  # sum_i P0_l, sum_i E_i[f_i y 1_l]
    g2 = np.zeros(m)
    blocks = {k: np.zeros((m, m)) for k in ("22", "2b", "bb", "11", "1b", "12")} if hessian else None
    for c in mu * x:
        M0, M1, M2 = moments((bounds_lo - c) / sigma, (bounds_hi - c) / sigma)
        F0 = alpha * c + beta
        F1 = alpha * sigma + 1.0 / sigma
        risk += float(np.sum(F0 * F0 * M0 + 2 * F0 * F1 * M1 + F1 * F1 * M2))
        P0 = Af @ (F0 * M0 + F1 * M1)
        P1 = Af @ (F0 * M1 + F1 * M2)
        u, v = w1 * c + b, w1 * sigma
        g2 += u * P0 + v * P1
        P0s += P0
        Pys += c * P0 + sigma * P1
        if hessian:
            N0, N1, N2 = pair_moments((lo_y - c) / sigma, (hi_y - c) / sigma)
            uj, ul = u[:, None], u[None, :]
            vj, vl = v[:, None], v[None, :]
            blocks["22"] += uj * ul * N0 + (uj * vl + vj * ul) * N1 + vj * vl * N2
            blocks["2b"] += (uj * N0 + vj * N1) * w2[None, :]
            blocks["bb"] += N0
            if wrt_all:
                blocks["11"] += c * c * N0 + 2 * c * sigma * N1 + sigma * sigma * N2
                blocks["1b"] += c * N0 + sigma * N1
                blocks["12"] += c * ul * N0 + (c * vl + sigma * ul) * N1 + sigma * vl * N2
    k1 = 2.0 / (n * m)
    grad2 = k1 * g2
    gradb = k1 * w2 * P0s
    grad1 = k1 * w2 * Pys
    grad = np.concatenate((grad2, gradb) if wrt == "outer_bias" else (grad1, grad2, gradb))
    risk /= n
    if not hessian:
        return risk, grad, None
    k2 = 2.0 / (n * m * m)
    ww = w2[:, None] * w2[None, :]
    H22 = k2 * blocks["22"]
    H2b = k2 * blocks["2b"]  # rows w2_j, columns b_l
    Hbb = k2 * ww * blocks["bb"]
    H11 = k2 * ww * blocks["11"]
    H1b = k2 * ww * blocks["1b"]  # rows w1_j, columns b_l
    H12 = k2 * w2[:, None] * blocks["12"]  # rows w1_j, columns w2_l
    idx = np.arange(m)
    H2b[idx, idx] += k1 * P0s
    H12[idx, idx] += k1 * Pys
    # Dirac terms, from the direct formula for s at the kink
    tau = kinks(w1, b)
    D = np.zeros(m)
    nz = w1 != 0
    if nz.any():
        tz = tau[nz]
        s_tau = net_eval(w1, w2, b, tz)
        fsum = np.zeros(tz.shape[0])
        for c in mu * x:
            z = (tz - c) / sigma
            fsum += (s_tau + z / sigma) * _phi(z) / sigma
        D[nz] = dirac_sign * k1 * w2[nz] / np.abs(w1[nz]) * fsum
    tauz = np.where(nz, tau, 0.0)
    Hbb[idx, idx] += D
    H1b[idx, idx] += tauz * D
    H11[idx, idx] += tauz * tauz * D
    if wrt == "outer_bias":
        H = np.block([[H22, H2b], [H2b.T, Hbb]])
    else:
        H = np.block([[H11, H12, H1b], [H12.T, H22, H2b], [H1b.T, H2b.T, Hbb]])
    return risk, grad, H


# ---------------------------------------------------------- finite differences


def fd_steps(w1, w2, b, x, mu, sigma, wrt, eta):
    """Per-coordinate steps eta * scale in bigstep's theta order.

    The risk is quadratic in w2 (scale max(1, |w2|)).  A kink moves the risk on the
    length scale L_l = max(sigma, d_l - 8 sigma), d_l its distance to the nearest centre
    mu x_i (sigma when it sits in the Gaussian bulk; farther out only tails of size
    exp(-d^2 / (2 sigma^2)) depend on it).  In b_l the kink moves by h / |w1_l|, so the
    scale is L_l |w1_l| (|b_l| if w1_l = 0: the neuron is the constant relu(b_l)); in
    w1_l it moves by |tau_l| h / |w1_l| and the neuron tilts by h / |w1_l|, so the scale
    is |w1_l| min(1, L_l / |tau_l|) (|b_l| / 10 if w1_l = 0)."""
    w1, w2, b = params(w1, w2, b)
    c = mu * np.asarray(x, dtype=np.float64)
    h2 = np.maximum(1.0, np.abs(w2))
    tau = kinks(w1, b)
    nz = w1 != 0
    t0 = np.where(nz, tau, 0.0)
    d = np.abs(t0[:, None] - c[None, :]).min(axis=1)
    L = np.maximum(sigma, d - 8 * sigma)
    at = np.abs(t0)
    with np.errstate(divide="ignore"):
        hb = np.where(nz, L * np.abs(w1), np.abs(b))
        h1 = np.where(nz, np.abs(w1) * np.minimum(1.0, L / np.where(at > 0, at, np.inf)), np.abs(b) / 10)
    parts = (h2, hb) if wrt == "outer_bias" else (h1, h2, hb)
    return eta * np.concatenate(parts)


def central_difference(fun, theta, steps, coords=None):
    """Columns (fun(theta + h_k e_k) - fun(theta - h_k e_k)) / (2 h_k) for k in coords
    (all by default); fun returns a scalar or a vector.  Shape (len(fun), len(coords))
    for vector fun, (len(coords),) for scalar fun."""
    theta = np.asarray(theta, dtype=np.float64)
    coords = range(theta.shape[0]) if coords is None else coords
    cols = []
    for k in coords:
        e = np.zeros_like(theta)
        e[k] = steps[k]
        cols.append((np.asarray(fun(theta + e)) - np.asarray(fun(theta - e))) / (2 * steps[k]))
    return np.stack(cols, axis=-1)


def richardson_difference(fun, theta, steps, coords=None):
    """2 D(h/2) - D(h) for the central difference D: cancels an error linear in h (the
    Hessian where two kinks coincide is Lipschitz with one-sided derivatives, so D(h)
    = H + a h + O(h^2)) and leaves O(h^2)."""
    d1 = central_difference(fun, theta, steps, coords)
    d2 = central_difference(fun, theta, np.asarray(steps) / 2, coords)
    return 2 * d2 - d1
