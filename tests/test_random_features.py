"""The random-features DSM family (bigstep.rf, issue 8).

References are independent numpy float64 computations written from the definitions:
the noisy samples are rebuilt from bigstep.gaussian_noise with the documented streams
(6: W, 7: DSM noise), features by numpy, the ridge solution by numpy.linalg.lstsq on
the stacked least-squares system, Gaussian expectations by plain Monte Carlo with
numpy's own generator (an independent source of randomness).

Tolerances.  Sums over N = n m samples agree with the numpy reference up to rounding:
RTOL_SUM = 1e-12 relative to the largest entry (K = sum f f^T of at most 10^4 terms;
the kernels and BLAS sum in different orders, error ~ N eps in the worst case, ~1e-13
seen).  Solutions: RTOL_SOLVE = 1e-8 relative, since cond(K + lam I) reaches ~1e4 here.
Closed-form expectations vs Monte Carlo: within 4 standard errors (false failure rate
~6e-5 per comparison for a normal mean; the draws are fixed by seeds, so the suite is
deterministic).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import bigstep
from bigstep import rf

RTOL_SUM = 1e-12
RTOL_SOLVE = 1e-8
Z_MC = 4.0


def _data(n=30, d=12, seed=3):
    return bigstep.gaussian_noise(seed, (n, d), stream=11)


def _reference_samples(x, t, m, seed):
    n, d = x.shape
    mu, delta = math.exp(-t), -math.expm1(-2 * t)
    xi = bigstep.gaussian_noise(seed, (n * m, d), stream=11)
    return mu * np.repeat(x, m, axis=0) + math.sqrt(delta) * xi, xi


def _act(rho, u):
    from scipy.special import erf

    return {"relu": np.maximum(u, 0), "relu_centered": np.maximum(u, 0) - 1 / math.sqrt(2 * math.pi),
            "tanh": np.tanh(u), "erf": erf(u), "linear": u}[rho]


# ------------------------------------------------------------------ the streamed Gram


@pytest.mark.parametrize("rho", rf.ACTIVATIONS)
def test_gram_matches_numpy(backend, rho):
    x, t, m, p, seed = _data(), 0.4, 3, 21, 5
    model = rf.fit(x, t, m, p, rho, 1e-3, seed, backend=backend)
    y, xi = _reference_samples(x, t, m, seed)
    W = bigstep.gaussian_noise(seed, (p, x.shape[1]), stream=10)
    F = _act(rho, y @ W.T / math.sqrt(x.shape[1]))
    N = y.shape[0]
    np.testing.assert_array_equal(model.W, W)
    for got, want in ((model.K, F.T @ F / N), (model.R, F.T @ xi / N)):
        assert np.abs(got - want).max() <= RTOL_SUM * np.abs(want).max()
    assert model.xi2 == pytest.approx((xi ** 2).sum() / N, rel=RTOL_SUM)
    # features of arbitrary inputs (the Monte Carlo path) through the same backend
    assert np.abs(model.features(y[:50]) - F[:50]).max() <= RTOL_SUM * max(1.0, np.abs(F).max())


def test_cpp_and_numba_agree():
    if "cpp" not in bigstep._backend.available():
        pytest.skip("no compiled extension")
    x = _data(n=45, d=17)
    for rho in rf.ACTIVATIONS:
        a = rf.fit(x, 0.3, 5, 37, rho, 1e-2, 2, backend="cpp")
        b = rf.fit(x, 0.3, 5, 37, rho, 1e-2, 2, backend="numba")
        assert np.abs(a.K - b.K).max() <= RTOL_SUM * np.abs(a.K).max()
        assert np.abs(a.R - b.R).max() <= RTOL_SUM * np.abs(a.R).max()
        assert np.abs(a.A - b.A).max() <= RTOL_SOLVE * np.abs(a.A).max()


def test_gram_independent_of_thread_count(restore_threads):
    """Each entry of K and R is summed by one thread in sample order: bit-identical sums for
    any thread count."""
    if "cpp" not in bigstep._backend.available():
        pytest.skip("no compiled extension")
    x = _data(n=40, d=9)
    results = []
    for threads in (1, 2, 3):
        bigstep.set_num_threads(threads)
        model = rf.fit(x, 0.4, 7, 50, "erf", 1e-2, 3, backend="cpp")
        results.append((model.K, model.R, model.xi2))
    for K, R, xi2 in results[1:]:
        assert np.array_equal(K, results[0][0]) and np.array_equal(R, results[0][1]) and xi2 == results[0][2]


# ------------------------------------------------------------------ the ridge solution


@pytest.mark.parametrize("lam, p", [(1e-2, 15), (0.0, 15), (0.0, 200), (0.5, 200)])
def test_ridge_matches_lstsq(backend, lam, p):
    """A* against numpy's least-squares solve of the train loss written as one stacked
    system; lam = 0 with p > n m: the minimum-norm solution (lstsq's too)."""
    x, t, m, seed = _data(n=20, d=6), 0.7, 4, 1
    d = x.shape[1]
    model = rf.fit(x, t, m, p, "tanh", lam, seed, backend=backend)
    y, xi = _reference_samples(x, t, m, seed)
    N, delta = y.shape[0], -math.expm1(-2 * t)
    W = bigstep.gaussian_noise(seed, (p, d), stream=10)
    Phi = np.tanh(y @ W.T / math.sqrt(d)) / math.sqrt(p)
    # loss(A) = (1/(N d)) ||sqrt(Delta) Phi A^T + xi||^2 + Delta lam / (p d) ||A||^2
    M = np.vstack([math.sqrt(delta / N) * Phi, math.sqrt(delta * lam / p) * np.eye(p)])
    T = np.vstack([-xi / math.sqrt(N), np.zeros((p, d))])
    At = np.linalg.lstsq(M, T, rcond=1e-12)[0]
    assert np.abs(model.A - At.T).max() <= RTOL_SOLVE * np.abs(At).max()
    direct = (np.sum((math.sqrt(delta) * Phi @ At + xi) ** 2) / (N * d)
              + delta * lam / (p * d) * np.sum(At ** 2))
    assert model.train_loss() == pytest.approx(direct, rel=1e-9, abs=1e-12)


# ------------------------------------------------------------------ closed forms vs Monte Carlo


@pytest.mark.parametrize("rho", rf.ACTIVATIONS)
def test_exact_losses_vs_monte_carlo(rho):
    x, t = _data(n=25, d=10), 0.6
    model = rf.fit(x, t, 2, 16, rho, 1e-2, 4)
    d, delta = model.d, model.delta
    rng = np.random.default_rng(123)
    q = 40000
    xf, xi = rng.standard_normal((q, d)), rng.standard_normal((q, d))
    y = math.exp(-t) * xf + math.sqrt(delta) * xi
    s = -(_act(rho, y @ model.W.T / math.sqrt(d)) @ model.Z) / math.sqrt(delta)
    checks = [(model.test_loss(), np.sum((math.sqrt(delta) * s + xi) ** 2, axis=1) / d),
              (model.score_error(), np.sum((s + y) ** 2, axis=1) / d)]
    for exact, v in checks:
        assert abs(exact - v.mean()) <= Z_MC * v.std(ddof=1) / math.sqrt(q)
    assert model.test_loss() == pytest.approx(1 - delta + delta * model.score_error(), rel=1e-12)
    # the noise-averaged (empirical test) loss: exact series vs the Monte Carlo estimate
    value, se = model.empirical_test_loss(n_mc=20000, seed=7)
    assert abs(model.noise_averaged_loss() - value) <= Z_MC * se


@pytest.mark.parametrize("rho", ["relu", "tanh", "linear"])
def test_noise_averaged_fit_vs_large_m(rho):
    """m = inf (exact noise average) against the Monte Carlo training sums at large m:
    each entry of K within 4 standard errors of the per-sample mean."""
    x, t = _data(n=6, d=5), 0.5
    inf = rf.fit(x, t, math.inf, 7, rho, 1e-2, 0)
    m = 20000
    y, xi = _reference_samples(x, t, m, 0)
    F = _act(rho, y @ inf.W.T / math.sqrt(5))
    prod = F[:, :, None] * F[:, None, :]
    se = prod.std(axis=0, ddof=1) / math.sqrt(F.shape[0])
    assert (np.abs(inf.K - prod.mean(axis=0)) <= Z_MC * se + 1e-12).all()
    prod = F[:, :, None] * xi[:, None, :]
    se = prod.std(axis=0, ddof=1) / math.sqrt(F.shape[0])
    assert (np.abs(inf.R - prod.mean(axis=0)) <= Z_MC * se + 1e-12).all()
    assert inf.series_bound < 1e-10


def test_s_star_distance_matches_definition(backend):
    """The Monte Carlo s*-distance against numpy on the same documented draws (stream 13 at
    offset n_mc d, training point j mod n), s* written from its softmax definition."""
    x, t, n_mc = _data(n=8, d=4), 0.2, 500
    model = rf.fit(x, t, 1, 40, "relu", 1e-3, 0, backend=backend)
    mu, sigma = math.exp(-t), math.sqrt(-math.expm1(-2 * t))
    xi = bigstep.gaussian_noise(1, (n_mc, 4), stream=13, offset=n_mc * 4)
    y = mu * x[np.arange(n_mc) % 8] + sigma * xi
    logits = -((y[:, None, :] - mu * x[None]) ** 2).sum(-1) / (2 * sigma ** 2)
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    s_star = (mu * w @ x - y) / sigma ** 2
    s_a = -(np.maximum(y @ model.W.T / 2.0, 0) @ model.Z) / math.sqrt(model.delta)
    v = ((s_a - s_star) ** 2).sum(axis=1) / 4
    got, se = model.s_star_distance(n_mc=n_mc, seed=1)
    assert got == pytest.approx(v.mean(), rel=1e-9)
    assert se == pytest.approx(v.std(ddof=1) / math.sqrt(n_mc), rel=1e-9)


# ------------------------------------------------------------------ dynamics


@pytest.mark.parametrize("rho", ["relu", "erf"])
def test_gd_dynamics_vs_explicit_steps(backend, rho):
    x, t = _data(n=15, d=8), 0.5
    model = rf.fit(x, t, 3, 24, rho, 1e-3, 2, backend=backend)
    d, p, delta = model.d, model.p, model.delta
    K, R, lam = model.K, model.R, model.lam
    G, B = K / p, R / math.sqrt(p)
    lmax = np.linalg.eigvalsh(K + lam * np.eye(p)).max()
    lr = 0.9 * d * p / (delta * lmax)  # below the stability limit d p / (Delta lambda_max)
    A = np.zeros((d, p))
    times = [0, 1, 10, 100, 1000]
    got = model.dynamics(times, lr=lr)
    for k in range(1, 1001):
        grad = (2 * delta / d) * A @ (G + lam / p * np.eye(p)) + (2 * math.sqrt(delta) / d) * B.T
        A = A - lr * grad
        if k in times:
            j = times.index(k)
            Z = -math.sqrt(delta / p) * A.T
            train, test, err = model._losses(Z)
            assert got["train_loss"][j] == pytest.approx(train, rel=1e-9)
            assert got["test_loss"][j] == pytest.approx(test, rel=1e-9)
            assert got["score_error"][j] == pytest.approx(err, rel=1e-9)
    np.testing.assert_allclose(model.A_at(1000, lr=lr), A, rtol=1e-8, atol=1e-10 * np.abs(A).max())
    # gradient flow: the long-time limit is the ridge solution, and tiny steps follow the flow
    np.testing.assert_allclose(model.A_at(1e12), model.A, rtol=1e-6, atol=1e-8 * np.abs(model.A).max())
    tau = 200 * lr
    flow = model.A_at(tau)
    gd = model.A_at(20000, lr=tau / 20000)
    assert np.abs(flow - gd).max() <= 1e-3 * np.abs(flow).max()
    d0 = model.dynamics([0.0])
    assert d0["test_loss"][0] == pytest.approx(1.0) and d0["train_loss"][0] == pytest.approx(model.xi2 / d)


# ------------------------------------------------------------------ learning curves


def test_interpolation_peak_near_nm():
    """Median over 3 seeds of the test loss on a quick grid (d = 20, n = 20): the maximum
    sits at p = n m for m = 1 and m = 8 (grid neighbours are 25% away), is well above the
    large-p plateau, and is lower for m = 8 than for m = 1."""
    d, psi_n = 20, 1.0
    psi = np.array([0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2, 3, 4, 6, 8, 10, 12, 16])
    df = rf.learning_curve(d, psi_n, psi, [1, 8], t=0.5, lam=1e-4, rho="relu", seeds=[0, 1, 2])
    curve = df.groupby(["m", "p"]).test_loss.median()
    n = int(psi_n * d)
    peaks = {}
    for m in (1, 8):
        c = curve.loc[m]
        assert int(c.idxmax()) == n * m, (m, c.idxmax())
        peaks[m] = c.max()
        assert c.max() > 1.5 * c.iloc[-1]  # a peak, not a monotone curve
    assert peaks[8] < peaks[1]
    assert set(df.regime) == {"p<n", "n<=p<nm", "p>=nm"}


def test_learning_curve_matches_fit(backend):
    df = rf.learning_curve(10, 2.0, [0.5, 3.0], 2, t=0.3, lam=1e-2, rho="erf", seeds=[4], backend=backend)
    x = bigstep.gaussian_noise(4, (20, 10), stream=12)
    for _, row in df.iterrows():
        model = rf.fit(x, 0.3, 2, int(row.p), "erf", 1e-2, 4, backend=backend)
        assert row.test_loss == pytest.approx(model.test_loss(), rel=1e-9)
        assert row.train_loss == pytest.approx(model.train_loss(), rel=1e-9)


def test_learning_curve_needs_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install bigstep\[repro\]"):
        rf.learning_curve(4, 1.0, [1.0], 1, t=0.5)


# ------------------------------------------------------------------ sampling


def test_memorized_fraction_runs():
    x = _data(n=5, d=2)
    score = rf.RFScore(x, [0.01, 0.1, 1.0], m=1, p=60, lam=0.0)
    frac, samples = rf.memorized_fraction(score, 50, n_steps=20, seed=0)
    assert samples.shape == (50, 2) and 0.0 <= frac <= 1.0


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("kwargs, name", [
    (dict(p=0), "p"), (dict(lam=-1e-3), "lam"), (dict(t=0.0), "t"), (dict(t=-1.0), "t"),
    (dict(m=0), "m"), (dict(rho="softplus"), "rho"), (dict(lam=float("nan")), "lam"),
    (dict(x=np.zeros(5)), "x"), (dict(x=np.full((3, 2), np.nan)), "x"), (dict(seed=-1), "seed"),
])
def test_bad_parameters(kwargs, name):
    args = dict(x=_data(n=4, d=3), t=0.5, m=2, p=3, rho="relu", lam=0.1, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        rf.fit(**args)


@pytest.mark.parametrize("kwargs, name", [
    (dict(d=0), "d"), (dict(psi_n=0.0), "psi_n"), (dict(psi_p=[0.5, -1.0]), "psi_p"), (dict(lam=-1.0), "lam"),
    (dict(t=0.0), "t"), (dict(m=[1, 0]), "m"),
])
def test_bad_curve_parameters(kwargs, name):
    args = dict(d=4, psi_n=1.0, psi_p=[1.0], m=1, t=0.5, lam=0.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        rf.learning_curve(**args)


def test_dynamics_bad_lr():
    model = rf.fit(_data(n=4, d=3), 0.5, 1, 3)
    with pytest.raises(ValueError, match="lr"):
        model.dynamics([1.0], lr=-1.0)
    with pytest.raises(ValueError, match="times"):
        model.dynamics([-1.0])


# ------------------------------------------------------------------ reproduction


def test_reproduce_rf_curves_smoke(tmp_path, monkeypatch):
    """`bigstep reproduce rf-curves --quick` writes its CSV, PNG and summary (tiny sizes here)."""
    from bigstep.reproduce import reproduce, rf_curves

    monkeypatch.setattr(rf_curves, "_QUICK", dict(d=8, psi_n=0.5, n_psi=8, span=2.0, seeds=1))
    report = reproduce("rf-curves", tmp_path, quick=True, progress=False)
    for name in ("rf_curves.csv", "rf_curves.png", "summary.md"):
        assert (tmp_path / name).stat().st_size > 0
    assert report.claim == rf_curves.CLAIM and report.supported in (True, False)
    import pandas as pd

    df = pd.read_csv(tmp_path / "rf_curves.csv")
    assert {"p", "m", "test_loss", "train_loss", "regime"} <= set(df.columns)
    assert "p = n m" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize("name", ["bigstep.rf._fit", "bigstep.rf._curve", "bigstep.rf._sampling"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0 and result.attempted > 0


_MEMORY_SCRIPT = """
import resource, sys
import numpy as np
import bigstep
from bigstep import rf
backend = sys.argv[1]
x = bigstep.gaussian_noise(0, (400, 20))
rf.fit(x[:4], 0.5, 2, 8, backend=backend)  # imports, compilation, thread pools
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model = rf.fit(x, 0.5, 60, 600, backend=backend)  # n m p = 1.4e7 doubles = 115 MB if materialised
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024.0)
"""


@pytest.mark.parametrize("name", ["cpp", "numba"])
def test_gram_memory_does_not_grow_with_n_m(name):
    """The fit streams over the n m samples: its peak memory is O(p^2 + p d) (a few MB here),
    not the 115 MB of the n m x p feature matrix (ru_maxrss, fresh subprocess)."""
    import subprocess

    if name not in bigstep._backend.available():
        pytest.skip(f"{name} backend not available")
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, name], capture_output=True, text=True, check=True)
    assert float(out.stdout.strip().splitlines()[-1]) < 40.0


def test_learning_curve_along_training():
    """Curves at training times: time 0 is the zero score (test loss 1), a long gradient flow
    reaches the converged fit, and explicit-GD rows agree with RFModel.dynamics."""
    kw = dict(t=0.5, lam=1e-2, rho="relu", seeds=[1])
    final = rf.learning_curve(10, 1.0, [0.5, 2.0], [2], **kw)
    flow = rf.learning_curve(10, 1.0, [0.5, 2.0], [2], times=[0.0, 1e3, 1e12], **kw)
    assert len(flow) == 6 and set(flow.time) == {0.0, 1e3, 1e12}
    np.testing.assert_allclose(flow[flow.time == 0].test_loss, 1.0)
    np.testing.assert_allclose(flow[flow.time == 1e12].test_loss.to_numpy(), final.test_loss.to_numpy(), rtol=1e-6)
    x = bigstep.gaussian_noise(1, (10, 10), stream=12)
    model = rf.fit(x, 0.5, 2, 20, "relu", 1e-2, 1)
    gd = rf.learning_curve(10, 1.0, [2.0], [2], times=[5, 50], lr=20.0, **kw)
    np.testing.assert_allclose(gd.test_loss, model.dynamics([5, 50], lr=20.0)["test_loss"], rtol=1e-9)
