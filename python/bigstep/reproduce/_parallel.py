"""Run independent reproduction jobs on this machine's cores.

The compiled trainers release the GIL, so threads give real parallelism for jobs that
each train one network; the Numba fallback's parallel runtime must not be entered from
two threads at once, so without the C++ extension the jobs run one after another.

Threads, not processes: nothing this pool starts can outlive the process that runs the
reproduction (``kill -9`` of it ends every job with it).  On Ctrl-C or an exception in a
job, the jobs not yet started are cancelled at once; the ones in flight (at most one per
thread) finish before the interpreter exits.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed

from .._progress import Progress


def map_jobs(fn, jobs, *, cost=None, progress=False, label="jobs", workers=None):
    """[fn(job) for job in jobs] (in order), longest jobs (by ``cost``) started first."""
    from .. import _backend

    order = sorted(range(len(jobs)), key=lambda i: -(cost[i] if cost is not None else 0))
    total = sum(cost) if cost is not None else len(jobs)
    bar = Progress(total, progress, label, unit="work")
    results = [None] * len(jobs)
    done = 0
    if workers is None:
        workers = (os.cpu_count() or 1) if _backend.CPU_BACKENDS[0] == "cpp" and _backend.core() is not None else 1
    if workers <= 1:
        for i in order:
            results[i] = fn(jobs[i])
            done += cost[i] if cost is not None else 1
            bar.update(done)
        return results
    import bigstep

    before = bigstep.get_num_threads()  # the caller's setting, given back afterwards
    pool = ThreadPoolExecutor(max_workers=workers)
    bigstep.set_num_threads(1)  # one core per job
    try:
        futures = {pool.submit(fn, jobs[i]): i for i in order}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            done += cost[i] if cost is not None else 1
            bar.update(done)
    except BaseException:  # Ctrl-C or a failed job: start nothing more (a `with` block would run every queued job)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        bigstep.set_num_threads(before)
    pool.shutdown(wait=True)
    return results

