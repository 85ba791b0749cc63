//! The Elasticsearch source end to end: indices in the test server (or in a
//! real cluster when `WEIR_TEST_ES_URL` is set) loaded by the real `runner`
//! into Delta tables read back by the independent reader, and into
//! PostgreSQL. Faults (429 storms, dropped connections, expiring contexts)
//! need the test server, so those tests always start one.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use weir_testkit::delta::{DeltaRead, read};
use weir_testkit::es::{Auth, EsConfig, Flavor, TestCluster};

use crate::harness::{D1, D2, Harness};

/// `docs` as `(id, source)` pairs.
fn docs(items: Vec<(&str, Value)>) -> Vec<(String, Value)> {
    items.into_iter().map(|(id, d)| (id.to_owned(), d)).collect()
}

/// An elasticsearch pipeline reading `index` from connection `search` into `bronze.<name>` (Delta).
async fn pipeline(h: &Harness, name: &str, index: &str, extra: &[(&str, &str)]) {
    let (index, dest) = (format!("'{index}'"), format!("'{name}'"));
    let mut cols = vec![
        ("source_type", "'elasticsearch'"),
        ("source_connection", "'search'"),
        ("source_table", index.as_str()),
        ("schema_name", "'bronze'"),
        ("destination_table", dest.as_str()),
        ("destination_type", "'delta'"),
        ("load_type", "'full'"),
    ];
    cols.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    cols.extend(extra.iter().copied());
    h.pipeline(name, &cols).await;
}

async fn delta(h: &Harness, table: &str) -> DeltaRead {
    read(&h.lake().join("bronze").join(table).display().to_string(), &BTreeMap::new())
        .await
        .expect("the deltalake reader reads the table")
}

fn ids(t: &DeltaRead) -> Vec<String> {
    let mut ids: Vec<String> = t.column("_id").iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
    ids.sort();
    ids
}

fn row<'a>(t: &'a DeltaRead, id: &str) -> &'a serde_json::Map<String, Value> {
    t.rows.iter().find(|r| r["_id"] == id).unwrap_or_else(|| panic!("no row with _id {id}"))
}

async fn details(h: &Harness, pipeline: &str) -> Value {
    sqlx::query_scalar("SELECT details FROM audit WHERE pipeline_name = $1 ORDER BY audit_id DESC LIMIT 1")
        .bind(pipeline)
        .fetch_one(&h.pool)
        .await
        .expect("audit details")
}

/// `n` people with ids `first..first+n`, for the paging tests.
fn people(first: usize, n: usize) -> Vec<(String, Value)> {
    (first..first + n)
        .map(|i| {
            (format!("p{i:05}"), {
                let city = ["Tehran", "Shiraz", "Tabriz"][i % 3];
                json!({"n": i, "name": format!("person {i}"), "city": city})
            })
        })
        .collect()
}

async fn people_index(es: &TestCluster, name: &str, shards: u32, n: usize) -> String {
    let index = es.index(name);
    let mapping = json!({
        "settings": {"number_of_shards": shards},
        "mappings": {"properties": {"n": {"type": "long"}, "name": {"type": "keyword"}, "city": {"type": "keyword"}}}
    });
    es.client().create_index(&index, mapping).await.expect("create index");
    es.client().bulk(&index, &people(0, n)).await.expect("bulk");
    index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mapping_type_loads_value_for_value() {
    let mut h = Harness::new("es_types").await;
    let es = TestCluster::new("types").await.expect("Elasticsearch");
    h.set_env("WEIR_CONN_SEARCH", es.url());
    let index = es.index("types");
    let mapping = json!({
        "settings": {"number_of_shards": 2},
        "mappings": {"properties": {
            "name": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
            "code": {"type": "keyword"},
            "tiny": {"type": "byte"}, "small": {"type": "short"}, "int": {"type": "integer"}, "big": {"type": "long"},
            "ubig": {"type": "unsigned_long"},
            "half": {"type": "half_float"}, "single": {"type": "float"}, "double": {"type": "double"},
            "scaled": {"type": "scaled_float", "scaling_factor": 100},
            "flag": {"type": "boolean"},
            "born": {"type": "date"},
            "seen": {"type": "date", "format": "yyyy/MM/dd HH:mm:ss||epoch_millis"},
            "precise": {"type": "date_nanos"},
            "ip": {"type": "ip"},
            "home": {"type": "geo_point"},
            "blob": {"type": "binary"},
            "address": {"properties": {"city": {"type": "keyword"}, "zip": {"type": "integer"}}},
            "kids": {"type": "nested", "properties": {"name": {"type": "keyword"}, "age": {"type": "integer"}}},
            "labels": {"type": "flattened"},
            "tags": {"type": "keyword"},
            "nick": {"type": "alias", "path": "code"}
        }}
    });
    es.client().create_index(&index, mapping).await.expect("create index");
    let all = json!({
        "name": "Sara Ahmadi", "code": "A-1", "tiny": 7, "small": -300, "int": 70000, "big": 9007199254740993_i64,
        "ubig": 18446744073709551615_u64, "half": 1.5, "single": 2.25, "double": 3.125, "scaled": 9.99,
        "flag": true, "born": "2025-03-23T10:15:30.123Z", "seen": "2025/03/23 08:00:00",
        "precise": "2025-03-23T10:15:30.123456789Z", "ip": "10.0.0.1", "home": {"lat": 35.7, "lon": 51.4},
        "blob": "aGk=", "address": {"city": "Tehran", "zip": 12345},
        "kids": [{"name": "k1", "age": 3}, {"name": "k2", "age": 5}],
        "labels": {"team": "a", "tier": {"x": 1}}, "tags": ["x", "y"]
    });
    let other_forms = json!({
        "name": "Reza", "tiny": "8", "flag": "false", "born": 1742688000000_i64, "seen": 1742688000000_i64,
        "home": "35.7,51.4", "ip": "::1", "address.city": "Shiraz", "kids": {"name": "only"}, "tags": "solo",
        "int": [42], "big": 5.9
    });
    es.client()
        .bulk(
            &index,
            &docs(vec![
                ("1", all),
                ("2", other_forms),
                ("3", json!({"name": "Empty"})),
                ("4", json!({"name": "Arr", "home": [51.4, 35.7]})),
                ("5", json!({"name": "Wkt", "home": "POINT (51.4 35.7)"})),
            ]),
        )
        .await
        .expect("bulk");
    let options = r#"'{"array_fields": ["tags"], "include_index": true, "page_size": 2, "slices": 2}'"#;
    pipeline(&h, "people", &index, &[("options", options)]).await;
    pipeline(&h, "people_pg", &index, &[("options", options), ("destination_type", "'postgres'")]).await;
    // Twice: the second load meets the tables the first made (lists, structs, lists of structs).
    h.run_ok(D1).await;
    h.run_ok(D2).await;

    let t = delta(&h, "people").await;
    assert_eq!(ids(&t), ["1", "2", "3", "4", "5"]);
    let types: BTreeMap<&str, &str> = t.columns.iter().map(|(n, ty)| (n.as_str(), ty.as_str())).collect();
    for (col, ty) in [
        ("_id", "string"),
        ("_index", "string"),
        ("name", "string"),
        ("tiny", "int8"),
        ("small", "int16"),
        ("int", "int32"),
        ("big", "int64"),
        ("ubig", "decimal128(20, 0)"),
        ("half", "float"),
        ("double", "double"),
        ("scaled", "double"),
        ("flag", "bool"),
        ("born", "timestamp[us, tz=UTC]"),
        ("precise", "timestamp[us, tz=UTC]"),
        ("ip", "string"),
        ("home", "struct<lat: double, lon: double>"),
        ("blob", "binary"),
        ("labels", "string"),
    ] {
        assert_eq!(types.get(col).copied(), Some(ty), "column {col}: {types:?}");
    }
    assert!(
        types["kids"].starts_with("list<element: struct<age: int32, name: string>>")
            || types["kids"].contains("struct<age: int32, name: string>"),
        "{}",
        types["kids"]
    );
    assert!(!types.contains_key("nick"), "a field alias is not in _source");

    let r1 = row(&t, "1");
    assert_eq!(r1["_index"], index.as_str());
    assert_eq!((r1["tiny"].clone(), r1["small"].clone(), r1["int"].clone()), (json!(7), json!(-300), json!(70000)));
    assert_eq!(r1["big"], json!(9007199254740993_i64), "no float rounding");
    assert_eq!(r1["ubig"], "18446744073709551615");
    assert_eq!(
        (r1["half"].clone(), r1["single"].clone(), r1["double"].clone()),
        (json!(1.5), json!(2.25), json!(3.125))
    );
    assert_eq!(r1["flag"], true);
    assert_eq!(r1["born"], "2025-03-23 10:15:30.123000+00:00");
    assert_eq!(r1["seen"], "2025-03-23 08:00:00+00:00", "custom format");
    assert_eq!(r1["precise"], "2025-03-23 10:15:30.123456+00:00", "nanoseconds to Delta's microseconds");
    assert_eq!(r1["home"], json!({"lat": 35.7, "lon": 51.4}));
    assert_eq!(r1["blob"], "b'hi'");
    assert_eq!(r1["address"], json!({"city": "Tehran", "zip": 12345}));
    assert_eq!(r1["kids"], json!([{"age": 3, "name": "k1"}, {"age": 5, "name": "k2"}]));
    let labels: Value = serde_json::from_str(r1["labels"].as_str().expect("labels as text")).expect("JSON text");
    assert_eq!(labels, json!({"team": "a", "tier": {"x": 1}}));
    assert_eq!(r1["tags"], json!(["x", "y"]));

    let r2 = row(&t, "2");
    assert_eq!((r2["tiny"].clone(), r2["flag"].clone(), r2["int"].clone()), (json!(8), json!(false), json!(42)));
    assert_eq!(r2["big"], 5, "a fraction in a long field is truncated, as indexing coerces it");
    assert_eq!(r2["born"], "2025-03-23 00:00:00+00:00", "epoch millis");
    assert_eq!(r2["seen"], "2025-03-23 00:00:00+00:00", "the format's second alternative");
    assert_eq!(r2["home"], json!({"lat": 35.7, "lon": 51.4}));
    assert_eq!(r2["ip"], "::1");
    assert_eq!(r2["address"], json!({"city": "Shiraz", "zip": null}), "a dotted key is the object's field");
    assert_eq!(r2["kids"], json!([{"age": null, "name": "only"}]));
    assert_eq!(r2["tags"], json!(["solo"]));

    let r3 = row(&t, "3");
    for col in ["code", "tiny", "born", "home", "address", "kids", "labels", "tags", "blob"] {
        assert_eq!(r3[col], Value::Null, "absent field {col} loads as NULL");
    }
    for id in ["4", "5"] {
        assert_eq!(row(&t, id)["home"], json!({"lat": 35.7, "lon": 51.4}), "geo point form of doc {id}");
    }

    // PostgreSQL: objects and flattened fields as jsonb, arrays as arrays.
    let kinds: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = 'bronze' AND table_name = 'people_pg' AND column_name IN ('labels', 'home', 'tags', 'born', 'ubig')
         ORDER BY column_name",
    )
    .fetch_all(&h.pool)
    .await
    .expect("columns");
    assert_eq!(
        kinds,
        [
            ("born".into(), "timestamp with time zone".into()),
            ("home".into(), "jsonb".into()),
            ("labels".into(), "jsonb".into()),
            ("tags".into(), "ARRAY".into()),
            ("ubig".into(), "numeric".into())
        ]
    );
    let team: String = sqlx::query_scalar("SELECT labels->>'team' FROM bronze.people_pg WHERE _id = '1'")
        .fetch_one(&h.pool)
        .await
        .expect("jsonb");
    assert_eq!(team, "a");
    if let Some(server) = &es.server {
        assert_eq!(server.open_contexts(), 0, "every point in time released");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_in_time_pages_and_slices_read_every_document_once() {
    let mut h = Harness::new("es_slices").await;
    let es = TestCluster::new("slices").await.expect("Elasticsearch");
    h.set_env("WEIR_CONN_SEARCH", es.url());
    let index = people_index(&es, "people", 3, 1_000).await;
    // Default slices (3 shards), one slice, four slices over three shards.
    pipeline(&h, "by_shards", &index, &[("options", r#"'{"page_size": 70}'"#)]).await;
    pipeline(&h, "one", &index, &[("options", r#"'{"page_size": 333, "slices": 1}'"#)]).await;
    pipeline(&h, "four", &index, &[("options", r#"'{"page_size": 100, "slices": 4}'"#)]).await;
    pipeline(
        &h,
        "tehran",
        &index,
        &[("options", r#"'{"query": {"bool": {"filter": [{"term": {"city": "Tehran"}}, {"range": {"n": {"lt": 500}}}]}}, "fields": ["n"]}'"#)],
    )
    .await;
    h.run_ok(D1).await;
    let expected: Vec<String> = (0..1_000).map(|i| format!("p{i:05}")).collect();
    for name in ["by_shards", "one", "four"] {
        let t = delta(&h, name).await;
        assert_eq!(ids(&t), expected, "{name}: every document exactly once");
        let audit = h.last_audit(name).await;
        assert_eq!((audit.records_read, audit.records_processed), (Some(1_000), Some(1_000)), "{name}");
    }
    let t = delta(&h, "tehran").await;
    let mut ns: Vec<i64> = t.column("n").iter().filter_map(Value::as_i64).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..500).filter(|i| i % 3 == 0).collect::<Vec<_>>(), "the query and its fields");
    assert_eq!(t.columns.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["_id", "n"]);
    if let Some(server) = &es.server {
        assert_eq!(server.open_contexts(), 0, "every point in time released");
        // 1000 docs: by_shards 3 slices × ≥5 pages, one 4 pages, four ≥ 4×3 pages.
        assert!(server.faults().searches.load(std::sync::atomic::Ordering::SeqCst) > 30);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_without_point_in_time_are_read_with_scrolls() {
    for (label, flavor) in [("es79", Flavor::elasticsearch_7_9()), ("opensearch", Flavor::OpenSearch)] {
        let mut h = Harness::new(&format!("es_scroll_{label}")).await;
        let es = TestCluster::emulated(label, EsConfig { flavor, ..Default::default() }).await.expect("test server");
        h.set_env("WEIR_CONN_SEARCH", es.url());
        let index = people_index(&es, "people", 2, 450).await;
        pipeline(&h, "sliced", &index, &[("options", r#"'{"page_size": 40}'"#)]).await;
        pipeline(&h, "single", &index, &[("options", r#"'{"page_size": 100, "slices": 1}'"#)]).await;
        h.run_ok(D1).await;
        let expected: Vec<String> = (0..450).map(|i| format!("p{i:05}")).collect();
        for name in ["sliced", "single"] {
            assert_eq!(ids(&delta(&h, name).await), expected, "{label} {name}");
        }
        let server = es.server.as_ref().expect("test server");
        assert_eq!(server.open_contexts(), 0, "{label}: every scroll cleared");
    }
    // A forced point in time on a server without one says why.
    let mut h = Harness::new("es_scroll_forced").await;
    let es = TestCluster::emulated("forced", EsConfig { flavor: Flavor::OpenSearch, ..Default::default() })
        .await
        .expect("test server");
    h.set_env("WEIR_CONN_SEARCH", es.url());
    let index = people_index(&es, "people", 1, 10).await;
    pipeline(&h, "forced", &index, &[("options", r#"'{"export": "pit"}'"#)]).await;
    assert_eq!(h.run_date(D1).await.code, 1);
    let audit = h.last_audit("forced").await;
    assert!(audit.error.contains("needs Elasticsearch 7.10 or later; the server is OpenSearch"), "{}", audit.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_loads_read_past_the_watermark_and_merge_by_id() {
    let mut h = Harness::new("es_incremental").await;
    let es = TestCluster::new("incr").await.expect("Elasticsearch");
    h.set_env("WEIR_CONN_SEARCH", es.url());
    let index = es.index("events");
    let mapping = json!({"mappings": {"properties": {"updated": {"type": "date"}, "v": {"type": "integer"}}}});
    es.client().create_index(&index, mapping).await.expect("create");
    let at = |h: u32| format!("2025-03-23T{h:02}:00:00Z");
    es.client()
        .bulk(&index, &docs(vec![("a", json!({"updated": at(1), "v": 1})), ("b", json!({"updated": at(2), "v": 1}))]))
        .await
        .expect("bulk");
    let extra = [("load_type", "'incremental'"), ("watermark_column", "'updated'"), ("primary_key", "'{_id}'")];
    pipeline(&h, "events", &index, &extra).await;
    h.run_ok(D1).await;
    assert_eq!(h.last_audit("events").await.watermark_after.as_deref(), Some("2025-03-23T02:00:00Z"));

    // A new document, a changed one, and one at the stored watermark itself.
    es.client()
        .bulk(
            &index,
            &docs(vec![
                ("a", json!({"updated": at(5), "v": 2})),
                ("c", json!({"updated": at(2), "v": 1})),
                ("d", json!({"updated": at(4), "v": 1})),
            ]),
        )
        .await
        .expect("bulk");
    h.run_ok(D2).await;
    let audit = h.last_audit("events").await;
    assert_eq!(audit.records_read, Some(4), "a, c, d and b (at the watermark, read again and merged)");
    assert_eq!(audit.watermark_after.as_deref(), Some("2025-03-23T05:00:00Z"));
    let t = delta(&h, "events").await;
    assert_eq!(ids(&t), ["a", "b", "c", "d"], "merged by _id: nothing doubled");
    assert_eq!(row(&t, "a")["v"], 2);
    h.run_ok(D2).await;
    assert_eq!(h.last_audit("events").await.records_read, Some(1), "only the document at the watermark");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn date_field_limits_a_run_to_its_day_and_a_rerun_replaces_it() {
    let mut h = Harness::new("es_dates").await;
    let es = TestCluster::new("dates").await.expect("Elasticsearch");
    h.set_env("WEIR_CONN_SEARCH", es.url());
    let index = es.index("logs-2025.03.23");
    es.client()
        .create_index(&index, json!({"mappings": {"properties": {"at": {"type": "date"}, "msg": {"type": "keyword"}}}}))
        .await
        .expect("create");
    let day_docs = |day: u32, n: usize| -> Vec<(String, Value)> {
        (0..n)
            .map(|i| (format!("{day}-{i}"), json!({"at": format!("2025-03-{day}T{:02}:30:00Z", i % 24), "msg": "hi"})))
            .collect()
    };
    let mut all = day_docs(23, 30);
    all.extend(day_docs(24, 20));
    es.client().bulk(&index, &all).await.expect("bulk");
    // The index name through a date template, the day by options.date_field.
    let template = format!("{}-{{date:%Y.%m.%d}}", es.index("logs"));
    pipeline(&h, "daily", &index, &[("load_type", "'incremental'"), ("options", r#"'{"date_field": "at"}'"#)]).await;
    pipeline(&h, "templated", &template, &[]).await;
    h.run_ok(D1).await;
    assert_eq!(delta(&h, "daily").await.rows.len(), 30);
    assert_eq!(delta(&h, "templated").await.rows.len(), 50, "logs-2025.03.23, every document");
    // The next day: the template names an index that does not exist; the day reads its 20.
    let run = h.run_date(D2).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let audit = h.last_audit("templated").await;
    assert!(audit.error.contains("no such index") && audit.error.contains("logs-2025.03.24"), "{}", audit.error);
    assert_eq!(h.last_audit("daily").await.status, "success");
    h.run_date(D1).await;
    let t = delta(&h, "daily").await;
    assert_eq!(t.rows.len(), 50, "re-running a day replaces it");
    assert_eq!(ids(&t).into_iter().collect::<BTreeSet<_>>().len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_its_pipeline_alone_and_says_why() {
    let mut h = Harness::new("es_bad").await;
    let es = TestCluster::new("bad").await.expect("Elasticsearch");
    h.set_env("WEIR_CONN_SEARCH", es.url());
    // Two indices of one pattern that disagree on a field's type.
    let (a, b) = (es.index("conflict-a"), es.index("conflict-b"));
    es.client().create_index(&a, json!({"mappings": {"properties": {"age": {"type": "long"}}}})).await.expect("a");
    es.client().create_index(&b, json!({"mappings": {"properties": {"age": {"type": "keyword"}}}})).await.expect("b");
    // A value that does not fit its type, kept by ignore_malformed.
    let people = es.index("malformed");
    // `dynamic: false` keeps fields out of the mapping (but in `_source`).
    let mapping = json!({"mappings": {"dynamic": false, "properties": {
        "age": {"type": "integer", "ignore_malformed": true}, "name": {"type": "keyword"}
    }}});
    es.client().create_index(&people, mapping).await.expect("malformed");
    es.client()
        .bulk(
            &people,
            &docs(vec![
                ("1", json!({"age": 30, "name": "a"})),
                ("2", json!({"age": "thirty", "name": "b"})),
                ("3", json!({"age": [1, 2], "name": "c"})),
                ("4", json!({"name": "d", "unmapped": true})),
            ]),
        )
        .await
        .expect("bulk");
    let good = people_index(&es, "good", 1, 5).await;

    pipeline(&h, "missing", &es.index("nope"), &[]).await;
    pipeline(&h, "conflict", &format!("{}-*", es.index("conflict")), &[]).await;
    pipeline(&h, "fail", &people, &[]).await;
    pipeline(&h, "nulls", &people, &[("options", r#"'{"on_bad_value": "null"}'"#)]).await;
    pipeline(&h, "reject", &people, &[("options", r#"'{"on_bad_value": "reject"}'"#)]).await;
    pipeline(&h, "good", &good, &[]).await;
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());

    let missing = h.last_audit("missing").await;
    assert_eq!(missing.status, "failed");
    assert!(missing.error.contains(&format!("no such index [{}]", es.index("nope"))), "{}", missing.error);
    assert!(missing.error.contains("check source_table"), "{}", missing.error);
    let conflict = h.last_audit("conflict").await;
    assert!(
        conflict.error.contains(&format!("field `age` is `long` in index `{a}` but `keyword` in index `{b}`")),
        "{}",
        conflict.error
    );
    let fail = h.last_audit("fail").await;
    assert!(
        fail.error.contains("field `age` of document `2`") && fail.error.contains("\"thirty\" is not a valid integer"),
        "{}",
        fail.error
    );
    assert!(fail.error.contains("options.on_bad_value"), "{}", fail.error);
    assert_eq!(h.last_audit("good").await.status, "success", "the other pipelines go on");

    let nulls = delta(&h, "nulls").await;
    assert_eq!(ids(&nulls), ["1", "2", "3", "4"]);
    assert_eq!((row(&nulls, "2")["age"].clone(), row(&nulls, "3")["age"].clone()), (Value::Null, Value::Null));
    let d = details(&h, "nulls").await;
    assert_eq!((d["bad_values"].clone(), d["unmapped_fields"].clone()), (json!(2), json!(1)), "{d}");
    let reject = delta(&h, "reject").await;
    assert_eq!(ids(&reject), ["1", "4"], "documents with a bad value are skipped");
    let d = details(&h, "reject").await;
    assert_eq!(d["rejected_docs"], 2, "{d}");
    assert_eq!(h.last_audit("reject").await.records_read, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_and_never_shown() {
    let mut h = Harness::new("es_auth").await;
    let auth = Auth::Basic { user: "weir".into(), password: "s3cret-pw".into() };
    let es = TestCluster::emulated("auth", EsConfig { auth: Some(auth), forbidden: vec![], ..Default::default() })
        .await
        .expect("test server");
    let with_auth = es.url().replace("http://", "http://weir:s3cret-pw@");
    h.set_env("WEIR_CONN_SEARCH", &with_auth);
    h.set_env("WEIR_CONN_WRONG", &es.url().replace("http://", "http://weir:wrong-pw@"));
    let index = es.index("people");
    let client = weir_testkit::es::EsClient::new(&with_auth);
    client.create_index(&index, json!({})).await.expect("create with credentials");
    client.bulk(&index, &people(0, 3)).await.expect("bulk");
    assert!(es.client().create_index(&es.index("other"), json!({})).await.is_err(), "no credentials: 401");
    pipeline(&h, "ok", &index, &[]).await;
    pipeline(&h, "wrong", &index, &[("source_connection", "'wrong'")]).await;
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(!run.all().contains("s3cret-pw") && !run.all().contains("wrong-pw"), "{}", run.all());
    let wrong = h.last_audit("wrong").await;
    assert!(wrong.error.contains("authentication failed (401)"), "{}", wrong.error);
    assert!(!wrong.error.contains("wrong-pw"));
    assert_eq!(wrong.attempt, 1, "a 401 is not retried");
    assert_eq!(ids(&delta(&h, "ok").await).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_and_dropped_connections_back_off_then_succeed() {
    let mut h = Harness::new("es_storm").await;
    let es = TestCluster::emulated("storm", EsConfig::default()).await.expect("test server");
    h.set_env("WEIR_CONN_SEARCH", es.url());
    let index = people_index(&es, "people", 2, 300).await;
    pipeline(&h, "storm", &index, &[("options", r#"'{"page_size": 50, "retries": 0}'"#)]).await;
    let server = es.server.as_ref().expect("test server");
    server.faults().reject_next(3);
    server.faults().unavailable_next(1);
    server.faults().drop_next(1);
    let started = std::time::Instant::now();
    h.run_ok(D1).await;
    assert_eq!(ids(&delta(&h, "storm").await).len(), 300);
    let audit = h.last_audit("storm").await;
    assert_eq!((audit.status.as_str(), audit.attempt), ("success", 1), "backoff inside the attempt");
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500), "it backed off");
    assert_eq!(server.open_contexts(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_point_in_time_restarts_the_attempt_or_fails_cleanly() {
    let mut h = Harness::new("es_expiry").await;
    let es = TestCluster::emulated("expiry", EsConfig::default()).await.expect("test server");
    h.set_env("WEIR_CONN_SEARCH", es.url());
    let index = people_index(&es, "people", 1, 500).await;
    let server = es.server.as_ref().expect("test server");

    // Expires once after 3 pages: attempt 1 fails, attempt 2 reads everything once.
    pipeline(
        &h,
        "retried",
        &index,
        &[("options", r#"'{"page_size": 50, "slices": 1, "retries": 2, "retry_backoff_ms": 10}'"#)],
    )
    .await;
    server.faults().expire_contexts_after(3, 1);
    h.run_ok(D1).await;
    let audit = h.last_audit("retried").await;
    assert_eq!((audit.attempt, audit.records_processed), (2, Some(500)));
    let t = delta(&h, "retried").await;
    assert_eq!(ids(&t).len(), 500);
    assert_eq!(ids(&t).into_iter().collect::<BTreeSet<_>>().len(), 500, "no duplicates");

    // Always expiring: the pipeline fails, nothing is committed.
    pipeline(
        &h,
        "expiring",
        &index,
        &[("options", r#"'{"page_size": 50, "slices": 1, "retries": 1, "retry_backoff_ms": 10}'"#)],
    )
    .await;
    server.faults().expire_contexts_after(2, 10);
    let run = h.runner(&["--date", D1, "--pipeline", "expiring"]).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let audit = h.last_audit("expiring").await;
    assert_eq!(audit.status, "failed");
    assert!(audit.error.contains("point in time expired") && audit.error.contains("keep_alive"), "{}", audit.error);
    assert!(!h.lake().join("bronze/expiring").join("_delta_log").exists(), "no table was committed");
    assert_eq!(server.open_contexts(), 0, "released on failure too");
}

/// `v` as a float field's value: itself, or 0.5 where a float cannot hold it.
fn single(v: f64) -> f32 {
    Some(v as f32).filter(|f| f.is_finite()).unwrap_or(0.5)
}

/// Every number a document holds as JSON text arrives as the double (or
/// float) that text denotes: 17 significant digits, subnormals, the extremes
/// and -0.0, in every field that carries a number (doubles, floats, scaled
/// floats, geo points in each of their forms, objects, flattened JSON).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_numbers_arrive_as_the_doubles_their_text_denotes() {
    let mut h = Harness::new("es_floats").await;
    let es = TestCluster::new("floats").await.expect("Elasticsearch");
    h.set_env("WEIR_CONN_SEARCH", es.url());
    let index = es.index("floats");
    let mapping = json!({"mappings": {"properties": {
        "d": {"type": "double"}, "f": {"type": "float"}, "sc": {"type": "scaled_float", "scaling_factor": 100},
        "geo": {"type": "geo_point"}, "o": {"properties": {"x": {"type": "double"}}}, "fl": {"type": "flattened"},
        "ds": {"type": "double"}
    }}});
    es.client().create_index(&index, mapping).await.expect("create index");
    let awkward: [f64; 10] = [
        36.355399999999996,
        0.1,
        1.2345678901234567,
        5e-324,
        2.2250738585072014e-308,
        1e308,
        f64::MAX,
        -0.0,
        -36.35539999999999,
        9007199254740993.0,
    ];
    let mut documents = Vec::new();
    for (i, v) in awkward.iter().enumerate() {
        let lat = (v.abs() % 90.0).copysign(*v);
        let geo = match i % 4 {
            0 => json!({"lat": lat, "lon": 51.39999999999999}),
            1 => json!(format!("{lat},51.39999999999999")),
            2 => json!([51.39999999999999, lat]),
            _ => json!(format!("POINT (51.39999999999999 {lat})")),
        };
        let doc = json!({"d": v, "f": single(*v), "sc": v, "geo": geo, "o": {"x": v}, "fl": {"v": v}, "ds": [v, null]});
        documents.push((format!("{i}"), doc));
    }
    es.client().bulk(&index, &documents).await.expect("bulk");
    // A null object field and a null inside an array, beside the numbers.
    es.client()
        .bulk(&index, &docs(vec![("nulls", json!({"o": {"x": null}, "ds": [null], "fl": {"v": null}}))]))
        .await
        .expect("bulk");
    let options = r#"'{"array_fields": ["ds"]}'"#;
    pipeline(&h, "floats", &index, &[("options", options)]).await;
    pipeline(&h, "floats_pg", &index, &[("destination_type", "'postgres'"), ("options", options)]).await;
    h.run_ok(D1).await;

    let t = delta(&h, "floats").await;
    let nulls = row(&t, "nulls");
    assert_eq!((&nulls["o"], &nulls["ds"], &nulls["d"]), (&json!({"x": null}), &json!([null]), &Value::Null));
    let pg_nulls: (Value, Vec<Option<f64>>, String) =
        sqlx::query_as("SELECT o, ds, fl::text FROM bronze.floats_pg WHERE _id = 'nulls'")
            .fetch_one(&h.pool)
            .await
            .expect("the row of nulls");
    assert_eq!(pg_nulls.0, json!({"x": null}), "a null field of an object is kept in jsonb");
    assert_eq!(pg_nulls.1, [None], "a null inside an array is kept");
    assert_eq!(serde_json::from_str::<Value>(&pg_nulls.2).expect("jsonb"), json!({"v": null}));

    let pg = sqlx::query_as::<_, (String, f64, f32, f64, Value, f64, String, Vec<Option<f64>>)>(
        "SELECT _id, d, f, (geo->>'lat')::float8, geo, (o->>'x')::float8, fl::text, ds FROM bronze.floats_pg
         WHERE _id <> 'nulls'",
    )
    .fetch_all(&h.pool)
    .await
    .expect("read back");
    assert_eq!(pg.len(), awkward.len());
    for (i, v) in awkward.iter().enumerate() {
        let id = i.to_string();
        let lat = (v.abs() % 90.0).copysign(*v);
        let r = row(&t, &id);
        let f64_of = |x: &Value| x.as_f64().unwrap_or_else(|| panic!("doc {id}: {x} is not a number"));
        assert_eq!(f64_of(&r["d"]).to_bits(), v.to_bits(), "delta double, doc {id}");
        assert_eq!((f64_of(&r["f"]) as f32).to_bits(), single(*v).to_bits(), "delta float, doc {id}");
        assert_eq!(f64_of(&r["geo"]["lat"]).to_bits(), lat.to_bits(), "delta geo_point, doc {id}");
        assert_eq!(f64_of(&r["geo"]["lon"]).to_bits(), 51.39999999999999f64.to_bits(), "doc {id}");
        assert_eq!(f64_of(&r["o"]["x"]).to_bits(), v.to_bits(), "delta object field, doc {id}");
        let fl: Value = serde_json::from_str(r["fl"].as_str().expect("flattened as text")).expect("JSON");
        assert_eq!(f64_of(&fl["v"]).to_bits(), v.to_bits(), "flattened JSON text, doc {id}");

        let ds = r["ds"].as_array().expect("a list");
        assert_eq!((f64_of(&ds[0]).to_bits(), &ds[1]), (v.to_bits(), &Value::Null), "delta list, doc {id}");
        let (_, d, f, glat, _, ox, fl, pg_ds) = pg.iter().find(|r| r.0 == id).expect("row in PostgreSQL");
        assert_eq!(pg_ds.iter().map(|x| x.map(f64::to_bits)).collect::<Vec<_>>(), [Some(v.to_bits()), None]);
        assert_eq!(d.to_bits(), v.to_bits(), "postgres double, doc {id}");
        assert_eq!(f.to_bits(), single(*v).to_bits(), "postgres real, doc {id}");
        // jsonb holds -0.0 as a string, which casts back to -0.0.
        assert_eq!(glat.to_bits(), lat.to_bits(), "postgres geo_point (jsonb), doc {id}");
        assert_eq!(ox.to_bits(), v.to_bits(), "postgres object (jsonb), doc {id}");
        let fl: Value = serde_json::from_str(fl).expect("jsonb text");
        let flv = match &fl["v"] {
            Value::String(s) => s.parse::<f64>().expect("a special float"),
            n => f64_of(n),
        };
        assert_eq!(flv.to_bits(), v.to_bits(), "postgres flattened (jsonb), doc {id}");
    }
}
