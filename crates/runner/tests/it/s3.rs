//! Parquet on a real S3 server (s3s-fs with signature checks): loads, and a server that is down.

use weir_testkit::s3::{S3Server, SECRET_KEY, s3_url};

use crate::harness::{D1, Harness, write_orders};
use crate::loads::with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_parquet_from_s3_and_fails_cleanly_when_s3_is_down() {
    let mut h = Harness::new("s3").await;
    let root = h.dir.path().join("s3");
    let server = S3Server::start(&root).await.unwrap();
    let bucket = server.bucket("raw").unwrap();
    write_orders(&bucket.join("lake/orders/dt=20250323"), D1, 1, 1_000, 3);
    std::fs::write(bucket.join("lake/orders/dt=20250323/_SUCCESS"), b"").unwrap();
    h.set_env("WEIR_CONN_S3LAKE", &server.connection_url("raw", "lake"));
    h.pipeline(
        "from_s3",
        &with(&[
            ("source_connection", "'s3lake'"),
            ("data_source", "'orders/dt={date}/*.parquet'"),
            ("load_type", "'full'"),
        ]),
    )
    .await;
    // An S3 location without a connection row: the URL in data_source, credentials from AWS_*.
    h.set_env("AWS_ACCESS_KEY_ID", weir_testkit::s3::ACCESS_KEY);
    h.set_env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    h.set_env("AWS_ENDPOINT", &server.endpoint());
    h.set_env("AWS_ALLOW_HTTP", "true");
    h.set_env("AWS_REGION", "us-east-1");
    h.pipeline(
        "from_s3_url",
        &with(&[
            ("source_connection", "NULL"),
            ("data_source", "'s3://raw/lake/orders/dt={date}/'"),
            ("destination_table", "'orders_by_url'"),
        ]),
    )
    .await;

    let run = h.run_date(D1).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(h.count("bronze.orders").await, 1_000);
    assert_eq!(h.count("bronze.orders_by_url").await, 1_000);
    assert_eq!(h.scalar_i64("SELECT count(DISTINCT order_id) FROM bronze.orders").await, 1_000);

    // The server goes away: retried with backoff, then failed; the others still run.
    let addr = server.endpoint();
    drop(server);
    h.set_env("WEIR_CONN_DOWN", &s3_url(&addr, "raw", "lake"));
    sqlx::query("UPDATE controller SET active = false").execute(&h.pool).await.unwrap();
    h.pipeline(
        "s3_down",
        &with(&[
            ("source_connection", "'down'"),
            ("data_source", "'orders/dt={date}/'"),
            ("destination_table", "'orders_down'"),
            ("options", "'{\"retries\": 1, \"retry_backoff_ms\": 50}'"),
        ]),
    )
    .await;
    write_orders(&h.lake().join("local"), D1, 1, 10, 1);
    h.pipeline("local", &with(&[("data_source", "'local/'"), ("destination_table", "'local'")])).await;
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let audit = h.last_audit("s3_down").await;
    assert_eq!((audit.status.as_str(), audit.attempt), ("failed", 2), "{audit:?}");
    assert!(audit.error.contains("pipeline `s3_down`") && audit.error.contains("s3://raw"), "{}", audit.error);
    assert!(!h.table_exists("bronze.orders_down").await);
    assert_eq!(h.last_audit("local").await.status, "success");
    assert!(!run.all().contains(SECRET_KEY) && !audit.error.contains(SECRET_KEY), "secret leaked: {}", run.all());
}
