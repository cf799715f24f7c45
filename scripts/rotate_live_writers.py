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
""")

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

found = []
for path in glob.glob(f"{work}/logs/*"):
    found += open(path).read().split("\n")
archives = glob.glob(f"{work}/archive/*.zip") + glob.glob(f"{work}/archive/*.zip.corrupt")
for path in archives:
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            found += z.read(name).decode().split("\n")
numbers = [int(l.split()[1]) for l in found if l.startswith("line ")]
distinct = set(numbers)
lost = written - len(distinct & set(range(written)))
print(f"{rotations} rotations ({failed} reported problems) of a file appended every 10 ms: "
      f"{written} lines written, {len(distinct)} found in {len(archives)} archives and the live files")
print(f"lost: {lost}; found more than once: {len(numbers) - len(distinct)}")
