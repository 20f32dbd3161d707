"""Every tolerance of the suite, per dtype, with its justification.

The error model (the conditioning-aware error of s*, E[W|y], log p, s*', s*'') lives in
the package, bigstep._errors, so that the benchmarks (benchmarks/compare_optimal_score.py)
judge accuracy with the very same functions: ``allowed``, ``bounds_1d``, ``bounds_nd``,
``REF_RTOL``, ``COND_ULPS``, ``WEIGHT_FLOOR`` are imported from there (its docstring gives
the model and its justification).  The tolerances below are the tests' own.
"""

from __future__ import annotations


from bigstep._errors import (  # noqa: F401  (re-exported: the tests import them from here)
    COND_ULPS,
    F32,
    F64,
    REF_RTOL,
    WEIGHT_FLOOR,
    allowed,
    bounds_1d,
    bounds_nd,
    eps,
    error_units,
    tiny,
)

# Typical (median over well-conditioned queries) relative error.
#   float32: 1e-5: sums are blocked into float64 and logits of the weights that matter
#     are O(10), so a few float32 ulps (~2e-7 each) times O(10) is ~1e-6; 1e-5 is the
#     README's claim.  Measured: ~3e-8 median, 2e-6 worst.
#   float64: 1e-14 (measured median ~1e-16).
TYPICAL_RTOL = {F64: 1e-14, F32: 1e-5}

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
