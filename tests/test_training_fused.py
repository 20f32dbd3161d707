"""The fused d-D trainer (bigstep.training.sgd_nd: train_dsm / train_diffusion on the CPU
without torch), on every backend and instruction set.

References: a plain numpy SGD written here that replays the stream map through
bigstep.uniform / bigstep.gaussian_noise (stream 2: init, 3: data index, 4: noise,
6: time index, flat slot j B + b), with relu'(0) = 0 and the update
theta <- theta - m lr grad L; the torch CPU trainer (same draws) where torch is
installed; and the 1-D fused trainer (same streams 3 and 4) for d = 1.

Tolerances: the kernel and the references do the same float64 arithmetic in other
orders (forward sums in lanes, a*b + c contracted into FMAs on avx2/avx512); over 20
steps parameters differ by a few ulps (observed <= 1.5e-14 relative), so 1e-10 leaves a
wide margin and still catches any wrong draw, index or derivative (O(lr) changes).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import bigstep
from bigstep import gaussian_noise, uniform
from bigstep.nets import init_params
from bigstep.training import problems, time_grid


@pytest.fixture(autouse=True)
def _cpu_only(request):
    """The fused trainer runs on the CPU (torch is the GPU route, tested in test_training_nd)."""
    if getattr(request.node, "callspec", None) and request.node.callspec.params.get("backend") == "cuda":
        pytest.skip("the fused trainer is CPU-only; on a GPU train_dsm / train_diffusion use torch")


def _data(seed, n, d):
    return gaussian_noise(seed, (n, d), stream=11)


def reference(x, lr, seed, steps, B, m, *, mu=None, sigma=None, grid=None, coordinate_mean=False):
    """Plain numpy SGD with the trainer's draws: DSM (mu, sigma) or diffusion (grid =
    (times, mus, sigmas, probs)).  Returns (W1 (m, p), b, W2 (d, m))."""
    n, d = x.shape
    p = d if grid is None else d + 1
    W1, b, W2 = init_params(seed, m, p, d)
    u_i = uniform(seed, (steps, B), stream=3)
    z = gaussian_noise(seed, (steps, B, d), stream=4)
    if grid is not None:
        times, mus, sigmas, probs = grid
        cdf = np.cumsum(probs) / np.cumsum(probs)[-1]
        k = np.minimum(np.searchsorted(cdf, uniform(seed, (steps, B), stream=6), side="right"), len(times) - 1)
    norm = B * d if (coordinate_mean or grid is not None) else B
    for j in range(steps):
        i = np.minimum(np.floor(n * u_i[j]).astype(np.int64), n - 1)
        if grid is None:
            U = mu * x[i] + sigma * z[j]
            C = z[j] / sigma
        else:
            U = np.concatenate([mus[k[j]][:, None] * x[i] + sigmas[k[j]][:, None] * z[j], times[k[j]][:, None]], 1)
            C = -z[j]
        pre = U @ W1.T + b
        H = np.maximum(pre, 0.0)
        F = H @ W2.T / m + C
        G = 2.0 * lr / norm * F                   # m lr dL/d(net): the 1/m cancels below
        A = (G @ W2) * (pre > 0)
        W1, b, W2 = W1 - A.T @ U, b - A.sum(0), W2 - G.T @ H
    return W1, b, W2


def _close(res, r, ref, tol=1e-10):
    scale = max(1.0, max(np.abs(a).max() for a in ref))
    for mine, want in zip((res.W1[r], res.b1[r], res.W2[r]), ref):
        np.testing.assert_allclose(mine, want, rtol=0, atol=tol * scale)


# ------------------------------------------------------------------ exactness


@pytest.mark.parametrize("d,m,B,coordinates", [(1, 37, 9, "sum"), (2, 40, 17, "mean"), (3, 21, 6, "sum"),
                                               (10, 19, 5, "mean")])
def test_dsm_replays_plain_numpy_sgd(backend, d, m, B, coordinates):
    """d = 1, 2, 10 take the fixed-size paths, d = 3 the generic one; widths not a multiple
    of a vector exercise the tails."""
    x = _data(d, 9, d)
    lrs, seeds = [0.05, 0.2], [4, 11]
    res = bigstep.train_dsm(x, 0.8, 0.6, lr=lrs, seed=seeds, steps=20, batch_size=B, width=m, record=(),
                            coordinates=coordinates, backend=backend)
    for r in range(4):
        lr, seed = lrs[r // 2], seeds[r % 2]
        ref = reference(x, lr, seed, 20, B, m, mu=0.8, sigma=0.6, coordinate_mean=coordinates == "mean")
        _close(res, r, ref)
    assert not res.diverged.any() and res.steps_done.tolist() == [20] * 4


@pytest.mark.parametrize("d,weights,schedule", [(2, "sigma", "ou"), (3, "inv_sigma", "notebook"),
                                                (1, "uniform", "ou")])
def test_diffusion_replays_plain_numpy_sgd(backend, d, weights, schedule):
    x = 2 * _data(d + 20, 10, d)
    kw = dict(steps=15, batch_size=33, width=24, time_weights=weights, schedule=schedule, n_times=17, delta=0.05)
    res = bigstep.train_diffusion(x, lr=[0.5, 0.05], seed=3, dtype="float64", backend=backend, **kw)
    times, probs = time_grid(n_times=17, T=1.0, delta=0.05, time_weights=weights, schedule=schedule)
    from bigstep.scores import noise_schedule

    mus, sigmas = noise_schedule(times, kind=schedule)
    for r, lr in enumerate((0.5, 0.05)):
        _close(res, r, reference(x, lr, 3, 15, 33, 24, grid=(times, mus, sigmas, probs)))


def test_per_seed_data_sets(backend):
    xs = np.stack([_data(s, 7, 2) for s in (2, 3, 4)])
    res = bigstep.train_dsm(xs, 0.9, 0.5, lr=[0.1, 0.03], seed=[7, 8, 9], steps=12, batch_size=5, width=16,
                            record=(), backend=backend)
    for r in range(6):
        k = r % 3
        _close(res, r, reference(xs[k], res.lr[r], int(res.seed[r]), 12, 5, 16, mu=0.9, sigma=0.5))


def test_float32_follows_float64(backend):
    x = 2 * _data(5, 10, 2)
    kw = dict(lr=0.3, seed=1, steps=30, batch_size=64, width=40, backend=backend)
    r32 = bigstep.train_diffusion(x, dtype="float32", **kw)
    r64 = bigstep.train_diffusion(x, dtype="float64", **kw)
    for a, b in zip((r32.W1, r32.b1, r32.W2), (r64.W1, r64.b1, r64.W2)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())
        assert not np.array_equal(a, b)  # it really ran in float32


def test_backends_agree(backend):
    x = _data(6, 12, 10)
    kw = dict(lr=[0.2, 0.02], seed=[4, 9], steps=25, batch_size=7, width=45, record=("loss",), record_every=10)
    got = bigstep.train_dsm(x, 0.9, 0.4, backend=backend, **kw)
    want = bigstep.train_dsm(x, 0.9, 0.4, backend="numba", **kw)
    for a, b in zip((got.W1, got.b1, got.W2), (want.W1, want.b1, want.W2)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())
    np.testing.assert_allclose(got.history.loss, want.history.loss, rtol=1e-12)


def test_same_as_the_torch_cpu_trainer_up_to_rounding(backend):
    """Same seed, same draws: the fused kernel and the torch loop give the same networks
    (float64: to rounding; float32: to float32 rounding) and the same history rows."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = _data(7, 20, 3)
        kw = dict(lr=[0.1, 0.01], seed=[0, 5], steps=[30, 20], batch_size=17, width=37, record=("loss",),
                  record_every=7)
        a = problems.train_dsm(x, 0.9, 0.5, backend="torch", **kw)
        b = problems.train_dsm(x, 0.9, 0.5, backend=backend, **kw)
        for u, v in zip((a.W1, a.b1, a.W2), (b.W1, b.b1, b.W2)):
            np.testing.assert_allclose(v, u, rtol=0, atol=1e-12 * np.abs(u).max())
        pd_a, pd_b = a.history, b.history
        assert pd_a.drop(columns="loss").equals(pd_b.drop(columns="loss"))
        np.testing.assert_allclose(pd_b.loss, pd_a.loss, rtol=1e-12)
        x2 = 2 * _data(8, 10, 2)
        for dtype, tol in (("float64", 1e-12), ("float32", 2e-5)):
            kw = dict(lr=[0.5, 0.05], seed=[0, 1], steps=40, batch_size=64, width=50, record_every=10, dtype=dtype)
            a = problems.train_diffusion(x2, backend="torch", **kw)
            b = problems.train_diffusion(x2, backend=backend, **kw)
            for u, v in zip((a.W1, a.b1, a.W2), (b.W1, b.b1, b.W2)):
                np.testing.assert_allclose(v, u, rtol=0, atol=tol * np.abs(u).max())
    finally:
        torch.set_num_threads(before)


def test_one_d_dsm_is_the_one_d_trainer(backend):
    """d = 1, loss summed: the same network, update and draws (streams 3 and 4) as
    bigstep.train_sgd with inner="gaussian" (every parameter trained)."""
    x = np.random.default_rng(0).standard_normal(20)
    mu, sigma = (float(v) for v in bigstep.noise_schedule(0.05))
    nd = bigstep.train_dsm(x, mu, sigma, lr=[0.3, 0.01], seed=[2, 3], steps=25, batch_size=50, width=40,
                           record=(), backend=backend)
    one = bigstep.train_sgd(x, mu, sigma, lr=[0.3, 0.01], seed=[2, 3], steps=25, batch_size=50, width=40,
                            inner="gaussian", record=(), backend=backend)
    for r in range(4):
        net = one.networks[r]
        for mine, want in zip((nd.W1[r, :, 0], nd.b1[r], nd.W2[r, 0]), (net.W1, net.b1, net.W2)):
            np.testing.assert_allclose(mine, want, rtol=0, atol=1e-10 * np.abs(want).max())


def test_bit_identical_whatever_the_chunking_threads_and_batching(backend, monkeypatch, restore_threads):
    x = 2 * _data(9, 10, 2)
    kw = dict(lr=[0.4, 0.05], seed=[1, 2], steps=45, batch_size=70, width=19, dtype="float64", backend=backend)
    base = bigstep.train_diffusion(x, record_every=45, **kw)
    other = bigstep.train_diffusion(x, record_every=7, **kw)   # kernel calls cut at other steps
    bigstep.set_num_threads(1)
    one_thread = bigstep.train_diffusion(x, record_every=45, **kw)
    bigstep.set_num_threads(2)
    two = bigstep.train_diffusion(x, record_every=45, **kw)
    for res in (other, one_thread, two):
        for a, b in zip((res.W1, res.b1, res.W2), (base.W1, base.b1, base.W2)):
            assert np.array_equal(a, b)
    for r in range(4):
        alone = bigstep.train_diffusion(x, record_every=45, **dict(kw, lr=base.lr[r], seed=int(base.seed[r])))
        assert np.array_equal(alone.W1[0], base.W1[r]) and np.array_equal(alone.W2[0], base.W2[r])


def test_block_size_does_not_change_the_result(backend):
    """The batch runs in blocks of samples (a cache-sized hidden layer); the sums over the
    batch keep their order, so a batch split into many blocks gives the same bits as
    smaller networks whose batch fits one block: compared through the numpy reference."""
    x = 2 * _data(10, 10, 2)
    m = 2048  # blocks of 8 (float64) samples: 8 blocks per step
    res = bigstep.train_diffusion(x, lr=0.2, seed=4, steps=3, batch_size=64, width=m, dtype="float64",
                                  backend=backend, n_times=9)
    times, probs = time_grid(n_times=9)
    from bigstep.scores import noise_schedule

    mus, sigmas = noise_schedule(times, kind="ou")
    _close(res, 0, reference(x, 0.2, 4, 3, 64, m, grid=(times, mus, sigmas, probs)))


# ------------------------------------------------------------------ divergence and records


def test_divergence_is_marked_contained_and_keeps_the_last_good_step(backend):
    x = _data(2, 10, 2)
    kw = dict(seed=1, steps=40, batch_size=8, width=32, record=("loss",), record_every=10, backend=backend)
    res = bigstep.train_dsm(x, 0.9, 0.3, lr=[500.0, 0.05], **kw)
    assert res.diverged.tolist() == [True, False]
    j = int(res.diverged_step[0])
    assert 0 <= j < 40 and res.diverged_step[1] == -1 and res.steps_done[0] == j
    for a in (res.W1, res.b1, res.W2):
        assert np.isfinite(a).all() and np.abs(a).max() <= 1e8
    if j > 0:  # the parameters after j accepted steps
        upto = bigstep.train_dsm(x, 0.9, 0.3, lr=500.0, **dict(kw, steps=j))
        assert not upto.diverged[0]
        assert np.array_equal(upto.W1[0], res.W1[0]) and np.array_equal(upto.W2[0], res.W2[0])
    alone = bigstep.train_dsm(x, 0.9, 0.3, lr=0.05, **kw)
    assert np.array_equal(alone.W1[0], res.W1[1])
    h = res.history
    assert h[h.network == 0].diverged.iloc[-1] and h[h.network == 0].step.iloc[-1] == j
    assert not h[h.network == 1].diverged.any() and h[h.network == 1].step.tolist() == [0, 10, 20, 30, 40]


def test_max_abs_limit(backend):
    """A parameter beyond max_abs refuses the step (the loss alone would not)."""
    x = _data(3, 6, 2)
    res = bigstep.train_dsm(x, 0.9, 0.5, lr=0.05, steps=5, width=8, batch_size=4, record=(), max_abs=2.0,
                            backend=backend)
    assert res.diverged[0] and res.diverged_step[0] == 0  # N(0, 1) outer weights already exceed 2 after a step


def test_steps_per_learning_rate_and_zero_steps(backend):
    x = _data(4, 6, 2)
    res = bigstep.train_dsm(x, 0.9, 0.5, lr=[0.1, 0.01, 0.02], steps=[0, 20, 7], width=8, batch_size=4,
                            record=("loss",), backend=backend)
    assert res.steps_done.tolist() == [0, 20, 7]
    for mine, ref in zip((res.W1, res.b1, res.W2), init_params(0, 8, 2, 2)):
        np.testing.assert_array_equal(mine[0], ref)
    h = res.history
    assert h[h.network == 0].step.tolist() == [0] and h[h.network == 1].step.tolist() == [20]
    assert h[h.network == 2].step.tolist() == [7]
    one = bigstep.train_dsm(x, 0.9, 0.5, lr=0.02, steps=7, width=8, batch_size=4, record=(), backend=backend)
    assert np.array_equal(one.W2[0], res.W2[2])


def test_excess_risk_records(backend):
    x = _data(5, 8, 2)
    res = bigstep.train_dsm(x, 0.9, 0.5, lr=0.05, steps=20, width=16, batch_size=8, record=("loss", "excess_risk"),
                            record_every=10, n_mc=50, backend=backend)
    h = res.history
    assert h.step.tolist() == [0, 10, 20] and (h.excess_risk > 0).all() and (h.excess_risk_se > 0).all()
    mean, se = bigstep.excess_risk_mc(res.network(0), x, 0.9, 0.5, n_mc=50, seed=0)
    assert h.excess_risk.iloc[-1] == pytest.approx(mean, rel=1e-12)


# ------------------------------------------------------------------ arguments, no torch


def test_kernel_names_the_wrong_array(backend):
    if backend != "cpp":
        pytest.skip("the compiled binding's own checks")
    core = bigstep._backend.core()
    R, m, d = 1, 8, 2
    args = dict(x=np.zeros((1, 4, d)), data_of=np.zeros(R, np.int64), diffusion=False, mu=0.9, sigma=0.5,
                times=np.zeros(0), mus=np.zeros(0), sigmas=np.zeros(0), cdf=np.zeros(0), norm=4.0,
                lr=np.ones(R), seed=np.zeros(R, np.uint64), w1t=np.zeros((R, d, m)), b=np.zeros((R, m)),
                w2=np.zeros((R, d, m)), batch=4, max_abs=1e8, k0=0, k1=1, steps=np.ones(R, np.int64),
                diverged_step=np.full(R, -1, np.int64), loss_sum=np.zeros(R), loss_count=np.zeros(R, np.int64))
    core.sgd_nd_train(**args)
    for name, bad in (("w1t", np.zeros((R, d + 1, m))), ("w2", np.zeros((R, d, m + 1))), ("b", np.zeros((R, 3))),
                      ("data_of", np.array([1], np.int64)), ("w2", np.zeros((R, d, m), np.float32))):
        with pytest.raises((ValueError, TypeError), match=name):
            core.sgd_nd_train(**dict(args, **{name: bad}))


def test_bad_arguments(backend):
    x = _data(1, 5, 2)
    with pytest.raises(ValueError, match="backend"):
        bigstep.train_dsm(x, 0.9, 0.5, lr=0.1, steps=1, backend="tpu")
    with pytest.raises(ValueError, match="device"):
        bigstep.train_dsm(x, 0.9, 0.5, lr=0.1, steps=1, backend=backend, device="cuda")
    with pytest.raises(TypeError, match="dtype"):
        bigstep.train_diffusion(x, lr=0.1, steps=1, backend=backend, dtype="int8")


def test_no_torch_needed():
    """With torch unimportable, train_dsm and train_diffusion still train on the CPU."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np, bigstep\n"
            "x = bigstep.gaussian_noise(0, (10, 2))\n"
            "r = bigstep.train_diffusion(x, lr=0.5, steps=5, batch_size=32, width=16)\n"
            "d = bigstep.train_dsm(x, 0.9, 0.5, lr=0.1, steps=5, width=16, record=('loss', 'excess_risk'), n_mc=10)\n"
            "print('ok', r.steps_done.tolist(), d.steps_done.tolist())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok [5] [5]" in out.stdout, out.stderr


# ------------------------------------------------------------------ fixed-sample sharpness without torch


def _fixed_sample_problem(seed=0, N=40, m=9, p=3, d=2):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, p)), rng.standard_normal(m), rng.standard_normal((d, m)),
            rng.standard_normal((N, p)), rng.standard_normal((N, d)), float(N))


def test_fixed_sample_gradient_and_hvp_match_finite_differences():
    from bigstep.training._fixed_sample import FixedSampleLoss

    W1, b, W2, U, Z, c = _fixed_sample_problem()
    base = FixedSampleLoss(W1, b, W2, U, Z, c)
    theta = np.concatenate([W1.ravel(), b, W2.ravel()])
    v = np.random.default_rng(1).standard_normal(theta.size)
    eps = 1e-6

    def at(t):
        return FixedSampleLoss(*base._split(t), U, Z, c)

    # no pre-activation within eps |v| of a kink: the loss is smooth along v there
    P = U @ W1.T + b
    dP = U @ base._split(v)[0].T + base._split(v)[1]
    assert np.abs(P).min() > 10 * eps * np.abs(dP).max()
    fd_value = (at(theta + eps * v).value() - at(theta - eps * v).value()) / (2 * eps)
    assert base.grad() @ v == pytest.approx(fd_value, rel=1e-7)
    fd_grad = (at(theta + eps * v).grad() - at(theta - eps * v).grad()) / (2 * eps)
    np.testing.assert_allclose(base.hvp(v), fd_grad, rtol=0, atol=1e-6 * np.abs(fd_grad).max())


def test_fixed_sample_hvp_equals_torch_double_backward():
    torch = pytest.importorskip("torch")
    from bigstep.training._fixed_sample import FixedSampleLoss

    W1, b, W2, U, Z, c = _fixed_sample_problem(2, N=30, m=7, p=4, d=3)
    m, p = W1.shape
    theta = torch.tensor(np.concatenate([W1.ravel(), b, W2.ravel()]), requires_grad=True)
    Ut, Zt = torch.tensor(U), torch.tensor(Z)
    H = torch.relu(Ut @ theta[:m * p].reshape(m, p).T + theta[m * p:m * p + m])
    F = H @ theta[m * p + m:].reshape(-1, m).T / m + Zt
    (g,) = torch.autograd.grad((F * F).sum() / c, theta, create_graph=True)
    v = np.random.default_rng(3).standard_normal(theta.numel())
    (hv,) = torch.autograd.grad(g, theta, grad_outputs=torch.tensor(v))
    mine = FixedSampleLoss(W1, b, W2, U, Z, c)
    np.testing.assert_allclose(mine.grad(), g.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mine.hvp(v), hv.numpy(), rtol=1e-11, atol=1e-13)


def test_figure5_sharpness_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np, bigstep\n"
            "x = 2 * bigstep.gaussian_noise(0, (10, 2))\n"
            "r = bigstep.train_diffusion(x, lr=0.5, steps=5, batch_size=32, width=16)\n"
            "s = bigstep.diffusion_sharpness_mc(r, x, n_mc=10)\n"
            "d = bigstep.train_dsm(x, 0.9, 0.5, lr=0.1, steps=5, width=16, record=())\n"
            "t = bigstep.sharpness_mc(d.network(0), x, 0.9, 0.5, n_mc=10)\n"
            "print('ok', s > 0, t > 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok True True" in out.stdout, out.stderr
