"""GPU benchmarks of bigstep's CUDA backend against the best torch routes doing the same
math at equal accuracy, with accuracy against float64 references (issue 16, W1-W3).

    python benchmarks/compare_gpu.py --quick                 # ~2-3 min on an H100 (tools/gpu_check.sh)
    python benchmarks/compare_gpu.py                         # the issue's sizes (W1 alone: hours)
    python benchmarks/compare_gpu.py --dry-run               # no GPU: tiny sizes on the CPU
    python benchmarks/compare_gpu.py --summary results.json  # the table of a results file

Options: ``--only W1,W2,W3`` (a subset), ``--budget SECONDS`` (skip what would start after
that long; the JSON is written after every workload, so a run stopped from outside keeps
what it measured), ``--out FILE`` (default benchmarks/results/compare_gpu_<mode>.json).

Workloads
---------
W1  the optimal denoiser E[x | y] of CIFAR-10-sized data (d = 3,072), float32 in and out,
    on the EDM grid (18 levels, sigma 80 .. 0.002, rho = 7, mu = 1): n = 50,000, q = 10,000
    (--quick: n = 5,000, q = 256).  Every route's relative L2 error against a float64
    difference-form reference on 256 queries must stay <= 1e-5 at every level to count as
    equally accurate; the target is >= 2x the fastest equally accurate torch route.  Routes:
    bigstep (cuda), torch cdist + softmax chunked to fit, torch chunked online softmax,
    torch scaled_dot_product_attention (logits a <y, x> - c ||x||^2 as one product of
    augmented rows; whichever SDPA kernel torch picks), bigstep backend="torch"; each torch
    route in float32 and in float64 (inputs upcast, output rounded to float32).  Rates are
    counted as 4 q n d flop per level (the two matrix products) and reported as fractions
    of the FP32 peak (datasheet) and of the measured float32 GEMM rate (TF32 off); bigstep
    computes in float64 on the tensor cores, so its fraction of the FP64 tensor peak too.
W2  the score s* in float64 of n = 20,000 points in d = 1,024, 4,096, 16,384 for q = 50,000
    queries (the Gaussian-mixture phase studies: "N > 4096 fails on my GPUs"): no
    out-of-memory at d = 16,384, accuracy on 256 queries, fractions of the FP64 peak.
W3  the paper's sizes: 1-D s* at n = q = 10^6 (float32 and float64) as a fraction of the
    measured exp-only ceiling kernel (the same exp_nonpos on register values); the fused
    sampler (EmpiricalScore, n = 1,000 points in d = 2, 10^6 particles, 100 steps) against a
    torch CUDA loop (target >= 20x; the loop runs fewer steps and is compared per
    particle-step); 10,000 width-1,000 1-D networks trained in one call (batch 50) against
    a batched torch loop of the same closed-form SGD step.

--dry-run runs every part of this script on the CPU at tiny sizes, with bigstep's torch
backend (or, where it has no kernels for a family, the cpp backend) standing in for cuda,
so that the script's logic is tested without a GPU; its numbers mean nothing.

Results name the GPU, driver and CUDA version; a GPU figure counts only when measured on a
GPU (the dry run's JSON says dry_run: true).  No TF32 anywhere: torch's float32 matrix
products are set to full precision before anything runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

SIZES = {
    "full": {
        "W1": {"n": 50_000, "d": 3072, "q": 10_000, "ref_q": 256},
        "W2": {"n": 20_000, "ds": (1024, 4096, 16384), "q": 50_000, "ref_q": 256},
        "W3_1d": {"n": 1_000_000, "q": 1_000_000, "ref_q": 256},
        "W3_sampler": {"n_data": 1000, "d": 2, "particles": 1_000_000, "steps": 100, "peer_steps": 100},
        "W3_sgd": {"networks": 10_000, "width": 1000, "batch": 50, "steps": 5000, "peer_steps": 100},
        "gemm": 8192, "exp": (1 << 20, 1 << 15),
    },
    "quick": {
        "W1": {"n": 5_000, "d": 3072, "q": 256, "ref_q": 256},
        "W2": {"n": 20_000, "ds": (1024, 4096, 16384), "q": 50_000, "ref_q": 256},
        "W3_1d": {"n": 1_000_000, "q": 1_000_000, "ref_q": 256},
        "W3_sampler": {"n_data": 1000, "d": 2, "particles": 1_000_000, "steps": 100, "peer_steps": 10},
        "W3_sgd": {"networks": 10_000, "width": 1000, "batch": 50, "steps": 200, "peer_steps": 10},
        "gemm": 8192, "exp": (1 << 20, 1 << 15),
    },
    "dry-run": {
        "W1": {"n": 300, "d": 48, "q": 32, "ref_q": 32},
        "W2": {"n": 200, "ds": (16, 64, 300), "q": 64, "ref_q": 32},
        "W3_1d": {"n": 3000, "q": 2000, "ref_q": 64},
        "W3_sampler": {"n_data": 50, "d": 2, "particles": 500, "steps": 5, "peer_steps": 2},
        "W3_sgd": {"networks": 20, "width": 30, "batch": 10, "steps": 10, "peer_steps": 3},
        "gemm": 256, "exp": (1 << 12, 64),
    },
}

# Dense peak TFLOP/s by the vendor's datasheets: (FP32 non-tensor, FP64 non-tensor, FP64 tensor).
PEAKS = (("H200", (67.0, 34.0, 67.0)), ("H100 PCIe", (51.0, 26.0, 51.0)), ("H100 NVL", (60.0, 30.0, 60.0)),
         ("H100", (67.0, 34.0, 67.0)), ("A100", (19.5, 9.7, 19.5)))
W1_TOL = 1e-5
SAMPLER_TARGET = 20.0
W1_TARGET = 2.0


# ---------------------------------------------------------------------------- setup


class Clock:
    """Budget and device-aware timing."""

    def __init__(self, torch, device, budget):
        self.torch, self.device = torch, device
        self.end = time.perf_counter() + budget if budget else math.inf

    def left(self):
        return self.end - time.perf_counter()

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def time(self, fn):
        """(seconds, result) of one call, the device synchronised around it."""
        self.sync()
        t0 = time.perf_counter()
        out = fn()
        self.sync()
        return time.perf_counter() - t0, out


def machine(torch, device, dry):
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "dry_run": dry, "host": platform.node(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "numpy": np.__version__, "cpus": os.cpu_count()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, sm_count=p.multi_processor_count, memory_gib=round(p.total_memory / 2**30, 1),
                    compute_capability=f"{p.major}.{p.minor}")
    try:
        import bigstep
        from bigstep import _backend

        info["bigstep"] = bigstep.__version__ if hasattr(bigstep, "__version__") else None
        cuda = _backend.cuda_module()
        if cuda is not None:
            info.update(bigstep_cuda_archs=cuda.compiled_archs, cuda_runtime=cuda.runtime_version(),
                        driver=cuda.driver_version(), source_digest=getattr(cuda, "source_digest", None))
    except Exception as exc:  # the report must name what it can even if bigstep is broken
        info["bigstep_error"] = f"{type(exc).__name__}: {exc}"
    return info


def peaks(gpu_name):
    for key, value in PEAKS:
        if gpu_name and key in gpu_name:
            return dict(zip(("fp32", "fp64", "fp64_tensor"), value))
    return None


def backend_for(family, dry):
    """bigstep's backend for a family: cuda on a GPU; in a dry run the torch backend where
    it has the family's kernels, else cpp."""
    from bigstep import _backend

    if not dry:
        return "cuda"
    have = _backend.backends(family)
    return "torch" if "torch" in have else "cpp"


def kernels(family, backend):
    from bigstep import _backend

    return _backend.kernels(family, backend)


def to_backend(backend, *arrays):
    """torch tensors for cuda/torch, numpy arrays for cpp."""
    if backend == "cpp":
        return [a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a) for a in arrays]
    return list(arrays)


def from_backend(torch, a, device):
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a)).to(device)


def edm_sigmas(n=18, smin=0.002, smax=80.0, rho=7.0):
    i = np.arange(n)
    return (smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho


def rel_l2(got, ref):
    got = got.double()
    ref = ref.double()
    return float(((got - ref).norm() / ref.norm()).item())


def chunk_rows(n_other, elem_bytes, budget_bytes, factor=3):
    return max(1, int(budget_bytes // max(1, n_other * elem_bytes * factor)))


# ------------------------------------------------------------ s*: the torch routes
# Each returns the posterior mean E[x | y] (q, d) in compute dtype cdt, at one level
# (mu, sigma) for all queries; mem: bytes a route may use for its q x n blocks.


def route_cdist_softmax(torch, y, x, mu, sigma, cdt, mem):
    ys, xs = y.to(cdt), x.to(cdt)
    rows = chunk_rows(xs.shape[0], xs.element_size(), mem)
    out = []
    for i in range(0, ys.shape[0], rows):
        r2 = torch.cdist(ys[i:i + rows], mu * xs) ** 2
        out.append(torch.softmax(-r2 / (2 * sigma * sigma), dim=1) @ xs)
    return torch.cat(out)


def route_online_softmax(torch, y, x, mu, sigma, cdt, mem, block=8192):
    ys, xs = y.to(cdt), x.to(cdt)
    a, c = mu / sigma**2, mu * mu / (2 * sigma**2)
    xn = (xs * xs).sum(1)
    rows = chunk_rows(min(block, xs.shape[0]), xs.element_size(), mem)
    out = []
    for i in range(0, ys.shape[0], rows):
        yc = ys[i:i + rows]
        m = torch.full((yc.shape[0], 1), -math.inf, dtype=cdt, device=ys.device)
        s = torch.zeros((yc.shape[0], 1), dtype=cdt, device=ys.device)
        acc = torch.zeros((yc.shape[0], xs.shape[1]), dtype=cdt, device=ys.device)
        for j in range(0, xs.shape[0], block):
            logits = a * (yc @ xs[j:j + block].T) - c * xn[j:j + block]
            m_new = torch.maximum(m, logits.max(1, keepdim=True).values)
            scale = torch.exp(m - m_new)
            w = torch.exp(logits - m_new)
            s = s * scale + w.sum(1, keepdim=True)
            acc = acc * scale + w @ xs[j:j + block]
            m = m_new
        out.append(acc / s)
    return torch.cat(out)


def route_sdpa(torch, y, x, mu, sigma, cdt, mem):
    """softmax(a <y, x_j> - c ||x_j||^2) x as attention: Q = [a y, -c], K = [x, ||x||^2], V = x."""
    import torch.nn.functional as F

    ys, xs = y.to(cdt), x.to(cdt)
    a, c = mu / sigma**2, mu * mu / (2 * sigma**2)
    k = torch.cat([xs, (xs * xs).sum(1, keepdim=True)], dim=1)
    rows = chunk_rows(xs.shape[0], xs.element_size(), mem)
    out = []
    for i in range(0, ys.shape[0], rows):
        yc = ys[i:i + rows]
        qm = torch.cat([a * yc, torch.full((yc.shape[0], 1), -c, dtype=cdt, device=ys.device)], dim=1)
        out.append(F.scaled_dot_product_attention(qm[None], k[None], xs[None], scale=1.0)[0])
    return torch.cat(out)


def route_bigstep(torch, backend, y, x, mu, sigma):
    ns = kernels("optimal_score", backend)
    args = to_backend(backend, y, x, torch.tensor([mu], dtype=y.dtype, device=y.device),
                      torch.tensor([sigma], dtype=y.dtype, device=y.device))
    return from_backend(torch, ns.optimal_score_nd(*args, 4)[2], y.device)


def reference_mean(torch, y, x, mu, sigma, mem):
    """E[x | y] in float64, difference form (cdist without the matrix-product shortcut)."""
    ys, xs = y.double(), x.double()
    rows = chunk_rows(xs.shape[0], 8, mem)
    out = []
    for i in range(0, ys.shape[0], rows):
        r2 = torch.cdist(ys[i:i + rows], mu * xs, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        out.append(torch.softmax(-r2 / (2 * sigma * sigma), dim=1) @ xs)
    return torch.cat(out)


def s_routes(torch, bk, dry):
    """name -> f(y, x, mu, sigma, mem) returning E[x | y], for bigstep and the torch peers."""
    routes = {f"bigstep ({bk})": lambda y, x, mu, s, mem: route_bigstep(torch, bk, y, x, mu, s)}
    for cdt, tag in ((torch.float32, "f32"), (torch.float64, "f64")):
        routes[f"torch cdist+softmax {tag}"] = lambda y, x, mu, s, mem, cdt=cdt: route_cdist_softmax(
            torch, y, x, mu, s, cdt, mem)
        routes[f"torch online softmax {tag}"] = lambda y, x, mu, s, mem, cdt=cdt: route_online_softmax(
            torch, y, x, mu, s, cdt, mem)
        routes[f"torch sdpa {tag}"] = lambda y, x, mu, s, mem, cdt=cdt: route_sdpa(torch, y, x, mu, s, cdt, mem)
    from bigstep import _backend

    if "torch" in _backend.backends("optimal_score") and bk != "torch":
        routes["bigstep backend=torch"] = lambda y, x, mu, s, mem: route_bigstep(torch, "torch", y, x, mu, s)
    return routes


# -------------------------------------------------------------------------- ceilings


def ceilings(torch, clock, size, dry):
    out = {}
    n = size["gemm"]
    for dt, name in ((torch.float32, "gemm_fp32_tflops"), (torch.float64, "gemm_fp64_tflops")):
        a = torch.randn(n, n, dtype=dt, device=clock.device)
        b = torch.randn(n, n, dtype=dt, device=clock.device)
        clock.time(lambda: a @ b)
        t = min(clock.time(lambda: a @ b)[0] for _ in range(3))
        out[name] = 2 * n**3 / t / 1e12
    threads, iters = size["exp"]
    for dt, name in ((torch.float32, "exp_fp32_per_s"), (torch.float64, "exp_fp64_per_s")):
        if dry:  # stand-in: torch.exp over an array
            v = -torch.rand(threads * 16, dtype=dt)
            t = min(clock.time(lambda: torch.exp(v))[0] for _ in range(3))
            out[name] = v.numel() / t
        else:
            from bigstep._cuda_kernels.optimal_score import exp_ceiling

            exp_ceiling(threads, 8, dt, clock.device)
            t = min(clock.time(lambda: exp_ceiling(threads, iters, dt, clock.device))[0] for _ in range(3))
            out[name] = threads * iters / t
    return out


# ----------------------------------------------------------------------------- W1


def cifar_like(torch, n, d, gen, device):
    """Images-like data in [-1, 1]^d: a low-rank smooth part and pixel noise, clipped."""
    z = torch.randn(n, 64, generator=gen, dtype=torch.float64)
    basis = torch.randn(64, d, generator=gen, dtype=torch.float64) / 8.0
    x = (0.6 * z @ basis + 0.15 * torch.randn(n, d, generator=gen, dtype=torch.float64)).clamp(-1, 1)
    return x.to(device)


def w1(torch, clock, size, bk, dry, mem):
    gen = torch.Generator().manual_seed(1)
    n, d, q, ref_q = size["n"], size["d"], size["q"], size["ref_q"]
    x64 = cifar_like(torch, n, d, gen, clock.device)
    x = x64.float()
    pick = torch.randint(0, n, (q,), generator=gen).to(clock.device)
    eps = torch.randn(q, d, generator=gen, dtype=torch.float64).to(clock.device)
    sigmas = edm_sigmas()
    queries = [(x64[pick] + float(s) * eps).float() for s in sigmas]
    refs = [reference_mean(torch, yq[:ref_q], x64, 1.0, float(s), mem) for yq, s in zip(queries, sigmas)]
    res = {"n": n, "d": d, "q": q, "ref_queries": ref_q, "levels": [float(s) for s in sigmas], "routes": {}}
    for name, fn in s_routes(torch, bk, dry).items():
        if clock.left() < 5:
            res["routes"][name] = {"skipped": "out of time"}
            continue
        entry = {"seconds_per_level": [], "rel_l2": []}
        try:
            clock.time(lambda: fn(queries[0][:min(q, 64)], x, 1.0, float(sigmas[0]), mem))  # warm-up
            for yq, s, ref in zip(queries, sigmas, refs):
                if clock.left() < 2:
                    entry["stopped"] = "out of time: the remaining levels were not run"
                    break
                t, out = clock.time(lambda: fn(yq, x, 1.0, float(s), mem))
                entry["seconds_per_level"].append(t)
                entry["rel_l2"].append(rel_l2(out[:ref_q].float(), ref))
        except Exception as exc:  # an out-of-memory or an unsupported kernel is a result too
            entry["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        if entry["seconds_per_level"]:
            entry["seconds"] = sum(entry["seconds_per_level"])
            entry["max_rel_l2"] = max(entry["rel_l2"])
            entry["accurate"] = bool(len(entry["rel_l2"]) == len(sigmas) and entry["max_rel_l2"] <= W1_TOL)
            entry["tflops"] = 4.0 * q * n * d * len(entry["seconds_per_level"]) / entry["seconds"] / 1e12
        res["routes"][name] = entry
    judge(res, f"bigstep ({bk})", W1_TARGET)
    return res


def judge(res, ours, target):
    """Speed-up of `ours` over the fastest equally accurate torch route."""
    mine = res["routes"].get(ours, {})
    peers = {k: v for k, v in res["routes"].items() if k != ours and v.get("accurate")}
    if not mine.get("accurate"):
        res["verdict"] = f"{ours} did not meet the accuracy bound (max rel. L2 {mine.get('max_rel_l2')})"
        return
    if not peers:
        res["verdict"] = "no torch route met the accuracy bound at every level"
        res["speedup_vs_best_accurate_peer"] = None
        return
    best = min(peers, key=lambda k: peers[k]["seconds"])
    speed = peers[best]["seconds"] / mine["seconds"]
    res["best_accurate_peer"] = best
    res["speedup_vs_best_accurate_peer"] = speed
    if target is None:
        res["verdict"] = f"{speed:.2f}x {best}"
        return
    res["target"] = target
    res["verdict"] = f"{speed:.2f}x {best} ({'meets' if speed >= target else 'misses'} the {target}x target)"


# ----------------------------------------------------------------------------- W2


def w2(torch, clock, size, bk, dry, mem):
    gen = torch.Generator().manual_seed(2)
    n, q, ref_q = size["n"], size["q"], size["ref_q"]
    mu, sigma = math.exp(-0.3), math.sqrt(1 - math.exp(-0.6))
    res = {"n": n, "q": q, "mu": mu, "sigma": sigma, "dims": {}}
    for d in size["ds"]:
        if clock.left() < 10:
            res["dims"][str(d)] = {"skipped": "out of time"}
            continue
        x = torch.randn(n, d, generator=gen, dtype=torch.float64).to(clock.device)
        pick = torch.randint(0, n, (q,), generator=gen).to(clock.device)
        y = mu * x[pick] + sigma * torch.randn(q, d, generator=gen, dtype=torch.float64).to(clock.device)
        ref_mean = reference_mean(torch, y[:ref_q], x, mu, sigma, mem)
        ref = (mu * ref_mean - y[:ref_q]) / sigma**2
        entry = {"routes": {}}
        routes = s_routes(torch, bk, dry)
        for name, fn in routes.items():
            if " f32" in name:
                continue  # W2 is float64 throughout
            if clock.left() < 5:
                entry["routes"][name] = {"skipped": "out of time"}
                continue
            try:
                fn(y[:8], x, mu, sigma, mem)  # warm-up
                t, mean = clock.time(lambda: fn(y, x, mu, sigma, mem))
                score = (mu * mean[:ref_q].double() - y[:ref_q]) / sigma**2
                err = rel_l2(score, ref)
                entry["routes"][name] = {"seconds": t, "rel_l2": err, "accurate": err <= 1e-10,
                                         "tflops": 4.0 * q * n * d / t / 1e12}
                del mean
            except Exception as exc:
                entry["routes"][name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        judge(entry, f"bigstep ({bk})", None)
        res["dims"][str(d)] = entry
        del x, y
        if clock.device.type == "cuda":
            torch.cuda.empty_cache()
    big = res["dims"].get(str(max(size["ds"])), {}).get("routes", {}).get(f"bigstep ({bk})", {})
    res["largest_d_ran"] = bool(big.get("seconds"))
    return res


# ----------------------------------------------------------------------------- W3


def w3_1d(torch, clock, size, bk, dry, exp_rates):
    gen = torch.Generator().manual_seed(3)
    n, q, ref_q = size["n"], size["q"], size["ref_q"]
    mu, sigma = math.exp(-0.05), math.sqrt(1 - math.exp(-0.1))
    x64 = torch.sort(torch.randn(n, generator=gen, dtype=torch.float64)).values.to(clock.device)
    pick = torch.randint(0, n, (q,), generator=gen).to(clock.device)
    y64 = mu * x64[pick] + sigma * torch.randn(q, generator=gen, dtype=torch.float64).to(clock.device)
    res = {"n": n, "q": q, "mu": mu, "sigma": sigma, "dtypes": {}}
    ns = kernels("optimal_score", bk)
    for dt, tag in ((torch.float32, "float32"), (torch.float64, "float64")):
        if clock.left() < 5:
            res["dtypes"][tag] = {"skipped": "out of time"}
            continue
        x, y = x64.to(dt), y64.to(dt)
        m_t = torch.tensor([mu], dtype=dt, device=clock.device)
        s_t = torch.tensor([sigma], dtype=dt, device=clock.device)
        args = to_backend(bk, y, x, m_t, s_t)
        small = to_backend(bk, y[:64], x, m_t, s_t)
        ns.optimal_score_1d(*small, 1)
        t, outs = clock.time(lambda: ns.optimal_score_1d(*args, 1))
        score = from_backend(torch, outs[0], clock.device)
        terms = window_terms(torch, y64, x64, mu, sigma, 104.0 if dt == torch.float32 else 745.5)
        ref = reference_1d(torch, y64[:ref_q], x64, mu, sigma)
        entry = {"seconds": t, "terms": terms, "terms_per_s": terms / t,
                 "rel_l2": rel_l2(score[:ref_q], ref)}
        rate = exp_rates.get("exp_fp32_per_s" if dt == torch.float32 else "exp_fp64_per_s")
        if rate:
            entry["fraction_of_exp_ceiling"] = entry["terms_per_s"] / rate
        res["dtypes"][tag] = entry
    return res


def window_terms(torch, y, x, mu, sigma, underflow):
    """Terms the 1-D kernel sums: |y - mu x_i| <= sqrt(2 sigma^2 L + e^2), e = y - mu x_s
    (x_s the nearest point), as bigstep/optimal_score.hpp window_1d."""
    z = y / mu
    s = torch.searchsorted(x, z).clamp(max=x.shape[0] - 1)
    prev = (s - 1).clamp(min=0)
    s = torch.where((z - x[prev]).abs() <= (x[s] - z).abs(), prev, s)
    e = y - mu * x[s]
    r = torch.sqrt(2 * sigma * sigma * underflow + e * e)
    lo = torch.searchsorted(x, (y - r) / mu)
    hi = torch.searchsorted(x, (y + r) / mu, right=True)
    return int((hi - lo).clamp(min=1).sum().item())


def reference_1d(torch, y, x, mu, sigma, rows=16):
    out = []
    for i in range(0, y.shape[0], rows):
        yc = y[i:i + rows, None]
        logits = -((yc - mu * x[None]) ** 2) / (2 * sigma * sigma)
        w = torch.softmax(logits, dim=1)
        out.append((mu * (w @ x) - yc[:, 0]) / sigma**2)
    return torch.cat(out)


def sampler_grid(torch, steps, device):
    tau = np.linspace(1.0, 0.01, steps + 1)
    h = tau[:-1] - tau[1:]
    mu, sig = np.exp(-tau[:-1]), np.sqrt(1 - np.exp(-2 * tau[:-1]))
    return tau[:-1].copy(), h, np.sqrt(2 * h), mu, sig


def torch_sampler_loop(torch, x, data, h, r, mu, sig, steps, mem):
    """The EM loop with s* by matrix product + softmax (float64), chunked over particles."""
    n2 = (data * data).sum(1)
    rows = chunk_rows(data.shape[0], 8, mem)
    for k in range(steps):
        a, b = mu[k] / sig[k] ** 2, mu[k] ** 2 / (2 * sig[k] ** 2)
        s = torch.empty_like(x)
        for i in range(0, x.shape[0], rows):
            xc = x[i:i + rows]
            w = torch.softmax(a * (xc @ data.T) - b * n2, dim=1)
            s[i:i + rows] = (mu[k] * (w @ data) - xc) / sig[k] ** 2
        x = x + h[k] * (x + 2 * s) + r[k] * torch.randn_like(x)
    return x


def w3_sampler(torch, clock, size, dry, mem):
    bk = backend_for("sampler", dry)
    gen = torch.Generator().manual_seed(4)
    nd, d, p, steps, peer_steps = size["n_data"], size["d"], size["particles"], size["steps"], size["peer_steps"]
    data = 2.0 * torch.randn(nd, d, generator=gen, dtype=torch.float64)
    x0 = torch.randn(p, d, generator=gen, dtype=torch.float64)
    tau, h, r, mu, sig = sampler_grid(torch, steps, clock.device)
    res = {"n_data": nd, "d": d, "particles": p, "steps": steps, "peer_steps": peer_steps, "backend": bk}
    ns = kernels("sampler", bk)
    if bk == "cpp":
        x = x0.numpy().copy()
        path = np.zeros((1, 1, 1))
        data_b, seed = data.numpy(), np.uint64(0)
    else:
        x = x0.to(clock.device).clone()
        path = torch.zeros((1, 1, 1), dtype=torch.float64, device=clock.device)
        data_b, seed = data.to(clock.device), 0
    ns.sampler_empirical_nd(x[:256] if bk != "cpp" else x[:256].copy(), 0, 1, h, r, mu, sig, tau, 2.0, seed,
                            False, path, data_b)  # warm-up
    t, _ = clock.time(lambda: ns.sampler_empirical_nd(x, 0, steps, h, r, mu, sig, tau, 2.0, seed, False, path,
                                                      data_b))
    res["bigstep_seconds"] = t
    res["bigstep_particle_steps_per_s"] = p * steps / t
    xt = x0.to(clock.device)
    dt_ = data.to(clock.device)
    torch_sampler_loop(torch, xt[:256], dt_, h, r, mu, sig, 1, mem)  # warm-up
    t, _ = clock.time(lambda: torch_sampler_loop(torch, xt, dt_, h, r, mu, sig, peer_steps, mem))
    res["torch_seconds"] = t
    res["torch_particle_steps_per_s"] = p * peer_steps / t
    res["speedup"] = res["bigstep_particle_steps_per_s"] / res["torch_particle_steps_per_s"]
    res["target"] = SAMPLER_TARGET
    res["verdict"] = f"{res['speedup']:.1f}x the torch loop ({'meets' if res['speedup'] >= SAMPLER_TARGET else 'misses'} " \
                     f"the {SAMPLER_TARGET:.0f}x target)"
    return res


def torch_sgd_loop(torch, x, mu, sigma, lr, w1_, w2_, b_, batch, steps, chunk=500):
    """The fused trainer's step in torch (closed-form gradient, float64), networks in chunks."""
    R, m = w1_.shape
    n = x.shape[0]
    for _ in range(steps):
        for i in range(0, R, chunk):
            w1c, w2c, bc, lrc = w1_[i:i + chunk], w2_[i:i + chunk], b_[i:i + chunk], lr[i:i + chunk]
            rc = w1c.shape[0]
            idx = torch.randint(0, n, (rc, batch), device=x.device)
            c = mu * x[idx]
            y = c + sigma * torch.randn(rc, batch, dtype=x.dtype, device=x.device)
            pre = w1c[:, None, :] * y[:, :, None] + bc[:, None, :]
            on = pre > 0
            f = (pre.clamp(min=0) * w2c[:, None, :]).sum(-1) / m + (y - c) / sigma**2
            g = (2 * lrc[:, None] / batch) * f
            sa = (on * g[:, :, None]).sum(1)
            say = (on * (g * y)[:, :, None]).sum(1)
            w2n = w2c - (w1c * say + bc * sa)
            b_[i:i + chunk] = bc - w2c * sa
            w1_[i:i + chunk] = w1c - w2c * say
            w2_[i:i + chunk] = w2n


def w3_sgd(torch, clock, size, dry):
    bk = backend_for("sgd", dry)
    R, m, B, steps, peer_steps = size["networks"], size["width"], size["batch"], size["steps"], size["peer_steps"]
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(20, generator=gen, dtype=torch.float64)
    w1_ = torch.randn(R, m, generator=gen, dtype=torch.float64) / math.sqrt(1.0)
    w2_ = torch.randn(R, m, generator=gen, dtype=torch.float64)
    b_ = torch.zeros(R, m, dtype=torch.float64)
    lr = torch.full((R,), 0.01, dtype=torch.float64)
    mu, sigma = math.exp(-0.05), math.sqrt(1 - math.exp(-0.1))
    res = {"networks": R, "width": m, "batch": B, "steps": steps, "peer_steps": peer_steps, "backend": bk}
    ns = kernels("sgd", bk)
    seeds = np.arange(R, dtype=np.uint64)
    if bk == "cpp":
        arrays = [a.numpy().copy() for a in (w1_, w2_, b_)]
        xs, lrs = x.numpy(), lr.numpy()
    else:
        arrays = [a.to(clock.device) for a in (w1_, w2_, b_)]
        xs, lrs = x.to(clock.device), lr.to(clock.device)
    state = [np.full(R, -1, np.int64), np.zeros(R), np.zeros(R, np.int64)]
    if bk != "cpp":
        state = [torch.from_numpy(s).to(clock.device) for s in state]
    run = lambda k0, k1: ns.sgd_train(xs, mu, sigma, lrs, seeds, *arrays, B, True, 0.0, k0, k1, *state)  # noqa: E731
    run(0, 1)  # warm-up (its step counts)
    t, _ = clock.time(lambda: run(1, 1 + steps))
    res["bigstep_seconds"] = t
    res["bigstep_network_steps_per_s"] = R * steps / t
    wt = [a.to(clock.device) for a in (w1_, w2_, b_)]
    torch_sgd_loop(torch, x.to(clock.device), mu, sigma, lr.to(clock.device), *wt, B, 1)  # warm-up
    t, _ = clock.time(lambda: torch_sgd_loop(torch, x.to(clock.device), mu, sigma, lr.to(clock.device), *wt, B,
                                             peer_steps))
    res["torch_seconds"] = t
    res["torch_network_steps_per_s"] = R * peer_steps / t
    res["speedup"] = res["bigstep_network_steps_per_s"] / res["torch_network_steps_per_s"]
    return res


# ----------------------------------------------------------------------------- main


def summary_lines(results):
    m = results.get("machine", {})
    lines = [f"compare_gpu ({results.get('mode')}) on {m.get('gpu', 'no GPU')}, driver {m.get('driver')}, "
             f"CUDA runtime {m.get('cuda_runtime')}, torch {m.get('torch')} (CUDA {m.get('torch_cuda')})"]
    if m.get("dry_run"):
        lines.append("DRY RUN: CPU stand-ins at tiny sizes; the numbers mean nothing")
    c = results.get("ceilings", {})
    if c:
        lines.append("ceilings: " + ", ".join(f"{k} {v:.3g}" for k, v in c.items()))
    w = results.get("W1")
    if w:
        lines.append(f"W1 n={w['n']} d={w['d']} q={w['q']}, 18 EDM levels, fp32 (tolerance {W1_TOL:g} rel. L2):")
        for name, e in w["routes"].items():
            if "seconds" in e:
                lines.append(f"  {name:28s} {e['seconds']:9.3f} s  {e['tflops']:7.2f} TFLOP/s  max rel.L2 "
                             f"{e['max_rel_l2']:.1e} {'ok' if e['accurate'] else 'INACCURATE'}")
            else:
                lines.append(f"  {name:28s} {e.get('error') or e.get('skipped')}")
        lines.append(f"  verdict: {w.get('verdict')}")
        if "fraction_fp32_peak" in w:
            lines.append(f"  bigstep: {w['fraction_fp32_peak']:.2f} of the FP32 peak, "
                         f"{w.get('fraction_fp64_tensor_peak', float('nan')):.2f} of the FP64 tensor peak")
    w = results.get("W2")
    if w:
        lines.append(f"W2 fp64 n={w['n']} q={w['q']}:")
        for d, e in w["dims"].items():
            for name, r in e.get("routes", {}).items():
                if "seconds" in r:
                    lines.append(f"  d={d:>6s} {name:28s} {r['seconds']:8.3f} s  {r['tflops']:7.2f} TFLOP/s  rel.L2 "
                                 f"{r['rel_l2']:.1e}" + (f"  {r['fraction_fp64_tensor_peak']:.2f} of FP64 peak"
                                                         if "fraction_fp64_tensor_peak" in r else ""))
                else:
                    lines.append(f"  d={d:>6s} {name:28s} {r.get('error') or r.get('skipped')}")
            if "skipped" in e:
                lines.append(f"  d={d:>6s} skipped: {e['skipped']}")
            elif "verdict" in e:
                lines.append(f"  d={d:>6s} verdict: {e['verdict']}")
    w = results.get("W3")
    if w:
        one = w.get("s1d", {})
        for tag, e in one.get("dtypes", {}).items():
            if "seconds" in e:
                lines.append(f"W3 1-D s* {tag} n=q={one['n']}: {e['seconds']:.3f} s, {e['terms_per_s']:.3g} terms/s, "
                             f"{e.get('fraction_of_exp_ceiling', float('nan')):.2f} of the exp ceiling, "
                             f"rel.L2 {e['rel_l2']:.1e}")
        s = w.get("sampler", {})
        if "speedup" in s:
            lines.append(f"W3 sampler {s['particles']} particles, n={s['n_data']}, d={s['d']}: "
                         f"{s['bigstep_particle_steps_per_s']:.3g} particle-steps/s, {s['verdict']}")
        g = w.get("sgd", {})
        if "speedup" in g:
            lines.append(f"W3 SGD {g['networks']} networks x width {g['width']}: {g['bigstep_seconds']:.2f} s for "
                         f"{g['steps']} steps, {g['bigstep_network_steps_per_s']:.3g} network-steps/s, "
                         f"{g['speedup']:.1f}x a batched torch loop")
    for key in ("W1", "W2", "W3"):
        if isinstance(results.get(key), dict) and "error" in results[key]:
            lines.append(f"{key} failed: {results[key]['error']}")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--dry-run", action="store_true")
    mode.add_argument("--summary", metavar="FILE")
    ap.add_argument("--only", default="W1,W2,W3")
    ap.add_argument("--budget", type=float, default=0.0, help="seconds; 0: no limit")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if args.summary:
        print("\n".join(summary_lines(json.loads(Path(args.summary).read_text()))))
        return 0
    mode_name = "dry-run" if args.dry_run else ("quick" if args.quick else "full")
    size = SIZES[mode_name]
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # no TF32, ever
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("compare_gpu: no CUDA device (use --dry-run to test the script without one)", file=sys.stderr)
        return 2
    device = torch.device("cpu") if dry else torch.device("cuda", torch.cuda.current_device())
    clock = Clock(torch, device, args.budget)
    mem = (64 << 20) if dry else (2 << 30)  # bytes for a torch route's q x n blocks
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"compare_gpu_{mode_name}.json"
    results = {"what": "issue 16 GPU workloads W1-W3: bigstep cuda vs torch routes, accuracy vs float64",
               "mode": mode_name, "machine": machine(torch, device, dry)}
    pk = peaks(results["machine"].get("gpu"))
    results["datasheet_peaks_tflops"] = pk

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1, default=float))

    only = {w.strip().upper() for w in args.only.split(",")}
    results["ceilings"] = ceilings(torch, clock, size, dry)
    save()
    bk = backend_for("optimal_score", dry)
    if "W3" in only:
        w3res = {}
        for key, fn in (("sgd", lambda: w3_sgd(torch, clock, size["W3_sgd"], dry)),
                        ("sampler", lambda: w3_sampler(torch, clock, size["W3_sampler"], dry, mem)),
                        ("s1d", lambda: w3_1d(torch, clock, size["W3_1d"], bk, dry, results["ceilings"]))):
            if clock.left() < 10:
                w3res[key] = {"skipped": "out of time"}
                continue
            try:
                w3res[key] = fn()
            except Exception as exc:
                w3res[key] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
            results["W3"] = w3res
            save()
    if "W2" in only:
        try:
            results["W2"] = w2(torch, clock, size["W2"], bk, dry, mem)
            for e in results["W2"]["dims"].values():
                for r in e.get("routes", {}).values():
                    if "tflops" in r and pk:
                        r["fraction_fp64_tensor_peak"] = r["tflops"] / pk["fp64_tensor"]
                    if "tflops" in r:
                        r["fraction_measured_dgemm"] = r["tflops"] / results["ceilings"]["gemm_fp64_tflops"]
        except Exception as exc:
            results["W2"] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
        save()
    if "W1" in only:
        try:
            results["W1"] = w1(torch, clock, size["W1"], bk, dry, mem)
            ours = results["W1"]["routes"].get(f"bigstep ({bk})", {})
            if "tflops" in ours:
                results["W1"]["fraction_measured_sgemm"] = ours["tflops"] / results["ceilings"]["gemm_fp32_tflops"]
                if pk:
                    results["W1"]["fraction_fp32_peak"] = ours["tflops"] / pk["fp32"]
                    results["W1"]["fraction_fp64_tensor_peak"] = ours["tflops"] / pk["fp64_tensor"]
        except Exception as exc:
            results["W1"] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
        save()
    print("\n".join(summary_lines(results)))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
