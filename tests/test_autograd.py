"""Differentiable s*: optimal_score, log_density and posterior_mean are
torch.autograd.Functions with exact streaming backward passes, checked against finite
differences (torch.autograd.gradcheck, float64) on every backend."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bigstep

torch = pytest.importorskip("torch")

FUNCS = [bigstep.optimal_score, bigstep.log_density, bigstep.posterior_mean]


def _data(n, d, seed):
    rng = np.random.default_rng(seed)
    shape = (n,) if d == 0 else (n, d)
    return torch.tensor(rng.standard_normal(shape), dtype=torch.float64)


@pytest.mark.parametrize("fn", FUNCS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("d", [0, 1, 3], ids=["1d", "d1", "d3"])
def test_gradcheck_y_and_x(backend, fn, d):
    """Exact gradients with respect to queries and data match central differences."""
    x = _data(7, d, 0).requires_grad_(True)
    y = (1.3 * _data(5, d, 1)).requires_grad_(True)
    for mu, sigma in ((0.8, 0.6), (0.9, torch.linspace(0.3, 1.2, 5, dtype=torch.float64))):
        assert torch.autograd.gradcheck(lambda yy, xx: fn(yy, xx, mu, sigma, backend=backend), (y, x),
                                        eps=1e-6, atol=1e-8, rtol=1e-7)


@pytest.mark.parametrize("fn", FUNCS, ids=lambda f: f.__name__)
def test_gradcheck_small_sigma_and_single_query(backend, fn):
    """Sharp weights (sigma = 0.05, queries between data points) and one d-D query of shape (d,)."""
    x = torch.tensor([[-1.0, 0.2], [0.0, 0.1], [0.05, -0.02], [1.0, 0.5]], dtype=torch.float64,
                     requires_grad=True)
    y = torch.tensor([[0.02, 0.03], [0.5, 0.3], [-0.4, 0.1]], dtype=torch.float64, requires_grad=True)
    # derivatives up to ~400 here (1/sigma^2): central differences are good to ~1e-9 relative
    assert torch.autograd.gradcheck(lambda yy, xx: fn(yy, xx, 0.95, 0.05, backend=backend), (y, x),
                                    eps=1e-7, atol=1e-5, rtol=1e-6)
    y1 = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda yy, xx: fn(yy, xx, 0.9, 0.7, backend=backend), (y1, x))


def test_jacobian_of_score_is_the_covariance_formula(backend):
    """ds*/dy = (mu^2/sigma^4) Cov(W|y) - I/sigma^2, computed independently in numpy."""
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((9, 2))
    y0 = np.array([0.3, -0.4])
    mu, sigma = 0.7, 0.5
    J = torch.autograd.functional.jacobian(
        lambda yy: bigstep.optimal_score(yy, torch.from_numpy(xs), mu, sigma, backend=backend),
        torch.from_numpy(y0))
    logits = -((y0 - mu * xs) ** 2).sum(1) / (2 * sigma ** 2)
    w = np.exp(logits - logits.max())
    w /= w.sum()
    m = w @ xs
    cov = (xs - m).T @ ((xs - m) * w[:, None])
    np.testing.assert_allclose(J.numpy(), mu ** 2 / sigma ** 4 * cov - np.eye(2) / sigma ** 2, rtol=1e-12,
                               atol=1e-13)


def test_float32_gradients_keep_dtype_and_match_float64(backend):
    x = _data(30, 2, 5)
    y = _data(8, 2, 6)
    grads = []
    for dt in (torch.float32, torch.float64):
        yy = y.to(dt).requires_grad_(True)
        xx = x.to(dt).requires_grad_(True)
        bigstep.optimal_score(yy, xx, 0.9, 0.4, backend=backend).pow(2).sum().backward()
        assert yy.grad.dtype == dt and xx.grad.dtype == dt
        grads.append((yy.grad.double(), xx.grad.double()))
    for g32, g64 in zip(*grads):
        torch.testing.assert_close(g32, g64, rtol=2e-4, atol=2e-4 * float(g64.abs().max()))


def test_no_graph_without_requires_grad(backend):
    x = _data(10, 2, 7)
    y = _data(3, 2, 8)
    out = bigstep.optimal_score(y, x, 0.9, 0.4, backend=backend)
    assert not out.requires_grad
    with torch.no_grad():
        out = bigstep.optimal_score(y.requires_grad_(True), x, 0.9, 0.4, backend=backend)
    assert not out.requires_grad


def test_levels_and_derivatives_are_not_differentiated():
    x = _data(10, 0, 9).requires_grad_(True)
    y = _data(3, 0, 10)
    with pytest.raises(TypeError, match=r"sigma requires grad.*y and x only"):
        bigstep.optimal_score(y, x, 0.9, torch.tensor(0.5, dtype=torch.float64, requires_grad=True))
    with pytest.raises(TypeError, match=r"x requires grad"):
        bigstep.optimal_score_derivatives(y, x, 0.9, 0.5)


_MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys, torch, numpy as np, bigstep
    backend = sys.argv[1]
    n = q = 20000
    x = torch.randn(n, dtype=torch.float64, requires_grad=True)
    y = torch.randn(q, dtype=torch.float64, requires_grad=True)
    bigstep.optimal_score(y[:10], x[:10], 0.9, 0.3, backend=backend).sum().backward()  # compile, warm up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bigstep.optimal_score(y, x, 0.9, 0.3, backend=backend).sum().backward()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    print((after - before) / 1024)
""")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("BIGSTEP_TEST_SLOW"), reason="set BIGSTEP_TEST_SLOW=1")
@pytest.mark.parametrize("name", ["cpp", "numba"])
def test_backward_memory_is_linear(name):
    """n = q = 20,000: a q x n float64 buffer would be 3.2 GB; the backward pass stays far
    below (peak RSS growth < 200 MB)."""
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, name], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[-1]) < 200, out.stdout


def _centred_vjp_y(y, x, mu, sigma, g):
    """Independent reference: c Cov(W|y) g per query, the covariance summed about the
    mean (numpy float64, distance-form log-sum-exp): no cancellation at small sigma."""
    out = np.empty_like(y)
    for p in range(len(y)):
        logits = -((y[p] - mu * x) ** 2).sum(1) / (2 * sigma ** 2)
        w = np.exp(logits - logits.max())
        w /= w.sum()
        dx = x - w @ x
        out[p] = mu / sigma ** 2 * (dx.T @ (w * (dx @ g[p])))
    return out


@pytest.mark.parametrize("dtype, sigma, rtol", [(torch.float64, 0.01, 1e-9), (torch.float32, 0.05, 1e-5)],
                         ids=["f64-sigma0.01", "f32-sigma0.05"])
def test_posterior_mean_gradient_at_sharp_weights(backend, dtype, sigma, rtol):
    """Queries next to training points: Cov(W|y) is tiny (down to 1e-300 here) and
    E[(g.W) W] - (g.m) m would cancel; each query's gradient (c Cov g) keeps its relative
    accuracy (rows below the dtype's smallest normal compare against that)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((200, 3)).astype(np.float32).astype(np.float64)  # exact in float32
    y = (0.95 * x[:20] + 0.01 * rng.standard_normal((20, 3))).astype(np.float32).astype(np.float64)
    g = rng.standard_normal((20, 3))
    yt = torch.tensor(y, dtype=dtype, requires_grad=True)
    out = bigstep.posterior_mean(yt, torch.tensor(x, dtype=dtype), 0.95, sigma, backend=backend)
    (out * torch.tensor(g, dtype=dtype)).sum().backward()
    want = _centred_vjp_y(y, x, 0.95, sigma, g)
    scale = np.maximum(np.abs(want).max(1), float(torch.finfo(dtype).tiny))
    err = np.abs(yt.grad.double().numpy() - want).max(1) / scale
    assert err.max() < rtol, err


def test_a_nan_query_outside_the_loss_leaves_the_data_gradient_finite(backend):
    """The forward pass keeps a NaN query's NaN in its own row; a loss that masks that row
    out gives it a zero cotangent, and the data's gradient stays finite (and equal to the
    gradient without the query)."""
    x = _data(30, 2, 12)
    y = _data(4, 2, 13)
    y[1, 0] = float("nan")
    keep = torch.tensor([True, False, True, True])
    for fn in FUNCS:
        xx = x.clone().requires_grad_(True)
        yy = y.clone().requires_grad_(True)
        fn(yy, xx, 0.9, 0.5, backend=backend)[keep].pow(2).sum().backward()
        xc = x.clone().requires_grad_(True)
        yc = y[keep].clone().requires_grad_(True)
        fn(yc, xc, 0.9, 0.5, backend=backend).pow(2).sum().backward()
        torch.testing.assert_close(xx.grad, xc.grad, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(yy.grad[keep], yc.grad, rtol=1e-12, atol=1e-12)
        assert (yy.grad[1] == 0).all()


def test_the_other_argument_may_be_any_host_array(backend):
    """x requires grad; y is a list, numpy (read-only too) or a DLPack-only producer: the
    graph is built (an unknown producer used to fail with a dtype error, a read-only array
    with torch's non-writable warning)."""
    from test_arrays import DLPackOnly

    x = _data(20, 2, 14).requires_grad_(True)
    y = np.random.default_rng(15).standard_normal((3, 2))
    want = torch.autograd.grad(bigstep.optimal_score(torch.from_numpy(y), x, 0.9, 0.5, backend=backend).sum(), x)
    ro = y.copy()
    ro.flags.writeable = False
    for yy in (y, y.tolist(), DLPackOnly(y), ro):
        got = torch.autograd.grad(bigstep.optimal_score(yy, x, 0.9, 0.5, backend=backend).sum(), x)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
