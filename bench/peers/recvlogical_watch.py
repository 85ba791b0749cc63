#!/usr/bin/env python3
"""Times pg_recvlogical (bench/peers/pg_recvlogical.sh): watches its OUTFILE grow, stops once it
holds N row changes, and prints the rate and, given the writer's log, the lag per transaction.

    bench/peers/recvlogical_watch.py OUTFILE N [--writer-log LOG] [--arrivals OUT.csv]
                                     [--table public.bench_cdc] [--poll-ms 1] [--timeout 600]

How: pg_recvlogical writes every pgoutput message with an unbuffered write(2) followed by "\\n",
so the file's size over time is its progress. The watcher only stat()s the file every --poll-ms
(cheap: it must not steal CPU from the peer on a 2-core box) and records (time, size) each time
the size changes. Each time the file has not grown for 0.5 s, it parses what is there (pgoutput
protocol v1: B/C/R/Y/O/I/U/D/T/M messages); when it has N I/U/D messages it stops. Each
message's arrival time is the first sample whose size covers the message's end (resolution
≈ poll interval + scheduler noise). Start OUTFILE empty (or absent) and start the watcher just
before/after pg_recvlogical: bytes already in the file count as arriving at the first sample.

Prints:
    pg_recvlogical changes=N inserts=… updates=… deletes=… txns=… seconds=S changes_per_s=R wall_s=W bytes=B
  seconds/changes_per_s: from the first change's arrival to the Nth's; wall_s: from the watcher's
  start to the Nth change (includes pg_recvlogical's connection and, in backlog mode, nothing else).
and with --writer-log:
    pg_recvlogical lag_ms p50=… p90=… p99=… max=… matched=M/T        (see lag_stats.py)
--arrivals writes marker,seen_us (when the last event carrying each marker arrived).
"""
import argparse
import bisect
import os
import struct
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lag_stats  # noqa: E402


class NeedMore(Exception):
    pass


class Parser:
    """Incremental pgoutput v1 parser over pg_recvlogical's file (message + '\\n' each)."""

    def __init__(self, table):
        self.table = table
        self.marker_col = {}  # relid -> index of column `marker` (or None)
        self.rel_name = {}
        self.counts = {"I": 0, "U": 0, "D": 0, "T": 0, "B": 0, "C": 0}
        self.events = []  # (end_offset, marker or -1) for every I/U/D
        self.pos = 0  # absolute offset of the next unparsed byte

    @staticmethod
    def _cstr(b, p):
        e = b.find(b"\0", p)
        if e < 0:
            raise NeedMore
        return b[p:e].decode(), e + 1

    @staticmethod
    def _need(b, p, n):
        if p + n > len(b):
            raise NeedMore

    def _tuple(self, b, p, want):
        self._need(b, p, 2)
        (ncols,) = struct.unpack_from(">h", b, p)
        p += 2
        val = None
        for i in range(ncols):
            self._need(b, p, 1)
            kind = b[p]
            p += 1
            if kind in (0x74, 0x62):  # 't' text, 'b' binary
                self._need(b, p, 4)
                (ln,) = struct.unpack_from(">i", b, p)
                p += 4
                self._need(b, p, ln)
                if i == want:
                    val = int(b[p:p + ln])
                p += ln
            # 'n' null, 'u' unchanged toast: no data
        return p, val

    def _one(self, b, p):
        """Parse one message at p; return the offset after it (its trailing newline included)."""
        self._need(b, p, 1)
        t = chr(b[p])
        p += 1
        marker = None
        if t == "B":
            self._need(b, p, 20)
            p += 20
        elif t == "C":
            self._need(b, p, 25)
            p += 25
        elif t == "O":
            self._need(b, p, 8)
            _, p = self._cstr(b, p + 8)
        elif t == "R":
            self._need(b, p, 4)
            (relid,) = struct.unpack_from(">I", b, p)
            ns, p = self._cstr(b, p + 4)
            name, p = self._cstr(b, p)
            self._need(b, p, 3)
            (ncols,) = struct.unpack_from(">h", b, p + 1)
            p += 3
            idx = None
            for i in range(ncols):
                self._need(b, p, 1)
                col, p = self._cstr(b, p + 1)
                self._need(b, p, 8)
                p += 8
                if col == "marker":
                    idx = i
            self.rel_name[relid] = f"{ns}.{name}"
            self.marker_col[relid] = idx if (self.table is None or f"{ns}.{name}" == self.table) else None
        elif t == "Y":
            self._need(b, p, 4)
            _, p = self._cstr(b, p + 4)
            _, p = self._cstr(b, p)
        elif t in "IUD":
            self._need(b, p, 5)
            (relid,) = struct.unpack_from(">I", b, p)
            p += 4
            want = self.marker_col.get(relid)
            kind = chr(b[p])
            p += 1
            if t == "U" and kind in "KO":
                p, _ = self._tuple(b, p, None)
                self._need(b, p, 1)
                kind = chr(b[p])
                p += 1
            p, val = self._tuple(b, p, want if t != "D" else None)
            marker = val if val is not None else -1
        elif t == "T":
            self._need(b, p, 5)
            (n,) = struct.unpack_from(">i", b, p)
            p += 5 + 4 * n
            self._need(b, p, 0)
        elif t == "M":
            self._need(b, p, 9)
            _, p = self._cstr(b, p + 9)
            self._need(b, p, 4)
            (ln,) = struct.unpack_from(">i", b, p)
            p += 4 + ln
            self._need(b, p, 0)
        else:
            raise ValueError(f"unknown pgoutput message {t!r} at offset {self.pos + p - 1}")
        self._need(b, p, 1)
        if b[p] != 0x0A:
            raise ValueError(f"expected newline after {t!r} message at offset {self.pos + p}")
        p += 1
        if t in self.counts:
            self.counts[t] += 1
        return p, t, marker

    def feed(self, b):
        """Parse complete messages of b (bytes from self.pos on); return how many bytes were used."""
        p = 0
        while p < len(b):
            try:
                q, t, marker = self._one(b, p)
            except NeedMore:
                break
            if marker is not None:
                self.events.append((self.pos + q, marker))
            p = q
        self.pos += p
        return p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outfile")
    ap.add_argument("n", type=int)
    ap.add_argument("--writer-log")
    ap.add_argument("--arrivals")
    ap.add_argument("--table", help="only this relation's marker column counts for lag (schema.table)")
    ap.add_argument("--poll-ms", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()

    parser = Parser(a.table)
    times, sizes = [], []  # samples: wall-clock µs, file size
    start_us = time.time_ns() // 1000
    last_growth = time.monotonic()
    deadline = last_growth + a.timeout
    size = 0
    buf = b""
    fh = None
    parsed_at = -1
    while True:
        try:
            s = os.stat(a.outfile).st_size
        except FileNotFoundError:
            s = 0
        now_us = time.time_ns() // 1000
        if s != size:
            times.append(now_us)
            sizes.append(s)
            size = s
            last_growth = time.monotonic()
        idle = time.monotonic() - last_growth
        if idle > 0.5 and size != parsed_at:
            if fh is None:
                fh = open(a.outfile, "rb")
            fh.seek(parser.pos + len(buf))
            buf += fh.read(size - parser.pos - len(buf))
            used = parser.feed(buf)
            buf = buf[used:]
            parsed_at = size
            if len(parser.events) >= a.n:
                break
        if time.monotonic() > deadline:
            sys.exit(f"recvlogical_watch: timeout with {len(parser.events)} of {a.n} changes")
        time.sleep(a.poll_ms / 1000.0)

    def arrival(end_off):
        return times[bisect.bisect_left(sizes, end_off)]

    ev = parser.events[: a.n]
    first, last = arrival(ev[0][0]), arrival(ev[-1][0])
    secs = max(last - first, 1) / 1e6
    c = parser.counts
    print(f"pg_recvlogical changes={len(ev)} inserts={c['I']} updates={c['U']} deletes={c['D']} txns={c['C']} "
          f"seconds={secs:.2f} changes_per_s={len(ev) / secs:.0f} wall_s={(last - start_us) / 1e6:.2f} "
          f"bytes={parser.pos}", flush=True)
    seen = {}
    for off, m in ev:
        if m >= 0:
            seen[m] = arrival(off)
    if a.arrivals:
        with open(a.arrivals, "w") as f:
            f.write("marker,seen_us\n")
            for m, t in sorted(seen.items()):
                f.write(f"{m},{t}\n")
    if a.writer_log:
        print(lag_stats.summary(lag_stats.read_commits(a.writer_log), seen, "pg_recvlogical"), flush=True)


if __name__ == "__main__":
    main()
