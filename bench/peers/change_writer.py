#!/usr/bin/env python3
"""Streaming-benchmark writer: makes N row changes in a PostgreSQL table, for the CDC peers
(pg_recvlogical, Debezium) and Weir's `cdc` load to capture, and logs when each transaction
committed, so a consumer's lag (source commit -> seen/visible downstream) can be computed.

    # once, BEFORE the slot exists (else the seed rows are captured too):
    bench/peers/change_writer.py URL TABLE --setup 10000
    # the run the consumers measure:
    bench/peers/change_writer.py URL TABLE N [--rate R] [--txn-size 100] [--log FILE [--log-lsn]] [--seed S]

  e.g. bench/peers/change_writer.py postgres://postgres@127.0.0.1:5432/weir_peer_cdc public.bench_cdc \
           1000000 --rate 10000 --log /tmp/writer.csv

What it measures: nothing by itself; it is the load. N changes = N row events in the WAL:
60% INSERTs, 30% UPDATEs by primary key, 10% DELETEs by primary key (of rows that exist), in
transactions of --txn-size changes (default 100; the last may be smaller).
Default: each transaction is one multi-row DELETE (id = ANY(...)) and one multi-row UPDATE
(distinct ids, id = ANY(...)) in random order, then one multi-row INSERT ... SELECT FROM
generate_series (new values drawn on the server): still one WAL record, hence one
pgoutput/Debezium event, per row. --per-row instead sends one statement per change, shuffled
within the transaction (pipelined; ~6-11k changes/s here, not enough to drive 10k/s with
headroom). Either way the LAST change of every transaction is an INSERT: a DELETE event carries
only the key under the default replica identity, so this guarantees that every transaction ends
with an event carrying its marker. One connection, one transaction at a time; the commit's
fsync (~2 ms on this VM) bounds it: ~17-33k changes/s batched here.
--rate R caps the pace at R changes/s (transactions are spread evenly; 0 = as fast as it can).

The table (created by --setup; --setup drops it first, then inserts ROWS seed rows with marker 0):

    id          bigint PRIMARY KEY      -- new ids count up from max(id)+1
    marker      bigint NOT NULL         -- the transaction's number: every INSERT and UPDATE in
                                        -- transaction k sets marker = k; k counts up from
                                        -- max(marker)+1, so markers rise in commit order
    account     integer NOT NULL
    amount      numeric(12,2) NOT NULL
    score       double precision
    label       text NOT NULL           -- ~30 chars
    status      text NOT NULL
    updated_at  timestamptz NOT NULL DEFAULT now()
    payload     jsonb

Outputs:
  --log FILE (CSV, header `marker,commit_us,changes,inserts,updates,deletes`): one line per
    transaction; commit_us = client clock (Unix epoch, microseconds) right after COMMIT returned.
    --log-lsn adds a column `lsn`: pg_current_wal_insert_lsn() read as the transaction's last
    statement before COMMIT (one more round trip per transaction), a lower bound of its commit
    record's LSN that only the COMMIT round trip separates from it. A consumer that confirms
    positions (Weir's watermark: "every transaction whose commit record is before it") had the
    transaction at its first position > lsn (bench/cdc_stream.sh uses it for Weir's lag).
    A consumer that notes, per marker, when it had the transaction (epoch µs, same machine clock)
    gets lag = seen_us - commit_us; bench/peers/lag_stats.py does the join and the percentiles.
    (A streaming consumer can see a commit a few µs *before* the client gets COMMIT's reply:
    tiny negative lags are real, not a bug.)
  stdout, one line at the end:
    change_writer changes=N txns=T seconds=S changes_per_s=R first_marker=A last_marker=B final_lsn=X/Y
    final_lsn = pg_current_wal_lsn() right after the last commit: once the consumer's slot has
    confirmed_flush_lsn >= final_lsn it has everything (pg_recvlogical.sh --wait polls that;
    pg_recvlogical also confirms keepalive positions, so it gets there on an idle server too).
"""
import argparse
import contextlib
import json
import random
import sys
import time

import psycopg

DDL = """
CREATE TABLE {t} (
    id          bigint PRIMARY KEY,
    marker      bigint NOT NULL,
    account     integer NOT NULL,
    amount      numeric(12,2) NOT NULL,
    score       double precision,
    label       text NOT NULL,
    status      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    payload     jsonb
)"""
STATUSES = ["new", "paid", "shipped", "returned", "closed"]


def row_values(rng, i, marker):
    return (
        i,
        marker,
        rng.randrange(1, 100_000),
        round(rng.uniform(0, 99_999), 2),
        None if rng.random() < 0.05 else rng.random() * 1000,
        f"order-{i:012d}-{rng.getrandbits(40):010x}"[:30],
        rng.choice(STATUSES),
        json.dumps({"src": "writer", "n": i % 97, "flag": bool(i & 1)}),
    )


def setup(conn, table, rows):
    ident = psycopg.sql.SQL(table)
    conn.execute(psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
    conn.execute(psycopg.sql.SQL(DDL.replace("{t}", "{}")).format(ident))
    conn.execute(
        psycopg.sql.SQL(
            """INSERT INTO {} (id, marker, account, amount, score, label, status, payload)
               SELECT i, 0, (i * 7) %% 100000, (i %% 100000) / 1.0, i / 3.0,
                      'seed-' || lpad(i::text, 12, '0') || '-' || substr(md5(i::text), 1, 11),
                      'new', jsonb_build_object('src', 'seed', 'n', i %% 97)
               FROM generate_series(1, %s) AS s(i)"""
        ).format(ident),
        (rows,),
    )
    conn.execute(psycopg.sql.SQL("VACUUM ANALYZE {}").format(ident))
    print(f"change_writer setup table={table} rows={rows}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("table", help="schema.table (plain identifiers)")
    ap.add_argument("n", type=int, nargs="?", default=0, help="number of row changes to make")
    ap.add_argument("--rate", type=float, default=0, help="changes per second (0 = unthrottled)")
    ap.add_argument("--txn-size", type=int, default=100)
    ap.add_argument("--log", help="CSV of marker,commit_us,... per transaction")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log-lsn", action="store_true",
                    help="add column lsn to --log: pg_current_wal_insert_lsn() just before each COMMIT")
    ap.add_argument("--per-row", action="store_true",
                    help="one statement per change, interleaved at random (default: one multi-row statement per kind)")
    ap.add_argument("--setup", type=int, metavar="ROWS", help="drop/create TABLE with ROWS seed rows, then exit")
    a = ap.parse_args()

    conn = psycopg.connect(a.url, autocommit=True)
    if a.setup is not None:
        setup(conn, a.table, a.setup)
        return
    if a.n <= 0:
        ap.error("N must be > 0 (or use --setup ROWS)")
    t = psycopg.sql.SQL(a.table)
    if conn.execute("SELECT to_regclass(%s)", (a.table,)).fetchone()[0] is None:
        sys.exit(f"change_writer: {a.table} does not exist: run with --setup ROWS first (before creating the slot)")

    rng = random.Random(a.seed)
    live = [r[0] for r in conn.execute(psycopg.sql.SQL("SELECT id FROM {}").format(t))]
    pos = {v: k for k, v in enumerate(live)}
    next_id, marker = conn.execute(
        psycopg.sql.SQL("SELECT coalesce(max(id), 0) + 1, coalesce(max(marker), 0) + 1 FROM {}").format(t)
    ).fetchone()
    first_marker = marker

    def take_random():
        k = rng.randrange(len(live))
        v = live[k]
        last = live.pop()
        if k < len(live):
            live[k] = last
            pos[last] = k
        del pos[v]
        return v

    ins_sql = psycopg.sql.SQL(
        "INSERT INTO {} (id, marker, account, amount, score, label, status, payload) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    ).format(t)
    upd_sql = psycopg.sql.SQL(
        "UPDATE {} SET marker = %s, amount = %s, score = %s, status = %s, updated_at = now() WHERE id = %s"
    ).format(t)
    del_sql = psycopg.sql.SQL("DELETE FROM {} WHERE id = %s").format(t)
    # batched: one statement per kind and transaction; still one WAL record (one event) per row
    # Values are drawn on the server (random()), so the writer's own CPU stays small.
    ins_many = psycopg.sql.SQL(
        "INSERT INTO {} (id, marker, account, amount, score, label, status, payload) "
        "SELECT i, %s, (random() * 99999)::int + 1, round((random() * 99999)::numeric, 2), "
        "CASE WHEN random() < 0.05 THEN NULL ELSE random() * 1000 END, "
        "'order-' || lpad(i::text, 12, '0') || '-' || substr(md5(random()::text), 1, 11), "
        "(ARRAY['new','paid','shipped','returned','closed'])[1 + (random() * 4)::int], "
        "jsonb_build_object('src', 'writer', 'n', i %% 97, 'flag', i %% 2 = 1) "
        "FROM generate_series(%s::bigint, %s::bigint) AS s(i)"
    ).format(t)
    upd_many = psycopg.sql.SQL(
        "UPDATE {} SET marker = %s, amount = round((random() * 99999)::numeric, 2), score = random() * 1000, "
        "status = (ARRAY['new','paid','shipped','returned','closed'])[1 + (random() * 4)::int], "
        "updated_at = now() WHERE id = ANY(%s::bigint[])"
    ).format(t)
    del_many = psycopg.sql.SQL("DELETE FROM {} WHERE id = ANY(%s::bigint[])").format(t)

    log = open(a.log, "w") if a.log else None
    if log:
        log.write("marker,commit_us,changes,inserts,updates,deletes" + (",lsn" if a.log_lsn else "") + "\n")
    cur = conn.cursor()
    done = txns = 0
    t0 = time.monotonic()
    while done < a.n:
        size = min(a.txn_size, a.n - done)
        n_upd = size * 3 // 10
        n_del = size // 10
        n_ins = size - n_upd - n_del
        counts = {"i": 0, "u": 0, "d": 0}
        if a.per_row:
            ops = ["i"] * (n_ins - 1) + ["u"] * n_upd + ["d"] * n_del
            rng.shuffle(ops)
            ops.append("i")  # every transaction ends with an event that carries its marker
        else:
            ops = ["u", "d"]
            rng.shuffle(ops)
            ops.append("i")
        # per-row: pipelined (many tiny statements); batched: three round trips, cheaper than
        # psycopg's pipeline bookkeeping here. Both exit only once COMMIT has returned.
        with conn.pipeline() if a.per_row else contextlib.nullcontext():
            with conn.transaction():
                if a.per_row:
                    for op in ops:
                        if op != "i" and not live:
                            op = "i"  # empty table: nothing to update or delete yet
                        if op == "i":
                            cur.execute(ins_sql, row_values(rng, next_id, marker))
                            live.append(next_id)
                            pos[next_id] = len(live) - 1
                            next_id += 1
                        elif op == "u":
                            v = live[rng.randrange(len(live))]
                            cur.execute(upd_sql, (marker, round(rng.uniform(0, 99_999), 2), rng.random() * 1000,
                                                  rng.choice(STATUSES), v))
                        else:
                            cur.execute(del_sql, (take_random(),))
                        counts[op] += 1
                else:
                    for op in ops:
                        if op == "u":
                            k = min(n_upd, len(live))
                            if k:
                                cur.execute(upd_many, (marker, rng.sample(live, k)))
                            counts["u"] = k
                        elif op == "d":
                            k = min(n_del, len(live))
                            if k:
                                cur.execute(del_many, ([take_random() for _ in range(k)],))
                            counts["d"] = k
                        else:
                            k = size - counts["u"] - counts["d"]
                            cur.execute(ins_many, (marker, next_id, next_id + k - 1))
                            for j in range(k):
                                live.append(next_id + j)
                                pos[next_id + j] = len(live) - 1
                            next_id += k
                            counts["i"] = k
                if a.log_lsn:  # the last statement: only the COMMIT's own WAL comes after it
                    lsn = cur.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]
        commit_us = time.time_ns() // 1000
        if log:
            log.write(f"{marker},{commit_us},{size},{counts['i']},{counts['u']},{counts['d']}"
                      + (f",{lsn}" if a.log_lsn else "") + "\n")
        done += size
        txns += 1
        marker += 1
        if a.rate > 0:
            ahead = t0 + done / a.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    secs = time.monotonic() - t0
    final_lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    if log:
        log.close()
    print(f"change_writer changes={done} txns={txns} seconds={secs:.2f} changes_per_s={done / secs:.0f} "
          f"first_marker={first_marker} last_marker={marker - 1} final_lsn={final_lsn}", flush=True)


if __name__ == "__main__":
    main()
