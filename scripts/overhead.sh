#!/usr/bin/env bash
# Prints runner's cost as a monitoring agent: the default monitor's probes at a 1 s interval
# for 60 s, after warming history from a synthetic 24 h metrics log (1 s, 65 metrics).
# Figures: CPU % of one core over the 60 s (after warm-up), peak RSS (VmHWM, warm-up included),
# and the warm-up time.
#
#   scripts/overhead.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
cargo build --release --quiet --bin runner --example synth_metrics
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
./target/release/examples/synth_metrics "$dir/var" 1 1s 65 > /dev/null
cat > "$dir/jobs.yaml" <<YAML
data_dir: var
jobs:
  monitor:
    type: monitor
    schedule: "@every 1s"
    probes:
      - type: cpu
      - type: memory
      - type: load
      - type: disk
      - type: disk_io
      - type: net_io
      - { type: ping, name: gateway, host: 127.0.0.1, count: 3 }
    rules: ["$PWD/rules/*.rhai"]
YAML
log="$dir/runner.log"
./target/release/runner --jobs "$dir/jobs.yaml" 2> "$log" &
pid=$!
until grep -q "history warmed" "$log"; do
  kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
warm_ms=$(grep "history warmed" "$log" | sed -E 's/.*elapsed_ms=([0-9]+).*/\1/')
# Nanoseconds on CPU, summed over the threads (schedstat): clock ticks are too coarse here.
cpu_ns() { cat /proc/"$pid"/task/*/schedstat | awk '{ s += $1 } END { printf "%d", s }'; }
start=$(cpu_ns)
sleep "$secs"
end=$(cpu_ns)
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
rss=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")
kill -TERM "$pid"; wait "$pid" || true
awk -v s="$start" -v e="$end" -v secs="$secs" -v hwm="$hwm" -v rss="$rss" -v warm="$warm_ms" 'BEGIN {
  printf "monitor at 1 s for %d s: CPU %.3f %% of one core (%.0f us a tick)\n", secs, (e - s) / 1e9 / secs * 100, (e - s) / 1e3 / secs;
  printf "peak RSS %.1f MiB (now %.1f MiB); warm-up from 24 h of samples: %d ms\n", hwm / 1024, rss / 1024, warm }'
