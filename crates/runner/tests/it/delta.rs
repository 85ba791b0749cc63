//! The Delta sink end to end: every load type, re-commits, schema evolution,
//! concurrent writers, faults and bad input, on local disk and on the S3
//! server; each table read back by an independent reader (Python `deltalake`).

use std::collections::BTreeMap;

use serde_json::Value;
use weir_testkit::data::{evolved_orders_batch, order, orders_to_batch, retyped_orders_batch, write_parquet};
use weir_testkit::delta::{DeltaRead, read, s3_options};
use weir_testkit::s3::S3Server;

use crate::harness::{D1, D2, Harness, day, parquet_file, write_orders};
use crate::loads::with;

/// The local warehouse behind connection `warehouse`.
fn warehouse(h: &mut Harness) -> std::path::PathBuf {
    let dir = h.dir.path().join("warehouse");
    h.set_env("WEIR_CONN_WAREHOUSE", &format!("file://{}", dir.display()));
    dir
}

/// The `orders` pipeline's columns, loading into a Delta table in `warehouse`.
fn in_warehouse<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    with(&[&[("destination_type", "'delta'"), ("destination_connection", "'warehouse'")], extra].concat())
}

async fn local(path: &std::path::Path) -> DeltaRead {
    read(&path.display().to_string(), &BTreeMap::new()).await.expect("the deltalake reader reads the table")
}

fn sorted_ids(t: &DeltaRead) -> Vec<i64> {
    let mut ids: Vec<i64> = t.column("order_id").iter().filter_map(Value::as_i64).collect();
    ids.sort_unstable();
    ids
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_and_date_sliced_loads_make_valid_tables_that_query_and_catalog_see() {
    let mut h = Harness::new("delta_loads").await;
    let wh = warehouse(&mut h);
    write_orders(&h.lake().join("orders/dt=20250323"), D1, 1, 1_000, 2);
    write_orders(&h.lake().join("orders/dt=20250324"), D2, 5_001, 500, 1);
    // Full load into the default lake (no destination_connection: ./lake under the working directory).
    h.pipeline(
        "orders",
        &with(&[("data_source", "'orders/dt=20250323/'"), ("load_type", "'full'"), ("destination_type", "'delta'")]),
    )
    .await;
    // Date-sliced incremental load, partitioned by its run date, into `warehouse`.
    h.pipeline(
        "daily",
        &in_warehouse(&[
            ("data_source", "'orders/dt={date}/'"),
            ("load_type", "'incremental'"),
            ("destination_table", "'daily'"),
            ("partition_by", "'{_weir_run_date}'"),
        ]),
    )
    .await;

    for date in [D1, D1, D2, D1] {
        h.run_ok(date).await;
    }

    // The full load: two overwrite commits, the source's rows exactly, values and types intact.
    let orders = local(&h.lake().join("bronze/orders")).await;
    assert_eq!(orders.version, 3, "one commit per run");
    assert_eq!(sorted_ids(&orders), (1..=1_000).collect::<Vec<_>>());
    let o = order(123, day(D1));
    let row = orders.row("order_id", 123).expect("order 123");
    assert_eq!(row["customer_id"], o.customer_id);
    assert_eq!(row["status"], o.status);
    assert_eq!(row["quantity"], o.quantity);
    assert_eq!(text(row.get("unit_price")), format!("{}.{:02}", o.unit_price_cents / 100, o.unit_price_cents % 100));
    assert_eq!(row["discount"], o.discount);
    assert_eq!(row["note"], o.note.clone().map(Value::String).unwrap_or(Value::Null));
    let types: Vec<(&str, &str)> = orders.columns.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    assert_eq!(
        types,
        vec![
            ("order_id", "int64"),
            ("customer_id", "int32"),
            ("status", "string"),
            ("quantity", "int16"),
            ("unit_price", "decimal128(10, 2)"),
            ("discount", "double"),
            ("total", "decimal128(12, 2)"),
            ("created_at", "timestamp[us]"),
            ("updated_at", "timestamp[us, tz=UTC]"),
            ("note", "string"),
        ]
    );

    // The date slices: re-running a date replaced it, never duplicated it.
    let daily = local(&wh.join("bronze/daily")).await;
    assert_eq!(daily.partition_columns, vec!["_weir_run_date".to_owned()]);
    let mut expected: Vec<i64> = (1..=1_000).chain(5_001..=5_500).collect();
    expected.sort_unstable();
    assert_eq!(sorted_ids(&daily), expected);
    let d1_rows = daily.column("_weir_run_date").iter().filter(|v| text(Some(v)) == "2025-03-23").count();
    assert_eq!(d1_rows, 1_000);

    // The catalog knows both tables, at their latest versions.
    let cat = h.runner(&["catalog", "--format", "json"]).await;
    assert_eq!(cat.code, 0, "{}", cat.all());
    let entries: Vec<Value> = serde_json::from_str(&cat.stdout).expect("catalog JSON");
    let names: Vec<String> =
        entries.iter().map(|e| format!("{}.{}", text(e.get("schema_name")), text(e.get("table_name")))).collect();
    assert_eq!(names, ["bronze.daily", "bronze.orders"]);
    assert_eq!(entries[1]["version"], 3);
    assert_eq!(entries[0]["partition_by"], serde_json::json!(["_weir_run_date"]));
    let ddl = h.runner(&["catalog", "ddl"]).await;
    assert!(
        ddl.stdout.contains(&format!(
            "CREATE TABLE IF NOT EXISTS `bronze`.`orders` USING DELTA LOCATION 'file://{}/bronze/orders';",
            h.lake().display()
        )),
        "{}",
        ddl.stdout
    );

    // SQL over the lake, by name; the answer computed independently from the generator.
    let q = h
        .runner(&[
            "query",
            "SELECT status, count(*) AS n, sum(quantity) AS q FROM bronze.orders GROUP BY status ORDER BY status",
            "--format",
            "csv",
        ])
        .await;
    assert_eq!(q.code, 0, "{}", q.all());
    let mut by_status: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for id in 1..=1_000 {
        let o = order(id, day(D1));
        let e = by_status.entry(o.status).or_default();
        e.0 += 1;
        e.1 += i64::from(o.quantity);
    }
    let mut expected = String::from("status,n,q\n");
    for (status, (n, q)) in &by_status {
        expected.push_str(&format!("{status},{n},{q}\n"));
    }
    assert_eq!(q.stdout, expected);
    let q = h.runner(&["query", "SELECT count(*) AS n FROM bronze.daily WHERE _weir_run_date = '2025-03-24'"]).await;
    assert_eq!(q.code, 0, "{}", q.all());
    assert!(q.stdout.contains("| 500 |") && q.stdout.contains("(1 row)"), "{}", q.stdout);

    // A query that cannot run is a usage error (exit 2), said plainly.
    let bad = h.runner(&["query", "SELEC nothing"]).await;
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(bad.stderr.contains("the SQL is not valid"), "{}", bad.stderr);
    let unknown = h.runner(&["query", "SELECT * FROM bronze.nope"]).await;
    assert_eq!(unknown.code, 2, "{}", unknown.all());
    assert!(unknown.stderr.contains("table `bronze.nope` is not in the catalog"), "{}", unknown.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_merges_the_latest_row_per_key() {
    let mut h = Harness::new("delta_upsert").await;
    let wh = warehouse(&mut h);
    let dir = h.lake().join("orders");
    write_orders(&dir, D1, 1, 100, 1);
    h.pipeline(
        "orders",
        &in_warehouse(&[
            ("data_source", "'orders/'"),
            ("load_type", "'incremental'"),
            ("primary_key", "'{order_id}'"),
            ("watermark_column", "'updated_at'"),
        ]),
    )
    .await;
    h.run_ok(D1).await;

    // Ids 1..=10 changed a day later (id 5 twice in one file: the later wins), ids 101..=110 new.
    let later = |id: i64, status: &'static str, bump: i64| {
        let mut o = order(id, day(D1));
        o.status = status;
        o.updated_at += 86_400_000_000 + bump;
        o
    };
    let mut changes: Vec<_> = (1..=10).map(|id| later(id, "returned", 0)).collect();
    changes.push(later(5, "shipped", 1_000_000));
    changes.extend((101..=110).map(|id| order(id, day(D2))));
    write_parquet(&dir.join("part-00001.parquet"), &[orders_to_batch(&changes)], 1_000).unwrap();
    let run = h.run_date(D2).await;
    assert_eq!(run.code, 0, "{}", run.all());

    let t = local(&wh.join("bronze/orders")).await;
    assert_eq!(sorted_ids(&t), (1..=110).collect::<Vec<_>>(), "one row per key");
    assert_eq!(t.row("order_id", 5).unwrap()["status"], "shipped");
    assert_eq!(t.row("order_id", 3).unwrap()["status"], "returned");
    assert_eq!(t.row("order_id", 50).unwrap()["status"], order(50, day(D1)).status);
    let audit = h.last_audit("orders").await;
    // Read: the changes (id 5 twice) plus the row at the stored watermark (re-read, as keys
    // merge); written: each distinct key once.
    assert_eq!(audit.records_read.unwrap() - 1, audit.records_processed.unwrap(), "{audit:?}");
    assert!(audit.records_processed.unwrap() >= 20, "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_evolution_adds_columns_and_an_incompatible_change_fails_naming_it() {
    let mut h = Harness::new("delta_evolve").await;
    let wh = warehouse(&mut h);
    let dir = h.lake().join("orders");
    write_orders(&dir, D1, 1, 10, 1);
    h.pipeline("orders", &in_warehouse(&[("data_source", "'orders/'"), ("load_type", "'incremental'")])).await;
    h.run_ok(D1).await;

    // The source gains `channel` and loses `note`; `quantity` narrows nothing (same type).
    let evolved = evolved_orders_batch(11, 5, day(D1));
    std::fs::remove_file(dir.join("part-00000.parquet")).unwrap();
    write_parquet(&dir.join("b.parquet"), &[evolved], 100).unwrap();
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 0, "{}", run.all());
    let t = local(&wh.join("bronze/orders")).await;
    assert_eq!(t.rows.len(), 15);
    assert_eq!(t.columns.last().map(|(n, _)| n.as_str()), Some("channel"));
    assert_eq!(t.column("channel").iter().filter(|v| v.as_str() == Some("web")).count(), 5);
    assert!(t.row("order_id", 12).unwrap()["note"].is_null());
    assert_eq!(t.version, 1);

    // `quantity` becomes text: the pipeline fails naming the column; the table is untouched.
    let retyped = retyped_orders_batch(100, 3, day(D1));
    std::fs::remove_file(dir.join("b.parquet")).unwrap();
    write_parquet(&dir.join("c.parquet"), &[retyped], 100).unwrap();
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1);
    let audit = h.last_audit("orders").await;
    assert!(audit.error.contains("column `quantity` is Int16 in the Delta table but Utf8 in the source"), "{audit:?}");
    let t = local(&wh.join("bronze/orders")).await;
    assert_eq!((t.version, t.rows.len()), (1, 15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_commit_is_applied_once_and_the_watermark_commits_with_the_data() {
    let mut h = Harness::new("delta_once").await;
    let wh = warehouse(&mut h);
    let dir = h.lake().join("events");
    write_orders(&dir, D1, 1, 40, 1);
    h.pipeline(
        "events",
        &in_warehouse(&[
            ("data_source", "'events/'"),
            ("load_type", "'incremental'"),
            ("watermark_column", "'order_id'"),
            ("destination_table", "'events'"),
            ("options", r#"'{"retries": 2, "retry_backoff_ms": 10}'"#),
        ]),
    )
    .await;
    // The first catalog write after the commit fails as a dropped connection would: the
    // attempt fails after its commit landed, and the retry must not commit again.
    sqlx::raw_sql(
        "CREATE SEQUENCE fault;
         CREATE FUNCTION fail_once() RETURNS trigger AS $$
         BEGIN
           IF nextval('fault') = 1 THEN  -- sequences survive the rollback
             RAISE EXCEPTION 'simulated connection loss' USING ERRCODE = '08006';
           END IF;
           RETURN NEW;
         END $$ LANGUAGE plpgsql;
         CREATE TRIGGER fail_once BEFORE INSERT ON catalog FOR EACH ROW EXECUTE FUNCTION fail_once();",
    )
    .execute(&h.pool)
    .await
    .unwrap();
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 0, "{}", run.all());
    let attempts: Vec<(i32, String)> =
        sqlx::query_as("SELECT attempt, status FROM audit WHERE pipeline_name = 'events' ORDER BY audit_id")
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert_eq!(attempts, vec![(1, "failed".to_owned()), (2, "success".to_owned())]);
    let t = local(&wh.join("bronze/events")).await;
    assert_eq!((t.version, t.rows.len()), (0, 40), "one commit, no duplicates");
    assert_eq!(h.last_audit("events").await.watermark_after.as_deref(), Some("40"));

    // The runner died after the commit but before the metadata store saw the watermark:
    // the watermark committed with the data wins, and nothing is loaded twice.
    sqlx::query("DELETE FROM watermark").execute(&h.pool).await.unwrap();
    h.run_ok(D1).await;
    assert_eq!(local(&wh.join("bronze/events")).await.rows.len(), 40);
    write_orders(&h.dir.path().join("tmp"), D1, 41, 5, 1);
    std::fs::rename(h.dir.path().join("tmp/part-00000.parquet"), dir.join("part-00001.parquet")).unwrap();
    h.run_ok(D1).await;
    let t = local(&wh.join("bronze/events")).await;
    assert_eq!(sorted_ids(&t), (1..=45).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_s3_both_commit_and_another_reader_sees_every_row() {
    let mut h = Harness::new("delta_s3_writers").await;
    let s3 = S3Server::start(&h.dir.path().join("s3")).await.unwrap();
    s3.bucket("lake").unwrap();
    h.set_env("WEIR_CONN_S3LAKE", &s3.connection_url("lake", "warehouse"));
    for (name, first) in [("a", 1), ("b", 1_000_001)] {
        write_orders(&h.lake().join(name), D1, first, 2_000, 1);
        h.pipeline(
            name,
            &with(&[
                ("data_source", &format!("'{name}/'")),
                ("load_type", "'incremental'"),
                ("destination_table", "'events'"),
                ("destination_type", "'delta'"),
                ("destination_connection", "'s3lake'"),
                ("options", r#"'{"retries": 5, "retry_backoff_ms": 50}'"#),
            ]),
        )
        .await;
    }
    // Two runner processes append to one table at once, three times over.
    for _ in 0..3 {
        let (a, b) = tokio::join!(h.runner(&["--date", D1, "-p", "a"]), h.runner(&["--date", D1, "-p", "b"]));
        assert_eq!((a.code, b.code), (0, 0), "{}\n{}", a.all(), b.all());
    }
    let t = read("s3://lake/warehouse/bronze/events", &s3_options(&s3.endpoint())).await.expect("read over S3");
    assert_eq!(t.version, 5, "six commits, none lost");
    assert_eq!(t.rows.len(), 3 * 4_000);
    let ids = sorted_ids(&t);
    for id in [1, 2_000, 1_000_001, 1_002_000] {
        assert_eq!(ids.iter().filter(|&&i| i == id).count(), 3, "id {id} once per round");
    }
    // Credentials never reach the catalog.
    let cat = h.runner(&["catalog", "--format", "json"]).await;
    assert!(cat.stdout.contains("s3://lake/warehouse/bronze/events"), "{}", cat.stdout);
    assert!(!cat.stdout.contains(weir_testkit::s3::SECRET_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_going_down_mid_write_leaves_the_last_version_and_a_rerun_completes() {
    let mut h = Harness::new("delta_s3_down").await;
    let s3 = S3Server::start(&h.dir.path().join("s3")).await.unwrap();
    s3.bucket("lake").unwrap();
    let url = format!("{}&max_retries=1&retry_timeout=5s", s3.connection_url("lake", "wh"));
    h.set_env("WEIR_CONN_S3LAKE", &url);
    let dir = h.lake().join("orders");
    write_orders(&dir, D1, 1, 100, 1);
    h.pipeline(
        "orders",
        &with(&[
            ("data_source", "'orders/'"),
            ("load_type", "'full'"),
            ("destination_type", "'delta'"),
            ("destination_connection", "'s3lake'"),
            ("options", r#"'{"retries": 0}'"#),
        ]),
    )
    .await;
    h.run_ok(D1).await;

    // New data; the server dies when the commit reaches the log (the data files are written).
    write_orders(&h.dir.path().join("tmp"), D1, 101, 50, 1);
    std::fs::rename(h.dir.path().join("tmp/part-00000.parquet"), dir.join("part-00001.parquet")).unwrap();
    s3.go_down_at("PUT", "/_delta_log/");
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let audit = h.last_audit("orders").await;
    assert_eq!(audit.status, "failed");
    assert!(!audit.error.contains(weir_testkit::s3::SECRET_KEY), "{}", audit.error);
    assert!(!run.all().contains(weir_testkit::s3::SECRET_KEY));

    s3.come_back();
    let t = read("s3://lake/wh/bronze/orders", &s3_options(&s3.endpoint())).await.unwrap();
    assert_eq!((t.version, t.rows.len()), (0, 100), "still the last committed version");
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 0, "{}", run.all());
    let t = read("s3://lake/wh/bronze/orders", &s3_options(&s3.endpoint())).await.unwrap();
    assert_eq!((t.version, sorted_ids(&t)), (1, (1..=150).collect::<Vec<_>>()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_delta_destinations_fail_alone_with_the_reason() {
    let mut h = Harness::new("delta_bad").await;
    let wh = warehouse(&mut h);
    let blocker = h.dir.path().join("not-a-folder");
    std::fs::write(&blocker, "a file where the lake should be").unwrap();
    h.set_env("WEIR_CONN_BLOCKED", &format!("file://{}", blocker.display()));
    write_orders(&h.lake().join("orders"), D1, 1, 20, 1);
    let delta = |table: &'static str, conn: &'static str| {
        vec![
            ("data_source", "'orders/'"),
            ("load_type", "'full'"),
            ("destination_type", "'delta'"),
            ("destination_connection", conn),
            ("destination_table", table),
        ]
    };
    let mut bad_partition = delta("'bad_partition'", "'warehouse'");
    bad_partition.push(("partition_by", "'{region}'"));
    h.pipeline("bad_partition", &with(&bad_partition)).await;
    h.pipeline("not_writable", &with(&delta("'blocked'", "'blocked'"))).await;
    h.pipeline("good", &with(&delta("'good'", "'warehouse'"))).await;

    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let e = h.last_audit("bad_partition").await;
    assert!(e.error.contains("partition_by column `region` is not in the data"), "{e:?}");
    assert!(!wh.join("bronze/bad_partition/_delta_log").exists(), "nothing written");
    let e = h.last_audit("not_writable").await;
    assert!(e.error.contains("pipeline `not_writable`") && e.error.contains("cannot be created"), "{e:?}");
    assert_eq!(h.last_audit("good").await.status, "success");
    assert_eq!(local(&wh.join("bronze/good")).await.rows.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintain_compacts_and_vacuums_and_is_audited() {
    let mut h = Harness::new("delta_maintain").await;
    let wh = warehouse(&mut h);
    h.pipeline(
        "events",
        &in_warehouse(&[
            ("data_source", "'events/{date}/'"),
            ("load_type", "'incremental'"),
            ("destination_table", "'events'"),
        ]),
    )
    .await;
    for (i, date) in ["20250301", "20250302", "20250303"].into_iter().enumerate() {
        write_orders(&h.lake().join(format!("events/{date}")), date, 1 + 100 * i as i64, 100, 1);
        h.run_ok(date).await;
    }
    assert_eq!(local(&wh.join("bronze/events")).await.files, 3);

    let run = h.runner(&["maintain", "--retention-hours", "0", "--format", "json"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    let out: Vec<Value> = serde_json::from_str(&run.stdout).expect("maintain JSON");
    assert_eq!(out[0]["table"], "bronze.events");
    assert_eq!(out[0]["report"]["files_compacted"], 3);
    assert_eq!(out[0]["report"]["files_vacuumed"], 3);
    let t = local(&wh.join("bronze/events")).await;
    assert_eq!((t.files, sorted_ids(&t)), (1, (1..=300).collect::<Vec<_>>()));
    let (status, processed): (String, Option<i64>) = sqlx::query_as(
        "SELECT status, records_processed FROM audit WHERE operation = 'maintain' AND pipeline_name = 'bronze.events'",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), processed), ("success", Some(6)));
    let q = h.runner(&["query", "SELECT count(*) AS n FROM bronze.events", "--format", "json"]).await;
    assert_eq!(q.stdout.trim(), r#"{"n":300}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_load_type_works_on_s3() {
    let mut h = Harness::new("delta_s3_loads").await;
    let s3 = S3Server::start(&h.dir.path().join("s3")).await.unwrap();
    s3.bucket("lake").unwrap();
    h.set_env("WEIR_CONN_S3LAKE", &s3.connection_url("lake", "wh"));
    write_orders(&h.lake().join("orders/20250323"), D1, 1, 300, 1);
    write_orders(&h.lake().join("orders/20250324"), D2, 251, 100, 1);
    let s3_delta = |table: &'static str, data: &'static str, load: &'static str| {
        vec![
            ("data_source", data),
            ("load_type", load),
            ("destination_table", table),
            ("destination_type", "'delta'"),
            ("destination_connection", "'s3lake'"),
        ]
    };
    h.pipeline("full", &with(&s3_delta("'full'", "'orders/{date}/'", "'full'"))).await;
    h.pipeline("sliced", &with(&s3_delta("'sliced'", "'orders/{date}/'", "'incremental'"))).await;
    h.pipeline("append", &with(&s3_delta("'appended'", "'orders/'", "'incremental'"))).await;
    let mut upsert = s3_delta("'upserted'", "'orders/'", "'incremental'");
    upsert.extend([("primary_key", "'{order_id}'"), ("watermark_column", "'order_id'")]);
    h.pipeline("upsert", &with(&upsert)).await;

    for date in [D1, D2, D1] {
        h.run_ok(date).await;
    }
    let options = s3_options(&s3.endpoint());
    let table = |name: &str| format!("s3://lake/wh/bronze/{name}");
    // full: the last run's date only.
    assert_eq!(sorted_ids(&read(&table("full"), &options).await.unwrap()), (1..=300).collect::<Vec<_>>());
    // sliced: both dates once each (ids 251..=300 exist on both days).
    let sliced = sorted_ids(&read(&table("sliced"), &options).await.unwrap());
    assert_eq!(sliced.len(), 400);
    // append without a watermark: every run appends the whole folder.
    assert_eq!(read(&table("appended"), &options).await.unwrap().rows.len(), 3 * 400);
    // upsert: one row per key, however often the overlapping ids were read.
    let upserted = read(&table("upserted"), &options).await.unwrap();
    assert_eq!(sorted_ids(&upserted), (1..=350).collect::<Vec<_>>());
}

/// A table whose column names need Delta's column mapping lives on past its
/// first write: overwritten, appended to, merged into, compacted (vacuumed
/// only: delta-rs cannot compact it), and a new column is refused naming it.
/// Both independent readers see the names as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_mapped_tables_take_overwrites_appends_and_merges() {
    let mut h = Harness::new("delta_mapped").await;
    let files = h.dir.path().join("files");
    h.set_env("WEIR_CONN_FILES", &format!("file://{}", files.display()));
    parquet_file(&files.join("a/part-0.parquet"), "{'id': [1, 2], 'order id': ['x', 'y'], 'unit price': [1.5, 2.5]}")
        .await;
    let common = [
        ("source_type", "'parquet'"),
        ("source_connection", "'files'"),
        ("data_source", "'a/'"),
        ("destination_type", "'delta'"),
        ("destination_connection", "'lake'"),
        ("schema_name", "'bronze'"),
    ];
    h.pipeline("full", &[&common[..], &[("destination_table", "'full'"), ("load_type", "'full'")]].concat()).await;
    h.pipeline("append", &[&common[..], &[("destination_table", "'append'"), ("load_type", "'incremental'")]].concat())
        .await;
    h.pipeline(
        "merge",
        &[&common[..], &[("destination_table", "'merge'"), ("load_type", "'incremental'"), ("primary_key", "'{id}'")]]
            .concat(),
    )
    .await;
    h.run_ok(D1).await;
    parquet_file(&files.join("a/part-0.parquet"), "{'id': [2, 3], 'order id': ['y2', 'z'], 'unit price': [2.0, 3.0]}")
        .await;
    h.run_ok(D2).await;

    let lake = h.lake().join("bronze");
    let rows = |t: &DeltaRead| {
        let mut rows: Vec<(i64, String, f64)> = t
            .rows
            .iter()
            .map(|r| {
                (r["id"].as_i64().unwrap_or(-1), text(r.get("order id")), r["unit price"].as_f64().unwrap_or(-1.0))
            })
            .collect();
        rows.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        rows
    };
    let full = local(&lake.join("full")).await;
    assert_eq!(rows(&full), [(2, "y2".into(), 2.0), (3, "z".into(), 3.0)], "overwritten");
    assert!(full.columns.iter().any(|(n, _)| n == "order id"), "{:?}", full.columns);
    let append = local(&lake.join("append")).await;
    assert_eq!(append.rows.len(), 4, "appended twice");
    let merge = local(&lake.join("merge")).await;
    assert_eq!(rows(&merge), [(1, "x".into(), 1.5), (2, "y2".into(), 2.0), (3, "z".into(), 3.0)], "merged by id");

    let maintain = h.runner(&["maintain"]).await;
    assert_eq!(maintain.code, 0, "{}", maintain.all());

    parquet_file(
        &files.join("a/part-0.parquet"),
        "{'id': [4], 'order id': ['n'], 'unit price': [4.0], 'new col': [1]}",
    )
    .await;
    let run = h.runner(&["--date", "20250325", "--pipeline", "full"]).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let failed = h.last_audit("full").await;
    assert!(failed.error.contains("`new col`") && failed.error.contains("column mapping"), "{}", failed.error);
    assert_eq!(rows(&local(&lake.join("full")).await).len(), 2, "nothing of the refused load is visible");
}
