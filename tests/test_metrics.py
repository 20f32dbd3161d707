"""The metrics family: MMD^2, nearest neighbours, memorization ratio (docs/design.md section 2).

Every kernel test takes the `backend` fixture (each compiled instruction set and numba).
References are plain O(N M) numpy float64 implementations, written here from the
definitions, independent of bigstep.

Tolerances.  The kernels and the reference both form squared distances in difference
form and sum the kernel values in float64, so each kernel sum S (of K terms, each in
[0, 1]) agrees to a few K-independent ulps of S times log K at worst; the reference's
np.sum is pairwise.  MMD^2 = S_aa / N^2 + S_bb / M^2 - 2 S_ab / (N M) cancels terms of
size <= 1, so the allowed absolute error is ATOL_MMD = 1e-12 (a 1e-13 relative error
in each mean kernel value, ~500 ulps: far above rounding, far below any wrong formula,
whose errors are >= 1e-6 on these data).  The reference is evaluated at the float32-
rounded inputs for float32 tests, since the kernels widen float32 exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import bigstep

ATOL_MMD = 1e-12
RTOL_DIST = 4 * np.finfo(np.float64).eps  # sqrt of a sum of d squares, both in float64


# ------------------------------------------------------------------ references


def ref_kernel_sum(x, y, h):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    r2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return np.exp(-r2 / (2 * h * h)).sum()


def ref_mmd2(a, b, h=1.0, unbiased=False):
    n, m = len(a), len(b)
    saa, sbb, sab = ref_kernel_sum(a, a, h), ref_kernel_sum(b, b, h), ref_kernel_sum(a, b, h)
    if unbiased:
        return (saa - n) / (n * (n - 1)) + (sbb - m) / (m * (m - 1)) - 2 * sab / (n * m)
    return saa / n**2 + sbb / m**2 - 2 * sab / (n * m)


def ref_neighbors(samples, train, k):
    s = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    t = np.asarray(train, dtype=np.float64).reshape(len(train), -1)
    r2 = ((s[:, None, :] - t[None, :, :]) ** 2).sum(-1)
    order = np.argsort(r2, axis=1, kind="stable")[:, :k]  # stable: ties to the lower index
    return np.sqrt(np.take_along_axis(r2, order, axis=1)), order


# ------------------------------------------------------------------ MMD


MMD_CASES = [  # (N, M, d, bandwidth)
    (1, 1, 2, 1.0),
    (1, 7, 1, 0.5),
    (37, 1, 3, 2.0),
    (200, 150, 1, 1.0),
    (300, 257, 2, 1.0),
    (129, 131, 2, 0.3),
    (140, 90, 5, 1.5),
    (100, 120, 64, 8.0),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("case", MMD_CASES, ids=[f"N{c[0]}-M{c[1]}-d{c[2]}-h{c[3]}" for c in MMD_CASES])
def test_mmd2_matches_reference(backend, case, unbiased, dtype):
    n, m, d, h = case
    rng = np.random.default_rng(n * 1000 + m + d)
    a = rng.standard_normal((n, d)).astype(dtype)
    b = (1.2 * rng.standard_normal((m, d)) + 0.3).astype(dtype)
    if d == 1:
        a = a[:, 0]  # (N,) is read as d = 1
    if unbiased and min(n, m) < 2:  # the U-statistic needs two points per sample
        with pytest.raises(ValueError, match="at least 2 points"):
            bigstep.mmd2(a, b, bandwidth=h, unbiased=unbiased, backend=backend)
        return
    got = bigstep.mmd2(a, b, bandwidth=h, unbiased=unbiased, backend=backend)
    assert isinstance(got, float)
    assert got == pytest.approx(ref_mmd2(a, b, h, unbiased), abs=ATOL_MMD, rel=0)


def test_mmd2_zero_on_identical_samples(backend):
    rng = np.random.default_rng(3)
    for d in (1, 2, 64):
        x = rng.standard_normal((301, d))
        assert abs(bigstep.mmd2(x, x, backend=backend)) <= 1e-14
        assert abs(bigstep.mmd2(x, x.copy(), bandwidth=0.5, backend=backend)) <= 1e-14
        # unbiased on identical samples: 2 (S - N)/(N (N - 1)) - 2 S/N^2, not 0
        assert bigstep.mmd2(x, x, unbiased=True, backend=backend) == pytest.approx(
            ref_mmd2(x, x, unbiased=True), abs=ATOL_MMD, rel=0)


def test_mmd2_symmetric_and_translation_invariant(backend):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((150, 2)), rng.standard_normal((97, 2)) + 0.5
    for unbiased in (False, True):
        ab = bigstep.mmd2(a, b, bandwidth=0.7, unbiased=unbiased, backend=backend)
        ba = bigstep.mmd2(b, a, bandwidth=0.7, unbiased=unbiased, backend=backend)
        shifted = bigstep.mmd2(a + 3.0, b + 3.0, bandwidth=0.7, unbiased=unbiased, backend=backend)
        assert ab == pytest.approx(ba, abs=ATOL_MMD, rel=0)
        assert ab == pytest.approx(shifted, abs=1e-11, rel=0)  # the shift rounds the inputs


@pytest.mark.parametrize("h", [0.1, 1.0, 3.0])
def test_mmd2_closed_forms(backend, h):
    u, v = np.array([[0.0, 1.0]]), np.array([[2.0, -1.0]])
    r2 = 8.0
    # two single points: k(u,u) + k(v,v) - 2 k(u,v)
    assert bigstep.mmd2(u, v, bandwidth=h, backend=backend) == pytest.approx(2 - 2 * math.exp(-r2 / (2 * h * h)), rel=1e-14,
                                                                   abs=1e-300)
    # two points against one: a = {u, v}, b = {u}: (2 + 2k)/4 + 1 - 2 (1 + k)/2 = (1 - k)/2
    k = math.exp(-r2 / (2 * h * h))
    assert bigstep.mmd2(np.vstack([u, v]), u, bandwidth=h, backend=backend) == pytest.approx((1 - k) / 2, rel=1e-14, abs=1e-300)
    # unbiased, a = {u, v}, b = {u, u}: 2k/2 + 2/2 - 2 (2 + 2k)/4 = 0
    assert bigstep.mmd2(np.vstack([u, v]), np.vstack([u, u]), bandwidth=h, unbiased=True, backend=backend) == pytest.approx(0, abs=1e-15)


def test_mmd2_far_apart_and_tiny_bandwidth(backend):
    """Kernel values that underflow: MMD^2 -> 1/N + 1/M (biased), 2 (unbiased)."""
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((50, 2)), rng.standard_normal((40, 2)) + 1e3
    assert bigstep.mmd2(a, b, backend=backend) == pytest.approx(ref_mmd2(a, b), abs=ATOL_MMD, rel=0)
    assert bigstep.mmd2(a, b, bandwidth=1e-6, backend=backend) == pytest.approx(1 / 50 + 1 / 40, rel=1e-14)
    assert bigstep.mmd2(a, b, bandwidth=1e-6, unbiased=True, backend=backend) == pytest.approx(0.0, abs=1e-15)


def test_mmd2_same_on_every_backend_and_thread_count(restore_threads):
    from conftest import all_backend_ids, use_backend

    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((700, 2)), rng.standard_normal((500, 2))
    results = {}
    for config in all_backend_ids():
        with use_backend(config) as name:
            for threads in (1, 2):
                bigstep.set_num_threads(threads)
                results[(config, threads)] = bigstep.mmd2(a, b, backend=name)
    for config in all_backend_ids():  # bitwise the same across thread counts
        assert results[(config, 1)] == results[(config, 2)]
    values = np.array(list(results.values()))
    assert np.ptp(values) <= ATOL_MMD


def test_mmd2_torch_and_integer_inputs(backend):
    x = np.arange(12.0).reshape(6, 2) / 7
    y = x[::-1] + 0.25
    want = ref_mmd2(x, y)
    ints = np.arange(12).reshape(6, 2)
    assert bigstep.mmd2(ints, ints, backend=backend) == pytest.approx(0, abs=1e-15)
    torch = pytest.importorskip("torch")
    assert bigstep.mmd2(torch.from_numpy(x), torch.from_numpy(y), backend=backend) == pytest.approx(want, abs=ATOL_MMD)


@pytest.mark.parametrize("bad, exc, match", [
    (dict(a=np.ones((3, 2, 1))), ValueError, "a must have shape"),
    (dict(b=np.ones((0, 2))), ValueError, "b must contain at least one point"),
    (dict(b=np.ones((4, 3))), ValueError, "same dimension"),
    (dict(a=np.array([[0.0, np.nan]])), ValueError, "a must be finite"),
    (dict(b=np.array([[np.inf, 0.0]])), ValueError, "b must be finite"),
    (dict(bandwidth=0.0), ValueError, "bandwidth must be a positive finite number"),
    (dict(bandwidth=-1.0), ValueError, "bandwidth"),
    (dict(bandwidth=float("nan")), ValueError, "bandwidth"),
    (dict(bandwidth="1"), TypeError, "bandwidth must be numeric"),
    (dict(unbiased=1), TypeError, "unbiased must be a bool"),
    (dict(unbiased=True, a=np.ones((1, 2))), ValueError, "at least 2 points in a"),
    (dict(a=np.array([["x", "y"]])), TypeError, "a must have a real numeric dtype"),
    (dict(backend="gpu"), ValueError, "backend must be one of"),
])
def test_mmd2_bad_inputs(bad, exc, match):
    args = dict(a=np.zeros((3, 2)), b=np.ones((4, 2)), bandwidth=1.0, unbiased=False, backend="auto")
    args.update(bad)
    with pytest.raises(exc, match=match):
        bigstep.mmd2(args["a"], args["b"], bandwidth=args["bandwidth"], unbiased=args["unbiased"], backend=args["backend"])


# ------------------------------------------------------------------ nearest neighbours


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, m, d, k", [(1, 1, 1, 1), (50, 3, 2, 3), (300, 257, 2, 2), (130, 140, 5, 7),
                                        (40, 300, 64, 4), (20, 10, 1, 10)])
def test_nearest_neighbors_match_brute_force(backend, n, m, d, k, dtype):
    rng = np.random.default_rng(n + m + d + k)
    s = rng.standard_normal((n, d)).astype(dtype)
    t = rng.standard_normal((m, d)).astype(dtype)
    dist, idx = bigstep.nearest_neighbors(s, t, k=k, backend=backend)
    rd, ri = ref_neighbors(s, t, k)
    assert dist.dtype == dtype and idx.dtype == np.int64 and dist.shape == idx.shape == (n, k)
    np.testing.assert_array_equal(idx, ri)
    tol = RTOL_DIST if dtype == np.float64 else np.finfo(np.float32).eps  # float32: the final rounding
    np.testing.assert_allclose(dist, rd, rtol=tol, atol=0)


def test_nearest_neighbors_ties_and_duplicates(backend):
    """Integer grid: distances are exact, so ties are real ties, ordered by index."""
    train = np.array([[0, 0], [1, 0], [0, 1], [1, 0], [-1, 0], [0, -1], [2, 2], [0, 0]], dtype=np.float64)
    samples = np.array([[0, 0], [1, 0], [0.5, 0], [5, 5], [1, 1]], dtype=np.float64)
    dist, idx = bigstep.nearest_neighbors(samples, train, k=8, backend=backend)
    rd, ri = ref_neighbors(samples, train, 8)
    np.testing.assert_array_equal(idx, ri)
    np.testing.assert_array_equal(dist, rd)
    assert idx[0, :2].tolist() == [0, 7] and dist[0, :2].tolist() == [0.0, 0.0]  # duplicated point
    assert idx[0, 2:6].tolist() == [1, 2, 3, 4]  # four at distance 1, by index
    assert idx[1, :2].tolist() == [1, 3]


def test_nearest_neighbors_many_ties_across_tiles(backend):
    """More tied points than a tile holds: the lowest indices win."""
    train = np.zeros((1000, 2))
    train[::3] = 1.0
    dist, idx = bigstep.nearest_neighbors(np.zeros((3, 2)), train, k=5, backend=backend)
    np.testing.assert_array_equal(idx, np.tile([1, 2, 4, 5, 7], (3, 1)))
    np.testing.assert_array_equal(dist, 0.0)


def test_nearest_neighbors_shapes_and_types(backend):
    dist, idx = bigstep.nearest_neighbors(np.array([0.2, 0.9]), np.array([0.0, 1.0, 3.0]), k=1, backend=backend)
    assert dist.tolist() == [[0.2], [pytest.approx(0.1)]] and idx.tolist() == [[0], [1]]
    dist, idx = bigstep.nearest_neighbors(np.empty((0, 3)), np.ones((4, 3)), k=2, backend=backend)
    assert dist.shape == idx.shape == (0, 2)
    torch = pytest.importorskip("torch")
    dist, idx = bigstep.nearest_neighbors(torch.zeros(3, 2), torch.ones(4, 2), backend=backend)
    assert isinstance(dist, torch.Tensor) and dist.dtype == torch.float32 and idx.dtype == torch.int64


@pytest.mark.parametrize("bad, exc, match", [
    (dict(k=0), ValueError, "k must be between 1 and the number of training points"),
    (dict(k=5), ValueError, r"k must be between 1 and the number of training points \(4\), got 5"),
    (dict(k=2.0), TypeError, "k must be an integer"),
    (dict(train=np.ones((0, 2))), ValueError, "train must contain at least one point"),
    (dict(train=np.ones((4, 3))), ValueError, "same dimension"),
    (dict(samples=np.full((2, 2), np.nan)), ValueError, "samples must be finite"),
    (dict(train=np.full((4, 2), np.nan)), ValueError, "train must be finite"),
    (dict(samples=np.ones((2, 2, 2))), ValueError, "samples must have shape"),
])
def test_nearest_neighbors_bad_inputs(bad, exc, match):
    args = dict(samples=np.zeros((2, 2)), train=np.ones((4, 2)), k=2)
    args.update(bad)
    with pytest.raises(exc, match=match):
        bigstep.nearest_neighbors(args["samples"], args["train"], k=args["k"])


# ------------------------------------------------------------------ memorization


def test_memorization_ratio_handmade(backend):
    train = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0], [10.0, 10.0], [10.0, 10.0]])
    samples = np.array([
        [0.0, 0.0],    # on a training point: 0 / 3 = 0
        [1.0, 0.0],    # 1 / 3
        [2.0, 0.0],    # equidistant from two points: 1
        [0.0, 1.0],    # 1 / 2
        [10.0, 10.0],  # on a duplicated point: d2 = 0, defined as 1
        [10.0, 11.0],  # next to the duplicated point: 1 / 1
    ])
    ratio = bigstep.memorization_ratio(samples, train, backend=backend)
    np.testing.assert_allclose(ratio, [0.0, 1 / 3, 1.0, 0.5, 1.0, 1.0], rtol=1e-15, atol=0)
    # strictly below the threshold: 0 only (1/3 is not < 1/3 ... up to its rounding)
    assert bigstep.memorized_fraction(samples, train, backend=backend) == pytest.approx(1 / 6)
    assert bigstep.memorized_fraction(samples, train, threshold=0.6, backend=backend) == pytest.approx(3 / 6)
    assert bigstep.memorized_fraction(samples, train, threshold=1.0, backend=backend) == pytest.approx(3 / 6)


def test_memorized_fraction_copies_and_noise(backend):
    rng = np.random.default_rng(8)
    train = rng.uniform(-5, 5, (10, 2))
    copies = train[rng.integers(0, 10, 300)] + 1e-3 * rng.standard_normal((300, 2))
    fresh = rng.uniform(-5, 5, (300, 2))
    assert bigstep.memorized_fraction(copies, train, backend=backend) == 1.0
    frac = bigstep.memorized_fraction(fresh, train, backend=backend)
    ratio = ref_neighbors(fresh, train, 2)[0]
    assert frac == np.mean(ratio[:, 0] / ratio[:, 1] < 1 / 3)
    assert 0 < frac < 0.5
    r32 = bigstep.memorization_ratio(fresh.astype(np.float32), train.astype(np.float32), backend=backend)
    assert r32.dtype == np.float32


@pytest.mark.parametrize("call, exc, match", [
    (lambda: bigstep.memorization_ratio(np.zeros((2, 2)), np.ones((1, 2))), ValueError, "at least 2 points"),
    (lambda: bigstep.memorized_fraction(np.zeros((2, 2)), np.ones((3, 2)), threshold=0.0), ValueError, "threshold"),
    (lambda: bigstep.memorized_fraction(np.zeros((2, 2)), np.ones((3, 2)), threshold=1.5), ValueError, "threshold"),
    (lambda: bigstep.memorized_fraction(np.zeros((2, 2)), np.ones((3, 2)), threshold="a"), TypeError, "threshold"),
    (lambda: bigstep.memorized_fraction(np.zeros((0, 2)), np.ones((3, 2))), ValueError, "samples must contain"),
    (lambda: bigstep.memorization_ratio(np.zeros((2, 3)), np.ones((3, 2))), ValueError, "same dimension"),
])
def test_memorization_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ------------------------------------------------------------------ memory


_MEMORY_SCRIPT = """
import json, resource, sys
import numpy as np
import bigstep

backend = sys.argv[1]
rng = np.random.default_rng(0)
a, b = rng.standard_normal((8_000, 2)), rng.standard_normal((8_000, 2))
small = (a[:16], b[:16])
for x, y in (small, small):  # warm-up: imports, JIT, thread pools
    bigstep.mmd2(x, y, backend=backend), bigstep.nearest_neighbors(x, y, backend=backend)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
value = bigstep.mmd2(a, b, backend=backend)
dist, idx = bigstep.nearest_neighbors(a, b, backend=backend)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"grew_mb": after - before, "ok": bool(np.isfinite(value) and dist.shape == (8_000, 2))}))
"""


@pytest.mark.parametrize("name", ["cpp", "numba"])
def test_metrics_stream_without_pair_matrices(name):
    """An N x M matrix of the 8,000 x 8,000 pairs would take 0.5 GB; inputs and outputs
    take < 1 MB, so 100 MB of growth separates streaming from materialising with a wide margin."""
    import json
    import subprocess
    import sys

    from conftest import core_module

    if name == "cpp" and core_module() is None:
        pytest.skip("bigstep._core does not import")
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, name], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"]
    assert result["grew_mb"] < 100.0, result
