#!/usr/bin/env bash
# Runs the decoder fuzz target for a bounded time (default 60 s), starting from and adding to the
# committed corpus. Needs the nightly toolchain (cargo fuzz uses sanitizers) and installs
# cargo-fuzz from crates.io if it is missing. Usage: netlib/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
cargo +nightly fuzz run decode corpus/decode -- -max_total_time="$seconds" -max_len=8192
