#!/usr/bin/env bash
# Runs each network-namespace topology test of crates/cli/tests/it/reachability.rs N times and
# prints a table: runs, passes, failures, and join → first audio (p50, p95, max) from the
# tests' own "first audio" lines. Needs root (the tests build network namespaces).
#
#   scripts/reachability.sh [N] [TEST...]      (default: 10 runs of every test)
#
# REACHABILITY_OUT=DIR keeps logs and timings there instead of target/reachability.
# RUANG_TEST_LOSS_PCT=N makes every switch of the topologies drop N % of frames (see
# crates/cli/tests/it/common/netns.rs). Failed runs keep their output in target/reachability/<test>-<run>.log. The tests run from a
# copy of the test binary and of `ruang` made at start, so building while it runs changes
# nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
shift || true
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(lan_with_mdns_only cone_nat_to_cone_nat_via_a_relay cone_nat_hole_punch_survives_the_relay
    relayed_room_survives_a_relay_restart rejoin_at_once_with_the_same_identity
    host_behind_nat_with_no_flags udp_blocked_websocket_carries_the_room
    udp_blocked_tls_websocket_carries_the_room
    hidden_ip_listener_reaches_the_host_only_through_the_relay host_with_a_forwarded_port)
fi
out="${REACHABILITY_OUT:-target/reachability}"
mkdir -p "$out"
exe=$(cargo test -p ruang --test it --no-run 2>&1 | grep -o 'target/debug/deps/it-[0-9a-f]*' | head -1)
cargo build -p ruang --bin ruang --quiet
[ -n "$exe" ] || { echo "could not build the reachability tests" >&2; exit 1; }
bin="$out/bin"
mkdir -p "$bin"
cp "$exe" "$bin/reachability"
cp target/debug/ruang "$bin/ruang"
export RUANG_BIN="$PWD/$bin/ruang"
# "label<TAB>ms" for every "<label> → first audio: 80.2ms" (or 1.2s) line of a run's log, and
# the relay test's "loss noticed" and "audio back" lines.
timings() {
  grep -E '(first audio|noticed|audio back[^:]*): [0-9.]+m?s$' "$1" | sed -E 's/^.*test [a-z_:]+ \.\.\. //' |
    awk -F': ' '{
      v = $NF; label = $1
      if (v ~ /ms$/) { sub(/ms$/, "", v); ms = v } else { sub(/s$/, "", v); ms = v * 1000 }
      printf "%s\t%s\n", label, ms
    }'
}

[ -n "${RUANG_TEST_LOSS_PCT:-}" ] && echo "links: ${RUANG_TEST_LOSS_PCT} % loss per switch crossing"
printf '%-40s %4s %4s %4s  %-38s %s\n' test runs ok fail timing "ms: p50 p95 max (n)"
for t in "${tests[@]}"; do
  ok=0
  fail=0
  all="$out/$t.timings"
  : >"$all"
  for i in $(seq 1 "$runs"); do
    log="$out/$t-$i.log"
    # From the crate's folder, as `cargo test` runs it.
    if (cd crates/cli && timeout 300 "../../$bin/reachability" --exact "reachability::$t" --include-ignored --nocapture) \
        >"$log" 2>&1; then
      ok=$((ok + 1))
      timings "$log" >>"$all"
      rm -f "$log"
    else
      fail=$((fail + 1))
    fi
  done
  first=1
  while IFS= read -r label; do
    stats=$(awk -F'\t' -v l="$label" '$1 == l { print $2 }' "$all" | sort -n | awk '
      NF { v[n++] = $1 }
      END {
        p50 = v[int((n - 1) * 0.50)]; p95 = v[int((n - 1) * 0.95 + 0.5)]
        printf "%.0f %.0f %.0f (%d)", p50, p95, v[n - 1], n
      }')
    if [ $first -eq 1 ]; then
      printf '%-40s %4d %4d %4d  %-38s %s\n' "$t" "$runs" "$ok" "$fail" "$label" "$stats"
      first=0
    else
      printf '%-40s %4s %4s %4s  %-38s %s\n' "" "" "" "" "$label" "$stats"
    fi
  done < <(cut -f1 "$all" | awk '!seen[$0]++')
  if [ $first -eq 1 ]; then
    printf '%-40s %4d %4d %4d  %s\n' "$t" "$runs" "$ok" "$fail" "-"
  fi
done
