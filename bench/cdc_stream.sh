#!/usr/bin/env bash
# Change data capture, PostgreSQL → PostgreSQL: Weir's `runner stream` (load_type `cdc`, a mirror
# of public.bench_cdc) beside pg_recvlogical (the server's own decoding speed; applies nothing)
# and Debezium's embedded engine (counts events; applies nothing), in one run, on N changes from
# bench/peers/change_writer.py (60% inserts / 30% updates / 10% deletes, 100 per transaction).
#
#   bench/cdc_stream.sh [N] [RATE]        defaults: 1000000 10000
#   e.g. WEIR_BENCH_NO_BUILD=1 WEIR_BENCH_PROFILE=debug bench/cdc_stream.sh 20000 2000   # a quick check
#
# Two modes per tool, each from a fresh table (10,000 seed rows), slot and publication:
# - backlog (the rate): the slot exists, the writer makes N changes unthrottled with no consumer
#   running, then the consumer starts and drains them. Weir: its first run (`runner --date`)
#   takes the snapshot and creates slot + publication; then the writer; then `runner stream`
#   starts, and the clock runs from its launch (process start included) until the destination
#   commit whose `_weir.commits.watermark` >= the writer's final_lsn. The peers: as in
#   bench/peers/trial_cdc.sh (their rate runs from the first event to the Nth; Debezium's JVM start
#   excluded). changes/s = N / seconds.
# - live (the lag): the consumer streams first, then the writer makes N changes at RATE/s; lag per
#   source transaction = when the consumer had it − its commit time (writer's clock after COMMIT
#   returned), p50/p99 via bench/peers/lag_stats.py. For Weir, "had it" = when the destination
#   commit that contains it became visible: before `runner stream` starts, a deferred constraint
#   trigger on the destination's `_weir.commits` logs (watermark::pg_lsn, clock_timestamp()) at
#   each commit, i.e. at COMMIT time, one WAL flush (~2 ms) before it is visible. A Weir commit
#   with watermark W holds exactly the transactions whose commit record is before W; the writer
#   (--log-lsn) logs each transaction's pg_current_wal_insert_lsn() read just before its COMMIT, a
#   lower bound of that commit record's LSN, so transaction m arrived at the first logged commit
#   whose watermark > its lsn (off only when a Weir cycle starts inside the writer's COMMIT round
#   trip, ~0.3 ms of every commit_interval). Polling max(marker) in the mirror would instead scan a
#   growing, unindexed table on the same 2 cores. (Checked once, 20k changes at 2k/s: a poller of
#   max(marker) every 5 ms put every transaction in the same commit, 4–31 ms later: its period,
#   its scan, the flush.) live changes/s = N / (writer start → last
#   change applied, or seen by a peer) ≈ the writer's rate for any consumer that keeps up.
#   Live runs longer than 2 × SKIP_FIRST (default 20) s get a second lag row without the
#   transactions of the first SKIP_FIRST s (Debezium's JIT warm-up; bench/peers/README.md trap 11).
# Peak RSS: GNU time %M of the consumer process (`runner`, pg_recvlogical, the JVM).
# Weir's mirror is checked against the source at the end of each Weir run (row count and a hash of
# every row's text); a difference is reported in the table's note column, not hidden.
#
# Environment: PEERS (default "recvlogical debezium"; PEERS=0 or "" runs Weir alone), MODES (default
# "backlog live"; MODES=backlog for the rates alone), COMMIT_INTERVAL
# (Weir's options.commit_interval, default 200ms), WEIR_CDC_OPTIONS (more JSON members for Weir's
# options, e.g. '"history": true' or '"commit_rows": 100000'), DBZ_ARGS (key=value for Debezium),
# JAVA_OPTS (the JVM's; defaults otherwise), TIMEOUT (s per drain, default 1800), KEEP=1 (keep the
# databases), WEIR_BENCH_PROFILE=debug / WEIR_BENCH_NO_BUILD=1 (bench/lib.sh).
# Databases: weir_bench_cdc_src (source), weir_bench_cdc_dst (Weir's destination), weir_bench_cdc
# (Weir's metadata); slots weir_bench_cdc / weir_bench_recv / weir_bench_dbz, publication
# weir_bench_pub: all dropped at the end (slots first), whatever happened. Needs wal_level=logical
# (scripts/services.sh sets it), Java 17 and the Debezium jars (fetched once by the peer's run.sh).
# Results: bench/results/cdc_stream.md (and stdout); logs of every phase in a /tmp/weir_bench_cdc.*
# directory named at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000} rate=${2:-10000}
peers=${PEERS-"recvlogical debezium"}
modes=${MODES:-"backlog live"}
[[ $peers != 0 ]] || peers=""
skip_first=${SKIP_FIRST:-20} timeout=${TIMEOUT:-1800}
interval=${COMMIT_INTERVAL:-200ms}

eval "$(scripts/services.sh postgres)"
source bench/lib.sh
build_release

server=${WEIR_TEST_PG_URL%/*}
src=$server/weir_bench_cdc_src dst=$server/weir_bench_cdc_dst
table=public.bench_cdc pub=weir_bench_pub
slots=(weir_bench_cdc weir_bench_recv weir_bench_dbz)
peer=bench/peers
tmp=$(mktemp -d /tmp/weir_bench_cdc.XXXX)
export WEIR_CONN_SRC=$src WEIR_CONN_DST=$dst

q() { psql "$1" -XAtq -v ON_ERROR_STOP=1 -c "$2"; } # URL SQL
[[ $(q "$WEIR_TEST_PG_URL" "SHOW wal_level") == logical ]] || { echo "wal_level is not logical" >&2; exit 1; }
now_us() { date +%s%6N; }

# Background processes: every one this script starts is a job of this shell; `stop` ends one with
# its descendants (runner under GNU time, the JVM under run.sh under time), by process id.
kill_tree() { # SIGNAL PID
  local child
  for child in $(pgrep -P "$2" || true); do kill_tree "$1" "$child"; done
  kill -"$1" "$2" 2>/dev/null || true
}
stop() { # PID [SIGNAL]: signal it, wait up to 15 s, then KILL
  kill -0 "$1" 2>/dev/null || return 0
  kill_tree "${2:-TERM}" "$1"
  for _ in $(seq 150); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$1" 2>/dev/null && kill_tree KILL "$1"
  wait "$1" 2>/dev/null || true
}
cleanup() {
  set +e
  for p in $(jobs -p); do stop "$p"; done
  for s in "${slots[@]}"; do drop_slot "$s"; done
  psql "$src" -XAtq -c "DROP PUBLICATION IF EXISTS $pub" >/dev/null 2>&1
  if [[ ${KEEP:-0} != 1 ]]; then
    for d in weir_bench_cdc_src weir_bench_cdc_dst weir_bench_cdc; do
      psql "$WEIR_TEST_PG_URL" -Xq -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" || echo "could not drop database $d" >&2
    done
  fi
  rm -f "$tmp"/*.bin
}
trap cleanup EXIT

for s in "${slots[@]}"; do drop_slot "$s"; done # a database with a slot cannot be dropped
psql "$WEIR_TEST_PG_URL" -Xq -c "DROP DATABASE IF EXISTS weir_bench_cdc_src WITH (FORCE)" -c "CREATE DATABASE weir_bench_cdc_src"

fresh() { # SLOT: a new table with 10,000 seed rows; no slot, no publication yet (trap 7 of the README)
  drop_slot "$1"
  q "$src" "DROP PUBLICATION IF EXISTS $pub"
  $peer/change_writer.py "$src" $table --setup 10000 >/dev/null
  q "$src" "CHECKPOINT"
}
wait_active() { # SLOT: until a consumer streams from it
  for _ in $(seq 300); do
    [[ $(q "$src" "SELECT active FROM pg_replication_slots WHERE slot_name = '$1'") == t ]] && return
    sleep 0.2
  done
  echo "slot $1 never became active" >&2; return 1
}
field() { sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" "$1" | head -1; } # FILE KEY: from `name key=value …` lines
rss_mb() { awk '/^[0-9]+$/ { m = $1 } END { if (m) printf "%d", m / 1024; else printf "?" }' "$1"; }

mkdir -p bench/results
results=bench/results/cdc_stream.md
{
  echo "| tool | mode | changes | seconds | changes/s | lag p50 ms | lag p99 ms | peak RSS MB | note |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
} >"$results"
{ echo; cat "$results"; } # the header on stdout too
row() { local out="|" cell; for cell in "$@"; do out+=" $cell |"; done; echo "$out" | tee -a "$results"; }
declare -A got # figures the targets line needs: got[weir_backlog_rate], got[weir_live_p99], …
lag_rows() { # KEY TOOL WRITER_LOG ARRIVALS CHANGES SECONDS RATE RSS NOTE: the live row(s)
  local key=$1 line; shift
  line=$(python3 $peer/lag_stats.py "$2" "$3" --name "$1")
  echo "$line" >&2
  row "$1" "live $rate/s" "$4" "$5" "$6" "$(echo "$line" | sed -n 's/.* p50=\([^ ]*\).*/\1/p')" \
    "$(echo "$line" | sed -n 's/.* p99=\([^ ]*\).*/\1/p')" "$7" "$8; matched $(echo "$line" | sed -n 's/.* matched=\([^ ]*\).*/\1/p')"
  got[${key}_live_p99]=$(echo "$line" | sed -n 's/.* p99=\([^ ]*\).*/\1/p')
  if awk -v s="$5" -v k="$skip_first" 'BEGIN { exit !(s > 2 * k) }'; then
    line=$(python3 $peer/lag_stats.py "$2" "$3" --name "$1" --skip-first "$skip_first")
    echo "$line (first $skip_first s dropped)" >&2
    row "$1" "live, first $skip_first s dropped" "–" "–" "–" "$(echo "$line" | sed -n 's/.* p50=\([^ ]*\).*/\1/p')" \
      "$(echo "$line" | sed -n 's/.* p99=\([^ ]*\).*/\1/p')" "–" "same run"
  fi
}

# ---------------------------------------------------------------- Weir
weir_options="{\"slot\": \"weir_bench_cdc\", \"publication\": \"$pub\", \"commit_interval\": \"$interval\"${WEIR_CDC_OPTIONS:+, $WEIR_CDC_OPTIONS}}"
history=no
[[ $weir_options =~ \"history\":[[:space:]]*true ]] && history=yes

weir_fresh() { # LOGPREFIX: new table, destination and metadata; the snapshot; the commit log trigger
  fresh weir_bench_cdc
  psql "$WEIR_TEST_PG_URL" -Xq -c "DROP DATABASE IF EXISTS weir_bench_cdc_dst WITH (FORCE)" -c "CREATE DATABASE weir_bench_cdc_dst"
  fresh_metadata_db weir_bench_cdc
  q "$db" "INSERT INTO controller (name, source_type, source_connection, source_table, destination_type,
                                   destination_connection, schema_name, destination_table, load_type, options)
           VALUES ('bench_cdc', 'postgres', 'src', '$table', 'postgres', 'dst', 'bench', 'cdc_mirror', 'cdc',
                   '$weir_options')"
  # The first run: publication, slot, and the 10,000 rows at its consistent point.
  "$bin/runner" --date 20250323 --no-progress --pipeline bench_cdc >"$1.snapshot" 2>&1 \
    || { cat "$1.snapshot" >&2; echo "Weir's snapshot run failed" >&2; return 1; }
  # Every destination commit from now on logs its watermark and the time of its COMMIT.
  q "$dst" "CREATE TABLE public.weir_bench_commit_log (watermark pg_lsn, seen timestamptz NOT NULL);
            CREATE FUNCTION public.weir_bench_log_commit() RETURNS trigger LANGUAGE plpgsql AS \$\$
            BEGIN
              INSERT INTO public.weir_bench_commit_log VALUES (NEW.watermark::pg_lsn, clock_timestamp());
              RETURN NULL;
            END \$\$;
            CREATE CONSTRAINT TRIGGER weir_bench_log_commit AFTER INSERT OR UPDATE ON _weir.commits
              DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.weir_bench_log_commit()"
}
# Until a destination commit has a watermark >= LSN; prints that commit's time (epoch µs).
wait_applied() { # LSN RUNNER_PID RUNNER_LOG
  local start; start=$(date +%s)
  until [[ $(q "$dst" "SELECT coalesce(max(watermark) >= '$1', false) FROM public.weir_bench_commit_log") == t ]]; do
    if ! kill -0 "$2" 2>/dev/null; then
      tail -20 "$3" >&2; echo "runner stream ended before applying everything up to $1" >&2; return 1
    fi
    if (( $(date +%s) - start > timeout )); then
      tail -20 "$3" >&2; echo "Weir did not apply everything up to $1 within $timeout s" >&2; return 1
    fi
    sleep 0.2
  done
  q "$dst" "SELECT (extract(epoch FROM min(seen)) * 1e6)::bigint FROM public.weir_bench_commit_log WHERE watermark >= '$1'"
}
# The mirror holds what the source holds (history: one row per change).
weir_check() {
  if [[ $history == yes ]]; then
    local c; c=$(q "$dst" "SELECT count(*) FROM bench.cdc_mirror WHERE _weir_op IN ('c', 'u', 'd')")
    [[ $c == "$n" ]] && echo "history has the $n changes" || echo "HISTORY HAS $c CHANGES, NOT $n"
    return
  fi
  local sql="SELECT count(*), coalesce(sum(marker), 0), coalesce(sum(hashtext(concat_ws('|', id, marker, account,
               amount, score, label, status, updated_at, payload))::bigint), 0) FROM"
  local want have
  want=$(q "$src" "$sql $table") have=$(q "$dst" "$sql bench.cdc_mirror")
  [[ $want == "$have" ]] && echo "mirror = source" || echo "MIRROR DIFFERS: source $want, mirror $have"
}

run_weir() { # MODE
  local mode=$1 w=$tmp/weir_$1 rp runner t0 end secs check rc=0
  weir_fresh "$w"
  [[ $mode == live ]] || $peer/change_writer.py "$src" $table "$n" --log "$w.writer.csv" >"$w.writer"
  t0=$(now_us)
  /usr/bin/time -o "$w.rss" -f '%M' "$bin/runner" stream --pipeline bench_cdc >"$w.out" 2>"$w.log" &
  rp=$!
  if [[ $mode == live ]]; then
    # Streaming once its first commit is logged; then the writer, paced.
    local ready=no
    for _ in $(seq 300); do
      [[ $(q "$dst" "SELECT count(*) > 0 FROM public.weir_bench_commit_log") == t ]] && { ready=yes; break; }
      kill -0 $rp 2>/dev/null || break
      sleep 0.1
    done
    [[ $ready == yes ]] || { tail -20 "$w.log" >&2; echo "runner stream made no commit within 30 s" >&2; return 1; }
    t0=$(now_us)
    $peer/change_writer.py "$src" $table "$n" --rate "$rate" --log "$w.writer.csv" --log-lsn >"$w.writer"
  fi
  end=$(wait_applied "$(field "$w.writer" final_lsn)" $rp "$w.log")
  runner=$(pgrep -P $rp) || true
  [[ -z $runner ]] || kill -TERM "$runner" # SIGTERM: commit what is under way, exit 0
  for _ in $(seq 600); do kill -0 $rp 2>/dev/null || break; sleep 0.1; done
  if kill -0 $rp 2>/dev/null; then
    echo "runner stream still running 60 s after SIGTERM: killed" >&2
    kill_tree KILL $rp
  fi
  wait $rp || rc=$?
  [[ $rc == 0 ]] || { tail -20 "$w.log" >&2; echo "runner stream exited $rc after SIGTERM" >&2; }
  cat "$w.writer" >&2
  secs=$(awk -v a="$t0" -v b="$end" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')
  check=$(weir_check)
  echo "weir $mode: $n changes applied in $secs s; $check" >&2
  local note="commit_interval $interval; $check${WEIR_CDC_OPTIONS:+; $WEIR_CDC_OPTIONS}"
  [[ $rc == 0 ]] || note="$note; EXIT $rc AFTER SIGTERM"
  [[ $profile == release ]] || note="$note; $profile build"
  local cps; cps=$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
  if [[ $mode == backlog ]]; then
    got[weir_backlog_rate]=$cps
    row "Weir (runner stream)" backlog "$n" "$secs" "$cps" – – "$(rss_mb "$w.rss")" "$note"
  else
    # transaction m arrived at the first logged commit whose watermark > its lsn
    psql "$dst" -Xq -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE TEMP TABLE w (marker bigint, commit_us bigint, changes int, inserts int, updates int, deletes int, lsn pg_lsn);
\copy w FROM '$w.writer.csv' WITH (FORMAT csv, HEADER true)
\copy (SELECT marker, seen_us FROM (SELECT w.marker, (SELECT (extract(epoch FROM min(l.seen)) * 1e6)::bigint FROM public.weir_bench_commit_log l WHERE l.watermark > w.lsn) AS seen_us FROM w) a WHERE seen_us IS NOT NULL ORDER BY marker) TO '$w.arrivals.csv' WITH (FORMAT csv, HEADER true)
SQL
    lag_rows weir "Weir (runner stream)" "$w.writer.csv" "$w.arrivals.csv" "$n" "$secs" "$cps" "$(rss_mb "$w.rss")" \
      "$note; writer $(field "$w.writer" changes_per_s)/s; $(q "$dst" "SELECT count(*) FROM public.weir_bench_commit_log") destination commits"
  fi
  got[weir_${mode}_rss]=$(rss_mb "$w.rss")
  drop_slot weir_bench_cdc
}

# ---------------------------------------------------------------- pg_recvlogical (as trial_cdc.sh)
run_recvlogical() { # MODE
  local mode=$1 w=$tmp/recv_$1 rp wp t0 secs
  fresh weir_bench_recv
  $peer/pg_recvlogical.sh --create "$src" weir_bench_recv $pub $table
  [[ $mode == live ]] || $peer/change_writer.py "$src" $table "$n" --log "$w.writer.csv" >"$w.writer"
  rm -f "$w.bin"
  /usr/bin/time -o "$w.rss" -f '%M' $peer/pg_recvlogical.sh "$src" weir_bench_recv $pub "$w.bin" 2>"$w.log" &
  rp=$!
  if [[ $mode == live ]]; then
    $peer/recvlogical_watch.py "$w.bin" "$n" --table $table --timeout "$timeout" --arrivals "$w.arrivals.csv" >"$w.out" &
    wp=$!
    wait_active weir_bench_recv
    t0=$(now_us)
    $peer/change_writer.py "$src" $table "$n" --rate "$rate" --log "$w.writer.csv" >"$w.writer"
    wait $wp
  else
    $peer/recvlogical_watch.py "$w.bin" "$n" --table $table --timeout "$timeout" >"$w.out"
  fi
  kill -INT "$(pgrep -P $rp)" 2>/dev/null || true # pg_recvlogical stops cleanly on SIGINT, not SIGTERM
  wait $rp || true
  cat "$w.writer" "$w.out" >&2
  if [[ $mode == backlog ]]; then
    got[recv_backlog_rate]=$(field "$w.out" changes_per_s)
    row pg_recvlogical backlog "$n" "$(field "$w.out" seconds)" "${got[recv_backlog_rate]}" – – "$(rss_mb "$w.rss")" \
      "decodes to a file, applies nothing; wall $(field "$w.out" wall_s) s"
  else
    local last; last=$(tail -1 "$w.arrivals.csv" | cut -d, -f2)
    secs=$(awk -v a="$t0" -v b="$last" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')
    lag_rows recv pg_recvlogical "$w.writer.csv" "$w.arrivals.csv" "$n" "$secs" \
      "$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')" "$(rss_mb "$w.rss")" \
      "writer $(field "$w.writer" changes_per_s)/s"
  fi
  $peer/pg_recvlogical.sh --drop "$src" weir_bench_recv $pub
}

# ---------------------------------------------------------------- Debezium (as trial_cdc.sh)
run_debezium() { # MODE
  local mode=$1 w=$tmp/dbz_$1 dp t0 secs
  fresh weir_bench_dbz
  $peer/pg_recvlogical.sh --create "$src" weir_bench_dbz $pub $table
  # shellcheck disable=SC2206 # DBZ_ARGS: key=value words
  local args=(--url "$src" --table "$table" --slot weir_bench_dbz --publication "$pub" --expect "$n"
              --arrivals "$w.arrivals.csv" --timeout "$timeout" ${DBZ_ARGS:-})
  if [[ $mode == live ]]; then
    $peer/debezium/run.sh "${args[@]}" >"$w.out" 2>"$w.err" &
    dp=$!
    wait_active weir_bench_dbz
    sleep 2 # the engine is streaming once its slot is active; give it a moment more
    t0=$(now_us)
    $peer/change_writer.py "$src" $table "$n" --rate "$rate" --log "$w.writer.csv" >"$w.writer"
    wait $dp || { cat "$w.err" >&2; return 1; }
  else
    $peer/change_writer.py "$src" $table "$n" --log "$w.writer.csv" >"$w.writer"
    $peer/debezium/run.sh "${args[@]}" >"$w.out" 2>"$w.err" || { cat "$w.err" >&2; return 1; }
  fi
  cat "$w.writer" "$w.out" >&2
  local note="JAVA_OPTS=${JAVA_OPTS:-(defaults)}${DBZ_ARGS:+; $DBZ_ARGS}"
  if [[ $mode == backlog ]]; then
    got[dbz_backlog_rate]=$(field "$w.out" changes_per_s)
    row "Debezium 3.6.3 (embedded)" backlog "$n" "$(field "$w.out" seconds)" "${got[dbz_backlog_rate]}" – – \
      "$(field "$w.out" peak_rss_mb)" "$note; counts events, applies nothing; + $(field "$w.out" startup_s) s JVM/engine start"
  else
    local last; last=$(tail -1 "$w.arrivals.csv" | cut -d, -f2)
    secs=$(awk -v a="$t0" -v b="$last" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')
    lag_rows dbz "Debezium 3.6.3 (embedded)" "$w.writer.csv" "$w.arrivals.csv" "$n" "$secs" \
      "$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')" "$(field "$w.out" peak_rss_mb)" \
      "$note; writer $(field "$w.writer" changes_per_s)/s"
  fi
  $peer/pg_recvlogical.sh --drop "$src" weir_bench_dbz $pub
}

for mode in $modes; do run_weir "$mode"; done
for p in $peers; do
  for mode in $modes; do
    case $p in
      recvlogical) run_recvlogical "$mode" ;;
      debezium) run_debezium "$mode" ;;
      *) echo "unknown peer $p (PEERS: recvlogical, debezium)" >&2; exit 2 ;;
    esac
  done
done

ratio() { # A B: A/B, or "n/a"
  awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a > 0 && b > 0) printf "%.2f×", a / b; else printf "n/a" }'
}
max_rss=$(awk -v a="${got[weir_backlog_rss]:-}" -v b="${got[weir_live_rss]:-}" 'BEGIN { printf "%s", (a + 0 > b + 0 ? a : b) }')
{
  echo
  echo "Targets (issue 16): Weir ≥ 0.8× pg_recvlogical's rate (here $(ratio "${got[weir_backlog_rate]:-}" "${got[recv_backlog_rate]:-}"))," \
       "≥ 3× Debezium's (here $(ratio "${got[weir_backlog_rate]:-}" "${got[dbz_backlog_rate]:-}")), p99 < 2 s at 10k/s into" \
       "PostgreSQL (here ${got[weir_live_p99]:-n/a} ms at $rate/s), RSS < 200 MB (here $max_rss MB)."
  echo
  echo "$n changes (change_writer.py: 60% inserts / 30% updates / 10% deletes, 100 per transaction, 10,000 seed rows);" \
       "live at $rate changes/s; Weir's $profile build, options $weir_options; $(nproc) cores, load average" \
       "$(cut -d' ' -f1-3 /proc/loadavg) at the end; $(date -u +%Y-%m-%dT%H:%MZ). Backlog lag is catch-up time, not shown." \
       "Logs: $tmp"
} | tee -a "$results"
