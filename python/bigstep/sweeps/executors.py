"""Where the cells run: ``local`` (a process pool on this machine, no server) or a Dask
cluster.  Both call ``on_result(index, outcome)`` in the calling process as cells finish,
so the store is written by one process, whatever the executor."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed

from .tasks import run_cell

_SHARED: dict = {}


def _init_worker(shared: dict, threads: int) -> None:
    global _SHARED
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
                               initargs=(shared, max(1, cores // workers)))
    try:
        futures = {pool.submit(_local_cell, ref, params): i for i, params in cells}
        for fut in as_completed(futures):
            on_result(futures[fut], fut.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


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
        cluster = LocalCluster(n_workers=max_workers or (os.cpu_count() or 1), threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = own = Client(cluster)
    elif isinstance(scheduler, str):
        client = own = Client(scheduler)
    else:
        raise TypeError(f"scheduler must be a dask.distributed Client, an address string or None, "
                        f"got {type(scheduler).__name__}")
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
    finally:
        if own is not None:
            cluster = getattr(own, "cluster", None)
            own.close()
            if cluster is not None and scheduler is None:
                cluster.close()
