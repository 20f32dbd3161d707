"""Random-features denoising score matching: exact fits, losses, dynamics, learning curves.

**The model (as implemented).**  Data x_1..x_n in R^d (:func:`learning_curve` draws
them from N(0, I_d)); time t > 0, ``mu = exp(-t)``, ``Delta = 1 - exp(-2t)``; M =
``n_noise`` noisy inputs per data point:

    y_{nu,j} = mu x_nu + sqrt(Delta) xi_{nu,j},   j = 1..M,   xi ~ N(0, I_d)

The score is ``s_A(y) = (A / sqrt(p)) rho(W y / sqrt(d))``, W in R^(p x d) standard
Gaussian and frozen, A in R^(d x p) trained.  rho is applied exactly as named: "relu"
is ``max(u, 0)``, NOT centred (mean ``1/sqrt(2 pi)`` at unit variance);
"relu_centered" is ``max(u, 0) - 1/sqrt(2 pi)`` (centred for ``|w|^2 = d``); "tanh"
and "erf" are odd, hence centred; "linear" is u.  The losses:

    train loss    L(A) = (1/(n M d)) sum ||sqrt(Delta) s_A(y) + xi||^2 + Delta lam / (p d) ||A||_F^2
    test loss     (1/d) E_{x, xi} ||sqrt(Delta) s_A(mu x + sqrt(Delta) xi) + xi||^2,   x ~ N(0, I) fresh
    score error   (1/d) E_y ||s_A(y) + y||^2,   y ~ N(0, I)   (the true score of the noised data is -y)
                  test_loss = 1 - Delta + Delta * score_error

The empirical test loss is the test loss with x uniform on the training points (noise
averaged).  With unnormalised features ``f = rho(W y / sqrt(d))``, the exact minimiser
is a ridge regression of -xi on f (lam = 0 gives the minimum-norm solution):

    K = (1/(n M)) sum f f^T,   R = (1/(n M)) sum f xi^T,   Z = (K + lam I)^{-1} R,
    A* = -sqrt(p / Delta) Z^T

**What is exact and what is sampled.**

- :func:`fit`: K, R streamed over the n M samples by the compiled kernels (C++ per ISA
  or Numba), memory O(p^2 + p d); then a Cholesky (lam > 0) or eigen solve in float64.
  ``n_noise = math.inf``: K, R are the noise averages, computed without sampling
  (Hermite series, closed-form coefficients for relu/linear, Gauss-Hermite quadrature
  for tanh/erf).
- test_loss, score_error: closed forms (relu: arc-cosine kernel; erf: arcsine kernel;
  linear), Hermite series with 1-D Gauss-Hermite coefficients for tanh.
- noise_averaged_loss: the empirical test loss, exact (Hermite series).
- empirical_test_loss, s_star_distance: Monte Carlo with a standard error.
- dynamics / A_at: gradient descent (or flow) from A = 0 in closed form from one
  eigendecomposition of K; O(p^2) per time.
- :func:`sample_memorization`: reverse sampling with an :class:`RFScore` (one fit per
  time of a grid), then the nearest-neighbour ratio test of
  :func:`bigstep.memorized_fraction` (d1/d2 < 1/3).

**Random streams** (Philox, :func:`bigstep.gaussian_noise`): 10 = W, 11 = DSM noise xi
(sample ``s = nu M + j`` uses ``gaussian_noise(seed, (n M, d), stream=11)[s]``), 12 =
training data in :func:`learning_curve`, 13 = Monte Carlo evaluation noise
(:data:`STREAM_W`, :data:`STREAM_NOISE`, :data:`STREAM_DATA`, :data:`STREAM_MC`).

The d -> infinity limit (George, Veiga and Macris): :func:`asymptotic_errors`
(docs/rf_asymptotics.md).
"""

try:
    import scipy  # noqa: F401  (linear algebra and special functions of the exact fits)
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("bigstep.rf needs scipy: pip install 'bigstep[rf]'") from exc

from ._asymptotic import AsymptoticErrors, asymptotic_errors
from ._curve import learning_curve, regime
from ._fit import RFModel, fit
from ._model import ACTIVATIONS, STREAM_DATA, STREAM_MC, STREAM_NOISE, STREAM_W
from ._sampling import RFScore, sample_memorization

__all__ = ["fit", "RFModel", "learning_curve", "regime", "RFScore", "sample_memorization", "ACTIVATIONS",
           "STREAM_W", "STREAM_NOISE", "STREAM_DATA", "STREAM_MC", "asymptotic_errors", "AsymptoticErrors"]
