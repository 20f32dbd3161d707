"""Command line: ``bigstep info``, ``demo``, ``reproduce figN``, ``sweep CONFIG.toml`` and ``plot OUT``."""

from __future__ import annotations

import argparse
import sys
import time


def _demo(args) -> int:
    import numpy as np

    import bigstep
    from bigstep import _backend

    rng = np.random.default_rng(0)
    x = rng.standard_normal(args.n)
    y = np.linspace(-3, 3, args.q)
    print(f"Empirical optimal score s* for n = {args.n} training points, q = {args.q} queries\n")
    print(f"{'t':>6} {'mu':>7} {'sigma':>7} {'backend':>8} {'pairs/s':>10} {'mean |s*|':>10} "
          f"{'max|s* - s*_numba|/max|s*|':>27}")
    for t in (0.01, 0.05, 0.2, 1.0):
        mu, sigma = bigstep.noise_schedule(t)
        ref = bigstep.optimal_score(y, x, mu, sigma, backend="numba")
        for backend in _backend.backends("optimal_score"):
            if backend == "cuda":
                continue
            bigstep.optimal_score(y, x, mu, sigma, backend=backend)
            t0 = time.perf_counter()
            s = bigstep.optimal_score(y, x, mu, sigma, backend=backend)
            dt = time.perf_counter() - t0
            err = float(np.max(np.abs(s - ref)) / np.max(np.abs(ref)))
            print(f"{t:6.2f} {mu:7.4f} {sigma:7.4f} {backend:>8} {args.n * args.q / dt:10.3g} "
                  f"{np.mean(np.abs(s)):10.4g} {err:27.2e}")
    return 0


def _reproduce(args) -> int:
    from .reproduce import reproduce

    try:
        report = reproduce(args.figure, out=args.out, seed=args.seed, quick=not args.full, device=args.device,
                           progress=not args.no_progress, backend=args.backend, panels=args.panel)
    except ImportError as exc:  # an optional package: one line saying which and how to install it
        print(f"bigstep reproduce {args.figure}: {exc}", file=sys.stderr)
        return 2
    print(report.text())
    print(f"{args.figure}: {report.verdict}; files written:")
    for f in report.files:
        print(f"  {f}")
    return 0


def _sweep(args) -> int:
    from .sweeps import sweep
    from .sweeps.config import read_config
    from .sweeps.plot import plot_sweep

    cfg = read_config(args.config)
    if args.out:
        cfg["out"] = args.out
    if args.executor:
        cfg["executor"] = args.executor
    if args.scheduler:
        cfg["executor"], cfg["scheduler"] = "dask", args.scheduler
    plot = cfg.pop("plot", None)
    table = sweep(cfg.pop("task"), cfg.pop("grid"), progress=not args.no_progress, **cfg)
    _print_table(table)
    print(f"store: {cfg['out']}")
    if args.plot or plot:
        for f in plot_sweep(cfg["out"], kind=(plot or {}).get("kind", "auto") if isinstance(plot, dict) else "auto"):
            print(f"plot: {f}")
    return 0 if (table["status"] == "ok").all() else 1


def _print_table(table) -> None:
    import pandas as pd

    meta = {"cell_id", "cell_index", "task", "error", "traceback", "finished_at"}
    cols = [c for c in table.columns if c not in meta]
    with pd.option_context("display.max_rows", 60, "display.width", 160):
        print(table[cols].to_string(index=False, max_rows=60))
    n_ok = int((table["status"] == "ok").sum())
    print(f"{n_ok} of {len(table)} cells ok, {len(table) - n_ok} failed; "
          f"{table['wall_time'].sum():.1f} s of cell time")


def _plot(args) -> int:
    from .sweeps.plot import plot_sweep

    for f in plot_sweep(args.out, kind=args.kind):
        print(f"plot: {f}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bigstep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="what is built and available")
    demo = sub.add_parser("demo", help="a small s* demo that prints a table")
    demo.add_argument("--n", type=int, default=20000)
    demo.add_argument("--q", type=int, default=20000)
    from .reproduce import FIGURES

    rep = sub.add_parser("reproduce", help="reproduce one of the paper's figures (data, plot, summary)",
                         description="\n".join(f"{k}: {v[1]}" for k, v in FIGURES.items()),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("figure", choices=sorted(FIGURES))
    size = rep.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes: minutes on 2 CPU cores (the default)")
    size.add_argument("--full", action="store_true", help="the paper's settings (Appendix E)")
    rep.add_argument("--backend", default="auto", choices=["auto", "cpp", "numba"],
                     help="CPU kernels to run on (default: the compiled ones, else Numba)")
    rep.add_argument("--panel", action="append", default=None,
                     help="run only this panel (repeatable): fig2 d=1|d=10, fig5 d=1|d=10|diffusion")
    rep.add_argument("--out", default=None, help="output folder (default ./bigstep-<figure>)")
    rep.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")
    sw = sub.add_parser("sweep", help="run a grid from a TOML config into a resumable Parquet store")
    sw.add_argument("config", help="TOML file (see bigstep.sweeps.config)")
    sw.add_argument("--executor", choices=["local", "dask"], default=None)
    sw.add_argument("--scheduler", default=None, help="Dask scheduler address (implies --executor dask)")
    sw.add_argument("--out", default=None, help="store folder (overrides the config)")
    sw.add_argument("--plot", action="store_true", help="draw the standard views when done")
    sw.add_argument("--no-progress", action="store_true")
    pl = sub.add_parser("plot", help="standard views of a sweep store")
    pl.add_argument("out", help="the sweep's store folder")
    pl.add_argument("--kind", default="auto", choices=["auto", "excess-risk", "memorization"])
    args = parser.parse_args(argv)
    if args.command == "info":
        from .info import format_info

        print(format_info())
        return 0
    if args.command == "reproduce":
        return _reproduce(args)
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "plot":
        return _plot(args)
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
