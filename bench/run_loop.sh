#!/usr/bin/env bash
# The run loop's own cost: PIPELINES (default 200) pipelines, each loading the
# same 10-row Parquet file into its own PostgreSQL table, in one `runner` run,
# at concurrency 1, 2 and 8. For each: the first run (creates 200 tables), the
# same run again (tables exist), and a --skip-load run (source read and counted,
# no sink: the loop, the metadata writes and leases alone). Per run: wall time,
# milliseconds per pipeline, and statements sent to the metadata database per
# pipeline, which the runner counts itself (run.metadata_queries).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
eval "$(scripts/services.sh postgres)"
n=${PIPELINES:-200}
build_release

data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
$bin/weir-gen orders --out "$data/orders" --rows 10 --files 1 >/dev/null
export WEIR_CONN_FILES=file://$data
export WEIR_LOG=warn,sqlx::query=error

echo "profile: $profile; $n pipelines; $(nproc) cores"
printf '%-11s %-10s %8s %12s %16s %8s\n' concurrency run seconds ms/pipeline queries/pipeline rss_mb
for c in 1 2 8; do
  fresh_metadata_db weir_bench_loop
  [[ -z ${SSLMODE:-} ]] || export WEIR_DATABASE_URL="$WEIR_DATABASE_URL?sslmode=$SSLMODE"
  psql -q "$WEIR_DATABASE_URL" -c "INSERT INTO controller (name, source_type, source_connection, data_source,
      schema_name, destination_table, load_type)
    SELECT 'p' || i, 'parquet', 'files', 'orders/', 'bench', 't' || i, 'full' FROM generate_series(1, $n) i"
  for run in first again skip-load; do
    flags=(--date 20250323 --concurrency "$c")
    [[ $run == skip-load ]] && flags+=(--skip-load)
    read -r secs rss < <(measure "$bin/runner" "${flags[@]}")
    queries=$(psql -Atq "$WEIR_DATABASE_URL" -c "SELECT metadata_queries FROM run ORDER BY started_at DESC LIMIT 1")
    ok=$(psql -Atq "$WEIR_DATABASE_URL" -c "SELECT succeeded FROM run ORDER BY started_at DESC LIMIT 1")
    [[ $ok == "$n" ]] || { echo "only $ok of $n pipelines succeeded" >&2; exit 1; }
    awk -v c="$c" -v r="$run" -v s="$secs" -v q="$queries" -v n="$n" -v m="$rss" \
      'BEGIN { printf "%-11s %-10s %8.1f %12.1f %16.1f %8s\n", c, r, s, s * 1000 / n, q / n, m }'
  done
done
