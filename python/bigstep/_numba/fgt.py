"""Fast Gauss transform of the optimal-score family (d <= 3): Numba mirror of the C++.

Mirrors csrc/include/bigstep/fgt.hpp (the bound, the expansion, the evaluation) and
csrc/cpu/fgt_kernels.cpp (plan and execution), with the same function names and
parameters as bigstep._core:

    fgt_1d(y, x_sorted, mu, sigma, what, mode) -> (score, log_density, mean, d1, d2, stats)
    fgt_nd(y, x, mu, sigma, what, mode)        -> (score, log_density, mean, stats)

In h-units (h = sqrt(2) sigma, Z = (mu/h) x, Y = y/h) every target box expands
F(t) = sum_i w_i exp(2 t.s_i) about its centre c (s_i = Z_i - c, w_i = exp(-(|s_i|^2 -
rho^2)), rho the distance to the nearest source) in a polynomial of total degree P chosen
from the truncation bound; boxes without such a P are summed directly, per target about
its nearest source.  See the C++ header for the derivation.

Layout difference from the C++ (same algorithm, same sums): coordinates are padded to three
dimensions, the data's dimensions last (a dimension of size 1 adds nothing), so one set of
loops serves d = 1, 2, 3; monomials are evaluated from tables of exponents instead of
nested Horner schemes, so results agree with the C++ to rounding.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import jit
from ._fast_exp import exp_nonpos
from ._intrinsics import fma

__all__ = ["fgt_1d", "fgt_nd", "sampler_empirical_fgt_1d", "sampler_empirical_fgt_nd"]

_SCORE, _LOGP, _MEAN, _DERIV = 1, 2, 4, 8
_LOG_SQRT_2PI = 0.91893853320467274178
_SHELLS = 64
_LEVELS = 4
_BLOCK = 256  # sources summed into a block before the block is added to the totals
_MAX_ORDER = {1: 64, 2: 40, 3: 28}
_BOX_SIDE = {1: 0.5, 2: 0.7, 3: 0.6}
_TOL = {False: (1.1e-16, 32.0), True: (9.3e-10, 1e4)}  # (truncation, amplification) for float64 / float32

# cost model (fgt_kernels.cpp)
_COST_PAIR = 1.0
_COST_S2L_EXP = 1.0
_COST_S2L_COEFF = 0.12
_COST_EVAL_COEFF = 0.35
_COST_SCAN = 0.25
_COST_PAIRWISE_1D = 1.0
_COST_PAIRWISE_ND = 1.6
_N_STATS = 8
_CALIBRATE = {1: 5.0, 2: 1.5, 3: 3.0}  # kCalibrate in fgt_kernels.cpp


def num_coeffs(d: int, P: int) -> int:
    """C(P + d, d): monomials of total degree <= P in d variables."""
    c = 1
    for j in range(1, d + 1):
        c = c * (P + j) // j
    return c


# ----------------------------------------------------------------------- the bound


@jit("float64(int64, int64, float64, float64, float64)")
def _log_trunc_term(k, m, tau, lo, hi):
    """log max over [lo, hi] of r^k (2 tau r)^(m+1)/(m+1)! exp(-max(r - tau, 0)^2)."""
    if not (tau > 0) or not (hi > 0):
        return -np.inf
    rs = 0.5 * (tau + math.sqrt(tau * tau + 2.0 * (k + m + 1)))
    r = lo if rs < lo else (hi if rs > hi else rs)
    if not (r > 0):
        return -np.inf
    ex = (r - tau) * (r - tau) if r > tau else 0.0
    return k * math.log(r) + (m + 1) * math.log(2.0 * tau * r) - math.lgamma(m + 2.0) - ex


@jit("float64(int64, float64, float64, float64)")
def _log_mag_term(k, tau, lo, hi):
    """log max over [lo, hi] of r^k exp(-max(r - tau, 0)^2)."""
    rs = 0.5 * (tau + math.sqrt(tau * tau + 2.0 * k))
    r = lo if rs < lo else (hi if rs > hi else rs)
    if k > 0 and not (r > 0):
        return -np.inf
    ex = (r - tau) * (r - tau) if r > tau else 0.0
    return (k * math.log(r) if k > 0 else 0.0) - ex


@jit("UniTuple(float64, 2)(float64, float64, float64)")
def _logsum_add(m, s, l):
    """One term of a running log-sum-exp (m, s): returns the new (m, s)."""
    if not (l > -np.inf):
        return m, s
    if l <= m:
        return m, s + math.exp(l - m)
    return l, s * math.exp(m - l) + 1.0


@jit("float64(float64, float64)")
def _logsum_value(m, s):
    return m + math.log(s) if m > -np.inf else -np.inf


@jit("float64(float64, float64, float64, float64, int64)")
def _cutoff(rho, tau, n, tol, kmax):
    base = (rho + tau) * (rho + tau) + math.log(16.0 * n / tol)
    rc = tau + math.sqrt(base)
    return tau + math.sqrt(base + kmax * math.log(rc if rc > 1 else 1.0))


@jit("float64(float64[::1], float64, float64, float64)")
def _log_lower_sum(count, r0, w, tau):
    m, s = -np.inf, 0.0
    for j in range(_SHELLS):
        if count[j] > 0:
            hi = r0 + (j + 1) * w
            m, s = _logsum_add(m, s, math.log(count[j]) - (hi + tau) * (hi + tau))
    return _logsum_value(m, s)


@jit("float64(int64, int64, float64[::1], float64, float64, float64, float64, float64, float64)")
def _log_trunc_bound(k, P, count, r0, w, rc, tau, n_out, log_lower):
    m, s = -np.inf, 0.0
    for j in range(_SHELLS):
        if count[j] > 0:
            m, s = _logsum_add(m, s, math.log(count[j]) + _log_trunc_term(k, P - k, tau, r0 + j * w, r0 + (j + 1) * w))
    if n_out > 0:
        m, s = _logsum_add(m, s, math.log(n_out) + k * math.log(rc) - (rc - tau) * (rc - tau))
    return _logsum_value(m, s) - log_lower


@jit("float64(int64, float64[::1], float64, float64, float64, float64)")
def _log_amplification(k, count, r0, w, tau, log_lower):
    m, s = -np.inf, 0.0
    for j in range(_SHELLS):
        if count[j] > 0:
            m, s = _logsum_add(m, s, math.log(count[j]) + _log_mag_term(k, tau, r0 + j * w, r0 + (j + 1) * w))
    return _logsum_value(m, s) - log_lower


@jit("boolean(int64, int64, float64[::1], float64, float64, float64, float64, float64, float64, float64, float64)")
def _order_ok(P, kmax, count, r0, w, rc, tau, n_out, log_lower, log_tol, log_scale):
    for k in range(kmax + 1):
        if _log_trunc_bound(k, P, count, r0, w, rc, tau, n_out, log_lower) > log_tol + k * log_scale:
            return False
    return True


@jit("Tuple((int64, float64))(float64[::1], float64, float64, float64, float64, float64, int64, int64, "
     "float64, float64, float64, float64)")
def _plan_order(count, r0, w, rc, tau, n_out, kmax, pmax, trunc_scale, amp_scale, tol, amp):
    """(order, bound) of a box, order -1 if none (plan_order in fgt.hpp)."""
    log_lower = _log_lower_sum(count, r0, w, tau)
    log_amp_scale = math.log(amp_scale)
    for k in range(kmax + 1):
        if _log_amplification(k, count, r0, w, tau, log_lower) > math.log(amp) + k * log_amp_scale:
            return -1, 0.0
    log_tol = math.log(tol)
    log_scale = math.log(trunc_scale)
    if not _order_ok(pmax, kmax, count, r0, w, rc, tau, n_out, log_lower, log_tol, log_scale):
        return -1, 0.0
    lo, hi = kmax, pmax
    if _order_ok(lo, kmax, count, r0, w, rc, tau, n_out, log_lower, log_tol, log_scale):
        hi = lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _order_ok(mid, kmax, count, r0, w, rc, tau, n_out, log_lower, log_tol, log_scale):
            hi = mid
        else:
            lo = mid
    worst = -np.inf
    for k in range(kmax + 1):
        b = _log_trunc_bound(k, hi, count, r0, w, rc, tau, n_out, log_lower) - k * log_scale
        worst = max(worst, b)
    return hi, math.exp(worst)


# ----------------------------------------------------------------------- sources


def _sources(x2, r, d):
    """Sources (mu/h) x padded to 3 columns (data last), counting-sorted into cells:
    (z [3, n], x [3, n] (the data's units, same order), lo [3], N [3] int64, g,
    start [cells + 1] int64, zmax)."""
    n = x2.shape[0]
    z = np.zeros((3, n))
    xo = np.zeros((3, n))
    xo[3 - d:] = x2.astype(np.float64).T
    z[3 - d:] = r * xo[3 - d:]
    lo = z.min(axis=1)
    hi = z.max(axis=1)
    zmax = float(np.sqrt((z * z).sum(axis=0)).max())
    g = 1.5 if d == 3 else 1.0
    cap = max(64.0, 2.0 * n)
    while np.prod(np.floor((hi - lo) / g) + 1) > cap:
        g *= 1.5
    N = (np.floor((hi - lo) / g) + 1).astype(np.int64)
    cell = np.zeros(n, dtype=np.int64)
    for j in range(3):
        c = np.floor((z[j] - lo[j]) / g)
        c = np.clip(c, 0, N[j] - 1).astype(np.int64)
        cell = cell * N[j] + c
    order = np.argsort(cell, kind="stable")
    start = np.zeros(int(np.prod(N)) + 1, dtype=np.int64)
    np.add.at(start, cell + 1, 1)
    np.cumsum(start, out=start)
    return np.ascontiguousarray(z[:, order]), np.ascontiguousarray(xo[:, order]), lo, N, float(g), start, zmax


@jit("int64(float64, float64, float64, int64)")
def _clamp_cell(v, lo, g, N):
    f = math.floor((v - lo) / g)
    if f < 0:
        return 0
    if f >= N:
        return N - 1
    return int(f)


@jit("float64(float64, float64, float64, int64)")
def _slab2(p, lo, g, i):
    a = lo + i * g
    b = a + g
    dd = a - p if p < a else (p - b if p > b else 0.0)
    return dd * dd


@jit("int64(float64[::1], float64, float64[::1], int64[::1], float64, int64[::1], int64[::1], int64[::1])")
def _ranges(p, R, lo, N, g, start, rb, re):
    """Contiguous source ranges [rb[k], re[k]) covering every source within R of p (for_ranges
    in the C++); returns their number (rb, re hold N[0] N[1] entries)."""
    cnt = 0
    R2 = R * R
    for j in range(3):
        if p[j] + R < lo[j] or p[j] - R > lo[j] + N[j] * g:
            return 0
    a0 = _clamp_cell(p[0] - R, lo[0], g, N[0])
    b0 = _clamp_cell(p[0] + R, lo[0], g, N[0])
    for i0 in range(a0, b0 + 1):
        r2a = R2 - _slab2(p[0], lo[0], g, i0)
        if r2a < 0:
            continue
        Ra = math.sqrt(r2a)
        if p[1] + Ra < lo[1] or p[1] - Ra > lo[1] + N[1] * g:
            continue
        a1 = _clamp_cell(p[1] - Ra, lo[1], g, N[1])
        b1 = _clamp_cell(p[1] + Ra, lo[1], g, N[1])
        for i1 in range(a1, b1 + 1):
            r2b = r2a - _slab2(p[1], lo[1], g, i1)
            if r2b < 0:
                continue
            Rb = math.sqrt(r2b)
            if p[2] + Rb < lo[2] or p[2] - Rb > lo[2] + N[2] * g:
                continue
            a2 = _clamp_cell(p[2] - Rb, lo[2], g, N[2])
            b2 = _clamp_cell(p[2] + Rb, lo[2], g, N[2])
            row = (i0 * N[1] + i1) * N[2]
            s = start[row + a2]
            e = start[row + b2 + 1]
            if e > s:
                rb[cnt] = s
                re[cnt] = e
                cnt += 1
    return cnt


@jit("Tuple((int64, float64))(float64[::1], float64[:, ::1], float64[::1], int64[::1], float64, int64[::1])")
def _nearest(p, z, lo, N, g, start):
    """(index, squared distance) of the source nearest to p, lowest index among ties: rings
    of cells around p's clamped cell (nearest in the C++)."""
    ip = np.empty(3, np.int64)
    out2 = 0.0
    rmax = 0
    for j in range(3):
        ip[j] = _clamp_cell(p[j], lo[j], g, N[j])
        a = lo[j]
        b = lo[j] + N[j] * g
        dd = a - p[j] if p[j] < a else (p[j] - b if p[j] > b else 0.0)
        out2 += dd * dd
        rmax = max(rmax, max(ip[j], N[j] - 1 - ip[j]))
    best2 = np.inf
    best = 0
    for r in range(rmax + 1):
        ring = max(0.0, (r - 1) * g)
        if max(out2, ring * ring) >= best2:
            break
        for o0 in range(-r, r + 1):
            i0 = ip[0] + o0
            if i0 < 0 or i0 >= N[0]:
                continue
            for o1 in range(-r, r + 1):
                i1 = ip[1] + o1
                if i1 < 0 or i1 >= N[1]:
                    continue
                for o2 in range(-r, r + 1):
                    i2 = ip[2] + o2
                    if i2 < 0 or i2 >= N[2]:
                        continue
                    if r > 0 and abs(o0) != r and abs(o1) != r and abs(o2) != r:
                        continue
                    c2 = _slab2(p[0], lo[0], g, i0) + _slab2(p[1], lo[1], g, i1) + _slab2(p[2], lo[2], g, i2)
                    if c2 >= best2:
                        continue
                    c = (i0 * N[1] + i1) * N[2] + i2
                    for k in range(start[c], start[c + 1]):
                        d2 = 0.0
                        for j in range(3):
                            v = z[j, k] - p[j]
                            d2 += v * v
                        if d2 < best2 or (d2 == best2 and k < best):
                            best2 = d2
                            best = k
    return best, best2


# ----------------------------------------------------------------------- planning

# box table columns
(_B_BEGIN, _B_COUNT, _B_C0, _B_C1, _B_C2, _B_TAU, _B_RHO, _B_Z0, _B_Z1, _B_Z2, _B_RC, _B_BOUND, _B_NIN,
 _B_ORDER, _B_EXPAND, _B_COST_FGT, _B_COST_PW, _B_NEAREST, _B_COLS) = range(19)


@jit("void(float64[:, ::1], int64[::1], float64[::1], float64[::1], float64[:, ::1], float64[::1], int64[::1], "
     "float64, int64[::1], float64, int64, int64, int64, float64, float64, int64)")
def _plan_one(Y, order, b, count, z, lo, N, g, start, zmax, d, kmax, pmax, tol, amp, n):
    begin = int(b[_B_BEGIN])
    cnt = int(b[_B_COUNT])
    blo = np.full(3, np.inf)
    bhi = np.full(3, -np.inf)
    for e in range(cnt):
        i = order[begin + e]
        for j in range(3):
            blo[j] = min(blo[j], Y[j, i])
            bhi[j] = max(bhi[j], Y[j, i])
    c = np.empty(3)
    t2 = 0.0
    c2 = 0.0
    for j in range(3):
        c[j] = 0.5 * blo[j] + 0.5 * bhi[j]
        half = max(bhi[j] - c[j], c[j] - blo[j])
        t2 += half * half
        c2 += c[j] * c[j]
    tau = math.sqrt(t2)
    js, d2 = _nearest(c, z, lo, N, g, start)
    rho = math.sqrt(d2)
    rc = _cutoff(rho, tau, float(n), tol, kmax)
    w = (rc - rho) / _SHELLS
    if not (w > 1e-12):
        w = 1e-12
    for j in range(_SHELLS):
        count[j] = 0.0
    rows = N[0] * N[1]
    rb = np.empty(rows, np.int64)
    re = np.empty(rows, np.int64)
    nr = _ranges(c, rc, lo, N, g, start, rb, re)
    n_in = 0
    rc2 = rc * rc
    for q in range(nr):
        for k in range(rb[q], re[q]):
            r2 = 0.0
            for j in range(3):
                v = z[j, k] - c[j]
                r2 += v * v
            if r2 <= rc2:
                jj = int((math.sqrt(r2) - rho) / w)
                jj = 0 if jj < 0 else (_SHELLS - 1 if jj >= _SHELLS else jj)
                count[jj] += 1.0
                n_in += 1
    input_scale = max(math.sqrt(c2) + zmax + tau, 1e-300)
    trunc_scale = min(max(1.0, rho + tau), input_scale)
    P, bound = _plan_order(count, rho, w, rc, tau, float(n - n_in), kmax, pmax, trunc_scale, input_scale, tol, amp)
    if kmax >= 2 and rho > 1.0:  # derivatives: raw moments about a far centre would cancel
        P = -1
    channels = float(kmax + 1) if d == 1 else float(d + 1)
    cost_direct = float(cnt) * float(n_in) * _COST_PAIR
    cost = cost_direct
    expand = 0.0
    if P >= 0:
        pt = 1.0
        for jj in range(1, d + 1):
            pt = pt * (P + jj) / jj
        cost_expand = float(n_in) * (_COST_S2L_EXP + _COST_S2L_COEFF * pt) + float(cnt) * _COST_EVAL_COEFF * pt * channels
        if cost_expand < cost_direct:
            expand = 1.0
            cost = cost_expand
    if d == 1:
        rw = math.sqrt(745.5 + (rho + tau) * (rho + tau)) + tau
        nr = _ranges(c, rw, lo, N, g, start, rb, re)
        win = 0
        for q in range(nr):
            win += re[q] - rb[q]
        cost_pw = float(cnt) * float(win) * _COST_PAIRWISE_1D
    else:
        cost_pw = float(cnt) * float(n) * _COST_PAIRWISE_ND
    b[_B_C0] = c[0]
    b[_B_C1] = c[1]
    b[_B_C2] = c[2]
    b[_B_TAU] = tau
    b[_B_RHO] = rho
    b[_B_Z0] = z[0, js]
    b[_B_Z1] = z[1, js]
    b[_B_Z2] = z[2, js]
    b[_B_RC] = rc
    b[_B_BOUND] = bound
    b[_B_NIN] = n_in
    b[_B_ORDER] = P
    b[_B_EXPAND] = expand
    b[_B_COST_FGT] = cost + float(n_in) * _COST_SCAN
    b[_B_COST_PW] = cost_pw
    b[_B_NEAREST] = js


@jit("void(float64[:, ::1], int64[::1], float64[:, ::1], float64[:, ::1], float64[:, ::1], float64[::1], int64[::1], "
     "float64, int64[::1], float64, int64, int64, int64, float64, float64)", parallel=True)
def _plan_all(Y, order, boxes, counts, z, lo, N, g, start, zmax, d, kmax, pmax, tol, amp):
    n = z.shape[1]
    for k in numba.prange(boxes.shape[0]):
        _plan_one(Y, order, boxes[k], counts[k], z, lo, N, g, start, zmax, d, kmax, pmax, tol, amp, n)


@jit("int64(int64, int64)")
def _num_coeffs(d, P):
    c = 1
    for j in range(1, d + 1):
        c = c * (P + j) // j
    return c


_MAX_ORDER_ND = np.array([0, 64, 40, 28], dtype=np.int64)


@jit("int64[:, ::1](int64, int64)")
def _exps_for(d, P):
    """Exponents (num_coeffs(d, P), 3) of F's coefficients in the C++ order (first data
    dimension outermost), padded with leading zero columns to three dimensions."""
    out = np.zeros((_num_coeffs(d, P), 3), np.int64)
    idx = 0
    if d == 1:
        for k in range(P + 1):
            out[idx, 2] = k
            idx += 1
    elif d == 2:
        for a in range(P + 1):
            for b in range(P - a + 1):
                out[idx, 1] = a
                out[idx, 2] = b
                idx += 1
    else:
        for a in range(P + 1):
            for b in range(P - a + 1):
                for c in range(P - a - b + 1):
                    out[idx, 0] = a
                    out[idx, 1] = b
                    out[idx, 2] = c
                    idx += 1
    return out

# ----------------------------------------------------------------------- execution


@jit("void(float64[:, ::1], float64[:, ::1], float64, float64[::1], float64[:, ::1], float64[::1], int64[::1], "
     "float64, int64[::1], int64[:, ::1], float64[::1], float64[:, ::1])")
def _box_coefficients(z, xo, r, b, g3, lo, N, g, start, exps, L, Lb):
    """The coefficients L of F for box b (box_coefficients in the C++); g3 (3, P + 1) and Lb
    (1, num_coeffs) scratch."""
    P = int(b[_B_ORDER])
    pt = exps.shape[0]
    c = np.empty(3)
    zs = np.empty(3)
    ss = np.empty(3)
    c[0], c[1], c[2] = b[_B_C0], b[_B_C1], b[_B_C2]
    zs[0], zs[1], zs[2] = b[_B_Z0], b[_B_Z1], b[_B_Z2]
    js = int(b[_B_NEAREST])
    for j in range(3):
        ss[j] = zs[j] - c[j]
    for a in range(pt):
        L[a] = 0.0
        Lb[0, a] = 0.0
    rc = b[_B_RC]
    rc2 = rc * rc
    rows = N[0] * N[1]
    rb = np.empty(rows, np.int64)
    re = np.empty(rows, np.int64)
    nr = _ranges(c, rc, lo, N, g, start, rb, re)
    in_block = 0
    for q in range(nr):
        for k in range(rb[q], re[q]):
            r2 = 0.0
            e = 0.0
            for j in range(3):
                v = z[j, k] - c[j]
                r2 += v * v
                u = r * (xo[j, k] - xo[j, js])
                e += u * (u + 2.0 * ss[j])
            if r2 > rc2:
                continue
            w = exp_nonpos(-e)
            for j in range(3):
                two_s = 2.0 * (z[j, k] - c[j])
                g3[j, 0] = 1.0
                for m in range(1, P + 1):
                    g3[j, m] = g3[j, m - 1] * (two_s * (1.0 / m))
            for a in range(pt):
                Lb[0, a] += w * g3[0, exps[a, 0]] * g3[1, exps[a, 1]] * g3[2, exps[a, 2]]
            in_block += 1
            if in_block == _BLOCK:
                for a in range(pt):
                    L[a] += Lb[0, a]
                    Lb[0, a] = 0.0
                in_block = 0
    for a in range(pt):
        L[a] += Lb[0, a]


@jit("void(float64[::1], int64, float64, int64, float64[::1])")
def _eval_1d(L, P, t, kmax, out):
    """F and its derivatives up to kmax at t by Horner's scheme (eval_1d)."""
    b0 = L[P]
    b1 = 0.0
    b2 = 0.0
    b3 = 0.0
    for k in range(P - 1, -1, -1):
        if kmax >= 3:
            b3 = b3 * t + b2
        if kmax >= 2:
            b2 = b2 * t + b1
        b1 = b1 * t + b0
        b0 = b0 * t + L[k]
    out[0] = b0
    out[1] = b1
    out[2] = 2.0 * b2
    out[3] = 6.0 * b3


@jit("void(float64[::1], int64[:, ::1], int64, float64[::1], float64[:, ::1], float64[:, ::1], float64[::1])")
def _eval_nd(L, exps, P, t, pw, dpw, out):
    """out = (F, dF/dt_0, dF/dt_1, dF/dt_2) at t (padded coordinates) from the exponent table."""
    for j in range(3):
        pw[j, 0] = 1.0
        dpw[j, 0] = 0.0
        for m in range(1, P + 1):
            pw[j, m] = pw[j, m - 1] * t[j]
            dpw[j, m] = m * pw[j, m - 1]
    f = f0 = f1 = f2 = 0.0
    for a in range(exps.shape[0]):
        e0, e1, e2 = exps[a, 0], exps[a, 1], exps[a, 2]
        la = L[a]
        f += la * pw[0, e0] * pw[1, e1] * pw[2, e2]
        f0 += la * dpw[0, e0] * pw[1, e1] * pw[2, e2]
        f1 += la * pw[0, e0] * dpw[1, e1] * pw[2, e2]
        f2 += la * pw[0, e0] * pw[1, e1] * dpw[2, e2]
    out[0] = f
    out[1] = f0
    out[2] = f1
    out[3] = f2


@jit("void(float64[::1], float64[:, ::1], float64[:, ::1], float64, float64[::1], int64[::1], float64, int64[::1], "
     "float64, float64[::1], float64[::1], float64[::1])")
def _direct_target(yv, z, xo, r, lo, N, g, start, ldir, m, o, e):
    """Direct sums for one target yv (padded): m[0] = log S0 (the true sum, as a log), m[1..3]
    moments about o = the nearest source (1-D: E[u^k] of the last coordinate; d-D: E[u_j]
    of every padded coordinate j in m[1 + j])."""
    js, best2 = _nearest(yv, z, lo, N, g, start)
    e2 = 0.0
    for j in range(3):
        o[j] = xo[j, js]
        e[j] = fma(-r, o[j], yv[j])
        e2 += e[j] * e[j]
    R = math.sqrt(best2 + ldir)
    rows = N[0] * N[1]
    rb = np.empty(rows, np.int64)
    re = np.empty(rows, np.int64)
    nr = _ranges(yv, R, lo, N, g, start, rb, re)
    tot = np.zeros(7)  # S0, S1_j (j < 3), S2, S3 of the last coordinate
    blk = np.zeros(7)
    in_block = 0
    for q in range(nr):
        for k in range(rb[q], re[q]):
            l = 0.0
            u0 = r * (xo[0, k] - o[0])
            u1 = r * (xo[1, k] - o[1])
            u2 = r * (xo[2, k] - o[2])
            l -= u0 * (u0 - 2.0 * e[0])
            l -= u1 * (u1 - 2.0 * e[1])
            l -= u2 * (u2 - 2.0 * e[2])
            w = exp_nonpos(l)
            blk[0] += w
            blk[1] += w * u0
            blk[2] += w * u1
            blk[3] += w * u2
            blk[4] += w * u2 * u2
            blk[5] += w * u2 * u2 * u2
            in_block += 1
            if in_block == _BLOCK:
                for c in range(7):
                    tot[c] += blk[c]
                    blk[c] = 0.0
                in_block = 0
    for c in range(7):
        tot[c] += blk[c]
    m[0] = math.log(tot[0]) - e2
    for c in range(1, 6):
        m[c] = tot[c] / tot[0]


@jit("void(float64[:, ::1], int64[::1], float64[:, ::1], int64[::1], float64[:, ::1], float64[:, ::1], float64, "
     "float64[::1], int64[::1], float64, int64[::1], int64, int64, float64[:, ::1], uint8[::1])", parallel=True)
def _run_expanded(Y, order, boxes, ebox, z, xo, r, lo, N, g, start, d, kmax, res, direct):
    """Expanded boxes: coefficients, then every target's results into res rows
    (log S0, E[s] (3 padded) or E[s^k] (1-D, k = 1..3), centre (3), offset (3)); a target whose
    F is not positive and finite is flagged for the direct pass."""
    pmax = _MAX_ORDER_ND[d]
    for kk in numba.prange(ebox.shape[0]):
        b = boxes[ebox[kk]]
        P = int(b[_B_ORDER])
        ex = _exps_for(d, P)
        pt = ex.shape[0]
        L = np.zeros(pt)
        Lb = np.zeros((1, pt))
        g3 = np.zeros((3, pmax + 1))
        _box_coefficients(z, xo, r, b, g3, lo, N, g, start, ex, L, Lb)
        rho2 = b[_B_RHO] * b[_B_RHO]
        c = np.empty(3)
        c[0], c[1], c[2] = b[_B_C0], b[_B_C1], b[_B_C2]
        t = np.empty(3)
        f = np.zeros(4)
        pw = np.zeros((3, pmax + 1))
        dpw = np.zeros((3, pmax + 1))
        begin = int(b[_B_BEGIN])
        for e in range(int(b[_B_COUNT])):
            i = order[begin + e]
            t2 = 0.0
            for j in range(3):
                t[j] = Y[j, i] - c[j]
                t2 += t[j] * t[j]
            if d == 1:
                _eval_1d(L, P, t[2], kmax, f)
            else:
                _eval_nd(L, ex, P, t, pw, dpw, f)
            if not (f[0] > 0) or not math.isfinite(f[0]):
                direct[i] = 1
                continue
            rr = res[i]
            rr[0] = math.log(f[0]) - t2 - rho2
            if d == 1:
                for k in range(1, 4):
                    rr[k] = f[k] / ((1 << k) * f[0])
            else:
                for j in range(3):
                    rr[1 + j] = f[1 + j] / (2.0 * f[0])
            for j in range(3):
                rr[4 + j] = c[j] / r
                rr[7 + j] = t[j]


@jit("void(float64[:, ::1], int64[::1], float64[:, ::1], float64[:, ::1], float64, float64[::1], int64[::1], float64, "
     "int64[::1], float64, int64, float64[:, ::1])", parallel=True)
def _run_direct(Y, targets, z, xo, r, lo, N, g, start, ldir, d, res):
    """Direct targets' results into res (rows as _run_expanded)."""
    for kk in numba.prange(targets.shape[0]):
        i = targets[kk]
        yv = np.empty(3)
        for j in range(3):
            yv[j] = Y[j, i]
        m = np.zeros(6)
        o = np.zeros(3)
        e = np.zeros(3)
        _direct_target(yv, z, xo, r, lo, N, g, start, ldir, m, o, e)
        rr = res[i]
        rr[0] = m[0]
        if d == 1:
            rr[1] = m[3]  # E[u] of the (last) data coordinate
            rr[2] = m[4]
            rr[3] = m[5]
        else:
            for j in range(3):
                rr[1 + j] = m[1 + j]
        for j in range(3):
            rr[4 + j] = o[j]
            rr[7 + j] = e[j]


# ----------------------------------------------------------------------- driver


def _run(y2, x2, mu, sigma, d, kmax, single, mode, pairwise_factor=1.0):
    """Plan and (if chosen) execute; returns (res [q, 10] or None, stats)."""
    q = y2.shape[0]
    h = math.sqrt(2.0) * sigma
    r = mu / h
    z, xo, lo, N, g, start, zmax = _sources(x2, r, d)
    n = z.shape[1]
    tol, amp = _TOL[single]
    Y = np.zeros((3, q))
    Y[3 - d:] = (y2.astype(np.float64) / h).T
    finite = np.isfinite(Y).all(axis=0)
    pending = np.flatnonzero(finite).astype(np.int64)
    pmax = _MAX_ORDER[d]
    box_rows, orders = [], []
    at = 0
    for level in range(_LEVELS):
        if pending.size == 0:
            break
        side = _BOX_SIDE[d] * (1 << level)
        keys = np.clip(np.floor(Y[3 - d:, pending] / side), -4.5e15, 4.5e15)
        srt = np.lexsort(tuple(keys[j] for j in range(d - 1, -1, -1)) )
        pend = pending[srt]
        ks = keys[:, srt]
        new = np.ones(pend.size, dtype=bool)
        new[1:] = (ks[:, 1:] != ks[:, :-1]).any(axis=0)
        begins = np.flatnonzero(new)
        counts_ = np.diff(np.append(begins, pend.size))
        boxes = np.zeros((begins.size, _B_COLS))
        boxes[:, _B_BEGIN] = begins
        boxes[:, _B_COUNT] = counts_
        shells = np.zeros((begins.size, _SHELLS))
        _plan_all(Y, pend, boxes, shells, z, lo, N, g, start, zmax, d, kmax, pmax, tol, amp)
        passon = (boxes[:, _B_EXPAND] == 0) & (boxes[:, _B_ORDER] >= 0) & (level + 1 < _LEVELS)
        keep = ~passon
        nxt = [pend[int(b):int(b + c)] for b, c in zip(begins[passon], counts_[passon])]
        for b in np.flatnonzero(keep):
            seg = pend[int(begins[b]):int(begins[b] + counts_[b])]
            row = boxes[b].copy()
            row[_B_BEGIN] = at
            at += seg.size
            box_rows.append(row)
            orders.append(seg)
        pending = np.concatenate(nxt) if nxt else np.zeros(0, dtype=np.int64)
    boxes = np.array(box_rows).reshape(-1, _B_COLS)
    order = np.concatenate(orders) if orders else np.zeros(0, dtype=np.int64)
    qf = order.size
    cost_fgt = 2.0 * n + 0.1 * qf * math.log2(qf + 2.0) + boxes[:, _B_COST_FGT].sum()
    cost_pw = boxes[:, _B_COST_PW].sum() * pairwise_factor
    cost_fgt *= _CALIBRATE[d]
    expand = boxes[:, _B_EXPAND] == 1
    stats = np.zeros(_N_STATS)
    use = mode == 1 or cost_fgt < cost_pw
    stats[0] = 1.0 if use else 0.0
    stats[1] = boxes.shape[0]
    stats[2] = expand.sum()
    stats[3] = boxes[~expand, _B_COUNT].sum()
    stats[4] = boxes[expand, _B_ORDER].max() if expand.any() else -1
    stats[5] = boxes[expand, _B_BOUND].max() if expand.any() else 0.0
    stats[6] = cost_fgt
    stats[7] = cost_pw
    if not use:
        return None, stats
    res = np.full((q, 10), np.nan)
    direct = np.zeros(q, dtype=np.uint8)
    for b in np.flatnonzero(~expand):
        direct[order[int(boxes[b, _B_BEGIN]):int(boxes[b, _B_BEGIN] + boxes[b, _B_COUNT])]] = 1
    ebox = np.flatnonzero(expand).astype(np.int64)
    if ebox.size:
        _run_expanded(Y, order, boxes, ebox, z, xo, r, lo, N, g, start, d, kmax, res, direct)
    targets = np.flatnonzero(direct).astype(np.int64)
    ldir = math.log(16.0 * n / tol) + 8.0
    if targets.size:
        _run_direct(Y, targets, z, xo, r, lo, N, g, start, ldir, d, res)
    stats[3] = targets.size
    return res, stats


def _outputs(res, d, h, mu, sigma, log_norm, dtype, what, one_d):
    """The public outputs from the per-target results (finish_1d / write_nd in the C++):
    res rows (log S0, moments (3), origin in the data's units (3), offset e = Y - origin (3))."""
    with np.errstate(all="ignore"):
        log_s0 = res[:, 0]
        logp = (log_s0 - log_norm).astype(dtype) if what & _LOGP else None
        if one_d:
            m1, m2, m3 = res[:, 1], res[:, 2], res[:, 3]
            o, e = res[:, 6], res[:, 9]
            score = ((2.0 / h) * (m1 - e)).astype(dtype) if what & (_SCORE | _DERIV) else None
            mean = (o + (h / mu) * m1).astype(dtype) if what & _MEAN else None
            d1 = d2 = None
            if what & _DERIV:
                var = m2 - m1 * m1
                third = m3 - 3.0 * m1 * m2 + 2.0 * m1 * m1 * m1
                d1 = ((-1.0 + 2.0 * var) / (sigma * sigma)).astype(dtype)
                d2 = (2.0 * 1.41421356237309504880 * third / (sigma * sigma * sigma)).astype(dtype)
            return score, logp, mean, d1, d2
        m = res[:, 1 + 3 - d:4]
        o = res[:, 4 + 3 - d:7]
        e = res[:, 7 + 3 - d:10]
        score = ((2.0 / h) * (m - e)).astype(dtype) if what & _SCORE else None
        mean = (o + (h / mu) * m).astype(dtype) if what & _MEAN else None
        return score, logp, mean


def fgt_1d(y, x_sorted, mu, sigma, what, mode):
    """1-D optimal-score family by the fast Gauss transform (same contract as bigstep._core).

    y (q,), x_sorted (n,) ascending, one dtype; mu, sigma positive floats (one noise level);
    mode 0: the FGT where the cost model prefers it to the pairwise kernel, 1: the FGT.
    Returns (score, log_density, mean, d1, d2, stats), outputs None unless asked for."""
    what = int(what)
    mu, sigma = float(mu), float(sigma)
    q, n = y.shape[0], x_sorted.shape[0]
    kmax = 3 if what & _DERIV else (1 if what & (_SCORE | _MEAN) else 0)
    stats = np.zeros(_N_STATS)
    if q > 0 and (mode == 1 or float(q) * float(n) > 131072.0):
        res, stats = _run(y.reshape(-1, 1), x_sorted.reshape(-1, 1), mu, sigma, 1, kmax, y.dtype == np.float32, mode)
        if res is not None:
            h = math.sqrt(2.0) * sigma
            log_norm = math.log(n) + math.log(sigma) + _LOG_SQRT_2PI
            return (*_outputs(res, 1, h, mu, sigma, log_norm, y.dtype, what, True), stats)
    from .optimal_score import optimal_score_1d

    lv = lambda v: np.array([v], dtype=y.dtype)  # noqa: E731
    return (*optimal_score_1d(y, x_sorted, lv(mu), lv(sigma), what), stats)


def fgt_nd(y, x, mu, sigma, what, mode):
    """d-D optimal-score family by the fast Gauss transform, d <= 3 (else the pairwise
    kernel); same contract as bigstep._core.fgt_nd: returns (score, log_density, mean, stats)."""
    what = int(what)
    mu, sigma = float(mu), float(sigma)
    q, n = y.shape[0], x.shape[0]
    d = x.shape[1]
    kmax = 1 if what & (_SCORE | _MEAN) else 0
    stats = np.zeros(_N_STATS)
    if q > 0 and 1 <= d <= 3 and (mode == 1 or float(q) * float(n) > 131072.0):
        res, stats = _run(y, x, mu, sigma, d, kmax, y.dtype == np.float32, mode)
        if res is not None:
            h = math.sqrt(2.0) * sigma
            log_norm = math.log(n) + d * (math.log(sigma) + _LOG_SQRT_2PI)
            if d == 1:
                s, lp, m, _, _ = _outputs(res, 1, h, mu, sigma, log_norm, y.dtype, what, True)
                return (None if s is None else s.reshape(-1, 1), lp, None if m is None else m.reshape(-1, 1),
                        stats)
            return (*_outputs(res, d, h, mu, sigma, log_norm, y.dtype, what, False), stats)
    from .optimal_score import optimal_score_nd

    lv = lambda v: np.array([v], dtype=y.dtype)  # noqa: E731
    return (*optimal_score_nd(y, x, lv(mu), lv(sigma), what), stats)


# ----------------------------------------------------------------------- the sampler


def _sampler_fgt(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data, mode, one_d):
    """Steps k0 .. k1 - 1 with s* by the FGT (sampler_empirical_fgt in the C++): per step,
    s* of every particle by _run (mode 1; mode 0: steps the plan gives to the pairwise
    kernel run the fused pairwise loop), then the sampler's update with its own normals.
    Returns the number of steps that used the FGT."""
    from . import sampler as ns

    n, d = x.shape
    if d > 3:
        fused = ns.sampler_empirical_1d if one_d else ns.sampler_empirical_nd
        fused(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data)
        return 0
    x2 = data.reshape(-1, 1) if one_d else data
    z = np.empty(n * d)
    words = np.empty((4, (n * d) // 4 + 2), dtype=np.uint64)
    used = 0
    for k in range(int(k0), int(k1)):
        res = None
        if mode == 1 or float(n) * float(data.shape[0]) > 131072.0:
            res, _ = _run(x, x2, float(mu[k]), float(sigma[k]), d, 1, False, int(mode), 0.5)
        if res is None:
            fused = ns.sampler_empirical_1d if one_d else ns.sampler_empirical_nd
            fused(x, k, k + 1, h, r, mu, sigma, tau, c, seed, keep, path, data)
            continue
        hk = math.sqrt(2.0) * float(sigma[k])
        if one_d:
            s = (2.0 / hk) * (res[:, 1] - res[:, 9])
        else:
            s = (2.0 / hk) * (res[:, 1 + 3 - d:4] - res[:, 7 + 3 - d:10])
        s = np.ascontiguousarray(s.reshape(n, d))
        ns._advance(x, s, 0, n, k, float(h[k]), float(c), float(r[k]), np.uint64(seed), z, words, path, bool(keep))
        used += 1
    return used


def sampler_empirical_fgt_1d(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data_sorted, mode):
    """Sampler steps with s* of 1-D data (sorted) by the FGT; see _sampler_fgt."""
    return _sampler_fgt(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data_sorted, mode, True)


def sampler_empirical_fgt_nd(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data, mode):
    """Sampler steps with s* of d-D data by the FGT (d <= 3; else the pairwise loop)."""
    return _sampler_fgt(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data, mode, False)
