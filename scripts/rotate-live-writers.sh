#!/usr/bin/env bash
# Lines lost while rotating logs programs write all the time, two kinds of writer: one opens,
# appends one numbered line and closes, every 10 ms (as many loggers do); one keeps its log open
# and reopens it on SIGUSR1 (as nginx does), which the job's `postrotate` sends. `runner run`
# rotates both files (past max_size: renamed, postrotate, settle, archived, verified, deleted)
# ROTATIONS times. Then every line number is looked for in the live files and in every archive:
# prints written, found, lost and found twice, for each writer. (The held writer's count of
# lines written is the highest number found plus one: a lost last line would not show.)
#
#   scripts/rotate-live-writers.sh [ROTATIONS]      (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin runner
exec python3 scripts/rotate_live_writers.py "${1:-20}"
