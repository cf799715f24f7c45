#!/usr/bin/env bash
# Prints the outbox's figures: EVENTS alert events (default 10 000), each queued on its own
# (append + fsync), delivered one POST each to a local webhook receiver on 127.0.0.1.
#
#   scripts/outbox-throughput.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example outbox_bench
for _ in 1 2 3; do
  ./target/release/examples/outbox_bench "${1:-10000}"
done
