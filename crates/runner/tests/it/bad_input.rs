//! Bad input: each pipeline fails alone, with an actionable message in audit,
//! nothing partial in the sink, and no secret printed anywhere.

use crate::harness::{D1, Harness, parquet_file, write_orders};
use crate::loads::with;

const SECRET: &str = "SuperSecret99";

/// A pipeline name, the controller columns that make it bad, and what its audit error must say.
type BadCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_pipeline_fails_alone_with_an_actionable_message() {
    let mut h = Harness::new("bad").await;
    // Trust auth ignores the password, so this connection works and its secret must never show.
    let mut warehouse = url::Url::parse(&h.db_url).unwrap();
    warehouse.set_password(Some(SECRET)).unwrap();
    h.set_env("WEIR_CONN_WAREHOUSE", warehouse.as_str());
    write_orders(&h.lake().join("orders/dt=20250323"), D1, 1, 20, 1);
    std::fs::create_dir_all(h.lake().join("corrupt")).unwrap();
    std::fs::write(h.lake().join("corrupt/part-0.parquet"), b"this is not parquet at all, just text").unwrap();

    let good = with(&[("data_source", "'orders/dt={date}/'"), ("destination_connection", "'warehouse'")]);
    h.pipeline("good", &good).await;
    let bad: Vec<BadCase> = vec![
        (
            "unknown_source",
            vec![("source_type", "'csvv'"), ("destination_table", "'t1'")],
            "source_type `csvv` is not known; known source types: elasticsearch, kafka, mysql, parquet, postgres",
        ),
        (
            "unknown_dest",
            vec![("destination_type", "'oracle'"), ("destination_table", "'t2'")],
            "destination_type `oracle` is not known",
        ),
        (
            "missing_conn",
            vec![("source_connection", "'nowhere'"), ("destination_table", "'t3'")],
            "set WEIR_CONN_NOWHERE",
        ),
        (
            "no_file",
            vec![("data_source", "'orders/dt={date}/x/'"), ("destination_table", "'t4'")],
            "no Parquet file matches",
        ),
        (
            "corrupt",
            vec![("data_source", "'corrupt/'"), ("destination_table", "'t5'")],
            "corrupt/part-0.parquet` is not a readable Parquet file",
        ),
        (
            "bad_schema",
            vec![("schema_name", "'bronze; DROP TABLE audit'")],
            "schema_name `bronze; DROP TABLE audit` is not a valid identifier",
        ),
        (
            "bad_table",
            vec![("destination_table", "'or\"ders'")],
            "destination_table `or\"ders` is not a valid identifier",
        ),
        (
            "bad_key",
            vec![("load_type", "'incremental'"), ("primary_key", "'{\"id)--\"}'"), ("destination_table", "'t8'")],
            "primary_key `id)--` is not a valid identifier",
        ),
        (
            "bad_watermark",
            vec![("load_type", "'incremental'"), ("watermark_column", "'1st'"), ("destination_table", "'t9'")],
            "watermark_column `1st` is not a valid identifier",
        ),
        (
            "bad_option",
            vec![("options", "'{\"batchsize\": 10}'"), ("destination_table", "'t10'")],
            "unknown key `batchsize`",
        ),
    ];
    for (name, cols, _) in &bad {
        let mut cols = cols.clone();
        if !cols.iter().any(|(k, _)| *k == "data_source") {
            cols.push(("data_source", "'orders/dt={date}/'"));
        }
        h.pipeline(name, &with(&cols)).await;
    }

    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let good = h.last_audit("good").await;
    assert_eq!((good.status.as_str(), good.records_processed), ("success", Some(20)), "{good:?}");
    assert_eq!(h.count("bronze.orders").await, 20);
    for (name, _, expected) in &bad {
        let audit = h.last_audit(name).await;
        assert_eq!(audit.status, "failed", "{name}");
        assert!(audit.error.contains(expected), "{name}: `{}` lacks `{expected}`", audit.error);
        assert!(audit.error.contains(&format!("pipeline `{name}`")), "{name}: {}", audit.error);
    }
    for t in ["t1", "t2", "t3", "t4", "t5", "t8", "t9", "t10"] {
        assert!(!h.table_exists(&format!("bronze.{t}")).await, "nothing is created for a failed pipeline ({t})");
    }
    let errors: Vec<String> =
        sqlx::query_scalar("SELECT coalesce(error_message, '') FROM audit").fetch_all(&h.pool).await.unwrap();
    assert!(!run.all().contains(SECRET) && !errors.concat().contains(SECRET), "a secret leaked:\n{}", run.all());
    let check = h.runner(&["check"]).await;
    assert_eq!(check.code, 1);
    assert!(check.stdout.contains("ok      good") && !check.all().contains(SECRET), "{}", check.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_with_a_clear_message() {
    let h = Harness::new("usage").await;
    let run = h.runner(&["--date", "23/03/2025"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("20250323"), "{}", run.stderr);
    let run = h.runner(&["--date", D1, "--pipeline", "nope"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no pipeline named `nope`"), "{}", run.stderr);
}

/// `runner check` reads the source's schema and asks the destination what it
/// would refuse, naming the column and how to fix it, before any data moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_what_the_destination_would_refuse_before_any_data_moves() {
    let mut h = Harness::new("check_schema").await;
    let files = h.dir.path().join("files");
    h.set_env("WEIR_CONN_FILES", &format!("file://{}", files.display()));
    let long = "a_column_name_that_is_far_longer_than_the_sixty_three_bytes_pg_allowed";
    parquet_file(&files.join("long/part-0.parquet"), &format!("{{'id': [1], '{long}': [2]}}")).await;
    parquet_file(&files.join("lake/part-0.parquet"), "{'id': [1, 2]}").await;
    parquet_file(&files.join("amounts/part-0.parquet"), "{'id': [1], 'amount': [5]}").await;
    let source = |folder: &'static str| {
        [("source_type", "'parquet'"), ("source_connection", "'files'"), ("data_source", folder)]
    };
    let to_pg =
        |table: &'static str| [("schema_name", "'bronze'"), ("destination_table", table), ("load_type", "'full'")];
    h.pipeline("long", &[&source("'long/'")[..], &to_pg("'long'")[..]].concat()).await;
    h.pipeline("amounts", &[&source("'amounts/'")[..], &to_pg("'amounts'")[..]].concat()).await;
    h.pipeline(
        "lake",
        &[
            &source("'lake/'")[..],
            &to_pg("'lake'")[..],
            &[("destination_type", "'delta'"), ("destination_connection", "'lake'")][..],
        ]
        .concat(),
    )
    .await;
    // The lake table exists without column mapping, and the amounts table with a bigint.
    h.runner(&["--date", D1, "--pipeline", "lake", "--pipeline", "amounts"]).await;
    assert_eq!(h.count("bronze.amounts").await, 1);

    // Now the sources change: a column name Delta takes only with column mapping, a retyped column.
    parquet_file(&files.join("lake/part-1.parquet"), "{'id': [3], 'order id': ['x']}").await;
    std::fs::remove_file(files.join("amounts/part-0.parquet")).expect("remove");
    parquet_file(&files.join("amounts/part-0.parquet"), "{'id': [1], 'amount': ['five']}").await;

    let check = h.runner(&["check"]).await;
    assert_eq!(check.code, 1, "{}", check.all());
    let line =
        |name: &str| check.stdout.lines().find(|l| l.contains(&format!(" {name}:"))).unwrap_or_default().to_owned();
    assert!(
        line("long").starts_with("FAILED") && line("long").contains(long) && line("long").contains("63 bytes"),
        "{}",
        check.stdout
    );
    let lake = line("lake");
    assert!(
        lake.contains("column `order id`") && lake.contains("column mapping") && lake.contains("options.query"),
        "{lake}"
    );
    let amounts = line("amounts");
    assert!(amounts.contains("column `amount` is bigint") && amounts.contains("ALTER TABLE"), "{amounts}");
    // Nothing moved: the tables are as the first run left them.
    assert_eq!(h.count("bronze.amounts").await, 1);
    assert!(!h.table_exists("bronze.long").await);
    let lake_log = h.lake().join("bronze").join("lake").join("_delta_log");
    assert_eq!(std::fs::read_dir(lake_log).expect("the lake table's log").count(), 1, "one commit, the first run's");
}

/// A page whose checksum does not match fails naming the file; with
/// `options.verify_checksums = false` the same file loads (for writers known
/// to write wrong checksums).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_page_fails_unless_checksums_are_switched_off() {
    let mut h = Harness::new("crc").await;
    let files = h.dir.path().join("files");
    h.set_env("WEIR_CONN_FILES", &format!("file://{}", files.display()));
    let path = files.join("c/part-0.parquet");
    std::fs::create_dir_all(path.parent().expect("folder")).expect("folder");
    // Written with page checksums, uncompressed; then the last byte of column v's chunk flipped.
    let script = "import pyarrow as pa, pyarrow.parquet as pq, sys
p = sys.argv[1]
pq.write_table(pa.table({'id': [1, 2, 3], 'v': [10, 20, 30]}), p, write_page_checksum=True,
               compression='NONE', use_dictionary=False)
c = pq.ParquetFile(p).metadata.row_group(0).column(1)
at = c.data_page_offset + c.total_compressed_size - 1
b = bytearray(open(p, 'rb').read()); b[at] ^= 1; open(p, 'wb').write(b)";
    let done = tokio::process::Command::new("python3").args(["-c", script]).arg(&path).output().await.expect("python3");
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    for (name, options) in [("strict", "'{}'"), ("lenient", r#"'{"verify_checksums": false}'"#)] {
        let table = format!("'{name}'");
        h.pipeline(
            name,
            &[
                ("source_type", "'parquet'"),
                ("source_connection", "'files'"),
                ("data_source", "'c/'"),
                ("schema_name", "'bronze'"),
                ("destination_table", table.as_str()),
                ("load_type", "'full'"),
                ("options", options),
            ],
        )
        .await;
    }
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let strict = h.last_audit("strict").await;
    assert!(strict.error.contains("part-0.parquet") && strict.error.contains("checksum"), "{}", strict.error);
    assert!(strict.error.contains("options.verify_checksums"), "the message says what helps: {}", strict.error);
    assert!(!h.table_exists("bronze.strict").await);
    assert_eq!(h.last_audit("lenient").await.status, "success");
    assert_eq!(h.count("bronze.lenient").await, 3);
}
