"""The empirical optimal score family: s*, log p, E[W|y], s*', s*'' (docs/design.md section 2).

Every kernel test takes the `backend` fixture, so it runs on each compiled
instruction set and on numba (and CUDA where available).  Tolerances come from
tests/tolerances.py; references from tests/reference.py.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bigstep
from conftest import all_backend_ids, use_backend
from reference import (central_difference, mp_1d, mp_nd, np_1d, np_nd, one_point, two_points)
from tolerances import (FD_TRUNC_MARGIN, MC_SIGMAS, PAIR_FACTOR, REF_RTOL, TYPICAL_RTOL, allowed, bounds_1d,
                        bounds_nd, eps)

DTYPES = [np.float64, np.float32]
SIGMAS = [1.0, 0.1, 1e-2, 1e-3, 1e-4]
MUS = [1.0, 0.37]


# ------------------------------------------------------------------ helpers


def data_1d():
    """20 points, spread ~1.5, with one duplicated value."""
    rng = np.random.default_rng(1)
    return np.concatenate([1.5 * rng.standard_normal(18), [0.25, 0.25]])


def queries_1d(x, mu, sigma):
    """A grid, the data points, the midpoints (the transition layers of s*), points a
    few sigma off the midpoints, queries 50 sigma-widths outside the data, and +-1e3."""
    xs = np.sort(x)
    mids = mu * (xs[1:] + xs[:-1]) / 2
    lo, hi = mu * xs[0], mu * xs[-1]
    return np.concatenate([np.linspace(-4, 4, 21), mu * xs, mids, mids + 3 * sigma, mids - 0.5 * sigma,
                           [hi + 50 * sigma, lo - 50 * sigma, hi + 1e3, -1e3]])


def cast(dtype, *arrays):
    return tuple(np.asarray(a, dtype=dtype) for a in arrays)


def f64(a):
    return np.asarray(a, dtype=np.float64)


def check_bound(name, got, ref, bound, context=""):
    """|got - ref| <= bound elementwise (rows: normwise when got is 2-D), with a useful message."""
    got, ref = f64(got), f64(ref)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape}"
    assert np.isfinite(got).all(), f"{name}: non-finite output {got[~np.isfinite(got)][:5]} {context}"
    err = np.abs(got - ref) if got.ndim < 2 else np.linalg.norm(got - ref, axis=-1)
    bad = err > bound
    if bad.any():
        i = int(np.argmax(err / bound))
        raise AssertionError(f"{name} {context}: {int(bad.sum())}/{bad.size} outside the bound; worst index {i}: "
                             f"got {got.reshape(err.size, -1)[i]}, exact {ref.reshape(err.size, -1)[i]}, "
                             f"error {err.ravel()[i]:.3e} > allowed {np.ravel(bound)[i]:.3e}")


def all_outputs_1d(y, x, mu, sigma, backend):
    s, d1, d2 = bigstep.optimal_score_derivatives(y, x, mu, sigma, backend=backend)
    return {
        "score": bigstep.optimal_score(y, x, mu, sigma, backend=backend),
        "score_from_derivatives": s,
        "d1": d1,
        "d2": d2,
        "log_density": bigstep.log_density(y, x, mu, sigma, backend=backend),
        "mean": bigstep.posterior_mean(y, x, mu, sigma, backend=backend),
    }


def all_outputs_nd(Y, X, mu, sigma, backend):
    return {
        "score": bigstep.optimal_score(Y, X, mu, sigma, backend=backend),
        "log_density": bigstep.log_density(Y, X, mu, sigma, backend=backend),
        "mean": bigstep.posterior_mean(Y, X, mu, sigma, backend=backend),
    }


def check_dtype(out: dict, dtype):
    for k, v in out.items():
        assert isinstance(v, np.ndarray), f"{k}: {type(v)}"
        assert v.dtype == np.dtype(dtype), f"{k}: dtype {v.dtype}, expected {np.dtype(dtype)}"


# ------------------------------------------------------ 1-D against mpmath


@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("mu", MUS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_1d_against_mpmath(backend, dtype, mu, sigma):
    """s*, log p, E[W|y], s*', s*'' against 50-digit mpmath at the same floats, for sigma
    down to 1e-4, queries at the transition layers, 50 sigma outside the data and at
    +-1e3, with a duplicated data point."""
    x0 = data_1d()
    x, y = cast(dtype, x0, queries_1d(x0, mu, sigma))
    mu_t, sigma_t = dtype(mu), dtype(sigma)
    ref = mp_1d(y, x, mu_t, sigma_t)
    bounds = bounds_1d(ref, y, x, float(mu_t), float(sigma_t), dtype)
    out = all_outputs_1d(y, x, mu_t, sigma_t, backend)
    check_dtype(out, dtype)
    ctx = f"({np.dtype(dtype)}, mu={mu}, sigma={sigma}, {backend})"
    for k in ("score", "d1", "d2", "log_density", "mean"):
        check_bound(k, out[k], ref[k], bounds[k], ctx)
    check_bound("score (from optimal_score_derivatives)", out["score_from_derivatives"], ref["score"],
                bounds["score"], ctx)


@pytest.mark.parametrize("sigma", [1.0, 0.1, 1e-2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_1d_typical_relative_error(backend, dtype, sigma):
    """Relative error of s* against mpmath at the same floats: median below TYPICAL_RTOL
    (float32: 1e-5), and worst below REF_RTOL (float32: 1e-4) over the queries where
    s* is well conditioned (input rounding moves it by less than REF_RTOL / 10)."""
    mu = 0.8
    rng = np.random.default_rng(5)
    x, y = cast(dtype, 1.5 * rng.standard_normal(40), rng.uniform(-3.5, 3.5, 150))
    mu_t, sigma_t = dtype(mu), dtype(sigma)
    ref = mp_1d(y, x, mu_t, sigma_t)
    s = f64(bigstep.optimal_score(y, x, mu_t, sigma_t, backend=backend))
    m, s2 = float(mu_t), float(sigma_t) ** 2
    rel = np.abs(s - ref["score"]) / np.abs(ref["score"])
    assert np.median(rel) <= TYPICAL_RTOL[np.dtype(dtype)], f"median relative error {np.median(rel):.2e}"
    cond = eps(dtype) * (np.abs(f64(y)) + m * np.abs(f64(x)).max()) * (1 + m**2 * ref["var"] / s2) / s2
    well = cond < 0.1 * REF_RTOL[np.dtype(dtype)] * np.abs(ref["score"])
    assert well.sum() >= 20, f"test set-up: only {well.sum()} well-conditioned queries"
    assert rel[well].max() <= REF_RTOL[np.dtype(dtype)], f"worst relative error {rel[well].max():.2e}"


# ------------------------------------------------------ d-D against mpmath


def case_nd(d, mu, sigma, seed=2):
    """6 points in R^d (the last two equal) and 9 queries: near data points, at midpoints,
    0.3 sigma off a midpoint along the line between the points, 50 sigma outside, and
    two at random."""
    rng = np.random.default_rng(seed + d)
    X = rng.standard_normal((6, d))
    X[5] = X[4]
    u = (X[0] - X[1]) / np.linalg.norm(X[0] - X[1])
    Y = np.concatenate([mu * X[:3] + sigma * rng.standard_normal((3, d)),
                        mu * (X[0:2] + X[1:3]) / 2,
                        mu * (X[0:1] + X[1:2]) / 2 + 0.3 * sigma * u,
                        mu * X[0:1] + 50 * sigma * u,
                        2 * rng.standard_normal((2, d))])
    return Y, X


@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("mu", MUS)
@pytest.mark.parametrize("d", [1, 3, 64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nd_against_mpmath(backend, dtype, d, mu, sigma):
    """d-D s*, log p, E[W|y] against mpmath on small cases (n = 6 with a duplicate), d = 1,
    3 and 64, sigma down to 1e-4."""
    Y, X = cast(dtype, *case_nd(d, mu, sigma))
    mu_t, sigma_t = dtype(mu), dtype(sigma)
    ref = mp_nd(Y, X, mu_t, sigma_t)
    bounds = bounds_nd(ref, Y, X, float(mu_t), float(sigma_t), dtype)
    out = all_outputs_nd(Y, X, mu_t, sigma_t, backend)
    check_dtype(out, dtype)
    assert out["score"].shape == Y.shape and out["mean"].shape == Y.shape and out["log_density"].shape == (len(Y),)
    ctx = f"({np.dtype(dtype)}, d={d}, mu={mu}, sigma={sigma}, {backend})"
    for k in ("score", "mean", "log_density"):
        check_bound(k, out[k], ref[k], bounds[k], ctx)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nd_single_query(backend, dtype):
    """A d-D query of shape (d,) gives s* and E[W|y] of shape (d,) and a scalar log p,
    equal to the first row of the (1, d) call."""
    Y, X = cast(dtype, *case_nd(5, 0.9, 0.3))
    s = bigstep.optimal_score(Y[0], X, 0.9, 0.3, backend=backend)
    m = bigstep.posterior_mean(Y[0], X, 0.9, 0.3, backend=backend)
    lp = bigstep.log_density(Y[0], X, 0.9, 0.3, backend=backend)
    assert s.shape == (5,) and m.shape == (5,) and np.ndim(lp) == 0
    assert s.dtype == np.dtype(dtype) and m.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(s, bigstep.optimal_score(Y[:1], X, 0.9, 0.3, backend=backend)[0])
    np.testing.assert_array_equal(m, bigstep.posterior_mean(Y[:1], X, 0.9, 0.3, backend=backend)[0])
    assert lp == bigstep.log_density(Y[:1], X, 0.9, 0.3, backend=backend)[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_d1_matrix_matches_1d(backend, dtype):
    """Data of shape (n, 1) (the d-D kernel) and of shape (n,) (the 1-D kernel) give the
    same s*, log p and E[W|y]."""
    x0 = data_1d()
    for sigma in (0.5, 1e-2, 1e-4):
        x, y = cast(dtype, x0, queries_1d(x0, 0.8, sigma))
        ref = np_1d(y, x, dtype(0.8), dtype(sigma))
        b = bounds_1d(ref, y, x, float(dtype(0.8)), float(dtype(sigma)), dtype)
        refn = {"score": ref["score"][:, None], "log_density": ref["log_density"], "cov_max": ref["var"]}
        bn = bounds_nd(refn, y[:, None], x[:, None], float(dtype(0.8)), float(dtype(sigma)), dtype)
        one = all_outputs_1d(y, x, dtype(0.8), dtype(sigma), backend)
        nd = all_outputs_nd(y[:, None], x[:, None], dtype(0.8), dtype(sigma), backend)
        for k in ("score", "mean", "log_density"):
            got = nd[k][:, 0] if nd[k].ndim == 2 else nd[k]
            check_bound(k, got, one[k], b[k] + bn[k], f"(sigma={sigma})")


# ------------------------------------------------------------ closed forms


@pytest.mark.parametrize("d", [None, 1, 64])
@pytest.mark.parametrize("sigma", [1.0, 1e-2, 1e-4])
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_point_closed_form(backend, dtype, sigma, d):
    """n = 1: s*(y) = (mu x_1 - y)/sigma^2, E[W|y] = x_1, log p = Gaussian log-density,
    s*' = -1/sigma^2, s*'' = 0; the same for n = 5 copies of one point."""
    mu = 0.7
    rng = np.random.default_rng(3)
    if d is None:
        x1 = np.array([0.4])
        y = np.concatenate([mu * 0.4 + sigma * rng.standard_normal(5), [mu * 0.4 + 50 * sigma, -1e3, 1e3]])
    else:
        x1 = rng.standard_normal((1, d))
        y = mu * x1 + sigma * rng.standard_normal((4, d))
        y = np.concatenate([y, mu * x1 + 50 * sigma * np.ones((1, d)) / np.sqrt(d), 1e3 * np.ones((1, d))])
    x1, y = cast(dtype, x1, y)
    mu_t, sigma_t = dtype(mu), dtype(sigma)
    exact = one_point(f64(y), f64(x1[0]), float(mu_t), float(sigma_t))
    for x in (x1, np.repeat(x1, 5, axis=0)):
        if d is None:
            out = all_outputs_1d(y, x, mu_t, sigma_t, backend)
            ref = {**exact, "var": np.zeros(len(y)), "abs3": np.zeros(len(y)), "m4": np.zeros(len(y))}
            b = bounds_1d(ref, y, x, float(mu_t), float(sigma_t), dtype)
            names = ("score", "mean", "log_density", "d1", "d2")
        else:
            out = all_outputs_nd(y, x, mu_t, sigma_t, backend)
            ref = {**exact, "cov_max": np.zeros(len(y))}
            b = bounds_nd(ref, y, x, float(mu_t), float(sigma_t), dtype)
            names = ("score", "mean", "log_density")
        for k in names:
            check_bound(k, out[k], exact[k], b[k], f"(n={len(x)}, d={d}, sigma={sigma})")


@pytest.mark.parametrize("d", [None, 1, 64])
@pytest.mark.parametrize("sigma", [1.0, 0.1, 1e-2, 1e-4])
@pytest.mark.parametrize("dtype", DTYPES)
def test_two_symmetric_points_closed_form(backend, dtype, sigma, d):
    """Data {+v, -v}: s*(y) = (mu v tanh(mu <v, y>/sigma^2) - y)/sigma^2, and the matching
    log p, E[W|y], s*', s*'' (1-D), across the transition layer at <v, y> = 0."""
    mu = 0.9
    rng = np.random.default_rng(4)
    t = np.concatenate([np.linspace(-3, 3, 13) * sigma**2, np.linspace(-2, 2, 9), [-7.0, 7.0]])
    if d is None:
        v = np.float64(1.3)
        x = np.array([1.3, -1.3])
        y = t / 1.3 + 0.0
    else:
        v = rng.standard_normal(d)
        v *= 1.5 / np.linalg.norm(v)
        x = np.stack([v, -v])
        orth = rng.standard_normal((len(t), d))
        orth -= np.outer(orth @ v, v) / (v @ v)
        y = np.outer(t / (v @ v), v) + 0.5 * orth
    x, y = cast(dtype, x, y)
    v = f64(x[0])  # the float-rounded +v (the -v row is exactly its negative)
    mu_t, sigma_t = dtype(mu), dtype(sigma)
    ref = two_points(f64(y), v if d is not None else v[()], float(mu_t), float(sigma_t))
    if d is None:
        out = all_outputs_1d(y, x, mu_t, sigma_t, backend)
        b = bounds_1d(ref, y, x, float(mu_t), float(sigma_t), dtype)
        names = ("score", "mean", "log_density", "d1", "d2")
    else:
        out = all_outputs_nd(y, x, mu_t, sigma_t, backend)
        b = bounds_nd(ref, y, x, float(mu_t), float(sigma_t), dtype)
        names = ("score", "mean", "log_density")
    for k in names:
        check_bound(k, out[k], ref[k], b[k], f"(d={d}, sigma={sigma}, {np.dtype(dtype)})")


@pytest.mark.parametrize("d", [1, 3])
def test_population_limit(backend, d):
    """x_i ~ N(0, I_d), n = 20000: s*(y) -> -y/(mu^2 + sigma^2), the score of the noised
    population.  s* = (mu m_hat - y)/sigma^2 with m_hat a self-normalised importance
    sampling estimate of E[x | y] = mu y/(mu^2 + sigma^2); its standard error is
    estimated from the sample (delta method: sqrt(sum w_i^2 (x_i - m_hat)^2)/sum w_i,
    which scales as 1/sqrt(n)), and each coordinate must lie within MC_SIGMAS of them."""
    n, mu, sigma = 20000, 0.8, 0.6
    rng = np.random.default_rng(12345)
    X = rng.standard_normal((n, d))
    Y = np.array([[0.0] * d, [0.5] * d, [-1.0] + [0.3] * (d - 1), [1.5] * d])[:, :d]
    s = bigstep.optimal_score(Y if d > 1 else Y[:, 0], X if d > 1 else X[:, 0], mu, sigma, backend=backend)
    s = s.reshape(len(Y), d)
    exact = -Y / (mu**2 + sigma**2)
    # standard error of m_hat, per query and coordinate
    diff = Y[:, None, :] - mu * X[None, :, :]
    logw = -(diff**2).sum(-1) / (2 * sigma**2)
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    m_hat = (w @ X) / w.sum(axis=1, keepdims=True)
    se = np.sqrt(np.einsum("qn,qnd->qd", w**2, (X[None, :, :] - m_hat[:, None, :]) ** 2)) / w.sum(1)[:, None]
    assert se.max() < 0.05, "test set-up: the Monte Carlo error is too large for the test to have power"
    tol = MC_SIGMAS * mu / sigma**2 * se
    assert np.all(np.abs(s - exact) <= tol), f"deviation {np.abs(s - exact)} > {tol}"


# -------------------------------------------------------- finite differences


@pytest.mark.parametrize("sigma", [0.5, 0.05])
def test_derivatives_match_finite_differences(backend, sigma):
    """s*' against the central difference of s*, s*'' against the central difference of
    s*' (float64), and s* against the central difference of log p.  Allowed: the
    truncation h^2/6 |f'''| (exact f''' from mpmath, times FD_TRUNC_MARGIN), the rounding
    2 * (allowed error of f)/(2h), and the allowed error of the derivative itself."""
    mu = 0.8
    x = data_1d()
    y = np.concatenate([np.linspace(-3, 3, 25), queries_1d(x, mu, sigma)[20:60]])
    h = 1e-4 * sigma
    ref = mp_1d(y, x, mu, sigma)
    b = bounds_1d(ref, y, x, mu, sigma, np.float64)

    def s(z):
        return bigstep.optimal_score(z, x, mu, sigma, backend=backend)

    def ds(z):
        return bigstep.optimal_score_derivatives(z, x, mu, sigma, backend=backend)[1]

    def logp(z):
        return bigstep.log_density(z, x, mu, sigma, backend=backend)

    _, d1, d2 = bigstep.optimal_score_derivatives(y, x, mu, sigma, backend=backend)
    # the bounds of f at y +- h: at most twice those at y (h is 1e-4 of the scale of change)
    tol1 = FD_TRUNC_MARGIN * h**2 / 6 * np.abs(ref["d3"]) + 2 * b["score"] / h + b["d1"]
    check_bound("s*' vs FD of s*", d1, central_difference(s, y, h), tol1, f"(sigma={sigma})")
    tol2 = FD_TRUNC_MARGIN * h**2 / 6 * np.abs(ref["d4"]) + 2 * b["d1"] / h + b["d2"]
    check_bound("s*'' vs FD of s*'", d2, central_difference(ds, y, h), tol2, f"(sigma={sigma})")
    tol0 = FD_TRUNC_MARGIN * h**2 / 6 * np.abs(ref["d2"]) + 2 * b["log_density"] / h + b["score"]
    check_bound("s* vs FD of log p", s(y), central_difference(logp, y, h), tol0, f"(sigma={sigma})")
    # the test has power: the derivatives are far from zero relative to the tolerances
    assert np.median(np.abs(ref["d1"]) / tol1) > 1e3 and np.median(np.abs(ref["d2"]) / tol2) > 10


# ----------------------------------------------- per-query noise levels, backends


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_query_levels_equal_scalar_loop(backend, dtype):
    """mu and sigma given as (q,) arrays give, for every output, what q scalar calls give."""
    rng = np.random.default_rng(6)
    q = 16
    mu = np.linspace(0.3, 1.0, q).astype(dtype)
    sigma = np.geomspace(1e-4, 2.0, q)[rng.permutation(q)].astype(dtype)
    x = rng.standard_normal(50).astype(dtype)
    y = rng.uniform(-2.5, 2.5, q).astype(dtype)
    ref = np_1d(y, x, mu, sigma)
    b = bounds_1d(ref, y, x, f64(mu), f64(sigma), dtype)
    batch = all_outputs_1d(y, x, mu, sigma, backend)
    singles = [all_outputs_1d(y[i:i + 1], x, mu[i], sigma[i], backend) for i in range(q)]
    loop = {k: np.array([o[k][0] for o in singles]) for k in ("score", "d1", "d2", "log_density", "mean")}
    for k in ("score", "d1", "d2", "log_density", "mean"):
        check_bound(k, batch[k], loop[k], PAIR_FACTOR * b[k], "(1-D, per-query levels vs loop)")
    # d-D
    X = rng.standard_normal((40, 8)).astype(dtype)
    Y = (rng.standard_normal((q, 8)) * 0.8).astype(dtype)
    refn = np_nd(Y, X, mu, sigma)
    bn = bounds_nd(refn, Y, X, f64(mu), f64(sigma), dtype)
    batch = all_outputs_nd(Y, X, mu, sigma, backend)
    singles = [all_outputs_nd(Y[i:i + 1], X, mu[i], sigma[i], backend) for i in range(q)]
    for k in ("score", "log_density", "mean"):
        loop = np.array([o[k][0] for o in singles])
        check_bound(k, batch[k], loop, PAIR_FACTOR * bn[k], "(d-D, per-query levels vs loop)")


@pytest.mark.parametrize("dtype", DTYPES)
def test_backends_agree(dtype):
    """Every runnable configuration (each cpp ISA, numba, cuda) gives the same results
    as every other, within PAIR_FACTOR times the allowed error, 1-D and d-D."""
    configs = all_backend_ids()
    rng = np.random.default_rng(7)
    x = rng.standard_normal(500).astype(dtype)
    y = np.concatenate([rng.uniform(-4, 4, 200), [40.0, -40.0]]).astype(dtype)
    X = rng.standard_normal((300, 16)).astype(dtype)
    Y = np.concatenate([rng.standard_normal((50, 16)), 0.9 * X[:10].astype(np.float64)]).astype(dtype)
    for sigma in (1.0, 0.05, 1e-3):
        mu_t, s_t = dtype(0.8), dtype(sigma)
        b1 = bounds_1d(np_1d(y, x, mu_t, s_t), y, x, float(mu_t), float(s_t), dtype)
        bn = bounds_nd(np_nd(Y, X, mu_t, s_t), Y, X, float(mu_t), float(s_t), dtype)
        results = {}
        for c in configs:
            with use_backend(c) as name:
                results[c] = (all_outputs_1d(y, x, mu_t, s_t, name), all_outputs_nd(Y, X, mu_t, s_t, name))
        first = configs[0]
        for c in configs[1:]:
            for k in ("score", "d1", "d2", "log_density", "mean"):
                check_bound(k, results[c][0][k], results[first][0][k], PAIR_FACTOR * b1[k],
                            f"(1-D, {c} vs {first}, sigma={sigma})")
            for k in ("score", "log_density", "mean"):
                check_bound(k, results[c][1][k], results[first][1][k], PAIR_FACTOR * bn[k],
                            f"(d-D, {c} vs {first}, sigma={sigma})")


@pytest.mark.parametrize("sigma", [1.0, 0.1, 1e-2])
def test_float32_matches_float64_at_float32_inputs(backend, sigma):
    """Larger problems (1-D n = 2000; d = 64, n = 500): float32 results against float64
    results at the float32-rounded inputs (the float64 path is itself checked against
    mpmath above), within the float32 bound."""
    rng = np.random.default_rng(8)
    x32 = rng.standard_normal(2000).astype(np.float32)
    y32 = rng.uniform(-3, 3, 500).astype(np.float32)
    mu32, s32 = np.float32(0.8), np.float32(sigma)
    exact = {k: f64(v) for k, v in all_outputs_1d(f64(y32), f64(x32), float(mu32), float(s32), backend).items()}
    ref = {**np_1d(y32, x32, mu32, s32), **exact}  # exact values, numpy moments for the bounds
    b = bounds_1d(ref, y32, x32, float(mu32), float(s32), np.float32)
    got = all_outputs_1d(y32, x32, mu32, s32, backend)
    for k in ("score", "log_density", "mean", "d1", "d2"):
        check_bound(k, got[k], exact[k], b[k], f"(1-D float32, sigma={sigma})")
    X32 = rng.standard_normal((500, 64)).astype(np.float32)
    Y32 = (0.8 * X32[:40] + sigma * rng.standard_normal((40, 64))).astype(np.float32)
    Y32 = np.concatenate([Y32, rng.standard_normal((20, 64)).astype(np.float32)])
    exact = all_outputs_nd(f64(Y32), f64(X32), float(mu32), float(s32), backend)
    refn = {**exact, "cov_max": np_nd(Y32, X32, mu32, s32)["cov_max"]}
    bn = bounds_nd(refn, Y32, X32, float(mu32), float(s32), np.float32)
    got = all_outputs_nd(Y32, X32, mu32, s32, backend)
    for k in ("score", "log_density", "mean"):
        check_bound(k, got[k], exact[k], bn[k], f"(d-D float32, sigma={sigma})")


@pytest.mark.parametrize("sigma", [1e-2, 1e-3, 1e-4])
def test_float32_small_sigma_screen_and_fallback(backend, sigma):
    """d-D float32 at small sigma, where the compiled kernel screens candidates with float
    logits and recomputes them in double: several data tiles (n = 700), queries near
    data, at midpoints (two candidates), far outside, and next to a cluster of 51 points
    within ~sigma of each other (more candidates than the screen keeps: the float64
    fallback), against the
    float64 results at the float32 inputs."""
    rng = np.random.default_rng(11)
    X32 = rng.standard_normal((700, 64)).astype(np.float32)
    mu32, s32 = np.float32(0.9), np.float32(sigma)
    X32[600:650] = X32[3] + 0.1 * sigma * rng.standard_normal((50, 64))  # 51 points within ~sigma
    Y = np.concatenate([0.9 * X32[:30] + sigma * rng.standard_normal((30, 64)),
                        0.9 * (X32[10:20] + X32[20:30]) / 2,
                        0.9 * X32[3:4] + sigma * rng.standard_normal((5, 64)),
                        3 * rng.standard_normal((5, 64))])
    Y32 = Y.astype(np.float32)
    exact = all_outputs_nd(f64(Y32), f64(X32), float(mu32), float(s32), backend)
    refn = {**exact, "cov_max": np_nd(Y32, X32, mu32, s32)["cov_max"]}
    bn = bounds_nd(refn, Y32, X32, float(mu32), float(s32), np.float32)
    got = all_outputs_nd(Y32, X32, mu32, s32, backend)
    for k in ("score", "log_density", "mean"):
        check_bound(k, got[k], exact[k], bn[k], f"(d-D float32, sigma={sigma})")


# ------------------------------------------------------------ input handling


def test_dtype_rules(backend):
    """float32 in -> float32 out; float64 -> float64; ints, bools and lists -> float64;
    float32 mixed with float64 -> float64."""
    x = np.array([-1.0, 0.5, 2.0])
    y = np.array([0.1, 1.0])
    expect = bigstep.optimal_score(y, x, 0.9, 0.5, backend=backend)
    assert expect.dtype == np.float64
    assert bigstep.optimal_score(y.astype(np.float32), x.astype(np.float32), 0.9, 0.5,
                                 backend=backend).dtype == np.float32
    assert bigstep.optimal_score(y.astype(np.float32), x, 0.9, 0.5, backend=backend).dtype == np.float64
    assert bigstep.optimal_score(y, x.astype(np.float32), 0.9, 0.5, backend=backend).dtype == np.float64
    out = bigstep.optimal_score(list(y), list(x), 0.9, 0.5, backend=backend)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_array_equal(out, expect)
    xi = np.array([-1, 0, 2])
    out = bigstep.optimal_score(np.array([0, 1]), xi, 0.9, 0.5, backend=backend)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, bigstep.optimal_score(np.array([0.0, 1.0]), xi.astype(float), 0.9, 0.5,
                                                             backend=backend))
    out = bigstep.optimal_score(np.array([0.0, 1.0]), np.array([True, False]), 0.9, 0.5, backend=backend)
    assert out.dtype == np.float64


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_round_trip(backend, dtype):
    """torch CPU tensor in -> torch tensor out, same dtype, values equal to the numpy path;
    works for non-contiguous tensors and tensors that require grad."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    x = rng.standard_normal(30).astype(dtype)
    y = rng.uniform(-2, 2, 11).astype(dtype)
    X = rng.standard_normal((30, 4)).astype(dtype)
    Y = rng.standard_normal((7, 4)).astype(dtype)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    for fn in (bigstep.optimal_score, bigstep.log_density, bigstep.posterior_mean):
        for yy, xx in ((y, x), (Y, X)):
            expect = fn(yy, xx, 0.8, 0.3, backend=backend)
            got = fn(torch.from_numpy(yy), torch.from_numpy(xx), 0.8, 0.3, backend=backend)
            assert isinstance(got, torch.Tensor), f"{fn.__name__}: {type(got)}"
            assert got.dtype == tdt and got.device.type == "cpu"
            np.testing.assert_array_equal(got.numpy(), expect)
    s, d1, d2 = bigstep.optimal_score_derivatives(torch.from_numpy(y), torch.from_numpy(x), 0.8, 0.3,
                                                  backend=backend)
    e = bigstep.optimal_score_derivatives(y, x, 0.8, 0.3, backend=backend)
    for got, exp in zip((s, d1, d2), e):
        assert isinstance(got, torch.Tensor) and got.dtype == tdt
        np.testing.assert_array_equal(got.numpy(), exp)
    # non-contiguous (transposed) and requires_grad tensors
    Yt = torch.from_numpy(np.ascontiguousarray(Y.T)).T
    assert not Yt.is_contiguous()
    got = bigstep.optimal_score(Yt, torch.from_numpy(X).requires_grad_(True), 0.8, 0.3, backend=backend)
    assert got.requires_grad  # a graph to x (tests/test_autograd.py checks its gradients)
    np.testing.assert_array_equal(got.detach().numpy(), bigstep.optimal_score(Y, X, 0.8, 0.3, backend=backend))
    # integer tensors become float64
    got = bigstep.optimal_score(torch.tensor([0, 1]), torch.tensor([-1, 2]), 0.8, 0.3, backend=backend)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    # mu, sigma as tensors (one per query)
    mu_t = torch.full((11,), 0.8, dtype=tdt)
    got = bigstep.optimal_score(torch.from_numpy(y), torch.from_numpy(x), mu_t, 0.3, backend=backend)
    np.testing.assert_allclose(got.numpy(), bigstep.optimal_score(y, x, 0.8, 0.3, backend=backend),
                               rtol=4 * float(eps(dtype)), atol=0)


def test_torch_single_nd_query(backend):
    """One d-D query of shape (d,) as a torch tensor: s* is a (d,) tensor and log p a 0-d
    tensor, the same shapes and values as the numpy path (which gives a scalar)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(15)
    X, y = rng.standard_normal((10, 3)), rng.standard_normal(3)
    s = bigstep.optimal_score(torch.from_numpy(y), torch.from_numpy(X), 0.9, 0.5, backend=backend)
    assert isinstance(s, torch.Tensor) and tuple(s.shape) == (3,)
    lp = bigstep.log_density(torch.from_numpy(y), torch.from_numpy(X), 0.9, 0.5, backend=backend)
    expect = bigstep.log_density(y, X, 0.9, 0.5, backend=backend)
    assert np.ndim(expect) == 0
    assert isinstance(lp, torch.Tensor) and tuple(lp.shape) == (), f"log p of one query has shape {tuple(lp.shape)}"
    assert float(lp) == float(expect)


def test_nan_query_propagates_to_its_row_only(backend):
    """NaN in a query gives NaN in that row of every output; the other rows are the
    values of the call without it (1-D; d-D with a NaN in one coordinate)."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal(40)
    y = rng.uniform(-2, 2, 9)
    y_nan = y.copy()
    y_nan[[2, 6]] = np.nan
    keep = ~np.isnan(y_nan)
    clean = all_outputs_1d(y[keep], x, 0.8, 0.2, backend)
    ref = np_1d(y[keep], x, 0.8, 0.2)
    b = bounds_1d(ref, y[keep], x, 0.8, 0.2, np.float64)
    got = all_outputs_1d(y_nan, x, 0.8, 0.2, backend)
    for k, v in got.items():
        assert v.shape == y.shape
        assert np.isnan(v[~keep]).all(), f"{k}: NaN query gave {v[~keep]}"
        bk = b.get(k, b["score"])
        check_bound(k, v[keep], clean[k], PAIR_FACTOR * bk, "(rows without NaN)")
    X = rng.standard_normal((40, 5))
    Y = rng.standard_normal((9, 5))
    Y_nan = Y.copy()
    Y_nan[3, 1] = np.nan
    keep = np.arange(9) != 3
    clean = all_outputs_nd(Y[keep], X, 0.8, 0.2, backend)
    bn = bounds_nd(np_nd(Y[keep], X, 0.8, 0.2), Y[keep], X, 0.8, 0.2, np.float64)
    got = all_outputs_nd(Y_nan, X, 0.8, 0.2, backend)
    for k, v in got.items():
        assert np.isnan(v[3]).all(), f"{k}: NaN query row gave {v[3]}"
        check_bound(k, v[keep], clean[k], PAIR_FACTOR * bn[k], "(rows without NaN)")


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_queries(backend, dtype):
    """No queries: empty results of the right shape and dtype, for every function."""
    x = np.array([0.0, 1.0], dtype=dtype)
    y = np.empty(0, dtype=dtype)
    for fn in (bigstep.optimal_score, bigstep.log_density, bigstep.posterior_mean):
        out = fn(y, x, 0.9, 0.5, backend=backend)
        assert out.shape == (0,) and out.dtype == np.dtype(dtype), fn.__name__
    for out in bigstep.optimal_score_derivatives(y, x, 0.9, 0.5, backend=backend):
        assert out.shape == (0,) and out.dtype == np.dtype(dtype)
    X = np.ones((3, 4), dtype=dtype)
    Y = np.empty((0, 4), dtype=dtype)
    assert bigstep.optimal_score(Y, X, 0.9, 0.5, backend=backend).shape == (0, 4)
    assert bigstep.posterior_mean(Y, X, 0.9, 0.5, backend=backend).shape == (0, 4)
    lp = bigstep.log_density(Y, X, 0.9, 0.5, backend=backend)
    assert lp.shape == (0,) and lp.dtype == np.dtype(dtype)
    assert bigstep.optimal_score(Y, X, 0.9, 0.5, backend=backend).dtype == np.dtype(dtype)
    # per-query levels of length 0 are fine too
    assert bigstep.optimal_score(y, x, np.empty(0), np.empty(0), backend=backend).shape == (0,)


def test_non_contiguous_and_big_endian_inputs(backend):
    """Strided views, reversed and transposed (Fortran-order) arrays, strided per-query
    levels and big-endian float64 arrays give the same bits as native contiguous copies."""
    rng = np.random.default_rng(11)
    big = rng.standard_normal(300)
    x, y = big[::3], big[1::7]
    expect = all_outputs_1d(np.ascontiguousarray(y), np.ascontiguousarray(x), 0.8, 0.3, backend)
    mu = np.full(len(y) * 2, 0.8)[::2]  # strided per-query levels
    for xx, yy, mm in ((x, y, 0.8), (x.astype(">f8"), y.astype(">f8"), 0.8), (x, y, mu), (x[::-1], y, 0.8),
                       (x, y, mu.astype(">f8"))):
        got = all_outputs_1d(yy, xx, mm, 0.3, backend)
        for k in expect:
            np.testing.assert_array_equal(got[k], expect[k], err_msg=k)
            assert got[k].dtype == np.float64
    X = rng.standard_normal((10, 60))
    Xf, Y = X.T, rng.standard_normal((30, 20))[:, ::2]   # Fortran-order (60, 10) data, strided queries
    assert not Xf.flags.c_contiguous and not Y.flags.c_contiguous
    expect = all_outputs_nd(np.ascontiguousarray(Y), np.ascontiguousarray(Xf), 0.8, 0.3, backend)
    for XX, YY in ((Xf, Y), (Xf.astype(">f8"), Y.astype(">f8")), (Xf, Y[::-1][::-1])):
        got = all_outputs_nd(YY, XX, 0.8, 0.3, backend)
        for k in expect:
            np.testing.assert_array_equal(got[k], expect[k], err_msg=k)
            assert got[k].dtype == np.float64


def test_big_endian_float32_stays_float32(backend):
    """float32 in, float32 out, whatever the byte order: big-endian float32 ('>f4') inputs
    give the float32 results of the native copies."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal(100).astype(np.float32)
    y = rng.standard_normal(40).astype(np.float32)
    expect = all_outputs_1d(y, x, 0.8, 0.3, backend)
    got = all_outputs_1d(y.astype(">f4"), x.astype(">f4"), 0.8, 0.3, backend)
    for k in expect:
        assert got[k].dtype.kind == "f" and got[k].dtype.itemsize == 4, f"{k}: dtype {got[k].dtype}"
        np.testing.assert_array_equal(got[k], expect[k], err_msg=k)
    X = rng.standard_normal((50, 6)).astype(np.float32)
    got = bigstep.optimal_score(X[:5].astype(">f4"), X.astype(">f4"), 0.8, 0.3, backend=backend)
    assert got.dtype.itemsize == 4, f"dtype {got.dtype}"
    np.testing.assert_array_equal(got, bigstep.optimal_score(X[:5], X, 0.8, 0.3, backend=backend))


# -------------------------------------------------------------------- errors


def _xy():
    return np.array([0.0, 1.0, 2.0]), np.array([0.5, 1.5])


@pytest.mark.parametrize("name, value, exc, match", [
    ("sigma", 0.0, ValueError, "sigma"),
    ("sigma", -0.5, ValueError, r"sigma.*-0\.5"),
    ("sigma", float("nan"), ValueError, "sigma"),
    ("sigma", float("inf"), ValueError, "sigma"),
    ("sigma", np.array([0.5, -1.0]), ValueError, "sigma"),
    ("sigma", np.array([0.5, 0.5, 0.5]), ValueError, "sigma"),
    ("sigma", np.ones((2, 1)), ValueError, "sigma"),
    ("sigma", "0.5", TypeError, "sigma"),
    ("sigma", 1 + 1j, TypeError, "sigma"),
    ("sigma", True, TypeError, "sigma"),
    ("mu", 0.0, ValueError, "mu"),
    ("mu", -1.0, ValueError, "mu"),
    ("mu", float("nan"), ValueError, "mu"),
    ("mu", float("-inf"), ValueError, "mu"),
    ("mu", np.array([1.0, 0.0]), ValueError, "mu"),
    ("mu", [1.0, 1.0, 1.0], ValueError, "mu"),
    ("mu", "1", TypeError, "mu"),
    ("mu", None, TypeError, "mu"),
])
def test_bad_noise_level(backend, name, value, exc, match):
    x, y = _xy()
    kwargs = {"mu": 0.9, "sigma": 0.5, name: value}
    for fn in (bigstep.optimal_score, bigstep.log_density, bigstep.posterior_mean,
               bigstep.optimal_score_derivatives):
        with pytest.raises(exc, match=match):
            fn(y, x, kwargs["mu"], kwargs["sigma"], backend=backend)
    with pytest.raises(exc, match=match):
        bigstep.optimal_score(np.ones((2, 3)), np.ones((4, 3)), kwargs["mu"], kwargs["sigma"], backend=backend)


def test_sigma_must_fit_float32(backend):
    """A sigma that underflows to 0 in float32 is a ValueError for float32 inputs."""
    x = np.array([0.0, 1.0], dtype=np.float32)
    with pytest.raises(ValueError, match="sigma"):
        bigstep.optimal_score(x, x, 0.9, 1e-50, backend=backend)
    with pytest.raises(ValueError, match="sigma"):
        bigstep.optimal_score(x, x, 0.9, np.array([0.5, 1e-60]), backend=backend)


def test_mu_must_fit_float32(backend):
    """A mu that overflows float32 is a ValueError for float32 inputs, raised cleanly
    (no numpy RuntimeWarning on the way: the suite runs with warnings as errors)."""
    x = np.array([0.0, 1.0], dtype=np.float32)
    with pytest.raises(ValueError, match="mu"):
        bigstep.optimal_score(x, x, 1e300, 0.5, backend=backend)
    with pytest.raises(ValueError, match="sigma"):
        bigstep.optimal_score(x, x, 0.9, 1e300, backend=backend)


@pytest.mark.parametrize("x, y, exc, match", [
    (np.array([]), np.array([0.5]), ValueError, "x"),                       # empty data
    (np.empty((0, 3)), np.ones((1, 3)), ValueError, "x"),                  # empty d-D data
    (np.empty((4, 0)), np.ones((1, 0)), ValueError, "x"),                  # zero columns
    (np.array([0.0, np.nan]), np.array([0.5]), ValueError, "x"),           # non-finite data
    (np.array([0.0, np.inf]), np.array([0.5]), ValueError, "x"),
    (np.array([[0.0, 1.0], [np.inf, 0.0]]), np.ones((1, 2)), ValueError, "x"),
    (np.ones((2, 2, 2)), np.ones((1, 2)), ValueError, "x"),                # wrong ndim
    (np.array(1.0), np.array([0.5]), ValueError, "x"),                     # 0-d data
    (np.ones(3), np.ones((2, 3)), ValueError, "y"),                        # 2-D y for 1-D data
    (np.ones((4, 3)), np.ones((2, 5)), ValueError, "y"),                   # mismatched d
    (np.ones((4, 3)), np.ones(5), ValueError, "y"),
    (np.ones((4, 3)), np.ones((2, 2, 3)), ValueError, "y"),
    (np.array(["a", "b"]), np.array([0.5]), TypeError, "x"),                # strings
    ("abc", np.array([0.5]), TypeError, "x"),
    (np.array([0.0, 1.0]), "0.5", TypeError, "y"),
    (np.array([0.0, 1.0]), np.array(["0.5"]), TypeError, "y"),
    (np.array([0.0, 1.0], dtype=object), np.array([0.5]), TypeError, "x"),  # object
    (np.array([0.0, 1.0]), np.array([0.5], dtype=object), TypeError, "y"),
    (np.array([0.0, 1.0 + 1j]), np.array([0.5]), TypeError, "x"),          # complex
    (np.array([0.0, 1.0]), np.array([0.5 + 0j]), TypeError, "y"),
    (np.array(["2020-01-01"], dtype="datetime64[D]"), np.array([0.5]), TypeError, "x"),
    (None, np.array([0.5]), TypeError, "x"),
])
def test_bad_data_or_queries(backend, x, y, exc, match):
    for fn in (bigstep.optimal_score, bigstep.log_density, bigstep.posterior_mean):
        with pytest.raises(exc, match=match):
            fn(y, x, 0.9, 0.5, backend=backend)


def test_scalar_query_for_1d_data(backend):
    """A Python scalar query for 1-D data is a query of shape (): the result has the shape
    of y (docs/design.md: inputs may be Python scalars; docstring: an array of the shape of y)."""
    x = np.array([0.0, 1.0, 2.5])
    for fn in (bigstep.optimal_score, bigstep.log_density, bigstep.posterior_mean):
        out = fn(0.5, x, 0.9, 0.5, backend=backend)
        assert np.shape(out) == (), f"{fn.__name__}: shape {np.shape(out)}"
        assert float(out) == float(fn(np.array([0.5]), x, 0.9, 0.5, backend=backend)[0])


def test_derivatives_need_1d_data(backend):
    with pytest.raises(ValueError, match="x"):
        bigstep.optimal_score_derivatives(np.ones((2, 3)), np.ones((4, 3)), 0.9, 0.5, backend=backend)


def test_torch_bad_dtype():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="x"):
        bigstep.optimal_score(torch.ones(2), torch.ones(3, dtype=torch.complex64), 0.9, 0.5)


@pytest.mark.parametrize("value, exc", [("nope", ValueError), ("CPP", ValueError), ("", ValueError),
                                        (None, TypeError), (1, TypeError)])
def test_unknown_backend(value, exc):
    x, y = _xy()
    for fn in (bigstep.optimal_score, bigstep.log_density, bigstep.posterior_mean,
               bigstep.optimal_score_derivatives):
        with pytest.raises(exc, match="backend"):
            fn(y, x, 0.9, 0.5, backend=value)


def test_unavailable_backend_says_why():
    """A backend that cannot run here raises ValueError naming it, the reason and what is available."""
    from bigstep import _backend

    missing = [b for b in _backend.BACKENDS if _backend.why_unavailable(b) is not None]
    if not missing:
        pytest.skip("every backend is available here")
    x, y = _xy()
    for b in missing:
        with pytest.raises(ValueError, match=rf"(?s)backend '{b}'.*not available.*Available"):
            bigstep.optimal_score(y, x, 0.9, 0.5, backend=b)


def test_torch_backend_without_torch_is_a_named_error(monkeypatch):
    """backend="torch" where torch does not import: the registry's ValueError (naming the
    backend and why), not the device path's ModuleNotFoundError."""
    from bigstep import _backend

    monkeypatch.setattr(_backend, "torch_error", lambda: "torch failed to import (ModuleNotFoundError: test)")
    x, y = _xy()
    for fn in (bigstep.optimal_score, bigstep.log_density, bigstep.posterior_mean):
        with pytest.raises(ValueError, match=r"(?s)backend 'torch' is not available.*ModuleNotFoundError: test"):
            fn(y, x, 0.9, 0.5, backend="torch")
    with pytest.raises(ValueError, match=r"backend 'torch' is not available"):
        bigstep.local.posterior_mean(np.zeros((1, 4, 4)), np.ones((2, 4, 4)), 0.9, 0.5, patch=3, backend="torch")


def test_failed_call_leaves_no_state(backend):
    """An error does not change later results (no partial state)."""
    x, y = _xy()
    before = bigstep.optimal_score(y, x, 0.9, 0.5, backend=backend)
    with pytest.raises(ValueError):
        bigstep.optimal_score(y, x, 0.9, -1.0, backend=backend)
    with pytest.raises(ValueError):
        bigstep.optimal_score(y, np.array([np.nan]), 0.9, 0.5, backend=backend)
    np.testing.assert_array_equal(bigstep.optimal_score(y, x, 0.9, 0.5, backend=backend), before)


# ---------------------------------------------------------------- threads, GIL


def _thread_problems():
    rng = np.random.default_rng(13)
    probs = []
    for k in range(4):
        if k % 2 == 0:
            probs.append((rng.uniform(-3, 3, 3000), rng.standard_normal(20000), 0.8, 0.1 * (k + 1)))
        else:
            probs.append((rng.standard_normal((200, 16)), rng.standard_normal((3000, 16)), 0.8, 0.5 * k))
    return probs


def test_concurrent_calls_are_correct(backend):
    """Four Python threads calling the kernels at once get the same bits as serial calls."""
    probs = _thread_problems()
    serial = [bigstep.optimal_score(y, x, mu, s, backend=backend) for y, x, mu, s in probs]
    results = [None] * len(probs)
    errors = []
    barrier = threading.Barrier(len(probs))

    def work(i):
        try:
            barrier.wait()
            y, x, mu, s = probs[i]
            results[i] = [bigstep.optimal_score(y, x, mu, s, backend=backend) for _ in range(3)]
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(probs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, rs in enumerate(results):
        for r in rs:
            np.testing.assert_array_equal(r, serial[i])


def test_gil_released(backend, restore_threads):
    """While one thread runs a long kernel call (one compute thread), the main thread
    keeps running Python: it makes more than 15% of the progress it makes alone.  With
    the GIL held through the kernel it would make ~0 (the call's Python part is < 3%
    of it)."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal(200_000)  # large enough that a fast machine needs q << 2e6 for 0.3 s

    def call(q):
        bigstep.set_num_threads(1)  # per thread, for OpenMP and numba
        return bigstep.optimal_score(rng.uniform(-3, 3, q), x, 0.8, 1.0, backend=backend)

    q = 200
    call(q)  # warm up (JIT)
    while True:  # size the call to take >= 0.3 s
        t0 = time.perf_counter()
        call(q)
        dt = time.perf_counter() - t0
        if dt >= 0.3 or q >= 2_000_000:
            break
        q = int(q * min(10.0, 0.4 / max(dt, 1e-4)))
    assert dt >= 0.3, "test set-up: could not make a call long enough"

    def count_while_alive(th):
        n, t0 = 0, time.perf_counter()
        th.start()
        while th.is_alive():
            n += 1
        elapsed = time.perf_counter() - t0
        th.join()
        return n, elapsed

    n0, e0 = count_while_alive(threading.Thread(target=time.sleep, args=(0.2,)))
    rate = n0 / e0  # iterations per second of this loop with nothing else running
    n, elapsed = count_while_alive(threading.Thread(target=call, args=(q,)))
    progress = n / (rate * elapsed)
    assert progress > 0.15, f"main thread progress {progress:.2f} during a {elapsed:.2f} s kernel call"


# -------------------------------------------------------------- properties

_finite = dict(allow_nan=False, allow_infinity=False)
xs_1d = st.lists(st.floats(-5, 5, **_finite), min_size=1, max_size=25)
ys_1d = st.lists(st.floats(-8, 8, **_finite), min_size=1, max_size=8)
mus = st.floats(0.1, 1.0, **_finite)
sigmas = st.floats(0.02, 3.0, **_finite)


@settings(max_examples=30)
@given(x=xs_1d, y=ys_1d, mu=mus, sigma=sigmas, c=st.floats(-10, 10, **_finite))
def test_property_shift_invariance(backend, x, y, mu, sigma, c):
    """x -> x + c, y -> y + mu c leaves s* unchanged (and moves E[W|y] by c)."""
    x, y = np.array(x), np.array(y)
    xs, ys = x + c, y + mu * c
    s0 = bigstep.optimal_score(y, x, mu, sigma, backend=backend)
    s1 = bigstep.optimal_score(ys, xs, mu, sigma, backend=backend)
    ref = np_1d(y, x, mu, sigma)
    scale = np.abs(y) + abs(mu * c) + mu * (np.abs(x).max() + abs(c))  # the shifted inputs' size
    tol = PAIR_FACTOR * allowed(np.float64, np.abs(ref["score"]), (1 + mu**2 * ref["var"] / sigma**2) / sigma**2,
                                scale)
    check_bound("shifted s*", s1, s0, tol, f"(c={c})")


@settings(max_examples=20)
@given(data=st.data(), mu=mus, sigma=sigmas)
def test_property_shift_invariance_nd(backend, data, mu, sigma):
    d = data.draw(st.integers(1, 4))
    n = data.draw(st.integers(1, 12))
    coord = st.floats(-4, 4, **_finite)
    X = np.array(data.draw(st.lists(st.lists(coord, min_size=d, max_size=d), min_size=n, max_size=n)))
    Y = np.array(data.draw(st.lists(st.lists(st.floats(-6, 6, **_finite), min_size=d, max_size=d),
                                    min_size=1, max_size=5)))
    c = np.array(data.draw(st.lists(st.floats(-10, 10, **_finite), min_size=d, max_size=d)))
    s0 = bigstep.optimal_score(Y, X, mu, sigma, backend=backend)
    s1 = bigstep.optimal_score(Y + mu * c, X + c, mu, sigma, backend=backend)
    ref = np_nd(Y, X, mu, sigma)
    Ys, Xs = Y + mu * c, X + c
    scale = np.linalg.norm(Ys, axis=1) + np.linalg.norm(Y, axis=1) + mu * (np.linalg.norm(X, axis=1).max()
                                                                           + np.linalg.norm(Xs, axis=1).max())
    tol = PAIR_FACTOR * allowed(np.float64, np.linalg.norm(ref["score"], axis=1),
                                (1 + mu**2 * ref["cov_max"] / sigma**2) / sigma**2, scale)
    check_bound("shifted s*", s1, s0, tol, f"(c={c})")


@settings(max_examples=30)
@given(x=xs_1d, y=ys_1d, mu=mus, sigma=sigmas, seed=st.integers(0, 2**32 - 1))
def test_property_permutation_invariance(backend, x, y, mu, sigma, seed):
    """The order of the data does not matter (1-D and d-D)."""
    x, y = np.array(x), np.array(y)
    perm = np.random.default_rng(seed).permutation(len(x))
    ref = np_1d(y, x, mu, sigma)
    b = bounds_1d(ref, y, x, mu, sigma, np.float64)
    a, p = all_outputs_1d(y, x, mu, sigma, backend), all_outputs_1d(y, x[perm], mu, sigma, backend)
    for k in ("score", "d1", "log_density", "mean"):
        check_bound(k, p[k], a[k], PAIR_FACTOR * b[k], "(permuted data)")
    X = np.stack([x, np.sin(3 * x), x**2 / 5], axis=1)
    Y = np.stack([y, np.cos(y), y / 3], axis=1)
    bn = bounds_nd(np_nd(Y, X, mu, sigma), Y, X, mu, sigma, np.float64)
    a, p = all_outputs_nd(Y, X, mu, sigma, backend), all_outputs_nd(Y, X[perm], mu, sigma, backend)
    for k in ("score", "log_density", "mean"):
        check_bound(k, p[k], a[k], PAIR_FACTOR * bn[k], "(permuted d-D data)")


@settings(max_examples=30)
@given(x=xs_1d, y=ys_1d, mu=mus, sigma=sigmas)
def test_property_score_is_tweedie(backend, x, y, mu, sigma):
    """s* = (mu E[W|y] - y)/sigma^2 (Tweedie), and E[W|y] lies in [min x, max x]."""
    x, y = np.array(x), np.array(y)
    s = bigstep.optimal_score(y, x, mu, sigma, backend=backend)
    m = bigstep.posterior_mean(y, x, mu, sigma, backend=backend)
    ref = np_1d(y, x, mu, sigma)
    b = bounds_1d(ref, y, x, mu, sigma, np.float64)
    tol = b["score"] + mu / sigma**2 * b["mean"] + 4 * eps(np.float64) * (np.abs(y) + mu * np.abs(m)) / sigma**2
    check_bound("s* vs Tweedie", s, (mu * m - y) / sigma**2, tol)
    spread = 4 * eps(np.float64) * np.abs(x).max()
    assert np.all(m >= x.min() - spread) and np.all(m <= x.max() + spread)


@settings(max_examples=30)
@given(x=xs_1d, y=ys_1d, mu=mus, sigma=st.floats(0.1, 3.0, **_finite))
def test_property_score_is_gradient_of_log_density(backend, x, y, mu, sigma):
    """s* = d/dy log p: central differences of log_density with h = 1e-4 sigma; allowed
    the truncation h^2/6 |s*''| (bounded with the exact s*'' and FD_TRUNC_MARGIN), the
    rounding of log p over h and the error of s*."""
    x, y = np.array(x), np.array(y)
    h = 1e-4 * sigma
    ref = np_1d(y, x, mu, sigma)
    b = bounds_1d(ref, y, x, mu, sigma, np.float64)
    fd = central_difference(lambda z: bigstep.log_density(z, x, mu, sigma, backend=backend), y, h)
    # |s*''| <= mu^3 E|W - EW|^3 / sigma^6; over [y - h, y + h] at most FD_TRUNC_MARGIN times that at y
    trunc = FD_TRUNC_MARGIN * h**2 / 6 * mu**3 * (ref["abs3"] + 1e-3 * ref["var"] ** 1.5 + 1e-12) / sigma**6
    tol = trunc + 2 * b["log_density"] / (2 * h) * 2 + b["score"]
    check_bound("s* vs d/dy log p", bigstep.optimal_score(y, x, mu, sigma, backend=backend), fd, tol)
