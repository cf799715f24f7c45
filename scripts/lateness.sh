#!/usr/bin/env bash
# Prints how late the scheduler starts runs: 100 runs of an `@every 200ms` job, lateness in ms
# (min, median, p95, p99, max). The target is every run within 50 ms of its time.
#
#   scripts/lateness.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}
cargo build --release --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/jobs.yaml" <<YAML
data_dir: var
jobs:
  tick:
    type: monitor
    schedule: "@every 200ms"
YAML
log="$dir/log.jsonl"
./target/release/runner --jobs "$dir/jobs.yaml" --log-format json -v 2> "$log" &
pid=$!
while [ "$(grep -c '"run started"' "$log" || true)" -lt "$runs" ]; do sleep 0.2; done
kill -TERM "$pid"; wait "$pid"
grep '"run started"' "$log" | head -n "$runs" \
  | sed -E 's/.*"lateness_ms":([0-9.e+-]+).*/\1/' | sort -g \
  | awk -v n="$runs" '{ v[NR] = $1 } END {
      printf "runs: %d  lateness ms: min %.3f  median %.3f  p95 %.3f  p99 %.3f  max %.3f\n",
        NR, v[1], v[int(NR * 0.5)], v[int(NR * 0.95)], v[int(NR * 0.99)], v[NR];
      late = 0; for (i = 1; i <= NR; i++) if (v[i] > 50) late++;
      printf "runs later than 50 ms: %d\n", late }'
