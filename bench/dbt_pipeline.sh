#!/usr/bin/env bash
# dbt as a Weir pipeline: what Weir adds to a plain `dbt build`. Loads the demo's
# bronze tables once (ORDERS orders, default 500 000, the 100 000-customer extract,
# the chat database's first day), then times, RUNS times each (default 5), the same
# incremental build of dbt_project/ on unchanged data:
#   weir:  runner --date 20250323 --pipeline warehouse  (profile written by Weir,
#          run_results.json read, audit rows written)
#   dbt:   dbt build --project-dir dbt_project with an equivalent profiles.yml
# and prints each one's median and minimum wall time. dbt's own time dominates, so
# the build profile of `runner` hardly matters here (WEIR_BENCH_PROFILE=debug is fine).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
eval "$(scripts/services.sh postgres mariadb dbt)"
orders=${ORDERS:-500000}
runs=${RUNS:-5}
build_release

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fresh_metadata_db weir_bench_dbt
export WEIR_CONN_LAKE=file://$work/lake
export WEIR_CONN_CHAT=${WEIR_TEST_MYSQL_URL%/*}/weir_bench_dbt_chat
mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS weir_bench_dbt_chat; CREATE DATABASE weir_bench_dbt_chat"
echo "generating and loading bronze: $orders orders, 100000 customers, the chat database's first day" >&2
$bin/weir-gen orders --out "$work/lake/orders/dt=20250323" --date 20250323 --rows "$orders" >&2
$bin/weir-gen customers --out "$work/lake/customers/dt=20250323" --date 20250323 --first-day >&2
$bin/weir-gen chat --mysql "$WEIR_CONN_CHAT" --date 20250323 --first-day >&2
psql -q "$WEIR_DATABASE_URL" <<'SQL'
INSERT INTO controller (name, source_type, source_connection, data_source, schema_name, destination_table, load_type)
VALUES ('orders_daily', 'parquet', 'lake', 'orders/dt={date}/', 'bronze', 'orders_daily', 'incremental'),
       ('customers', 'parquet', 'lake', 'customers/dt={date}/', 'bronze', 'customers', 'incremental');
INSERT INTO controller (name, source_type, source_connection, source_table, schema_name, destination_table,
                        load_type, watermark_column, primary_key)
VALUES ('chat_users', 'mysql', 'chat', 'users', 'bronze_chat', 'users', 'incremental', 'updated_at', '{id}'),
       ('chat_chats', 'mysql', 'chat', 'chats', 'bronze_chat', 'chats', 'incremental', 'updated_at', '{id}'),
       ('chat_members', 'mysql', 'chat', 'chat_members', 'bronze_chat', 'chat_members', 'incremental', 'updated_at',
        '{chat_id,user_id}'),
       ('chat_messages', 'mysql', 'chat', 'messages', 'bronze_chat', 'messages', 'incremental', 'updated_at', '{id}');
INSERT INTO controller (name, source_type, data_source, schema_name, load_type, depends_on, active)
VALUES ('warehouse', 'dbt', 'dbt_project', 'analytics', 'incremental', '{}', false);
SQL
$bin/runner --date 20250323 --no-progress >/dev/null 2>&1
# The first build creates every model; the timed ones are incremental on unchanged data.
$bin/runner --date 20250323 --pipeline warehouse --no-progress >/dev/null 2>&1

cat >"$work/profiles.yml" <<YAML
weir:
  target: weir
  outputs:
    weir:
      type: postgres
      host: 127.0.0.1
      port: 5432
      user: postgres
      password: ""
      dbname: weir_bench_dbt
      schema: analytics
      threads: 4
YAML
export DBT_SEND_ANONYMOUS_USAGE_STATS=false DBT_USE_COLORS=false
stats() { sort -n | awk '{a[NR]=$1} END {printf "%8.2f %8.2f\n", a[int((NR+1)/2)], a[1]}'; }
printf '%-6s %8s %8s   (seconds, %s runs each, %s orders)\n' who median min "$runs" "$orders"
for _ in $(seq "$runs"); do
  measure $bin/runner --date 20250323 --pipeline warehouse --no-progress | cut -d' ' -f1
done | stats | sed 's/^/weir  /'
for _ in $(seq "$runs"); do
  measure "$WEIR_DBT" build --project-dir dbt_project --profiles-dir "$work" --target-path "$work/target" \
    --log-path "$work/logs" --vars '{run_date: "2025-03-23"}' | cut -d' ' -f1
done | stats | sed 's/^/dbt   /'
