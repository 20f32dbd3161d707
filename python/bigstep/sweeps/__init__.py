"""Sweeps: run a grid of experiment cells locally or on a Dask cluster, into a resumable
Parquet store (one atomically written file per finished cell).

Examples
--------
>>> import bigstep, tempfile
>>> out = tempfile.mkdtemp()
>>> table = bigstep.sweep("bigstep.sweeps.tasks:_square", {"x": [1, 2, 3]}, out=out, max_workers=1,
...                       progress=False)
>>> table["y"].tolist()
[1, 4, 9]
"""

from __future__ import annotations

import datetime

from .._progress import Progress
from .grid import cell_id, check_against, expand, plain, shared_digest
from .store import Store, load_sweep
from .tasks import register_task, resolve

__all__ = ["sweep", "load_sweep", "register_task"]

_META = ("cell_id", "cell_index", "task", "status", "error", "traceback", "wall_time", "attempts", "finished_at")


def sweep(task, grid, *, out, executor="local", max_workers=None, resume=True, retries=1, shared=None,
          scheduler=None, progress=True):
    """Run ``task`` on every cell of ``grid`` and return one row per cell.

    Parameters
    ----------
    task : str or callable
        A registered name ("fig2_cell", "sampler_cell", ...), "module:function" or an
        importable function of keyword arguments returning a flat dict of numbers.
    grid : dict of lists or list of dicts
        A dict of lists (the full product) or a list of dicts (one per cell).
    out : str or path
        The store folder; each finished cell is written as it completes.
    executor : str
        "local" (a process pool on this machine; ``max_workers=1`` runs in this
        process) or "dask" (``scheduler``: a Client, an address, or None for a
        LocalCluster).
    max_workers : int or None
        Worker processes of the local executor.
    resume : bool
        True skips cells already finished in ``out`` (same task, parameters and shared
        inputs: arrays are compared by dtype, shape and bytes), so a re-run completes an
        interrupted grid without duplicates, and a re-run with changed shared inputs
        computes its cells anew (the store then holds both; use another ``out`` to keep
        them apart); False runs every cell again.
    retries : int
        Extra attempts for a failing cell within this call; failed cells recorded in the
        store are attempted again on resume.
    shared : dict or None
        Keyword arguments given to every cell (arrays welcome): sent once per worker,
        not per cell.
    scheduler : dask.distributed.Client, str or None
        The Dask scheduler (``executor="dask"``).
    progress : bool
        A progress bar (cells done and failed).

    Returns
    -------
    pandas.DataFrame
        The parameters, the task's results, and ``status`` ("ok"/"failed"), ``error``,
        ``traceback``, ``wall_time``, ``attempts``, ``cell_id``.
    """
    from .executors import run_dask, run_local
    from .. import _validate

    name, ref, fn = resolve(task)
    cells = expand(grid)
    shared = dict(shared or {})
    check_against(fn, cells, shared, name)
    if executor not in ("local", "dask"):
        raise ValueError(f"executor must be 'local' or 'dask', got {executor!r}")
    if max_workers is not None:
        max_workers = _validate.integer(max_workers, "max_workers", minimum=1)
    retries = _validate.integer(retries, "retries", minimum=0)
    digest = shared_digest(shared)
    ids = [cell_id(name, c, digest) for c in cells]
    store = Store(out)
    store.prepare()
    before = store.status()
    index = {}
    for i, c in enumerate(ids):
        index.setdefault(c, i)  # a cell listed twice runs once
    todo = [i for c, i in index.items() if not resume or before.get(c, ("", 0))[0] != "ok"]
    attempts = {ids[i]: before.get(ids[i], ("", 0))[1] for i in todo}
    bar = _Bar(len(todo), progress)

    def on_result(i, outcome):
        c = ids[i]
        attempts[c] += 1
        row = {k: plain(v) for k, v in cells[i].items()}
        row.update(outcome["result"])
        row.update(cell_id=c, cell_index=i, task=name, status=outcome["status"], error=outcome["error"],
                   traceback=outcome["traceback"], wall_time=float(outcome["wall_time"]), attempts=attempts[c],
                   finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat())
        store.write(row)
        bar.update(outcome["status"] == "ok", outcome["wall_time"], final=outcome["status"] == "ok" or last_round)

    for attempt in range(retries + 1):
        if not todo:
            break
        last_round = attempt == retries
        work = [(i, cells[i]) for i in todo]
        if executor == "local":
            run_local(ref, work, shared, on_result, max_workers)
        else:
            run_dask(ref, work, shared, on_result, scheduler, max_workers)
        status = store.status()
        todo = [i for i in todo if status.get(ids[i], ("", 0))[0] != "ok"]
    bar.close()
    table = load_sweep(out)
    if table.empty:
        return table
    table = table[table["cell_id"].isin(set(ids))].reset_index(drop=True)
    cols = [c for c in table.columns if c not in _META] + [c for c in _META if c in table.columns]
    return table[cols]


class _Bar:
    """Cells done and failed, on bigstep's progress bar (bigstep._progress)."""

    def __init__(self, total, enabled):
        self.total, self.ok, self.failed = total, 0, 0
        self.progress = Progress(total, enabled, "sweep", unit="cells")

    def update(self, ok, wall, final):
        if ok:
            self.ok += 1
        elif final:
            self.failed += 1
        self.progress.update(self.ok + self.failed, postfix=f"{self.ok} done, {self.failed} failed")

    def close(self):
        self.progress.close()
