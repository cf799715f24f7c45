#!/usr/bin/env bash
# Completes build/hot-functions.txt from what a native run really touches: the release binary
# runs the agent set-up (scripts/agent-setup.sh), and across its first periodic release of
# code pages, `perf` records every page fault for 8 s; each fault in `.text` (outside the hot
# section) names a function a tick runs that the list lacks, and it is added, and so is each
# named table a fault in `.rodata` lands in (found with the linker's map; build.rs places
# them too). Each round rebuilds with the longer list, which uncovers the functions that shared
# a 64 KiB fault-around block with one just moved. callgrind (scripts/hot-functions.sh) sees every function but runs
# ticks under valgrind's timing; this sees the real ticks. Needs perf (Debian's linux-perf).
# With REMOTE_WRITE=1 the agent also pushes to a local Prometheus (`remote_write`, as
# scripts/overhead.sh measures it), so the code of a remote-write pass (every 5 s) is added too,
# after the tick's: a runner without `remote_write` does not touch it.
#
#   scripts/hot-functions-refine.sh [ROUNDS]      (default 3; a release build each)
#   REMOTE_WRITE=1 scripts/hot-functions-refine.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
command -v perf > /dev/null || { echo "installing linux-perf with apt-get"; apt-get install -y -qq linux-perf > /dev/null; }
dir=$(mktemp -d)
prom_dir=$(mktemp -d)
trap 'kill "$pid" ${prom:-} 2>/dev/null || true; rm -rf "$dir" "$prom_dir"' EXIT
pid=
prom=
if [ "${REMOTE_WRITE:-0}" = 1 ]; then
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "global: { scrape_interval: 1h }" > "$prom_dir/prometheus.yml"
  prometheus --config.file="$prom_dir/prometheus.yml" --storage.tsdb.path="$prom_dir/tsdb" \
    --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver \
    > "$prom_dir/prometheus.log" 2>&1 &
  prom=$!
  until curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null; do sleep 0.2; done
fi
for round in $(seq "$rounds"); do
  cargo build --release --quiet --bin runner
  cargo build --release --quiet --example synth_metrics
  runner=$PWD/target/release/runner
  rm -rf "$dir"/*
  . scripts/agent-setup.sh
  if [ -n "$prom" ]; then
    printf 'remote_write:\n  url: "http://127.0.0.1:%s/api/v1/write"\n  max_age: 30s\n' "$port" >> "$dir/jobs.yaml"
  fi
  "$runner" --jobs "$dir/jobs.yaml" 2> "$dir/log" &
  pid=$!
  until grep -q "history warmed" "$dir/log"; do sleep 0.1; done
  # The first periodic release of code pages is 15 s after start (src/footprint.rs).
  sleep 12
  base=$(awk '/release\/runner/ { split($1, r, "-"); print r[1]; exit }' "/proc/$pid/maps")
  # 8 s hold eight ticks; with remote write, 11 s hold two of its passes (one every 5 s).
  perf record -q -e page-faults -c 1 -d -p "$pid" -o "$dir/perf.data" -- sleep "$([ -n "$prom" ] && echo 11 || echo 8)" 2> /dev/null
  perf script -i "$dir/perf.data" -F addr 2> /dev/null > "$dir/faults"
  kill "$pid"; wait "$pid" 2> /dev/null || true
  python3 - "$runner" "$base" "$dir/faults" <<'PY'
import bisect, collections, glob, os, re, subprocess, sys
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
# As scripts/hot-functions.sh writes them: a pattern where it names one function only.
def pattern(name):
    return re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", re.sub(r"17h[0-9a-f]{16}E", "17h*E", name))
instances = collections.Counter(pattern(name) for _, name in symbols)
found = [pattern(name) if instances[pattern(name)] == 1 else name for name in found]
listed = set(open("build/hot-functions.txt").read().split())
added = [name for name in dict.fromkeys(found) if name not in listed]
# Faults in .rodata: a table named after a function, or a named one of its own, joins the list
# (build.rs gathers `.rodata.<name>` and `.rodata..Lswitch.table.<name>`); what the compiler
# left unnamed (`.Lanon`, merged strings) cannot be, and is only counted.
maps = sorted(glob.glob("target/release/build/runner-*/out/runner.map"), key=os.path.getmtime)
ro = re.search(r"\s\.rodata\s+PROGBITS\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", sections)
data_found, unnamed = [], 0
if maps and ro:
    ro_start, ro_size = int(ro.group(1), 16), int(ro.group(2), 16)
    inputs = []
    for line in open(maps[-1]):
        m = re.match(r"\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s+\S*:\(\.rodata\.([^)]*)\)", line)
        if m:
            inputs.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3)))
    inputs.sort()
    starts = [a for a, _, _ in inputs]
    for line in open(faults):
        offset = int(line.split()[0], 16) - base
        if not ro_start <= offset < ro_start + ro_size:
            continue
        i = bisect.bisect_right(starts, offset) - 1
        name = inputs[i][2] if i >= 0 and offset < inputs[i][0] + inputs[i][1] else ""
        name = re.sub(r"^\.Lswitch\.table\.(.*?)(\.rel)?$", r"\1", name)
        if name.startswith((".L", "cst", "str")) or not name:
            unnamed += 1
        else:
            data_found.append(pattern(name) if instances[pattern(name)] <= 1 else name)
added += [name for name in dict.fromkeys(data_found) if name not in listed and name not in added]
with open("build/hot-functions.txt", "a") as out:
    out.writelines(name + "\n" for name in added)
print(f"faults in .text outside the hot section: {len(found)}; in .rodata: {len(data_found)} named, {unnamed} unnamed; names added: {len(added)}")
PY
done
echo "build/hot-functions.txt: $(wc -l < build/hot-functions.txt) functions"
