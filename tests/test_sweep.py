"""Sweeps: local and Dask executors give the task's own numbers, the store survives
interruption and worker death without losing or duplicating cells, failures are
recorded, bad grids fail before any work starts, and no process a sweep started outlives
its driver (kill -9, Ctrl-C, an exception; real processes, read from /proc)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import proctree
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

import bigstep  # noqa: E402
from bigstep.sweeps import tasks  # noqa: E402
from bigstep.sweeps.store import Store  # noqa: E402

SQUARE = "bigstep.sweeps.tasks:_square"
SAMPLER_GRID = {"n": [5, 10], "d": [2], "delta": [0.05], "seed": [1], "n_samples": [200], "n_steps": [20]}


def _results(table, keys):
    return table.sort_values(keys).reset_index(drop=True)


def test_local_sweep_equals_direct_calls(tmp_path):
    table = bigstep.sweep("sampler_cell", SAMPLER_GRID, out=tmp_path, max_workers=2, progress=False)
    assert len(table) == 2 and (table["status"] == "ok").all()
    for _, row in table.iterrows():
        direct = tasks.sampler_cell(n=int(row["n"]), d=2, delta=0.05, seed=1, n_samples=200, n_steps=20)
        for k, v in direct.items():
            assert row[k] == v  # same numbers bit for bit: the cell is deterministic
    again = bigstep.load_sweep(tmp_path)
    assert list(again["cell_id"]) == list(table["cell_id"])


def test_rf_cell_is_a_point_of_the_learning_curve(tmp_path):
    from bigstep import rf

    grid = {"d": [10], "psi_n": [2.0], "psi_p": [0.5, 3.0], "n_noise": [2, float("inf")], "t": [0.5],
            "lam": [1e-2]}
    table = bigstep.sweep("rf_cell", grid, out=tmp_path, max_workers=1, progress=False)
    assert (table["status"] == "ok").all() and len(table) == 4
    curve = rf.learning_curve(10, 2.0, [0.5, 3.0], 0.5, n_noise=[2, float("inf")], lam=1e-2, seed=[0])
    for _, row in table.iterrows():
        ref = curve[(curve["p"] == row["p"]) & (curve["n_noise"] == row["n_noise"])].iloc[0]
        assert row["test_loss"] == ref["test_loss"] and row["regime"] == ref["regime"]


def test_grid_forms_and_resume_skips_finished_cells(tmp_path):
    cells = [{"x": 1}, {"x": 2}, {"x": 2}]  # a repeated cell runs once
    t1 = bigstep.sweep(SQUARE, cells, out=tmp_path, max_workers=1, progress=False)
    assert t1["y"].tolist() == [1, 4]
    t2 = bigstep.sweep(SQUARE, {"x": [1, 2, 3]}, out=tmp_path, max_workers=1, progress=False)
    assert t2["y"].tolist() == [1, 4, 9]
    assert t2["finished_at"].iloc[:2].tolist() == t1["finished_at"].tolist()  # not re-run
    t3 = bigstep.sweep(SQUARE, {"x": [1, 2, 3]}, out=tmp_path, max_workers=1, progress=False, resume=False)
    assert (t3["attempts"] == [2, 2, 2]).all() and len(bigstep.load_sweep(tmp_path)) == 3


def test_failing_cell_is_recorded_and_retried(tmp_path):
    table = bigstep.sweep(SQUARE, {"x": [1, 2, 3], "fail_on": [2]}, out=tmp_path, max_workers=2, retries=1,
                          progress=False)
    bad = table[table["x"] == 2].iloc[0]
    assert bad["status"] == "failed" and "fails on purpose" in bad["error"] and "Traceback" in bad["traceback"]
    assert bad["attempts"] == 2  # first try + one retry
    assert (table[table["x"] != 2]["status"] == "ok").all() and table[table["x"] != 2]["y"].tolist() == [1, 9]
    # on resume only the failed cell runs again
    again = bigstep.sweep(SQUARE, {"x": [1, 2, 3], "fail_on": [2]}, out=tmp_path, max_workers=1, retries=0,
                          progress=False)
    assert again.set_index("x")["attempts"].to_dict() == {1: 1, 2: 3, 3: 1}


def test_interrupted_sweep_resumes_to_the_full_grid(tmp_path):
    script = textwrap.dedent(f"""
        import bigstep
        bigstep.sweep({SQUARE!r}, {{"x": list(range(12)), "delay": [0.25]}}, out={str(tmp_path)!r},
                      max_workers=1, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    cells = tmp_path / "cells"

    def n_done():
        return len(list(cells.glob("*.parquet"))) if cells.is_dir() else 0

    deadline = time.time() + 120
    while n_done() < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    partial = bigstep.load_sweep(tmp_path)
    assert 3 <= len(partial) < 12  # killed part-way, finished cells kept
    full = bigstep.sweep(SQUARE, {"x": list(range(12)), "delay": [0.25]}, out=tmp_path, max_workers=2,
                         progress=False)
    assert sorted(full["x"]) == list(range(12)) and full["cell_id"].is_unique
    assert (full.set_index("x").loc[partial["x"], "attempts"] == 1).all()  # finished cells were not re-run
    assert full["y"].tolist() == [x * x for x in range(12)]


def test_bad_grids_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        bigstep.sweep(SQUARE, {"x": []}, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown task"):
        bigstep.sweep("no_such_task", {"x": [1]}, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="does not take"):
        bigstep.sweep(SQUARE, {"x": [1], "z": [2]}, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="does not fit"):
        bigstep.sweep(SQUARE, {"delay": [0.0]}, out=tmp_path, progress=False)  # x missing
    with pytest.raises(ValueError, match="executor"):
        bigstep.sweep(SQUARE, {"x": [1]}, out=tmp_path, executor="spark", progress=False)
    with pytest.raises(TypeError, match="grid"):
        bigstep.sweep(SQUARE, "x=1", out=tmp_path, progress=False)
    with pytest.raises(TypeError, match="numbers"):
        bigstep.sweep(SQUARE, {"x": [np.ones(3)]}, out=tmp_path, progress=False)
    assert not (tmp_path / "cells").exists() or not list((tmp_path / "cells").iterdir())


def test_shared_inputs_reach_every_cell(tmp_path):
    table = bigstep.sweep(SQUARE, {"x": [1, 2]}, out=tmp_path, shared={"delay": 0.0}, max_workers=2, progress=False)
    assert table["y"].tolist() == [1, 4]


def test_resume_recomputes_when_shared_inputs_change(tmp_path):
    """The cell id covers the shared inputs: the same shared array resumes, a changed one
    (values, dtype or shape) is computed anew instead of returning the old results."""
    task, grid = "bigstep.sweeps.tasks:_total", {"scale": [1.0, 2.0]}
    x = np.arange(4.0)

    def run(shared):
        return bigstep.sweep(task, grid, out=tmp_path, shared=shared, max_workers=1, progress=False)

    first = run({"x": x})
    assert first["total"].tolist() == [6.0, 12.0]
    same = run({"x": x.copy()})  # equal array, another object: resumed, not re-run
    assert same["finished_at"].tolist() == first["finished_at"].tolist()
    assert same["cell_id"].tolist() == first["cell_id"].tolist()
    changed = run({"x": x + 1})
    assert changed["total"].tolist() == [10.0, 20.0]
    seen = set(first["cell_id"]) | set(changed["cell_id"])
    for other in (x.astype(np.float32), x.reshape(2, 2)):  # same values: still other inputs
        table = run({"x": other})
        assert table["total"].tolist() == [6.0, 12.0] and not set(table["cell_id"]) & seen
        seen |= set(table["cell_id"])
    assert len(bigstep.load_sweep(tmp_path)) == 8  # every run's cells kept, none overwritten
    again = run({"x": x})
    assert again["finished_at"].tolist() == first["finished_at"].tolist()


def test_sweep_functions_are_in_the_public_api():
    """`from bigstep import *` gives the sweep functions (they were importable but not in __all__)."""
    names = {}
    exec("from bigstep import *", names)
    assert {"sweep", "load_sweep", "register_task", "get_num_threads"} <= set(names)
    assert all(hasattr(bigstep, name) for name in bigstep.__all__)
    assert len(bigstep.__all__) == len(set(bigstep.__all__))


def test_cell_ids_without_shared_inputs_are_unchanged():
    """A sweep without shared inputs keeps the ids of stores written before they counted."""
    from bigstep.sweeps.grid import cell_id, shared_digest

    assert shared_digest({}) is None and shared_digest(None) is None
    assert cell_id(SQUARE, {"x": 2, "delay": 0.5}) == "9c5ed917ec8ad142"
    assert shared_digest({"a": 1, "b": "s"}) == shared_digest({"b": "s", "a": 1})
    assert shared_digest({"a": 1}) != shared_digest({"a": 1.0}) != shared_digest({"a": "1"})


def test_cli_config_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from bigstep.cli import main

    cfg = tmp_path / "grid.toml"
    cfg.write_text(textwrap.dedent("""
        task = "sampler_cell"
        out = "store"
        max_workers = 1
        [grid]
        n = { range = [4, 7, 2] }
        d = [2, 3]
        delta = [0.05]
        n_samples = [100]
        n_steps = [10]
    """))
    assert main(["sweep", str(cfg), "--no-progress", "--plot"]) == 0
    out = capsys.readouterr().out
    assert "4 of 4 cells ok" in out and "memorization_n_d.png" in out
    assert (tmp_path / "store" / "memorization_n_d.png").stat().st_size > 0
    store = Store(tmp_path / "lr")
    store.prepare()
    for i, (lr, r) in enumerate([(0.5, 1.0), (0.5, 1.2), (0.05, 0.1), (0.05, 0.2)]):
        store.write(dict(lr=lr, t=0.2, excess_risk=r, cell_id=f"c{i}", cell_index=i, status="ok", attempts=1))
    assert main(["plot", str(tmp_path / "lr")]) == 0
    assert (tmp_path / "lr" / "excess_risk_vs_lr.png").stat().st_size > 0
    bad = tmp_path / "bad.toml"
    bad.write_text('task = "sampler_cell"\n[grid]\nn = [4]\nfoo = 1\n[wrong]\n')
    with pytest.raises(ValueError, match="unknown key"):
        main(["sweep", str(bad)])


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=":0")
    client = distributed.Client(cluster)
    yield cluster, client
    client.close()
    cluster.close()


def test_dask_equals_local(tmp_path, dask_cluster):
    _, client = dask_cluster
    local = bigstep.sweep("sampler_cell", SAMPLER_GRID, out=tmp_path / "local", max_workers=1, progress=False)
    remote = bigstep.sweep("sampler_cell", SAMPLER_GRID, out=tmp_path / "dask", executor="dask", scheduler=client,
                           progress=False, shared=None)
    cols = ["n", "star_memorized_fraction", "star_mmd2", "gauss_memorized_fraction", "gauss_mmd2", "cell_id"]
    pd.testing.assert_frame_equal(_results(local[cols], ["n"]), _results(remote[cols], ["n"]))


def test_dask_worker_killed_mid_sweep_loses_nothing(tmp_path, dask_cluster):
    cluster, client = dask_cluster
    grid = {"x": list(range(16)), "delay": [0.3]}
    cells = tmp_path / "cells"
    kill = {}

    def n_done():
        return len(list(cells.glob("*.parquet"))) if cells.is_dir() else 0

    def kill_one():
        try:
            deadline = time.time() + 60
            while n_done() < 2 and time.time() < deadline:  # mid-sweep: some cells done, most not
                time.sleep(0.02)
            nanny = next(iter(cluster.workers.values()))
            kill["pid"] = nanny.process.process.pid
            os.kill(kill["pid"], signal.SIGKILL)
            kill["done_after"] = n_done()
        except BaseException as exc:  # reported by the test, not lost in the thread
            kill["error"] = exc

    killer = threading.Thread(target=kill_one)
    killer.start()
    table = bigstep.sweep(SQUARE, grid, out=tmp_path, executor="dask", scheduler=client, progress=False)
    killer.join()
    assert "error" not in kill, kill.get("error")
    assert kill.get("done_after", 16) < 16  # the kill landed before the sweep finished
    assert sorted(table["x"]) == list(range(16)) and (table["status"] == "ok").all()
    assert table["y"].tolist() == [x * x for x in range(16)] and table["cell_id"].is_unique
    client.wait_for_workers(2, timeout=60)
    assert kill["pid"] not in client.run(os.getpid).values()  # that worker really died (and was replaced)


# ------------------------------------------------------------ nothing outlives the driver

# A driver script: two quick cells, then long ones, on two workers.  SIGUSR1 raises an
# exception in its main thread (an error of the driver itself, as a failed store write
# would be); SIGINT is Python's own KeyboardInterrupt whatever the shell did with it.
_DRIVER = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def fail(signum, frame):
        raise RuntimeError("the driver failed")

    signal.signal(signal.SIGUSR1, fail)
    import bigstep
    out, executor = sys.argv[1], sys.argv[2]
    cells = [{"x": 0, "delay": 0.0}, {"x": 1, "delay": 0.0}] + [{"x": k, "delay": 300.0} for k in range(2, 8)]
    bigstep.sweep("bigstep.sweeps.tasks:_square", cells, out=out, executor=executor, max_workers=2,
                  progress=False)
""")

GONE_WITHIN_S = 5.0


def _stop_leftovers(proc, procs):
    if proc.poll() is None:
        proc.kill()
    for pid in proctree.alive(procs):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
@pytest.mark.parametrize("executor,how", [("local", "kill -9"), ("local", "ctrl-c"), ("local", "exception"),
                                          ("dask", "kill -9"), ("dask", "ctrl-c")])
def test_no_process_outlives_the_driver(tmp_path, executor, how):
    """Mid-sweep (quick cells stored, workers busy with 300 s cells), the driver is killed
    with SIGKILL, gets Ctrl-C (SIGINT to its whole process group, as a terminal sends it)
    or fails with an exception: every process it started (pool workers, multiprocessing's
    resource tracker, a LocalCluster's workers) is gone within 5 s, and the driver itself
    exits at once rather than waiting for the cells in flight."""
    if executor == "dask":
        pytest.importorskip("distributed")
    cells = tmp_path / "store" / "cells"
    started: dict = {}  # filled mid-sweep: what the driver started
    with subprocess.Popen([sys.executable, "-c", _DRIVER, str(tmp_path / "store"), executor],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            left, took = _interrupt_mid_sweep(proc, cells, executor, how, started)
        finally:
            _stop_leftovers(proc, started)
        err = proc.stderr.read()
    assert not left, f"{len(left)} process(es) still running {took:.1f} s after {how} of the driver: {left}"
    if how == "ctrl-c":
        assert "KeyboardInterrupt" in err, err[-2000:]
    elif how == "exception":
        assert "the driver failed" in err, err[-2000:]
    partial = bigstep.load_sweep(tmp_path / "store")
    assert sorted(partial["x"]) == [0, 1]  # the finished cells are kept; the abandoned ones are not stored


def _interrupt_mid_sweep(proc, cells, executor, how, started):
    """Wait until the quick cells are stored, record the driver's descendants in
    ``started``, stop the driver ``how``; (processes still alive 5 s later, seconds waited)."""
    deadline = time.monotonic() + 180
    while (len(list(cells.glob("*.parquet"))) if cells.is_dir() else 0) < 2:
        assert proc.poll() is None, f"the driver ended early: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "the quick cells did not finish within 180 s"
        time.sleep(0.05)
    time.sleep(1.0)  # the long cells are under way
    started.update(proctree.descendants(proc.pid))
    # local: two workers and the resource tracker; dask: two worker processes at least
    assert len(started) >= (3 if executor == "local" else 2), started
    t0 = time.monotonic()
    if how == "kill -9":
        proc.kill()
    elif how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C goes to the whole foreground group
    else:
        proc.send_signal(signal.SIGUSR1)
    left = proctree.wait_gone(started, GONE_WITHIN_S)
    took = time.monotonic() - t0
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the driver did not exit within 30 s of {how}")
    return left, took


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
@pytest.mark.parametrize("use_prctl,poll", [(True, 3600.0), (False, 0.1)], ids=["prctl", "poll"])
def test_tied_worker_dies_with_its_parent(use_prctl, poll):
    """Each of the two mechanisms alone ends a worker whose parent is killed: the kernel's
    parent-death signal (the poll set to an hour, so it cannot be what ends it) and the
    parent-pid poll (prctl off: what other platforms get)."""
    child = textwrap.dedent(f"""
        import sys, time
        from bigstep.sweeps._lifeline import tie_to_parent
        tie_to_parent(int(sys.argv[1]), poll={poll!r}, use_prctl={use_prctl!r})
        print("tied", flush=True)
        time.sleep(300)
    """)
    middle = textwrap.dedent("""
        import os, subprocess, sys
        p = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())])
        p.wait()
    """)
    proc = subprocess.Popen([sys.executable, "-c", middle, child], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    kids: dict = {}
    try:
        assert proc.stdout.readline().strip() == "tied"
        kids = proctree.descendants(proc.pid)
        assert len(kids) == 1
        time.sleep(0.3)
        assert proctree.alive(kids) == kids  # tied, not ended by the tie itself
        proc.kill()
        proc.wait(timeout=30)
        left = proctree.wait_gone(kids, GONE_WITHIN_S)
    finally:
        _stop_leftovers(proc, kids)
        proc.stdout.close()
    assert not left, f"the worker outlived its parent: {left}"


def test_dask_leaves_the_callers_cluster_running(tmp_path, dask_cluster, monkeypatch):
    """A sweep on the caller's Client that fails in the driver (the store write raises)
    leaves that client connected with its workers, and none of this sweep's cells queued."""
    cluster, client = dask_cluster
    workers = set(client.scheduler_info()["workers"])
    writes = {"n": 0}
    original = Store.write

    def failing_write(self, row):
        writes["n"] += 1
        if writes["n"] == 2:
            raise OSError("disk full")
        original(self, row)

    monkeypatch.setattr(Store, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        bigstep.sweep(SQUARE, {"x": list(range(12)), "delay": [0.5]}, out=tmp_path, executor="dask",
                      scheduler=client, progress=False)
    assert client.status == "running" and set(client.scheduler_info()["workers"]) == workers
    deadline = time.time() + 30
    while any(client.processing().values()) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(client.processing().values()), "the failed sweep's cells still run on the caller's cluster"
    assert client.submit(pow, 3, 2).result(timeout=30) == 9


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_dask_closes_the_cluster_it_started(tmp_path):
    """scheduler=None: bigstep starts a LocalCluster for the sweep and closes it, so no
    process the sweep started is left when it returns (the caller's cluster, the module's
    fixture, is not involved)."""
    pytest.importorskip("distributed")
    before = proctree.descendants(os.getpid())
    table = bigstep.sweep(SQUARE, {"x": [1, 2, 3]}, out=tmp_path, executor="dask", max_workers=1, progress=False)
    assert table["y"].tolist() == [1, 4, 9]
    # multiprocessing's resource tracker belongs to this (pytest's) process and lives as
    # long as it does; everything else the sweep started must be gone
    started = {pid: v for pid, v in proctree.descendants(os.getpid()).items()
               if pid not in before and "resource_tracker" not in v[1]}
    left = proctree.wait_gone(started, GONE_WITHIN_S)
    assert not left, f"the sweep's own cluster left processes running: {left}"
