"""Fused batched d-D SGD trainer: Numba mirror of csrc/include/bigstep/sgd_nd.hpp and
csrc/cpu/sgd_nd_kernels.cpp.

``sgd_nd_train(x, data_of, diffusion, mu, sigma, times, mus, sigmas, cdf, norm, lr, seed,
w1t, b, w2, batch, max_abs, k0, k1, steps, diverged_step, loss_sum, loss_count)`` runs
steps [k0, min(k1, steps[r])) of R networks (parameters w1t (R, p, m), b (R, m),
w2 (R, d, m), float32 or float64, updated in place), networks spread over threads
(prange), each network's steps in order.  Per step (formulas in sgd_nd.hpp): the draws
of the batch (Philox streams SGD_INDEX, SGD_NOISE, DIFFUSION_TIME of bigstep._streams), the forward pass
per sample with the C++ summation order (neuron l into lane l % L, L = 64 bytes of
the float type, pairwise tree over the lanes, the tail in order, then / m), the sums of
the update over the samples in order, and the update written into a second buffer that
replaces the parameters only if the step is accepted (loss finite and <= 1e16, every
new parameter finite and <= max_abs in absolute value); otherwise the network stops
with diverged_step = j.  Arithmetic is in the parameters' float type (the loss in
float64), like the C++; the two differ only where the C++ build contracts a*b + c into
an FMA.
"""

from __future__ import annotations

import numba
import numpy as np

from .. import _streams as streams
from . import jit
from .random import _MASK32, _ONE, _SHIFT32, _TWO, _block_normal, _philox_rounds, _u01_53

__all__ = ["sgd_nd_train"]

_THREE = np.uint64(3)
_LOSS_LIMIT = 1e16
_STREAM_INDEX = np.uint64(streams.SGD_INDEX)
_STREAM_NOISE = np.uint64(streams.SGD_NOISE)
_STREAM_TIME = np.uint64(streams.DIFFUSION_TIME)


@jit(inline="always")
def _block(seed, stream, block):
    return _philox_rounds(block & _MASK32, block >> _SHIFT32, stream & _MASK32, stream >> _SHIFT32,
                          seed & _MASK32, seed >> _SHIFT32)


@jit(inline="always")
def _time_index(cdf, u):
    """#{k : cdf[k] <= u}, capped at len(cdf) - 1 (time_index in sgd_nd.hpp)."""
    lo, hi = 0, cdf.shape[0]
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if cdf[mid] <= u:
            lo = mid + 1
        else:
            hi = mid
    return min(lo, cdf.shape[0] - 1)


@jit(inline="always")
def _draw_batch(xs, diffusion, mu0, sigma0, times, mus, sigmas, cdf, seed, j, B, u, c):
    """Inputs u (B, p) and offsets c (B, d) of step j (draw_batch in sgd_nd.hpp)."""
    n, d = xs.shape
    u0 = u1 = u2 = u3 = np.uint64(0)
    t0 = t1 = t2 = t3 = np.uint64(0)
    z0 = z1 = z2 = z3 = np.uint64(0)
    for b in range(B):
        e = np.uint64(j) * np.uint64(B) + np.uint64(b)
        odd = (e & _ONE) != 0
        if b == 0 or not odd:
            u0, u1, u2, u3 = _block(seed, _STREAM_INDEX, e >> _ONE)
            if diffusion:
                t0, t1, t2, t3 = _block(seed, _STREAM_TIME, e >> _ONE)
        uu = _u01_53(u2, u3) if odd else _u01_53(u0, u1)
        i = np.int64(uu * np.float64(n))
        if i > n - 1:
            i = n - 1
        mu, sigma = mu0, sigma0
        if diffusion:
            k = _time_index(cdf, _u01_53(t2, t3) if odd else _u01_53(t0, t1))
            mu = mus[k]
            sigma = sigmas[k]
            u[b, d] = times[k]
        for k in range(d):
            f = e * np.uint64(d) + np.uint64(k)
            if (b == 0 and k == 0) or (f & _THREE) == 0:
                z0, z1, z2, z3 = _block(seed, _STREAM_NOISE, f >> _TWO)
            z = _block_normal(z0, z1, z2, z3, f)
            u[b, k] = mu * xs[i, k] + sigma * z
            c[b, k] = -z if diffusion else z / sigma


@jit(inline="always")
def _tree(a, n):
    """Pairwise sum of a[0:n] (n a power of 2), in place: ((0+1)+(2+3))+((4+5)+(6+7))."""
    while n > 1:
        n //= 2
        for i in range(n):
            a[i] = a[2 * i] + a[2 * i + 1]
    return a[0]


@jit(inline="always")
def _forward(w1t, bias, w2, us, hrow, out, lanes, m_t, zero):
    """net(u) of one sample into out[d], hidden row kept (forward in sgd_nd_kernels.cpp).
    The loops over neurons are innermost (contiguous, vectorised by LLVM); each neuron's
    pre-activation still adds b, then k = 0..p-1 in order."""
    p, m = w1t.shape
    d = w2.shape[0]
    L = lanes.shape[1]
    mv = m - m % L
    for l in range(m):
        hrow[l] = bias[l]
    for k in range(p):
        uk = us[k]
        for l in range(m):
            hrow[l] += w1t[k, l] * uk
    for l in range(m):
        if not hrow[l] > zero:
            hrow[l] = zero
    for j in range(d):
        for k in range(L):
            lanes[0, k] = zero
        for l0 in range(0, mv, L):
            for k in range(L):
                lanes[0, k] += w2[j, l0 + k] * hrow[l0 + k]
        s = _tree(lanes[0], L)
        for l in range(mv, m):
            s += w2[j, l] * hrow[l]
        out[j] = s / m_t


@jit(inline="always")
def _backward(w2, h, u, g, ns, a1, ab, a2, a, zero):
    """Sums of the update over the ns samples of a block, added to a1 (p, m), ab (m,), a2 (d, m);
    a: scratch (m,).  Per neuron: a = g_0 w2_0 + g_1 w2_1 + ... (j in order), 0 where h <= 0."""
    d, m = w2.shape
    p = u.shape[1]
    for s in range(ns):
        hs = h[s]
        g0 = g[s, 0]
        for l in range(m):
            a[l] = g0 * w2[0, l]
        for j in range(1, d):
            gj = g[s, j]
            for l in range(m):
                a[l] += gj * w2[j, l]
        for l in range(m):
            if not hs[l] > zero:
                a[l] = zero
        for j in range(d):
            gj = g[s, j]
            for l in range(m):
                a2[j, l] += gj * hs[l]
        for k in range(p):
            uk = u[s, k]
            for l in range(m):
                a1[k, l] += a[l] * uk
        for l in range(m):
            ab[l] += a[l]


@jit(inline="always")
def _train_one(xs, diffusion, mu, sigma, times, mus, sigmas, cdf, norm, coef, seed, w1t, bias, w2, B, kb, max_abs,
               k0, k1, state, out, m_t, zero, lanes_n):
    """Steps [k0, k1) of one network; state = (diverged_step, loss_count) view, out = loss_sum view."""
    p, m = w1t.shape
    d = w2.shape[0]
    dt = w1t.dtype
    c1, cb, c2 = w1t.copy(), bias.copy(), w2.copy()
    n1, nb, n2 = np.empty_like(c1), np.empty_like(cb), np.empty_like(c2)
    a1, ab, a2 = np.empty_like(c1), np.empty_like(cb), np.empty_like(c2)
    u = np.empty((B, p), dtype=dt)
    c = np.empty((B, d), dtype=dt)
    g = np.empty((B, d), dtype=dt)
    h = np.empty((kb, m), dtype=dt)
    o = np.empty(d, dtype=dt)
    ascr = np.empty(m, dtype=dt)
    lanes = np.empty((1, lanes_n), dtype=dt)
    loss_sum = out[0]
    loss_count = state[1]
    for j in range(k0, k1):
        _draw_batch(xs, diffusion, mu, sigma, times, mus, sigmas, cdf, seed, j, B, u, c)
        a1[:] = zero
        ab[:] = zero
        a2[:] = zero
        loss = 0.0
        for s0 in range(0, B, kb):
            ns = min(kb, B - s0)
            for s in range(ns):
                b = s0 + s
                _forward(c1, cb, c2, u[b], h[s], o, lanes, m_t, zero)
                for k in range(d):
                    f = o[k] + c[b, k]
                    loss += np.float64(f) * np.float64(f)
                    g[b, k] = coef * f
            _backward(c2, h, u[s0:s0 + ns], g[s0:s0 + ns], ns, a1, ab, a2, ascr, zero)
        loss /= norm
        blown = not (loss <= _LOSS_LIMIT)
        if not blown:
            mx = 0.0
            for k in range(p):
                for l in range(m):
                    v = c1[k, l] - a1[k, l]
                    n1[k, l] = v
                    av = abs(np.float64(v))
                    if av > mx or av != av:
                        mx = av
            for l in range(m):
                v = cb[l] - ab[l]
                nb[l] = v
                av = abs(np.float64(v))
                if av > mx or av != av:
                    mx = av
            for k in range(d):
                for l in range(m):
                    v = c2[k, l] - a2[k, l]
                    n2[k, l] = v
                    av = abs(np.float64(v))
                    if av > mx or av != av:
                        mx = av
            blown = not (mx <= max_abs)
        if blown:
            state[0] = j
            break
        loss_sum += loss
        loss_count += 1
        c1, n1 = n1, c1
        cb, nb = nb, cb
        c2, n2 = n2, c2
    w1t[:] = c1
    bias[:] = cb
    w2[:] = c2
    out[0] = loss_sum
    state[1] = loss_count


@jit(parallel=True)
def _train(x, data_of, diffusion, mu, sigma, times, mus, sigmas, cdf, norm, coef, seed, w1t, b, w2, B, kb, max_abs,
           k0, k1, steps, state, loss_sum, m_t, zero, lanes_n):
    for r in numba.prange(w1t.shape[0]):
        kend = min(k1, steps[r])
        if state[r, 0] < 0 and k0 < kend:
            _train_one(x[data_of[r]], diffusion, mu, sigma, times, mus, sigmas, cdf, norm, coef[r], seed[r], w1t[r],
                       b[r], w2[r], B, kb, max_abs, k0, kend, state[r], loss_sum[r:r + 1], m_t, zero, lanes_n)


def sgd_nd_train(x, data_of, diffusion, mu, sigma, times, mus, sigmas, cdf, norm, lr, seed, w1t, b, w2, batch,
                 max_abs, k0, k1, steps, diverged_step, loss_sum, loss_count):
    """Same contract as bigstep._core.sgd_nd_train: steps [k0, k1), arrays updated in place."""
    if k1 <= k0 or w1t.shape[0] == 0:
        return
    dt = w1t.dtype.type
    m = w1t.shape[2]
    B = int(batch)
    kb = max(1, min(B, (128 * 1024) // (m * w1t.dtype.itemsize)))
    coef = (2.0 * np.asarray(lr, dtype=np.float64) / float(norm)).astype(w1t.dtype)
    state = np.stack((diverged_step, loss_count), axis=1).astype(np.int64)
    empty = np.zeros(1)
    tg = [np.ascontiguousarray(a, dtype=np.float64) if diffusion else empty for a in (times, mus, sigmas, cdf)]
    _train(np.ascontiguousarray(x, dtype=np.float64), np.asarray(data_of, dtype=np.int64), bool(diffusion),
           float(mu), float(sigma), *tg, float(norm), coef, np.asarray(seed, dtype=np.uint64), w1t, b, w2, B, kb,
           float(max_abs), int(k0), int(k1), np.asarray(steps, dtype=np.int64), state, loss_sum, dt(m), dt(0),
           64 // w1t.dtype.itemsize)
    diverged_step[:] = state[:, 0]
    loss_count[:] = state[:, 1]
