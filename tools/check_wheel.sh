#!/usr/bin/env bash
# Builds bigstep's sdist and the release CPU wheel for glibc 2.28 and newer
# (manylinux_2_28_x86_64: RHEL 8 and its rebuilds, where large sweeps run), checks it with
# auditwheel and objdump, installs it into a fresh virtual environment with no source tree
# on the path, and smoke-tests it (tools/wheel_smoke.py: `bigstep info`, the instruction
# sets against /proc/cpuinfo, no CUDA dependency, s*, the sampler, the exact risk, the
# trainer); then installs the sdist into a second fresh environment (built there with the
# default compiler) and runs the same smoke test.
#
# No container: the wheel is compiled by zig's clang targeting glibc 2.28
# (tools/zig-cxx; the `ziglang` package: its own glibc 2.28 headers and symbol-version
# stubs, libc++ linked statically) against LLVM's OpenMP runtime from the `cmeel-libomp`
# package (built for manylinux_2_28; needs GLIBC_2.14 at most), which auditwheel vendors
# as bigstep.libs/libomp-<hash>.so.  Both come from the package index.
#
#   tools/check_wheel.sh            # everything
#   CHECK_WHEEL_SDIST=0 tools/check_wheel.sh   # skip the sdist install (one compile less)
#
# Output under build/check-wheel/ (override: CHECK_WHEEL_OUT): dist/ (sdist and the
# raw wheel), wheelhouse/ (the repaired wheel), glibc-symbols.txt, venv-wheel/, venv-sdist/.
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

PLAT=manylinux_2_28_x86_64
GLIBC_MAX=2.28
step "toolchain: zig (glibc $GLIBC_MAX target) and LLVM's OpenMP runtime, from the package index"
"$py" -m pip install -q "ziglang==0.17.1" "cmeel-libomp==21.1.8"
BIGSTEP_ZIG=$("$py" -c "import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), 'zig'))")
omp=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/cmeel.prefix
[ -x "$BIGSTEP_ZIG" ] && [ -f "$omp/lib/libomp.so" ] && [ -f "$omp/include/omp.h" ] || {
  echo "check_wheel.sh: zig or libomp missing ($BIGSTEP_ZIG, $omp)" >&2; exit 1; }
export BIGSTEP_ZIG
step "zig $("$BIGSTEP_ZIG" version), libomp from $omp"

step "building the sdist, then the wheel from it (zig c++ -target x86_64-linux-gnu.2.28)"
CXX="$root/tools/zig-cxx" "$py" -m build --outdir "$out/dist" \
  -Ccmake.define.OpenMP_CXX_FLAGS="-fopenmp=libomp -I$omp/include" \
  -Ccmake.define.OpenMP_CXX_LIB_NAMES=omp -Ccmake.define.OpenMP_omp_LIBRARY="$omp/lib/libomp.so" \
  . > "$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
sdist=$(ls "$out"/dist/bigstep-*.tar.gz)
wheel=$(ls "$out"/dist/bigstep-*.whl)
step "built $(basename "$sdist") and $(basename "$wheel")"

step "auditwheel: repair to $PLAT, vendoring libomp"
# where auditwheel finds libomp.so (the raw wheel's _core needs it)
LD_LIBRARY_PATH="$omp/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$py" -m auditwheel repair --plat "$PLAT" -w "$out/wheelhouse" "$wheel"
repaired=$(ls "$out"/wheelhouse/bigstep-*"$PLAT"*.whl)
"$py" -m auditwheel show "$repaired" | tee "$out/auditwheel-show.txt"
step "repaired: $(basename "$repaired")"
"$py" - "$repaired" "$out/glibc-symbols.txt" "$GLIBC_MAX" <<'EOF'
import re, subprocess, sys, tempfile, zipfile
wheel, report, limit = sys.argv[1], sys.argv[2], tuple(int(v) for v in sys.argv[3].split("."))
z = zipfile.ZipFile(wheel)
names = z.namelist()
libs = [n for n in names if n.startswith("bigstep.libs/")]
print("vendored:", ", ".join(libs) or "nothing")
assert any("libomp" in n for n in libs), "libomp was not vendored"
# the compiled CUDA modules (bigstep._cuda, bigstep._cuda_emu) must be absent; the
# pure-Python launchers (bigstep/_cuda_kernels/*.py) ship in every wheel and are used
# only where bigstep._cuda imports
compiled_cuda = [n for n in names if re.match(r"bigstep/_cuda[^/]*\.(so|pyd)$", n)]
assert not compiled_cuda, f"the CPU wheel contains a compiled CUDA module: {compiled_cuda}"
assert not any("cuda" in n.lower() for n in libs), "the CPU wheel vendors a CUDA library"
lines, worst = [], (0, 0)
with tempfile.TemporaryDirectory() as tmp:
    for n in names:
        if not re.search(r"\.so(\.|$)", n):
            continue
        path = z.extract(n, tmp)
        syms = subprocess.run(["objdump", "-T", path], capture_output=True, text=True, check=True).stdout
        versions = {tuple(int(v) for v in m.split(".")) for m in re.findall(r"GLIBC_([0-9][0-9.]*[0-9])", syms)}
        dyn = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
        needed = [line.split("[")[1].rstrip("]") for line in dyn.splitlines() if "(NEEDED)" in line]
        newest = max(versions, default=(0, 0))
        worst = max(worst, newest)
        lines.append(f"{n}: newest GLIBC_{'.'.join(map(str, newest))}; NEEDED: {', '.join(needed)}")
        assert "GLIBCXX_" not in syms and not any("libstdc++" in x for x in needed), f"{n} needs the system libstdc++"
        assert not any("libgomp" in x for x in needed), f"{n} needs the system libgomp"
open(report, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
assert worst <= limit, f"a library needs GLIBC_{'.'.join(map(str, worst))} > {sys.argv[3]}"
print(f"newest glibc symbol version in the wheel: GLIBC_{'.'.join(map(str, worst))} (limit {sys.argv[3]})")
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
