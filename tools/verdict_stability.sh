#!/usr/bin/env bash
# Verdict stability (issue: the same verdict on any machine): every quick reproduction
# under 3 base seeds and under each runnable configuration -- the compiled kernels
# forced to each instruction set this CPU runs (cpp-baseline, cpp-avx2, cpp-avx512) and
# the Numba fallback -- then a table of verdicts (tools/verdict_stability.py table).
#
#   tools/verdict_stability.sh [OUT] [FIG ...]     (default OUT benchmarks/results/verdict_stability,
#                                                   FIG fig1 fig2 fig3 fig4 fig5)
#
# Needs the multi-ISA build (the default `pip install .`; a BIGSTEP_NATIVE=ON build has
# only "native", which is then the one compiled configuration).  Resumable: a run whose
# summary.json exists is skipped.  Heavy (hours on 2 shared cores): runs niced, JOBS runs
# at a time (default 2, each on one thread: results do not depend on the thread count).
# PYTHON picks the interpreter (default: python).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-benchmarks/results/verdict_stability}
shift || true
figs=${*:-fig1 fig2 fig3 fig4 fig5}
py=${PYTHON:-python}
jobs=${JOBS:-2}
isas=$("$py" -c "import bigstep._core as c; print(' '.join(s for s in c.available_isas().split(',') if s))" \
       2>/dev/null || true)
configs=""
for isa in $isas; do
  if [ "$isa" = native ] && [ "$(echo "$isas" | wc -w)" -gt 1 ]; then continue; fi
  configs="$configs cpp-$isa"
done
configs="$configs numba"
echo "configurations:$configs; figures: $figs; out: $out; $jobs at a time"
mkdir -p "$out"
todo=()  # seed by seed, so that every figure and configuration has a first seed early
for seed in 0 1 2; do
  for fig in $figs; do
    for cfg in $configs; do
      dir="$out/$fig/$cfg-seed$seed"
      [ -f "$dir/summary.json" ] || todo+=("$fig $seed $cfg $dir")
    done
  done
done
printf '%s\n' "${todo[@]+"${todo[@]}"}" | OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 xargs -r -P "$jobs" -L 1 \
  sh -c '[ -f "$5/summary.json" ] || { nice -n 10 "$0" "$1" run "$2" "$3" "$4" "$5" && rm -f "$5"/*.png; }' \
  "$py" "$here/verdict_stability.py"
"$py" "$here/verdict_stability.py" table "$out"
