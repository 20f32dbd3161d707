"""Every tolerance of the suite, per dtype, with its justification.

The error model
---------------
A kernel result f is compared with the exact value at the same floating-point inputs
(mpmath, tests/reference.py).  Its error has two parts:

1. A relative part, REF_RTOL * magnitude, where `magnitude` is the natural size of
   the output (|s*| for the score, max|x| for the posterior mean, ...).
2. A conditioning part: what the exact f does when its inputs move by a few units of
   roundoff.  Every implementation at this precision must round y - mu x_i (or the
   GEMM-form dot products) once, so no kernel can beat it; a plain implementation has
   it too (flash-attention's rule: the kernel's error is at most a small multiple of a
   plain implementation's error at the same precision).  It is
       COND_ULPS * eps * (magnitude + input_scale * sensitivity),
   with input_scale = |y| + mu max|x| (the size of the numbers that get rounded) and
   sensitivity the derivative of f with respect to those inputs, from the exact
   reference:
       s*      : (1 + mu^2 Var W / sigma^2) / sigma^2      (d-D: Var -> largest eigenvalue of Cov W)
       E[W|y]  : mu Var W / sigma^2
       log p   : |s*| + mu sqrt(Var W) / sigma^2
       s*'     : mu^3 E|W - EW|^3 / sigma^6                 (a bound on |s*''|)
       s*''    : mu^4 (E(W - EW)^4 + 3 Var^2) / sigma^8      (a bound on |s*'''|)
   This is what makes "s* accurate at sigma = 1e-4" testable: between two data points
   s* has a slope ~ mu^2 Delta^2 / (4 sigma^4), and a one-ulp change of y moves it by
   far more than 1e-12 relative; away from such transition layers the term is tiny and
   the relative bound is what binds.
3. An absolute floor, n * WEIGHT_FLOOR * unit.  The weights p_i = exp(l_i - l_max) of far
   data points are tiny: the kernels' exp (csrc/include/bigstep/fast_exp.hpp) clamps
   its argument at -700 (float: -87) and returns exp(-700) ~ 1e-304 (float: 1.6e-38)
   instead of a subnormal or 0 below it, by design ("harmless: added to sums >= 1").
   So each of the n moment-sum terms is known only to WEIGHT_FLOOR times its size;
   `unit` is the output's size per unit weight (e.g. mu^3 R^3 / sigma^6 for s*'', R the
   data range).  It also covers float32 outputs that cannot hold the 1e-139 that s*''
   is for a query 1000 away from the data.

Measured (tests/test_optimal_score.py cases, gcc 12 baseline/AVX2 and numba, sigma
1 .. 1e-4, mu 1 and 0.37, d = 1, 3, 64): every error is below 1 * eps * (magnitude +
input_scale * sensitivity) for s*, E[W|y], log p, s*' and below 3.2 for s*'' (whose
raw moments about the nearest data point cancel by up to ~4x more than E|W - EW|^3
says).  COND_ULPS = 8 keeps a factor 2.5 of margin over that and still catches any
error of more than eight roundings of the inputs.
"""

from __future__ import annotations

import numpy as np

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)


def eps(dtype) -> float:
    """Machine epsilon (2^-52 for float64, 2^-23 for float32)."""
    return float(np.finfo(np.dtype(dtype)).eps)


def tiny(dtype) -> float:
    """Smallest normal number of the dtype."""
    return float(np.finfo(np.dtype(dtype)).tiny)


# Size below which a weight p_i = exp(l_i - l_max) is noise: the exp clamp of
# fast_exp.hpp (exp(-700) for double, exp(-87) for float), at least the smallest normal.
WEIGHT_FLOOR = {F64: max(float(np.exp(-700.0)), tiny(F64)), F32: max(float(np.exp(-87.0)), tiny(F32))}


# Relative error allowed against the exact (mpmath) value, where the problem is well
# conditioned.
#   float64: 1e-12.  The kernels form each logit as a product of well-conditioned
#     factors (1-D) or as a GEMM with double accumulation (d-D), and sum at most a few
#     thousand terms; a few ulps of relative error per logit of size |l| <= 745 (the
#     exp underflow threshold) is <= ~4 * 745 * 1.1e-16 = 3e-13 in the weights.  1e-12
#     leaves a factor 3 on top of that and is still 4 orders tighter than anything a
#     wrong formula (or a float32 accumulation by mistake) would give.
#   float32: 1e-4 relative to the exact value at the float32-rounded inputs (the
#     reference is computed at those inputs, so input rounding is not counted).  Logits
#     of size up to 104 (float32 exp underflow) with a few float ulps each give up to
#     ~4 * 104 * 6e-8 = 2.5e-5 relative in the weights; 1e-4 is that with a factor 4.
REF_RTOL = {F64: 1e-12, F32: 1e-4}

# Typical (median over well-conditioned queries) relative error.
#   float32: 1e-5: sums are blocked into float64 and logits of the weights that matter
#     are O(10), so a few float32 ulps (~2e-7 each) times O(10) is ~1e-6; 1e-5 is the
#     README's claim.  Measured: ~3e-8 median, 2e-6 worst.
#   float64: 1e-14 (measured median ~1e-16).
TYPICAL_RTOL = {F64: 1e-14, F32: 1e-5}

# Units of roundoff of the inputs the conditioning term allows (see module docstring).
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
    from a reference dict with the keys of reference.mp_1d / np_1d."""
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    s2 = np.asarray(sigma, dtype=np.float64) ** 2
    scale = np.abs(y) + mu * np.abs(x).max()
    spread = np.ptp(x)  # R: the size of W - EW per unit weight
    var = ref["var"]
    n = x.size
    out = {
        "score": allowed(dtype, np.abs(ref["score"]), (1 + mu**2 * var / s2) / s2, scale, unit=scale / s2, n=n),
        "mean": allowed(dtype, np.abs(x).max(), mu * var / s2, scale, unit=np.abs(x).max(), n=n),
        "log_density": allowed(dtype, np.abs(ref["log_density"]) + 1 + np.abs(np.log(s2)) / 2,
                               np.abs(ref["score"]) + mu * np.sqrt(var) / s2, scale, n=n),
        "d1": allowed(dtype, (1 + mu**2 * var / s2) / s2, mu**3 * ref["abs3"] / s2**3, scale,
                      unit=(1 + mu**2 * spread**2 / s2) / s2, n=n),
        "d2": allowed(dtype, mu**3 * ref["abs3"] / s2**3, mu**4 * (ref["m4"] + 3 * var**2) / s2**4, scale,
                      unit=mu**3 * spread**3 / s2**3, n=n),
    }
    return out


def bounds_nd(ref: dict, Y, X, mu, sigma, dtype) -> dict:
    """Allowed error per query (normwise over the d coordinates for score and mean)
    from a d-D reference dict (reference.mp_nd / np_nd keys)."""
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
        # d-D log p is formed in the attention (GEMM) form of docs/design.md section 2: the
        # logits a <y, x_j> - c ||x_j||^2 and the -||y||^2/(2 sigma^2) added back are
        # each of size (||y||^2 + mu^2 ||x||^2)/(2 sigma^2) and cancel to log p, so
        # those terms are part of its magnitude (a plain attention implementation has
        # the same error).
        "log_density": allowed(dtype, np.abs(ref["log_density"]) + 1 + X.shape[1] * np.abs(np.log(s2)) / 2
                               + (np.linalg.norm(Y, axis=1) ** 2 + (mu * xmax) ** 2) / (2 * s2),
                               snorm + mu * np.sqrt(lam) / s2, scale, n=n),
    }


# Two results that are each within `allowed` of the exact value differ by at most twice
# that: the factor for comparisons between backends, between batched and one-at-a-time
# calls, and for invariances (plus one rounding of the transformed inputs, which the
# conditioning term already counts): 3.
PAIR_FACTOR = 3.0

# Finite differences (float64 only).  A central difference with step h of a function
# known to +-err has error <= h^2/6 max|f'''| + err/h.  The tests choose h ~ 1e-4
# sigma-scale and bound max|f'''| on [y - h, y + h] by FD_TRUNC_MARGIN times its exact
# value at y (h is 1e-4 of the scale on which f''' varies, so it changes by far less
# than a factor 2 over the interval).
FD_TRUNC_MARGIN = 2.0

# Monte Carlo: deviations of a mean from its expectation are allowed MC_SIGMAS standard
# errors.  For a Gaussian limit the two-sided tail beyond 6 SE is 2e-9, so with a few
# dozen such checks a correct implementation fails for fewer than 1e-7 of seeds.
MC_SIGMAS = 6.0

# Random streams: statistics of N draws are allowed RNG_SIGMAS standard errors
# (two-sided tail 5.7e-7 per check), and a KS test must give p > KS_PVALUE (a correct
# generator fails it for 1e-6 of seeds).  Seeds are fixed, so the suite is
# deterministic; the thresholds say how unlikely a false alarm would be for another seed.
RNG_SIGMAS = 5.0
KS_PVALUE = 1e-6
