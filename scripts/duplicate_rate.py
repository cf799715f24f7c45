"""Kills runner at random moments while it notifies a local webhook; counts duplicates and losses.

See duplicate-rate.sh."""
import collections, math, glob, http.server, json, os, random, signal, subprocess, sys, tempfile, threading, time

args = [a for a in sys.argv[1:] if a != "--aim"]
# --aim: each kill lands 0-60 ms after a whole second, when the tick (every second, on the
# second) queues its notices and saves its state; otherwise kills fall anywhere.
aim = "--aim" in sys.argv[1:]
kills = int(args[0]) if args else 30
runner = os.path.abspath("target/release/runner")
received = collections.Counter()
lock = threading.Lock()


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            received[json.loads(body)["data"]["id"]] += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=server.serve_forever, daemon=True).start()
work = tempfile.mkdtemp()
with open(f"{work}/burst.rhai", "w") as f:
    f.write("""let phase = command.clock.value.to_int();
for i in 0..10 {
    if (phase + i) % 2 == 0 {
        alert("burst", #{ severity: "critical", labels: #{ n: `${i}` }, summary: `burst ${i}` });
    }
}
""")
with open(f"{work}/jobs.yaml", "w") as f:
    f.write(f"""data_dir: {work}/var
notifiers:
  hook: {{ type: webhook, url: "http://127.0.0.1:{server.server_address[1]}/in", retry_initial: 50ms, retry_max: 500ms }}
jobs:
  burst:
    type: monitor
    schedule: "@every 1s"
    flap_transitions: 100000
    probes: [{{ type: command, name: clock, command: [date, "+%s"], parse: number }}]
    rules: ["{work}/burst.rhai"]
    notify: [hook]
""")


def start():
    return subprocess.Popen([runner, "--jobs", f"{work}/jobs.yaml"], stderr=subprocess.DEVNULL)


proc = start()
random.seed(int(os.environ.get("SEED", "1")))
for _ in range(kills):
    time.sleep(random.uniform(1.0, 3.0))
    if aim:
        now = time.time()
        time.sleep(math.floor(now) + 1 + random.uniform(0.0, 0.060) - now)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = start()
time.sleep(3)
proc.send_signal(signal.SIGTERM)
proc.wait()

logged = set()
for path in glob.glob(f"{work}/var/alerts/*.jsonl"):
    for line in open(path):
        logged.add(json.loads(line)["id"])
queued = set()
outbox = f"{work}/var/outbox/hook.jsonl"
done = int(open(f"{work}/var/outbox/hook.done").read().strip() or 0)
with open(outbox, "rb") as f:
    f.seek(done)
    for line in f:
        queued.add(json.loads(line)["event"]["id"])
twice = sum(1 for n in received.values() if n > 1)
lost = logged - set(received) - queued
print(f"{kills} kills {'aimed at 0-60 ms after each second' if aim else 'at random moments'}, {len(logged)} notices logged, {sum(received.values())} deliveries of {len(received)} distinct ids")
print(f"delivered more than once: {twice} ids ({twice / max(len(received), 1) * 100:.2f} % of notices, {twice / kills:.2f} a kill)")
print(f"lost: {len(lost)}; still queued at the end (sent at the next start): {len(queued)}")
