"""Side-by-side CPU timing of a random-features DSM learning curve: bigstep vs plain numpy.

The job (issue 8): d = 200, psi_n = n / d = 4 (n = 800), 20 values psi_p = p / d evenly
spaced up to 16 (p = 160, 320, ..., 3200), m in {1, 16} (N = n m = 800 and 12,800 noisy
samples), t = 0.5, lam = 1e-3, relu features, one seed: for each (m, p) the exact ridge fit
A* and its train and (closed-form) test loss.

Methods, same inputs, one process:
- bigstep: ``rf.learning_curve`` (one call): the compiled kernel streams the n m samples once
  per m at p_max (noise generated inside, memory O(p^2 + p d)); every p uses the leading
  blocks of that Gram matrix and of one Cholesky factor.  Its time includes the noise, the
  weights, the population kernel U and everything else.
- numpy, per-p refit (naive): per (m, p), features F = relu(Y W_p^T / sqrt(d)) (N x p, in
  memory), K = F^T F and R = F^T xi through BLAS, Cholesky solve, train loss from the
  residuals, test loss from the same closed form.
- numpy, leading blocks (what a user who knows the trick writes): per m, the features once at
  p_max (N x p_max in memory), K and R once through BLAS; per p the leading blocks
  K[:p, :p], R[:p], a Cholesky solve, train loss from K, R and xi2 (no residuals).
  Both numpy peers are given for free: the noisy inputs Y and noise xi, the weights and the
  population matrices U, E[f y^T] at p_max (sliced per p).  The inputs are drawn from the
  Philox streams bigstep.rf documents (rf.STREAM_DATA, rf.STREAM_W, rf.STREAM_NOISE), so all
  three solve the same problem.
- torch: timed only if importable (not installed in the venv this file was run in).

Accuracy: the largest relative difference of the train and test losses of each numpy peer
from bigstep.  If any exceeds MAX_REL_DIFF = 1e-8 the script writes nothing and exits
non-zero (the methods would not be solving the same problem, or one is wrong).

Speed target: judged against the FASTEST of the (equally accurate) numpy peers, i.e.
speedup = min(numpy seconds) / bigstep seconds; both ratios are printed and saved.
Usage:  python benchmarks/compare_random_features.py [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

try:
    from . import _common
except ImportError:  # run as a script
    import _common

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_SPEEDUP = 5.0
TARGET_SECONDS = 60.0
MAX_REL_DIFF = 1e-8
PEERS = {"naive": "numpy, per-p refit", "blocks": "numpy, leading blocks of one p_max fit"}


def sizes(quick: bool) -> dict:
    if quick:
        return dict(d=50, psi_n=4.0, psi_p=np.linspace(16 / 20, 16, 20), ms=[1, 16], t=0.5, lam=1e-3, rho="relu")
    return dict(d=200, psi_n=4.0, psi_p=np.linspace(16 / 20, 16, 20), ms=[1, 16], t=0.5, lam=1e-3, rho="relu")


def run_bigstep(cfg):
    from bigstep import rf

    return rf.learning_curve(cfg["d"], cfg["psi_n"], cfg["psi_p"], cfg["t"], n_noise=cfg["ms"], rho=cfg["rho"],
                             lam=cfg["lam"], seed=[0])


def numpy_inputs(cfg, seed=0):
    """The draws rf.learning_curve(seed) makes, rebuilt from the documented streams."""
    import bigstep
    from bigstep import rf
    from bigstep.rf import _gaussian

    d = cfg["d"]
    n = max(1, int(round(cfg["psi_n"] * d)))  # as rf.learning_curve
    ps = [int(p) for p in np.maximum(1, np.rint(np.asarray(cfg["psi_p"]) * d).astype(np.int64))]
    x = bigstep.gaussian_noise(seed, (n, d), stream=rf.STREAM_DATA)
    W = bigstep.gaussian_noise(seed, (max(ps), d), stream=rf.STREAM_W)
    U, _ = _gaussian.population_gram(cfg["rho"], W)
    Cy = _gaussian.stein_rows(cfg["rho"], W)
    mu, delta = math.exp(-cfg["t"]), -math.expm1(-2 * cfg["t"])
    noisy = {}
    for m in cfg["ms"]:
        xi = bigstep.gaussian_noise(seed, (n * m, d), stream=rf.STREAM_NOISE)
        noisy[m] = (mu * np.repeat(x, m, axis=0) + math.sqrt(delta) * xi, xi)
    return dict(ps=ps, W=W, U=U, Cy=Cy, noisy=noisy, delta=delta)


def _test_loss(Z, inp, p, d):
    return (np.sum(Z * (inp["U"][:p, :p] @ Z)) - 2 * math.sqrt(inp["delta"]) * np.sum(Z * inp["Cy"][:p]) + d) / d


def run_numpy_naive(cfg, inp):
    from scipy import linalg

    d, lam = cfg["d"], cfg["lam"]
    out = {}
    for m, (Y, xi) in inp["noisy"].items():
        N = Y.shape[0]
        for p in inp["ps"]:
            F = np.maximum(Y @ inp["W"][:p].T / math.sqrt(d), 0.0)
            K = F.T @ F / N
            R = F.T @ xi / N
            Z = linalg.cho_solve(linalg.cho_factor(K + lam * np.eye(p)), R)
            res = xi - F @ Z
            train = (np.sum(res * res) / N + lam * np.sum(Z * Z)) / d
            out[(m, p)] = (train, _test_loss(Z, inp, p, d))
    return out


def run_numpy_blocks(cfg, inp):
    from scipy import linalg

    d, lam = cfg["d"], cfg["lam"]
    out = {}
    for m, (Y, xi) in inp["noisy"].items():
        N = Y.shape[0]
        F = np.maximum(Y @ inp["W"].T / math.sqrt(d), 0.0)  # N x p_max, once
        K = F.T @ F / N
        R = F.T @ xi / N
        xi2 = np.sum(xi * xi) / N
        del F
        for p in inp["ps"]:
            Kp, Rp = K[:p, :p], R[:p]
            Z = linalg.cho_solve(linalg.cho_factor(Kp + lam * np.eye(p)), Rp)
            train = (xi2 - 2 * np.sum(Z * Rp) + np.sum(Z * (Kp @ Z)) + lam * np.sum(Z * Z)) / d
            out[(m, p)] = (train, _test_loss(Z, inp, p, d))
    return out


def max_rel_diff(df, ref) -> tuple[float, float]:
    """(test, train): the largest relative difference of bigstep's losses from ``ref``."""
    rel = [max(abs(getattr(row, col) - ref[(row.n_noise, row.p)][j]) / abs(ref[(row.n_noise, row.p)][j])
               for row in df.itertuples()) for j, col in ((1, "test_loss"), (0, "train_loss"))]
    return rel[0], rel[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="d = 50 instead of 200")
    ap.add_argument("--out", type=Path, help="results JSON (default results/random_features_cpu[_quick].json)")
    args = ap.parse_args(argv)
    cfg = sizes(args.quick)
    out = args.out or RESULTS / f"random_features_cpu{'_quick' if args.quick else ''}.json"

    from bigstep import rf

    rf.learning_curve(8, 1.0, [1.0], 0.5, n_noise=[1])  # load / compile once
    load = _common.OtherLoad()
    t0 = time.perf_counter()
    df = run_bigstep(cfg)
    t_big = time.perf_counter() - t0
    load_big = load.share()

    inp = numpy_inputs(cfg)
    seconds, loads, rel = {}, {}, {}
    for key, fn in (("naive", run_numpy_naive), ("blocks", run_numpy_blocks)):
        load.reset()
        t0 = time.perf_counter()
        ref = fn(cfg, inp)
        seconds[key] = time.perf_counter() - t0
        loads[key] = load.share()
        rel[key] = max_rel_diff(df, ref)

    ratios = {key: seconds[key] / t_big for key in PEERS}
    best = min(PEERS, key=lambda key: seconds[key])
    speedup = ratios[best]
    rows = [dict(method="bigstep rf.learning_curve", seconds=f"{t_big:.2f}", ratio="1.0", rel_test="-", rel_train="-",
                 other_load=f"{load_big:.0%}")]
    rows += [dict(method=PEERS[key], seconds=f"{seconds[key]:.2f}", ratio=f"{ratios[key]:.1f}",
                  rel_test=f"{rel[key][0]:.1e}", rel_train=f"{rel[key][1]:.1e}", other_load=f"{loads[key]:.0%}")
             for key in PEERS]
    print(f"learning curve: d = {cfg['d']}, psi_n = {cfg['psi_n']}, 20 psi_p up to 16, m in {cfg['ms']}")
    print(_common.format_table(rows, [("method", "method"), ("seconds", "seconds"),
                                      ("ratio", "peer s / bigstep s"), ("rel_test", "rel. diff test loss"),
                                      ("rel_train", "rel. diff train loss"),
                                      ("other_load", "CPU used by other processes")]))
    worst = max(max(v) for v in rel.values())
    if not worst <= MAX_REL_DIFF:
        sys.exit(f"FAILED: bigstep and numpy disagree (largest relative difference of the losses {worst:.2e} > "
                 f"{MAX_REL_DIFF:g}): they do not solve the same problem or one is wrong; nothing written")
    print(f"speed target judged against the fastest equally accurate peer ({PEERS[best]}): "
          f"speedup {speedup:.1f}x (target {TARGET_SPEEDUP:g}x: {'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}); "
          f"vs per-p refit {ratios['naive']:.1f}x, vs leading blocks {ratios['blocks']:.1f}x; "
          f"bigstep {t_big:.1f} s (target < {TARGET_SECONDS:g} s: {'met' if t_big < TARGET_SECONDS else 'NOT met'})")
    try:
        import torch  # noqa: F401
        torch_note = "torch is importable but no torch peer is implemented here"
    except ImportError:
        torch_note = "torch not installed: no torch peer"
    payload = {
        "machine": _common.machine_info(),
        "threads": os.cpu_count(),
        "config": {k: (list(v) if isinstance(v, np.ndarray) else v) for k, v in cfg.items()},
        "streams": {"data": rf.STREAM_DATA, "weights": rf.STREAM_W, "noise": rf.STREAM_NOISE},
        "bigstep_seconds": t_big,
        "numpy_seconds": {PEERS[k]: seconds[k] for k in PEERS},
        "ratios": {PEERS[k]: ratios[k] for k in PEERS},
        "speedup": speedup, "speedup_judged_against": PEERS[best],
        "other_load_during": {"bigstep": load_big, **{PEERS[k]: loads[k] for k in PEERS}},
        "max_rel_diff": {PEERS[k]: {"test_loss": rel[k][0], "train_loss": rel[k][1]} for k in PEERS},
        "max_rel_diff_allowed": MAX_REL_DIFF,
        "targets": {"speedup": TARGET_SPEEDUP, "bigstep_seconds": TARGET_SECONDS},
        "meets_speedup": speedup >= TARGET_SPEEDUP, "meets_seconds": t_big < TARGET_SECONDS,
        "torch": torch_note,
    }
    print(f"wrote {_common.write_json(out, payload)}")


if __name__ == "__main__":
    main()
