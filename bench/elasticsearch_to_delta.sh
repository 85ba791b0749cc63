#!/usr/bin/env bash
# Elasticsearch → Delta: DOCS (default 1M) person_sabt documents in the test kit's
# Elasticsearch server (weir-es, a separate process, 4 primary shards) exported
# by `runner` into a local Delta table with 1, 2 and 4 slices. Per run: wall
# time, documents per second, runner peak RSS, and CPU seconds split between
# Weir (the runner process) and the server. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
eval "$(scripts/services.sh postgres)"
docs=${DOCS:-1000000}
port=${WEIR_BENCH_ES_PORT:-9230}
build_release

$bin/weir-es --listen 127.0.0.1:$port 2>/dev/null &
es=$!
trap 'kill $es 2>/dev/null' EXIT
for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
echo "loading $docs people into the test server" >&2
$bin/weir-gen people --es http://127.0.0.1:$port --people "$docs" --shards 4 >&2
export WEIR_CONN_SEARCH=http://127.0.0.1:$port

fresh_metadata_db weir_bench_es
lake=$(mktemp -d)
export WEIR_LAKE_URI=file://$lake
tck=$(getconf CLK_TCK)
cpu_of() { awk -v t="$tck" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }

printf '%-7s %8s %10s %8s %14s %14s\n' slices seconds docs/s rss_mb weir_cpu_s/M server_cpu_s/M
for slices in 1 2 4; do
  psql -q "$WEIR_DATABASE_URL" -c "INSERT INTO controller (name, source_type, source_connection, source_table,
      destination_type, schema_name, destination_table, load_type, options)
    VALUES ('es_$slices', 'elasticsearch', 'search', 'person_sabt', 'delta', 'bench', 'person_$slices', 'full',
      '{\"slices\": $slices, \"array_fields\": [\"phones\"]}')"
  before=$(cpu_of $es)
  out=$(mktemp)
  /usr/bin/time -f '%e %M %U %S' -o "$out" $bin/runner --date 20250323 --pipeline "es_$slices" >/dev/null 2>"$out.err" ||
    { cat "$out.err" >&2; exit 1; }
  after=$(cpu_of $es)
  read -r secs rss user sys <"$out"
  awk -v s="$slices" -v e="$secs" -v r="$rss" -v u="$user" -v y="$sys" -v b="$before" -v a="$after" -v n="$docs" \
    'BEGIN { m = n / 1e6; printf "%-7s %8.1f %10.0f %8.0f %14.2f %14.2f\n", s, e, n / e, r / 1024, (u + y) / m, (a - b) / m }'
done
rm -rf "$lake"
