#!/usr/bin/env bash
# The dedicated fuzzing job (issue 9, item 3): every test of tests/test_fuzz.py (one per
# public compiled entry point family) with BIGSTEP_FUZZ_EXAMPLES examples each
# (default 10,000), single-threaded kernels, hypothesis statistics printed per test.
#
#   tools/fuzz.sh                      # 10,000 examples per entry point
#   BIGSTEP_FUZZ_EXAMPLES=500 tools/fuzz.sh -k sampler
#
# Runs against the installed bigstep.  Output: the pytest log with hypothesis'
# statistics (examples run, passing/failing/invalid, time per example) in
# build/fuzz/fuzz.log (override: FUZZ_OUT).  Measured on the 2-core VM (other jobs
# sharing it): see the closing note of issue 9 / benchmarks/results/fuzz_campaign.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${FUZZ_OUT:-build/fuzz}
mkdir -p "$out"
export BIGSTEP_FUZZ_EXAMPLES=${BIGSTEP_FUZZ_EXAMPLES:-10000}
t0=$(date +%s)
set +e
${PYTHON:-python3} -m pytest tests/test_fuzz.py -p no:randomly --hypothesis-show-statistics --durations=0 \
  -o addopts="" "$@" 2>&1 | tee "$out/fuzz.log"
rc=${PIPESTATUS[0]}
set -e
echo "fuzz.sh: $BIGSTEP_FUZZ_EXAMPLES examples per test, $(( $(date +%s) - t0 )) s, pytest exit $rc" | tee -a "$out/fuzz.log"
exit "$rc"
