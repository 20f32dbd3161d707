"""Fuzzing of every public compiled entry point with hypothesis (issue 9, item 3).

For each entry point the strategies draw shapes (empty, single-element, small), dtypes
(float32, float64, float16, ints, bool, and object/complex/str, which must give a
TypeError), memory layouts (C, Fortran, [::2] slices, reversed, broadcast views with
zero strides, non-native byte order), extreme but finite values (|v| from 1e-300 to
1e4, sigma from 1e-8 to 1e8), NaN and inf where the API allows them, and invalid
scalars.  The properties:

- no crash and no hang (each call must return within HANG_SECONDS);
- either a clear ValueError/TypeError whose message names the offending argument, or a
  result that is finite wherever the mathematics is finite and representable (decided
  from a float64 numpy reference at the same rounded inputs);
- agreement between backends (each compiled instruction set and numba) within the
  tolerances of tests/tolerances.py (PAIR_FACTOR times the per-result bound), and
  rows independent of each other (the finite rows of a call with NaN/inf queries equal
  a call on those rows alone).

Default: a modest number of examples per entry point (the file runs in well under a
minute on two cores).  Dedicated job: ``BIGSTEP_FUZZ_EXAMPLES=10000 python -m pytest
tests/test_fuzz.py`` sets max_examples for every test.  Bugs found get a minimal
regression test at the end of the file.
"""

from __future__ import annotations

import math
import os
import re
import time
import warnings

import numpy as np
import pytest
from hypothesis import assume, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import bigstep
from conftest import all_backend_ids, use_backend
from reference import np_1d, np_local, np_nd
from tolerances import PAIR_FACTOR, bounds_1d, bounds_nd, local_allowed

_ENV = int(os.environ.get("BIGSTEP_FUZZ_EXAMPLES", "0") or 0)
HANG_SECONDS = 30.0  # a single small call taking longer than this counts as a hang


def fuzz(default: int):
    """settings(max_examples=...): BIGSTEP_FUZZ_EXAMPLES if set, else ``default``."""
    return settings(max_examples=_ENV or default, deadline=None)


@pytest.fixture(autouse=True, scope="module")
def _fuzz_threads():
    """Tiny inputs: run single-threaded (BIGSTEP_FUZZ_THREADS to change).  On a loaded
    machine every parallel region of a tiny call costs milliseconds of thread wake-ups
    (measured: mmd2 of 4 x 3 points, 33 ms with 2 numba threads vs 0.14 ms with 1), which
    would make the default run far slower without testing anything more."""
    import numba

    from conftest import core_module

    core = core_module()
    before_core = core.openmp_max_threads() if core is not None else None
    before_numba = numba.get_num_threads()
    bigstep.set_num_threads(int(os.environ.get("BIGSTEP_FUZZ_THREADS", "1")))
    yield
    numba.set_num_threads(before_numba)
    if core is not None:
        core.set_num_threads(before_core)


def configs() -> list:
    return all_backend_ids()


# ------------------------------------------------------------------ calling helpers


class Rejected(Exception):
    """The call raised a clean ValueError/TypeError (checked to name an argument)."""


def call(fn, *args, names=(), **kwargs):
    """fn(*args, **kwargs); a ValueError/TypeError must name one of ``names``; the call
    must not take longer than HANG_SECONDS.  Raises Rejected on a clean error."""
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        assert msg, f"{type(exc).__name__} without a message"
        if names:
            assert any(re.search(rf"(?<![A-Za-z_]){re.escape(n)}(?![A-Za-z_])", msg) for n in names), \
                f"{type(exc).__name__} names none of {names}: {msg!r}"
        raise Rejected(msg) from None
    dt = time.perf_counter() - t0
    if dt >= HANG_SECONDS and kwargs.get("backend") == "numba":
        # the first call of a Numba signature compiles it (a fresh install: 30 s and more for
        # the local family on a 2-core machine); a hang is a slow call once compiled
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = fn(*args, **kwargs)
        dt = time.perf_counter() - t0
    assert dt < HANG_SECONDS, f"call took {dt:.1f} s"
    return out


def on_all(fn, *args, names=(), **kwargs):
    """{config: result} on every backend configuration; all reject or none does."""
    out, rejected = {}, {}
    for cfg in configs():
        with use_backend(cfg) as be:
            try:
                out[cfg] = call(fn, *args, names=names, backend=be, **kwargs)
            except Rejected as exc:
                rejected[cfg] = str(exc)
    if rejected:
        assert not out, f"backends disagree on rejecting: {rejected} vs results on {list(out)}"
        raise Rejected(next(iter(rejected.values())))
    return out


# ---------------------------------------------------------------------- strategies

FLOAT_DTYPES = ("float64", "float32")
ALL_DTYPES = FLOAT_DTYPES + ("float16", "int64", "int32", "uint8", "bool")
BAD_DTYPES = ("object", "complex128", "str")


def reals(max_abs: float = 1e4):
    """Finite reals: ordinary, zero, tiny (down to 1e-300) and large (up to max_abs)."""
    top = math.log10(max_abs)
    return st.one_of(
        st.floats(-10, 10, allow_nan=False),
        st.just(0.0),
        st.builds(lambda s, e: s * 10.0**e, st.sampled_from((-1.0, 1.0)), st.floats(-300, top)),
        st.builds(lambda s, e: s * 10.0**e, st.sampled_from((-1.0, 1.0)), st.floats(-3, top)),
    )


def _cast(base: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "object":
        return base.astype(object)
    if dtype == "str":
        return base.astype(str)
    if dtype == "bool":
        return base != 0
    if dtype in ("int64", "int32", "uint8"):
        info = np.iinfo(dtype)
        with np.errstate(invalid="ignore"):
            return np.clip(np.nan_to_num(np.round(base)), info.min, info.max).astype(dtype)
    with np.errstate(over="ignore"):
        return base.astype(dtype)


@st.composite
def layouts(draw, arr: np.ndarray) -> np.ndarray:
    """The same values in another memory layout (or a broadcast view with equal rows)."""
    kind = draw(st.sampled_from(("c", "fortran", "step", "reversed", "broadcast", "byteswap", "readonly")))
    if kind == "readonly":
        arr = arr.copy()
        arr.flags.writeable = False
        return arr
    if kind == "fortran":
        return np.asfortranarray(arr)
    if kind == "step" and arr.ndim >= 1:
        big = np.zeros((2 * arr.shape[0],) + arr.shape[1:], dtype=arr.dtype)
        big[::2] = arr
        return big[::2]
    if kind == "reversed" and arr.ndim >= 1:
        return arr[::-1].copy()[::-1]
    if kind == "broadcast" and arr.ndim >= 1 and arr.shape[0] >= 1:
        return np.broadcast_to(arr[:1], arr.shape)
    if kind == "byteswap" and arr.dtype.kind in "fiu" and arr.dtype.itemsize > 1:
        return arr.astype(arr.dtype.newbyteorder())
    return arr


@st.composite
def arrays(draw, shape, dtypes=ALL_DTYPES, elements=None, special=False):
    """An array of ``shape`` with a drawn dtype and layout; special=True adds NaN/inf."""
    elements = elements if elements is not None else reals()
    if special:
        elements = st.one_of(elements, st.sampled_from((math.nan, math.inf, -math.inf)))
    base = draw(hnp.arrays(np.float64, shape, elements=elements))
    return draw(layouts(_cast(base, draw(st.sampled_from(dtypes)))))


def levels(lo: float, hi: float):
    """Positive finite noise levels 10**[lo, hi]."""
    return st.builds(lambda e: 10.0**e, st.floats(lo, hi))


BAD_SCALARS = st.sampled_from((0.0, -1.0, math.nan, math.inf, -math.inf, True, "1", None, 1 + 1j))


def level_arg(good, q: int, draw):
    """A valid level (scalar, 0-d array, per-query array) or, rarely, an invalid one."""
    kind = draw(st.sampled_from(("scalar", "scalar", "scalar", "array0", "perquery", "bad", "badshape")))
    if kind == "bad":
        return draw(BAD_SCALARS), False
    if kind == "badshape":
        return np.full(q + 1, draw(good)), False
    if kind == "array0":
        return np.float64(draw(good)), True
    if kind == "perquery":
        return np.array([draw(good) for _ in range(q)]), True
    return draw(good), True


def representable(ref: np.ndarray, dtype) -> np.ndarray:
    """Where a float64 reference is finite and comfortably inside the dtype's range."""
    with np.errstate(all="ignore"):
        return np.isfinite(ref) & (np.abs(ref) < np.finfo(dtype).max / 1e3)


# ------------------------------------------------------------- optimal-score family


def _kernel_dtype(*arrs):
    kinds = [a.dtype for a in arrs if a.dtype.kind == "f"]
    return np.dtype(np.float32) if kinds and all(k.itemsize <= 4 for k in kinds) else np.dtype(np.float64)


def _family_1d(y, x, mu, sigma, backend):
    be = backend
    s, d1, d2 = bigstep.optimal_score_derivatives(y, x, mu, sigma, backend=be)
    return {"score": s, "d1": d1, "d2": d2,
            "log_density": bigstep.log_density(y, x, mu, sigma, backend=be),
            "mean": bigstep.posterior_mean(y, x, mu, sigma, backend=be),
            "score_only": bigstep.optimal_score(y, x, mu, sigma, backend=be)}


@st.composite
def score_1d_case(draw):
    q = draw(st.integers(0, 6))
    n = draw(st.integers(0, 5))
    bad_dtype = draw(st.integers(0, 19)) == 0
    x = draw(arrays((n,), BAD_DTYPES if bad_dtype else ALL_DTYPES, special=draw(st.integers(0, 9)) == 0))
    y = draw(arrays((q,), ALL_DTYPES, special=draw(st.booleans())))
    mu, ok_mu = level_arg(levels(-3, 1), q, draw)
    sigma, ok_sigma = level_arg(levels(-8, 8), q, draw)
    return y, x, mu, sigma, ok_mu and ok_sigma and _surely_valid_data(y, x)


def _surely_valid_data(y, x) -> bool:
    """Real (float, int, bool) query and data arrays in any layout, at least one data
    point, all data finite: inputs the API promises to take (ints, bools and float16 are
    taken as float64; NaN/inf queries give NaN rows).  Other draws (object, complex or
    str dtypes, empty or non-finite data) must be refused."""
    return (y.dtype.kind in "fiub" and x.dtype.kind in "fiub" and x.shape[0] >= 1
            and bool(np.isfinite(x.astype(np.float64)).all()))


def _refused(valid: bool, msg: str) -> None:
    """A clean refusal is fine unless the strategy built an input the API must take."""
    assert not valid, f"a valid input was refused: {msg}"


NAMES_1D = ("x", "y", "mu", "sigma")


def _at(a, dt):
    """a rounded to the kernel's dtype dt, as float64: the inputs the kernel actually saw."""
    return np.asarray(a, dtype=np.float64).astype(dt).astype(np.float64)


def _finite_level(v):
    return np.asarray(v, dtype=np.float64) if not isinstance(v, (str, type(None), complex, bool)) else v


@fuzz(80)
@given(score_1d_case())
def test_fuzz_optimal_score_1d(case):
    y, x, mu, sigma, valid = case
    note(f"y={y!r} ({y.dtype}, strides {y.strides}) x={x!r} ({x.dtype}) mu={mu!r} sigma={sigma!r}")
    try:
        res = on_all(_family_1d, y, x, mu, sigma, names=NAMES_1D)
    except Rejected as exc:
        return _refused(valid, str(exc))
    dt = _kernel_dtype(y, x)
    yk = _at(y, dt)
    xk = _at(x, dt)
    muk = _at(mu, dt)
    sigk = _at(sigma, dt)
    q = yk.shape[0]
    fin = np.isfinite(yk)
    with np.errstate(all="ignore"):
        ref = np_1d(yk[fin], xk, np.broadcast_to(muk, (q,))[fin], np.broadcast_to(sigk, (q,))[fin])
        bnd = bounds_1d(ref, yk[fin], xk, np.broadcast_to(muk, (q,))[fin], np.broadcast_to(sigk, (q,))[fin], dt)
    for cfg, out in res.items():
        for key, v in out.items():
            assert v.dtype == dt and v.shape == (q,), (cfg, key, v.dtype, v.shape)
            assert np.isnan(v[np.isnan(yk)]).all(), f"{cfg} {key}: NaN query must give NaN"
            k = "score" if key == "score_only" else key
            need = representable(ref[k], dt) & representable(bnd[k], dt)
            assert np.isfinite(v[fin][need]).all(), f"{cfg} {key}: non-finite output where the math is finite: {v}"
    cfgs = list(res)
    for cfg in cfgs[1:]:
        for key in res[cfg]:
            a, b = res[cfgs[0]][key][fin].astype(np.float64), res[cfg][key][fin].astype(np.float64)
            k = "score" if key == "score_only" else key
            need = representable(ref[k], dt) & representable(bnd[k], dt)
            with np.errstate(invalid="ignore"):  # inf - inf where the output overflows (not needed)
                err = np.abs(a - b)[need]
            tol = PAIR_FACTOR * bnd[k][need]
            assert (err <= tol).all(), f"{key}: {cfgs[0]} vs {cfg} differ by {err} > {tol}"
    # rows are independent: the finite queries alone give the same values
    if not fin.all() and fin.any() and np.ndim(mu) == 0 and np.ndim(sigma) == 0:
        for cfg in cfgs:
            with use_backend(cfg) as be:
                alone = _family_1d(np.asarray(y)[fin], x, mu, sigma, be)
            for key in alone:
                np.testing.assert_array_equal(alone[key], res[cfg][key][fin], err_msg=f"{cfg} {key}")


@st.composite
def score_nd_case(draw):
    q = draw(st.integers(0, 5))
    n = draw(st.integers(0, 4))
    d = draw(st.integers(0, 4))
    bad_dtype = draw(st.integers(0, 19)) == 0
    x = draw(arrays((n, d), BAD_DTYPES if bad_dtype else ALL_DTYPES, special=draw(st.integers(0, 9)) == 0))
    yshape = draw(st.sampled_from(((q, d), (d,), (q, d + 1), (q,))))
    y = draw(arrays(yshape, ALL_DTYPES, special=draw(st.booleans())))
    mu, ok_mu = level_arg(levels(-3, 1), q, draw)
    sigma, ok_sigma = level_arg(levels(-8, 8), q, draw)
    valid = ok_mu and ok_sigma and yshape == (q, d) and d >= 1 and _surely_valid_data(y, x)
    return y, x, mu, sigma, valid


def _family_nd(y, x, mu, sigma, backend):
    be = backend
    return {"score": bigstep.optimal_score(y, x, mu, sigma, backend=be),
            "log_density": bigstep.log_density(y, x, mu, sigma, backend=be),
            "mean": bigstep.posterior_mean(y, x, mu, sigma, backend=be)}


@fuzz(80)
@given(score_nd_case())
def test_fuzz_optimal_score_nd(case):
    y, x, mu, sigma, valid = case
    note(f"y={y!r} ({y.dtype}) x={x!r} ({x.dtype}) mu={mu!r} sigma={sigma!r}")
    try:
        res = on_all(_family_nd, y, x, mu, sigma, names=NAMES_1D)
    except Rejected as exc:
        return _refused(valid, str(exc))
    dt = _kernel_dtype(y, x)
    Y = np.atleast_2d(_at(y, dt))
    X = _at(x, dt)
    q = Y.shape[0]
    muk = np.broadcast_to(_at(mu, dt), (q,))
    sigk = np.broadcast_to(_at(sigma, dt), (q,))
    fin = np.isfinite(Y).all(axis=1)
    with np.errstate(all="ignore"):
        ref = np_nd(Y[fin], X, muk[fin], sigk[fin])
        bnd = bounds_nd(ref, Y[fin], X, muk[fin], sigk[fin], dt)
    single = np.ndim(y) == 1
    cfgs = list(res)
    for cfg, out in res.items():
        for key, v in out.items():
            v2 = np.asarray(v).reshape(q, -1) if q else np.zeros((0, 1))
            assert np.asarray(v).dtype == dt, (cfg, key)
            assert np.isnan(v2[np.isnan(Y).any(axis=1)]).all(), f"{cfg} {key}: NaN query must give NaN"
            need = representable(ref[key] if ref[key].ndim == 1 else np.linalg.norm(ref[key], axis=1), dt) \
                & representable(bnd[key], dt)
            assert np.isfinite(v2[fin][need]).all(), f"{cfg} {key}: non-finite output where the math is finite"
        if single:
            assert np.shape(out["score"]) == np.shape(y) and np.ndim(out["log_density"]) == 0
    for cfg in cfgs[1:]:
        for key in res[cfg]:
            if q == 0:
                continue
            a = np.asarray(res[cfgs[0]][key], dtype=np.float64).reshape(q, -1)[fin]
            b = np.asarray(res[cfg][key], dtype=np.float64).reshape(q, -1)[fin]
            r = ref[key] if ref[key].ndim == 1 else np.linalg.norm(ref[key], axis=1)
            need = representable(r, dt) & representable(bnd[key], dt)
            with np.errstate(invalid="ignore", over="ignore"):
                err = np.linalg.norm(a - b, axis=1)[need]
            tol = PAIR_FACTOR * bnd[key][need]
            assert (err <= tol).all(), f"{key}: {cfgs[0]} vs {cfg} differ by {err} > {tol}"


# --------------------------------------------------------------------------- random


@st.composite
def random_case(draw):
    seed = draw(st.one_of(st.integers(0, 2**64 - 1), st.sampled_from((0, 2**64 - 1, 2**64, -1, 1.5, True, "0"))))
    shape = draw(st.one_of(st.integers(0, 9), st.lists(st.integers(0, 4), max_size=3).map(tuple),
                           st.sampled_from((-1, (2, -1), 2.0, "3", None))))
    stream = draw(st.one_of(st.integers(0, 2**64 - 1), st.sampled_from((-1, 2**64))))
    offset = draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(2**64 - 40, 2**64), st.sampled_from((-1,))))
    dtype = draw(st.sampled_from((np.float64, np.float32, "float64", np.int64, np.float16, object)))
    kind = draw(st.sampled_from(("gaussian_noise", "uniform")))
    return kind, seed, shape, stream, offset, dtype


@fuzz(150)
@given(random_case())
def test_fuzz_random(case):
    kind, seed, shape, stream, offset, dtype = case
    fn = getattr(bigstep, kind)
    try:
        res = on_all(fn, seed, shape, stream=stream, offset=offset, dtype=dtype,
                     names=("seed", "shape", "stream", "offset", "dtype"))
    except Rejected:
        return
    outs = list(res.values())
    for out in outs:
        assert np.isfinite(out).all()
        if kind == "uniform":
            assert ((out >= 0) & (out < 1)).all()
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])  # same Philox counters: identical bits


# ------------------------------------------------------------------------ ReLU risk


@st.composite
def relu_case(draw):
    m = draw(st.integers(1, 5))
    inner = draw(st.sampled_from(("sign", "gauss", "any")))
    if inner == "sign":
        w1 = np.array(draw(st.lists(st.sampled_from((-1.0, 1.0)), min_size=m, max_size=m)))
    elif inner == "gauss":
        w1 = np.array(draw(st.lists(st.floats(-3, 3), min_size=m, max_size=m)))
    else:
        w1 = np.array(draw(st.lists(reals(1e3), min_size=m, max_size=m)))
    w2 = np.array(draw(st.lists(reals(1e3), min_size=m, max_size=m)))
    b = np.array(draw(st.lists(reals(1e3), min_size=m, max_size=m)))
    n = draw(st.integers(0, 4))
    x = draw(arrays((n,), FLOAT_DTYPES + ("int64",), elements=reals(1e3), special=draw(st.integers(0, 9)) == 0))
    mu = draw(st.one_of(levels(-3, 1), BAD_SCALARS)) if draw(st.integers(0, 9)) == 0 else draw(levels(-3, 1))
    sigma = draw(st.one_of(levels(-8, 8), BAD_SCALARS)) if draw(st.integers(0, 9)) == 0 else draw(levels(-8, 8))
    wrt = draw(st.sampled_from(("outer_bias", "all")))
    return w1, w2, b, x, mu, sigma, wrt


def _relu_all(net, x, mu, sigma, v, wrt, backend):
    be = backend
    r, g = bigstep.dsm_risk_grad(net, x, mu, sigma, wrt=wrt, backend=be)
    return {"risk": np.array([bigstep.dsm_risk(net, x, mu, sigma, backend=be), r]), "grad": g,
            "hessian": bigstep.dsm_risk_hessian(net, x, mu, sigma, wrt=wrt, backend=be),
            "hvp": bigstep.dsm_risk_hvp(net, x, mu, sigma, v, wrt=wrt, backend=be)}


def _relu_scale(w1, w2, b, x, mu, sigma):
    """Size of s_theta on the data's noise band plus 1/sigma: the natural unit of f_i."""
    ymax = mu * np.abs(x).max() + 40 * sigma
    s = np.abs(w2).dot(np.abs(w1) * ymax + np.abs(b)) / w1.size
    return s + 1.0 / sigma, ymax


def _kink_scale(w1, w2, f, sigma):
    """Size of the Hessian's Dirac (kink) term, 2/(n m) w2_l f(tau_l) p(tau_l) / |w1_l|
    with p <= 1/sigma: it grows without bound as |w1_l| -> 0 (found by fuzzing:
    w1 = 2.2e-311 puts it beyond float64)."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        k = np.where(w2 != 0, np.abs(w2) * f / (sigma * w1.size * np.abs(w1)), 0.0)
    return float(k.max()) if k.size else 0.0


@fuzz(80)
@given(relu_case())
def test_fuzz_relu_risk(case):
    w1, w2, b, x, mu, sigma, wrt = case
    note(f"w1={w1!r} w2={w2!r} b={b!r} x={x!r} mu={mu!r} sigma={sigma!r} wrt={wrt}")
    net = bigstep.ReLUNet1D(w1, b, w2)
    P = (2 if wrt == "outer_bias" else 3) * net.width
    v = np.linspace(-1.0, 1.0, P)
    try:
        res = on_all(_relu_all, net, x, mu, sigma, v, wrt, names=("x", "mu", "sigma", "net"))
    except Rejected:
        return
    xa = np.asarray(x, dtype=np.float64)
    f, ymax = _relu_scale(w1, w2, b, xa, float(mu), float(sigma))
    # natural sizes: risk ~ f^2, gradient ~ f * (1 + ymax) / m ...; compare normwise
    # relative to the largest of the results and this scale
    with np.errstate(over="ignore"):  # sizes beyond float64 become inf and skip below
        hess = (1 + ymax) ** 2 / net.width**2 + f / net.width / sigma + _kink_scale(w1, w2, f, float(sigma))
        units = {"risk": f * f, "grad": f * (1 + ymax) / net.width, "hessian": hess, "hvp": hess * math.sqrt(P)}
    if not all(np.isfinite(u) and u < 1e150 for u in units.values()):
        return  # beyond float64 (or beyond the squares in the norms below)
    for cfg, out in res.items():
        for key, val in out.items():
            assert np.isfinite(val).all(), f"{cfg} {key}: non-finite {val}"
        assert out["risk"][0] == out["risk"][1], f"{cfg}: dsm_risk != dsm_risk_grad's risk"
        assert out["risk"][0] >= -1e-12 * units["risk"], f"{cfg}: negative risk {out['risk'][0]}"
        np.testing.assert_allclose(out["hessian"], out["hessian"].T, rtol=0,
                                   atol=1e-10 * (np.abs(out["hessian"]).max() + units["hessian"]))
    cfgs = list(res)
    for cfg in cfgs[1:]:
        for key in res[cfg]:
            a, b_ = res[cfgs[0]][key], res[cfg][key]
            err = np.linalg.norm(np.ravel(a - b_))
            tol = 1e-9 * (np.linalg.norm(np.ravel(a)) + units[key] * math.sqrt(np.size(a)))
            assert err <= tol, f"{key}: {cfgs[0]} vs {cfg} differ by {err:.3e} > {tol:.3e}"


@fuzz(40)
@given(relu_case())
def test_fuzz_sharpness_and_excess_risk(case):
    w1, w2, b, x, mu, sigma, wrt = case
    net = bigstep.ReLUNet1D(w1, b, w2)
    assume(np.ndim(sigma) == 0 and isinstance(sigma, float) and 1e-3 <= sigma <= 1e3)
    try:
        res = on_all(lambda *a, backend: (bigstep.sharpness(*a, wrt=wrt, backend=backend),
                                          bigstep.excess_risk(*a, backend=backend)),
                     net, x, mu, sigma, names=("x", "mu", "sigma", "net"))
    except Rejected:
        return
    xa = np.asarray(x, dtype=np.float64)
    f, ymax = _relu_scale(w1, w2, b, xa, float(mu), float(sigma))
    if not (f * f < 1e150 and _kink_scale(w1, w2, f, float(sigma)) < 1e150):
        return  # beyond float64
    outs = list(res.values())
    for lam, ex in outs:
        assert math.isfinite(lam) and math.isfinite(ex)
        assert ex >= -1e-8 * f * f
    hess = (1 + ymax) ** 2 / net.width**2 + f / net.width / sigma + _kink_scale(w1, w2, f, float(sigma))
    for lam, ex in outs[1:]:
        assert abs(lam - outs[0][0]) <= 1e-8 * (abs(lam) + hess)
        assert abs(ex - outs[0][1]) <= 1e-8 * (abs(ex) + f * f)


# -------------------------------------------------------------------------- metrics


@st.composite
def metric_case(draw):
    N = draw(st.integers(0, 6))
    M = draw(st.integers(0, 6))
    d = draw(st.integers(0, 3))
    bad_dtype = draw(st.integers(0, 19)) == 0
    shape_a = draw(st.sampled_from(((N, d), (N, d), (N,), (N, d, 1))))
    a = draw(arrays(shape_a, BAD_DTYPES if bad_dtype else ALL_DTYPES, special=draw(st.integers(0, 9)) == 0))
    b = draw(arrays((M, d) if len(shape_a) != 1 else (M,), ALL_DTYPES, special=draw(st.integers(0, 9)) == 0))
    h = draw(levels(-8, 8)) if draw(st.integers(0, 9)) else draw(BAD_SCALARS)
    k = draw(st.one_of(st.integers(0, 7), st.sampled_from((1.0, True))))
    thr = draw(st.one_of(st.floats(0, 1.5), st.sampled_from((1 / 3, 1.0, math.nan, True))))
    return a, b, h, k, thr


@fuzz(80)
@given(metric_case(), st.booleans())
def test_fuzz_mmd2(case, unbiased):
    a, b, h, _, _ = case
    try:
        res = on_all(bigstep.mmd2, a, b, bandwidth=h, unbiased=unbiased, names=("a", "b", "bandwidth", "unbiased"))
    except Rejected:
        return
    vals = list(res.values())
    N, M = np.atleast_2d(a.T).T.shape[0], np.atleast_2d(b.T).T.shape[0]
    for v in vals:
        assert isinstance(v, float) and math.isfinite(v)
        if not unbiased:
            assert v >= -1e-12
            assert v <= 2 + 1e-12
        else:
            assert abs(v) <= 4 + 1e-12
    # each kernel value is in [0, 1] and summed in float64: ~eps per pair and term
    tol = 64 * np.finfo(np.float64).eps * (1 + math.log2(max(N * M, 2)))
    for v in vals[1:]:
        assert abs(v - vals[0]) <= tol, f"{vals}"


@fuzz(80)
@given(metric_case())
def test_fuzz_neighbors(case):
    a, b, _, k, thr = case
    names = ("samples", "train", "k", "threshold")
    try:
        res = on_all(lambda s, t, backend: (bigstep.nearest_neighbors(s, t, k=k, backend=backend),
                                            bigstep.memorization_ratio(s, t, backend=backend)), a, b, names=names)
    except Rejected:
        res = None
    try:
        frac = on_all(bigstep.memorized_fraction, a, b, threshold=thr, names=names)
    except Rejected:
        frac = None
    if frac is not None:
        fv = list(frac.values())
        assert all(isinstance(v, float) and 0 <= v <= 1 for v in fv) and len(set(fv)) == 1, fv
    if res is None:
        return
    dt = _kernel_dtype(a, b)
    outs = list(res.values())
    for (dist, idx), ratio in outs:
        assert dist.dtype == dt and idx.dtype == np.int64 and ratio.dtype == dt
        assert np.isfinite(dist).all() and (dist >= 0).all() and (np.diff(dist, axis=1) >= 0).all()
        assert np.isfinite(ratio).all() and ((ratio >= 0) & (ratio <= 1)).all()
        assert ((idx >= 0) & (idx < np.atleast_2d(b.T).T.shape[0])).all()
    (d0, i0), r0 = outs[0]
    for (dist, idx), ratio in outs[1:]:
        np.testing.assert_allclose(dist, d0, rtol=4 * np.finfo(dt).eps, atol=0)
        np.testing.assert_allclose(ratio, r0, rtol=16 * np.finfo(dt).eps, atol=0)
        same = dist == d0
        np.testing.assert_array_equal(idx[same.all(axis=1)], i0[same.all(axis=1)])


# ------------------------------------------------------------------------- sampler


@st.composite
def sampler_case(draw):
    kind = draw(st.sampled_from(("empirical1", "empirical", "gaussian")))
    dim = draw(st.integers(1, 3))
    n = draw(st.integers(1, 4))
    if kind == "empirical1":
        dim = 1
        score = bigstep.EmpiricalScore(draw(arrays((n,), FLOAT_DTYPES, elements=reals(1e3))))
    elif kind == "empirical":
        score = bigstep.EmpiricalScore(draw(arrays((n, dim), FLOAT_DTYPES, elements=reals(1e3))))
    else:
        mean = draw(arrays((dim,), FLOAT_DTYPES, elements=reals(1e3)))
        score = bigstep.GaussianScore(mean, draw(levels(-6, 3)))
    n_samples = draw(st.integers(0, 4))
    T = draw(st.one_of(levels(-3, 1), BAD_SCALARS)) if draw(st.integers(0, 9)) == 0 else draw(levels(-2, 0.7))
    delta = draw(levels(-6, -1)) if draw(st.integers(0, 9)) else draw(BAD_SCALARS)
    n_steps = draw(st.one_of(st.integers(1, 12), st.sampled_from((0, -1, 2.0))))
    seed = draw(st.one_of(st.integers(0, 2**64 - 1), st.sampled_from((-1, 1.5))))
    method = draw(st.sampled_from(("em", "ode", "euler")))
    x0 = None
    if draw(st.integers(0, 3)) == 0:
        x0 = draw(arrays((n_samples, dim), FLOAT_DTYPES, elements=reals(1e3), special=draw(st.booleans())))
    return score, n_samples, dim, T, delta, n_steps, seed, method, x0


@fuzz(60)
@given(sampler_case())
def test_fuzz_sample_reverse(case):
    score, n_samples, dim, T, delta, n_steps, seed, method, x0 = case
    note(f"{score!r} N={n_samples} dim={dim} T={T!r} delta={delta!r} n_steps={n_steps!r} seed={seed!r}")
    try:
        res = on_all(lambda backend: bigstep.sample_reverse(score, n_samples, dim, T=T, delta=delta,
                                                            n_steps=n_steps, seed=seed, method=method, x0=x0,
                                                            backend=backend),
                     names=("T", "delta", "n_steps", "seed", "method", "x0", "n_samples", "dim"))
    except Rejected:
        return
    outs = list(res.values())
    for out in outs:
        assert out.shape == (n_samples, dim) and out.dtype == np.float64
        assert np.isfinite(out).all(), out
    # the compiled samplers draw their normals with SIMD sin/cos/log (a few ulp from
    # gaussian_noise's libm ones), so backends agree to rounding, not bit for bit
    scale = max(1.0, float(np.abs(outs[0]).max(initial=0.0)))
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], rtol=1e-6, atol=1e-6 * scale)


# ------------------------------------------------------------------ local denoisers


@st.composite
def local_case(draw):
    q, n = draw(st.integers(0, 3)), draw(st.integers(1, 3)) if draw(st.integers(0, 9)) else 0
    H, W, C = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.sampled_from((None, 1, 2)))
    image = (H, W) if C is None else (H, W, C)
    x = draw(arrays((n,) + image, ALL_DTYPES, elements=reals(1e3), special=draw(st.integers(0, 9)) == 0))
    y = draw(arrays((q,) + image, ALL_DTYPES, elements=reals(1e3), special=draw(st.integers(0, 9)) == 0))
    if draw(st.integers(0, 19)) == 0:
        y = y[..., :1] if y.ndim == 4 and y.shape[-1] > 1 else y[:, :0]  # mismatched images
    patch = 2 * draw(st.integers(0, 4)) + 1 if draw(st.integers(0, 9)) else draw(st.sampled_from((0, -1, 2, 4.0, True, "3")))
    padding = draw(st.sampled_from(("zeros", "reflect"))) if draw(st.integers(0, 9)) else "wrap"
    mu, ok_mu = level_arg(levels(-3, 1), q, draw)
    sigma, ok_sigma = level_arg(levels(-8, 8), q, draw)
    ok = (ok_mu and ok_sigma and y.dtype.kind in "fiub" and x.dtype.kind in "fiub" and n >= 1
          and y.shape[1:] == x.shape[1:] and bool(np.isfinite(x.astype(np.float64)).all())
          and bool(np.isfinite(y.astype(np.float64)).all()) and isinstance(patch, int) and not isinstance(patch, bool)
          and patch >= 1 and patch % 2 == 1 and padding != "wrap" and (padding == "zeros" or patch <= min(H, W)))
    return y, x, mu, sigma, patch, padding, draw(st.booleans()), ok


@fuzz(50)
@given(local_case())
def test_fuzz_local(case):
    """bigstep.local.posterior_mean / score: no crash; clean errors naming the argument;
    inputs the API must take are taken; the posterior mean (a convex combination of
    training pixels) is finite, and every backend is within PAIR_FACTOR times the error
    model of the dense float64 reference at the kernel's rounded inputs."""
    y, x, mu, sigma, patch, padding, equivariant, ok = case
    note(f"y {y.dtype} {y.shape}, x {x.dtype} {x.shape}, patch {patch!r} {padding} eq {equivariant}, mu {mu!r}, "
         f"sigma {sigma!r}")
    kw = dict(patch=patch, equivariant=equivariant, padding=padding)
    try:
        res = on_all(lambda backend: (bigstep.local.posterior_mean(y, x, mu, sigma, backend=backend, **kw),
                                      bigstep.local.score(y, x, mu, sigma, backend=backend, **kw)),
                     names=("x", "y", "mu", "sigma", "patch", "padding", "equivariant"))
    except Rejected as exc:
        event("refused")
        if ok and "sigma must be at least" not in str(exc) and "for float32 inputs" not in str(exc):
            _refused(ok, str(exc))
        return
    event("computed")
    dt = _kernel_dtype(y, x)
    image = x.shape[1:] if x.ndim == 4 else x.shape[1:] + (1,)
    yk = _at(y, dt).reshape((y.shape[0],) + image)
    xk = _at(x, dt).reshape((x.shape[0],) + image)
    muk, sk = _at(_finite_level(mu), dt), _at(_finite_level(sigma), dt)
    ref = np_local(yk, xk, muk, sk, patch, equivariant, padding) if y.shape[0] else None
    for cfg, (m, s) in res.items():
        assert m.shape == y.shape and s.shape == y.shape and m.dtype == dt and s.dtype == dt, cfg
        assert np.isfinite(m).all(), (cfg, m)
        if ref is None:
            continue
        allowed = PAIR_FACTOR * local_allowed(dt, ref, ref["mean"], patch, image[-1], np.abs(xk).max(), ref["terms"])
        got = np.asarray(m, dtype=np.float64).reshape(yk.shape)
        assert (np.abs(got - ref["mean"]) <= allowed).all(), (cfg, np.abs(got - ref["mean"]).max())


# ------------------------------------------------------------------ SGD and RF fit


@st.composite
def sgd_case(draw):
    n = draw(st.integers(1, 4))
    x = draw(arrays((n,), FLOAT_DTYPES, elements=st.floats(-3, 3)))
    mu = draw(levels(-1, 0))
    sigma = draw(levels(-2, 1))
    lr = draw(st.one_of(levels(-7, -3), st.lists(levels(-7, -3), min_size=1, max_size=2)))
    steps = draw(st.integers(1, 5))
    m = draw(st.integers(1, 8))
    inner = draw(st.sampled_from(("gaussian", "sign")))
    clip = draw(st.sampled_from((None, 10.0)))
    seed = draw(st.integers(0, 2**31))
    batch = draw(st.integers(1, 8))
    return x, mu, sigma, lr, steps, m, inner, clip, seed, batch


@fuzz(15)
@given(sgd_case())
def test_fuzz_train_sgd(case):
    pytest.importorskip("pandas")
    x, mu, sigma, lr, steps, m, inner, clip, seed, batch = case
    res = on_all(lambda backend: bigstep.train_sgd(x, mu, sigma, lr=lr, steps=steps, width=m, inner=inner, clip=clip,
                                                   seed=seed, batch_size=batch, record=("loss",),
                                                   backend=backend))
    outs = list(res.values())
    for out in outs:
        for net in out.networks:
            assert np.isfinite(net.theta(wrt="all")).all()
    for out in outs[1:]:
        for a, b in zip(out.networks, outs[0].networks):
            np.testing.assert_allclose(a.theta(wrt="all"), b.theta(wrt="all"), rtol=1e-9,
                                       atol=1e-9 * (np.abs(b.theta(wrt="all")).max() + 1))


@fuzz(30)
@given(st.integers(1, 6), st.integers(1, 4), st.integers(1, 6), st.sampled_from((1, 3)),
       st.sampled_from(("relu", "relu_centered", "tanh", "erf", "linear")), levels(-2, 1),
       st.sampled_from((0.0, 1e-3, 1.0)), st.sampled_from(FLOAT_DTYPES))
def test_fuzz_rf_fit(n, d, p, m, rho, t, lam, dtype):
    """The compiled part of rf.fit (the training sums K, R, xi2) agrees across backends to
    rounding, and A is finite.  The solved A is compared where K + lam I is well
    conditioned; otherwise (p above the n m samples with lam = 0) the minimum-norm
    solve amplifies the sums' rounding by cond(K) and may keep an eigenvalue next to
    its cut on one backend and drop it on the other (found: n = 4, d = 1, p = 4, m = 1,
    tanh, lam = 0, cond 1.2e15, train losses 1.5e-4 and 3.6e-3), so only the sums are
    backend properties there."""
    from bigstep import rf

    x = bigstep.gaussian_noise(n * 7 + d, (n, d)).astype(dtype)
    models = list(on_all(lambda backend: rf.fit(x, t, p=p, n_noise=m, rho=rho, lam=lam, seed=1,
                                                backend=backend)).values())
    for model in models:
        assert np.isfinite(model.A).all() and np.isfinite(model.K).all() and np.isfinite(model.R).all()
    ref = models[0]
    cond = np.linalg.cond(ref.K + lam * np.eye(p))
    note(f"cond(K + lam I) = {cond:.3g}")
    for model in models[1:]:
        for a, b in ((model.K, ref.K), (model.R, ref.R)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * (np.abs(b).max() + 1))
        assert model.xi2 == pytest.approx(ref.xi2, rel=1e-10, abs=1e-12)
        if cond < 1e6:
            np.testing.assert_allclose(model.A, ref.A, rtol=1e-6, atol=1e-6 * (np.abs(ref.A).max() + 1))


# --------------------------------------------------------- regressions (bugs found)


def test_regression_dirac_term_of_a_tiny_inner_weight(backend):
    """Fuzzing found w1 = 2.2e-311: with w2 = 0 the kink term's fp / |w1| overflowed and
    0 * inf made the Hessian NaN (the term is 0 there); with w2 = 1 the term is beyond
    float64 and the Hessian, its products and the sharpness raise a ValueError naming
    the net (numpy's eigvalsh failed on the inf, other entries were inf * 0 = NaN),
    while the risk and its gradient stay finite."""
    w1 = np.array([0.0, 0.0, 2.2250738585e-311])
    x = np.array([1.0])
    flat = bigstep.ReLUNet1D(w1, np.zeros(3), np.zeros(3))
    steep = bigstep.ReLUNet1D(w1, np.zeros(3), np.array([0.0, 0.0, 1.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for wrt in ("outer_bias", "all"):
            assert np.isfinite(bigstep.dsm_risk_hessian(flat, x, 1.0, 1.0, wrt=wrt, backend=backend)).all()
            assert math.isfinite(bigstep.sharpness(flat, x, 1.0, 1.0, wrt=wrt, backend=backend))
            with pytest.raises(ValueError, match="net: the Hessian's kink term of neuron 2 is beyond float64"):
                bigstep.dsm_risk_hessian(steep, x, 1.0, 1.0, wrt=wrt, backend=backend)
            with pytest.raises(ValueError, match="net:"):
                bigstep.sharpness(steep, x, 1.0, 1.0, wrt=wrt, backend=backend)
        risk, grad = bigstep.dsm_risk_grad(steep, x, 1.0, 1.0, wrt="all", backend=backend)
        assert math.isfinite(risk) and np.isfinite(grad).all()


def _readonly(a):
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a


def test_regression_readonly_inputs(backend):
    """Found by test_fuzz_optimal_score_nd: a read-only C-contiguous input (here
    np.broadcast_to(np.array([[0.0]]), (1, 1)); also writeable=False arrays and
    np.load(mmap_mode="r")) made every Numba kernel fail with numba's "No matching
    definition for argument type(s) readonly array(...)" TypeError (explicit signatures
    take mutable arrays only).  Fixed in _arrays.prepare (read-only inputs are copied)."""
    y_b = np.broadcast_to(np.array([[0.0]]), (1, 1))
    assert not y_b.flags.writeable
    assert bigstep.optimal_score(y_b, np.array([[0.0]]), 1.0, 1.0, backend=backend).tolist() == [[0.0]]
    x1, y1, X = _readonly([0.0, 1.0]), _readonly([0.5]), _readonly([[0.0], [1.0]])
    s, d1, d2 = bigstep.optimal_score_derivatives(y1, x1, _readonly(1.0), _readonly(1.0), backend=backend)
    assert np.isfinite(s).all() and np.isfinite(d1).all() and np.isfinite(d2).all()
    assert np.isfinite(bigstep.log_density(_readonly([[0.5]]), X, 1.0, 1.0, backend=backend)).all()
    assert bigstep.mmd2(X, X, backend=backend) == pytest.approx(0.0, abs=1e-14)
    assert bigstep.memorization_ratio(X, X, backend=backend).tolist() == [0.0, 0.0]
