"""The torch backend and the device-array paths of the public functions.

The backend's kernels run every test of the suite that takes the conftest ``backend``
fixture (parameter ``torch``, on CPU tensors).  This module checks what those tests
cannot see:

- Philox words bit-identical to the compiled streams, on counters and keys at the edges;
- float32 products immune to the user's reduced-precision matmul setting (bfloat16 on
  CPUs with AVX512-BF16/AMX, TF32 on NVIDIA GPUs), with a check that the setting does
  change plain float32 products here (else the immunity test could not fail);
- the chunk loops (online log-sum-exp across data blocks, the 1-D window gather, the
  float32 screen and its float64 fallback, metrics blocks, trainer groups) against the
  compiled kernels, with tiny chunk budgets;
- arrays in, same arrays out: numpy and torch inputs, no copies of contiguous inputs,
  devices named in errors (fake DLPack producers that claim a CUDA device), the device
  path itself on CPU tensors (``device_path`` fixture: CPU tensors routed as if they
  lived on a device), score objects and the trainer built from tensors;
- on a machine with CUDA (skipped elsewhere): every public function on CUDA tensors
  against the cpp backend, non-contiguous and offset views, a second device, a
  non-default stream, TF32 switched on globally.
"""

from __future__ import annotations

import numpy as np
import pytest

import bigstep
from bigstep import _backend

torch = pytest.importorskip("torch")

from bigstep._torch import _common  # noqa: E402
from bigstep._torch import optimal_score as tos  # noqa: E402
from bigstep._torch import random as trandom  # noqa: E402

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device visible to torch")


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunk budgets of a few hundred elements: every loop over blocks runs many times."""
    monkeypatch.setitem(_common.CHUNK_ELEMENTS, "cpu", 300)
    monkeypatch.setitem(_common.CHUNK_ELEMENTS, "other", 300)


class FakeDevice:
    """A DLPack producer that claims to live on a CUDA device (its data is on the host)."""

    def __init__(self, a, device=(2, 0)):
        self._a = np.asarray(a)
        self._device = device

    def __dlpack__(self, stream=None, **kwargs):
        raise BufferError("this fake device array cannot be exported")

    def __dlpack_device__(self):
        return self._device


@pytest.fixture
def device_path(monkeypatch):
    """Routes CPU torch tensors through the device-array path (as if they lived on a
    device), so that it runs, on the CPU, the code CUDA tensors take."""
    import bigstep._torch as bt
    from bigstep import _arrays

    real = bt.device_route

    def route(backend, named):
        if backend == "auto" and any(_arrays.is_torch(a) for a in named.values()):
            _arrays.common_device(named)
            return True
        return real(backend, named)

    import importlib

    for name in ("optimal_score", "metrics", "scores", "nets", "sampler", "training.sgd1d"):
        monkeypatch.setattr(importlib.import_module(f"bigstep.{name}"), "device_route", route)
    monkeypatch.setattr(_backend, "resolve", _resolve_torch_for_tensors(_backend.resolve))


def _resolve_torch_for_tensors(real):
    from bigstep import _arrays

    def resolve(backend, *arrays, family=None, **named):
        if backend == "auto" and any(_arrays.is_torch(a) for a in (*arrays, *named.values())):
            return "torch"
        return real(backend, *arrays, family=family, **named)

    return resolve


# ------------------------------------------------------------------- registry


def test_every_torch_module_is_a_family():
    """A public module of bigstep._torch is a kernel family (helpers start with _), and the
    torch backend lists the families it covers."""
    import pkgutil

    import bigstep._torch as bt

    mods = {m.name for m in pkgutil.iter_modules(bt.__path__) if not m.name.startswith("_")}
    assert mods <= set(_backend.FAMILIES), mods - set(_backend.FAMILIES)
    assert {f for f in _backend.FAMILIES if "torch" in _backend.backends(f)} == mods
    assert mods == {"optimal_score", "local", "metrics", "random", "sampler", "sgd"}


def test_info_reports_the_torch_backend():
    d = bigstep.info()
    assert "torch" in d["backends"]
    t = d["torch"]
    assert t["version"] == torch.__version__ and "cpu" in t["devices"]
    assert set(t["families"]) == {"optimal_score", "local", "metrics", "random", "sampler", "sgd"}
    from bigstep.info import format_info

    assert "torch: " in format_info(d) and "families: optimal_score" in format_info(d)


# ------------------------------------------------------------------- Philox


@pytest.mark.parametrize("counter, key", [((0, 0, 0, 0), (0, 0)), ((1, 2, 3, 4), (5, 6)),
                                          ((2**32 - 1,) * 4, (2**32 - 1, 2**32 - 1)),
                                          ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0))])
def test_philox_block_equals_compiled(counter, key):
    core = pytest.importorskip("bigstep._core")
    assert trandom.philox4x32_10(*counter, *key) == tuple(core.philox4x32_10(*counter, *key))


@pytest.mark.parametrize("seed, stream, offset, count", [(0, 0, 0, 1), (7, 3, 5, 1001), (2**64 - 1, 2**64 - 1, 2**64 - 9, 9),
                                                         (12345, 1, 2**33 + 3, 99), (2**32, 2**32 + 1, 3, 17)])
def test_streams_equal_compiled(seed, stream, offset, count):
    """Uniforms bit-identical; normals within 4 ulp (torch's log/cos/sin vs libm)."""
    core = pytest.importorskip("bigstep._core")
    u = trandom.uniform(seed, stream, offset, count).numpy()
    assert np.array_equal(u, core.uniform(seed, stream, offset, count, np.float64))
    z = trandom.gaussian_noise(seed, stream, offset, count).numpy()
    ref = core.gaussian_noise(seed, stream, offset, count, np.float64)
    assert np.all(np.abs(z - ref) <= 4 * np.spacing(np.abs(ref)))
    z32 = trandom.gaussian_noise(seed, stream, offset, count, np.float32).numpy()
    assert z32.dtype == np.float32 and np.allclose(z32, ref, rtol=1e-6, atol=1e-6)


def test_per_row_seeds_and_passes(monkeypatch):
    """(R, 1) seed tensors give each row its own stream (uint64 seeds held as int64 bits);
    a stream produced in several passes equals one pass."""
    core = pytest.importorskip("bigstep._core")
    seeds = [3, 2**63 - 1, 2**63, 2**64 - 1]
    bits = torch.tensor(np.array(seeds, dtype=np.uint64).view(np.int64))
    u = trandom.uniforms(bits, 3, 41, 23)
    z = trandom.normals(bits, 4, 41, 23)
    for i, s in enumerate(seeds):
        assert np.array_equal(u[i].numpy(), core.uniform(s, 3, 41, 23, np.float64))
        np.testing.assert_allclose(z[i].numpy(), core.gaussian_noise(s, 4, 41, 23, np.float64), rtol=1e-14, atol=1e-15)
    whole = trandom.normals(9, 1, 3, 1000)
    monkeypatch.setattr(trandom, "_BLOCKS_PER_PASS", 7)
    assert torch.equal(trandom.normals(9, 1, 3, 1000), whole)
    assert np.array_equal(trandom.uniforms(9, 1, 3, 1000).numpy(), core.uniform(9, 1, 3, 1000, np.float64))


# --------------------------------------------------------- matmul precision


def _reduced_precision(setting):
    """Sets the global float32 matmul precision (legacy API) and returns the restore call."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(setting)
    return lambda: torch.set_float32_matmul_precision(before)


def test_float32_products_ignore_the_global_precision_setting():
    """With the global setting at "medium" (bfloat16 products on this CPU if it has them,
    TF32 on NVIDIA GPUs), float32 s* equals the full-precision result bit for bit, on the
    fast path (sigma = 1) and the screened path (small sigma); the user's setting is
    restored after the call."""
    dev = "cuda" if CUDA else "cpu"
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.standard_normal((700, 256)) / 16, dtype=torch.float32, device=dev)  # K >= 256: oneDNN's bf16
    Y = 0.9 * X[:50] + 0.005 * torch.randn(50, 256, device=dev, generator=torch.Generator(dev).manual_seed(1))
    ref = {s: bigstep.optimal_score(Y, X, 0.9, s, backend="torch") for s in (1.0, 0.05, 1e-3)}
    full = Y @ X.T
    restore = _reduced_precision("medium")
    try:
        if torch.equal(Y @ X.T, full):
            pytest.skip("this machine's float32 matmul has no reduced-precision mode: the test could not fail")
        for s, r in ref.items():
            got = bigstep.optimal_score(Y, X, 0.9, s, backend="torch")
            assert torch.equal(got, r), f"sigma={s}: the global precision setting changed s*"
        assert torch.get_float32_matmul_precision() == "medium"
        assert not torch.equal(Y @ X.T, full), "the user's setting was not restored"
    finally:
        restore()


def test_precision_context_nests_and_restores():
    flags = _common._precision_flags()
    if not flags:
        pytest.skip("torch without the per-backend precision flags")
    before = [f.fp32_precision for f in flags]
    with _common.ieee_matmul():
        with _common.ieee_matmul():
            assert all(f.fp32_precision == "ieee" for f in flags)
        assert all(f.fp32_precision == "ieee" for f in flags)
    assert [f.fp32_precision for f in flags] == before


# ------------------------------------------------------------- chunk loops


def _cpp():
    if "cpp" not in _backend.available():
        pytest.skip("bigstep._core does not import")
    return "cpp"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sigma", [1.0, 0.03, 1e-3])
def test_chunked_optimal_score_equals_compiled(small_chunks, dtype, sigma):
    """Many query and data blocks (online log-sum-exp across blocks; 1-D windows read as
    a union or gathered per query), against cpp."""
    cpp = _cpp()
    rng = np.random.default_rng(3)
    x = rng.standard_normal(400).astype(dtype)
    y = np.concatenate([rng.uniform(-3, 3, 150), 0.8 * x[:40] + sigma * rng.standard_normal(40)]).astype(dtype)
    eps = float(np.finfo(dtype).eps)
    tol = 1e3 * eps  # the rounding of the inputs, amplified by s*'s slope between data points
    for f in (bigstep.optimal_score, bigstep.log_density, bigstep.posterior_mean):
        assert rel(f(y, x, 0.8, sigma, backend="torch"), f(y, x, 0.8, sigma, backend=cpp)) < tol, f.__name__
    for a, b in zip(bigstep.optimal_score_derivatives(y, x, 0.8, sigma, backend="torch"),
                    bigstep.optimal_score_derivatives(y, x, 0.8, sigma, backend=cpp)):
        assert rel(a, b) < 1e7 * eps
    X = rng.standard_normal((300, 5)).astype(dtype)
    Y = (0.8 * X[:60] + sigma * rng.standard_normal((60, 5))).astype(dtype)
    for f in (bigstep.optimal_score, bigstep.posterior_mean):
        assert rel(f(Y, X, 0.8, sigma, backend="torch"), f(Y, X, 0.8, sigma, backend=cpp)) < tol, f.__name__
    # log p in GEMM form: both kernels round terms of size ||y||^2 / sigma^2
    scale = 64 * eps * (np.square(Y).sum(1).max() + np.square(X).sum(1).max()) / sigma**2
    lp = bigstep.log_density(Y, X, 0.8, sigma, backend="torch")
    assert np.abs(lp - bigstep.log_density(Y, X, 0.8, sigma, backend=cpp)).max() < scale


def test_one_d_windows_gathered_per_query(monkeypatch):
    """Queries spread over the data at small sigma: each block of queries reads its own
    windows (the gather), not the union; results as cpp."""
    cpp = _cpp()
    seen = []
    real = tos._window_sums

    def spy(x, lo, hi, *args):
        seen.append(int(hi.max() - lo.min()) > 2 * int((hi - lo).max()))
        return real(x, lo, hi, *args)

    monkeypatch.setattr(tos, "_window_sums", spy)
    rng = np.random.default_rng(4)
    x = np.sort(rng.uniform(-10, 10, 5000))
    y = rng.uniform(-9, 9, 3000)
    got = bigstep.optimal_score(y, x, 1.0, 1e-3, backend="torch")
    assert any(seen), "the gather path did not run"
    np.testing.assert_allclose(got, bigstep.optimal_score(y, x, 1.0, 1e-3, backend=cpp), rtol=1e-12, atol=1e-9)


def test_float32_screen_and_its_fallback_run(monkeypatch, small_chunks):
    """float32 at small sigma: screened rows and rows with more than 32 candidates (the
    float64 recomputation) both run, over many data blocks, and agree with float64."""
    calls = {"screen": 0, "fallback_rows": 0}
    real_screen, real_flash = tos._screen, tos._flash

    def screen(*args):
        calls["screen"] += 1
        yield from real_screen(*args)

    def flash(y, data, mu, sigma, A):
        if A == torch.float64 and data.x.dtype == torch.float32:
            calls["fallback_rows"] += y.shape[0]
        yield from real_flash(y, data, mu, sigma, A)

    monkeypatch.setattr(tos, "_screen", screen)
    monkeypatch.setattr(tos, "_flash", flash)
    rng = np.random.default_rng(11)
    X = rng.standard_normal((200, 16)).astype(np.float32)
    X[100:150] = X[3] + 1e-4 * rng.standard_normal((50, 16))  # 51 points within ~sigma: over the cap
    Y = np.concatenate([0.9 * X[:20] + 1e-3 * rng.standard_normal((20, 16)),
                        0.9 * X[3:4] + 1e-3 * rng.standard_normal((3, 16))]).astype(np.float32)
    got = bigstep.posterior_mean(Y, X, np.float32(0.9), np.float32(1e-3), backend="torch")
    ref = bigstep.posterior_mean(Y.astype(np.float64), X.astype(np.float64), float(np.float32(0.9)),
                                 float(np.float32(1e-3)), backend="torch")
    assert calls["screen"] >= 1 and calls["fallback_rows"] >= 3, calls
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * np.abs(ref).max())


def test_chunked_metrics_and_trainer_equal_unchunked(small_chunks):
    cpp = _cpp()
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((90, 3)), rng.standard_normal((70, 3)) + 0.3
    for unbiased in (False, True):
        assert abs(bigstep.mmd2(a, b, bandwidth=0.7, unbiased=unbiased, backend="torch")
                   - bigstep.mmd2(a, b, bandwidth=0.7, unbiased=unbiased, backend=cpp)) < 1e-14
    train = np.concatenate([b, b[:5]])  # exact ties: the lower index first
    d1, i1 = bigstep.nearest_neighbors(a, train, k=4, backend="torch")
    d2, i2 = bigstep.nearest_neighbors(a, train, k=4, backend=cpp)
    assert np.array_equal(i1, i2)
    np.testing.assert_allclose(d1, d2, rtol=1e-15)
    x = rng.standard_normal(10)
    kw = dict(lr=[0.2, 0.05], seed=[1, 2, 3], steps=12, width=40, batch_size=9, record=("loss",))
    small = bigstep.train_sgd(x, 0.9, 0.4, backend="torch", **kw)
    _common.CHUNK_ELEMENTS["cpu"] = 1 << 20
    big = bigstep.train_sgd(x, 0.9, 0.4, backend="torch", **kw)
    for n1, n2 in zip(small.networks, big.networks):
        assert np.array_equal(n1.W2, n2.W2) and np.array_equal(n1.b1, n2.b1) and np.array_equal(n1.W1, n2.W1)


# ---------------------------------------------------- arrays in, same arrays out


def test_inputs_reach_the_kernels_without_copies(monkeypatch):
    """Contiguous float32/float64 torch tensors and numpy arrays (read-only ones too) reach
    the torch kernels as the same memory."""
    seen = {}
    real = _backend.kernels("optimal_score", "torch")

    def spy(y, x, mu, sigma, what):
        seen["y"], seen["x"] = y, x
        return real.optimal_score_nd(y, x, mu, sigma, what)

    import types

    fake = types.SimpleNamespace(**{**vars(real), "optimal_score_nd": spy})
    monkeypatch.setattr(_backend, "kernels", lambda family, b: fake)
    for dtype in (torch.float32, torch.float64):
        X = torch.randn(50, 4, dtype=dtype)
        Y = torch.randn(7, 4, dtype=dtype)
        out = bigstep.optimal_score(Y, X, 0.8, 0.5, backend="torch")
        assert isinstance(out, torch.Tensor) and out.dtype == dtype
        assert seen["x"].data_ptr() == X.data_ptr() and seen["y"].data_ptr() == Y.data_ptr()
    Xn = np.random.default_rng(0).standard_normal((50, 4))
    Xn.flags.writeable = False
    out = bigstep.optimal_score(Xn[:3], Xn, 0.8, 0.5, backend="torch")
    assert isinstance(out, np.ndarray) and seen["x"].data_ptr() == Xn.ctypes.data


def test_types_shapes_and_dtypes_come_back():
    rng = np.random.default_rng(6)
    X, y1 = rng.standard_normal((20, 3)), rng.standard_normal(3)
    lp = bigstep.log_density(y1, X, 0.9, 0.5, backend="torch")
    assert np.ndim(lp) == 0 and not isinstance(lp, torch.Tensor)
    lpt = bigstep.log_density(torch.tensor(y1), torch.tensor(X), 0.9, 0.5, backend="torch")
    assert isinstance(lpt, torch.Tensor) and lpt.shape == () and float(lpt) == float(lp)
    x1 = rng.standard_normal(9)
    assert np.shape(bigstep.optimal_score(0.3, x1, 0.9, 0.5, backend="torch")) == ()
    d, i = bigstep.nearest_neighbors(torch.tensor(X[:4], dtype=torch.float32), torch.tensor(X, dtype=torch.float32),
                                     k=2, backend="torch")
    assert d.dtype == torch.float32 and i.dtype == torch.int64 and tuple(d.shape) == (4, 2)
    r = bigstep.memorization_ratio(torch.tensor(X[:4]), torch.tensor(X), backend="torch")
    assert isinstance(r, torch.Tensor) and torch.all(r == 0)
    assert bigstep.memorized_fraction(torch.tensor(X[:4]), torch.tensor(X), backend="torch") == 1.0
    out = bigstep.sample_forward(torch.zeros(5, 2), 0.3, seed=2, backend="torch")
    ref = bigstep.sample_forward(np.zeros((5, 2)), 0.3, seed=2)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-14)
    mu, sigma = bigstep.noise_schedule(0.4)
    assert isinstance(mu, np.ndarray) or np.isscalar(mu)


def test_bad_inputs_on_the_device_path_name_the_argument():
    X = torch.randn(10, 3, dtype=torch.float64)
    bad = X.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="x must be finite"):
        bigstep.optimal_score(X[:2], bad, 0.9, 0.5, backend="torch")
    with pytest.raises(ValueError, match=r"y must have shape \(q, 3\)"):
        bigstep.optimal_score(torch.randn(2, 4), X, 0.9, 0.5, backend="torch")
    with pytest.raises(TypeError, match="x must have a real numeric dtype"):
        bigstep.optimal_score(X[:2], X.to(torch.complex128), 0.9, 0.5, backend="torch")
    with pytest.raises(ValueError, match=r"sigma must be a positive finite number, got np.float64\(-1.0\) \(entry 1\)"):
        bigstep.optimal_score(X[:2], X, 0.9, torch.tensor([0.5, -1.0]), backend="torch")
    with pytest.raises(ValueError, match="sigma must lie in"):
        bigstep.optimal_score(X[:2].float(), X.float(), 0.9, 1e-50, backend="torch")
    with pytest.raises(TypeError, match="a requires grad"):
        bigstep.mmd2(X.clone().requires_grad_(True), X, backend="torch")
    with pytest.raises(ValueError, match="b must be finite"):
        bigstep.mmd2(X, bad, backend="torch")
    with pytest.raises(ValueError, match="bandwidth must be a positive finite number"):
        bigstep.mmd2(X, X, bandwidth=torch.tensor(-1.0), backend="torch")
    with pytest.raises(ValueError, match="k must be between 1 and"):
        bigstep.nearest_neighbors(X, X, k=11, backend="torch")
    with pytest.raises(ValueError, match="x0 must be finite"):
        bigstep.sample_forward(bad, 0.3, backend="torch")
    with pytest.raises(ValueError, match="t must be positive and finite"):
        bigstep.sample_forward(X, torch.tensor(0.0), backend="torch")
    with pytest.raises(ValueError, match="x must be finite"):
        bigstep.train_sgd(torch.tensor([0.0, float("inf")]), 0.9, 0.4, lr=0.1, steps=2, width=4, backend="torch")
    with pytest.raises(ValueError, match="backend 'torch' has no relu_risk kernels"):
        bigstep.train_gd(torch.tensor([0.0, 1.0]), 0.9, 0.4, lr=0.1, steps=2, width=4, backend="torch")


def test_arrays_on_different_devices_name_both():
    x = np.zeros((5, 2))
    fake = FakeDevice(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"y is on cuda:0 but x is on cpu"):
        bigstep.optimal_score(fake, x, 0.9, 0.5)
    with pytest.raises(ValueError, match=r"a is on cpu but b is on cuda:0"):
        bigstep.mmd2(x, fake)
    with pytest.raises(ValueError, match=r"samples is on cpu but train is on cuda:0"):
        bigstep.nearest_neighbors(x, fake)
    with pytest.raises(ValueError, match=r"x0 is on cuda:0 but x_train is on cpu"):
        bigstep.sample_reverse(bigstep.EmpiricalScore(x), 2, 2, x0=fake, n_steps=2)
    with pytest.raises(ValueError, match=r"x is on cuda:0 but x_train is on cpu"):
        bigstep.EmpiricalScore(x)(fake, 0.5)
    with pytest.raises(ValueError, match=r"x0 is on cpu but t is on cuda:0"):
        bigstep.sample_forward(x, FakeDevice(np.ones(5)))
    with pytest.raises(ValueError, match=r"y is on cuda:1 but mu is on cuda:0"):
        bigstep.optimal_score(FakeDevice(np.zeros(2), (2, 1)), FakeDevice(np.zeros(3), (2, 1)),
                              FakeDevice(np.ones(2), (2, 0)), 0.5)


def test_device_arrays_torch_cannot_read_are_named():
    """Device arrays go to a device backend (torch where CUDA kernels are not built);
    an array torch cannot import is a ValueError naming it and its device."""
    fake = FakeDevice(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"^x is a FakeDevice on cuda:0, which torch cannot read here"):
        bigstep.optimal_score(FakeDevice(np.zeros((2, 2))), fake, 0.9, 0.5)
    with pytest.raises(ValueError, match=r"on cuda:0"):
        bigstep.optimal_score(np.zeros(2), FakeDevice(np.zeros(3)), 1.0, 1.0, backend="cpp")
    with pytest.raises(ValueError, match=r"x is a FakeDevice on cuda:0"):
        bigstep.train_sgd(FakeDevice(np.zeros(3)), 0.9, 0.5, lr=0.1, steps=1, width=2)
    with pytest.raises(ValueError, match="x is a FakeDevice on cuda:0"):
        bigstep.EmpiricalScore(fake)
    assert _backend.resolve("auto", fake, family="metrics") == ("cuda" if _backend.why_unavailable("cuda") is None
                                                                and "cuda" in _backend.backends("metrics")
                                                                else "torch")


def test_device_path_scores_sampler_and_trainer(device_path):
    """The device-array path on CPU tensors: scores built from tensors keep them, calls
    and samples come back as tensors, and everything equals the host path."""
    rng = np.random.default_rng(7)
    data = 2.0 * rng.standard_normal((30, 2))
    xt = torch.tensor(data)
    host, dev = bigstep.EmpiricalScore(data), bigstep.EmpiricalScore(xt)
    assert isinstance(dev.x_train, torch.Tensor) and dev.x_train.data_ptr() != xt.data_ptr()  # a private copy
    q = rng.standard_normal((8, 2))
    got = dev(torch.tensor(q), 0.3)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), host(q, 0.3), rtol=1e-12)
    kw = dict(n_steps=15, seed=3, delta=0.05)
    s_dev = bigstep.sample_reverse(dev, 40, 2, **kw)
    assert isinstance(s_dev, torch.Tensor)
    np.testing.assert_allclose(s_dev.numpy(), bigstep.sample_reverse(host, 40, 2, backend="cpp" if "cpp" in
                                                                     _backend.available() else "numba", **kw),
                               rtol=1e-11, atol=1e-11)
    a = rng.standard_normal((3, 3))
    g_host = bigstep.GaussianScore(rng.standard_normal(3), a @ a.T + 0.1 * np.eye(3))
    g_dev = bigstep.GaussianScore(torch.tensor(g_host.mean), torch.tensor(g_host.cov))
    assert g_dev._device is not None and isinstance(g_dev.mean, np.ndarray)
    q3 = rng.standard_normal((6, 3))
    np.testing.assert_allclose(g_dev(torch.tensor(q3), 0.4).numpy(), g_host(q3, 0.4), rtol=1e-12)
    fit_dev = bigstep.GaussianScore.fit(torch.tensor(data))
    np.testing.assert_allclose(fit_dev.cov, bigstep.GaussianScore.fit(data).cov, rtol=1e-12)
    net = bigstep.TimeReLUScore(rng.standard_normal((5, 3)), rng.standard_normal(5), rng.standard_normal((2, 5)))
    net_dev = bigstep.TimeReLUScore(*(torch.tensor(w) for w in (net.W1, net.b1, net.W2)))
    np.testing.assert_allclose(net_dev.r(torch.tensor(q), torch.full((8,), 0.2, dtype=torch.float64)).numpy(),
                               net.r(q, np.full(8, 0.2)), rtol=1e-12)
    path = bigstep.sample_reverse(net_dev, 10, 2, return_path=True, **kw)
    assert isinstance(path, torch.Tensor) and tuple(path.shape) == (16, 10, 2)
    mu, sigma = bigstep.noise_schedule(torch.tensor([0.1, 0.5]))
    assert isinstance(mu, torch.Tensor)
    x = rng.standard_normal(12)
    tkw = dict(lr=[0.1, 0.02], seed=[4, 5], steps=10, width=16, record=("loss", "risk"), record_every=5)
    r_dev = bigstep.train_sgd(torch.tensor(x), 0.9, 0.4, **tkw)
    r_torch = bigstep.train_sgd(x, 0.9, 0.4, backend="torch", **tkw)
    for n1, n2 in zip(r_dev.networks, r_torch.networks):
        assert np.array_equal(n1.W2, n2.W2)
    assert np.array_equal(r_dev.history["risk"].to_numpy(), r_torch.history["risk"].to_numpy())
    # a generic callable gets the caller's tensors
    seen = []

    def score(xx, t):
        seen.append(type(xx))
        return -xx

    out = bigstep.sample_reverse(score, 5, 2, x0=torch.zeros(5, 2, dtype=torch.float64), n_steps=3)
    assert isinstance(out, torch.Tensor) and seen and all(s is torch.Tensor for s in seen)


def test_sampler_same_seed_same_samples_as_compiled():
    cpp = _cpp()
    rng = np.random.default_rng(8)
    a = rng.standard_normal((3, 3))
    scores = [bigstep.EmpiricalScore(rng.standard_normal((200, 3))), bigstep.EmpiricalScore(rng.standard_normal(40)),
              bigstep.GaussianScore(rng.standard_normal(3), a @ a.T + 0.1 * np.eye(3)),
              bigstep.TimeReLUScore(rng.standard_normal((6, 3)), rng.standard_normal(6), rng.standard_normal((2, 6)))]
    for s in scores:
        for method in ("em", "ode"):
            kw = dict(n_steps=40, delta=0.02, seed=11, method=method, return_path=True)
            a1 = bigstep.sample_reverse(s, 60, s.dim, backend="torch", **kw)
            a2 = bigstep.sample_reverse(s, 60, s.dim, backend=cpp, **kw)
            np.testing.assert_allclose(a1, a2, rtol=1e-11, atol=1e-11 * np.abs(a2).max(), err_msg=repr(s))


def test_trainer_same_draws_as_compiled():
    cpp = _cpp()
    x = np.random.default_rng(9).standard_normal(15)
    kw = dict(lr=[0.3, 0.05, 50.0], seed=[0, 2**64 - 1], steps=30, width=33, batch_size=11, record=("loss",),
              record_every=7, clip=None)
    a = bigstep.train_sgd(x, 0.9, 0.3, backend="torch", **kw)
    b = bigstep.train_sgd(x, 0.9, 0.3, backend=cpp, **kw)
    assert np.array_equal(a.diverged_step, b.diverged_step) and a.diverged.any()
    for n1, n2 in zip(a.networks, b.networks):
        for p1, p2 in ((n1.W1, n2.W1), (n1.W2, n2.W2), (n1.b1, n2.b1)):
            np.testing.assert_allclose(p1, p2, rtol=0, atol=1e-10 * max(1.0, np.abs(p2).max()))
    np.testing.assert_allclose(a.history["loss"].to_numpy(), b.history["loss"].to_numpy(), rtol=1e-10)


# ------------------------------------------------------------------- CUDA


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_tensors_everywhere_against_cpp(dtype):
    """Every public function on CUDA tensors (auto: the device backend) returns CUDA
    tensors equal to the cpp results; non-contiguous and offset views are read right."""
    cpp = _cpp()
    rng = np.random.default_rng(10)
    X = rng.standard_normal((500, 8))
    Y = 0.9 * X[:60] + 0.05 * rng.standard_normal((60, 8))
    big = torch.tensor(np.concatenate([X, X]).T.copy(), dtype=dtype, device="cuda").T  # non-contiguous
    Xc, Yc = big[500:], torch.tensor(Y, dtype=dtype, device="cuda")[1:]  # offset views
    Xh, Yh = Xc.cpu().numpy(), Yc.cpu().numpy()
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for s in (1.0, 0.05, 2e-3):
        for f in (bigstep.optimal_score, bigstep.log_density, bigstep.posterior_mean):
            got = f(Yc, Xc, 0.9, s)
            assert got.is_cuda and got.dtype == dtype
            assert rel(got.cpu().numpy(), f(Yh, Xh, 0.9, s, backend=cpp)) < tol, (f.__name__, s)
    x1 = torch.tensor(X[:, 0], dtype=dtype, device="cuda")
    x1h = x1.cpu().numpy()
    for got, ref in zip(bigstep.optimal_score_derivatives(x1[:50], x1, 0.9, 0.1),
                        bigstep.optimal_score_derivatives(x1h[:50], x1h, 0.9, 0.1, backend=cpp)):
        assert got.is_cuda and rel(got.cpu().numpy(), ref) < tol * 1e3
    assert abs(bigstep.mmd2(Yc, Xc) - bigstep.mmd2(Yh, Xh, backend=cpp)) < 1e-12
    d, i = bigstep.nearest_neighbors(Yc, Xc, k=3)
    d2, i2 = bigstep.nearest_neighbors(Yh, Xh, k=3, backend=cpp)
    assert d.is_cuda and np.array_equal(i.cpu().numpy(), i2)


@needs_cuda
def test_cuda_stream_tf32_and_second_device():
    """The kernels run on the caller's current stream (work queued there, result right
    after synchronising it), TF32 switched on globally changes nothing, and tensors on a
    second device stay there."""
    cpp = _cpp()
    rng = np.random.default_rng(12)
    X = rng.standard_normal((2000, 64)).astype(np.float32)
    Y = (0.9 * X[:100] + 2e-3 * rng.standard_normal((100, 64))).astype(np.float32)
    ref = bigstep.posterior_mean(Y, X, 0.9, 2e-3, backend=cpp)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        Xc, Yc = torch.tensor(X, device="cuda"), torch.tensor(Y, device="cuda")
        got = bigstep.posterior_mean(Yc, Xc, 0.9, 2e-3)
    s.synchronize()
    assert rel(got.cpu().numpy(), ref) < 1e-5
    restore = _reduced_precision("high")  # TF32 products
    try:
        again = bigstep.posterior_mean(Yc, Xc, 0.9, 2e-3)
    finally:
        restore()
    assert torch.equal(again, got)
    if torch.cuda.device_count() > 1:
        X1 = torch.tensor(X, device="cuda:1")
        out = bigstep.optimal_score(X1[:10], X1, 0.9, 0.5)
        assert out.device == torch.device("cuda:1")
        with pytest.raises(ValueError, match="cuda:1 but x is on cuda:0"):
            bigstep.optimal_score(X1[:10], Xc, 0.9, 0.5)


@needs_cuda
def test_cuda_sampler_and_trainer_same_seed_as_cpp():
    cpp = _cpp()
    rng = np.random.default_rng(13)
    data = rng.standard_normal((100, 2))
    dev = bigstep.EmpiricalScore(torch.tensor(data, device="cuda"))
    out = bigstep.sample_reverse(dev, 500, 2, n_steps=50, seed=4)
    assert out.is_cuda
    ref = bigstep.sample_reverse(bigstep.EmpiricalScore(data), 500, 2, n_steps=50, seed=4, backend=cpp)
    np.testing.assert_allclose(out.cpu().numpy(), ref, rtol=1e-10, atol=1e-10)
    x = rng.standard_normal(20)
    kw = dict(lr=[0.1, 0.01], seed=[1, 2], steps=40, width=64, record=("loss",))
    a = bigstep.train_sgd(torch.tensor(x, device="cuda"), 0.9, 0.4, **kw)
    b = bigstep.train_sgd(x, 0.9, 0.4, backend=cpp, **kw)
    for n1, n2 in zip(a.networks, b.networks):
        np.testing.assert_allclose(n1.W2, n2.W2, rtol=0, atol=1e-10 * max(1.0, np.abs(n2.W2).max()))
