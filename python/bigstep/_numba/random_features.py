"""Random-features family: Numba mirror of csrc/cpu/random_features_kernels.cpp.

Same names, arguments and results as bigstep._core:

- ``rf_gram(x, w, mu, sigma, n_noise, seed, stream, rho)`` -> (K [p, p], R [p, d], xi2): over
  the n m samples y_s = mu x_{s // m} + sigma xi_s, xi_s[k] = normal s d + k of the
  Philox stream (seed, stream), the sums K = sum_s f f^T, R = sum_s f xi_s^T and
  xi2 = sum_s ||xi_s||^2 with f = rho(w y_s / sqrt(d)) (rho: activation code of
  csrc/include/bigstep/random_features.hpp);
- ``rf_features(y, w, rho)`` -> rho(y w^T / sqrt(d)) [q, p].

Samples are processed in blocks of 512 (C++: 128); the block products go
through BLAS (np.dot), so sums are formed in a different order than the C++ kernels and
agree to rounding.  Memory O(p^2 + p d + block (p + d)).
"""

from __future__ import annotations

import math

import numpy as np

from . import jit
from .random import _normals

__all__ = ["rf_gram", "rf_features"]

_BLOCK = 512  # samples per block: larger than the C++ block so the BLAS products run near full speed
_RELU_MEAN = 0.3989422804014327  # 1 / sqrt(2 pi), as rf_relu_mean
_MAX_ENTRIES = 1 << 62  # n m d must stay below it (the binding's check)


@jit("void(float64[:, ::1], int64)")
def _activate(u, rho):
    """u <- rho(u) in place (rf_activation in random_features.hpp)."""
    q, p = u.shape
    for i in range(q):
        for j in range(p):
            v = u[i, j]
            if rho == 0:
                u[i, j] = v if v > 0 else 0.0
            elif rho == 1:
                u[i, j] = math.tanh(v)
            elif rho == 2:
                u[i, j] = math.erf(v)
            elif rho == 4:
                u[i, j] = (v if v > 0 else 0.0) - _RELU_MEAN


@jit
def _gram(x, w, mu, sigma, m, seed, stream, rho):
    n, d = x.shape
    p = w.shape[0]
    wt = np.ascontiguousarray(w.T) / math.sqrt(d)
    K = np.zeros((p, p))
    R = np.zeros((p, d))
    xi2 = 0.0
    total = n * m
    flat = np.empty(_BLOCK * d)
    words = np.empty((4, _BLOCK * d // 4 + 2), dtype=np.uint64)
    y = np.empty((_BLOCK, d))
    for s0 in range(0, total, _BLOCK):
        rows = min(_BLOCK, total - s0)
        _normals(np.uint64(seed), np.uint64(stream), np.uint64(s0 * d), rows * d, flat, words)
        xi = flat[:rows * d].reshape((rows, d))
        for s in range(rows):
            nu = (s0 + s) // m
            acc = 0.0
            for k in range(d):
                z = xi[s, k]
                y[s, k] = mu * x[nu, k] + sigma * z
                acc += z * z
            xi2 += acc
        f = np.dot(y[:rows], wt)
        _activate(f, rho)
        ft = np.ascontiguousarray(f.T)
        K += np.dot(ft, f)
        R += np.dot(ft, np.ascontiguousarray(xi))
    return K, R, xi2


def rf_gram(x, w, mu, sigma, n_noise, seed, stream, rho):
    """(K, R, xi2) as bigstep._core.rf_gram (module docstring).  Like the binding it
    requires n_noise >= 1 and n n_noise d < 2**62: the kernel addresses the noise as s d + k
    in int64 (a wrapped product would skip every sample and return zeros silently)."""
    n, d = np.shape(x)
    m = int(n_noise)
    if m < 1:
        raise ValueError(f"n_noise must be >= 1, got {m}")
    if n * m * d >= _MAX_ENTRIES:
        raise ValueError(f"n_noise = {m} is too large: n n_noise d = {n} * {m} * {d} must be below 2^62")
    return _gram(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(w, dtype=np.float64),
                 float(mu), float(sigma), m, np.uint64(seed), np.uint64(stream), int(rho))


@jit
def _features(y, w, rho):
    d = y.shape[1]
    f = np.dot(y, np.ascontiguousarray(w.T) / math.sqrt(d))
    _activate(f, rho)
    return f


def rf_features(y, w, rho):
    """rho(y w^T / sqrt(d)), shape (q, p), as bigstep._core.rf_features."""
    y = np.ascontiguousarray(y, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    if y.shape[0] == 0:
        return np.zeros((0, w.shape[0]))
    return _features(y, w, int(rho))
