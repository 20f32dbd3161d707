"""Arrays at the API boundary: DLPack producers in, the caller's array type out,
devices checked, gradients never dropped silently."""

from __future__ import annotations

import numpy as np
import pytest

import bigstep
from bigstep import _arrays


class DLPackOnly:
    """An array that speaks only DLPack (like an unknown library's array)."""

    def __init__(self, a, device=(1, 0)):
        self._a = a
        self._device = device

    def __dlpack__(self, stream=None, **kwargs):
        return self._a.__dlpack__()

    def __dlpack_device__(self):
        return self._device


def test_dlpack_only_object_is_read_without_copy():
    x = np.random.default_rng(1).standard_normal((40, 3))
    got = _arrays.as_numpy(DLPackOnly(x), "x")
    assert np.shares_memory(got, x)
    y = x[:4] + 0.05
    s = bigstep.optimal_score(DLPackOnly(y), DLPackOnly(x), 0.9, 0.3)
    assert isinstance(s, np.ndarray)
    np.testing.assert_array_equal(s, bigstep.optimal_score(y, x, 0.9, 0.3))
    assert bigstep.mmd2(DLPackOnly(x), DLPackOnly(y)) == bigstep.mmd2(x, y)


def test_device_of_and_mismatched_devices():
    x = np.zeros(3)
    assert _arrays.device_of(x) == "cpu" and _arrays.device_of(1.5) == "cpu" and _arrays.device_of([1, 2]) == "cpu"
    assert _arrays.device_of(DLPackOnly(x, (2, 1))) == "cuda:1"
    assert _arrays.device_of(DLPackOnly(x, (3, 0))) == "cpu"  # pinned host memory
    with pytest.raises(ValueError, match=r"x is on cpu but y is on cuda:1"):
        _arrays.common_device({"x": x, "y": DLPackOnly(x, (2, 1))})
    assert _arrays.common_device({"x": x, "mu": 0.5, "none": None}) == "cpu"


def test_device_array_refused_by_cpu_backends_naming_it():
    x = np.zeros(3)
    with pytest.raises(ValueError, match=r"^y is a DLPackOnly on cuda:0"):
        _arrays.as_numpy(DLPackOnly(x, (2, 0)), "y")
    with pytest.raises(ValueError, match=r"on cuda:0"):
        bigstep.optimal_score(np.zeros(2), DLPackOnly(x, (2, 0)), 1.0, 1.0, backend="cpp")


def test_non_numeric_refused():
    with pytest.raises(TypeError, match="x must be numeric"):
        _arrays.as_numpy("abc", "x")
    with pytest.raises(TypeError, match="real numeric dtype"):
        _arrays.as_numpy(np.array([1 + 2j]), "x")


def test_torch_requires_grad_is_refused_by_non_differentiable_functions():
    torch = pytest.importorskip("torch")
    a = torch.randn(20, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(30, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"a requires grad, but bigstep does not differentiate this function with respect to a"):
        bigstep.mmd2(a, b)
    with torch.no_grad():
        assert bigstep.mmd2(a, b) == bigstep.mmd2(a.detach().numpy(), b.numpy())


def test_wrap_like_returns_the_callers_type():
    torch = pytest.importorskip("torch")
    out = np.arange(3.0)
    assert _arrays.wrap_like(out, [1.0]) is out
    t = _arrays.wrap_like(out, torch.zeros(1))
    assert isinstance(t, torch.Tensor) and np.shares_memory(t.numpy(), out)
    assert _arrays.wrap_like(out, DLPackOnly(out)) is out  # unknown producers get numpy
    assert _arrays.wrap_like(None, out) is None
    zero_d = _arrays.wrap_like(np.float64(2.0), torch.zeros(()))
    assert isinstance(zero_d, torch.Tensor) and zero_d.ndim == 0


def test_jax_arrays_round_trip():
    jnp = pytest.importorskip("jax.numpy")
    x = np.random.default_rng(2).standard_normal(30)
    y = np.linspace(-2, 2, 5)
    got = bigstep.optimal_score(jnp.asarray(y), jnp.asarray(x), 0.8, 0.4)
    assert type(got).__module__.startswith("jax")
    np.testing.assert_allclose(np.asarray(got), bigstep.optimal_score(y, x, 0.8, 0.4), rtol=0, atol=0)


def test_host_scalars_join_arrays_on_any_device():
    """numpy scalars and 0-d host arrays (noise_schedule's mu, sigma for a float t) do not pin a
    call to the CPU, as torch lets 0-d CPU tensors join CUDA tensors; a 0-d array on a
    device, and any host array with dimensions, still count."""
    x = np.zeros(3)
    dev = DLPackOnly(x, (2, 0))
    mu, sigma = bigstep.noise_schedule(0.1)
    assert _arrays.common_device({"y": dev, "x": dev, "mu": mu, "sigma": np.array(sigma)}) == "cuda:0"
    assert _arrays.common_device({"mu": np.float32(0.5), "x": dev}) == "cuda:0"
    with pytest.raises(ValueError, match=r"x is on cpu but mu is on cuda:0"):
        _arrays.common_device({"x": x, "mu": DLPackOnly(np.array(0.5), (2, 0))})
    with pytest.raises(ValueError, match=r"y is on cuda:0 but x is on cpu"):
        _arrays.common_device({"y": dev, "x": np.zeros(1)})
    torch = pytest.importorskip("torch")
    assert _arrays.common_device({"y": dev, "mu": torch.tensor(0.5)}) == "cuda:0"


def test_device_errors_name_the_arguments():
    x = np.zeros(3)
    with pytest.raises(ValueError, match=r"^y is on cpu but x is on cuda:0"):
        bigstep.optimal_score(np.zeros(2), DLPackOnly(x, (2, 0)), 1.0, 1.0)
