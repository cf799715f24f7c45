#!/usr/bin/env bash
# Writes build/hot-functions.txt: the functions of runner that a warmed monitor's ticks run
# (the shipped probes and rules at 1 s, scripts/agent-setup.sh), found by running the release
# binary under callgrind with instrumentation switched on only after the warm-up. build.rs
# hands the list to the linker so those functions sit together (see build.rs for why).
# Run it again after changing what a tick does; a stale list costs memory, never correctness.
# With REMOTE_WRITE=1 the agent also pushes to a local Prometheus (`remote_write`, as
# scripts/overhead.sh measures it) and the functions not yet listed, those of remote write's
# pass every 5 s, are appended after the tick's: a runner without `remote_write` never
# touches them, one with it finds them together.
#
#   scripts/hot-functions.sh [SECONDS]      (default 60 under callgrind, about 40 ticks)
#   REMOTE_WRITE=1 scripts/hot-functions.sh [SECONDS]
#   RUNNER=/path/to/runner ...      profiles that release binary instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v valgrind > /dev/null || { echo "installing valgrind with apt-get"; apt-get install -y -qq valgrind > /dev/null; }
# Built as `cargo build --release` builds it: an example in the same command could change
# dependencies' features, and with them the symbols.
[ -n "${RUNNER:-}" ] || cargo build --release --quiet --bin runner
{ [ -n "${RUNNER:-}" ] && [ -x target/release/examples/synth_metrics ]; } || cargo build --release --quiet --example synth_metrics
runner=${RUNNER:-$PWD/target/release/runner}
dir=$(mktemp -d)
prom=
trap 'kill "$vg" $prom 2>/dev/null || true; rm -rf "$dir"' EXIT
. scripts/agent-setup.sh
if [ "${REMOTE_WRITE:-0}" = 1 ]; then
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "global: { scrape_interval: 1h }" > "$dir/prometheus.yml"
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
    --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver \
    > "$dir/prometheus.log" 2>&1 &
  prom=$!
  until curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null; do sleep 0.2; done
  printf 'remote_write:\n  url: "http://127.0.0.1:%s/api/v1/write"\n  max_age: 30s\n' "$port" >> "$dir/jobs.yaml"
fi

(cd "$dir" && exec valgrind --tool=callgrind --instr-atstart=no --demangle=no \
  --callgrind-out-file="$dir/callgrind.out" "$runner" --jobs jobs.yaml) > "$dir/log" 2>&1 &
vg=$!
until grep -q "history warmed" "$dir/log"; do
  kill -0 "$vg" 2>/dev/null || { cat "$dir/log"; exit 1; }
  sleep 1
done
# The first ticks after the warm-up run one-off code (first reads, first alerts): skip them.
sleep 10
callgrind_control --instr=on "$vg" > /dev/null 2>&1
sleep "$secs"
callgrind_control --dump "$vg" > /dev/null 2>&1
sleep 2
kill "$vg"; wait "$vg" 2>/dev/null || true

# Every function of the runner binary with a cost, hottest first. A name's hash changes when
# dependencies or the compiler do: where the name without it is still one function's, the list
# holds that pattern (`17h*E`, `Cs*_`), which outlives such changes; generic functions, whose
# instances differ only by hash, are listed exactly.
callgrind_annotate --threshold=100 "$dir"/callgrind.out.* 2>/dev/null \
  | grep -F "[$runner]" \
  | sed -E 's/^ *[0-9,]+ \([^)]*\) +[^:]*:(.*) \[.*$/\1/' \
  | sed -E "s/'[0-9]+\$//" \
  | awk '!seen[$0]++' > "$dir/hot"
nm --defined-only --format=posix "$runner" | awk '$2 ~ /^[tTwW]$/ { print $1 }' > "$dir/symbols"
python3 - "$dir/hot" "$dir/symbols" > "$dir/list" <<'PY'
import collections, re, sys
def pattern(name):
    return re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", re.sub(r"17h[0-9a-f]{16}E", "17h*E", name))
symbols = open(sys.argv[2]).read().split()
instances = collections.Counter(pattern(s) for s in symbols)
for name in open(sys.argv[1]).read().split():
    print(pattern(name) if instances[pattern(name)] == 1 else name)
PY
if [ -n "$prom" ]; then
  # The tick's list stays first; what remote write adds goes after it.
  awk 'NR == FNR { listed[$0] = 1; next } !listed[$0]' build/hot-functions.txt "$dir/list" > "$dir/added"
  echo "remote write adds $(wc -l < "$dir/added") functions"
  cat "$dir/added" >> build/hot-functions.txt
else
  cp "$dir/list" build/hot-functions.txt
fi
echo "build/hot-functions.txt: $(wc -l < build/hot-functions.txt) functions"
