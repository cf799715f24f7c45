#!/usr/bin/env bash
# `runner replay`'s speed (issue 32): a week of 10 s ticks (60,480 samples of the 40 metrics a
# 4-core host's default monitor writes, from the synth_metrics example) replayed with the
# shipped rules (rules/*.rhai) under the shipped monitor's probes, in a release build. Prints
# the best wall time of three runs and the ticks per second it makes, and the peak RSS.
#
#   scripts/replay-speed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin runner --example synth_metrics
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
end=2026-11-30T00:00:00Z
"$target"/release/examples/synth_metrics "$dir/var" 7 10s 40 "$end" >/dev/null
cat >"$dir/jobs.yaml" <<YAML
data_dir: var
timezone: UTC
jobs:
  monitor:
    type: monitor
    schedule: "@every 10s"
    probes:
      - type: cpu
      - type: memory
      - type: load
      - type: disk
      - type: disk_io
      - type: net_io
      - type: ping
        name: gateway
        host: gateway
        count: 3
    rules: ["$repo/rules/*.rhai"]
YAML
sync
python3 - "$target/release/runner" "$dir/jobs.yaml" <<'PY'
import json, resource, subprocess, sys, time
runner, jobs = sys.argv[1], sys.argv[2]
best, ticks = None, 0
for _ in range(3):
    started = time.perf_counter()
    done = subprocess.run([runner, "replay", "monitor", "--jobs", jobs, "--from", "2026-11-23T00:00:00Z",
                           "--to", "2026-11-30T00:00:00Z", "--format", "json"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"runner replay failed ({done.returncode}): {done.stderr}")
    ticks = json.loads(done.stdout)["ticks"]
    best = took if best is None else min(best, took)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"replay: {ticks} ticks in {best:.2f} s (best of 3): {ticks / best:,.0f} ticks/s; peak RSS {peak / 1024:.1f} MiB")
PY
