#!/usr/bin/env bash
# The report's speed on a week of 1 s samples with 40 metrics (604,800 lines, about 1 GB here),
# summarised and rendered with the shipped templates, in two spellings of the same samples:
# runner's own, and another program's (spaces after `:`, `ts` without milliseconds, no
# `errors`). Prints the best of three runs each, with peak RSS. When DuckDB is installed
# (`pip install duckdb`), runs the same figures through it on the same files (2 threads, as
# runner uses on this machine) and prints how many times faster runner is.
#
#   scripts/report-throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example synth_metrics --example report_bench --example respell_metrics
own=$(mktemp -d)
other=$(mktemp -d)
trap 'rm -rf "$own" "$other"' EXIT
./target/release/examples/synth_metrics "$own/var" 7 1s 40
./target/release/examples/respell_metrics "$own/var" "$other/var"
sync

# best DIR: the fastest of three summaries, its line printed.
best() {
  local fastest="" line secs
  for _ in 1 2 3; do
    line=$(./target/release/examples/report_bench "$1")
    secs=$(sed -E 's/.*summary ([0-9.]+) s.*/\1/' <<<"$line")
    if [ -z "$fastest" ] || awk -v a="$secs" -v b="$fastest" 'BEGIN { exit !(a < b) }'; then
      fastest=$secs
      best_line=$line
    fi
  done
  echo "$best_line" >&2
  echo "$fastest"
}

echo "runner, its own spelling:"
own_secs=$(best "$own")
echo "runner, another spelling:"
other_secs=$(best "$other")

if python3 -c 'import duckdb' 2>/dev/null; then
  for pair in "own:$own:$own_secs" "other:$other:$other_secs"; do
    IFS=: read -r name dir secs <<<"$pair"
    line=$(python3 scripts/report_duckdb.py "$dir" 2)
    duck=$(sed -E 's/.* in ([0-9.]+) s.*/\1/' <<<"$line")
    echo "$line (${name} spelling)"
    awk -v d="$duck" -v r="$secs" -v n="$name" 'BEGIN { printf "runner is %.1fx DuckDB on the %s spelling\n", d / r, n }'
  done
else
  echo "DuckDB is not installed (pip install duckdb): no comparison"
fi
