#!/usr/bin/env bash
# Prints the rotate job's throughput and peak RSS: 1 GiB of metrics logs in 200 files, then the
# same GiB in 20 files ten times bigger (peak RSS must stay flat: files are streamed), at the
# default deflate level 6 and at level 1.
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
  ./target/release/examples/rotate_bench run "$dir" 6
done
rm -rf "$dir/var"
./target/release/examples/rotate_bench gen "$dir" "$mib" 200
./target/release/examples/rotate_bench run "$dir" 1
