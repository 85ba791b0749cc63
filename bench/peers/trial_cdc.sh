#!/usr/bin/env bash
# Trial of the streaming peers on this machine: pg_recvlogical and Debezium's embedded engine,
# each in two modes, on change_writer.py's workload (60% inserts / 30% updates / 10% deletes,
# transactions of 100 changes). A template for bench/cdc_*.sh, where Weir joins them.
#
#   bench/peers/trial_cdc.sh [N] [RATE] [PEERS]     defaults: 100000 10000 "recvlogical debezium"
#   e.g. bench/peers/trial_cdc.sh 1000000 10000
#
# backlog: the slot is created, the writer makes N changes unthrottled with no consumer running,
#   then the peer starts and drains them: changes/s = the peer's own speed (JVM start excluded
#   for Debezium: seconds = first event -> Nth event; wall_s includes it).
# live: the peer streams first, then the writer makes N changes at RATE/s: the lag from each
#   transaction's commit (client clock) to its last event reaching the consumer, p50/p99.
# Peak RSS (GNU time %M) of the peer's process (the JVM for Debezium) in both modes.
# Every phase starts from a fresh table (change_writer.py --setup 10000), its own publication and
# slot, and drops them at the end. Uses the scratch database weir_peer_cdc (created, then dropped
# unless KEEP=1) on PGURL (default postgres://postgres@127.0.0.1:5432). Needs wal_level=logical,
# one free replication slot and one wal sender.
set -euo pipefail
cd "$(dirname "$0")"
n=${1:-100000} rate=${2:-10000} peers=${3:-"recvlogical debezium"}
base=${PGURL:-postgres://postgres@127.0.0.1:5432}
db=weir_peer_cdc url=$base/weir_peer_cdc table=public.bench_cdc pub=weir_peer_pub
tmp=$(mktemp -d /tmp/weir_peer_cdc.XXXX)
[[ $(psql "$base/postgres" -XAtc "SHOW wal_level") == logical ]] || { echo "wal_level is not logical" >&2; exit 1; }
psql "$base/postgres" -Xqc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
cleanup() {
  for s in weir_peer_recv weir_peer_dbz; do ./pg_recvlogical.sh --drop "$url" $s $pub 2>/dev/null || true; done
  [[ ${KEEP:-0} == 1 ]] || { psql "$base/postgres" -Xqc "DROP DATABASE IF EXISTS $db" || true; rm -f "$tmp"/*.bin; }
}
trap cleanup EXIT

fresh() { # slot: new table, publication and slot
  ./pg_recvlogical.sh --drop "$url" "$1" $pub
  ./change_writer.py "$url" $table --setup 10000 >/dev/null
  ./pg_recvlogical.sh --create "$url" "$1" $pub $table
}
wait_active() { # slot: until a consumer streams from it
  for _ in $(seq 300); do
    [[ $(psql "$url" -XAtc "SELECT active FROM pg_replication_slots WHERE slot_name = '$1'") == t ]] && return
    sleep 0.2
  done
  echo "slot $1 never became active" >&2; return 1
}
rss_mb() { awk '/^[0-9]+$/ { printf "%d", $1 / 1024 }' "$1"; }
report=$tmp/report.md
echo "| peer | mode | changes | writer changes/s | peer changes/s | lag p50 ms | lag p99 ms | peak RSS MB |" >"$report"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |" >>"$report"
field() { sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" "$1" | head -1; }
lag() { if [[ $mode == live ]]; then field "$@"; else echo -; fi; } # backlog "lag" is catch-up time

run_recvlogical() { # mode
  local mode=$1 w=$tmp/recv_$1
  fresh weir_peer_recv
  [[ $mode == live ]] || ./change_writer.py "$url" $table "$n" --log "$w.writer.csv" >"$w.writer"
  rm -f "$w.bin"
  /usr/bin/time -o "$w.rss" -f '%M' ./pg_recvlogical.sh "$url" weir_peer_recv $pub "$w.bin" &
  local rp=$!
  if [[ $mode == live ]]; then
    ./recvlogical_watch.py "$w.bin" "$n" --table $table --writer-log "$w.writer.csv" >"$w.out" &
    local wp=$!
    wait_active weir_peer_recv
    ./change_writer.py "$url" $table "$n" --rate "$rate" --log "$w.writer.csv" >"$w.writer"
    wait $wp
  else
    ./recvlogical_watch.py "$w.bin" "$n" --table $table --writer-log "$w.writer.csv" >"$w.out"
  fi
  kill -INT "$(pgrep -P $rp)" 2>/dev/null || true # pg_recvlogical stops cleanly on SIGINT, not SIGTERM
  wait $rp || true
  cat "$w.writer" "$w.out" >&2
  echo "| pg_recvlogical | $mode | $n | $(field "$w.writer" changes_per_s) | $(field "$w.out" changes_per_s) | $(lag "$w.out" p50) | $(lag "$w.out" p99) | $(rss_mb "$w.rss") |" >>"$report"
  ./pg_recvlogical.sh --drop "$url" weir_peer_recv $pub
}

run_debezium() { # mode [key=value ...]
  local mode=$1 w=$tmp/dbz_$1; shift
  fresh weir_peer_dbz
  local args=(--url "$url" --table "$table" --slot weir_peer_dbz --publication "$pub" --expect "$n" --writer-log "$w.writer.csv" --timeout 1800 "$@")
  if [[ $mode == live ]]; then
    debezium/run.sh "${args[@]}" >"$w.out" 2>"$w.err" &
    local dp=$!
    wait_active weir_peer_dbz
    sleep 2 # the engine is streaming once its slot is active; give it a moment more
    ./change_writer.py "$url" $table "$n" --rate "$rate" --log "$w.writer.csv" >"$w.writer"
    wait $dp || { cat "$w.err" >&2; return 1; }
  else
    ./change_writer.py "$url" $table "$n" --log "$w.writer.csv" >"$w.writer"
    debezium/run.sh "${args[@]}" >"$w.out" 2>"$w.err" || { cat "$w.err" >&2; return 1; }
  fi
  cat "$w.writer" "$w.out" >&2
  echo "| debezium${*:+ ($*)} | $mode | $n | $(field "$w.writer" changes_per_s) | $(field "$w.out" changes_per_s) | $(lag "$w.out" p50) | $(lag "$w.out" p99) | $(field "$w.out" peak_rss_mb) |" >>"$report"
  ./pg_recvlogical.sh --drop "$url" weir_peer_dbz $pub
}

for peer in $peers; do
  case $peer in
    recvlogical) run_recvlogical backlog; run_recvlogical live ;;
    debezium) run_debezium backlog ${DBZ_ARGS:-}; run_debezium live ${DBZ_ARGS:-} ;;
    *) echo "unknown peer $peer" >&2; exit 2 ;;
  esac
done
echo >&2
cat "$report"
echo "(live mode at RATE=$rate changes/s; backlog lag is catch-up time, not lag; details in $tmp)"
