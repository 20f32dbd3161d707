"""Run every asv benchmark of benchmarks/ once, in this process, against the installed
bigstep: the CI check that no benchmark is broken (.ci/run; `asv check` first checks the
suite's structure).

asv's own quick mode (`asv run --python=same --quick`) starts a process per benchmark and
runs every parameter combination at full size: 5-10 minutes on 2 cores.  This discovers
the suite with asv's discovery (the same imports as `asv run`), then runs each benchmark
once per backend: every value of a parameter named "backend" (each is its own code path)
with the first value of every other parameter (the smallest sizes, by the suite's
convention); ``--all`` runs every combination.  Each run is setup_cache (once per cache),
setup, one call, teardown; any exception fails it (a setup's NotImplementedError is asv's
"skipped", as in asv).  A track_* benchmark must return a number.

    python tools/asv_smoke.py              # all of benchmarks/, once per backend
    python tools/asv_smoke.py --all relu   # every combination of the benchmarks named *relu*
    python tools/asv_smoke.py --dir PATH   # another benchmark folder (a package, as asv's)
"""

from __future__ import annotations

import itertools
import numbers
import sys
import time
import traceback
import warnings
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def main(argv=None) -> int:
    from asv_runner.discovery import disc_benchmarks

    argv = list(sys.argv[1:] if argv is None else argv)
    every = "--all" in argv
    argv = [a for a in argv if a != "--all"]
    root = BENCH
    if "--dir" in argv:
        i = argv.index("--dir")
        root = Path(argv[i + 1]).resolve()
        del argv[i:i + 2]
    pattern = argv[0] if argv else ""
    sys.path.insert(0, str(root.parent))  # asv imports the folder as a package named after it
    t0 = time.perf_counter()
    benches = sorted((b for b in disc_benchmarks(str(root)) if pattern in b.name), key=lambda b: b.name)
    if not benches:
        print(f"asv_smoke: no benchmark matches {pattern!r}", file=sys.stderr)
        return 1
    caches: dict = {}
    failed, runs, skipped = [], 0, 0
    for bench in benches:
        start = time.perf_counter()
        combos = list(itertools.product(*bench.params)) if bench.params else [()]
        names = list(getattr(bench, "param_names", []) or [])
        chosen = [i for i, combo in enumerate(combos)
                  if every or all(name == "backend" or value == axis[0]
                                  for name, value, axis in zip(names, combo, bench.params))]
        try:
            key = getattr(bench, "setup_cache_key", None)
            if key is not None and key not in caches:
                caches[key] = bench.do_setup_cache()
            cache = caches.get(key) if key is not None else None
        except Exception:
            failed.append((bench.name, "setup_cache", traceback.format_exc()))
            continue
        for idx in chosen:
            combo = combos[idx]
            bench.set_param_idx(idx)
            if cache is not None:
                if hasattr(bench, "set_cache"):
                    bench.set_cache(cache)
                else:  # older asv_runner
                    bench.insert_param(cache)
            try:
                if bench.do_setup():
                    skipped += 1
                    continue
                try:
                    value = bench.func(*bench._build_params()) if hasattr(bench, "_build_params") else \
                        bench.func(*bench._current_params)
                    if bench.name.split(".")[-1].startswith("track_") and not isinstance(value, numbers.Real):
                        raise TypeError(f"track benchmark returned {type(value).__name__}, not a number")
                    runs += 1
                finally:
                    bench.do_teardown()
            except Exception:
                failed.append((bench.name, combo, traceback.format_exc()))
        print(f"asv_smoke: {bench.name} ({len(chosen)} of {len(combos)} combinations) "
              f"{time.perf_counter() - start:.1f} s",
              flush=True)
    for name, combo, tb in failed:
        print(f"\nasv_smoke: FAILED {name} {combo}\n{tb}", file=sys.stderr)
    print(f"asv_smoke: {len(benches)} benchmarks, {runs} runs, {skipped} skipped, {len(failed)} failed "
          f"in {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="nopython is set")  # numba's, at bigstep's import
        sys.exit(main())
