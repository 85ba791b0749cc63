#!/usr/bin/env bash
# Parquet → PostgreSQL, 10 columns (ints, floats, text, timestamps, decimals):
# Weir (`runner`, full load) beside `psql \copy` of the same rows as CSV and beside dlt,
# in one run, for each row count given (default: 1M and 10M).
#
#   bench/parquet_to_postgres.sh [ROWS ...]
#
# Needs the release build (built here), PostgreSQL (scripts/services.sh), and dlt
# (`pip install "dlt[postgres,parquet]"`; the dlt column is skipped when it is missing).
# Wall time and peak RSS come from GNU time. Results: bench/results/parquet_to_postgres.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rows_list=("$@")
[[ ${#rows_list[@]} -gt 0 ]] || rows_list=(1000000 10000000)

eval "$(scripts/services.sh postgres)"
source bench/lib.sh
build_release

fresh_metadata_db weir_bench
data=$PWD/bench/data
mkdir -p "$data" bench/results
export WEIR_CONN_BENCH=file://$data
have_dlt=$(python3 -c "import dlt" 2>/dev/null && [[ -z ${WEIR_BENCH_SKIP_DLT:-} ]] && echo yes || echo no)


results=bench/results/parquet_to_postgres.md
{
  echo "| rows | tool | seconds | rows/s | peak RSS (MB) |"
  echo "| ---: | --- | ---: | ---: | ---: |"
} >"$results"
row() { printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(awk -v r="$1" -v s="$3" 'BEGIN{printf "%.0f", r/s}')" "$4" | tee -a "$results"; }

for rows in "${rows_list[@]}"; do
  orders_data "$rows"
  dir=$data/orders_$rows
  [[ -f $dir.csv ]] || $bin/weir-gen orders --csv "$dir.csv" --rows "$rows"
  psql -q "$db" -c "DELETE FROM controller; DROP SCHEMA IF EXISTS bench CASCADE; DROP SCHEMA IF EXISTS bench_dlt CASCADE;
    DROP SCHEMA IF EXISTS _weir CASCADE; CREATE SCHEMA bench;
    INSERT INTO controller (name, source_type, source_connection, data_source, schema_name, destination_table, load_type)
    VALUES ('bench', 'parquet', 'bench', 'orders_$rows/', 'bench', 'orders_weir', 'full');"

  # Weir: a full load (TRUNCATE + binary COPY in one transaction).
  read -r secs rss < <(measure $bin/runner --date 20250323 --pipeline bench)
  [[ $(psql -Atq "$db" -c "SELECT count(*) FROM bench.orders_weir") == "$rows" ]] || { echo "weir row count mismatch" >&2; exit 1; }
  row "$rows" "weir" "$secs" "$rss"

  # psql \copy of the same rows as CSV into the same table shape (what Weir created).
  psql -q "$db" -c "CREATE TABLE bench.orders_psql (LIKE bench.orders_weir)"
  read -r secs rss < <(measure psql -q "$db" -c "\\copy bench.orders_psql FROM '$dir.csv' WITH (FORMAT csv, HEADER true)")
  [[ $(psql -Atq "$db" -c "SELECT count(*) FROM bench.orders_psql") == "$rows" ]] || { echo "psql row count mismatch" >&2; exit 1; }
  row "$rows" "psql \\copy (CSV)" "$secs" "$rss"

  if [[ $have_dlt == yes ]]; then
    read -r secs rss < <(measure python3 bench/dlt_load.py "$dir" "${db/postgres@/postgres:bench@}" orders_dlt)
    [[ $(psql -Atq "$db" -c "SELECT count(*) FROM bench_dlt.orders_dlt") == "$rows" ]] || { echo "dlt row count mismatch" >&2; exit 1; }
    row "$rows" "dlt (csv loader)" "$secs" "$rss"
  fi
done
echo "results in $results" >&2
