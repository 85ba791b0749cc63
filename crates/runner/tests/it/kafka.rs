//! Topics end to end: the real `runner`, a real Kafka-protocol broker of the
//! test's own (Tansu, `WEIR_TANSU`), and every message read back with the
//! Python `confluent-kafka` client (librdkafka: no code shared with Weir's).

use std::process::{Child, Command};

use serde_json::Value;

use crate::harness::{D1, D2, Harness};
use crate::postgres::{pipeline, source};

const D3: &str = "20250325";

/// A Tansu broker on a spare port, topics in memory; killed on drop.
struct Broker {
    port: u16,
    child: Child,
}

impl Broker {
    fn start() -> Self {
        let tansu = std::env::var("WEIR_TANSU").expect("WEIR_TANSU (eval \"$(scripts/services.sh kafka)\")");
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a port");
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(tansu)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tansu starts");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { port, child };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("tansu on {port} did not answer");
    }

    fn url(&self) -> String {
        format!("kafka://127.0.0.1:{}", self.port)
    }

    /// Every message of `topic`, partition by partition, as confluent-kafka reads it.
    fn messages(&self, topic: &str) -> Vec<Value> {
        let script = r#"
import json, sys
from confluent_kafka import Consumer, TopicPartition
topic, bootstrap = sys.argv[1], sys.argv[2]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-test", "enable.auto.commit": False})
meta = c.list_topics(topic, timeout=10)
c.assign([TopicPartition(topic, p, 0) for p in sorted(meta.topics[topic].partitions)])
# Until the topic is quiet: Tansu's end offsets count batches, not messages.
while True:
    m = c.poll(3)
    if m is None:
        break
    if m.error():
        sys.exit(str(m.error()))
    print(json.dumps({"partition": m.partition(), "offset": m.offset(),
                      "key": None if m.key() is None else json.loads(m.key()),
                      "value": None if m.value() is None else json.loads(m.value()),
                      "headers": {k: v.decode() for k, v in (m.headers() or [])}}))
c.close()
"#;
        let out = Command::new("python3")
            .args(["-c", script, topic, &format!("127.0.0.1:{}", self.port)])
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "reading {topic}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A table's changes into a topic in Debezium's envelope, keyed by the primary
/// key and partitioned as Kafka's own clients partition; every change exactly
/// once through a lost answer, a process killed half way through a load, and
/// one killed after the last message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_a_topic_once_in_debeziums_envelope() {
    let broker = Broker::start();
    let mut h = Harness::new("kafka_sink").await;
    let src = source(
        &mut h,
        "kafka_sink_src",
        "CREATE TABLE items (id integer PRIMARY KEY, name text, price numeric(10,2), tags text[]);
         INSERT INTO items SELECT i, 'item ' || i, i * 1.5, ARRAY['t' || (i % 3)] FROM generate_series(1, 3000) i;",
    )
    .await;
    h.set_env("WEIR_CONN_STREAM", &broker.url());
    h.set_env("WEIR_LEASE_SECONDS", "2"); // the killed runners' leases
    let slot = format!("kafka_{}", broker.port);
    let options = format!(r#"'{{"slot": "{slot}", "partitions": 3}}'"#);
    pipeline(
        &h,
        "items_topic",
        "public.items",
        &[
            ("destination_type", "'kafka'"),
            ("destination_connection", "'stream'"),
            ("destination_table", "'postgres.public.items'"),
            ("load_type", "'cdc'"),
            ("options", &options),
        ],
    )
    .await;
    // The snapshot; the answer to one batch is lost after the broker took it.
    h.set_env("WEIR_KAFKA_LOSE_ANSWER", "2");
    h.run_ok(D1).await;
    h.set_env("WEIR_KAFKA_LOSE_ANSWER", "0");
    let messages = broker.messages("postgres.public.items");
    assert_eq!(messages.len(), 3001, "the truncate marker and 3000 snapshot rows, once each");
    let first = messages.iter().find(|m| m["key"]["id"] == 7).expect("row 7");
    assert_eq!(first["value"]["op"], "r");
    assert_eq!(first["value"]["before"], Value::Null);
    assert_eq!(first["value"]["after"]["name"], "item 7");
    assert_eq!(first["value"]["after"]["price"].as_f64(), Some(10.5));
    assert_eq!(first["value"]["after"]["tags"], serde_json::json!(["t1"]));
    assert!(first["value"]["source"]["lsn"].is_i64() && first["value"]["ts_ms"].is_i64());
    // Keyed as Kafka's default partitioner keys: every message of a key in one partition.
    let partitions: std::collections::BTreeSet<i64> =
        messages.iter().map(|m| m["partition"].as_i64().unwrap_or(-1)).collect();
    assert_eq!(partitions.len(), 3, "{partitions:?}");

    // Changes; the process dies after 1000 of them reached the topic, then after all of them.
    sqlx::raw_sql(
        "UPDATE items SET name = 'renamed' WHERE id <= 1500;
         DELETE FROM items WHERE id > 2990;
         INSERT INTO items VALUES (5000, 'new', 1, NULL);",
    )
    .execute(&src)
    .await
    .expect("changes");
    h.set_env("WEIR_KAFKA_CRASH_AFTER_ROWS", "1000");
    let crashed = h.run_date(D2).await;
    assert_ne!(crashed.code, 0, "{}", crashed.all());
    h.set_env("WEIR_KAFKA_CRASH_AFTER_ROWS", "");
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "items_topic");
    let crashed = h.run_date(D2).await;
    assert_ne!(crashed.code, 0, "{}", crashed.all());
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "none");
    h.run_ok(D3).await;

    let messages = broker.messages("postgres.public.items");
    let mut ops = std::collections::BTreeMap::<String, usize>::new();
    let mut seen = std::collections::BTreeSet::new();
    for m in &messages {
        *ops.entry(m["value"]["op"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        let change = (m["value"]["source"]["lsn"].as_i64(), m["key"].to_string(), m["value"]["op"].to_string());
        assert!(seen.insert(change.clone()), "a change twice: {change:?}");
    }
    let want: std::collections::BTreeMap<String, usize> =
        [("c", 1), ("d", 10), ("r", 3000), ("t", 1), ("u", 1500)].into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    assert_eq!(ops, want);
    let deleted = messages.iter().find(|m| m["value"]["op"] == "d").expect("a delete");
    assert!(
        deleted["value"]["after"].is_null() && deleted["value"]["before"]["id"].as_i64().is_some_and(|id| id > 2990)
    );
    let _ = sqlx::query("SELECT pg_drop_replication_slot($1)").bind(&slot).execute(&src).await;
}
