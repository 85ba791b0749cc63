#!/usr/bin/env bash
# Run every test: starts the services the tests need, then the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/services.sh postgres pgplain pgrestart mariadb deltalake smtp dbt clickhouse kafka redis browser)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}
# Tests each make their own database; drop those an earlier run left behind
# (first their replication slots, which would keep a database from being dropped).
psql "$WEIR_TEST_PG_URL" -Atqc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                                WHERE database LIKE 'weir\_t\_%' AND NOT active" >/dev/null
psql "$WEIR_TEST_PG_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'weir\_t\_%'" |
  while read -r db; do psql "$WEIR_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null; done
mariadb -h127.0.0.1 -uroot -N -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'weir\\_t\\_%'" |
  while read -r db; do mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS \`$db\`"; done

cargo test --workspace --locked "$@"
