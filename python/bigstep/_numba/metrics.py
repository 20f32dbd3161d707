"""Metrics family: Numba mirror of the C++ kernels.

Mirrors csrc/include/bigstep/metrics.hpp (per-element math) and
csrc/cpu/metrics_kernels.cpp (launchers), with the same names, arguments and results
as bigstep._core:

- ``gaussian_kernel_sum(x, y, bandwidth, symmetric)``: sum over all pairs of
  exp(-||x_i - y_j||^2 / (2 bandwidth^2)), in double; ``symmetric`` (y is x) evaluates
  the pairs j > i only, doubles them and adds the n diagonal terms (each exactly 1).
- ``mmd2(a, b, bandwidth, unbiased)``: squared MMD from the three kernel sums
  (mmd2_from_sums in metrics.hpp);
- ``nearest_neighbors(samples, train, k)``: (dist [n, k], idx [n, k]), the k nearest
  training rows of each sample, ascending, ties to the lower index.

Squared distances in difference form sum_k (x_ik - y_jk)^2 in double (float32 inputs
are widened exactly).  Each row's kernel sum is formed in double over blocks of
columns (vectorised: the squared distances of a block first, then their exps); the
row sums are added in order, so the result does not depend on the thread count.
Memory O(inputs + outputs): the transposed columns and one block per thread.
"""

from __future__ import annotations

import numba
import numpy as np

from . import jit
from ._fast_exp import exp_nonpos

__all__ = ["gaussian_kernel_sum", "mmd2", "nearest_neighbors"]

_BLOCK = 512  # columns per block


def _sigs(template):
    return [template.format(T=t) for t in ("float64", "float32")]


@jit("float64(float64[::1], int64, float64)", fastmath={"reassoc", "contract"})
def _exp_sum(r2, count, neg):
    """sum_{j < count} exp(neg r2_j) (gaussian_kernel in metrics.hpp), in vector lanes."""
    s = 0.0
    for j in range(count):
        s += exp_nonpos(r2[j] * neg)
    return s


@jit("void(float64[::1], float64[:, ::1], int64, int64, float64[::1])", fastmath={"contract"})
def _sq_dist_block(xi, yt, j0, count, r2):
    """r2_j = sum_k (x_k - y_{j0 + j, k})^2 for j < count, from the transposed columns yt [d, m]."""
    for j in range(count):
        r2[j] = 0.0
    for k in range(xi.shape[0]):
        xk = xi[k]
        col = yt[k, j0:j0 + count]
        for j in range(count):
            e = xk - col[j]
            r2[j] += e * e


@jit(_sigs("float64({T}[:, ::1], {T}[:, ::1], float64, boolean)"), parallel=True)
def _kernel_sum(x, y, bandwidth, symmetric):
    n, d = x.shape
    m = y.shape[0]
    neg = -1.0 / (2.0 * bandwidth * bandwidth)
    yt = np.empty((d, m))
    for j in range(m):
        for k in range(d):
            yt[k, j] = np.float64(y[j, k])
    rows = np.zeros(n)
    for i in numba.prange(n):
        xi = np.empty(d)
        for k in range(d):
            xi[k] = np.float64(x[i, k])
        r2 = np.empty(_BLOCK)
        start = i + 1 if symmetric else 0
        s = 0.0
        for j0 in range(start, m, _BLOCK):
            count = min(_BLOCK, m - j0)
            _sq_dist_block(xi, yt, j0, count, r2)
            s += _exp_sum(r2, count, neg)
        rows[i] = 2.0 * s + 1.0 if symmetric else s
    total = 0.0
    for i in range(n):
        total += rows[i]
    return total


def gaussian_kernel_sum(x, y, bandwidth, symmetric):
    """sum_{i,j} exp(-||x_i - y_j||^2 / (2 bandwidth^2)) for x [n, d], y [m, d] (one dtype),
    as a float; symmetric: y is x."""
    if x.shape[0] == 0 or y.shape[0] == 0:
        return 0.0
    return float(_kernel_sum(x, y, float(bandwidth), bool(symmetric)))


def mmd2(a, b, bandwidth, unbiased):
    """Squared MMD of a [n, d] and b [m, d] (one dtype; n, m >= 2 when unbiased), as a float:
    biased S_aa/n^2 + S_bb/m^2 - 2 S_ab/(n m), unbiased (S_aa - n)/(n (n-1)) + (S_bb - m)/(m (m-1))
    - 2 S_ab/(n m)."""
    s_aa = gaussian_kernel_sum(a, a, bandwidth, True)
    s_bb = gaussian_kernel_sum(b, b, bandwidth, True)
    s_ab = gaussian_kernel_sum(a, b, bandwidth, False)
    n, m = float(a.shape[0]), float(b.shape[0])
    cross = 2.0 * s_ab / (n * m)
    if unbiased:
        return (s_aa - n) / (n * (n - 1.0)) + (s_bb - m) / (m * (m - 1.0)) - cross
    return s_aa / (n * n) + s_bb / (m * m) - cross


@jit("int64(float64[::1], int64[::1], int64, int64, float64, int64)")
def _topk_insert(dist, idx, count, k, r2, j):
    """topk_insert of metrics.hpp: (r2, j) into the sorted list of capacity k."""
    if count == k:
        if not r2 < dist[k - 1]:
            return count
        count -= 1
    p = count
    while p > 0 and dist[p - 1] > r2:
        dist[p] = dist[p - 1]
        idx[p] = idx[p - 1]
        p -= 1
    dist[p] = r2
    idx[p] = j
    return count + 1


@jit(_sigs("void({T}[:, ::1], {T}[:, ::1], int64, {T}[:, ::1], int64[:, ::1])"), parallel=True)
def _nearest_neighbors(x, y, k, dist, idx):
    n, d = x.shape
    m = y.shape[0]
    yt = np.empty((d, m))
    for j in range(m):
        for k2 in range(d):
            yt[k2, j] = np.float64(y[j, k2])
    for i in numba.prange(n):
        xi = np.empty(d)
        for c in range(d):
            xi[c] = np.float64(x[i, c])
        r2 = np.empty(_BLOCK)
        bd = np.empty(k)
        bi = np.empty(k, np.int64)
        count = 0
        for j0 in range(0, m, _BLOCK):
            nb = min(_BLOCK, m - j0)
            _sq_dist_block(xi, yt, j0, nb, r2)
            for j in range(nb):
                if count < k or r2[j] < bd[k - 1]:
                    count = _topk_insert(bd, bi, count, k, r2[j], j0 + j)
        for e in range(k):
            dist[i, e] = np.sqrt(bd[e])
            idx[i, e] = bi[e]


def nearest_neighbors(samples, train, k):
    """(dist [n, k], idx [n, k]) of the k nearest rows of train for each sample
    (1 <= k <= len(train)), ascending, ties to the lower index."""
    k = int(k)
    n = samples.shape[0]
    dist = np.empty((n, k), dtype=samples.dtype)
    idx = np.empty((n, k), dtype=np.int64)
    if n:
        _nearest_neighbors(samples, train, k, dist, idx)
    return dist, idx
