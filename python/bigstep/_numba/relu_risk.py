"""Exact DSM risk of two-layer ReLU networks: Numba mirror of the C++ kernels.

Mirrors csrc/include/bigstep/relu_risk.hpp (per-element math) and
csrc/cpu/relu_risk.cpp (launchers).  Two kernels carry all the O(n m) and O(m^2)
work; the O(m) bookkeeping around them lives in python/bigstep/relu_risk.py and is
shared by every backend.

``segment_moments(t, c, sigma)``: sorted kinks t (K,), centres c_i = mu x_i (n,).
Segment k = (t_{k-1}, t_k), k = 0..K, with t_{-1} = -inf and t_K = +inf.  With
u = Y - c_i ~ N(0, sigma^2) and m_p = E[u^p 1{Y in segment k}] it returns

    S[p, k] = sum_i E_i[Y^p 1_k]                 p = 0, 1, 2     shape (3, K+1)
    T[0, k] = sum_i E_i[(Y - c_i) 1_k]  (= sum m_1)                 shape (2, K+1)
    T[1, k] = sum_i E_i[(Y - c_i) Y 1_k] (= sum m_2 + c_i m_1)
    P[0, j] = sum_i N(t_j; c_i, sigma^2)                            shape (2, K)
    P[1, j] = sum_i z_ij phi(z_ij),  z_ij = (t_j - c_i) / sigma

``hessian_gauss_newton(cls, jpos, w1, w2, b, L, U, total, scale, wrt_all, H)``
fills the Gauss-Newton part (2/n) sum_i E_i[grad s grad s^T] of the Hessian.
"""

from __future__ import annotations

import math
import types

import numba
import numpy as np

from . import jit

__all__ = ["segment_moments", "hessian_gauss_newton"]

_INV_SQRT_2PI = 0.39894228040143267794
_INV_SQRT_2 = 0.70710678118654752440
_CHUNK = 256  # segments per parallel task


@jit(inline="always")
def _endpoint(z):
    """(Phi(z), Q(z) = 1 - Phi(z), phi(z), z phi(z)), each tail from erfc (no cancellation)."""
    if z == -np.inf:
        return 0.0, 1.0, 0.0, 0.0
    if z == np.inf:
        return 1.0, 0.0, 0.0, 0.0
    e = 0.5 * math.erfc(abs(z) * _INV_SQRT_2)
    ph = _INV_SQRT_2PI * math.exp(-0.5 * z * z)
    if z < 0.0:
        return e, 1.0 - e, ph, z * ph
    return 1.0 - e, e, ph, z * ph


@jit(inline="always")
def _interval_mass(zl, lo_l, up_l, zh, lo_h, up_h):
    """P(zl < Z < zh) for standard normal Z from the tail that keeps it accurate."""
    if zh <= 0.0:
        return lo_h - lo_l
    if zl >= 0.0:
        return up_l - up_h
    return 1.0 - lo_l - up_h


def _segment_moments(t, c, sigma, S, T, P):
    K = t.shape[0]
    n = c.shape[0]
    nseg = K + 1
    s2 = sigma * sigma
    for chunk in numba.prange((nseg + _CHUNK - 1) // _CHUNK):
        k0 = chunk * _CHUNK
        k1 = min(k0 + _CHUNK, nseg)
        for i in range(n):
            ci = c[i]
            zl = -np.inf if k0 == 0 else (t[k0 - 1] - ci) / sigma
            lo_l, up_l, ph_l, zph_l = _endpoint(zl)
            for k in range(k0, k1):
                zh = np.inf if k == K else (t[k] - ci) / sigma
                lo_h, up_h, ph_h, zph_h = _endpoint(zh)
                m0 = _interval_mass(zl, lo_l, up_l, zh, lo_h, up_h)
                m1 = sigma * (ph_l - ph_h)
                m2 = s2 * (m0 + zph_l - zph_h)
                S[0, k] += m0
                S[1, k] += ci * m0 + m1
                S[2, k] += ci * ci * m0 + 2.0 * ci * m1 + m2
                T[0, k] += m1
                T[1, k] += m2 + ci * m1
                if k < K:
                    P[0, k] += ph_h / sigma
                    P[1, k] += zph_h
                zl, lo_l, up_l, ph_l, zph_l = zh, lo_h, up_h, ph_h, zph_h


def _variant(func, suffix: str):
    """A copy of ``func`` under another name, so that its serial and parallel compilations
    get separate entries in numba's on-disk cache (which is keyed by the function's name)."""
    name = f"{func.__name__}_{suffix}"
    code = func.__code__.replace(co_name=name, co_qualname=name)
    out = types.FunctionType(code, func.__globals__, name, func.__defaults__, func.__closure__)
    out.__qualname__ = name
    return out


_MOMENTS_SIG = ["void(float64[::1], float64[::1], float64, float64[:, ::1], float64[:, ::1], float64[:, ::1])"]
_segment_moments_serial = jit(_MOMENTS_SIG)(_variant(_segment_moments, "serial"))  # small problems: no thread start-up
_segment_moments_parallel = jit(_MOMENTS_SIG, parallel=True)(_variant(_segment_moments, "parallel"))


def segment_moments(t, c, sigma):
    """See the module docstring.  t sorted float64 (K,), c float64 (n,), sigma > 0."""
    K = t.shape[0]
    S = np.zeros((3, K + 1))
    T = np.zeros((2, K + 1))
    P = np.zeros((2, K))
    run = _segment_moments_parallel if K + 1 > _CHUNK else _segment_moments_serial
    run(t, c, float(sigma), S, T, P)
    return S, T, P


@jit(inline="always")
def _region(ca, ja, cb, jb, L, U, total, p):
    """sum_i E_i[Y^p 1{both neurons active}] from the cumulative sums at the kinks.

    Classes: 1 active right of its kink (w1 > 0), -1 left of it (w1 < 0), 2 always
    (w1 = 0, b > 0), 0 never.  L[p, j] = sum over segments k <= j, U[p, j] over k > j.
    """
    if ca == 0 or cb == 0:
        return 0.0
    if ca == 2:
        if cb == 2:
            return total[p]
        return U[p, jb] if cb == 1 else L[p, jb]
    if cb == 2:
        return U[p, ja] if ca == 1 else L[p, ja]
    if ca == 1 and cb == 1:
        return U[p, max(ja, jb)]
    if ca == -1 and cb == -1:
        return L[p, min(ja, jb)]
    lo, hi = (ja, jb) if ca == 1 else (jb, ja)  # active between the kink of the + and the - neuron
    if lo >= hi:
        return 0.0
    if L[0, hi] <= U[0, lo]:  # difference of the smaller cumulative sums
        return L[p, hi] - L[p, lo]
    return U[p, lo] - U[p, hi]


def _hessian_gauss_newton(cls, jpos, w1, w2, b, L, U, total, scale, wrt_all, H):
    """H[P, P] = Gauss-Newton part, parameter order (w2, b) or (w1, w2, b); scale = 2/(n m^2)."""
    m = w1.shape[0]
    o2 = m if wrt_all else 0  # row/column offset of the w2 block
    ob = o2 + m  # offset of the b block
    for l in numba.prange(m):
        ca, ja = cls[l], jpos[l]
        a1, a2, ab = w1[l], w2[l], b[l]
        for r in range(m):
            cr, jr = cls[r], jpos[r]
            s0 = _region(ca, ja, cr, jr, L, U, total, 0) * scale
            s1 = _region(ca, ja, cr, jr, L, U, total, 1) * scale
            s2 = _region(ca, ja, cr, jr, L, U, total, 2) * scale
            r1, r2, rb = w1[r], w2[r], b[r]
            H[o2 + l, o2 + r] = a1 * r1 * s2 + (a1 * rb + r1 * ab) * s1 + ab * rb * s0
            H[o2 + l, ob + r] = r2 * (a1 * s1 + ab * s0)
            H[ob + l, o2 + r] = a2 * (r1 * s1 + rb * s0)
            H[ob + l, ob + r] = a2 * r2 * s0
            if wrt_all:
                H[l, r] = a2 * r2 * s2
                H[l, o2 + r] = a2 * (r1 * s2 + rb * s1)
                H[l, ob + r] = a2 * r2 * s1
                H[o2 + l, r] = r2 * (a1 * s2 + ab * s1)
                H[ob + l, r] = a2 * r2 * s1


_HESSIAN_SIG = ["void(int8[::1], int64[::1], float64[::1], float64[::1], float64[::1], float64[:, ::1], "
                "float64[:, ::1], float64[::1], float64, boolean, float64[:, ::1])"]
_hessian_serial = jit(_HESSIAN_SIG)(_variant(_hessian_gauss_newton, "serial"))
_hessian_parallel = jit(_HESSIAN_SIG, parallel=True)(_variant(_hessian_gauss_newton, "parallel"))


def hessian_gauss_newton(cls, jpos, w1, w2, b, L, U, total, scale, wrt_all, H):
    """Fills H (see the module docstring); threads only when m is large enough to pay off."""
    run = _hessian_parallel if w1.shape[0] > 64 else _hessian_serial
    run(cls, jpos, w1, w2, b, L, U, total, float(scale), bool(wrt_all), H)
