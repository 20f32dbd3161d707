"""Smoke test of an installed bigstep (tools/check_wheel.sh runs it with `python -I`
from an empty directory, so only the installed package can be imported).

Checks: bigstep imports from site-packages, not a checkout; `bigstep info` reports the
cpp backend and an instruction set from the dispatch list; no CUDA module and no CUDA
library among _core's dependencies; s* agrees with a direct numpy formula and between
backends and instruction sets; the sampler, the exact DSM risk/gradient and the
trainer run and agree between backends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

import numpy as np

import bigstep
import bigstep._core as core

DISPATCH = ("baseline", "avx2", "avx512")


def check(cond, what):
    if not cond:
        sys.exit(f"wheel_smoke: FAILED: {what}")
    print(f"wheel_smoke: ok: {what}")


site = sysconfig.get_paths()["purelib"]
check(os.path.realpath(bigstep.__file__).startswith(os.path.realpath(site)),
      f"bigstep imported from the environment ({bigstep.__file__})")

info = bigstep.info()
check("cpp" in info["backends"] and "numba" in info["backends"], f"backends {info['backends']}")
simd, runnable = info["cpp"]["simd"], info["cpp"]["simd_available"]
check(simd in DISPATCH and simd in runnable and "baseline" in runnable,
      f"instruction set {simd} from the dispatch list (runnable here: {runnable})")
try:  # the dispatch sees what the CPU has (a toolchain whose cpu-model runtime reads nothing gives baseline only)
    flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":")[1].split())
except (OSError, StopIteration):
    flags = None
if flags is not None:
    expect = {"baseline"} | ({"avx2"} if {"avx2", "fma"} <= flags else set()) | \
        ({"avx512"} if {"avx512f", "avx512dq", "avx512vl", "avx512bw"} <= flags else set())
    check(set(runnable) == expect, f"runnable instruction sets {sorted(runnable)} match /proc/cpuinfo ({sorted(expect)})")
out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "bigstep"), "info"], capture_output=True,
                     text=True, check=True).stdout
check(f"SIMD {simd}" in out and "backends available: cpp" in out, "`bigstep info` says the same")

pkg = os.path.dirname(bigstep.__file__)
# no compiled CUDA module (bigstep._cuda, bigstep._cuda_emu); the pure-Python launchers in
# bigstep/_cuda_kernels ship in every wheel
check(not any(n.startswith("_cuda") and n.endswith((".so", ".pyd")) for n in os.listdir(pkg)),
      "no compiled bigstep._cuda in the CPU wheel")
ldd = subprocess.run(["ldd", core.__file__], capture_output=True, text=True).stdout
check("cuda" not in ldd.lower(), "_core needs no CUDA library")
check("not found" not in ldd, "_core's libraries all resolve")

rng = np.random.default_rng(0)
x = rng.standard_normal(200)
y = np.linspace(-3, 3, 31)
mu, sigma = 0.9, 0.3
logits = -(y[:, None] - mu * x[None, :]) ** 2 / (2 * sigma**2)
w = np.exp(logits - logits.max(axis=1, keepdims=True))
ref = (mu * (w @ x) / w.sum(axis=1) - y) / sigma**2
for isa in runnable:
    assert core.set_isa(isa)
    s = bigstep.optimal_score(y, x, mu, sigma, backend="cpp")
    check(np.allclose(s, ref, rtol=1e-10, atol=1e-10), f"s* 1-D on cpp-{isa} matches numpy")
    X, Y = rng.standard_normal((300, 16)), rng.standard_normal((20, 16))
    check(np.allclose(bigstep.optimal_score(Y, X, mu, 0.7, backend="cpp"),
                      bigstep.optimal_score(Y, X, mu, 0.7, backend="numba"), rtol=1e-9, atol=1e-9),
          f"s* d-D on cpp-{isa} matches numba")
core.set_isa("auto")

data = 2 * rng.standard_normal((10, 2))
samples = bigstep.sample_reverse(bigstep.EmpiricalScore(data), 500, 2, n_steps=100, seed=0)
check(samples.shape == (500, 2) and np.isfinite(samples).all(), "sampler runs")
check(bigstep.memorized_fraction(samples, data) > 0.5, "the s* sampler memorizes")

net = bigstep.ReLUNet1D.init(width=50, seed=0, inner="sign")
xs = rng.standard_normal(20)
r_c, g_c = bigstep.dsm_risk_grad(net, xs, mu, sigma, backend="cpp")
r_n, g_n = bigstep.dsm_risk_grad(net, xs, mu, sigma, backend="numba")
check(np.isclose(r_c, r_n, rtol=1e-10) and np.allclose(g_c, g_n, rtol=1e-8, atol=1e-12),
      "exact risk and gradient agree between cpp and numba")
check(bigstep.excess_risk(net, xs, mu, sigma) > 0, "excess risk over s* is positive")

res = {be: bigstep.train_sgd(xs, mu, sigma, lr=[0.1, 0.01], seed=[0, 1], steps=300, width=30, record=("loss",),
                             backend=be) for be in ("cpp", "numba")}
check(not res["cpp"].diverged.any(), "trainer runs")
check(all(np.allclose(a.W2, b.W2, rtol=1e-9, atol=1e-12) for a, b in zip(res["cpp"].networks, res["numba"].networks)),
      "trainer agrees between cpp and numba")
print("wheel_smoke: all checks passed")
