"""Verdict stability of the quick reproductions (tools/verdict_stability.sh drives it).

    python tools/verdict_stability.py run FIG SEED CONFIG DIR   # one quick reproduction
    python tools/verdict_stability.py table OUT                 # the table of verdicts

CONFIG is ``cpp-<isa>`` (the compiled kernels forced to that instruction set with
bigstep._core.set_isa, as tests/conftest.py does) or ``numba`` (every CPU kernel on the
Numba fallback).  ``run`` writes DIR/summary.json (verdict and comparisons) and the
figure's files; ``table`` reads OUT/<fig>/<config>-seed<s>/summary.json and writes
OUT/verdict_stability.md and .json: a table of verdicts per figure, base seed and
configuration, and per figure whether they all agree (else: the claim is not resolved
at the quick size).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

PAPER_FIGURES = ("fig1", "fig2", "fig3", "fig4", "fig5")
BASE_SEEDS = (0, 1, 2)


def run(fig: str, seed: int, config: str, out: str) -> None:
    import bigstep
    from bigstep.reproduce import reproduce

    if config.startswith("cpp-"):
        core = bigstep._backend.core()
        if core is None or not core.set_isa(config[4:]):
            raise SystemExit(f"{config}: instruction set not runnable here")
        backend = "cpp"
    elif config == "numba":
        backend = "numba"
    else:
        raise SystemExit(f"unknown configuration {config!r} (cpp-<isa> or numba)")
    t0 = time.perf_counter()
    report = reproduce(fig, out=out, quick=True, seed=seed, progress=False, backend=backend)
    summary = json.loads((Path(out) / "summary.json").read_text())
    summary.update(config=config, base_seed=seed, wall_seconds=time.perf_counter() - t0,
                   isa=bigstep._backend.core().simd_level() if backend == "cpp" else None)
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{fig} seed {seed} {config}: {report.verdict} ({report.confidence()}) in {summary['wall_seconds']:.0f} s")


def table(out: str) -> int:
    import bigstep

    root = Path(out)
    runs = [json.loads(p.read_text()) for p in sorted(root.glob("*/*/summary.json"))]
    if not runs:
        raise SystemExit(f"no runs under {root}")
    run_figs = sorted({r["figure"] for r in runs})
    figs = sorted(set(PAPER_FIGURES) | set(run_figs))
    configs = sorted(set(_runnable_configs()) | {r["config"] for r in runs}, key=lambda c: (c == "numba", c))
    seeds = sorted(set(BASE_SEEDS) | {r["base_seed"] for r in runs})
    by = {(r["figure"], r["base_seed"], r["config"]): r for r in runs}
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    done = len(by)
    wanted = len(figs) * len(seeds) * len(configs)
    lines = ["# Verdict stability of the quick reproductions", "",
             f"Every quick reproduction under base seeds {seeds} and each configuration ({', '.join(configs)}: "
             "the compiled kernels forced to each runnable instruction set, and the Numba fallback); "
             f"bigstep {bigstep.__version__} on {cpu} ({bigstep.info()['cpu_count']} cores).",
             "Cells: verdict (comparisons that hold / all; largest sign-test p; wall time).  Produced by "
             "tools/verdict_stability.sh on a shared 2-core machine (wall times are indicative).", ""]
    if done < wanted:
        missing = [f for f in figs if f not in run_figs]
        lines += [f"**Incomplete: {done} of the {wanted} runs were made.**"
                  + (f"  Not run at all: {', '.join(missing)} (no statement about their stability here)."
                     if missing else ""), ""]
    summary = {"_complete": done == wanted, "_runs": done, "_wanted": wanted}
    for fig in figs:
        if fig not in run_figs:
            summary[fig] = {"runs": 0}
            continue
        lines += [f"## {fig}", "", "| base seed | " + " | ".join(configs) + " |",
                  "|---|" + "---|" * len(configs)]
        verdicts = []
        for s in seeds:
            cells = []
            for c in configs:
                r = by.get((fig, s, c))
                if r is None:
                    cells.append("(not run)")
                    continue
                held = sum(1 for x in r["comparisons"] if x["status"] == "holds")
                worst = max((x["p"] for x in r["comparisons"]), default=float("nan"))
                verdicts.append(r["verdict"])
                cells.append(f"{r['verdict']} ({held}/{len(r['comparisons'])}; p <= {worst:.2g}; "
                             f"{r['wall_seconds']:.0f} s)")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        agree = len(set(verdicts)) == 1
        complete = len(verdicts) == len(seeds) * len(configs)
        walls = [by[k]["wall_seconds"] for k in by if k[0] == fig]
        summary[fig] = {"verdicts": verdicts, "agree": agree, "verdict": verdicts[0] if agree else None,
                        "runs": len(verdicts), "complete": complete,
                        "median_wall_seconds": sorted(walls)[len(walls) // 2]}
        unstable = _unstable_comparisons(fig, runs)
        lines += ["", (f"All {len(verdicts)} runs agree: **{verdicts[0]}**"
                       + ("." if complete else f" (only {len(verdicts)} of {len(seeds) * len(configs)} runs made).")
                       if agree else
                       f"The verdicts differ ({', '.join(f'{v}: {verdicts.count(v)}' for v in sorted(set(verdicts)))}):"
                       " the claim is **not resolved at the quick size** (it turns on floating-point luck or on the "
                       "seed, not on the machine alone).")]
        if unstable:
            lines += ["", "Comparisons whose status differs between runs: " + "; ".join(unstable) + "."]
        lines.append("")
    (root / "verdict_stability.md").write_text("\n".join(lines) + "\n")
    (root / "verdict_stability.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(lines))
    return 0


def _runnable_configs():
    """The configurations tools/verdict_stability.sh runs on this machine."""
    import bigstep

    core = bigstep._backend.core()
    isas = [s for s in core.available_isas().split(",") if s] if core is not None else []
    if len(isas) > 1:
        isas = [s for s in isas if s != "native"]
    return [f"cpp-{s}" for s in isas] + ["numba"]


def _unstable_comparisons(fig, runs):
    status = {}
    for r in runs:
        if r["figure"] != fig:
            continue
        for c in r["comparisons"]:
            status.setdefault(c["name"], []).append(c["status"])
    return [f"{name} ({', '.join(f'{s}: {v.count(s)}' for s in sorted(set(v)))})"
            for name, v in status.items() if len(set(v)) > 1]


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "run":
        run(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif len(sys.argv) == 3 and sys.argv[1] == "table":
        raise SystemExit(table(sys.argv[2]))
    else:
        raise SystemExit(__doc__)
