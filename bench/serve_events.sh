#!/usr/bin/env bash
# `runner serve`: event ingestion and page render times.
#
# 1. POST /events with one event per request, and with batches of 100, from weir-load (closed
#    loop: 64 and 16 clients sending as fast as answers come), then one event per request at a
#    fixed 5,000 events/s (open loop: latency counted from when each request was due). After
#    each, the events stored are counted against the events acknowledged.
# 2. The runs, pipelines, audit and run pages with 100,000 audit rows, 20,000 runs and 500
#    pipelines in the metadata database: the median and worst of 20 renders (curl's total time).
#
# The anchor is RudderStack's published figure: 1.7k events/s on 2 cores with PostgreSQL.
# Client, server and PostgreSQL share this machine's 2 cores, as they would there.
#
#   bench/serve_events.sh [SECONDS]     default: 20 seconds per load
#
# Needs the release build (built here; WEIR_BENCH_PROFILE=debug for a quick check) and
# PostgreSQL (scripts/services.sh). Results: bench/results/serve_events.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}

eval "$(scripts/services.sh postgres)"
source bench/lib.sh
build_release
fresh_metadata_db weir_bench_serve
mkdir -p bench/results
results=bench/results/serve_events.md

port=18480
export WEIR_ADMIN_TOKENS=bench-admin WEIR_INGEST_TOKENS=bench-ingest
$bin/runner serve --listen 127.0.0.1:$port --ingest-rate 10000000 --ingest-queue 1000000 >/tmp/weir-bench-serve.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
wait_port $port

stored() { psql "$WEIR_DATABASE_URL" -XAtqc "SELECT count(*) FROM events WHERE message_id LIKE '$1-%'"; }
{
  echo "| load | clients | events/request | events/s | p50 ms | p99 ms | max ms | acknowledged | stored | other answers |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
} >"$results"
load() { # name prefix weir-load args...
  local name=$1 prefix=$2; shift 2
  local out; out=$($bin/weir-load --url http://127.0.0.1:$port --token bench-ingest --seconds "$seconds" --prefix "$prefix" "$@")
  local n; n=$(stored "$prefix")
  python3 - "$name" "$n" "$out" <<'EOF' | tee -a "$results"
import json, sys
name, stored, r = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
other = ", ".join(f"{k}: {v}" for k, v in r["statuses"].items() if k != "200") or "none"
print(f"| {name} | {r['connections']} | {r['batch']} | {r['events_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
      f"| {r['max_ms']:.1f} | {r['events_acked']:,} | {stored:,} | {other} |")
if stored < r["events_acked"]:
    sys.exit(f"{name}: {r['events_acked'] - stored} acknowledged events are not stored")
EOF
}
load "single events, closed loop" single --batch 1 --connections 64
load "batches of 100, closed loop" batch --batch 100 --connections 16
load "single events at 5,000/s" fixed --batch 1 --connections 256 --rate 5000

# Pages over a metadata database the size of a busy year: 500 pipelines, 20,000 runs,
# 100,000 audit rows (five attempts per run), as the run loop writes them.
echo "seeding 500 pipelines, 20,000 runs and 100,000 audit rows" >&2
psql "$WEIR_DATABASE_URL" -Xq <<'SQL'
INSERT INTO controller (name, source_type, source_connection, data_source, schema_name, destination_table, schedule)
SELECT format('pipeline_%s', lpad(i::text, 3, '0')), 'parquet', 'lake', format('p%s/dt={date}/', i), 'bronze',
       format('t%s', i), CASE WHEN i % 5 = 0 THEN '0 2 * * *' END
FROM generate_series(1, 500) i;
INSERT INTO run (run_id, run_date, status, host, pid, concurrency, lease_seconds, started_at, heartbeat_at, finished_at,
                 pipelines, succeeded, failed, skipped)
SELECT md5(i::text)::uuid, date '2024-01-01' + (i / 55), CASE WHEN i % 17 = 0 THEN 'failed' ELSE 'success' END,
       'bench', 1, 2, 60, timestamptz '2024-01-01' + i * interval '26 minutes',
       timestamptz '2024-01-01' + i * interval '26 minutes' + interval '5 minutes',
       timestamptz '2024-01-01' + i * interval '26 minutes' + interval '5 minutes', 5, 5 - (i % 17 = 0)::int, (i % 17 = 0)::int, 0
FROM generate_series(1, 20000) i;
INSERT INTO audit (pipeline_id, pipeline_name, run_id, run_date, status, start_time, end_time, heartbeat_at,
                   records_read, records_processed, bytes_read, watermark_before, watermark_after, host)
SELECT c.id, c.name, md5(r::text)::uuid, date '2024-01-01' + (r / 55), 'success',
       timestamptz '2024-01-01' + r * interval '26 minutes' + k * interval '1 minute',
       timestamptz '2024-01-01' + r * interval '26 minutes' + k * interval '1 minute' + interval '50 seconds',
       timestamptz '2024-01-01' + r * interval '26 minutes' + k * interval '1 minute' + interval '50 seconds',
       100000 + r, 100000 + r, 8000000, NULL, NULL, 'bench'
FROM generate_series(1, 20000) r CROSS JOIN generate_series(0, 4) k
JOIN controller c ON c.name = format('pipeline_%s', lpad((1 + (r * 5 + k) % 500)::text, 3, '0'));
ANALYZE;
SQL
run=$(psql "$WEIR_DATABASE_URL" -XAtqc "SELECT run_id FROM run ORDER BY started_at DESC LIMIT 1")
echo >>"$results"
{
  echo "| page (100,000 audit rows, 20,000 runs, 500 pipelines) | median ms | worst ms | bytes |"
  echo "| --- | ---: | ---: | ---: |"
} >>"$results"
page() {
  local path=$1 times=() size
  for _ in $(seq 20); do
    times+=("$(curl -s -o /dev/null -w '%{time_total}' -H 'Authorization: Bearer bench-admin' "http://127.0.0.1:$port$path")")
  done
  size=$(curl -s -H 'Authorization: Bearer bench-admin' "http://127.0.0.1:$port$path" | wc -c)
  printf '%s\n' "${times[@]}" | sort -n | awk -v p="$path" -v b="$size" \
    '{t[NR]=$1} END {printf "| `%s` | %.1f | %.1f | %d |\n", p, t[int((NR+1)/2)]*1000, t[NR]*1000, b}' | tee -a "$results"
}
page /runs
page "/runs/$run"
page /pipelines
page /pipelines/pipeline_001
page /audit
page "/audit?pipeline=pipeline_250&status=success"
page /api/runs
echo "results in $results" >&2
