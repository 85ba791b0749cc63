//! The Parquet type matrix end to end: every case file (see
//! `weir_testkit::typematrix`) loaded by the real `runner` into PostgreSQL and
//! into Delta, then each destination read back by independent clients and
//! compared value for value with pyarrow's reading of the file. A case a
//! destination cannot hold exactly must fail naming what is at fault, or load
//! and count what changed in `audit.details`.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sqlx::Row;
use weir_testkit::typematrix::{self, Expect, Loaded};

use crate::harness::{D1, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_parquet_type_arrives_exactly_or_the_run_says_what_changed() {
    let mut h = Harness::new("typematrix").await;
    let data = h.dir.path().join("matrix");
    let manifest = typematrix::generate(&data).await.expect("generate the type matrix");
    h.set_env("WEIR_CONN_MATRIX", &format!("file://{}", data.display()));
    let mut rows = Vec::new();
    for case in &manifest.cases {
        for (prefix, destination, connection) in [("pg", "postgres", "NULL"), ("dl", "delta", "'lake'")] {
            rows.push(format!(
                "('{prefix}_{name}', 'parquet', 'matrix', '{path}', '{destination}', {connection}, 'matrix', \
                 '{name}', 'full')",
                name = case.name,
                path = case.path,
            ));
        }
    }
    let insert = format!(
        "INSERT INTO controller (name, source_type, source_connection, data_source, destination_type, \
         destination_connection, schema_name, destination_table, load_type) VALUES {}",
        rows.join(", ")
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(insert)).execute(&h.pool).await.expect("controller rows");

    let run = h.run_date(D1).await;
    let some_fail = manifest.cases.iter().any(|c| c.postgres.fails() || c.delta.fails());
    assert_eq!(run.code, i32::from(some_fail), "{}", run.all());

    let audit: BTreeMap<String, (String, String, Value)> =
        sqlx::query("SELECT pipeline_name, status, coalesce(error_message, ''), coalesce(details, '{}') FROM audit")
            .fetch_all(&h.pool)
            .await
            .expect("audit rows")
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
            .collect();
    let mut problems = Vec::new();
    let mut details = serde_json::Map::new();
    for case in &manifest.cases {
        let mut per_destination = serde_json::Map::new();
        for (prefix, destination, expect) in [("pg", "postgres", &case.postgres), ("dl", "delta", &case.delta)] {
            let pipeline = format!("{prefix}_{}", case.name);
            let Some((status, error, found)) = audit.get(&pipeline) else {
                problems.push(format!("{pipeline}: no audit row"));
                continue;
            };
            problems.extend(outcome(&pipeline, expect, status, error));
            per_destination.insert(destination.to_owned(), found.clone());
        }
        details.insert(case.name.clone(), Value::Object(per_destination));
    }
    assert!(problems.is_empty(), "outcomes differ from the manifest:\n{}", problems.join("\n"));

    let details_file = h.dir.path().join("details.json");
    std::fs::write(&details_file, json!(details).to_string()).expect("write the details");
    let lake = h.lake();
    let loaded = Loaded {
        data: &data,
        pg_url: &h.db_url,
        pg_schema: "matrix",
        lake: &lake,
        delta_schema: "matrix",
        details: &details_file,
    };
    match typematrix::check(&loaded).await.expect("run the checker") {
        Ok(report) => assert!(report.contains("mismatches: 0"), "{report}"),
        Err(report) => panic!("values differ from pyarrow's reading of the files:\n{report}"),
    }
}

/// What is wrong with how a pipeline ended, if anything.
fn outcome(pipeline: &str, expect: &Expect, status: &str, error: &str) -> Option<String> {
    match (expect.fails(), status) {
        (false, "success") => None,
        (false, _) => Some(format!("{pipeline}: expected to load, but {status}: {error}")),
        (true, "failed") => {
            let missing: Vec<&String> = expect.message.iter().filter(|m| !error.contains(m.as_str())).collect();
            (!missing.is_empty()).then(|| format!("{pipeline}: the error lacks {missing:?}: {error}"))
        }
        (true, _) => Some(format!("{pipeline}: expected to fail naming {:?}, but {status}", expect.message)),
    }
}
