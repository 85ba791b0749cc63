//! The PostgreSQL source end to end, against a second database on the real
//! server: every type copied PostgreSQL → PostgreSQL value for value and type
//! for type (read back with the server's own text output on both sides), and
//! into Delta; keyset-paged incremental loads with ties, lag and parallel key
//! ranges in one exported snapshot; and what `runner check` says of a missing
//! table or column.

use std::collections::BTreeMap;

use sqlx::{PgPool, Row};

use crate::harness::{D1, D2, Harness};

/// A fresh source database as connection `src`, with `sql` run in it.
pub(crate) async fn source(h: &mut Harness, label: &str, sql: &str) -> PgPool {
    let url = weir_testkit::pg::fresh_database(label).await.expect("source database");
    let pool = PgPool::connect(&url).await.expect("connect source");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.expect("set up the source");
    h.set_env("WEIR_CONN_SRC", &url);
    pool
}

pub(crate) async fn pipeline(h: &Harness, name: &str, table: &str, extra: &[(&str, &str)]) {
    let (table, dest) = (format!("'{table}'"), format!("'{name}'"));
    let mut cols = vec![
        ("source_type", "'postgres'"),
        ("source_connection", "'src'"),
        ("source_table", table.as_str()),
        ("schema_name", "'bronze'"),
        ("destination_table", dest.as_str()),
        ("load_type", "'full'"),
    ];
    cols.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    cols.extend(extra.iter().copied());
    h.pipeline(name, &cols).await;
}

/// `(column, format_type)` of a table, in order.
pub(crate) async fn types(pool: &PgPool, table: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
         WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("columns of {table}: {e}"))
}

/// Every value of `table` as the server prints it, by `id`.
pub(crate) async fn text_rows(pool: &PgPool, table: &str, columns: &[String]) -> BTreeMap<i32, Vec<Option<String>>> {
    let select: Vec<String> = columns.iter().map(|c| format!("\"{c}\"::text")).collect();
    let sql = format!("SELECT id, {} FROM {table}", select.join(", "));
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("rows of {table}: {e}"))
        .iter()
        .map(|r| (r.get::<i32, _>(0), (1..=columns.len()).map(|i| r.get::<Option<String>, _>(i)).collect()))
        .collect()
}

pub(crate) const ALL_TYPES: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE all_types (
  id integer PRIMARY KEY,
  b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision,
  n12 numeric(12,2), n38 numeric(38,10), n numeric, n50 numeric(50,20),
  t text, vc varchar(20), c char(5), nm name, e mood, d positive,
  by bytea, dt date, tm time, tmtz timetz, ts timestamp, ts3 timestamp(3), tstz timestamptz,
  iv interval, u uuid, j json, jb jsonb, ip inet, cd cidr, mac macaddr, cash money, x xml, bits bit(3), vb varbit,
  ai integer[], at text[], an numeric(10,2)[], ats timestamptz[], aip inet[], au uuid[], af float8[]
);
INSERT INTO all_types VALUES
 (1, true, 32767, 2147483647, 9223372036854775807, 3.4028235e38, 1.7976931348623157e308,
  9999999999.99, 1234567890123456789012345678.0123456789, 'NaN', 123456789012345678901234567890.12345678901234567890,
  'héllo 👋 "quoted" \ back', 'varchar', 'ab', 'a_name', 'happy', 7,
  '\x00ff10', '9999-12-31', '23:59:59.999999', '12:34:56.789+05:30', '9999-12-31 23:59:59.999999',
  '2025-03-23 10:00:00.123', '2025-03-23 10:00:00.123456+00',
  '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, 2.50, null], "b": "ü"}', '{"k": -0.0, "big": 12345678901234567890123}', '192.168.1.5/24', '10.0.0.0/8',
  '08:00:2b:01:02:03', '12.34', '<a>x</a>', B'101', B'1101',
  '{1,NULL,3}', '{"a b",NULL,"","\"q\""}', '{1.50,-2.25}', '{"2025-03-23 10:00:00+00",NULL}',
  '{10.0.0.1,::1}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', '{NaN,Infinity,-0,1e-300}'),
 (2, false, -32768, -2147483648, -9223372036854775808, -1.4e-45, -4.9e-324,
  -9999999999.99, -0.0000000001, '-123456789012345678901234567890123456789.000000000000000000001', -1.5,
  '', '', '', '', 'sad', 1,
  '\x', '0001-01-01', '00:00:00', '00:00:00-12', '0001-01-01 00:00:00', '1970-01-01 00:00:00',
  '1970-01-01 00:00:00+00', '-3 days -00:00:01', '00000000-0000-0000-0000-000000000000',
  '[]', '{}', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', '-0.01', '', B'000', B'',
  '{}', '{}', '{}', '{}', '{}', '{}', '{}'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_postgres_type_copies_exactly_type_for_type() {
    let mut h = Harness::new("pg_types").await;
    let src = source(&mut h, "pg_types_src", ALL_TYPES).await;
    pipeline(&h, "types", "public.all_types", &[]).await;
    pipeline(
        &h,
        "types_lake",
        "public.all_types",
        &[("destination_type", "'delta'"), ("destination_connection", "'lake'")],
    )
    .await;
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 0, "{}", run.all());

    let source_types = types(&src, "all_types").await;
    let copied_types = types(&h.pool, "bronze.types").await;
    let expected: Vec<(String, String)> = source_types
        .iter()
        .map(|(n, t)| match n.as_str() {
            // Enums and domains do not exist in the destination: their base types do.
            "e" => (n.clone(), "text".to_owned()),
            "d" => (n.clone(), "integer".to_owned()),
            _ => (n.clone(), t.clone()),
        })
        .collect();
    assert_eq!(copied_types, expected, "type for type");

    let columns: Vec<String> = source_types.iter().map(|(n, _)| n.clone()).filter(|n| n != "id").collect();
    let want = text_rows(&src, "all_types", &columns).await;
    let got = text_rows(&h.pool, "bronze.types", &columns).await;
    for (id, row) in &want {
        let copied = got.get(id).unwrap_or_else(|| panic!("row {id} was not copied"));
        for ((column, w), g) in columns.iter().zip(row).zip(copied) {
            assert_eq!(g, w, "column {column} of row {id}");
        }
    }
    assert_eq!(got.len(), want.len());

    let lake =
        weir_testkit::delta::read(&h.lake().join("bronze").join("types_lake").display().to_string(), &BTreeMap::new())
            .await
            .expect("the Delta readers");
    let row = lake.row("id", 1).expect("row 1 in Delta");
    assert_eq!(row["n"], "NaN", "an unconstrained numeric keeps its exact text");
    assert_eq!(row["n50"], "123456789012345678901234567890.12345678901234567890");
    assert_eq!(row["n38"], "1234567890123456789012345678.0123456789");
    assert_eq!(row["u"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(row["ip"], "192.168.1.5/24");
    assert_eq!(row["e"], "happy");
    assert_eq!(row["i8"], 9223372036854775807i64);
    assert_eq!(row["ai"], serde_json::json!([1, null, 3]));
}

const EVENTS: &str = "
CREATE TABLE events (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, body text);
CREATE INDEX ON events (updated_at, id);
INSERT INTO events SELECT i, '2025-03-23 10:00:00+00'::timestamptz + (i / 3) * interval '1 minute', 'v' || i
FROM generate_series(1, 40) i;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_pages_keep_ties_and_parallel_ranges_share_one_snapshot() {
    let mut h = Harness::new("pg_incr").await;
    let src = source(&mut h, "pg_incr_src", EVENTS).await;
    let incremental = [
        ("load_type", "'incremental'"),
        ("watermark_column", "'updated_at'"),
        ("primary_key", "'{id}'"),
        ("options", r#"'{"batch_size": 4, "lag": "1 minute"}'"#),
    ];
    pipeline(&h, "events", "public.events", &incremental).await;
    pipeline(&h, "events_full", "public.events", &[("options", r#"'{"parallelism": 3, "batch_size": 7}'"#)]).await;
    h.run_ok(D1).await;
    assert_eq!(h.count("bronze.events").await, 40);
    assert_eq!(h.count("bronze.events_full").await, 40);
    let max_wm = h.last_audit("events").await.watermark_after.expect("a watermark");

    // A late row at the stored watermark, a new one, an edit.
    sqlx::raw_sql(
        "INSERT INTO events VALUES (41, (SELECT max(updated_at) FROM events), 'tie'), (42, now(), 'new');
         UPDATE events SET body = 'edited', updated_at = now() WHERE id = 5",
    )
    .execute(&src)
    .await
    .expect("change the source");
    h.run_ok(D2).await;
    assert_eq!(h.count("bronze.events").await, 42, "nothing lost, nothing doubled");
    let rows = h.rows("SELECT id::text AS k, body FROM bronze.events WHERE id IN (5, 41, 42) ORDER BY id").await;
    assert_eq!(rows, [vec!["5", "edited"], vec!["41", "tie"], vec!["42", "new"]]);
    let second = h.last_audit("events").await;
    assert!(second.watermark_after.as_deref() > Some(max_wm.as_str()), "{second:?}");
    assert_eq!(h.count("bronze.events_full").await, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_missing_table_or_column() {
    let mut h = Harness::new("pg_check").await;
    source(&mut h, "pg_check_src", EVENTS).await;
    pipeline(&h, "no_table", "public.nope", &[]).await;
    pipeline(
        &h,
        "no_column",
        "public.events",
        &[("load_type", "'incremental'"), ("watermark_column", "'changed_at'"), ("primary_key", "'{id}'")],
    )
    .await;
    pipeline(&h, "fine", "public.events", &[]).await;
    let check = h.runner(&["check"]).await;
    assert_eq!(check.code, 1, "{}", check.all());
    assert!(check.stdout.contains("ok      fine"), "{}", check.stdout);
    assert!(check.stdout.contains("public.nope does not exist"), "{}", check.stdout);
    assert!(
        check.stdout.contains("watermark_column `changed_at` is not a column of public.events"),
        "{}",
        check.stdout
    );
}
