#!/usr/bin/env bash
# Runs the workspace test suite (with cargo-nextest, as the README does) several times while
# busy loops take CPU from it, to find timing-sensitive tests before a loaded CI machine does.
# Each run's output goes to DIR/runN.log and a line per run to DIR/summary.txt (failing tests
# named).
#
#   scripts/stress-tests.sh [RUNS] [HOGS] [DIR]     defaults: 3 runs, 2 hogs, target/stress
#
# With 2 hogs on a 2-core machine each test gets about half the CPU it has alone. Do not run
# another build meanwhile: cargo would rebuild under the load and the runs would mean less.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
hogs=${2:-2}
dir=${3:-target/stress}
case "$runs$hogs" in *[!0-9]*|'') echo "usage: $0 [RUNS] [HOGS] [DIR]" >&2; exit 2 ;; esac
mkdir -p "$dir"
: > "$dir/summary.txt"
export CARGO_INCREMENTAL=0
echo "building the tests first (without load)"
cargo nextest run --workspace --no-run || exit 1
pids=()
stop_hogs() { [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null; pids=(); }
trap stop_hogs EXIT
failed_runs=0
for i in $(seq 1 "$runs"); do
  for _ in $(seq 1 "$hogs"); do (while :; do :; done) & pids+=($!); done
  start=$(date +%s)
  timeout 1800 cargo nextest run --workspace --no-fail-fast > "$dir/run$i.log" 2>&1
  rc=$?
  stop_hogs
  failing=$(grep -E '^ +(FAIL|TIMEOUT) ' "$dir/run$i.log" | awk '{print $NF}' | sort -u | tr '\n' ' ')
  line="run $i: exit $rc after $(( $(date +%s) - start )) s${failing:+; failed: $failing}"
  echo "$line" | tee -a "$dir/summary.txt"
  [ "$rc" -eq 0 ] || failed_runs=$((failed_runs + 1))
done
echo "$failed_runs of $runs runs failed; logs in $dir/"
[ "$failed_runs" -eq 0 ]
