#!/usr/bin/env bash
# PostgreSQL → PostgreSQL snapshot (a full load) of a 10-column table (bench/peers/make_table.sql):
# Weir (`runner`, source `postgres`, one connection, and with options.parallelism = 2) beside
# `psql \copy … (format binary)` piped into `psql \copy … (format binary)` (the floor) and Sling,
# in one run, for each row count given (default 10M).
#
#   bench/postgres_to_postgres.sh [ROWS ...]
#
# Needs the release build (built here; WEIR_BENCH_PROFILE=debug for the debug one) and PostgreSQL
# (scripts/services.sh); Sling installs itself on first use (bench/peers/sling_pg_to_pg.sh).
# The source and destination are databases on the same server (one machine, 2 cores: every
# tool shares them with the server). Results: bench/results/postgres_to_postgres.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rows_list=("$@")
[[ ${#rows_list[@]} -gt 0 ]] || rows_list=(10000000)

eval "$(scripts/services.sh postgres)"
source bench/lib.sh
build_release

server=${WEIR_TEST_PG_URL%/*}
src=$server/weir_bench_pg_src dst=$server/weir_bench_pg_dst
psql -q "$WEIR_TEST_PG_URL" -c "DROP DATABASE IF EXISTS weir_bench_pg_dst" -c "CREATE DATABASE weir_bench_pg_dst"
fresh_metadata_db weir_bench_pg
export WEIR_CONN_SRC=$src WEIR_CONN_DST=$dst
mkdir -p bench/results
results=bench/results/postgres_to_postgres.md
{
  echo "| rows | tool | seconds | rows/s | peak RSS (MB) |"
  echo "| ---: | --- | ---: | ---: | ---: |"
} >"$results"
row() { printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(awk -v r="$1" -v s="$3" 'BEGIN{printf "%.0f", r/s}')" "$4" | tee -a "$results"; }

for rows in "${rows_list[@]}"; do
  if [[ $(psql -Atq "$src" -c "SELECT count(*) FROM public.bench_snap" 2>/dev/null || echo 0) != "$rows" ]]; then
    psql -q "$WEIR_TEST_PG_URL" -c "DROP DATABASE IF EXISTS weir_bench_pg_src" -c "CREATE DATABASE weir_bench_pg_src"
    echo "generating $rows rows" >&2
    psql -q "$src" -v ON_ERROR_STOP=1 -v table=public.bench_snap -v rows="$rows" -f bench/peers/make_table.sql >/dev/null
  fi
  psql -q "$db" -c "DELETE FROM controller; DROP SCHEMA IF EXISTS _weir CASCADE;
    INSERT INTO controller (name, source_type, source_connection, source_table, destination_connection,
                            schema_name, destination_table, load_type, options) VALUES
      ('one', 'postgres', 'src', 'public.bench_snap', 'dst', 'bench', 'weir_one', 'full', '{}'),
      ('two', 'postgres', 'src', 'public.bench_snap', 'dst', 'bench', 'weir_two', 'full', '{\"parallelism\": 2}');
    INSERT INTO controller (name, source_type, source_connection, source_table, destination_connection,
                            schema_name, destination_table, load_type, primary_key) VALUES
      ('keyed', 'postgres', 'src', 'public.bench_snap', 'dst', 'bench', 'weir_keyed', 'full', '{id}')"
  psql -q "$dst" -c "DROP SCHEMA IF EXISTS bench CASCADE" \
    -c "DROP TABLE IF EXISTS public.bench_psql, public.bench_psql_nokey, public.bench_sling"

  # The pipe into a table with the source's primary key, and into one without (as Weir's and
  # Sling's tables are, unless the controller row names a primary_key).
  read -r s m < <(measure bench/peers/psql_copy_pipe.sh "$src" public.bench_snap "$dst" public.bench_psql)
  row "$rows" "psql \\copy binary pipe, primary key" "$s" "$m"
  read -r s m < <(measure env WITH_PK=0 bench/peers/psql_copy_pipe.sh "$src" public.bench_snap "$dst" public.bench_psql_nokey)
  row "$rows" "psql \\copy binary pipe, no key" "$s" "$m"
  for name in one two keyed; do
    read -r s m < <(measure "$bin/runner" --date 20250323 --no-progress --pipeline "$name")
    got=$(psql -Atq "$dst" -c "SELECT count(*) FROM bench.weir_$name")
    [[ $got == "$rows" ]] || { echo "weir $name copied $got rows, not $rows" >&2; exit 1; }
    label="Weir (runner)"; [[ $name == two ]] && label="Weir, parallelism 2"
    [[ $name == keyed ]] && label="Weir, primary_key (a keyed table)"
    row "$rows" "$label" "$s" "$m"
  done
  read -r s m < <(measure bench/peers/sling_pg_to_pg.sh "$src" public.bench_snap "$dst" public.bench_sling)
  row "$rows" "Sling 1.4.11" "$s" "$m"
done
