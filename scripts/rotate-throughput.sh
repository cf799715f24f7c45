#!/usr/bin/env bash
# Prints the rotate job's throughput and peak RSS: 1 GiB of metrics logs in 200 files, then the
# same GiB in 20 files ten times bigger (peak RSS must stay flat: files are streamed), at the
# default deflate level 6 and at level 1. Before each level-6 run, `zip -6` compresses the same
# files (when zip is installed), the yardstick runner keeps up with although it also fsyncs,
# reads back and verifies each archive and deletes the originals.
#
#   scripts/rotate-throughput.sh [TOTAL_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-1024}
cargo build --release --quiet --example rotate_bench
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for files in 200 20; do
  rm -rf "$dir/var"
  ./target/release/examples/rotate_bench gen "$dir" "$mib" "$files"
  sync
  if command -v zip >/dev/null; then
    bytes=$(du -sb "$dir/var" | cut -f1)
    start=$(date +%s.%N)
    (cd "$dir/var" && zip -6 -q -r "$dir/reference.zip" .)
    end=$(date +%s.%N)
    rm -f "$dir/reference.zip"
    awk -v b="$bytes" -v s="$start" -v e="$end" -v f="$files" \
      'BEGIN { printf "zip -6, %d files: %.0f MB/s (no fsync, no verify, nothing deleted)\n", f, b / (e - s) / 1e6 }'
  else
    echo "zip is not installed: no zip -6 yardstick (apt-get install zip)"
  fi
  ./target/release/examples/rotate_bench run "$dir" 6
done
rm -rf "$dir/var"
./target/release/examples/rotate_bench gen "$dir" "$mib" 200
./target/release/examples/rotate_bench run "$dir" 1
