"""runner's ping against iputils ping at the same moments; see ping-accuracy.sh."""
import json, os, re, signal, statistics, subprocess, sys, tempfile, time

ticks = int(sys.argv[1])
period = 2.0
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
runner = os.path.join(root, "target/release/runner")
work = tempfile.mkdtemp()
with open(os.path.join(work, "jobs.yaml"), "w") as f:
    f.write(f"""data_dir: var
jobs:
  m:
    type: monitor
    schedule: "@every {int(period)}s"
    probes:
      - {{ type: ping, name: lo, host: 127.0.0.1, count: 5, interval_ms: 200 }}
""")
proc = subprocess.Popen([runner, "--jobs", os.path.join(work, "jobs.yaml"), "-q"])
reference = {}
try:
    # Start iputils at the moments runner's ticks start (multiples of the period).
    first = (int(time.time() / period) + 2) * period
    for k in range(ticks):
        at = first + k * period
        time.sleep(max(0.0, at - time.time()))
        out = subprocess.run(["ping", "-q", "-n", "-c", "5", "-i", "0.2", "127.0.0.1"],
                             capture_output=True, text=True).stdout
        m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", out)
        if m:
            reference[round(at)] = float(m.group(2))
    time.sleep(period)
finally:
    proc.send_signal(signal.SIGTERM)
    proc.wait()

diffs, mins, averages = [], [], []
for name in sorted(os.listdir(os.path.join(work, "var/metrics"))):
    for line in open(os.path.join(work, "var/metrics", name)):
        sample = json.loads(line)
        from datetime import datetime
        ts = datetime.fromisoformat(sample["ts"].replace("Z", "+00:00")).timestamp()
        avg = sample["metrics"].get("ping.lo.rtt_avg_ms")
        ref = reference.get(round(ts))
        if avg is None or ref is None:
            continue
        averages.append((avg, ref))
        diffs.append(abs(avg - ref))
        mins.append(sample["metrics"]["ping.lo.rtt_min_ms"])
if not diffs:
    sys.exit("no tick of runner and iputils matched")
over = sum(1 for d in diffs if d > 0.2)
print(f"{len(diffs)} ticks: runner's mean round trip median {statistics.median(a for a, _ in averages):.4f} ms, "
      f"iputils' {statistics.median(r for _, r in averages):.4f} ms")
print(f"per-tick difference: median {statistics.median(diffs):.4f} ms, largest {max(diffs):.4f} ms, "
      f"{over} ticks more than 0.2 ms apart; smallest round trip {min(mins):.4f} ms")
