#!/usr/bin/env bash
# Snapshot peer: Sling (slingdata.io), PostgreSQL → PostgreSQL, full-refresh copy of one table
# (issue 16: Weir must be at least 3× faster).
#
#   bench/peers/sling_pg_to_pg.sh SRC_URL SRC_TABLE DST_URL DST_TABLE
#   e.g. bench/peers/sling_pg_to_pg.sh postgres://postgres@127.0.0.1:5432/weir_peer_src public.bench_snap \
#                                      postgres://postgres@127.0.0.1:5432/weir_peer_dst public.bench_sling
#
# Install (once, done here if missing): a venv under ~/.cache/weir/peers/sling-venv with the PyPI
# package `sling-linux-amd64==1.4.11`, which carries the Go binary itself
# (…/site-packages/sling_linux_amd64/bin/sling-linux-amd64). Do NOT use the PyPI package `sling`
# (1.6.x): it is a wrapper that downloads the binary from GitHub on first use, which fails offline.
# SLING_BIN=/path/to/sling overrides the binary.
#
# What Sling does in full-refresh mode (its default, untuned): reads with one SELECT, COPYs into
# DST_TABLE_tmp, then drops/recreates DST_TABLE and INSERT … SELECTs the rows from the temp table
# (the data is written twice), and drops the temp table. DST_TABLE is recreated by Sling:
# numeric(12,2) becomes numeric, NOT NULL and the primary key are not carried over.
# Prints one line on stdout:  sling rows=N seconds=S rows_per_s=R   (Sling's own log goes to stderr)
# Peak RSS: wrap it in `/usr/bin/time -f %M` (KB).
set -euo pipefail
[[ $# -eq 4 ]] || { sed -n '2,21p' "$0" >&2; exit 2; }
src_url=$1 src_table=$2 dst_url=$3 dst_table=$4
cache=${WEIR_PEERS_CACHE:-$HOME/.cache/weir/peers}
venv=$cache/sling-venv
if [[ -z ${SLING_BIN:-} ]]; then
  SLING_BIN=$(ls "$venv"/lib/python3*/site-packages/sling_linux_amd64/bin/sling-linux-amd64 2>/dev/null | head -1 || true)
  if [[ -z $SLING_BIN ]]; then
    echo "installing sling-linux-amd64==1.4.11 into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q sling-linux-amd64==1.4.11 >&2
    SLING_BIN=$(ls "$venv"/lib/python3*/site-packages/sling_linux_amd64/bin/sling-linux-amd64 | head -1)
  fi
fi

# Sling takes connections by name from the environment; keep its home (~/.sling) in the cache.
export SLING_HOME_DIR=$cache/sling-home SLING_DISABLE_TELEMETRY=true
export WEIR_PEER_SRC=$src_url WEIR_PEER_DST=$dst_url
mkdir -p "$SLING_HOME_DIR"

start=$(date +%s.%N)
"$SLING_BIN" run --src-conn WEIR_PEER_SRC --src-stream "$src_table" \
  --tgt-conn WEIR_PEER_DST --tgt-object "$dst_table" --mode full-refresh >&2
end=$(date +%s.%N)

rows=$(psql "$dst_url" -X -At -c "SELECT count(*) FROM $dst_table")
awk -v r="$rows" -v s="$start" -v e="$end" 'BEGIN { printf "sling rows=%d seconds=%.2f rows_per_s=%.0f\n", r, e - s, r / (e - s) }'
