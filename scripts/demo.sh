#!/usr/bin/env bash
# The built-in demo: the three systems Weir replaces, as one set of pipelines
# run by one `runner --date` per day, over two days of generated data:
#   1. Parquet orders and customers → PostgreSQL bronze → dbt silver and gold;
#   2. a chat product's MariaDB (users, chats, members, messages with edits) →
#      PostgreSQL, incrementally → dbt's star schema (dim_time, dim_user,
#      fact_messages, fact_chats, fact_activity);
#   3. a civil registry's Elasticsearch indices → Delta tables → `runner query`
#      by name;
#   5. an engagement application's PostgreSQL (content, engagement_events),
#      captured with change data capture (a replication slot): a snapshot on
#      day one, then every insert, update and delete mirrored into PostgreSQL
#      and Delta, by batch runs and by `runner stream`; and the real-time
#      half: the changes into the topic postgres.public.engagement_events,
#      enriched in flight with SQL (joined with `content`) into the topic
#      enriched_engagement_events, from there into ClickHouse
#      (analytics.enriched_engagements) and into Redis (streams, top-content
#      sorted sets, per-content hashes).
# Then it shows the audit history, the gold tables, the lake catalog, SQL over
# the Delta tables, and the completion email the runs sent (caught by a local
# SMTP server). Uses a local PostgreSQL and MariaDB and an aiosmtpd server
# (started or installed by scripts/services.sh, as is dbt), the PostgreSQL
# databases weir_demo and weir_demo_engagement (with its replication slot
# weir_engagement), the MariaDB database weir_demo_chat, and the test kit's
# Elasticsearch server (weir-es) on 127.0.0.1:9210, or the cluster at
# $WEIR_DEMO_ES_URL; ClickHouse (its database analytics), and a Tansu broker
# on 127.0.0.1:19092 and a Redis on 127.0.0.1:16379 of the demo's own.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/services.sh postgres mariadb smtp dbt clickhouse kafka redis)"
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
step "generating Parquet files under demo-data/lake/: orders, and the customers extract (full, then changes)"
$bin/weir-gen orders --out "$lake/orders/dt=20250323" --date 20250323 --first 1 --rows 50000 --files 2
$bin/weir-gen orders --out "$lake/orders/dt=20250324" --date 20250324 --first 50001 --rows 20000 --files 1
$bin/weir-gen customers --out "$lake/customers/dt=20250323" --date 20250323 --first-day
$bin/weir-gen customers --out "$lake/customers/dt=20250324" --date 20250324

step "generating the chat OLTP database in MariaDB (weir_demo_chat), first day"
mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS weir_demo_chat; CREATE DATABASE weir_demo_chat CHARACTER SET utf8mb4"
export WEIR_CONN_CHAT=${WEIR_TEST_MYSQL_URL%/*}/weir_demo_chat
$bin/weir-gen chat --mysql "$WEIR_CONN_CHAT" --date 20250323 --first-day

step "generating the engagement application's PostgreSQL (weir_demo_engagement): content and engagement_events"
# A database with replication slots cannot be dropped: the earlier demo's slots go first.
psql "$WEIR_TEST_PG_URL" -qAt -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
  WHERE database = 'weir_demo_engagement' AND NOT active" >/dev/null
psql "$WEIR_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS weir_demo_engagement" -c "CREATE DATABASE weir_demo_engagement"
export WEIR_CONN_ENGAGEMENT=$server/weir_demo_engagement
$bin/weir-gen engagement --postgres "$WEIR_CONN_ENGAGEMENT" --date 20250323 --first-day

step "generating the civil registry in Elasticsearch: person_sabt, vehicle_sabt, company_sabt"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
if [[ -n ${WEIR_DEMO_ES_URL:-} ]]; then
  export WEIR_CONN_REGISTRY=$WEIR_DEMO_ES_URL
else
  $bin/weir-es --listen 127.0.0.1:9210 2>/dev/null &
  pids+=($!)
  export WEIR_CONN_REGISTRY=http://127.0.0.1:9210
  for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/9210) 2>/dev/null && break; sleep 0.1; done
fi
$bin/weir-gen people --es "$WEIR_CONN_REGISTRY" --people 20000

step "the streaming hub and the serving stores: a Tansu broker (topics in memory), Redis (append-only file), ClickHouse"
"$WEIR_TANSU" broker --listener-url tcp://127.0.0.1:19092 --advertised-listener-url tcp://127.0.0.1:19092 \
  --storage-engine memory://tansu/ --silent >/dev/null 2>&1 &
pids+=($!)
mkdir -p demo-data/redis
redis-server --port 16379 --bind 127.0.0.1 --dir "$PWD/demo-data/redis" --appendonly yes --save '' >/dev/null &
pids+=($!)
wait_port 19092 && wait_port 16379
export WEIR_CONN_STREAM=kafka://127.0.0.1:19092 WEIR_CONN_CACHE=redis://127.0.0.1:16379 WEIR_CONN_CLICKHOUSE=$WEIR_TEST_CLICKHOUSE_URL
ch() { clickhouse-client --host "${WEIR_TEST_CLICKHOUSE_TCP%:*}" --port "${WEIR_TEST_CLICKHOUSE_TCP#*:}" "$@"; }
# ClickHouse keeps each table's committed position in _weir.commits: an earlier demo's goes with its table.
ch --query "DROP DATABASE IF EXISTS analytics"
ch --query "DROP DATABASE IF EXISTS _weir"

# The completion email goes to the local SMTP server, which keeps it in a Maildir.
export WEIR_SMTP_URL=$WEIR_TEST_SMTP_URL WEIR_NOTIFY_FROM="Weir demo <weir@localhost>" WEIR_NOTIFY_TO=data-team@localhost
mail_mark=$PWD/demo-data/day-two.mark

step "runner init"
$bin/runner init

step "defining pipelines (plain SQL into the controller table)"
psql -q "$WEIR_DATABASE_URL" <<'SQL'
INSERT INTO controller (name, source_type, source_connection, data_source, schema_name, destination_table,
                        load_type, primary_key, watermark_column)
VALUES ('orders_daily',  'parquet', 'lake', 'orders/dt={date}/',  'bronze', 'orders_daily',  'incremental', '{}', NULL),
       ('customers',     'parquet', 'lake', 'customers/dt={date}/', 'bronze', 'customers',    'incremental', '{}', NULL),
       ('orders_latest', 'parquet', 'lake', 'orders/',            'bronze', 'orders_latest', 'incremental', '{order_id}', 'updated_at'),
       ('orders_snapshot','parquet','lake', 'orders/dt={date}/*.parquet', 'bronze', 'orders_snapshot', 'full', '{}', NULL);
-- Into the lake: a Delta table at $WEIR_LAKE_URI/bronze/orders, one date slice per run.
INSERT INTO controller (name, source_type, source_connection, data_source, destination_type, schema_name,
                        destination_table, load_type, partition_by)
VALUES ('orders_lake', 'parquet', 'lake', 'orders/dt={date}/', 'delta', 'bronze', 'orders', 'incremental',
        '{_weir_run_date}');
-- The chat OLTP tables, incrementally: rows changed since the last run, merged by key.
INSERT INTO controller (name, source_type, source_connection, source_table, schema_name, destination_table,
                        load_type, watermark_column, primary_key)
VALUES ('chat_users',    'mysql', 'chat', 'users',        'bronze_chat', 'users',        'incremental', 'updated_at', '{id}'),
       ('chat_chats',    'mysql', 'chat', 'chats',        'bronze_chat', 'chats',        'incremental', 'updated_at', '{id}'),
       ('chat_members',  'mysql', 'chat', 'chat_members', 'bronze_chat', 'chat_members', 'incremental', 'updated_at', '{chat_id,user_id}'),
       ('chat_messages', 'mysql', 'chat', 'messages',     'bronze_chat', 'messages',     'incremental', 'updated_at', '{id}');
-- The registry's indices, exported with a point in time, into Delta tables sabt.* (one row per index).
INSERT INTO controller (name, source_type, source_connection, source_table, destination_type, schema_name,
                        destination_table, load_type, options)
VALUES ('person_sabt',  'elasticsearch', 'registry', 'person_sabt',  'delta', 'sabt', 'person_sabt',  'full', '{"array_fields": ["phones"]}'),
       ('vehicle_sabt', 'elasticsearch', 'registry', 'vehicle_sabt', 'delta', 'sabt', 'vehicle_sabt', 'full', '{}'),
       ('company_sabt', 'elasticsearch', 'registry', 'company_sabt', 'delta', 'sabt', 'company_sabt', 'full', '{"array_fields": ["sectors"]}');
-- The engagement application, captured: the first run snapshots each table at the slot's
-- consistent point, every later run (or runner stream) applies the changes logged since. The
-- three share one slot: the server decodes its log once for all of them.
INSERT INTO controller (name, source_type, source_connection, source_table, destination_type, destination_connection,
                        schema_name, destination_table, load_type, options)
VALUES ('engagement_content', 'postgres', 'engagement', 'public.content',           'postgres', NULL,   'bronze_engagement', 'content',           'cdc', '{"slot": "weir_engagement"}'),
       ('engagement_events',  'postgres', 'engagement', 'public.engagement_events', 'postgres', NULL,   'bronze_engagement', 'engagement_events', 'cdc', '{"slot": "weir_engagement"}'),
       ('engagement_lake',    'postgres', 'engagement', 'public.engagement_events', 'delta',    'lake', 'engagement',        'engagement_events', 'cdc', '{"slot": "weir_engagement"}');
-- The real-time half. The events' changes into a topic, in Debezium's envelope (the same slot again);
-- enriched in flight: each change joined with its content (a lookup read from the application's
-- database), engagement_percent computed, into a second topic; from there a ClickHouse mirror of
-- the enriched events, and the serving structures in Redis (new events only: the counters add up).
INSERT INTO controller (name, source_type, source_connection, source_table, destination_type, destination_connection,
                        schema_name, destination_table, load_type, primary_key, depends_on, options)
VALUES ('engagement_topic', 'postgres', 'engagement', 'public.engagement_events', 'kafka', 'stream',
        'public', 'postgres.public.engagement_events', 'cdc', '{}', '{}', '{"slot": "weir_engagement"}'),
       ('engagement_enrich', 'kafka', 'stream', 'postgres.public.engagement_events', 'kafka', 'stream',
        'public', 'enriched_engagement_events', 'cdc', '{event_id}', '{engagement_topic}', '{
          "envelope": "debezium",
          "columns": "event_id bigint not null, content_id bigint, user_id bigint, event_type text, engagement_seconds integer, device text, event_ts timestamptz",
          "lookups": {"content": {"connection": "engagement", "table": "public.content"}}, "lookup_refresh": "1s",
          "transform": "SELECT e.*, c.content_type, c.title, c.length_seconds, round(100.0 * e.engagement_seconds / c.length_seconds, 1) AS engagement_percent FROM input e LEFT JOIN content c ON c.content_id = e.content_id"}'),
       ('enriched_engagements', 'kafka', 'stream', 'enriched_engagement_events', 'clickhouse', 'clickhouse',
        'analytics', 'enriched_engagements', 'cdc', '{event_id}', '{engagement_enrich}', '{
          "envelope": "debezium",
          "columns": "event_id bigint not null, content_id bigint, user_id bigint, event_type text, engagement_seconds integer, device text, event_ts timestamptz, content_type text, title text, length_seconds integer, engagement_percent double precision"}'),
       ('engagement_redis', 'kafka', 'stream', 'enriched_engagement_events', 'redis', 'cache',
        'public', 'serving', 'cdc', '{}', '{engagement_enrich}', '{
          "envelope": "debezium", "history": true,
          "columns": "event_id bigint not null, content_id bigint, user_id bigint, event_type text, engagement_seconds integer, device text, event_ts timestamptz, content_type text, engagement_percent double precision",
          "transform": "SELECT event_id, content_id, content_type, user_id, coalesce(engagement_seconds, 0) AS engagement_seconds, engagement_percent, event_ts FROM input WHERE _weir_op IN (''r'', ''c'')",
          "streams":     [{"key": "enriched_events:{content_type}", "maxlen": 100000}],
          "sorted_sets": [{"key": "top_engaging_content:{content_type}", "member": "content_id", "increment": "engagement_seconds"}],
          "hashes":      [{"key": "content_summary:{content_id}", "increment": {"events": 1, "engagement_seconds": "engagement_seconds"}, "set": {"last_user_id": "user_id"}}]}');
-- dbt, once the bronze tables it reads are loaded: silver (typed, cleaned, deduplicated) and gold
-- (sales aggregates; the chat star schema) in this database, incremental models built incrementally.
INSERT INTO controller (name, source_type, data_source, schema_name, load_type, depends_on, options)
VALUES ('warehouse', 'dbt', 'dbt_project', 'analytics', 'incremental',
        '{orders_daily,customers,chat_users,chat_chats,chat_members,chat_messages}', '{"target": "demo"}');
SQL
$bin/runner pipelines

step "runner --date 20250323"
$bin/runner --date 20250323
step "the chat product's next day: new users, chats and messages; edited profiles and messages"
$bin/weir-gen chat --mysql "$WEIR_CONN_CHAT" --date 20250324
step "the engagement application's next day: new content and events, retitled content, corrected and deleted events"
$bin/weir-gen engagement --postgres "$WEIR_CONN_ENGAGEMENT" --date 20250324
touch "$mail_mark"
step "runner --date 20250324"
$bin/runner --date 20250324
step "runner --date 20250323 again: re-running a date replaces that date's rows"
$bin/runner --date 20250323 --pipeline orders_daily

step "change data capture: the mirrors equal their sources, and the slot the server keeps for them"
psql "$WEIR_DATABASE_URL" -c "SELECT pipeline_name, run_date, records_read AS changes, records_processed AS rows_changed,
  watermark_after AS lsn FROM audit WHERE pipeline_name LIKE 'engagement%' AND status = 'success' ORDER BY 1, 2"
engagement_counts() {
  printf 'source:  content %s, engagement_events %s\n' \
    "$(psql -qAt "$WEIR_CONN_ENGAGEMENT" -c 'SELECT count(*) FROM content')" \
    "$(psql -qAt "$WEIR_CONN_ENGAGEMENT" -c 'SELECT count(*) FROM engagement_events')"
  printf 'mirror:  content %s, engagement_events %s (PostgreSQL), %s (Delta)\n' \
    "$(psql -qAt "$WEIR_DATABASE_URL" -c 'SELECT count(*) FROM bronze_engagement.content')" \
    "$(psql -qAt "$WEIR_DATABASE_URL" -c 'SELECT count(*) FROM bronze_engagement.engagement_events')" \
    "$($bin/runner query --format csv 'SELECT count(*) AS n FROM engagement.engagement_events' | tail -n1)"
}
engagement_counts
$bin/runner slots

step "runner stream: the engagement pipelines apply changes as they commit (a third day of changes, then SIGTERM)"
$bin/runner stream 2>"$PWD/demo-data/stream.log" &
stream_pid=$!
sleep 3
$bin/weir-gen engagement --postgres "$WEIR_CONN_ENGAGEMENT" --date 20250325
sleep 4
kill -TERM $stream_pid
wait $stream_pid
engagement_counts
psql "$WEIR_DATABASE_URL" -c "SELECT pipeline_name, status, records_read AS changes, heartbeat_at - start_time AS streamed,
  watermark_after AS position FROM audit WHERE run_id = (SELECT run_id FROM audit ORDER BY audit_id DESC LIMIT 1) ORDER BY 1"

step "the fifth system: CDC → topic → SQL enrichment → ClickHouse and Redis (a batch run drains what the stream left)"
$bin/runner --date 20250325 --pipeline engagement_topic --pipeline engagement_enrich --pipeline enriched_engagements \
  --pipeline engagement_redis
$bin/runner check --pipeline engagement_enrich
redis() { redis-cli -p 16379 "$@"; }
serving() {
  local events=0 key
  for key in $(redis --scan --pattern 'content_summary:*'); do events=$((events + $(redis hget "$key" events))); done
  printf 'Redis:      %s events counted in content_summary:*, %s in the enriched_events:* streams\n' "$events" \
    "$(( $(redis xlen enriched_events:podcast) + $(redis xlen enriched_events:video) + $(redis xlen enriched_events:newsletter) ))"
  printf 'ClickHouse: %s events ever inserted (deleted ones included), %s current\n' \
    "$(ch --query 'SELECT count() FROM analytics.enriched_engagements FINAL')" \
    "$(ch --query 'SELECT count() FROM analytics.enriched_engagements_current')"
}
ch --query "SELECT content_type, count() AS events, round(avg(engagement_percent), 1) AS avg_percent,
  sum(engagement_seconds) AS seconds FROM analytics.enriched_engagements_current GROUP BY content_type ORDER BY content_type
  FORMAT PrettyCompactNoEscapes"
echo "top video content by engagement seconds (ZREVRANGE top_engaging_content:video):"
redis zrevrange top_engaging_content:video 0 2 withscores
echo "a content summary (HGETALL content_summary:1):"
redis hgetall content_summary:1
serving

step "the Redis pipeline stops; a fourth day of changes flows into the topics and ClickHouse without it"
psql -q "$WEIR_DATABASE_URL" -c "UPDATE controller SET active = false WHERE name = 'engagement_redis'"
$bin/weir-gen engagement --postgres "$WEIR_CONN_ENGAGEMENT" --date 20250326
$bin/runner --date 20250326 --pipeline engagement_topic --pipeline engagement_enrich --pipeline enriched_engagements
serving
step "the Redis pipeline starts again: it catches up from the topic, nothing lost, nothing counted twice"
psql -q "$WEIR_DATABASE_URL" -c "UPDATE controller SET active = true WHERE name = 'engagement_redis'"
$bin/runner --date 20250326 --pipeline engagement_redis
serving

step "runner audit"
$bin/runner audit --last 10

step "the loaded rows"
psql "$WEIR_DATABASE_URL" -c "SELECT 'orders_daily' AS table, count(*) AS rows, count(DISTINCT _weir_run_date) AS days FROM bronze.orders_daily
  UNION ALL SELECT 'orders_latest', count(*), NULL FROM bronze.orders_latest
  UNION ALL SELECT 'orders_snapshot', count(*), NULL FROM bronze.orders_snapshot"
psql "$WEIR_DATABASE_URL" -c "SELECT order_id, customer_id, status, quantity, unit_price, total, created_at, updated_at
  FROM bronze.orders_latest ORDER BY order_id LIMIT 5"

step "gold, built by dbt: sales by day and by customer segment"
psql "$WEIR_DATABASE_URL" -c "SELECT * FROM gold.daily_sales ORDER BY order_date, status"
psql "$WEIR_DATABASE_URL" -c "SELECT segment, sum(customers) AS customers, sum(orders) AS orders, sum(revenue) AS revenue
  FROM gold.customer_segments GROUP BY segment ORDER BY revenue DESC"
step "gold, the chat star schema: daily activity, the busiest chats, users renamed on day two"
psql "$WEIR_DATABASE_URL" -c "SELECT a.date_key, t.day_name, a.daily_active_users, a.messages_sent, a.new_users, a.new_chats
  FROM gold.fact_activity a JOIN gold.dim_time t USING (date_key) ORDER BY a.date_key"
psql "$WEIR_DATABASE_URL" -c "SELECT c.chat_id, c.title, c.is_group, c.members, c.messages, u.username AS created_by
  FROM gold.fact_chats c JOIN gold.dim_user u ON u.user_key = c.created_by_user_key
  ORDER BY c.messages DESC, c.chat_id LIMIT 5"
psql "$WEIR_DATABASE_URL" -c "SELECT m.message_id, u.display_name, m.edit_count, m.date_key
  FROM gold.fact_messages m JOIN gold.dim_user u USING (user_key)
  WHERE m.is_edited AND u.display_name LIKE '%✎' ORDER BY m.message_id LIMIT 3"
step "dbt's runs, as audited: models built, tests passed, rows affected"
psql "$WEIR_DATABASE_URL" -c "SELECT run_date, status, records_processed AS rows_affected,
  details->'nodes_by_status'->'model'->>'success' AS models, details->'nodes_by_status'->'test'->>'pass' AS tests,
  (SELECT n->>'rows_affected' FROM jsonb_array_elements(details->'nodes') n
    WHERE n->>'node' = 'model.weir_demo.fact_messages') AS fact_messages_rows
  FROM audit WHERE pipeline_name = 'warehouse' ORDER BY audit_id"

step "the chat tables: the second run read only what changed (and the rows at the stored watermark, merged again)"
psql "$WEIR_DATABASE_URL" -c "SELECT pipeline_name, run_date, records_read, watermark_after FROM audit
  WHERE pipeline_name LIKE 'chat%' AND status = 'success' ORDER BY pipeline_name, run_date"
psql "$WEIR_DATABASE_URL" -c "SELECT 'users' AS table, count(*) AS rows FROM bronze_chat.users
  UNION ALL SELECT 'chats', count(*) FROM bronze_chat.chats UNION ALL SELECT 'chat_members', count(*) FROM bronze_chat.chat_members
  UNION ALL SELECT 'messages', count(*) FROM bronze_chat.messages"
psql "$WEIR_DATABASE_URL" -c "SELECT id, body, sent_at, edited_at, edit_count FROM bronze_chat.messages
  WHERE edit_count > 0 ORDER BY id LIMIT 3"

step "the fourth system: runner serve takes events over HTTP; a pipeline moves them to the lake; one question, answered from both"
export WEIR_ADMIN_TOKENS=demo-admin WEIR_INGEST_TOKENS=demo-ingest WEIR_CONN_META=$WEIR_DATABASE_URL
$bin/runner serve --listen 127.0.0.1:18090 2>"$PWD/demo-data/serve.log" &
serve_pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:18090/healthz && break; sleep 0.1; done
$bin/weir-load --url http://127.0.0.1:18090 --token demo-ingest --batch 100 --connections 4 --seconds 3 --prefix demo
printf 'an event sent again (its message_id is stored): '
curl -s -H 'Authorization: Bearer demo-ingest' http://127.0.0.1:18090/events \
  -d '[{"event":"purchase","timestamp":"2025-03-23T10:00:00Z","user_id":"u1","message_id":"demo-0"}]'
echo
psql -q "$WEIR_DATABASE_URL" <<'SQL'
INSERT INTO controller (name, source_type, source_connection, source_table, destination_type, schema_name,
                        destination_table, load_type, watermark_column, primary_key)
VALUES ('events_to_lake', 'postgres', 'meta', 'public.events', 'delta', 'bronze', 'events', 'incremental',
        'event_id', '{message_id}');
SQL
$bin/runner --date 20250325 --pipeline events_to_lake --no-progress >/dev/null
for source in postgres lake; do
  echo "purchases' revenue by plan, from $source:"
  curl -s -H 'Authorization: Bearer demo-admin' \
    "http://127.0.0.1:18090/analytics/query?metric=sum&property=amount&event=purchase&group_by=property:plan&source=$source"
  echo
done
kill $serve_pid
wait $serve_pid 2>/dev/null || true
echo "the dashboard: WEIR_ADMIN_TOKENS=demo-admin $bin/runner serve, then http://127.0.0.1:8080 (log in with demo-admin)"

step "runner catalog: the Delta tables Weir wrote"
$bin/runner catalog
step "runner query: SQL over the lake, tables by name"
$bin/runner query "SELECT _weir_run_date AS day, status, count(*) AS orders, sum(total) AS revenue
  FROM bronze.orders GROUP BY 1, 2 ORDER BY 1, 2"
step "runner query: the registry by name, a filter and an aggregation"
$bin/runner query "SELECT last_name, count(*) AS people, min(birth_date) AS oldest_birth
  FROM sabt.person_sabt WHERE alive AND gender = 'F' AND address['city'] = 'Tehran'
  GROUP BY last_name ORDER BY people DESC, last_name LIMIT 5"
$bin/runner query "SELECT p.first_name || ' ' || p.last_name AS owner, count(*) AS vehicles, max(v.model_year) AS newest
  FROM sabt.vehicle_sabt v JOIN sabt.person_sabt p ON p.national_id = v.owner_national_id
  GROUP BY 1 ORDER BY vehicles DESC, owner LIMIT 5"
step "the completion email of runner --date 20250324, as the SMTP server received it"
python3 - "$WEIR_TEST_MAILDIR" "$mail_mark" <<'PY'
import email, email.policy, os, sys
maildir, mark = sys.argv[1], os.path.getmtime(sys.argv[2])
files = [os.path.join(maildir, d, f) for d in ("new", "cur") for f in os.listdir(os.path.join(maildir, d))]
files = sorted((os.path.getmtime(f), f) for f in files if os.path.getmtime(f) >= mark)
for _, path in files[:1]:
    with open(path, "rb") as fh:
        msg = email.message_from_binary_file(fh, policy=email.policy.default)
    print(f"From: {msg['From']}\nTo: {msg['To']}\nSubject: {msg['Subject']}\n")
    print(msg.get_body(preferencelist=("plain",)).get_content())
print(f"({len(files)} message(s) since day two began; all mail is in {maildir})")
PY

echo
echo "Explore: export WEIR_DATABASE_URL=$WEIR_DATABASE_URL WEIR_CONN_LAKE=$WEIR_CONN_LAKE WEIR_LAKE_URI=$WEIR_LAKE_URI WEIR_CONN_CHAT=$WEIR_CONN_CHAT WEIR_CONN_ENGAGEMENT=$WEIR_CONN_ENGAGEMENT WEIR_CONN_CLICKHOUSE=$WEIR_CONN_CLICKHOUSE"
echo "         $bin/runner --help    (the Elasticsearch test server, the broker and Redis stop with this script)"
