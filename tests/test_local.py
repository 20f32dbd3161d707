"""bigstep.local: local and equivariant local empirical denoisers for images.

Every backend (cpp on each instruction set, numba) against the exact 50-digit mpmath
values (tests/reference.py mp_local) and a dense float64 reference (np_local), with the
error model of tests/tolerances.py (LOCAL_ULPS); the covering-patch identity with the
global posterior mean; float32 at small sigma; invariances; bad input; sampling with
LocalScore and its replay from the Philox streams; memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bigstep
from bigstep import _streams as streams
from bigstep import local

import reference as R
import tolerances as tol

SIGMAS = (1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)


def _images(seed, q, n, H, W, C, dtype=np.float64):
    """Queries (q, H, W, C) and data (n, ...): standard normal, the second query close to
    mu x_2 (so that at small sigma one term dominates some pixels and not others)."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((q, H, W, C))
    x = rng.standard_normal((n, H, W, C))
    if q > 1:
        y[1] = 0.8 * x[min(2, n - 1)] + 0.01 * rng.standard_normal((H, W, C))
    return y.astype(dtype), x.astype(dtype)


def _check(m, ref, dense, y, x, mu, sigma, P, dtype, what="mean"):
    """m within the local error model of the exact ref (mean, or score = (mu E - y)/sigma^2)."""
    C = x.shape[-1]
    allowed = tol.local_allowed(dtype, dense, ref["mean"], P, C, np.abs(x).max(), dense["terms"])
    got = np.asarray(m, dtype=np.float64)
    if what == "score":
        e = tol.eps(dtype)
        allowed = (mu * allowed + tol.LOCAL_ULPS * e * (mu * np.abs(ref["mean"]) + np.abs(y))) / sigma**2
    err = np.abs(got - ref[what])
    worst = np.unravel_index(np.argmax(err / allowed), err.shape)
    assert (err <= allowed).all(), (f"{what}: error {err[worst]:.3g} > allowed {allowed[worst]:.3g} at {worst} "
                                    f"(sigma {sigma}, P {P})")


# ------------------------------------------------------------------ exact values


CASES = [  # (H, W, C, n, q), machine, padding, patch
    ((4, 5, 2, 6, 2), False, "zeros", 3),
    ((4, 5, 2, 6, 2), False, "reflect", 3),
    ((5, 4, 1, 9, 2), False, "zeros", 5),
    ((5, 4, 1, 9, 2), False, "reflect", 1),
    ((4, 5, 2, 5, 2), True, "zeros", 3),
    ((4, 4, 1, 5, 2), True, "reflect", 3),
    ((3, 5, 1, 4, 2), True, "zeros", 5),
]


@pytest.mark.parametrize("shape, equivariant, padding, P", CASES)
@pytest.mark.parametrize("sigma", SIGMAS)
def test_posterior_mean_and_score_match_mpmath(backend, shape, equivariant, padding, P, sigma):
    """float64 within LOCAL_ULPS of the 50-digit value (a few ulps where well conditioned),
    sigma from 1e-3 to 1e2, mu = 0.6."""
    H, W, C, n, q = shape
    y, x = _images(7, q, n, H, W, C)
    mu = 0.6
    ref = R.mp_local(y, x, mu, sigma, P, equivariant, padding)
    dense = R.np_local(y, x, mu, sigma, P, equivariant, padding)
    kw = dict(patch=P, equivariant=equivariant, padding=padding, backend=backend)
    m = local.posterior_mean(y, x, mu, sigma, **kw)
    s = local.score(y, x, mu, sigma, **kw)
    assert m.shape == y.shape and m.dtype == np.float64 and s.shape == y.shape
    _check(m, ref, dense, y, x, mu, sigma, P, np.float64)
    _check(s, ref, dense, y, x, mu, sigma, P, np.float64, what="score")


def test_well_conditioned_errors_are_a_few_ulps(backend):
    """At sigma = 1 (logits O(1)): the median error is below 1 ulp of |E| + spread and the
    largest below 4 (the LOCAL_ULPS model with cond ~ O(1) allows more)."""
    y, x = _images(3, 2, 7, 4, 5, 2)
    for equivariant in (False, True):
        ref = R.mp_local(y, x, 1.0, 1.0, 3, equivariant, "zeros")
        dense = R.np_local(y, x, 1.0, 1.0, 3, equivariant, "zeros")
        m = local.posterior_mean(y, x, 1.0, 1.0, patch=3, equivariant=equivariant, backend=backend)
        ulps = np.abs(m - ref["mean"]) / (np.finfo(np.float64).eps * (np.abs(ref["mean"]) + dense["spread"]))
        assert np.median(ulps) < 1.0 and ulps.max() < 4.0 * (1 + dense["cond"].max()), (np.median(ulps), ulps.max())


@pytest.mark.parametrize("equivariant", [False, True])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_float32_is_stable_and_accurate_at_its_precision(backend, equivariant, sigma):
    """float32 in, float32 out, finite at every sigma (each pixel's softmax shifted by its
    own maximum: no 0/0), within the error model with float32's eps of the exact value at
    the float32 inputs."""
    y, x = _images(11, 2, 12, 5, 6, 3, np.float32)
    mu = float(np.float32(0.9))
    s32 = float(np.float32(sigma))
    m = local.posterior_mean(y, x, np.float32(mu), np.float32(sigma), patch=3, equivariant=equivariant,
                             backend=backend)
    assert m.dtype == np.float32 and np.isfinite(m).all()
    dense = R.np_local(y, x, mu, s32, 3, equivariant, "zeros")  # float64 at the float32 inputs
    _check(m, dense, dense, y, x, mu, s32, 3, np.float32)


def test_float32_per_pixel_maximum(backend):
    """A query equal to a training image on its left half and far from every image on its
    right half, sigma = 1e-3: the logits of the right half are ~ -1e7, those of the left
    half ~ 0.  One shift for all pixels (or for the whole batch) would underflow the right
    half to 0/0; each pixel's own maximum keeps it exact (the nearest patch wins there)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 6, 8, 1)).astype(np.float32)
    y = x[:1].copy()
    y[0, :, 4:] = 40.0 + rng.standard_normal((6, 4, 1)).astype(np.float32)
    for equivariant in (False, True):
        m = local.posterior_mean(y, x, 1.0, np.float32(1e-3), patch=3, equivariant=equivariant, backend=backend)
        ref = R.np_local(y, x, 1.0, float(np.float32(1e-3)), 3, equivariant, "zeros")
        assert np.isfinite(m).all()
        np.testing.assert_allclose(m, ref["mean"], rtol=0, atol=1e-6)
        assert np.array_equal(m[0, :, :3], x[0, :, :3])  # the left pixels reproduce x_0 exactly


def test_float32_sums_of_many_terms_are_folded_into_float64(backend):
    """Equivariant 17 x 17 images: 289 terms per pixel per block of images, so the float32
    states are folded into float64 after every block (kFoldTerms = 256) and merged over 5+
    blocks; the result stays within the float32 model of the dense float64 reference."""
    y, x = _images(21, 1, 45, 17, 17, 1, np.float32)
    m = local.posterior_mean(y, x, np.float32(0.9), np.float32(0.6), patch=3, equivariant=True, backend=backend)
    dense = R.np_local(y, x, float(np.float32(0.9)), float(np.float32(0.6)), 3, True, "zeros")
    _check(m, dense, dense, y, x, float(np.float32(0.9)), float(np.float32(0.6)), 3, np.float32)


@pytest.mark.parametrize("shape, P, equivariant, padding", [
    ((13, 14, 2), 25, False, "zeros"), ((13, 14, 2), 27, True, "zeros"), ((26, 12, 1), 25, True, "zeros"),
    ((26, 25, 1), 25, False, "reflect")])
def test_long_windows_blocked_sums(backend, shape, P, equivariant, padding):
    """Windows of 25 pixels and more along an axis are summed by prefix and suffix sums
    within blocks (O(1) additions per pixel whatever P): within the same error model."""
    H, W, C = shape
    y, x = _images(17, 2, 4, H, W, C)
    m = local.posterior_mean(y, x, 0.7, 3.0, patch=P, equivariant=equivariant, padding=padding, backend=backend)
    dense = R.np_local(y, x, 0.7, 3.0, P, equivariant, padding)
    _check(m, dense, dense, y, x, 0.7, 3.0, P, np.float64)


# ------------------------------------------------------------------ identities


@pytest.mark.parametrize("shape", [(5, 4, 2), (3, 6, 1)])
def test_covering_patch_is_the_global_posterior_mean(backend, shape):
    """Zero padding and P >= 2 max(H, W) - 1: every window covers the whole image from every
    pixel, so E_u is the global posterior mean of the flattened images at every pixel (for
    P = 2 max - 1 and beyond).  One size smaller is not (the test can fail)."""
    H, W, C = shape
    y, x = _images(13, 3, 10, H, W, C)
    mu, sigma = 0.8, 1.5
    g = bigstep.posterior_mean(y.reshape(3, -1), x.reshape(10, -1), mu, sigma, backend=backend).reshape(y.shape)
    cover = 2 * max(H, W) - 1
    for P in (cover, cover + 4, 101):
        m = local.posterior_mean(y, x, mu, sigma, patch=P, backend=backend)
        dense = R.np_local(y, x, mu, sigma, cover, False, "zeros")
        allowed = tol.PAIR_FACTOR * tol.local_allowed(np.float64, dense, g, cover, C, np.abs(x).max(), 10)
        assert (np.abs(m - g) <= allowed).all(), (P, np.abs(m - g).max())
    m = local.posterior_mean(y, x, mu, sigma, patch=cover - 2, backend=backend)
    assert np.abs(m - g).max() > 1e-6


def test_score_is_mu_mean_minus_y_over_sigma2(backend):
    y, x = _images(2, 3, 8, 4, 4, 1)
    mu, sigma = np.array([0.5, 0.9, 1.0]), np.array([0.3, 1.0, 2.0])
    m = local.posterior_mean(y, x, mu, sigma, patch=3, equivariant=True, backend=backend)
    s = local.score(y, x, mu, sigma, patch=3, equivariant=True, backend=backend)
    expect = (mu[:, None, None, None] * m - y) / sigma[:, None, None, None] ** 2
    np.testing.assert_allclose(s, expect, rtol=1e-13, atol=1e-13)


def test_one_noise_level_per_query_equals_one_call_per_query(backend):
    y, x = _images(4, 4, 9, 5, 5, 2)
    mu, sigma = np.array([0.3, 0.6, 0.9, 1.0]), np.array([0.05, 0.5, 1.0, 4.0])
    for equivariant in (False, True):
        both = local.posterior_mean(y, x, mu, sigma, patch=3, equivariant=equivariant, backend=backend)
        for j in range(4):
            one = local.posterior_mean(y[j:j + 1], x, mu[j], sigma[j], patch=3, equivariant=equivariant,
                                       backend=backend)
            dense = R.np_local(y[j:j + 1], x, mu[j], sigma[j], 3, equivariant, "zeros")
            allowed = tol.PAIR_FACTOR * tol.local_allowed(np.float64, dense, one, 3, 2, np.abs(x).max(),
                                                          dense["terms"])
            assert (np.abs(both[j:j + 1] - one) <= allowed).all()


def test_grayscale_images_are_one_channel(backend):
    y, x = _images(6, 2, 7, 4, 6, 1)
    for equivariant in (False, True):
        a = local.posterior_mean(y[..., 0], x[..., 0], 0.9, 0.7, patch=3, equivariant=equivariant, backend=backend)
        b = local.posterior_mean(y, x, 0.9, 0.7, patch=3, equivariant=equivariant, backend=backend)
        assert a.shape == y.shape[:3] and np.array_equal(a, b[..., 0])


def test_backends_agree_to_rounding():
    """Every cpp instruction set and numba give the same values up to the error model;
    one query of a batch equals its own call (the batch is split differently)."""
    from conftest import all_backend_ids, use_backend

    y, x = _images(8, 20, 37, 6, 5, 3)
    mu, sigma = 0.7, 0.4
    for equivariant in (False, True):
        dense = R.np_local(y[:2], x, mu, sigma, 5, equivariant, "reflect")
        allowed = tol.PAIR_FACTOR * tol.local_allowed(np.float64, dense, dense["mean"], 5, 3, np.abs(x).max(),
                                                      dense["terms"])
        for config in all_backend_ids():
            if config == "cuda":
                continue
            with use_backend(config) as name:
                m = local.posterior_mean(y, x, mu, sigma, patch=5, equivariant=equivariant, padding="reflect",
                                         backend=name)
                one = local.posterior_mean(y[:2], x, mu, sigma, patch=5, equivariant=equivariant,
                                           padding="reflect", backend=name)
            assert (np.abs(m[:2] - dense["mean"]) <= allowed).all(), config
            assert (np.abs(one - dense["mean"]) <= allowed).all(), config


def test_same_bits_for_any_thread_count(backend, restore_threads):
    y, x = _images(9, 3, 50, 6, 6, 2)
    outs = []
    for threads in (1, 2, 3):
        bigstep.set_num_threads(threads)
        outs.append(local.posterior_mean(y, x, 0.9, 0.3, patch=3, equivariant=True, backend=backend))
        outs.append(local.posterior_mean(y, x, 0.9, 0.3, patch=5, backend=backend))
    for a, b in zip(outs[:2], outs[2:4]):
        assert np.array_equal(a, b)
    for a, b in zip(outs[:2], outs[4:]):
        assert np.array_equal(a, b)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**31), H=st.integers(1, 5), W=st.integers(1, 5), C=st.integers(1, 3),
       n=st.integers(1, 12), half=st.integers(0, 3), equivariant=st.booleans(),
       padding=st.sampled_from(["zeros", "reflect"]))
def test_permuting_training_images_and_flipping_all_images_commute(backend, seed, H, W, C, n, half, equivariant,
                                                                    padding):
    """E does not depend on the order of the training images, and flipping the query and
    every training image left-right (or up-down) flips E (both padding rules are
    symmetric)."""
    P = 2 * half + 1
    if padding == "reflect" and P > min(H, W):
        padding = "zeros"
    y, x = _images(seed, 2, n, H, W, C)
    kw = dict(patch=P, equivariant=equivariant, padding=padding, backend=backend)
    m = local.posterior_mean(y, x, 0.8, 0.9, **kw)
    dense = R.np_local(y, x, 0.8, 0.9, P, equivariant, padding)
    allowed = tol.PAIR_FACTOR * tol.local_allowed(np.float64, dense, m, P, C, np.abs(x).max(), dense["terms"])
    perm = np.random.default_rng(seed).permutation(n)
    assert (np.abs(local.posterior_mean(y, x[perm], 0.8, 0.9, **kw) - m) <= allowed).all()
    for axis in (1, 2):
        flipped = local.posterior_mean(np.flip(y, axis), np.flip(x, axis), 0.8, 0.9, **kw)
        assert (np.abs(np.flip(flipped, axis) - m) <= allowed).all()


def test_torch_tensors_in_torch_tensors_out():
    torch = pytest.importorskip("torch")
    y, x = _images(1, 2, 5, 4, 4, 1)
    m = local.posterior_mean(torch.from_numpy(y), torch.from_numpy(x), 0.9, 0.5, patch=3)
    assert isinstance(m, torch.Tensor)
    np.testing.assert_array_equal(m.numpy(), local.posterior_mean(y, x, 0.9, 0.5, patch=3))


# ------------------------------------------------------------------ bad input


def test_bad_input_gets_named_errors():
    y, x = _images(0, 2, 4, 5, 6, 1)
    ok = dict(patch=3)
    with pytest.raises(ValueError, match="patch must be an odd positive integer.*got 4"):
        local.posterior_mean(y, x, 1.0, 1.0, patch=4)
    with pytest.raises(ValueError, match="patch must be an odd positive integer.*got 0"):
        local.score(y, x, 1.0, 1.0, patch=0)
    with pytest.raises(TypeError, match="patch must be an odd positive integer"):
        local.posterior_mean(y, x, 1.0, 1.0, patch=3.0)
    with pytest.raises(TypeError, match="patch"):
        local.posterior_mean(y, x, 1.0, 1.0, patch=True)
    with pytest.raises(ValueError, match=r"patch must be at most min\(H, W\) = 5 with reflect"):
        local.posterior_mean(y, x, 1.0, 1.0, patch=7, padding="reflect")
    local.posterior_mean(y, x, 1.0, 1.0, patch=7, padding="zeros")  # fine with zeros
    with pytest.raises(ValueError, match="padding must be one of"):
        local.posterior_mean(y, x, 1.0, 1.0, patch=3, padding="wrap")
    with pytest.raises(ValueError, match="y must have images of the shape of x's"):
        local.posterior_mean(y[:, :4], x, 1.0, 1.0, **ok)
    with pytest.raises(ValueError, match="y must have images of the shape of x's"):
        local.posterior_mean(y, x[..., 0], 1.0, 1.0, **ok)
    with pytest.raises(ValueError, match=r"x must have shape \(N, H, W\) or \(N, H, W, C\)"):
        local.posterior_mean(y, x[0, 0], 1.0, 1.0, **ok)
    bad = y.copy()
    bad[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match="y must be finite"):
        local.posterior_mean(bad, x, 1.0, 1.0, **ok)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="x must be finite"):
        local.score(y, bad, 1.0, 1.0, **ok)
    with pytest.raises(ValueError, match="at least one training image"):
        local.posterior_mean(y, x[:0], 1.0, 1.0, **ok)
    with pytest.raises(ValueError, match="sigma must be a positive finite number"):
        local.posterior_mean(y, x, 1.0, -1.0, **ok)
    with pytest.raises(ValueError, match=r"mu must be a scalar or have shape \(2,\)"):
        local.posterior_mean(y, x, np.ones(3), 1.0, **ok)
    with pytest.raises(ValueError, match="sigma must be at least .* for float32"):
        local.posterior_mean(y.astype(np.float32), x.astype(np.float32), 1.0, 1e-25, **ok)
    with pytest.raises(TypeError, match="equivariant must be True or False"):
        local.posterior_mean(y, x, 1.0, 1.0, patch=3, equivariant="yes")
    with pytest.raises(ValueError, match="backend"):
        local.posterior_mean(y, x, 1.0, 1.0, patch=3, backend="gpu")


def test_empty_query_batch(backend):
    y, x = _images(0, 2, 4, 3, 3, 2)
    m = local.posterior_mean(y[:0], x, 1.0, 1.0, patch=3, backend=backend)
    assert m.shape == (0, 3, 3, 2)


def test_bindings_check_their_arguments():
    core = pytest.importorskip("bigstep._core")
    y, x = _images(0, 1, 2, 3, 3, 1)
    lv = np.ones(1)
    with pytest.raises(ValueError, match="reflect padding needs"):
        core.local_posterior_mean(y, x, lv, lv, 3, 3, 1, False, 4)
    with pytest.raises(ValueError, match="like x"):
        core.local_posterior_mean(y[:, :2], x, lv, lv, 1, 1, 0, False, 4)
    with pytest.raises(ValueError, match="padding must be"):
        core.local_posterior_mean(y, x, lv, lv, 1, 1, 7, False, 4)
    with pytest.raises(ValueError, match="must have 4 dimension"):
        core.local_posterior_mean(y[0], x, lv, lv, 1, 1, 0, False, 4)


# ------------------------------------------------------------------ sampling


def test_local_score_object_evaluates_the_local_score():
    y, x = _images(1, 3, 6, 4, 5, 1)
    s = bigstep.LocalScore(x[..., 0], patch=3)
    mu, sigma = bigstep.noise_schedule(0.4)
    flat = y[..., 0].reshape(3, -1)
    expect = local.score(y[..., 0], x[..., 0], mu, sigma, patch=3).reshape(3, -1)
    np.testing.assert_array_equal(s(flat, 0.4), expect)
    np.testing.assert_array_equal(s(y[..., 0], 0.4), expect.reshape(3, 4, 5))
    t = np.array([0.1, 0.4, 0.9])  # one time per row
    rows = np.stack([s(flat[k:k + 1], t[k])[0] for k in range(3)])
    np.testing.assert_allclose(s(flat, t), rows, rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match="x must have shape"):
        s(np.zeros((2, 7)), 0.5)


def test_patch_schedule_sets_the_patch_size_per_time():
    y, x = _images(2, 2, 8, 5, 5, 1)
    seen = []

    def schedule(t):
        seen.append(t)
        return 5 if t > 0.5 else 1

    s = bigstep.LocalScore(x, patch_schedule=schedule, equivariant=True)
    flat = y.reshape(2, -1)
    for t, P in ((0.8, 5), (0.2, 1)):
        mu, sigma = bigstep.noise_schedule(t)
        expect = local.score(y, x, mu, sigma, patch=P, equivariant=True).reshape(2, -1)
        np.testing.assert_array_equal(s(flat, t), expect)
    assert seen == [0.8, 0.2]
    with pytest.raises(ValueError, match=r"patch_schedule\(0.3\) must be an odd positive integer"):
        bigstep.LocalScore(x, patch_schedule=lambda t: 2)(flat, 0.3)
    with pytest.raises(ValueError, match="needs patch"):
        bigstep.LocalScore(x)
    with pytest.raises(TypeError, match="patch_schedule must be a callable"):
        bigstep.LocalScore(x, patch_schedule=3)


@pytest.mark.parametrize("equivariant", [False, True])
def test_sample_reverse_runs_the_local_machines_and_replays(backend, equivariant):
    """sample_reverse with a LocalScore equals the Euler-Maruyama loop written out with the
    documented Philox streams (X_0: stream 0; step k: stream 1 at offset k N d) and
    bigstep.local.score: the same bits on the same backend."""
    y, x = _images(3, 1, 12, 4, 4, 1)
    score = bigstep.LocalScore(x[..., 0], patch=3, equivariant=equivariant)
    N, d, steps, seed = 5, 16, 6, 11
    out = bigstep.sample_reverse(score, N, d, n_steps=steps, delta=0.05, seed=seed, backend=backend)
    h = (1.0 - 0.05) / steps  # uniform grid: tau_k = T - k h, the score read at tau_0 .. tau_{N-1}
    tau = 1.0 - np.arange(steps) * h
    # the torch backend runs the device path, which draws its noise with the torch random kernels
    noise = dict(backend="torch") if backend == "torch" else {}
    state = bigstep.gaussian_noise(seed, (N, d), stream=streams.SAMPLER_INITIAL, **noise)
    for k in range(steps):
        mu, sigma = bigstep.noise_schedule(tau[k])
        s = local.score(state.reshape(N, 4, 4), x[..., 0], float(mu), float(sigma), patch=3,
                        equivariant=equivariant, backend=backend).reshape(N, d)
        z = bigstep.gaussian_noise(seed, (N, d), stream=streams.SAMPLER_STEPS, offset=k * N * d, **noise)
        state = state + h * (state + 2 * s) + np.sqrt(2 * h) * z
    np.testing.assert_array_equal(out, state)
    again = bigstep.sample_reverse(score, N, d, n_steps=steps, delta=0.05, seed=seed, backend=backend)
    np.testing.assert_array_equal(out, again)
    with pytest.raises(ValueError, match="dim must match"):
        bigstep.sample_reverse(score, N, d + 1, n_steps=2)


def test_sampling_backends_agree():
    from conftest import all_backend_ids, use_backend

    x = np.random.default_rng(4).standard_normal((20, 5, 5))
    score = bigstep.LocalScore(x, patch=3, equivariant=True)
    outs = []
    for config in all_backend_ids():
        if config == "cuda":
            continue
        with use_backend(config) as name:
            outs.append(bigstep.sample_reverse(score, 4, 25, n_steps=8, seed=2, backend=name))
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ memory

_MEMORY = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    import bigstep
    backend, isa = sys.argv[1], sys.argv[2]
    if isa:
        import bigstep._core as core
        assert core.set_isa(isa), isa
    unit = 1.0 / 1024 if sys.platform != "darwin" else 1.0 / 2**20
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 16, 16, 3))
    y = rng.standard_normal((2, 16, 16, 3))
    def run(y, x, P):
        return [bigstep.local.posterior_mean(y, x, 0.9, 0.5, patch=P, equivariant=e, backend=backend)
                for e in (False, True)]
    run(y[:1, :4, :4], x[:8, :4, :4], 3)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
    out = run(y, x, 9)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
    print(json.dumps({"before_mb": before, "after_mb": after, "finite": bool(all(np.isfinite(o).all() for o in out))}))
""")


def test_memory_is_o_inputs_not_the_patch_matrix(backend):
    """n = 2000 images of 16 x 16 x 3 (12 MB), P = 9: the patch matrix would be
    n H W P^2 C doubles = 1 GB.  Both machines raise the peak RSS by less than 100 MB
    (the packed, padded copy of the data is 28 MB)."""
    isa = ""
    if backend == "cpp":
        import bigstep._core as core

        isa = core.simd_level()
    proc = subprocess.run([sys.executable, "-c", _MEMORY, backend, isa], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["finite"] and r["after_mb"] - r["before_mb"] < 100.0, r
