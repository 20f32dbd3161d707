"""Sweeps: local and Dask executors give the task's own numbers, the store survives
interruption and worker death without losing or duplicating cells, failures are
recorded, and bad grids fail before any work starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
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
                                       dashboard_address=None)
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
