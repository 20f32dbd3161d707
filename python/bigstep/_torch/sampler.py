"""Reverse-diffusion sampler in torch operations (the ``"torch"`` backend).

Same contract as bigstep._core and bigstep._numba.sampler: ``sampler_<score>(x, k0, k1,
h, r, mu, sigma, tau, c, seed, keep, path, *score arrays)`` runs steps [k0, k1) of

    X_{k+1} = X_k + h_k (X_k + c s(X_k, tau_k)) + r_k Z_k

on the state x (n, d) (float64, updated in place), writing row k + 1 of ``path`` after
step k when ``keep``.  Z_k[p, j] is element k n d + p d + j of the Philox normal stream
(seed, 1), drawn on x's device (bit-identical Philox words, Box-Muller within an ulp of
the CPU's), so a run reproduces the CPU backends' samples up to rounding.  The step
tables h, r, mu, sigma, tau are float64 tensors (any device; read once per call).
Everything is float64, on x's device.

Scores: s* of d-D data (n_data, d) through the d-D optimal-score kernel (GEMM-form
logits, online log-sum-exp; the data's norms prepared once per call); s* of 1-D data
(sorted) through the 1-D kernel; the noised Gaussian score through the eigendecomposition
of the covariance; the time-conditional ReLU net directly.  The score functions are
shared with the score objects' device evaluation (bigstep._torch._api).
"""

from __future__ import annotations

import torch

from .. import _streams as streams
from ._common import F64, budget, ieee_matmul
from .optimal_score import _SCORE, NDData, optimal_score_1d, optimal_score_nd_data
from .random import normals

__all__ = ["sampler_empirical_1d", "sampler_empirical_nd", "sampler_gaussian", "sampler_relu"]



def _level(v: float, device) -> torch.Tensor:
    return torch.tensor([v], dtype=F64, device=device)


def empirical_score_nd(y, data: NDData, mu, sigma):
    """s*(y) of d-D data for particles y (N, d); mu, sigma floats or (N,) tensors."""
    mu = mu if isinstance(mu, torch.Tensor) else _level(mu, y.device)
    sigma = sigma if isinstance(sigma, torch.Tensor) else _level(sigma, y.device)
    return optimal_score_nd_data(y, data, mu, sigma, _SCORE)[0]


def empirical_score_1d(y, data_sorted, mu, sigma):
    """s*(y) of 1-D data (sorted) for particles y (N, 1); mu, sigma floats or (N,) tensors."""
    mu = mu if isinstance(mu, torch.Tensor) else _level(mu, y.device)
    sigma = sigma if isinstance(sigma, torch.Tensor) else _level(sigma, y.device)
    return optimal_score_1d(y[:, 0].contiguous(), data_sorted, mu, sigma, _SCORE)[0][:, None]


def gaussian_score(y, mean, vecs, lam, mu, sigma):
    """s = -U diag(1/(mu^2 lam + sigma^2)) U^T (y - mu m) for y (N, d); mu, sigma floats
    or (N, 1) tensors."""
    w = ((y - mu * mean) @ vecs) / (mu * mu * lam + sigma * sigma)
    return -(w @ vecs.T)


def relu_output(y, w1, b1, w2t, b2, t):
    """r = (1/m) W2 relu(W1 [y; t] + b1) + b2 for y (N, d), w1 (m, d + 1), w2t = W2^T
    (m, d); t a float or an (N, 1) tensor."""
    d = y.shape[1]
    pre = y @ w1[:, :d].T + b1 + t * w1[:, d]
    act = torch.where(pre <= 0, torch.zeros((), dtype=pre.dtype, device=pre.device), pre)  # NaN stays NaN
    return act @ w2t * (1.0 / w1.shape[0]) + b2


def _run(x, k0, k1, h, r, c, seed, keep, path, score_at):
    """Steps k0 .. k1 - 1; score_at(k) gives s(x, tau_k) for the current x.  The
    increments of consecutive steps are consecutive counters of the stream: they are
    drawn for blocks of steps at once (within the chunk budget)."""
    n, d = x.shape
    hs, rs = h.tolist(), r.tolist()
    c = float(c)
    seed = int(seed)
    k0, k1 = int(k0), int(k1)
    per_block = max(1, budget(x.device) // (16 * n * d))  # Philox keeps ~16 words per normal in flight
    z, kz = None, k0
    with ieee_matmul():
        for k in range(k0, k1):
            if rs[k] != 0.0 and (z is None or k >= kz + z.shape[0]):
                kz = k
                steps = min(per_block, k1 - k)
                z = normals(seed, streams.SAMPLER_STEPS, k * n * d, steps * n * d, device=x.device).view(steps, n, d)
            s = score_at(k)
            new = x + hs[k] * (x + c * s)
            if rs[k] != 0.0:
                new = new + rs[k] * z[k - kz]
            x.copy_(new)
            if keep:
                path[k + 1].copy_(x)


def sampler_empirical_nd(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data):
    """Steps k0 .. k1 - 1 with s* of d-D data (n_data, d)."""
    prepared = NDData(data)
    mus, sigmas = mu.tolist(), sigma.tolist()
    _run(x, k0, k1, h, r, c, seed, keep, path, lambda k: empirical_score_nd(x, prepared, mus[k], sigmas[k]))


def sampler_empirical_1d(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data_sorted):
    """Steps k0 .. k1 - 1 with s* of 1-D data (sorted ascending), state (n, 1)."""
    mus, sigmas = mu.tolist(), sigma.tolist()
    _run(x, k0, k1, h, r, c, seed, keep, path, lambda k: empirical_score_1d(x, data_sorted, mus[k], sigmas[k]))


def sampler_gaussian(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, mean, vecs, lam):
    """Steps k0 .. k1 - 1 with the noised Gaussian score."""
    mus, sigmas = mu.tolist(), sigma.tolist()
    _run(x, k0, k1, h, r, c, seed, keep, path, lambda k: gaussian_score(x, mean, vecs, lam, mus[k], sigmas[k]))


def sampler_relu(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, w1, b1, w2t, b2):
    """Steps k0 .. k1 - 1 with s = -r_theta(t, x)/sigma(t); w1 (m, d + 1), w2t = W2^T (m, d)."""
    sigmas, taus = sigma.tolist(), tau.tolist()
    _run(x, k0, k1, h, r, c, seed, keep, path, lambda k: -relu_output(x, w1, b1, w2t, b2, taus[k]) / sigmas[k])
