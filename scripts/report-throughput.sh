#!/usr/bin/env bash
# Prints the weekly report's figures: 7 days of 1 s samples with 40 metrics (604,800 lines,
# about 1 GB here), summarised and rendered with the shipped templates; time and peak RSS.
#
#   scripts/report-throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example synth_metrics --example report_bench
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
./target/release/examples/synth_metrics "$dir/var" 7 1s 40
sync
for _ in 1 2 3; do
  ./target/release/examples/report_bench "$dir"
done
