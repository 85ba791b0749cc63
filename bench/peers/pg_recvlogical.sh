#!/usr/bin/env bash
# Streaming peer: pg_recvlogical on a pgoutput slot — the server's own decoding speed, the upper
# limit for any CDC consumer (issue 16: Weir must reach at least 0.8× its rate). It only decodes
# and appends the raw pgoutput messages to a file; nothing is applied anywhere.
#
#   bench/peers/pg_recvlogical.sh URL SLOT PUBLICATION OUTFILE [TABLE]   # runs until SIGINT (not TERM)
#   bench/peers/pg_recvlogical.sh --create URL SLOT PUBLICATION TABLE    # only create them, then exit
#   bench/peers/pg_recvlogical.sh --drop URL SLOT PUBLICATION            # drop the slot and publication
#   bench/peers/pg_recvlogical.sh --wait URL SLOT LSN [TIMEOUT_S]         # until the slot confirmed LSN
#
#   e.g. bench/peers/pg_recvlogical.sh postgres://postgres@127.0.0.1:5432/weir_peer_cdc \
#            weir_peer_recv weir_peer_pub /tmp/recv.bin public.bench_cdc &
#        bench/peers/recvlogical_watch.py /tmp/recv.bin 1000000 --writer-log /tmp/writer.csv
#
# Creates PUBLICATION (FOR TABLE TABLE; TABLE is needed only then) and the logical slot SLOT
# (plugin pgoutput, via SQL) if they are missing, then execs
#   pg_recvlogical -d URL -S SLOT --start -o proto_version=1 -o publication_names=PUBLICATION \
#                  -f OUTFILE -F 0 -s 1
# -F 0: no fsync of OUTFILE, and the position pg_recvlogical reports as flushed is what it has
# written (with the default -F 10 the slot's confirmed_flush_lsn moves only every 10 s);
# -s 1: a status update every second (default 10 s), so waiting on confirmed_flush_lsn works.
# The slot is created before the stream starts: changes committed after the slot's creation are
# delivered even if pg_recvlogical is started later (backlog mode = pure decoding speed).
# Measure it with recvlogical_watch.py (file growth; rate and lag) or with --wait, which polls
#   SELECT confirmed_flush_lsn >= 'LSN' FROM pg_replication_slots WHERE slot_name = 'SLOT'
# every 0.1 s and prints `slot_confirmed slot=SLOT lsn=LSN seconds=S` (S from --wait's start;
# LSN = final_lsn from change_writer.py's last line; pg_recvlogical confirms at most once a
# second with -s 1, so this is coarse; it works for any consumer that confirms to its slot, e.g.
# Weir's `cdc` load, which confirms only after its destination commit).
# A slot left behind keeps WAL forever: --drop it (the slot must be inactive: stop the peer first).
# pg_recvlogical ships in Debian's postgresql-client-15 (/usr/bin/pg_recvlogical, also
# /usr/lib/postgresql/15/bin/pg_recvlogical). Peak RSS: run this under `/usr/bin/time -f %M`.
set -euo pipefail
# /usr/bin/pg_recvlogical is Debian's perl pg_wrapper: call the real binary directly.
bin=/usr/lib/postgresql/15/bin/pg_recvlogical
[[ -x $bin ]] || bin=$(command -v pg_recvlogical)
q() { psql "$url" -X -q -v ON_ERROR_STOP=1 -At -c "$1"; }

if [[ ${1:-} == --drop ]]; then
  [[ $# -eq 4 ]] || { sed -n '2,32p' "$0" >&2; exit 2; }
  url=$2 slot=$3 pub=$4
  q "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$slot'" >/dev/null
  q "DROP PUBLICATION IF EXISTS $pub"
  exit 0
fi
if [[ ${1:-} == --wait ]]; then
  [[ $# -ge 4 ]] || { sed -n '2,32p' "$0" >&2; exit 2; }
  url=$2 slot=$3 lsn=$4 timeout=${5:-600}
  start=$(date +%s.%N)
  until [[ $(q "SELECT coalesce(bool_or(confirmed_flush_lsn >= '$lsn'), false) FROM pg_replication_slots WHERE slot_name = '$slot'") == t ]]; do
    if awk -v s="$start" -v e="$(date +%s.%N)" -v t="$timeout" 'BEGIN { exit !(e - s > t) }'; then
      echo "slot $slot has not confirmed $lsn after $timeout s" >&2; exit 1
    fi
    sleep 0.1
  done
  awk -v s="$start" -v e="$(date +%s.%N)" -v sl="$slot" -v l="$lsn" 'BEGIN { printf "slot_confirmed slot=%s lsn=%s seconds=%.2f\n", sl, l, e - s }'
  exit 0
fi
create_only=no
if [[ ${1:-} == --create ]]; then
  [[ $# -eq 5 ]] || { sed -n '2,32p' "$0" >&2; exit 2; }
  create_only=yes url=$2 slot=$3 pub=$4 table=$5
else
  [[ $# -ge 4 && $# -le 5 ]] || { sed -n '2,32p' "$0" >&2; exit 2; }
  url=$1 slot=$2 pub=$3 out=$4 table=${5:-}
fi

if [[ $(q "SELECT count(*) FROM pg_publication WHERE pubname = '$pub'") == 0 ]]; then
  [[ -n $table ]] || { echo "publication $pub does not exist: give TABLE to create it" >&2; exit 2; }
  q "CREATE PUBLICATION $pub FOR TABLE $table"
fi
if [[ $(q "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot'") == 0 ]]; then
  q "SELECT pg_create_logical_replication_slot('$slot', 'pgoutput')" >/dev/null
fi
[[ $create_only == no ]] || exit 0
exec "$bin" -d "$url" -S "$slot" --start -o proto_version=1 -o "publication_names=$pub" \
  -f "$out" -F 0 -s 1 --no-loop
