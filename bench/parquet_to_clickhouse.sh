#!/usr/bin/env bash
# Parquet → ClickHouse, 10 columns (ints, floats, text, timestamps, decimals): Weir
# (`runner`, full load: RowBinary blocks into a stage, then one REPLACE PARTITION) beside
# `clickhouse-client` inserting the same rows from a CSV file into a table of the same
# shape (the server's own speed), for each row count given (default: 1M and 10M).
#
#   bench/parquet_to_clickhouse.sh [ROWS ...]
#
# Needs the release build (built here), PostgreSQL and ClickHouse (scripts/services.sh).
# Wall time and peak RSS come from GNU time. Results: bench/results/parquet_to_clickhouse.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rows_list=("$@")
[[ ${#rows_list[@]} -gt 0 ]] || rows_list=(1000000 10000000)

eval "$(scripts/services.sh postgres clickhouse)"
source bench/lib.sh
build_release

fresh_metadata_db weir_bench
data=$PWD/bench/data
mkdir -p "$data" bench/results
export WEIR_CONN_BENCH=file://$data
export WEIR_CONN_CH=$WEIR_TEST_CLICKHOUSE_URL
ch() { clickhouse-client --host "${WEIR_TEST_CLICKHOUSE_TCP%:*}" --port "${WEIR_TEST_CLICKHOUSE_TCP#*:}" "$@"; }

results=bench/results/parquet_to_clickhouse.md
{
  echo "| rows | tool | seconds | rows/s | peak RSS (MB) |"
  echo "| ---: | --- | ---: | ---: | ---: |"
} >"$results"
row() { printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(awk -v r="$1" -v s="$3" 'BEGIN{printf "%.0f", r/s}')" "$4" | tee -a "$results"; }

for rows in "${rows_list[@]}"; do
  orders_data "$rows"
  dir=$data/orders_$rows
  [[ -f $dir.csv ]] || $bin/weir-gen orders --csv "$dir.csv" --rows "$rows"
  ch --query "DROP DATABASE IF EXISTS bench"
  psql -q "$db" -c "DELETE FROM controller;
    INSERT INTO controller (name, source_type, source_connection, data_source, destination_type,
                            destination_connection, schema_name, destination_table, load_type)
    VALUES ('bench', 'parquet', 'bench', 'orders_$rows/', 'clickhouse', 'ch', 'bench', 'orders_weir', 'full');"

  read -r secs rss < <(measure $bin/runner --date 20250323 --pipeline bench)
  [[ $(ch --query "SELECT count() FROM bench.orders_weir") == "$rows" ]] || { echo "weir row count mismatch" >&2; exit 1; }
  row "$rows" "weir" "$secs" "$rss"

  # The same rows from CSV, into the table shape Weir made. A server without DateTime64
  # (before 20.1) parses no fraction of a second or zone: the file it gets has none (made
  # beforehand, not timed).
  csv=$dir.csv
  if ! ch --query "SELECT type FROM system.columns WHERE database = 'bench' AND table = 'orders_weir'
                   AND name = 'created_at'" | grep -q DateTime64; then
    csv=$dir.seconds.csv
    [[ -f $csv ]] || sed -E 's/(:[0-9]{2})\.[0-9]+/\1/g; s/\+00(,|$)/\1/g' "$dir.csv" >"$csv"
  fi
  ch --query "CREATE TABLE bench.orders_client AS bench.orders_weir"
  read -r secs rss < <(measure sh -c "clickhouse-client --host '${WEIR_TEST_CLICKHOUSE_TCP%:*}' --port '${WEIR_TEST_CLICKHOUSE_TCP#*:}' \
    --query 'INSERT INTO bench.orders_client FORMAT CSVWithNames' < '$csv'")
  [[ $(ch --query "SELECT count() FROM bench.orders_client") == "$rows" ]] || { echo "clickhouse-client row count mismatch" >&2; exit 1; }
  row "$rows" "clickhouse-client (CSV)" "$secs" "$rss"
done
echo "results in $results" >&2
