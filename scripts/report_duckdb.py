"""What DuckDB takes for the report's figures over the same metrics log: per metric count, min,
max, mean, p50 and p95, the last value, and hourly means, from newline-delimited JSON.

    python3 scripts/report_duckdb.py DIR [THREADS]

DIR holds var/metrics/*.jsonl. Prints the wall time and this process's peak RSS.
"""
import resource
import sys
import time

import duckdb

directory = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
files = f"{directory}/var/metrics/*.jsonl"
columns = "{ts: 'TIMESTAMP', host: 'VARCHAR', job: 'VARCHAR', metrics: 'MAP(VARCHAR, DOUBLE)'}"
query = f"""
WITH samples AS (
  SELECT ts, unnest(map_keys(metrics)) AS name, unnest(map_values(metrics)) AS value
  FROM read_json('{files}', format = 'newline_delimited', columns = {columns})
),
per_metric AS (
  SELECT name, count(*) AS samples, min(value) AS min, max(value) AS max, avg(value) AS avg,
         approx_quantile(value, 0.5) AS p50, approx_quantile(value, 0.95) AS p95,
         arg_max(value, ts) AS last
  FROM samples GROUP BY name
),
hourly AS (
  SELECT name, date_trunc('hour', ts) AS hour, avg(value) AS mean
  FROM samples GROUP BY name, hour
)
SELECT p.*, (SELECT count(*) FROM hourly h WHERE h.name = p.name) AS hours
FROM per_metric p ORDER BY name
"""
started = time.perf_counter()
rows = con.execute(query).fetchall()
took = time.perf_counter() - started
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"duckdb {duckdb.__version__} ({threads} threads): {len(rows)} metrics in {took:.2f} s; peak RSS {peak_mib:.0f} MiB")
