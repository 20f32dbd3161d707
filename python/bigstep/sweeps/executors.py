"""Where the cells run: ``local`` (a process pool on this machine, no server) or a Dask
cluster.  Both call ``on_result(index, outcome)`` in the calling process as cells finish,
so the store is written by one process, whatever the executor.

Nothing outlives the driver (the process that called :func:`bigstep.sweep`):

- local pool workers tie themselves to the driver (``_lifeline.tie_to_parent``: the
  kernel's parent-death signal on Linux, a parent-pid poll everywhere), so ``kill -9`` of
  the driver takes them down within a second; multiprocessing's resource tracker then
  sees its pipe close and exits too.  Workers ignore SIGINT: Ctrl-C is the driver's, and
  on Ctrl-C or any exception the driver kills its workers before re-raising (cells in
  flight are abandoned; a resumed sweep recomputes them).
- dask: a cluster bigstep started (``scheduler=None``) is closed whatever happens, and
  its worker processes exit when the driver dies (distributed's worker processes watch
  their parent); a Client or address the caller passed is left open, with only this
  sweep's unfinished futures cancelled.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed

from . import _lifeline
from .tasks import run_cell

_SHARED: dict = {}


def _init_worker(shared: dict, threads: int, driver: int) -> None:
    global _SHARED
    _lifeline.tie_to_parent(driver)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the driver, which stops the workers
    _SHARED = shared
    try:
        import bigstep

        bigstep.set_num_threads(threads)
    except Exception:  # thread settings are a speed hint only
        pass


def _local_cell(ref: str, params: dict) -> dict:
    return run_cell(ref, params, _SHARED)


def run_local(ref, cells, shared, on_result, max_workers=None) -> None:
    """cells: list of (index, params).  max_workers=1 runs in this process."""
    cores = os.cpu_count() or 1
    workers = max(1, min(max_workers or cores, len(cells)))
    if workers == 1:
        for i, params in cells:
            on_result(i, run_cell(ref, params, shared))
        return
    ctx = multiprocessing.get_context("spawn")  # no fork: OpenMP / numba runtimes do not survive fork
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(shared, max(1, cores // workers), os.getpid()))
    try:
        futures = {pool.submit(_local_cell, ref, params): i for i, params in cells}
        for fut in as_completed(futures):
            on_result(futures[fut], fut.result())
    except BaseException:  # Ctrl-C, a failed store write, a broken pool: stop every worker now
        _kill_pool(pool)
        raise
    pool.shutdown(wait=True)


def _kill_pool(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's worker processes at once and shut it down (its queued cells are
    cancelled; cells in flight are abandoned).  shutdown(wait=False) alone would leave
    busy workers running their cells, and the interpreter's exit would wait for them."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def run_dask(ref, cells, shared, on_result, scheduler=None, max_workers=None) -> None:
    """The same cells on a dask.distributed cluster: ``scheduler`` is a Client, an address
    ("tcp://host:8786") or None (a LocalCluster of max_workers single-threaded workers,
    closed afterwards).  Shared inputs are scattered once to every worker."""
    try:
        from distributed import Client, LocalCluster
        from distributed import as_completed as dask_completed
    except ImportError as exc:
        raise ImportError("the dask executor needs dask.distributed: pip install 'bigstep[dask]'") from exc
    own = None
    if isinstance(scheduler, Client):
        client = scheduler
    elif scheduler is None:
        # loopback only, and an HTTP port of the OS's choosing: the default 8787 may be taken
        # (another cluster on the machine), which distributed reports with a warning
        cluster = LocalCluster(n_workers=max_workers or (os.cpu_count() or 1), threads_per_worker=1,
                               processes=True, host="127.0.0.1", dashboard_address=":0")
        try:
            client = own = Client(cluster)
        except BaseException:
            cluster.close()
            raise
    elif isinstance(scheduler, str):
        client = own = Client(scheduler)
    else:
        raise TypeError(f"scheduler must be a dask.distributed Client, an address string or None, "
                        f"got {type(scheduler).__name__}")
    futures: dict = {}
    try:
        shared_ref = client.scatter(shared, broadcast=True) if shared else None
        futures = {client.submit(run_cell, ref, params, shared_ref, pure=False): i for i, params in cells}
        for fut in dask_completed(list(futures)):
            i = futures[fut]
            try:
                outcome = fut.result()
            except Exception as exc:  # e.g. KilledWorker after repeated worker deaths
                outcome = dict(status="failed", result={}, error=f"{type(exc).__name__}: {exc}", traceback="",
                               wall_time=float("nan"))
            on_result(i, outcome)
    except BaseException:  # Ctrl-C or an error in the driver: a cluster started here stops now
        if scheduler is None and own is not None:
            _kill_cluster_workers(getattr(own, "cluster", None))
        raise
    finally:
        if own is None:  # the caller's client: left open, without this sweep's leftover work
            unfinished = [f for f in futures if not f.done()]
            if unfinished:
                with contextlib.suppress(Exception):
                    client.cancel(unfinished)
        else:
            cluster = getattr(own, "cluster", None)
            own.close()
            if cluster is not None and scheduler is None:  # started here: closed here
                cluster.close()


def _kill_cluster_workers(cluster) -> None:
    """SIGKILL the worker processes of a LocalCluster bigstep started, so that closing it
    does not wait (4 s per worker) for workers busy with a cell to stop by themselves."""
    for nanny in list((getattr(cluster, "workers", None) or {}).values()):
        pid = getattr(getattr(getattr(nanny, "process", None), "process", None), "pid", None)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
