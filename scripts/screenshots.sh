#!/usr/bin/env bash
# The status page and the weekly HTML report as a browser shows them: headless Chromium
# (Debian's `chromium` package; installed when missing, and said) takes a screenshot of each,
# written to docs/images/. runner runs on loopback with the shipped rules for SECONDS (10
# minutes by default; the docs' images come from 90): the machine's probes, ping, a healthy
# HTTP service (a local python server) and one that refuses connections, so an alert fires;
# then the status page is shot, and a report over the time it ran. Network traffic stays on
# 127.0.0.1.
#
#   scripts/screenshots.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
. scripts/services.sh
need chromium chromium
web_port=$(free_port)
status_port=$(free_port)
mkdir -p "$dir/site" && echo '{"status":"ok"}' >"$dir/site/health"
python3 -m http.server "$web_port" --bind 127.0.0.1 --directory "$dir/site" >/dev/null 2>&1 &
pids+=($!)
cat >"$dir/jobs.yaml" <<YAML
data_dir: var
host: web-1
listen: 127.0.0.1:$status_port
jobs:
  monitor:
    type: monitor
    schedule: "@every 5s"
    probes:
      - { type: cpu }
      - { type: memory }
      - { type: load }
      - { type: disk }
      - { type: disk_io }
      - { type: net_io }
      - { type: ping, name: db, host: 127.0.0.1, count: 3, interval_ms: 50 }
      - { type: http, name: shop, url: "http://127.0.0.1:$web_port/health", body_contains: '"ok"' }
      - { type: http, name: payments, url: "http://127.0.0.1:1/health", timeout_ms: 1000 }
    rules: ["$PWD/rules/*.rhai", "$PWD/rules/web/http.rhai"]
    notify: [log]
  weekly-report:
    type: report
    schedule: "0 8 * * MON"
    window: 7d
    templates: ["$PWD/templates/weekly.html.hbs"]
YAML
./target/release/runner --jobs "$dir/jobs.yaml" >"$dir/runner.log" 2>&1 &
pids+=($!)
echo "runner runs for ${seconds} s (status page http://127.0.0.1:$status_port/)"
sleep "$seconds"
mkdir -p docs/images
shoot() { # URL OUT HEIGHT
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$dir/chromium" --hide-scrollbars --window-size="1200,$3" \
    --screenshot="$2" "$1" >/dev/null 2>&1
  echo "  $2: $(python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(24); w,h=struct.unpack(">II",d[16:24]); print(f"{w}x{h}")' "$2"), $(($(stat -c %s "$2") / 1024)) KiB"
}
echo "screenshots:"
shoot "http://127.0.0.1:$status_port/" docs/images/status-page.png 1500
./target/release/runner report weekly-report --jobs "$dir/jobs.yaml" --window "$((seconds / 60))m" \
  --out "$dir/report.html" >/dev/null
shoot "file://$dir/report.html" docs/images/report.png 2200
echo "firing now: $(curl -s "http://127.0.0.1:$status_port/api/v1/alerts" |
  python3 -c 'import json,sys; print(", ".join(a["labels"]["alertname"] for a in json.load(sys.stdin)["data"]["alerts"] if a["state"]=="firing") or "none")')"
