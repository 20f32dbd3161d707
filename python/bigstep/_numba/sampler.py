"""Reverse-diffusion sampler: fused Numba loops for the built-in scores.

Euler-Maruyama (docs/design.md section 2) for dX = (X + 2 s(X, tau)) dt + sqrt(2) dB, or the
probability-flow ODE dX = (X + s(X, tau)) dt (``ode``), step k of the grid:

    X_{k+1} = X_k + h_k (X_k + c s(X_k, tau_k)) + r_k Z_k,   c = 2, r_k = sqrt(2 h_k)  (EM)
                                                           c = 1, r_k = 0            (ODE)

with Z_k[p, j] the standard normal at counter k n d + p d + j of the Philox stream
(seed, 1) -- element [k, p, j] of ``gaussian_noise(seed, (n_steps, n, d), stream=1)``.
The caller (bigstep.sampler) computes the per-step tables tau_k, h_k, r_k, mu(tau_k),
sigma(tau_k) once, in Python, so the fused loop and the generic callable path use the
same numbers.

Particles are processed in tiles of ``_TILE`` rows spread over threads (prange); a tile
runs every step of a chunk [k0, k1) before the next tile starts, so its state stays in
cache.  Each particle's arithmetic depends only on its own row (the s* tile kernel sums
each query's row independently), and its noise only on its counter, so the output is
bit-identical for any thread count.  Everything is float64.

Scores per kernel: s* of d-D data by a direct per-particle loop when n <= 128 (the tile
kernel pads data tiles to 128 points, 13x the work at n = 10) and by the optimal-score
flash-attention tile kernel (_query_tile) above; s* of 1-D data by the 1-D kernel's
windowed shifted-logit sums; the Gaussian score through the eigendecomposition of the
covariance; the ReLU net directly.  Noise: Philox blocks for a tile's whole row range in
one vectorised loop (random._blocks), then Box-Muller with libm log/cos (as the C++ does), which
dominates the cost at large d.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import jit
from ._fast_exp import exp_nonpos
from .optimal_score import _NB, _QB, _SCORE, _finish_1d, _pack, _query_tile, _setup_1d, _window_sums
from .random import _normals

__all__ = ["sampler_empirical_1d", "sampler_empirical_nd", "sampler_gaussian", "sampler_relu", "pack_empirical_nd"]

_TILE = _QB  # particles per tile (the s* tile kernel's query tile)
_SMALL_N = _NB  # d-D s* with at most this many points: a direct per-particle loop (no tile padding)

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


@jit("void(float64[:, ::1], float64[:, ::1], int64, int64, int64, float64, float64, float64, uint64, "
     "float64[::1], uint64[:, ::1], float64[:, :, ::1], boolean)")
def _advance(x, s, p0, pn, k, h, c, r, seed, z, words, path, keep):
    """One step for the particles p0 .. p0 + pn - 1: x += h (x + c s) + r Z_k, then the
    new rows into path[k + 1] when ``keep``; z (pn d) and words ((4, >= pn d // 4 + 2), see
    random._normals) are scratch."""
    n, d = x.shape
    if r != 0.0:
        _normals(seed, np.uint64(1), np.uint64(k * n * d + p0 * d), pn * d, z, words)
    for i in range(pn):
        p = p0 + i
        for j in range(d):
            zz = z[i * d + j] if r != 0.0 else 0.0
            x[p, j] = x[p, j] + h * (x[p, j] + c * s[p, j]) + r * zz
            if keep:
                path[k + 1, p, j] = x[p, j]


# ----------------------------------------------------------------------------- s*, d-D


def pack_empirical_nd(x):
    """Data (n, d) float64 packed for the s* tile kernel: (xt, rows, norm2)."""
    n, d = x.shape
    tiles = (n + _NB - 1) // _NB
    xt = np.zeros((tiles, d, _NB))
    rows = np.empty((n, d))
    norm2 = np.zeros(tiles * _NB)
    _pack(x, xt, rows, norm2)
    return xt, rows, norm2


@jit("void(float64[:, ::1], int64, int64, float64[:, ::1], float64[::1], float64, float64, "
     "float64[:, ::1], float64[::1], float64[::1])", fastmath={"reassoc", "contract"})
def _empirical_small(y, p0, pn, x, norm2, mu, sigma, s, logits, acc):
    """s*(y_p) for p0 <= p < p0 + pn by a direct loop over the n data points (small n):
    logits l_i = a <y, x_i> - c ||x_i||^2 (a = mu/sigma^2, c = mu^2/(2 sigma^2)),
    shifted by their maximum, exp_nonpos, s* = (mu sum_i w_i x_i / sum_i w_i - y)/sigma^2.
    logits (n) and acc (d) are scratch.  Sums may be reassociated (vector lanes): the
    order is fixed at compile time, so results do not depend on the thread count."""
    n, d = x.shape
    inv_s2 = 1.0 / (sigma * sigma)
    a = mu * inv_s2
    c = 0.5 * mu * mu * inv_s2
    for q in range(pn):
        p = p0 + q
        finite = True
        for k in range(d):
            finite = finite and math.isfinite(y[p, k])
        if not finite:
            for k in range(d):
                s[p, k] = np.nan
            continue
        best = -np.inf
        for i in range(n):
            g = 0.0
            for k in range(d):
                g += y[p, k] * x[i, k]
            li = a * g - c * norm2[i]
            logits[i] = li
            best = li if li > best else best
        total = 0.0
        for k in range(d):
            acc[k] = 0.0
        for i in range(n):
            w = exp_nonpos(logits[i] - best)
            total += w
            for k in range(d):
                acc[k] += w * x[i, k]
        for k in range(d):
            s[p, k] = (mu * (acc[k] / total) - y[p, k]) * inv_s2


@jit("void(float64[:, ::1], int64, int64, float64[::1], float64[::1], float64[::1], float64[::1], "
     "float64[::1], float64, uint64, boolean, float64[:, :, ::1], "
     "float64[:, ::1], float64[:, :, ::1], float64[:, ::1], float64[::1])", parallel=True)
def _run_empirical_nd(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data, xt, rows, norm2):
    """Steps k0 .. k1 - 1 with s* of d-D data (n_data, d): the direct loop for
    n_data <= _SMALL_N, the flash-attention tile kernel otherwise."""
    n, d = x.shape
    n_data = data.shape[0]
    s = np.empty((n, d))
    empty_row = np.empty(0)
    empty_mat = np.empty((0, d))
    for t in numba.prange((n + _TILE - 1) // _TILE):
        p0 = t * _TILE
        pn = min(_TILE, n - p0)
        z = np.empty(_TILE * d)
        words = np.empty((4, _TILE * d // 4 + 2), dtype=np.uint64)
        logits = np.empty(n_data if n_data <= _SMALL_N else 0)
        acc = np.empty(d)
        mu1 = np.empty(1)
        sigma1 = np.empty(1)
        for k in range(k0, k1):
            if n_data <= _SMALL_N:
                _empirical_small(x, p0, pn, data, norm2, mu[k], sigma[k], s, logits, acc)
            else:
                mu1[0] = mu[k]
                sigma1[0] = sigma[k]
                _query_tile(x, p0, pn, xt, rows, norm2, mu1, sigma1, _SCORE, s, empty_row, empty_mat)
            _advance(x, s, p0, pn, k, h[k], c, r[k], seed, z, words, path, keep)


# ----------------------------------------------------------------------------- s*, 1-D


def sampler_empirical_nd(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data):
    """Steps k0 .. k1 - 1 with s* of d-D data (n_data, d) (packs the data for the tile
    kernel, O(n_data d), then runs the compiled loop)."""
    _run_empirical_nd(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data, *pack_empirical_nd(data))


@jit("void(float64[:, ::1], int64, int64, float64[::1], float64[::1], float64[::1], float64[::1], "
     "float64[::1], float64, uint64, boolean, float64[:, :, ::1], float64[::1])", parallel=True)
def sampler_empirical_1d(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data_sorted):
    """Steps k0 .. k1 - 1 with s* of 1-D data (sorted ascending), state (n, 1): per
    particle the windowed shifted-logit sums of the 1-D kernel."""
    n = x.shape[0]
    s = np.empty((n, 1))
    log_n = math.log(np.float64(data_sorted.shape[0]))
    for t in numba.prange((n + _TILE - 1) // _TILE):
        p0 = t * _TILE
        pn = min(_TILE, n - p0)
        z = np.empty(_TILE)
        words = np.empty((4, _TILE // 4 + 2), dtype=np.uint64)
        for k in range(k0, k1):
            mu_k = mu[k]
            sig_k = sigma[k]
            for p in range(p0, p0 + pn):
                y = x[p, 0]
                if not math.isfinite(y):
                    s[p, 0] = np.nan
                    continue
                xs, e, lo, hi = _setup_1d(y, data_sorted, mu_k, sig_k)
                s0, s1, s2, s3 = _window_sums(data_sorted, lo, hi, xs, mu_k / sig_k, e / sig_k, False)
                s[p, 0] = _finish_1d(s0, s1, s2, s3, xs, e, mu_k, sig_k, log_n)[0]
            _advance(x, s, p0, pn, k, h[k], c, r[k], seed, z, words, path, keep)


# ----------------------------------------------------------------------------- Gaussian


@jit("void(float64[:, ::1], int64, int64, float64[::1], float64[::1], float64[::1], float64[::1], "
     "float64[::1], float64, uint64, boolean, float64[:, :, ::1], float64[::1], float64[:, ::1], float64[::1])",
     parallel=True)
def sampler_gaussian(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, mean, vecs, lam):
    """Steps k0 .. k1 - 1 with the noised Gaussian score
    s = -U diag(1/(mu^2 lam + sigma^2)) U^T (x - mu m), C = U diag(lam) U^T."""
    n, d = x.shape
    s = np.empty((n, d))
    for t in numba.prange((n + _TILE - 1) // _TILE):
        p0 = t * _TILE
        pn = min(_TILE, n - p0)
        z = np.empty(_TILE * d)
        words = np.empty((4, _TILE * d // 4 + 2), dtype=np.uint64)
        v = np.empty(d)
        w = np.empty(d)
        for k in range(k0, k1):
            mu_k = mu[k]
            s2 = sigma[k] * sigma[k]
            for p in range(p0, p0 + pn):
                for j in range(d):
                    v[j] = x[p, j] - mu_k * mean[j]
                for a in range(d):
                    acc = 0.0
                    for j in range(d):
                        acc += vecs[j, a] * v[j]
                    w[a] = acc / (mu_k * mu_k * lam[a] + s2)
                for j in range(d):
                    acc = 0.0
                    for a in range(d):
                        acc += vecs[j, a] * w[a]
                    s[p, j] = -acc
            _advance(x, s, p0, pn, k, h[k], c, r[k], seed, z, words, path, keep)


# ----------------------------------------------------------------------------- ReLU net


@jit("void(float64[:, ::1], int64, int64, float64[::1], float64[::1], float64[::1], float64[::1], "
     "float64[::1], float64, uint64, boolean, float64[:, :, ::1], "
     "float64[:, ::1], float64[::1], float64[:, ::1], float64[::1])", parallel=True)
def sampler_relu(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, w1, b1, w2t, b2):
    """Steps k0 .. k1 - 1 with s = -r_theta(t, x)/sigma(t),
    r_theta(t, x) = (1/m) W2 relu(W1 [x; t] + b1) + b2; w1 (m, d + 1), w2t = W2^T (m, d)."""
    n, d = x.shape
    m = w1.shape[0]
    inv_m = 1.0 / m
    s = np.empty((n, d))
    for t in numba.prange((n + _TILE - 1) // _TILE):
        p0 = t * _TILE
        pn = min(_TILE, n - p0)
        z = np.empty(_TILE * d)
        words = np.empty((4, _TILE * d // 4 + 2), dtype=np.uint64)
        out = np.empty(d)
        for k in range(k0, k1):
            tk = tau[k]
            sig_k = sigma[k]
            for p in range(p0, p0 + pn):
                for j in range(d):
                    out[j] = 0.0
                for l in range(m):
                    pre = b1[l]
                    for j in range(d):
                        pre += w1[l, j] * x[p, j]
                    pre += w1[l, d] * tk
                    if not pre <= 0.0:  # relu; NaN propagates as in numpy
                        for j in range(d):
                            out[j] += w2t[l, j] * pre
                for j in range(d):
                    s[p, j] = -(out[j] * inv_m + b2[j]) / sig_k
            _advance(x, s, p0, pn, k, h[k], c, r[k], seed, z, words, path, keep)
