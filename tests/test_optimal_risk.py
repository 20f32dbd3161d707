"""R_n(s*), the risk of the empirical optimal score (bigstep.optimal_risk), against
independent references:

- mpmath at 40-90 digits of the direct definition
  (1/n) sum_i E_{Y ~ N(mu x_i, sigma^2)}[(s*(Y) + (Y - mu x_i)/sigma^2)^2]
  (the per-point form with its cancellation, affordable at that precision), stored for
  20 standard normal points (recomputing them takes a minute; ``mp_optimal_risk`` below
  is the code that produced them) and recomputed on the fly for small cases;
- scipy.integrate.quad of the same direct form in float64 where its cancellation is mild;
- the two-point closed form R = (mu v / sigma^2)^2 E_{Y ~ N(mu v, sigma^2)}[sech^2(mu v Y / sigma^2)];
- exact cases (one point: R = 0), invariances, and the excess-risk identity
  R_n(theta) - R_n(s*) = (1/n) sum_i E_i[(s_theta - s*)^2] with bigstep.dsm_risk.

Tolerance: RTOL = 1e-10, the accuracy optimal_risk documents (measured: <= 2e-15 against
the stored references; the 1e-10 also covers the conditioning of R_n(s*) with respect to
the rounding of mu x_i, ~ mu^2 Delta |x| eps / (4 sigma^2) relative, 2e-13 in the tiny-risk
case below).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

import bigstep
from bigstep.optimal_risk import _mean_squared_gap, optimal_risk

RTOL = 1e-10

# np.random.default_rng(2024).standard_normal(20), written out so the references stay valid.
X20 = np.array([
    1.0288568739519013, 1.6419200406711503, 1.1467195295966137, -0.9731795154745656, -1.3928000963768683,
    0.06719635507109722, 0.8613509179404263, 0.509186798845688, 1.8102855742952833, 0.7508434731539183,
    0.6397595539314624, -0.7313225212292476, -1.1077170351272676, 1.4844055856837017, 0.048912403069534136,
    0.8115201169815576, -1.3764228399745688, -0.43637073584081926, -1.2910916333479945, -0.7756786842437912])

# mp_optimal_risk(X20, 1.0, sigma) at 40 digits (mpmath error estimates below 1e-42 relative).
MP_X20 = {
    1e-3: "2.774403437493414277825104e-9",
    1e-2: "1158.552035561534043779001",
    0.1: "72.12674506166511365576004",
    1.0: "0.5002603984534552433030192",
    10.0: "0.0001079381302762446317884449",
}
MP_X20_MU08_S005 = "242.4601191467673567129976"          # mu = 0.8, sigma = 0.05
X_EQUI = np.array([0.03 * k for k in range(20)])         # Delta = 0.03
MP_EQUI_S1E3 = "4.925154481268921804862586e-42"          # mu = 1, sigma = 1e-3, 60 digits
X_DUP = np.array([-1.25, 0.0, 0.0, 0.0, 0.4, 0.4, 2.0])
MP_DUP = {0.03: "0.000086191080140504978985213", 0.5: "2.287788859109121546353065"}  # mu = 0.9, 50 digits


def mp_optimal_risk(x, mu, sigma, dps=40):
    """The direct definition at `dps` digits, by mpmath tanh-sinh quadrature split at the
    centres mu x_i and the midpoints between them, tails cut at 60 sigma.  Returns
    (value, mpmath's error estimate).  Inputs are converted exactly (mu x_i is formed in
    mpmath, not rounded to float64)."""
    with mpmath.workdps(dps):
        c = sorted(mpmath.mpf(float(mu)) * mpmath.mpf(float(v)) for v in x)
        n = len(c)
        s = mpmath.mpf(float(sigma))
        s2 = s * s
        norm = 1 / (n * mpmath.sqrt(2 * mpmath.pi) * s)

        def f(y):
            e = [mpmath.exp(-(y - ci) ** 2 / (2 * s2)) for ci in c]
            tot = mpmath.fsum(e)
            if tot == 0:
                return mpmath.mpf(0)
            score = (mpmath.fsum(ei * ci for ei, ci in zip(e, c)) / tot - y) / s2
            return norm * mpmath.fsum(ei * (score + (y - ci) / s2) ** 2 for ei, ci in zip(e, c))

        pts = sorted(set([c[0] - 60 * s, c[-1] + 60 * s] + c + [(a + b) / 2 for a, b in zip(c[:-1], c[1:])]))
        val, err = mpmath.quad(f, pts, error=True, maxdegree=10)
        return val, err


def rel_err(got, ref) -> float:
    ref = mpmath.mpf(ref)
    return float(abs(mpmath.mpf(got) - ref) / abs(ref))


def scipy_direct(x, mu, sigma):
    """(1/n) sum_i E_i[(s*(Y) + (Y - mu x_i)/sigma^2)^2] in float64 with scipy quad (points at
    the centres and midpoints, epsabs=0), s* from a plain log-sum-exp."""
    x = np.asarray(x, dtype=np.float64)
    c = np.sort(mu * x)

    def s_star(y):
        logits = -((y - c) ** 2) / (2 * sigma**2)
        w = np.exp(logits - logits.max())
        return ((w @ c) / w.sum() - y) / sigma**2

    pts = np.unique(np.concatenate([c, (c[1:] + c[:-1]) / 2]))
    total = 0.0
    for ci in mu * x:
        f = lambda y, ci=ci: (s_star(y) + (y - ci) / sigma**2) ** 2 * math.exp(-0.5 * ((y - ci) / sigma) ** 2)
        lo, hi = ci - 40 * sigma, ci + 40 * sigma
        inner = [p for p in pts if lo < p < hi]
        val, _ = integrate.quad(f, lo, hi, points=inner or None, limit=1000, epsabs=0, epsrel=1e-13)
        total += val / (math.sqrt(2 * math.pi) * sigma)
    return total / x.size


def two_point_closed_form(v, mu, sigma):
    """Data {-v, +v}: R = (mu v / sigma^2)^2 E_{Y ~ N(mu v, sigma^2)}[sech^2(a Y)], a = mu v / sigma^2,
    by scipy quad of the log-form integrand (no underflow), split at the peak y = 0."""
    a = mu * v / sigma**2

    def f(y):
        t = 2 * a * abs(y)
        return math.exp(math.log(4) - t - 2 * math.log1p(math.exp(-t)) - (y - mu * v) ** 2 / (2 * sigma**2)
                        - math.log(math.sqrt(2 * math.pi) * sigma))

    lo, hi = min(0.0, mu * v) - 40 * sigma, max(0.0, mu * v) + 40 * sigma
    pts = sorted({lo, 0.0, mu * v, hi})
    val = sum(integrate.quad(f, p, q, limit=1000, epsabs=0, epsrel=1e-13)[0] for p, q in zip(pts[:-1], pts[1:]))
    return a * a * val


# ------------------------------------------------------------------ references


@pytest.mark.parametrize("sigma", sorted(MP_X20))
def test_n20_against_stored_mpmath(sigma):
    got = optimal_risk(X20, 1.0, sigma)
    assert rel_err(got, MP_X20[sigma]) <= RTOL, (sigma, got, MP_X20[sigma])


def test_n20_mu_not_one_against_stored_mpmath():
    assert rel_err(optimal_risk(X20, 0.8, 0.05), MP_X20_MU08_S005) <= RTOL


def test_stored_reference_recomputes():
    """The stored numbers come from mp_optimal_risk (one of them recomputed here)."""
    val, err = mp_optimal_risk(X20, 1.0, 10.0, dps=30)
    assert float(err) < 1e-25 * float(val)
    assert rel_err(val, MP_X20[10.0]) < 1e-20


def test_tiny_risk_is_computed_directly():
    """R_n(s*) ~ 5e-42 at sigma = 1e-3 (Delta = 30 sigma), while the terms of the
    definition are ~1/sigma^4 = 1e12: it must come out to full relative accuracy."""
    got = optimal_risk(X_EQUI, 1.0, 1e-3)
    assert 1e-42 < got < 1e-41
    assert rel_err(got, MP_EQUI_S1E3) <= RTOL


@pytest.mark.parametrize("x, mu, sigma", [
    ([-0.3, 0.1, 0.15, 1.2], 0.7, 1e-3),   # R ~ 3e-60
    ([-0.3, 0.1, 0.15, 1.2], 0.7, 1e-2),
    ([0.0, 0.5, 0.5, 2.0], 1.3, 0.2),
])
def test_small_cases_against_mpmath(x, mu, sigma):
    ref, err = mp_optimal_risk(x, mu, sigma, dps=90)
    assert float(err) < 1e-30 * float(ref)
    assert rel_err(optimal_risk(x, mu, sigma), ref) <= RTOL


@pytest.mark.parametrize("sigma", sorted(MP_DUP))
def test_duplicates_against_stored_mpmath(sigma):
    assert rel_err(optimal_risk(X_DUP, 0.9, sigma), MP_DUP[sigma]) <= RTOL


@pytest.mark.parametrize("sigma", [0.1, 1.0, 10.0])
def test_n20_against_scipy_quad(sigma):
    assert optimal_risk(X20, 1.0, sigma) == pytest.approx(scipy_direct(X20, 1.0, sigma), rel=1e-9)


@pytest.mark.parametrize("sigma", [0.1, 0.7])
def test_duplicates_against_scipy_quad(sigma):
    """The direct form sums over every point (duplicates included, no merging)."""
    assert optimal_risk(X_DUP, 0.6, sigma) == pytest.approx(scipy_direct(X_DUP, 0.6, sigma), rel=1e-9)


@pytest.mark.parametrize("v, mu, sigma", [(0.25, 1.0, 0.01), (0.25, 1.0, 0.02), (0.3, 0.9, 0.05),
                                          (1.0, 1.0, 1.0), (1.0, 0.5, 3.0), (2.0, 0.8, 10.0)])
def test_two_points_closed_form(v, mu, sigma):
    ref = two_point_closed_form(v, mu, sigma)
    assert ref > 0
    assert optimal_risk([-v, v], mu, sigma) == pytest.approx(ref, rel=RTOL)


# ------------------------------------------------------------------ exact values, invariances


@pytest.mark.parametrize("x", [[0.3], [2.0, 2.0, 2.0], np.zeros(50)])
@pytest.mark.parametrize("sigma", [1e-3, 1.0, 50.0])
def test_one_distinct_point_gives_zero(x, sigma):
    """s* is then exactly the Gaussian score (y - mu x_1)/sigma^2 up to sign: R_n(s*) = 0."""
    assert optimal_risk(x, 0.8, sigma) == 0.0


def test_underflow_gives_zero():
    """Two points 2000 sigma apart: R_n(s*) ~ exp(-500000), below the float64 range."""
    assert optimal_risk([-1.0, 1.0], 1.0, 1e-3) == 0.0


def test_decoupled_clusters_large_n():
    """Two copies of a 300-point sample, 1000 apart (1e6 sigma): they do not interact, so
    R_n(s*) of the union equals that of one copy.  Exercises the data windows of the
    integrand at n = 600 (dyadic data, so the shift is exact)."""
    x = np.round(np.random.default_rng(7).standard_normal(300) * 1024) / 1024
    one = optimal_risk(x, 1.0, 1e-3)
    both = optimal_risk(np.concatenate([x, x + 1024.0]), 1.0, 1e-3)
    assert both == pytest.approx(one, rel=1e-12)


@settings(max_examples=25)
@given(st.lists(st.integers(-4096, 4096), min_size=2, max_size=12),
       st.sampled_from([0.02, 0.1, 0.5, 2.0]), st.integers(-3, 3), st.integers(0, 10**6))
def test_invariances(ints, sigma, k, seed):
    """Dyadic data (exact under the transformations below):
    permutation, translation x -> x + 1, R(x, mu, sigma) = R(mu x, 1, sigma) for mu = 2^k,
    R(2^k x, 1, 2^k sigma) = R(x, 1, sigma) / 4^k."""
    x = np.array(ints, dtype=np.float64) / 1024
    base = optimal_risk(x, 1.0, sigma)
    perm = np.random.default_rng(seed).permutation(x)
    assert optimal_risk(perm, 1.0, sigma) == base
    if base == 0.0:
        return
    assert optimal_risk(x + 1.0, 1.0, sigma) == pytest.approx(base, rel=1e-11)
    mu = 2.0**k
    assert optimal_risk(x, mu, sigma) == pytest.approx(optimal_risk(mu * x, 1.0, sigma), rel=1e-11)
    assert optimal_risk(mu * x, 1.0, mu * sigma) == pytest.approx(base / mu**2, rel=1e-11)


def test_decreases_to_zero_with_sigma_for_separated_data():
    """Corollary 3: R_n(s*) <= 4 mu^2 (x_n - x_1)^2 exp(-mu^2 Delta^2 / (32 sigma^2)) / sigma^4."""
    x = np.arange(8.0)
    values = [optimal_risk(x, 1.0, s) for s in (0.3, 0.2, 0.1, 0.05)]
    assert all(a > b for a, b in zip(values, values[1:]))
    for s, v in zip((0.3, 0.2, 0.1, 0.05), values):
        assert v <= 4 * 49 / s**4 * math.exp(-1 / (32 * s**2))


# ------------------------------------------------------------------ excess-risk identity


@pytest.mark.parametrize("inner", ["sign", "gaussian"])
@pytest.mark.parametrize("sigma", [0.05, 0.3, 1.0])
def test_excess_risk_identity(inner, sigma):
    """dsm_risk(net) - R_n(s*) = (1/n) sum_i E_i[(s_theta - s*)^2] (the right side computed
    directly by quadrature split at the kinks)."""
    x = X20[:12]
    for seed in range(2):
        bias = bigstep.gaussian_noise(100 + seed, 30, stream=0)
        net = bigstep.ReLUNet1D.init(30, seed, inner=inner, bias=bias)
        gap = _mean_squared_gap(net, x, 0.9, sigma, net.kinks)
        excess = bigstep.dsm_risk(net, x, 0.9, sigma) - optimal_risk(x, 0.9, sigma)
        assert excess == pytest.approx(gap, rel=1e-9)


def test_mean_squared_gap_of_s_star_is_zero():
    x = X20[:6]
    s_star = lambda y: bigstep.optimal_score(np.atleast_1d(y), x, 0.8, 0.2)  # noqa: E731
    assert _mean_squared_gap(s_star, x, 0.8, 0.2) < 1e-20


# ------------------------------------------------------------------ arguments


@pytest.mark.parametrize("x, match", [
    ([], "x must contain at least one"),
    (np.zeros((3, 2)), "x must have 1 dimension"),
    ([0.0, np.nan], "x must be finite"),
    ([0.0, np.inf], "x must be finite"),
])
def test_bad_data(x, match):
    with pytest.raises(ValueError, match=match):
        optimal_risk(x, 1.0, 0.5)


@pytest.mark.parametrize("name", ["mu", "sigma"])
@pytest.mark.parametrize("value", [0.0, -1.0, np.nan, np.inf])
def test_bad_noise_level(name, value):
    args = {"mu": 1.0, "sigma": 0.5, name: value}
    with pytest.raises(ValueError, match=f"{name} must be a positive finite number"):
        optimal_risk([0.0, 1.0], args["mu"], args["sigma"])


@pytest.mark.parametrize("name", ["mu", "sigma"])
def test_noise_level_types_and_shapes(name):
    for value, exc, match in [(True, TypeError, f"{name} must be a number"),
                              ("0.5", TypeError, f"{name} must be numeric"),
                              (np.array([0.5, 0.6]), ValueError, f"{name} must be a scalar")]:
        args = {"mu": 1.0, "sigma": 0.5, name: value}
        with pytest.raises(exc, match=match):
            optimal_risk([0.0, 1.0], args["mu"], args["sigma"])


def test_accepts_integer_and_float32_inputs():
    ref = optimal_risk([0.0, 1.0, 3.0], 1.0, 0.5)
    assert optimal_risk([0, 1, 3], 1, 0.5) == ref
    assert optimal_risk(np.array([0, 1, 3], dtype=np.float32), np.float32(1.0), np.float32(0.5)) == ref
