#!/usr/bin/env bash
# Huge values: peak memory of Weir loading a Parquet file of two rows whose strings are
# SIZE_MB each (default 1024, Postgres's limit for a field is just under that), into
# PostgreSQL and into Delta, beside pyarrow reading the same file (the floor any reader
# pays: the page and the array). Two files: one value repeated (dictionary-encoded, how
# writers store repeats) and two random values (plain-encoded).
#
#   bench/wide_values.sh [SIZE_MB]
#
# Needs the release build (built here; WEIR_BENCH_PROFILE=debug for the debug one),
# PostgreSQL and pyarrow (scripts/services.sh). Results: bench/results/wide_values.md.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-1024}

eval "$(scripts/services.sh postgres deltalake)"
source bench/lib.sh
build_release

fresh_metadata_db weir_bench_wide
data=$PWD/bench/data/wide_$size_mb
lake=$(mktemp -d)
trap 'rm -rf "$lake"' EXIT
mkdir -p "$data" bench/results
export WEIR_CONN_WIDE=file://$data WEIR_CONN_LAKE=file://$lake

for kind in repeated random; do
  [[ -f $data/$kind/part-0.parquet ]] && continue
  mkdir -p "$data/$kind"
  python3 - "$data/$kind/part-0.parquet" "$kind" "$size_mb" <<'PY'
import os, sys
import pyarrow as pa, pyarrow.parquet as pq
path, kind, size = sys.argv[1], sys.argv[2], int(sys.argv[3]) << 20
if kind == "repeated":
    values, dictionary = ["x" * size] * 2, True
else:
    values, dictionary = [os.urandom(size // 2).hex() for _ in range(2)], False
table = pa.table({"id": pa.array([1, 2], pa.int32()), "s": pa.array(values, pa.large_string())})
# A page holds at most 2 GiB: one row per row group.
pq.write_table(table, path, use_dictionary=dictionary, row_group_size=1)
PY
done

psql -q "$db" -c "INSERT INTO controller (name, source_type, source_connection, data_source, destination_type,
    destination_connection, schema_name, destination_table, load_type) VALUES
  ('pg_repeated', 'parquet', 'wide', 'repeated/', 'postgres', NULL, 'bench', 'repeated', 'full'),
  ('pg_random', 'parquet', 'wide', 'random/', 'postgres', NULL, 'bench', 'random', 'full'),
  ('delta_repeated', 'parquet', 'wide', 'repeated/', 'delta', 'lake', 'bench', 'repeated', 'full'),
  ('delta_random', 'parquet', 'wide', 'random/', 'delta', 'lake', 'bench', 'random', 'full')"

results=bench/results/wide_values.md
{
  echo "two rows of $size_mb MB strings ($profile build)"
  echo
  echo "| file | what | seconds | peak RSS (MB) | outcome |"
  echo "| --- | --- | ---: | ---: | --- |"
} >"$results"
for kind in repeated random; do
  read -r s m < <(measure python3 -c "import pyarrow.parquet as pq, sys; pq.read_table(sys.argv[1])" "$data/$kind/part-0.parquet")
  echo "| $kind | pyarrow reads it | $s | $m | |" | tee -a "$results"
  for dest in pg delta; do
    read -r s m < <(measure_any $bin/runner --date 20250323 --no-progress --pipeline "${dest}_$kind")
    outcome=$(psql -Atq "$db" -c "SELECT status || coalesce(': ' || left(error_message, 90), '')
      FROM audit WHERE pipeline_name = '${dest}_$kind' ORDER BY audit_id DESC LIMIT 1")
    echo "| $kind | Weir → ${dest/pg/PostgreSQL} | $s | $m | $outcome |" | tee -a "$results"
  done
done
