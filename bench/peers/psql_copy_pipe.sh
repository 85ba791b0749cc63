#!/usr/bin/env bash
# Snapshot peer: PostgreSQL → PostgreSQL copy of one table with nothing but psql, the floor
# Weir's `postgres` source is measured against (issue 16: at most 1.0× this time):
#   psql \copy (SELECT * FROM SRC) TO pstdout (FORMAT binary)  |  psql \copy DST FROM pstdin (FORMAT binary)
#
#   bench/peers/psql_copy_pipe.sh SRC_URL SRC_TABLE DST_URL DST_TABLE
#   e.g. bench/peers/psql_copy_pipe.sh postgres://postgres@127.0.0.1:5432/weir_peer_src public.bench_snap \
#                                      postgres://postgres@127.0.0.1:5432/weir_peer_dst public.bench_snap
#
# DST_TABLE: if it exists it is TRUNCATEd and loaded as it is (so a harness can give every
# peer the same target); if not, it is created with SRC_TABLE's columns (names, exact types via
# format_type, NOT NULL) and, unless WITH_PK=0, its primary key, before the clock starts.
# Types must exist in the destination (enums/domains are not copied).
# One transaction on each side; the two psql processes stream concurrently.
# Prints one line on stdout:  psql_copy_pipe rows=N seconds=S rows_per_s=R
# (seconds = the pipe only: table creation and the row count are outside the clock).
# Peak RSS: wrap it in `/usr/bin/time -f %M` (the largest of the two psql processes, in KB).
set -euo pipefail
[[ $# -eq 4 ]] || { sed -n '2,17p' "$0" >&2; exit 2; }
src_url=$1 src_table=$2 dst_url=$3 dst_table=$4
q() { psql "$1" -X -q -v ON_ERROR_STOP=1 -At -c "$2"; }

if [[ $(q "$dst_url" "SELECT to_regclass('$dst_table') IS NOT NULL") == t ]]; then
  q "$dst_url" "TRUNCATE $dst_table" >/dev/null
else
  cols=$(q "$src_url" "SELECT string_agg(quote_ident(attname) || ' ' || format_type(atttypid, atttypmod)
                         || CASE WHEN attnotnull THEN ' NOT NULL' ELSE '' END, ', ' ORDER BY attnum)
                       FROM pg_attribute WHERE attrelid = '$src_table'::regclass AND attnum > 0 AND NOT attisdropped")
  pk=""
  if [[ ${WITH_PK:-1} != 0 ]]; then
    pk=$(q "$src_url" "SELECT ', ' || pg_get_constraintdef(oid) FROM pg_constraint
                       WHERE conrelid = '$src_table'::regclass AND contype = 'p'")
  fi
  q "$dst_url" "CREATE TABLE $dst_table ($cols$pk)" >/dev/null
fi

start=$(date +%s.%N)
psql "$src_url" -X -q -v ON_ERROR_STOP=1 -c "\\copy (SELECT * FROM $src_table) TO pstdout (FORMAT binary)" \
  | psql "$dst_url" -X -q -v ON_ERROR_STOP=1 -c "\\copy $dst_table FROM pstdin (FORMAT binary)"
end=$(date +%s.%N)

rows=$(q "$dst_url" "SELECT count(*) FROM $dst_table")
awk -v r="$rows" -v s="$start" -v e="$end" 'BEGIN { printf "psql_copy_pipe rows=%d seconds=%.2f rows_per_s=%.0f\n", r, e - s, r / (e - s) }'
