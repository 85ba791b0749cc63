//! The ClickHouse destination end to end: the real `runner` against the real
//! server (`WEIR_TEST_CLICKHOUSE_URL`; the services script starts Debian's
//! 18.16, and a current server can be named instead), every value read back
//! with `clickhouse-client` over the native protocol and compared with the
//! source's own text. Types and what an old server cannot hold; keyed loads
//! and a CDC mirror converging by version; a block whose answer was lost; a
//! process killed at each step of the commit.

use std::process::Command;

use sqlx::PgPool;

use crate::harness::{D1, D2, Harness};
use crate::postgres::{pipeline, source};

const D3: &str = "20250325";
const D4: &str = "20250326";
const D5: &str = "20250327";

/// The server the runner writes to, and how `clickhouse-client` reaches it.
pub(crate) struct Server {
    pub(crate) url: String,
    host: String,
    port: String,
    user: String,
    password: String,
    version: (u32, u32),
}

impl Server {
    pub(crate) fn new() -> Self {
        let url = std::env::var("WEIR_TEST_CLICKHOUSE_URL")
            .expect("WEIR_TEST_CLICKHOUSE_URL (eval \"$(scripts/services.sh clickhouse)\")");
        let parsed = url::Url::parse(&url).expect("WEIR_TEST_CLICKHOUSE_URL is a URL");
        let tcp = std::env::var("WEIR_TEST_CLICKHOUSE_TCP").unwrap_or_else(|_| "127.0.0.1:19000".into());
        let (host, port) = tcp.split_once(':').expect("WEIR_TEST_CLICKHOUSE_TCP is host:port");
        let mut server = Self {
            host: host.into(),
            port: port.into(),
            user: if parsed.username().is_empty() { "default".into() } else { parsed.username().into() },
            password: parsed.password().unwrap_or("").into(),
            url,
            version: (0, 0),
        };
        let version = server.query("SELECT version()");
        let mut parts = version.trim().split('.').map(|p| p.parse().unwrap_or(0));
        server.version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        server
    }

    /// `clickhouse-client --query`, its TabSeparated output.
    pub(crate) fn query(&self, sql: &str) -> String {
        let out = Command::new("clickhouse-client")
            .args(["--host", &self.host, "--port", &self.port, "--user", &self.user, "--query", sql])
            .args(if self.password.is_empty() { vec![] } else { vec!["--password".to_owned(), self.password.clone()] })
            .output()
            .expect("clickhouse-client runs");
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    pub(crate) fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        // TabSeparated escapes quotes (as in `DateTime('UTC')`, `['a']`).
        self.query(sql).lines().map(|l| l.split('\t').map(|v| v.replace("\\'", "'")).collect()).collect()
    }

    fn datetime64(&self) -> bool {
        self.version >= (20, 1)
    }
}

/// A database of its own on the server, for one test run.
pub(crate) fn database(label: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("weir_t_{label}_{:08x}", (nanos as u64 ^ u64::from(std::process::id())) as u32)
}

async fn clickhouse_pipeline(h: &Harness, name: &str, table: &str, db: &str, extra: &[(&str, &str)]) {
    let db = format!("'{db}'");
    let mut columns =
        vec![("destination_type", "'clickhouse'"), ("destination_connection", "'ch'"), ("schema_name", db.as_str())];
    columns.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    columns.extend(extra.iter().copied());
    pipeline(h, name, table, &columns).await;
}

async fn sql(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `(id, text)` rows of a PostgreSQL query, tab-joined, as clickhouse-client prints them.
async fn pg_rows(pool: &PgPool, sql: &str) -> Vec<Vec<String>> {
    use sqlx::Row;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| (0..r.len()).map(|i| r.get::<Option<String>, _>(i).unwrap_or_else(|| "\\N".into())).collect())
        .collect()
}

const TYPES: &str = r#"
CREATE TABLE ch_types (
  id integer PRIMARY KEY,
  b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision,
  n12 numeric(12,2), n38 numeric(38,10), n50 numeric(50,20),
  t text, by bytea, dt date, ts timestamp, tstz timestamptz, tm time, u uuid, jb jsonb,
  ai integer[], at text[], af float8[]
);
INSERT INTO ch_types VALUES
 (1, true, 32767, 2147483647, 9223372036854775807, 3.4028235e38, 1.7976931348623157e308,
  9999999999.99, 1234567890123456789012345678.0123456789, 123456789012345678901234567890.12345678901234567890,
  E'héllo 👋 "quoted" \\ back\ttab\nline', '\x00ff10', '2105-12-31', '2105-12-31 23:59:59',
  '2025-03-23 10:00:00.123456+00', '23:59:59.999999', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, 2.50, null], "b": "ü"}', '{1,NULL,3}', '{"a b",NULL,""}', '{NaN,Infinity,-0,1e-300}'),
 (2, false, -32768, -2147483648, -9223372036854775808, -1.4e-45, -4.9e-324,
  -9999999999.99, -0.0000000001, -1.5, '', '\x', '1970-01-01', '1970-01-01 00:00:00',
  '1970-01-01 00:00:00+00', '00:00:00', '00000000-0000-0000-0000-000000000000', '[]', '{}', '{}', '{}'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL);
"#;

/// Every type of a PostgreSQL table, read back by clickhouse-client: equal to
/// the source's text, or counted in `audit.details` where the server cannot
/// hold it (an old server's DateTime drops the fraction of a second; no
/// version has a NULL array). A date the server cannot hold fails naming the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_arrives_in_clickhouse_exactly_or_counted() {
    let server = Server::new();
    let mut h = Harness::new("ch_types").await;
    let src = source(&mut h, "ch_types_src", TYPES).await;
    h.set_env("WEIR_CONN_CH", &server.url);
    let db = database("types");
    clickhouse_pipeline(&h, "ch_types", "public.ch_types", &db, &[]).await;
    h.run_ok(D1).await;

    let fraction = if server.datetime64() { ".US" } else { "" };
    let pg = pg_rows(
        &src,
        &format!(
            "SELECT id::text, b::int::text, i2::text, i4::text, i8::text, f4::text, f8::text, n12::text, n38::text,
                    n50::text, upper(encode(convert_to(t, 'UTF8'), 'hex')), upper(encode(by, 'hex')), dt::text,
                    to_char(ts, 'YYYY-MM-DD HH24:MI:SS'), to_char(tstz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS{fraction}'),
                    tm::text, u::text, upper(encode(convert_to(jb::text, 'UTF8'), 'hex')),
                    '[' || coalesce(array_to_string(ai, ',', 'NULL'), '') || ']',
                    '[' || coalesce((SELECT string_agg(coalesce(quote_literal(x), 'NULL'), ',') FROM unnest(at) x), '') || ']'
             FROM ch_types ORDER BY ch_types.id"
        ),
    )
    .await;
    let ch = server.rows(&format!(
        "SELECT toString(id), toString(b), toString(i2), toString(i4), toString(i8), toString(f4), toString(f8),
                n12, n38, n50, hex(t), hex(by), toString(dt), toString(ts), toString(tstz),
                tm, toString(u), hex(jb), toString(ai), toString(at)
         FROM {db}.ch_types ORDER BY id"
    ));
    let names = [
        "id", "b", "i2", "i4", "i8", "f4", "f8", "n12", "n38", "n50", "t", "by", "dt", "ts", "tstz", "tm", "u", "jb",
        "ai", "at",
    ];
    assert_eq!(ch.len(), 3, "{ch:?}");
    for (row, (want, got)) in pg.iter().zip(&ch).enumerate() {
        for ((name, w), g) in names.iter().zip(want).zip(got) {
            // (18.16 spells a Decimal128 wrong in toString, right in TSV: the columns go out as they are.)
            // The same float, spelled `3.4028235e38` by ClickHouse and `3.4028235e+38` by PostgreSQL.
            let w = if name.starts_with('f') { w.replace("e+", "e") } else { w.clone() };
            // 18.16 prints day 0 of a Date or DateTime as zeros; the value is 1970-01-01's.
            let g = g.replace("0000-00-00", "1970-01-01");
            assert_eq!(g, w, "column {name} of row {}", row + 1);
        }
    }
    // Floats of every kind in an array: ClickHouse's own spelling of the same values.
    assert_eq!(
        server.query(&format!("SELECT toString(af) FROM {db}.ch_types ORDER BY id")),
        "[nan,inf,-0,1e-300]\n[]\n[]\n"
    );

    let types = server.rows(&format!(
        "SELECT name, type FROM system.columns WHERE database = '{db}' AND table = 'ch_types' ORDER BY name"
    ));
    let type_of = |c: &str| types.iter().find(|r| r[0] == c).map(|r| r[1].clone()).unwrap_or_default();
    assert_eq!(type_of("i8"), "Nullable(Int64)");
    assert_eq!(type_of("n38"), "Nullable(Decimal(38, 10))");
    assert_eq!(type_of("ai"), "Array(Nullable(Int32))");
    assert_eq!(
        type_of("tstz"),
        if server.datetime64() { "Nullable(DateTime64(6, 'UTC'))" } else { "Nullable(DateTime('UTC'))" }
    );

    // What changed is counted: the NULL arrays, and (on an old server) the fractions of a second.
    let details = h
        .rows(
            "SELECT coalesce(details->>'null_arrays_as_empty', '-'), coalesce(details->>'truncated_subseconds', '0')
             FROM audit WHERE pipeline_name = 'ch_types'",
        )
        .await;
    let subseconds = if server.datetime64() { "0" } else { "1" };
    assert_eq!(details, [["3".to_owned(), subseconds.to_owned()]]);

    // A date the server cannot hold fails naming the column, and the table keeps its rows.
    if !server.datetime64() {
        sql(&src, "INSERT INTO ch_types (id, dt) VALUES (4, '1969-12-31')").await;
        let run = h.run_date(D2).await;
        assert_ne!(run.code, 0);
        assert!(run.all().contains("column `dt`") && run.all().contains("1969-12-31"), "{}", run.all());
        assert_eq!(server.query(&format!("SELECT count() FROM {db}.ch_types")), "3\n");
    }
    server.query(&format!("DROP DATABASE {db}"));
}

/// A keyed load and a CDC mirror: rows converge by version, never by the
/// clock; deletes and a changed key are flagged; a truncate replaces the
/// table; the view shows the current rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdc_mirror_in_clickhouse_converges_by_position() {
    let server = Server::new();
    let mut h = Harness::new("ch_cdc").await;
    let src = source(
        &mut h,
        "ch_cdc_src",
        "CREATE TABLE items (id integer PRIMARY KEY, name text, qty integer);
         INSERT INTO items SELECT i, 'item ' || i, i FROM generate_series(1, 50) i;",
    )
    .await;
    h.set_env("WEIR_CONN_CH", &server.url);
    h.set_env("WEIR_LEASE_SECONDS", "2"); // the killed runners' leases
    let db = database("cdc");
    let slot = format!("ch_cdc_{}", &db[db.len() - 8..]);
    let options = format!(r#"'{{"slot": "{slot}"}}'"#);
    clickhouse_pipeline(&h, "ch_items", "public.items", &db, &[("load_type", "'cdc'"), ("options", &options)]).await;
    let history = format!(r#"'{{"slot": "{slot}", "history": true}}'"#);
    clickhouse_pipeline(
        &h,
        "ch_items_log",
        "public.items",
        &db,
        &[("load_type", "'cdc'"), ("options", &history), ("destination_table", "'items_log'")],
    )
    .await;
    h.run_ok(D1).await;
    let current =
        |server: &Server| server.rows(&format!("SELECT id, name, qty FROM {db}.ch_items_current ORDER BY id"));
    let source_rows = || async {
        pg_rows(&src, "SELECT id::text, name, coalesce(qty::text, '\\N') FROM items ORDER BY items.id").await
    };
    assert_eq!(current(&server), source_rows().await);

    sql(&src, "UPDATE items SET name = 'renamed' WHERE id <= 10").await;
    sql(&src, "UPDATE items SET id = 1000 WHERE id = 11").await; // a changed key
    sql(&src, "DELETE FROM items WHERE id BETWEEN 20 AND 24").await;
    sql(&src, "INSERT INTO items VALUES (51, 'new', NULL)").await;
    h.run_ok(D2).await;
    assert_eq!(current(&server), source_rows().await);

    // Killed after ClickHouse committed, before the metadata store heard: the
    // next run reads the position from ClickHouse's commit log, and applies nothing twice.
    sql(&src, "UPDATE items SET qty = qty + 100 WHERE id BETWEEN 30 AND 39").await;
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "ch_items_log");
    let crashed = h.run_date(D3).await;
    assert_ne!(crashed.code, 0, "{}", crashed.all());
    // Killed with the commit prepared and the rows attached, but not recorded as committed.
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "none");
    sql(&src, "INSERT INTO items VALUES (52, 'after the crash', 52)").await;
    h.set_env("WEIR_CLICKHOUSE_CRASH", "applied");
    let crashed = h.run_date(D4).await;
    assert_ne!(crashed.code, 0, "{}", crashed.all());
    h.set_env("WEIR_CLICKHOUSE_CRASH", "none");
    h.run_ok(D5).await;
    assert_eq!(current(&server), source_rows().await);
    // The history has every change once: 50 snapshot rows, the marker, 10 + 1 updates, the
    // changed key's delete, 5 deletes, 3 inserts, 10 updates.
    let ops = server.rows(&format!("SELECT _weir_op, count() FROM {db}.items_log GROUP BY _weir_op ORDER BY _weir_op"));
    let want: Vec<Vec<String>> = [["c", "2"], ["d", "6"], ["r", "50"], ["t", "1"], ["u", "21"]]
        .iter()
        .map(|r| r.map(str::to_owned).to_vec())
        .collect();
    assert_eq!(ops, want);

    // A truncate at the source empties the mirror, atomically with what follows it.
    sql(&src, "TRUNCATE items; INSERT INTO items VALUES (7, 'reborn', 7)").await;
    h.run_ok("20250330").await;
    assert_eq!(current(&server), source_rows().await);
    assert_eq!(server.query(&format!("SELECT count() FROM {db}.ch_items FINAL")), "1\n");

    let _ = sqlx::query("SELECT pg_drop_replication_slot($1)").bind(&slot).execute(&src).await;
    server.query(&format!("DROP DATABASE {db}"));
}

/// Incremental loads are exactly once, row for row in the table (not only
/// after merges): a block whose answer was lost after the server took it is
/// not sent again; a load killed with its commit prepared, or with its rows
/// attached, is finished by the next run from the table's own `_weir_load`;
/// a full load replaces the table at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_into_clickhouse_are_exactly_once_through_lost_answers_and_kills() {
    let server = Server::new();
    let mut h = Harness::new("ch_append").await;
    let src = source(
        &mut h,
        "ch_append_src",
        "CREATE TABLE events (id bigint PRIMARY KEY, at timestamp, kind text);
         INSERT INTO events SELECT i, '2025-03-01'::timestamp + i * interval '1 minute', 'k' || (i % 3)
         FROM generate_series(1, 2500) i;",
    )
    .await;
    h.set_env("WEIR_CONN_CH", &server.url);
    h.set_env("WEIR_LEASE_SECONDS", "2"); // the killed runners' leases
    let db = database("append");
    clickhouse_pipeline(
        &h,
        "ch_events",
        "public.events",
        &db,
        &[
            ("load_type", "'incremental'"),
            ("watermark_column", "'id'"),
            ("primary_key", "'{id}'"),
            ("options", r#"'{"batch_rows": 1000}'"#),
        ],
    )
    .await;
    clickhouse_pipeline(&h, "ch_full", "public.events", &db, &[("destination_table", "'events_full'")]).await;

    // The second block's answer is lost after the server took it: the stage's count says so.
    h.set_env("WEIR_CLICKHOUSE_LOSE_ANSWER", "2");
    h.run_ok(D1).await;
    h.set_env("WEIR_CLICKHOUSE_LOSE_ANSWER", "0");
    let count = |t: &str| server.query(&format!("SELECT count(), uniqExact(id) FROM {db}.{t}"));
    assert_eq!(count("ch_events"), "2500\t2500\n");
    assert_eq!(count("events_full"), "2500\t2500\n");

    // Killed with the commit prepared (nothing attached), then with the rows attached.
    for (step, first) in [("prepared", 2501), ("applied", 3001)] {
        sql(
            &src,
            &format!("INSERT INTO events SELECT i, now(), 'late' FROM generate_series({first}, {}) i", first + 499),
        )
        .await;
        h.set_env("WEIR_CLICKHOUSE_CRASH", step);
        let crashed = h.run_date(D2).await;
        assert_ne!(crashed.code, 0, "{}", crashed.all());
        h.set_env("WEIR_CLICKHOUSE_CRASH", "none");
        h.run_ok(D2).await;
        let total = first + 499;
        // Each load reads the last watermark's rows again (ties), as new versions: FINAL collapses them.
        assert_eq!(count("ch_events FINAL"), format!("{total}\t{total}\n"), "after a kill at {step}");
        assert_eq!(count("events_full"), format!("{total}\t{total}\n"), "after a kill at {step}");
    }
    let stages =
        server.query("SELECT count() FROM system.tables WHERE database = '_weir' AND name LIKE 'stage_ch_events_%'");
    assert_eq!(stages, "0\n", "no staging table is left");
    let audit = h.last_audit("ch_events").await;
    assert_eq!(audit.watermark_after.as_deref(), Some("3500"));
    server.query(&format!("DROP DATABASE {db}"));
}

/// A server that does not answer fails its pipeline with the server named and
/// no password printed anywhere; the run goes on for the other pipelines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_that_is_down_fails_its_pipeline_naming_the_server() {
    let server = Server::new();
    let mut h = Harness::new("ch_down").await;
    source(&mut h, "ch_down_src", "CREATE TABLE t (id integer PRIMARY KEY); INSERT INTO t VALUES (1), (2);").await;
    h.set_env("WEIR_CONN_CH", &server.url);
    h.set_env("WEIR_CONN_DOWN", "clickhouse://loader:Sekret-42@127.0.0.1:1/analytics");
    let db = database("down");
    clickhouse_pipeline(&h, "ch_up", "public.t", &db, &[]).await;
    clickhouse_pipeline(
        &h,
        "ch_down",
        "public.t",
        &db,
        &[("destination_connection", "'down'"), ("options", r#"'{"retries": 0}'"#)],
    )
    .await;
    let run = h.run_date(D1).await;
    assert_ne!(run.code, 0);
    assert!(run.all().contains("127.0.0.1:1"), "{}", run.all());
    assert!(!run.all().contains("Sekret-42"), "{}", run.all());
    let audit = h.last_audit("ch_down").await;
    assert_eq!(audit.status, "failed");
    assert!(!audit.error.contains("Sekret-42"), "{}", audit.error);
    assert_eq!(h.last_audit("ch_up").await.status, "success");
    assert_eq!(server.query(&format!("SELECT count() FROM {db}.ch_up")), "2\n");
    server.query(&format!("DROP DATABASE {db}"));
}
