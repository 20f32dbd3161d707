"""Grids of cells: expansion, validation against the task's signature, stable cell ids."""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import numbers
import pickle

import numpy as np


def expand(grid) -> list[dict]:
    """A dict of lists (full product, in key order) or a list of dicts -> list of cells."""
    if isinstance(grid, dict):
        if not grid:
            raise ValueError("grid must name at least one parameter, got an empty dict")
        keys = list(grid)
        values = []
        for k in keys:
            v = grid[k]
            if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
                v = [v]
            v = list(v)
            if not v:
                raise ValueError(f"grid parameter {k!r} has an empty list of values")
            values.append(v)
        return [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    if isinstance(grid, (list, tuple)):
        if not grid:
            raise ValueError("grid must contain at least one cell, got an empty list")
        for i, cell in enumerate(grid):
            if not isinstance(cell, dict):
                raise TypeError(f"grid[{i}] must be a dict of parameters, got {type(cell).__name__}")
        return [dict(c) for c in grid]
    raise TypeError(f"grid must be a dict of lists or a list of dicts, got {type(grid).__name__}")


def plain(value):
    """numpy scalars -> Python scalars, so cells hash and serialise the same way."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bool) or isinstance(value, (str, int, float)) or value is None:
        return value
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"grid values must be numbers, strings, booleans or None, got {type(value).__name__} "
                    f"({value!r}); pass arrays through shared=")


def cell_id(task_name: str, params: dict, shared: str | None = None) -> str:
    """Stable 16-hex-digit id of (task, parameters, shared inputs): the same on every
    machine and run.  ``shared`` is :func:`shared_digest` of the sweep's shared inputs
    (None when there are none: such ids are those of stores written before shared inputs
    counted, so those stores still resume)."""
    key = {"task": task_name, "params": {k: plain(v) for k, v in params.items()}}
    if shared is not None:
        key["shared"] = shared
    text = json.dumps(key, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shared_digest(shared: dict) -> str | None:
    """Hex digest of a sweep's shared inputs (None when there are none): arrays by dtype,
    shape and bytes; numbers, strings and None by type and repr; lists, tuples and dicts
    item by item; anything else by its pickle (by repr if it has none).  A changed input,
    dtype or shape gives another digest, so a resumed sweep recomputes its cells."""
    if not shared:
        return None
    h = hashlib.sha256()
    _feed(h, dict(shared))
    return h.hexdigest()[:16]


def _feed(h, value) -> None:
    def tag(name, payload=b""):
        h.update(f"{name}:{len(payload)}:".encode())
        h.update(payload)

    if value is None or (isinstance(value, (bool, numbers.Number, str, bytes)) and not isinstance(value, np.generic)):
        tag(type(value).__name__, repr(value).encode())
    elif isinstance(value, (np.ndarray, np.generic)):  # numpy scalars as 0-d arrays: repr varies across numpy
        arr = np.asarray(value)
        tag("ndarray", f"{arr.dtype!r}{arr.shape}".encode())
        if arr.dtype.hasobject:
            _feed(h, arr.ravel().tolist())
        else:
            tag("data", arr.tobytes())  # C order whatever the strides
    elif isinstance(value, (list, tuple)):
        tag(type(value).__name__, str(len(value)).encode())
        for v in value:
            _feed(h, v)
    elif isinstance(value, dict):
        tag("dict", str(len(value)).encode())
        for k in sorted(value, key=repr):
            _feed(h, k)
            _feed(h, value[k])
    else:
        try:
            payload = pickle.dumps(value, protocol=4)
        except Exception:  # unpicklable (only max_workers=1 can use it): its repr, at worst a recompute
            payload = repr(value).encode()
        tag(f"{type(value).__module__}.{type(value).__qualname__}", payload)


def check_against(fn, cells: list[dict], shared: dict, task_name: str) -> None:
    """Every cell's parameters (plus the shared ones) must bind to fn's signature."""
    sig = inspect.signature(fn)
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    allowed = set(sig.parameters)
    for i, cell in enumerate(cells):
        clash = set(cell) & set(shared)
        if clash:
            raise ValueError(f"grid cell {i} and shared both give {sorted(clash)}")
        if not takes_kwargs:
            unknown = sorted(set(cell) - allowed)
            if unknown:
                raise ValueError(f"task {task_name!r} does not take parameter(s) {unknown}; it takes "
                                 f"{sorted(allowed)}")
        try:
            sig.bind(**cell, **shared)
        except TypeError as exc:
            raise ValueError(f"grid cell {i} {cell} does not fit task {task_name!r}: {exc}") from None
        for k, v in cell.items():
            plain(v)
