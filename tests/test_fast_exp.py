"""The kernels' polynomial exp (csrc/include/bigstep/fast_exp.hpp) against mpmath,
on every compiled instruction set.  It is also the numba mirror's reference."""

import mpmath
import numpy as np
import pytest

core = pytest.importorskip("bigstep._core")


@pytest.fixture(params=["baseline", "avx2", "avx512", "native"])
def isa(request):
    if request.param not in core.available_isas().split(","):
        pytest.skip(f"{request.param} not compiled in or not supported here")
    assert core.set_isa(request.param)
    yield request.param
    core.set_isa("auto")


@pytest.mark.parametrize(
    "dtype, lo, ulps",
    [
        # double: degree-11 fit with 4e-18 error plus ~1 ulp of rounding in Horner's
        # scheme and the two-part ln2 reduction: 2 ulp bound
        (np.float64, -700.0, 2.0),
        # float: degree-6 fit with 2.5e-9 error (0.02 ulp) plus rounding: 2 ulp bound
        (np.float32, -87.0, 2.0),
    ],
)
def test_exp_nonpos_within_ulps_of_mpmath(isa, dtype, lo, ulps):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(lo, 0.0, 3001), rng.uniform(lo, 0.0, 3000), [-0.0, -1e-30, -1e-7]])
    x = x.astype(dtype)
    got = core.exp_nonpos(x)
    assert got.dtype == dtype
    ref = np.array([float(mpmath.exp(mpmath.mpf(float(v)))) for v in x])
    ulp = np.spacing(ref.astype(dtype)).astype(np.float64)
    err = np.abs(got.astype(np.float64) - ref) / ulp
    assert err.max() <= ulps, f"max error {err.max():.2f} ulp at x = {x[np.argmax(err)]!r}"


def test_exp_nonpos_clamps_below_range_to_tiny_positive():
    # below the clamp the result is exp(clamp): positive, normal, negligible
    for dtype, clamp in ((np.float64, -700.0), (np.float32, -87.0)):
        x = np.array([clamp - 1, -1e30, -np.inf], dtype=dtype)
        got = core.exp_nonpos(x)
        assert np.all(got > 0) and np.all(got <= np.exp(np.float64(clamp)) * 1.0001)
        assert np.all(got >= np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype, kmin", [(np.float64, -1009), (np.float32, -125)])
def test_exp_nonpos_every_exponent(isa, dtype, kmin):
    """exp(x) at x = k ln2 (rounded): 2^k is assembled in the exponent bits for every k the clamp allows, in the vector
    body and the scalar tail (odd length).  Regression: the shift into the exponent used
    to overflow a signed integer (undefined behaviour that UBSan reported in
    tools/sanitize.sh); the bits must not change with the fix."""
    k = np.arange(kmin, 1)
    x = (k * np.log(2.0)).astype(dtype)
    got = core.exp_nonpos(x)
    ref = np.exp(x.astype(np.float64))  # numpy's exp: within 1 ulp in float64
    rel = np.abs(got.astype(np.float64) / ref - 1.0)
    assert rel.max() <= 4 * np.finfo(dtype).eps, f"max relative error {rel.max():.3g} at k = {k[np.argmax(rel)]}"
