"""Side-by-side CPU timing of the empirical optimal score s* against its peers.

    s*(y) = (mu sum_i w_i x_i - y) / sigma^2,   w = softmax_i(-||y - mu x_i||^2 / (2 sigma^2))

Methods, on the same inputs in one process, each at its best thread setting:
bigstep's pairwise kernels (cpp, numba; 2 threads; method="pairwise", the fast Gauss
transform has its own cases, --fgt), numpy (chunked stable softmax), scipy.special.logsumexp,
torch (cdist + softmax; scaled_dot_product_attention with the per-key bias as attn_mask)
and pykeops (LazyTensor sumsoftmaxweight) where it runs.

Ceilings, measured in the same run: vectorised exp throughput (np.exp, torch.exp and
bigstep's own vectorised exp on cache-resident chunks, in as many threads as cores; the
best) for 1-D data, one exp per pair; GEMM FLOP/s (numpy and torch, the best) for d-D data,
counting 4 d flops per pair (2 d for the logits, 2 d for the weighted sum).  A kernel that needs fewer than one exp per pair (or
skips pairs whose weight underflows, as bigstep does at small sigma) can exceed 1.

Accuracy: every method's s* on the first R queries is compared with an extended-precision
(np.longdouble) reference at the same (dtype-rounded) inputs, which is itself checked against
mpmath on a few queries, by the tests' conditioning-aware measure (bigstep._errors, imported by
tests/tolerances.py too; _common.score_error_units): error = max_j |s_j - r_j| / allowed_j, the
error in units of the bound the tests allow at that dtype (which counts what one rounding of
the inputs does to s*, so a query in a transition layer between two data points, where s*
crosses zero, is not mistaken for an inaccurate kernel).  A method is "accurate" when
error <= 1; the "@acc" ratio compares bigstep at a dtype with the fastest variant (any dtype)
of the peer that is accurate by that dtype's bound.

bigstep runs every query; peers, whose cost is exactly linear in the number of queries, run
the first q_timed queries (enough for about --seconds per call) against all n data points.

Usage:  python benchmarks/compare_optimal_score.py [--quick] [--only 1d] [--out PATH]
        (--only 64d writes results/optimal_score_cpu_64d.json)
"""

from __future__ import annotations

import argparse
import functools
import importlib
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

try:
    from . import _common  # imported by asv's discovery as part of the benchmarks package
except ImportError:  # run as a script
    import _common

MU = 0.9
DTYPES = ("float32", "float64")
REF_QUERIES = 256
RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    dims: int | None  # None: 1-D data x (n,)
    n: int
    q: int
    sigma: float

    @property
    def name(self) -> str:
        return f"{'1d' if self.dims is None else f'{self.dims}d'} n={self.n} q={self.q} sigma={self.sigma:g}"


def make_cases(quick: bool) -> list[Case]:
    n1, nd = (10_000, 2_000) if quick else (100_000, 20_000)
    return [Case(dims, n, n, sigma) for dims, n in ((None, n1), (64, nd)) for sigma in (1.0, 1e-3)]


# --------------------------------------------------------------------------- reference


def reference_score(y: np.ndarray, x: np.ndarray, mu: float, sigma: float) -> dict:
    """Exact s* of these inputs in extended precision (np.longdouble), one query at a time,
    with the moments of the posterior of W that the error bound needs: 1-D var, abs3, m4
    (Var W, E|W - EW|^3, E(W - EW)^4); d-D cov_max (largest eigenvalue of Cov W, float64).
    log_density is NaN: only the score's bound is used here."""
    xl = x.astype(np.longdouble)
    mul, s2 = np.longdouble(mu), np.longdouble(sigma) ** 2
    out = np.empty(y.shape, dtype=np.float64)
    q = len(y)
    moments = {k: np.empty(q) for k in (("var", "abs3", "m4") if x.ndim == 1 else ("cov_max",))}
    for j in range(q):
        yj = np.asarray(y[j], dtype=np.longdouble)
        diff = yj - mul * xl
        logits = -(diff * diff if x.ndim == 1 else (diff * diff).sum(axis=1)) / (2 * s2)
        w = np.exp(logits - logits.max())
        w /= w.sum()
        mean = w @ xl if x.ndim == 1 else (w[:, None] * xl).sum(axis=0)
        out[j] = (mul * mean - yj) / s2
        if x.ndim == 1:
            c = xl - mean
            moments["var"][j], moments["abs3"][j], moments["m4"][j] = w @ c**2, w @ np.abs(c) ** 3, w @ c**4
        else:  # float64 is plenty for a condition number; only the points with weight matter
            keep = w > 0
            w64, c = w[keep].astype(np.float64), (xl[keep] - mean).astype(np.float64)
            moments["cov_max"][j] = np.linalg.eigvalsh(c.T @ (w64[:, None] * c))[-1]
    return {"score": out, "log_density": np.full(q, np.nan), **moments}


def mpmath_score(yj: np.ndarray, x: np.ndarray, mu: float, sigma: float, *, dps: int = 40,
                 cut: float = 100.0) -> np.ndarray:
    """s*(yj) for one query in mpmath at ``dps`` digits.  Terms whose float64 logit is more than
    ``cut`` below the largest are left out (their weight is below e^-cut relative)."""
    import mpmath

    x2 = x.reshape(len(x), -1).astype(np.float64)
    y1 = np.asarray(yj, dtype=np.float64).reshape(-1)
    approx = -((y1 - mu * x2) ** 2).sum(axis=1) / (2 * sigma**2)
    keep = np.flatnonzero(approx >= approx.max() - cut)
    with mpmath.workdps(dps):
        m, s2 = mpmath.mpf(mu), mpmath.mpf(sigma) ** 2
        yv = [mpmath.mpf(float(v)) for v in y1]
        logits, rows = [], []
        for i in keep:
            row = [mpmath.mpf(float(v)) for v in x2[i]]
            logits.append(-mpmath.fsum((a - m * b) ** 2 for a, b in zip(yv, row)) / (2 * s2))
            rows.append(row)
        top = max(logits)
        w = [mpmath.exp(lg - top) for lg in logits]
        total = mpmath.fsum(w)
        score = [(m * mpmath.fsum(wi * r[k] for wi, r in zip(w, rows)) / total - yv[k]) / s2 for k in range(len(yv))]
    return np.array([float(v) for v in score]).reshape(np.shape(yj))


def score_errors(s: np.ndarray, p: "Problem", dtype: str | None = None) -> np.ndarray:
    """Per query error of ``s`` (the first REF_QUERIES outputs) in units of the tests'
    conditioning-aware bound at ``dtype`` (default: the problem's); <= 1 is accurate."""
    n = len(p.ref["score"])
    return _common.score_error_units(np.asarray(s)[:n], p.ref, p.y[:n], p.x, p.mu, p.sigma, dtype or p.dtype)


def max_error(errors: np.ndarray) -> float:
    """The largest error (NaN if any is NaN)."""
    return float(np.max(errors))


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    """A way to compute s*: ``run(y, x, mu, sigma, threads)`` returns s*(y) (numpy, y's dtype)."""

    name: str
    run: Callable[..., np.ndarray]
    threads: tuple[int, ...] = (1, 2)
    all_queries: bool = False  # timed on every query (bigstep) rather than on a subset
    unavailable: Callable[[int | None], str | None] = lambda dims: None


def _bigstep(backend: str) -> Method:
    def run(y, x, mu, sigma, threads):
        import bigstep

        bigstep.set_num_threads(threads)
        # the pairwise kernels: "auto" would take the fast Gauss transform at moderate sigma
        # in 1-D, which needs far fewer than one exp per pair (its own cases: --fgt)
        return bigstep.optimal_score(y, x, mu, sigma, backend=backend, method="pairwise")

    return Method(f"bigstep {backend}", run, threads=(2,), all_queries=True,
                  unavailable=lambda dims: _common.bigstep_backend_error(backend, dims))


def _numpy_logits(yc, x, mu, sigma, bias):
    """(rows, n) logits.  1-D: -(y - mu x_i)^2 / (2 sigma^2), by broadcasting.  d-D, GEMM form:
    (mu/sigma^2) <y, x_i> - (mu^2/(2 sigma^2)) ||x_i||^2 (= bias_i; the ||y||^2 term cancels)."""
    if x.ndim == 1:
        logits = yc[:, None] - mu * x
        logits *= logits
        logits *= -0.5 / sigma**2
        return logits
    logits = yc @ x.T
    logits *= mu / sigma**2
    logits += bias
    return logits


def _key_bias(x, mu, sigma):
    return None if x.ndim == 1 else (-0.5 * mu**2 / sigma**2) * np.einsum("ij,ij->i", x, x)


def _block_rows(n: int, elements: int) -> int:
    return max(1, elements // n)


def _numpy_run(y, x, mu, sigma, threads):
    """Chunked over queries: logits block, subtract the row max, exp in place, two reductions."""
    bias = _key_bias(x, mu, sigma)

    def block(yc):
        w = _numpy_logits(yc, x, mu, sigma, bias)
        w -= w.max(axis=1, keepdims=True)
        np.exp(w, out=w)
        total = w.sum(axis=1)
        mean = w @ x / (total if x.ndim == 1 else total[:, None])
        return (mu * mean - yc) / sigma**2

    return _common.chunked(block, y, _block_rows(len(x), 1 << 18 if x.ndim == 1 else 1 << 21), threads)


def _scipy_run(y, x, mu, sigma, threads):
    """Chunked over queries with scipy.special.logsumexp for the normaliser (1-D: also for the
    signed numerator, b=x, return_sign=True)."""
    from scipy.special import logsumexp

    bias = _key_bias(x, mu, sigma)

    def block(yc):
        logits = _numpy_logits(yc, x, mu, sigma, bias)
        lse = logsumexp(logits, axis=1, keepdims=True)
        if x.ndim == 1:
            lnum, sign = logsumexp(logits, axis=1, b=x, return_sign=True)
            mean = sign * np.exp(lnum - lse[:, 0])
        else:
            mean = np.exp(logits - lse) @ x
        return (mu * mean - yc) / sigma**2

    return _common.chunked(block, y, _block_rows(len(x), 1 << 18 if x.ndim == 1 else 1 << 21), threads)


def _torch_cdist_run(y, x, mu, sigma, threads):
    """torch.cdist (squared) + softmax + matmul, chunked over queries (1-D as d = 1)."""
    import torch

    xt = torch.from_numpy(x).reshape(len(x), -1)
    mux = mu * xt

    def block(yc):
        yt = torch.from_numpy(yc).reshape(len(yc), -1)
        logits = torch.cdist(yt, mux).square_().mul_(-0.5 / sigma**2)
        mean = torch.softmax(logits, dim=1) @ xt
        return ((mu * mean - yt) / sigma**2).reshape(yc.shape).numpy()

    with _common.torch_threads(threads), torch.inference_mode():
        return _common.chunked(block, y, _block_rows(len(x), 1 << 22), 1)


def _torch_sdpa_run(y, x, mu, sigma, threads):
    """scaled_dot_product_attention(Q=y, K=x, V=x, attn_mask=-(mu^2/(2 sigma^2))||x_i||^2,
    scale=mu/sigma^2): softmax(scale Q K^T + mask) V = sum_i w_i x_i.  The scale is passed
    explicitly (SDPA's default is 1/sqrt(d)).  1-D as d = 1; chunked over queries so that a
    kernel that materialises the (rows, n) scores stays within memory."""
    import torch
    import torch.nn.functional as F

    xt = torch.from_numpy(x).reshape(1, 1, len(x), -1)
    bias = ((-0.5 * mu**2 / sigma**2) * (xt[0, 0] ** 2).sum(dim=1))[None, :]  # (1, n), broadcast over queries

    def block(yc):
        q = torch.from_numpy(yc).reshape(1, 1, len(yc), -1)
        mean = F.scaled_dot_product_attention(q, xt, xt, attn_mask=bias, scale=mu / sigma**2)
        return ((mu * mean - q) / sigma**2).reshape(yc.shape).numpy()

    with _common.torch_threads(threads), torch.inference_mode():
        return _common.chunked(block, y, _block_rows(len(x), 1 << 24), 1)


def _keops_run(y, x, mu, sigma, threads):
    """pykeops LazyTensor: logits -||y - mu x_i||^2/(2 sigma^2), sumsoftmaxweight over i with
    values x_i (an online softmax).  KeOps' CPU code is single-threaded, so threads > 1 splits
    the queries over a thread pool."""
    from pykeops.numpy import Vi, Vj

    x2 = np.ascontiguousarray(x.reshape(len(x), -1))
    xj = Vj(x2)

    def block(yc):
        y2 = np.ascontiguousarray(yc.reshape(len(yc), -1))
        logits = -((Vi(y2) - mu * xj) ** 2).sum(-1) * (0.5 / sigma**2)
        mean = logits.sumsoftmaxweight(xj, axis=1)
        return ((mu * mean - y2) / sigma**2).reshape(yc.shape)

    return _common.chunked(block, y, math.ceil(len(y) / threads), threads)


def _torch_unavailable(dims):
    return None if _common.package_version("torch") else "torch is not installed"


@functools.lru_cache(maxsize=None)
def _keops_unavailable(dims) -> str | None:
    """None if pykeops imports and runs a small reduction on the CPU, else why not."""
    try:
        import pykeops

        pykeops.set_verbose(False)
        x = np.linspace(-1.0, 1.0, 8) if dims is None else np.ones((8, dims))
        _keops_run(x[:3], x, 0.9, 0.5, 1)
    except Exception as exc:  # not installed, no compiler, no CPU support, ...
        return f"{type(exc).__name__}: {exc}"
    return None


def make_methods() -> list[Method]:
    return [
        _bigstep("cpp"),
        _bigstep("numba"),
        Method("numpy chunked", _numpy_run),
        Method("scipy logsumexp", _scipy_run),
        Method("torch cdist+softmax", _torch_cdist_run, unavailable=_torch_unavailable),
        Method("torch sdpa", _torch_sdpa_run, unavailable=_torch_unavailable),
        Method("pykeops", _keops_run, unavailable=_keops_unavailable),
    ]


# --------------------------------------------------------------------------- measuring


@dataclass
class Problem:
    case: Case
    dtype: str
    x: np.ndarray
    y: np.ndarray
    mu: float  # rounded to dtype
    sigma: float
    ref: dict  # reference s* of y[:REF_QUERIES] (float64) and the moments its error bound needs
    ref_check: float  # gap between ref and mpmath on a few queries, in units of the float64 bound


def make_problem(case: Case, dtype: str, x64: np.ndarray, y64: np.ndarray, *, mp_queries: int) -> Problem:
    x, y = x64.astype(dtype), y64.astype(dtype)
    mu, sigma = float(np.dtype(dtype).type(MU)), float(np.dtype(dtype).type(case.sigma))
    ref = reference_score(y[:REF_QUERIES], x, mu, sigma)
    picks = np.linspace(0, len(ref["score"]) - 1, mp_queries).astype(int)
    exact = np.array([mpmath_score(y[j], x, mu, sigma) for j in picks])
    at_picks = {k: v[picks] for k, v in ref.items()}
    gap = _common.score_error_units(at_picks["score"], {**at_picks, "score": exact}, y[picks], x, mu, sigma,
                                    "float64")
    return Problem(case, dtype, x, y, mu, sigma, ref, max_error(gap))


def measure(method: Method, p: Problem, *, seconds: float) -> dict:
    """Time ``method`` on problem ``p``: pick the thread setting, the number of queries to time,
    then best of 3 (after warm-up).  Returns a result row."""
    row = {"case": p.case.name, "method": method.name, "dtype": p.dtype}
    reason = method.unavailable(p.case.dims)
    if reason is not None:
        return {**row, "skipped": reason}
    n, q, nref = len(p.x), len(p.y), len(p.ref["score"])
    out = {}

    def call(rows: int, threads: int):
        out["s"] = method.run(p.y[:rows], p.x, p.mu, p.sigma, threads)

    def rate(rows: int, threads: int, repeat: int) -> float:
        t = _common.timed(lambda: call(rows, threads), repeat=repeat, warmup=False, max_seconds=seconds)
        return rows * n / t.best

    thread_rates = {}
    for t in method.threads:  # warm up (compile, load), then estimate the rate on a calibration subset
        call(nref, t)
        guess = rate(nref, t, 1)
        thread_rates[t] = rate(_rows_for(guess, n, q, nref, seconds / 4), t, 2)
    threads = max(thread_rates, key=thread_rates.get)
    rows = q if method.all_queries else _rows_for(thread_rates[threads], n, q, nref, seconds)
    timing = _common.timed(lambda: call(rows, threads), repeat=3, warmup=False,
                           max_seconds=max(3 * seconds, 60.0 if method.all_queries else 0.0))
    return {**row, "threads": threads, "q_timed": rows, "n": n, "seconds": timing.best, "runs": timing.runs,
            "pairs_per_s": rows * n / timing.best, "rates_by_threads": thread_rates,
            "error": max_error(score_errors(out["s"], p)),
            "error_median": float(np.median(score_errors(out["s"], p))),
            # the same error in units of each dtype's bound: a float64 peer can be accurate to
            # float32's bound, a float32 one is rarely accurate to float64's
            "error_by_bound": {dt: max_error(score_errors(out["s"], p, dt)) for dt in DTYPES}}


def _rows_for(rate: float, n: int, q: int, least: int, seconds: float) -> int:
    """Number of queries that takes about ``seconds`` at ``rate`` pairs/s, within [least, q]."""
    return int(min(q, max(least, rate * seconds / n)))


def annotate(rows: list[dict], case: Case, ceilings: dict) -> None:
    """Add ratios to bigstep cpp, accuracy flags and the fraction of the ceiling to each row."""
    done = [r for r in rows if "skipped" not in r]
    base = {r["dtype"]: r for r in done if r["method"] == "bigstep cpp"}
    for r in done:
        dt = r["dtype"]
        r["accurate"] = bool(r["error"] <= 1.0)
        r["ceiling_fraction"] = _ceiling_fraction(r["pairs_per_s"], case, dt, ceilings)
        b = base.get(dt)
        if b is None or r is b:
            continue
        r["ratio_bigstep"] = b["pairs_per_s"] / r["pairs_per_s"]
        fast = [o["pairs_per_s"] for o in done if o["method"] == r["method"] and o["error_by_bound"][dt] <= 1.0]
        if fast and b["error"] <= 1.0:
            r["ratio_bigstep_equal_accuracy"] = b["pairs_per_s"] / max(fast)


def _ceiling_fraction(pairs_per_s: float, case: Case, dtype: str, ceilings: dict) -> float:
    if case.dims is None:
        return pairs_per_s / ceilings["exp"][dtype]["rate"]
    return 4 * case.dims * pairs_per_s / ceilings["gemm"][dtype]["best"]


def best_peers(rows: list[dict]) -> list[dict]:
    """For each dtype: the fastest peer at that dtype, the fastest accurate one, and the fastest
    peer variant (any dtype) accurate to that dtype's tolerance, with bigstep cpp's ratio to each."""
    done = [r for r in rows if "skipped" not in r]
    out = []
    for dt in DTYPES:
        base = next((r for r in done if r["method"] == "bigstep cpp" and r["dtype"] == dt), None)
        peers = [r for r in done if not r["method"].startswith("bigstep")]
        fastest = [r for r in peers if r["dtype"] == dt]
        same = [r for r in fastest if r["accurate"]]
        equal = [r for r in peers if r["error_by_bound"][dt] <= 1.0]
        entry = {"case": rows[0]["case"], "dtype": dt}
        for key, pool in (("fastest_peer", fastest), ("best_peer_same_dtype", same),
                          ("best_peer_equal_accuracy", equal)):
            if pool:
                best = max(pool, key=lambda r: r["pairs_per_s"])
                entry[key] = {"method": best["method"], "dtype": best["dtype"], "pairs_per_s": best["pairs_per_s"],
                              "ratio_bigstep": base["pairs_per_s"] / best["pairs_per_s"] if base else None}
        inaccurate = sorted({r["method"] for r in peers if r["dtype"] == dt and not r["accurate"]})
        entry["inaccurate_peers"] = inaccurate
        out.append(entry)
    return out


# --------------------------------------------------------------------------- output


COLUMNS = [("method", "method"), ("dtype", "dtype"), ("thr", "thr"), ("q", "q timed"), ("rate", "pairs/s"),
           ("ratio", "bigstep/peer"), ("ratio_acc", "@acc"), ("ceil", "of ceiling"), ("err", "error (bounds)"),
           ("med", "median (bounds)"), ("note", "note")]


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table_rows(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        if "skipped" in r:
            out.append({"method": r["method"], "dtype": r["dtype"], "note": f"skipped: {r['skipped'][:70]}"})
            continue
        out.append({"method": r["method"], "dtype": r["dtype"], "thr": r["threads"], "q": r["q_timed"],
                    "rate": _fmt(r["pairs_per_s"], ".3g"), "ratio": _fmt(r.get("ratio_bigstep"), ".2f"),
                    "ratio_acc": _fmt(r.get("ratio_bigstep_equal_accuracy"), ".2f"),
                    "ceil": _fmt(r["ceiling_fraction"], ".3f"), "err": _fmt(r["error"], ".2g"),
                    "med": _fmt(r["error_median"], ".2g"),
                    "note": "" if r["accurate"] else "INACCURATE (error > 1 bound)"})
    return out


def summary_lines(best: list[dict]) -> list[str]:
    lines = []
    for b in best:
        parts = [f"  {b['dtype']}:"]
        for key, label in (("fastest_peer", "fastest peer"), ("best_peer_same_dtype", "fastest accurate peer"),
                           ("best_peer_equal_accuracy", "best at equal accuracy")):
            e = b.get(key)
            if e:
                ratio = "-" if e["ratio_bigstep"] is None else f"{e['ratio_bigstep']:.2f}"
                parts.append(f"{label} {e['method']} ({e['dtype']}, {e['pairs_per_s']:.3g} pairs/s, "
                             f"bigstep/peer {ratio});")
        if b["inaccurate_peers"]:
            parts.append(f"inaccurate: {', '.join(b['inaccurate_peers'])}")
        lines.append(" ".join(parts))
    return lines


def print_ceilings(c: dict) -> None:
    for dt in DTYPES:
        e, g = c["exp"][dt], c["gemm"][dt]
        exps = ", ".join(f"{lib} {v['rate'] / 1e9:.3f} ({v['rate_1_thread'] / 1e9:.3f} in 1 thread)"
                         for lib, v in e.items() if isinstance(v, dict))
        gemm = ", ".join(f"{lib} {v / 1e9:.1f}" for lib, v in g.items() if lib not in ("best", "size"))
        print(f"ceiling {dt}: exp G/s in {c['threads']} threads: {exps}; GEMM GFLOP/s: {gemm}")


# --------------------------------------------------------------------------- fast Gauss transform
#
# Issue 21's cases (--fgt): n = q = 10^6, 1-D at sigma 0.1, 0.3, 1 and 2-D at sigma 0.3, 1,
# float64.  bigstep's FGT (cpp, numba) runs every query; the pairwise kernel, torch SDPA
# (the best peer of the cases above) run the first FGT_SUBSET queries (their cost is linear
# in q) and their rate is scaled to q; pyfigtree (the improved FGT, absolute error epsilon
# times the sum of the weights) and KDEpy's FFTKDE (binned onto a grid, linear interpolation
# to the queries; positive weights, so S1 is formed with x - min x + 1) run every query.
# Each method's error is measured as above on REF_QUERIES queries.  Methods are timed in
# interleaved rounds, and ratios are taken within one run.  --scaling adds the cost growth
# with n = q from 10^4 to 10^7 (1-D, sigma 0.3) of the FGT and the pairwise kernel.

FGT_CASES = [Case(None, 10**6, 10**6, s) for s in (0.1, 0.3, 1.0)] + [Case(2, 10**6, 10**6, s) for s in (0.3, 1.0)]
FGT_SUBSET = {None: 2000, 2: 400}
FGT_ROUNDS = 2


def _figtree_run(y, x, mu, sigma, eps=1e-12):
    import pyfigtree

    x2 = np.ascontiguousarray((mu * x).reshape(len(x), -1))
    y2 = np.ascontiguousarray(y.reshape(len(y), -1))
    xs = x.reshape(len(x), -1)
    w = np.ascontiguousarray(np.vstack([np.ones(len(x))] + [xs[:, k] for k in range(xs.shape[1])]))
    g = pyfigtree.figtree(x2, y2, w, bandwidth=np.sqrt(2) * sigma, epsilon=eps).reshape(w.shape[0], -1)
    mean = (g[1:] / g[0]).T.reshape(y.shape)
    return (mu * mean - y) / sigma**2


def _kdepy_run(y, x, mu, sigma):
    from KDEpy import FFTKDE

    xs = x.reshape(len(x), -1)
    d = xs.shape[1]
    shift = xs.min(axis=0) - 1.0
    if d == 1:
        grid, f0 = FFTKDE(bw=sigma).fit(mu * x).evaluate(2**20)
        w = x - shift[0]
        f1 = FFTKDE(bw=sigma).fit(mu * x, weights=w).evaluate(grid)
        mean = np.interp(y, grid, f1) * w.sum() / (np.interp(y, grid, f0) * len(x)) + shift[0]
        return (mu * mean - y) / sigma**2
    from scipy.interpolate import RegularGridInterpolator

    m = 2**10
    grid, f0 = FFTKDE(bw=sigma).fit(mu * xs).evaluate(m)
    axes = [np.unique(grid[:, k]) for k in range(d)]
    interp = lambda f: RegularGridInterpolator(axes, f.reshape([a.size for a in axes]), bounds_error=False,  # noqa: E731
                                              fill_value=0.0)(y)
    g0 = interp(f0) * len(x)
    mean = np.empty_like(y)
    for k in range(d):
        w = xs[:, k] - shift[k]
        mean[:, k] = interp(FFTKDE(bw=sigma).fit(mu * xs, weights=w).evaluate(grid)) * w.sum() / g0 + shift[k]
    return (mu * mean - y) / sigma**2


def fgt_methods():
    """(name, run(y, x, mu, sigma), timed on a subset of the queries, unavailable reason)."""
    import bigstep

    def big(backend, method):
        return lambda y, x, mu, sigma: bigstep.optimal_score(y, x, mu, sigma, backend=backend, method=method)

    def sdpa(y, x, mu, sigma):
        return _torch_sdpa_run(y, x, mu, sigma, 2)

    out = [("bigstep cpp fgt", big("cpp", "fgt"), False, _common.bigstep_backend_error("cpp")),
           ("bigstep numba fgt", big("numba", "fgt"), False, _common.bigstep_backend_error("numba")),
           ("bigstep cpp pairwise", big("cpp", "pairwise"), True, _common.bigstep_backend_error("cpp")),
           ("torch sdpa", sdpa, True, _torch_unavailable(None))]
    for name, fn, pkg in (("pyfigtree", _figtree_run, "pyfigtree"), ("KDEpy FFTKDE", _kdepy_run, "KDEpy")):
        try:
            importlib.import_module(pkg)
            reason = None
        except Exception as exc:  # not installed or failed to build
            reason = f"{type(exc).__name__}: {exc}"
        out.append((name, fn, False, reason))
    return out


def run_fgt_case(case: Case, methods, rounds: int) -> dict:
    """Interleaved rounds of every method on one case; seconds for all q queries (subset
    methods scaled by q / subset), error on the first REF_QUERIES queries."""
    x, y = _common.score_inputs(case.n, case.q, case.dims)
    ref = reference_score(y[:REF_QUERIES], x, MU, case.sigma)
    subset = FGT_SUBSET[case.dims]
    best, errs, notes = {}, {}, {}
    for _ in range(rounds):
        for name, fn, sub, reason in methods:
            if name == "bigstep numba fgt" and case.dims is not None:
                reason = "the Numba mirror's generic d-D loops are timed in 1-D only (minutes at n = 10^6 in 2-D)"
            if reason is not None:
                notes[name] = f"skipped: {reason[:80]}"
                continue
            rows = subset if sub else case.q
            t0 = time.perf_counter()
            sc = fn(y[:rows], x, MU, case.sigma)
            t = (time.perf_counter() - t0) * case.q / rows
            best[name] = min(best.get(name, np.inf), t)
            errs[name] = max_error(_common.score_error_units(np.asarray(sc)[:REF_QUERIES], ref, y[:REF_QUERIES], x,
                                                             MU, case.sigma, "float64"))
            print(f"  {case.name} {name:22s} {t:9.3f} s{' (scaled from ' + str(rows) + ' queries)' if sub else ''}"
                  f"  err {errs[name]:.1e} float64 bounds", flush=True)
    base = best.get("bigstep cpp pairwise")
    peers = [k for k in best if not k.startswith("bigstep")]
    rows = []
    for name in best:
        rows.append({"method": name, "seconds": best[name], "error": errs[name],
                     "pairwise_over_method": base / best[name] if base else None})
    fgt = best.get("bigstep cpp fgt")
    summary = {"case": case.name, "rows": rows, "notes": notes,
               "fgt_speedup_vs_pairwise": base / fgt if base and fgt else None,
               "fgt_speedup_vs_peers": {p: best[p] / fgt for p in peers} if fgt else {},
               "fgt_error": errs.get("bigstep cpp fgt")}
    print(f"== {case.name}: FGT {fgt:.3f} s, pairwise {base:.1f} s (x{base / fgt:.0f}); "
          + ", ".join(f"{p} x{best[p] / fgt:.1f} (err {errs[p]:.0e})" for p in peers), flush=True)
    return summary


def run_scaling(sizes, sigma=0.3) -> list[dict]:
    """1-D cost growth with n = q: FGT on every query, pairwise on FGT_SUBSET queries scaled."""
    import bigstep

    out = []
    for n in sizes:
        x, y = _common.score_inputs(n, n, None)
        t0 = time.perf_counter()
        bigstep.optimal_score(y, x, MU, sigma, backend="cpp", method="fgt")
        tf = time.perf_counter() - t0
        rows = min(n, FGT_SUBSET[None])
        t0 = time.perf_counter()
        bigstep.optimal_score(y[:rows], x, MU, sigma, backend="cpp", method="pairwise")
        tp = (time.perf_counter() - t0) * n / rows
        out.append({"n": n, "fgt_seconds": tf, "pairwise_seconds": tp, "ratio": tp / tf})
        print(f"  scaling n = q = {n:.0e}: FGT {tf:.3f} s, pairwise {tp:.1f} s (x{tp / tf:.0f})", flush=True)
    return out


def run_fgt(rounds: int, scaling: bool, only: str | None) -> dict:
    machine = _common.machine_info()
    print(f"machine: {machine['cpu']['model']}, {machine['cpu']['logical_cores']} cores (shared with other "
          f"processes: ratios are within one run, methods interleaved)", flush=True)
    methods = fgt_methods()
    cases = [run_fgt_case(c, methods, rounds) for c in FGT_CASES if not only or only in c.name]
    payload = {"benchmark": "optimal_score_fgt", "machine": machine, "mu": MU, "rounds": rounds,
               "subset": {str(k): v for k, v in FGT_SUBSET.items()}, "cases": cases,
               "settings": {"error": _common.ERROR_METRIC + f", at float64, over the first {REF_QUERIES} "
                                     "queries (longdouble reference)",
                            "figtree_epsilon": 1e-12, "kdepy_grid": "2^20 (1-D), 2^10 per axis (2-D)"}}
    if scaling:
        payload["scaling_1d_sigma_0.3"] = run_scaling([10**4, 10**5, 10**6, 10**7])
    return payload


# --------------------------------------------------------------------------- main


def settings(seconds: float) -> dict:
    return {"mu": MU, "reference_queries": REF_QUERIES,
            "error": _common.ERROR_METRIC + "; r = longdouble reference at the dtype-rounded inputs, checked "
                     "against mpmath (reference_vs_mpmath, in units of the float64 bound); error_median: the "
                     "median over queries; error_by_bound: the error in units of each dtype's bound",
            "pairs_per_s": "q_timed * n / best wall time (bigstep: all q queries; peers: the first q_timed "
                           "queries, their cost being linear in q)",
            "ceiling_fraction": "1-D: pairs/s / best exp rate (numpy, torch or bigstep's own) of the dtype; "
                                "d-D: 4 d pairs/s / best GEMM FLOP/s (numpy or torch) of the dtype",
            "other_load": "share of the CPU other processes took during a measurement (re-measured above 5%)",
            "seconds_per_call": seconds}


def run_case(case: Case, methods: list[Method], ceilings: dict, *, seconds: float, wait: float,
             quick: bool) -> tuple[dict, list[dict]]:
    """Measure every method at both dtypes on one case; print its table.  Returns (case result, summary)."""
    x64, y64 = _common.score_inputs(case.n, case.q, case.dims)
    rows, checks = [], {}
    for dt in DTYPES:
        t0 = time.perf_counter()
        p = make_problem(case, dt, x64, y64, mp_queries=1 if quick else 2)
        checks[dt] = p.ref_check
        print(f"\n[{case.name} {dt}] reference: {REF_QUERIES} queries in longdouble, "
              f"vs mpmath {p.ref_check:.1e} float64 bounds ({time.perf_counter() - t0:.1f} s)", flush=True)
        for m in methods:
            row, load = _common.when_quiet(lambda: measure(m, p, seconds=seconds), what=f"{m.name} {dt}", wait=wait,
                                           attempts=5)
            rows.append({**row, "other_load": load})
            print(f"  {m.name:20s} " + (f"skipped: {row['skipped']}" if "skipped" in row else
                                         f"{row['pairs_per_s']:.3g} pairs/s  err {row['error']:.2g} bounds"),
                  flush=True)
    annotate(rows, case, ceilings)
    best = best_peers(rows)
    print(f"\n== {case.name} ==")
    print(_common.format_table(table_rows(rows), COLUMNS))
    print("\n".join(summary_lines(best)), flush=True)
    result = {"case": case.name, "dims": case.dims, "n": case.n, "q": case.q, "mu": MU, "sigma": case.sigma,
              "reference_vs_mpmath": checks, "rows": rows}
    return result, best


def run(quick: bool, only: str | None, seconds: float, wait: float) -> dict:
    load_before = _common.wait_until_quiet(wait)
    machine = {**_common.machine_info(), "other_load_before": load_before}
    print(f"machine: {machine['cpu']['model']}, {machine['cpu']['logical_cores']} cores, "
          f"avx2={machine['cpu']['avx2']} avx512f={machine['cpu']['avx512f']}; numpy {machine['versions']['numpy']}, "
          f"torch {machine['versions']['torch']}, numba {machine['versions']['numba']}", flush=True)
    ceilings, load = _common.when_quiet(lambda: _common.measure_ceilings(DTYPES, quick=quick),
                                        what="the ceilings", wait=wait, attempts=5)
    ceilings["other_load"] = load
    print_ceilings(ceilings)
    print(f"accuracy: {_common.ERROR_METRIC}", flush=True)
    methods = make_methods()
    cases, summary = [], []
    for case in make_cases(quick):
        if only and only not in case.name:
            continue
        result, best = run_case(case, methods, ceilings, seconds=seconds, wait=wait, quick=quick)
        cases.append(result)
        summary.extend(best)
    print("\n== best peers ==")
    for case in cases:
        print(case["case"])
        print("\n".join(summary_lines([b for b in summary if b["case"] == case["case"]])))
    return {"benchmark": "optimal_score_cpu", "quick": quick, "machine": machine, "ceilings": ceilings,
            "settings": settings(seconds), "cases": cases, "summary": summary}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (1-D n=q=10,000; d-D n=q=2,000)")
    ap.add_argument("--only", help="run only the cases whose name contains this (e.g. '1d', '64d', 'sigma=0.001')")
    ap.add_argument("--seconds", type=float, help="target wall time of one timed peer call (default 2, quick 0.2)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                    help="wait up to this long for other processes to leave the CPU, before starting "
                         "and before measuring again a figure they skewed")
    ap.add_argument("--out", type=Path,
                    help="results JSON (default results/optimal_score_cpu[_ONLY][_quick].json, so a partial "
                         "run does not overwrite the full one)")
    ap.add_argument("--fgt", action="store_true",
                    help="issue 21's fast Gauss transform cases (n = q = 10^6) instead: results/optimal_score_fgt.json")
    ap.add_argument("--scaling", action="store_true", help="with --fgt: cost growth with n = q, 10^4 .. 10^7")
    args = ap.parse_args(argv)
    if args.fgt:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="nopython is set")
            payload = run_fgt(FGT_ROUNDS, args.scaling, args.only)
        print(f"\nwrote {_common.write_json(args.out or RESULTS / 'optimal_score_fgt.json', payload)}")
        return
    seconds = args.seconds or (0.2 if args.quick else 2.0)
    only = "_" + "".join(c if c.isalnum() else "-" for c in args.only) if args.only else ""
    out = args.out or RESULTS / f"optimal_score_cpu{only}{'_quick' if args.quick else ''}.json"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="nopython is set")  # numba's, at bigstep's import
        payload = run(args.quick, args.only, seconds, args.wait_quiet)
    print(f"\nwrote {_common.write_json(out, payload)}")


if __name__ == "__main__":
    main()
