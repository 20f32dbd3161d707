"""Gaussian expectations of random features (no sampling).

Feature i of an input y is f_i(y) = rho(u_i), u_i = <w_i, y> / sqrt(d).

Population (y ~ N(0, I_d), the marginal of every noisy input since
exp(-2t) + Delta_t = 1): (u_i, u_j) is centred Gaussian with covariance
Sigma_ij = <w_i, w_j> / d, and

- ``population_gram``: U_ij = E[f_i f_j] in closed form for
  relu (arc-cosine kernel of degree 1: s_i s_j (sin th + (pi - th) cos th) / (2 pi),
  cos th = Sigma_ij / (s_i s_j), s_i^2 = Sigma_ii), relu_centered (the same minus the
  mean terms), erf (arcsine kernel: (2/pi) arcsin(2 Sigma_ij / sqrt((1 + 2 s_i^2)(1 + 2 s_j^2)))),
  linear (Sigma_ij); by the Hermite (Mehler) series below for tanh;
- ``stein_rows``: E[f_i(y) y] = E[rho'(u_i)] w_i / sqrt(d) = h_1(i) w_i / |w_i| (Stein's lemma).

Noise-averaged training Gram (m -> infinity): for a training point x, the input
y = mu x + sigma xi has u_i ~ N(a_i, s_i^2), a_i = mu <w_i, x> / sqrt(d),
s_i = sigma |w_i| / sqrt(d), and the noise correlation of u_i, u_j is
c_ij = <w_i, w_j> / (|w_i| |w_j|), the same for every x.  Mehler's formula gives
  E[f_i f_j] = sum_k c_ij^k h_k(i) h_k(j),  h_k(i) = E[rho(a_i + s_i g) He_k(g)] / sqrt(k!),
g ~ N(0, 1), He_k the probabilists' Hermite polynomials.  The coefficients are closed
form for relu (h_0 = a Phi(z) + s phi(z), h_1 = s Phi(z), h_k = s He_{k-2}(-z) phi(z) / sqrt(k!),
z = a / s) and linear (h_0 = a, h_1 = s), and by Gauss-Hermite quadrature (``QUAD_NODES``
nodes) for tanh and erf.  The diagonal (c = 1) is computed directly, not from the
series; off the diagonal the series is summed until max |c|^(k+1) is below ``tol``
(tail bound |c|^(K+1) sqrt(E f_i^2 E f_j^2), reported), at most ``max_terms`` terms.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf as _erf, ndtr

QUAD_NODES = 96
RELU_MEAN = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT_2PI = RELU_MEAN


def _phi(z):
    return _INV_SQRT_2PI * np.exp(-0.5 * z * z)


def activation(rho: str, u):
    """rho(u) for the activation names of bigstep.rf (the same as the compiled kernels)."""
    if rho == "relu":
        return np.maximum(u, 0.0)
    if rho == "relu_centered":
        return np.maximum(u, 0.0) - RELU_MEAN
    if rho == "tanh":
        return np.tanh(u)
    if rho == "erf":
        return _erf(u)
    return np.asarray(u, dtype=np.float64)


def _gauss_hermite():
    g, wq = np.polynomial.hermite_e.hermegauss(QUAD_NODES)
    return g, wq / math.sqrt(2.0 * math.pi)


def _norm_hermite(g, kmax):
    """He_k(g) / sqrt(k!), k = 0..kmax, shape (kmax + 1,) + g.shape (stable recursion)."""
    out = np.empty((kmax + 1,) + np.shape(g))
    out[0] = 1.0
    if kmax >= 1:
        out[1] = g
    for k in range(2, kmax + 1):
        out[k] = (g * out[k - 1] - math.sqrt(k - 1) * out[k - 2]) / math.sqrt(k)
    return out


def hermite_coefficients(rho: str, a, s, kmax: int):
    """h_k = E[rho(a + s g) He_k(g)] / sqrt(k!), k = 0..kmax; a (..., p), s (p,) > 0.

    Returns an array (kmax + 1,) + a.shape."""
    a = np.asarray(a, dtype=np.float64)
    s = np.broadcast_to(np.asarray(s, dtype=np.float64), a.shape)
    h = np.zeros((kmax + 1,) + a.shape)
    if rho == "linear":
        h[0] = a
        if kmax >= 1:
            h[1] = s
        return h
    if rho in ("relu", "relu_centered"):
        z = a / s
        pz = _phi(z)
        h[0] = a * ndtr(z) + s * pz - (RELU_MEAN if rho == "relu_centered" else 0.0)
        if kmax >= 1:
            h[1] = s * ndtr(z)
        if kmax >= 2:
            he = _norm_hermite(-z, kmax - 2)
            for k in range(2, kmax + 1):
                h[k] = s * pz * he[k - 2] / math.sqrt(k * (k - 1))
        return h
    g, wq = _gauss_hermite()
    he = _norm_hermite(g, kmax)  # (kmax + 1, Q)
    vals = activation(rho, a[..., None] + s[..., None] * g)  # (..., Q)
    return np.moveaxis(np.tensordot(vals * wq, he, axes=([-1], [1])), -1, 0)


def second_moment(rho: str, a, s):
    """E[rho(a + s g)^2], g ~ N(0, 1), elementwise."""
    a = np.asarray(a, dtype=np.float64)
    s = np.broadcast_to(np.asarray(s, dtype=np.float64), a.shape)
    if rho == "linear":
        return a * a + s * s
    if rho in ("relu", "relu_centered"):
        z = a / s
        m2 = (a * a + s * s) * ndtr(z) + a * s * _phi(z)
        if rho == "relu":
            return m2
        m1 = a * ndtr(z) + s * _phi(z)
        return m2 - 2.0 * RELU_MEAN * m1 + RELU_MEAN ** 2
    g, wq = _gauss_hermite()
    return (activation(rho, a[..., None] + s[..., None] * g) ** 2) @ wq


def series_gram(rho: str, a, s, corr, *, tol: float = 1e-12, max_terms: int = 400):
    """(1/n) sum_x E_g[f f^T] for u = a_x + s * (correlated g): a (n, p), s (p,), corr (p, p)
    with unit diagonal.  Returns (gram (p, p), h1_mean (p,), bound) where h1_mean is the
    mean over x of h_1 and bound the truncation bound of the off-diagonal entries."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    n, p = a.shape
    off = np.abs(corr - np.diag(np.diag(corr)))
    cmax = float(off.max()) if p > 1 else 0.0
    if rho == "linear":
        kmax = 1
    elif cmax <= 0.0:
        kmax = 1
    else:
        kmax = int(min(max_terms, max(1, math.ceil(math.log(tol) / math.log(min(cmax, 1 - 1e-16))) - 1)))
    # chunks of training points: the coefficients of one chunk take (kmax + 1) * chunk * p
    # doubles (and chunk * p * QUAD_NODES for the quadrature), kept to ~2^22
    chunk = max(1, min(n, (1 << 22) // ((kmax + 1 + QUAD_NODES) * p)))
    gram = np.zeros((p, p))
    h1 = np.zeros(p)
    diag = np.zeros(p)
    for i0 in range(0, n, chunk):
        ab = a[i0:i0 + chunk]
        h = hermite_coefficients(rho, ab, s, kmax)  # (kmax + 1, b, p)
        ck = np.ones((p, p))
        for k in range(kmax + 1):
            if k > 0:
                ck = ck * corr
            gram += ck * (h[k].T @ h[k])
        h1 += h[1].sum(axis=0) if kmax >= 1 else 0.0
        diag += second_moment(rho, ab, s).sum(axis=0)
    gram /= n
    np.fill_diagonal(gram, diag / n)
    m2 = np.diag(gram)
    bound = 0.0 if rho == "linear" else cmax ** (kmax + 1) * float(m2.max())
    return gram, h1 / n, bound


def population_gram(rho: str, w):
    """U = E[f f^T] for y ~ N(0, I_d), f_i = rho(<w_i, y> / sqrt(d)); w (p, d).

    Returns (U (p, p), bound): bound = 0 for the closed forms, the series' truncation
    bound for tanh."""
    p, d = w.shape
    cov = (w @ w.T) / d
    s = np.sqrt(np.diag(cov))
    if rho == "linear":
        return cov, 0.0
    if rho in ("relu", "relu_centered"):
        ss = np.outer(s, s)
        c = np.clip(cov / ss, -1.0, 1.0)
        th = np.arccos(c)
        U = ss * (np.sqrt(1.0 - c * c) + (np.pi - th) * c) / (2.0 * np.pi)
        np.fill_diagonal(U, s * s / 2.0)
        if rho == "relu_centered":
            m1 = s * RELU_MEAN
            U = U - RELU_MEAN * (m1[:, None] + m1[None, :]) + RELU_MEAN ** 2
        return U, 0.0
    if rho == "erf":
        q = np.sqrt(1.0 + 2.0 * s * s)
        return (2.0 / np.pi) * np.arcsin(np.clip(2.0 * cov / np.outer(q, q), -1.0, 1.0)), 0.0
    corr = cov / np.outer(s, s)
    U, _, bound = series_gram(rho, np.zeros((1, p)), s, corr)
    return U, bound


def stein_rows(rho: str, w):
    """E[f(y) y^T] for y ~ N(0, I_d): row i = E[rho'(u_i)] w_i / sqrt(d), shape (p, d)."""
    p, d = w.shape
    s = np.linalg.norm(w, axis=1) / math.sqrt(d)
    if rho == "linear":
        e = np.ones(p)
    elif rho in ("relu", "relu_centered"):
        e = np.full(p, 0.5)
    elif rho == "erf":
        e = (2.0 / math.sqrt(math.pi)) / np.sqrt(1.0 + 2.0 * s * s)
    else:  # tanh: E[rho'(s g)] = h_1 / s by quadrature
        e = hermite_coefficients(rho, np.zeros(p), s, 1)[1] / s
    return e[:, None] * w / math.sqrt(d)


def noise_averaged_gram(rho: str, x, w, mu: float, sigma: float):
    """m -> infinity limits of the training sums: (K_inf, R_inf, bound) with
    K_inf = (1/n) sum_nu E_xi[f f^T], R_inf = (1/n) sum_nu E_xi[f xi^T], y = mu x_nu + sigma xi."""
    p, d = w.shape
    norms = np.linalg.norm(w, axis=1)
    a = mu * (x @ w.T) / math.sqrt(d)
    s = sigma * norms / math.sqrt(d)
    corr = (w @ w.T) / np.outer(norms, norms)
    K, h1, bound = series_gram(rho, a, s, corr)
    R = h1[:, None] * w / norms[:, None]
    return K, R, bound
