"""The figure reproductions: each runs end to end at a tiny size and writes its files;
the verdict logic says SUPPORTED / NOT SUPPORTED on synthetic results built to do so.

Tiny sizes are far too small to show the paper's effects, so the smoke tests check the
files and the report, not the verdict; the verdict functions are tested on their own.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

import pandas as pd  # noqa: E402

from bigstep.reproduce import FIGURES, reproduce  # noqa: E402

TINY = {
    "fig1": dict(lrs=(0.5, 0.05), steps={0.5: 200, 0.05: 400}, width=40, seeds=2, readings=5),
    "fig2": dict(lrs=(0.5, 0.05), steps={0.5: 100, 0.05: 200}, sims=2, width=40, lrs_high=(0.5, 0.05),
                 steps_high={0.5: 50, 0.05: 100}, sims_high=2, width_high=16, n_mc=64),
    "fig3": dict(lrs=(2.0, 0.05), steps={2.0: 20, 0.05: 40}, width=32, batch=64, samples=120),
    "fig4": dict(dims=(2, 5), steps=30, sims=1, sets=1, width=32, batch=64, samples=120),
    "fig5": dict(lrs=[0.5, 0.1], step_scale=0.02, sims=1, readings=5, width=40, lrs_high=[0.5, 0.1],
                 step_scale_high=0.01, sims_high=1, width_high=8, n_mc_high=4, lrs_diff=[1.0, 0.25],
                 steps_diff=10.0, sims_diff=1, width_diff=8, batch_diff=32, n_mc_diff=4),
    "rf-curves": dict(d=8, psi_n=0.5, n_psi=8, span=2.0, seeds=1),
    "rf-phase": dict(n_grid=12, psi_min=0.1, psi_max=10.0, d=8, seeds=1, overlay_psi_n=(0.5, 2.0),
                     overlay_psi_p=(0.5, 2.0)),
    "local-creativity": dict(seeds=1, samples=4, steps=4, patch=3, T=1.0, delta=0.05, n_train=64, shown=3),
}


def _tiny(monkeypatch, figure):
    module = importlib.import_module(f"bigstep.reproduce.{FIGURES[figure][0]}")
    monkeypatch.setattr(module, "settings_for", lambda *quick: dict(TINY[figure]))
    return module


def _needs(figure):
    if figure in ("fig3", "fig4") or figure == "fig2":
        pytest.importorskip("torch")
    if figure == "local-creativity":
        pytest.importorskip("sklearn")


@pytest.mark.parametrize("figure", sorted(FIGURES))
def test_each_reproduction_writes_data_plot_and_summary(figure, tmp_path, monkeypatch):
    _needs(figure)
    _tiny(monkeypatch, figure)
    report = reproduce(figure, out=tmp_path / figure, quick=True, seed=3, progress=False)
    files = [p for p in report.files]
    assert any(f.endswith(".csv") for f in files) and any(f.endswith(".png") for f in files)
    for f in files:
        assert (tmp_path / figure / f.split("/")[-1]).stat().st_size > 0
    csv = next(f for f in files if f.endswith(".csv"))
    assert len(pd.read_csv(csv)) > 0
    png = next(f for f in files if f.endswith(".png"))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / figure / "summary.md").read_text()
    assert report.claim in text and f"# {report.figure}: {report.verdict}" in text
    assert report.settings["quick"] is True


def test_cli_reproduce_prints_where_files_went(tmp_path, monkeypatch, capsys):
    from bigstep.cli import main

    _tiny(monkeypatch, "fig1")
    assert main(["reproduce", "fig1", "--quick", "--out", str(tmp_path), "--seed", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "files written" in out and str(tmp_path / "fig1.png") in out


def test_bad_arguments():
    with pytest.raises(ValueError, match="figure"):
        reproduce("fig9")
    with pytest.raises(ValueError, match="device"):
        reproduce("fig1", device="tpu")
    with pytest.raises(ValueError, match="seed"):
        reproduce("fig1", seed=-1)


def test_same_seed_same_data(tmp_path, monkeypatch):
    _tiny(monkeypatch, "fig1")
    a = pd.read_csv(reproduce("fig1", out=tmp_path / "a", seed=5, progress=False).files[0])
    b = pd.read_csv(reproduce("fig1", out=tmp_path / "b", seed=5, progress=False).files[0])
    pd.testing.assert_frame_equal(a, b)


def test_fig2_without_torch_runs_the_d1_panel_and_says_d10_was_skipped(tmp_path, monkeypatch):
    """The torch-free path (CI has torch, so it needs forcing): fig2 still runs its d = 1
    panel and reports the d = 10 panel as skipped, without touching the torch trainer."""
    fig2 = _tiny(monkeypatch, "fig2")
    monkeypatch.setattr(fig2, "torch_missing", lambda: "torch is not installed")

    def no_torch(*args, **kwargs):
        raise AssertionError("the d = 10 panel ran without torch")

    monkeypatch.setattr(fig2, "_panel_high", no_torch)
    report = reproduce("fig2", out=tmp_path, quick=True, seed=2, progress=False)
    frame = pd.read_csv(report.files[0])
    assert set(frame["d"]) == {1} and len(frame) == 2 * 2 * 2  # times x simulations x lrs
    assert any(f"d = {fig2.D_HIGH} panel skipped: torch is not installed" in line for line in report.lines)
    assert (tmp_path / "fig2.png").stat().st_size > 0
    assert "panel skipped" in (tmp_path / "summary.md").read_text()


def test_parallel_jobs_keep_the_callers_thread_setting(tmp_path, monkeypatch, restore_threads):
    """map_jobs runs each job on one thread and then gives back the caller's setting (it
    used to leave os.cpu_count() behind), also across a whole reproduction."""
    import os

    import bigstep
    from bigstep.reproduce._parallel import map_jobs

    bigstep.set_num_threads((os.cpu_count() or 1) + 1)
    mine = bigstep.get_num_threads()
    inside = map_jobs(lambda job: bigstep.get_num_threads(), list(range(4)), workers=2)
    assert inside == [1, 1, 1, 1] and bigstep.get_num_threads() == mine
    _tiny(monkeypatch, "fig1")
    reproduce("fig1", out=tmp_path, seed=1, progress=False)
    assert bigstep.get_num_threads() == mine


def test_fig4_sample_sets_use_disjoint_seeds(tmp_path, monkeypatch):
    """Every sample set of a fig4 run (and each set's reference and learned samplers) has
    its own seed: sets that shared one would share X_0 and the Brownian increments."""
    from types import SimpleNamespace

    import bigstep.training
    from bigstep.reproduce import fig4
    from bigstep.scores import EmpiricalScore

    full = fig4.settings_for(False)
    seeds = [s for sim in range(full["sims"]) for k in range(full["sets"])
             for s in fig4.set_seeds(7, sim, k, full["sets"])]
    assert len(set(seeds)) == len(seeds) == 2 * full["sims"] * full["sets"]

    # the seeds a run really passes to the samplers (training replaced by s*: no torch needed)
    monkeypatch.setattr(fig4, "settings_for", lambda quick: dict(dims=(2, 3), steps=1, sims=2, sets=3, width=8,
                                                                 batch=8, samples=40))
    monkeypatch.setattr(bigstep.training, "train_diffusion",
                        lambda x, **kw: SimpleNamespace(diverged=np.zeros(1, bool), score=EmpiricalScore(x)))
    used = {}
    for name in ("reference_samples", "sample_learned"):
        def record(*args, _name=name, _fn=getattr(fig4, name)):
            used.setdefault(args[-2] if _name == "sample_learned" else args[0].shape[1], []).append(args[-1])
            return _fn(*args)

        monkeypatch.setattr(fig4, name, record)
    reproduce("fig4", out=tmp_path, quick=True, seed=7, progress=False)
    for d in (2, 3):
        assert len(used[d]) == 2 * 2 * 3 and len(set(used[d])) == len(used[d])


def _fig2_frame(risk_of_lr):
    rows = []
    for d in (1, 10):
        for sim in range(10):
            for lr in (0.5, 0.1, 0.01):
                rows.append(dict(d=d, t=0.05, mu=0.95, sigma=0.31, sim=sim, lr=lr, diverged=False,
                                 excess_risk=risk_of_lr(lr) + 0.01 * np.sin(sim)))
    return pd.DataFrame(rows)


def test_fig2_verdict():
    from bigstep.reproduce import fig2

    lines, ok = fig2._verdict(_fig2_frame(lambda lr: 10 * lr))
    assert ok and len(lines) == 2 and "supports the claim" in lines[0] and "down down" in lines[0]
    _, ok = fig2._verdict(_fig2_frame(lambda lr: 1 - lr))
    assert not ok


def test_fig5_verdict():
    from bigstep.reproduce import fig5

    lrs = 0.5 * 10.0 ** np.linspace(0, -1, 6)
    good = pd.DataFrame(dict(sim=0, lr=lrs, diverged=False, sharpness=1.5 / (1000 * lrs), bound=2 / (1000 * lrs)))
    assert fig5._verdict(good)[1]
    above = good.assign(sharpness=3 / (1000 * lrs))
    assert not fig5._verdict(above)[1]
    flat = good.assign(sharpness=1e-4)
    assert not fig5._verdict(flat)[1]


def _fig5_frame(ratio_of_panel):
    """Three panels; sharpness = ratio * 2/(m lr) (m = 1000), two simulations, one diverged run."""
    rows = []
    lrs = 0.5 * 10.0 ** np.linspace(0, -1, 4)
    for panel in _fig5_panels():
        for sim in range(2):
            for lr in lrs:
                bound = 2 / (1000 * lr)
                rows.append(dict(panel=panel, sim=sim, lr=lr, diverged=False,
                                 sharpness=ratio_of_panel(panel) * bound * (1 + 0.01 * sim), bound=bound))
    rows.append(dict(panel=_fig5_panels()[2], sim=2, lr=2.0, diverged=True, sharpness=np.nan, bound=0.001))
    return pd.DataFrame(rows)


def _fig5_panels():
    from bigstep.reproduce import fig5

    return fig5.PANELS


def test_fig5_verdict_per_panel():
    from bigstep.reproduce import fig5

    lines, ok = fig5._verdict(_fig5_frame(lambda panel: 0.8))
    assert ok and len(lines) == 9
    assert all(panel in "".join(lines) for panel in fig5.PANELS)
    assert sum("supports the claim" in line and "does not" not in line for line in lines) == 3
    assert "1 diverged" in lines[8]
    # one panel above the bound beyond the tolerance: the claim fails, and that panel says so
    lines, ok = fig5._verdict(_fig5_frame(lambda panel: 1.3 if panel == fig5.PANELS[1] else 0.8))
    assert not ok and "does not support" in lines[5] and "does not support" not in lines[2]
    # within the tolerance (10% above the bound) still passes
    assert fig5._verdict(_fig5_frame(lambda panel: 1.05))[1]
    # a flat panel fails on the trend
    flat = _fig5_frame(lambda panel: 0.8)
    right = flat["panel"] == fig5.PANELS[2]
    flat.loc[right, "sharpness"] = 1e-5
    lines, ok = fig5._verdict(flat)
    assert not ok and "does not fall clearly" in lines[8]


def test_fig3_and_fig4_verdicts():
    from bigstep.reproduce import fig3, fig4

    base = dict(model="s_theta", steps=1, diverged=False)
    frame = pd.DataFrame([
        dict(model="s*", lr=np.nan, steps=0, diverged=False, memorized_fraction=0.9, mmd2_to_star=0.0,
             mmd2_to_gaussian=0.3),
        dict(base, lr=0.05, memorized_fraction=0.8, mmd2_to_star=0.01, mmd2_to_gaussian=0.25),
        dict(base, lr=2.0, memorized_fraction=0.1, mmd2_to_star=0.2, mmd2_to_gaussian=0.02),
    ])
    assert fig3._verdict(frame)[1] is True
    flipped = frame.assign(memorized_fraction=frame["memorized_fraction"][::-1].to_numpy())
    assert fig3._verdict(flipped)[1] is False
    rows = [dict(d=d, sim=0, set=0, diverged=False, memorized_fraction=m, normalised_mmd2_to_star=a,
                 normalised_mmd2_to_gaussian=b) for d, m, a, b in [(2, 0.7, 0.2, 0.9), (50, 0.0, 1.0, 0.1)]]
    assert fig4._verdict(pd.DataFrame(rows))[1] is True
    rows[1]["normalised_mmd2_to_gaussian"] = 2.0
    assert fig4._verdict(pd.DataFrame(rows))[1] is False


def test_local_creativity_verdict():
    """SUPPORTED when the global machine's samples are memorized and the local machines'
    are not (and are farther from the data); NOT SUPPORTED when a local machine memorizes
    or the global one does not; INCONCLUSIVE with fewer than 10 samples per machine."""
    from bigstep.reproduce.local_creativity import MACHINES, verdict, wilson

    def frame(memorized, d1, n=40):
        rows = []
        for name, m, d in zip(MACHINES, memorized, d1):
            for j in range(n):
                rows.append(dict(machine=name, seed=j % 2, d1=d + 0.01 * j, memorized=j < m * n))
        return pd.DataFrame(rows)

    lines, ok = verdict(frame((1.0, 0.0, 0.05), (0.3, 2.5, 5.0)), 2.0)
    assert ok is True and any("global memorizes" in line and "yes" in line for line in lines)
    assert verdict(frame((1.0, 0.4, 0.0), (0.3, 2.5, 5.0)))[1] is False  # local memorizes 40%
    assert verdict(frame((0.3, 0.0, 0.0), (0.3, 2.5, 5.0)))[1] is False  # global does not memorize
    lines, ok = verdict(frame((1.0, 0.0, 0.0), (0.3, 0.3, 5.0)))  # local no farther than global
    assert ok is False and any("NOT supported" in line for line in lines)
    assert verdict(frame((1.0, 0.0, 0.0), (0.3, 2.5, 5.0), n=5))[1] is None
    lo, hi = wilson(0, 48)
    assert lo == 0.0 and abs(hi - 0.0741) < 1e-3  # the Wilson interval of 0/48
    lo, hi = wilson(47, 48)
    assert abs(lo - 0.891) < 1e-3 and hi < 1.0
