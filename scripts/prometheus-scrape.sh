#!/usr/bin/env bash
# A real Prometheus scraping two runners with different `host` names every second, then asked
# through its query API for `up` and a CPU series of both, and for every query of
# dist/grafana-dashboard.json (each must be accepted). Installs Debian's `prometheus`
# package when it is missing (and says so). Network traffic stays on 127.0.0.1.
#
#   scripts/prometheus-scrape.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
need prometheus prometheus
targets=()
for host in web-1 db-1; do
  port=$(free_port)
  mkdir -p "$dir/$host"
  cat > "$dir/$host/jobs.yaml" <<YAML
data_dir: var
host: $host
listen: 127.0.0.1:$port
notifiers:
  # Nobody listens there: its outbox keeps what fires (backlog and oldest age series).
  hook: { type: webhook, url: "http://127.0.0.1:9/" }
jobs:
  monitor:
    type: monitor
    schedule: "@every 1s"
    probes:
      - { type: cpu }
      - { type: memory }
      - { type: load }
      - { type: disk }
      - { type: disk_io }
      - { type: net_io }
      - { type: ping, name: loopback, host: 127.0.0.1, count: 2, interval_ms: 50 }
      - { type: tcp, name: closed, host: 127.0.0.1, port: 1 }
    rules: ["$PWD/rules/cpu.rhai", "$PWD/rules/memory.rhai", "$PWD/rules/disk.rhai"]
    notify: [hook]
YAML
  ./target/release/runner --jobs "$dir/$host/jobs.yaml" >"$dir/$host/out.log" 2>&1 &
  pids+=($!)
  targets+=("\"127.0.0.1:$port\"")
done
prom_port=$(free_port)
cat > "$dir/prometheus.yml" <<YAML
global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: runner
    static_configs: [{ targets: [$(IFS=,; echo "${targets[*]}")] }]
YAML
promtool check config "$dir/prometheus.yml" >/dev/null
prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$dir/prometheus.log" 2>&1 &
pids+=($!)
sleep 8
query() {
  curl -s "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json, sys
r = json.load(sys.stdin)["data"]["result"]
for s in sorted(r, key=lambda s: s["metric"].get("instance", "")):
    m = s["metric"]
    print("  {} {} = {}".format(m.get("__name__", ""), {k: v for k, v in m.items() if k != "__name__"}, s["value"][1]))
print("  ({} series)".format(len(r)))'
}
echo "up:"
query 'up{job="runner"}'
echo "runner_cpu_usage_percent{cpu=\"total\"} by host:"
query 'runner_cpu_usage_percent{cpu="total"}'
echo "memory used, averaged over the last 5 s, by host:"
query 'avg_over_time(runner_memory_used_percent[5s])'
echo "every query of dist/grafana-dashboard.json, with host=.*:"
python3 - "$prom_port" <<'PY'
import json, sys, urllib.parse, urllib.request
port = sys.argv[1]
dashboard = json.load(open("dist/grafana-dashboard.json"))
bad = 0
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        expr = target["expr"].replace("$host", ".*")
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer = json.load(urllib.request.urlopen(url))
        series = len(answer["data"]["result"]) if answer["status"] == "success" else -1
        if series < 0:
            bad += 1
        print(f"  {panel['title']}: {expr} -> {answer['status']}, {series} series")
print(f"  {bad} queries refused")
sys.exit(1 if bad else 0)
PY
