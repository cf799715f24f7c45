#!/usr/bin/env bash
# Completes build/hot-functions.txt from what a native run really touches: the release binary
# runs the agent set-up (scripts/agent-setup.sh), and right after its once-a-minute release of
# code pages, `perf` records every page fault for 8 s; each fault in `.text` (outside the hot
# section) names a function a tick runs that the list lacks, and it is added. Each round
# rebuilds with the longer list, which uncovers the functions that shared a 64 KiB fault-around
# block with one just moved. callgrind (scripts/hot-functions.sh) sees every function but runs
# ticks under valgrind's timing; this sees the real ticks. Needs perf (Debian's linux-perf).
#
#   scripts/hot-functions-refine.sh [ROUNDS]      (default 3; a release build each)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
command -v perf > /dev/null || { echo "installing linux-perf with apt-get"; apt-get install -y -qq linux-perf > /dev/null; }
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
pid=
for round in $(seq "$rounds"); do
  cargo build --release --quiet --bin runner
  cargo build --release --quiet --example synth_metrics
  runner=$PWD/target/release/runner
  rm -rf "$dir"/*
  . scripts/agent-setup.sh
  "$runner" --jobs "$dir/jobs.yaml" 2> "$dir/log" &
  pid=$!
  until grep -q "history warmed" "$dir/log"; do sleep 0.1; done
  # The first release of code pages is a minute after start (src/footprint.rs).
  sleep 55
  base=$(awk '/release\/runner/ { split($1, r, "-"); print r[1]; exit }' "/proc/$pid/maps")
  perf record -q -e page-faults -c 1 -d -p "$pid" -o "$dir/perf.data" -- sleep 8 2> /dev/null
  perf script -i "$dir/perf.data" -F addr 2> /dev/null > "$dir/faults"
  kill "$pid"; wait "$pid" 2> /dev/null || true
  python3 - "$runner" "$base" "$dir/faults" <<'PY'
import bisect, re, subprocess, sys
binary, base, faults = sys.argv[1], int(sys.argv[2], 16), sys.argv[3]
sections = subprocess.run(["readelf", "-S", "-W", binary], capture_output=True, text=True).stdout
start, size = (int(x, 16) for x in re.search(r"\s\.text\s+PROGBITS\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", sections).groups())
symbols = []
for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        symbols.append((int(parts[0], 16), parts[2]))
symbols.sort()
addresses = [a for a, _ in symbols]
found = []
for line in open(faults):
    offset = int(line.split()[0], 16) - base
    if start <= offset < start + size:
        i = bisect.bisect_right(addresses, offset) - 1
        if i >= 0:
            found.append(symbols[i][1])
listed = set(open("build/hot-functions.txt").read().split())
added = [name for name in dict.fromkeys(found) if name not in listed]
with open("build/hot-functions.txt", "a") as out:
    out.writelines(name + "\n" for name in added)
print(f"faults in .text outside the hot section: {len(found)}; functions added: {len(added)}")
PY
done
echo "build/hot-functions.txt: $(wc -l < build/hot-functions.txt) functions"
