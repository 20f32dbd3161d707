"""Grids of cells: expansion, validation against the task's signature, stable cell ids."""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import numbers

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


def cell_id(task_name: str, params: dict) -> str:
    """Stable 16-hex-digit id of (task, parameters): the same on every machine and run."""
    text = json.dumps({"task": task_name, "params": {k: plain(v) for k, v in params.items()}}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
