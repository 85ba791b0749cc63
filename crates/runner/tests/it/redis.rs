//! The Redis destination end to end: the real `runner`, a real Redis server of
//! the test's own (append-only file on, so that a restart keeps its data),
//! and every stream, sorted set and hash read back with `redis-cli`, compared
//! with the same figures computed by SQL over the source.

use std::process::Command;

use sqlx::PgPool;

use crate::harness::{D1, D2, Harness};
use crate::postgres::{pipeline, source};

const D3: &str = "20250325";
const D4: &str = "20250326";

/// A redis-server on a spare port, in a folder of its own; stopped on drop.
pub(crate) struct Redis {
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    pub(crate) fn start() -> Self {
        let port = crate::harness::spare_port();
        let redis = Self { port, dir: tempfile::tempdir().expect("tempdir") };
        redis.launch();
        redis
    }

    fn launch(&self) {
        let status = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--daemonize", "yes"])
            .args(["--dir", &self.dir.path().display().to_string(), "--pidfile", &self.pidfile()])
            .status()
            .expect("redis-server runs");
        assert!(status.success());
        for _ in 0..100 {
            if self.try_cli(&["PING"]).is_some_and(|p| p == "PONG") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("redis-server on {} did not answer", self.port);
    }

    fn pidfile(&self) -> String {
        self.dir.path().join("redis.pid").display().to_string()
    }

    /// SIGKILL, then start again from the append-only file.
    fn restart(&self) {
        let pid = std::fs::read_to_string(self.pidfile()).expect("pid file");
        Command::new("kill").args(["-9", pid.trim()]).status().expect("kill");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = std::fs::remove_file(self.pidfile());
        self.launch();
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out =
            Command::new("redis-cli").args(["-p", &self.port.to_string(), "--no-raw"]).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// `redis-cli --raw`: one value per line.
    pub(crate) fn cli(&self, args: &[&str]) -> Vec<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.try_cli(&["SHUTDOWN", "NOSAVE"]);
    }
}

const OPTIONS: &str = r#"
  "streams":     [{"key": "enriched_events:{content_type}", "maxlen": 100000}],
  "sorted_sets": [{"key": "top_engaging_content:{content_type}", "member": "content_id",
                   "increment": "engagement_seconds"}],
  "hashes":      [{"key": "content_summary:{content_id}",
                   "increment": {"events": 1, "engagement_seconds": "engagement_seconds"},
                   "set": {"last_user_id": "user_id"}}],
  "chunk_rows": 100
"#;

async fn events(src: &PgPool, first: i64, last: i64) {
    let sql = format!(
        "INSERT INTO events SELECT i, 'c' || (i % 7), CASE WHEN i % 2 = 0 THEN 'video' ELSE 'article' END,
                'u' || (i % 13), (i % 50) + 0.25
         FROM generate_series({first}, {last}) i"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(src).await.expect("events");
}

/// Every figure Redis holds equals the same figure computed by SQL over the source.
async fn assert_figures(src: &PgPool, redis: &Redis) {
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT content_type, count(*), sum(engagement_seconds)::text FROM events GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(src)
    .await
    .expect("by type");
    for (content_type, count, _) in &rows {
        let len = redis.cli(&["XLEN", &format!("enriched_events:{content_type}")]);
        assert_eq!(len, [count.to_string()], "stream of {content_type}");
    }
    let scores: Vec<(String, String, f64)> = sqlx::query_as(
        "SELECT content_id, content_type, sum(engagement_seconds)::float8 FROM events GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(src)
    .await
    .expect("by content");
    for (content_id, content_type, seconds) in &scores {
        let score = redis.cli(&["ZSCORE", &format!("top_engaging_content:{content_type}"), content_id]);
        assert_eq!(score[0].parse::<f64>().expect("a score"), *seconds, "score of {content_id} in {content_type}");
    }
    let by_content: Vec<(String, i64, f64, String)> = sqlx::query_as(
        "SELECT content_id, count(*), sum(engagement_seconds)::float8, (array_agg(user_id ORDER BY id DESC))[1]
         FROM events GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(src)
    .await
    .expect("summaries");
    for (content_id, count, seconds, last_user) in &by_content {
        let key = format!("content_summary:{content_id}");
        let fields = redis.cli(&["HMGET", &key, "events", "engagement_seconds", "last_user_id"]);
        assert_eq!(fields[0], count.to_string(), "{key} events");
        assert_eq!(fields[1].parse::<f64>().expect("seconds"), *seconds, "{key} engagement_seconds");
        assert_eq!(fields[2], *last_user, "{key} last_user_id");
    }
}

/// Streams, sorted sets and hashes as the options describe them, fed by a
/// change stream and counted exactly once through a process killed half way
/// through a load, one killed after Redis committed, and a Redis restarted
/// between runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_sorted_sets_and_hashes_count_every_row_once() {
    let redis = Redis::start();
    let mut h = Harness::new("redis").await;
    let src = source(
        &mut h,
        "redis_src",
        "CREATE TABLE events (id bigint PRIMARY KEY, content_id text, content_type text, user_id text,
                              engagement_seconds numeric(10,2));",
    )
    .await;
    events(&src, 1, 1000).await;
    h.set_env("WEIR_CONN_CACHE", &redis.url());
    h.set_env("WEIR_LEASE_SECONDS", "2"); // the killed runners' leases
    // Every change of the table, as the change stream carries it (inserts here).
    let slot = format!("redis_{}", redis.port);
    let options = format!(r#"'{{"slot": "{slot}", "history": true, {OPTIONS}}}'"#);
    pipeline(
        &h,
        "to_redis",
        "public.events",
        &[
            ("destination_type", "'redis'"),
            ("destination_connection", "'cache'"),
            ("load_type", "'cdc'"),
            ("options", &options),
        ],
    )
    .await;
    h.run_ok(D1).await;
    assert_figures(&src, &redis).await;

    // Killed after 300 of 1000 new rows were applied: the next run goes on after them.
    events(&src, 1001, 2000).await;
    h.set_env("WEIR_REDIS_CRASH_AFTER_ROWS", "300");
    let crashed = h.run_date(D2).await;
    assert_ne!(crashed.code, 0, "{}", crashed.all());
    h.set_env("WEIR_REDIS_CRASH_AFTER_ROWS", "");
    h.run_ok(D2).await;
    assert_figures(&src, &redis).await;

    // Killed after Redis committed the load, before the metadata database heard of it.
    events(&src, 2001, 2500).await;
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "to_redis");
    let crashed = h.run_date(D3).await;
    assert_ne!(crashed.code, 0, "{}", crashed.all());
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "none");

    // Redis restarted (from its append-only file): the position survives with the data.
    redis.restart();
    events(&src, 2501, 3000).await;
    h.run_ok(D4).await;
    assert_figures(&src, &redis).await;
    let position = redis.cli(&["HGET", "weir:{to_redis}:applied", "committed"]);
    let watermark = h.rows("SELECT value FROM watermark WHERE pipeline_name = 'to_redis'").await;
    assert_eq!(vec![position], watermark, "Redis holds the position the metadata database holds");

    // A key template naming a column the source lacks: a clear error at `runner check`.
    sqlx::query("UPDATE controller SET options = jsonb_set(options, '{sorted_sets,0,member}', '\"nope\"') WHERE name = 'to_redis'")
        .execute(&h.pool)
        .await
        .expect("break the options");
    let check = h.runner(&["check", "--pipeline", "to_redis"]).await;
    assert_ne!(check.code, 0);
    assert!(check.all().contains("sorted_sets[0].member") && check.all().contains("`nope`"), "{}", check.all());
    let _ = sqlx::query("SELECT pg_drop_replication_slot($1)").bind(&slot).execute(&src).await;
}

/// `rediss://`: the same structures written over TLS (socat speaking it in
/// front of the server; the CA in `tls_ca_file`), read back over the plain port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("tempdir");
    crate::harness::tls_certificates(dir.path());
    let tls_port = crate::harness::spare_port();
    let _front = crate::harness::TlsFront::start(dir.path(), tls_port, redis.port);
    let mut h = Harness::new("redis_tls").await;
    source(
        &mut h,
        "redis_tls_src",
        "CREATE TABLE plays (id integer PRIMARY KEY, user_id integer, seconds integer);
         INSERT INTO plays SELECT i, i % 3, i FROM generate_series(1, 100) i;",
    )
    .await;
    let ca = dir.path().join("ca.pem");
    h.set_env("WEIR_CONN_CACHE", &format!("rediss://127.0.0.1:{tls_port}/0?tls_ca_file={}", ca.display()));
    let options = r#"'{"hashes": [{"key": "user:{user_id}", "increment": {"plays": 1, "seconds": "seconds"}}]}'"#;
    pipeline(
        &h,
        "plays_tls",
        "public.plays",
        &[
            ("destination_type", "'redis'"),
            ("destination_connection", "'cache'"),
            ("load_type", "'incremental'"),
            ("options", options),
        ],
    )
    .await;
    h.run_ok(D1).await;
    for user in 0..3 {
        let ids: Vec<i64> = (1..=100).filter(|i| i % 3 == user).collect();
        let want = [ids.len().to_string(), ids.iter().sum::<i64>().to_string()];
        assert_eq!(redis.cli(&["HMGET", &format!("user:{user}"), "plays", "seconds"]), want, "user {user}");
    }
}
