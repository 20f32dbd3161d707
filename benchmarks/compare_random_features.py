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
- numpy (plain): per (m, p), features F = relu(Y W_p^T / sqrt(d)) (N x p, in memory), K = F^T F
  and R = F^T xi through BLAS, Cholesky solve, train loss from the residuals, test loss from
  the same closed form.  Given for free: the noisy inputs Y and noise xi, the weights and
  the population matrices U, E[f y^T] at p_max (sliced per p).
- torch: timed only if importable (not installed in the venv this file was run in).

Accuracy: the largest relative difference of the test losses of the two methods.
Usage:  python benchmarks/compare_random_features.py [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import math
import os
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


def sizes(quick: bool) -> dict:
    if quick:
        return dict(d=50, psi_n=4.0, psi_p=np.linspace(16 / 20, 16, 20), ms=[1, 16], t=0.5, lam=1e-3, rho="relu")
    return dict(d=200, psi_n=4.0, psi_p=np.linspace(16 / 20, 16, 20), ms=[1, 16], t=0.5, lam=1e-3, rho="relu")


def run_bigstep(cfg):
    from bigstep import rf

    return rf.learning_curve(cfg["d"], cfg["psi_n"], cfg["psi_p"], cfg["ms"], cfg["t"], cfg["lam"], cfg["rho"],
                             seeds=[0])


def numpy_inputs(cfg):
    import bigstep
    from bigstep.rf import _gaussian

    d = cfg["d"]
    n = round(cfg["psi_n"] * d)
    ps = [max(1, round(v * d)) for v in cfg["psi_p"]]
    x = bigstep.gaussian_noise(0, (n, d), stream=8)
    W = bigstep.gaussian_noise(0, (max(ps), d), stream=6)
    U, _ = _gaussian.population_gram(cfg["rho"], W)
    Cy = _gaussian.stein_rows(cfg["rho"], W)
    mu, delta = math.exp(-cfg["t"]), -math.expm1(-2 * cfg["t"])
    noisy = {}
    for m in cfg["ms"]:
        xi = bigstep.gaussian_noise(0, (n * m, d), stream=7)
        noisy[m] = (mu * np.repeat(x, m, axis=0) + math.sqrt(delta) * xi, xi)
    return dict(ps=ps, W=W, U=U, Cy=Cy, noisy=noisy, delta=delta)


def run_numpy(cfg, inp):
    from scipy import linalg

    d, lam, delta = cfg["d"], cfg["lam"], inp["delta"]
    out = {}
    for m, (Y, xi) in inp["noisy"].items():
        N = Y.shape[0]
        for p in inp["ps"]:
            W = inp["W"][:p]
            F = np.maximum(Y @ W.T / math.sqrt(d), 0.0)
            K = F.T @ F / N
            R = F.T @ xi / N
            Z = linalg.cho_solve(linalg.cho_factor(K + lam * np.eye(p)), R)
            res = xi - F @ Z
            train = (np.sum(res * res) / N + lam * np.sum(Z * Z)) / d
            test = (np.sum(Z * (inp["U"][:p, :p] @ Z)) - 2 * math.sqrt(delta) * np.sum(Z * inp["Cy"][:p]) + d) / d
            out[(m, p)] = (train, test)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="d = 50 instead of 200")
    ap.add_argument("--out", type=Path, help="results JSON (default results/random_features_cpu[_quick].json)")
    args = ap.parse_args(argv)
    cfg = sizes(args.quick)
    out = args.out or RESULTS / f"random_features_cpu{'_quick' if args.quick else ''}.json"

    from bigstep import rf

    rf.learning_curve(8, 1.0, [1.0], [1], 0.5)  # load / compile once
    load = _common.OtherLoad()
    t0 = time.perf_counter()
    df = run_bigstep(cfg)
    t_big = time.perf_counter() - t0
    load_big = load.share()

    inp = numpy_inputs(cfg)
    load.reset()
    t0 = time.perf_counter()
    ref = run_numpy(cfg, inp)
    t_np = time.perf_counter() - t0
    load_np = load.share()

    rel = max(abs(row.test_loss - ref[(row.m, row.p)][1]) / abs(ref[(row.m, row.p)][1]) for row in df.itertuples())
    rel_train = max(abs(row.train_loss - ref[(row.m, row.p)][0]) / abs(ref[(row.m, row.p)][0])
                    for row in df.itertuples())
    speedup = t_np / t_big
    rows = [dict(method="bigstep rf.learning_curve", seconds=f"{t_big:.2f}", other_load=f"{load_big:.0%}"),
            dict(method="numpy, per-p fit", seconds=f"{t_np:.2f}", other_load=f"{load_np:.0%}")]
    print(f"learning curve: d = {cfg['d']}, psi_n = {cfg['psi_n']}, 20 psi_p up to 16, m in {cfg['ms']}")
    print(_common.format_table(rows, [("method", "method"), ("seconds", "seconds"),
                                      ("other_load", "CPU used by other processes")]))
    print(f"speedup {speedup:.1f}x (target {TARGET_SPEEDUP:g}x: {'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}); "
          f"bigstep {t_big:.1f} s (target < {TARGET_SECONDS:g} s: {'met' if t_big < TARGET_SECONDS else 'NOT met'}); "
          f"max relative difference of the losses: test {rel:.1e}, train {rel_train:.1e}")
    try:
        import torch  # noqa: F401
        torch_note = "torch is importable but no torch peer is implemented here"
    except ImportError:
        torch_note = "torch not installed: no torch peer"
    payload = {
        "machine": _common.machine_info(),
        "threads": os.cpu_count(),
        "config": {k: (list(v) if isinstance(v, np.ndarray) else v) for k, v in cfg.items()},
        "bigstep_seconds": t_big, "numpy_seconds": t_np, "speedup": speedup,
        "other_load_during": {"bigstep": load_big, "numpy": load_np},
        "max_rel_diff_test_loss": rel, "max_rel_diff_train_loss": rel_train,
        "targets": {"speedup": TARGET_SPEEDUP, "bigstep_seconds": TARGET_SECONDS},
        "meets_speedup": speedup >= TARGET_SPEEDUP, "meets_seconds": t_big < TARGET_SECONDS,
        "torch": torch_note,
    }
    print(f"wrote {_common.write_json(out, payload)}")


if __name__ == "__main__":
    main()
