#!/usr/bin/env python3
"""Lag from source commit to consumer, for the streaming benchmark: joins the writer's log
(change_writer.py --log: marker,commit_us,...) with a consumer's arrivals (marker,seen_us: when
the consumer had the whole transaction `marker` — for an event stream, the last event carrying
that marker; for a destination table, when that marker became visible there) and prints the
distribution. Both clocks are this machine's wall clock (Unix epoch, microseconds).

    bench/peers/lag_stats.py WRITER_LOG ARRIVALS [--name NAME] [--skip-first SECONDS]

Prints one line:
    NAME lag_ms p50=… p90=… p99=… max=… matched=M/T
(T = transactions in the writer log, M = those the consumer saw). --skip-first drops the
transactions committed in the first SECONDS of the writer's run (a consumer's warm-up).
A consumer started after the writer (backlog mode) measures catch-up time, not lag: use a
live run (consumer started first, writer rate-limited) for lag figures.
"""
import argparse
import csv


def read_commits(path):
    with open(path) as f:
        return {int(r["marker"]): int(r["commit_us"]) for r in csv.DictReader(f)}


def read_arrivals(path):
    with open(path) as f:
        out = {}
        for r in csv.DictReader(f):
            m, t = int(r["marker"]), int(r["seen_us"])
            out[m] = max(t, out.get(m, t))
        return out


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def summary(commits, arrivals, name="lag", skip_first_s=0.0):
    t0 = min(commits.values()) if commits else 0
    lags = sorted(
        (arrivals[m] - c) / 1000.0
        for m, c in commits.items()
        if m in arrivals and c - t0 >= skip_first_s * 1e6
    )
    return (
        f"{name} lag_ms p50={pct(lags, 50):.1f} p90={pct(lags, 90):.1f} p99={pct(lags, 99):.1f} "
        f"max={(lags[-1] if lags else float('nan')):.1f} matched={len(lags)}/{len(commits)}"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("writer_log")
    ap.add_argument("arrivals")
    ap.add_argument("--name", default="lag")
    ap.add_argument("--skip-first", type=float, default=0.0)
    a = ap.parse_args()
    print(summary(read_commits(a.writer_log), read_arrivals(a.arrivals), a.name, a.skip_first))


if __name__ == "__main__":
    main()
