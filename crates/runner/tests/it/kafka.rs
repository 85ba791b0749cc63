//! Topics end to end: the real `runner`, a real Kafka-protocol broker of the
//! test's own (Tansu, `WEIR_TANSU`), and every message written or read back
//! with the Python `confluent-kafka` client (librdkafka: no code shared with Weir's).

use std::process::{Child, Command};

use serde_json::Value;

use crate::harness::{D1, D2, Harness, spare_port};
use crate::postgres::{pipeline, source};

const D3: &str = "20250325";

/// A Tansu broker on a spare port, topics in memory; killed on drop.
struct Broker {
    port: u16,
    child: Child,
    /// With [`Broker::start_tls`]: socat speaking TLS in front of the broker, and its CA's PEM file.
    tls: Option<(crate::harness::TlsFront, String)>,
}

impl Broker {
    fn start() -> Self {
        let port = spare_port();
        Self::start_advertising(port, port)
    }

    /// A broker that tells clients to reach it on `advertised` (a proxy in front of it).
    fn start_advertising(port: u16, advertised: u16) -> Self {
        let tansu = std::env::var("WEIR_TANSU").expect("WEIR_TANSU (eval \"$(scripts/services.sh kafka)\")");
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let mut child = Command::new(tansu)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tansu starts");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { port, child, tls: None };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("tansu on {port} did not answer");
    }

    /// A broker that clients reach over TLS only: socat terminates TLS (a
    /// certificate for 127.0.0.1 from a CA made here with openssl) in front of
    /// the broker, which advertises socat's port.
    fn start_tls(dir: &std::path::Path) -> Self {
        crate::harness::tls_certificates(dir);
        let (port, tls_port) = (spare_port(), spare_port());
        let mut broker = Self::start_advertising(port, tls_port);
        let front = crate::harness::TlsFront::start(dir, tls_port, port);
        broker.tls = Some((front, dir.join("ca.pem").display().to_string()));
        broker
    }

    fn url(&self) -> String {
        match &self.tls {
            Some((front, ca)) => format!("kafka://127.0.0.1:{}?tls=true&tls_ca_file={ca}", front.port),
            None => format!("kafka://127.0.0.1:{}", self.port),
        }
    }

    /// How a Python client reaches it: the bootstrap address, and the CA file for TLS ("" without).
    fn client_args(&self) -> [String; 2] {
        match &self.tls {
            Some((front, ca)) => [format!("127.0.0.1:{}", front.port), ca.clone()],
            None => [format!("127.0.0.1:{}", self.port), String::new()],
        }
    }

    /// Produce `(partition, value)` messages with confluent-kafka, the topic
    /// created with `partitions` if missing.
    fn produce(&self, topic: &str, partitions: i32, messages: &[(i32, String)]) {
        let script = r#"
import json, sys
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
topic, bootstrap, ca, partitions = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
conf = {"bootstrap.servers": bootstrap}
if ca:
    conf.update({"security.protocol": "SSL", "ssl.ca.location": ca})
admin = AdminClient(conf)
if topic not in admin.list_topics(timeout=10).topics:
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result()
p = Producer({**conf, "linger.ms": 20})
for line in sys.stdin:
    m = json.loads(line)
    p.produce(topic, value=m["value"].encode(), partition=m["partition"])
    p.poll(0)
left = p.flush(30)
sys.exit(f"{left} messages not delivered" if left else 0)
"#;
        let mut child = Command::new("python3")
            .args(["-c", script, topic])
            .args(self.client_args())
            .arg(partitions.to_string())
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            for (partition, value) in messages {
                let line = serde_json::json!({"partition": partition, "value": value});
                writeln!(stdin, "{line}").expect("write a message");
            }
        }
        let out = child.wait_with_output().expect("the producer ends");
        assert!(out.status.success(), "producing to {topic}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Every message of `topic`, partition by partition, as confluent-kafka reads it.
    fn messages(&self, topic: &str) -> Vec<Value> {
        let script = r#"
import json, sys
from confluent_kafka import Consumer, TopicPartition
topic, bootstrap, ca = sys.argv[1], sys.argv[2], sys.argv[3]
conf = {"bootstrap.servers": bootstrap, "group.id": "weir-test", "enable.auto.commit": False}
if ca:
    conf.update({"security.protocol": "SSL", "ssl.ca.location": ca})
c = Consumer(conf)
meta = c.list_topics(topic, timeout=10)
c.assign([TopicPartition(topic, p, 0) for p in sorted(meta.topics[topic].partitions)])
def parse(b):
    try:
        return json.loads(b)
    except ValueError:
        return b.decode(errors="replace")
# Until the topic is quiet: Tansu's end offsets count batches, not messages.
while True:
    m = c.poll(3)
    if m is None:
        break
    if m.error():
        sys.exit(str(m.error()))
    print(json.dumps({"partition": m.partition(), "offset": m.offset(),
                      "key": None if m.key() is None else json.loads(m.key()),
                      "value": None if m.value() is None else parse(m.value()),
                      "headers": {k: v.decode() for k, v in (m.headers() or [])}}))
c.close()
"#;
        let out = Command::new("python3")
            .args(["-c", script, topic])
            .args(self.client_args())
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "reading {topic}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.tls = None; // socat first
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

/// An event as the topic's producers write it.
fn event(id: i64, amount: &str) -> String {
    format!(
        r#"{{"id": {id}, "user_id": {}, "amount": "{amount}", "at": "2025-03-23T10:00:00.{:06}Z", "tags": ["a", null], "extra": true}}"#,
        id % 5,
        id % 1_000_000
    )
}

const EVENT_COLUMNS: &str = "id bigint not null, user_id integer, amount numeric(10,2), at timestamptz, tags text[]";

/// A topic read into PostgreSQL (through a transform joined with a lookup
/// table) and into a ClickHouse mirror: every good message once, through a
/// process killed between a destination's commit and the position's record,
/// and the bad ones set aside (dead-lettered, or skipped), counted in audit.
/// `runner check` prints the transform's columns, and names an unknown column
/// or a missing lookup table before any data moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_reaches_postgres_and_clickhouse_once_with_bad_messages_set_aside() {
    let broker = Broker::start();
    let server = crate::clickhouse::Server::new();
    let ch_db = crate::clickhouse::database("kafka_src");
    let mut h = Harness::new("kafka_source").await;
    h.set_env("WEIR_CONN_STREAM", &broker.url());
    h.set_env("WEIR_CONN_CH", &server.url);
    h.set_env("WEIR_CONN_META", &h.db_url.clone());
    h.set_env("WEIR_LEASE_SECONDS", "2");
    sqlx::raw_sql("CREATE TABLE users (id integer PRIMARY KEY, name text); INSERT INTO users VALUES (0, 'zero'), (1, 'one'), (2, 'two'), (3, 'three');")
        .execute(&h.pool)
        .await
        .expect("users");

    let mut messages: Vec<(i32, String)> = (1..=2000).map(|i| ((i % 2) as i32, event(i, &format!("{i}.25")))).collect();
    messages.insert(700, (0, "not json".to_owned()));
    messages.insert(900, (1, r#"{"id": "seven"}"#.to_owned()));
    messages.push((1, event(5, "99.00"))); // id 5 again, in its partition: the mirror keeps this one
    broker.produce("events", 2, &messages);

    let options = |extra: &str| format!(r#"'{{"columns": "{EVENT_COLUMNS}", {extra}}}'"#);
    let to_pg = options(
        r#""history": true, "on_bad_message": "dead_letter", "dead_letter_topic": "events_dlq",
           "transform": "SELECT i.id, i.amount, i.at, i.tags, u.name AS user_name FROM input i LEFT JOIN users u ON u.id = i.user_id",
           "lookups": {"users": {"connection": "meta", "table": "public.users"}}"#,
    );
    let kafka = [
        ("source_type", "'kafka'"),
        ("source_connection", "'stream'"),
        ("source_table", "'events'"),
        ("load_type", "'cdc'"),
    ];
    let mut pg = kafka.to_vec();
    pg.extend([("schema_name", "'bronze'"), ("destination_table", "'events'"), ("options", to_pg.as_str())]);
    h.pipeline("events_pg", &pg).await;
    let to_ch = options(r#""on_bad_message": "skip""#);
    let ch_schema = format!("'{ch_db}'");
    let mut ch = kafka.to_vec();
    ch.extend([
        ("destination_type", "'clickhouse'"),
        ("destination_connection", "'ch'"),
        ("schema_name", ch_schema.as_str()),
        ("destination_table", "'events'"),
        ("primary_key", "'{id}'"),
        ("options", to_ch.as_str()),
    ]);
    h.pipeline("events_ch", &ch).await;

    // `runner check`: the transform's columns.
    let check = h.runner(&["check", "--pipeline", "events_pg"]).await;
    assert_eq!(check.code, 0, "{}", check.all());
    assert!(
        check.stdout.contains("options.transform gives") && check.stdout.contains("user_name Utf8"),
        "{}",
        check.stdout
    );

    // Killed after PostgreSQL's commit, before the metadata database heard of it; then run again.
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "events_pg");
    let crashed = h.run_date(D1).await;
    assert_ne!(crashed.code, 0, "{}", crashed.all());
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "");
    h.run_ok(D1).await;
    assert_eq!(h.count("bronze.events").await, 2001, "2000 events and id 5 again, each once");
    assert_eq!(h.scalar_i64("SELECT count(DISTINCT (id, amount)) FROM bronze.events").await, 2001);
    let row = h.rows("SELECT amount::text, at::text, tags::text, user_name FROM bronze.events WHERE id = 3").await;
    assert_eq!(row, [["3.25", "2025-03-23 10:00:00.000003+00", "{a,NULL}", "three"]]);
    let dead = broker.messages("events_dlq");
    let offsets: std::collections::BTreeSet<_> = dead
        .iter()
        .map(|m| (m["headers"]["weir.partition"].to_string(), m["headers"]["weir.offset"].to_string()))
        .collect();
    assert_eq!(offsets.len(), 2, "the two bad messages (a killed run may send one twice): {dead:?}");
    assert!(dead.iter().all(|m| m["headers"]["weir.error"].as_str().is_some_and(|e| !e.is_empty())), "{dead:?}");
    let watermark = h.last_audit("events_pg").await.watermark_after.unwrap_or_default();
    assert!(watermark.starts_with("0:") && watermark.contains(",1:"), "{watermark}");

    let current = |sql: &str| server.rows(&sql.replace("DB", &ch_db));
    assert_eq!(current("SELECT count(), uniqExact(id) FROM DB.events_current"), [["2000", "2000"]]);
    assert_eq!(current("SELECT toString(amount) FROM DB.events_current WHERE id = 5"), [["99.00"]]);

    // More messages, one of them bad: the next run reads exactly them, and counts the bad one.
    let mut more: Vec<(i32, String)> = (2001..=2500).map(|i| ((i % 2) as i32, event(i, "1.00"))).collect();
    more.insert(100, (0, r#"{"id": 1.5}"#.to_owned()));
    broker.produce("events", 2, &more);
    h.run_ok(D2).await;
    assert_eq!(h.count("bronze.events").await, 2501);
    assert_eq!(current("SELECT count() FROM DB.events_current"), [["2500"]]);
    let details = |pipeline: &str| {
        let sql = format!(
            "SELECT coalesce(details::text, '{{}}') FROM audit WHERE pipeline_name = '{pipeline}' AND status = 'success' \
             ORDER BY audit_id DESC LIMIT 1"
        );
        let h = &h;
        async move { serde_json::from_str::<Value>(&h.rows(&sql).await[0][0]).expect("details") }
    };
    assert_eq!(details("events_pg").await["bad_messages_dead_lettered"], 1);
    assert_eq!(details("events_ch").await["bad_messages_skipped"], 1);
    assert_eq!(broker.messages("events_dlq").len() as i64 - dead.len() as i64, 1);

    // Bad configuration is named at `runner check`, before any data moves; the run goes on for the rest.
    let bad_sql = options(r#""history": true, "transform": "SELECT nope FROM input""#);
    let mut bad = kafka.to_vec();
    bad.extend([("schema_name", "'bronze'"), ("destination_table", "'bad_sql'"), ("options", bad_sql.as_str())]);
    h.pipeline("events_bad_sql", &bad).await;
    let missing = options(
        r#""history": true, "transform": "SELECT i.*, c.title FROM input i JOIN content c ON c.id = i.id",
           "lookups": {"content": {"connection": "meta", "table": "public.content"}}"#,
    );
    let mut bad = kafka.to_vec();
    bad.extend([("schema_name", "'bronze'"), ("destination_table", "'bad_lookup'"), ("options", missing.as_str())]);
    h.pipeline("events_bad_lookup", &bad).await;
    let check = h.runner(&["check"]).await;
    assert_ne!(check.code, 0);
    let line = |name: &str| check.stdout.lines().find(|l| l.contains(name)).unwrap_or_default().to_owned();
    assert!(
        line("events_bad_sql").starts_with("FAILED") && line("events_bad_sql").contains("nope"),
        "{}",
        check.stdout
    );
    assert!(
        line("events_bad_lookup").contains("lookup `content`") && line("events_bad_lookup").contains("content"),
        "{}",
        check.stdout
    );
    let run = h.run_date(D3).await;
    assert_ne!(run.code, 0);
    assert!(!h.table_exists("bronze.bad_sql").await && !h.table_exists("bronze.bad_lookup").await);
    assert_eq!(h.last_audit("events_pg").await.status, "success");
    server.query(&format!("DROP DATABASE IF EXISTS {ch_db}"));
}

/// `runner stream` follows a topic: a session killed between a commit and
/// the position's record is followed by one that goes on from the commit,
/// new messages reach PostgreSQL within seconds, connections to the broker
/// cut mid-stream are retried from the committed offsets, and every message
/// arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_stream_follows_a_topic_through_cut_connections() {
    let port = spare_port();
    let proxy = weir_testkit::proxy::TcpProxy::start(format!("127.0.0.1:{port}").parse().expect("address"))
        .await
        .expect("proxy");
    let broker = Broker::start_advertising(port, proxy.port());
    let mut h = Harness::new("kafka_stream").await;
    h.set_env("WEIR_CONN_STREAM", &format!("kafka://127.0.0.1:{}", proxy.port()));
    let first: Vec<(i32, String)> = (1..=500).map(|i| (0, event(i, "1.00"))).collect();
    broker.produce("stream_events", 1, &first);
    let options = format!(r#"'{{"columns": "{EVENT_COLUMNS}", "history": true, "commit_interval": "200ms"}}'"#);
    h.pipeline(
        "stream_events",
        &[
            ("source_type", "'kafka'"),
            ("source_connection", "'stream'"),
            ("source_table", "'stream_events'"),
            ("load_type", "'cdc'"),
            ("schema_name", "'bronze'"),
            ("destination_table", "'stream_events'"),
            ("options", options.as_str()),
        ],
    )
    .await;
    // kill -9 between the destination's commit and the position's record: the next session
    // (after the dead one's lease) goes on from what the destination holds.
    h.set_env("WEIR_LEASE_SECONDS", "2");
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "stream_events");
    let killed = crate::harness::finish(h.spawn(&["stream"])).await;
    assert_ne!(killed.code, 0, "{}", killed.all());
    assert_eq!(h.count("bronze.stream_events").await, 500, "the first commit landed");
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "");
    let stream = h.spawn(&["stream"]);
    h.wait_until("SELECT count(*) = 500 FROM bronze.stream_events", 60).await;
    proxy.cut_after(2_000, 3);
    for chunk in 0..4 {
        let more: Vec<(i32, String)> = (1..=250).map(|i| (0, event(500 + chunk * 250 + i, "2.00"))).collect();
        broker.produce("stream_events", 1, &more);
    }
    h.wait_until("SELECT count(*) >= 1500 FROM bronze.stream_events", 90).await;
    crate::harness::signal(&stream, "-TERM");
    let stopped = crate::harness::finish(stream).await;
    assert_eq!(stopped.code, 0, "{}", stopped.all());
    assert!(proxy.cuts() > 0, "the proxy cut connections");
    assert_eq!(h.count("bronze.stream_events").await, 1500);
    assert_eq!(h.scalar_i64("SELECT count(DISTINCT id) FROM bronze.stream_events").await, 1500);
    let audit = h.last_audit("stream_events").await;
    assert_eq!(audit.status, "success", "{audit:?}");
}

/// A topic into Redis: a load killed half way is finished by the next run,
/// which reads the same messages in the same order and skips the ones
/// applied, so every counter counts each message once. A topic of several
/// partitions is refused there (its order on a re-read is not fixed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_into_redis_counts_every_message_once_through_a_kill() {
    let broker = Broker::start();
    let redis = crate::redis::Redis::start();
    let mut h = Harness::new("kafka_redis").await;
    h.set_env("WEIR_CONN_STREAM", &broker.url());
    h.set_env("WEIR_CONN_CACHE", &redis.url());
    h.set_env("WEIR_LEASE_SECONDS", "2");
    let n = 3000i64;
    let messages: Vec<(i32, String)> = (1..=n).map(|i| (0, event(i, &format!("{}.{:02}", i % 50, i % 100)))).collect();
    broker.produce("serve", 1, &messages);
    broker.produce("serve_wide", 2, &[(0, event(1, "1.00")), (1, event(2, "2.00"))]);
    let options = format!(
        r#"'{{"columns": "{EVENT_COLUMNS}", "history": true, "chunk_rows": 100,
              "hashes": [{{"key": "user:{{user_id}}", "increment": {{"events": 1, "amount": "amount"}}}}]}}'"#
    );
    for (name, topic) in [("serve_redis", "'serve'"), ("wide_redis", "'serve_wide'")] {
        h.pipeline(
            name,
            &[
                ("source_type", "'kafka'"),
                ("source_connection", "'stream'"),
                ("source_table", topic),
                ("load_type", "'cdc'"),
                ("destination_type", "'redis'"),
                ("destination_connection", "'cache'"),
                ("schema_name", "'public'"),
                ("destination_table", "'serving'"),
                ("options", options.as_str()),
            ],
        )
        .await;
    }
    h.set_env("WEIR_REDIS_CRASH_AFTER_ROWS", "1250");
    let crashed = h.runner(&["--date", D1, "--pipeline", "serve_redis"]).await;
    assert_ne!(crashed.code, 0, "{}", crashed.all());
    h.set_env("WEIR_REDIS_CRASH_AFTER_ROWS", "");
    let run = h.runner(&["--date", D1, "--pipeline", "serve_redis"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    for user in 0..5i64 {
        let ids: Vec<i64> = (1..=n).filter(|i| i % 5 == user).collect();
        let cents: i64 = ids.iter().map(|i| (i % 50) * 100 + i % 100).sum();
        let got = redis.cli(&["HMGET", &format!("user:{user}"), "events", "amount"]);
        assert_eq!(got[0], ids.len().to_string(), "user {user}: {got:?}");
        let amount: f64 = got[1].parse().expect("a number");
        assert!((amount * 100.0 - cents as f64).abs() < 0.5, "user {user}: {amount} vs {cents} cents");
    }
    let wide = h.runner(&["--date", D1, "--pipeline", "wide_redis"]).await;
    assert_ne!(wide.code, 0);
    assert!(wide.all().contains("has 2 partitions"), "{}", wide.all());
}

/// Every type a topic's messages may declare, at its edges and as NULL (a
/// NULL value, a missing field, NULL inside a list), into PostgreSQL: equal,
/// as PostgreSQL itself compares them, to the same literals typed by
/// PostgreSQL. Messages are written by confluent-kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_declared_type_arrives_exactly() {
    let broker = Broker::start();
    let mut h = Harness::new("kafka_types").await;
    h.set_env("WEIR_CONN_STREAM", &broker.url());
    let messages = [
        r#"{"id": 1, "b": true, "i2": 32767, "i4": 2147483647, "i8": 9223372036854775807, "f4": 3.4028235e38,
            "f8": 1.7976931348623157e308, "n": "1234567890123456789012345678.0123456789",
            "t": "h\u00e9llo \ud83d\udc4b \"q\" \\ \t\n", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "d": "2105-12-31",
            "ts": "2025-03-23T10:00:00.123456", "tstz": "2025-03-23T10:00:00.123456+02:00",
            "ai": [1, null, 3], "at": ["a b", null, ""], "af": [0.1, -0.0, 1e-300]}"#,
        r#"{"id": 2, "b": false, "i2": -32768, "i4": -2147483648, "i8": -9223372036854775808, "f4": -1.4e-45,
            "f8": -5e-324, "n": "-0.0000000001", "t": "", "u": "00000000-0000-0000-0000-000000000000",
            "d": "0001-01-01", "ts": "1970-01-01T00:00:00", "tstz": "1970-01-01T00:00:00Z",
            "ai": [], "at": [], "af": []}"#,
        r#"{"id": 3, "b": null, "i2": null, "i4": null, "i8": null, "f4": null, "f8": null, "n": null, "t": null,
            "u": null, "d": null, "ts": null, "tstz": null, "ai": null, "at": null, "af": null}"#,
        r#"{"id": 4, "i4": "17", "n": 5, "f8": 2}"#,
    ];
    let messages: Vec<(i32, String)> = messages.iter().map(|m| (0, m.replace('\n', " "))).collect();
    broker.produce("types", 1, &messages);
    let columns = "id bigint not null, b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision, \
                   n numeric(38,10), t text, u uuid, d date, ts timestamp, tstz timestamptz, ai integer[], at text[], \
                   af double precision[]";
    let options = format!(r#"'{{"columns": "{columns}", "history": true}}'"#);
    h.pipeline(
        "types",
        &[
            ("source_type", "'kafka'"),
            ("source_connection", "'stream'"),
            ("source_table", "'types'"),
            ("load_type", "'cdc'"),
            ("schema_name", "'bronze'"),
            ("destination_table", "'types'"),
            ("options", options.as_str()),
        ],
    )
    .await;
    h.run_ok(D1).await;
    sqlx::raw_sql(
        r#"CREATE TABLE expected (id bigint, b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision,
             n numeric(38,10), t text, u text, d date, ts timestamp, tstz timestamptz, ai integer[], at text[], af float8[]);
           INSERT INTO expected VALUES
            (1, true, 32767, 2147483647, 9223372036854775807, 3.4028235e38, 1.7976931348623157e308,
             1234567890123456789012345678.0123456789, E'h\u00e9llo \U0001F44B "q" \\ \t\n', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
             '2105-12-31', '2025-03-23 10:00:00.123456', '2025-03-23 08:00:00.123456+00', '{1,NULL,3}', '{"a b",NULL,""}',
             '{0.1,-0,1e-300}'),
            (2, false, -32768, -2147483648, -9223372036854775808, -1.4e-45, -5e-324, -0.0000000001, '',
             '00000000-0000-0000-0000-000000000000', '0001-01-01', '1970-01-01 00:00:00', '1970-01-01 00:00:00+00',
             '{}', '{}', '{}'),
            (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
            (4, NULL, NULL, 17, NULL, NULL, 2, 5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);"#,
    )
    .execute(&h.pool)
    .await
    .expect("expected rows");
    let cols = "id, b, i2, i4, i8, f4, f8, n, t, u::text, d, ts, tstz, ai, at, af";
    let text = |table: &str| format!("SELECT ROW({cols})::text FROM {table} ORDER BY id");
    let got = h.rows(&text("bronze.types")).await;
    let want = h.rows(&text("expected")).await;
    assert_eq!(got, want);
    // The newline inside "t" was replaced by a space above only in the message's JSON text, not in the value.
    assert_eq!(h.rows("SELECT t FROM bronze.types WHERE id = 1").await[0][0], "h\u{e9}llo \u{1F44B} \"q\" \\ \t\n");
}

/// A broker reached over TLS only (`tls=true`, the CA in `tls_ca_file`): a
/// topic written by one pipeline and read by another, every message read back
/// by confluent-kafka over TLS too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start_tls(dir.path());
    let mut h = Harness::new("kafka_tls").await;
    h.set_env("WEIR_CONN_STREAM", &broker.url());
    broker.produce("tls_in", 1, &(1..=300).map(|i| (0, event(i, "1.50"))).collect::<Vec<_>>());
    let options =
        format!(r#"'{{"columns": "{EVENT_COLUMNS}", "history": true, "transform": "SELECT id, amount FROM input"}}'"#);
    let kafka = [("source_type", "'kafka'"), ("source_connection", "'stream'"), ("load_type", "'cdc'")];
    let mut rows = kafka.to_vec();
    rows.extend([
        ("source_table", "'tls_in'"),
        ("schema_name", "'bronze'"),
        ("destination_table", "'tls_in'"),
        ("options", options.as_str()),
    ]);
    h.pipeline("tls_in", &rows).await;
    let mut rows = kafka.to_vec();
    rows.extend([
        ("source_table", "'tls_in'"),
        ("destination_type", "'kafka'"),
        ("destination_connection", "'stream'"),
        ("schema_name", "'public'"),
        ("destination_table", "'tls_out'"),
        ("options", options.as_str()),
    ]);
    h.pipeline("tls_out", &rows).await;
    h.run_ok(D1).await;
    assert_eq!(h.count("bronze.tls_in").await, 300);
    let out = broker.messages("tls_out");
    assert_eq!(out.len(), 300);
    assert_eq!(out[0]["value"]["id"], 1);
    assert_eq!(out[0]["value"]["amount"].as_f64(), Some(1.5));
}
