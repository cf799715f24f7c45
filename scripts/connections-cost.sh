#!/usr/bin/env bash
# What one tick of the `connections` probe costs over 10,000 and 100,000 established loopback
# connections: its netlink read (what it does), its /proc/net/tcp* read (the fallback, and what
# it did before), and `ss -tn state established | wc -l` over the same table (`cargo bench
# --bench probes`, wall time per tick; then CPU time per tick, /usr/bin/time over 40 ticks).
#
# Each count runs in a network namespace of its own (`unshare --net`, root): the table, its
# listeners and ephemeral ports never touch the machine's own. A process may hold fewer than
# 20,000 descriptors here (the hard RLIMIT_NOFILE cannot be raised), and each connection is
# two (client and server end), so holder processes keep at most 9,000 connections each, on a
# port of their own.
#
#   scripts/connections-cost.sh [COUNT...]        (default: 10000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == --inside ]]; then
    bin=$2 count=$3
    ip link set lo up
    per=9000
    holders=$(((count + per - 1) / per))
    ports=() pids=()
    dir=$(mktemp -d)
    trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT
    for ((i = 0; i < holders; i++)); do
        port=$((20000 + i))
        n=$((count / holders + (i < count % holders ? 1 : 0)))
        # Connects n clients to its own listener, accepts each, says so, and holds them all.
        python3 -c '
import socket, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
listener = socket.socket()
listener.bind(("127.0.0.1", port))
listener.listen(1024)
held = []
for _ in range(n):
    held.append(socket.create_connection(("127.0.0.1", port)))
    held.append(listener.accept()[0])
open(ready, "w").close()
time.sleep(3600)
' "$port" "$n" "$dir/$i" &
        pids+=($!)
        ports+=("$port")
    done
    for ((i = 0; i < holders; i++)); do
        while [[ ! -e "$dir/$i" ]]; do sleep 0.2; done
    done
    echo "== $count established connections ($holders holders, ports ${ports[0]}-${ports[-1]}); ss sees $(ss -tn state established | tail -n +2 | wc -l) established sockets (both ends)"
    export RUNNER_BENCH_CONNECTION_PORTS=$(IFS=,; echo "${ports[*]}")
    "$bin" --bench connections_ 2>&1 | grep -v '^\s*$'
    # CPU (user + system) per tick, which wall time on a shared machine hides: 40 ticks of the
    # probe each way (plus the one that checks it), and 40 runs of ss, its pipe included.
    cpu() { /usr/bin/time -f '%U %S' "$@" 2>&1 >/dev/null | tail -1 | awk -v n="$runs" '{ printf "%.1f ms", ($1 + $2) * 1000 / n }'; }
    runs=41
    echo "CPU a tick: probe netlink $(cpu "$bin" --bench connections_probe_netlink --sample-count 40 --sample-size 1)," \
        "probe /proc $(cpu "$bin" --bench connections_probe_proc --sample-count 40 --sample-size 1)," \
        "$(runs=40 cpu sh -c 'for i in $(seq 40); do ss -tn state established | wc -l; done') for ss -tn state established | wc -l"
    exit 0
fi

# The benchmark binary, built once outside the namespaces.
bin=$(cargo bench --bench probes --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "probes" and m.get("executable"):
        print(m["executable"])
')
[[ -x "$bin" ]] || { echo "no benchmark binary" >&2; exit 1; }
for count in "${@:-10000 100000}"; do
    for c in $count; do
        unshare --net bash "$0" --inside "$bin" "$c"
    done
done
