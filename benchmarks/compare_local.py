"""Side-by-side CPU timing of bigstep.local against the best torch routes.

    local:        E_u = sum_i w_i(u) x_i(u),      w_i(u) = softmax_i(-|y[Omega_u] - mu x_i[Omega_u]|^2 / (2 sigma^2))
    equivariant:  E_u = sum_{i,v} w_{i,v}(u) x_i(v)  (every position v of every image competes)

Cases (issue 18): scikit-learn's digits, n = 1,797 images of 8 x 8, q = 256 queries,
P in {3, 5}; synthetic 32 x 32 x 3 images, n = 5,000, q = 16, P in {3, 5, 7}; both
machines, float32 and float64, zero padding, mu = 0.9, sigma = 0.5, each query a noised
training image mu x_i + sigma xi.

Methods, on the same inputs in one process, 2 threads each:
- bigstep cpp: box sums of per-pixel squared differences per shift, online softmax per
  pixel (docs/local.md);
- torch unfold+bmm (local): the patches of every pixel unfolded, one batched matmul per
  pixel over chunks of training images (GEMM-form logits), online softmax over chunks;
- torch box sums (local): per-pixel squared differences (q, n_chunk, H, W), box sums by
  avg_pool2d (difference form, the algorithm bigstep uses, in torch operations);
- torch conv2d (equivariant): the training patches as conv2d filters over the queries,
  chunked over filters (GEMM form), online softmax over chunks;
- torch unfold+matmul (equivariant): all query patches times all training patches,
  chunked over training patches (GEMM form), online softmax over chunks.
Every torch route keeps an exact online softmax across chunks (running max per query
pixel, rescaled sums), so all methods compute the same numbers.

Accuracy: each result on the first REF_QUERIES queries against bigstep cpp float64 (itself
checked against 50-digit mpmath in tests/test_local.py), error = max |E - E_ref| / max |E_ref|.
A method is accurate at a dtype when error <= TOL[dtype]; "@acc" compares bigstep at a
dtype with the fastest torch route (any dtype) accurate to that dtype's tolerance.

Where a torch route would take too long at full size (equivariant synthetic), it is
timed on 1 and 2 queries and its time at q is extrapolated as t(1) + (q - 1)(t(2) - t(1))
(its cost is affine in q: the training patches are unfolded once per call); the row says
so.  Peak memory: the largest resident set size (sampled every 5 ms) above the level
before the call.  Rounds are interleaved (every method once per round); the best round
counts.  The machine may be shared: each row records the share of CPU time other
processes took during it.

Usage:  python benchmarks/compare_local.py [--quick] [--rounds 2] [--isa avx2] [--machine NAME] [--only TEXT] [--dtype float32] [--out PATH]
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

try:
    from . import _common  # imported by asv's discovery as part of the benchmarks package
except ImportError:  # run as a script
    import _common

MU, SIGMA = 0.9, 0.5
TOL = {"float32": 1e-4, "float64": 1e-9}
DTYPES = ("float32", "float64")
REF_QUERIES = 2
THREADS = 2
BUDGET = 1 << 25  # elements of the largest torch temporary per chunk (128 MB float32)
RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    data: str  # "digits" or "synthetic"
    n: int
    shape: tuple  # (H, W, C)
    q: int
    patch: int
    equivariant: bool

    @property
    def name(self) -> str:
        H, W, C = self.shape
        machine = "equivariant" if self.equivariant else "local"
        return f"{self.data} {H}x{W}x{C} n={self.n} q={self.q} P={self.patch} {machine}"

    @property
    def pairs(self) -> float:
        """(query pixel, training term) pairs: q H W n (local) or q (H W)^2 n (equivariant)."""
        hw = self.shape[0] * self.shape[1]
        return float(self.q) * hw * self.n * (hw if self.equivariant else 1)


def make_cases(quick: bool) -> list[Case]:
    if quick:
        sizes = [("digits", 1797, (8, 8, 1), 32, (3, 5)), ("synthetic", 500, (32, 32, 3), 4, (3, 7))]
    else:
        sizes = [("digits", 1797, (8, 8, 1), 256, (3, 5)), ("synthetic", 5000, (32, 32, 3), 16, (3, 5, 7))]
    return [Case(data, n, shape, q, P, eq) for data, n, shape, q, patches in sizes for P in patches
            for eq in (False, True)]


def make_data(case: Case, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(x (n, H, W, C), y (q, H, W, C), description), float64."""
    rng = np.random.default_rng(seed)
    H, W, C = case.shape
    if case.data == "digits":
        try:
            from sklearn.datasets import load_digits

            x = (load_digits().images / 8.0 - 1.0)[: case.n, :, :, None]
            what = "sklearn.datasets.load_digits, x / 8 - 1"
        except ImportError:
            x = np.tanh(rng.standard_normal((case.n, H, W, C)))
            what = "scikit-learn missing: tanh of standard normal 8x8 images"
    else:
        x = rng.standard_normal((case.n, H, W, C))
        what = "standard normal pixels"
    pick = rng.integers(0, case.n, case.q)
    y = MU * x[pick] + SIGMA * rng.standard_normal((case.q, H, W, C))
    return np.ascontiguousarray(x), np.ascontiguousarray(y), what


# --------------------------------------------------------------------------- torch routes


def _nchw(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def _pad(t, r):
    import torch.nn.functional as F

    return F.pad(t, (r, r, r, r))


class _Online:
    """Exact online softmax over chunks: running max m, sum s, accumulators acc, with the
    logits l of a chunk along axis `axis` and values by `weighted(p)`."""

    def __init__(self, shape_m, shape_acc, dtype):
        import torch

        self.m = torch.full(shape_m, -math.inf, dtype=dtype)
        self.s = torch.zeros(shape_m, dtype=dtype)
        self.acc = torch.zeros(shape_acc, dtype=dtype)

    def push(self, l, axis, weighted: Callable):
        import torch

        mn = torch.maximum(self.m, l.amax(axis, keepdim=True))
        f = torch.exp(self.m - mn)
        p = torch.exp(l - mn)
        self.s = self.s * f + p.sum(axis, keepdim=True)
        self.acc = self.acc * f + weighted(p)
        self.m = mn


def torch_local_unfold(y, x, mu, sigma, P):
    """Per-pixel batched matmul of unfolded patches (GEMM form), chunks of training images."""
    import torch
    import torch.nn.functional as F

    yt, xt = _nchw(y), _nchw(x)
    q, C, H, W = yt.shape
    n, r, HW, K = xt.shape[0], P // 2, H * W, C * P * P
    yu = F.unfold(_pad(yt, r), P).permute(2, 0, 1).contiguous()  # (HW, q, K)
    a, c = mu / sigma**2, mu**2 / (2 * sigma**2)
    state = _Online((HW, q, 1), (HW, q, C), yt.dtype)
    chunk = max(1, BUDGET // (HW * max(K, q)))
    for i0 in range(0, n, chunk):
        xc = xt[i0:i0 + chunk]
        xu = F.unfold(_pad(xc, r), P).permute(2, 1, 0)  # (HW, K, nc)
        l = torch.baddbmm((-c) * (xu * xu).sum(1, keepdim=True), yu, xu, alpha=a)  # (HW, q, nc)
        centres = xc.permute(2, 3, 0, 1).reshape(HW, -1, C)
        state.push(l, 2, lambda p: torch.bmm(p, centres))
    return (state.acc / state.s).permute(1, 0, 2).reshape(q, H, W, C).numpy()


def torch_local_box(y, x, mu, sigma, P):
    """Per-pixel squared differences, box sums by avg_pool2d (difference form)."""
    import torch
    import torch.nn.functional as F

    yt, xt = _nchw(y), _nchw(x)
    q, C, H, W = yt.shape
    n, r = xt.shape[0], P // 2
    state = _Online((q, 1, H, W), (q, C, H, W), yt.dtype)
    chunk = max(1, BUDGET // (q * C * H * W))
    for i0 in range(0, n, chunk):
        xc = xt[i0:i0 + chunk]
        nc = xc.shape[0]
        e = (yt[:, None] - mu * xc[None]).square_().sum(2)  # (q, nc, H, W)
        d = F.avg_pool2d(_pad(e.reshape(q * nc, 1, H, W), r), P, stride=1).reshape(q, nc, H, W)
        l = d.mul_(-P * P / (2 * sigma**2))
        state.push(l, 1, lambda p: (p[:, :, None] * xc[None]).sum(1))
    return (state.acc / state.s).permute(0, 2, 3, 1).numpy()


def _training_patches(xt, P):
    """(n H W, C, P, P) patches of the zero-padded training images and their centres (n H W, C)."""
    import torch.nn.functional as F

    n, C, H, W = xt.shape
    patches = F.unfold(_pad(xt, P // 2), P).permute(0, 2, 1).reshape(n * H * W, C, P, P)
    return patches, xt.permute(0, 2, 3, 1).reshape(n * H * W, C)


def torch_equivariant_conv(y, x, mu, sigma, P):
    """conv2d of the queries with the training patches as filters (GEMM form), chunks of filters."""
    import torch
    import torch.nn.functional as F

    yt, xt = _nchw(y), _nchw(x)
    q, C, H, W = yt.shape
    yp = _pad(yt, P // 2)
    a, c = mu / sigma**2, mu**2 / (2 * sigma**2)
    state = _Online((q, H, W, 1), (q, H, W, C), yt.dtype)
    per_image = H * W
    images = max(1, BUDGET // (q * H * W * per_image))
    for i0 in range(0, xt.shape[0], images):
        filters, centres = _training_patches(xt[i0:i0 + images], P)
        l = F.conv2d(yp, filters).permute(0, 2, 3, 1)  # (q, H, W, k)
        l = l.mul_(a).sub_(c * (filters * filters).sum((1, 2, 3)))
        state.push(l, 3, lambda p: p @ centres)
    return (state.acc / state.s).numpy()


def torch_equivariant_unfold(y, x, mu, sigma, P):
    """All query patches times all training patches (GEMM form), chunks of training images."""
    import torch
    import torch.nn.functional as F

    yt, xt = _nchw(y), _nchw(x)
    q, C, H, W = yt.shape
    yu = F.unfold(_pad(yt, P // 2), P).permute(0, 2, 1).reshape(q * H * W, -1)
    a, c = mu / sigma**2, mu**2 / (2 * sigma**2)
    state = _Online((q * H * W, 1), (q * H * W, C), yt.dtype)
    images = max(1, BUDGET // (q * H * W * H * W))
    for i0 in range(0, xt.shape[0], images):
        patches, centres = _training_patches(xt[i0:i0 + images], P)
        xu = patches.reshape(len(patches), -1)
        l = torch.addmm((-c) * (xu * xu).sum(1), yu, xu.T, alpha=a)
        state.push(l, 1, lambda p: p @ centres)
    return (state.acc / state.s).reshape(q, H, W, C).numpy()


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    """``run(y, x, case)`` returns E (q, H, W, C) in y's dtype."""

    name: str
    run: Callable
    machines: tuple = (False, True)  # equivariant values it handles
    peer: bool = True
    subset: Callable[[Case], bool] = lambda case: False  # time on 1 and 2 queries, extrapolate


def _bigstep_run(y, x, case):
    import bigstep

    bigstep.set_num_threads(THREADS)
    return bigstep.local.posterior_mean(y, x, MU, SIGMA, patch=case.patch, equivariant=case.equivariant,
                                        backend="cpp")


def _torch(fn):
    def run(y, x, case):
        import torch

        with _common.torch_threads(THREADS), torch.inference_mode():
            return fn(y, x, y.dtype.type(MU), y.dtype.type(SIGMA), case.patch)

    return run


def _big_equivariant(case: Case) -> bool:
    return case.equivariant and case.pairs * case.patch**2 * case.shape[2] > 2e12


def make_methods() -> list[Method]:
    return [
        Method("bigstep cpp", _bigstep_run, peer=False),
        Method("torch unfold+bmm", _torch(torch_local_unfold), machines=(False,)),
        Method("torch box sums", _torch(torch_local_box), machines=(False,)),
        Method("torch conv2d", _torch(torch_equivariant_conv), machines=(True,), subset=_big_equivariant),
        Method("torch unfold+matmul", _torch(torch_equivariant_unfold), machines=(True,), subset=_big_equivariant),
    ]


# --------------------------------------------------------------------------- measuring


class PeakRSS:
    """Peak resident set size (MB) above the level at entry, sampled every 5 ms."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mb(self) -> float:
        return self.peak - self.base

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> float:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return float(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")


def measure_once(method: Method, case: Case, y, x) -> dict:
    """One timed call (or two, on 1 and 2 queries, for a subset method)."""
    load = _common.OtherLoad()
    if method.subset(case):
        times, peak = [], 0.0
        for rows in (1, 2):
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                out = method.run(y[:rows], x, case)
                times.append(time.perf_counter() - t0)
            peak = max(peak, mem.mb)
        seconds = times[0] + (case.q - 1) * max(times[1] - times[0], 0.0)
        return dict(seconds=seconds, out=out, q_timed="1, 2 (extrapolated)", peak_mb=peak, other_load=load.share())
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = method.run(y, x, case)
        seconds = time.perf_counter() - t0
    return dict(seconds=seconds, out=out, q_timed=case.q, peak_mb=mem.mb, other_load=load.share())


def error(out, ref) -> float:
    out = np.asarray(out, dtype=np.float64)[: len(ref)]
    return float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))


def run_all(cases, methods, rounds: int, progress=lambda line: print(line, flush=True), dtypes=DTYPES) -> list[dict]:
    data = {}
    for case in cases:
        x, y, what = make_data(case)
        ref = _bigstep_run(y[:REF_QUERIES], x, case)
        data[case] = (x, y, what, ref)
    best: dict[tuple, dict] = {}
    for rnd in range(rounds):  # interleaved: every method once per round
        for case in cases:
            x64, y64, what, ref = data[case]
            for dtype in dtypes:
                x, y = x64.astype(dtype), y64.astype(dtype)
                for method in methods:
                    if case.equivariant not in method.machines:
                        continue
                    r = measure_once(method, case, y, x)
                    key = (case, dtype, method.name)
                    row = dict(case=case.name, data=what, dtype=dtype, method=method.name, peer=method.peer,
                               seconds=r["seconds"], q_timed=r["q_timed"], peak_mb=r["peak_mb"],
                               other_load=r["other_load"], error=error(r["out"], ref), pairs=case.pairs,
                               rounds=[r["seconds"]])
                    if key in best:
                        row["rounds"] = best[key]["rounds"] + [r["seconds"]]
                        if best[key]["seconds"] <= r["seconds"]:
                            best[key]["rounds"] = row["rounds"]
                            continue
                    best[key] = row
                    progress(f"round {rnd + 1} {case.name} {dtype} {method.name}: {r['seconds']:.3f} s, "
                             f"peak +{r['peak_mb']:.0f} MB, error {row['error']:.2g}, other load "
                             f"{r['other_load']:.0%}")
    return list(best.values())


def annotate(rows: list[dict]) -> list[dict]:
    """Per case and dtype: bigstep's ratio to the fastest torch route and to the fastest
    torch route accurate to the dtype's tolerance (any dtype)."""
    summary = []
    for case in sorted({r["case"] for r in rows}, key=lambda c: [r["case"] for r in rows].index(c)):
        part = [r for r in rows if r["case"] == case]
        for dt in DTYPES:
            base = next((r for r in part if not r["peer"] and r["dtype"] == dt), None)
            if base is None:
                continue
            base["accurate"] = base["error"] <= TOL[dt]
            peers = [r for r in part if r["peer"]]
            same = [r for r in peers if r["dtype"] == dt]
            accurate = [r for r in peers if r["error"] <= TOL[dt]]
            entry = dict(case=case, dtype=dt, bigstep_seconds=base["seconds"], bigstep_peak_mb=base["peak_mb"],
                         bigstep_error=base["error"])
            for key, pool in (("best_torch_same_dtype", same), ("best_torch_equal_accuracy", accurate)):
                if pool:
                    b = min(pool, key=lambda r: r["seconds"])
                    entry[key] = dict(method=b["method"], dtype=b["dtype"], seconds=b["seconds"], peak_mb=b["peak_mb"],
                                      error=b["error"], q_timed=b["q_timed"], ratio=b["seconds"] / base["seconds"])
            summary.append(entry)
    return summary


COLUMNS = [("case", "case"), ("dtype", "dtype"), ("method", "method"), ("secs", "seconds"), ("q", "q timed"),
           ("rate", "pairs/s"), ("mem", "peak MB"), ("err", "error"), ("load", "other load")]


def table(rows: list[dict]) -> str:
    out = []
    for r in rows:
        out.append(dict(case=r["case"], dtype=r["dtype"], method=r["method"], secs=f"{r['seconds']:.3g}",
                        q=str(r["q_timed"]), rate=f"{r['pairs'] / r['seconds']:.3g}", mem=f"{r['peak_mb']:.0f}",
                        err=f"{r['error']:.2g}", load=f"{r['other_load']:.0%}"))
    return _common.format_table(out, COLUMNS)


def summary_table(summary: list[dict]) -> str:
    out = []
    for s in summary:
        same, acc = s.get("best_torch_same_dtype"), s.get("best_torch_equal_accuracy")
        out.append(dict(case=s["case"], dtype=s["dtype"], bigstep=f"{s['bigstep_seconds']:.3g} s",
                        mem=f"{s['bigstep_peak_mb']:.0f}",
                        same="-" if not same else f"{same['method']} {same['seconds']:.3g} s ({same['peak_mb']:.0f} MB)",
                        r1="-" if not same else f"{same['ratio']:.1f}x",
                        acc="-" if not acc else f"{acc['method']} {acc['dtype']}",
                        r2="-" if not acc else f"{acc['ratio']:.1f}x"))
    return _common.format_table(out, [("case", "case"), ("dtype", "dtype"), ("bigstep", "bigstep"),
                                      ("mem", "peak MB"), ("same", "best torch, same dtype"), ("r1", "ratio"),
                                      ("acc", "best torch @acc"), ("r2", "ratio @acc")])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--isa", default=None,
                        help="run bigstep's kernels under this instruction set (one of bigstep._core.available_isas(); "
                             "a build without BIGSTEP_NATIVE has baseline, avx2 and avx512); default: the best runnable")
    parser.add_argument("--machine", default=None, help="a name for the machine, stored in the results")
    parser.add_argument("--only", action="append", default=None, metavar="TEXT",
                        help="run only the cases whose name contains TEXT (repeatable: any of them), e.g. "
                             "'digits', 'P=3 local'")
    parser.add_argument("--dtype", action="append", choices=DTYPES, default=None,
                        help="run only this dtype (repeatable; default both): the equivariant 32x32x3 torch routes "
                             "take about 3 min per query in float32 on 2 cores, twice that in float64")
    args = parser.parse_args(argv)
    if _common.package_version("torch") is None:
        print("torch is not installed: nothing to compare with")
        return 1
    from bigstep import _core

    if args.isa is not None and not _core.set_isa(args.isa):
        print(f"ISA {args.isa!r} is not available here (available: {_core.available_isas()})")
        return 1
    isa = _core.simd_level()
    start = time.perf_counter()
    cases = [c for c in make_cases(args.quick) if not args.only or any(t in c.name for t in args.only)]
    if not cases:
        print(f"no case matches {args.only}: " + "; ".join(c.name for c in make_cases(args.quick)))
        return 1
    rows = run_all(cases, make_methods(), args.rounds, dtypes=tuple(args.dtype or DTYPES))
    summary = annotate(rows)
    print(table(rows))
    print()
    print(summary_table(summary))
    suffix = ("_quick" if args.quick else "") + (f"_{args.isa}" if args.isa else "")
    out = Path(args.out) if args.out else RESULTS / f"local_cpu{suffix}.json"
    _common.write_json(out, {"machine": _common.machine_info(), "machine_name": args.machine, "isa": isa,
                             "threads": THREADS, "mu": MU, "sigma": SIGMA,
                             "tolerance": TOL, "rounds": args.rounds, "only": args.only,
                             "dtypes": list(args.dtype or DTYPES), "rows": rows, "summary": summary,
                             "note": "the machine is shared with other agents: see other_load per row",
                             "seconds": time.perf_counter() - start})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
