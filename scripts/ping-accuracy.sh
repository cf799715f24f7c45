#!/usr/bin/env bash
# Compares runner's ping round trips on loopback with iputils `ping` started at the same
# moments (every 2 s, 5 echoes 200 ms apart each): per tick, the difference of the mean round
# trips; prints the median and largest difference, the smallest round trip seen, and the
# ticks with loss. With `flood`, another `ping` sends to 127.0.0.2 at 500/s or more meanwhile
# (its replies reach every raw ICMP socket); run that in a namespace of its own, as root:
#
#   scripts/ping-accuracy.sh [TICKS] [flood]      (default 60)
#   unshare --net sh -c 'ip link set lo up; scripts/ping-accuracy.sh 30 flood'
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ping >/dev/null; then
  echo "installing iputils-ping (the reference) with apt-get"
  apt-get install -y -qq iputils-ping >/dev/null
fi
cargo build --release --quiet --bin runner
exec python3 scripts/ping_accuracy.py "${1:-60}" ${2:+"$2"}
