"""Side-by-side CPU timing of the sample-quality metrics against chunked numpy and torch.

MMD section: squared MMD (biased V-statistic) with the Gaussian kernel
k(u, v) = exp(-||u - v||^2 / (2 h^2)), h = 1, between two samples of N = M = 20,000 points
in d = 2 (``--quick``: 5,000), float64 and float32 inputs:

    MMD^2 = mean_{i,j} k(a_i, a_j) + mean_{i,j} k(b_i, b_j) - 2 mean_{i,j} k(a_i, b_j).

Methods, on the same inputs in one process, each at its best setting:
- bigstep (cpp, numba): one streaming call, 2 threads (every core); the aa and bb sums are
  taken over one triangle of tiles, so it evaluates N^2/2 + M^2/2 + N M kernel values;
- numpy, chunked: row blocks of ``rows`` x M, in two variants, the best kept:
  "diff" (squared distances coordinate by coordinate, exact) and "gemm" (||u||^2 + ||v||^2 -
  2 u.v through BLAS, clamped at 0), then ``np.exp(out=)`` and a sum; blocks run in a pool of
  as many threads as cores (numpy releases the GIL), block sizes of ROWS rows tried (the
  best of 256..4096 rows in a --quick sweep), the best kept;
- torch CPU, chunked: the same two variants with torch ops (intra-op threads = cores), block
  sizes tried the same way.
Peers evaluate the full N^2 + M^2 + N M kernel values (the usual implementation).  Ratios
are reported both as wall time (what a user waits) and per kernel value evaluated
("pairs/s"), which removes bigstep's factor from symmetry.

Accuracy: each method's MMD^2 is compared with bigstep's float64 value (itself tested against
an O(N^2) numpy reference in tests/test_metrics.py); the error is absolute (MMD^2 is a
difference of means of values in [0, 1]).

Usage:  python benchmarks/compare_metrics.py [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np

try:
    from . import _common  # imported by asv's discovery as part of the benchmarks package
except ImportError:  # run as a script
    import _common

RESULTS = Path(__file__).resolve().parent / "results"
BANDWIDTH = 1.0
ROWS = (256, 1024)
ROWS_QUICK = (128, 256, 1024, 4096)
TARGET = 5.0


# --------------------------------------------------------------------------- peers


def numpy_kernel_sum(x, y, h, rows, threads, variant):
    """sum_{i,j} k(x_i, y_j) over row blocks of x (each block a rows x M matrix)."""
    neg = -1.0 / (2 * h * h)
    yn = (y * y).sum(1)

    def block(xc):
        if variant == "gemm":
            r2 = xc @ y.T
            r2 *= -2.0
            r2 += (xc * xc).sum(1)[:, None]
            r2 += yn[None, :]
            np.maximum(r2, 0, out=r2)
        else:
            r2 = np.subtract.outer(xc[:, 0], y[:, 0])
            r2 *= r2
            for k in range(1, x.shape[1]):
                e = np.subtract.outer(xc[:, k], y[:, k])
                e *= e
                r2 += e
        r2 *= neg
        np.exp(r2, out=r2)
        return np.array([r2.sum(dtype=np.float64)])

    return float(_common.chunked(block, x, rows, threads).sum())


def torch_kernel_sum(x, y, h, rows, variant):
    import torch

    neg = -1.0 / (2 * h * h)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    yn = (ty * ty).sum(1)
    total = 0.0
    with torch.no_grad():
        for a in range(0, len(tx), rows):
            xc = tx[a:a + rows]
            if variant == "gemm":
                r2 = torch.addmm(yn[None, :], xc, ty.T, alpha=-2.0).add_((xc * xc).sum(1)[:, None]).clamp_(min=0)
            else:
                r2 = torch.cdist(xc, ty, compute_mode="donot_use_mm_for_euclid_dist").square_()
            total += float(r2.mul_(neg).exp_().sum(dtype=torch.float64))
    return total


def mmd2_from(ksum, a, b):
    n, m = len(a), len(b)
    return ksum(a, a) / n**2 + ksum(b, b) / m**2 - 2 * ksum(a, b) / (n * m)


# --------------------------------------------------------------------------- run


def run_mmd(quick: bool, attempts: int) -> dict:
    import bigstep

    threads = os.cpu_count() or 1
    n = 5_000 if quick else 20_000
    d = 2
    rng = np.random.default_rng(0)
    a64 = rng.standard_normal((n, d))
    b64 = 1.1 * rng.standard_normal((n, d)) + 0.1
    pairs_bigstep = n * n / 2 + n * n / 2 + n * n
    pairs_peer = 3.0 * n * n
    repeat = 2
    rows_out = []
    for dtype in ("float64", "float32"):
        a, b = a64.astype(dtype), b64.astype(dtype)
        ref_backend = "cpp" if _common.bigstep_backend_error("cpp") is None else "numba"
        exact = bigstep.mmd2(a, b, bandwidth=BANDWIDTH, backend=ref_backend)
        methods = {}
        for backend in ("cpp", "numba"):
            if _common.bigstep_backend_error(backend) is not None:
                continue
            bigstep.set_num_threads(threads)
            fn = lambda backend=backend: bigstep.mmd2(a, b, bandwidth=BANDWIDTH, backend=backend)  # noqa: E731
            methods[f"bigstep-{backend}"] = (fn, pairs_bigstep)
        for variant in ("diff", "gemm"):
            for rows in (ROWS_QUICK if quick else ROWS):
                fn = lambda rows=rows, variant=variant: mmd2_from(  # noqa: E731
                    lambda x, y: numpy_kernel_sum(x, y, BANDWIDTH, rows, threads, variant), a, b)
                methods[f"numpy-{variant}-r{rows}"] = (fn, pairs_peer)
        if _common.package_version("torch") is not None:
            for variant in ("diff", "gemm"):
                for rows in (ROWS_QUICK if quick else ROWS):
                    def fn(rows=rows, variant=variant):
                        with _common.torch_threads(threads):
                            return mmd2_from(lambda x, y: torch_kernel_sum(x, y, BANDWIDTH, rows, variant), a, b)
                    methods[f"torch-{variant}-r{rows}"] = (fn, pairs_peer)
        for name, (fn, pairs) in methods.items():
            value = fn()  # also the warm-up (numba compilation, thread pools)
            timing, load = _common.when_quiet(lambda fn=fn: _common.timed(fn, repeat=repeat, warmup=False),
                                              what=f"{name} {dtype}", attempts=attempts)
            rows_out.append({"dtype": dtype, "method": name, "seconds": timing.best, "pairs_per_s": pairs / timing.best,
                             "mmd2": value, "abs_error": abs(value - exact), "other_load": load})
            print(f"  {dtype:8s} {name:22s} {timing.best:9.4f} s  {pairs / timing.best:9.3g} pairs/s  "
                  f"err {abs(value - exact):.1e}", flush=True)
    summary = {}
    for dtype in ("float64", "float32"):
        mine = [r for r in rows_out if r["dtype"] == dtype and r["method"] == "bigstep-cpp"] or \
               [r for r in rows_out if r["dtype"] == dtype and r["method"] == "bigstep-numba"]
        best = {}
        for lib in ("numpy", "torch"):
            cands = [r for r in rows_out if r["dtype"] == dtype and r["method"].startswith(lib)]
            if cands:
                best[lib] = min(cands, key=lambda r: r["seconds"])
        if not mine or not best:
            continue
        fastest_peer = min(best.values(), key=lambda r: r["seconds"])
        summary[dtype] = {
            "bigstep": mine[0]["method"], "bigstep_seconds": mine[0]["seconds"],
            "best_peer": fastest_peer["method"], "best_peer_seconds": fastest_peer["seconds"],
            "speedup_wall": fastest_peer["seconds"] / mine[0]["seconds"],
            "speedup_per_pair": mine[0]["pairs_per_s"] / fastest_peer["pairs_per_s"],
            "per_peer_wall": {lib: r["seconds"] / mine[0]["seconds"] for lib, r in best.items()},
            "target_wall": TARGET, "meets_target": fastest_peer["seconds"] / mine[0]["seconds"] >= TARGET,
        }
    return {"n": n, "m": n, "d": d, "bandwidth": BANDWIDTH, "threads": threads, "rows": rows_out,
            "summary": summary}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = M = 5,000 and fewer repeats")
    ap.add_argument("--attempts", type=int, help="measurements of a figure while others load the CPU (default 1)")
    ap.add_argument("--out", type=Path, help="results JSON (default results/metrics_cpu[_quick].json)")
    args = ap.parse_args(argv)
    out = args.out or RESULTS / f"metrics_cpu{'_quick' if args.quick else ''}.json"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="nopython is set")
        print("MMD^2, Gaussian kernel h = 1, d = 2")
        mmd = run_mmd(args.quick, args.attempts or 1)
    print()
    for dtype, s in mmd["summary"].items():
        peers = ", ".join(f"{lib} {r:.1f}x" for lib, r in s["per_peer_wall"].items())
        print(f"{dtype}: {s['bigstep']} {s['bigstep_seconds']:.3f} s; best peer {s['best_peer']} "
              f"{s['best_peer_seconds']:.3f} s; speedup {s['speedup_wall']:.1f}x wall ({peers}), "
              f"{s['speedup_per_pair']:.1f}x per pair; target {TARGET:g}x: "
              f"{'met' if s['meets_target'] else 'NOT met'}")
    payload = {"machine": _common.machine_info(), "mmd": mmd}
    print(f"\nwrote {_common.write_json(out, payload)}")


if __name__ == "__main__":
    main()
