//! Every load type, the date re-run, schema evolution and crash safety, asserted on the rows.

use sqlx::Row;
use weir_testkit::data::{evolved_orders_batch, order, orders_to_batch, retyped_orders_batch, write_parquet};

use crate::harness::{D1, D2, Harness, day, write_orders};

const ORDERS: &[(&str, &str)] = &[
    ("source_type", "'parquet'"),
    ("source_connection", "'lake'"),
    ("schema_name", "'bronze'"),
    ("destination_table", "'orders'"),
];

/// The `orders` pipeline's columns, with `extra` added or overriding.
pub fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let base = ORDERS.iter().copied().filter(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    base.chain(extra.iter().copied()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_load_holds_exactly_the_source_with_exact_values() {
    let h = Harness::new("full").await;
    write_orders(&h.lake().join("orders/dt=20250323"), D1, 1, 2_500, 2);
    h.pipeline("orders", &with(&[("data_source", "'orders/dt={date}/'"), ("load_type", "'full'")])).await;

    let run = h.run_date(D1).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(h.count("bronze.orders").await, 2_500);

    // Values and types, checked against the generator for one row.
    let o = order(1234, day(D1));
    let r = sqlx::query(
        "SELECT customer_id, status, quantity, unit_price::text, discount, total::text,
                (extract(epoch FROM created_at) * 1000000)::bigint AS created,
                (extract(epoch FROM updated_at) * 1000000)::bigint AS updated, note
         FROM bronze.orders WHERE order_id = 1234",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(r.get::<i32, _>("customer_id"), o.customer_id);
    assert_eq!(r.get::<String, _>("status"), o.status);
    assert_eq!(r.get::<i16, _>("quantity"), o.quantity);
    assert_eq!(
        r.get::<String, _>("unit_price"),
        format!("{}.{:02}", o.unit_price_cents / 100, o.unit_price_cents % 100)
    );
    assert_eq!(r.get::<f64, _>("discount"), o.discount);
    assert_eq!(r.get::<String, _>("total"), format!("{}.{:02}", o.total_cents / 100, o.total_cents % 100));
    assert_eq!(r.get::<i64, _>("created"), o.created_at);
    assert_eq!(r.get::<i64, _>("updated"), o.updated_at);
    assert_eq!(r.get::<Option<String>, _>("note"), o.note);
    let types: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = 'bronze' AND table_name = 'orders' ORDER BY ordinal_position",
    )
    .fetch_all(&h.pool)
    .await
    .unwrap();
    let types: Vec<(&str, &str)> = types.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        types,
        vec![
            ("order_id", "bigint"),
            ("customer_id", "integer"),
            ("status", "text"),
            ("quantity", "smallint"),
            ("unit_price", "numeric"),
            ("discount", "double precision"),
            ("total", "numeric"),
            ("created_at", "timestamp without time zone"),
            ("updated_at", "timestamp with time zone"),
            ("note", "text"),
        ]
    );
    let sum = h.scalar_i64("SELECT (sum(total) * 100)::bigint FROM bronze.orders").await;
    let expected: i128 = (1..=2_500).map(|id| order(id, day(D1)).total_cents).sum();
    assert_eq!(sum as i128, expected);

    // A second full load replaces the content.
    std::fs::remove_dir_all(h.lake().join("orders/dt=20250323")).unwrap();
    write_orders(&h.lake().join("orders/dt=20250323"), D1, 10_001, 300, 1);
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(h.count("bronze.orders").await, 300);
    assert_eq!(h.scalar_i64("SELECT min(order_id) FROM bronze.orders").await, 10_001);

    // A file that breaks mid-stream (valid footer, corrupt pages): the pipeline
    // fails and the table keeps its previous content.
    let broken = h.lake().join("orders/dt=20250323/part-00001.parquet");
    write_orders(&h.lake().join("tmp"), D1, 50_000, 5_000, 1);
    let mut bytes = std::fs::read(h.lake().join("tmp/part-00000.parquet")).unwrap();
    for b in &mut bytes[200..20_000] {
        *b = 0x5a;
    }
    std::fs::write(&broken, bytes).unwrap();
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let audit = h.last_audit("orders").await;
    assert_eq!(audit.status, "failed");
    assert!(audit.error.contains("part-00001.parquet"), "{}", audit.error);
    assert_eq!(h.count("bronze.orders").await, 300, "nothing partial is visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_a_date_replaces_that_dates_rows() {
    let h = Harness::new("daterun").await;
    write_orders(&h.lake().join("orders/2025-03-23"), D1, 1, 100, 1);
    write_orders(&h.lake().join("orders/2025-03-24"), D2, 1_001, 50, 1);
    h.pipeline("orders", &with(&[("data_source", "'orders/{date:%Y-%m-%d}/'"), ("load_type", "'incremental'")])).await;

    assert_eq!(h.run_date(D1).await.code, 0);
    assert_eq!(h.run_date(D2).await.code, 0);
    assert_eq!(h.count("bronze.orders").await, 150);
    // Re-running a date never duplicates, and a changed day replaces only that day.
    assert_eq!(h.run_date(D2).await.code, 0);
    assert_eq!(h.count("bronze.orders").await, 150);
    std::fs::remove_dir_all(h.lake().join("orders/2025-03-23")).unwrap();
    write_orders(&h.lake().join("orders/2025-03-23"), D1, 1, 80, 2);
    let run = h.runner(&["--date", "2025-03-23"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(h.count("bronze.orders").await, 130);
    assert_eq!(h.scalar_i64("SELECT count(*) FROM bronze.orders WHERE _weir_run_date = '2025-03-24'").await, 50);
    assert_eq!(h.last_audit("orders").await.records_processed, Some(80));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_with_primary_key_upserts_the_latest_row_per_key() {
    let h = Harness::new("upsert").await;
    let dir = h.lake().join("orders");
    write_orders(&dir, D1, 1, 100, 1);
    h.pipeline(
        "orders",
        &with(&[
            ("data_source", "'orders/'"),
            ("load_type", "'incremental'"),
            ("primary_key", "'{order_id}'"),
            ("watermark_column", "'updated_at'"),
        ]),
    )
    .await;
    assert_eq!(h.run_date(D1).await.code, 0);
    assert_eq!(h.count("bronze.orders").await, 100);
    let first_wm = h.last_audit("orders").await.watermark_after.expect("watermark saved");

    // Changes: ids 1..=10 updated a day later; id 5 twice in one file (the later wins); ids 101..=110 new.
    let later = |id: i64, status: &'static str, bump: i64| {
        let mut o = order(id, day(D1));
        o.status = status;
        o.updated_at = order(id, day(D2)).updated_at.max(o.updated_at) + 86_400_000_000 + bump;
        o
    };
    let mut changes: Vec<_> = (1..=10).map(|id| later(id, "returned", 0)).collect();
    changes.push(later(5, "shipped", 1_000_000));
    changes.extend((101..=110).map(|id| order(id, day(D2))));
    write_parquet(&dir.join("part-00001.parquet"), &[orders_to_batch(&changes)], 1_000).unwrap();

    let run = h.run_date(D2).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(h.count("bronze.orders").await, 110);
    let status = |id: i64| {
        let pool = h.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM bronze.orders WHERE order_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(status(5).await, "shipped", "latest version of a key within one load wins");
    assert_eq!(status(3).await, "returned");
    assert_eq!(status(50).await, order(50, day(D1)).status);
    let audit = h.last_audit("orders").await;
    assert!(audit.records_read.unwrap() < 100, "only rows past the watermark are read: {audit:?}");
    assert!(audit.watermark_after.unwrap() > first_wm, "watermark advances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_evolution_adds_columns_nulls_missing_ones_and_rejects_retypes() {
    let h = Harness::new("evolve").await;
    let dir = h.lake().join("orders");
    write_orders(&dir, D1, 1, 10, 1);
    h.pipeline("orders", &with(&[("data_source", "'orders/'"), ("load_type", "'incremental'")])).await;
    assert_eq!(h.run_date(D1).await.code, 0);

    // The source gains `channel` and loses `note`.
    let evolved = evolved_orders_batch(11, 5, day(D1));
    std::fs::remove_file(dir.join("part-00000.parquet")).unwrap();
    write_parquet(&dir.join("b.parquet"), &[evolved], 100).unwrap();
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(h.count("bronze.orders").await, 15);
    assert_eq!(h.scalar_i64("SELECT count(*) FROM bronze.orders WHERE channel = 'web'").await, 5);
    assert_eq!(h.scalar_i64("SELECT count(*) FROM bronze.orders WHERE order_id > 10 AND note IS NOT NULL").await, 0);

    // `quantity` becomes text: the pipeline fails naming the column, nothing changes.
    let retyped = retyped_orders_batch(100, 3, day(D1));
    std::fs::remove_file(dir.join("b.parquet")).unwrap();
    write_parquet(&dir.join("c.parquet"), &[retyped], 100).unwrap();
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1);
    let audit = h.last_audit("orders").await;
    assert!(audit.error.contains("column `quantity` is smallint"), "{}", audit.error);
    assert_eq!(h.count("bronze.orders").await, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_sink_commit_and_watermark_save_does_not_duplicate() {
    let h = Harness::new("crash").await;
    let dir = h.lake().join("events");
    write_orders(&dir, D1, 1, 40, 1);
    h.pipeline(
        "events",
        &with(&[
            ("data_source", "'events/*.parquet'"),
            ("load_type", "'incremental'"),
            ("watermark_column", "'order_id'"),
            ("destination_table", "'events'"),
        ]),
    )
    .await;
    assert_eq!(h.run_date(D1).await.code, 0);
    assert_eq!(h.count("bronze.events").await, 40);
    // The runner died after the sink committed but before the metadata store saw it.
    sqlx::query("DELETE FROM watermark").execute(&h.pool).await.unwrap();
    assert_eq!(h.run_date(D1).await.code, 0);
    assert_eq!(h.count("bronze.events").await, 40, "no duplicates");
    // New rows are appended, and only they.
    write_orders(&h.dir.path().join("tmp"), D1, 41, 5, 1);
    std::fs::rename(h.dir.path().join("tmp/part-00000.parquet"), dir.join("part-00001.parquet")).unwrap();
    assert_eq!(h.run_date(D1).await.code, 0);
    assert_eq!(h.count("bronze.events").await, 45);
    assert_eq!(h.last_audit("events").await.watermark_after.as_deref(), Some("45"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_load_counts_without_writing_and_audit_shows_history() {
    let h = Harness::new("skip").await;
    write_orders(&h.lake().join("orders"), D1, 1, 77, 1);
    h.pipeline("orders", &with(&[("data_source", "'orders'"), ("load_type", "'full'")])).await;
    let run = h.runner(&["run", "--date", D1, "--skip-load"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!h.table_exists("bronze.orders").await);
    let audit = h.last_audit("orders").await;
    assert_eq!((audit.status.as_str(), audit.records_read), ("success", Some(77)));
    assert_eq!(h.run_date(D1).await.code, 0);

    let table = h.runner(&["audit"]).await;
    assert_eq!(table.code, 0);
    assert!(table.stdout.contains("orders") && table.stdout.contains("success"), "{}", table.stdout);
    let json = h.runner(&["audit", "--pipeline", "orders", "--last", "1", "--format", "json"]).await;
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).expect("audit json");
    assert_eq!(rows.as_array().map(Vec::len), Some(1));
    assert_eq!(rows[0]["records_processed"], 77);
    let csv = h.runner(&["audit", "--format", "csv"]).await;
    assert_eq!(csv.stdout.lines().count(), 3, "header + 2 rows:\n{}", csv.stdout);
    let list = h.runner(&["pipelines"]).await;
    assert!(list.stdout.contains("bronze.orders"), "{}", list.stdout);
}
