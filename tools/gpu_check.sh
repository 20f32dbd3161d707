#!/usr/bin/env bash
# One run that verifies the CUDA backend on a GPU machine and measures it.
#
#   tools/gpu_check.sh [--dry-run] OUTDIR
#
# On a machine with an NVIDIA GPU, Python 3 with torch, nvcc, CMake, ninja, pybind11 and
# scikit-build-core, and no package registry (the lent H100/H200 of this workplace), it
#   1. records the machine (nvidia-smi, nvcc, python, torch)            -> environment.txt
#   2. builds and installs bigstep for sm_90 only, the CPU kernels for the host only
#      (pip install --no-build-isolation --no-deps ., BIGSTEP_CUDA=ON)  -> build.log
#   3. runs the CUDA tests: tests/test_cuda.py                         -> pytest.log
#      and every other test of the suite that runs on the cuda backend
#      (pytest -k cuda)                                                 -> pytest_backend.log
#   4. writes cuda_verified.json: the GPU, driver, CUDA, date, test counts and the source
#      digest of the module it tested, with "passed": true only if every CUDA test passed
#      and none was skipped for want of a device
#   5. runs benchmarks/compare_gpu.py --quick                           -> bench.log, compare_gpu.json
#   6. prints and writes a short summary                                -> summary.txt
# Eight files, no subfolders (the device tool brings back at most 8).  The run keeps to a
# deadline of 470 s: each stage gets at most its own cap (build 240 s, tests 120 s + 150 s,
# benchmarks 180 s) and never more than leaves the later stages their minimum, so the
# whole run ends within 8 minutes on an H100 even when a stage hangs; a stage that fails
# or runs out of time is recorded and the run goes on (compare_gpu.py also gets the time
# left and writes its JSON after each workload).  Exit status: 0 if the tests passed.
#
# The device tool of this workplace (it sends the checkout; the machine is bare):
#
#     run(command="bash tools/gpu_check.sh $OUT", timeout_s=540)
#
# Afterwards, in the checkout: if $OUT/cuda_verified.json says "passed": true, copy it to
# python/bigstep/_cuda_kernels/verified.json (bigstep info then reports "cuda: verified on
# <GPU>" for exactly these sources) and $OUT/compare_gpu.json to
# benchmarks/results/compare_gpu_<gpu>.json, and commit them.
#
# --dry-run: everything that needs no GPU, here: the same stages with the build reduced to
# a CMake configure of the same options (the full build runs in CI), tests/test_cuda.py
# (its device cases skip, its CPU-emulation cases run), the suite's cuda cases on the CPU
# emulation (tools/pytest_cuda_emu.py; tests/test_memory.py left out: it measures in
# subprocesses), the record written and checked to say "passed": false, and
# compare_gpu.py --dry-run; the time limits are ten times longer (the emulation is slow).
# It needs the installed bigstep to be a CUDA build (bigstep._cuda_emu).  PYTHON selects
# the interpreter (default python3).
set -uo pipefail

dry=0
if [ "${1:-}" = "--dry-run" ]; then
  dry=1
  shift
fi
if [ $# -ne 1 ]; then
  echo "usage: tools/gpu_check.sh [--dry-run] OUTDIR" >&2
  exit 2
fi
out=$1
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
root=$(pwd)
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS
scale=$([ $dry = 1 ] && echo 10 || echo 1)  # the dry run's emulated kernels are slow
deadline=$((start + ${GPU_CHECK_SECONDS:-$((470 * scale))}))
status_build="not run"
status_tests="not run"
status_bench="not run"

stage() { echo "== $(date -u +%H:%M:%S) [$((SECONDS - start)) s] $*"; }

# limit CAP RESERVE: seconds for a stage: at most CAP, and RESERVE left for the later ones
limit() {
  local left=$((deadline - SECONDS - $2 * scale))
  [ $left -lt 10 ] && left=10
  [ $left -gt $(($1 * scale)) ] && left=$(($1 * scale))
  echo $left
}

# run LIMIT LOG CMD...: the command with a time limit, output to LOG (and the screen's tail)
run_limited() {
  local limit=$1 log=$2
  shift 2
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  tail -n 15 "$log"
  return $rc
}

# ------------------------------------------------------------------ 1. the machine
stage "environment"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "mode: $([ $dry = 1 ] && echo dry-run || echo device)"
  echo "host: $(uname -srm)"
  echo "cpus: $(nproc)"
  echo "--- nvidia-smi"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm,power.limit --format=csv 2>&1
  else
    echo "nvidia-smi: not found"
  fi
  echo "--- nvcc"
  nvcc --version 2>&1 | tail -n 2 || echo "nvcc: not found"
  echo "--- cmake / ninja"
  cmake --version 2>&1 | head -n 1 || echo "cmake: not found"
  ninja --version 2>&1 || echo "ninja: not found"
  echo "--- python"
  "$py" -c "import sys, torch, numpy; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'devices', torch.cuda.device_count() if torch.cuda.is_available() else 0, 'numpy', numpy.__version__)" 2>&1
  "$py" -c "import pybind11, scikit_build_core; print('pybind11', pybind11.__version__, 'scikit-build-core', scikit_build_core.__version__)" 2>&1
} >"$out/environment.txt"
cat "$out/environment.txt"

if [ $dry = 0 ]; then
  if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch sees no CUDA device; run with --dry-run on a machine without one" | tee "$out/summary.txt"
    exit 1
  fi
fi

# ------------------------------------------------------------------- 2. the build
# sm_90 only (H100/H200), the CPU kernels for this host only, no CPU emulation module;
# warnings are not errors here (CI builds with BIGSTEP_WERROR=ON).
export BIGSTEP_CUDA=ON BIGSTEP_CUDA_ARCHS=90-real BIGSTEP_CUDA_EMU=OFF BIGSTEP_NATIVE=ON BIGSTEP_WERROR=OFF
export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
stage "build (sm_90)"
if [ $dry = 0 ]; then
  run_limited "$(limit 240 230)" "$out/build.log" "$py" -m pip install --no-build-isolation --no-deps -v .
  rc=$?
else
  # the same options through CMake's configure step (a full build is CI's job)
  run_limited "$(limit 240 230)" "$out/build.log" cmake -S . -B "$work/configure" -G Ninja \
    -DBIGSTEP_CUDA=$BIGSTEP_CUDA "-DBIGSTEP_CUDA_ARCHS=$BIGSTEP_CUDA_ARCHS" -DBIGSTEP_CUDA_EMU=$BIGSTEP_CUDA_EMU \
    -DBIGSTEP_NATIVE=$BIGSTEP_NATIVE -DBIGSTEP_WERROR=$BIGSTEP_WERROR \
    -Dpybind11_DIR="$("$py" -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
    -DPython_EXECUTABLE="$(command -v "$py")"
  rc=$?
fi
case $rc in
  0) status_build="ok" ;;
  124|137) status_build="timed out" ;;
  *) status_build="failed ($rc)" ;;
esac
echo "build: $status_build"
if [ $dry = 0 ] && [ "$status_build" = "ok" ]; then
  (cd "$work" && "$py" -m bigstep info) >>"$out/build.log" 2>&1
  (cd "$work" && "$py" -m bigstep info) | tail -n 12
fi

# ------------------------------------------------------------------- 3. the tests
stage "CUDA tests"
timeout_opt=()
if "$py" -c "import pytest_timeout" >/dev/null 2>&1; then
  timeout_opt=(--timeout=120)
fi
xdist_opt=()  # the suite's cuda cases in parallel processes where pytest-xdist is there
if [ $dry = 0 ] && "$py" -c "import xdist" >/dev/null 2>&1; then
  xdist_opt=(-n 8)
fi
# pytest's status: 0 passed, 5 nothing collected, 124/137 out of time
test_status() {
  case $1 in
    0) echo "passed" ;;
    124|137) echo "timed out" ;;
    5) echo "no tests collected" ;;
    *) echo "failed ($1)" ;;
  esac
}
status_a="not run"
status_b="not run"
if [ "$status_build" = "ok" ]; then
  run_limited "$(limit 120 180)" "$out/pytest.log" "$py" -m pytest tests/test_cuda.py -p no:cacheprovider -q -ra \
    "${timeout_opt[@]}" --junitxml="$work/junit_cuda.xml"
  status_a=$(test_status $?)
  emu_opt=()
  if [ $dry = 1 ]; then  # the cuda cases on the CPU emulation
    emu_opt=(-p pytest_cuda_emu --ignore=tests/test_memory.py)
    export PYTHONPATH="$root/tools${PYTHONPATH:+:$PYTHONPATH}"
  fi
  run_limited "$(limit 150 100)" "$out/pytest_backend.log" "$py" -m pytest tests -k cuda --ignore=tests/test_cuda.py \
    "${emu_opt[@]}" "${xdist_opt[@]}" -p no:cacheprovider -q -ra "${timeout_opt[@]}" \
    --junitxml="$work/junit_backend.xml"
  status_b=$(test_status $?)
  [ "$status_b" = "no tests collected" ] && status_b="passed"  # nothing else runs on cuda: fine
  if [ "$status_a" = "passed" ] && [ "$status_b" = "passed" ]; then
    status_tests="passed"
  else
    status_tests="test_cuda.py $status_a, backend tests $status_b"
  fi
else
  echo "tests not run: the build $status_build" >"$out/pytest.log"
  echo "tests not run: the build $status_build" >"$out/pytest_backend.log"
fi
echo "tests: $status_tests"

# ------------------------------------------------- 4. the verification record
stage "verification record"
"$py" - "$out/cuda_verified.json" "$status_tests" "$dry" "$work/junit_cuda.xml" "$work/junit_backend.xml" <<'EOF'
import datetime, json, os, sys, xml.etree.ElementTree as ET
dest, status, dry, junits = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4:]
counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
device_skips = 0
for junit in filter(os.path.exists, junits):
    root = ET.parse(junit).getroot()
    for suite in root.iter("testsuite"):
        for k in counts:
            counts[k] += int(suite.get(k, 0))
    for case in root.iter("testcase"):
        for skip in case.findall("skipped"):
            if "cuda backend" in (skip.get("message") or "") or "no CUDA device" in (skip.get("message") or ""):
                device_skips += 1
record = {"dry_run": dry, "tests": counts, "skipped_for_want_of_a_device": device_skips,
          "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
          "checked_by": "tools/gpu_check.sh"}
try:
    import bigstep._cuda as cuda
    record["source_digest"] = cuda.source_digest
    record["compiled_archs"] = cuda.compiled_archs
    record["cuda_runtime"] = cuda.runtime_version()
    record["driver"] = cuda.driver_version()
    devs = cuda.devices()
    record["gpu"] = devs[0]["name"] if devs else None
    record["compute_capability"] = list(devs[0]["compute_capability"]) if devs else None
except Exception as exc:  # not built or not importable: nothing is verified
    record["source_digest"] = None
    record["error"] = f"{type(exc).__name__}: {exc}"
record["passed"] = bool(not dry and status == "passed" and counts["tests"] > 0 and counts["failures"] == 0
                        and counts["errors"] == 0 and device_skips == 0 and record.get("gpu")
                        and record.get("source_digest"))
with open(dest, "w") as f:
    json.dump(record, f, indent=2)
print(json.dumps({k: record.get(k) for k in ("passed", "gpu", "tests", "skipped_for_want_of_a_device")}))
if dry and record["passed"]:
    sys.exit("gpu_check: a dry run must never record a verification")
EOF
rc=$?
[ $rc -ne 0 ] && status_tests="record failed ($rc)"

# ------------------------------------------------------------------ 5. benchmarks
stage "benchmarks"
if [ $dry = 0 ]; then
  bench_args=(--quick)
else
  bench_args=(--dry-run)
fi
if [ "$status_build" = "ok" ]; then
  secs=$(limit 180 5)
  budget=$((secs - 15))
  [ $budget -lt 1 ] && budget=1  # (0 would mean no limit)
  run_limited "$secs" "$out/bench.log" "$py" benchmarks/compare_gpu.py "${bench_args[@]}" --budget $budget \
    --out "$out/compare_gpu.json"
  rc=$?
  case $rc in
    0) status_bench="ok" ;;
    124|137) status_bench="timed out (partial results in compare_gpu.json)" ;;
    *) status_bench="failed ($rc)" ;;
  esac
else
  echo "benchmarks not run: the build $status_build" >"$out/bench.log"
fi
echo "benchmarks: $status_bench"

# --------------------------------------------------------------------- 6. summary
stage "summary"
{
  echo "gpu_check $([ $dry = 1 ] && echo '(dry run)') $(date -u +%Y-%m-%dT%H:%M:%SZ), $((SECONDS - start)) s"
  sed -n '/^--- nvidia-smi/,/^--- nvcc/p' "$out/environment.txt" | sed '1d;$d' | tail -n 1
  echo "build:      $status_build"
  echo "tests:      $status_tests"
  echo "  test_cuda.py:  $(tail -n 1 "$out/pytest.log" 2>/dev/null)"
  echo "  backend tests: $(tail -n 1 "$out/pytest_backend.log" 2>/dev/null)"
  echo "verified:   $("$py" -c "import json; print(json.load(open('$out/cuda_verified.json')).get('passed'))" 2>/dev/null)"
  echo "benchmarks: $status_bench"
  if [ -f "$out/compare_gpu.json" ]; then
    "$py" benchmarks/compare_gpu.py --summary "$out/compare_gpu.json" 2>&1 | tail -n 40
  fi
} >"$out/summary.txt"
cat "$out/summary.txt"
[ "$status_tests" = "passed" ]
