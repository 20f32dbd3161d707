"""Helpers shared by the asv suite (bench_*.py) and the peer comparisons (compare_*.py).

- :func:`machine_info`: what a result was measured on (CPU model and SIMD flags, cores,
  library versions, BLAS, ``bigstep.info()``, git commit).
- :func:`timed`: best of k calls after a warm-up.
- :func:`exp_rate`, :func:`gemm_rate`, :func:`measure_ceilings`: the hardware ceilings
  (vectorised exp throughput, GEMM FLOP/s), measured in the same run as the kernels;
  :class:`OtherLoad`, :func:`when_quiet`: how much CPU other processes take (they skew every
  figure), and re-measuring when they took too much.
- :func:`chunked`: apply a function to row blocks of an array, optionally in a thread pool
  (for peers whose compiled loops release the GIL but do not thread themselves).
- :func:`score_inputs`: the standard inputs of the s* benchmarks;
  :func:`bigstep_backend_error`: why a bigstep backend cannot compute s* here, or None.
- :func:`score_error_units`, :data:`ERROR_METRIC`: the accuracy measure of every s*
  comparison, for bigstep and its peers alike: the tests' conditioning-aware error
  (``bigstep._errors``, which tests/tolerances.py imports too), in units of the bound.
- :func:`format_table`, :func:`write_json`: output.

Nothing here runs at import time; heavy modules (torch, bigstep) are imported lazily.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import importlib
import json
import os
import platform
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PEER_PACKAGES = ("numpy", "scipy", "numba", "torch", "pykeops", "mpmath", "asv")


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Wall-clock seconds of the timed calls; ``best`` is the minimum."""

    runs: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.runs)


def timed(fn: Callable[[], object], *, repeat: int = 3, warmup: bool | Callable[[], object] = True,
          max_seconds: float | None = None) -> Timing:
    """Best of up to ``repeat`` calls of ``fn()`` after a warm-up.

    ``warmup``: True calls ``fn`` once untimed; a callable is called instead (e.g. the same
    kernel on a small input, to compile or load it without paying for a full call); False
    skips it.  With ``max_seconds``, repetition stops once the timed calls add up to that
    long (one call is always timed), so long calls are not repeated needlessly.
    """
    if warmup is True:
        fn()
    elif callable(warmup):
        warmup()
    timing = Timing()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        timing.runs.append(time.perf_counter() - t0)
        if max_seconds is not None and sum(timing.runs) >= max_seconds:
            break
    return timing


# --------------------------------------------------------------------------- threads


def chunked(fn: Callable[[np.ndarray], np.ndarray], y: np.ndarray, rows: int, threads: int = 1) -> np.ndarray:
    """``concatenate([fn(y[a:a+rows]) for a in ...])``, the blocks run in ``threads`` threads."""
    blocks = [y[a:a + rows] for a in range(0, len(y), max(1, rows))]
    if threads <= 1 or len(blocks) == 1:
        return np.concatenate([fn(b) for b in blocks])
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return np.concatenate(list(pool.map(fn, blocks)))


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with torch's intra-op thread count set to ``n``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------- ceilings


def exp_rate(dtype, *, lib: str = "numpy", threads: int = 2, chunk: int = 16384, elements: float = 2e7,
             trials: int = 3) -> float:
    """Exponentials per second of ``np.exp`` (or ``torch.exp``) on cache-resident chunks, in
    ``threads`` Python threads.

    Each thread owns an input and an output buffer of ``chunk`` elements (inputs uniform in
    [-30, 0], the range of shifted logits) and calls ``exp(a, out=b)`` until it has done about
    ``elements`` exponentials; numpy and torch release the GIL inside the loop, so the threads
    run in parallel (torch's own intra-op threads are set to 1 meanwhile).  Best of ``trials``.
    """
    calls = max(1, int(elements // chunk))

    def kernel(seed: int):
        a = np.random.default_rng(seed).uniform(-30.0, 0.0, chunk).astype(dtype)
        b = np.empty_like(a)
        if lib == "numpy":
            return lambda: np.exp(a, out=b)
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        return lambda: torch.exp(ta, out=tb)

    def trial() -> float:
        barrier = threading.Barrier(threads + 1)

        def work(seed: int) -> None:
            f = kernel(seed)
            f()
            barrier.wait()
            for _ in range(calls):
                f()

        workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for w in workers:
            w.start()
        barrier.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        return threads * calls * chunk / (time.perf_counter() - t0)

    if lib not in ("numpy", "torch", "bigstep"):
        raise ValueError(f"lib must be 'numpy', 'torch' or 'bigstep', got {lib!r}")
    if lib == "bigstep":  # OpenMP threads over one L2-sized array per call: no GIL or call overhead
        import bigstep
        from bigstep import _core

        a = np.random.default_rng(0).uniform(-30.0, 0.0, max(chunk, 1 << 16) * threads).astype(dtype)
        b = np.empty_like(a)
        reps = max(1, int(elements // a.size))
        bigstep.set_num_threads(threads)
        try:
            best = min(timed(lambda: [_core.exp_nonpos(a, out=b) for _ in range(reps)], repeat=trials).runs)
        finally:
            bigstep.set_num_threads(os.cpu_count() or 1)
        return reps * a.size / best
    with torch_threads(1) if lib == "torch" else contextlib.nullcontext():
        return max(trial() for _ in range(trials))


def gemm_rate(dtype, *, lib: str = "numpy", size: int = 4096, trials: int = 3, threads: int | None = None) -> float:
    """FLOP/s (2 size^3 per product) of a square ``size`` x ``size`` matmul; best of ``trials``.

    ``lib`` is "numpy" (its BLAS, default threads) or "torch" (``threads`` intra-op threads,
    all cores if None).
    """
    a = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    b = np.random.default_rng(1).standard_normal((size, size)).astype(dtype)
    if lib == "numpy":
        seconds = timed(lambda: a @ b, repeat=trials).best
    elif lib == "torch":
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        with torch_threads(threads or os.cpu_count() or 1):
            seconds = timed(lambda: ta @ tb, repeat=trials).best
    else:
        raise ValueError(f"lib must be 'numpy' or 'torch', got {lib!r}")
    return 2.0 * size**3 / seconds


def measure_ceilings(dtypes=("float32", "float64"), *, exp: bool = True, gemm: bool = True,
                     threads: int | None = None, quick: bool = False) -> dict:
    """The ceilings for this run, per dtype.

    exp:  {"numpy": {"rate", "chunk", "rate_1_thread"}, "torch": {...}, "bigstep": {...} (the
          kernels' polynomial exp, bigstep._core.exp_nonpos), "rate": the best rate in
          ``threads`` threads (all cores by default) over libraries and chunk sizes}
    gemm: {"numpy": FLOP/s, "torch": FLOP/s, "best": the larger, "size"}
    """
    threads = threads or os.cpu_count() or 1
    libs = ("numpy", "torch") if package_version("torch") is not None else ("numpy",)
    # the fastest vectorised exp on a machine may be bigstep's own (numpy's float64 exp is
    # scalar without AVX-512): the exp ceiling is the best of all of them
    exp_libs = libs + (("bigstep",) if bigstep_backend_error("cpp") is None else ())
    elements = 5e6 if quick else 2e7
    out: dict = {"threads": threads}
    if exp:
        out["exp"] = {}
        for dt in dtypes:
            entry = {}
            for lib in exp_libs:
                rates = {c: exp_rate(dt, lib=lib, threads=threads, chunk=c, elements=elements) for c in (4096, 16384)}
                chunk = max(rates, key=rates.get)
                entry[lib] = {"rate": rates[chunk], "chunk": chunk,
                              "rate_1_thread": exp_rate(dt, lib=lib, threads=1, chunk=chunk, elements=elements)}
            best = max(exp_libs, key=lambda lib: entry[lib]["rate"])
            out["exp"][dt] = {**entry, "rate": entry[best]["rate"], "best": best}
    if gemm:
        out["gemm"] = {}
        size = 2048 if quick else 4096
        for dt in dtypes:
            rates = {lib: gemm_rate(dt, lib=lib, size=size, threads=threads) for lib in libs}
            out["gemm"][dt] = {**rates, "best": max(rates.values()), "size": size}
    return out


class OtherLoad:
    """Share of the machine's CPU time that *other* processes used since construction (or the
    last :meth:`reset`): busy time from /proc/stat minus this process's own CPU time, over
    all cores' time.  NaN where /proc/stat is unavailable.  Figures measured while it is more
    than a few percent are skewed."""

    def __init__(self) -> None:
        self.reset()

    @staticmethod
    def _snapshot():
        try:
            fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        own = os.times()
        return sum(fields) / hz, (fields[3] + fields[4]) / hz, own.user + own.system  # total, idle+iowait, own

    def reset(self) -> None:
        self._start = self._snapshot()

    def share(self) -> float:
        now = self._snapshot()
        if self._start is None or now is None:
            return float("nan")
        total, idle, own = (b - a for a, b in zip(self._start, now))
        return max(0.0, (total - idle - own) / total) if total > 0 else float("nan")


def other_load(seconds: float = 2.0) -> float:
    """Share of the CPU time other processes use over the next ``seconds`` (see :class:`OtherLoad`)."""
    load = OtherLoad()
    time.sleep(seconds)
    return load.share()


def wait_until_quiet(max_wait: float, threshold: float = 0.05) -> float:
    """Wait (up to ``max_wait`` s) until other processes use at most ``threshold`` of the CPU;
    returns the share they used last."""
    deadline = time.monotonic() + max_wait
    busy = other_load(2.0)
    while busy > threshold and time.monotonic() < deadline:
        print(f"machine busy ({busy:.0%} of CPU time used by other processes); waiting", flush=True)
        time.sleep(20.0)
        busy = other_load(2.0)
    if busy > threshold:
        print(f"WARNING: other processes use {busy:.0%} of the CPU; figures will be skewed", flush=True)
    return busy


def when_quiet(fn: Callable[[], object], *, what: str, wait: float = 0.0, attempts: int = 3,
               threshold: float = 0.05):
    """Run the measurement ``fn()``; while other processes took more than ``threshold`` of the
    CPU meanwhile, wait for quiet (up to ``wait`` s) and run it again (``attempts`` in all).
    Returns (result, share of the CPU other processes took during the kept run)."""
    for attempt in range(attempts):
        load = OtherLoad()
        result = fn()
        share = load.share()
        if not share > threshold:
            break
        last = attempt + 1 == attempts
        print(f"  other processes took {share:.0%} of the CPU during {what}"
              + ("; keeping this figure" if last else "; measuring again"), flush=True)
        if not last:
            wait_until_quiet(wait, threshold)
    return result, share


# --------------------------------------------------------------------------- data


def score_inputs(n: int, q: int, dims: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The s* benchmarks' inputs, float64: training data x ~ N(0, I) and queries y ~ N(0, 1.44 I),
    of shapes (n,) and (q,) for ``dims`` None (1-D data), else (n, dims) and (q, dims)."""
    rng = np.random.default_rng(seed)
    shape = (lambda m: (m,)) if dims is None else (lambda m: (m, dims))
    return rng.standard_normal(shape(n)), 1.2 * rng.standard_normal(shape(q))


# --------------------------------------------------------------------------- bigstep


@functools.lru_cache(maxsize=None)
def bigstep_backend_error(backend: str, dims: int | None = None) -> str | None:
    """None if ``bigstep.optimal_score(..., backend=backend)`` runs here on data of ``dims``
    dimensions (None: 1-D data of shape (n,)), else why not."""
    import bigstep

    x = np.linspace(-1.0, 2.0, 3) if dims is None else np.ones((3, dims))
    try:
        bigstep.optimal_score(x[:2], x, 0.9, 0.5, backend=backend)
    except Exception as exc:  # ImportError of a missing kernel, ValueError of a missing backend, ...
        return f"{type(exc).__name__}: {exc}"
    return None


# --------------------------------------------------------------------------- accuracy

ERROR_METRIC = ("error = max_j |s_j - r_j| / allowed_j, norms over coordinates in d-D, where allowed_j is the "
                "tests' conditioning-aware bound (bigstep._errors.bounds_1d / bounds_nd, imported by "
                "tests/tolerances.py): REF_RTOL |s*| + COND_ULPS eps (|s*| + input_scale * sensitivity) + "
                "n WEIGHT_FLOOR unit at the dtype; r = exact s* at the same rounded inputs; accurate iff error <= 1")


def score_error_units(s, ref: dict, y, x, mu, sigma, dtype) -> np.ndarray:
    """Per query error of s* in units of the tests' conditioning-aware bound at ``dtype``
    (<= 1: accurate).  ``ref``: the exact values at the same inputs, with the moments the
    bound needs (1-D: score, var, abs3, m4, log_density; d-D: score, cov_max, log_density).
    The same functions the tests use: bigstep._errors.bounds_1d / bounds_nd / error_units."""
    from bigstep import _errors

    bounds = (_errors.bounds_1d if np.ndim(x) == 1 else _errors.bounds_nd)(ref, y, x, mu, sigma, dtype)
    return _errors.error_units(s, ref["score"], bounds["score"])


# --------------------------------------------------------------------------- machine


def package_version(name: str) -> str | None:
    """The package's version, or None if it does not import."""
    try:
        mod = importlib.import_module(name)
    except Exception:
        return None
    return str(getattr(mod, "__version__", "unknown"))


def _cpu() -> dict:
    model, flags = platform.processor() or "unknown", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "logical_cores": os.cpu_count(), "usable_cores": affinity,
            "avx2": "avx2" in flags, "fma": "fma" in flags, "avx512f": "avx512f" in flags,
            "hypervisor": "hypervisor" in flags}


def _blas() -> str:
    with contextlib.suppress(Exception):
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    return "unknown"


def _git_commit() -> str:
    with contextlib.suppress(Exception):
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    return "unknown"


def machine_info() -> dict:
    """Describe the machine and software a result was measured on."""
    import bigstep

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: package_version(name) for name in PEER_PACKAGES},
        "numpy_blas": _blas(),
        "bigstep": bigstep.info(),
        "bigstep_commit": _git_commit(),
    }
    if info["versions"]["torch"] is not None:
        import torch

        info["torch_threads_default"] = torch.get_num_threads()
    return info


# --------------------------------------------------------------------------- output


def format_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """Plain-text table; ``columns`` is [(key, header)], values are printed with str()."""
    cells = [[h for _, h in columns]] + [[str(r.get(k, "")) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` as indented JSON, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return path
