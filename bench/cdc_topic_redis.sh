#!/usr/bin/env bash
# PostgreSQL CDC → topic → Redis, the fifth system's serving path: `runner stream` runs two
# pipelines, a table's changes into a topic (Debezium's envelope) and the topic into Redis (per
# change: XADD to a stream, ZINCRBY, HINCRBY + HINCRBYFLOAT + HSET on a hash, applied once per
# chunk by a script), beside redis-benchmark sending the same command mix pipelined (the limit).
# The changes come from bench/peers/change_writer.py (60% inserts / 30% updates / 10% deletes,
# 100 per transaction), as in bench/cdc_stream.sh.
#
#   bench/cdc_topic_redis.sh [N] [RATE]        defaults: 1000000 10000
#
# - backlog (the rate): the writer makes N changes unthrottled with no stream running; then
#   `runner stream` starts, and the clock runs from its launch until Redis has the last
#   transaction's marker. changes/s = N / seconds.
# - live (the lag): the stream runs first, the writer makes N changes at RATE/s; lag per source
#   transaction = the Redis server's clock when the stream entry of the transaction's last row
#   was added (its entry id) − the writer's clock after COMMIT returned; p50/p99 by
#   bench/peers/lag_stats.py.
# - hops (MODES=hops, not in the default): the writer makes N changes with nothing running, then
#   one `runner --date` per pipeline drains them, timed apart: which hop limits the backlog rate.
# - redis-benchmark: each command of the mix, N times, pipelined 100 deep, one connection; the
#   mix's limit in changes/s = 1 / Σ(1 / rate of each command).
# Peak RSS: GNU time %M of `runner stream`. Needs the release build (WEIR_BENCH_PROFILE=debug for
# a quick check), PostgreSQL with wal_level=logical, Tansu and confluent-kafka, redis-server and
# redis-benchmark (scripts/services.sh; redis-py is installed with pip if missing). Its own Tansu
# (127.0.0.1:19095) and Redis (127.0.0.1:16380, no persistence). Results:
# bench/results/cdc_topic_redis.md.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000} rate=${2:-10000}
modes=${MODES:-"backlog live"}

eval "$(scripts/services.sh postgres kafka redis)"
source bench/lib.sh
build_release
python3 -c "import redis" 2>/dev/null || pip install -q redis

server=${WEIR_TEST_PG_URL%/*}
src=$server/weir_bench_redis_src
slot=weir_bench_redis
kport=19095 rport=16380
export WEIR_CONN_SRC=$src WEIR_CONN_STREAM=kafka://127.0.0.1:$kport WEIR_CONN_CACHE=redis://127.0.0.1:$rport
tmp=$(mktemp -d /tmp/weir_bench_redis.XXXX)
q() { psql "$1" -XAtq -v ON_ERROR_STOP=1 -c "$2"; }
field() { sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" "$1" | head -1; }
rss_mb() { awk '/^[0-9]+$/ { m = $1 } END { if (m) printf "%d", m / 1024; else printf "?" }' "$1"; }
broker="" cache=""
cleanup() {
  set +e
  for p in $(jobs -p); do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  drop_slot $slot
  q "$WEIR_TEST_PG_URL" "DROP DATABASE IF EXISTS weir_bench_redis_src WITH (FORCE)" >/dev/null
}
trap cleanup EXIT

mkdir -p bench/results
results=bench/results/cdc_topic_redis.md
{
  echo "| tool | mode | changes | seconds | changes/s | lag p50 ms | lag p99 ms | peak RSS MB |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$results"
row() { local out="|" cell; for cell in "$@"; do out+=" $cell |"; done; echo "$out" | tee -a "$results"; }

redis_opts='"streams": [{"key": "bench:events", "maxlen": 5000000, "fields": ["id", "marker", "account", "amount"]}],
  "sorted_sets": [{"key": "bench:top", "member": "account", "increment": "amount"}],
  "hashes": [{"key": "bench:account:{account}", "increment": {"events": 1, "amount": "amount"}, "set": {"last_marker": "marker"}}]'

# A new source table (10,000 seed rows), slot, broker, Redis and metadata; the first run takes the
# snapshot through to Redis.
setup() {
  [[ -n $broker ]] && { kill $broker; wait $broker 2>/dev/null || true; }
  [[ -n $cache ]] && { kill $cache; wait $cache 2>/dev/null || true; }
  "$WEIR_TANSU" broker --listener-url tcp://127.0.0.1:$kport --advertised-listener-url tcp://127.0.0.1:$kport \
    --storage-engine memory://tansu/ --silent >/dev/null 2>&1 &
  broker=$!
  redis-server --port $rport --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
  cache=$!
  wait_port $kport && wait_port $rport
  drop_slot $slot
  q "$WEIR_TEST_PG_URL" "DROP DATABASE IF EXISTS weir_bench_redis_src WITH (FORCE)"
  q "$WEIR_TEST_PG_URL" "CREATE DATABASE weir_bench_redis_src"
  bench/peers/change_writer.py "$src" public.bench_cdc --setup 10000 >/dev/null
  fresh_metadata_db weir_bench_redis
  psql -q "$db" -v ON_ERROR_STOP=1 -c "
    INSERT INTO controller (name, source_type, source_connection, source_table, destination_type,
                            destination_connection, schema_name, destination_table, load_type, depends_on, options)
    VALUES ('to_topic', 'postgres', 'src', 'public.bench_cdc', 'kafka', 'stream', 'public', 'bench.cdc', 'cdc', '{}',
            '{\"slot\": \"$slot\", \"commit_interval\": \"200ms\"}'),
           ('to_redis', 'kafka', 'stream', 'bench.cdc', 'redis', 'cache', 'public', 'serving', 'cdc', '{to_topic}',
            '{\"envelope\": \"debezium\", \"history\": true, \"commit_interval\": \"200ms\",
              \"columns\": \"id bigint not null, marker bigint, account integer, amount numeric(12,2), status text\",
              $redis_opts}');"
  $bin/runner --date 20250323 >"$tmp/snapshot.log" 2>&1 || { cat "$tmp/snapshot.log" >&2; exit 1; }
}

start_stream() { # LOG
  /usr/bin/time -f '%M' -o "$1.rss" $bin/runner stream >"$1" 2>&1 &
  stream=$!
}
stop_stream() {
  kill -TERM "$(pgrep -P $stream)" 2>/dev/null || kill -TERM $stream
  wait $stream || true
}

for mode in $modes; do
  setup
  case $mode in
  hops)
    bench/peers/change_writer.py "$src" public.bench_cdc "$n" --rate 0 >"$tmp/writer.out"
    for hop in to_topic to_redis; do
      read -r secs rss < <(measure $bin/runner --date 20250324 --pipeline $hop)
      row "weir ($hop alone)" "hop, batch run" "$n" "$secs" "$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')" - - "$rss"
    done
    ;;
  backlog)
    bench/peers/change_writer.py "$src" public.bench_cdc "$n" --rate 0 >"$tmp/writer.out"
    last=$(field "$tmp/writer.out" last_marker)
    started=$(date +%s%N)
    start_stream "$tmp/backlog.log"
    python3 bench/peers/redis_arrivals.py $rport wait "$last" 1800 >/dev/null
    secs=$(awk -v a="$started" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    stop_stream
    row weir backlog "$n" "$secs" "$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')" - - "$(rss_mb "$tmp/backlog.log.rss")"
    ;;
  live)
    start_stream "$tmp/live.log"
    sleep 3
    bench/peers/change_writer.py "$src" public.bench_cdc "$n" --rate "$rate" --log "$tmp/writer.csv" >"$tmp/writer.out"
    last=$(field "$tmp/writer.out" last_marker)
    python3 bench/peers/redis_arrivals.py $rport wait "$last" 600 >/dev/null
    stop_stream
    python3 bench/peers/redis_arrivals.py $rport dump "$tmp/arrivals.csv"
    line=$(python3 bench/peers/lag_stats.py "$tmp/writer.csv" "$tmp/arrivals.csv" --name weir)
    echo "$line" >&2
    secs=$(field "$tmp/writer.out" seconds)
    row weir "live $rate/s" "$n" "$secs" "$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')" \
      "$(echo "$line" | sed -n 's/.* p50=\([^ ]*\).*/\1/p')" "$(echo "$line" | sed -n 's/.* p99=\([^ ]*\).*/\1/p')" \
      "$(rss_mb "$tmp/live.log.rss")"
    ;;
  esac
  python3 bench/peers/redis_arrivals.py $rport totals >&2
done

# The limit: the same commands, pipelined, from redis-benchmark.
inverse=0
for cmd in "XADD bench:rb MAXLEN ~ 5000000 * id __rand_int__ marker 1 account 2 amount 3.50" \
           "ZINCRBY bench:rbz 3.50 __rand_int__" \
           "HINCRBY bench:rbh:__rand_int__ events 1" \
           "HINCRBYFLOAT bench:rbh:__rand_int__ amount 3.50" \
           "HSET bench:rbh:__rand_int__ last_marker 1"; do
  set -f # the command's `*` is XADD's, not the shell's
  # shellcheck disable=SC2086
  per_s=$(redis-benchmark -p $rport -n "$n" -P 100 -r 100000 -q $cmd | tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
  set +f
  echo "redis-benchmark ${cmd%% *}: $per_s/s" >&2
  inverse=$(awk -v i="$inverse" -v r="$per_s" 'BEGIN { printf "%.12f", i + 1 / r }')
done
limit=$(awk -v i="$inverse" 'BEGIN { printf "%.0f", 1 / i }')
row "redis-benchmark (the 5 commands, -P 100)" "limit" "$n" "$(awk -v n="$n" -v l="$limit" 'BEGIN { printf "%.1f", n / l }')" "$limit" - - -
echo "results in $results" >&2
