#!/usr/bin/env bash
# Speed history: runs the asv suite (benchmarks/bench_*.py) on the last N commits of main
# (first-parent), each built from its own source (asv checks the commit out, builds its
# wheel and installs it into asv's virtualenv: numpy, numba, scipy from the package index),
# and appends the results to benchmarks/history/<machine>/ in asv's own format, with the
# machine's description (machine.json: CPU, cores, RAM, OS).  Benchmarks already measured
# for a commit on this machine are skipped (a commit with nothing missing is not even
# built), so running it again adds only the new points.
#
#   tools/asv_history.sh 10                 # the last 10 commits of main
#   ASV_MACHINE=ci-2core tools/asv_history.sh 1    # name the machine (default: the hostname)
#   ASV_ARGS="--quick" tools/asv_history.sh 3      # extra `asv run` options
#   ASV_ARGS="--quick -b bench_optimal_score" tools/asv_history.sh 10   # a part of the suite
#
# Then `cd benchmarks && asv publish && asv preview` renders the history (HTML under
# benchmarks/.asv/html), and `asv compare A B` / `asv continuous` show regressions between
# commits.  Each commit is a full C++ build (~3-5 min on 2 cores) plus the suite: run it
# on a quiet machine (`nice`, and under `flock` where benchmarks share one).
set -euo pipefail
n=${1:?usage: tools/asv_history.sh N  (the last N commits of main)}
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "asv_history.sh: N must be a positive integer, got '$n'" >&2; exit 2; }
cd "$(dirname "$0")/../benchmarks"
asv=${ASV:-asv}
machine=()
[ -n "${ASV_MACHINE:-}" ] && machine=(--machine "$ASV_MACHINE")
commits=$(git rev-list --first-parent --count main)
[ "$n" -le "$commits" ] || { echo "asv_history.sh: main has only $commits commits" >&2; exit 2; }
range="main~$n..main"
[ "$n" -eq "$commits" ] && range="ALL"  # every commit of main: main~N does not exist
# a compiler cache: asv builds every commit in the same folder, so unchanged files hit
if [ -z "${CMAKE_CXX_COMPILER_LAUNCHER:-}" ] && command -v ccache > /dev/null; then
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache
fi
t0=$(date +%s)
$asv machine --yes "${machine[@]}"
# shellcheck disable=SC2086  # ASV_ARGS is a list of options
$asv run --skip-existing --show-stderr "${machine[@]}" ${ASV_ARGS:-} "$range"
$asv publish
echo "asv_history.sh: $n commit(s) in $(( $(date +%s) - t0 )) s; results in benchmarks/history/, HTML in benchmarks/.asv/html"
