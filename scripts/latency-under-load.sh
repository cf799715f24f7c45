#!/usr/bin/env bash
# Network timings with the whole tick busy: one monitor job with every probe type at 1 s, its
# `connections` probe counting 10,000 established loopback connections (20,000 socket lines in
# /proc/net/tcp to parse every tick). At the same instants, Python connects to the same TCP
# listener and curl fetches the same page; prints the medians side by side.
#
#   scripts/latency-under-load.sh [SECONDS]      (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { echo "installing curl with apt-get"; apt-get install -y -qq curl >/dev/null; }
cargo build --release --quiet --bin runner
# Each side of the 10,000 connections lives in its own process, under the hard limit.
ulimit -n "$(ulimit -Hn)"
exec python3 scripts/latency_under_load.py "${1:-60}"
