#!/usr/bin/env bash
# The built-in demo: generates two days of `orders` Parquet files, defines four
# pipelines in the controller table (three into PostgreSQL, one into a Delta
# table in demo-data/warehouse), runs `runner --date` for both days, then shows
# the audit history, the loaded rows, the lake catalog and a SQL query over the
# Delta table. Uses a local PostgreSQL (started or installed by
# scripts/services.sh) and a database named weir_demo.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/services.sh postgres)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}
echo "==> building runner (debug profile)"
cargo build --quiet --locked -p weir-runner -p weir-testkit
bin=$CARGO_TARGET_DIR/debug
step() { printf '\n==> %s\n' "$*"; }

server=${WEIR_TEST_PG_URL%/*}
export WEIR_DATABASE_URL=$server/weir_demo
psql "$WEIR_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS weir_demo" -c "CREATE DATABASE weir_demo"

lake=$PWD/demo-data/lake
rm -rf demo-data
export WEIR_CONN_LAKE=file://$lake
export WEIR_LAKE_URI=file://$PWD/demo-data/warehouse
step "generating Parquet files under demo-data/lake/orders/"
$bin/weir-gen orders --out "$lake/orders/dt=20250323" --date 20250323 --first 1 --rows 50000 --files 2
$bin/weir-gen orders --out "$lake/orders/dt=20250324" --date 20250324 --first 50001 --rows 20000 --files 1

step "runner init"
$bin/runner init

step "defining pipelines (plain SQL into the controller table)"
psql -q "$WEIR_DATABASE_URL" <<'SQL'
INSERT INTO controller (name, source_type, source_connection, data_source, schema_name, destination_table,
                        load_type, primary_key, watermark_column)
VALUES ('orders_daily',  'parquet', 'lake', 'orders/dt={date}/',  'bronze', 'orders_daily',  'incremental', '{}', NULL),
       ('orders_latest', 'parquet', 'lake', 'orders/',            'bronze', 'orders_latest', 'incremental', '{order_id}', 'updated_at'),
       ('orders_snapshot','parquet','lake', 'orders/dt={date}/*.parquet', 'bronze', 'orders_snapshot', 'full', '{}', NULL);
-- Into the lake: a Delta table at $WEIR_LAKE_URI/bronze/orders, one date slice per run.
INSERT INTO controller (name, source_type, source_connection, data_source, destination_type, schema_name,
                        destination_table, load_type, partition_by)
VALUES ('orders_lake', 'parquet', 'lake', 'orders/dt={date}/', 'delta', 'bronze', 'orders', 'incremental',
        '{_weir_run_date}');
SQL
$bin/runner pipelines

step "runner --date 20250323"
$bin/runner --date 20250323
step "runner --date 20250324"
$bin/runner --date 20250324
step "runner --date 20250323 again: re-running a date replaces that date's rows"
$bin/runner --date 20250323 --pipeline orders_daily

step "runner audit"
$bin/runner audit --last 10

step "the loaded rows"
psql "$WEIR_DATABASE_URL" -c "SELECT 'orders_daily' AS table, count(*) AS rows, count(DISTINCT _weir_run_date) AS days FROM bronze.orders_daily
  UNION ALL SELECT 'orders_latest', count(*), NULL FROM bronze.orders_latest
  UNION ALL SELECT 'orders_snapshot', count(*), NULL FROM bronze.orders_snapshot"
psql "$WEIR_DATABASE_URL" -c "SELECT order_id, customer_id, status, quantity, unit_price, total, created_at, updated_at
  FROM bronze.orders_latest ORDER BY order_id LIMIT 5"

step "runner catalog: the Delta tables Weir wrote"
$bin/runner catalog
step "runner query: SQL over the lake, tables by name"
$bin/runner query "SELECT _weir_run_date AS day, status, count(*) AS orders, sum(total) AS revenue
  FROM bronze.orders GROUP BY 1, 2 ORDER BY 1, 2"
echo
echo "Explore: export WEIR_DATABASE_URL=$WEIR_DATABASE_URL WEIR_CONN_LAKE=$WEIR_CONN_LAKE WEIR_LAKE_URI=$WEIR_LAKE_URI"
echo "         $bin/runner --help"
