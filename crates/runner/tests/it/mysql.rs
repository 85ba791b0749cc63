//! The MySQL source end to end against the real MariaDB the services script
//! starts: every type value for value in PostgreSQL (and Delta), snapshots,
//! keyset-paged incremental loads with ties and lag, date-limited runs,
//! parallel key ranges, and each bad input and fault.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::Row;
use weir_testkit::mysql;
use weir_testkit::proxy::TcpProxy;

use crate::harness::{D1, D2, Harness};

/// A fresh MariaDB database as connection `oltp`, with `sql` run in it.
pub(crate) async fn oltp(h: &mut Harness, label: &str, sql: &str) -> String {
    let url = mysql::fresh_database(label).await.expect("create MariaDB test database");
    if !sql.trim().is_empty() {
        mysql::exec(&url, sql).await.expect("set up the MariaDB tables");
    }
    h.set_env("WEIR_CONN_OLTP", &url);
    url
}

fn db_name(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_owned()
}

/// A mysql pipeline reading `table` from `oltp` into `bronze.<dest>`, with `extra` columns.
pub(crate) async fn pipeline(h: &Harness, name: &str, table: &str, extra: &[(&str, &str)]) {
    let (table, dest) = (format!("'{table}'"), format!("'{name}'"));
    let mut cols = vec![
        ("source_type", "'mysql'"),
        ("source_connection", "'oltp'"),
        ("source_table", table.as_str()),
        ("schema_name", "'bronze'"),
        ("destination_table", dest.as_str()),
    ];
    cols.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    cols.extend(extra.iter().copied());
    h.pipeline(name, &cols).await;
}

/// Every column of one PostgreSQL row as text (`NULL` → `None`), in table order.
async fn row_text(h: &Harness, table: &str, id: i64) -> Vec<Option<String>> {
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema || '.' || table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&h.pool)
    .await
    .expect("columns");
    let select: Vec<String> = columns.iter().map(|c| format!("\"{c}\"::text")).collect();
    let sql = format!("SELECT {} FROM {table} WHERE id = {id}", select.join(", "));
    let mut conn = h.pool.acquire().await.expect("connection");
    sqlx::raw_sql("SET TIME ZONE 'UTC'").execute(&mut *conn).await.expect("set zone");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(&mut *conn).await.expect("row");
    (0..columns.len()).map(|i| row.get::<Option<String>, _>(i)).collect()
}

async fn pg_types(h: &Harness, schema: &str, table: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&h.pool)
    .await
    .expect("column types")
}

const TYPES_TABLE: &str = "
CREATE TABLE types_all (
  id INT PRIMARY KEY,
  t_bool BOOL, t_tiny TINYINT, t_utiny TINYINT UNSIGNED, t_small SMALLINT, t_usmall SMALLINT UNSIGNED,
  t_medium MEDIUMINT, t_umedium MEDIUMINT UNSIGNED, t_int INT, t_uint INT UNSIGNED,
  t_big BIGINT, t_ubig BIGINT UNSIGNED,
  t_dec DECIMAL(12,2), t_dec38 DECIMAL(38,10), t_dec65 DECIMAL(65,30),
  t_float FLOAT, t_double DOUBLE, t_bit1 BIT(1), t_bit12 BIT(12),
  t_date DATE, t_datetime DATETIME(6), t_ts TIMESTAMP(3) NULL, t_time TIME(6), t_year YEAR,
  t_char CHAR(5), t_varchar VARCHAR(50), t_text TEXT,
  t_binary BINARY(4), t_varbinary VARBINARY(8), t_blob BLOB,
  t_json JSON, t_enum ENUM('small','medium','large'), t_set SET('red','green','blue')
) CHARACTER SET utf8mb4;
INSERT INTO types_all VALUES
 (1, 1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
  9223372036854775807, 18446744073709551615,
  1234567890.12, '1234567890123456789012345678.0123456789',
  '12345678901234567890123456789012345.123456789012345678901234567890',
  1.5, 3.141592653589793, b'1', b'101010101010',
  '2025-03-23', '2025-03-23 12:34:56.789012', '2025-03-23 23:59:59.123', '23:59:59.999999', 2025,
  'abc', 'héllo 👋 wörld', 'emoji 🎉 text',
  X'DEADBEEF', X'00FF10', X'0102030405',
  '{\"a\": [1, 2], \"b\": \"ü\"}', 'medium', 'red,blue'),
 (2, 0, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0,
  -9223372036854775808, 0,
  -0.01, '-0.0000000001', '-1.000000000000000000000000000001',
  -0.25, -1e-300, b'0', b'0',
  '1000-01-01', '1000-01-01 00:00:00', '1970-01-01 00:00:01', '00:00:00', 1901,
  '', '', '', X'00000000', '', '', '[]', 'small', ''),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO types_all (id, t_date, t_datetime, t_ts) VALUES (4, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00');
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mysql_type_arrives_exact_in_postgres() {
    let mut h = Harness::new("my_types").await;
    oltp(&mut h, "types", TYPES_TABLE).await;
    pipeline(&h, "types", "types_all", &[("load_type", "'full'")]).await;
    h.run_ok(D1).await;

    let s = |v: &str| Some(v.to_owned());
    let max = row_text(&h, "bronze.types", 1).await;
    let want_max = vec![
        s("1"),
        s("true"),
        s("127"),
        s("255"),
        s("32767"),
        s("65535"),
        s("8388607"),
        s("16777215"),
        s("2147483647"),
        s("4294967295"),
        s("9223372036854775807"),
        s("18446744073709551615"),
        s("1234567890.12"),
        s("1234567890123456789012345678.0123456789"),
        s("12345678901234567890123456789012345.123456789012345678901234567890"),
        s("1.5"),
        s("3.141592653589793"),
        s("true"),
        s("2730"),
        s("2025-03-23"),
        s("2025-03-23 12:34:56.789012"),
        s("2025-03-23 23:59:59.123+00"),
        s("23:59:59.999999"),
        s("2025"),
        s("abc"),
        s("héllo 👋 wörld"),
        s("emoji 🎉 text"),
        s("\\xdeadbeef"),
        s("\\x00ff10"),
        s("\\x0102030405"),
        s(r#"{"a": [1, 2], "b": "ü"}"#),
        s("medium"),
        s("{red,blue}"),
    ];
    assert_eq!(max, want_max);

    let min = row_text(&h, "bronze.types", 2).await;
    let want_min = vec![
        s("2"),
        s("false"),
        s("-128"),
        s("0"),
        s("-32768"),
        s("0"),
        s("-8388608"),
        s("0"),
        s("-2147483648"),
        s("0"),
        s("-9223372036854775808"),
        s("0"),
        s("-0.01"),
        s("-0.0000000001"),
        s("-1.000000000000000000000000000001"),
        s("-0.25"),
        s("-1e-300"),
        s("false"),
        s("0"),
        s("1000-01-01"),
        s("1000-01-01 00:00:00"),
        s("1970-01-01 00:00:01+00"),
        s("00:00:00"),
        s("1901"),
        s(""),
        s(""),
        s(""),
        s("\\x00000000"),
        s("\\x"),
        s("\\x"),
        s("[]"),
        s("small"),
        s("{}"),
    ];
    assert_eq!(min, want_min);
    let nulls = row_text(&h, "bronze.types", 3).await;
    assert!(nulls[1..].iter().all(Option::is_none), "{nulls:?}");
    // Zero dates load as NULL, and the audit row counts them.
    let zero = row_text(&h, "bronze.types", 4).await;
    assert_eq!((&zero[20], &zero[21], &zero[22]), (&None, &None, &None));
    let details: Value = sqlx::query_scalar("SELECT details FROM audit WHERE pipeline_name = 'types'")
        .fetch_one(&h.pool)
        .await
        .expect("audit details");
    assert_eq!(details["zero_dates"], 3, "{details}");

    let types: Vec<String> = pg_types(&h, "bronze", "types").await.into_iter().map(|(_, t)| t).collect();
    let want: Vec<&str> = vec![
        "integer",
        "boolean",
        "smallint",
        "smallint",
        "smallint",
        "integer",
        "integer",
        "bigint",
        "integer",
        "bigint",
        "bigint",
        "numeric",
        "numeric",
        "numeric",
        "text",
        "real",
        "double precision",
        "boolean",
        "bigint",
        "date",
        "timestamp without time zone",
        "timestamp with time zone",
        "time without time zone",
        "smallint",
        "text",
        "text",
        "text",
        "bytea",
        "bytea",
        "bytea",
        "jsonb",
        "text",
        "ARRAY",
    ];
    assert_eq!(types, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_types_load_into_delta() {
    let mut h = Harness::new("my_delta").await;
    oltp(&mut h, "delta", TYPES_TABLE).await;
    pipeline(&h, "types", "types_all", &[("load_type", "'full'"), ("destination_type", "'delta'")]).await;
    h.run_ok(D1).await;

    let path = h.dir.path().join("lake/bronze/types");
    let t = weir_testkit::delta::read(&path.display().to_string(), &BTreeMap::new()).await.expect("read Delta");
    assert_eq!(t.rows.len(), 4);
    let types: BTreeMap<&str, &str> = t.columns.iter().map(|(n, ty)| (n.as_str(), ty.as_str())).collect();
    assert_eq!(types["t_ubig"], "decimal128(20, 0)");
    assert_eq!(types["t_dec38"], "decimal128(38, 10)");
    assert_eq!(types["t_ts"], "timestamp[us, tz=UTC]");
    let max = t.row("id", 1).expect("row 1");
    assert_eq!(max["t_ubig"], "18446744073709551615");
    assert_eq!(max["t_dec38"], "1234567890123456789012345678.0123456789");
    assert_eq!(max["t_varchar"], "héllo 👋 wörld");
    assert_eq!(max["t_set"], serde_json::json!(["red", "blue"]));
    assert_eq!(max["t_json"], r#"{"a": [1, 2], "b": "ü"}"#);
    assert_eq!(max["t_time"], "23:59:59.999999");
    assert_eq!(t.row("id", 4).expect("row 4")["t_date"], Value::Null);
}

const MESSAGES: &str = "
CREATE TABLE messages (
  id BIGINT PRIMARY KEY, chat_id INT NOT NULL, body VARCHAR(200) NOT NULL,
  updated_at DATETIME NOT NULL, KEY ix_messages_updated (updated_at)
);
INSERT INTO messages VALUES
 (1, 1, 'm1', '2025-03-23 10:00:00'), (2, 1, 'm2', '2025-03-23 10:00:00'), (3, 1, 'm3', '2025-03-23 10:00:00'),
 (4, 2, 'm4', '2025-03-23 10:00:00'), (5, 2, 'm5', '2025-03-23 11:00:00'), (6, 2, 'm6', '2025-03-23 11:00:00'),
 (7, 3, 'm7', '2025-03-23 11:00:00'), (8, 3, 'm8', '2025-03-23 11:00:00'), (9, 3, 'm9', '2025-03-23 11:00:00'),
 (10, 3, 'm10', '2025-03-23 11:00:00');
";

async fn bodies(h: &Harness) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT id, body FROM bronze.messages ORDER BY id").fetch_all(&h.pool).await.expect("messages")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_pages_keep_ties_at_the_watermark_and_lag_rereads_late_rows() {
    let mut h = Harness::new("my_incr").await;
    let url = oltp(&mut h, "incr", MESSAGES).await;
    // Pages of 3 rows cut both groups of equal watermarks in the middle.
    let incremental = [
        ("load_type", "'incremental'"),
        ("watermark_column", "'updated_at'"),
        ("primary_key", "'{id}'"),
        ("options", r#"'{"batch_size": 3}'"#),
    ];
    pipeline(&h, "messages", "messages", &incremental).await;
    let run = h.run_ok(D1).await;
    assert!(run.all().contains("paged=true"), "{}", run.all());
    assert_eq!(bodies(&h).await.len(), 10);
    let audit = h.last_audit("messages").await;
    assert_eq!(audit.watermark_after.as_deref(), Some("2025-03-23T11:00:00"));

    // Two new rows share the stored watermark exactly; one old row changes.
    mysql::exec(
        &url,
        "INSERT INTO messages VALUES (11, 4, 'm11', '2025-03-23 11:00:00'), (12, 4, 'm12', '2025-03-23 11:00:00');
         UPDATE messages SET body = 'm2 edited', updated_at = '2025-03-23 12:00:00' WHERE id = 2;",
    )
    .await
    .unwrap();
    h.run_ok(D2).await;
    let rows = bodies(&h).await;
    assert_eq!(rows.len(), 12, "no row lost, none doubled: {rows:?}");
    assert_eq!(rows[1], (2, "m2 edited".to_owned()));
    assert_eq!(rows[11], (12, "m12".to_owned()));
    assert_eq!(h.last_audit("messages").await.watermark_after.as_deref(), Some("2025-03-23T12:00:00"));

    // A transaction that commits late: its row's watermark is behind the stored one.
    mysql::exec(&url, "INSERT INTO messages VALUES (13, 4, 'late', '2025-03-23 11:58:00')").await.unwrap();
    h.run_ok(D2).await;
    assert_eq!(bodies(&h).await.len(), 12, "without lag the late row is behind the watermark");
    sqlx::query("UPDATE controller SET options = options || '{\"lag\": \"5 minutes\"}' WHERE name = 'messages'")
        .execute(&h.pool)
        .await
        .unwrap();
    h.run_ok(D2).await;
    let rows = bodies(&h).await;
    assert_eq!(rows.len(), 13, "{rows:?}");
    assert_eq!(rows[12], (13, "late".to_owned()));
    assert_eq!(h.last_audit("messages").await.watermark_after.as_deref(), Some("2025-03-23T12:00:00"));
    let dupes = h.scalar_i64("SELECT count(*) - count(DISTINCT id) FROM bronze.messages").await;
    assert_eq!(dupes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn date_column_limits_a_run_to_its_day() {
    let mut h = Harness::new("my_date").await;
    let url = oltp(
        &mut h,
        "date",
        "CREATE TABLE events (id INT AUTO_INCREMENT PRIMARY KEY, kind VARCHAR(10), created_at DATETIME(3));
         INSERT INTO events (kind, created_at) VALUES
           ('a', '2025-03-22 23:59:59.999'),
           ('b', '2025-03-23 00:00:00.000'), ('c', '2025-03-23 12:00:00'), ('d', '2025-03-23 23:59:59.999'),
           ('e', '2025-03-24 00:00:00.000'), ('f', '2025-03-24 08:00:00');",
    )
    .await;
    pipeline(
        &h,
        "events",
        "events",
        &[("load_type", "'incremental'"), ("options", r#"'{"date_column": "created_at"}'"#)],
    )
    .await;
    h.run_ok(D1).await;
    assert_eq!(h.count("bronze.events").await, 3);
    h.run_ok(D2).await;
    assert_eq!(h.count("bronze.events").await, 5);

    // Re-running a day replaces that day's rows: the new one is in, nothing doubles.
    mysql::exec(&url, "INSERT INTO events (kind, created_at) VALUES ('g', '2025-03-23 18:00:00')").await.unwrap();
    h.run_ok(D1).await;
    let kinds: Vec<(String, String)> = sqlx::query_as(
        "SELECT _weir_run_date::text, string_agg(kind, '' ORDER BY kind) FROM bronze.events GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(kinds, vec![("2025-03-23".into(), "bcdg".into()), ("2025-03-24".into(), "ef".into())]);
}

/// `rows` rows of `big(id, grp, label, updated_at)`, inserted 1000 at a time.
pub(crate) async fn fill_big(url: &str, rows: i64) {
    mysql::exec(
        url,
        "CREATE TABLE big (id BIGINT UNSIGNED PRIMARY KEY, grp INT, label VARCHAR(40), updated_at DATETIME(6),
                           KEY ix_big_updated (updated_at))",
    )
    .await
    .expect("create big");
    for start in (1..=rows).step_by(1000) {
        let values: Vec<String> = (start..(start + 1000).min(rows + 1))
            .map(|i| format!("({i}, {}, 'row {i}', '2025-03-23 00:00:00' + INTERVAL {i} SECOND)", i % 7))
            .collect();
        mysql::exec(url, &format!("INSERT INTO big VALUES {}", values.join(","))).await.expect("fill big");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_key_ranges_load_every_row_once() {
    let mut h = Harness::new("my_par").await;
    let url = oltp(&mut h, "par", "").await;
    fill_big(&url, 20_000).await;
    pipeline(
        &h,
        "big_full",
        "big",
        &[("load_type", "'full'"), ("options", r#"'{"parallelism": 4, "batch_size": 1000}'"#)],
    )
    .await;
    pipeline(
        &h,
        "big_incr",
        "big",
        &[
            ("load_type", "'incremental'"),
            ("watermark_column", "'updated_at'"),
            ("primary_key", "'{id}'"),
            ("options", r#"'{"parallelism": 3, "batch_size": 1000}'"#),
        ],
    )
    .await;
    let run = h.run_ok(D1).await;
    assert!(run.all().contains("ranges=4") && run.all().contains("ranges=3"), "{}", run.all());
    for table in ["bronze.big_full", "bronze.big_incr"] {
        let (rows, distinct, sum): (i64, i64, String) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), count(DISTINCT id), sum(id)::text FROM {table}"
        )))
        .fetch_one(&h.pool)
        .await
        .unwrap();
        assert_eq!((rows, distinct, sum.as_str()), (20_000, 20_000, "200010000"), "{table}");
    }

    mysql::exec(
        &url,
        "UPDATE big SET label = 'changed', updated_at = '2025-03-24 12:00:00' WHERE id % 200 = 0;
         INSERT INTO big VALUES (20001, 1, 'new', '2025-03-24 13:00:00'), (20002, 2, 'new', '2025-03-24 13:00:00');",
    )
    .await
    .unwrap();
    h.run_ok(D2).await;
    assert_eq!(h.count("bronze.big_incr").await, 20_002);
    assert_eq!(h.scalar_i64("SELECT count(*) FROM bronze.big_incr WHERE label = 'changed'").await, 100);
    assert_eq!(h.last_audit("big_incr").await.records_read, Some(102));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tables_and_columns_fail_their_pipeline_and_the_run_goes_on() {
    let mut h = Harness::new("my_bad").await;
    let url = oltp(
        &mut h,
        "bad",
        "CREATE TABLE t (id INT PRIMARY KEY, changed DATETIME, duration TIME);
         INSERT INTO t VALUES (1, '2025-03-23 10:00:00', '01:00:00'), (7, '2025-03-23 10:00:00', '-01:00:00');",
    )
    .await;
    let db = db_name(&url);
    pipeline(&h, "missing_table", "nope", &[("load_type", "'full'")]).await;
    pipeline(
        &h,
        "missing_column",
        "t",
        &[("load_type", "'incremental'"), ("watermark_column", "'changed_at'"), ("primary_key", "'{id}'")],
    )
    .await;
    pipeline(&h, "bad_value", "t", &[("load_type", "'full'")]).await;
    pipeline(
        &h,
        "good",
        "t",
        &[("load_type", "'full'"), ("options", r#"'{"query": "SELECT id, changed FROM t WHERE id = 1"}'"#)],
    )
    .await;
    sqlx::query("UPDATE controller SET source_table = NULL WHERE name = 'good'").execute(&h.pool).await.unwrap();
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());

    let a = h.last_audit("missing_table").await;
    assert_eq!(a.status, "failed");
    assert!(a.error.contains(&format!("MySQL table `{db}.nope` does not exist")), "{}", a.error);
    let a = h.last_audit("missing_column").await;
    assert!(a.error.contains("watermark_column `changed_at` is not a column of"), "{}", a.error);
    assert!(a.error.contains("columns: id, changed, duration"), "{}", a.error);
    let a = h.last_audit("bad_value").await;
    assert!(a.error.contains("column `duration` at the row id=7: TIME value -01:00:00"), "{}", a.error);
    assert_eq!(a.attempt, 1, "a bad value is not retried");
    assert!(!h.table_exists("bronze.bad_value").await, "nothing half-written");
    assert_eq!(h.last_audit("good").await.status, "success");
    assert_eq!(h.count("bronze.good").await, 1);

    // `runner check` finds the same mistakes without reading any rows.
    let check = h.runner(&["check"]).await;
    assert_eq!(check.code, 1, "{}", check.all());
    assert!(check.stdout.contains("ok      good"), "{}", check.stdout);
    assert!(check.stdout.contains("ok      bad_value"), "a bad value is data, not configuration: {}", check.stdout);
    assert!(
        check.stdout.contains(&format!("FAILED  missing_table: source: MySQL table `{db}.nope`")),
        "{}",
        check.stdout
    );
    assert!(check.stdout.contains("FAILED  missing_column: source: watermark_column `changed_at`"), "{}", check.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unindexed_watermark_warns_with_the_fix() {
    let mut h = Harness::new("my_noindex").await;
    oltp(
        &mut h,
        "noindex",
        "CREATE TABLE t (id INT PRIMARY KEY, changed DATETIME); INSERT INTO t VALUES (1, '2025-03-23 10:00:00');",
    )
    .await;
    let cols = [("load_type", "'incremental'"), ("watermark_column", "'changed'"), ("primary_key", "'{id}'")];
    pipeline(&h, "t", "t", &cols).await;
    let run = h.run_ok(D1).await;
    assert!(run.all().contains("has no index"), "{}", run.all());
    let details: Value =
        sqlx::query_scalar("SELECT details FROM audit WHERE pipeline_name = 't'").fetch_one(&h.pool).await.unwrap();
    let warning = details["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("CREATE INDEX `ix_t_changed` ON") && warning.contains("(`changed`, `id`)"), "{warning}");
    assert_eq!(h.count("bronze.t").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_retried_then_fails() {
    let mut h = Harness::new("my_refused").await;
    h.set_env("WEIR_CONN_OLTP", "mysql://weir:s3cret-pw@127.0.0.1:1/chat");
    pipeline(&h, "t", "t", &[("load_type", "'full'"), ("options", r#"'{"retries": 2, "retry_backoff_ms": 10}'"#)])
        .await;
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1);
    let a = h.last_audit("t").await;
    assert_eq!((a.status.as_str(), a.attempt), ("failed", 3), "{a:?}");
    assert!(a.error.contains("connecting to"), "{}", a.error);
    assert!(!run.all().contains("s3cret-pw") && !a.error.contains("s3cret-pw"), "the password never shows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_read_is_retried_and_commits_nothing_partial() {
    let mut h = Harness::new("my_drop").await;
    let url = oltp(&mut h, "drop", "").await;
    fill_big(&url, 6_000).await;
    let server = mysql::server_url();
    let upstream = url::Url::parse(&server).unwrap();
    let addr = format!("{}:{}", upstream.host_str().unwrap(), upstream.port().unwrap_or(3306));
    let proxy = TcpProxy::start(addr.parse().unwrap()).await.unwrap();
    let mut via = url::Url::parse(&url).unwrap();
    via.set_port(Some(proxy.port())).unwrap();
    h.set_env("WEIR_CONN_OLTP", via.as_str());
    let options = r#"'{"retries": 2, "retry_backoff_ms": 10, "batch_size": 500}'"#;
    pipeline(&h, "big", "big", &[("load_type", "'full'"), ("options", options)]).await;

    // Every connection drops after 100 kB: each attempt fails, nothing is committed.
    proxy.cut_after(100_000, 100);
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let a = h.last_audit("big").await;
    assert_eq!((a.status.as_str(), a.attempt), ("failed", 3), "{a:?}");
    assert!(!h.table_exists("bronze.big").await, "nothing half-written");

    // Once: the retry reads the whole table.
    proxy.cut_after(100_000, 1);
    h.run_ok(D1).await;
    let a = h.last_audit("big").await;
    assert_eq!((a.status.as_str(), a.attempt), ("success", 2), "{a:?}");
    assert_eq!(h.count("bronze.big").await, 6_000);
    assert_eq!(h.scalar_i64("SELECT count(DISTINCT id) FROM bronze.big").await, 6_000);
    assert!(proxy.cuts() >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_mistakes_are_named_before_any_read() {
    let mut h = Harness::new("my_config").await;
    oltp(&mut h, "config", "CREATE TABLE t (id INT PRIMARY KEY, changed DATETIME)").await;
    let cases = [
        ("no_pk", vec![("load_type", "'incremental'"), ("watermark_column", "'changed'")], "needs primary_key"),
        ("lag_alone", vec![("load_type", "'full'"), ("options", r#"'{"lag": "5 minutes"}'"#)], "options.lag"),
        (
            "bad_lag",
            vec![
                ("load_type", "'incremental'"),
                ("watermark_column", "'changed'"),
                ("primary_key", "'{id}'"),
                ("options", r#"'{"lag": "5 fortnights"}'"#),
            ],
            "is not a duration",
        ),
        ("typo", vec![("load_type", "'full'"), ("options", r#"'{"paralelism": 2}'"#)], "unknown key `paralelism`"),
    ];
    for (name, cols, _) in &cases {
        pipeline(&h, name, "t", cols).await;
    }
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1);
    for (name, _, want) in &cases {
        let a = h.last_audit(name).await;
        assert!(a.error.contains(want), "{name}: {}", a.error);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_watermark_round_trips_through_utc() {
    let mut h = Harness::new("my_tswm").await;
    let url = oltp(
        &mut h,
        "tswm",
        "CREATE TABLE t (id INT PRIMARY KEY, v INT, changed TIMESTAMP(3) NOT NULL, KEY ix_t_changed (changed));
         SET time_zone = '+03:30';
         INSERT INTO t VALUES (1, 1, '2025-03-23 13:30:00.250'), (2, 2, '2025-03-23 13:30:00.250');",
    )
    .await;
    let cols = [("load_type", "'incremental'"), ("watermark_column", "'changed'"), ("primary_key", "'{id}'")];
    pipeline(&h, "t", "t", &cols).await;
    h.run_ok(D1).await;
    // Written at +03:30, read in UTC: the instant is the same.
    let wm = h.last_audit("t").await.watermark_after.unwrap_or_default();
    assert!(wm.starts_with("2025-03-23T10:00:00.250"), "{wm}");

    mysql::exec(
        &url,
        "SET time_zone = '+00:00';
         INSERT INTO t VALUES (3, 3, '2025-03-23 10:00:00.250'), (4, 4, '2025-03-23 10:00:00.249');
         UPDATE t SET v = 20, changed = '2025-03-23 11:00:00' WHERE id = 2;",
    )
    .await
    .unwrap();
    h.run_ok(D2).await;
    let rows: Vec<(i32, i32)> =
        sqlx::query_as("SELECT id, v FROM bronze.t ORDER BY id").fetch_all(&h.pool).await.unwrap();
    // Row 3 shares the stored watermark (read again); row 4 is behind it (a late commit, no lag).
    assert_eq!(rows, vec![(1, 1), (2, 20), (3, 3)]);
    let wm = h.last_audit("t").await.watermark_after.unwrap_or_default();
    assert!(wm.starts_with("2025-03-23T11:00:00"), "{wm}");
}

/// Spatial columns arrive as standard WKB (or WKT, by option) with the SRID in
/// a column beside them: MariaDB itself must read back, from what landed, the
/// very geometry it holds (`ST_AsBinary` of the source equals the loaded WKB,
/// and `ST_AsBinary(ST_GeomFromText(loaded WKT))`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spatial_columns_arrive_as_wkb_or_wkt_with_their_srid() {
    let mut h = Harness::new("my_geo").await;
    let url = oltp(
        &mut h,
        "geo",
        "CREATE TABLE places (id INT PRIMARY KEY, g GEOMETRY NULL, p POINT NULL, poly POLYGON NULL);
         INSERT INTO places VALUES
           (1, ST_GeomFromText('POINT(51.39999999999999 35.7)', 4326), ST_GeomFromText('POINT(1.5 -2.25)', 3857),
               ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0),(0.2 0.1,0.3 0.1,0.3 0.2,0.2 0.1))', 4326)),
           (2, ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 2),LINESTRING(0 0,3 4))', 0), NULL, NULL),
           (3, NULL, NULL, NULL),
           (4, ST_GeomFromText('MULTIPOLYGON(((0 0,2 0,2 2,0 0)),((5 5,6 5,6 6,5 5)))', 4326),
               ST_GeomFromText('POINT(0.1 1e-300)', 4326), NULL);",
    )
    .await;
    pipeline(&h, "geo_pg", "places", &[("load_type", "'full'")]).await;
    pipeline(
        &h,
        "geo_delta",
        "places",
        &[
            ("load_type", "'full'"),
            ("destination_type", "'delta'"),
            ("destination_connection", "'lake'"),
            ("options", r#"'{"geometry": "wkt"}'"#),
        ],
    )
    .await;
    h.run_ok(D1).await;

    let mut my = <sqlx::MySqlConnection as sqlx::Connection>::connect(&url).await.expect("MariaDB");
    type Source = (i32, Option<Vec<u8>>, Option<i64>);
    for column in ["g", "p", "poly"] {
        let truth: Vec<Source> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, ST_AsBinary({column}), CAST(ST_SRID({column}) AS SIGNED) FROM places ORDER BY id"
        )))
        .fetch_all(&mut my)
        .await
        .expect("MariaDB's own reading");
        let loaded: Vec<(i32, Option<Vec<u8>>, Option<i64>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, \"{column}\", \"{column}_srid\" FROM bronze.geo_pg ORDER BY id"
        )))
        .fetch_all(&h.pool)
        .await
        .expect("PostgreSQL");
        assert_eq!(loaded.len(), truth.len());
        for ((id, wkb, srid), (_, pg_wkb, pg_srid)) in truth.iter().zip(&loaded) {
            assert_eq!(pg_wkb, wkb, "{column} of row {id}: the loaded bytes are MariaDB's WKB");
            assert_eq!(pg_srid, srid, "{column} of row {id}: the SRID");
        }

        let delta = weir_testkit::delta::read(
            &h.lake().join("bronze").join("geo_delta").display().to_string(),
            &BTreeMap::new(),
        )
        .await
        .expect("the Delta readers");
        for (id, wkb, srid) in &truth {
            let row = delta.row("id", i64::from(*id)).expect("row in Delta");
            assert_eq!(row[&format!("{column}_srid")].as_i64(), *srid, "{column} of row {id}");
            let wkt = row[column].as_str();
            let parsed: Option<Vec<u8>> = match wkt {
                None => None,
                Some(wkt) => sqlx::query_scalar("SELECT ST_AsBinary(ST_GeomFromText(?))")
                    .bind(wkt)
                    .fetch_one(&mut my)
                    .await
                    .expect("MariaDB parses the WKT"),
            };
            assert_eq!(&parsed, wkb, "{column} of row {id}: MariaDB reads the loaded WKT {wkt:?} as its geometry");
        }
    }
}
