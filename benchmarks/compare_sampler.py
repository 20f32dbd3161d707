"""Side-by-side CPU timing of reverse-diffusion sampling with the empirical optimal score s*.

Euler-Maruyama, X_{k+1} = X_k + h (X_k + 2 s*(X_k, T - t_k)) + sqrt(2h) Z_k, T = 1,
delta = 0.01, for s* of n training points in d dimensions (n = 10 and 1,000; d = 2 and 64),
10,000 particles.  Methods, in one process, on the same data:

- bigstep cpp: ``sample_reverse(EmpiricalScore(x), ..., backend="cpp")``, the fused C++
  loop (every step in compiled code, particles over OpenMP threads, SIMD Philox and
  Box-Muller noise);
- bigstep numba: the same with ``backend="numba"``, the fused Numba loop;
- numpy: a Python loop over steps, s* by a stable softmax of the (particles x n) logits
  (GEMM form), noise from ``np.random.default_rng``;
- torch: the same loop in torch on the CPU (torch.randn noise), at torch's thread count;
- torchsde: ``torchsde.sdeint(method="euler")`` on the reverse SDE with the torch s*, when
  torchsde imports.

Peers use their own (non-reproducible) random generators; bigstep's normals come from the
shared Philox stream (reproducible for any thread count), a fixed cost per coordinate.
Ratios are bigstep cpp over the best of numpy, torch and torchsde, measured in the same
run; the machine's other load during each measurement is recorded beside it.  Rates are
particle-steps per second (particles x steps / best wall time over ROUNDS rounds, each
timing every method in turn, so drifts of the machine's speed touch all alike); cases whose peers need
seconds per step time fewer steps (rates are per step, so this does not change them).

Usage:  python benchmarks/compare_sampler.py [--quick] [--out PATH] [--wait-quiet SECONDS] [--attempts N]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

try:
    from . import _common
except ImportError:  # run as a script
    import _common

RESULTS = Path(__file__).resolve().parent / "results"
T, DELTA = 1.0, 0.01
CASES = [(10, 2), (1000, 2), (10, 64), (1000, 64)]
ROUNDS = 5


def _grid(steps):
    h = (T - DELTA) / steps
    taus = T - np.arange(steps) * h
    return h, np.exp(-taus), np.sqrt(-np.expm1(-2 * taus))


def numpy_loop(x_train, particles, steps, seed=0):
    rng = np.random.default_rng(seed)
    d = x_train.shape[1]
    h, mus, sigmas = _grid(steps)
    norms = (x_train ** 2).sum(axis=1)
    x = rng.standard_normal((particles, d))
    for k in range(steps):
        mu, s2 = mus[k], sigmas[k] ** 2
        logits = (mu / s2) * (x @ x_train.T) - (mu * mu / (2 * s2)) * norms
        logits -= logits.max(axis=1, keepdims=True)
        w = np.exp(logits)
        w /= w.sum(axis=1, keepdims=True)
        score = (mu * (w @ x_train) - x) / s2
        x = x + h * (x + 2 * score) + math.sqrt(2 * h) * rng.standard_normal((particles, d))
    return x


def _torch_score(torch, x_train, norms, x, mu, s2):
    logits = (mu / s2) * (x @ x_train.T) - (mu * mu / (2 * s2)) * norms
    w = torch.softmax(logits, dim=1)
    return (mu * (w @ x_train) - x) / s2


def torch_loop(x_train, particles, steps, seed=0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x_train)
    norms = (xt ** 2).sum(dim=1)
    h, mus, sigmas = _grid(steps)
    x = torch.randn(particles, xt.shape[1], generator=gen, dtype=torch.float64)
    with torch.no_grad():
        for k in range(steps):
            mu, s2 = float(mus[k]), float(sigmas[k]) ** 2
            score = _torch_score(torch, xt, norms, x, mu, s2)
            x = x + h * (x + 2 * score) + math.sqrt(2 * h) * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    return x.numpy()


def torchsde_run(x_train, particles, steps, seed=0):
    import torch
    import torchsde

    xt = torch.from_numpy(x_train)
    norms = (xt ** 2).sum(dim=1)

    class Reverse(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, x):  # reverse time t: diffusion time T - t
            tau = T - float(t)
            mu, s2 = math.exp(-tau), -math.expm1(-2 * tau)
            return x + 2 * _torch_score(torch, xt, norms, x, mu, s2)

        def g(self, t, x):
            return torch.full_like(x, math.sqrt(2.0))

    torch.manual_seed(seed)
    x0 = torch.randn(particles, xt.shape[1], dtype=torch.float64)
    ts = torch.tensor([0.0, T - DELTA], dtype=torch.float64)
    with torch.no_grad():
        return torchsde.sdeint(Reverse(), x0, ts, method="euler", dt=(T - DELTA) / steps)[-1].numpy()


def bigstep_run(x_train, particles, steps, seed=0, backend="cpp"):
    import bigstep

    return bigstep.sample_reverse(bigstep.EmpiricalScore(x_train), particles, x_train.shape[1], T=T, delta=DELTA,
                                  n_steps=steps, seed=seed, backend=backend)


OURS = ("bigstep_cpp", "bigstep_numba")


def _peers():
    peers, missing = {}, {}
    for name, backend in zip(OURS, ("cpp", "numba")):
        reason = _common.bigstep_backend_error(backend)
        if reason is None:
            peers[name] = lambda *a, backend=backend, **k: bigstep_run(*a, backend=backend, **k)
        else:
            missing[name] = reason
    peers["numpy"] = numpy_loop
    try:
        import torch  # noqa: F401

        peers["torch"] = torch_loop
    except ImportError as exc:
        missing["torch"] = str(exc)
    try:
        import torchsde  # noqa: F401

        peers["torchsde"] = torchsde_run
    except ImportError as exc:
        missing["torchsde"] = f"not importable ({exc})"
    return peers, missing


# Issue 21's case (--fgt): s* of n = 10^5 points in d = 2, 10^5 particles, 100 steps, by the
# fast Gauss transform (EmpiricalScore(method="fgt"), every step) against today's fused pairwise loop (method="pairwise"), timed on
# FGT_PAIRWISE_PARTICLES particles x FGT_PAIRWISE_STEPS steps and scaled (its cost per
# particle-step is the same at every step and for every particle).  Rounds interleave the
# methods; ratios are within one run.
FGT_CASE = (100_000, 2, 100_000, 100)
FGT_PAIRWISE_PARTICLES, FGT_PAIRWISE_STEPS = 10_000, 5


def run_fgt(rounds=1):
    import bigstep

    n, d, particles, steps = FGT_CASE
    x_train = _common.score_inputs(n, 1, d)[0]
    best = {}
    for _ in range(rounds):
        for name, method, p, k in (("fgt", "fgt", particles, steps),
                                   ("pairwise", "pairwise", FGT_PAIRWISE_PARTICLES, FGT_PAIRWISE_STEPS)):
            score = bigstep.EmpiricalScore(x_train, method=method)
            t0 = time.perf_counter()
            bigstep.sample_reverse(score, p, d, T=T, delta=DELTA, n_steps=k, seed=0, backend="cpp")
            t = (time.perf_counter() - t0) * (particles / p) * (steps / k)
            best[name] = min(best.get(name, float("inf")), t)
            print(f"  sampler n={n} d={d} {particles} particles {steps} steps: {name:8s} {t:8.1f} s"
                  + ("" if p == particles else f" (scaled from {p} particles x {k} steps)"), flush=True)
    row = {"n": n, "d": d, "particles": particles, "steps": steps, "seconds": best,
           "speedup_fgt": best["pairwise"] / best["fgt"]}
    print(f"== FGT sampler: x{row['speedup_fgt']:.1f} over the pairwise fused loop "
          "(machine shared with other processes; ratios within one run)", flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 particles, fewer steps")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="when other processes load the machine, wait up to this long for quiet and measure again")
    parser.add_argument("--attempts", type=int, default=3,
                        help="measurements per method while other processes load the machine (the last is kept)")
    parser.add_argument("--fgt", action="store_true",
                        help="issue 21's fast Gauss transform case instead: results/sampler_fgt.json")
    args = parser.parse_args(argv)
    if args.fgt:
        payload = {"what": "reverse-diffusion EM sampling with s* by the fast Gauss transform vs the fused pairwise "
                           "loop", "T": T, "delta": DELTA, "machine": _common.machine_info(), "result": run_fgt()}
        print("wrote", _common.write_json(args.out or RESULTS / "sampler_fgt.json", payload))
        return
    particles = 1_000 if args.quick else 10_000
    peers, missing = _peers()
    rows = []
    for n, d in CASES:
        x_train = _common.score_inputs(n, 1, d)[0]
        steps = 100 if n * d <= 2_000 else 10
        if args.quick:
            steps = max(5, steps // 10)
        row = {"n": n, "d": d, "particles": particles, "steps_timed": steps}
        for name, fn in peers.items():  # compile / load on a small input
            fn(x_train, min(particles, 256), 2)
        # Rounds: every method timed once per round, so that all of them see the same
        # drift of the machine's speed (this VM's speed moves by +-30% over minutes);
        # the best call over all rounds is kept.
        runs = {name: [] for name in peers}
        loads = {name: 0.0 for name in peers}
        for _ in range(ROUNDS):
            for name, fn in peers.items():
                timing, load = _common.when_quiet(
                    lambda fn=fn: _common.timed(lambda: fn(x_train, particles, steps), repeat=2, warmup=False,
                                                max_seconds=2.0),
                    what=f"{name} n={n} d={d}", wait=args.wait_quiet, attempts=args.attempts)
                runs[name] += timing.runs
                loads[name] = max(loads[name], load)
        for name in peers:
            row[f"{name}_rate"] = particles * steps / min(runs[name])
            row[f"{name}_other_load"] = loads[name]
        others = [p for p in peers if p not in OURS]
        best_peer = max((row[f"{p}_rate"], p) for p in others)
        row["best_peer"] = best_peer[1]
        for ours in OURS:
            if ours in peers:
                row[f"{ours}_vs_best_peer"] = row[f"{ours}_rate"] / best_peer[0]
                for p in others:
                    row[f"{ours}_vs_{p}"] = row[f"{ours}_rate"] / row[f"{p}_rate"]
        rows.append(row)
        ratios = ", ".join(f"{o} / best = {row[f'{o}_vs_best_peer']:.2f}" for o in OURS if o in peers)
        print(f"n={n:5d} d={d:3d}: " + ", ".join(f"{p} {row[f'{p}_rate']:.3g}" for p in peers)
              + f" particle-steps/s; best peer {best_peer[1]}; {ratios}", flush=True)
    table_rows = [{**r, **{k: f"{v:.3g}" for k, v in r.items() if k.endswith(("_rate", "_vs_best_peer"))}}
                  for r in rows]
    cols = [("n", "n"), ("d", "d")] + [(f"{p}_rate", f"{p} (p-steps/s)") for p in peers]
    cols += [("best_peer", "best peer")] + [(f"{o}_vs_best_peer", f"{o} / best") for o in OURS if o in peers]
    print(_common.format_table(table_rows, cols))
    out = args.out or RESULTS / ("sampler_cpu_quick.json" if args.quick else "sampler_cpu.json")
    payload = {"what": "reverse-diffusion EM sampling with s*, particle-steps/s (bigstep cpp and numba vs "
                       "numpy loop, torch CPU loop, torchsde sdeint Euler)", "T": T, "delta": DELTA,
               "machine": _common.machine_info(), "missing_peers": missing, "results": rows}
    print("wrote", _common.write_json(out, payload))


if __name__ == "__main__":
    main()
