#!/usr/bin/env bash
# Runs every test on a fresh Debian machine with the Rust toolchain: installs the real components
# the tests start when they are missing (redis-server, Chromium, Node, Python's venv; with
# apt-get, as root or through sudo), then runs `cargo test --workspace`. Extra arguments go to
# cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${need[*]}" >&2
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${need[@]}"
fi
exec cargo test --workspace "$@"
