"""Philox4x32-10 and the shared random streams (docs/design.md section 3).

Known-answer vectors are Random123's published kat_vectors for philox4x32 with 10
rounds.  The stream layout is checked against the pure-Python reference in
tests/reference.py; statistics use fixed seeds with thresholds from tests/tolerances.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import bigstep
from conftest import all_backend_ids, core_module, use_backend
from reference import normal_at, philox4x32_10, uniform_at
from tolerances import KS_PVALUE, RNG_SIGMAS

# Random123 kat_vectors, "philox4x32 10": counter (4 words), key (2 words) -> output (4 words)
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]

U64 = 2**64


# ------------------------------------------------------------ known answers


@pytest.mark.parametrize("counter, key, expect", KAT)
def test_reference_philox_known_answers(counter, key, expect):
    """The pure-Python reference itself reproduces Random123's vectors."""
    assert philox4x32_10(*counter, *key) == expect


@pytest.mark.parametrize("counter, key, expect", KAT)
def test_core_philox_known_answers(counter, key, expect):
    core = core_module()
    if core is None:
        pytest.skip("bigstep._core does not import")
    assert tuple(int(v) for v in core.philox4x32_10(*counter, *key)) == expect


@pytest.mark.parametrize("counter, key, expect", KAT)
def test_numba_philox_known_answers(counter, key, expect):
    from bigstep._numba import random as nrandom

    assert tuple(int(v) for v in nrandom.philox4x32_10(*counter, *key)) == expect


def test_philox_agrees_with_reference_on_random_inputs():
    """Compiled and numba Philox equal the reference on 200 random counters/keys."""
    from bigstep._numba import random as nrandom

    rng = np.random.default_rng(0)
    words = rng.integers(0, 2**32, size=(200, 6), dtype=np.uint64)
    core = core_module()
    for w in words:
        w = [int(v) for v in w]
        expect = philox4x32_10(*w)
        assert tuple(int(v) for v in nrandom.philox4x32_10(*w)) == expect
        if core is not None:
            assert tuple(int(v) for v in core.philox4x32_10(*w)) == expect


# ------------------------------------------------------------ stream layout


# (seed, stream, offset): small, a seed and a stream using their upper 32 bits, an
# offset crossing a 2^32 block boundary, odd offsets, and the end of the counter space.
LAYOUT_CASES = [(0, 0, 0), (7, 0, 3), (2**32 + 5, 0, 0), (1, 2**32 + 1, 0), (3, 4, 2 * (2**32 - 2) + 1),
                (U64 - 1, U64 - 1, 0), (11, 1, U64 - 6)]


@pytest.mark.parametrize("seed, stream, offset", LAYOUT_CASES)
def test_stream_layout_matches_reference(backend, seed, stream, offset):
    """Element i of uniform / gaussian_noise is the reference value at counter offset + i
    of (seed, stream): uniforms bit for bit (integer arithmetic), normals to 2 ulp (the
    reference uses Python's libm)."""
    count = 6
    u = bigstep.uniform(seed, count, stream=stream, offset=offset, backend=backend)
    z = bigstep.gaussian_noise(seed, count, stream=stream, offset=offset, backend=backend)
    u_ref = np.array([uniform_at(seed, stream, offset + i) for i in range(count)])
    z_ref = np.array([normal_at(seed, stream, offset + i) for i in range(count)])
    np.testing.assert_array_equal(u, u_ref)
    np.testing.assert_array_max_ulp(z, z_ref, maxulp=2)


def test_last_counters_of_the_stream(backend):
    """offset + size may reach 2^64 exactly, not beyond."""
    z = bigstep.gaussian_noise(5, 4, offset=U64 - 4, backend=backend)
    np.testing.assert_array_max_ulp(z, np.array([normal_at(5, 0, U64 - 4 + i) for i in range(4)]), maxulp=2)
    with pytest.raises(ValueError, match="offset"):
        bigstep.gaussian_noise(5, 4, offset=U64 - 3, backend=backend)
    with pytest.raises(ValueError, match="offset"):
        bigstep.uniform(5, 1, offset=U64, backend=backend)


# --------------------------------------------- bit-identical across everything


def test_bit_identical_across_backends():
    """Every configuration (each cpp ISA, numba, cuda) gives the same bits, both dtypes,
    for a stream long enough to use the threaded path (> 65,536 elements)."""
    configs = all_backend_ids()
    for kind in ("gaussian_noise", "uniform"):
        for dtype in (np.float64, np.float32):
            outs = {}
            for c in configs:
                with use_backend(c) as name:
                    outs[c] = getattr(bigstep, kind)(123, 100_003, stream=2, offset=17, dtype=dtype, backend=name)
            first = configs[0]
            for c in configs[1:]:
                np.testing.assert_array_equal(outs[c], outs[first], err_msg=f"{kind} {dtype}: {c} vs {first}")


@pytest.mark.parametrize("kind", ["gaussian_noise", "uniform"])
def test_bit_identical_across_thread_counts(backend, kind, restore_threads):
    n = 200_001
    bigstep.set_num_threads(1)
    one = getattr(bigstep, kind)(99, n, stream=1, backend=backend)
    bigstep.set_num_threads(2)
    two = getattr(bigstep, kind)(99, n, stream=1, backend=backend)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("kind", ["gaussian_noise", "uniform"])
def test_chunking_invariance(backend, kind):
    """A stream made in chunks (odd sizes and offsets, crossing the threaded-path size)
    equals the stream made at once, and shape does not change the flat order."""
    fn = getattr(bigstep, kind)
    whole = fn(42, 150_000, stream=3, backend=backend)
    cuts = [0, 1, 4, 7, 1000, 70_001, 149_999, 150_000]
    parts = [fn(42, b - a, stream=3, offset=a, backend=backend) for a, b in zip(cuts[:-1], cuts[1:])]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    shaped = fn(42, (3, 50, 1000), stream=3, backend=backend)
    np.testing.assert_array_equal(shaped.ravel(), whole)
    # the docstring's replay rule: row 1 of a (2, 3) draw is the size-3 draw at offset 3
    np.testing.assert_array_equal(fn(7, (2, 3), backend=backend)[1], fn(7, 3, offset=3, backend=backend))


def test_float32_is_rounded_float64(backend):
    """float32 normals are the float64 normals rounded; float32 uniforms are rounded too,
    except that a value rounding up to 1 becomes the largest float32 below 1."""
    z64 = bigstep.gaussian_noise(8, 50_000, backend=backend)
    z32 = bigstep.gaussian_noise(8, 50_000, dtype=np.float32, backend=backend)
    assert z32.dtype == np.float32
    np.testing.assert_array_equal(z32, z64.astype(np.float32))
    u64 = bigstep.uniform(8, 50_000, backend=backend)
    u32 = bigstep.uniform(8, 50_000, dtype=np.float32, backend=backend)
    assert u32.dtype == np.float32
    r = u64.astype(np.float32)
    np.testing.assert_array_equal(u32, np.where(r < 1, r, np.nextafter(np.float32(1), np.float32(0))))
    assert (u32 >= 0).all() and (u32 < 1).all()


def test_deterministic_across_calls(backend):
    a = bigstep.gaussian_noise(2024, (10, 10), stream=4, backend=backend)
    b = bigstep.gaussian_noise(2024, (10, 10), stream=4, backend=backend)
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------- shapes


@pytest.mark.parametrize("kind", ["gaussian_noise", "uniform"])
def test_shapes(backend, kind):
    fn = getattr(bigstep, kind)
    assert fn(1, 5, backend=backend).shape == (5,)
    assert fn(1, np.int64(5), backend=backend).shape == (5,)
    assert fn(1, (2, 3), backend=backend).shape == (2, 3)
    assert fn(1, [2, 3, 4], backend=backend).shape == (2, 3, 4)
    assert fn(1, (np.int32(2), 3), backend=backend).shape == (2, 3)
    for empty in (0, (0,), (2, 0, 3)):
        out = fn(1, empty, backend=backend)
        assert out.size == 0 and out.shape == np.empty(empty).shape and out.dtype == np.float64
    scalar = fn(1, (), backend=backend)
    assert scalar.shape == () and scalar == fn(1, 1, backend=backend)[0]
    assert fn(1, (2, 2), dtype=np.float32, backend=backend).dtype == np.float32
    assert fn(1, (2, 2), dtype="float64", backend=backend).dtype == np.float64


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("kind", ["gaussian_noise", "uniform"])
@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=U64), ValueError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(seed="1"), TypeError, "seed"),
    (dict(seed=True), TypeError, "seed"),
    (dict(seed=None), TypeError, "seed"),
    (dict(stream=-1), ValueError, "stream"),
    (dict(stream=U64), ValueError, "stream"),
    (dict(stream=0.5), TypeError, "stream"),
    (dict(offset=-3), ValueError, "offset"),
    (dict(offset=U64), ValueError, "offset"),
    (dict(offset=2.0), TypeError, "offset"),
    (dict(shape=-1), ValueError, "shape"),
    (dict(shape=(2, -3)), ValueError, "shape"),
    (dict(shape=2.5), TypeError, "shape"),
    (dict(shape=(2, 2.0)), TypeError, "shape"),
    (dict(shape="abc"), TypeError, "shape"),
    (dict(shape=None), TypeError, "shape"),
    (dict(shape=(True, 2)), TypeError, "shape"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(dtype=np.float16), TypeError, "dtype"),
    (dict(dtype=np.complex128), TypeError, "dtype"),
])
def test_errors(backend, kind, kwargs, exc, match):
    args = {"seed": 1, "shape": (2, 3), **kwargs}
    seed, shape = args.pop("seed"), args.pop("shape")
    with pytest.raises(exc, match=match):
        getattr(bigstep, kind)(seed, shape, backend=backend, **args)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        bigstep.gaussian_noise(1, 3, backend="fortran")


# -------------------------------------------------------------- statistics

N_STAT = 1_000_000


@pytest.fixture(scope="module")
def normals():
    return bigstep.gaussian_noise(20240611, N_STAT, stream=0)


@pytest.fixture(scope="module")
def uniforms():
    return bigstep.uniform(20240611, N_STAT, stream=3)


def test_normal_moments(normals):
    """Mean 0 (SE 1/sqrt(N)), variance 1 (SE sqrt(2/N)), skewness 0 (SE sqrt(6/N)),
    excess kurtosis 0 (SE sqrt(24/N)), each within RNG_SIGMAS standard errors."""
    z = normals
    n = z.size
    assert abs(z.mean()) < RNG_SIGMAS / np.sqrt(n)
    assert abs(z.var() - 1) < RNG_SIGMAS * np.sqrt(2 / n)
    assert abs(stats.skew(z)) < RNG_SIGMAS * np.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < RNG_SIGMAS * np.sqrt(24 / n)


def test_normal_ks(normals):
    """Kolmogorov-Smirnov against N(0, 1) on the first 200,000 draws: p > KS_PVALUE."""
    assert stats.kstest(normals[:200_000], "norm").pvalue > KS_PVALUE


def test_normal_tails(normals):
    """P(|Z| > 3) = 0.0026998: the count among N is Binomial, within RNG_SIGMAS SE."""
    p = 2 * stats.norm.sf(3.0)
    k = np.count_nonzero(np.abs(normals) > 3.0)
    assert abs(k - N_STAT * p) < RNG_SIGMAS * np.sqrt(N_STAT * p * (1 - p))


def test_uniform_statistics(uniforms):
    """In [0, 1); mean 1/2 (SE sqrt(1/(12 N))), variance 1/12 (SE sqrt(1/(180 N))), KS p > KS_PVALUE,
    and the 53 bits are used (no value repeats among 10^6, fractional bits below 2^-32 vary)."""
    u = uniforms
    n = u.size
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < RNG_SIGMAS * np.sqrt(1 / (12 * n))
    assert abs(u.var() - 1 / 12) < RNG_SIGMAS * np.sqrt(1 / (180 * n))
    assert stats.kstest(u[:200_000], "uniform").pvalue > KS_PVALUE
    assert np.unique(u).size == n  # P(any collision) ~ n^2 / 2^54 ~ 6e-5
    low = (u * 2.0**32) % 1.0
    assert abs(low.mean() - 0.5) < RNG_SIGMAS * np.sqrt(1 / (12 * n))


def test_no_correlation_between_neighbours(normals):
    """Elements 4k .. 4k+3 share a Philox block: their correlations at lags 1, 2, 4 are
    within RNG_SIGMAS / sqrt(N) of 0."""
    z = normals
    for lag in (1, 2, 4):
        r = np.corrcoef(z[:-lag], z[lag:])[0, 1]
        assert abs(r) < RNG_SIGMAS / np.sqrt(z.size - lag), f"lag {lag}: r = {r}"


def test_box_muller_pairs_are_independent(normals):
    """Elements 2k and 2k+1 are the cos and sin of one Box-Muller pair (same radius):
    independent N(0, 1), so their squares are uncorrelated (SE 1/sqrt(N/2)), the pair's
    squared radius is Exp(1/2) (KS) and its angle uniform (KS)."""
    c, s = normals[0::2], normals[1::2]
    r = np.corrcoef(c * c, s * s)[0, 1]
    assert abs(r) < RNG_SIGMAS / np.sqrt(c.size), r
    assert stats.kstest((c * c + s * s)[:200_000], "expon", args=(0, 2)).pvalue > KS_PVALUE
    angle = (np.arctan2(s, c) / (2 * np.pi)) % 1.0
    assert stats.kstest(angle[:200_000], "uniform").pvalue > KS_PVALUE


@pytest.mark.parametrize("other", [dict(seed=1, stream=1), dict(seed=2, stream=0), dict(seed=1 + 2**32, stream=0),
                                   dict(seed=1, stream=2**32)])
def test_stream_independence(other):
    """Different (seed, stream) pairs, including ones differing only in the upper 32 bits
    of seed or stream, give uncorrelated streams with no shared values."""
    n = 200_000
    a = bigstep.gaussian_noise(1, n, stream=0)
    b = bigstep.gaussian_noise(other["seed"], n, stream=other["stream"])
    r = np.corrcoef(a, b)[0, 1]
    assert abs(r) < RNG_SIGMAS / np.sqrt(n), f"correlation {r}"
    assert np.intersect1d(a, b).size == 0
    ua = bigstep.uniform(1, n, stream=0)
    ub = bigstep.uniform(other["seed"], n, stream=other["stream"])
    assert np.intersect1d(ua, ub).size == 0  # P(a shared 53-bit value) ~ n^2 / 2^53 ~ 4e-6
