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
