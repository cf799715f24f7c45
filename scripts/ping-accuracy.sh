#!/usr/bin/env bash
# Compares runner's ping round trips on loopback with iputils `ping` started at the same
# moments (every 2 s, 5 echoes 200 ms apart each): per tick, the difference of the mean round
# trips; prints the median and largest difference and the smallest round trip seen.
#
#   scripts/ping-accuracy.sh [TICKS]      (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ping >/dev/null; then
  echo "installing iputils-ping (the reference) with apt-get"
  apt-get install -y -qq iputils-ping >/dev/null
fi
cargo build --release --quiet --bin runner
exec python3 scripts/ping_accuracy.py "${1:-60}"
