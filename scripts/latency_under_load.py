"""Network timings under a busy tick; see latency-under-load.sh."""
import http.server, json, os, signal, socket, statistics, subprocess, sys, tempfile, threading, time
from datetime import datetime

seconds = int(sys.argv[1])
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
runner = os.path.join(root, "target/release/runner")
work = tempfile.mkdtemp()

def listener(backlog=4096):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    return s

# 10,000 established connections, held open: a helper process holds the accepted ends (one
# process may not hold 20,000 descriptors here), this one the connecting ends.
holder = subprocess.Popen([sys.executable, "-c", """
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(4096)
print(s.getsockname()[1], flush=True)
held = [s.accept()[0] for _ in range(10000)]
print("held", flush=True)
time.sleep(100000)
"""], stdout=subprocess.PIPE, text=True)
held_port = int(holder.stdout.readline())
clients = []
for _ in range(10000):
    c = socket.socket()
    c.connect(("127.0.0.1", held_port))
    clients.append(c)
assert holder.stdout.readline().strip() == "held"

# The TCP target: accept and close.
target = listener()
def accept_and_close():
    while True:
        conn, _ = target.accept()
        conn.close()
threading.Thread(target=accept_and_close, daemon=True).start()

class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
threading.Thread(target=web.serve_forever, daemon=True).start()

access_log = os.path.join(work, "access.log")
open(access_log, "w").close()
jobs = os.path.join(work, "jobs.yaml")
with open(jobs, "w") as f:
    f.write(f"""data_dir: var
jobs:
  m:
    type: monitor
    schedule: "@every 1s"
    probes:
      - type: cpu
      - type: memory
      - type: load
      - type: disk
      - type: disk_io
      - type: net_io
      - {{ type: ping, name: lo, host: 127.0.0.1, count: 3, interval_ms: 100 }}
      - {{ type: tcp, name: target, host: 127.0.0.1, port: {target.getsockname()[1]} }}
      - {{ type: http, name: page, url: "http://127.0.0.1:{web.server_address[1]}/" }}
      - {{ type: process, name: python, process_name: python3 }}
      - {{ type: connections, name: held, ports: [{held_port}] }}
      - {{ type: access_log, name: web, path: {access_log} }}
      - {{ type: command, name: one, command: [/bin/echo, "1"] }}
""")
proc = subprocess.Popen([runner, "--jobs", jobs, "-q"])
python_ms, curl_ms = {}, {}
try:
    first = int(time.time()) + 2
    for k in range(seconds):
        at = first + k
        time.sleep(max(0.0, at - time.time()))
        c = socket.socket()
        t0 = time.perf_counter()
        c.connect(target.getsockname())
        python_ms[at] = (time.perf_counter() - t0) * 1000
        c.close()
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}",
                              f"http://127.0.0.1:{web.server_address[1]}/"],
                             capture_output=True, text=True).stdout
        curl_ms[at] = float(out) * 1000
        with open(access_log, "a") as log:
            log.write('127.0.0.1 - - [01/Dec/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl" 0.001\n')
    time.sleep(1)
finally:
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    holder.kill()

pairs_tcp, pairs_http, established = [], [], []
for name in sorted(os.listdir(os.path.join(work, "var/metrics"))):
    for line in open(os.path.join(work, "var/metrics", name)):
        s = json.loads(line)
        at = round(datetime.fromisoformat(s["ts"].replace("Z", "+00:00")).timestamp())
        m = s["metrics"]
        if at in python_ms and "tcp.target.connect_ms" in m:
            pairs_tcp.append((m["tcp.target.connect_ms"], python_ms[at]))
        if at in curl_ms and "http.page.latency_ms" in m:
            pairs_http.append((m["http.page.latency_ms"], curl_ms[at]))
        if "connections.held.established" in m:
            established.append(m["connections.held.established"])
med = statistics.median
print(f"{len(pairs_tcp)} ticks, every probe type, connections probe seeing {med(established):.0f} established connections")
print(f"tcp connect: runner median {med(r for r, _ in pairs_tcp):.3f} ms, Python connect() {med(p for _, p in pairs_tcp):.3f} ms, "
      f"difference of medians {abs(med(r for r, _ in pairs_tcp) - med(p for _, p in pairs_tcp)):.3f} ms")
print(f"http: runner latency median {med(r for r, _ in pairs_http):.3f} ms, curl time_total {med(c for _, c in pairs_http):.3f} ms, "
      f"difference of medians {abs(med(r for r, _ in pairs_http) - med(c for _, c in pairs_http)):.3f} ms")
