#!/usr/bin/env bash
# The fleet report at scale (issue 29 section 2): HOSTS hosts x METRICS series x HOURS hours
# at STEP_S seconds (default 500 x 40 x 168 h x 10 s, a week) loaded into a VictoriaMetrics
# started here on 127.0.0.1, then `runner run fleet` (release build) renders the fleet report
# over the loaded window RUNS times; prints the load time, each report's wall time and its
# peak RSS (getrusage of the child).
#
# The samples are generated here in Python (LOAD_JOBS processes, 2 by default) and loaded with
# VictoriaMetrics' import API (`/api/v1/import`, JSON lines: one line per series with its
# values and timestamps), which takes them far faster than remote write's small batches; the
# report reads them back through the query API exactly as it reads what remote write sent.
#
# VM_DATA keeps VictoriaMetrics' storage in that directory instead of a temporary one: a load
# that finished there leaves `loaded.env` beside the data, and a later run with the same
# HOSTS/METRICS/HOURS/STEP_S skips the load and reports over the stored samples (each run's
# window then reaches from the first loaded sample to now, so it holds every loaded sample).
# P95=buckets sets the report job's `source.p95` (default `exact`). LOAD_ONLY=1 stops after
# the load; VM_FLAGS adds VictoriaMetrics flags (query limits). The
# server's cache of answers is off, so a second report over the same samples computes them
# again as the first did.
#
#   scripts/fleet-scale.sh                  # the full week
#   VM_DATA=/tmp/fleet-week-vm RUNS=3 scripts/fleet-scale.sh   # load once, report again later
#   VM_DATA=/tmp/fleet-week-vm RUNS=3 P95=buckets scripts/fleet-scale.sh   # p95 from buckets
#   HOURS=6 scripts/fleet-scale.sh          # fewer hours when the load takes too long
#   RUNNER=target/debug/runner HOSTS=60 METRICS=3 HOURS=1 scripts/fleet-scale.sh   # a try
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
target=${CARGO_TARGET_DIR:-target}
HOSTS=${HOSTS:-500}
METRICS=${METRICS:-40}
HOURS=${HOURS:-168}
STEP_S=${STEP_S:-10}
RUNS=${RUNS:-1}
LOAD_JOBS=${LOAD_JOBS:-2}
LOAD_ONLY=${LOAD_ONLY:-}
VM_FLAGS=${VM_FLAGS:-}
P95=${P95:-exact}
runner=${RUNNER:-}
if [ -z "$runner" ] && [ -z "$LOAD_ONLY" ]; then
  cargo build --release --quiet --bin runner
  runner=$target/release/runner
fi
dir=$(mktemp -d)
if [ -n "${VM_DATA:-}" ]; then
  mkdir -p "$VM_DATA"
  store=$VM_DATA
else
  store=$dir/vm
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086 # VM_FLAGS is a list of flags
victoria-metrics -storageDataPath="$store" -httpListenAddr="127.0.0.1:$port" \
  -retentionPeriod=100y -search.maxQueryDuration=120s -search.disableCache $VM_FLAGS \
  >"$dir/vm.log" 2>&1 &
vm=$!
trap 'kill $vm 2>/dev/null; wait $vm 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 300); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.1
done
params="HOSTS=$HOSTS METRICS=$METRICS HOURS=$HOURS STEP_S=$STEP_S"
marker=$store/loaded.env
if [ -f "$marker" ] && grep -qx "$params" "$marker"; then
  echo "reusing the samples loaded in $store ($(head -1 "$marker"))"
else
  rm -f "$marker"
  python3 - "$port" "$HOSTS" "$METRICS" "$((HOURS * 3600))" "$STEP_S" "$LOAD_JOBS" "$dir/start_ms" <<'PY'
import json, math, multiprocessing, sys, time, urllib.request
port, hosts, metrics, window_s, step_s, jobs = (int(a) for a in sys.argv[1:7])
end_ms = int(time.time() * 1000) - 60_000
points = window_s // step_s
start_ms = end_ms - points * step_s * 1000
stamps = json.dumps([start_ms + i * step_s * 1000 for i in range(points)])
# sin((i + h * 7 + m) / 97) for every offset a series uses, computed once.
wave = [40 * math.sin(k / 97.0) for k in range(points + hosts * 7 + metrics)]

def load(h):
    lines = []
    for m in range(metrics):
        off = h * 7 + m
        values = [round(50 + wave[i + off] + (i * 31 + m) % 7, 3) for i in range(points)]
        name = json.dumps({"__name__": f"runner_synth_m{m:02d}_percent", "host": f"host-{h:03d}",
                           "runner_job": "monitor", "name": "total"})
        lines.append(f'{{"metric":{name},"values":{json.dumps(values)},"timestamps":{stamps}}}')
    body = ("\n".join(lines) + "\n").encode()
    urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/import", data=body, method="POST")).read()
    return metrics * points

started = time.time()
with multiprocessing.Pool(jobs) as pool:
    samples = sum(pool.imap_unordered(load, range(hosts)))
urllib.request.urlopen(f"http://127.0.0.1:{port}/internal/force_flush").read()
print(f"loaded {samples:,} samples ({hosts} hosts x {metrics} series x {points} points at "
      f"{step_s} s) in {time.time() - started:.1f} s")
open(sys.argv[7], "w").write(str(start_ms))
PY
  printf '%s\nSTART_MS=%s\n' "$params" "$(cat "$dir/start_ms")" >"$marker"
fi
[ -n "$LOAD_ONLY" ] && exit 0
start_ms=$(sed -n 's/^START_MS=//p' "$marker")
for run in $(seq "$RUNS"); do
  # From the first loaded sample to now, whole seconds and a minute more, so every loaded
  # sample is inside the window runner takes when it starts.
  window_s=$(( ($(date +%s%3N) - start_ms) / 1000 + 60 ))
  cat >"$dir/jobs.yaml" <<YAML
data_dir: var
timezone: UTC
jobs:
  fleet:
    type: report
    schedule: "@weekly"
    window: ${window_s}s
    source:
      prometheus: "http://127.0.0.1:$port"
      timeout: 120s
      p95: $P95
    templates: ["$repo/templates/fleet.md.hbs", "$repo/templates/fleet.html.hbs"]
YAML
  python3 - "$runner" "$dir/jobs.yaml" "$run" <<'PY'
import resource, subprocess, sys, time
runner, jobs, run = sys.argv[1], sys.argv[2], sys.argv[3]
started = time.monotonic()
done = subprocess.run([runner, "--jobs", jobs, "run", "fleet"], capture_output=True, text=True)
elapsed = time.monotonic() - started
rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(done.stdout.strip()[-400:], done.stderr.strip()[-600:], sep="\n")
print(f"fleet report {run}: {elapsed:.1f} s wall, peak RSS {rss_mib:.1f} MiB, "
      f"exit {done.returncode}")
sys.exit(done.returncode)
PY
done
