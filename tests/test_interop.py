"""Arrays at the boundary of the exact ReLU-risk family, the networks, bigstep.rf, theory
and the trainers: DLPack producers and torch tensors in, the caller's array type out,
read-only and memory-mapped data read without copies, gradients refused, not dropped."""

from __future__ import annotations

import numpy as np
import pytest

import bigstep
from bigstep import rf, theory
from test_arrays import DLPackOnly

torch = pytest.importorskip("torch")

X = np.linspace(-1.5, 1.5, 9)
MU, SIGMA = 0.9, 0.4


def _net():
    return bigstep.ReLUNet1D.init(6, seed=2, bias=0.2)


def _same(got, ref, kind):
    assert isinstance(got, kind), type(got)
    np.testing.assert_array_equal(np.asarray(got), ref)


def test_networks_answer_in_the_callers_type():
    net = _net()
    y = np.linspace(-2.0, 2.0, 7)
    ref = net(y)
    assert isinstance(ref, np.ndarray)
    _same(net(torch.from_numpy(y)), ref, torch.Tensor)
    _same(net(DLPackOnly(y)), ref, np.ndarray)
    nd = bigstep.ReLUNetND(np.eye(2), np.zeros(2), np.eye(2))
    y2 = np.array([[0.5, -1.0], [1.0, 2.0]])
    _same(nd(torch.from_numpy(y2)), nd(y2), torch.Tensor)
    _same(nd(DLPackOnly(y2)), nd(y2), np.ndarray)
    with pytest.raises(TypeError, match="y requires grad"):
        net(torch.from_numpy(y).requires_grad_(True))


def test_exact_risk_family_takes_any_array():
    net = _net()
    ref = bigstep.DSMRisk(X, MU, SIGMA, wrt="all")
    for x, kind in ((torch.from_numpy(X), torch.Tensor), (DLPackOnly(X), np.ndarray)):
        ev = bigstep.DSMRisk(x, MU, SIGMA, wrt="all")
        assert ev.risk(net) == ref.risk(net)
        _same(ev.grad(net), ref.grad(net), kind)
        _same(ev.hessian(net), ref.hessian(net), kind)
        r, g = bigstep.dsm_risk_grad(net, x, MU, SIGMA)
        _same(g, bigstep.dsm_risk_grad(net, X, MU, SIGMA)[1], kind)
        assert bigstep.excess_risk(net, x, MU, SIGMA) == bigstep.excess_risk(net, X, MU, SIGMA)
        assert bigstep.optimal_risk(x, MU, SIGMA) == bigstep.optimal_risk(X, MU, SIGMA)
    v = np.linspace(-1, 1, 18)
    _same(ref.hvp(net, torch.from_numpy(v)), ref.hvp(net, v), torch.Tensor)
    _same(bigstep.dsm_risk_hvp(net, X, MU, SIGMA, DLPackOnly(v), wrt="all"), ref.hvp(net, v), np.ndarray)
    with pytest.raises(TypeError, match="x requires grad"):
        bigstep.dsm_risk(net, torch.from_numpy(X).requires_grad_(True), MU, SIGMA)


def test_theory_answers_in_the_callers_type():
    y = np.linspace(-1.0, 1.0, 5)
    ref = theory.tv_weight(y, X, MU, SIGMA)
    _same(theory.tv_weight(torch.from_numpy(y), torch.from_numpy(X), MU, SIGMA), ref, torch.Tensor)
    _same(theory.tv_weight(DLPackOnly(y), DLPackOnly(X), MU, SIGMA), ref, np.ndarray)
    assert theory.tv_derivative(_net(), DLPackOnly(X), MU, SIGMA) == theory.tv_derivative(_net(), X, MU, SIGMA)


def test_random_features_take_and_give_the_callers_arrays():
    x = bigstep.gaussian_noise(3, (12, 4))
    ref = rf.fit(x, 0.5, p=10, n_noise=2, lam=1e-2)
    for xx in (torch.from_numpy(x), DLPackOnly(x)):
        model = rf.fit(xx, 0.5, p=10, n_noise=2, lam=1e-2)
        np.testing.assert_array_equal(model.A, ref.A)
    y = bigstep.gaussian_noise(4, (5, 4))
    _same(ref.score(torch.from_numpy(y)), ref.score(y), torch.Tensor)
    _same(ref.features(DLPackOnly(y)), ref.features(y), np.ndarray)
    score = rf.RFScore(x, [0.1, 1.0], p=10, n_noise=2)
    _same(score(torch.from_numpy(y), 0.5), score(y, 0.5), torch.Tensor)
    with pytest.raises(ValueError, match="y must have shape"):
        ref.score(np.zeros((2, 3)))


def test_trainers_and_monte_carlo_take_any_array():
    pytest.importorskip("pandas")
    a = bigstep.train_sgd(X, MU, SIGMA, lr=0.1, steps=20, width=5, record=("loss",))
    b = bigstep.train_sgd(DLPackOnly(X), MU, SIGMA, lr=0.1, steps=20, width=5, record=("loss",))
    np.testing.assert_array_equal(a.W2, b.W2)
    x2 = bigstep.gaussian_noise(5, (6, 2))
    net = bigstep.ReLUNetND(np.eye(2), np.zeros(2), np.eye(2))
    assert bigstep.excess_risk_mc(net, torch.from_numpy(x2), MU, SIGMA, n_mc=20) == \
        bigstep.excess_risk_mc(net, x2, MU, SIGMA, n_mc=20)


def test_memory_mapped_data_are_not_copied(tmp_path, backend):
    """Read-only, memory-mapped training data reach the kernels without a copy (the
    prepared risk holds the mapped array itself) and give the same numbers, on every CPU
    backend."""
    if backend == "cuda":
        pytest.skip("host arrays: the CPU backends")
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    assert not mm.flags.writeable
    ev = bigstep.DSMRisk(mm, MU, SIGMA, backend=backend)
    assert np.shares_memory(ev.x, mm)
    net = _net()
    assert ev.sharpness(net) == bigstep.DSMRisk(X, MU, SIGMA, backend=backend).sharpness(net)
    x2 = bigstep.gaussian_noise(3, (12, 4))
    np.save(tmp_path / "x2.npy", x2)
    mm2 = np.load(tmp_path / "x2.npy", mmap_mode="r")
    model = rf.fit(mm2, 0.5, p=10, n_noise=2, lam=1e-2, backend=backend)
    assert np.shares_memory(model.x, mm2)
    np.testing.assert_array_equal(model.A, rf.fit(x2, 0.5, p=10, n_noise=2, lam=1e-2, backend=backend).A)
    pytest.importorskip("pandas")
    res = bigstep.train_sgd(mm, MU, SIGMA, lr=0.1, steps=10, width=4, record=("risk",), backend=backend)
    np.testing.assert_array_equal(res.W2, bigstep.train_sgd(X, MU, SIGMA, lr=0.1, steps=10, width=4, record=("risk",),
                                                            backend=backend).W2)
