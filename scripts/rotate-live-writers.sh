#!/usr/bin/env bash
# Lines lost while rotating a log a program writes all the time: a writer opens, appends one
# numbered line and closes, every 10 ms (as many loggers do), while `runner run` rotates the
# file (past max_size: renamed, archived, verified, deleted) ROTATIONS times. Then every line
# number is looked for in the live files and in every archive: prints written, found, lost and
# duplicated (a line in two archives, when a file changed after it was archived and was archived
# again whole).
#
#   scripts/rotate-live-writers.sh [ROTATIONS]      (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin runner
exec python3 scripts/rotate_live_writers.py "${1:-20}"
