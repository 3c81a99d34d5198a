#!/usr/bin/env bash
# Fails if a sans-IO crate (ruang-proto, ruang-audio, ruang-session) pulls in an async runtime, libp2p or cpal,
# or if ruang-net depends on ruang-proto/ruang-audio (DESIGN.md §1: arrows point one way).
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for crate in ruang-proto ruang-audio ruang-session; do
  if ! cargo metadata --format-version 1 --no-deps | grep -q "\"name\":\"$crate\""; then
    echo "layering: $crate not in the workspace yet; skipped"
    continue
  fi
  tree=$(cargo tree -p "$crate" -e normal --prefix none)
  bad=$(echo "$tree" | grep -E '^(tokio|async-std|smol|libp2p|cpal|alsa)[ -]' | sort -u || true)
  if [ -n "$bad" ]; then
    echo "layering: $crate must not depend on:"; echo "$bad" | sed 's/^/  /'; status=1
  else
    echo "layering: $crate is free of tokio, libp2p and cpal"
  fi
done
if cargo metadata --format-version 1 --no-deps | grep -q '"name":"ruang-net"'; then
  bad=$(cargo tree -p ruang-net -e normal --prefix none | grep -E '^ruang-(proto|audio) ' || true)
  if [ -n "$bad" ]; then echo "layering: ruang-net must not depend on ruang-proto or ruang-audio"; status=1;
  else echo "layering: ruang-net does not depend on proto or audio"; fi
fi
exit $status
