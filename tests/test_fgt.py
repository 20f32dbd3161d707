"""The fast Gauss transform (method="fgt" / "auto") of the s* family and the sampler.

Accuracy per query against 50-digit mpmath (tests/reference.py) with the suite's
conditioning-aware bounds (tests/tolerances.py), on layouts that stress the bound:
clusters, outliers, duplicated points, sigma from 1e-3 to 1e3, queries 1e4 sigma away
(where every term underflows).  Each case checks that the expansions were actually used
(stats), so a silent fall-back to direct sums cannot pass for the transform.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bigstep
from bigstep import _backend
from conftest import all_backend_ids, use_backend
from reference import mp_1d, mp_nd, np_1d, np_nd
from tolerances import PAIR_FACTOR, REF_RTOL, bounds_1d, bounds_nd, eps

F64 = np.dtype(np.float64)
MU = 0.9


def kernels(backend):
    return _backend.kernels("fgt", backend)


def layout_1d(kind: str, rng) -> np.ndarray:
    """Adversarial 1-D data sets: clusters far apart, an outlier, duplicated points."""
    if kind == "clusters":
        x = np.concatenate([-3 + 0.05 * rng.standard_normal(120), 2.5 + 0.02 * rng.standard_normal(120),
                            0.3 * rng.standard_normal(60)])
    elif kind == "outlier":
        x = np.concatenate([rng.standard_normal(299), [40.0]])
    else:  # duplicates
        x = np.concatenate([np.repeat(rng.standard_normal(30), 8), [0.25] * 20, rng.standard_normal(40)])
    return np.sort(x)


def dense_queries(x, mu, sigma, rng, m=20000):
    """Enough queries for the boxes to expand: uniform over the data's span (scaled by mu)
    widened by 3 sigma."""
    lo, hi = mu * x.min() - 3 * sigma, mu * x.max() + 3 * sigma
    return rng.uniform(lo, hi, m)


def checked_queries_1d(x, mu, sigma, rng):
    """The queries compared with mpmath: random ones in the bulk, the data points, the
    midpoints between clusters, 50 sigma outside and 1e4 sigma away."""
    inside = rng.uniform(mu * x.min(), mu * x.max(), 24)
    return np.concatenate([inside, mu * x[::40], [mu * x.max() + 50 * sigma, mu * x.min() - 1e4 * sigma,
                                                   mu * x.max() + 1e4 * sigma]])


def well_conditioned(ref, y, x, mu, sigma, dtype=F64):
    """Queries where s* is well conditioned: rounding the inputs moves it by less than a
    tenth of REF_RTOL relative (the measure of test_optimal_score's typical-error test)."""
    s2 = sigma**2
    cond = eps(dtype) * (np.abs(y) + mu * np.abs(x).max()) * (1 + mu**2 * ref["var"] / s2) / s2
    return cond < 0.1 * REF_RTOL[np.dtype(dtype)] * np.abs(ref["score"])


def check(name, got, ref, bound, ctx):
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    err = np.abs(got - ref) if got.ndim < 2 else np.linalg.norm(got - ref, axis=-1)
    assert np.isfinite(got).all(), f"{name} {ctx}: non-finite output"
    bad = err > bound
    if bad.any():
        i = int(np.argmax(err / bound))
        raise AssertionError(f"{name} {ctx}: {int(bad.sum())} outside the bound; worst {i}: got {got.ravel()[i]!r}, "
                             f"exact {ref.ravel()[i]!r}, error {err.ravel()[i]:.3e} > {np.ravel(bound)[i]:.3e}")


# ----------------------------------------------------------------- 1-D vs mpmath


@pytest.mark.parametrize("sigma", [0.1, 0.3, 1.0])
@pytest.mark.parametrize("kind", ["clusters", "outlier", "duplicates"])
def test_1d_against_mpmath(backend, kind, sigma):
    """All 1-D outputs by the FGT against mpmath, per query: s* within 1e-12 relative where
    it is well conditioned, log p within 1e-13 absolute near the data (relative to |log p|
    far away), everything within the suite's bounds; the boxes did expand."""
    rng = np.random.default_rng(11)
    x = layout_1d(kind, rng)
    yc = checked_queries_1d(x, MU, sigma, rng)
    y = np.concatenate([yc, dense_queries(x, MU, sigma, rng)])
    s, lp, m, d1, d2, stats = kernels(backend).fgt_1d(y, x, MU, sigma, 15, 1)
    assert stats[0] == 1 and stats[2] >= 1, f"the FGT expanded no box: {stats}"
    assert stats[5] <= 1.2e-16, f"bound {stats[5]}"
    nq = yc.size
    ref = mp_1d(yc, x, MU, sigma)
    b = bounds_1d(ref, yc, x, MU, sigma, np.float64)
    ctx = f"({kind}, sigma={sigma}, {backend})"
    for key, got in (("score", s), ("log_density", lp), ("mean", m)):
        check(key, got[:nq], ref[key], b[key], ctx)
    # s*', s*'': the FGT's raw moments about the box centre are accurate to ~1e-14
    # absolute (h-units), see bigstep.fgt: 2 Var_s / sigma^2 and 2 sqrt(2) M3_s / sigma^3
    check("d1", d1[:nq], ref["d1"], b["d1"] + 1e-13 / sigma**2, ctx)
    check("d2", d2[:nq], ref["d2"], b["d2"] + 1e-13 / sigma**3, ctx)
    rel = np.abs(s[:nq] - ref["score"]) / np.abs(ref["score"])
    well = well_conditioned(ref, yc, x, MU, sigma)
    assert well.sum() >= 10
    assert rel[well].max() <= 1e-12, f"s* relative error {rel[well].max():.2e} {ctx}"
    # log p: within 1e-13 absolute where |log p| < 100 (near the data); beyond, where
    # rounding the inputs alone moves it by more, the conditioning-aware bound above holds
    lerr = np.abs(lp[:nq] - ref["log_density"])
    near = np.abs(ref["log_density"]) < 100
    assert lerr[near].max() <= 1e-13, f"log p error {lerr[near].max():.2e} {ctx}"


@pytest.mark.parametrize("sigma", [1e-3, 1e3])
def test_1d_extreme_sigma(backend, sigma):
    """sigma = 1e-3 (every box away from a point is summed directly) and 1e3 (all data
    inside one box's expansion): s* and log p against mpmath."""
    rng = np.random.default_rng(2)
    x = np.sort(np.concatenate([rng.standard_normal(200), [0.5, 0.5]]))
    yc = np.concatenate([MU * x[::10] + 0.3 * sigma, MU * x[:5], [MU * x.max() + 1e4 * sigma]])
    y = np.concatenate([yc, dense_queries(x, MU, min(sigma, 1.0), rng, 5000)])
    s, lp, m, _, _, stats = kernels(backend).fgt_1d(y, x, MU, sigma, 7, 1)
    ref = mp_1d(yc, x, MU, sigma)
    b = bounds_1d(ref, yc, x, MU, sigma, np.float64)
    for key, got in (("score", s), ("log_density", lp), ("mean", m)):
        check(key, got[:yc.size], ref[key], b[key], f"(sigma={sigma}, {backend})")
    if sigma > 1:
        assert stats[2] >= 1, stats


def test_1d_underflow_far_queries(backend):
    """Queries 1e4 sigma from the data: every term exp(-|y - mu x_i|^2 / 2 sigma^2)
    underflows, yet s* and log p keep full relative accuracy (shift per target)."""
    rng = np.random.default_rng(4)
    x = np.sort(rng.standard_normal(500))
    sigma = 0.2
    far = np.array([MU * x.max() + 1e4 * sigma, MU * x.min() - 1e4 * sigma, MU * x.max() + 3e4 * sigma])
    y = np.concatenate([far, dense_queries(x, MU, sigma, rng, 4000)])
    s, lp, _, _, _, _ = kernels(backend).fgt_1d(y, x, MU, sigma, 3, 1)
    ref = mp_1d(far, x, MU, sigma)
    assert np.all(ref["log_density"] < -4e7)
    np.testing.assert_allclose(s[:3], ref["score"], rtol=1e-13)
    np.testing.assert_allclose(lp[:3], ref["log_density"], rtol=1e-15)


# ----------------------------------------------------------------- d-D vs mpmath


@pytest.mark.parametrize("sigma", [0.3, 1.0])
@pytest.mark.parametrize("d", [2, 3])
def test_nd_against_mpmath(backend, d, sigma):
    """s*, log p and E[W|y] in 2-D and 3-D by the FGT against mpmath, with a cluster, an
    outlier and far queries; 2-D boxes expand."""
    rng = np.random.default_rng(7 + d)
    x = np.concatenate([rng.standard_normal((1500, d)), 2 + 0.05 * rng.standard_normal((200, d)),
                        np.full((1, d), 25.0)])
    yc = np.concatenate([1.3 * rng.standard_normal((16, d)), [[3.0] * d, [-4.0] + [0.5] * (d - 1),
                                                               [-1e4 * sigma] + [0.0] * (d - 1)]])
    y = np.concatenate([yc, rng.uniform(-3.5, 3.5, (30000, d))])
    s, lp, m, stats = kernels(backend).fgt_nd(y, x, MU, sigma, 7, 1)
    if d == 2:
        assert stats[2] >= 1, stats
    nq = yc.shape[0]
    ref = mp_nd(yc, x, MU, sigma)
    b = bounds_nd(ref, yc, x, MU, sigma, np.float64)
    ctx = f"(d={d}, sigma={sigma}, {backend})"
    for key, got in (("score", s), ("log_density", lp), ("mean", m)):
        check(key, got[:nq], ref[key], b[key], ctx)
    rel = np.linalg.norm(s[:nq] - ref["score"], axis=1) / np.linalg.norm(ref["score"], axis=1)
    assert rel.max() <= 1e-12, f"s* relative error {rel.max():.2e} {ctx}"


# ----------------------------------------------------------------- against pairwise


@pytest.mark.parametrize("sigma", [0.05, 0.5, 2.0])
@pytest.mark.parametrize("d", [None, 2])
def test_matches_pairwise(backend, d, sigma):
    """The public functions with method="fgt" agree with method="pairwise" within twice
    the suite's bounds (numpy O(qn) references for the conditioning)."""
    rng = np.random.default_rng(3)
    if d is None:
        x = rng.standard_normal(3000)
        y = np.concatenate([1.2 * rng.standard_normal(6000), [60.0, -1e3]])
    else:
        x = rng.standard_normal((3000, d))
        y = np.concatenate([1.2 * rng.standard_normal((6000, d)), [[60.0, 0.0]]])
    f = {k: getattr(bigstep, k)(y, x, MU, sigma, backend=backend, method="fgt")
         for k in ("optimal_score", "log_density", "posterior_mean")}
    p = {k: getattr(bigstep, k)(y, x, MU, sigma, backend=backend, method="pairwise")
         for k in ("optimal_score", "log_density", "posterior_mean")}
    sel = np.arange(0, y.shape[0], 50)
    ref = np_1d(y[sel], x, MU, sigma) if d is None else np_nd(y[sel], x, MU, sigma)
    b = (bounds_1d if d is None else bounds_nd)(ref, y[sel], x, MU, sigma, np.float64)
    for key, name in (("score", "optimal_score"), ("log_density", "log_density"), ("mean", "posterior_mean")):
        check(name, f[name][sel], p[name][sel], PAIR_FACTOR * b[key], f"(d={d}, sigma={sigma}, {backend})")


def test_derivatives_match_pairwise(backend):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(2000)
    y = 1.2 * rng.standard_normal(8000)
    a = bigstep.optimal_score_derivatives(y, x, MU, 0.4, backend=backend, method="fgt")
    b = bigstep.optimal_score_derivatives(y, x, MU, 0.4, backend=backend, method="pairwise")
    sel = np.arange(0, y.size, 40)
    ref = np_1d(y[sel], x, MU, 0.4)
    bd = bounds_1d(ref, y[sel], x, MU, 0.4, np.float64)
    extra = {"score": 0.0, "d1": 1e-13 / 0.4**2, "d2": 1e-13 / 0.4**3}  # see test_1d_against_mpmath
    for got, exp, key in zip(a, b, ("score", "d1", "d2")):
        check(key, got[sel], exp[sel], PAIR_FACTOR * bd[key] + extra[key], backend)


def test_backends_agree():
    """Every compiled instruction set and numba give the same plan and the same results
    to rounding."""
    rng = np.random.default_rng(5)
    x = np.sort(rng.standard_normal(4000))
    y = 1.2 * rng.standard_normal(10000)
    X = rng.standard_normal((3000, 2))
    Y = 1.2 * rng.standard_normal((8000, 2))
    res = {}
    for config in all_backend_ids():
        if config == "cuda":
            continue
        with use_backend(config) as name:
            k = kernels(name)
            res[config] = (k.fgt_1d(y, x, MU, 0.3, 15, 1), k.fgt_nd(Y, X, MU, 0.5, 7, 1))
    base = next(iter(res.values()))
    ref1 = np_1d(y[::25], x, MU, 0.3)
    b1 = bounds_1d(ref1, y[::25], x, MU, 0.3, np.float64)
    refn = np_nd(Y[::25], X, MU, 0.5)
    bn = bounds_nd(refn, Y[::25], X, MU, 0.5, np.float64)
    for config, (one, nd) in res.items():
        np.testing.assert_array_equal(one[5][:5], base[0][5][:5])  # the same plan
        np.testing.assert_array_equal(nd[3][:5], base[1][3][:5])
        check("score 1-D", one[0][::25], base[0][0][::25], PAIR_FACTOR * b1["score"], config)
        check("log p 1-D", one[1][::25], base[0][1][::25], PAIR_FACTOR * b1["log_density"], config)
        check("d1", one[3][::25], base[0][3][::25], PAIR_FACTOR * b1["d1"] + 1e-13 / 0.3**2, config)
        check("score 2-D", nd[0][::25], base[1][0][::25], PAIR_FACTOR * bn["score"], config)


# ----------------------------------------------------------------- float32


@pytest.mark.parametrize("sigma", [0.1, 1.0])
def test_float32_as_accurate_as_pairwise(backend, sigma):
    """float32 inputs: the FGT (computed in double at the float32 inputs) is within the
    float32 bounds the pairwise float32 kernel is held to, and no less accurate than it."""
    rng = np.random.default_rng(9)
    x = np.sort(rng.standard_normal(400)).astype(np.float32)
    yc = rng.uniform(-3, 3, 30).astype(np.float32)
    y = np.concatenate([yc, rng.uniform(-3, 3, 20000).astype(np.float32)])
    mu, sig = np.float32(MU), np.float32(sigma)
    f = bigstep.optimal_score(y, x, mu, sig, backend=backend, method="fgt")
    p = bigstep.optimal_score(yc, x, mu, sig, backend=backend, method="pairwise")
    assert f.dtype == np.float32
    ref = mp_1d(yc, x, float(mu), float(sig))
    b = bounds_1d(ref, yc, x, float(mu), float(sig), np.float32)
    check("score", f[:yc.size], ref["score"], b["score"], f"(float32, sigma={sigma})")
    err_f = np.abs(f[:yc.size] - ref["score"])
    err_p = np.abs(p - ref["score"])
    assert err_f.max() <= max(err_p.max(), 2 * eps(np.float32) * np.abs(ref["score"]).max())


# ----------------------------------------------------------------- bound, plan, auto


@settings(max_examples=12)
@given(seed=st.integers(0, 2**31 - 1), sigma=st.floats(0.05, 5.0), spread=st.floats(0.1, 20.0),
       clusters=st.integers(1, 4))
def test_property_bound_holds(backend, seed, sigma, spread, clusters):
    """On random clustered layouts: every expanded box's bound is within the target
    (1.1e-16), and log p (the relative error of S0) and s* are within the bound plus
    rounding of the pairwise kernel's values."""
    rng = np.random.default_rng(seed)
    centres = spread * rng.standard_normal(clusters)
    x = np.sort(np.concatenate([c + rng.uniform(0.01, 1.0) * rng.standard_normal(300) for c in centres]))
    y = rng.uniform(MU * x.min() - 2 * sigma, MU * x.max() + 2 * sigma, 6000)
    s, lp, _, _, _, stats = kernels(backend).fgt_1d(y, x, MU, sigma, 3, 1)
    assert stats[5] <= 1.2e-16
    ps, plp, _, _, _ = _backend.kernels("optimal_score", backend).optimal_score_1d(y, x, np.array([MU]),
                                                                                 np.array([sigma]), 3)
    ref = np_1d(y[::30], x, MU, sigma)
    b = bounds_1d(ref, y[::30], x, MU, sigma, np.float64)
    check("score", s[::30], ps[::30], PAIR_FACTOR * b["score"], f"(seed={seed})")
    check("log p", lp[::30], plp[::30], PAIR_FACTOR * b["log_density"], f"(seed={seed})")


def test_fgt_plan_and_auto_switch():
    """fgt_plan: moderate sigma relative to the data's spread runs the FGT; small sigma (the
    windowed pairwise kernel is cheaper) does not; the bound is reported."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(50000), 1.2 * rng.standard_normal(50000)
    big = bigstep.fgt_plan(y, x, MU, 0.5)
    assert big["used_fgt"] and big["boxes_expanded"] > 0 and big["max_bound"] <= 1.2e-16
    assert big["cost_fgt"] < big["cost_pairwise"]
    small = bigstep.fgt_plan(y[:200], x, MU, 1e-4)
    assert not small["used_fgt"]
    assert small["cost_fgt"] >= small["cost_pairwise"]
    with pytest.raises(ValueError, match="d <= 3"):
        bigstep.fgt_plan(np.zeros((3, 4)), np.zeros((5, 4)), MU, 1.0)
    with pytest.raises(ValueError, match="outputs"):
        bigstep.fgt_plan(y, x, MU, 1.0, outputs="nope")


def test_auto_agrees_with_pairwise(backend):
    """method="auto" (the default) runs the FGT here and agrees with the pairwise kernel;
    the derivatives stay on the pairwise kernel under "auto"."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(20000), 1.2 * rng.standard_normal(20000)
    a = bigstep.optimal_score(y, x, MU, 0.5, backend=backend)
    p = bigstep.optimal_score(y, x, MU, 0.5, backend=backend, method="pairwise")
    ref = np_1d(y[::100], x, MU, 0.5)
    b = bounds_1d(ref, y[::100], x, MU, 0.5, np.float64)
    check("score", a[::100], p[::100], PAIR_FACTOR * b["score"], backend)
    da = bigstep.optimal_score_derivatives(y, x, MU, 0.5, backend=backend)
    dp = bigstep.optimal_score_derivatives(y, x, MU, 0.5, backend=backend, method="pairwise")
    for u, v in zip(da, dp):
        np.testing.assert_array_equal(u, v)


def test_per_query_levels(backend):
    """method="fgt" with a noise level per query groups the queries by level: the same as
    one call per level."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal(3000)
    y = 1.2 * rng.standard_normal(6000)
    sig = np.where(np.arange(6000) % 2 == 0, 0.3, 0.7)
    got = bigstep.optimal_score(y, x, MU, sig, backend=backend, method="fgt")
    for s in (0.3, 0.7):
        rows = sig == s
        np.testing.assert_allclose(got[rows], bigstep.optimal_score(y[rows], x, MU, s, backend=backend, method="fgt"),
                                   rtol=0, atol=0)


def test_bad_method_and_dimension():
    x = np.zeros((4, 5))
    with pytest.raises(ValueError, match="method must be one of"):
        bigstep.optimal_score(np.zeros(3), np.zeros(3), MU, 1.0, method="fast")
    with pytest.raises(ValueError, match="d <= 3"):
        bigstep.optimal_score(x, x, MU, 1.0, method="fgt")
    # auto in d > 3 is the pairwise kernel
    np.testing.assert_array_equal(bigstep.optimal_score(x, x, MU, 1.0),
                                  bigstep.optimal_score(x, x, MU, 1.0, method="pairwise"))
    with pytest.raises(ValueError, match="method must be one of"):
        bigstep.EmpiricalScore(np.zeros(3), method=None)
    with pytest.raises(ValueError, match="d <= 3"):
        bigstep.EmpiricalScore(x, method="fgt")


def test_nan_and_empty(backend):
    x = np.linspace(-2, 2, 500)
    y = np.concatenate([np.linspace(-2, 2, 3000), [np.nan, np.inf]])
    s = bigstep.optimal_score(y, x, MU, 0.5, backend=backend, method="fgt")
    assert np.isnan(s[-2:]).all() and np.isfinite(s[:-2]).all()
    assert bigstep.optimal_score(np.zeros(0), x, MU, 0.5, backend=backend, method="fgt").shape == (0,)


# ----------------------------------------------------------------- sampler


@pytest.mark.parametrize("dim", [1, 2])
def test_sampler_fgt_matches_pairwise(backend, dim):
    """sample_reverse with EmpiricalScore(method="fgt") replays the pairwise sampler's noise:
    the paths agree to rounding (amplified over the steps by at most the flow's Lipschitz
    constant, measured ~1e-14 here)."""
    rng = np.random.default_rng(12)
    data = rng.standard_normal(3000) if dim == 1 else rng.standard_normal((3000, dim))
    kw = dict(n_steps=30, seed=4, backend=backend)
    a = bigstep.sample_reverse(bigstep.EmpiricalScore(data, method="pairwise"), 1500, dim, **kw)
    b = bigstep.sample_reverse(bigstep.EmpiricalScore(data, method="fgt"), 1500, dim, **kw)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-11)


def test_sampler_fgt_steps_used(backend):
    """The fgt kernel reports how many steps used the transform (mode 1: all of them)."""
    rng = np.random.default_rng(13)
    data = rng.standard_normal((2000, 2))
    k = kernels(backend)
    n_steps = 5
    tau = np.linspace(1.0, 0.2, n_steps)
    h = np.full(n_steps, 0.16)
    x = rng.standard_normal((1000, 2))
    used = k.sampler_empirical_fgt_nd(x, 0, n_steps, h, np.sqrt(2 * h), np.exp(-tau), np.sqrt(-np.expm1(-2 * tau)),
                                      tau, 2.0, np.uint64(1), False, np.zeros((1, 1, 1)), data, 1)
    assert used == n_steps
    assert np.isfinite(x).all()
