#!/usr/bin/env bash
# Topic → ClickHouse: Weir (`runner --date`, a `kafka` source read to the topic's end, appended
# to a MergeTree in RowBinary blocks through a stage) beside the two limits it sits between:
# clickhouse-client inserting the same rows from a CSV file into a table of the same shape (the
# server's own speed), and confluent-kafka's Python consumer reading the topic with no
# processing (the broker's speed). N order messages (JSON, 8 fields), one partition.
#
#   bench/topic_to_clickhouse.sh [N ...]          default: 10000000
#
# Needs the release build (built here; WEIR_BENCH_PROFILE=debug for a quick check), PostgreSQL
# (the metadata database), ClickHouse and Tansu with confluent-kafka (scripts/services.sh). The
# broker is the script's own Tansu on 127.0.0.1:19094 (topics in memory). Producing the topic
# and the CSV file is set-up, not timed. Wall time and peak RSS from GNU time.
# Results: bench/results/topic_to_clickhouse.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rows_list=("$@")
[[ ${#rows_list[@]} -gt 0 ]] || rows_list=(10000000)

eval "$(scripts/services.sh postgres clickhouse kafka)"
source bench/lib.sh
build_release

fresh_metadata_db weir_bench_topic
data=$PWD/bench/data
mkdir -p "$data" bench/results
ch() { clickhouse-client --host "${WEIR_TEST_CLICKHOUSE_TCP%:*}" --port "${WEIR_TEST_CLICKHOUSE_TCP#*:}" "$@"; }
port=19094
export WEIR_CONN_STREAM=kafka://127.0.0.1:$port WEIR_CONN_CH=$WEIR_TEST_CLICKHOUSE_URL

results=bench/results/topic_to_clickhouse.md
{
  echo "| rows | tool | seconds | rows/s | peak RSS (MB) |"
  echo "| ---: | --- | ---: | ---: | ---: |"
} >"$results"
row() { printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(awk -v r="$1" -v s="$3" 'BEGIN{printf "%.0f", r/s}')" "$4" | tee -a "$results"; }

columns="order_id bigint not null, customer_id bigint, status text, quantity integer, unit_price numeric(10,2), total numeric(12,2), created_at timestamptz, note text"
names="order_id, customer_id, status, quantity, unit_price, total, created_at, note"
broker=""
trap '[[ -n $broker ]] && kill $broker 2>/dev/null' EXIT
for rows in "${rows_list[@]}"; do
  [[ -n $broker ]] && { kill $broker; wait $broker 2>/dev/null || true; }
  "$WEIR_TANSU" broker --listener-url tcp://127.0.0.1:$port --advertised-listener-url tcp://127.0.0.1:$port \
    --storage-engine memory://tansu/ --silent >/dev/null 2>&1 &
  broker=$!
  wait_port $port
  csv=$data/topic_orders_$rows.csv
  echo "producing $rows messages (set-up, not timed)" >&2
  python3 bench/peers/topic_tool.py produce 127.0.0.1:$port orders "$rows" "$csv"

  ch --query "DROP DATABASE IF EXISTS bench_topic"
  ch --query "DROP TABLE IF EXISTS _weir.commits"
  psql -q "$db" -c "DELETE FROM controller; DELETE FROM watermark;
    INSERT INTO controller (name, source_type, source_connection, source_table, destination_type,
                            destination_connection, schema_name, destination_table, load_type, options)
    VALUES ('bench', 'kafka', 'stream', 'orders', 'clickhouse', 'ch', 'bench_topic', 'orders_weir', 'cdc',
            '{\"columns\": \"$columns\", \"history\": true, \"transform\": \"SELECT $names FROM input\"}');"
  read -r secs rss < <(measure $bin/runner --date 20250323 --pipeline bench)
  [[ $(ch --query "SELECT count() FROM bench_topic.orders_weir") == "$rows" ]] || { echo "weir row count mismatch" >&2; exit 1; }
  row "$rows" "weir (topic → ClickHouse)" "$secs" "$rss"
  weir=$secs

  ch --query "CREATE TABLE bench_topic.orders_client AS bench_topic.orders_weir"
  read -r secs rss < <(measure sh -c "clickhouse-client --host '${WEIR_TEST_CLICKHOUSE_TCP%:*}' --port '${WEIR_TEST_CLICKHOUSE_TCP#*:}' \
    --query 'INSERT INTO bench_topic.orders_client ($names) FORMAT CSV' < '$csv'")
  [[ $(ch --query "SELECT count() FROM bench_topic.orders_client") == "$rows" ]] || { echo "clickhouse-client row count mismatch" >&2; exit 1; }
  row "$rows" "clickhouse-client (CSV file)" "$secs" "$rss"
  client=$secs

  read -r secs rss < <(measure python3 bench/peers/topic_tool.py consume 127.0.0.1:$port orders "$rows")
  row "$rows" "confluent-kafka consumer (no processing)" "$secs" "$rss"
  consumer=$secs
  awk -v w="$weir" -v a="$client" -v b="$consumer" 'BEGIN { s = (a > b ? a : b);
    printf "weir / the slower peer: %.2f× (target ≤ 1.5×)\n", w / s }' | tee -a "$results"
  ch --query "DROP DATABASE IF EXISTS bench_topic"
done
echo "results in $results" >&2
