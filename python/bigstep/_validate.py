"""Argument checks shared by the public functions.  Each raises at once with a
message naming the argument, what it got and what it needs: ValueError for values
and shapes, TypeError for types."""

from __future__ import annotations

import numbers

import numpy as np

from ._arrays import as_numpy


def _all_finite(arr) -> bool:
    """Whether every entry of a numpy array or a torch tensor is finite (for a tensor on
    a device: one reduction there)."""
    if isinstance(arr, np.ndarray):
        return bool(np.isfinite(arr).all())
    return bool(arr.isfinite().all())


def as_float64(arr):
    """A numpy array or a torch tensor in float64 (no copy if it already is)."""
    return arr.astype(np.float64, copy=False) if isinstance(arr, np.ndarray) else arr.double()


def first_true(bad) -> int:
    """Index of the first True of a 1-D boolean numpy array or torch tensor."""
    if isinstance(bad, np.ndarray):
        return int(np.argmax(bad))
    return int(bad.nonzero()[0, 0])


def noise_level(value, name: str, q: int, *, convert=as_numpy):
    """mu or sigma: a positive finite scalar or an array of shape (q,).

    Returns a float64 array of shape (1,) or (q,) (a torch tensor when ``convert``, the
    conversion of the device-array path, gives tensors)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or an array of numbers, got bool")
    arr = convert(value, name)
    arr = arr.astype(np.float64, copy=False) if isinstance(arr, np.ndarray) else arr.double()
    if arr.ndim == 0:
        arr = arr.reshape(1)
    elif arr.ndim != 1 or arr.shape[0] != q:
        raise ValueError(f"{name} must be a scalar or have shape ({q},) (one per query), got shape "
                         f"{tuple(arr.shape)}")
    bad = ~((arr > 0) & (arr < np.inf))
    if bad.any():
        i = first_true(bad)
        v = np.float64(float(arr[i]))
        where = "" if arr.shape[0] == 1 else f" (entry {i})"
        raise ValueError(f"{name} must be a positive finite number, got {v!r}{where}")
    return arr


_NEEDS = {"positive": "a positive finite number", "nonnegative": "a non-negative finite number",
          "finite": "a finite number"}


def real_scalar(value, name: str, kind: str = "positive", *, convert=as_numpy) -> float:
    """A real scalar (a number, 0-d array or one-element array) as a float.

    kind: "positive" (> 0), "nonnegative" (>= 0) or "finite"; always finite."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got bool")
    arr = convert(value, name)
    if arr.ndim != 0 and tuple(arr.shape) != (1,):
        raise ValueError(f"{name} must be a scalar, got shape {tuple(arr.shape)}")
    v = float(arr.reshape(()))
    ok = np.isfinite(v) and (kind == "finite" or v > 0 or (kind == "nonnegative" and v == 0))
    if not ok:
        raise ValueError(f"{name} must be {_NEEDS[kind]}, got {v!r}")
    return v


def training_data(x, *, ndim: int | None = None, convert=as_numpy):
    """Training points: shape (n,) or (n, d), n >= 1, all finite.  ``convert`` (the
    device-array path passes its torch conversion) reads the argument."""
    arr = convert(x, "x")
    shape = tuple(arr.shape)
    if arr.ndim not in (1, 2):
        raise ValueError(f"x must have shape (n,) or (n, d), got {arr.ndim} dimensions {shape}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"x must have {ndim} dimension(s), got shape {shape}")
    if shape[0] == 0:
        raise ValueError("x must contain at least one training point, got an empty array")
    if arr.ndim == 2 and shape[1] == 0:
        raise ValueError(f"x must have at least one column, got shape {shape}")
    if (not isinstance(arr, np.ndarray) or arr.dtype.kind == "f") and not _all_finite(arr):
        raise ValueError("x must be finite, got NaN or infinity in the training data")
    return arr


def queries(y, x, *, convert=as_numpy):
    """Queries matching the data: (q,) for 1-D data, (q, d) (or (d,) for one query) in d-D."""
    arr = convert(y, "y")
    shape, xshape = tuple(arr.shape), tuple(x.shape)
    if x.ndim == 1:
        if arr.ndim > 1:  # 0-d: one query
            raise ValueError(f"y must have shape (q,) for 1-D data x of shape {xshape}, got shape {shape}")
    else:
        d = xshape[1]
        if arr.ndim not in (1, 2) or shape[-1] != d:
            raise ValueError(f"y must have shape (q, {d}) or ({d},) to match x of shape {xshape}, got shape {shape}")
    return arr


def integer(value, name: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def two_layer_weights(W1, b1, W2, *, extra_inputs: int = 0):
    """(W1, b1, W2, width, d) as finite float64 copies for a net y -> W2 relu(W1 [y; extra] + b1):
    W1 (width, d + extra_inputs), b1 (width,), W2 (d, width), width, d >= 1."""
    w1 = np.array(as_numpy(W1, "W1"), dtype=np.float64)
    if w1.ndim != 2 or w1.shape[0] == 0 or w1.shape[1] < 1 + extra_inputs:
        cols = "d" if not extra_inputs else f"d + {extra_inputs}"
        raise ValueError(f"W1 must have shape (width, {cols}) with width >= 1, d >= 1, got shape {w1.shape}")
    m, d = w1.shape[0], w1.shape[1] - extra_inputs
    bb = np.array(as_numpy(b1, "b1"), dtype=np.float64)
    if bb.shape != (m,):
        raise ValueError(f"b1 must have shape ({m},) to match W1 of shape {w1.shape}, got shape {bb.shape}")
    w2 = np.array(as_numpy(W2, "W2"), dtype=np.float64)
    if w2.shape != (d, m):
        raise ValueError(f"W2 must have shape ({d}, {m}) to match W1 of shape {w1.shape}, got shape {w2.shape}")
    for name, a in (("W1", w1), ("b1", bb), ("W2", w2)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite, got NaN or infinity")
    return w1, bb, w2, m, d


def sequence(value, name):
    """A scalar or a non-empty 1-D sequence (list, tuple, numpy array, torch tensor), as a list."""
    bad = TypeError(f"{name} must be a number or a sequence of numbers, got {type(value).__name__}")
    if isinstance(value, (str, bytes)) or value is None:
        raise bad
    if isinstance(value, (numbers.Number, np.generic)):
        return [value]
    if hasattr(value, "tolist") and hasattr(value, "shape"):  # numpy arrays, torch tensors, ...
        if len(value.shape) > 1:
            raise ValueError(f"{name} must be a scalar or a 1-D sequence, got shape {tuple(value.shape)}")
        items = value.tolist()
        items = items if isinstance(items, list) else [items]
    else:
        try:
            items = list(value)
        except TypeError:
            raise bad from None
    if not items:
        raise ValueError(f"{name} must not be empty")
    return items


def positives(value, name: str) -> list[float]:
    """A positive finite number or a non-empty 1-D sequence of them, as floats."""
    out = []
    for v in sequence(value, name):
        if isinstance(v, bool) or not isinstance(v, (numbers.Real, np.floating, np.integer)):
            raise TypeError(f"{name} must be a positive finite number or a sequence of them, got {type(v).__name__}")
        f = float(v)
        if not (np.isfinite(f) and f > 0):
            raise ValueError(f"{name} must be a positive finite number, got {f!r}")
        out.append(f)
    return out


def uint64(value, name: str, minimum: int = 0) -> int:
    """An integer in [minimum, 2**64) (a seed, a step count), numpy integers included."""
    if isinstance(value, np.integer):
        value = int(value)
    v = integer(value, name, minimum=minimum)
    if v >= 1 << 64:
        raise ValueError(f"{name} must be < 2**64, got {v}")
    return v


def integers(value, name: str, minimum: int = 0) -> list[int]:
    """An integer or a non-empty 1-D sequence of integers in [minimum, 2**64), as ints."""
    return [uint64(v, name, minimum) for v in sequence(value, name)]


WRT = ("outer_bias", "all")


def check_wrt(wrt) -> None:
    """The parameter set of a 1-D network: "outer_bias" (w2, b) or "all" (w1, w2, b)."""
    if wrt not in WRT:
        raise ValueError(f"wrt must be 'outer_bias' or 'all', got {wrt!r}")


SCHEDULES = {"ou": 1.0, "notebook": 2.0}  # mu(t) = exp(-rate t)


def schedule_rate(value, name: str = "schedule") -> float:
    """The rate of a noise schedule's mu(t) = exp(-rate t): "ou" 1, "notebook" 2."""
    if not isinstance(value, str) or value not in SCHEDULES:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, SCHEDULES))}, got {value!r}")
    return SCHEDULES[value]
