"""runner's ping against iputils ping at the same moments; see ping-accuracy.sh."""
import json, os, re, signal, statistics, subprocess, sys, tempfile, time

ticks = int(sys.argv[1])
# `flood`: another program pings 127.0.0.2 at 500/s or more the whole time, as a busy host's
# monitoring would; its replies reach every raw ICMP socket, and must not read as runner's loss.
# (iputils' `-i 0.0019` sends ~750/s here; its timer makes `-i 0.002` only ~400/s.)
flood = len(sys.argv) > 2 and sys.argv[2] == "flood"
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
flooder = None
if flood:
    flooder = subprocess.Popen(["ping", "-q", "-n", "-i", "0.0019", "127.0.0.2"],
                               stdout=subprocess.PIPE, text=True)
proc = subprocess.Popen([runner, "--jobs", os.path.join(work, "jobs.yaml"), "-q"])
reference, reference_loss = {}, []
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
        lost = re.search(r"([\d.]+)% packet loss", out)
        if lost:
            reference_loss.append(float(lost.group(1)))
    time.sleep(period)
finally:
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    if flooder:
        flooder.send_signal(signal.SIGINT)
        flood_summary = flooder.communicate()[0]

diffs, mins, averages, losses = [], [], [], []
for name in sorted(os.listdir(os.path.join(work, "var/metrics"))):
    for line in open(os.path.join(work, "var/metrics", name)):
        sample = json.loads(line)
        from datetime import datetime
        ts = datetime.fromisoformat(sample["ts"].replace("Z", "+00:00")).timestamp()
        avg = sample["metrics"].get("ping.lo.rtt_avg_ms")
        losses.append(sample["metrics"].get("ping.lo.loss_percent"))
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
lossy = [l for l in losses if l != 0.0]
print(f"loss: runner {len(lossy)} of {len(losses)} ticks with loss (largest {max(lossy, default=0.0):.1f} %), "
      f"iputils {sum(1 for l in reference_loss if l)} of {len(reference_loss)} runs with loss")
if flood:
    m = re.search(r"(\d+) packets transmitted, (\d+) received", flood_summary)
    if m:
        print(f"concurrent pinger: {m.group(1)} echoes to 127.0.0.2, {m.group(2)} replies")
