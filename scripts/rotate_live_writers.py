"""See rotate-live-writers.sh."""
import glob, os, subprocess, sys, tempfile, threading, time, zipfile

rotations = int(sys.argv[1])
runner = os.path.abspath("target/release/runner")
work = tempfile.mkdtemp()
os.makedirs(f"{work}/logs")
with open(f"{work}/jobs.yaml", "w") as f:
    f.write(f"""data_dir: {work}/var
jobs:
  rot:
    type: rotate
    schedule: "@daily"
    paths: ["{work}/logs/*.log"]
    max_age: 1h
    max_size: 300B
    archive_dir: {work}/archive
    settle: 300ms
    postrotate: {{ signal: USR1, pid_file: {work}/held.pid }}
""")

# The second kind: keeps its log open and reopens it on SIGUSR1 (as nginx does).
held = subprocess.Popen(["bash", "-c",
    f"trap 'exec 3>>{work}/logs/held.log' USR1; exec 3>>{work}/logs/held.log; echo $$ > {work}/held.pid; "
    "i=0; while :; do echo \"held $i\" >&3; i=$((i+1)); sleep 0.01; done"])
while not os.path.exists(f"{work}/held.pid") or not open(f"{work}/held.pid").read().strip():
    time.sleep(0.01)

written = 0
stop = threading.Event()


def writer():
    global written
    while not stop.is_set():
        with open(f"{work}/logs/app.log", "a") as log:
            log.write(f"line {written:08d}\n")
        written += 1
        time.sleep(0.01)


thread = threading.Thread(target=writer)
thread.start()
failed = 0
for _ in range(rotations):
    time.sleep(0.3)
    run = subprocess.run([runner, "run", "rot", "--jobs", f"{work}/jobs.yaml"], capture_output=True, text=True)
    failed += run.returncode != 0
stop.set()
thread.join()
held.kill()
held.wait()

found = []
for path in glob.glob(f"{work}/logs/*"):
    found += open(path).read().split("\n")
archives = glob.glob(f"{work}/archive/*.zip") + glob.glob(f"{work}/archive/*.zip.corrupt")
for path in archives:
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            found += z.read(name).decode().split("\n")
def tally(prefix):
    return [int(l.split()[1]) for l in found if l.startswith(prefix + " ")]


lines = tally("line")
held_lines = tally("held")
held_written = max(held_lines) + 1 if held_lines else 0
print(f"{rotations} rotations ({failed} reported problems), {len(archives)} archives")
for kind, numbers, total in [("open-append-close every 10 ms", lines, written),
                             ("held open, reopened on SIGUSR1 by postrotate", held_lines, held_written)]:
    distinct = set(numbers)
    lost = total - len(distinct & set(range(total)))
    print(f"{kind}: {total} lines written, {len(distinct)} found; lost {lost}, "
          f"found more than once {len(numbers) - len(distinct)}")
