#!/usr/bin/env bash
# Runs each coverage-guided fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for SECONDS, with its
# committed corpus, and prints one line per target: executions, speed, corpus size. New inputs
# that raise coverage are kept in fuzz/corpus/TARGET (commit the ones worth keeping); a crash is
# written to fuzz/artifacts/TARGET and fails the run.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 60 s, every target)
#
# FUZZ_FAST=1 builds without AddressSanitizer and without comparison tracing, for several times
# the executions: ruang-proto has no unsafe code (ASan guards only its dependencies), and the
# room_ops input is small indices, not magic values that comparison tracing helps to find.
#
# cargo-fuzz needs nightly compiler flags; on this project's stable toolchain they are allowed
# with RUSTC_BOOTSTRAP=1 (for the fuzz build only). cargo-fuzz is installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(event_decode text_decoders room_ops)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
status=0
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log=$(mktemp)
  build=(--sanitizer address)
  mode="address sanitizer"
  if [ "${FUZZ_FAST:-0}" = 1 ]; then
    build=(--sanitizer none --no-trace-compares)
    mode="fast: no sanitizer, no comparison tracing"
  fi
  if cargo fuzz run --fuzz-dir fuzz "${build[@]}" "$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
    tail -n 40 "$log"
  fi
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
  speed=$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
  corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
  echo "fuzz $target ($mode): $result, ${runs:-?} executions in ${seconds} s (${speed:-?}/s), corpus $corpus inputs"
  rm -f "$log"
done
exit "$status"
