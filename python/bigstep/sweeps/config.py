"""Sweep configurations in TOML (``bigstep sweep CONFIG.toml``).

    task = "fig2_cell"          # registered name or "module:function"
    out = "fig2-sweep"          # store folder (relative to the config file)
    executor = "local"          # or "dask" (with scheduler = "tcp://host:8786")
    max_workers = 2
    retries = 1
    [grid]                      # full product of the lists
    lr = [0.5, 0.1, 0.05, 0.01]
    t = [0.05, 0.2]
    seed = { range = [0, 30] }  # also { linspace = [a, b, num] }, { geomspace = [a, b, num] }
    [shared]                    # optional: the same keyword arguments for every cell
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_KEYS = {"task", "out", "executor", "scheduler", "max_workers", "retries", "resume", "grid", "shared", "plot"}


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise ImportError("reading TOML on Python 3.10 needs tomli: pip install tomli") from exc
    with open(path, "rb") as f:
        return tomllib.load(f)


def _values(name, spec):
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise ValueError(f"grid.{name}: a table must have one key (range, linspace or geomspace), got {spec}")
        (kind, args), = spec.items()
        if kind == "range":
            return list(range(*[int(a) for a in args]))
        if kind in ("linspace", "geomspace"):
            a, b, num = args
            return [float(v) for v in getattr(np, kind)(float(a), float(b), int(num))]
        raise ValueError(f"grid.{name}: unknown table {kind!r}; use range, linspace or geomspace")
    return spec if isinstance(spec, list) else [spec]


def read_config(path) -> dict:
    """The keyword arguments of :func:`bigstep.sweep` (plus "plot") from a TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config must be an existing TOML file, got {str(path)!r}")
    raw = _toml(path)
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ValueError(f"config {path.name}: unknown key(s) {unknown}; known: {sorted(_KEYS)}")
    for key in ("task", "grid"):
        if key not in raw:
            raise ValueError(f"config {path.name} must set {key!r}")
    if not isinstance(raw["grid"], dict):
        raise ValueError(f"config {path.name}: [grid] must be a table of lists")
    cfg = dict(raw)
    cfg["grid"] = {k: _values(k, v) for k, v in raw["grid"].items()}
    out = Path(raw.get("out", path.stem + "-sweep"))
    cfg["out"] = out if out.is_absolute() else path.parent / out
    return cfg
