#!/usr/bin/env bash
# The one benchmark command: builds the release binaries, installs PodSixNet 0.11.0 from PyPI into
# target/podsixnet-venv if needed, then runs every workload against netlib, PodSixNet and the raw
# relay, servers on CPU 0 and the generator on CPU 1. Extra arguments go to netlib-bench
# (e.g. --seconds 10); then abuse-bench measures hostile users against the default limits.
# Usage: bench/run.sh [ARGS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p chat-example -p netlib-bench
# The same virtualenv and marker as the tests' (tests/support.rs, PYTHON_PACKAGES).
packages="podsixnet==0.11.0 prometheus-client==0.26.0"
if [ "$(cat target/podsixnet-venv/.installed 2>/dev/null)" != "$packages" ]; then
  rm -rf target/podsixnet-venv
  python3 -m venv target/podsixnet-venv
  # shellcheck disable=SC2086
  target/podsixnet-venv/bin/python -m pip install --quiet --disable-pip-version-check $packages
  printf '%s' "$packages" > target/podsixnet-venv/.installed
fi
# Socket.IO 4 and its Redis adapter from npm, for the comparison (bench/socketio).
if [ ! -d bench/socketio/node_modules ]; then
  (cd bench/socketio && npm ci --no-audit --no-fund --silent)
fi
lscpu | grep -E "^(Model name|CPU\(s\)):" | sed 's/^/# /'
taskset -c 1 target/release/netlib-bench "$@"
# What hostile users cost the server with its default limits (chat-example/README.md, Limits).
taskset -c 1 target/release/abuse-bench
# What metrics cost: fan-out with metrics on against off, and scrape time with 10 000 idle
# connections (BENCHMARKS.md, Issue 22).
taskset -c 1 target/release/metrics-bench
# What TLS costs: fan-out over TLS against TCP, idle TLS connections, full handshakes
# (BENCHMARKS.md, Issue 21).
taskset -c 1 target/release/tls-bench
# Resumable sessions under connection drops (BENCHMARKS.md, Issue 20): one server, then 3 nodes
# through Redis with room streams, then 3 nodes with one SIGKILLed mid-run.
taskset -c 1 target/release/jitter --seconds 60
target/release/jitter --seconds 60 --nodes 3
target/release/jitter --seconds 60 --nodes 3 --kill-at 30
