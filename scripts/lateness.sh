#!/usr/bin/env bash
# How late the scheduler starts runs, beside the floor this host sets: for SECONDS (default
# 120), runner runs an `@every 200ms` job and a `* * * * * *` cron job while a bare C timerfd
# loop (scripts/timerfd_loop.c, built here with cc) wakes at the same 200 ms instants in the same
# run. Prints lateness in ms (min, median, p95, p99, max) for each; the cron line also shows the
# fraction of a second its runs were scheduled at (should be .000).
#
# LOAD says what else runs meanwhile: `stress` (stress-ng --cpu 2 --io 2 --hdd 1; refused when
# stress-ng is not installed), `burn` (two CPU-bound shell loops, no packages needed), `none`.
# Default: stress when stress-ng is installed, else burn. Give runner's settings to compare with
# RUNNER_PREFIX, e.g. RUNNER_PREFIX='nice -n -5' or 'chrt -r 10' (as root). RUNNER_BIN runs that
# binary instead of building target/release/runner.
#
#   scripts/lateness.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}
interval_ms=200
if [ -z "${LOAD:-}" ]; then
  if command -v stress-ng > /dev/null; then LOAD=stress; else LOAD=burn; fi
fi
command -v cc > /dev/null || { echo "lateness.sh needs a C compiler (cc) for the timerfd loop" >&2; exit 2; }
bin=${RUNNER_BIN:-./target/release/runner}
[ -n "${RUNNER_BIN:-}" ] || cargo build --release --quiet
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  wait 2> /dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
cc -O2 -Wall -o "$dir/timerfd_loop" scripts/timerfd_loop.c
cat > "$dir/jobs.yaml" <<YAML
data_dir: var
jobs:
  tick:
    type: monitor
    schedule: "@every ${interval_ms}ms"
  cron:
    type: monitor
    schedule: "* * * * * *"
YAML

case "$LOAD" in
  stress)
    command -v stress-ng > /dev/null || { echo "LOAD=stress needs stress-ng (or use LOAD=burn)" >&2; exit 2; }
    (cd "$dir" && exec stress-ng --cpu 2 --io 2 --hdd 1 --quiet) &
    pids+=($!) ;;
  burn)
    for _ in 1 2; do sh -c 'while :; do :; done' & pids+=($!); done ;;
  none) ;;
  *) echo "LOAD is stress, burn or none, not $LOAD" >&2; exit 2 ;;
esac
echo "load: $LOAD; $seconds s; runner: ${RUNNER_PREFIX:-default priority}; $(nproc) CPUs"

log="$dir/log.jsonl"
# shellcheck disable=SC2086 # RUNNER_PREFIX is words on purpose
${RUNNER_PREFIX:-} "$bin" --jobs "$dir/jobs.yaml" --log-format json -v 2> "$log" &
runner=$!
pids+=("$runner")
"$dir/timerfd_loop" "$interval_ms" "$seconds" > "$dir/timerfd.txt"
kill -TERM "$runner"; wait "$runner" || true

stats() {
  sort -g | awk -v what="$1" '{ v[NR] = $1 } END {
    if (NR == 0) { printf "%-22s no samples\n", what; exit }
    i50 = int(NR * 0.5); i95 = int(NR * 0.95); i99 = int(NR * 0.99)
    if (i50 < 1) i50 = 1; if (i95 < 1) i95 = 1; if (i99 < 1) i99 = 1
    late = 0; for (i = 1; i <= NR; i++) if (v[i] > 50) late++
    printf "%-22s n %5d  min %7.3f  median %7.3f  p95 %8.3f  p99 %8.3f  max %8.3f  >50ms %d\n",
      what, NR, v[1], v[i50], v[i95], v[i99], v[NR], late }'
}
started() { grep '"run started"' "$log" | grep "\"job\":\"$1\"" || true; }
lateness() { sed -E 's/.*"lateness_ms":([0-9.e+-]+).*/\1/'; }
stats "timerfd loop (200ms)" < "$dir/timerfd.txt"
started tick | lateness | stats "runner @every 200ms"
started cron | lateness | stats "runner cron 1s"
# The fraction of a second each cron run was scheduled at: cron has whole seconds.
started cron | sed -E 's/.*"scheduled":"[^"]*:[0-9]{2}(\.[0-9]+)?[^"]*".*/\1/; s/^$/.000/' \
  | sort | uniq -c | awk '{ printf "%s%d at %s", (NR > 1 ? ", " : "cron runs scheduled at: "), $1, $2 } END { print "" }'
