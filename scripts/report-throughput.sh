#!/usr/bin/env bash
# The report's speed and memory on a week of 1 s samples with 40 metrics (604,800 lines, about
# 1 GB here), summarised and rendered with the shipped templates, in two spellings of the same
# samples: runner's own, and another program's (spaces after `:`, `ts` without milliseconds, no
# `errors`). For each spelling: the report_bench example's best of three (its time split into
# summary and rendering), then the command a report job runs, `runner report` writing both
# templates' files, three times: its best time and the highest peak RSS of the three, read by
# getrusage as DuckDB's script reads its own. When DuckDB is installed (`pip install duckdb`),
# runs the same figures through it on the same files (2 threads, as runner uses on this machine)
# and prints how many times faster `runner report` is.
#
#   scripts/report-throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin runner --example synth_metrics --example report_bench --example respell_metrics
own=$(mktemp -d)
other=$(mktemp -d)
trap 'rm -rf "$own" "$other"' EXIT
"$target"/release/examples/synth_metrics "$own/var" 7 1s 40
"$target"/release/examples/respell_metrics "$own/var" "$other/var"
sync

# bench DIR: report_bench's fastest of three summaries, its line printed. Writes DIR/jobs.yaml
# (a weekly report job with both shipped templates), which `run_report` then runs.
bench() {
  local fastest="" line secs best_line=""
  for _ in 1 2 3; do
    line=$("$target"/release/examples/report_bench "$1")
    secs=$(sed -E 's/.*summary ([0-9.]+) s.*/\1/' <<<"$line")
    if [ -z "$fastest" ] || awk -v a="$secs" -v b="$fastest" 'BEGIN { exit !(a < b) }'; then
      fastest=$secs
      best_line=$line
    fi
  done
  echo "report_bench: $best_line"
}

# run_report DIR: `runner report` three times; prints its best wall time and its highest peak RSS
# (the child's ru_maxrss, KiB on Linux) and leaves the best time in $command_secs.
run_report() {
  local line
  line=$(python3 - "$target/release/runner" "$1" <<'PY'
import resource, subprocess, sys, time
runner, directory = sys.argv[1], sys.argv[2]
best, peak = None, 0
for _ in range(3):
    started = time.perf_counter()
    done = subprocess.run([runner, "report", "--jobs", f"{directory}/jobs.yaml", "--out-dir", f"{directory}/out"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"runner report failed ({done.returncode}): {done.stderr}")
    took = time.perf_counter() - started
    best = took if best is None else min(best, took)
    # The largest resident set of any child so far: the highest of the runs.
    peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(f"{best:.2f} {peak / 1024:.1f}")
PY
)
  command_secs=${line% *}
  echo "runner report: best of 3 ${command_secs} s, peak RSS ${line#* } MiB (highest of 3)"
}

echo "own spelling:"
bench "$own"
run_report "$own"
own_secs=$command_secs
echo "another spelling:"
bench "$other"
run_report "$other"
other_secs=$command_secs

if python3 -c 'import duckdb' 2>/dev/null; then
  for pair in "own:$own:$own_secs" "other:$other:$other_secs"; do
    IFS=: read -r name dir secs <<<"$pair"
    line=$(python3 scripts/report_duckdb.py "$dir" 2)
    duck=$(sed -E 's/.* in ([0-9.]+) s.*/\1/' <<<"$line")
    echo "$line (${name} spelling)"
    awk -v d="$duck" -v r="$secs" -v n="$name" 'BEGIN { printf "runner report is %.1fx DuckDB on the %s spelling\n", d / r, n }'
  done
else
  echo "DuckDB is not installed (pip install duckdb): no comparison"
fi
