#!/usr/bin/env bash
# Writes build/hot-functions.txt: the functions of runner that a warmed monitor's ticks run
# (the shipped probes and rules at 1 s, scripts/agent-setup.sh), found by running the release
# binary under callgrind with instrumentation switched on only after the warm-up. build.rs
# hands the list to the linker so those functions sit together (see build.rs for why).
# Run it again after changing what a tick does; a stale list costs memory, never correctness.
#
#   scripts/hot-functions.sh [SECONDS]      (default 60 under callgrind, about 40 ticks)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v valgrind > /dev/null || { echo "installing valgrind with apt-get"; apt-get install -y -qq valgrind > /dev/null; }
# Built as `cargo build --release` builds it: an example in the same command could change
# dependencies' features, and with them the symbols.
cargo build --release --quiet --bin runner
cargo build --release --quiet --example synth_metrics
runner=$PWD/target/release/runner
dir=$(mktemp -d)
trap 'kill "$vg" 2>/dev/null || true; rm -rf "$dir"' EXIT
. scripts/agent-setup.sh

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
python3 - "$dir/hot" "$dir/symbols" > build/hot-functions.txt <<'PY'
import collections, re, sys
def pattern(name):
    return re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", re.sub(r"17h[0-9a-f]{16}E", "17h*E", name))
symbols = open(sys.argv[2]).read().split()
instances = collections.Counter(pattern(s) for s in symbols)
for name in open(sys.argv[1]).read().split():
    print(pattern(name) if instances[pattern(name)] == 1 else name)
PY
echo "build/hot-functions.txt: $(wc -l < build/hot-functions.txt) functions"
