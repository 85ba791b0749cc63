#!/usr/bin/env bash
# MariaDB → PostgreSQL, one 12-column table (integers, decimal, double, bool,
# text, datetime, timestamp, date): Weir (`runner`, full load, 1 and 2 key
# ranges) beside pgloader and Sling, in one run, for each row count given
# (default: 10M).
#
#   bench/mysql_to_postgres.sh [ROWS ...]
#
# Needs the release build (built here), PostgreSQL and MariaDB (scripts/services.sh),
# pgloader (Debian: `apt-get install pgloader`) and Sling (PyPI: `pip install
# sling-linux-amd64`; its binary is called directly). A missing peer is skipped.
# pgloader runs with prefetch/batch rows = 25000: with its defaults (100000) it
# exhausts SBCL's 1 GB heap on the 10M-row table ("Heap exhausted, game over").
# Wall time and peak RSS come from GNU time. Results: bench/results/mysql_to_postgres.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rows_list=("$@")
[[ ${#rows_list[@]} -gt 0 ]] || rows_list=(10000000)

eval "$(scripts/services.sh postgres mariadb)"
source bench/lib.sh
build_release

fresh_metadata_db weir_bench
mkdir -p bench/results

# One account with a password for every tool (pgloader cannot log in without one).
my() { mariadb -h127.0.0.1 -uroot --default-character-set=utf8mb4 "$@"; }
my -e "CREATE USER IF NOT EXISTS 'bench'@'%' IDENTIFIED BY 'bench';
       CREATE DATABASE IF NOT EXISTS weir_bench_src; GRANT ALL ON weir_bench_src.* TO 'bench'@'%';"
src=mysql://bench:bench@127.0.0.1:3306/weir_bench_src
export WEIR_CONN_OLTP=$src

sling=$(python3 -c 'import sling_linux_amd64, os; print(os.path.join(os.path.dirname(sling_linux_amd64.__file__), "bin", "sling-linux-amd64"))' 2>/dev/null || true)
[[ -x $sling ]] || sling=
command -v pgloader >/dev/null && have_pgloader=yes || have_pgloader=no

results=bench/results/mysql_to_postgres.md
{
  echo "| rows | tool | seconds | rows/s | peak RSS (MB) |"
  echo "| ---: | --- | ---: | ---: | ---: |"
} >"$results"
row() { printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(awk -v r="$1" -v s="$3" 'BEGIN{printf "%.0f", r/s}')" "$4" | tee -a "$results"; }
count() { psql -Atq "$db" -c "SELECT count(*) FROM $1"; }
check() { [[ $(count "$1") == "$2" ]] || { echo "$1: row count mismatch" >&2; exit 1; }; }

# The source table, generated once per row count with MariaDB's sequence engine.
source_table() {
  local rows=$1 table=bench_$1
  if [[ $(my -N -e "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'weir_bench_src' AND TABLE_NAME = '$table'") == 0 ]]; then
    echo "generating $rows rows in weir_bench_src.$table" >&2
    my weir_bench_src -e "CREATE TABLE ${table}_tmp (
        id BIGINT PRIMARY KEY, user_id INT NOT NULL, chat_id INT NOT NULL, kind TINYINT NOT NULL,
        amount DECIMAL(12,2) NOT NULL, score DOUBLE NOT NULL, flag BOOL NOT NULL, title VARCHAR(64) NOT NULL,
        body VARCHAR(255) NULL, created_at DATETIME(6) NOT NULL, updated_at TIMESTAMP(6) NULL, day DATE NOT NULL
      ) CHARACTER SET utf8mb4"
    local start=1 step=1000000
    while (( start <= rows )); do
      local end=$(( start + step - 1 )); (( end <= rows )) || end=$rows
      my weir_bench_src -e "INSERT INTO ${table}_tmp SELECT seq, seq % 100000, seq % 5000, seq % 7,
          (seq % 1000000) / 100, seq / 3.0, seq % 2, CONCAT('title ', seq),
          IF(seq % 10 = 0, NULL, CONCAT('message body for row ', seq, ', with a few more words 👋')),
          TIMESTAMP('2025-01-01') + INTERVAL seq SECOND + INTERVAL (seq % 1000) MICROSECOND,
          TIMESTAMP('2025-01-01') + INTERVAL seq * 2 SECOND, DATE('2025-01-01') + INTERVAL (seq % 365) DAY
        FROM seq_${start}_to_${end}"
      start=$(( end + 1 ))
    done
    my weir_bench_src -e "RENAME TABLE ${table}_tmp TO $table; ANALYZE TABLE $table" >/dev/null
  fi
}

for rows in "${rows_list[@]}"; do
  source_table "$rows"
  table=bench_$rows
  psql -q "$db" -c "DELETE FROM controller; DROP SCHEMA IF EXISTS bench CASCADE; DROP SCHEMA IF EXISTS _weir CASCADE;
    DROP SCHEMA IF EXISTS bench_pgloader CASCADE; DROP SCHEMA IF EXISTS bench_sling CASCADE; CREATE SCHEMA bench;
    INSERT INTO controller (name, source_type, source_connection, source_table, schema_name, destination_table, load_type, options)
    VALUES ('weir_1', 'mysql', 'oltp', '$table', 'bench', 'weir_1', 'full', '{}'),
           ('weir_2', 'mysql', 'oltp', '$table', 'bench', 'weir_2', 'full', '{\"parallelism\": 2}');"

  # Weir: a full load in one consistent snapshot (TRUNCATE + binary COPY in one transaction).
  read -r secs rss < <(measure $bin/runner --date 20250323 --pipeline weir_1)
  check bench.weir_1 "$rows"
  row "$rows" "weir (1 range)" "$secs" "$rss"
  read -r secs rss < <(measure $bin/runner --date 20250323 --pipeline weir_2)
  check bench.weir_2 "$rows"
  row "$rows" "weir (2 key ranges)" "$secs" "$rss"
  # The read side alone (read, decode, count; no sink): where key ranges pay on two cores.
  read -r secs rss < <(measure $bin/runner --date 20250323 --pipeline weir_1 --skip-load)
  row "$rows" "weir read only (1 range)" "$secs" "$rss"
  read -r secs rss < <(measure $bin/runner --date 20250323 --pipeline weir_2 --skip-load)
  row "$rows" "weir read only (2 key ranges)" "$secs" "$rss"

  if [[ $have_pgloader == yes ]]; then
    cmd=$(mktemp --suffix=.load)
    cat >"$cmd" <<EOF
LOAD DATABASE
  FROM $src
  INTO ${db/postgres@/postgres@}
  WITH include drop, create tables, create no indexes, no foreign keys, reset no sequences,
       prefetch rows = 25000, batch rows = 25000
  INCLUDING ONLY TABLE NAMES MATCHING '$table'
  ALTER SCHEMA 'weir_bench_src' RENAME TO 'bench_pgloader';
EOF
    read -r secs rss < <(measure pgloader --no-ssl-cert-verification "$cmd")
    check "bench_pgloader.$table" "$rows"
    row "$rows" "pgloader $(pgloader --version | awk 'NR==1{print $3}' | tr -d '"')" "$secs" "$rss"
  fi

  if [[ -n $sling ]]; then
    export SLING_SRC="$src" SLING_TGT="$db?sslmode=disable"
    read -r secs rss < <(measure "$sling" run --src-conn SLING_SRC --src-stream "weir_bench_src.$table" \
      --tgt-conn SLING_TGT --tgt-object "bench_sling.$table" --mode full-refresh)
    check "bench_sling.$table" "$rows"
    row "$rows" "sling $("$sling" --version 2>/dev/null | awk '{print $NF}' | head -1)" "$secs" "$rss"
  fi
done
echo "results in $results" >&2
