#!/usr/bin/env bash
# How often a `kill -9` makes a notice arrive twice, and whether any is lost: runner raises and
# clears 10 alerts every second (20 notices a tick to a local webhook receiver) and is killed
# at random moments, then restarted, KILLS times. Every notice carries its event id (the
# payload's `data.id`, also `webhook-id` when signed), so the receiver counts ids seen more than
# once; ids in the alert log that never arrived and are not still queued are lost.
#
#   scripts/duplicate-rate.sh [--aim] [KILLS]      (default 30)
#
# --aim lands each kill 0-60 ms after a whole second, inside the tick (queueing its notices,
# saving its state) instead of anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin runner
exec python3 scripts/duplicate_rate.py "$@"
