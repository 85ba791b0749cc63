//! Change data capture end to end: a real PostgreSQL with `wal_level =
//! logical` (the services script sets it), the real `runner`, and the mirror
//! compared value for value with the source, read back by the server's own
//! text output on both sides. The snapshot at the slot's consistent point,
//! then inserts, updates (a changed key, unchanged TOAST values), deletes and
//! TRUNCATE; every type through the change log; the history; a process that
//! dies between the destination's commit and the slot's confirmation; and
//! what each fault says.

use std::collections::BTreeMap;

use sqlx::PgPool;

use crate::harness::{D1, D2, Harness};
use crate::postgres::{ALL_TYPES, pipeline, source, text_rows, types};

const D3: &str = "20250325";
const D4: &str = "20250326";
const D5: &str = "20250327";
const D6: &str = "20250328";
const D7: &str = "20250329";

/// Eight hex digits that no other test run picks.
fn suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:08x}", (nanos as u64 ^ u64::from(std::process::id()).rotate_left(32)) as u32)
}

/// A cdc pipeline with a slot of its own (slot names are the server's, not
/// the database's); returns the slot's name.
async fn cdc_pipeline(h: &Harness, name: &str, table: &str, options: &str) -> String {
    let slot = format!("{name}_{}", suffix());
    let options = match options {
        "" => format!(r#"'{{"slot": "{slot}"}}'"#),
        more => format!(r#"'{{"slot": "{slot}", {more}}}'"#),
    };
    pipeline(h, name, table, &[("load_type", "'cdc'"), ("options", options.as_str())]).await;
    slot
}

async fn sql(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The mirror holds exactly the source's rows, value for value.
async fn assert_mirrors(src: &PgPool, h: &Harness, table: &str, mirror: &str) {
    let columns: Vec<String> =
        types(src, table).await.into_iter().map(|(n, _)| n).filter(|n| n != "id").collect::<Vec<_>>();
    let want = text_rows(src, table, &columns).await;
    let got = text_rows(&h.pool, mirror, &columns).await;
    let ids = |m: &BTreeMap<i32, Vec<Option<String>>>| m.keys().copied().collect::<Vec<_>>();
    assert_eq!(ids(&got), ids(&want), "the mirror's rows");
    for (id, row) in &want {
        for ((column, w), g) in columns.iter().zip(row).zip(&got[id]) {
            assert_eq!(g, w, "column {column} of row {id}");
        }
    }
}

/// The Delta mirror of `items` holds exactly the source's rows (name, big's length, price, tags).
async fn assert_lake_mirrors_items(src: &PgPool, h: &Harness, table: &str) {
    type Row = (String, Option<i64>, Option<String>, Option<Vec<Option<String>>>);
    let want: BTreeMap<i64, Row> = sqlx::query_as::<
        _,
        (i32, String, Option<i32>, Option<String>, Option<Vec<Option<String>>>),
    >("SELECT id, name, length(big), price::text, tags FROM items")
    .fetch_all(src)
    .await
    .expect("source rows")
    .into_iter()
    .map(|(id, name, big, price, tags)| (i64::from(id), (name, big.map(i64::from), price, tags)))
    .collect();
    let lake = weir_testkit::delta::read(&h.lake().join("bronze").join(table).display().to_string(), &BTreeMap::new())
        .await
        .expect("the Delta readers");
    let got: BTreeMap<i64, Row> = lake
        .rows
        .iter()
        .map(|r| {
            let text = |k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let tags = r
                .get("tags")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().map(|t| t.as_str().map(str::to_owned)).collect::<Vec<_>>());
            let id = r.get("id").and_then(serde_json::Value::as_i64).expect("an id");
            (id, (text("name").unwrap_or_default(), text("big").map(|b| b.chars().count() as i64), text("price"), tags))
        })
        .collect();
    assert_eq!(got, want, "the Delta mirror {table}");
}

async fn drop_slot(src: &PgPool, slot: &str) {
    for _ in 0..50 {
        if sqlx::query("SELECT pg_drop_replication_slot($1)").bind(slot).execute(src).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the slot {slot} could not be dropped");
}

async fn confirmed(src: &PgPool, slot: &str) -> Option<String> {
    sqlx::query_scalar("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1")
        .bind(slot)
        .fetch_one(src)
        .await
        .expect("the slot")
}

const ITEMS: &str = "
CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, big text, price numeric(10,2), tags text[],
                    seen timestamptz);
-- Out of line and uncompressed: an update that leaves `big` alone does not send it.
ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL;
INSERT INTO items SELECT i, 'item ' || i, CASE WHEN i IN (1, 7) THEN repeat('x', 100000) END, i * 1.25,
                         ARRAY['a', 'b ' || i], '2025-03-23 10:00:00+00'::timestamptz + i * interval '1 second'
FROM generate_series(1, 50) i;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_then_every_insert_update_delete_and_truncate_reach_the_mirror() {
    let mut h = Harness::new("cdc_mirror").await;
    let src = source(&mut h, "cdc_mirror_src", ITEMS).await;
    let slot = cdc_pipeline(&h, "cdc_items", "public.items", "").await;
    let lake_slot = cdc_pipeline(&h, "cdc_items_lake", "public.items", "").await;
    sql(&h.pool, "UPDATE controller SET destination_type = 'delta', destination_connection = 'lake' WHERE name = 'cdc_items_lake'").await;

    // The first run creates the publication and the slot, and copies the table at its consistent point.
    h.run_ok(D1).await;
    assert_mirrors(&src, &h, "items", "bronze.cdc_items").await;
    assert_lake_mirrors_items(&src, &h, "cdc_items_lake").await;
    let first = h.last_audit("cdc_items").await;
    assert_eq!(first.records_read, Some(51), "a truncate marker and 50 rows");
    let snapshot_at = first.watermark_after.expect("an LSN");
    assert_eq!(confirmed(&src, &slot).await.as_deref(), Some(snapshot_at.as_str()), "confirmed after the commit");
    let published: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_publication_tables WHERE tablename = 'items'")
        .fetch_one(&src)
        .await
        .expect("publication");
    assert_eq!(published, 2, "a publication per pipeline (their default names)");

    sql(
        &src,
        "INSERT INTO items VALUES (51, 'new', NULL, 9.99, '{}', now());
         UPDATE items SET name = 'renamed' WHERE id = 2;
         UPDATE items SET price = 100 WHERE id = 1;
         UPDATE items SET name = 'twice, big untouched' WHERE id = 1;
         UPDATE items SET id = 1000 WHERE id = 3;
         DELETE FROM items WHERE id = 4;
         INSERT INTO items VALUES (52, 'gone again', NULL, 1, NULL, NULL);
         DELETE FROM items WHERE id = 52;
         BEGIN;
         UPDATE items SET big = repeat('y', 90000) WHERE id = 7;
         UPDATE items SET price = 7 WHERE id = 7;
         COMMIT;
         UPDATE items SET tags = ARRAY['quoted \"x\"', NULL, 'comma, here'] WHERE id = 8;",
    )
    .await;
    h.run_ok(D2).await;
    assert_mirrors(&src, &h, "items", "bronze.cdc_items").await;
    let big: String = sqlx::query_scalar("SELECT left(big, 3) || length(big) FROM bronze.cdc_items WHERE id = 1")
        .fetch_one(&h.pool)
        .await
        .expect("row 1");
    assert_eq!(big, "xxx100000", "an update that left a TOASTed value alone kept it");
    assert_lake_mirrors_items(&src, &h, "cdc_items_lake").await;
    let second = h.last_audit("cdc_items").await;
    assert_eq!(second.status, "success");
    let at = second.watermark_after.expect("an LSN");
    assert_ne!(at, snapshot_at);
    assert_eq!(confirmed(&src, &slot).await.as_deref(), Some(at.as_str()));

    sql(&src, "INSERT INTO items VALUES (70, 'before the truncate', NULL, 1, NULL, NULL)").await;
    sql(&src, "TRUNCATE items; INSERT INTO items VALUES (1, 'after the truncate', NULL, 1, NULL, NULL)").await;
    // The read before the truncate's transaction commits; the truncate starts the next one.
    h.run_ok(D3).await;
    h.run_ok("20250401").await;
    assert_mirrors(&src, &h, "items", "bronze.cdc_items").await;
    assert_lake_mirrors_items(&src, &h, "cdc_items_lake").await;

    // Nothing changed: the run still moves the position on, so the server can recycle its WAL.
    sql(&src, "CREATE TABLE elsewhere (id int); INSERT INTO elsewhere VALUES (1)").await;
    h.run_ok(D4).await;
    let quiet = h.last_audit("cdc_items").await;
    assert_eq!(quiet.records_processed, Some(0));
    assert_ne!(quiet.watermark_after, h.audits("cdc_items").await[3].watermark_after);
    // A quiet Delta MERGE commits nothing of its own: the position is committed all the same,
    // or the slot (confirmed past it) would stop the next run.
    h.run_ok("20250402").await;

    // Operating it: the slot's WAL in check, pipelines and slots; dropped only on purpose.
    let check = h.runner(&["check", "--pipeline", "cdc_items"]).await;
    assert_eq!(check.code, 0, "{}", check.all());
    assert!(check.stdout.contains(&format!("cdc_items: slot {slot}: idle, retains ")), "{}", check.stdout);
    let listed = h.runner(&["pipelines"]).await;
    assert!(listed.stdout.contains(&format!("slot {slot}: idle")), "{}", listed.stdout);
    let slots = h.runner(&["slots"]).await;
    assert!(slots.stdout.starts_with("ok      cdc_items: slot "), "{}", slots.all());
    let refused = h.runner(&["slots", "drop", "cdc_items"]).await;
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(refused.stderr.contains("is active"), "{}", refused.stderr);
    sql(&h.pool, "UPDATE controller SET active = false WHERE name = 'cdc_items'").await;
    let dropped = h.runner(&["slots", "drop", "cdc_items"]).await;
    assert_eq!(dropped.code, 0, "{}", dropped.all());
    assert!(dropped.stdout.contains(&format!("dropped replication slot {slot}")), "{}", dropped.stdout);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1")
        .bind(&slot)
        .fetch_one(&src)
        .await
        .expect("slots");
    assert_eq!(left, 0);
    drop_slot(&src, &lake_slot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_reads_the_same_from_the_change_log_as_from_the_snapshot() {
    let mut h = Harness::new("cdc_types").await;
    let src = source(&mut h, "cdc_types_src", ALL_TYPES).await;
    let slot = cdc_pipeline(&h, "cdc_types", "public.all_types", "").await;
    h.run_ok(D1).await;
    assert_mirrors(&src, &h, "all_types", "bronze.cdc_types").await;

    // The same values again, as changes: pgoutput sends them as text.
    sql(
        &src,
        "CREATE TEMP TABLE again AS SELECT * FROM all_types;
         UPDATE again SET id = id + 10;
         INSERT INTO all_types SELECT * FROM again;
         UPDATE all_types SET i4 = 5 WHERE id = 1;
         DELETE FROM all_types WHERE id = 12",
    )
    .await;
    h.run_ok(D2).await;
    assert_mirrors(&src, &h, "all_types", "bronze.cdc_types").await;
    assert_eq!(h.count("bronze.cdc_types").await, 5);
    drop_slot(&src, &slot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_after_the_commit_neither_loses_nor_repeats_a_change() {
    let mut h = Harness::new("cdc_once").await;
    let src = source(&mut h, "cdc_once_src", ITEMS).await;
    h.set_env("WEIR_LEASE_SECONDS", "2");
    let history = cdc_pipeline(&h, "cdc_once_log", "public.items", r#""history": true"#).await;
    let mirror = cdc_pipeline(&h, "cdc_once_items", "public.items", "").await;
    let lake = cdc_pipeline(&h, "cdc_once_lake", "public.items", r#""history": true"#).await;
    sql(&h.pool, "UPDATE controller SET destination_type = 'delta', destination_connection = 'lake' WHERE name = 'cdc_once_lake'").await;
    h.run_ok(D1).await;

    sql(&src, "INSERT INTO items VALUES (60, 'a', NULL, 1, NULL, NULL); UPDATE items SET name = 'b' WHERE id = 9; DELETE FROM items WHERE id = 10").await;
    // The history pipeline commits, then the process dies before anything else records it.
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "cdc_once_log");
    let crashed = h.run_date(D2).await;
    assert_ne!(crashed.code, 0, "{}", crashed.all());
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "none");
    let committed: String = sqlx::query_scalar("SELECT watermark FROM _weir.commits WHERE pipeline = 'cdc_once_log'")
        .fetch_one(&h.pool)
        .await
        .expect("the destination's own record of its commit");
    assert_ne!(confirmed(&src, &history).await, Some(committed.clone()), "the slot was not told");
    assert_eq!(h.scalar_i64("SELECT count(*) FROM bronze.cdc_once_log WHERE _weir_op <> 'r'").await, 1 + 3);

    sql(&src, "INSERT INTO items VALUES (61, 'c', NULL, 1, NULL, NULL); UPDATE items SET name = 'd' WHERE id = 60")
        .await;
    // The same for a Delta destination: its commit lands, the process dies before the slot hears of it.
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "cdc_once_lake");
    let crashed = h.run_date(D3).await;
    assert_ne!(crashed.code, 0, "{}", crashed.all());
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "none");
    h.run_ok(D4).await;
    // Every change once: the truncate marker, the snapshot, three changes, then two.
    let ops = h.rows("SELECT _weir_op, count(*)::text FROM bronze.cdc_once_log GROUP BY 1 ORDER BY 1").await;
    assert_eq!(ops, [["c", "2"], ["d", "1"], ["r", "50"], ["t", "1"], ["u", "2"]].map(|r| r.map(str::to_owned)));
    assert_eq!(
        h.scalar_i64("SELECT count(*) FROM (SELECT DISTINCT _weir_lsn, _weir_op FROM bronze.cdc_once_log WHERE _weir_op <> 'r') d").await,
        6
    );
    assert_mirrors(&src, &h, "items", "bronze.cdc_once_items").await;
    let lake_rows = weir_testkit::delta::read(
        &h.lake().join("bronze").join("cdc_once_lake").display().to_string(),
        &BTreeMap::new(),
    )
    .await
    .expect("the Delta readers");
    let mut lake_ops = BTreeMap::new();
    for op in lake_rows.column("_weir_op") {
        *lake_ops.entry(op.as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
    }
    let want: BTreeMap<String, i32> =
        [("c", 2), ("d", 1), ("r", 50), ("t", 1), ("u", 2)].into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
    assert_eq!(lake_ops, want, "every change once in the Delta history too");
    drop_slot(&src, &history).await;
    drop_slot(&src, &mirror).await;
    drop_slot(&src, &lake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_faults_name_their_cause_and_the_run_goes_on() {
    let mut h = Harness::new("cdc_faults").await;
    let role = format!("weir_norepl_{}", suffix());
    let src = source(
        &mut h,
        "cdc_faults_src",
        &format!(
            "{ITEMS}
             CREATE TABLE nokey (id int, v text); INSERT INTO nokey VALUES (1, 'a');
             CREATE ROLE {role} LOGIN PASSWORD 'secret-pw-42';
             GRANT SELECT ON items TO {role};"
        ),
    )
    .await;
    let url = url::Url::parse(&weir_testkit::pg::server_url()).expect("url");
    let db: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&src).await.expect("db");
    h.set_env(
        "WEIR_CONN_NOREPL",
        &format!(
            "postgres://{role}:secret-pw-42@{}:{}/{db}",
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(5432)
        ),
    );
    let nokey = cdc_pipeline(&h, "cdc_nokey", "public.nokey", "").await;
    let lost = cdc_pipeline(&h, "cdc_lost", "public.items", "").await;
    let norepl = cdc_pipeline(&h, "cdc_norepl", "public.items", "").await;
    sql(&h.pool, "UPDATE controller SET source_connection = 'norepl' WHERE name = 'cdc_norepl'").await;
    let run = h.run_date(D1).await;
    assert_ne!(run.code, 0);
    assert!(!run.all().contains("secret-pw-42"), "{}", run.all());

    let nokey_error = h.last_audit("cdc_nokey").await.error;
    assert!(nokey_error.contains("ALTER TABLE \"public\".\"nokey\" REPLICA IDENTITY FULL"), "{nokey_error}");
    let norepl_error = h.last_audit("cdc_norepl").await.error;
    assert!(norepl_error.contains("REPLICATION"), "{norepl_error}");
    assert!(!norepl_error.contains("secret-pw-42"), "{norepl_error}");
    assert_eq!(h.last_audit("cdc_lost").await.status, "success", "the others' faults stop only them");
    // runner check says the same before any run.
    let check = h.runner(&["check", "--pipeline", "cdc_nokey", "--pipeline", "cdc_norepl"]).await;
    assert_eq!(check.code, 1, "{}", check.all());
    assert!(
        check.stdout.contains("FAILED  cdc_nokey: source: table public.nokey has no primary key"),
        "{}",
        check.stdout
    );
    assert!(check.stdout.contains("lacks the REPLICATION attribute"), "{}", check.stdout);
    assert!(!check.all().contains("secret-pw-42"), "{}", check.all());

    // The slot dropped behind the pipeline's back: fail naming it, or take a new snapshot.
    drop_slot(&src, &lost).await;
    sql(&src, "DELETE FROM items WHERE id = 1").await;
    let run = h.runner(&["--date", D2, "--pipeline", "cdc_lost"]).await;
    assert_ne!(run.code, 0);
    let lost_error = h.last_audit("cdc_lost").await.error;
    assert!(lost_error.contains(&format!("replication slot `{lost}` no longer exists")), "{lost_error}");
    assert!(lost_error.contains("on_slot_lost"), "{lost_error}");
    sql(
        &h.pool,
        &format!(
            r#"UPDATE controller SET options = '{{"slot": "{lost}", "on_slot_lost": "resnapshot"}}' WHERE name = 'cdc_lost'"#
        ),
    )
    .await;
    let run = h.runner(&["--date", D3, "--pipeline", "cdc_lost"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_mirrors(&src, &h, "items", "bronze.cdc_lost").await;

    drop_slot(&src, &lost).await;
    let _ = (nokey, norepl);
    sql(&src, &format!("DROP OWNED BY {role}; DROP ROLE {role}")).await;
}

/// `sql` until it answers true; errors (a table not there yet) count as false.
async fn eventually(pool: &PgPool, sql: &str, secs: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let ok: Option<bool> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pool).await.ok();
        if ok == Some(true) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "not within {secs} s: {sql}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_stream_applies_changes_as_they_come_resumes_after_cut_connections_and_stops_on_sigterm() {
    let mut h = Harness::new("cdc_stream").await;
    let src = source(&mut h, "cdc_stream_src", ITEMS).await;
    // The source through a proxy that can cut its connections.
    let url = url::Url::parse(&weir_testkit::pg::server_url()).expect("url");
    let upstream = format!("{}:{}", url.host_str().unwrap_or("127.0.0.1"), url.port().unwrap_or(5432));
    let proxy = weir_testkit::proxy::TcpProxy::start(upstream.parse().expect("address")).await.expect("proxy");
    let db: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&src).await.expect("db");
    h.set_env("WEIR_CONN_SRC", &format!("postgres://postgres@127.0.0.1:{}/{db}", proxy.port()));
    h.set_env("WEIR_LEASE_SECONDS", "3");
    let slot = cdc_pipeline(&h, "cdc_stream_items", "public.items", r#""commit_interval": "200ms""#).await;

    let first = h.spawn(&["stream"]);
    eventually(&h.pool, "SELECT count(*) = 50 FROM bronze.cdc_stream_items", 30).await;
    sql(&src, "INSERT INTO items VALUES (51, 'live', NULL, 1, NULL, NULL); DELETE FROM items WHERE id = 1").await;
    eventually(
        &h.pool,
        "SELECT count(*) = 50 AND bool_or(id = 51) AND NOT bool_or(id = 1) FROM bronze.cdc_stream_items",
        10,
    )
    .await;

    // Cut the next connections mid-read: the stream retries from the committed position.
    proxy.cut_after(300, 3);
    sql(&src, "UPDATE items SET name = 'after the cuts' WHERE id BETWEEN 10 AND 20; DELETE FROM items WHERE id = 2")
        .await;
    eventually(&h.pool, "SELECT count(*) = 11 FROM bronze.cdc_stream_items WHERE name = 'after the cuts'", 60).await;
    assert!(proxy.cuts() > 0, "the proxy cut connections");

    // A second runner waits for the first's lease, and takes over when it stops.
    let second = h.spawn(&["stream", "--pipeline", "cdc_stream_items"]);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    crate::harness::signal(&first, "-TERM");
    let stopped = crate::harness::finish(first).await;
    assert_eq!(stopped.code, 0, "{}", stopped.all());
    sql(&src, "INSERT INTO items VALUES (52, 'to the second runner', NULL, 1, NULL, NULL)").await;
    eventually(&h.pool, "SELECT bool_or(id = 52) FROM bronze.cdc_stream_items", 30).await;
    crate::harness::signal(&second, "-TERM");
    let stopped = crate::harness::finish(second).await;
    assert_eq!(stopped.code, 0, "{}", stopped.all());
    assert!(stopped.stderr.contains("another runner holds this pipeline"), "{}", stopped.stderr);

    assert_mirrors(&src, &h, "items", "bronze.cdc_stream_items").await;
    // One audit row per session, kept up to date, each ending in success.
    let audits = h.audits("cdc_stream_items").await;
    assert_eq!(audits.len(), 2, "{audits:?}");
    for a in &audits {
        assert_eq!(a.status, "success", "{a:?}");
        assert!(a.watermark_after.is_some(), "{a:?}");
    }
    assert!(audits[0].records_read.unwrap_or(0) >= 51 + 2, "{:?}", audits[0]);
    drop_slot(&src, &slot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_fails_mid_commit_gets_nothing_confirmed_and_the_next_run_applies_everything() {
    let mut h = Harness::new("cdc_dest_fail").await;
    let src = source(&mut h, "cdc_dest_fail_src", ITEMS).await;
    let slot = cdc_pipeline(&h, "cdc_fail_items", "public.items", "").await;
    h.run_ok(D1).await;
    let before = confirmed(&src, &slot).await;

    // The destination refuses one of the rows while the changes are applied.
    sql(
        &h.pool,
        "CREATE FUNCTION bronze.refuse() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN IF NEW.name = 'poison' THEN RAISE EXCEPTION 'the destination refuses %', NEW.id; END IF; RETURN NEW; END $$;
         CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON bronze.cdc_fail_items FOR EACH ROW EXECUTE FUNCTION bronze.refuse()",
    )
    .await;
    sql(&src, "INSERT INTO items VALUES (80, 'fine', NULL, 1, NULL, NULL); UPDATE items SET name = 'poison' WHERE id = 5; DELETE FROM items WHERE id = 6").await;
    let failed = h.run_date(D2).await;
    assert_ne!(failed.code, 0);
    assert!(h.last_audit("cdc_fail_items").await.error.contains("the destination refuses 5"));
    assert_eq!(confirmed(&src, &slot).await, before, "nothing confirmed to the slot");
    assert_eq!(h.count("bronze.cdc_fail_items").await, 50, "nothing of the failed load is visible");
    assert_eq!(h.scalar_i64("SELECT count(*) FROM bronze.cdc_fail_items WHERE id = 80").await, 0);

    sql(&h.pool, "DROP TRIGGER refuse ON bronze.cdc_fail_items").await;
    h.run_ok(D3).await;
    assert_mirrors(&src, &h, "items", "bronze.cdc_fail_items").await;
    drop_slot(&src, &slot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_killed_mid_flight_resumes_without_loss_or_duplicates() {
    let mut h = Harness::new("cdc_kill_stream").await;
    let src = source(&mut h, "cdc_kill_stream_src", ITEMS).await;
    h.set_env("WEIR_LEASE_SECONDS", "2");
    let log = cdc_pipeline(&h, "cdc_ks_log", "public.items", r#""history": true, "commit_interval": "100ms""#).await;
    let mirror = cdc_pipeline(&h, "cdc_ks_items", "public.items", r#""commit_interval": "100ms""#).await;

    let first = h.spawn(&["stream"]);
    eventually(&h.pool, "SELECT count(*) = 50 FROM bronze.cdc_ks_items", 30).await;
    // A writer of small transactions, and kill -9 while they flow.
    let writer = {
        let src = src.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                sql(&src, &format!("INSERT INTO items VALUES ({}, 'w', NULL, 1, NULL, NULL); UPDATE items SET price = price + 1 WHERE id = {}", 100 + i, 1 + i % 40)).await;
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    crate::harness::signal(&first, "-KILL");
    let killed = crate::harness::finish(first).await;
    assert_eq!(killed.code, -1);
    writer.await.expect("the writer");

    let second = h.spawn(&["stream"]);
    eventually(&h.pool, "SELECT count(*) = 110 FROM bronze.cdc_ks_items", 30).await;
    eventually(&h.pool, "SELECT count(*) = 1 + 50 + 120 FROM bronze.cdc_ks_log", 30).await;
    crate::harness::signal(&second, "-TERM");
    let stopped = crate::harness::finish(second).await;
    assert_eq!(stopped.code, 0, "{}", stopped.all());
    assert!(stopped.stderr.contains("took over") || stopped.stderr.contains("waiting"), "{}", stopped.stderr);

    assert_mirrors(&src, &h, "items", "bronze.cdc_ks_items").await;
    // Every change once: 60 inserts and 60 updates after the snapshot, none twice.
    let changes = h
        .rows("SELECT _weir_op, count(*)::text, count(DISTINCT _weir_lsn)::text FROM bronze.cdc_ks_log WHERE _weir_op IN ('c', 'u') GROUP BY 1 ORDER BY 1")
        .await;
    assert_eq!(changes, [["c", "60", "60"], ["u", "60", "60"]].map(|r| r.map(str::to_owned)));
    drop_slot(&src, &log).await;
    drop_slot(&src, &mirror).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_logical_decoding_is_told_what_to_set() {
    let mut h = Harness::new("cdc_wal_level").await;
    let plain = std::env::var("WEIR_TEST_PG_PLAIN_URL")
        .expect("WEIR_TEST_PG_PLAIN_URL: a server at wal_level = replica (scripts/services.sh pgplain)");
    let pool = PgPool::connect(&plain).await.expect("the plain server");
    let table = format!("wal_level_{}", suffix());
    sql(&pool, &format!("CREATE TABLE {table} (id int PRIMARY KEY); INSERT INTO {table} VALUES (1)")).await;
    h.set_env("WEIR_CONN_SRC", &plain);
    cdc_pipeline(&h, "cdc_plain", &format!("public.{table}"), "").await;
    let run = h.run_date(D1).await;
    assert_ne!(run.code, 0);
    let error = h.last_audit("cdc_plain").await.error;
    assert!(error.contains("wal_level = replica"), "{error}");
    assert!(error.contains("ALTER SYSTEM SET wal_level = logical, then restart the server"), "{error}");
    sql(&pool, &format!("DROP TABLE {table}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_column_reaches_the_mirror_and_a_retyped_one_fails_naming_it() {
    let mut h = Harness::new("cdc_schema").await;
    let src = source(&mut h, "cdc_schema_src", ITEMS).await;
    let slot = cdc_pipeline(&h, "cdc_schema_items", "public.items", "").await;
    h.run_ok(D1).await;

    sql(
        &src,
        "UPDATE items SET name = 'before the new column' WHERE id = 2;
         ALTER TABLE items ADD COLUMN rating integer;
         UPDATE items SET rating = 4 WHERE id = 3;
         INSERT INTO items (id, name, rating) VALUES (90, 'rated', 5)",
    )
    .await;
    h.run_ok(D2).await;
    assert_mirrors(&src, &h, "items", "bronze.cdc_schema_items").await;

    sql(
        &src,
        "ALTER TABLE items ALTER COLUMN price TYPE text USING price::text; UPDATE items SET price = 'n/a' WHERE id = 9",
    )
    .await;
    let run = h.run_date(D3).await;
    assert_ne!(run.code, 0);
    let error = h.last_audit("cdc_schema_items").await.error;
    assert!(error.contains("`price`"), "{error}");
    drop_slot(&src, &slot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_changes_the_key_keeps_the_values_it_did_not_send() {
    let mut h = Harness::new("cdc_key_toast").await;
    let src = source(&mut h, "cdc_key_toast_src", ITEMS).await;
    let slot = cdc_pipeline(&h, "cdc_kt_items", "public.items", "").await;
    let lake_slot = cdc_pipeline(&h, "cdc_kt_lake", "public.items", "").await;
    sql(
        &h.pool,
        "UPDATE controller SET destination_type = 'delta', destination_connection = 'lake' WHERE name = 'cdc_kt_lake'",
    )
    .await;
    h.run_ok(D1).await;
    // 7's big value changes in this load, then its key; 1's big value is only in the mirror.
    sql(
        &src,
        "UPDATE items SET big = repeat('z', 80000) WHERE id = 7;
         UPDATE items SET id = 2000 WHERE id = 7;
         UPDATE items SET id = 3000 WHERE id = 1;
         UPDATE items SET price = 3 WHERE id = 3000",
    )
    .await;
    h.run_ok(D2).await;
    assert_mirrors(&src, &h, "items", "bronze.cdc_kt_items").await;
    let bigs = h
        .rows("SELECT id::text, left(big, 1) || length(big) FROM bronze.cdc_kt_items WHERE big IS NOT NULL ORDER BY id")
        .await;
    assert_eq!(bigs, [["2000", "z80000"], ["3000", "x100000"]].map(|r| r.map(str::to_owned)));
    // A Delta mirror does not look the old key's row up: it says what it could not keep.
    let details = h
        .rows("SELECT details->>'unchanged_values_missing' FROM audit WHERE pipeline_name = 'cdc_kt_lake' ORDER BY audit_id DESC LIMIT 1")
        .await;
    assert_eq!(details, [["2"]]);
    drop_slot(&src, &slot).await;
    drop_slot(&src, &lake_slot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_server_restarted_under_a_stream_is_reconnected_and_nothing_is_lost() {
    let mut h = Harness::new("cdc_restart").await;
    let server = std::env::var("WEIR_TEST_PG_RESTART_URL")
        .expect("WEIR_TEST_PG_RESTART_URL: a server of its own to restart (scripts/services.sh pgrestart)");
    let cluster = std::env::var("WEIR_TEST_PG_RESTART_CLUSTER").expect("WEIR_TEST_PG_RESTART_CLUSTER");
    let admin = PgPool::connect(&server).await.expect("the restartable server");
    // Slots of earlier runs would keep their databases and WAL.
    sql(&admin, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active").await;
    let db = format!("weir_t_restart_{}", suffix());
    sql(&admin, &format!("CREATE DATABASE {db}")).await;
    admin.close().await;
    let mut url = url::Url::parse(&server).expect("url");
    url.set_path(&format!("/{db}"));
    let src = PgPool::connect(url.as_str()).await.expect("the source database");
    sql(&src, ITEMS).await;
    h.set_env("WEIR_CONN_SRC", url.as_str());
    let slot = cdc_pipeline(&h, "cdc_restart_items", "public.items", r#""commit_interval": "200ms""#).await;

    let stream = h.spawn(&["stream"]);
    eventually(&h.pool, "SELECT count(*) = 50 FROM bronze.cdc_restart_items", 30).await;
    sql(&src, "INSERT INTO items SELECT i, 'before', NULL, 1, NULL, NULL FROM generate_series(100, 109) i").await;
    eventually(&h.pool, "SELECT count(*) = 60 FROM bronze.cdc_restart_items", 30).await;
    src.close().await;

    let mut ctl = vec!["--skip-systemctl-redirect"];
    ctl.extend(cluster.split_whitespace());
    ctl.push("restart");
    let restarted = std::process::Command::new("pg_ctlcluster").args(&ctl).status().expect("pg_ctlcluster");
    assert!(restarted.success(), "restarting the source server");
    let src = PgPool::connect(url.as_str()).await.expect("the source database, restarted");
    sql(&src, "INSERT INTO items SELECT i, 'after', NULL, 1, NULL, NULL FROM generate_series(200, 209) i; DELETE FROM items WHERE id = 100").await;
    eventually(&h.pool, "SELECT count(*) = 69 FROM bronze.cdc_restart_items", 90).await;

    crate::harness::signal(&stream, "-TERM");
    let stopped = crate::harness::finish(stream).await;
    assert_eq!(stopped.code, 0, "{}", stopped.all());
    assert!(stopped.stderr.contains("resuming from the committed position"), "{}", stopped.stderr);
    assert_mirrors(&src, &h, "items", "bronze.cdc_restart_items").await;
    let audits = h.audits("cdc_restart_items").await;
    assert_eq!(audits.len(), 1, "one session: {audits:?}");
    assert_eq!(audits[0].status, "success");
    drop_slot(&src, &slot).await;
    src.close().await;
    let admin = PgPool::connect(&server).await.expect("the restartable server");
    sql(&admin, &format!("DROP DATABASE {db} WITH (FORCE)")).await;
}

/// Transactions the server has decoded for `slot` (one per transaction per read of it).
async fn decoded(src: &PgPool, slot: &str) -> i64 {
    sqlx::query_scalar("SELECT total_txns FROM pg_stat_replication_slots WHERE slot_name = $1")
        .bind(slot)
        .fetch_optional(src)
        .await
        .expect("the slot's statistics")
        .unwrap_or(0)
}

/// The replication slots on the server whose names start with `prefix`.
async fn slots_named(src: &PgPool, prefix: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE $1 || '%' ORDER BY 1")
        .bind(prefix)
        .fetch_all(src)
        .await
        .expect("the slots")
}

/// Pipelines that name one slot share it: one run decodes the log once for
/// all of them; a pipeline that joins later snapshots at a temporary slot; the
/// slot is confirmed only as far as every one of them has committed, so a
/// paused one resumes without loss; and one killed between its commit and the
/// confirmation neither loses nor repeats a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_naming_one_slot_share_one_decoding_and_the_slot_waits_for_the_slowest() {
    let mut h = Harness::new("cdc_shared").await;
    let src = source(
        &mut h,
        "cdc_shared_src",
        &format!(
            "{ITEMS}
             CREATE TABLE notes (id integer PRIMARY KEY, body text);
             INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 20) i;"
        ),
    )
    .await;
    h.set_env("WEIR_LEASE_SECONDS", "2");
    let slot = format!("cdc_shared_{}", suffix());
    let options = |more: &str| format!(r#"'{{"slot": "{slot}"{more}}}'"#);
    let cdc = |more: &str| [("load_type", "'cdc'".to_owned()), ("options", options(more))];
    for (name, table, more) in [
        ("cdc_sh_items", "public.items", ""),
        ("cdc_sh_notes", "public.notes", ""),
        ("cdc_sh_log", "public.items", r#", "history": true"#),
    ] {
        let columns = cdc(more);
        let columns: Vec<(&str, &str)> = columns.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pipeline(&h, name, table, &columns).await;
    }
    // Three snapshots in one run: one pipeline makes the slot, the others
    // read at temporary slots' consistent points, gone after.
    h.run_ok(D1).await;
    assert_eq!(slots_named(&src, &slot).await, std::slice::from_ref(&slot));
    assert!(slots_named(&src, "weir_snapshot_").await.is_empty(), "no temporary slot is left");
    assert_mirrors(&src, &h, "items", "bronze.cdc_sh_items").await;
    assert_mirrors(&src, &h, "notes", "bronze.cdc_sh_notes").await;

    // Thirty transactions on the two tables: one read of the slot serves the three pipelines.
    let before = decoded(&src, &slot).await;
    for i in 11..=30 {
        sql(&src, &format!("UPDATE items SET name = 'u{i}' WHERE id = {i}")).await;
    }
    for i in 1..=10 {
        sql(&src, &format!("UPDATE notes SET body = 'n{i}' WHERE id = {i}")).await;
    }
    h.run_ok(D2).await;
    let decoded_now = decoded(&src, &slot).await - before;
    assert!(
        (30..60).contains(&decoded_now),
        "the log was decoded once for three pipelines: {decoded_now} transactions"
    );
    assert_mirrors(&src, &h, "items", "bronze.cdc_sh_items").await;
    assert_mirrors(&src, &h, "notes", "bronze.cdc_sh_notes").await;

    // A paused pipeline holds the slot back: the others go on, the slot keeps its changes.
    sql(&h.pool, "UPDATE controller SET active = false WHERE name = 'cdc_sh_notes'").await;
    sql(&src, "INSERT INTO items VALUES (100, 'new', NULL, 1, NULL, NULL)").await;
    sql(&src, "DELETE FROM items WHERE id = 5").await;
    sql(&src, "UPDATE notes SET body = 'while paused' WHERE id BETWEEN 11 AND 13").await;
    h.run_ok(D3).await;
    assert_mirrors(&src, &h, "items", "bronze.cdc_sh_items").await;
    let paused: String = sqlx::query_scalar("SELECT value FROM watermark WHERE pipeline_name = 'cdc_sh_notes'")
        .fetch_one(&h.pool)
        .await
        .expect("the paused pipeline's position");
    assert_eq!(confirmed(&src, &slot).await, Some(paused), "the slot waits for the paused pipeline");
    sql(&h.pool, "UPDATE controller SET active = true WHERE name = 'cdc_sh_notes'").await;
    h.run_ok(D4).await;
    assert_mirrors(&src, &h, "notes", "bronze.cdc_sh_notes").await;

    // One pipeline of the slot commits and the process dies before the slot hears of it.
    sql(
        &src,
        "UPDATE items SET name = 'after' WHERE id = 40; INSERT INTO items VALUES (101, 'x', NULL, 2, NULL, NULL)",
    )
    .await;
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "cdc_sh_log");
    let crashed = h.run_date(D5).await;
    assert_ne!(crashed.code, 0, "{}", crashed.all());
    h.set_env("WEIR_CRASH_AFTER_COMMIT", "none");

    // A pipeline that joins the slot later snapshots at a temporary slot and reads on with the others.
    let columns = cdc("");
    let columns: Vec<(&str, &str)> = columns.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pipeline(&h, "cdc_sh_late", "public.notes", &columns).await;
    sql(&src, "DELETE FROM notes WHERE id = 20").await;
    h.run_ok(D6).await;
    sql(&src, "INSERT INTO notes VALUES (21, 'late'); UPDATE notes SET body = 'again' WHERE id = 1").await;
    h.run_ok(D7).await;
    assert_mirrors(&src, &h, "items", "bronze.cdc_sh_items").await;
    assert_mirrors(&src, &h, "notes", "bronze.cdc_sh_notes").await;
    assert_mirrors(&src, &h, "notes", "bronze.cdc_sh_late").await;
    assert_eq!(slots_named(&src, &slot).await, std::slice::from_ref(&slot));
    // Every change of items once in the history: the marker, the snapshot, the updates, two inserts, a delete.
    let ops = h.rows("SELECT _weir_op, count(*)::text FROM bronze.cdc_sh_log GROUP BY 1 ORDER BY 1").await;
    assert_eq!(ops, [["c", "2"], ["d", "1"], ["r", "50"], ["t", "1"], ["u", "21"]].map(|r| r.map(str::to_owned)));

    // The slot commands say who shares it; dropping it for all of them takes --force.
    let slots = h.runner(&["slots"]).await;
    let notes_line = slots.stdout.lines().find(|l| l.contains("cdc_sh_notes:")).unwrap_or_default();
    for peer in ["cdc_sh_items", "cdc_sh_log", "cdc_sh_late"] {
        assert!(notes_line.contains("shared with") && notes_line.contains(peer), "{}", slots.stdout);
    }
    sql(&h.pool, "UPDATE controller SET active = false WHERE name = 'cdc_sh_notes'").await;
    let refused = h.runner(&["slots", "drop", "cdc_sh_notes"]).await;
    assert_ne!(refused.code, 0);
    assert!(refused.all().contains("shares its slot with"), "{}", refused.all());
    let check = h.runner(&["check", "--pipeline", "cdc_sh_items", "--pipeline", "cdc_sh_late"]).await;
    assert_eq!(check.code, 0, "{}", check.all());

    // `runner stream` naming one of them streams the slot's other active pipelines with it, each
    // cycle one read of the slot for all four.
    sql(&h.pool, "UPDATE controller SET active = true WHERE name = 'cdc_sh_notes'").await;
    let stream = h.spawn(&["stream", "--pipeline", "cdc_sh_late"]);
    let before = decoded(&src, &slot).await;
    for i in 1..=15 {
        sql(&src, &format!("UPDATE notes SET body = 's{i}' WHERE id = {i}")).await;
        sql(&src, &format!("UPDATE items SET name = 's{i}' WHERE id = {}", i + 10)).await;
    }
    for (table, column) in
        [("cdc_sh_late", "body"), ("cdc_sh_notes", "body"), ("cdc_sh_items", "name"), ("cdc_sh_log", "name")]
    {
        eventually(
            &h.pool,
            &format!("SELECT count(DISTINCT id) = 15 FROM bronze.{table} WHERE {column} ~ '^s[0-9]+$'"),
            30,
        )
        .await;
    }
    crate::harness::signal(&stream, "-TERM");
    let stopped = crate::harness::finish(stream).await;
    assert_eq!(stopped.code, 0, "{}", stopped.all());
    let decoded_now = decoded(&src, &slot).await - before;
    assert!((30..60).contains(&decoded_now), "the stream decoded the log once for four pipelines: {decoded_now}");
    assert_mirrors(&src, &h, "items", "bronze.cdc_sh_items").await;
    assert_mirrors(&src, &h, "notes", "bronze.cdc_sh_notes").await;
    assert_mirrors(&src, &h, "notes", "bronze.cdc_sh_late").await;
    drop_slot(&src, &slot).await;
}
