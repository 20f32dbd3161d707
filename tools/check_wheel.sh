#!/usr/bin/env bash
# Builds bigstep's sdist and CPU wheel, repairs the wheel to a manylinux tag with
# auditwheel, installs it into a fresh virtual environment with no source tree on the
# path, and smoke-tests it (tools/wheel_smoke.py: `bigstep info`, the instruction set,
# no CUDA dependency, s*, the sampler, the exact risk, the trainer); then installs the
# sdist into a second fresh environment and runs the same smoke test.
#
#   tools/check_wheel.sh            # everything: 31 min wall at load ~8 on 2 cores (9 CPU-min)
#   CHECK_WHEEL_SDIST=0 tools/check_wheel.sh   # skip the sdist install (one compile less)
#
# Output under build/check-wheel/ (override: CHECK_WHEEL_OUT): dist/ (sdist and the
# raw wheel), wheelhouse/ (the repaired wheel), venv-wheel/, venv-sdist/.
#
# CPU wheels are built with BIGSTEP_CUDA=OFF: a wheel built where nvcc exists would
# otherwise (AUTO) contain bigstep._cuda.  A CUDA build is a separate option
# (README, "CUDA builds").  The wheel is built from the sdist (python -m build
# without --wheel does that), so a file missing from the sdist fails here too.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=${CHECK_WHEEL_OUT:-$root/build/check-wheel}
py=${PYTHON:-python3}
t0=$(date +%s)
step() { echo "check_wheel.sh: [$(( $(date +%s) - t0 )) s] $*"; }

rm -rf "$out"
mkdir -p "$out/dist" "$out/wheelhouse"
export BIGSTEP_CUDA=OFF
unset BIGSTEP_NATIVE BIGSTEP_SANITIZE  # a portable wheel: baseline + dispatch, no sanitizers

step "building the sdist, then the wheel from it"
"$py" -m build --outdir "$out/dist" . > "$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
sdist=$(ls "$out"/dist/bigstep-*.tar.gz)
wheel=$(ls "$out"/dist/bigstep-*.whl)
step "built $(basename "$sdist") and $(basename "$wheel")"

step "auditwheel"
"$py" -m auditwheel show "$wheel" | tee "$out/auditwheel-show.txt"
# the most widely compatible tag this wheel is consistent with (glibc symbol versions)
plat=$( { tr '\n' ' ' < "$out/auditwheel-show.txt" | grep -o '"manylinux_[0-9]*_[0-9]*_x86_64"' | head -1 | tr -d '"'; } || true)
[ -n "$plat" ] || { echo "check_wheel.sh: auditwheel names no manylinux tag" >&2; exit 1; }
"$py" -m auditwheel repair --plat "$plat" -w "$out/wheelhouse" "$wheel"
repaired=$(ls "$out"/wheelhouse/bigstep-*manylinux*.whl)
step "repaired: $(basename "$repaired")"
"$py" - "$repaired" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
libs = [n for n in names if n.startswith("bigstep.libs/")]
print("vendored:", ", ".join(libs) or "nothing")
assert any("libgomp" in n for n in libs), "libgomp was not vendored"
assert not any("_cuda" in n for n in names), "the CPU wheel contains bigstep._cuda"
assert not any("cuda" in n.lower() for n in libs), "the CPU wheel vendors a CUDA library"
EOF

smoke() {  # smoke <venv> <what to install>
  local venv=$1 pkg=$2
  "$py" -m venv "$venv"
  # [repro]: pandas, for the trainer's history (numpy, numba, pandas from the package index)
  "$venv/bin/python" -m pip install -q "bigstep[repro] @ file://$pkg"
  # run from an empty directory so nothing of the checkout is importable
  mkdir -p "$out/run" && cd "$out/run"
  "$venv/bin/bigstep" info
  "$venv/bin/python" -I "$root/tools/wheel_smoke.py"
  cd "$root"
}

step "installing the repaired wheel into a fresh venv"
smoke "$out/venv-wheel" "$repaired"
step "wheel OK"

if [ "${CHECK_WHEEL_SDIST:-1}" != "0" ]; then
  step "installing the sdist into a fresh venv"
  smoke "$out/venv-sdist" "$sdist"
  step "sdist OK"
fi
step "done"
