"""The figure reproductions: each runs end to end at a tiny size and writes its files;
the statistics of the verdicts (sign tests, intervals, the verdict rule) against exact
references; each figure's verdict on synthetic results built to be SUPPORTED, NOT
SUPPORTED or NOT RESOLVED, with diverged runs counted and never changing what is
compared; the torch-free path; the CLI.

Tiny sizes are far too small to show the paper's effects, so the smoke tests check the
files and the report, not the verdict; the verdict functions are tested on their own.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

import pandas as pd  # noqa: E402

from bigstep.reproduce import FIGURES, _stats, reproduce  # noqa: E402

TINY = {
    "fig1": dict(lrs=(0.5, 0.05), steps={0.5: 200, 0.05: 400}, width=40, replicates=2, readings=5),
    "fig2": dict(lrs=(0.5, 0.05), steps={0.5: 100, 0.05: 200}, sims=2, width=40, lrs_high=(0.5, 0.05),
                 steps_high={0.5: 50, 0.05: 100}, sims_high=2, width_high=16, n_mc=64),
    "fig3": dict(lrs=(2.0, 0.05), steps={2.0: 20, 0.05: 40}, width=32, batch=64, samples=120, replicates=2,
                 dtype="float32"),
    "fig4": dict(dims=(2, 5), steps=30, sims=2, sets=1, width=32, batch=64, samples=120, dtype="float32"),
    "fig5": dict(lrs=[0.5, 0.1], step_scale=0.02, sims=2, readings=5, width=40, lrs_high=[0.5, 0.1],
                 step_scale_high=0.01, sims_high=2, width_high=8, n_mc_high=4, lrs_diff=[1.0, 0.25],
                 steps_diff=10.0, sims_diff=2, width_diff=8, batch_diff=32, n_mc_diff=4),
    "rf-curves": dict(d=8, psi_n=0.5, n_psi=8, span=2.0, seeds=1),
    "rf-phase": dict(n_grid=12, psi_min=0.1, psi_max=10.0, d=8, seeds=1, overlay_psi_n=(0.5, 2.0),
                     overlay_psi_p=(0.5, 2.0)),
    "local-creativity": dict(seeds=1, samples=4, steps=4, patch=3, T=1.0, delta=0.05, n_train=64, shown=3),
}
PAPER_FIGURES = ("fig1", "fig2", "fig3", "fig4", "fig5")


def _tiny(monkeypatch, figure):
    module = importlib.import_module(f"bigstep.reproduce.{FIGURES[figure][0]}")
    monkeypatch.setattr(module, "settings_for", lambda *quick: dict(TINY[figure]))
    return module


@pytest.mark.parametrize("figure", sorted(FIGURES))
def test_each_reproduction_writes_data_plot_and_summary(figure, tmp_path, monkeypatch):
    if figure not in TINY:
        pytest.skip(f"{figure}: no tiny settings here")
    if figure == "local-creativity":
        pytest.importorskip("sklearn")  # the digits ship with scikit-learn (the repro and test extras)
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
    if figure in PAPER_FIGURES:
        assert report.comparisons and "Confidence (" in text and "sign test p =" in text
        summary = json.loads((tmp_path / figure / "summary.json").read_text())
        assert summary["verdict"] == report.verdict and len(summary["comparisons"]) == len(report.comparisons)
        assert summary["cpu_seconds"] > 0 and "CPU time" in text
        assert report.supported is _stats.verdict(report.comparisons)


def test_cli_reproduce_prints_where_files_went(tmp_path, monkeypatch, capsys):
    from bigstep.cli import main

    _tiny(monkeypatch, "fig1")
    assert main(["reproduce", "fig1", "--quick", "--out", str(tmp_path), "--seed", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "files written" in out and str(tmp_path / "fig1.png") in out and "Confidence" in out


def test_cli_full_and_quick_exclude_each_other(tmp_path, monkeypatch, capsys):
    from bigstep.cli import main

    with pytest.raises(SystemExit):
        main(["reproduce", "fig1", "--quick", "--full", "--out", str(tmp_path)])
    fig1 = importlib.import_module("bigstep.reproduce.fig1")
    seen = []
    monkeypatch.setattr(fig1, "settings_for", lambda quick: seen.append(quick) or dict(TINY["fig1"]))
    assert main(["reproduce", "fig1", "--full", "--out", str(tmp_path), "--no-progress"]) == 0
    assert main(["reproduce", "fig1", "--out", str(tmp_path), "--no-progress"]) == 0  # quick by default
    assert seen == [False, True]


def test_missing_optional_package_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    from bigstep.cli import main
    from bigstep.reproduce import _report

    _tiny(monkeypatch, "fig1")

    def no_matplotlib():
        raise ImportError("the reproductions need matplotlib and pandas: pip install 'bigstep[repro]'")

    monkeypatch.setattr(_report, "plt", no_matplotlib)
    monkeypatch.setattr(importlib.import_module("bigstep.reproduce.fig1"), "plt", no_matplotlib)
    assert main(["reproduce", "fig1", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'bigstep[repro]'" in err[0] and "Traceback" not in err[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="figure"):
        reproduce("fig9")
    with pytest.raises(ValueError, match="device"):
        reproduce("fig1", device="tpu")
    with pytest.raises(ValueError, match="seed"):
        reproduce("fig1", seed=-1)
    with pytest.raises(ValueError, match="backend"):
        reproduce("fig1", backend="gpu")


def test_same_seed_same_data(tmp_path, monkeypatch):
    _tiny(monkeypatch, "fig1")
    a = pd.read_csv(reproduce("fig1", out=tmp_path / "a", seed=5, progress=False).files[0])
    b = pd.read_csv(reproduce("fig1", out=tmp_path / "b", seed=5, progress=False).files[0])
    pd.testing.assert_frame_equal(a, b)


def test_base_seeds_share_no_replicate():
    from bigstep.reproduce._common import replicate_seed

    seeds = {replicate_seed(s, r) for s in range(3) for r in range(30)}
    assert len(seeds) == 90


def test_numba_backend_runs_every_cpu_kernel_on_numba(tmp_path, monkeypatch):
    """backend="numba": "auto" resolves to numba inside the run (and back afterwards), and
    the results equal the compiled run's up to rounding."""
    from bigstep import _backend

    fig1 = _tiny(monkeypatch, "fig1")
    seen = []
    real = fig1.run

    def spy(out, **kw):
        seen.append(_backend.resolve("auto"))
        return real(out, **kw)

    monkeypatch.setattr(fig1, "run", spy)
    numba_csv = pd.read_csv(reproduce("fig1", out=tmp_path / "n", seed=4, progress=False, backend="numba").files[0])
    assert seen == ["numba"] and _backend.resolve("auto") in ("cpp", "numba")
    if _backend.why_unavailable("cpp") is None:
        cpp_csv = pd.read_csv(reproduce("fig1", out=tmp_path / "c", seed=4, progress=False, backend="cpp").files[0])
        assert seen == ["numba", "cpp"]
        np.testing.assert_allclose(numba_csv["excess_risk"], cpp_csv["excess_risk"], rtol=1e-6)


NO_TORCH = """
import importlib.abc, sys


class HideTorch(importlib.abc.MetaPathFinder):
    \"\"\"Wraps a finder so that it never finds torch or torch.*: importlib.util.find_spec
    gives None and ``import torch`` raises ModuleNotFoundError, as if torch were not installed.\"\"\"

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find is not None else None

    def invalidate_caches(self):
        getattr(self.finder, "invalidate_caches", lambda: None)()


sys.meta_path[:] = [HideTorch(f) for f in sys.meta_path]
for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
    del sys.modules[name]
"""


def test_every_figure_runs_without_torch(tmp_path):
    """Every paper figure (fig1-fig5: the d = 10 panels of fig2 and fig5, the diffusion
    trainers of fig3, fig4 and fig5 included) runs, through ``bigstep reproduce``, in a
    process where torch cannot be imported (a meta-path finder refuses it, as if it were
    not installed)."""
    figures = ("fig1", "fig2", "fig3", "fig4", "fig5")
    code = (NO_TORCH
            + "import importlib, json\n"
            "from bigstep.cli import main\n"
            f"tiny = json.loads({json.dumps(json.dumps({k: TINY[k] for k in figures}))})\n"
            "for fig, cfg in tiny.items():\n"
            "    mod = importlib.import_module('bigstep.reproduce.' + fig)\n"
            "    mod.settings_for = lambda *q, cfg=cfg: {k: ({float(a): b for a, b in v.items()} if isinstance(v, dict)"
            " else v) for k, v in cfg.items()}\n"
            f"    rc = main(['reproduce', fig, '--quick', '--seed', '1', '--no-progress', '--out', r'{tmp_path}/' + fig])\n"
            "    assert rc == 0, (fig, rc)\n"
            "assert 'torch' not in sys.modules\n"
            "print('no torch:', ' '.join(tiny))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "no torch: " + " ".join(figures) in out.stdout
    assert "Traceback" not in out.stderr
    for fig in figures:
        assert (tmp_path / fig / "summary.md").read_text().startswith(f"# {fig}: ")
    fig2 = pd.read_csv(next((tmp_path / "fig2").glob("*.csv")))
    assert set(fig2["d"]) == {1, 10}
    frame = pd.read_csv(tmp_path / "fig5" / "fig5_sharpness.csv")
    assert set(frame["panel"]) == {"d = 1", "d = 10", "diffusion (d = 2)"}


def test_the_torch_block_can_fail():
    """The block of the no-torch test is real: torch (where installed) is neither found nor imported under it."""
    code = NO_TORCH + "import importlib.util\nassert importlib.util.find_spec('torch') is None\nimport torch\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "No module named 'torch'" in out.stderr.splitlines()[-1]


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

    # the seeds a run really passes to the samplers (training replaced by s*)
    monkeypatch.setattr(fig4, "settings_for", lambda quick: dict(dims=(2, 3), steps=1, sims=2, sets=3, width=8,
                                                                 batch=8, samples=40, dtype="float64"))
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


# ------------------------------------------------------------------ statistics


def test_sign_test_is_the_exact_binomial_tail():
    scipy_stats = pytest.importorskip("scipy.stats")
    for k, n in [(8, 8), (7, 8), (5, 8), (0, 5), (13, 20), (30, 30)]:
        diffs = [1.0] * k + [-1.0] * (n - k) + [0.0, np.nan]  # ties and NaN are dropped
        got = _stats.sign_test(diffs)
        want = scipy_stats.binomtest(k, n, 0.5, alternative="greater").pvalue
        assert got[:2] == (k, n) and got[2] == pytest.approx(want, rel=1e-12)
    assert _stats.sign_test([np.nan, 0.0]) == (0, 0, 1.0)
    assert _stats.sign_test([1.0] * 5)[2] == 1 / 32


def test_student_interval_quantiles():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 7, 29, 30, 31, 45, 100, 1000):
        assert _stats.t975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=2e-6)
    m, h = _stats.mean_ci([1.0, 2.0, 3.0, np.nan])
    assert m == 2.0 and h == pytest.approx(scipy_stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3), rel=1e-8)
    assert math.isnan(_stats.mean_ci([4.0])[1]) and math.isnan(_stats.mean_ci([])[0])


def test_comparison_status_and_verdict_rule():
    def comp(diffs):
        return _stats.Comparison("c", diffs)

    holds = comp([1.0] * 8)                          # p = 1/256
    weak = comp([1.0] * 4 + [-1.0] * 4)              # p = 0.64
    against = comp([-1.0] * 8)                       # opposite p = 1/256
    _stats.evaluate([holds, weak, against])
    assert (holds.status, weak.status, against.status) == ("holds", "unresolved", "contradicted")
    assert _stats.verdict([holds]) is True
    assert _stats.verdict([holds, weak]) is None
    assert _stats.verdict([holds, weak, against]) is False
    assert _stats.verdict([]) is None
    # contradiction needs p < 0.05 / K: 6 of 6 against (p = 1/64) contradicts alone, not among 4
    c6 = [comp([-1.0] * 6)]
    assert _stats.evaluate(c6)[0].status == "contradicted"
    assert _stats.evaluate([comp([-1.0] * 6)] + [comp([1.0] * 6) for _ in range(3)])[0].status == "unresolved"
    # diverged replicates (NaN) are left out and counted
    c = _stats.evaluate([comp([1.0] * 5 + [np.nan] * 3)])[0]
    assert (c.k, c.n, c.left_out, c.status) == (5, 5, 3, "holds") and "3 replicate(s) left out" in c.text()


# ------------------------------------------------------------------ each figure's verdict


def _fig2_frame(risk_of_lr, sims=8, diverged=()):
    rows = []
    for d in (1, 10):
        for sim in range(sims):
            for lr in (0.5, 0.1, 0.01):
                div = (d, sim, lr) in diverged
                rows.append(dict(d=d, t=0.05, mu=0.95, sigma=0.31, replicate=sim, lr=lr, diverged=div,
                                 excess_risk=np.nan if div else risk_of_lr(lr) + 0.01 * np.sin(sim)))
    return pd.DataFrame(rows)


def test_fig2_verdict():
    from bigstep.reproduce import fig2

    lines, comps = fig2._verdict(_fig2_frame(lambda lr: 10 * lr))
    assert _stats.verdict(comps) is True and len(comps) == 4 and "mean excess risk" in lines[0]
    assert _stats.verdict(fig2._verdict(_fig2_frame(lambda lr: 1 - lr))[1]) is False
    assert _stats.verdict(fig2._verdict(_fig2_frame(lambda lr: 10 * lr, sims=3))[1]) is None  # too few to resolve
    # every lr 0.5 run diverged in d = 10: counted, that comparison has no pairs, the lrs stay
    div = {(10, s, 0.5) for s in range(8)}
    lines, comps = fig2._verdict(_fig2_frame(lambda lr: 10 * lr, diverged=div))
    assert _stats.verdict(comps) is None
    c = next(c for c in comps if c.name.startswith("d = 10") and "lr 0.5 >" in c.name)
    assert c.n == 0 and c.left_out == 8 and c.status == "unresolved"
    assert any("lr 0.5: 8 of 16" in line for line in lines)


def test_fig1_verdict_tests_both_parts_of_the_claim():
    from bigstep.reproduce import fig1

    def frame(rel_small_sigma):
        rows = []
        for t, sigma in ((0.05, 0.31), (0.2, 0.57)):
            for r in range(8):
                for lr in (0.5, 0.1, 0.05):
                    e = lr * (1 + 0.01 * r)
                    rel = e * (rel_small_sigma if t == 0.05 else 1.0)
                    rows.append(dict(replicate=r, t=t, mu=0.9, sigma=sigma, lr=lr, diverged=False, excess_risk=e,
                                     relative_excess_risk=rel))
        return pd.DataFrame(rows)

    lines, comps = fig1._verdict(frame(3.0))
    assert _stats.verdict(comps) is True and len(comps) == 2 * 2 + 3
    lines, comps = fig1._verdict(frame(0.5))  # s_theta relatively closer at the smaller sigma: the claim fails
    assert _stats.verdict(comps) is False
    assert all(c.status == "contradicted" for c in comps if "relative" in c.name)


def test_fig3_verdict_and_divergence_at_the_large_lr():
    from bigstep.reproduce import fig3

    def frame(diverge_large=0, flip=False):
        rows = []
        for r in range(8):
            rows.append(dict(replicate=r, model="s*", lr=np.nan, diverged=False, memorized_fraction=0.9,
                             mmd2_to_star=0.0, mmd2_to_gaussian=0.3))
            for lr, mf, st, ga in ((0.05, 0.8, 0.01, 0.25), (1.0, 0.3, 0.1, 0.05), (2.0, 0.1, 0.2, 0.02)):
                if flip:
                    st, ga = ga, st
                div = lr == 2.0 and r < diverge_large
                rows.append(dict(replicate=r, model="s_theta", lr=lr, diverged=div,
                                 **({} if div else dict(memorized_fraction=mf + 0.001 * r, mmd2_to_star=st,
                                                        mmd2_to_gaussian=ga + 0.001 * r))))
        return pd.DataFrame(rows)

    lines, comps = fig3._verdict(frame())
    assert _stats.verdict(comps) is True and len(comps) == 4
    assert _stats.verdict(fig3._verdict(frame(flip=True))[1]) is False
    # lr 2 diverged in 5 of 8 replicates: counted, its comparisons unresolved; lr 1 does not stand in for it
    lines, comps = fig3._verdict(frame(diverge_large=5))
    assert _stats.verdict(comps) is None
    assert all(f"lr {fig3.LARGE}" in c.name for c in comps if c.left_out) and sum(c.left_out == 5 for c in comps) == 3
    assert any("lr 2: 5 of 8" in line for line in lines)


def test_fig4_verdict():
    from bigstep.reproduce import fig4

    def frame(star_of_d, gauss_top=0.1, diverged_top=0):
        rows = []
        for d in (2, 10, 50):
            for r in range(8):
                div = d == 50 and r < diverged_top
                rows.append(dict(d=d, replicate=r, set=0, diverged=div,
                                 **({} if div else dict(memorized_fraction=0.5 / d,
                                                        normalised_mmd2_to_star=star_of_d(d) + 0.01 * r,
                                                        normalised_mmd2_to_gaussian=gauss_top if d == 50 else 1.0))))
        return pd.DataFrame(rows)

    rising = {2: 0.2, 10: 0.6, 50: 1.0}
    lines, comps = fig4._verdict(frame(rising.get))
    assert _stats.verdict(comps) is True and len(comps) == 3
    assert _stats.verdict(fig4._verdict(frame(lambda d: 1.0 / d))[1]) is False
    assert _stats.verdict(fig4._verdict(frame(rising.get, gauss_top=2.0))[1]) is False  # high d not Gaussian-like
    lines, comps = fig4._verdict(frame(rising.get, diverged_top=4))
    assert any("d 50: 4 of 8" in line for line in lines) and comps[1].left_out == 4


def _fig5_frame(slope_of_panel, diverged=()):
    """Three panels, 8 replicates; sharpness = c lr^slope (c varies a little per replicate)."""
    from bigstep.reproduce import fig5

    rows = []
    lrs = 0.5 * 10.0 ** np.linspace(0, -1, 4)
    for panel in fig5.PANELS:
        for r in range(8):
            for lr in lrs:
                div = (panel, r, lr) in diverged
                rows.append(dict(panel=panel, replicate=r, lr=lr, diverged=div, bound=2 / (1000 * lr),
                                 sharpness=np.nan if div else 1e-3 * (1 + 0.05 * r) * lr ** slope_of_panel(panel)))
    return pd.DataFrame(rows)


def test_fig5_verdict_is_the_trend_per_panel():
    from bigstep.reproduce import fig5

    lines, comps = fig5._verdict(_fig5_frame(lambda panel: -0.8))
    assert _stats.verdict(comps) is True and len(comps) == 3
    assert all(panel in "".join(lines) for panel in fig5.PANELS)
    assert sum("linear-stability check" in line for line in lines) == 3
    # one panel rising with lr: the claim is contradicted there
    lines, comps = fig5._verdict(_fig5_frame(lambda panel: 0.5 if panel == fig5.PANELS[1] else -0.8))
    assert _stats.verdict(comps) is False and comps[1].status == "contradicted" and comps[0].status == "holds"
    # diverged runs at the largest lr: counted, the slope uses the finished runs
    div = {(fig5.PANELS[2], r, 0.5) for r in range(8)}
    lines, comps = fig5._verdict(_fig5_frame(lambda panel: -0.8, diverged=div))
    assert _stats.verdict(comps) is True and any("lr 0.5: 8 of 8" in line for line in lines)


def test_panels_run_a_part_of_a_figure(tmp_path, monkeypatch):
    from bigstep.cli import main

    _tiny(monkeypatch, "fig2")
    report = reproduce("fig2", out=tmp_path / "a", seed=1, progress=False, panels="d=1")
    frame = pd.read_csv(report.files[0])
    assert set(frame["d"]) == {1} and all(c.name.startswith("d = 1") for c in report.comparisons)
    assert any("only the panel(s) d=1 ran" in line for line in report.lines)
    _tiny(monkeypatch, "fig5")
    assert main(["reproduce", "fig5", "--panel", "d=1", "--panel", "diffusion", "--out", str(tmp_path / "b"),
                 "--no-progress"]) == 0
    assert set(pd.read_csv(tmp_path / "b" / "fig5_sharpness.csv")["panel"]) == {"d = 1", "diffusion (d = 2)"}
    with pytest.raises(ValueError, match="panels"):
        reproduce("fig2", out=tmp_path / "c", panels=["d=3"])
    with pytest.raises(ValueError, match="panels"):
        reproduce("fig1", out=tmp_path / "c", panels=["d=1"])


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
