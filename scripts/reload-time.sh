#!/usr/bin/env bash
# How long a reload takes: the web-tier example (its monitor has 8 rule files, every probe
# type) runs on a 1 s schedule with the status listener; it is sent SIGHUP ten times, and the
# time of each reload is read from its log, with the monitor's runs before and after (no tick
# may be missed).
#
#   scripts/reload-time.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin runner
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
cp -r jobs rules templates "$dir"/
sed -e 's|schedule: "\*/15 \* \* \* \* \*"|schedule: "@every 1s"|' -e 's|^data_dir: .*|data_dir: var|' \
  jobs/examples/web-tier.yaml > "$dir/jobs/examples/web-tier.yaml"
./target/release/runner --jobs "$dir/jobs/examples/web-tier.yaml" --listen 127.0.0.1:0 \
  >"$dir/out.log" 2>&1 &
pid=$!
until grep -q "serving the status page" "$dir/out.log"; do sleep 0.1; done
port=$(sed -nE 's|.*url=http://127.0.0.1:([0-9]+)/.*|\1|p' "$dir/out.log" | head -1)
sleep 3
runs() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^runner_job_runs_total/ && /web-monitor/ && /succeeded|failed/ { s += $NF } END { print s }'; }
missed() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^runner_job_skipped_total/ && /web-monitor/ { s += $NF } END { print s }'; }
before=$(runs)
start=$(date +%s.%N)
for _ in $(seq 10); do
  kill -HUP "$pid"
  sleep 0.7
done
sleep 1
end=$(date +%s.%N)
after=$(runs)
grep -c "reloaded the jobs file" "$dir/out.log" | xargs echo "reloads done:"
grep "reloaded the jobs file" "$dir/out.log" | sed -nE 's/.*elapsed_ms=([0-9.]+).*/\1/p' | sort -n |
  awk '{ v[NR] = $1 } END { printf "reload time: median %.1f ms, max %.1f ms (%d reloads, 8 rule files)\n", v[int((NR + 1) / 2)], v[NR], NR }'
awk -v b="$before" -v a="$after" -v s="$start" -v e="$end" -v m="$(missed)" \
  'BEGIN { printf "monitor runs during the reloads: %d in %.1f s at 1 s; skipped or missed: %d\n", a - b, e - s, m }'
