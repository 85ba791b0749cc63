#!/usr/bin/env python3
"""Topics for the benchmarks, with confluent-kafka (librdkafka): no code shared with Weir's.

  topic_tool.py produce BOOTSTRAP TOPIC N CSV   N order messages (JSON) into TOPIC (one partition),
                                                and the same rows as CSV for clickhouse-client
  topic_tool.py consume BOOTSTRAP TOPIC N       read N messages from the start, no processing;
                                                prints "seconds=… messages=…"
"""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

STATUSES = ["new", "paid", "shipped", "returned"]


def produce(bootstrap, topic, n, csv_path):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic not in admin.list_topics(timeout=10).topics:
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 1000000, "compression.type": "none"})
    with open(csv_path, "w") as csv:
        for i in range(1, n + 1):
            qty = i % 7 + 1
            cents = 100 + (i * 7919) % 90000
            price = f"{cents // 100}.{cents % 100:02d}"
            total_cents = cents * qty
            total = f"{total_cents // 100}.{total_cents % 100:02d}"
            sec = i % 86400
            hms = f"{sec // 3600:02d}:{sec % 3600 // 60:02d}:{sec % 60:02d}"
            status = STATUSES[i % 4]
            note = "gift wrap" if i % 10 == 0 else ""
            value = (f'{{"order_id": {i}, "customer_id": {i % 100000}, "status": "{status}", "quantity": {qty}, '
                     f'"unit_price": "{price}", "total": "{total}", "created_at": "2025-03-23T{hms}Z", '
                     f'"note": "{note}"}}')
            csv.write(f"{i},{i % 100000},{status},{qty},{price},{total},2025-03-23 {hms},{note}\n")
            while True:
                try:
                    p.produce(topic, value=value)
                    break
                except BufferError:
                    p.poll(0.1)
            if i % 10000 == 0:
                p.poll(0)
    left = p.flush(120)
    if left:
        sys.exit(f"{left} messages not delivered")


def consume(bootstrap, topic, n):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-bench", "enable.auto.commit": False,
                  "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 8388608})
    started = time.monotonic()
    c.assign([TopicPartition(topic, 0, 0)])
    seen = 0
    while seen < n:
        for m in c.consume(num_messages=10000, timeout=5):
            if m.error():
                sys.exit(str(m.error()))
            seen += 1
    print(f"seconds={time.monotonic() - started:.2f} messages={seen}")
    c.close()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "produce":
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    elif cmd == "consume":
        consume(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(__doc__)
