#!/usr/bin/env bash
# runner's postgres probe and Debian's prometheus-postgres-exporter side by side on the same
# throwaway PostgreSQL (issue 30 §6), in two parts:
#
# 1. Every figure both have, compared within a stated tolerance: client sessions by state,
#    connections per database, deadlocks, commit, rollback and temp-byte rates, cache hits,
#    transaction-ID and multixact wraparound age, the standby's replay lag in bytes, and dead
#    tuples when runner reports them. The exporter is scraped on 127.0.0.1 at runner's tick
#    instants (the schedule's multiples of the interval since the epoch) plus 150 ms, once
#    runner's one-round-trip query is done; rates are the exporter's counters between two such
#    scrapes. Prints a table and exits 1 when a figure disagrees beyond its tolerance.
# 2. The cost at 200 client sessions (150 idle, 30 idle in a transaction, 10 running, 1
#    holding a row and 9 waiting on it): runner's CPU a tick (a monitor with this probe alone
#    at `@every 1s`) against the exporter's CPU a scrape (scraped every second), each from
#    /proc/PID/task/*/schedstat (nanoseconds; /proc/PID/stat's clock ticks are 10 ms, coarser
#    than a tick) and checked against /proc/PID/stat's utime+stime; the CPU of the server
#    backends answering each (by application_name) the same way; and RSS, sampled every second.
#
# Installs prometheus-postgres-exporter with apt when it is missing. Starts a primary and a
# streaming standby from the distribution's initdb/postgres (as the tests do: a temporary data
# folder, a Unix socket there, 127.0.0.1 and free ports; never a system cluster), builds runner
# (`cargo build --release`), and removes everything at the end. Needs root or the postgres
# binaries on PATH for the current user.
#
#   scripts/postgres-exporter-compare.sh [TICKS] [COST_SECONDS]   (default 13 ticks of 5 s, 60 s)
#   RUNNER=/path/to/runner scripts/postgres-exporter-compare.sh    another build, not built here
set -euo pipefail
cd "$(dirname "$0")/.."
ticks=${1:-13}
cost_secs=${2:-60}

if ! command -v prometheus-postgres-exporter > /dev/null; then
    echo "installing prometheus-postgres-exporter (apt)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus-postgres-exporter > /dev/null
fi
# RUNNER=/path/to/runner measures another build (an older commit's, say) and skips this one.
if [[ -z "${RUNNER:-}" ]]; then
    cargo build --release --quiet --bin runner
fi
runner=${RUNNER:-$PWD/target/release/runner}

# The newest PostgreSQL under /usr/lib/postgresql (Debian keeps its binaries off PATH).
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -1)
[[ -x "$pgbin/initdb" ]] || { echo "PostgreSQL's initdb is not installed (apt package postgresql)" >&2; exit 1; }

dir=$(mktemp -d)
chmod 755 "$dir"
pids=()
# The servers stop at once (SIGQUIT, as PgServer::halt does) by their postmaster.pid.
cleanup() {
    for data in "$dir/standby" "$dir/primary"; do
        [[ -f "$data/postmaster.pid" ]] && kill -QUIT "$(head -1 "$data/postmaster.pid")" 2> /dev/null || true
    done
    for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

# PostgreSQL refuses to run as root: as root, the server runs as `postgres`.
as_server() {
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[[ $(id -u) == 0 ]] && chown postgres: "$dir"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "superuser-password" > "$dir/pw"
as_server "$pgbin/initdb" -D "$dir/primary" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --no-sync --no-instructions -E UTF8 --locale=C --pwfile="$dir/pw" > /dev/null
# start DATA PORT [SETTING...]: a server on 127.0.0.1 and a socket in $dir, its log in DATA.log.
start() {
    local data=$1 port=$2
    shift 2
    local settings=()
    for s in "$@"; do settings+=(-c "$s"); done
    as_server "$pgbin/postgres" -D "$data" -p "$port" -k "$dir" -c listen_addresses=127.0.0.1 \
        -c fsync=off -c shared_buffers=16MB -c deadlock_timeout=100ms -c max_connections=250 \
        "${settings[@]}" > "$data.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 600); do
        "$pgbin/pg_isready" -q -h "$dir" -p "$port" && return 0
        sleep 0.1
    done
    cat "$data.log" >&2
    return 1
}
port=$(free_port)
start "$dir/primary" "$port"
psql_admin() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres "$@"; }
psql_admin -d postgres -c "CREATE ROLE runner LOGIN PASSWORD 'probe-secret-Xy7'" -c "GRANT pg_monitor TO runner" \
    -c "CREATE DATABASE shop"

# A standby streaming from the primary, as PgServer::standby makes one.
as_server "$pgbin/pg_basebackup" -h "$dir" -p "$port" -U postgres -R -X stream -c fast -D "$dir/standby"
standby_port=$(free_port)
start "$dir/standby" "$standby_port" cluster_name=standby1

python3 scripts/postgres_exporter_compare.py \
    --runner "$runner" --dir "$dir" --socket-dir "$dir" --port "$port" \
    --ticks "$ticks" --cost-seconds "$cost_secs" \
    --postgres-version "$("$pgbin/postgres" --version)"
