#!/usr/bin/env bash
# Installs what building ruang needs on Debian/Ubuntu, and nothing when it is already there.
#   cmake            the `opus` crate builds libopus from source
#   pkg-config       finds system libraries for -sys crates
#   libasound2-dev   ALSA headers for cpal (microphone and speaker)
#   opus-tools       opusdec, used by a test to check our .opus files play in standard tools
#   iproute2, nftables  network namespaces and packet loss for the network benchmarks
# and, once cargo is there, cargo-nextest (the test runner of the README's test command).
# Idempotent: safe to run any number of times.
set -euo pipefail

packages=(cmake pkg-config libasound2-dev opus-tools iproute2 nftables)

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "bootstrap: this is not a Debian/Ubuntu system (no dpkg/apt-get)."
  echo "bootstrap: install by hand: ${packages[*]} (names vary by distribution), and Rust from https://rustup.rs"
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: all build dependencies are installed (${packages[*]}); nothing to do."
else
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "bootstrap: need root to install ${missing[*]}, and sudo is not available." >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]} with apt-get"
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  echo "bootstrap: installed ${missing[*]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "bootstrap: cargo not found. Install Rust (1.89 or newer) from https://rustup.rs, then run again." >&2
  exit 1
fi
echo "bootstrap: $(cargo --version)"

# The README's test command runs the suite with cargo-nextest.
if cargo nextest --version >/dev/null 2>&1; then
  echo "bootstrap: $(cargo nextest --version | head -1)"
else
  echo "bootstrap: installing cargo-nextest (the test runner; a few minutes to build)"
  cargo install cargo-nextest --locked
fi
