"""The exact DSM risk of two-layer ReLU networks, its gradient, Hessian, HVP and sharpness
(docs/design.md section 2, paper eq. 5 and the corrected eq. 15).

References (tests/relu_reference.py, nothing there imports bigstep): scipy quad split at
the kinks, Monte Carlo with 10^6 draws, finite differences, and an O(n m^2) closed form
that is itself checked against quad and finite differences here before it is used.
The finite-difference checks are the tests of record: the risk is C^2 (Lemma 5), so
central differences of the exact gradient match the exact Hessian to ~1e-6 relative
where the kinks are well separated; that is what fixes the sign of the Dirac term.

Every kernel test takes the `rb` fixture (the conftest `backend` fixture, skipped for a
backend whose relu_risk kernels do not exist yet), so it runs on each compiled
instruction set and on numba.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import LinearOperator, eigsh

import bigstep
import relu_reference as rr
from conftest import all_backend_ids, use_backend
from tolerances import eps

WRTS = ["outer_bias", "all"]
EPS = eps(np.float64)

# ----------------------------------------------------------------- tolerances
# This family's tolerances (tests/tolerances.py holds the optimal-score family's), each
# with its justification and the largest value measured on the cases below (cpp avx2 and
# baseline, numba; gcc 12, 2-core AMD EPYC).
#
# Risk against quad: QUADPACK converges each smooth piece to ~1e-13 relative (its error
# estimate is checked in relu_reference._quad) and the kernels sum O(n m) terms of size
# up to 1/sigma^2 (the risk always contains the 1/sigma^2 of the noise term), so the
# error is a few hundred ulps of R + 1/sigma^2 at most.  Measured 2.5e-16.
RISK_RTOL = 1e-12
# Closed form (relu_reference.analytic, centred moments, pairwise intervals) against the
# kernels (prefix sums of raw moments): the same quantities summed differently.  The
# kernels' docstring expects ~log10(tau^2/sigma^2) digits lost on Hessian entries of
# kinks at |tau| >> sigma; relative to max(|entry|, 1e-6 max|entry|) measured 2.6e-13
# (gradient) and 1.4e-13 (Hessian, including tau = 50 at sigma = 1e-3).
REF_GRAD_RTOL = 1e-10
REF_HESS_RTOL = 1e-10
REF_FLOOR = 1e-6  # absolute floor, as a fraction of the largest entry
# Gradient against central differences of the risk (step 1e-3 of each coordinate's
# scale, relu_reference.fd_steps): truncation ~ (1e-3)^2 relative, plus the rounding of
# R (magnitude R + 1/sigma^2, which dominates at sigma = 1e-3 where R ~ 1e6) divided by
# the step: 64 ulps of it.  Measured at most 3.4e-7 of this bound.
GRAD_FD_ETA = 1e-3
GRAD_FD_RTOL = 1e-5
GRAD_FD_ULPS = 64
# Hessian against central differences of the exact gradient (the test of record), step
# 5e-5 of each coordinate's scale: truncation ~ 55 eta^2 (worst: a w1 column of a kink
# sitting on a data point at sigma = 1e-3) and rounding eps |g| / h; measured 1.6e-7
# entrywise (floor 1e-3 of the largest entry: smaller entries carry the columns'
# rounding) and 1.4e-7 normwise.  1e-6 is the figure.
HESS_FD_ETA = 5e-5
HESS_FD_RTOL = 1e-6
HESS_FD_FLOOR = 1e-3
# Where two kinks coincide the Hessian is only Lipschitz: differences 2 D(h/2) - D(h)
# (step 1e-3 of the scale) cancel the error linear in h and leave O(h^2).  Measured: plain
# differences 1e-6 -> 5e-7 when h halves (linear), these 2e-7 -> 5e-8 (quadratic); 1e-5.
COINCIDE_ETA = 1e-3
COINCIDE_RTOL = 1e-5
# HVP against H @ v: two summation orders of the same O(m) terms; 1e-12 of |H| |v| is
# ~4500 ulps (measured 8e-16), floor 1e-15 of the largest row for rows that are 0.
HVP_RTOL = 1e-12
# Sharpness: "dense" is eigvalsh of the same Hessian (a few ulps of ||H||); Lanczos stops
# at a residual of 1e-10 ||H||, which bounds its Ritz value's error; 1e-8 of ||H||.
DENSE_RTOL = 1e-12
LANCZOS_RTOL = 1e-8
# Monte Carlo: the brief's 4 standard errors (fixed seed, so deterministic; a correct
# kernel would fail for 6e-5 of seeds).
MC_SIGMAS = 4.0
MC_SAMPLES = 10**6


# --------------------------------------------------------------------- cases


def data(n=20, seed=7):
    """n standard-normal training points (fixed seed)."""
    return np.random.default_rng(seed).standard_normal(n)


X = data()


@dataclass(frozen=True)
class Case:
    name: str
    w1: np.ndarray
    w2: np.ndarray
    b: np.ndarray
    mu: float
    sigma: float
    separated: bool = True  # no two kinks coincide (central differences of the gradient converge as h^2)
    x: np.ndarray = field(default_factory=lambda: X)

    @property
    def m(self):
        return self.w1.shape[0]

    def net(self):
        return bigstep.ReLUNet1D(self.w1, self.b, self.w2)

    def args(self):
        return (self.x, self.mu, self.sigma)

    def __repr__(self):
        return self.name


def _case(name, w1, w2, tau=None, b=None, *, mu=0.8, sigma=0.5, separated=True, x=X):
    w1 = np.asarray(w1, dtype=np.float64)
    if b is None:
        b = -w1 * np.asarray(tau, dtype=np.float64)
    return Case(name, w1, np.asarray(w2, dtype=np.float64), np.asarray(b, dtype=np.float64), mu, sigma,
                separated, x)


def _spread_kinks(rng, m, lo, hi):
    """m kinks on a shuffled grid of [lo, hi] with a small jitter: separated by ~(hi-lo)/m."""
    step = (hi - lo) / max(m, 1)
    return rng.permutation(np.linspace(lo, hi, m) + rng.uniform(-0.1, 0.1, m) * step)


def _signs(rng, m):
    return rng.choice([-1.0, 1.0], m)


def _real_w1(rng, m):
    """General real inner weights bounded away from 0 (sign times 0.3 + |N(0, 1)|)."""
    return _signs(rng, m) * (0.3 + np.abs(rng.standard_normal(m)))


def _near_data(rng, idx, mu, sigma, spread=1.5):
    """Kinks within `spread` sigma of the centres mu x_i, i in idx: Dirac terms matter."""
    return mu * X[idx] + sigma * rng.uniform(-spread, spread, len(idx))


def build_cases():
    r = np.random.default_rng(2025)
    cases = []
    cases.append(_case("sign7", _signs(r, 7), 2 * r.standard_normal(7), _spread_kinks(r, 7, -2, 2)))
    cases.append(_case("real7", _real_w1(r, 7), 2 * r.standard_normal(7), _spread_kinks(r, 7, -2, 2),
                       mu=0.9, sigma=0.2))
    s = 1e-3
    cases.append(_case("sigma1e-3_m7", _signs(r, 7), 2 * r.standard_normal(7), _near_data(r, range(7), 0.9, s),
                       mu=0.9, sigma=s))
    cases.append(_case("sigma1e-3_real7", np.array([3.0, -0.25, 1.7, -2.2, 0.6, -1.0, 1.0]),
                       2 * r.standard_normal(7), _near_data(r, range(5, 12), 0.9, s), mu=0.9, sigma=s))
    cases.append(_case("m1_plus", [1.0], [1.7], [0.9 * X[3] + 0.4 * s], mu=0.9, sigma=s))
    cases.append(_case("m1_minus", [-1.0], [1.3], [0.9 * X[4] - 0.7 * s], mu=0.9, sigma=s))
    cases.append(_case("m1_real", [2.5], [-3.0], [0.8 * X[1] + 0.02], mu=0.8, sigma=0.05))
    w1 = _signs(r, 7)
    cases.append(_case("kink_on_data_sigma1e-3", w1, 2 * r.standard_normal(7), b=-w1 * (0.9 * X[:7]),
                       mu=0.9, sigma=s))
    w1 = _real_w1(r, 7)
    cases.append(_case("kink_on_data_real", w1, 2 * r.standard_normal(7), b=-w1 * (0.8 * X[7:14]),
                       mu=0.8, sigma=0.3))
    cases.append(_case("far_kinks", [1.0, -1.0, 1.0, -1.0, 1.0, -1.0], 2 * r.standard_normal(6),
                       [50.0, 50.0, -50.0, -50.0, 0.9 * X[0] + 0.5 * s, 0.9 * X[1] - 0.3 * s], mu=0.9, sigma=s))
    cases.append(_case("w2_zero", _signs(r, 7), np.zeros(7), _spread_kinks(r, 7, -2, 2), sigma=0.3))
    w2 = 2 * r.standard_normal(7)
    w2[[1, 4]] = 0.0
    cases.append(_case("w2_some_zero", _real_w1(r, 7), w2, _spread_kinks(r, 7, -2, 2), sigma=0.3))
    cases.append(_case("w1_zero", [0.0, 0.0, 1.0, -1.5, 0.7], 2 * r.standard_normal(5),
                       b=[0.8, -0.6, -0.2, 0.4, 0.5], sigma=0.3))
    cases.append(_case("m50_sigma0.1", _real_w1(r, 50), r.standard_normal(50), _spread_kinks(r, 50, -3, 3),
                       mu=0.9, sigma=0.1))
    # coinciding kinks, exactly representable: w1 in {1, 2, -1, -2} and b = -w1 tau
    tau = 0.8 * X[2] + 0.3 * 0.05
    # (8 data points: the quad gradient's differences are the slowest reference here)
    cases.append(_case("coincide_same", [1.0, 2.0, -1.0], [1.5, -0.8, 1.1], [tau, tau, 0.8 * X[5]],
                       sigma=0.05, separated=False, x=X[:8]))
    cases.append(_case("coincide_opposite", [1.0, -2.0, 1.0], [1.5, 0.9, -1.2], [tau, tau, 0.8 * X[6]],
                       sigma=0.05, separated=False, x=X[:8]))
    return {c.name: c for c in cases}


def build_large():
    r = np.random.default_rng(99)
    m = 1000
    return {
        "m1000_sigma1e-3": _case("m1000_sigma1e-3", _signs(r, m), r.standard_normal(m),
                                 _spread_kinks(r, m, -3, 3), mu=0.9, sigma=1e-3),
        "m1000_sigma0.5": _case("m1000_sigma0.5", _real_w1(r, m), r.standard_normal(m),
                                _spread_kinks(r, m, -3, 3), mu=0.8, sigma=0.5),
    }


CASES = build_cases()
LARGE = build_large()
SMALL = list(CASES)
SEPARATED = [k for k, c in CASES.items() if c.separated]
COINCIDING = [k for k, c in CASES.items() if not c.separated]


# ----------------------------------------------------------- backend fixture


@functools.lru_cache(maxsize=None)
def _unported(name: str) -> str | None:
    """Why the backend has no relu_risk kernels yet (the C++ port lands later), or None."""
    try:
        bigstep.dsm_risk(bigstep.ReLUNet1D([1.0], [0.0], [1.0]), [0.0], 1.0, 1.0, backend=name)
    except (AttributeError, NotImplementedError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture
def rb(backend):
    """The conftest backend, skipped where the relu_risk kernels are not built yet."""
    reason = _unported(backend)
    if reason is not None:
        pytest.skip(f"relu_risk kernels not available on backend {backend!r} yet ({reason})")
    return backend


# ----------------------------------------------------------- cached references


@functools.lru_cache(maxsize=None)
def quad_risk(name):
    c = CASES.get(name) or LARGE[name]
    return rr.risk_quad(c.w1, c.w2, c.b, *c.args())


@functools.lru_cache(maxsize=None)
def mc_risk(name):
    c = CASES[name]
    return rr.risk_mc(c.w1, c.w2, c.b, *c.args(), n_samples=MC_SAMPLES, seed=20250101)


@functools.lru_cache(maxsize=None)
def reference(name, wrt, hessian=True, dirac_sign=1.0):
    c = CASES.get(name) or LARGE[name]
    return rr.analytic(c.w1, c.w2, c.b, *c.args(), wrt, hessian=hessian, dirac_sign=dirac_sign)


@functools.lru_cache(maxsize=None)
def quad_gradient_differences(name, wrt):
    """Richardson differences of the quad gradient (coinciding-kink cases)."""
    c = CASES[name]

    def gq(t):
        return rr.grad_quad(*rr.split_theta(t, c.w1, wrt), *c.args(), wrt=wrt)

    return rr.richardson_difference(gq, rr.theta_of(c.w1, c.w2, c.b, wrt), steps(c, wrt, COINCIDE_ETA))


# ------------------------------------------------------------------- helpers


def lib_risk_fun(case, wrt, backend):
    net = case.net()
    return lambda th: bigstep.dsm_risk(net.with_theta(th, wrt=wrt), *case.args(), backend=backend)


def lib_grad_fun(case, wrt, backend):
    net = case.net()
    return lambda th: bigstep.dsm_risk_grad(net.with_theta(th, wrt=wrt), *case.args(), wrt=wrt,
                                            backend=backend)[1]


def steps(case, wrt, eta):
    return rr.fd_steps(case.w1, case.w2, case.b, case.x, case.mu, case.sigma, wrt, eta)


def check_close(name, got, ref, bound, context=""):
    """|got - ref| <= bound elementwise, with the worst entry in the message."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape} {context}"
    assert np.isfinite(got).all(), f"{name}: non-finite entries {context}"
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), got.shape)
    err = np.abs(got - ref)
    bad = err > bound
    if bad.any():
        i = np.unravel_index(int(np.argmax(err / np.maximum(bound, np.finfo(float).tiny))), got.shape)
        raise AssertionError(f"{name} {context}: {int(bad.sum())}/{bad.size} entries outside the bound; worst "
                             f"at {tuple(int(j) for j in i)}: got {got[i]!r}, reference {ref[i]!r}, error "
                             f"{err[i]:.3e} > allowed {bound[i]:.3e}")


def fd_coords(P, k=16, seed=11):
    """All coordinates of a small net, a fixed random subset of k of a wide one."""
    if P <= 2 * k:
        return np.arange(P)
    return np.sort(np.random.default_rng(seed).choice(P, k, replace=False))


def check_columns(name, H, coords, fd, rtol, floor, context=""):
    """Hessian columns H[:, coords] against differences fd: entrywise
    |H - fd| <= rtol max(|fd|, floor max|H|), each column normwise
    ||H_k - fd_k|| <= rtol max(||fd_k||, floor max|H|), and the whole matrix normwise
    when every column is checked."""
    cols = H[:, coords]
    scale = np.abs(H).max()
    check_close(name, cols, fd, rtol * np.maximum(np.abs(fd), floor * scale), context)
    err = np.linalg.norm(cols - fd, axis=0)
    allowed = rtol * np.maximum(np.linalg.norm(fd, axis=0), floor * scale)
    bad = np.flatnonzero(err > allowed)
    assert bad.size == 0, (f"{name} {context}: column {int(coords[bad[0]])} normwise error {err[bad[0]]:.3e} > "
                           f"{allowed[bad[0]]:.3e}")
    if len(coords) == H.shape[0]:
        rel = np.linalg.norm(cols - fd) / max(np.linalg.norm(fd), np.finfo(float).tiny)
        assert rel <= rtol or scale == 0, f"{name} {context}: normwise relative error {rel:.3e} > {rtol:.1e}"


def check_matrix_rel(name, got, ref, rtol, floor, context=""):
    """Entrywise |got - ref| <= rtol * max(|ref|, floor * max|ref|), and normwise
    ||got - ref||_F <= rtol ||ref||_F."""
    scale = np.abs(ref).max()
    check_close(name, got, ref, rtol * np.maximum(np.abs(ref), floor * scale), context)
    rel = np.linalg.norm(got - ref) / max(np.linalg.norm(ref), np.finfo(float).tiny)
    assert rel <= rtol or scale == 0, f"{name} {context}: normwise relative error {rel:.3e} > {rtol:.1e}"


def dirac_term(w1, w2, b, x, mu, sigma, l):
    """The corrected (b_l, b_l) Dirac entry of docs/design.md section 2, from the direct formula:
    +(2/(m n)) (w2_l/|w1_l|) sum_i f_i(tau_l) p_i(tau_l)."""
    m, n = len(w1), len(x)
    tau = -b[l] / w1[l]
    s_tau = rr.net_eval(w1, w2, b, tau)
    z = (tau - mu * np.asarray(x)) / sigma
    f = s_tau + z / sigma
    p = np.exp(-0.5 * z * z) / (sigma * math.sqrt(2 * math.pi))
    return 2.0 / (m * n) * w2[l] / abs(w1[l]) * float(np.sum(f * p))


# ================================================= the references themselves


@pytest.mark.parametrize("name", SMALL)
def test_reference_closed_form_matches_quad(name):
    """The O(n m^2) closed form against scipy quad split at the kinks: risk and gradient
    (every parameter, wrt="all")."""
    c = CASES[name]
    risk, grad, _ = reference(name, "all", hessian=False)
    rq = quad_risk(name)
    assert abs(risk - rq) <= RISK_RTOL * (rq + 1 / c.sigma**2), (risk, rq)
    if c.m > 7:
        return  # one quad per (point, piece, parameter): the gradient check is for the small nets
    gq = rr.grad_quad(c.w1, c.w2, c.b, *c.args(), wrt="all")
    check_close("closed-form gradient vs quad", grad, gq, 1e-10 * (np.abs(gq) + REF_FLOOR * np.abs(gq).max()), name)


@pytest.mark.parametrize("name", SEPARATED)
def test_reference_hessian_matches_differences(name):
    """The closed-form Hessian (corrected Dirac sign) against central differences of the
    closed-form gradient; where the Dirac term is not negligible, the printed sign fails."""
    c = CASES[name]
    th = rr.theta_of(c.w1, c.w2, c.b, "all")
    _, _, H = reference(name, "all")

    def g(t):
        return rr.analytic(*rr.split_theta(t, c.w1, "all"), *c.args(), "all", hessian=False)[1]

    fd = rr.central_difference(g, th, steps(c, "all", HESS_FD_ETA))
    check_matrix_rel("closed-form Hessian vs differences", fd, H, HESS_FD_RTOL, HESS_FD_FLOOR, name)
    _, _, Hp = reference(name, "all", dirac_sign=-1.0)
    if np.linalg.norm(Hp - H) > 1e-3 * np.linalg.norm(H):
        assert np.linalg.norm(fd - Hp) > 1e3 * HESS_FD_RTOL * np.linalg.norm(H)


@pytest.mark.parametrize("name", ["sign7", "real7", "w1_zero"])
def test_reference_monte_carlo_matches_quad(name):
    """10^6-draw Monte Carlo against quad: within MC_SIGMAS standard errors."""
    est, se = mc_risk(name)
    assert abs(est - quad_risk(name)) <= MC_SIGMAS * se


def test_reference_segments_match_direct_formula():
    """The per-segment lines of the reference reproduce s at points inside each segment."""
    for c in list(CASES.values()) + list(LARGE.values()):
        K, A, alpha, beta = rr.segments(c.w1, c.w2, c.b)
        ends = np.concatenate(([K[0] - 1.0] if K.size else [-1.0], K, [K[-1] + 1.0] if K.size else [1.0]))
        mid = 0.5 * (ends[:-1] + ends[1:])
        s = rr.net_eval(c.w1, c.w2, c.b, mid)
        np.testing.assert_allclose(alpha * mid + beta, s, rtol=1e-12, atol=1e-12 * (np.abs(s).max() + 1))


# ================================================================ the risk


@pytest.mark.parametrize("name", SMALL + list(LARGE))
def test_risk_against_quad(rb, name):
    """dsm_risk against scipy quad split at the kinks, per data point (cancellation-free
    integrand (s(y) + (y - mu x_i)/sigma^2)^2 N(y; mu x_i, sigma^2))."""
    c = CASES.get(name) or LARGE[name]
    r = bigstep.dsm_risk(c.net(), *c.args(), backend=rb)
    assert isinstance(r, float)
    rq = quad_risk(name)
    assert abs(r - rq) <= RISK_RTOL * (rq + 1 / c.sigma**2), f"{name}: {r!r} vs quad {rq!r}, diff {r - rq:.3e}"


@pytest.mark.parametrize("name", ["sign7", "real7", "w1_zero"])
def test_risk_against_monte_carlo(rb, name):
    """dsm_risk against 10^6 Monte Carlo draws (fixed seed): within 4 standard errors."""
    c = CASES[name]
    r = bigstep.dsm_risk(c.net(), *c.args(), backend=rb)
    est, se = mc_risk(name)
    assert abs(r - est) <= MC_SIGMAS * se, f"{name}: {r} vs MC {est} +- {se} ({(r - est) / se:.2f} SE)"


@pytest.mark.parametrize("sigma", [1.0, 0.3, 1e-3])
def test_risk_closed_forms(rb, sigma):
    """s = 0 (w2 = 0): R = 1/sigma^2.  Every neuron active on all the data mass (kinks at
    +-50 on the right side): s = alpha y + beta there and
    R = (1/n) sum_i (alpha mu x_i + beta)^2 + (alpha sigma + 1/sigma)^2."""
    x, mu = X, 0.7
    zero = bigstep.ReLUNet1D([1.0, -1.0, 2.0], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0])
    assert abs(bigstep.dsm_risk(zero, x, mu, sigma, backend=rb) - 1 / sigma**2) <= 4 * EPS / sigma**2
    w1, w2 = np.array([1.0, -1.0, 0.5]), np.array([0.7, -1.9, 2.4])
    b = -w1 * np.array([-50.0, 50.0, -50.0])
    lin = bigstep.ReLUNet1D(w1, b, w2)
    m = 3
    alpha, beta = (w2 * w1).sum() / m, (w2 * b).sum() / m
    exact = np.mean((alpha * mu * x + beta) ** 2) + (alpha * sigma + 1 / sigma) ** 2
    got = bigstep.dsm_risk(lin, x, mu, sigma, backend=rb)
    assert abs(got - exact) <= RISK_RTOL * (exact + 1 / sigma**2 + beta**2), (got, exact)


# ============================================================ the gradient


@pytest.mark.parametrize("wrt", WRTS)
@pytest.mark.parametrize("name", SMALL)
def test_gradient_against_differences_of_risk(rb, name, wrt):
    """dsm_risk_grad against central differences of dsm_risk (theta +- h e_k through
    net.with_theta), every coordinate."""
    c = CASES[name]
    net = c.net()
    r, g = bigstep.dsm_risk_grad(net, *c.args(), wrt=wrt, backend=rb)
    assert isinstance(r, float) and g.dtype == np.float64 and g.shape == ((2 if wrt == "outer_bias" else 3) * c.m,)
    assert r == bigstep.dsm_risk(net, *c.args(), backend=rb)
    h = steps(c, wrt, GRAD_FD_ETA)
    coords = fd_coords(g.shape[0], k=8)  # the closed-form test checks every entry tightly
    fd = rr.central_difference(lib_risk_fun(c, wrt, rb), net.theta(wrt=wrt), h, coords)
    bound = GRAD_FD_RTOL * np.abs(g).max() + GRAD_FD_ULPS * EPS * (abs(r) + 1 / c.sigma**2) / h[coords]
    check_close("gradient vs differences of the risk", g[coords], fd, bound, f"({name}, {wrt}, {rb})")


@pytest.mark.parametrize("wrt", WRTS)
@pytest.mark.parametrize("name", SMALL + list(LARGE))
def test_gradient_against_closed_form(rb, name, wrt):
    """dsm_risk_grad against the closed form (itself checked against quad above)."""
    c = CASES.get(name) or LARGE[name]
    r, g = bigstep.dsm_risk_grad(c.net(), *c.args(), wrt=wrt, backend=rb)
    rref, gref, _ = reference(name, wrt, hessian=False)
    assert abs(r - rref) <= RISK_RTOL * (rref + 1 / c.sigma**2)
    check_close("gradient vs closed form", g, gref,
                REF_GRAD_RTOL * (np.abs(gref) + REF_FLOOR * np.abs(gref).max()), f"({name}, {wrt}, {rb})")


# ============================================================= the Hessian


@pytest.mark.parametrize("wrt", WRTS)
@pytest.mark.parametrize("name", SEPARATED)
def test_hessian_against_differences_of_gradient(rb, name, wrt):
    """The test of record: dsm_risk_hessian against central differences of the exact
    gradient, ~1e-6 relative normwise and entrywise (floor 1e-3 of the largest entry)."""
    c = CASES[name]
    net = c.net()
    H = bigstep.dsm_risk_hessian(net, *c.args(), wrt=wrt, backend=rb)
    P = (2 if wrt == "outer_bias" else 3) * c.m
    assert H.shape == (P, P) and H.dtype == np.float64
    coords = fd_coords(P)
    fd = rr.central_difference(lib_grad_fun(c, wrt, rb), net.theta(wrt=wrt), steps(c, wrt, HESS_FD_ETA), coords)
    check_columns("Hessian vs differences of the gradient", H, coords, fd, HESS_FD_RTOL, HESS_FD_FLOOR,
                  f"({name}, {wrt}, {rb})")


@pytest.mark.parametrize("wrt", WRTS)
@pytest.mark.parametrize("name", SMALL)
def test_hessian_against_closed_form(rb, name, wrt):
    """dsm_risk_hessian against the closed form, entrywise (also where kinks coincide)."""
    c = CASES[name]
    H = bigstep.dsm_risk_hessian(c.net(), *c.args(), wrt=wrt, backend=rb)
    _, _, Href = reference(name, wrt)
    check_matrix_rel("Hessian vs closed form", H, Href, REF_HESS_RTOL, REF_FLOOR, f"({name}, {wrt}, {rb})")


@pytest.mark.parametrize("w1", [1.0, -1.0, 2.5, -0.4])
def test_dirac_sign(rb, w1):
    """The (b, b) entry of a single neuron with its kink 0.4 sigma from a data point, where
    the Dirac term dominates, matches the central difference of the exact gradient, and
    the Dirac term with the opposite sign does not (for w1 = +1 that is the paper's
    printed eq. (15); the corrected entry is +(2/(m n)) (w2/|w1|) sum_i f_i(tau) p_i(tau))."""
    x, mu, sigma = X, 0.9, 1e-2
    tau = mu * x[3] + 0.4 * sigma
    w1a, w2a, ba = np.array([w1]), np.array([1.7]), np.array([-w1 * tau])
    net = bigstep.ReLUNet1D(w1a, ba, w2a)
    H = bigstep.dsm_risk_hessian(net, x, mu, sigma, backend=rb)
    h = 1e-4 * sigma * abs(w1)
    gp = bigstep.dsm_risk_grad(net.with_theta([1.7, ba[0] + h]), x, mu, sigma, backend=rb)[1][1]
    gm = bigstep.dsm_risk_grad(net.with_theta([1.7, ba[0] - h]), x, mu, sigma, backend=rb)[1][1]
    fd = (gp - gm) / (2 * h)
    D = dirac_term(w1a, w2a, ba, x, mu, sigma, 0)
    printed = H[1, 1] - 2 * D
    assert abs(D) > 0.5 * abs(fd), "test set-up: the Dirac term should dominate this entry"
    assert abs(H[1, 1] - fd) <= HESS_FD_RTOL * abs(fd), f"H_bb {H[1, 1]!r} vs difference {fd!r} (w1={w1})"
    assert abs(printed - fd) > 0.5 * abs(fd), f"printed sign {printed!r} should not match {fd!r}"


@pytest.mark.parametrize("wrt", WRTS)
@pytest.mark.parametrize("name", COINCIDING)
def test_coinciding_kinks(rb, name, wrt):
    """Two neurons sharing a kink (same and opposite signs of w1): the Hessian is only
    Lipschitz there, so plain differences of the gradient converge linearly; Richardson
    differences of (a) the kernel's gradient and (b) the quad gradient match the Hessian."""
    c = CASES[name]
    net = c.net()
    H = bigstep.dsm_risk_hessian(net, *c.args(), wrt=wrt, backend=rb)
    th = net.theta(wrt=wrt)
    h = steps(c, wrt, COINCIDE_ETA)
    fd = rr.richardson_difference(lib_grad_fun(c, wrt, rb), th, h)
    check_matrix_rel("Hessian vs Richardson differences of the gradient", H, fd, COINCIDE_RTOL, HESS_FD_FLOOR,
                     f"({name}, {wrt}, {rb})")

    fdq = quad_gradient_differences(name, wrt)
    check_matrix_rel("Hessian vs Richardson differences of the quad gradient", H, fdq, COINCIDE_RTOL,
                     HESS_FD_FLOOR, f"({name}, {wrt}, {rb})")


@pytest.mark.parametrize("wrt", WRTS)
@pytest.mark.parametrize("name", SMALL)
def test_hessian_symmetric(rb, name, wrt):
    c = CASES.get(name) or LARGE[name]
    H = bigstep.dsm_risk_hessian(c.net(), *c.args(), wrt=wrt, backend=rb)
    check_close("H - H^T", H, H.T, 4 * EPS * np.abs(H).max(), f"({name}, {wrt}, {rb})")


@pytest.mark.parametrize("wrt", WRTS)
@pytest.mark.parametrize("name", SMALL + list(LARGE))
def test_hvp_matches_hessian(rb, name, wrt):
    """dsm_risk_hvp(v) against dsm_risk_hessian @ v for random v and a unit vector (and H
    symmetric, for the wide nets too)."""
    c = CASES.get(name) or LARGE[name]
    net = c.net()
    H = bigstep.dsm_risk_hessian(net, *c.args(), wrt=wrt, backend=rb)
    P = H.shape[0]
    check_close("H - H^T", H, H.T, 4 * EPS * np.abs(H).max(), f"({name}, {wrt}, {rb})")
    rng = np.random.default_rng(3)
    vs = [rng.standard_normal(P), rng.uniform(-1, 1, P) * 1e3, np.eye(P)[P - 1]]
    for v in vs:
        hv = bigstep.dsm_risk_hvp(net, *c.args(), v, wrt=wrt, backend=rb)
        assert hv.shape == (P,) and hv.dtype == np.float64
        scale = np.abs(H) @ np.abs(v)
        check_close("HVP vs H @ v", hv, H @ v, HVP_RTOL * scale + 1e-15 * scale.max(), f"({name}, {wrt}, {rb})")


@pytest.mark.parametrize("wrt", WRTS)
@pytest.mark.parametrize("name", list(LARGE))
def test_large_m_against_differences(rb, name, wrt):
    """m = 1000: the gradient against differences of the risk and Hessian columns against
    differences of the gradient, on 12 random coordinates each."""
    c = LARGE[name]
    net = c.net()
    th = net.theta(wrt=wrt)
    coords = fd_coords(th.shape[0], k=12)
    r, g = bigstep.dsm_risk_grad(net, *c.args(), wrt=wrt, backend=rb)
    h = steps(c, wrt, GRAD_FD_ETA)
    fd = rr.central_difference(lib_risk_fun(c, wrt, rb), th, h, coords)
    bound = GRAD_FD_RTOL * np.abs(g).max() + GRAD_FD_ULPS * EPS * (abs(r) + 1 / c.sigma**2) / h[coords]
    check_close("gradient vs differences of the risk", g[coords], fd, bound, f"({name}, {wrt}, {rb})")
    H = bigstep.dsm_risk_hessian(net, *c.args(), wrt=wrt, backend=rb)
    fdH = rr.central_difference(lib_grad_fun(c, wrt, rb), th, steps(c, wrt, HESS_FD_ETA), coords)
    check_columns("Hessian columns vs differences of the gradient", H, coords, fdH, HESS_FD_RTOL, HESS_FD_FLOOR,
                  f"({name}, {wrt}, {rb})")


@pytest.mark.parametrize("wrt", WRTS)
def test_hessian_against_closed_form_m200(rb, wrt):
    """A wider net (m = 200, sigma = 0.05, kinks in and beyond the data) against the closed form."""
    r = np.random.default_rng(5)
    m = 200
    c = _case("m200", _real_w1(r, m), r.standard_normal(m), _spread_kinks(r, m, -4, 4), mu=0.8, sigma=0.05)
    H = bigstep.dsm_risk_hessian(c.net(), *c.args(), wrt=wrt, backend=rb)
    _, _, Href = rr.analytic(c.w1, c.w2, c.b, *c.args(), wrt)
    check_matrix_rel("Hessian vs closed form (m = 200)", H, Href, REF_HESS_RTOL, REF_FLOOR, f"({wrt}, {rb})")


# ============================================================ sharpness


@pytest.mark.parametrize("wrt", WRTS)
@pytest.mark.parametrize("name", SMALL)
def test_sharpness_dense_and_lanczos(rb, name, wrt):
    """method="dense", "lanczos" (forced at small m) and "auto" against
    numpy.linalg.eigvalsh of the Hessian (largest eigenvalue)."""
    c = CASES[name]
    net = c.net()
    H = bigstep.dsm_risk_hessian(net, *c.args(), wrt=wrt, backend=rb)
    ev = np.linalg.eigvalsh(H)
    norm = np.abs(ev).max()
    for method, rtol in (("dense", DENSE_RTOL), ("auto", DENSE_RTOL), ("lanczos", LANCZOS_RTOL)):
        lam = bigstep.sharpness(net, *c.args(), wrt=wrt, method=method, backend=rb)
        assert isinstance(lam, float)
        assert abs(lam - ev[-1]) <= rtol * norm + 1e-300, f"{method}: {lam!r} vs eigvalsh {ev[-1]!r} ({name}, {wrt})"


def _wide(m, seed, sigma):
    r = np.random.default_rng(seed)
    return _case(f"m{m}", _signs(r, m), r.standard_normal(m), _spread_kinks(r, m, -3, 3), mu=0.8, sigma=sigma)


def test_sharpness_lanczos_m2000(rb):
    """m = 2000 (4000 parameters): auto (Lanczos) against ARPACK's largest algebraic
    eigenvalue of the dense Hessian (eigvalsh of 4000 x 4000 takes ~20 s on 2 cores)."""
    c = _wide(2000, 22, 0.5)
    H = bigstep.dsm_risk_hessian(c.net(), *c.args(), backend=rb)
    op = LinearOperator(H.shape, matvec=lambda v: H @ v, dtype=np.float64)
    top = float(eigsh(op, k=1, which="LA", tol=1e-14, return_eigenvectors=False)[0])
    bottom = float(eigsh(op, k=1, which="SA", tol=1e-10, return_eigenvectors=False)[0])
    norm = max(abs(top), abs(bottom))
    lam = bigstep.sharpness(c.net(), *c.args(), backend=rb)
    assert abs(lam - top) <= LANCZOS_RTOL * norm, (lam, top)


@pytest.mark.parametrize("name", ["sign7", "sigma1e-3_m7", "m50_sigma0.1"])
def test_is_linearly_stable(rb, name):
    """is_linearly_stable(lr) is sharpness <= 2/(m lr): True below the critical step
    2/(m lambda_max), False above."""
    c = CASES[name]
    net = c.net()
    for wrt in WRTS:
        lam = bigstep.sharpness(net, *c.args(), wrt=wrt, backend=rb)
        assert lam > 0
        crit = 2.0 / (c.m * lam)
        for factor, stable in ((0.5, True), (0.999, True), (1.001, False), (4.0, False)):
            got = bigstep.is_linearly_stable(net, *c.args(), lr=factor * crit, wrt=wrt, backend=rb)
            assert got is stable, f"lr = {factor} * 2/(m lambda): {got} ({name}, {wrt})"


# ============================================================ other checks


def test_excess_risk(rb):
    """excess_risk >= 0 equals (1/n) sum_i E_i[(s - s*)^2], by composite Gauss-Legendre
    (20 nodes per panel of width <= sigma/4, panels split at the kinks, +-12 sigma around
    each centre) with s* from the numpy reference (sigma = 0.5, where s* is smooth); and,
    where bigstep exports optimal_risk, dsm_risk - optimal_risk."""
    from reference import np_1d

    c = CASES["sign7"]
    x, mu, sigma = c.args()
    ex = bigstep.excess_risk(c.net(), *c.args(), backend=rb)
    assert isinstance(ex, float) and ex >= 0
    nodes, weights = np.polynomial.legendre.leggauss(20)
    total = 0.0
    for ci in mu * x:
        lo, hi = ci - 12 * sigma, ci + 12 * sigma
        k = np.sort(rr.kinks(c.w1, c.b))
        edges = np.concatenate(([lo], k[(k > lo) & (k < hi)], [hi]))
        for a, b in zip(edges[:-1], edges[1:]):
            panels = np.linspace(a, b, int(np.ceil((b - a) / (sigma / 4))) + 1)
            half = np.diff(panels)[:, None] / 2
            y = ((panels[:-1, None] + panels[1:, None]) / 2 + half * nodes).ravel()
            w = (half * weights).ravel()
            d = rr.net_eval(c.w1, c.w2, c.b, y) - np_1d(y, x, mu, sigma)["score"]
            dens = np.exp(-0.5 * ((y - ci) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
            total += float(np.sum(w * d * d * dens))
    total /= x.size
    # the optimal risk is adaptive quadrature to 1e-10 relative (its docstring)
    opt = bigstep.dsm_risk(c.net(), *c.args(), backend=rb) - ex
    assert abs(ex - total) <= 1e-9 * (opt + total), (ex, total)
    if callable(getattr(bigstep, "optimal_risk", None)):  # the function, once exported (not the submodule)
        r = bigstep.dsm_risk(c.net(), *c.args(), backend=rb)
        assert abs(ex - (r - bigstep.optimal_risk(*c.args()))) <= 4 * EPS * (r + ex)


@pytest.mark.parametrize("name", ["sigma1e-3_real7", "w1_zero", "coincide_opposite"])
def test_backends_agree(name):
    """Every available backend gives the same risk, gradient and Hessian to rounding."""
    c = CASES[name]
    outs = {}
    for config in all_backend_ids():
        with use_backend(config) as b:
            if _unported(b) is not None:
                continue
            r, g = bigstep.dsm_risk_grad(c.net(), *c.args(), wrt="all", backend=b)
            outs[config] = (r, g, bigstep.dsm_risk_hessian(c.net(), *c.args(), wrt="all", backend=b))
    if len(outs) < 2:
        pytest.skip(f"only {list(outs)} implement relu_risk")
    (r0, g0, H0) = next(iter(outs.values()))
    for config, (r, g, H) in outs.items():
        assert abs(r - r0) <= RISK_RTOL * (r0 + 1 / c.sigma**2), config
        check_close("gradient", g, g0, 1e-12 * np.abs(g0).max(), config)
        check_close("Hessian", H, H0, 1e-12 * np.abs(H0).max(), config)


@pytest.mark.parametrize("w1", [1e-310, -1e-310, 1e-300, 5e-324])
def test_tiny_inner_weight(rb, w1):
    """A neuron with |w1| so small that -b/w1 overflows is a kink at +-inf: no warning
    (warnings are errors here), and the same risk and gradient as w1 = 0 up to w1 * y."""
    x, mu, sigma = X, 0.8, 0.5
    net = bigstep.ReLUNet1D([w1, 1.0], [1.0, 0.3], [0.7, -1.2])
    zero = bigstep.ReLUNet1D([0.0, 1.0], [1.0, 0.3], [0.7, -1.2])
    assert np.isinf(net.kinks[0]) or np.isnan(net.kinks[0]) or abs(net.kinks[0]) > 1e250
    r, g = bigstep.dsm_risk_grad(net, x, mu, sigma, wrt="all", backend=rb)
    r0, g0 = bigstep.dsm_risk_grad(zero, x, mu, sigma, wrt="all", backend=rb)
    assert abs(r - r0) <= RISK_RTOL * (r0 + 1 / sigma**2)
    np.testing.assert_allclose(g, g0, rtol=1e-12, atol=1e-12 * np.abs(g0).max())
    H = bigstep.dsm_risk_hessian(net, x, mu, sigma, wrt="all", backend=rb)
    H0 = bigstep.dsm_risk_hessian(zero, x, mu, sigma, wrt="all", backend=rb)
    np.testing.assert_allclose(H, H0, rtol=1e-12, atol=1e-12 * np.abs(H0).max())


def test_auto_backend_matches_named(rb):
    c = CASES["sign7"]
    assert bigstep.dsm_risk(c.net(), *c.args()) == pytest.approx(bigstep.dsm_risk(c.net(), *c.args(), backend=rb),
                                                                 rel=1e-13)


def test_float32_inputs_promoted(rb):
    c = CASES["real7"]
    w1, w2, b = (v.astype(np.float32) for v in (c.w1, c.w2, c.b))
    net = bigstep.ReLUNet1D(w1, b, w2)
    assert net.W1.dtype == np.float64 and net.W2.dtype == np.float64 and net.b1.dtype == np.float64
    x32 = c.x.astype(np.float32)
    r = bigstep.dsm_risk(net, x32, np.float32(c.mu), np.float32(c.sigma), backend=rb)
    r64 = rr.risk_quad(w1.astype(np.float64), w2.astype(np.float64), b.astype(np.float64),
                       x32.astype(np.float64), float(np.float32(c.mu)), float(np.float32(c.sigma)))
    assert isinstance(r, float) and abs(r - r64) <= RISK_RTOL * (r64 + 1 / c.sigma**2)
    H = bigstep.dsm_risk_hessian(net, x32, np.float32(c.mu), np.float32(c.sigma), backend=rb)
    assert H.dtype == np.float64


# ----------------------------------------------------------- properties

_settings = settings(max_examples=25)


@st.composite
def nets(draw, max_m=6):
    m = draw(st.integers(1, max_m))
    fl = st.floats(-3, 3, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    w1 = np.array(draw(st.lists(fl, min_size=m, max_size=m)))
    w2 = np.array(draw(st.lists(fl, min_size=m, max_size=m)))
    b = np.array(draw(st.lists(fl, min_size=m, max_size=m)))
    return w1, w2, b


@_settings
@given(nets(), st.floats(0.05, 2.0), st.randoms(use_true_random=False))
def test_property_permutation_invariance(rb, net, sigma, rnd):
    """Permuting the neurons permutes the gradient and leaves the risk unchanged."""
    w1, w2, b = net
    x = X[:8]
    perm = np.array(rnd.sample(range(len(w1)), len(w1)))
    r, g = bigstep.dsm_risk_grad(bigstep.ReLUNet1D(w1, b, w2), x, 0.8, sigma, wrt="all", backend=rb)
    rp, gp = bigstep.dsm_risk_grad(bigstep.ReLUNet1D(w1[perm], b[perm], w2[perm]), x, 0.8, sigma, wrt="all",
                                   backend=rb)
    m = len(w1)
    idx = np.concatenate([perm, perm + m, perm + 2 * m])
    assert abs(r - rp) <= 1e-12 * (r + 1 / sigma**2)
    np.testing.assert_allclose(gp, g[idx], rtol=1e-10, atol=1e-10 * (np.abs(g).max() + 1e-300))


@_settings
@given(nets(), st.floats(0.05, 2.0), st.floats(0.25, 4.0))
def test_property_positive_rescaling(rb, net, sigma, k):
    """relu is positively homogeneous: (k w1, w2 / k, k b) is the same function, same risk."""
    w1, w2, b = net
    x = X[:8]
    r = bigstep.dsm_risk(bigstep.ReLUNet1D(w1, b, w2), x, 0.8, sigma, backend=rb)
    rk = bigstep.dsm_risk(bigstep.ReLUNet1D(k * w1, k * b, w2 / k), x, 0.8, sigma, backend=rb)
    assert abs(r - rk) <= 1e-12 * (r + 1 / sigma**2)


@_settings
@given(nets(), st.floats(0.05, 2.0))
def test_property_duplicated_data(rb, net, sigma):
    """The risk is a mean over the data: listing every point twice changes nothing."""
    w1, w2, b = net
    x = X[:6]
    n = bigstep.ReLUNet1D(w1, b, w2)
    r1 = bigstep.dsm_risk(n, x, 0.8, sigma, backend=rb)
    r2 = bigstep.dsm_risk(n, np.concatenate([x, x[::-1]]), 0.8, sigma, backend=rb)
    assert abs(r1 - r2) <= 1e-12 * (r1 + 1 / sigma**2)


# ============================================================== ReLUNet1D


def test_net_is_immutable():
    w1, w2, b = np.array([1.0, -1.0]), np.array([0.5, 2.0]), np.array([0.1, -0.3])
    net = bigstep.ReLUNet1D(w1, b, w2)
    for arr in (net.W1, net.W2, net.b1):
        assert arr.dtype == np.float64 and not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0] = 7.0
    with pytest.raises(AttributeError):
        net.W1 = np.zeros(2)
    with pytest.raises(AttributeError):
        net.width = 5
    w1[0], w2[0], b[0] = 9.0, 9.0, 9.0  # the net holds copies
    assert net.W1[0] == 1.0 and net.W2[0] == 0.5 and net.b1[0] == 0.1
    new = net.with_theta([1.0, 2.0, 3.0, 4.0])
    assert new is not net and net.W2.tolist() == [0.5, 2.0] and net.b1.tolist() == [0.1, -0.3]
    assert new.W2.tolist() == [1.0, 2.0] and new.b1.tolist() == [3.0, 4.0] and new.W1.tolist() == [1.0, -1.0]
    th = net.theta()
    th[0] = 100.0  # a fresh array: changing it does not touch the net
    assert net.W2[0] == 0.5


def test_net_call_matches_formula():
    c = CASES["w1_zero"]
    net = c.net()
    y = np.linspace(-4, 4, 37).reshape(37)
    np.testing.assert_allclose(net(y), rr.net_eval(c.w1, c.w2, c.b, y), rtol=1e-14, atol=1e-15)
    y2 = y.reshape(37, 1)[:36].reshape(6, 6)
    out = net(y2)
    assert out.shape == (6, 6)
    np.testing.assert_allclose(out, rr.net_eval(c.w1, c.w2, c.b, y2), rtol=1e-14, atol=1e-15)
    assert float(net(0.3)) == pytest.approx(float(rr.net_eval(c.w1, c.w2, c.b, 0.3)), rel=1e-14)
    assert float(net(1.25)) == pytest.approx(np.mean(c.w2 * np.maximum(c.w1 * 1.25 + c.b, 0)), rel=1e-14)


def test_net_kinks_theta_and_m():
    net = bigstep.ReLUNet1D([2.0, -0.5, 0.0], [1.0, 1.0, 0.5], [1.0, 2.0, 3.0])
    k = net.kinks
    assert k.dtype == np.float64 and k.shape == (3,)
    assert k[0] == -0.5 and k[1] == 2.0 and np.isnan(k[2])
    assert net.width == 3 and isinstance(net.width, int)
    np.testing.assert_array_equal(net.theta(), [1.0, 2.0, 3.0, 1.0, 1.0, 0.5])
    np.testing.assert_array_equal(net.theta(wrt="outer_bias"), net.theta())
    np.testing.assert_array_equal(net.theta(wrt="all"), [2.0, -0.5, 0.0, 1.0, 2.0, 3.0, 1.0, 1.0, 0.5])
    for wrt in WRTS:
        back = net.with_theta(net.theta(wrt=wrt), wrt=wrt)
        for a, b in ((back.W1, net.W1), (back.W2, net.W2), (back.b1, net.b1)):
            np.testing.assert_array_equal(a, b)
    moved = net.with_theta(np.arange(9.0), wrt="all")
    np.testing.assert_array_equal(moved.W1, [0, 1, 2])
    np.testing.assert_array_equal(moved.W2, [3, 4, 5])
    np.testing.assert_array_equal(moved.b1, [6, 7, 8])


def test_net_init():
    a = bigstep.ReLUNet1D.init(64, seed=5, inner="sign")
    b = bigstep.ReLUNet1D.init(64, seed=5, inner="sign")
    c = bigstep.ReLUNet1D.init(64, seed=6, inner="sign")
    for u, v in ((a.W1, b.W1), (a.W2, b.W2), (a.b1, b.b1)):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.W2, c.W2)
    assert a.width == 64
    assert set(np.unique(a.W1).tolist()) == {-1.0, 1.0}
    np.testing.assert_array_equal(a.b1, np.zeros(64))
    biased = bigstep.ReLUNet1D.init(8, seed=1, bias=0.25, inner="sign")
    np.testing.assert_array_equal(biased.b1, np.full(8, 0.25))
    sign = bigstep.ReLUNet1D.init(4000, seed=3, inner="sign")
    frac = float(np.mean(sign.W1 > 0))
    assert abs(frac - 0.5) <= 5 * 0.5 / math.sqrt(4000)
    from scipy import stats

    g = bigstep.ReLUNet1D.init(4000, seed=3, inner="gaussian")
    assert stats.kstest(g.W1, "norm").pvalue > 1e-6
    assert stats.kstest(g.W2, "norm").pvalue > 1e-6
    g2 = bigstep.ReLUNet1D.init(4000, seed=3, inner="gaussian")
    np.testing.assert_array_equal(g.W1, g2.W1)


# ============================================================== bad input

_NET = bigstep.ReLUNet1D([1.0, -1.0], [0.0, 0.2], [0.5, 0.5])


@pytest.mark.parametrize("args, exc, match", [
    (([1.0, 2.0], [0.0, 0.0], [1.0]), ValueError, "W2"),
    (([1.0, 2.0], [0.0], [1.0, 2.0]), ValueError, "b1"),
    (([], [], []), ValueError, "W1"),
    (([[1.0, 2.0]], [[0.0, 0.0]], [[1.0, 2.0]]), ValueError, "W1"),
    (([1.0, np.nan], [0.0, 0.0], [1.0, 2.0]), ValueError, "W1"),
    (([1.0, 2.0], [0.0, 0.0], [1.0, np.inf]), ValueError, "W2"),
    (([1.0, 2.0], [np.nan, 0.0], [1.0, 2.0]), ValueError, "b1"),
])
def test_net_bad_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        bigstep.ReLUNet1D(*args)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(width=0, seed=0), ValueError, "width"),
    (dict(width=-3, seed=0), ValueError, "width"),
    (dict(width=2.5, seed=0), TypeError, "width"),
    (dict(width=4, seed=0, inner="uniform"), ValueError, "inner"),
    (dict(width=4, seed=-1), ValueError, "seed"),
])
def test_init_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        bigstep.ReLUNet1D.init(**kwargs)


def test_with_theta_and_theta_bad_arguments():
    with pytest.raises(ValueError, match="theta"):
        _NET.with_theta(np.zeros(3))
    with pytest.raises(ValueError, match="theta"):
        _NET.with_theta(np.zeros(4), wrt="all")
    with pytest.raises(ValueError, match="wrt"):
        _NET.theta(wrt="inner")
    with pytest.raises(ValueError, match="wrt"):
        _NET.with_theta(np.zeros(4), wrt="w2")


@pytest.mark.parametrize("call, exc, match", [
    (lambda b: bigstep.dsm_risk(_NET, X, 0.8, 0.0, backend=b), ValueError, "sigma"),
    (lambda b: bigstep.dsm_risk(_NET, X, 0.8, -0.5, backend=b), ValueError, "sigma"),
    (lambda b: bigstep.dsm_risk(_NET, X, 0.8, np.nan, backend=b), ValueError, "sigma"),
    (lambda b: bigstep.dsm_risk(_NET, X, 0.0, 0.5, backend=b), ValueError, "mu"),
    (lambda b: bigstep.dsm_risk(_NET, [], 0.8, 0.5, backend=b), ValueError, "x"),
    (lambda b: bigstep.dsm_risk(_NET, [0.0, np.nan], 0.8, 0.5, backend=b), ValueError, "x"),
    (lambda b: bigstep.dsm_risk(_NET, X.reshape(10, 2), 0.8, 0.5, backend=b), ValueError, "x"),
    (lambda b: bigstep.dsm_risk("not a net", X, 0.8, 0.5, backend=b), TypeError, "net"),
    (lambda b: bigstep.dsm_risk_grad(_NET, X, 0.8, 0.5, wrt="w2", backend=b), ValueError, "wrt"),
    (lambda b: bigstep.dsm_risk_hessian(_NET, X, 0.8, 0.5, wrt="inner", backend=b), ValueError, "wrt"),
    (lambda b: bigstep.dsm_risk_hvp(_NET, X, 0.8, 0.5, np.ones(4), wrt="everything", backend=b), ValueError,
     "wrt"),
    (lambda b: bigstep.dsm_risk_hvp(_NET, X, 0.8, 0.5, np.ones(5), backend=b), ValueError, "v"),
    (lambda b: bigstep.dsm_risk_hvp(_NET, X, 0.8, 0.5, np.ones(4), wrt="all", backend=b), ValueError, "v"),
    (lambda b: bigstep.sharpness(_NET, X, 0.8, 0.5, method="power", backend=b), ValueError, "method"),
    (lambda b: bigstep.sharpness(_NET, X, 0.8, 0.5, wrt="x", backend=b), ValueError, "wrt"),
    (lambda b: bigstep.is_linearly_stable(_NET, X, 0.8, 0.5, lr=0.0, backend=b), ValueError, "lr"),
    (lambda b: bigstep.is_linearly_stable(_NET, X, 0.8, 0.5, lr=-1.0, backend=b), ValueError, "lr"),
    (lambda b: bigstep.sharpness(_NET, X, 0.8, -1.0, backend=b), ValueError, "sigma"),
])
def test_bad_arguments(rb, call, exc, match):
    with pytest.raises(exc, match=match):
        call(rb)


@pytest.mark.parametrize("value", ["gpu", "CPP", 3])
def test_unknown_backend(value):
    with pytest.raises((ValueError, TypeError), match="backend"):
        bigstep.dsm_risk(_NET, X, 0.8, 0.5, backend=value)


# ============================================================== DSMRisk, the prepared object


@pytest.mark.parametrize("wrt", ["outer_bias", "all"])
def test_prepared_risk_is_the_functions(rb, wrt):
    """DSMRisk gives what the one-call functions give (they are built on it), and its
    LinearOperator multiplies by the exact Hessian: scipy's eigsh on it finds sharpness."""
    net = bigstep.ReLUNet1D.init(12, seed=4, bias=0.3)
    mu, sigma = 0.8, 0.4
    ev = bigstep.DSMRisk(X, mu, sigma, wrt=wrt, backend=rb)
    assert ev.risk(net) == bigstep.dsm_risk(net, X, mu, sigma, backend=rb)
    r, g = bigstep.dsm_risk_grad(net, X, mu, sigma, wrt=wrt, backend=rb)
    np.testing.assert_array_equal(ev.grad(net), g)
    H = bigstep.dsm_risk_hessian(net, X, mu, sigma, wrt=wrt, backend=rb)
    np.testing.assert_array_equal(ev.hessian(net), H)
    v = np.linspace(-1.0, 1.0, H.shape[0])
    np.testing.assert_array_equal(ev.hvp(net, v), bigstep.dsm_risk_hvp(net, X, mu, sigma, v, wrt=wrt, backend=rb))
    assert ev.sharpness(net) == bigstep.sharpness(net, X, mu, sigma, wrt=wrt, backend=rb)
    assert ev.excess_risk(net) == pytest.approx(bigstep.excess_risk(net, X, mu, sigma, backend=rb), rel=1e-14)
    op = ev.operator(net)
    assert isinstance(op, LinearOperator) and op.shape == H.shape and ev.n_params(net) == H.shape[0]
    np.testing.assert_allclose(op @ v, H @ v, rtol=1e-12, atol=1e-12 * np.abs(H).max())
    top = float(eigsh(op, k=1, which="LA", tol=1e-12, return_eigenvectors=False)[0])
    assert top == pytest.approx(ev.sharpness(net), rel=1e-9)


def test_prepared_risk_builds_each_network_once(monkeypatch):
    """The O(n m) state is built once per network and reused by risk, gradient, HVPs,
    Hessian and sharpness; R_n(s*) once per object."""
    import importlib

    from bigstep import relu_risk

    opt_mod = importlib.import_module("bigstep.optimal_risk")

    builds, optimal = [], []
    real_exact, real_opt = relu_risk._Exact, opt_mod.optimal_risk
    monkeypatch.setattr(relu_risk, "_Exact", lambda *a: builds.append(1) or real_exact(*a))
    monkeypatch.setattr(opt_mod, "optimal_risk", lambda *a: optimal.append(1) or real_opt(*a))
    ev = bigstep.DSMRisk(X, 0.8, 0.4)
    a, b = bigstep.ReLUNet1D.init(6, seed=1), bigstep.ReLUNet1D.init(6, seed=2)
    for _ in range(3):
        ev.risk(a), ev.grad(a), ev.hvp(a, np.ones(12)), ev.hessian(a), ev.sharpness(a), ev.excess_risk(a)
    assert len(builds) == 1
    ev.risk(b), ev.excess_risk(b)
    assert len(builds) == 2 and len(optimal) == 1


def test_train_records_reuse_one_prepared_risk(monkeypatch):
    """train_sgd's records build one exact state per network and record (risk, excess risk
    and sharpness share it) and compute R_n(s*) once per run."""
    pytest.importorskip("pandas")
    import importlib

    from bigstep import relu_risk

    opt_mod = importlib.import_module("bigstep.optimal_risk")

    builds, optimal = [], []
    real_exact, real_opt = relu_risk._Exact, opt_mod.optimal_risk
    monkeypatch.setattr(relu_risk, "_Exact", lambda *a: builds.append(1) or real_exact(*a))
    monkeypatch.setattr(opt_mod, "optimal_risk", lambda *a: optimal.append(1) or real_opt(*a))
    res = bigstep.train_sgd(X, 0.8, 0.4, lr=[0.1, 0.01], seed=[0, 1], steps=20, width=8, record_every=5)
    records = len(res.history)
    assert records == 4 * 5 and len(builds) == records and len(optimal) == 1
    np.testing.assert_allclose(res.history["excess_risk"], res.history["risk"] - bigstep.optimal_risk(X, 0.8, 0.4),
                               rtol=1e-12)


def test_prepared_risk_returns_the_callers_array_type():
    torch = pytest.importorskip("torch")
    net = bigstep.ReLUNet1D.init(5, seed=0)
    ev = bigstep.DSMRisk(torch.from_numpy(X), 0.8, 0.4)
    g, H = ev.grad(net), ev.hessian(net)
    assert isinstance(g, torch.Tensor) and isinstance(H, torch.Tensor) and g.dtype == torch.float64
    np.testing.assert_array_equal(g.numpy(), bigstep.DSMRisk(X, 0.8, 0.4).grad(net))
    hv = bigstep.DSMRisk(X, 0.8, 0.4).hvp(net, torch.ones(10, dtype=torch.float64))
    assert isinstance(hv, torch.Tensor)
    assert isinstance(ev.risk(net), float)


def test_prepared_risk_bad_arguments():
    with pytest.raises(ValueError, match="wrt"):
        bigstep.DSMRisk(X, 0.8, 0.4, wrt="inner")
    with pytest.raises(ValueError, match="sigma"):
        bigstep.DSMRisk(X, 0.8, -0.4)
    ev = bigstep.DSMRisk(X, 0.8, 0.4)
    with pytest.raises(TypeError, match="net"):
        ev.risk("net")
    with pytest.raises(ValueError, match="v"):
        ev.hvp(_NET, np.ones(3))
    with pytest.raises(ValueError, match="method"):
        ev.sharpness(_NET, method="power")
