"""bigstep.theory: the weight pi, TV_pi of networks and of s*, and the bounds of Sections 5-6.

References:
- pi(y) by scipy quad of its definition E_xi[min(pi_+(y - xi), pi_-(y - xi))], with pi_+-
  computed straight from P(mu U < z)^2 E[z - mu U | mu U < z] (no closed form);
- TV_pi of a network by an independent grouping of the kinks (a dict), with pi from
  tv_weight (tested against the definition above);
- TV_pi(s*) by scipy quad of |s*''| pi with s*'' from a plain numpy third central moment,
  split at the midpoints, at graded points around them and at the zeros of s*'' (brentq);
- the inequalities themselves: Theorem 4 against tv_derivative(None, ...), Proposition 6 on
  random networks with bigstep.sharpness / dsm_risk, Proposition 10 (the key step of
  Proposition 6) with the Gauss-Newton matrix assembled here by quadrature, and
  Proposition 7 on a ReLU network that interpolates s* (low risk).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import integrate, optimize

import bigstep
from bigstep import theory
from bigstep.optimal_risk import optimal_risk

# np.random.default_rng(2024).standard_normal(20) (as in test_optimal_risk.py); Delta = 0.01638
X20 = np.array([
    1.0288568739519013, 1.6419200406711503, 1.1467195295966137, -0.9731795154745656, -1.3928000963768683,
    0.06719635507109722, 0.8613509179404263, 0.509186798845688, 1.8102855742952833, 0.7508434731539183,
    0.6397595539314624, -0.7313225212292476, -1.1077170351272676, 1.4844055856837017, 0.048912403069534136,
    0.8115201169815576, -1.3764228399745688, -0.43637073584081926, -1.2910916333479945, -0.7756786842437912])
X_GRID = np.arange(12.0)  # Delta = 1, n = 12


# ------------------------------------------------------------------ references


def pi_pm(z, c):
    """(pi_-(z), pi_+(z)) from the definition, U uniform on the centres c = mu x (duplicates counted)."""
    n = c.size
    below, above = c < z, c > z
    pm = (below.sum() / n) ** 2 * ((z - c[below]).mean() if below.any() else 0.0)
    pp = (above.sum() / n) ** 2 * ((c[above] - z).mean() if above.any() else 0.0)
    return pm, pp


def pi_ref(y, x, mu, sigma):
    """pi(y) by scipy quad over xi of min(pi_+, pi_-)(y - xi) N(xi; 0, sigma^2), split where
    y - xi crosses a centre, xi limited to 40 sigma."""
    c = mu * np.asarray(x, dtype=np.float64)
    if not (c.min() <= y <= c.max()):
        return 0.0
    lo, hi = max(y - c.max(), -40 * sigma), min(y - c.min(), 40 * sigma)
    if hi <= lo:
        return 0.0
    def f(xi):
        return min(pi_pm(y - xi, c)) * math.exp(-0.5 * (xi / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)

    pts = sorted({p for p in y - c if lo < p < hi})
    return integrate.quad(f, lo, hi, points=pts or None, limit=1000, epsabs=0, epsrel=1e-12)[0]


def d2_ref(y, x, mu, sigma):
    """s*''(y) = mu^3 E[(W - EW)^3] / sigma^6 with plain softmax weights (numpy)."""
    x = np.asarray(x, dtype=np.float64)
    logits = -0.5 * ((y - mu * x) / sigma) ** 2
    w = np.exp(logits - logits.max())
    w /= w.sum()
    m = w @ x
    return mu**3 / sigma**6 * (w @ (x - m) ** 3)


def tv_star_ref(x, mu, sigma):
    """TV_pi(s*) by scipy quad, split at the centres, the midpoints, graded points around
    the midpoints of gaps wider than sigma, and the zeros of s*'' (brentq)."""
    c = np.sort(mu * np.asarray(x, dtype=np.float64))
    pts = list(c)
    for a, b in zip(c[:-1], c[1:]):
        mid, g = 0.5 * (a + b), b - a
        if g == 0:
            continue
        s = min(sigma, sigma**2 / g)
        pts += [mid] + [mid + sg * s * 2.0**j for j in range(-2, 60) for sg in (-1, 1) if s * 2.0**j < g / 2]
    pts = np.unique(pts)
    d2 = lambda y: d2_ref(y, x, mu, sigma)  # noqa: E731
    zeros = []
    for a, b in zip(pts[:-1], pts[1:]):
        yy = np.linspace(a, b, 17)
        v = np.array([d2(y) for y in yy])
        for i in np.nonzero(np.sign(v[:-1]) * np.sign(v[1:]) < 0)[0]:
            zeros.append(optimize.brentq(d2, yy[i], yy[i + 1], xtol=1e-300, rtol=1e-15))
    pts = np.unique(np.concatenate([pts, zeros]))
    f = lambda y: abs(d2(y)) * theory.tv_weight(y, x, mu, sigma)  # noqa: E731
    return sum(integrate.quad(f, a, b, limit=200, epsabs=0, epsrel=1e-12)[0] for a, b in zip(pts[:-1], pts[1:]))


def tv_net_ref(net, x, mu, sigma):
    """(1/m) sum over distinct kinks of |sum |w1| w2| pi(kink), grouped with a dict."""
    groups = {}
    for w1, w2, b in zip(net.W1, net.W2, net.b1):
        if w1 == 0:
            continue
        tau = float(-b / w1)
        groups[tau] = groups.get(tau, 0.0) + abs(w1) * w2
    return sum(abs(v) * theory.tv_weight(tau, x, mu, sigma) for tau, v in groups.items()) / net.width


def gauss_newton(net, x, mu, sigma, nodes=16):
    """(1/n) sum_i E_i[grad s grad s^T] (theta = (w2, b)) by composite Gauss-Legendre split at
    the kinks, over mu x_i +- 12 sigma."""
    c = mu * np.asarray(x, dtype=np.float64)
    lo, hi = c.min() - 12 * sigma, c.max() + 12 * sigma
    k = net.kinks[(net.kinks > lo) & (net.kinks < hi)]
    br = np.unique(np.concatenate([[lo, hi], k, np.linspace(lo, hi, 200)]))
    gx, gw = np.polynomial.legendre.leggauss(nodes)
    a, b = br[:-1], br[1:]
    y = (((a + b) / 2)[:, None] + ((b - a) / 2)[:, None] * gx[None, :]).ravel()
    w = (((b - a) / 2)[:, None] * gw[None, :]).ravel()
    p = np.exp(-0.5 * ((y[:, None] - c[None, :]) / sigma) ** 2).sum(1) / (c.size * math.sqrt(2 * math.pi) * sigma)
    pre = np.outer(y, net.W1) + net.b1
    grad = np.concatenate([np.maximum(pre, 0.0), net.W2 * (pre > 0)], axis=1) / net.width
    return (grad * (w * p)[:, None]).T @ grad


def random_net(m, seed, spread=1.5, inner="sign"):
    bias = spread * bigstep.gaussian_noise(1000 + seed, m, stream=0)
    return bigstep.ReLUNet1D.init(m, seed, inner=inner, bias=bias)


def interpolant_net(x, mu, sigma):
    """A theory-setting network (w1 = +1) that interpolates s* on a grid fine enough to
    resolve its transition layers, so that its risk is close to R_n(s*)."""
    c = np.sort(mu * np.asarray(x, dtype=np.float64))
    grid = [np.arange(c[0] - 12 * sigma, c[-1] + 12 * sigma, sigma / 8)]
    for a, b in zip(c[:-1], c[1:]):
        if b - a > sigma:
            grid.append(0.5 * (a + b) + sigma**2 / (b - a) * np.linspace(-30, 30, 121))
    t = np.unique(np.concatenate(grid))
    v = bigstep.optimal_score(t, x, mu, sigma)
    slope = np.diff(v) / np.diff(t)
    L1, L2 = c[0] - 80 * sigma, c[0] - 70 * sigma  # base line beta (y - L1) + kappa (L2 - L1) for y >= L2
    beta = slope[0]
    kappa = (v[0] - beta * (t[0] - L1)) / (L2 - L1)
    coef = np.concatenate([[beta + kappa, -kappa], np.diff(slope)])
    tau = np.concatenate([[L1, L2], t[1:-1]])
    m = coef.size
    return bigstep.ReLUNet1D(np.ones(m), -tau, m * coef)


# ------------------------------------------------------------------ min_spacing, pi


def test_min_spacing():
    assert theory.min_spacing([3.0, 0.0, 1.0, 0.25]) == 0.25
    assert theory.min_spacing(X_GRID) == 1.0
    assert theory.min_spacing([1.0, 0.5, 1.0]) == 0.0   # duplicates
    with pytest.raises(ValueError, match="at least two points"):
        theory.min_spacing([1.0])


@pytest.mark.parametrize("x, mu, sigma", [
    (X20[:9], 1.0, 1e-3),
    (X20[:9], 0.8, 0.05),
    (np.array([-1.0, 0.0, 0.0, 0.3, 0.3, 0.3, 2.0]), 0.9, 0.5),   # duplicates
    (X20[:6], 1.0, 3.0),
])
def test_tv_weight_against_definition(x, mu, sigma):
    c = mu * x
    y = np.concatenate([np.linspace(c.min(), c.max(), 9), c[:3], c[:3] + sigma, [c.min() - sigma, c.max() + 0.1]])
    got = theory.tv_weight(y, x, mu, sigma)
    ref = np.array([pi_ref(v, x, mu, sigma) for v in y])
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * ref.max())


def test_tv_weight_small_sigma_limit_and_support():
    """sigma -> 0: pi -> min(pi_+, pi_-) (a tent of height 1/4 for two points); 0 outside
    [mu x_1, mu x_n], positive at its ends (the definition includes them)."""
    y = np.linspace(-1, 1, 11)
    np.testing.assert_allclose(theory.tv_weight(y, [-1.0, 1.0], 1.0, 1e-9), (1 - np.abs(y)) / 4, atol=1e-9)
    out = theory.tv_weight([-1.0 - 1e-12, -1.0, 1.0, 1.0 + 1e-12], [-1.0, 1.0], 1.0, 0.1)
    assert out[0] == 0.0 and out[3] == 0.0 and out[1] > 0 and out[2] > 0
    assert out[1] == pytest.approx(0.1 / math.sqrt(2 * math.pi) / 4, rel=1e-12)  # E[relu(xi)] / 4


def test_tv_weight_bounds_proposition9():
    """Proposition 9: 0 <= pi <= mu (x_n - x_1), and the lower bound on [mu x_i, mu x_{i+1}]
    (with (n-i)^2 (n-i-1)/2, what its proof gives; the statement prints (n-i+1))."""
    x, mu, sigma = X_GRID, 0.9, 0.2
    n, delta = x.size, 1.0
    for i in range(1, n):
        y = np.linspace(mu * x[i - 1], mu * x[i], 7)
        p = theory.tv_weight(y, x, mu, sigma)
        lower = mu / n**2 * (0.5 - math.exp(-(mu * delta / sigma) ** 2 / 2)) \
            * min(i**2 * (i - 1) / 2, (n - i) ** 2 * (n - i - 1) / 2) * delta
        assert (p >= lower * (1 - 1e-12)).all()
        assert (p <= mu * (x[-1] - x[0])).all()


def test_tv_weight_shapes_and_nan():
    x = [0.0, 1.0, 2.5]
    grid = np.array([[0.1, 0.5], [np.nan, 2.0]])
    out = theory.tv_weight(grid, x, 1.0, 0.3)
    assert out.shape == (2, 2) and np.isnan(out[1, 0]) and np.isfinite(out[[0, 0, 1], [0, 1, 1]]).all()
    assert isinstance(theory.tv_weight(0.5, x, 1.0, 0.3), float)
    assert theory.tv_weight(0.5, [0.3], 1.0, 0.3) == 0.0          # one point: pi = 0


# ------------------------------------------------------------------ TV_pi of networks


def test_tv_net_against_grouping():
    x, mu, sigma = X20[:10], 0.9, 0.2
    for seed in range(3):
        for inner in ("sign", "gaussian"):
            net = random_net(25, seed, inner=inner)
            assert theory.tv_derivative(net, x, mu, sigma) == pytest.approx(tv_net_ref(net, x, mu, sigma), rel=1e-13)


def test_tv_net_shared_kinks_cancel():
    """Neurons with equal kinks add their |w1| w2 before the absolute value: +-1 pairs that
    cancel contribute nothing, w1 = 0 neurons have no kink, kinks outside the data range
    have pi = 0."""
    x, mu, sigma = np.array([-1.0, 0.0, 0.5, 2.0]), 1.0, 0.1
    w1 = np.array([1.0, -1.0, 2.0, 1.0, 0.0, 1.0, -1.0])
    w2 = np.array([2.0, 2.0, 3.0, -5.0, 7.0, 4.0, 1.0])
    b = np.array([-0.3, 0.3, -0.6, -0.2, 1.0, 5.0, -0.7])
    # kinks: 0.3, 0.3, 0.3 (|w1| w2: 2 + 2 + 6 = 10), 0.2 (-5), none, -5 (outside), -0.7 (1)
    net = bigstep.ReLUNet1D(w1, b, w2)
    pi = lambda t: theory.tv_weight(t, x, mu, sigma)  # noqa: E731
    expected = (10 * pi(0.3) + 5 * pi(0.2) + 1 * pi(-0.7)) / 7
    assert theory.tv_derivative(net, x, mu, sigma) == pytest.approx(expected, rel=1e-14)
    cancel = bigstep.ReLUNet1D([1.0, -1.0, 2.0], [-0.3, 0.3, -0.8], [2.0, -2.0, 1.0])  # kinks 0.3, 0.3, 0.4
    assert theory.tv_derivative(cancel, x, mu, sigma) == pytest.approx(1 * 2 * pi(0.4) / 3, rel=1e-14)
    zero = bigstep.ReLUNet1D([1.0, -1.0], [-0.3, 0.3], [2.0, -2.0])
    assert theory.tv_derivative(zero, x, mu, sigma) == 0.0
    flat = bigstep.ReLUNet1D([0.0, 0.0], [0.5, -0.5], [1.0, 2.0])
    assert theory.tv_derivative(flat, x, mu, sigma) == 0.0


# ------------------------------------------------------------------ TV_pi(s*)


@pytest.mark.parametrize("x, mu, sigma", [
    (X20[:5], 0.8, 0.3),
    (X20[:5], 1.0, 0.03),
    (X20[:5], 1.0, 3e-3),
    (np.array([-1.0, 0.0, 0.0, 0.7, 2.0]), 0.9, 0.05),
    (X20[:5], 1.0, 5.0),
])
def test_tv_star_against_scipy(x, mu, sigma):
    got = theory.tv_derivative(None, x, mu, sigma)
    assert got == pytest.approx(tv_star_ref(x, mu, sigma), rel=1e-9)


def test_tv_star_scaling():
    """y -> c y: s* -> s*/c, s*'' -> s*''/c^3, pi -> c pi, dy -> c dy, so TV_pi(s*) -> TV/c."""
    x = X20[:8]
    base = theory.tv_derivative(None, x, 1.0, 0.05)
    assert theory.tv_derivative(None, 4.0 * x, 1.0, 0.2) == pytest.approx(base / 4, rel=1e-10)
    assert theory.tv_derivative(None, x, 4.0, 0.2) == pytest.approx(base / 4, rel=1e-10)
    assert theory.tv_derivative(None, x + 3.0, 1.0, 0.05) == pytest.approx(base, rel=1e-9)


def test_tv_star_degenerate():
    assert theory.tv_derivative(None, [0.4], 1.0, 0.1) == 0.0
    assert theory.tv_derivative(None, [0.4, 0.4], 1.0, 0.1) == 0.0


def test_tv_star_resolves_layers_far_below_float_spacing():
    """A gap of 1e6 at sigma = 1: the layer at y = 5e5 is 1e-6 wide, 1e4 float spacings of y.
    By symmetry and translation, [0, 1e6] and [-5e5, 5e5] give the same value."""
    a = theory.tv_derivative(None, [0.0, 1e6], 1.0, 1.0)
    b = theory.tv_derivative(None, [-5e5, 5e5], 1.0, 1.0)
    assert a == pytest.approx(b, rel=1e-10)
    far = optimal_risk([1e10, 1e10 + 1, 1e10 + 2.5], 1.0, 0.3)
    assert optimal_risk([0.0, 1.0, 2.5], 1.0, 0.3) == pytest.approx(far, rel=1e-12)


# ------------------------------------------------------------------ Theorem 4, Corollary 3


@pytest.mark.parametrize("x, mu, sigma", [(X_GRID, 1.0, 0.15), (X_GRID, 1.0, 0.1), (X_GRID, 0.8, 0.05),
                                          (X20, 1.0, 2e-3), (X20, 1.0, 1e-3)])
def test_theorem4(x, mu, sigma):
    b = theory.theorem4_bound(x, mu, sigma)
    assert b.holds and b.proved_holds
    n, delta = x.size, theory.min_spacing(x)
    assert b.value == pytest.approx(mu**3 * n * delta**3 / (2**12 * sigma**4), rel=1e-14)
    assert b.quantities["condition_lhs"] == pytest.approx(16 * n**3 * math.exp(-(mu * delta / sigma) ** 2 / 4))
    assert theory.tv_derivative(None, x, mu, sigma) >= b.value


def test_theorem4_conditions_reported():
    b = theory.theorem4_bound(X_GRID, 1.0, 0.5)                   # condition fails
    assert not b.holds
    assert not b.conditions["16 n^3 exp(-mu^2 Delta^2 / (4 sigma^2)) <= 1"]
    b = theory.theorem4_bound(np.arange(6.0), 1.0, 0.05)           # n < 10
    assert b.conditions["16 n^3 exp(-mu^2 Delta^2 / (4 sigma^2)) <= 1"] and not b.holds
    b = theory.theorem4_bound([0.0, 1.0, 1.0, 2.0], 1.0, 0.05)     # Delta = 0
    assert b.value == 0.0 and not b.holds


@pytest.mark.parametrize("x, mu, sigma", [(X_GRID, 1.0, 0.3), (X20, 1.0, 5e-3), (X20, 0.9, 1e-3)])
def test_corollary3_bounds_optimal_risk(x, mu, sigma):
    b = theory.optimal_risk_bound(x, mu, sigma)
    assert b.holds
    assert optimal_risk(x, mu, sigma) <= b.value


# ------------------------------------------------------------------ Propositions 6, 7, 10


@pytest.mark.parametrize("sigma", [0.1, 0.4, 1.0])
def test_proposition10_on_random_networks(sigma):
    """lambda_max((1/n) sum_i E_i[grad s grad s^T]) >= (2/m) TV_pi(s_theta) (the key step of Prop. 6)."""
    x, mu = X20[:10], 0.9
    for seed in range(3):
        net = random_net(8, seed)
        lam = np.linalg.eigvalsh(gauss_newton(net, x, mu, sigma))[-1]
        assert lam >= 2 / net.width * theory.tv_derivative(net, x, mu, sigma)


@pytest.mark.parametrize("sigma", [0.05, 0.3, 1.0])
def test_proposition6_on_random_networks(sigma):
    x, mu = X20[:12], 0.9
    for seed in range(3):
        net = random_net(16, seed)
        b = theory.proposition6_bound(x, mu, sigma, net=net)
        assert b.holds and not b.unchecked
        tv = theory.tv_derivative(net, x, mu, sigma)
        assert tv <= b.value and tv <= b.proved_value
        q = b.quantities
        assert q["lambda_max"] == pytest.approx(bigstep.sharpness(net, x, mu, sigma), rel=1e-12)
        assert q["risk"] == pytest.approx(bigstep.dsm_risk(net, x, mu, sigma), rel=1e-12)
        assert q["A"] == max(np.abs(net.W2).max(), 1 / sigma**2)
        # the numbers-only form gives the same value
        same = theory.proposition6_bound(x, mu, sigma, lambda_max=q["lambda_max"], risk=q["risk"], width=net.width,
                                         A=q["A"])
        assert same.value == b.value and same.holds and len(same.unchecked) == 2
        # the sharpness term alone is not enough at these networks: the bound's other terms matter
        assert b.proved_value >= b.value


def test_proposition6_formula_and_conditions():
    b = theory.proposition6_bound([-1.0, 0.0, 1.0], 1.0, 0.5, lambda_max=2.0, risk=0.1, width=10, A=4.0)
    n, A, s, R = 3, 4.0, 0.5, 0.1
    lead = A / (math.sqrt(2 * math.pi) * s)
    third = lead * max(math.sqrt(2 * n * R), (math.sqrt(2 * math.pi) * math.e * A * s * n * R) ** (1 / 3))
    third_proved = lead * max(math.sqrt(2 * n * R), (2 * math.sqrt(2 * math.pi * math.e) * A * s * n * R) ** (1 / 3))
    assert b.value == pytest.approx(2.0 * 10 / 4 + math.sqrt(R) / 2 + third, rel=1e-14)
    assert b.proved_value == pytest.approx(2.0 * 10 / 4 + math.sqrt(R) / 2 + third_proved, rel=1e-14)
    low_a = theory.proposition6_bound([0.0, 1.0], 1.0, 0.5, lambda_max=1.0, risk=0.1, width=2, A=3.9)
    assert not low_a.holds and not low_a.conditions["A >= 1/sigma^2"]
    big = bigstep.ReLUNet1D([1.0, -1.0], [0.0, 0.5], [10.0, 1.0])
    b = theory.proposition6_bound([0.0, 1.0], 1.0, 0.5, net=big, A=5.0)
    assert not b.conditions["max_l |w2_l| <= A"] and not b.holds
    gauss = bigstep.ReLUNet1D([0.5, -1.0], [0.0, 0.5], [1.0, 1.0])
    assert not theory.proposition6_bound([0.0, 1.0], 1.0, 0.5, net=gauss).holds      # |w1| != 1


def test_proposition7_on_an_interpolating_network():
    """A network that interpolates s* has a risk close to R_n(s*) (below 1/(16 n sigma^2)), so
    Proposition 7 applies; its TV_pi is close to TV_pi(s*)."""
    x, mu, sigma = X_GRID, 1.0, 0.05
    net = interpolant_net(x, mu, sigma)
    risk = bigstep.dsm_risk(net, x, mu, sigma)
    assert risk <= 1 / (16 * x.size * sigma**2)
    b = theory.proposition7_bound(x, mu, sigma, net=net)
    assert b.holds and b.quantities["risk"] == max(risk, 0.0)   # dsm_risk can round a tiny risk below 0
    tv = theory.tv_derivative(net, x, mu, sigma)
    assert tv >= b.value and tv >= b.proved_value
    assert tv == pytest.approx(theory.tv_derivative(None, x, mu, sigma), rel=0.02)
    # the same bound holds for s* itself (the proof does not use the network structure)
    assert theory.tv_derivative(None, x, mu, sigma) >= theory.proposition7_bound(
        x, mu, sigma, risk=optimal_risk(x, mu, sigma)).value


def test_proposition7_formula_and_conditions():
    b = theory.proposition7_bound(X_GRID, 1.0, 0.1, risk=0.0)
    assert b.holds and b.value == pytest.approx(144 / (2**11 * 0.01), rel=1e-14)
    assert b.proved_value == pytest.approx(144 / 0.01 * (0.5 - math.exp(-32)) * (1 - 2**-1.5) / 1024, rel=1e-14)
    assert b.proved_value < b.value              # the proof's last step gives 1/3168.1, not 1/2048
    b = theory.proposition7_bound(X_GRID, 1.0, 0.1)
    assert b.holds and b.unchecked == ("R_n(theta) <= 1/(16 n sigma^2)",)
    assert not theory.proposition7_bound(X_GRID, 1.0, 0.2, risk=0.0).holds   # Delta < 8 sigma / mu
    assert not theory.proposition7_bound(X_GRID, 1.0, 0.1, risk=1.0).holds   # risk > 1/(16 n sigma^2) = 0.52


# ------------------------------------------------------------------ Theorem 8


def test_theorem8_values():
    x, mu, sigma, A = X_GRID, 0.9, 0.02, 1 / 0.02**2
    n, delta = 12, 1.0
    thr = theory.lr_threshold(x, mu, sigma, A=A)
    assert thr.value == pytest.approx(2**12 * sigma**2 / (mu * n**2 * delta), rel=1e-14)
    assert thr.holds and thr.proved_holds and not thr.unchecked
    b = theory.excess_risk_lower_bound(x, mu, sigma, A=A, lr=2 * thr.value)
    assert b.value == pytest.approx(math.pi * n**5 * mu**3 * delta**3 / (2**36 * math.sqrt(math.e) * A**4 * sigma**4),
                                    rel=1e-14)
    assert b.holds and b.proved_holds
    assert 0 < b.proved_value < b.value / 10
    assert "theta* is a local minimum of R_n" in b.unchecked
    assert not theory.excess_risk_lower_bound(x, mu, sigma, A=A, lr=thr.value / 2).holds


def test_theorem8_conditions():
    # sigma too large for sigma <= mu Delta / 8
    assert not theory.lr_threshold(X_GRID, 1.0, 0.2, A=25.0).holds
    # without A only the A-free conditions are checked
    b = theory.lr_threshold(X_GRID, 1.0, 0.02)
    assert b.holds and "A >= 1/sigma^2" in b.unchecked
    # A below 1/sigma^2
    assert not theory.lr_threshold(X_GRID, 1.0, 0.02, A=100.0).holds
    # sigma_2: exp(-mu^2 Delta^2 / (32 sigma^2)) is not yet below the polynomial bound at sigma = 0.1
    b = theory.excess_risk_lower_bound(X_GRID, 1.0, 0.1, A=100.0)
    assert not b.holds
    # a network outside the model class, and linear stability checked with lr
    net = bigstep.ReLUNet1D.init(4, seed=0, inner="sign")
    b = theory.excess_risk_lower_bound(X_GRID, 1.0, 0.02, A=2500.0, lr=1.0, net=net)
    lam = bigstep.sharpness(net, X_GRID, 1.0, 0.02)
    assert b.conditions["theta* linearly stable: sharpness <= 2/(m lr)"] == (lam <= 2 / (4 * 1.0))
    assert b.conditions["max_l |w2_l| <= A"]


# ------------------------------------------------------------------ records and arguments


def test_bound_is_frozen():
    b = theory.theorem4_bound(X_GRID, 1.0, 0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.value = 0.0
    with pytest.raises(TypeError):
        b.conditions["n >= 10 (used by the proof)"] = False


@pytest.mark.parametrize("call, exc, match", [
    (lambda: theory.tv_weight([0.0], [], 1.0, 0.1), ValueError, "x must contain"),
    (lambda: theory.tv_weight([0.0], [0.0, 1.0], -1.0, 0.1), ValueError, "mu must be a positive finite number"),
    (lambda: theory.tv_weight([0.0], [0.0, 1.0], 1.0, np.inf), ValueError, "sigma must be a positive finite number"),
    (lambda: theory.tv_weight("a", [0.0, 1.0], 1.0, 0.1), TypeError, "y must be numeric"),
    (lambda: theory.tv_derivative("net", [0.0, 1.0], 1.0, 0.1), TypeError, "net must be a bigstep.ReLUNet1D"),
    (lambda: theory.tv_derivative(None, [0.0, np.nan], 1.0, 0.1), ValueError, "x must be finite"),
    (lambda: theory.theorem4_bound([1.0], 1.0, 0.1), ValueError, "at least two points"),
    (lambda: theory.proposition6_bound([0.0, 1.0], 1.0, 0.1, lambda_max=1.0, width=3, A=100.0), ValueError, "risk"),
    (lambda: theory.proposition6_bound([0.0, 1.0], 1.0, 0.1, lambda_max=1.0, risk=-1.0, width=3, A=100.0),
     ValueError, "risk must be a non-negative finite number"),
    (lambda: theory.proposition6_bound([0.0, 1.0], 1.0, 0.1, lambda_max=np.nan, risk=1.0, width=3, A=100.0),
     ValueError, "lambda_max must be a finite number"),
    (lambda: theory.proposition6_bound([0.0, 1.0], 1.0, 0.1, lambda_max=1.0, risk=1.0, width=2.5, A=100.0),
     TypeError, "width must be an integer"),
    (lambda: theory.proposition6_bound([0.0, 1.0], 1.0, 0.1, lambda_max=1.0, risk=1.0, width=3, A=0.0),
     ValueError, "A must be a positive finite number"),
    (lambda: theory.proposition6_bound([0.0, 1.0], 1.0, 0.1, net=bigstep.ReLUNet1D.init(3, 0, inner="sign"), width=4),
     ValueError, "width must equal net.width"),
    (lambda: theory.proposition7_bound([0.0, 1.0], 1.0, 0.1, net=3), TypeError, "net must be a bigstep.ReLUNet1D"),
    (lambda: theory.excess_risk_lower_bound([0.0, 1.0], 1.0, 0.1, A=-2.0), ValueError, "A must be a positive"),
    (lambda: theory.excess_risk_lower_bound([0.0, 1.0], 1.0, 0.1, A=2.0, lr=0.0), ValueError, "lr must be a positive"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
