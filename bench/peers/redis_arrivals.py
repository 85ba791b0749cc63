#!/usr/bin/env python3
"""Arrivals in Redis, for bench/cdc_topic_redis.sh (redis-py: no code shared with Weir's).

  redis_arrivals.py PORT wait MARKER TIMEOUT   until the stream `bench:events` holds an entry with
                                               marker >= MARKER; prints "seconds=…"
  redis_arrivals.py PORT dump FILE             every entry of `bench:events` as `marker,seen_us`
                                               (seen = the entry's id: Redis's clock at XADD, ms)
  redis_arrivals.py PORT totals                events counted in the hashes, entries in the stream
"""
import sys
import time

import redis


def last_marker(r):
    last = r.xrevrange("bench:events", count=1)
    return int(last[0][1].get(b"marker", b"0")) if last else 0


def main():
    r = redis.Redis(port=int(sys.argv[1]))
    cmd = sys.argv[2]
    if cmd == "wait":
        target, deadline = int(sys.argv[3]), time.monotonic() + float(sys.argv[4])
        started = time.monotonic()
        while last_marker(r) < target:
            if time.monotonic() > deadline:
                sys.exit(f"marker {target} not in Redis within {sys.argv[4]} s (last {last_marker(r)})")
            time.sleep(0.01)
        print(f"seconds={time.monotonic() - started:.3f}")
    elif cmd == "dump":
        with open(sys.argv[3], "w") as out:
            out.write("marker,seen_us\n")
            start = "-"
            while True:
                entries = r.xrange("bench:events", min=start, count=50000)
                for entry_id, fields in entries:
                    if b"marker" in fields:
                        out.write(f"{int(fields[b'marker'])},{int(entry_id.split(b'-')[0]) * 1000}\n")
                if len(entries) < 50000:
                    break
                start = "(" + entries[-1][0].decode()
    elif cmd == "totals":
        events = 0
        for key in r.scan_iter("bench:account:*", count=10000):
            events += int(r.hget(key, "events") or 0)
        print(f"events={events} stream={r.xlen('bench:events')}")


main()
