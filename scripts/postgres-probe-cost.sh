#!/usr/bin/env bash
# What one tick of the postgres probe costs against a server with 200 client sessions: wall
# time (one round trip), runner's CPU and the server's CPU per tick. Starts a throwaway
# PostgreSQL from the distribution's binaries (as the tests do) and removes it.
#
#   scripts/postgres-probe-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --quiet --bench postgres 2>&1 | grep -v '^\s*$'
