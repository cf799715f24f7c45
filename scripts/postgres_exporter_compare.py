"""scripts/postgres-exporter-compare.sh's work once the servers are up: the sessions and the
workload, runner and the exporter side by side, the comparison table and the cost figures.

Talks to PostgreSQL through a small client of its own (protocol 3, `trust` over the Unix
socket as `postgres`): no driver needs installing. Everything stays on the Unix socket and
127.0.0.1.
"""

import argparse
import atexit
import datetime
import glob
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

PASSWORD = "probe-secret-Xy7"

# Every runner and exporter started, stopped at exit however the script ends.
STARTED = []


@atexit.register
def _stop_started():
    for proc in STARTED:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


class Session:
    """One PostgreSQL session over the Unix socket, `trust` auth, simple queries."""

    def __init__(self, socket_dir, port, db, app="workload"):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(f"{socket_dir}/.s.PGSQL.{port}")
        params = b"".join(
            k.encode() + b"\0" + v.encode() + b"\0"
            for k, v in [("user", "postgres"), ("database", db), ("application_name", app)]
        )
        body = struct.pack("!i", 196608) + params + b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        self.buf = b""
        self.pid = None
        self.error = None
        _, error = self.wait()
        if error:
            raise RuntimeError(f"the server refused the session: {error}")

    def _message(self):
        while len(self.buf) < 5:
            self._fill()
        kind, length = self.buf[0:1], struct.unpack("!i", self.buf[1:5])[0]
        while len(self.buf) < 1 + length:
            self._fill()
        body, self.buf = self.buf[5 : 1 + length], self.buf[1 + length :]
        return kind, body

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the session: {self.error}")
        self.buf += chunk

    def send(self, sql):
        """Sends a query without waiting for its answer (a statement meant to block)."""
        data = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", len(data) + 4) + data)

    def wait(self):
        """Reads up to ReadyForQuery: (rows of text values, the error's SQLSTATE or None)."""
        rows, error = [], None
        while True:
            kind, body = self._message()
            if kind == b"D":
                n = struct.unpack("!h", body[:2])[0]
                at, row = 2, []
                for _ in range(n):
                    size = struct.unpack("!i", body[at : at + 4])[0]
                    at += 4
                    if size < 0:
                        row.append(None)
                    else:
                        row.append(body[at : at + size].decode())
                        at += size
                rows.append(row)
            elif kind == b"E":
                fields = dict(
                    (f[:1], f[1:].decode()) for f in body.split(b"\0") if f
                )
                error = self.error = (fields.get(b"C"), fields.get(b"M"))
            elif kind == b"K":
                self.pid = struct.unpack("!i", body[:4])[0]
            elif kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                raise RuntimeError("the server asked for a password: trust expected on the socket")
            elif kind == b"Z":
                return rows, error

    def query(self, sql):
        self.send(sql)
        rows, error = self.wait()
        if error:
            raise RuntimeError(f"{sql}: {error}")
        return rows

    def close(self):
        self.sock.close()


def metrics_text(url):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """Prometheus text exposition: [(name, {label: value}, value)]."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = LINE.match(line)
        if m:
            out.append((m[1], dict(LABEL.findall(m[2] or "")), float(m[3])))
    return out


def pick(series, name, **labels):
    """The sum of the series called `name` whose labels include `labels`."""
    return sum(
        v
        for n, ls, v in series
        if n == name and all(ls.get(k) == want for k, want in labels.items())
    )


def cpu_ns(pid):
    """CPU nanoseconds of a process, its threads summed (/proc/PID/task/*/schedstat)."""
    total = 0
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            total += int(open(f).read().split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return total


def stat_ticks(pid):
    """utime + stime of a process in clock ticks (/proc/PID/stat)."""
    text = open(f"/proc/{pid}/stat").read()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def aligned_next(interval, after):
    return (int(after // interval) + 1) * interval


class Runner:
    """A `runner` scheduler with one monitor job holding the postgres probe."""

    def __init__(self, binary, folder, port, schedule):
        os.makedirs(folder, exist_ok=True)
        self.folder = folder
        jobs = os.path.join(folder, "jobs.yaml")
        with open(jobs, "w") as f:
            f.write(
                "data_dir: var\njobs:\n  db:\n    type: monitor\n"
                f'    schedule: "{schedule}"\n    probes:\n'
                f'      - {{ type: postgres, name: main, dsn: "postgres://runner@127.0.0.1:{port}/shop?sslmode=disable",'
                ' password: "${PG_PASSWORD}", expected_replicas: 1 }\n'
            )
        self.log = open(os.path.join(folder, "runner.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "--jobs", jobs, "-qq"],
            env={**os.environ, "PG_PASSWORD": PASSWORD},
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        STARTED.append(self.proc)

    def samples(self, interval=1):
        """Every sample written so far, by the schedule's instant it is the tick of (its `ts`
        is when the tick ran, a millisecond or a few after)."""
        out = {}
        for f in sorted(glob.glob(os.path.join(self.folder, "var/metrics/*.jsonl"))):
            for line in open(f):
                try:
                    sample = json.loads(line)
                except ValueError:
                    continue
                at = datetime.datetime.fromisoformat(sample["ts"]).timestamp()
                out[round(at / interval) * interval] = sample["metrics"]
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Exporter:
    """prometheus-postgres-exporter on 127.0.0.1, its sessions named `exporter`."""

    def __init__(self, folder, port, queries, one_session=False):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{probe.getsockname()[1]}/metrics"
        listen = f"127.0.0.1:{probe.getsockname()[1]}"
        probe.close()
        args = ["prometheus-postgres-exporter", f"--web.listen-address={listen}", "--log.level=warn"]
        if queries:
            args.append(f"--extend.query-path={queries}")
        if one_session:
            # Its `database` and `bgwriter` collectors (database sizes, bgwriter counters:
            # nothing compared here) keep a second session, active or idle at a scrape as the
            # collectors happen to overlap; without them its one session is the active one.
            args += ["--no-collector.database", "--no-collector.bgwriter"]
        dsn = f"postgresql://runner:{PASSWORD}@127.0.0.1:{port}/shop?sslmode=disable&application_name=exporter"
        self.log = open(os.path.join(folder, "exporter.log"), "a")
        self.proc = subprocess.Popen(
            args, env={**os.environ, "DATA_SOURCE_NAME": dsn}, stdout=self.log, stderr=self.log
        )
        STARTED.append(self.proc)
        deadline = time.time() + 30
        while True:
            try:
                if pick(parse(metrics_text(self.url)), "pg_up") == 1:
                    return
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("the exporter never read the server (pg_up 0)")
            time.sleep(0.2)

    def version(self):
        out = subprocess.run(
            ["prometheus-postgres-exporter", "--version"], capture_output=True, text=True
        )
        return (out.stdout + out.stderr).splitlines()[0]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


# The figures the exporter lacks by default: wraparound age per database and dead tuples per
# table, as its own example queries.yaml (pg_stat_user_tables) and common set-ups add them.
QUERIES = """\
pg_wraparound:
  query: "SELECT datname, age(datfrozenxid) AS xid_age, mxid_age(datminmxid) AS mxid_age FROM pg_database"
  master: true
  metrics:
    - datname:
        usage: "LABEL"
        description: "database"
    - xid_age:
        usage: "GAUGE"
        description: "age(datfrozenxid)"
    - mxid_age:
        usage: "GAUGE"
        description: "mxid_age(datminmxid)"
pg_stat_user_tables:
  query: "SELECT current_database() AS datname, schemaname, relname, n_dead_tup FROM pg_stat_user_tables"
  metrics:
    - datname:
        usage: "LABEL"
        description: "database"
    - schemaname:
        usage: "LABEL"
        description: "schema"
    - relname:
        usage: "LABEL"
        description: "table"
    - n_dead_tup:
        usage: "GAUGE"
        description: "estimated dead rows"
"""


def sessions_200(socket_dir, port):
    """200 client sessions in `shop`: 150 idle, 30 idle in a transaction (each share-locking one
    row, so the row's lockers become a multixact), 10 running, 1 holding a row and 9 waiting
    on it. Returns them, to keep them open."""
    held = []
    for _ in range(150):
        held.append(Session(socket_dir, port, "shop", "idle"))
    for _ in range(30):
        s = Session(socket_dir, port, "shop", "idle_in_transaction")
        s.query("BEGIN; SELECT * FROM stock WHERE id = 2 FOR SHARE")
        held.append(s)
    for _ in range(10):
        s = Session(socket_dir, port, "shop", "running")
        s.send("SELECT pg_sleep(3600)")
        held.append(s)
    holder = Session(socket_dir, port, "shop", "holder")
    holder.query("BEGIN; UPDATE stock SET qty = 0 WHERE id = 1")
    held.append(holder)
    for _ in range(9):
        s = Session(socket_dir, port, "shop", "waiting")
        s.send("UPDATE stock SET qty = 1 WHERE id = 1")
        held.append(s)
    return held


def release(held, admin):
    """Ends the held sessions: a backend in pg_sleep or a lock wait would outlive its socket."""
    pids = ",".join(str(s.pid) for s in held)
    admin.query(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN ({pids})")
    for s in held:
        s.close()
    deadline = time.time() + 30
    while int(admin.query(f"SELECT count(*) FROM pg_stat_activity WHERE pid IN ({pids})")[0][0]):
        if time.time() > deadline:
            raise RuntimeError("held sessions did not end")
        time.sleep(0.1)


class Workload(threading.Thread):
    """Commits and rollbacks at a steady pace, a spilling sort and a deadlock in the middle of
    each interval. Quiet from 0.2 s before each tick until 0.7 s after it, having flushed its
    statistics (`pg_stat_force_next_flush`), so that runner and the exporter, reading a few
    hundred milliseconds apart, read the same counters and the same sessions."""

    def __init__(self, socket_dir, port, interval):
        super().__init__(daemon=True)
        self.socket_dir, self.port, self.interval = socket_dir, port, interval
        self.stop = threading.Event()
        self.deadlocks = 0
        self.commits = 0
        self.rollbacks = 0

    def quiet(self, t):
        into = t % self.interval
        return into > self.interval - 0.2 or into < 0.7

    def run(self):
        s = Session(self.socket_dir, self.port, "shop", "writer")
        a = Session(self.socket_dir, self.port, "shop", "deadlock_a")
        b = Session(self.socket_dir, self.port, "shop", "deadlock_b")
        s.query("SET work_mem = '64kB'")
        last_interval, flushed = None, False
        n = 0
        while not self.stop.is_set():
            now = time.time()
            if self.quiet(now):
                if not flushed:
                    s.query("SELECT pg_stat_force_next_flush()")
                    a.query("SELECT pg_stat_force_next_flush()")
                    b.query("SELECT pg_stat_force_next_flush()")
                    flushed = True
                time.sleep(0.02)
                continue
            flushed = False
            this_interval = int(now // self.interval)
            if this_interval != last_interval and now % self.interval > self.interval / 2:
                last_interval = this_interval
                # Rows sorted past work_mem: a temporary file.
                s.query("SELECT count(*) FROM (SELECT g FROM generate_series(1, 60000) g ORDER BY g DESC) s")
                self.deadlock(a, b)
            n += 1
            if n % 5 == 0:
                s.query("BEGIN; SELECT 1; ROLLBACK")
                self.rollbacks += 1
            else:
                s.query("BEGIN; INSERT INTO ledger (v) VALUES (1); COMMIT")
                self.commits += 1
            time.sleep(0.02)
        for session in (s, a, b):
            session.close()

    def deadlock(self, a, b):
        a.query("BEGIN; UPDATE t SET v = v + 1 WHERE id = 1")
        b.query("BEGIN; UPDATE t SET v = v + 1 WHERE id = 2")
        a.send("UPDATE t SET v = v + 1 WHERE id = 2")
        time.sleep(0.05)
        b.send("UPDATE t SET v = v + 1 WHERE id = 1")
        errors = [a.wait()[1], b.wait()[1]]
        a.query("ROLLBACK")
        b.query("ROLLBACK")
        if any(e and e[0] == "40P01" for e in errors):
            self.deadlocks += 1


class Figure:
    """One compared figure: runner's value, the exporter's, and the tolerance on |difference|."""

    def __init__(self, name, runner, exporter, absolute=0.0, relative=0.0, note=""):
        self.name, self.runner, self.exporter = name, runner, exporter
        self.absolute, self.relative, self.note = absolute, relative, note

    def tolerance(self):
        return max(self.absolute, self.relative * abs(self.exporter or 0))

    def difference(self):
        if self.runner is None or self.exporter is None:
            return None
        return self.runner - self.exporter

    def ok(self):
        d = self.difference()
        return d is not None and abs(d) <= self.tolerance() + 1e-9


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000 or v == int(v):
        return f"{v:,.0f}"
    return f"{v:,.2f}"


def compare(args, runner_bin):
    interval = args.interval
    folder = os.path.join(args.dir, "compare")
    os.makedirs(folder)
    queries = os.path.join(folder, "queries.yaml")
    with open(queries, "w") as f:
        f.write(QUERIES)
    admin = Session(args.socket_dir, args.port, "shop", "setup")
    admin.query(
        "CREATE TABLE stock (id int PRIMARY KEY, qty int); INSERT INTO stock VALUES (1, 10), (2, 10);"
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0), (2, 0);"
        "CREATE TABLE ledger (id serial PRIMARY KEY, v int);"
        # Dead rows vacuum leaves alone for the run: both tools must read the same count.
        "CREATE TABLE churn (id int, pad text) WITH (autovacuum_enabled = false);"
        "INSERT INTO churn SELECT g, repeat('x', 100) FROM generate_series(1, 10000) g;"
        "DELETE FROM churn WHERE id % 3 = 0;"
        "ANALYZE stock, t, ledger"
    )
    held = sessions_200(args.socket_dir, args.port)
    exporter = Exporter(folder, args.port, queries, one_session=True)
    runner = Runner(runner_bin, os.path.join(folder, "runner"), args.port, f"@every {interval}s")
    workload = Workload(args.socket_dir, args.port, interval)
    workload.start()
    # Two ticks to settle (rates need two readings; the workload's first interval), then the
    # compared ticks, each with the exporter scraped 150 ms after runner's tick instant.
    scrapes = {}
    t = aligned_next(interval, time.time() + interval)
    for _ in range(args.ticks + 1):
        time.sleep(max(0.0, t + 0.15 - time.time()))
        scrapes[t] = (time.time(), parse(metrics_text(exporter.url)))
        t += interval
    workload.stop.set()
    workload.join()
    deadline = time.time() + 10
    samples = runner.samples(interval)
    while not all(k in samples for k in scrapes) and time.time() < deadline:
        time.sleep(0.2)
        samples = runner.samples(interval)
    runner.stop()
    exporter.stop()
    ordered = sorted(k for k in scrapes if k in samples)
    if len(ordered) < 3:
        raise RuntimeError(f"runner wrote {len(ordered)} of the compared ticks: {sorted(samples)}")
    # The first scrape is the exporter's starting point for rates: runner's rates at a tick
    # cover the interval before it.
    first_prev, keys = ordered[0], ordered[1:]
    first = keys[0]
    databases = sorted(
        k.split(".")[2]
        for k in samples[first]
        if k.startswith("postgres.main.") and k.endswith(".connections") and k.count(".") == 3
    )
    figures, skipped, notes = [], [], []
    R = lambda key, field: samples[key].get(f"postgres.main.{field}")
    E = lambda key: scrapes[key][1]

    def each_tick(name, runner_field, exporter_value, by_tick=False, **tol):
        # Both readings at every compared tick where runner has the figure; the figure shown
        # is the first tick beyond tolerance, else the tick where they differ most.
        ticks = [
            Figure(name, R(k, runner_field), exporter_value(E(k), k) if by_tick else exporter_value(E(k)), **tol)
            for k in keys
            if R(k, runner_field) is not None
        ]
        if not ticks:
            skipped.append(f"{name}: runner read it at none of the compared ticks")
            return
        bad = [f for f in ticks if not f.ok()]
        worst = bad[0] if bad else max(ticks, key=lambda f: abs(f.difference()))
        worst.name = f"{name} (worst of {len(ticks)} ticks)"
        if bad:
            worst.note = "each tick, runner / exporter: " + ", ".join(
                f"{fmt(f.runner)}/{fmt(f.exporter)}" for f in ticks
            )
        figures.append(worst)

    # Sessions by state. The exporter counts the session running its own query as active;
    # runner leaves its own session out (the exporter reads it idle, as runner reads the
    # exporter's session between scrapes idle: those cancel).
    for state, field in [
        ("active", "connections_active"),
        ("idle", "connections_idle"),
        ("idle in transaction", "connections_idle_in_transaction"),
        ("idle in transaction (aborted)", "connections_idle_in_transaction_aborted"),
    ]:
        own = 1 if state == "active" else 0
        each_tick(
            f"sessions {state}",
            field,
            lambda s, state=state, own=own: pick(s, "pg_stat_activity_count", state=state) - own,
        )
    # Per database: the exporter's numbackends counts every backend connected to it, runner's
    # own session (in shop) included. Whether runner leaves its own out there shows in its
    # server total (which counts it) less the sum of its databases: 1 if it does, else 0.
    def own_session(key, db):
        if db != "shop":
            return 0
        return R(key, "connections") - sum(R(key, f"{d}.connections") or 0 for d in databases)

    for db in databases:
        each_tick(
            f"connections to {db}",
            f"{db}.connections",
            lambda s, k, db=db: pick(s, "pg_stat_database_numbackends", datname=db) - own_session(k, db),
            by_tick=True,
        )
    if any(own_session(k, "shop") for k in keys):
        notes.append(
            "runner's per-database connections leave its own session out (its server total "
            "counts it): compared with the exporter's numbackends less that session"
        )

    span = lambda: scrapes[keys[-1]][0] - scrapes[first_prev][0]
    counter = lambda name, key, db=None: sum(
        pick(E(key), name, datname=d) for d in ([db] if db else databases)
    )

    def rate(name, runner_field, counter_name, db=None, **tol):
        # runner: the mean of its per-tick rates over the compared ticks; the exporter: its
        # counter's growth over the same ticks' scrapes, per second. The commits' absolute
        # tolerance holds a runner that leaves its own transaction a tick out (issue 30 §4:
        # 0.2/s at 5 s) as well as one that counts it.
        prefix = f"{db}." if db else ""
        values = [R(k, prefix + runner_field) for k in keys]
        r = sum(v for v in values if v is not None) / len(values)
        e = (counter(counter_name, keys[-1], db) - counter(counter_name, first_prev, db)) / span()
        figures.append(Figure(name, r, e, **tol))

    def total(name, runner_field, counter_name, db=None):
        prefix = f"{db}." if db else ""
        r = sum(R(k, prefix + runner_field) or 0 for k in keys)
        e = counter(counter_name, keys[-1], db) - counter(counter_name, first_prev, db)
        figures.append(Figure(name, r, e))

    for db in [None, "shop"]:
        where = f" in {db}" if db else ", server"
        total(f"deadlocks{where} (sum of ticks)", "deadlocks", "pg_stat_database_deadlocks", db)
        rate(f"commits/s{where}", "commits_per_sec", "pg_stat_database_xact_commit", db, absolute=0.2, relative=0.02)
        rate(f"rollbacks/s{where}", "rollbacks_per_sec", "pg_stat_database_xact_rollback", db, absolute=0.2, relative=0.02)
        rate(f"temp bytes/s{where}", "temp_bytes_per_sec", "pg_stat_database_temp_bytes", db, relative=0.02)

        # Cache hits: the exporter's hits against hits + reads between each pair of scrapes.
        def hit(s_then, s_now, db=db):
            names = [db] if db else databases
            h = sum(pick(s_now, "pg_stat_database_blks_hit", datname=d) - pick(s_then, "pg_stat_database_blks_hit", datname=d) for d in names)
            r_ = sum(pick(s_now, "pg_stat_database_blks_read", datname=d) - pick(s_then, "pg_stat_database_blks_read", datname=d) for d in names)
            return h * 100 / (h + r_) if h + r_ else None

        prefix = f"{db}." if db else ""
        pairs = [(R(k, prefix + "cache_hit_percent"), hit(E(p), E(k))) for p, k in zip(ordered, keys)]
        pairs = [(r, e) for r, e in pairs if r is not None and e is not None]
        if pairs:
            figures.append(
                Figure(
                    f"cache hit %{where} (mean of ticks)",
                    sum(r for r, _ in pairs) / len(pairs),
                    sum(e for _, e in pairs) / len(pairs),
                    absolute=0.5,
                )
            )

    # Wraparound age: IDs go on being taken (about 40 a second here), so readings 150 ms apart
    # may differ by a few.
    each_tick(
        "xid age, oldest database",
        "xid_age_max",
        lambda s: max(v for n, _, v in s if n == "pg_wraparound_xid_age"),
        absolute=20,
    )
    each_tick(
        "multixact age, oldest database",
        "mxid_age_max",
        lambda s: max(v for n, _, v in s if n == "pg_wraparound_mxid_age"),
        absolute=2,
    )
    each_tick(
        "xid age of shop",
        "shop.xid_age",
        lambda s: pick(s, "pg_wraparound_xid_age", datname="shop"),
        absolute=20,
    )

    # Replication: runner's standby lag in bytes (current WAL position against its replay) and
    # the exporter's pg_wal_lsn_diff, the same difference. WAL moves on with every commit, so
    # the two readings, 150 ms apart, may each catch the standby a few records behind.
    each_tick(
        "standbys streaming",
        "replicas",
        lambda s: len([1 for n, _, _ in s if n == "pg_stat_replication_pg_wal_lsn_diff"]),
    )
    each_tick(
        "standby1 replay lag, bytes",
        "standby1.replication_lag_bytes",
        lambda s: pick(s, "pg_stat_replication_pg_wal_lsn_diff", application_name="standby1"),
        absolute=16384,
    )

    # Dead tuples: runner's per-table `dead_tuples` when it has them (read on its slower
    # ticks: compared at those).
    dead = sorted(
        {k for key in keys for k in samples[key] if k.endswith(".dead_tuples") and "churn" in k}
    )
    if dead:
        each_tick(
            "dead tuples of shop's churn",
            dead[0].removeprefix("postgres.main."),
            lambda s: pick(s, "pg_stat_user_tables_n_dead_tup", relname="churn"),
        )
    else:
        skipped.append(
            "dead tuples: runner reads no dead tuples per table (no `.dead_tuples` in its samples); "
            f"the exporter reads {fmt(pick(E(keys[-1]), 'pg_stat_user_tables_n_dead_tup', relname='churn'))} in shop's churn"
        )

    release(held, admin)
    admin.close()
    return figures, skipped, notes, len(keys), workload, exporter


def cost(args, runner_bin, exporter_queries, label):
    """runner at `@every 1s` and the exporter scraped every second, for cost_seconds, beside the
    200 sessions: CPU a tick or scrape, their backends' CPU, RSS."""
    folder = os.path.join(args.dir, f"cost-{label}")
    os.makedirs(folder)
    queries = None
    if exporter_queries:
        queries = os.path.join(folder, "queries.yaml")
        with open(queries, "w") as f:
            f.write(QUERIES)
    held = sessions_200(args.socket_dir, args.port)
    admin = Session(args.socket_dir, args.port, "postgres", "cost")
    exporter = Exporter(folder, args.port, queries)
    runner = Runner(runner_bin, os.path.join(folder, "runner"), args.port, "@every 1s")
    # Settle: runner connected and a few ticks in, the exporter scraped a few times.
    t = aligned_next(1, time.time() + 2)
    for _ in range(3):
        time.sleep(max(0.0, t + 0.5 - time.time()))
        metrics_text(exporter.url)
        t += 1
    backends = lambda app: [
        int(r[0]) for r in admin.query(f"SELECT pid FROM pg_stat_activity WHERE application_name = '{app}'")
    ]
    runner_backends, exporter_backends = backends("runner"), backends("exporter")
    counted = int(admin.query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")[0][0])
    procs = {
        "runner": [runner.proc.pid],
        "exporter": [exporter.proc.pid],
        "runner's backend": runner_backends,
        "exporter's backends": exporter_backends,
    }
    cpu0 = {k: sum(cpu_ns(p) for p in v) for k, v in procs.items()}
    ticks0 = {k: sum(stat_ticks(p) for p in v) for k, v in procs.items()}
    samples0 = len(runner.samples())
    rss = {"runner": [], "exporter": []}
    scrapes = 0
    for _ in range(args.cost_seconds):
        time.sleep(max(0.0, t + 0.5 - time.time()))
        metrics_text(exporter.url)
        scrapes += 1
        rss["runner"].append(rss_kib(runner.proc.pid))
        rss["exporter"].append(rss_kib(exporter.proc.pid))
        t += 1
    cpu1 = {k: sum(cpu_ns(p) for p in v) for k, v in procs.items()}
    ticks1 = {k: sum(stat_ticks(p) for p in v) for k, v in procs.items()}
    ticks = len(runner.samples()) - samples0
    hz = os.sysconf("SC_CLK_TCK")
    runner.stop()
    exporter.stop()
    release(held, admin)
    admin.close()
    per = {"runner": ticks, "runner's backend": ticks, "exporter": scrapes, "exporter's backends": scrapes}
    lines = [
        f"cost, {label}: {counted} client sessions; runner {ticks} ticks, the exporter {scrapes} scrapes, over {args.cost_seconds} s"
    ]
    for k in procs:
        ms = (cpu1[k] - cpu0[k]) / 1e6 / per[k]
        ms_stat = (ticks1[k] - ticks0[k]) * 1000 / hz / per[k]
        lines.append(
            f"  {k + ' CPU':<28} {ms:7.2f} ms a {'tick' if 'runner' in k else 'scrape'} "
            f"(schedstat; /proc/PID/stat: {ms_stat:.1f} ms) [{len(procs[k])} process{'es' if len(procs[k]) != 1 else ''}]"
        )
    for k, v in rss.items():
        lines.append(f"  {k + ' RSS':<28} mean {sum(v) / len(v) / 1024:6.1f} MiB, highest {max(v) / 1024:.1f} MiB")
    return lines


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runner", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--socket-dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ticks", type=int, default=13)
    p.add_argument("--interval", type=int, default=5)
    p.add_argument("--cost-seconds", type=int, default=60)
    p.add_argument("--postgres-version", default="")
    args = p.parse_args()

    figures, skipped, notes, n, workload, exporter = compare(args, args.runner)
    print(
        f"{args.postgres_version.strip()}, {exporter.version()}; {os.cpu_count()} CPUs; "
        f"{n} compared ticks of {args.interval} s (@every {args.interval}s), the exporter scraped 150 ms after each"
    )
    print(
        f"workload over the run: {workload.commits} commits, {workload.rollbacks} rollbacks, "
        f"{workload.deadlocks} deadlocks, one spilling sort an interval; 200 held sessions; one streaming standby"
    )
    header = ("figure", "runner", "exporter", "difference", "tolerance", "within")
    rows = [
        (f.name, fmt(f.runner), fmt(f.exporter), fmt(f.difference()), "±" + fmt(f.tolerance()), "yes" if f.ok() else "NO")
        for f in figures
    ]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    for f in figures:
        if f.note:
            print(f"{f.name}: {f.note}")
    for s in notes:
        print(f"note: {s}")
    for s in skipped:
        print(f"skipped: {s}")
    bad = [f for f in figures if not f.ok()]

    print()
    for line in cost(args, args.runner, False, "exporter with its default queries"):
        print(line)
    for line in cost(args, args.runner, True, "exporter with the comparison's two extra queries"):
        print(line)
    if bad:
        print(f"{len(bad)} figure(s) beyond tolerance: {', '.join(f.name for f in bad)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
