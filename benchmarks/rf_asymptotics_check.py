"""Finite-d exact random-features DSM fits against the d -> infinity limit (issue 19).

For each case (activation, t, lam), a few points on each side of p = n (psi_n = 1,
psi_p in {0.5, 0.8} below and {1.25, 2} above) and n_noise in {1, inf}, the exact train
loss, test loss and score error of ``rf.learning_curve`` (the same numbers as rf.fit and
RFModel.train_loss / test_loss / score_error; n_noise = inf is the exact noise average, not
a large m) are averaged over seeds at d in {50, 100, 200, 400, 800} and compared with
``rf.asymptotic_errors``.

Reported per (case, point, n_noise, quantity) and d: the seed mean, its standard error
(std / sqrt(seeds)), the seed-to-seed spread (std), the gap mean - limit and the relative
gap.  The rate: a least-squares fit of log|gap| = a - r log d over the d at which the gap is
resolved (|gap| > 2 standard errors); with fewer than 3 such d no rate is given for that
row.  The check at the largest d: |gap| <= 2% of |limit| or |gap| <= the seed spread; the
script exits non-zero if any row fails it.

Seeds: seed s draws the data from Philox stream rf.STREAM_DATA, W from rf.STREAM_W and the
DSM noise from rf.STREAM_NOISE (rf.learning_curve's documented streams), so every number
can be replayed.  Runtime ~10 min on 2 shared cores (full), ~30 s (--quick: d <= 200,
fewer seeds, written to results/rf_asymptotics_check_quick.json, not committed).

Usage:  python benchmarks/rf_asymptotics_check.py [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

try:
    from . import _common
except ImportError:  # run as a script
    import _common

RESULTS = Path(__file__).resolve().parent / "results"
PSI_N = 1.0
PSI_P = (0.5, 0.8, 1.25, 2.0)  # two points below p = n, two above
CASES = (dict(rho="relu", t=0.5, lam=1e-2), dict(rho="relu", t=0.1, lam=1e-2))
SEEDS = {50: 40, 100: 20, 200: 10, 400: 6, 800: 4}
SEEDS_QUICK = {50: 12, 100: 6, 200: 3}
TOLERANCE = 0.02  # relative, at the largest d (or the seed spread)
QUANTITIES = ("train_loss", "test_loss", "score_error")


def _rate(ds, gaps, ses):
    """Exponent r of |gap| ~ d^-r over the resolved d (|gap| > 2 se), or None."""
    keep = [(d, abs(g)) for d, g, s in zip(ds, gaps, ses) if abs(g) > 2 * s and g != 0]
    if len(keep) < 3:
        return None
    x = np.log([d for d, _ in keep])
    y = np.log([g for _, g in keep])
    slope = np.polyfit(x, y, 1)[0]
    return float(-slope)


def run(seeds_by_d: dict, progress=True) -> dict:
    from bigstep import rf

    rows = []
    for case in CASES:
        limits = {m: rf.asymptotic_errors(PSI_N, np.array(PSI_P), case["t"], rho=case["rho"], lam=case["lam"],
                                          n_noise=m) for m in (1, math.inf)}
        for d, n_seeds in seeds_by_d.items():
            t0 = time.perf_counter()
            df = rf.learning_curve(d, PSI_N, list(PSI_P), case["t"], n_noise=[1, math.inf], rho=case["rho"],
                                   lam=case["lam"], seed=list(range(n_seeds))).rename(columns={"n_noise": "m"})
            seconds = time.perf_counter() - t0
            for m in (1, math.inf):
                for j, psi_p in enumerate(PSI_P):
                    p = max(1, round(psi_p * d))
                    sub = df[(df.m == m) & (df.p == p)]
                    for q in QUANTITIES:
                        vals = sub[q].to_numpy()
                        limit = float(getattr(limits[m], q)[j])
                        mean, std = float(vals.mean()), float(vals.std(ddof=1))
                        rows.append(dict(case, d=d, n_noise=str(m), psi_n=PSI_N, psi_p=psi_p, p=p, quantity=q,
                                         seeds=int(vals.size), mean=mean, se=std / math.sqrt(vals.size), spread=std,
                                         limit=limit, gap=mean - limit, rel_gap=(mean - limit) / abs(limit),
                                         seconds_all_points=seconds))
            if progress:
                print(f"{case} d = {d}: {n_seeds} seeds in {seconds:.1f} s", flush=True)
    return _summarise(rows, max(seeds_by_d))


def _summarise(rows, d_max):
    groups = {}
    for r in rows:
        key = (r["rho"], r["t"], r["lam"], r["n_noise"], r["psi_p"], r["quantity"])
        groups.setdefault(key, []).append(r)
    summary, failures = [], []
    for key, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["d"])
        last = rs[-1]
        ok = abs(last["gap"]) <= TOLERANCE * abs(last["limit"]) or abs(last["gap"]) <= last["spread"]
        rate = _rate([r["d"] for r in rs], [r["gap"] for r in rs], [r["se"] for r in rs])
        item = dict(zip(("rho", "t", "lam", "n_noise", "psi_p", "quantity"), key), limit=last["limit"],
                    rel_gap_by_d={r["d"]: round(r["rel_gap"], 5) for r in rs},
                    se_rel_by_d={r["d"]: round(r["se"] / abs(r["limit"]), 5) for r in rs},
                    rate=rate, ok_at_largest_d=bool(ok), largest_d=d_max)
        summary.append(item)
        if not ok:
            failures.append(item)
    rates = [s["rate"] for s in summary if s["rate"] is not None]
    return dict(rows=rows, summary=summary, failures=failures,
                rate_median=float(np.median(rates)) if rates else None,
                rate_quartiles=[float(np.percentile(rates, 25)), float(np.percentile(rates, 75))] if rates else None,
                rates_resolved=len(rates), rows_total=len(summary),
                max_abs_rel_gap_at_largest_d=max(abs(s["rel_gap_by_d"][d_max]) for s in summary))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="d <= 200, fewer seeds (~30 s)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    seeds = SEEDS_QUICK if args.quick else SEEDS
    start = time.perf_counter()
    result = run(seeds)
    out = Path(args.out) if args.out else RESULTS / ("rf_asymptotics_check_quick.json" if args.quick
                                                     else "rf_asymptotics_check.json")
    payload = dict(settings=dict(psi_n=PSI_N, psi_p=list(PSI_P), cases=list(CASES), seeds_by_d=seeds,
                                 tolerance=TOLERANCE, check="|gap| <= tolerance |limit| or |gap| <= seed spread "
                                                            "at the largest d",
                                 rate="least squares of log|gap| on log d over the d with |gap| > 2 se"),
                   machine=_common.machine_info(), seconds=time.perf_counter() - start,
                   note="accuracy check, not a timing: run on a shared 2-core machine", **result)
    _common.write_json(out, payload)
    print(_common.format_table(
        [dict(s, rel=" ".join(f"{d}:{v:+.4f}" for d, v in s["rel_gap_by_d"].items()),
              rate="-" if s["rate"] is None else f"{s['rate']:.2f}") for s in result["summary"]],
        [("t", "t"), ("n_noise", "n_noise"), ("psi_p", "psi_p"), ("quantity", "quantity"), ("limit", "limit"),
         ("rel", "relative gap by d"), ("rate", "rate"), ("ok_at_largest_d", "ok")]))
    print(f"median rate {result['rate_median']} (quartiles {result['rate_quartiles']}, "
          f"{result['rates_resolved']} of {result['rows_total']} rows resolved); largest |relative gap| at "
          f"d = {max(seeds)}: {result['max_abs_rel_gap_at_largest_d']:.4f}; written to {out}")
    if result["failures"]:
        print(f"{len(result['failures'])} row(s) outside the tolerance at d = {max(seeds)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
