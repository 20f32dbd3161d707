"""The conditioning-aware error of s* and its relatives: one measure for the tests and the
benchmarks (tests/tolerances.py and benchmarks/compare_optimal_score.py import it from
here, so a kernel is judged the same way by both).

The error model
---------------
A result f is compared with the exact value at the same floating-point inputs.  Its
allowed error has three parts:

1. A relative part, REF_RTOL * magnitude, where `magnitude` is the natural size of the
   output (|s*| for the score, max|x| for the posterior mean, ...).
2. A conditioning part: what the exact f does when its inputs move by a few units of
   roundoff.  Every implementation at this precision must round y - mu x_i (or the
   GEMM-form dot products) once, so no kernel can beat it; a plain implementation has it
   too (flash-attention's rule: the kernel's error is at most a small multiple of a plain
   implementation's error at the same precision).  It is
       COND_ULPS * eps * (magnitude + input_scale * sensitivity),
   with input_scale = |y| + mu max|x| (the size of the numbers that get rounded) and
   sensitivity the derivative of f with respect to those inputs, from the exact reference:
       s*      : (1 + mu^2 Var W / sigma^2) / sigma^2      (d-D: Var -> largest eigenvalue of Cov W)
       E[W|y]  : mu Var W / sigma^2
       log p   : |s*| + mu sqrt(Var W) / sigma^2
       s*'     : mu^3 E|W - EW|^3 / sigma^6                 (a bound on |s*''|)
       s*''    : mu^4 (E(W - EW)^4 + 3 Var^2) / sigma^8      (a bound on |s*'''|)
   This is what makes "s* accurate at sigma = 1e-4" testable: between two data points s*
   has a slope ~ mu^2 Delta^2 / (4 sigma^4), and a one-ulp change of y moves it by far more
   than 1e-12 relative; away from such transition layers the term is tiny and the relative
   bound is what binds.  A plain relative error flags such a layer (a zero of s* between
   two data points) as an inaccurate kernel; this measure does not.
3. An absolute floor, n * WEIGHT_FLOOR * unit.  The weights p_i = exp(l_i - l_max) of far
   data points are tiny: the kernels' exp clamps its argument at -700 (float: -87) and
   returns exp(-700) ~ 1e-304 (float: 1.6e-38) instead of a subnormal or 0 below it.  So
   each of the n moment-sum terms is known only to WEIGHT_FLOOR times its size; `unit` is
   the output's size per unit weight (e.g. mu^3 R^3 / sigma^6 for s*'', R the data range).

Measured (tests/test_optimal_score.py cases, gcc 12 baseline/AVX2 and numba, sigma 1 ..
1e-4, mu 1 and 0.37, d = 1, 3, 64): every error is below 1 * eps * (magnitude +
input_scale * sensitivity) for s*, E[W|y], log p, s*' and below 3.2 for s*''.  COND_ULPS = 8
keeps a factor 2.5 of margin over that and still catches any error of more than eight
roundings of the inputs.

:func:`error_units` expresses an error in units of this bound: at most 1 is accurate.

>>> import numpy as np
>>> x = np.array([-1.0, 1.0]); y = np.array([0.0, 0.5])
>>> w = np.exp(-(y[:, None] - 0.9 * x) ** 2 / (2 * 0.25)); w /= w.sum(axis=1, keepdims=True)
>>> c = x - (w * x).sum(axis=1, keepdims=True)
>>> ref = {"score": (0.9 * (w * x).sum(axis=1) - y) / 0.25, "var": (w * c**2).sum(axis=1),
...        "abs3": (w * abs(c) ** 3).sum(axis=1), "m4": (w * c**4).sum(axis=1), "log_density": np.zeros(2)}
>>> bound = bounds_1d(ref, y, x, 0.9, 0.5, np.float64)["score"]
>>> bool((error_units(ref["score"] * (1 + 1e-13), ref["score"], bound) <= 1).all())
True
"""

from __future__ import annotations

import numpy as np

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)

DESCRIPTION = ("conditioning-aware error (bigstep._errors, the tests' measure): |s - s_exact| in units of "
               "REF_RTOL |s*| + COND_ULPS eps (|s*| + input_scale * sensitivity) + n WEIGHT_FLOOR unit; "
               "<= 1 is accurate")


def eps(dtype) -> float:
    """Machine epsilon (2^-52 for float64, 2^-23 for float32)."""
    return float(np.finfo(np.dtype(dtype)).eps)


def tiny(dtype) -> float:
    """Smallest normal number of the dtype."""
    return float(np.finfo(np.dtype(dtype)).tiny)


# Size below which a weight p_i = exp(l_i - l_max) is noise: the exp clamp of the kernels
# (exp(-700) for double, exp(-87) for float), at least the smallest normal.
WEIGHT_FLOOR = {F64: max(float(np.exp(-700.0)), tiny(F64)), F32: max(float(np.exp(-87.0)), tiny(F32))}

# Relative error allowed against the exact value, where the problem is well conditioned.
#   float64: 1e-12.  The kernels form each logit as a product of well-conditioned factors
#     (1-D) or as a GEMM with double accumulation (d-D), and sum at most a few thousand
#     terms; a few ulps of relative error per logit of size |l| <= 745 (the exp underflow
#     threshold) is <= ~4 * 745 * 1.1e-16 = 3e-13 in the weights.  1e-12 leaves a factor 3
#     on top of that and is still 4 orders tighter than anything a wrong formula (or a
#     float32 accumulation by mistake) would give.
#   float32: 1e-4 relative to the exact value at the float32-rounded inputs.  Logits of
#     size up to 104 (float32 exp underflow) with a few float ulps each give up to
#     ~4 * 104 * 6e-8 = 2.5e-5 relative in the weights; 1e-4 is that with a factor 4.
REF_RTOL = {F64: 1e-12, F32: 1e-4}

# Units of roundoff of the inputs the conditioning term allows (see the module docstring).
COND_ULPS = 8


def allowed(dtype, magnitude, sensitivity, input_scale, unit=1.0, n=1):
    """Largest error allowed against the exact value at the same floats:
    REF_RTOL * magnitude + COND_ULPS * eps * (magnitude + input_scale * sensitivity)
    + n * WEIGHT_FLOOR * unit (n data points)."""
    dt = np.dtype(dtype)
    magnitude = np.asarray(magnitude, dtype=np.float64)
    cond = COND_ULPS * eps(dt) * (magnitude + np.asarray(input_scale) * np.asarray(sensitivity))
    return REF_RTOL[dt] * magnitude + cond + n * WEIGHT_FLOOR[dt] * np.asarray(unit, dtype=np.float64)


def bounds_1d(ref: dict, y, x, mu, sigma, dtype) -> dict:
    """Allowed error per query for each 1-D output (score, mean, log_density, d1, d2),
    from a reference dict with keys score, log_density, var, abs3, m4 (exact values)."""
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    s2 = np.asarray(sigma, dtype=np.float64) ** 2
    scale = np.abs(y) + mu * np.abs(x).max()
    spread = np.ptp(x)  # R: the size of W - EW per unit weight
    var = ref["var"]
    n = x.size
    return {
        "score": allowed(dtype, np.abs(ref["score"]), (1 + mu**2 * var / s2) / s2, scale, unit=scale / s2, n=n),
        "mean": allowed(dtype, np.abs(x).max(), mu * var / s2, scale, unit=np.abs(x).max(), n=n),
        "log_density": allowed(dtype, np.abs(ref["log_density"]) + 1 + np.abs(np.log(s2)) / 2,
                               np.abs(ref["score"]) + mu * np.sqrt(var) / s2, scale, n=n),
        "d1": allowed(dtype, (1 + mu**2 * var / s2) / s2, mu**3 * ref["abs3"] / s2**3, scale,
                      unit=(1 + mu**2 * spread**2 / s2) / s2, n=n),
        "d2": allowed(dtype, mu**3 * ref["abs3"] / s2**3, mu**4 * (ref["m4"] + 3 * var**2) / s2**4, scale,
                      unit=mu**3 * spread**3 / s2**3, n=n),
    }


def bounds_nd(ref: dict, Y, X, mu, sigma, dtype) -> dict:
    """Allowed error per query (normwise over the d coordinates for score and mean) from a
    d-D reference dict with keys score (q, d), log_density (q,), cov_max (q,)."""
    Y = np.asarray(Y, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    s2 = np.asarray(sigma, dtype=np.float64) ** 2
    xmax = np.linalg.norm(X, axis=1).max()
    scale = np.linalg.norm(Y, axis=1) + mu * xmax
    lam = ref["cov_max"]
    snorm = np.linalg.norm(ref["score"], axis=1)
    n = X.shape[0]
    return {
        "score": allowed(dtype, snorm, (1 + mu**2 * lam / s2) / s2, scale, unit=scale / s2, n=n),
        "mean": allowed(dtype, xmax, mu * lam / s2, scale, unit=xmax, n=n),
        # d-D log p is formed in the attention (GEMM) form (docs/design.md, section 2): the
        # logits a <y, x_j> - c ||x_j||^2 and the -||y||^2/(2 sigma^2) added back are each of
        # size (||y||^2 + mu^2 ||x||^2)/(2 sigma^2) and cancel to log p, so those terms are
        # part of its magnitude (a plain attention implementation has the same error).
        "log_density": allowed(dtype, np.abs(ref["log_density"]) + 1 + X.shape[1] * np.abs(np.log(s2)) / 2
                               + (np.linalg.norm(Y, axis=1) ** 2 + (mu * xmax) ** 2) / (2 * s2),
                               snorm + mu * np.sqrt(lam) / s2, scale, n=n),
    }


def error_units(value, exact, bound) -> np.ndarray:
    """Per query |value - exact| / bound (normwise over trailing coordinates): the error in
    units of the allowed error; <= 1 is accurate, NaN where the value is NaN."""
    exact = np.asarray(exact, dtype=np.float64)
    q = exact.shape[0] if exact.ndim else 1
    diff = np.asarray(value, dtype=np.float64).reshape(q, -1) - exact.reshape(q, -1)
    return np.linalg.norm(diff, axis=1) / np.asarray(bound, dtype=np.float64).reshape(q)
