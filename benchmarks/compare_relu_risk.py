"""The exact Hessian of the ReLU DSM risk against the Monte Carlo routes in torch (CPU).

Problem (the paper's 1-D setting): n = 20 training points x ~ N(0, 1) (seed 0),
(mu, sigma) = bigstep.noise_schedule(0.05) (mu = 0.951, sigma = 0.308, sigma^2 = 0.095),
s_theta(y) = (1/m) sum_l w2_l relu(w1_l y + b_l) with w1 in {+1, -1}, w2 ~ N(0, 1), b uniform
in [-3, 3], theta = (w2, b) (wrt="outer_bias", 2m parameters), m = 1000.

Monte Carlo routes (torch, float64, CPU, all cores), on the paper's estimator of the risk
with K = 5,000 fixed noise samples per data point (N = n K = 100,000 samples):

    R_MC(theta) = (1/N) sum_{i,k} (s_theta(y_ik) + z_ik / sigma)^2,   y_ik = mu x_i + sigma z_ik,

a deterministic function of theta (the noise z ~ N(0, 1) is drawn once, seed 3):

  (a) torch.func.hessian(R_MC) (forward-over-reverse, every intermediate batched over the
      2m tangents): run in a child process whose address space is capped (--cap-gb, at most
      8 GB and half the available memory), at small m where its estimated peak fits, and at
      m = 100 and 1000, where the first batched intermediate alone is over the cap, to
      catch the allocation it asks for.  Its peak memory is ~c 8 (2m) N m bytes, c fitted
      on the small-m runs;
  (b) the Gauss-Newton part (2/N) J^T J as GEMMs over row blocks of the per-sample Jacobian
      J (N x 2m, built analytically: relu(w1 y + b)/m and w2 1{w1 y + b > 0}/m);
  (c) the Hessian row by row, by double backward (torch.autograd.grad of each entry of the
      create_graph gradient): a few rows are timed, the total for 2m rows is an
      EXTRAPOLATION (graph build + 2m x the time per row);
  (d) one Hessian-vector product by double backward: torch.autograd.grad(grad . v).

The autograd routes run over row blocks of the N samples (the sums are additive), at the
block size that is fastest here (calibrated per run); the memory then stays bounded.

Exact (bigstep, every available backend; each call includes the O(n m) preparation):
dsm_risk, dsm_risk_hvp, dsm_risk_hessian at m = 1000; sharpness (Lanczos on the exact HVP) at
m = 100,000; the Hessian at m = 4000 against the time to write its (2m)^2 = 512 MB output
(memory write bandwidth measured in the same run: np.empty + fill, 1 and all threads).

Accuracy of the Monte Carlo estimator against the exact values: the relative error of
R_MC; of the MC HVP; of the MC Hessian (as autodiff sees it: (b) plus the curvature term
(2/N) sum f 1{w1 y + b > 0}/m on the (w2_l, b_l) entries; checked equal to (a) at small m),
in the Frobenius norm.  Autodiff of the sampled risk has no Dirac term (relu'' = 0 almost
everywhere), so the MC Hessian and HVP are biased whatever K is; the errors are also given
with the exact Dirac term added back, which leaves the sampling error alone.

Targets (from the issue): exact Hessian >= 1000x faster than the J^T J route at m = 1000;
one exact HVP >= 1000x faster than the autograd HVP; sharpness at m = 100,000 in seconds
(taken as <= 10 s); Hessian assembly at m = 4000 within 3x of the output write time.

Usage:  python benchmarks/compare_relu_risk.py [--quick] [--out PATH] [--wait-quiet SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

try:  # imported by asv's discovery as part of the benchmarks package
    from . import _common
    from .bench_relu_risk import noise_level, relu_backend_error, relu_inputs
except ImportError:  # run as a script
    import _common
    from bench_relu_risk import noise_level, relu_backend_error, relu_inputs

SEED = 0
N_DATA = 20
SAMPLES = 5_000  # noise samples per data point
M = 1_000
M_SHARPNESS = 100_000
M_ASSEMBLY = 4_000
WRT = "outer_bias"
BACKENDS = ("cpp", "numba")
CAP_GB = 8.0
TARGETS = {
    "hessian_vs_jtj": (">=", 1000.0, "exact Hessian vs (b) J^T J at m = 1000: speed ratio"),
    "hvp_vs_autograd": (">=", 1000.0, "one exact HVP vs (d) autograd HVP at m = 1000: speed ratio"),
    "sharpness_seconds": ("<=", 10.0, "sharpness at m = 100,000: seconds ('in seconds')"),
    "assembly_vs_write": ("<=", 3.0, "Hessian at m = 4000 / time to write its output"),
}
RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------- problem


def problem(m: int) -> dict:
    """Inputs at width m (see bench_relu_risk.relu_inputs) plus the fixed Monte Carlo noise
    z (n, K) ~ N(0, 1) (numpy Generator seed 3, the same for every m) and (mu, sigma)."""
    p = relu_inputs(m, N_DATA, SEED)
    p["z"] = np.random.default_rng(SEED + 3).standard_normal((N_DATA, SAMPLES))
    p["mu"], p["sigma"] = noise_level()
    p["m"] = m
    p["v"] = p["v"][:2 * m]
    return p


def exact_net(p: dict):
    import bigstep

    return bigstep.ReLUNet1D(p["w1"], p["b"], p["w2"])


class MonteCarlo:
    """The paper's Monte Carlo risk with fixed noise, in torch float64, theta = (w2, b)."""

    def __init__(self, p: dict):
        import torch

        self.torch = torch
        y = p["mu"] * p["x"][:, None] + p["sigma"] * p["z"]
        self.y = torch.from_numpy(np.ascontiguousarray(y.reshape(-1)))
        self.zs = torch.from_numpy(np.ascontiguousarray((p["z"] / p["sigma"]).reshape(-1)))
        self.w1 = torch.from_numpy(p["w1"].copy())
        self.theta = torch.from_numpy(np.concatenate((p["w2"], p["b"])))
        self.v = torch.from_numpy(p["v"].copy())
        self.m, self.N = p["m"], self.y.shape[0]

    def _f(self, theta, a: int, c: int):
        """f_k = s_theta(y_k) + z_k / sigma on samples [a, a + c)."""
        m = self.m
        pre = self.y[a:a + c, None] * self.w1 + theta[m:]
        return self.torch.relu(pre) @ theta[:m] / m + self.zs[a:a + c]

    def risk_full(self, theta):
        """R_MC(theta) in one piece (the function torch.func.hessian differentiates)."""
        f = self._f(theta, 0, self.N)
        return (f * f).mean()

    def _blocks(self, rows: int):
        return [(a, min(rows, self.N - a)) for a in range(0, self.N, rows)]

    def risk(self, rows: int = 16384) -> float:
        with self.torch.no_grad():
            return float(sum((self._f(self.theta, a, c) ** 2).sum() for a, c in self._blocks(rows)) / self.N)

    def _grad_graph(self, theta, a: int, c: int):
        f = self._f(theta, a, c)
        (g,) = self.torch.autograd.grad((f * f).sum() / self.N, theta, create_graph=True)
        return g

    def hvp(self, rows: int):
        """(d): sum over row blocks of grad(grad R_block . v) (double backward)."""
        theta = self.theta.detach().clone().requires_grad_(True)
        out = self.torch.zeros_like(theta)
        for a, c in self._blocks(rows):
            (hv,) = self.torch.autograd.grad(self._grad_graph(theta, a, c) @ self.v, theta)
            out += hv
        return out

    def hessian_rows(self, idx: list[int], rows: int) -> tuple[float, float, np.ndarray]:
        """(c): Hessian rows ``idx`` by double backward.  Returns (seconds building the
        create_graph gradients, seconds of the row backwards, the rows)."""
        theta = self.theta.detach().clone().requires_grad_(True)
        out = self.torch.zeros((len(idx), theta.shape[0]), dtype=theta.dtype)
        t_graph = t_rows = 0.0
        for a, c in self._blocks(rows):
            t0 = time.perf_counter()
            g = self._grad_graph(theta, a, c)
            t1 = time.perf_counter()
            for r, j in enumerate(idx):
                (row,) = self.torch.autograd.grad(g[j], theta, retain_graph=True)
                out[r] += row
            t_graph += t1 - t0
            t_rows += time.perf_counter() - t1
        return t_graph, t_rows, out.numpy()

    def gauss_newton(self, rows: int):
        """(b): (2/N) J^T J, J the per-sample gradient of s_theta, one GEMM per row block."""
        torch, m = self.torch, self.m
        w2, b = self.theta[:m], self.theta[m:]
        H = torch.zeros((2 * m, 2 * m), dtype=self.theta.dtype)
        for a, c in self._blocks(rows):
            pre = self.y[a:a + c, None] * self.w1 + b
            J = torch.cat((torch.relu(pre) / m, (pre > 0) * (w2 / m)), dim=1)
            H.addmm_(J.T, J)
        return H.mul_(2.0 / self.N)

    def curvature(self, rows: int = 16384) -> np.ndarray:
        """(2/(N m)) sum_k f_k 1{w1 y_k + b_l > 0}: the (w2_l, b_l) entries autodiff adds to J^T J."""
        m = self.m
        out = self.torch.zeros(m, dtype=self.theta.dtype)
        with self.torch.no_grad():
            for a, c in self._blocks(rows):
                pre = self.y[a:a + c, None] * self.w1 + self.theta[m:]
                out += self._f(self.theta, a, c) @ (pre > 0).to(pre.dtype)
        return (out * (2.0 / (self.N * m))).numpy()


def autodiff_hessian(gn: np.ndarray, curv: np.ndarray) -> np.ndarray:
    """Gauss-Newton part plus the curvature entries (w2_l, b_l): the Hessian of R_MC as
    autodiff computes it (no Dirac term)."""
    H = np.array(gn, dtype=np.float64, copy=True)
    m = len(curv)
    idx = np.arange(m)
    H[idx, m + idx] += curv
    H[m + idx, idx] += curv
    return H


def exact_parts(p: dict, backend: str) -> dict | None:
    """The exact curvature entries c_l and Dirac entries D_l (from bigstep's private prepared
    state, used only to split the Monte Carlo error); None if that interface changed."""
    try:
        from bigstep import relu_risk

        ex = relu_risk._prepare(exact_net(p), p["x"], p["mu"], p["sigma"], backend)
        D, _ = ex.dirac()
        return {"curvature": 2.0 / (ex.n * ex.m) * np.asarray(ex.F0a), "dirac": np.asarray(D)}
    except Exception:
        return None


def dirac_matrix(dirac: np.ndarray) -> np.ndarray:
    """The exact Dirac term as a (2m, 2m) matrix: D_l on the (b_l, b_l) diagonal."""
    m = len(dirac)
    D = np.zeros((2 * m, 2 * m))
    D[m + np.arange(m), m + np.arange(m)] = dirac
    return D


def rel_fro(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


# --------------------------------------------------------------------------- route (a), in a child process


def _status_bytes(key: str) -> int:
    """A /proc/self/status memory figure in bytes: VmSize (address space), VmRSS (resident),
    VmHWM (peak resident since exec; getrusage's maxrss would carry the parent's peak over)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {key} in /proc/self/status")


def func_hessian_worker(npz: str, out: str, cap: float, threads: int) -> None:
    """Child process: torch.func.hessian of R_MC with the address space capped at ``cap``
    bytes above what the process already maps; prints one JSON line."""
    import resource

    import torch

    torch.set_num_threads(threads)
    d = dict(np.load(npz))
    d["m"] = int(d["m"])
    mc = MonteCarlo(d)
    base = _status_bytes("VmHWM")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _status_bytes("VmSize") + int(cap)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    load = _common.OtherLoad()
    result: dict = {"m": d["m"], "cap_bytes": int(cap), "baseline_rss_bytes": base}
    try:
        t0 = time.perf_counter()
        H = torch.func.hessian(mc.risk_full)(mc.theta)
        result["seconds"] = time.perf_counter() - t0
        np.save(out, H.numpy())
        result["ok"] = True
    except (RuntimeError, MemoryError) as exc:
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
        asked = re.search(r"allocate (\d+) bytes", str(exc))
        if asked:
            result["asked_bytes"] = int(asked.group(1))
    result["peak_rss_bytes"] = _status_bytes("VmHWM")
    result["other_load"] = load.share()
    print("RESULT " + json.dumps(result), flush=True)


def _available_memory() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024.0
    return 0.0


def run_func_hessian(m: int, cap: float, threads: int) -> dict:
    p = problem(m)
    with tempfile.TemporaryDirectory() as tmp:
        npz, out = os.path.join(tmp, "in.npz"), os.path.join(tmp, "H.npy")
        np.savez(npz, **{k: p[k] for k in ("x", "w1", "w2", "b", "v", "z")}, mu=p["mu"], sigma=p["sigma"], m=m)
        proc = subprocess.run([sys.executable, __file__, "--func-hessian-worker", npz, out, str(cap), str(threads)],
                              capture_output=True, text=True, timeout=1800)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            return {"m": m, "ok": False, "error": f"worker exited {proc.returncode}: {proc.stderr.strip()[-300:]}"}
        result = json.loads(line[len("RESULT "):])
        if result["ok"]:
            result["H"] = np.load(out)
    return result


def route_a(cap: float, threads: int, quick: bool, backend: str, mem_factor_guess: float = 6.0) -> dict:
    """torch.func.hessian at small m (where the estimate fits under the cap) and at m = 100,
    1000 (where one batched intermediate alone is over the cap, so it fails at once)."""
    import bigstep

    small = (5, 10) if quick else (5, 10, 20)
    runs, measured = [], {}
    N = N_DATA * SAMPLES
    for m in small + (100, M):
        unit = 8.0 * (2 * m) * N * m  # one intermediate batched over the 2m tangents
        guard = max([mem_factor_guess, *measured.values()])  # conservative factor for the pre-run check
        entry = {"m": m, "batched_intermediate_bytes": unit}
        if guard * unit > cap and unit <= cap:  # would fill the cap before failing: do not try
            entry.update(ok=False, error=f"not run: estimated peak {guard * unit / 1e9:.1f} GB is over the cap "
                                         f"{cap / 1e9:.1f} GB")
            runs.append(entry)
            continue
        r = run_func_hessian(m, cap, threads)  # over the cap at once (unit > cap): fails at its first allocation
        entry.update({k: v for k, v in r.items() if k != "H"})
        if r.get("ok"):
            p = problem(m)
            net = exact_net(p)
            exact_t = _common.timed(lambda: bigstep.dsm_risk_hessian(net, p["x"], p["mu"], p["sigma"], wrt=WRT,
                                                                     backend=backend), repeat=20, max_seconds=0.5)
            H_exact = bigstep.dsm_risk_hessian(net, p["x"], p["mu"], p["sigma"], wrt=WRT, backend=backend)
            mc = MonteCarlo(p)
            H_model = autodiff_hessian(mc.gauss_newton(16384).numpy(), mc.curvature())
            entry.update(exact_seconds=exact_t.best, ratio=r["seconds"] / exact_t.best,
                         error_vs_exact=rel_fro(r["H"], H_exact),
                         jtj_plus_curvature_vs_func_hessian=rel_fro(H_model, r["H"]))
            parts = exact_parts(p, backend)
            if parts is not None:
                entry["error_vs_exact_dirac_added"] = rel_fro(r["H"] + dirac_matrix(parts["dirac"]), H_exact)
            used = r["peak_rss_bytes"] - r["baseline_rss_bytes"]
            if used > 0:
                measured[m] = entry["measured_memory_factor"] = used / unit
        runs.append(entry)
        msg = (f"{entry['seconds']:.2f} s (exact {entry['exact_seconds'] * 1e3:.3f} ms, ratio {entry['ratio']:.3g}), "
               f"peak RSS {entry['peak_rss_bytes'] / 1e9:.2f} GB, error vs exact {entry['error_vs_exact']:.2e}"
               if entry.get("ok") else entry.get("error", ""))
        print(f"  (a) torch.func.hessian m={m}: {msg}", flush=True)
    # estimates with the factor measured at the largest m that ran (the most representative)
    factor = measured[max(measured)] if measured else mem_factor_guess
    for e in runs:
        e["estimated_peak_bytes"] = factor * e["batched_intermediate_bytes"]
        e["memory_factor"] = factor
    return {"cap_bytes": cap, "memory_factor": factor, "runs": runs}


# --------------------------------------------------------------------------- bandwidth


def write_seconds(shape: tuple[int, ...], *, threads: int, fresh: bool, repeat: int) -> float:
    """Best time to write float64 ``shape`` (np.empty + fill, in ``threads`` threads over row
    blocks; ``fresh``: a new array each time, so page faults are paid as a fresh output pays
    them)."""
    keep = None if fresh else np.empty(shape)

    def fill(a: np.ndarray) -> None:
        blocks = np.array_split(np.arange(a.shape[0]), threads)
        if threads == 1:
            a.fill(1.0)
            return
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda ix: a[ix[0]:ix[-1] + 1].fill(1.0), blocks))

    def once() -> None:
        a = np.empty(shape) if fresh else keep
        fill(a)

    return _common.timed(once, repeat=repeat).best


def bandwidth(P: int, threads: int, repeat: int) -> dict:
    out = {"bytes": 8.0 * P * P}
    for fresh in (True, False):
        for t in sorted({1, threads}):
            out[f"{'fresh' if fresh else 'warm'}_{t}_threads_s"] = write_seconds((P, P), threads=t, fresh=fresh,
                                                                              repeat=repeat)
    out["fresh_s"] = min(v for k, v in out.items() if k.startswith("fresh_"))
    out["warm_s"] = min(v for k, v in out.items() if k.startswith("warm_"))
    out["fresh_GBps"] = out["bytes"] / out["fresh_s"] / 1e9
    out["warm_GBps"] = out["bytes"] / out["warm_s"] / 1e9
    return out


# --------------------------------------------------------------------------- measuring


class Runner:
    def __init__(self, quick: bool, wait: float, attempts: int):
        self.quick, self.wait, self.attempts = quick, wait, attempts

    def measure(self, what: str, fn):
        """Run ``fn()`` (returns a dict) via when_quiet; adds other_load."""
        result, load = _common.when_quiet(fn, what=what, wait=self.wait, attempts=self.attempts)
        return {**result, "other_load": load}


def exact_timings(backend: str, p: dict, runner: Runner) -> dict:
    import bigstep

    net, x, mu, sigma, v = exact_net(p), p["x"], p["mu"], p["sigma"], p["v"]
    rep = 10 if runner.quick else 30

    def go():
        out = {}
        for name, fn in (("risk", lambda: bigstep.dsm_risk(net, x, mu, sigma, backend=backend)),
                         ("grad", lambda: bigstep.dsm_risk_grad(net, x, mu, sigma, wrt=WRT, backend=backend)),
                         ("hvp", lambda: bigstep.dsm_risk_hvp(net, x, mu, sigma, v, wrt=WRT, backend=backend)),
                         ("hessian", lambda: bigstep.dsm_risk_hessian(net, x, mu, sigma, wrt=WRT, backend=backend))):
            out[f"{name}_s"] = _common.timed(fn, repeat=rep, max_seconds=1.0).best
        return out

    return runner.measure(f"bigstep {backend} at m={p['m']}", go)


def run(quick: bool, wait: float, attempts: int, cap_gb: float) -> dict:
    import torch

    import bigstep

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    load_before = _common.wait_until_quiet(wait)
    machine = {**_common.machine_info(), "other_load_before": load_before, "torch_threads": threads}
    print(f"machine: {machine['cpu']['model']}, {machine['cpu']['logical_cores']} cores; numpy "
          f"{machine['versions']['numpy']}, torch {machine['versions']['torch']} ({threads} threads), numba "
          f"{machine['versions']['numba']}", flush=True)
    runner = Runner(quick, wait, attempts)
    backends = {b: relu_backend_error(b) for b in BACKENDS}
    live = [b for b, why in backends.items() if why is None]
    for b, why in backends.items():
        if why:
            print(f"bigstep {b}: skipped ({why})")
    if not live:
        raise SystemExit("no bigstep backend computes the ReLU risk here")

    # ---- ceilings: GEMM (the J^T J route's bound) and memory write bandwidth (the Hessian's)
    size = 2048 if quick else 4096
    ceilings = runner.measure("the GEMM ceiling", lambda: {
        "gemm_float64_torch": _common.gemm_rate("float64", lib="torch", size=size, threads=threads),
        "gemm_float64_numpy": _common.gemm_rate("float64", lib="numpy", size=size), "gemm_size": size})
    P4 = 2 * M_ASSEMBLY
    bw = runner.measure("the write bandwidth", lambda: bandwidth(P4, threads, 2 if quick else 4))
    ceilings["write"] = bw
    print(f"ceilings: GEMM float64 torch {ceilings['gemm_float64_torch'] / 1e9:.1f} GFLOP/s, numpy "
          f"{ceilings['gemm_float64_numpy'] / 1e9:.1f}; writing {P4}^2 doubles ({bw['bytes'] / 1e6:.0f} MB): fresh "
          f"{bw['fresh_s']:.3f} s ({bw['fresh_GBps']:.2f} GB/s), warm {bw['warm_s']:.3f} s "
          f"({bw['warm_GBps']:.2f} GB/s)",
          flush=True)

    # ---- exact at m = 1000
    p = problem(M)
    exact = {b: exact_timings(b, p, runner) for b in live}
    for b, e in exact.items():
        print(f"bigstep {b} m={M}: risk {e['risk_s'] * 1e3:.3f} ms, grad {e['grad_s'] * 1e3:.3f} ms, "
              f"hvp {e['hvp_s'] * 1e3:.3f} ms, hessian {e['hessian_s'] * 1e3:.3f} ms", flush=True)
    best = {k: min(live, key=lambda b: exact[b][k]) for k in ("risk_s", "hvp_s", "hessian_s")}
    ref_backend = live[0]
    net = exact_net(p)
    R_exact = bigstep.dsm_risk(net, p["x"], p["mu"], p["sigma"], backend=ref_backend)
    H_exact = bigstep.dsm_risk_hessian(net, p["x"], p["mu"], p["sigma"], wrt=WRT, backend=ref_backend)
    hv_exact = bigstep.dsm_risk_hvp(net, p["x"], p["mu"], p["sigma"], p["v"], wrt=WRT, backend=ref_backend)
    parts = exact_parts(p, ref_backend)

    # ---- Monte Carlo routes at m = 1000
    mc = MonteCarlo(p)
    routes: dict = {}
    R_mc = mc.risk()
    routes["risk"] = runner.measure("the MC risk", lambda: {
        "seconds": _common.timed(mc.risk, repeat=2 if quick else 5, max_seconds=10).best})
    print(f"MC risk (forward, {mc.N} samples): {routes['risk']['seconds']:.3f} s", flush=True)

    blocks = (4096,) if quick else (2048, 4096, 16384)
    calib = {}
    mc.hvp(1024)  # warm-up
    for rows in blocks:
        calib[rows] = _common.timed(lambda: mc.hvp(rows), repeat=1, warmup=False).best
    rows = min(calib, key=calib.get)
    hv_mc = mc.hvp(rows).numpy()
    routes["hvp"] = runner.measure("(d) autograd HVP", lambda: {
        "seconds": _common.timed(lambda: mc.hvp(rows), repeat=2 if quick else 3, warmup=False, max_seconds=30).best,
        "block_rows": rows, "block_calibration_s": calib})
    print(f"(d) autograd HVP: {routes['hvp']['seconds']:.3f} s (blocks of {rows} samples)", flush=True)

    idx = [0, M] if quick else [0, 1, M, M + 1]

    def rows_route():
        t_graph, t_rows, H_rows = mc.hessian_rows(idx, rows)
        return {"rows_timed": len(idx), "graph_s": t_graph, "rows_s": t_rows, "per_row_s": t_rows / len(idx),
                "seconds": t_graph + t_rows * (2 * M) / len(idx), "extrapolated": True, "block_rows": rows,
                "H_rows": H_rows}

    routes["rows"] = runner.measure("(c) row-by-row double backward", rows_route)
    H_rows = routes["rows"].pop("H_rows")
    print(f"(c) double backward: {routes['rows']['per_row_s']:.3f} s per row ({len(idx)} rows timed) -> "
          f"{routes['rows']['seconds']:.0f} s for {2 * M} rows (EXTRAPOLATED)", flush=True)

    jrows = 8192
    gn = mc.gauss_newton(jrows)

    def jtj_route():
        t = _common.timed(lambda: mc.gauss_newton(jrows), repeat=1 if quick else 2, warmup=False)
        flops = 2.0 * mc.N * (2 * M) ** 2
        return {"seconds": t.best, "runs": t.runs, "block_rows": jrows, "gemm_flops": flops,
                "gemm_fraction_of_ceiling": flops / t.best / ceilings["gemm_float64_torch"]}

    routes["jtj"] = runner.measure("(b) J^T J", jtj_route)
    print(f"(b) J^T J: {routes['jtj']['seconds']:.2f} s ({routes['jtj']['gemm_fraction_of_ceiling']:.2f} of the "
          f"torch GEMM ceiling)", flush=True)

    # ---- (a) torch.func.hessian in capped child processes
    cap = min(cap_gb * 1e9, 0.5 * _available_memory())
    routes["func_hessian"] = route_a(cap, threads, quick, best["hessian_s"])

    # ---- accuracy of the Monte Carlo estimator
    curv = mc.curvature()
    H_mc = autodiff_hessian(gn.numpy(), curv)
    acc = {"risk_exact": R_exact, "risk_mc": R_mc, "risk_rel_error": abs(R_mc - R_exact) / abs(R_exact),
           "hessian_rel_fro_error": rel_fro(H_mc, H_exact),
           "hvp_rel_error": float(np.linalg.norm(hv_mc - hv_exact) / np.linalg.norm(hv_exact)),
           "rows_vs_jtj_plus_curvature": rel_fro(H_rows, H_mc[idx])}
    if parts is not None:
        m = M
        ii = np.arange(m)
        D = dirac_matrix(parts["dirac"])
        C = np.zeros_like(H_exact)
        C[ii, m + ii] = C[m + ii, ii] = parts["curvature"]
        hv_d = np.concatenate((np.zeros(m), parts["dirac"] * p["v"][m:]))
        acc.update(dirac_share_of_hessian=float(np.linalg.norm(D) / np.linalg.norm(H_exact)),
                   hessian_rel_fro_error_dirac_added=rel_fro(H_mc + D, H_exact),
                   gauss_newton_rel_fro_error=rel_fro(gn.numpy(), H_exact - C - D),
                   hvp_rel_error_dirac_added=float(np.linalg.norm(hv_mc + hv_d - hv_exact) / np.linalg.norm(hv_exact)))
    print("MC accuracy: " + ", ".join(f"{k} {v:.3g}" for k, v in acc.items()), flush=True)

    # ---- sharpness at m = 100,000 and assembly at m = 4000
    ps, pa = problem(M_SHARPNESS), problem(M_ASSEMBLY)
    large = {}
    for b in live:
        ns, na = exact_net(ps), exact_net(pa)

        def go():
            lam = {}
            ts = _common.timed(lambda: lam.setdefault("v", bigstep.sharpness(ns, ps["x"], ps["mu"], ps["sigma"],
                                                                              wrt=WRT, backend=b)),
                               repeat=1 if quick else 3, max_seconds=20)
            ta = _common.timed(lambda: bigstep.dsm_risk_hessian(na, pa["x"], pa["mu"], pa["sigma"], wrt=WRT,
                                                                backend=b), repeat=2 if quick else 5, max_seconds=10)
            return {"sharpness_s": ts.best, "sharpness": lam["v"], "assembly_s": ta.best, "assembly_runs": ta.runs}

        large[b] = runner.measure(f"bigstep {b} sharpness / assembly", go)
        print(f"bigstep {b}: sharpness m={M_SHARPNESS}: {large[b]['sharpness_s']:.3f} s (lambda_max "
              f"{large[b]['sharpness']:.6g}); Hessian m={M_ASSEMBLY}: {large[b]['assembly_s']:.3f} s", flush=True)

    # ---- ratios and targets
    table, targets = [], {}
    for b in live:
        e = exact[b]
        for route, label, key, ex_key in (("jtj", "(b) J^T J, Gauss-Newton part", "hessian_vs_jtj", "hessian_s"),
                                          ("rows", "(c) row-by-row double backward [extrapolated]", None, "hessian_s"),
                                          ("hvp", "(d) autograd HVP", "hvp_vs_autograd", "hvp_s"),
                                          ("risk", "MC risk forward", None, "risk_s")):
            ratio = routes[route]["seconds"] / e[ex_key]
            table.append({"backend": b, "route": label, "m": M, "peer_s": f"{routes[route]['seconds']:.4g}",
                          "exact_s": f"{e[ex_key]:.3g}", "ratio": f"{ratio:.3g}",
                          "target": _target_text(key), "met": _met(key, ratio)})
            routes[route].setdefault("ratio_by_backend", {})[b] = ratio
    for r in routes["func_hessian"]["runs"]:
        if r.get("ok"):
            table.append({"backend": best["hessian_s"], "route": "(a) torch.func.hessian", "m": r["m"],
                          "peer_s": f"{r['seconds']:.4g}", "exact_s": f"{r['exact_seconds']:.3g}",
                          "ratio": f"{r['ratio']:.3g}", "target": "", "met": ""})
    b_h, b_v = best["hessian_s"], best["hvp_s"]
    targets["hessian_vs_jtj"] = routes["jtj"]["seconds"] / exact[b_h]["hessian_s"]
    targets["hvp_vs_autograd"] = routes["hvp"]["seconds"] / exact[b_v]["hvp_s"]
    b_s = min(live, key=lambda b: large[b]["sharpness_s"])
    b_a = min(live, key=lambda b: large[b]["assembly_s"])
    targets["sharpness_seconds"] = large[b_s]["sharpness_s"]
    targets["assembly_vs_write"] = large[b_a]["assembly_s"] / bw["fresh_s"]
    target_rows = [{"target": TARGETS[k][2], "goal": f"{TARGETS[k][0]} {TARGETS[k][1]:g}", "measured": f"{v:.3g}",
                    "backend": {"hessian_vs_jtj": b_h, "hvp_vs_autograd": b_v, "sharpness_seconds": b_s,
                                "assembly_vs_write": b_a}[k], "met": _met(k, v)} for k, v in targets.items()]

    print("\n== exact vs Monte Carlo routes (m = 1000, n = 20, K = 5000 samples per point) ==")
    print(_common.format_table(table, [("backend", "backend"), ("route", "route"), ("m", "m"),
                                       ("peer_s", "route s"), ("exact_s", "exact s"), ("ratio", "route/exact"),
                                       ("target", "target"), ("met", "met")]))
    print("\n== targets (best backend each) ==")
    print(_common.format_table(target_rows, [("target", "target"), ("goal", "goal"), ("measured", "measured"),
                                             ("backend", "backend"), ("met", "met")]))
    print(f"assembly vs warm write (no page faults): {large[b_a]['assembly_s'] / bw['warm_s']:.3g}x")
    fh = routes["func_hessian"]
    for r in fh["runs"]:
        if not r.get("ok"):
            asked = f", asked for {r['asked_bytes'] / 1e9:.3g} GB" if "asked_bytes" in r else ""
            print(f"(a) torch.func.hessian m={r['m']}: failed/skipped{asked}; estimated peak "
                  f"{r['estimated_peak_bytes'] / 1e9:.3g} GB (cap {fh['cap_bytes'] / 1e9:.1f} GB): "
                  f"{r.get('error', '')}")

    return {"benchmark": "relu_risk_cpu", "quick": quick, "machine": machine, "ceilings": ceilings,
            "settings": settings(), "backends": backends, "exact_m1000": exact, "exact_large": large,
            "routes": routes, "accuracy": accuracy_doc(acc), "targets": {
                k: {"goal": f"{TARGETS[k][0]} {TARGETS[k][1]:g}", "what": TARGETS[k][2], "measured": v,
                    "met": _met(k, v) == "yes"} for k, v in targets.items()}}


def _target_text(key) -> str:
    return "" if key is None else f"{TARGETS[key][0]} {TARGETS[key][1]:g}"


def _met(key, value) -> str:
    if key is None:
        return ""
    op, goal, _ = TARGETS[key]
    return "yes" if (value >= goal if op == ">=" else value <= goal) else "NO"


def accuracy_doc(acc: dict) -> dict:
    return {**acc, "notes": "MC = the paper's estimator with 5,000 fixed noise samples per data point; the MC Hessian "
                            "is J^T J + curvature (what autodiff gives, checked against torch.func.hessian at "
                            "small m); "
                            "*_dirac_added: with bigstep's exact Dirac term added, leaving the sampling error alone; "
                            "relative errors in the Frobenius / 2-norm against bigstep's exact values"}


def settings() -> dict:
    mu, sigma = noise_level()
    return {"n": N_DATA, "x": "N(0, 1), numpy Generator seed 0", "mu": mu, "sigma": sigma, "t": 0.05,
            "m": M, "wrt": WRT, "net": "w1 in {+1,-1} and w2 ~ N(0,1) from ReLUNet1D.init(m, 0); b ~ U[-3, 3] (seed 1)",
            "mc_samples_per_point": SAMPLES, "mc_noise": "z ~ N(0, 1), numpy Generator seed 3, fixed",
            "m_sharpness": M_SHARPNESS, "m_assembly": M_ASSEMBLY,
            "timing": "best of several after a warm-up; exact calls include the O(n m) preparation",
            "rows_route": "EXTRAPOLATED: graph build + 2m x (time per row), a few rows timed",
            "autograd_blocks": "autograd routes sum over row blocks of the samples (fastest block size here)",
            "write_time": "np.empty + fill of the (2m)^2 float64 output, fresh array (page faults included), "
                          "1 and all threads, best; warm = into an already-touched array",
            "other_load": "share of the CPU other processes took during a measurement (re-measured above 5%)"}


def main(argv=None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--func-hessian-worker":
        npz, out, cap, threads = sys.argv[2:6]
        func_hessian_worker(npz, out, float(cap), int(threads))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer repeats, fewer rows for (c), torch.func.hessian at m = 5, 10 only, one attempt")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                    help="wait up to this long for other processes to leave the CPU, before starting "
                         "and before measuring again a figure they skewed")
    ap.add_argument("--attempts", type=int, help="measurements of a figure while others load the CPU "
                                                 "(default 3, quick 1)")
    ap.add_argument("--cap-gb", type=float, default=CAP_GB,
                    help="address-space cap of the torch.func.hessian child process (default 8; at most half "
                         "the available memory)")
    ap.add_argument("--out", type=Path, help="results JSON (default results/relu_risk_cpu[_quick].json)")
    args = ap.parse_args(argv)
    out = args.out or RESULTS / f"relu_risk_cpu{'_quick' if args.quick else ''}.json"
    attempts = args.attempts or (1 if args.quick else 3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="nopython is set")  # numba's, at bigstep's import
        payload = run(args.quick, args.wait_quiet, attempts, args.cap_gb)
    print(f"\nwrote {_common.write_json(out, payload)}")


if __name__ == "__main__":
    main()
