"""Metrics family in torch operations (the ``"torch"`` backend).

Same names, arguments and results as bigstep._core and bigstep._numba.metrics:

- ``gaussian_kernel_sum(x, y, bandwidth, symmetric)``: sum over all pairs of
  exp(-||x_i - y_j||^2 / (2 bandwidth^2)) in float64, as a float; ``symmetric`` (y is x)
  sums the pairs j > i, doubles them and adds the n diagonal terms (each exactly 1);
- ``mmd2(a, b, bandwidth, unbiased)``: squared MMD from the three kernel sums;
- ``nearest_neighbors(samples, train, k)``: (dist (n, k) in the input dtype, idx (n, k)
  int64), the k nearest training rows of each sample, ascending, ties to the lower index.

Distances in difference form, sqrt(sum_k (x_ik - y_jk)^2) in float64 (float32 inputs
widened exactly) by ``torch.cdist`` without the matrix-product shortcut, so close pairs
keep full relative accuracy far from the origin and nothing depends on the matmul
precision setting.  Blocks of at most ``_common.budget`` pairs: memory O(inputs +
outputs + block).
"""

from __future__ import annotations

import torch

from ._common import F64, budget

__all__ = ["gaussian_kernel_sum", "mmd2", "nearest_neighbors"]


def _distances(a, b):
    """Euclidean distances between the rows of a and b (float64), difference form."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _block_rows(n: int, m: int, dev) -> tuple[int, int]:
    b = budget(dev)
    rows = max(1, min(n, max(64, b // max(m, 1))))
    cols = max(1, min(m, b // rows))
    return rows, cols


def gaussian_kernel_sum(x, y, bandwidth, symmetric):
    """sum_{i,j} exp(-||x_i - y_j||^2 / (2 bandwidth^2)) for x (n, d), y (m, d) (one dtype),
    as a float; symmetric: y is x."""
    n, m = x.shape[0], y.shape[0]
    if n == 0 or m == 0:
        return 0.0
    neg = -1.0 / (2.0 * float(bandwidth) ** 2)
    rows, cols = _block_rows(n, m, x.device)
    total = torch.zeros((), dtype=F64, device=x.device)
    for i0 in range(0, n, rows):
        xi = x[i0:i0 + rows].to(F64)
        for j0 in range(i0 if symmetric else 0, m, cols):
            r = _distances(xi, y[j0:j0 + cols].to(F64))
            k = torch.exp(r * r * neg)
            if symmetric:
                k = k.triu(i0 - j0 + 1)  # pairs j > i
            total += k.sum()
    total = float(total)
    return 2.0 * total + n if symmetric else total


def mmd2(a, b, bandwidth, unbiased):
    """Squared MMD of a (n, d) and b (m, d) (one dtype; n, m >= 2 when unbiased), as a float:
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


def nearest_neighbors(samples, train, k):
    """(dist (n, k), idx (n, k)) of the k nearest rows of train for each sample
    (1 <= k <= len(train)), ascending, ties to the lower index."""
    k = int(k)
    n, m = samples.shape[0], train.shape[0]
    dev = samples.device
    dist = torch.empty((n, k), dtype=samples.dtype, device=dev)
    idx = torch.empty((n, k), dtype=torch.int64, device=dev)
    rows, cols = _block_rows(n, m, dev)
    cols = max(cols, k)
    for i0 in range(0, n, rows):
        si = samples[i0:i0 + rows].to(F64)
        best_d = torch.empty((si.shape[0], 0), dtype=F64, device=dev)
        best_i = torch.empty((si.shape[0], 0), dtype=torch.int64, device=dev)
        for j0 in range(0, m, cols):
            r = _distances(si, train[j0:j0 + cols].to(F64))
            jj = torch.arange(j0, j0 + r.shape[1], device=dev).expand(r.shape[0], -1)
            # the best so far come first: lower indices than this block, in (distance,
            # index) order, so position order is index order among equal distances
            best_d, best_i = _k_smallest(torch.cat((best_d, r), 1), torch.cat((best_i, jj), 1), k)
        dist[i0:i0 + rows] = best_d.to(samples.dtype)
        idx[i0:i0 + rows] = best_i
    return dist, idx


def _k_smallest(d, i, k):
    """The k smallest entries of each row of d (and their labels i), ascending, equal
    values in position order: the values below the k-th smallest, then the first
    positions holding it (a selection, not a sort of the whole row)."""
    if d.shape[1] <= k:
        order = d.sort(dim=1, stable=True).indices
        return d.gather(1, order), i.gather(1, order)
    kth = d.topk(k, dim=1, largest=False).values.amax(1, keepdim=True)  # (kthvalue is slower on CPUs)
    below = d < kth
    at = d == kth
    need = k - below.sum(1, keepdim=True)
    take = below | (at & (at.cumsum(1) <= need))
    pos = take.nonzero()[:, 1].view(d.shape[0], k)  # exactly k per row, in position order
    vals = d.gather(1, pos)
    order = vals.sort(dim=1, stable=True).indices
    pos = pos.gather(1, order)
    return d.gather(1, pos), i.gather(1, pos)
