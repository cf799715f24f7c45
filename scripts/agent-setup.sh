# Sourced by overhead.sh and hot-functions.sh: a data_dir in $dir with the shipped monitor's
# probes (ping to 127.0.0.1: measurements stay on loopback) and rules at a 1 s tick, and 24 h
# of 1 s samples with the very names this host's probes write, so history warms as it would
# after a day of running. Needs $dir and $runner; leaves $dir/jobs.yaml and $dir/var.
cat > "$dir/jobs.yaml" <<YAML
data_dir: var
jobs:
  monitor:
    type: monitor
    schedule: "@every 1s"
    probes:
      - type: cpu
      - type: memory
      - type: load
      - type: disk
      - type: disk_io
      - type: net_io
      - { type: ping, name: gateway, host: 127.0.0.1, count: 3 }
    rules: ["$PWD/rules/*.rhai"]
YAML

# The names this host writes: three ticks (rates need two readings), then their union.
"$runner" --jobs "$dir/jobs.yaml" -qq &
names_pid=$!
sleep 3.5
kill -TERM "$names_pid"
wait "$names_pid" || true
python3 - "$dir/var/metrics" > "$dir/names" <<'PY'
import json, os, sys
names = set()
for f in os.listdir(sys.argv[1]):
    for line in open(os.path.join(sys.argv[1], f)):
        names.update(json.loads(line)["metrics"])
print("\n".join(sorted(names)))
PY
rm -rf "$dir/var"
./target/release/examples/synth_metrics "$dir/var" 1 1s "$dir/names" > /dev/null
