#!/usr/bin/env bash
# runner's cost as a monitoring agent: the shipped monitor's probes and rules at a 1 s tick,
# warmed from 24 h of history (scripts/agent-setup.sh). Prints CPU (% of one core, from the
# scheduler's nanosecond counters), RSS, PSS and anonymous memory at the end, and where the
# resident pages are (/proc/PID/smaps). When collectd is installed, measures it the same way
# with the same measurements (cpu, memory, load, df, disk, interface, ping). When Prometheus is
# installed, measures runner again with `remote_write` to a local Prometheus (its
# remote-write receiver) and prints what remote write adds: CPU and mean RSS.
#
#   scripts/overhead.sh [SECONDS]      (default 60)
#   RUNNER=/path/to/runner scripts/overhead.sh     measures another build, e.g. an older commit's
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
# The binary as `cargo build --release` builds it (an example in the same command can change
# dependencies' features, and with them the symbols build/hot-functions.txt names).
cargo build --release --quiet --bin runner
cargo build --release --quiet --example synth_metrics
runner=${RUNNER:-$PWD/target/release/runner}
dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

. scripts/agent-setup.sh
# Each runner measured starts from this same data_dir: a later one must not inherit the alerts
# an earlier one left pending (the shipped rules' pending_for of 2 m would have them fire, and
# their one-off code stay resident, inside its measurement).
cp -a "$dir/var" "$dir/var.start"

# CPU nanoseconds of a process, summed over its threads (clock ticks are too coarse here).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'; }
kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/smaps_rollup"; }

# measure NAME PID: CPU over $secs after 5 s of settling; RSS sampled every second of them
# (mean and highest), PSS and anonymous memory at the end.
measure() {
  local name=$1 pid=$2 start end samples=()
  sleep 5
  start=$(cpu_ns "$pid")
  for _ in $(seq "$secs"); do
    sleep 1
    samples+=("$(kib "$pid" Rss)")
  done
  end=$(cpu_ns "$pid")
  # For comparisons: CPU in % of one core and mean RSS in KiB.
  last_cpu=$(awk -v s="$start" -v e="$end" -v secs="$secs" 'BEGIN { printf "%.4f", (e - s) / 1e9 / secs * 100 }')
  last_rss=$(echo "${samples[*]}" | awk '{ for (i = 1; i <= NF; i++) s += $i; printf "%.0f", s / NF }')
  awk -v n="$name" -v s="$start" -v e="$end" -v secs="$secs" -v rss="${samples[*]}" \
    -v pss="$(kib "$pid" Pss)" -v anon="$(kib "$pid" Anonymous)" \
    -v hwm="$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")" 'BEGIN {
    k = split(rss, r, " "); sum = 0; top = 0
    for (i = 1; i <= k; i++) { sum += r[i]; if (r[i] > top) top = r[i] }
    printf "%-9s CPU %.3f %% of one core (%.0f us a tick)  RSS mean %.1f MiB, highest %.1f MiB  PSS %.1f MiB  anonymous %.1f MiB  (peak RSS %.1f MiB, at start-up)\n",
      n, (e - s) / 1e9 / secs * 100, (e - s) / 1e3 / secs, sum / k / 1024, top / 1024, pss / 1024, anon / 1024, hwm / 1024 }'
}

log="$dir/runner.log"
"$runner" --jobs "$dir/jobs.yaml" 2> "$log" & pids+=($!)
pid=${pids[-1]}
until grep -q "history warmed" "$log"; do
  kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
grep "history warmed" "$log" | sed -E 's/.*samples=([0-9]+) metrics=([0-9]+).*elapsed_ms=([0-9]+).*/warm-up: \1 samples of \2 metrics in \3 ms/'
# mappings NAME PID: where the resident pages are.
mappings() {
  echo "resident pages of $1 by mapping (KiB):"
  awk '/^[0-9a-f]+-[0-9a-f]+ / { what = ($6 == "" ? "[anonymous]" : $6) " " $2 }
       /^Rss:/ { rss[what] += $2 }
       END { for (w in rss) if (rss[w] >= 64) printf "  %6d  %s\n", rss[w], w }' "/proc/$2/smaps" | sort -rn
}
measure runner "$pid"
mappings runner "$pid"
kill -TERM "$pid"; wait "$pid" || true

if command -v prometheus > /dev/null; then
  alone_cpu=$last_cpu alone_rss=$last_rss
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "global: { scrape_interval: 1h }" > "$dir/prometheus.yml"
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
    --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver \
    > "$dir/prometheus.log" 2>&1 & pids+=($!)
  until curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null; do sleep 0.2; done
  # max_age 30s: the day of synthetic history is not news to the receiver; every tick from
  # the start on goes out.
  { cat "$dir/jobs.yaml"; printf 'remote_write:\n  url: "http://127.0.0.1:%s/api/v1/write"\n  max_age: 30s\n' "$port"; } > "$dir/jobs-rw.yaml"
  rm -rf "$dir/var"; cp -a "$dir/var.start" "$dir/var"
  log="$dir/runner-rw.log"
  "$runner" --jobs "$dir/jobs-rw.yaml" 2> "$log" & pids+=($!)
  pid=${pids[-1]}
  until grep -q "history warmed" "$log"; do
    kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
  done
  measure "runner+rw" "$pid"
  mappings "runner+rw" "$pid"
  kill -TERM "$pid"; wait "$pid" || true
  answer=$(curl -sG "http://127.0.0.1:$port/api/v1/query" --data-urlencode 'query={runner_job="monitor"}[1h]') || true
  sent=$(echo "$answer" | python3 -c 'import json, sys; print(sum(len(r["values"]) for r in json.load(sys.stdin)["data"]["result"]))') \
    || { echo "Prometheus answered: $answer"; tail -5 "$dir/prometheus.log"; sent=0; }
  awk -v a="$alone_cpu" -v b="$last_cpu" -v ra="$alone_rss" -v rb="$last_rss" -v n="$sent" 'BEGIN {
    printf "remote write adds CPU %+.3f %% of one core, RSS mean %+.2f MiB (%d samples held by Prometheus)\n", b - a, (rb - ra) / 1024, n }'
else
  echo "prometheus is not installed: remote write not measured"
fi

if command -v collectd > /dev/null; then
  cat > "$dir/collectd.conf" <<CONF
Interval 1
LoadPlugin cpu
LoadPlugin memory
LoadPlugin load
LoadPlugin df
LoadPlugin disk
LoadPlugin interface
LoadPlugin ping
LoadPlugin csv
<Plugin ping>
  Host "127.0.0.1"
</Plugin>
<Plugin csv>
  DataDir "$dir/collectd"
</Plugin>
CONF
  collectd -f -C "$dir/collectd.conf" & pids+=($!)
  measure collectd "${pids[-1]}"
else
  echo "collectd is not installed: runner measured alone"
fi
