"""The random-features DSM model: arguments, weights, the streamed Gram and the fit.

Notation (docs of bigstep.rf): f(y) = rho(W y / sqrt(d)) in R^p (unnormalised features),
s_A(y) = (A / sqrt(p)) f(y).  Over the N = n M samples (M = ``n_noise`` per data point) the
kernel accumulates
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
from ..scores import noise_schedule
from . import _gaussian

ACTIVATIONS = ("relu", "relu_centered", "tanh", "erf", "linear")
"""The activations ``rho`` a random-features model accepts (see :mod:`bigstep.rf`)."""
_RHO_CODES = {"relu": 0, "tanh": 1, "erf": 2, "linear": 3, "relu_centered": 4}

# The Philox streams of the random-features models (python/bigstep/_streams.py lists
# every stream; docs/design.md section 3 maps them).
STREAM_W = streams.RF_WEIGHTS
"""Philox stream of the feature weights: ``W = gaussian_noise(seed, (p, d), stream=STREAM_W)``."""
STREAM_NOISE = streams.RF_NOISE
"""Philox stream of the DSM noise of a fit: sample ``s = nu n_noise + j`` uses row ``s`` of
``gaussian_noise(seed, (n n_noise, d), stream=STREAM_NOISE)``."""
STREAM_DATA = streams.RF_DATA
"""Philox stream of the Gaussian training data :func:`learning_curve` draws."""
STREAM_MC = streams.RF_MC
"""Philox stream of the Monte Carlo evaluation draws (:meth:`RFModel.empirical_test_loss`)."""

# Bound on n M max(d, p) (exclusive), M = n_noise.  The Gram kernels (C++ and Numba) address coordinate k of
# sample s's noise as s d + k in signed 64-bit integers (also the Philox counter of that
# normal) and form n M and block ends (s0 + block) d; indexing the n M x p features the
# same way needs n M p.  Keeping n M max(d, p) < 2**62 leaves a factor 2 below 2**63 for
# every such product, so none can wrap (a wrapped count made the kernels skip every sample
# and return K = 0 silently).  The bound rejects nothing that could finish: n M d = 2**62
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


def check_n_noise(n_noise):
    """n_noise >= 1 (int) or math.inf (the noise-averaged limit)."""
    if (isinstance(n_noise, numbers.Real) and not isinstance(n_noise, (bool, np.bool_)) and math.isinf(n_noise)
            and n_noise > 0):
        return math.inf
    return integer(n_noise, "n_noise", minimum=1)


def check_size(n: int, n_noise, d: int, p: int) -> None:
    """Raise ValueError naming n_noise unless n n_noise max(d, p) < MAX_SAMPLE_ENTRIES = 2**62
    (n_noise = inf: no samples are drawn, nothing to check)."""
    if math.isinf(n_noise):
        return
    if n * n_noise * max(d, p) >= MAX_SAMPLE_ENTRIES:
        raise ValueError(f"n_noise is too large: n * n_noise * max(d, p) = {n} * {n_noise} * {max(d, p)} is not below "
                         f"2**62, the bound that keeps the kernels' 64-bit sample indices from overflowing (n_noise "
                         f"must be <= "
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
    """(mu, sigma, Delta): :func:`bigstep.noise_schedule` at t ("ou") and the noise variance
    Delta = 1 - exp(-2t) (computed directly, not as sigma^2)."""
    mu, sigma = noise_schedule(float(t))
    return float(mu), float(sigma), -math.expm1(-2.0 * t)


def weights(seed: int, p: int, d: int) -> np.ndarray:
    """W (p, d) = gaussian_noise(seed, (p, d), stream=10): row i is the same for every p."""
    return gaussian_noise(seed, (p, d), stream=STREAM_W)


def impl(backend: str):
    return _backend.kernels("random_features", _backend.resolve(backend, family="random_features"))


# --------------------------------------------------------------------------- Gram


def gram(x, w, t, n_noise, seed, rho, backend="auto"):
    """(K, R, xi2, bound): the training sums averaged over the samples (module docstring);
    n_noise = inf gives the noise-averaged limits (exact, Hermite series; bound = its
    truncation bound, 0 for finite n_noise)."""
    check_size(x.shape[0], n_noise, x.shape[1], w.shape[0])
    mu, sigma, _ = schedule(t)
    if math.isinf(n_noise):
        K, R, bound = _gaussian.noise_averaged_gram(rho, x, w, mu, sigma)
        return K, R, float(w.shape[1]), bound
    K, R, xi2 = impl(backend).rf_gram(x, w, mu, sigma, int(n_noise), seed, STREAM_NOISE, _RHO_CODES[rho])
    N = x.shape[0] * n_noise
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
