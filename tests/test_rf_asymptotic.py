"""rf.asymptotic_errors: the d, n, p -> infinity limit of random-features DSM (issue 19).

References, each derived independently of the code's Gaussian-equivalence / deterministic-
equivalent route (docs/rf_asymptotics.md, section 6):

- lam -> infinity: Z = R / lam + O(lam^-2), so the first order in 1 / lam needs only the means
  E R and E ||R||^2 (Stein's lemma and the variance of a sample mean).
- psi_p -> 0: p fixed while d, n -> infinity, so K -> E K = (alpha + beta) I and the first
  order in psi_p needs only E R and E ||R||^2 again.
- rho = "linear": the features are exactly Gaussian; with lam -> 0+ and p > d the fit is the
  least-squares linear regression of xi on y (n_noise = 1: ordinary least squares;
  n_noise = inf: M = sigma S^{-1}, S = mu^2 X^T X / n + Delta I, traces by quadrature of the
  Marchenko-Pastur density with scipy.integrate.quad); with p -> infinity and n < d the
  minimum-norm interpolator.
- finite d: the exact fits of rf.learning_curve (the same numbers as rf.fit and
  RFModel.train_loss / test_loss / score_error), averaged over seeds.

Tolerances.  Limits: the next order of each expansion, with its measured coefficient
(below 0.75 / lam and 0.75 psi_p relative for every activation here) times a safety factor
of 4 to 10, and the error must fall tenfold when lam (psi_p) moves tenfold.  Closed forms at
lam = 1e-9: the O(lam) remainder, 1e-6 relative.  Finite d = 100: 3 standard errors of the
seed mean (a false failure rate ~3e-3 per comparison for a normal mean; the seeds are fixed,
so the suite is deterministic) plus the finite-size bias BIAS_D100 = 3.5% relative, the
largest |relative gap| of train/test loss at d = 100 in benchmarks/results/
rf_asymptotics_check.json (2.8%, t = 0.5; 3.4% for the score error, whose 1 / Delta
amplifies it, hence 1.6 x the allowance there) with margin; that bias falls like 1/d there.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bigstep import rf
from bigstep.rf import _asymptotic

INF = math.inf
ACTS = ("relu", "relu_centered", "tanh", "erf", "linear")
BIAS_D100 = 0.035
Z_SE = 3.0


def _ab(rho, t):
    """(Delta, alpha = mu_1^2, u = alpha + beta = E rho^2 - (E rho)^2) of the activation by
    adaptive quadrature against the Gaussian density (independent of the module's closed forms)."""
    from scipy import integrate, special

    f = {"relu": lambda u: max(u, 0.0), "relu_centered": lambda u: max(u, 0.0) - 1 / math.sqrt(2 * math.pi),
         "tanh": math.tanh, "erf": special.erf, "linear": lambda u: u}[rho]

    def gauss(h):
        return sum(integrate.quad(lambda g: h(g) * math.exp(-g * g / 2) / math.sqrt(2 * math.pi), lo, hi,
                                  epsabs=1e-14, epsrel=1e-13)[0] for lo, hi in ((-np.inf, 0.0), (0.0, np.inf)))

    mean, mu1, m2 = gauss(f), gauss(lambda g: g * f(g)), gauss(lambda g: f(g) ** 2)
    return -math.expm1(-2 * t), mu1 * mu1, m2 - mean * mean


# --------------------------------------------------------------------------- API


def test_shapes_broadcasting_and_scalars():
    out = rf.asymptotic_errors(1.0, 0.5, 0.5, lam=1e-2, n_noise=1)
    assert isinstance(out, rf.AsymptoticErrors) and all(isinstance(v, float) for v in out)
    grid = rf.asymptotic_errors(np.array([0.5, 1.0, 2.0])[:, None], np.array([0.3, 0.9, 1.7, 5.0]), 0.3,
                                lam=1e-3, n_noise=INF)
    assert all(v.shape == (3, 4) and v.dtype == np.float64 for v in grid)
    for i, pn in enumerate((0.5, 1.0, 2.0)):
        for j, pp in enumerate((0.3, 0.9, 1.7, 5.0)):
            one = rf.asymptotic_errors(pn, pp, 0.3, lam=1e-3, n_noise=INF)
            assert one.test_loss == grid.test_loss[i, j] and one.train_loss == grid.train_loss[i, j]
    empty = rf.asymptotic_errors(np.ones(0), 1.0, 0.3, lam=1e-3, n_noise=1)
    assert empty.test_loss.shape == (0,)


@pytest.mark.parametrize("n_noise", [1, INF])
@pytest.mark.parametrize("rho", ACTS)
def test_score_error_identity_and_finite(rho, n_noise):
    t = 0.7
    delta = -math.expm1(-2 * t)
    out = rf.asymptotic_errors([0.3, 1.0, 4.0], [[0.2], [1.0], [7.0]], t, rho=rho, lam=1e-3, n_noise=n_noise)
    assert np.isfinite(out.test_loss).all() and np.isfinite(out.train_loss).all()
    np.testing.assert_allclose(out.test_loss, 1 - delta + delta * out.score_error, rtol=1e-13)
    assert (out.train_loss >= 0).all() and (out.train_loss <= 1 + 1e-12).all()


def test_relu_mean_drops_out():
    """The mean of the relu features is a rank-one spike p mu_0^2 >> lam: relu and relu_centered
    have the same limit (docs, assumption A4)."""
    a = rf.asymptotic_errors(1.0, [0.5, 3.0], 0.2, rho="relu", lam=1e-2, n_noise=1)
    b = rf.asymptotic_errors(1.0, [0.5, 3.0], 0.2, rho="relu_centered", lam=1e-2, n_noise=1)
    np.testing.assert_allclose(a.test_loss, b.test_loss, rtol=1e-12)


def test_bad_arguments():
    ok = dict(lam=1e-2, n_noise=1)
    with pytest.raises(ValueError, match="n_noise"):
        rf.asymptotic_errors(1.0, 1.0, 0.5, lam=1e-2, n_noise=4)
    with pytest.raises(ValueError, match="n_noise"):
        rf.asymptotic_errors(1.0, 1.0, 0.5, lam=1e-2, n_noise=0)
    with pytest.raises(TypeError, match="n_noise"):
        rf.asymptotic_errors(1.0, 1.0, 0.5, lam=1e-2, n_noise="inf")
    with pytest.raises(TypeError, match="n_noise"):
        rf.asymptotic_errors(1.0, 1.0, 0.5, lam=1e-2, n_noise=True)
    with pytest.raises(ValueError, match="psi_n"):
        rf.asymptotic_errors(-1.0, 1.0, 0.5, **ok)
    with pytest.raises(ValueError, match="psi_p"):
        rf.asymptotic_errors(1.0, [1.0, np.nan], 0.5, **ok)
    with pytest.raises(TypeError, match="psi_p"):
        rf.asymptotic_errors(1.0, "a", 0.5, **ok)
    with pytest.raises(ValueError, match="broadcast"):
        rf.asymptotic_errors([1.0, 2.0], [1.0, 2.0, 3.0], 0.5, **ok)
    with pytest.raises(ValueError, match="t must"):
        rf.asymptotic_errors(1.0, 1.0, 0.0, **ok)
    with pytest.raises(ValueError, match="lam"):
        rf.asymptotic_errors(1.0, 1.0, 0.5, lam=-1.0, n_noise=1)
    with pytest.raises(ValueError, match="lam must be positive for rho='linear'"):
        rf.asymptotic_errors(1.0, 1.0, 0.5, rho="linear", lam=0.0, n_noise=1)
    with pytest.raises(ValueError, match="rho"):
        rf.asymptotic_errors(1.0, 1.0, 0.5, rho="gelu", **ok)
    with pytest.raises(TypeError):
        rf.asymptotic_errors(1.0, 1.0, 0.5, lam=1e-2)  # n_noise is required


def test_ridgeless_limits():
    """lam = 0: n_noise = 1 interpolates (train 0) for p > n and diverges at p = n; n_noise = inf
    stays finite (the implicit ridge v > 0 of the noise-averaged Gram) and continuous in lam."""
    one = rf.asymptotic_errors(1.0, [0.5, 1.0, 2.0], 0.5, lam=0.0, n_noise=1)
    assert one.train_loss[2] == 0.0 and one.test_loss[1] == INF and np.isfinite(one.test_loss[[0, 2]]).all()
    near = rf.asymptotic_errors(1.0, [0.5, 2.0], 0.5, lam=1e-10, n_noise=1)
    np.testing.assert_allclose(near.test_loss, one.test_loss[[0, 2]], rtol=1e-7)
    avg = rf.asymptotic_errors(1.0, [0.5, 1.0, 2.0], 0.5, lam=0.0, n_noise=INF)
    near = rf.asymptotic_errors(1.0, [0.5, 1.0, 2.0], 0.5, lam=1e-10, n_noise=INF)
    assert np.isfinite(avg.test_loss).all()
    np.testing.assert_allclose(near.test_loss, avg.test_loss, rtol=1e-7)


# --------------------------------------------------------------------------- known limits


@pytest.mark.parametrize("n_noise", [1, INF])
@pytest.mark.parametrize("rho", ACTS)
def test_large_lam(rho, n_noise):
    """lam -> inf: test = 1 - 2 Delta alpha psi_p / lam, train = 1 - (Delta alpha + [n_noise = 1]
    u / psi_n) psi_p / lam, up to O(lam^-2) (module docstring)."""
    t, pn, pp = 0.3, 1.5, 0.7
    delta, alpha, u = _ab(rho, t)
    test_c = 2 * delta * alpha * pp
    train_c = (delta * alpha + (u / pn if n_noise == 1 else 0.0)) * pp
    errs = []
    for lam in (1e3, 1e4):
        out = rf.asymptotic_errors(pn, pp, t, rho=rho, lam=lam, n_noise=n_noise)
        e = (lam * (1 - out.test_loss) / test_c - 1, lam * (1 - out.train_loss) / train_c - 1)
        assert max(abs(v) for v in e) < 5.0 / lam, (lam, e)
        errs.append(e)
    for lo, hi in zip(*errs):  # first-order convergence: tenfold lam, tenfold smaller error
        assert abs(hi) < 0.15 * abs(lo)


@pytest.mark.parametrize("n_noise", [1, INF])
@pytest.mark.parametrize("rho", ACTS)
def test_few_features(rho, n_noise):
    """psi_p -> 0 (p fixed, d, n -> inf), u = alpha + beta:
    test = 1 - psi_p [Delta alpha (u + 2 lam) / (u + lam)^2 - [n_noise = 1] u^2 / (psi_n (u + lam)^2)],
    train = 1 - psi_p (Delta alpha + [n_noise = 1] u / psi_n) / (u + lam), up to O(psi_p^2)."""
    t, pn, lam = 0.3, 1.5, 1e-2
    delta, alpha, u = _ab(rho, t)
    extra = n_noise == 1
    test_s = delta * alpha * (u + 2 * lam) / (u + lam) ** 2 - extra * u * u / (pn * (u + lam) ** 2)
    train_s = (delta * alpha + extra * u / pn) / (u + lam)
    errs = []
    for pp in (1e-3, 1e-4):
        out = rf.asymptotic_errors(pn, pp, t, rho=rho, lam=lam, n_noise=n_noise)
        e = ((1 - out.test_loss) / pp / test_s - 1, (1 - out.train_loss) / pp / train_s - 1)
        assert max(abs(v) for v in e) < 5.0 * pp, (pp, e)
        errs.append(e)
    for lo, hi in zip(*errs):
        assert abs(hi) < 0.15 * abs(lo)


@pytest.mark.parametrize("pn,pp", [(2.0, 1.5), (3.0, 5.0), (1.5, 20.0)])
def test_linear_least_squares(pn, pp):
    """Linear features, n_noise = 1, lam -> 0+, p > d, n > d: ordinary least squares of
    xi = sigma y + mu zeta on y, whatever W: test = mu^2 psi_n / (psi_n - 1), train = mu^2 (1 - 1/psi_n)."""
    t = 0.4
    mu2 = math.exp(-2 * t)
    out = rf.asymptotic_errors(pn, pp, t, rho="linear", lam=1e-9, n_noise=1)
    assert out.test_loss == pytest.approx(mu2 * pn / (pn - 1), rel=1e-6)
    assert out.train_loss == pytest.approx(mu2 * (1 - 1 / pn), rel=1e-6)


def _mp_quad(f, ratio):
    """E f(X) for X of Marchenko-Pastur law with this ratio and mean 1, by quadrature."""
    from scipy import integrate

    lo, hi = (1 - math.sqrt(ratio)) ** 2, (1 + math.sqrt(ratio)) ** 2
    dens = lambda x: math.sqrt(max(0.0, (hi - x) * (x - lo))) / (2 * math.pi * ratio * x)  # noqa: E731
    val = integrate.quad(lambda x: f(x) * dens(x), lo, hi, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
    return val + (1 - 1 / ratio) * f(0.0) if ratio > 1 else val


@pytest.mark.parametrize("pn,pp", [(0.5, 1.5), (2.0, 3.0), (1.0, 1.2)])
def test_linear_noise_averaged_regression(pn, pp):
    """Linear features, n_noise = inf, lam -> 0+, p > d: the fit is M = sigma S^{-1},
    S = mu^2 X^T X / n + Delta I, so test = 1 - 2 Delta tr S^{-1} / d + Delta tr S^{-2} / d and
    train = 1 - Delta tr S^{-1} / d, X^T X / n of Marchenko-Pastur law with ratio 1 / psi_n."""
    t = 0.4
    mu2 = math.exp(-2 * t)
    delta = 1 - mu2
    t1 = _mp_quad(lambda x: 1 / (mu2 * x + delta), 1 / pn)
    t2 = _mp_quad(lambda x: 1 / (mu2 * x + delta) ** 2, 1 / pn)
    out = rf.asymptotic_errors(pn, pp, t, rho="linear", lam=1e-10, n_noise=INF)
    assert out.test_loss == pytest.approx(1 - 2 * delta * t1 + delta * t2, rel=1e-7)
    assert out.train_loss == pytest.approx(1 - delta * t1, rel=1e-7)


@pytest.mark.parametrize("pn", [0.3, 0.7])
def test_linear_min_norm_interpolation(pn):
    """Linear features, n_noise = 1, n < d, p -> inf, lam -> 0+: the minimum-norm interpolator
    of xi on y: test = mu^2 + Delta (1 - psi_n) + mu^2 psi_n / (1 - psi_n), train = 0."""
    t = 0.4
    mu2 = math.exp(-2 * t)
    want = mu2 + (1 - mu2) * (1 - pn) + mu2 * pn / (1 - pn)
    for pp in (1e3, 1e4):
        out = rf.asymptotic_errors(pn, pp, t, rho="linear", lam=1e-8, n_noise=1)
        assert out.test_loss == pytest.approx(want, rel=1.0 / pp) and out.train_loss < 1e-9


# --------------------------------------------------------------------------- finite d


_FITS = {}


def _finite(d, pn, pps, t, lam, rho, seeds):
    """rf.learning_curve's exact fits (cached: two tests share the relu ones)."""
    pytest.importorskip("pandas")  # learning_curve returns a DataFrame
    key = (d, pn, tuple(pps), t, lam, rho, tuple(seeds))
    if key not in _FITS:
        fits = rf.learning_curve(d, pn, list(pps), t, n_noise=[1, INF], rho=rho, lam=lam, seed=list(seeds))
        _FITS[key] = fits.rename(columns={"n_noise": "m"})  # the column is m or, after the rename, n_noise
    return _FITS[key]


@pytest.mark.parametrize("rho,pps", [("relu", (0.5, 2.0)), ("tanh", (1.5,))])
def test_matches_exact_finite_d(rho, pps):
    """d = 100, psi_n = 1, 8 seeds: the seed means of the exact fits are within
    3 standard errors + BIAS_D100 of the limit, for train loss, test loss and score error."""
    d, pn, t, lam = 100, 1.0, 0.5, 1e-2
    df = _finite(d, pn, pps, t, lam, rho, range(8))
    for m in (1, INF):
        lim = rf.asymptotic_errors(pn, np.array(pps), t, rho=rho, lam=lam, n_noise=m)
        for j, pp in enumerate(pps):
            sub = df[(df.m == m) & (df.p == round(pp * d))]
            assert len(sub) == 8
            for q in ("train_loss", "test_loss", "score_error"):
                v = sub[q].to_numpy()
                mean, se = v.mean(), v.std(ddof=1) / math.sqrt(v.size)
                want = float(getattr(lim, q)[j])
                bias = BIAS_D100 * abs(want) * (1.6 if q == "score_error" else 1.0)  # score = (test - mu^2) / Delta
                assert abs(mean - want) <= Z_SE * se + bias, (rho, m, pp, q, mean, se, want)


def test_finite_d_distinguishes_the_two_limits():
    """The finite-d check can fail: at d = 100 the n_noise = 1 fits are far outside the
    tolerance of the n_noise = inf limit, and the other way round."""
    d, pn, t, lam = 100, 1.0, 0.5, 1e-2
    df = _finite(d, pn, (0.5, 2.0), t, lam, "relu", range(8))
    df = df[df.p == 2 * d]
    for fits, limit in ((1, INF), (INF, 1)):
        want = rf.asymptotic_errors(pn, 2.0, t, lam=lam, n_noise=limit).test_loss
        v = df[df.m == fits].test_loss.to_numpy()
        assert abs(v.mean() - want) > Z_SE * v.std(ddof=1) / math.sqrt(v.size) + BIAS_D100 * want


def test_docstring_example():
    import doctest

    result = doctest.testmod(_asymptotic, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------- rf-phase verdicts


def _synthetic(center=1.0, test_inf=2.0, gap_inf=0.02):
    """Limits on a grid built to pass or fail each claim: log(gap) = 5 Phi(log(R / center) / 0.3)
    + const, R = psi_p / psi_n (its log-slope peaks at R = center), test constant per n_noise."""
    from scipy.special import ndtr

    psi = np.geomspace(0.1, 10, 41)
    ratio = psi[None, :] / psi[:, None]
    shape = np.exp(5 * ndtr(np.log(ratio / center) / 0.3))
    out = {}
    for m, test, g in ((1, 3.0, 0.01), (INF, test_inf, gap_inf)):
        gap = g * shape
        out[m] = rf.AsymptoticErrors(test - gap, np.full_like(gap, test), np.zeros_like(gap))
    return psi, out


def test_rf_phase_verdicts():
    pytest.importorskip("matplotlib")
    from bigstep.reproduce import rf_phase

    lines, claims = rf_phase._judge(*_synthetic())
    assert all(claims.values()) and lines[0] == "every claim holds on the computed limit"
    mz = rf_phase.measure(*_synthetic())
    for m in (1, INF):
        r = mz["cross"][m][np.isfinite(mz["cross"][m])]
        assert r.size > 0 and np.allclose(r, 1.0, rtol=0.1)  # the steepest log-slope sits at p = n
    lines, claims = rf_phase._judge(*_synthetic(center=3.0))
    assert not claims["crossover at p = n"] and claims["n_noise helps when p < n"]
    assert sum("NOT within" in line for line in lines) == 2
    lines, claims = rf_phase._judge(*_synthetic(test_inf=4.0))
    assert not claims["n_noise helps when p < n"] and claims["crossover at p = n"]
    lines, claims = rf_phase._judge(*_synthetic(gap_inf=0.005))
    assert not claims["n_noise increases memorization when p > n"]
    assert any("FAILS" in line and "nowhere on the grid" in line for line in lines)
    assert lines[0].startswith("claims that do NOT hold") and "increases memorization" in lines[0]


def test_rf_phase_verdicts_on_the_real_limit():
    """On the computed limit at the reproduction's settings: claims 1 and 2 hold and claim 3
    fails just above p = n (n_noise = 1's interpolation peak) and holds beyond ~5 n."""
    pytest.importorskip("matplotlib")
    from bigstep.reproduce import rf_phase

    psi = np.geomspace(0.1, 10, 60)
    lines, claims = rf_phase._judge(psi, rf_phase.limits(psi))
    assert claims == {"crossover at p = n": True, "n_noise helps when p < n": True,
                      "n_noise increases memorization when p > n": False}
    mz = rf_phase.measure(psi, rf_phase.limits(psi))
    assert 3.0 < mz["memo_from"] < 8.0
