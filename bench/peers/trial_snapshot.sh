#!/usr/bin/env bash
# Trial of the snapshot peers on this machine: PostgreSQL → PostgreSQL copy of make_table.sql's
# 10-column table by psql_copy_pipe.sh and by sling_pg_to_pg.sh, one after the other, each timed
# and its peak RSS taken with GNU time. A template for the bench script where Weir joins them.
#
#   bench/peers/trial_snapshot.sh [ROWS] [PEERS]      defaults: 1000000 "psql sling"
#
# Uses the scratch databases weir_peer_snap_src and weir_peer_snap_dst on PGURL (default
# postgres://postgres@127.0.0.1:5432), created here and dropped at the end unless KEEP=1 (the
# source table then survives for the next run: KEEP=1 twice reuses it if it has ROWS rows).
# The psql pipe loads into a table created with the source's columns and primary key; Sling
# (full-refresh) creates its own target, without the key (see sling_pg_to_pg.sh).
# Peak RSS is the client side only (the server's backends do a large share of the work).
set -euo pipefail
cd "$(dirname "$0")"
rows=${1:-1000000} peers=${2:-"psql sling"}
base=${PGURL:-postgres://postgres@127.0.0.1:5432}
src=$base/weir_peer_snap_src dst=$base/weir_peer_snap_dst
exists() { [[ $(psql "$base/postgres" -XAtc "SELECT count(*) FROM pg_database WHERE datname = '$1'") == 1 ]]; }
cleanup() { [[ ${KEEP:-0} == 1 ]] || psql "$base/postgres" -Xqc "DROP DATABASE IF EXISTS weir_peer_snap_src" -c "DROP DATABASE IF EXISTS weir_peer_snap_dst"; }
trap cleanup EXIT

exists weir_peer_snap_src || psql "$base/postgres" -Xqc "CREATE DATABASE weir_peer_snap_src"
exists weir_peer_snap_dst || psql "$base/postgres" -Xqc "CREATE DATABASE weir_peer_snap_dst"
have=0
if [[ $(psql "$src" -XAtc "SELECT to_regclass('public.bench_snap') IS NOT NULL") == t ]]; then
  have=$(psql "$src" -XAtc "SELECT count(*) FROM public.bench_snap")
fi
if [[ $have != "$rows" ]]; then
  echo "generating $rows rows" >&2
  start=$(date +%s.%N)
  psql "$src" -Xq -v ON_ERROR_STOP=1 -v table=public.bench_snap -v rows="$rows" -f make_table.sql >&2
  echo "generated in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s" >&2
fi
psql "$src" -XAtc "SELECT 'source: ' || pg_size_pretty(pg_total_relation_size('public.bench_snap'))" >&2

echo "| rows | peer | seconds | rows/s | peak RSS MB |"
echo "| ---: | --- | ---: | ---: | ---: |"
field() { sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" "$1" | head -1; }
for peer in $peers; do
  case $peer in
    psql) cmd=(./psql_copy_pipe.sh "$src" public.bench_snap "$dst" public.bench_psql) ;;
    sling) cmd=(./sling_pg_to_pg.sh "$src" public.bench_snap "$dst" public.bench_sling) ;;
    *) echo "unknown peer $peer" >&2; exit 2 ;;
  esac
  psql "$dst" -Xqc "DROP TABLE IF EXISTS public.bench_$peer" 2>/dev/null
  psql "$dst" -Xqc "CHECKPOINT" # start each peer without the previous one's dirty pages
  out=$(mktemp)
  /usr/bin/time -o "$out.rss" -f '%M' "${cmd[@]}" >"$out" 2>"$out.err" || { cat "$out.err" >&2; exit 1; }
  echo "| $(field "$out" rows) | $peer | $(field "$out" seconds) | $(field "$out" rows_per_s) | $(( $(tail -1 "$out.rss") / 1024 )) |"
  psql "$dst" -Xqc "DROP TABLE IF EXISTS public.bench_$peer"
done
