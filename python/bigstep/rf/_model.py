"""The random-features DSM model: arguments, weights, the streamed Gram and the fit.

Notation (docs of bigstep.rf): f(y) = rho(W y / sqrt(d)) in R^p (unnormalised features),
s_A(y) = (A / sqrt(p)) f(y).  Over the N = n m samples the kernel accumulates
K = (1/N) sum f f^T, R = (1/N) sum f xi^T, xi2 = (1/N) sum ||xi||^2.  With
Z = (K + lam I)^{-1} R (p x d) the minimiser of the train loss is A* = -sqrt(p / Delta) Z^T,
i.e. sqrt(Delta) s_A(y) = -Z^T f(y): ridge regression of the noise xi on the features.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import linalg

from .. import _streams as streams
from .. import _backend
from .._arrays import as_numpy
from .._validate import integer, real_scalar, uint64
from ..random import gaussian_noise
from . import _gaussian

ACTIVATIONS = ("relu", "relu_centered", "tanh", "erf", "linear")
_RHO_CODES = {"relu": 0, "tanh": 1, "erf": 2, "linear": 3, "relu_centered": 4}

# Philox streams (DESIGN section 3 uses 0-5): 10 feature weights W, 11 DSM noise xi of the
# fit, 12 training data drawn by learning_curve, 13 Monte Carlo evaluation draws.
STREAM_W, STREAM_NOISE, STREAM_DATA, STREAM_MC = streams.RF_WEIGHTS, streams.RF_NOISE, streams.RF_DATA, streams.RF_MC

# Bound on n m max(d, p) (exclusive).  The Gram kernels (C++ and Numba) address coordinate k of
# sample s's noise as s d + k in signed 64-bit integers (also the Philox counter of that
# normal) and form n m and block ends (s0 + block) d; indexing the n m x p features the
# same way needs n m p.  Keeping n m max(d, p) < 2**62 leaves a factor 2 below 2**63 for
# every such product, so none can wrap (a wrapped count made the kernels skip every sample
# and return K = 0 silently).  The bound rejects nothing that could finish: n m d = 2**62
# noise draws alone would take ~150 years at 1e9 draws per second.
MAX_SAMPLE_ENTRIES = 1 << 62


# --------------------------------------------------------------------------- checks


def check_rho(rho) -> str:
    if rho not in ACTIVATIONS:
        raise ValueError(f"rho must be one of {ACTIVATIONS}, got {rho!r}")
    return rho


def check_positive(value, name: str) -> float:
    return real_scalar(value, name, "positive")


def check_lam(lam) -> float:
    if isinstance(lam, (bool, np.bool_)) or not isinstance(lam, numbers.Real):
        raise TypeError(f"lam must be a real number, got {type(lam).__name__}")
    v = float(lam)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"lam must be a non-negative finite number, got {lam!r}")
    return v


def check_m(m):
    """m >= 1 (int) or math.inf (the noise-averaged limit)."""
    if isinstance(m, numbers.Real) and not isinstance(m, (bool, np.bool_)) and math.isinf(m) and m > 0:
        return math.inf
    return integer(m, "m", minimum=1)


def check_size(n: int, m, d: int, p: int) -> None:
    """Raise ValueError naming m unless n m max(d, p) < MAX_SAMPLE_ENTRIES = 2**62 (m = inf:
    no samples are drawn, nothing to check)."""
    if math.isinf(m):
        return
    if n * m * max(d, p) >= MAX_SAMPLE_ENTRIES:
        raise ValueError(f"m is too large: n * m * max(d, p) = {n} * {m} * {max(d, p)} is not below 2**62, the bound "
                         f"that keeps the kernels' 64-bit sample indices from overflowing (m must be <= "
                         f"{(MAX_SAMPLE_ENTRIES - 1) // (n * max(d, p))} here)")


def check_data(x) -> np.ndarray:
    arr = as_numpy(x, "x")
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"x must have shape (n, d) with n, d >= 1, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("x must be finite, got NaN or infinity")
    return arr


def check_seed(seed) -> int:
    return uint64(seed, "seed")


def schedule(t: float) -> tuple[float, float, float]:
    """(mu, sigma, Delta) = (exp(-t), sqrt(1 - exp(-2t)), 1 - exp(-2t))."""
    delta = -math.expm1(-2.0 * t)
    return math.exp(-t), math.sqrt(delta), delta


def weights(seed: int, p: int, d: int) -> np.ndarray:
    """W (p, d) = gaussian_noise(seed, (p, d), stream=10): row i is the same for every p."""
    return gaussian_noise(seed, (p, d), stream=STREAM_W)


def impl(backend: str):
    return _backend.kernels("random_features", _backend.resolve(backend, family="random_features"))


# --------------------------------------------------------------------------- Gram


def gram(x, w, t, m, seed, rho, backend="auto"):
    """(K, R, xi2, bound): the training sums averaged over the samples (module docstring);
    m = inf gives the noise-averaged limits (exact, Hermite series; bound = its truncation
    bound, 0 for finite m)."""
    check_size(x.shape[0], m, x.shape[1], w.shape[0])
    mu, sigma, _ = schedule(t)
    if math.isinf(m):
        K, R, bound = _gaussian.noise_averaged_gram(rho, x, w, mu, sigma)
        return K, R, float(w.shape[1]), bound
    K, R, xi2 = impl(backend).rf_gram(x, w, mu, sigma, int(m), seed, STREAM_NOISE, _RHO_CODES[rho])
    N = x.shape[0] * m
    return K / N, R / N, xi2 / N, 0.0


def ridge_solve(K, R, lam):
    """Z = (K + lam I)^{-1} R: Cholesky when lam > 0 (and it succeeds), else the
    minimum-norm solution from the eigendecomposition (eigenvalues below
    p eps max(eig) treated as zero)."""
    if lam > 0:
        try:
            c = linalg.cho_factor(K + lam * np.eye(K.shape[0]), lower=True, check_finite=False)
            return linalg.cho_solve(c, R, check_finite=False)
        except linalg.LinAlgError:
            pass
    ev, V = np.linalg.eigh(K)
    ev = ev + lam
    cut = K.shape[0] * np.finfo(float).eps * max(abs(ev).max(), 1e-300)
    inv = np.where(ev > cut, 1.0 / np.where(ev > cut, ev, 1.0), 0.0)
    return V @ (inv[:, None] * (V.T @ R))
