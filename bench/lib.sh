# Shared by the bench/ scripts: source it after `cd` to the repository root.

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}
# WEIR_BENCH_PROFILE=debug runs the debug build instead (for a machine without
# the ~40 minutes a clean release build takes; say so next to such figures).
profile=${WEIR_BENCH_PROFILE:-release}
bin=$CARGO_TARGET_DIR/$profile

# Build the binaries (runner, weir-gen) the benchmarks run.
build_release() {
  [[ -n ${WEIR_BENCH_NO_BUILD:-} ]] && return 0 # WEIR_BENCH_NO_BUILD=1: run the binary already built
  if [[ $profile == debug ]]; then
    cargo build --quiet --locked -p weir-runner -p weir-testkit
  else
    cargo build --quiet --release --locked -p weir-runner -p weir-testkit
  fi
}

# fresh_metadata_db NAME: a new PostgreSQL database NAME with Weir's metadata tables;
# sets db (its URL) and WEIR_DATABASE_URL.
fresh_metadata_db() {
  db=${WEIR_TEST_PG_URL%/*}/$1
  psql "$WEIR_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
  export WEIR_DATABASE_URL=$db
  $bin/runner init >/dev/null
}

# measure CMD...: run it, print "seconds peak_rss_mb" (GNU time); its stdout is dropped.
measure() {
  local out; out=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$out" "$@" >/dev/null 2>"$out.err" || { cat "$out.err" >&2; return 1; }
  awk '{printf "%.1f %.0f\n", $1, $2/1024}' "$out"
}

# measure_any CMD...: as measure, whatever the command's exit code (a load expected to fail).
measure_any() {
  local out; out=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$out" "$@" >/dev/null 2>"$out.err" || true
  awk '/^[0-9.]+ [0-9]+$/ {printf "%.1f %.0f\n", $1, $2/1024}' "$out"
}

# Generate `rows` orders into bench/data/orders_<rows>/, one Parquet file per million rows (once).
orders_data() {
  local rows=$1 dir=$PWD/bench/data/orders_$1 files
  files=$(( rows / 1000000 )); (( files >= 1 )) || files=1
  if [[ ! -f $dir/.done ]]; then
    rm -rf "$dir"
    echo "generating $rows rows in $files Parquet files" >&2
    $bin/weir-gen orders --out "$dir" --rows "$rows" --files "$files"
    touch "$dir/.done"
  fi
}

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s; returns 1 if nothing does).
wait_port() {
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# drop_slot SLOT: drop the replication slot once no consumer holds it (a stopped one may take
# a moment to let go); returns 1, saying so, if it is still there after 20 s.
drop_slot() {
  for _ in $(seq 100); do
    psql "$WEIR_TEST_PG_URL" -XAtq -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                                       WHERE slot_name = '$1' AND NOT active" >/dev/null 2>&1 || true
    [[ $(psql "$WEIR_TEST_PG_URL" -XAtq -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$1'") == 0 ]] && return 0
    sleep 0.2
  done
  echo "could not drop replication slot $1 (still active?)" >&2
  return 1
}
