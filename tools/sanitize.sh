#!/usr/bin/env bash
# Runs the C++-backed tests against a build of bigstep._core instrumented with
# AddressSanitizer + UndefinedBehaviorSanitizer, and fails on any report.
#
#   tools/sanitize.sh [extra pytest args]
#
# - builds with BIGSTEP_SANITIZE=address,undefined (override: BIGSTEP_SANITIZE=...),
#   BIGSTEP_CUDA=OFF, in its own build directory (build/sanitize) and its own virtual
#   environment (build/venv-sanitize, override: SANITIZE_VENV=...), so the developer
#   install is untouched;
# - python itself is not instrumented, so libasan is LD_PRELOADed into the test
#   process; leak detection is off (the interpreter's own allocations would be
#   reported; tests/test_leaks.py checks repeated calls for growth instead);
#   halt_on_error=1 for both sanitizers, so the first report fails the run;
# - runs the tests of the compiled kernels on the cpp backends only
#   (-k "not numba and not cuda": the numba runs exercise no C++), plus the
#   determinism tests (8 Python threads in the kernels at once).  The RSS-based tests
#   (test_memory.py, test_leaks.py) are left out: ASan's shadow memory and
#   quarantine change RSS by design.
#
# Measured on a shared 2-core machine at load ~8: build 16 min wall (8 CPU-min),
# tests ~3.5 min (unloaded: expect roughly half); .ci/run runs it unless
# BIGSTEP_CI_RELEASE=0.  BIGSTEP_TEST_SLOW is unset here: the slow tests include the
# RSS-based memory test and a wall-clock Ctrl-C test, which ASan distorts.
set -euo pipefail
unset BIGSTEP_TEST_SLOW
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${SANITIZE_VENV:-$root/build/venv-sanitize}
san=${BIGSTEP_SANITIZE:-address,undefined}
py=${PYTHON:-python3}

t0=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q numpy numba scipy mpmath pytest hypothesis pandas pyarrow matplotlib \
  scikit-build-core pybind11 cmake ninja
BIGSTEP_SANITIZE="$san" BIGSTEP_CUDA=OFF "$venv/bin/python" -m pip install -q --no-build-isolation --no-deps \
  -Cbuild-dir="$root/build/sanitize" --force-reinstall .
t1=$(date +%s)
echo "sanitize.sh: build ($san) took $((t1 - t0)) s"

preload=""
# libstdc++ right after libasan: python does not link it, and without it ASan's
# __cxa_throw interceptor finds no real function (a CHECK failure at the first C++
# exception, seen in matplotlib's ft2font)
case "$san" in *address*) preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so.6)" ;; esac
case "$san" in *undefined*) preload="$preload${preload:+ }$(gcc -print-file-name=libubsan.so)" ;; esac
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_odr_violation=0:${ASAN_OPTIONS:-}
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}

tests=(tests/test_optimal_score.py tests/test_random.py tests/test_relu_risk.py tests/test_metrics.py
       tests/test_sgd.py tests/test_random_features.py tests/test_sampler.py tests/test_fast_exp.py
       tests/test_optimal_risk.py tests/test_determinism.py)
log="$root/build/sanitize-pytest.log"
# the package lives under python/, so `import bigstep` finds the instrumented install;
# --capture=sys: a sanitizer report goes to the real stderr (with fd capture it would be
# lost when the process halts)
set +e
LD_PRELOAD="$preload" "$venv/bin/python" -m pytest -q -p no:cacheprovider --capture=sys -k "not numba and not cuda" \
  "${tests[@]}" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
t2=$(date +%s)
echo "sanitize.sh: tests took $((t2 - t1)) s, total $((t2 - t0)) s"
if grep -qE "ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer" "$log"; then
  echo "sanitize.sh: sanitizer reports found (see $log)" >&2
  exit 1
fi
exit "$rc"
