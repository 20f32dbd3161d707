"""The sweep store: one Parquet file per finished cell under ``out/cells/``.

Each cell is written to a temporary name and renamed into place (atomic on POSIX), so a
crash, Ctrl-C or a killed worker loses at most the cells in flight, and a reader never
sees half a file.  The cell id (a hash of the task name, parameters and shared inputs) is
the file name and a column, so resuming skips what is done and never duplicates a cell.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def _pandas():
    try:
        import pandas as pd
        import pyarrow

        del pyarrow  # needed by to_parquet / read_parquet
    except ImportError as exc:
        raise ImportError("sweeps need pandas and pyarrow: pip install 'bigstep[sweep]'") from exc
    return pd


class Store:
    def __init__(self, out):
        self.root = Path(out)
        self.cells = self.root / "cells"

    def prepare(self) -> None:
        self.cells.mkdir(parents=True, exist_ok=True)

    def write(self, row: dict) -> None:
        pd = _pandas()
        final = self.cells / f"{row['cell_id']}.parquet"
        tmp = self.cells / f".{row['cell_id']}.{uuid.uuid4().hex}.tmp"
        pd.DataFrame([row]).to_parquet(tmp, index=False)
        os.replace(tmp, final)

    def status(self) -> dict:
        """cell_id -> (status, attempts) of every cell in the store."""
        frame = self.load()
        if frame.empty:
            return {}
        return {c: (s, int(a)) for c, s, a in zip(frame["cell_id"], frame["status"], frame["attempts"])}

    def load(self):
        pd = _pandas()
        files = sorted(self.cells.glob("*.parquet")) if self.cells.is_dir() else []
        if not files:
            return pd.DataFrame()
        frames = [pd.read_parquet(f) for f in files]
        return pd.concat(frames, ignore_index=True)


def load_sweep(out):
    """The sweep stored under ``out`` as one DataFrame (one row per cell), sorted by cell order.

    Parameters
    ----------
    out : str or path
        The store folder of :func:`bigstep.sweep`.

    Returns
    -------
    pandas.DataFrame
        Empty when nothing is stored there.

    Examples
    --------
    >>> import bigstep, tempfile
    >>> bigstep.load_sweep(tempfile.mkdtemp()).empty
    True
    """
    frame = Store(out).load()
    if not frame.empty and "cell_index" in frame:
        frame = frame.sort_values(["cell_index", "cell_id"], kind="stable").reset_index(drop=True)
    return frame
