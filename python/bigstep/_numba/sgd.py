"""Fused batched 1-D SGD trainer: Numba mirror of csrc/include/bigstep/sgd.hpp and csrc/cpu/sgd_kernels.cpp.

``sgd_train(x, mu, sigma, lr, seed, w1, w2, b, batch, train_inner, clip, k0, k1,
diverged_step, loss_sum, loss_count)`` runs steps [k0, k1) of R networks (parameters
w1, w2, b of shape (R, m), updated in place), networks spread over threads (prange),
each network's steps in order.  Per step (see sgd.hpp for the formulas): draws of the
batch from Philox streams 3 (data index) and 4 (noise) at flat index j B + b, forward
pass with the same fixed summation order as the C++ (lane l % 8, pairwise tree, tail),
then the per-neuron sums SA = sum_b g_b a_bl and SAY = sum_b g_b y_b a_bl in sample
order, a_bl = 1{w1_l y_b + b_l > 0}, and the update written into a second buffer that
replaces the parameters only if the step is accepted (finite, |theta| <= 1e8, batch
loss <= 1e16); otherwise the network stops with diverged_step = j.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .. import _streams as streams
from . import jit
from .random import _block_normal, _philox_rounds, _u01_53, _MASK32, _SHIFT32, _ONE, _TWO

_THREE = np.uint64(3)

__all__ = ["sgd_train"]

_LANES = 8
_TILE = 16  # neurons per tile of the update pass (the C++ tile size does not change the result)
_PARAM_LIMIT = 1e8
_LOSS_LIMIT = 1e16
_STREAM_INDEX = np.uint64(streams.SGD_INDEX)
_STREAM_NOISE = np.uint64(streams.SGD_NOISE)


@jit(inline="always")
def _block(seed, stream, block):
    return _philox_rounds(block & _MASK32, block >> _SHIFT32, stream & _MASK32, stream >> _SHIFT32,
                          seed & _MASK32, seed >> _SHIFT32)


@jit(inline="always")
def _draw_batch(seed, j, B, x, mu, sigma, inv_s2, y, r):
    """y[b], r[b] = (y - mu x_i) / sigma^2 for slots b of step j (draw_batch in sgd.hpp)."""
    n = x.shape[0]
    u0 = u1 = u2 = u3 = np.uint64(0)
    z0 = z1 = z2 = z3 = np.uint64(0)
    for b in range(B):
        e = np.uint64(j) * np.uint64(B) + np.uint64(b)
        odd = (e & _ONE) != 0
        if b == 0 or not odd:
            u0, u1, u2, u3 = _block(seed, _STREAM_INDEX, e >> _ONE)
        if b == 0 or (e & _THREE) == 0:
            z0, z1, z2, z3 = _block(seed, _STREAM_NOISE, e >> _TWO)
        u = _u01_53(u2, u3) if odd else _u01_53(u0, u1)
        z = _block_normal(z0, z1, z2, z3, e)
        i = np.int64(u * np.float64(n))
        if i > n - 1:
            i = n - 1
        c = mu * x[i]
        yb = c + sigma * z
        y[b] = yb
        r[b] = (yb - c) * inv_s2


@jit(inline="always")
def _relu(p):
    return p if p > 0.0 else 0.0


@jit(inline="always")
def _net_output(w1, w2, bias, y, acc):
    """s(y) in the fixed order of net_output (sgd.hpp); acc: scratch of 8."""
    m = w1.shape[0]
    for k in range(_LANES):
        acc[k] = 0.0
    mv = m - m % _LANES
    for l0 in range(0, mv, _LANES):
        for k in range(_LANES):
            acc[k] += w2[l0 + k] * _relu(w1[l0 + k] * y + bias[l0 + k])
    s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
    for l in range(mv, m):
        s += w2[l] * _relu(w1[l] * y + bias[l])
    return s / np.float64(m)


@jit(inline="always")
def _update_neuron(c1, c2, cb, l, sa, say, train_inner, clip, n1, n2, nb):
    """update_neuron of sgd.hpp for neuron l: new parameters into (n1, n2, nb)[l]; returns
    max(|w1'|, |w2'|, |b'|), NaN if any is NaN."""
    a1 = c1[l]
    ab = cb[l]
    v2 = c2[l] - (a1 * say + ab * sa)
    if clip > 0.0:
        v2 = clip if v2 > clip else (-clip if v2 < -clip else v2)
    n2[l] = v2
    nb[l] = ab - c2[l] * sa
    n1[l] = a1 - c2[l] * say if train_inner else a1
    a, c, d = abs(n1[l]), abs(nb[l]), abs(v2)
    if a != a or c != c or d != d:
        return math.nan
    return max(a, c, d)


@jit(inline="always")
def _train_one(x, mu, sigma, lr, seed, w1, w2, bias, B, train_inner, clip, k0, k1, state, out):
    """Steps [k0, k1) of one network; state = (diverged_step, loss_count) view, out = loss_sum view."""
    m = w1.shape[0]
    n1 = np.empty(m)
    n2 = np.empty(m)
    nb = np.empty(m)
    c1 = w1.copy()
    c2 = w2.copy()
    cb = bias.copy()
    y = np.empty(B)
    r = np.empty(B)
    g = np.empty(B)
    gy = np.empty(B)
    acc = np.empty(_LANES)
    sa = np.empty(_TILE)
    say = np.empty(_TILE)
    inv_s2 = 1.0 / (sigma * sigma)
    coef = 2.0 * lr / np.float64(B)
    loss_sum = out[0]
    loss_count = state[1]
    for j in range(k0, k1):
        _draw_batch(seed, j, B, x, mu, sigma, inv_s2, y, r)
        loss = 0.0
        for s in range(B):
            f = _net_output(c1, c2, cb, y[s], acc) + r[s]
            loss += f * f
            g[s] = coef * f
            gy[s] = g[s] * y[s]
        loss /= np.float64(B)
        blown = not (loss <= _LOSS_LIMIT)
        if not blown:
            mx = 0.0
            mt = m - m % _TILE
            for l0 in range(0, m, _TILE):
                width = _TILE if l0 < mt else m - l0
                for k in range(_TILE):
                    sa[k] = 0.0
                    say[k] = 0.0
                for s in range(B):
                    ys = y[s]
                    gs = g[s]
                    gys = gy[s]
                    for k in range(width):  # independent chains: LLVM vectorises over k
                        on = c1[l0 + k] * ys + cb[l0 + k] > 0.0
                        sa[k] += gs if on else 0.0
                        say[k] += gys if on else 0.0
                for k in range(width):
                    v = _update_neuron(c1, c2, cb, l0 + k, sa[k], say[k], train_inner, clip, n1, n2, nb)
                    if v > mx or v != v:
                        mx = v
            blown = not (mx <= _PARAM_LIMIT)
        if blown:
            state[0] = j
            break
        loss_sum += loss
        loss_count += 1
        c1, n1 = n1, c1
        c2, n2 = n2, c2
        cb, nb = nb, cb
    w1[:] = c1
    w2[:] = c2
    bias[:] = cb
    out[0] = loss_sum
    state[1] = loss_count


@jit(parallel=True)
def _train(x, mu, sigma, lr, seed, w1, w2, bias, B, train_inner, clip, k0, k1, state, loss_sum):
    for r in numba.prange(w1.shape[0]):
        if state[r, 0] < 0:
            _train_one(x, mu, sigma, lr[r], seed[r], w1[r], w2[r], bias[r], B, train_inner, clip, k0, k1,
                       state[r], loss_sum[r:r + 1])


def sgd_train(x, mu, sigma, lr, seed, w1, w2, b, batch, train_inner, clip, k0, k1, diverged_step, loss_sum,
              loss_count):
    """Same contract as bigstep._core.sgd_train: steps [k0, k1), arrays updated in place."""
    if k1 <= k0 or w1.shape[0] == 0:
        return
    state = np.stack((diverged_step, loss_count), axis=1).astype(np.int64)
    _train(x, float(mu), float(sigma), lr, seed.astype(np.uint64), w1, w2, b, int(batch), bool(train_inner),
           float(clip), int(k0), int(k1), state, loss_sum)
    diverged_step[:] = state[:, 0]
    loss_count[:] = state[:, 1]
