#!/usr/bin/env bash
# The fleet report at scale (issue 29 section 2): HOSTS hosts x METRICS series x HOURS hours
# at STEP_S seconds (default 500 x 40 x 168 h x 10 s, a week) loaded into a VictoriaMetrics
# started here on 127.0.0.1, then `runner run fleet` (release build) renders the fleet report
# over the window; prints the load time, the report's wall time and its peak RSS (getrusage of
# the child).
#
# The samples are generated here in Python and loaded with VictoriaMetrics' import API
# (`/api/v1/import`, JSON lines: one line per series with its values and timestamps), which
# takes them far faster than remote write's small batches; the report reads them back through
# the query API exactly as it reads what remote write sent.
#
#   scripts/fleet-scale.sh                  # the full week
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
runner=${RUNNER:-}
if [ -z "$runner" ]; then
  cargo build --release --quiet --bin runner
  runner=$target/release/runner
fi
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
victoria-metrics -storageDataPath="$dir/vm" -httpListenAddr="127.0.0.1:$port" \
  -search.maxQueryDuration=120s >"$dir/vm.log" 2>&1 &
vm=$!
trap 'kill $vm 2>/dev/null; wait $vm 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.1
done
window_s=$((HOURS * 3600))
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
    templates: ["$repo/templates/fleet.md.hbs", "$repo/templates/fleet.html.hbs"]
YAML
python3 - "$port" "$HOSTS" "$METRICS" "$window_s" "$STEP_S" <<'PY'
import json, math, sys, time, urllib.request
port, hosts, metrics, window_s, step_s = (int(a) for a in sys.argv[1:])
end_ms = int(time.time() * 1000) - 60_000
points = window_s // step_s
stamps = [end_ms - (points - i) * step_s * 1000 for i in range(points)]
started = time.time()
samples = 0
for h in range(hosts):
    lines = []
    for m in range(metrics):
        values = [round(50 + 40 * math.sin((i + h * 7 + m) / 97.0) + (i * 31 + m) % 7, 3)
                  for i in range(points)]
        lines.append(json.dumps({
            "metric": {"__name__": f"runner_synth_m{m:02d}_percent", "host": f"host-{h:03d}",
                       "runner_job": "monitor", "name": "total"},
            "values": values, "timestamps": stamps}))
        samples += points
    body = ("\n".join(lines) + "\n").encode()
    urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/import", data=body, method="POST")).read()
urllib.request.urlopen(f"http://127.0.0.1:{port}/internal/force_flush").read()
print(f"loaded {samples:,} samples ({hosts} hosts x {metrics} series x {points} points at "
      f"{step_s} s) in {time.time() - started:.1f} s")
PY
python3 - "$runner" "$dir/jobs.yaml" <<'PY'
import resource, subprocess, sys, time
runner, jobs = sys.argv[1], sys.argv[2]
started = time.monotonic()
done = subprocess.run([runner, "--jobs", jobs, "run", "fleet"], capture_output=True, text=True)
elapsed = time.monotonic() - started
rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(done.stdout.strip()[-400:], done.stderr.strip()[-600:], sep="\n")
print(f"fleet report: {elapsed:.1f} s wall, peak RSS {rss_mib:.1f} MiB, exit {done.returncode}")
sys.exit(done.returncode)
PY
