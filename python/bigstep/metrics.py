"""Sample-quality and memorization metrics (docs/design.md section 2, "Metrics").

- :func:`mmd2`: squared maximum mean discrepancy with the Gaussian kernel
  k(u, v) = exp(-||u - v||^2 / (2 h^2)) (h = 1 in the paper), biased (V-statistic) or
  unbiased (U-statistic);
- :func:`nearest_neighbors`: distances and indices of the k nearest training points;
- :func:`memorization_ratio`: d1 / d2, distance to the nearest over distance to the
  second-nearest training point;
- :func:`memorized_fraction`: share of samples with ratio below a threshold (1/3 in
  the paper).

All stream over tiles of pairs: memory O(inputs + outputs), never an N x M matrix.
Squared distances are formed in difference form sum_k (u_k - v_k)^2 in float64 (float32
inputs are widened exactly), so they are never negative and close pairs keep full
relative accuracy at any distance from the origin; kernel sums are accumulated in
float64 and do not depend on the thread count.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _backend
from ._arrays import as_numpy, prepare, result_dtype, wrap_like
from ._torch import device_route
from ._validate import _all_finite, real_scalar

__all__ = ["mmd2", "nearest_neighbors", "memorization_ratio", "memorized_fraction"]


# --------------------------------------------------------------------------- checks


def _points(value, name: str, *, allow_empty: bool = False, convert=as_numpy):
    """A point set: shape (N, d), or (N,) read as N points in d = 1; finite.  (``convert``:
    the device-array path's conversion to torch.)"""
    arr = convert(value, name)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    elif arr.ndim != 2:
        raise ValueError(f"{name} must have shape (N, d) or (N,), got {arr.ndim} dimensions {tuple(arr.shape)}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column, got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} must contain at least one point, got shape {tuple(arr.shape)}")
    if (not isinstance(arr, np.ndarray) or arr.dtype.kind == "f") and not _all_finite(arr):
        raise ValueError(f"{name} must be finite, got NaN or infinity")
    return arr


def _same_dim(a, b, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{name_a} and {name_b} must have the same dimension d, got {name_a} of shape "
                         f"{tuple(a.shape)} and {name_b} of shape {tuple(b.shape)}")


def _impl(backend: str, *arrays):
    return _backend.kernels("metrics", _backend.resolve(backend, *arrays, family="metrics"))


# --------------------------------------------------------------------------- MMD


def mmd2(a, b, *, bandwidth=1.0, unbiased=False, backend: str = "auto") -> float:
    """Squared maximum mean discrepancy between samples a and b, Gaussian kernel.

    With the kernel ``k(u, v) = exp(-||u - v||^2 / (2 h^2))``, h = ``bandwidth``, and
    the sums over all pairs (each in float64)

        S_aa = sum_{i,j} k(a_i, a_j),  S_bb = sum_{i,j} k(b_i, b_j),  S_ab = sum_{i,j} k(a_i, b_j),

    the biased estimate (V-statistic, ``unbiased=False``) is the mean over all pairs
    including i = j, non-negative up to rounding:

        MMD^2 = S_aa / N^2 + S_bb / M^2 - 2 S_ab / (N M)

    and the unbiased one (U-statistic, ``unbiased=True``) removes the diagonal from the
    aa and bb terms (it can be negative):

        MMD^2 = (S_aa - N) / (N (N - 1)) + (S_bb - M) / (M (M - 1)) - 2 S_ab / (N M)

    Cost O((N^2 + M^2)/2 + N M) kernel evaluations (symmetric sums are taken over one
    triangle), memory O((N + M) d).

    Parameters
    ----------
    a : array
        Shape (N, d), or (N,) for d = 1; finite, N >= 1 (N >= 2 when unbiased).
    b : array
        Shape (M, d), or (M,) for d = 1; finite, the same d, M >= 1 (M >= 2 when
        unbiased).
    bandwidth : float
        The kernel width h, positive and finite (the paper uses h = 1).
    unbiased : bool
        False for the V-statistic, True for the U-statistic.
    backend : str
        "auto" (cpp, then numba), "cpp" or "numba".

    Returns
    -------
    float
        A Python float, computed in float64 also for float32 inputs (which are widened
        exactly).

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> # two single points at distance 1, h = 1: 2 - 2 exp(-1/2)
    >>> round(bigstep.mmd2(np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]])), 6)
    0.786939
    >>> x = np.random.default_rng(0).standard_normal((500, 2))
    >>> abs(bigstep.mmd2(x, x)) < 1e-12
    True
    """
    if device_route(backend, {"a": a, "b": b, "bandwidth": bandwidth}):  # device arrays, or backend torch/cuda
        from ._torch._api import mmd2 as device_mmd2

        return device_mmd2(a, b, bandwidth, unbiased, backend)
    aa, ba, h = _mmd2_args(a, b, bandwidth, unbiased)
    dtype = result_dtype(aa, ba)
    impl = _impl(backend, aa, ba)
    return float(impl.mmd2(prepare(aa, dtype), prepare(ba, dtype), h, bool(unbiased)))


def _mmd2_args(a, b, bandwidth, unbiased, convert=as_numpy):
    """Checked (a, b, bandwidth) of mmd2."""
    aa = _points(a, "a", convert=convert)
    ba = _points(b, "b", convert=convert)
    _same_dim(aa, ba, "a", "b")
    h = real_scalar(bandwidth, "bandwidth", convert=convert)
    if not isinstance(unbiased, (bool, np.bool_)):
        raise TypeError(f"unbiased must be a bool, got {type(unbiased).__name__}")
    if unbiased:
        for arr, name in ((aa, "a"), (ba, "b")):
            if arr.shape[0] < 2:
                raise ValueError(f"the unbiased MMD needs at least 2 points in {name}, got {arr.shape[0]}")
    return aa, ba, h


# --------------------------------------------------------------------------- neighbours


def _neighbor_args(samples, train, k, convert=as_numpy):
    """Checked (samples, train, k) of the neighbour functions."""
    sa = _points(samples, "samples", allow_empty=True, convert=convert)
    ta = _points(train, "train", convert=convert)
    _same_dim(sa, ta, "samples", "train")
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if not 1 <= k <= ta.shape[0]:
        raise ValueError(f"k must be between 1 and the number of training points ({ta.shape[0]}), got {k}")
    return sa, ta, int(k)


def _neighbors(samples, train, k, backend):
    sa, ta, k = _neighbor_args(samples, train, k)
    dtype = result_dtype(sa, ta)
    impl = _impl(backend, sa, ta)
    return impl.nearest_neighbors(prepare(sa, dtype), prepare(ta, dtype), int(k))


def nearest_neighbors(samples, train, *, k=2, backend: str = "auto"):
    """The k nearest training points of each sample, by Euclidean distance.

    ``distances[i, e] = ||samples_i - train_j||`` with ``j = indices[i, e]``, ascending
    in e; equal distances are ordered by training index (lower first).  Distances are
    exact: squared distances in difference form ``sum_k (u_k - v_k)^2`` in float64,
    then a square root.

    Parameters
    ----------
    samples : array
        Shape (N, d), or (N,) for d = 1; finite (N may be 0).
    train : array
        Shape (n, d), or (n,) for d = 1; finite, n >= 1, the same d.
    k : int
        The number of neighbours, 1 <= k <= n.
    backend : str
        "auto" (cpp, then numba), "cpp" or "numba".

    Returns
    -------
    distances : array
        Shape (N, k): float32 for float32 inputs, float64 otherwise.
    indices : array
        Shape (N, k), int64.  Both are torch tensors if samples is one.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> dist, idx = bigstep.nearest_neighbors(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]]))
    >>> dist.tolist(), idx.tolist()
    ([[1.0, 2.0]], [[1, 2]])
    """
    if device_route(backend, {"samples": samples, "train": train}):  # device arrays, or backend torch/cuda
        from ._torch._api import nearest_neighbors as device_neighbors

        dist, idx = device_neighbors(samples, train, k, backend)
    else:
        dist, idx = _neighbors(samples, train, k, backend)
    return wrap_like(dist, samples), wrap_like(idx, samples)


def memorization_ratio(samples, train, *, backend: str = "auto"):
    """Nearest-neighbour memorization ratio d1 / d2 of each sample, shape (N,).

    d1 and d2 are the distances to the nearest and second-nearest training points
    (:func:`nearest_neighbors` with k = 2).  A ratio near 0 means the sample sits much
    closer to one training point than to any other (a copy).  When d2 = 0 (then d1 = 0:
    the sample coincides with a training point that appears twice in ``train``) the
    ratio is defined as 1, its value everywhere near such a sample (the two nearest
    training points are at the same distance there); remove duplicated training points
    first if copies of them should count as memorized.

    Parameters
    ----------
    samples : array
        Shape (N, d), or (N,) for d = 1; finite.
    train : array
        Shape (n, d), or (n,) for d = 1; finite, n >= 2, the same d.
    backend : str
        "auto" (cpp, then numba), "cpp" or "numba".

    Returns
    -------
    array
        Shape (N,): float32 for float32 inputs, else float64; a torch tensor if samples
        is one.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> bigstep.memorization_ratio(np.array([0.1, 0.5]), np.array([0.0, 1.0])).tolist()
    [0.11111111111111112, 1.0]
    """
    if device_route(backend, {"samples": samples, "train": train}):  # device arrays, or backend torch/cuda
        from ._torch._api import memorization_ratio as device_ratio

        return wrap_like(device_ratio(samples, train, backend), samples)
    ta = as_numpy(train, "train")
    if ta.ndim in (1, 2) and ta.shape[0] < 2:
        raise ValueError(f"train must contain at least 2 points for the memorization ratio, got shape {ta.shape}")
    dist, _ = _neighbors(samples, train, 2, backend)
    # d1 / d2, and 1 where d2 = 0 (see above)
    d1 = dist[:, 0].astype(np.float64)
    d2 = dist[:, 1].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d2 > 0, d1 / np.where(d2 > 0, d2, 1.0), 1.0)
    return wrap_like(ratio.astype(dist.dtype), samples)


def memorized_fraction(samples, train, *, threshold=1 / 3, backend: str = "auto") -> float:
    """Share of samples whose memorization ratio d1 / d2 is below ``threshold``.

    A sample counts as memorized when d1 / d2 < threshold (strictly), with d1, d2 the
    distances to its nearest and second-nearest training points (paper: threshold 1/3;
    see :func:`memorization_ratio` for d2 = 0).

    Parameters
    ----------
    samples : array
        Shape (N, d), or (N,) for d = 1; finite, N >= 1.
    train : array
        Shape (n, d), or (n,) for d = 1; finite, n >= 2, the same d.
    threshold : float
        In (0, 1].
    backend : str
        "auto" (cpp, then numba), "cpp" or "numba".

    Returns
    -------
    float
        A Python float in [0, 1].

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> bigstep.memorized_fraction(np.array([0.01, 0.5, 0.98, 2.0]), np.array([0.0, 1.0]))
    0.5
    """
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a real number, got {type(threshold).__name__}")
    if not (0 < float(threshold) <= 1):
        raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}")
    if device_route(backend, {"samples": samples, "train": train}):  # device arrays, or backend torch/cuda
        from ._torch._api import memorized_fraction as device_fraction

        return device_fraction(samples, train, float(threshold), backend)
    sa = as_numpy(samples, "samples")
    if sa.ndim in (1, 2) and sa.shape[0] == 0:
        raise ValueError(f"samples must contain at least one point, got shape {sa.shape}")
    ratio = np.asarray(memorization_ratio(sa, train, backend=backend), dtype=np.float64)
    return float(np.mean(ratio < float(threshold)))
