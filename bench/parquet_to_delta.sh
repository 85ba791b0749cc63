#!/usr/bin/env bash
# Parquet → Delta Lake, 10 columns (ints, floats, text, timestamps, decimals):
# Weir (`runner`, full load into a Delta table) beside the Python `deltalake`
# package's `write_deltalake` of the same files (streamed as a RecordBatchReader),
# in one run, for each row count given (default: 10M). Then a MERGE of 100k
# changed rows (an upsert pipeline) into the 10M-row table Weir wrote, with
# `deltalake`'s own merge of the same rows into its table beside it.
#
#   bench/parquet_to_delta.sh [ROWS ...]
#
# Needs the release build (built here), PostgreSQL for the metadata database
# (scripts/services.sh) and `pip install deltalake pyarrow` (the services script's
# `deltalake`). Wall time and peak RSS come from GNU time.
# Results: bench/results/parquet_to_delta.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rows_list=("$@")
[[ ${#rows_list[@]} -gt 0 ]] || rows_list=(10000000)
changes=100000

eval "$(scripts/services.sh postgres deltalake)"
source bench/lib.sh
build_release

fresh_metadata_db weir_bench_delta
data=$PWD/bench/data
lake=$data/delta
mkdir -p "$data" bench/results
export WEIR_CONN_BENCH=file://$data
export WEIR_LAKE_URI=file://$lake/weir

count() { python3 -c "import sys; from deltalake import DeltaTable; print(DeltaTable(sys.argv[1]).to_pyarrow_dataset().count_rows())" "$1"; }

results=bench/results/parquet_to_delta.md
{
  echo "| rows | operation | tool | seconds | rows/s | peak RSS (MB) |"
  echo "| ---: | --- | --- | ---: | ---: | ---: |"
} >"$results"
row() {
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" \
    "$(awk -v r="$5" -v s="$4" 'BEGIN{printf "%.0f", r/s}')" "$6" | tee -a "$results"
}

for rows in "${rows_list[@]}"; do
  orders_data "$rows"
  dir=$data/orders_$rows
  # The changes: ids from the middle of the table, re-dated a day later (new created/updated times).
  cdir=$data/changes_$rows
  rm -rf "$cdir"
  $bin/weir-gen orders --out "$cdir" --date 20250324 --first $(( rows / 2 )) --rows "$changes" --files 1

  rm -rf "$lake"
  psql -q "$db" -c "DELETE FROM controller; DELETE FROM catalog;
    INSERT INTO controller (name, source_type, source_connection, data_source, destination_type, schema_name,
                            destination_table, load_type, primary_key, watermark_column)
    VALUES ('load', 'parquet', 'bench', 'orders_$rows/', 'delta', 'bench', 'orders', 'full', '{}', NULL),
           ('merge', 'parquet', 'bench', 'changes_$rows/', 'delta', 'bench', 'orders', 'incremental',
            '{order_id}', 'updated_at');"

  # Weir: one overwrite commit, streamed batch by batch into Parquet data files.
  read -r secs rss < <(measure $bin/runner --date 20250323 --pipeline load)
  [[ $(count "$lake/weir/bench/orders") == "$rows" ]] || { echo "weir row count mismatch" >&2; exit 1; }
  row "$rows" "load" "weir" "$secs" "$rows" "$rss"

  # Python deltalake (delta-rs underneath): the same files, streamed.
  read -r secs rss < <(measure python3 bench/deltalake_peer.py write "$dir" "$lake/python/orders")
  [[ $(count "$lake/python/orders") == "$rows" ]] || { echo "deltalake row count mismatch" >&2; exit 1; }
  row "$rows" "load" "python deltalake $(python3 -c 'import deltalake; print(deltalake.__version__)')" "$secs" "$rows" "$rss"

  # MERGE of the changed rows into the table (latest per key wins).
  read -r secs rss < <(measure $bin/runner --date 20250324 --pipeline merge)
  [[ $(count "$lake/weir/bench/orders") == "$rows" ]] || { echo "weir row count changed by merge" >&2; exit 1; }
  row "$rows" "merge $changes" "weir" "$secs" "$changes" "$rss"
  read -r secs rss < <(measure python3 bench/deltalake_peer.py merge "$cdir" "$lake/python/orders")
  row "$rows" "merge $changes" "python deltalake" "$secs" "$changes" "$rss"
done
echo "results in $results" >&2
