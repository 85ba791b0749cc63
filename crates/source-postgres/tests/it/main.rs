//! The replication client against the real server (`wal_level = logical`,
//! which `scripts/services.sh` sets): a slot made with an exported snapshot,
//! the snapshot read at the slot's consistent point, then the changes after it
//! streamed and decoded, and the position confirmed.

use sqlx::{Connection, PgConnection};
use weir_core::ConnectionUrl;
use weir_source_postgres::pgoutput::{self, Message, Value};
use weir_source_postgres::replication::{Lsn, ReplicationConn, Streamed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_streams_every_change_after_its_exported_snapshot() {
    let url = weir_testkit::pg::fresh_database("replication").await.expect("database");
    let mut sql = PgConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql(
        "CREATE TABLE events (id bigint PRIMARY KEY, body text);
         INSERT INTO events VALUES (1, 'before the slot');
         CREATE PUBLICATION weir_test FOR TABLE events",
    )
    .execute(&mut sql)
    .await
    .expect("set up");
    let conn = ConnectionUrl::parse("src", &url).expect("url");
    let mut repl = ReplicationConn::connect(&conn).await.expect("a replication connection");
    let slot = format!("weir_test_{}", std::process::id());
    let created = repl
        .query(&format!("CREATE_REPLICATION_SLOT \"{slot}\" LOGICAL pgoutput (SNAPSHOT 'export')"))
        .await
        .expect("create the slot");
    let (consistent, snapshot) = (created[0][1].clone().expect("lsn"), created[0][2].clone().expect("snapshot"));

    // Changes after the slot's consistent point: not in the snapshot, in the stream.
    sqlx::raw_sql("INSERT INTO events VALUES (2, 'after'); UPDATE events SET body = 'edited' WHERE id = 1")
        .execute(&mut sql)
        .await
        .expect("changes");
    let mut reader = PgConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{snapshot}'"
    )))
    .execute(&mut reader)
    .await
    .expect("adopt the snapshot");
    let seen: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, body FROM events ORDER BY id").fetch_all(&mut reader).await.expect("read");
    assert_eq!(seen, [(1, "before the slot".to_owned())], "the snapshot is the table at the slot's point");
    drop(reader);

    let start = Lsn::parse(&consistent).expect("an LSN");
    repl.start(&slot, start, &["weir_test".to_owned()]).await.expect("start replication");
    let mut changes = Vec::new();
    while changes.len() < 2 {
        match repl.next().await.expect("stream").expect("not ended") {
            Streamed::Data { body, end, .. } => {
                match pgoutput::decode(body).expect("pgoutput") {
                    Message::Insert { new, .. } => changes.push(("insert", new)),
                    Message::Update { new, .. } => changes.push(("update", new)),
                    _ => {}
                }
                repl.status(end, end).await.expect("status");
            }
            Streamed::Keepalive { end, reply } if reply => repl.status(end, end).await.expect("status"),
            Streamed::Keepalive { .. } => {}
        }
    }
    let text = |v: &Value| match v {
        Value::Text(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    };
    let got: Vec<(&str, Vec<String>)> = changes.iter().map(|(k, v)| (*k, v.iter().map(text).collect())).collect();
    assert_eq!(
        got,
        [("insert", vec!["2".to_owned(), "after".to_owned()]), ("update", vec!["1".to_owned(), "edited".to_owned()])]
    );
    drop(repl);
    // The slot is released when its connection closes; drop it.
    for _ in 0..50 {
        if sqlx::query(sqlx::AssertSqlSafe(format!("SELECT pg_drop_replication_slot('{slot}')")))
            .execute(&mut sql)
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the slot {slot} could not be dropped");
}
