//! `load_type = 'cdc'`: a table's changes, read from a logical replication
//! slot with the server's built-in `pgoutput` plugin.
//!
//! The pipeline's watermark is an LSN, committed with the destination's data:
//! every transaction that committed before it has been applied, none after.
//!
//! - **First run** (no watermark yet): create the publication and the slot,
//!   the slot exporting its snapshot; read the table in that snapshot (in
//!   parallel ranges, as a full load does), after a truncate marker. The
//!   watermark becomes the slot's consistent point: the snapshot holds exactly
//!   the transactions that committed before it.
//! - **Later runs**: read the server's WAL position at the start, stream the
//!   slot from the watermark, apply the transactions that committed in
//!   between, and stop there. The new watermark is that position.
//! - **After the commit**, and only then, the position is confirmed to the
//!   slot, so the server may recycle its WAL. A run killed between the two
//!   re-reads from the committed watermark: transactions before it are skipped
//!   by their commit position, so none is applied twice.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, ListArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field};
use futures::StreamExt;
use sqlx::PgConnection;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use weir_core::changes::op;
use weir_core::{Error, Position, ReadRequest, Result, SourceBatch, SourceStream, quote_ident};

use crate::changes::{ChangeBatcher, Meta, schema};
use crate::error::db_error;
use crate::pgoutput::{self, Message, Value};
use crate::read::Chunk;
use crate::relation::{Relation, describe_table};
use crate::replication::{Lsn, ReplicationConn, Streamed};
use crate::source::{PostgresSource, Target};

/// Microseconds from 1970 to PostgreSQL's epoch, 2000-01-01.
const EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Text of changes held before a batch goes to the sink.
const BATCH_BYTES: usize = 32 * 1024 * 1024;

/// What to do when the slot is gone (dropped, or invalidated by `max_slot_wal_keep_size`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSlotLost {
    /// Fail, naming the slot: changes were lost, and someone should know.
    #[default]
    Fail,
    /// Take a new snapshot, which replaces what the destination held.
    Resnapshot,
}

/// A replication stream parked between reads: after a read, until its
/// position is confirmed, and (in `runner stream`) until the next read goes on
/// where it stopped, without reconnecting and decoding the log again. Nothing
/// reads it while it is parked: the server waits on a full socket.
pub struct Parked {
    repl: ReplicationConn,
    slot: String,
    /// Where the last read ended: the next one must start here to go on.
    at: Lsn,
    /// The message that ended the last read, the first of the next.
    pending: Option<Streamed>,
    /// The relations the server described on this connection (it does so once).
    relations: HashMap<u32, pgoutput::Relation>,
}

/// The source's parked stream, if any.
#[derive(Default)]
pub struct Holder(tokio::sync::Mutex<Option<Parked>>);

/// The names a cdc pipeline uses on the server.
#[derive(Debug, Clone)]
pub struct CdcNames {
    pub slot: String,
    pub publication: String,
}

impl CdcNames {
    /// `options.slot` / `options.publication`, else `weir_<pipeline>` (a slot
    /// name allows only lower-case letters, digits and `_`, at most 63 bytes).
    pub fn new(pipeline: &str, slot: Option<&str>, publication: Option<&str>) -> Result<Self> {
        let derived: String = format!("weir_{pipeline}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .take(63)
            .collect();
        let slot = slot.map(str::to_owned).unwrap_or_else(|| derived.clone());
        if slot.is_empty()
            || slot.len() > 63
            || !slot.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::user(format!(
                "options.slot `{slot}` is not a replication slot name: use lower-case letters, digits and `_`, at most 63"
            )));
        }
        let publication = publication.map(str::to_owned).unwrap_or(derived);
        if publication.is_empty() || publication.len() > 63 {
            return Err(Error::user(format!("options.publication `{publication}` is not a name PostgreSQL keeps")));
        }
        Ok(Self { slot, publication })
    }
}

/// Open a cdc read: the snapshot on the first run, else the changes since the watermark.
pub async fn open(source: &PostgresSource, request: &ReadRequest) -> Result<SourceStream> {
    let config = source.config();
    let names = config.cdc.as_ref().ok_or_else(|| Error::internal("a cdc read without slot names"))?;
    let Target::Table { schema: schema_name, table } = &config.target else {
        return Err(Error::internal("a cdc read of a query"));
    };
    let mut conn = source.connect().await?;
    let table = request.run_date.render(table)?;
    let relation = describe_table(&mut conn, schema_name, &table).await?;
    source.validate(&relation, None)?;
    let key = key_of(&relation, source);
    preflight(&mut conn, &relation, source).await?;
    ensure_publication(&mut conn, &names.publication, &relation).await?;

    let watermark = match &request.watermark_before {
        None => None,
        Some(text) => Some(Lsn::parse(text).ok_or_else(|| {
            Error::user(format!(
                "the stored watermark `{text}` is not a WAL position (was this pipeline not `cdc` before?); a cdc \
                 pipeline starts with a snapshot when it has none: clear it (`DELETE FROM watermark WHERE \
                 pipeline_name = …` and `DELETE FROM _weir.commits WHERE pipeline = …`)"
            ))
        })?),
    };
    let slot = slot_state(&mut conn, &names.slot).await?;
    let resnapshot = config.options.on_slot_lost.unwrap_or_default() == OnSlotLost::Resnapshot;
    let mut warnings = Vec::new();
    // A slot told more than the destination holds would skip the difference
    // without a word (the server starts at its confirmed position): a
    // re-snapshot that died before its commit, or another pipeline on the same slot.
    let ahead = match (watermark, &slot) {
        (Some(from), Some(SlotState { confirmed: Some(confirmed), .. })) if *confirmed > from => Some(*confirmed),
        _ => None,
    };
    if let (Some(confirmed), Some(from)) = (ahead, watermark)
        && !resnapshot
    {
        return Err(Error::user(format!(
            "replication slot `{}` was confirmed up to {confirmed}, past the destination's {from}: the changes in \
             between would be skipped (another pipeline reads this slot, or a new snapshot died before its commit). \
             Give each pipeline its own options.slot, or set options.on_slot_lost = 'resnapshot' to copy the table \
             again",
            names.slot
        )));
    }
    match (watermark, &slot) {
        (Some(from), Some(state)) if !state.lost && ahead.is_none() => {
            let at = (schema_name.clone(), table);
            let mut stream = changes(source, conn, relation, at, key.clone(), names, from).await?;
            stream.primary_key = key;
            return Ok(stream);
        }
        (Some(from), _) if !resnapshot => {
            return Err(Error::user(format!(
                "replication slot `{}` {} (dropped, or invalidated because it kept more WAL than \
                 max_slot_wal_keep_size): the changes after {from} are gone from the server. Set \
                 options.on_slot_lost = 'resnapshot' to copy the table again, which replaces the destination's rows",
                names.slot,
                if slot.is_some() { "was invalidated" } else { "no longer exists" }
            )));
        }
        (Some(from), _) => warnings.push(format!(
            "replication slot `{}` was lost or ahead of the destination after {from}; took a new snapshot \
             (options.on_slot_lost = 'resnapshot')",
            names.slot
        )),
        (None, _) => {}
    }
    if let Some(state) = slot {
        // A slot without a committed watermark is a first run that died before its commit.
        if state.active {
            return Err(Error::transient(format!(
                "replication slot `{}` is in use by another connection (server process {})",
                names.slot,
                state.pid.unwrap_or_default()
            )));
        }
        info!(slot = %names.slot, "dropping the slot to start over with a snapshot");
        sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(&names.slot)
            .execute(&mut conn)
            .await
            .map_err(|e| db_error(e, &format!("dropping replication slot `{}`", names.slot)))?;
    }
    let mut stream = snapshot(source, conn, relation, &key, names).await?;
    stream.warnings.extend(warnings);
    stream.primary_key = key;
    Ok(stream)
}

/// The server can capture this table: logical WAL, a user allowed to
/// replicate, and a replica identity that names the changed rows.
pub(crate) async fn preflight(conn: &mut PgConnection, relation: &Relation, source: &PostgresSource) -> Result<()> {
    let (wal_level, can_replicate, identity): (String, bool, String) = sqlx::query_as(
        "SELECT current_setting('wal_level'),
                (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
                (SELECT relreplident::text FROM pg_class WHERE oid = $1::regclass)",
    )
    .bind(&relation.from)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| db_error(e, "checking that the server can capture changes"))?;
    if wal_level != "logical" {
        return Err(Error::user(format!(
            "the source server has wal_level = {wal_level}; change data capture needs logical decoding: \
             ALTER SYSTEM SET wal_level = logical, then restart the server"
        )));
    }
    if !can_replicate {
        let user = source.connection().url().username().to_owned();
        return Err(Error::user(format!(
            "the source connection's user `{user}` lacks the REPLICATION attribute that reading a replication \
             slot needs: ALTER ROLE \"{user}\" REPLICATION (as a superuser)"
        )));
    }
    let no_identity = match identity.as_str() {
        "n" => true,
        "d" => relation.primary_key.is_empty(),
        _ => false,
    };
    if no_identity {
        return Err(Error::user(format!(
            "table {} has no primary key, so its updates and deletes do not say which row they change; add one, \
             or log whole rows: ALTER TABLE {} REPLICA IDENTITY FULL",
            relation.display, relation.from
        )));
    }
    // A partitioned table logs its changes under each partition's name, an
    // inheritance parent under its children's: neither is this table's stream.
    let key = key_of(relation, source);
    let (kind, children, identity_columns, nullable): (String, bool, Vec<String>, Vec<String>) = sqlx::query_as(
        "SELECT c.relkind::text, c.relhassubclass,
                coalesce((SELECT array_agg(a.attname::text) FROM pg_index i
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                          WHERE i.indrelid = c.oid AND (i.indisreplident OR (c.relreplident = 'd' AND i.indisprimary))),
                         '{}'),
                coalesce((SELECT array_agg(attname::text) FROM pg_attribute
                          WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped AND NOT attnotnull
                            AND attname = ANY ($2)), '{}')
         FROM pg_class c WHERE c.oid = $1::regclass",
    )
    .bind(&relation.from)
    .bind(&key)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| db_error(e, "reading the table's replica identity"))?;
    if kind == "p" || children {
        return Err(Error::user(format!(
            "table {} is {}; capture its partitions or children as pipelines of their own",
            relation.display,
            if kind == "p" {
                "partitioned, and its changes are logged under its partitions' names"
            } else {
                "a parent of inherited tables, whose changes are logged under their own names"
            }
        )));
    }
    // The mirror applies deletes and key changes by its key: the log must carry it.
    if identity != "f"
        && let Some(missing) = key.iter().find(|k| !identity_columns.contains(k))
    {
        return Err(Error::user(format!(
            "primary_key column `{missing}` is not in the replica identity of {} ({}), so a delete would not say \
             which mirrored row it removes; use the table's key, or log whole rows: ALTER TABLE {} REPLICA IDENTITY FULL",
            relation.display,
            identity_columns.join(", "),
            relation.from
        )));
    }
    if let Some(column) = nullable.first() {
        return Err(Error::user(format!(
            "primary_key column `{column}` of {} may be NULL, and a NULL never matches a mirrored row; key the \
             mirror by NOT NULL columns",
            relation.display
        )));
    }
    Ok(())
}

/// The columns the mirror is keyed by: the controller row's, else the table's primary key.
fn key_of(relation: &Relation, source: &PostgresSource) -> Vec<String> {
    match source.config().primary_key.is_empty() {
        false => source.config().primary_key.clone(),
        true => relation.primary_key.clone(),
    }
}

/// Create the publication, or add the table to it.
async fn ensure_publication(conn: &mut PgConnection, publication: &str, relation: &Relation) -> Result<()> {
    let (exists, has_table): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1),
                EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
                        WHERE p.pubname = $1 AND r.prrelid = $2::regclass)
                OR EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1 AND puballtables)",
    )
    .bind(publication)
    .bind(&relation.from)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| db_error(e, "reading the publication"))?;
    let sql = match (exists, has_table) {
        (_, true) => return check_publication(conn, publication, relation).await,
        (false, _) => format!("CREATE PUBLICATION {} FOR TABLE {}", quote_ident(publication), relation.from),
        (true, false) => format!("ALTER PUBLICATION {} ADD TABLE {}", quote_ident(publication), relation.from),
    };
    info!(publication, table = %relation.display, "publishing the table's changes");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await.map_err(|e| {
        db_error(
            e,
            &format!("publishing {} in publication `{publication}` (the user must own the table)", relation.display),
        )
    })?;
    Ok(())
}

/// A publication that leaves out operations, rows or columns would narrow the
/// stream without a word: refuse it, naming what it leaves out.
async fn check_publication(conn: &mut PgConnection, publication: &str, relation: &Relation) -> Result<()> {
    let narrowed: Option<String> = sqlx::query_scalar(
        "SELECT concat_ws(', ',
                  CASE WHEN NOT p.pubinsert THEN 'inserts' END, CASE WHEN NOT p.pubupdate THEN 'updates' END,
                  CASE WHEN NOT p.pubdelete THEN 'deletes' END, CASE WHEN NOT p.pubtruncate THEN 'truncates' END,
                  CASE WHEN (to_jsonb(r) ->> 'prqual') IS NOT NULL THEN 'rows (a WHERE filter)' END,
                  CASE WHEN (to_jsonb(r) ->> 'prattrs') IS NOT NULL THEN 'columns (a column list)' END)
         FROM pg_publication p LEFT JOIN pg_publication_rel r ON r.prpubid = p.oid AND r.prrelid = $2::regclass
         WHERE p.pubname = $1",
    )
    .bind(publication)
    .bind(&relation.from)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| db_error(e, "reading the publication"))?;
    match narrowed.filter(|n| !n.is_empty()) {
        Some(what) => Err(Error::user(format!(
            "publication `{publication}` leaves out {what} of {}: the mirror would silently differ from the table; \
             name a publication that publishes everything in options.publication",
            relation.display
        ))),
        None => Ok(()),
    }
}

struct SlotState {
    active: bool,
    pid: Option<i32>,
    lost: bool,
    /// What the slot was told the destination holds.
    confirmed: Option<Lsn>,
}

async fn slot_state(conn: &mut PgConnection, slot: &str) -> Result<Option<SlotState>> {
    type Row = (bool, Option<i32>, Option<String>, Option<String>, Option<String>, bool, Option<String>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT active, active_pid, to_jsonb(s) ->> 'wal_status', plugin::text, database::text,
                database = current_database(), confirmed_flush_lsn::text
         FROM pg_replication_slots s WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| db_error(e, &format!("reading replication slot `{slot}`")))?;
    let Some((active, pid, wal_status, plugin, database, here, confirmed)) = row else { return Ok(None) };
    if !here || plugin.as_deref() != Some("pgoutput") {
        return Err(Error::user(format!(
            "replication slot `{slot}` exists for {} with plugin {}; a cdc pipeline needs its own pgoutput slot in \
             this database: name another in options.slot",
            database.map(|d| format!("database {d}")).unwrap_or_else(|| "physical replication".to_owned()),
            plugin.unwrap_or_else(|| "none".to_owned())
        )));
    }
    let confirmed = confirmed.as_deref().and_then(Lsn::parse);
    Ok(Some(SlotState { active, pid, lost: wal_status.as_deref() == Some("lost"), confirmed }))
}

/// The first run: a new slot, and the table as of its consistent point.
async fn snapshot(
    source: &PostgresSource,
    conn: PgConnection,
    relation: Relation,
    key: &[String],
    names: &CdcNames,
) -> Result<SourceStream> {
    let mut repl = ReplicationConn::connect(source.connection()).await?;
    let created = repl
        .query(&format!("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT", quote_ident(&names.slot)))
        .await
        .map_err(|e| e.context(format!("creating replication slot `{}`", names.slot)))?;
    let row = created.first().ok_or_else(|| Error::internal("CREATE_REPLICATION_SLOT returned no row"))?;
    let consistent = row.get(1).cloned().flatten().and_then(|t| Lsn::parse(&t));
    let exported = row.get(2).cloned().flatten();
    let (Some(consistent), Some(exported)) = (consistent, exported) else {
        return Err(Error::internal("CREATE_REPLICATION_SLOT returned no consistent point or snapshot"));
    };
    info!(slot = %names.slot, %consistent, "created the replication slot; reading the snapshot at its consistent point");
    // The exported snapshot lives until the slot's connection does something
    // else: every range adopts it before this returns.
    let (chunks, warnings) = source.read_ranges(conn, &relation, Vec::new(), Vec::new(), key, Some(&exported)).await?;
    drop(repl);

    let schema = schema(&relation.columns);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    let meta = Meta { lsn: consistent.0 as i64, commit_lsn: consistent.0 as i64, commit_time: Some(now) };
    let position = Position { watermark: Some(consistent.to_string()), ..Default::default() };
    let mut marker = ChangeBatcher::new(&relation.columns);
    marker.push_truncate(meta)?;
    let first = SourceBatch { batch: marker.finish()?, position: position.clone() };
    let mut bytes_read = 0u64;
    let rows = chunks.map(move |chunk: Result<Chunk>| {
        let chunk = chunk?;
        bytes_read += chunk.bytes;
        let batch = with_meta(&chunk.batch, op::READ, meta)?;
        Ok(SourceBatch { batch, position: Position { bytes_read, ..position.clone() } })
    });
    let batches = futures::stream::iter([Ok(first)]).chain(rows).boxed();
    Ok(SourceStream { schema, batches, warnings, primary_key: Vec::new() })
}

/// A snapshot batch with the change columns: every row the same operation and position.
fn with_meta(batch: &RecordBatch, operation: &str, meta: Meta) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec![operation; n])) as ArrayRef);
    columns.push(Arc::new(Int64Array::from(vec![meta.lsn; n])));
    columns.push(Arc::new(Int64Array::from(vec![meta.commit_lsn; n])));
    columns.push(Arc::new(TimestampMicrosecondArray::from(vec![meta.commit_time; n]).with_timezone("UTC")));
    columns.push(Arc::new(ListArray::new_null(Arc::new(Field::new("item", DataType::Utf8, true)), n)));
    let fields: Vec<_> =
        batch.schema().fields().iter().map(|f| f.as_ref().clone()).chain(weir_core::changes::fields()).collect();
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)
        .map_err(|e| Error::internal(format!("adding the change columns to a snapshot batch: {e}")))
}

/// What the change reader needs to know of the table.
struct Table {
    schema: String,
    name: String,
    display: String,
    /// As the catalog describes them at the start of the read: values are read as these types.
    columns: Vec<crate::types::Column>,
    /// The key columns' indexes: an update that changes them deletes the old row.
    key: Vec<usize>,
    /// Where to ask the catalog about a column the read does not know.
    connection: weir_core::ConnectionUrl,
    regclass: String,
}

/// A later run: the changes committed between the watermark and the server's
/// WAL position now.
async fn changes(
    source: &PostgresSource,
    mut conn: PgConnection,
    relation: Relation,
    (schema_name, table_name): (String, String),
    key: Vec<String>,
    names: &CdcNames,
    from: Lsn,
) -> Result<SourceStream> {
    let until: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| db_error(e, "reading the server's WAL position"))?;
    let until = Lsn::parse(&until).ok_or_else(|| Error::internal("pg_current_wal_lsn() is not an LSN"))?;
    drop(conn);
    let table = Table {
        schema: schema_name,
        name: table_name,
        display: relation.display.clone(),
        key: key.iter().filter_map(|k| relation.columns.iter().position(|c| &c.name == k)).collect(),
        connection: source.connection().clone(),
        regclass: relation.from.clone(),
        columns: relation.columns,
    };
    let schema = schema(&table.columns);
    if until <= from {
        let position = Position { watermark: Some(from.to_string()), ..Default::default() };
        let batch = RecordBatch::new_empty(schema.clone());
        let batches = futures::stream::iter([Ok(SourceBatch { batch, position })]).boxed();
        return Ok(SourceStream::new(schema, batches));
    }

    let parked = source.holder().0.lock().await.take().filter(|p| p.slot == names.slot && p.at == from);
    let resumed = parked.is_some();
    let mut stream = match parked {
        Some(parked) => parked,
        None => {
            let mut repl = ReplicationConn::connect(source.connection()).await?;
            repl.start(&names.slot, from, &names.publication).await?;
            // What an earlier run committed and may not have confirmed.
            repl.status(from, from).await?;
            Parked { repl, slot: names.slot.clone(), at: from, pending: None, relations: HashMap::new() }
        }
    };
    debug!(slot = %names.slot, %from, %until, resumed, "streaming changes");
    let (tx, rx) = mpsc::channel(2);
    let limits = Limits {
        batch_size: source.config().options.batch_size.unwrap_or(50_000).max(1),
        commit_rows: source.config().options.commit_rows.unwrap_or(u64::MAX).max(1),
    };
    let holder = source.holder_handle();
    tokio::spawn(async move {
        match read_changes(&mut stream, &table, from, until, limits, &tx).await {
            Ok(Some(last)) => {
                // Parked before the read's end is sent: its confirmation finds it.
                let end = last.position.watermark.as_deref().and_then(Lsn::parse).unwrap_or(until);
                stream.at = end;
                *holder.0.lock().await = Some(stream);
                let _ = tx.send(Ok(last)).await;
            }
            Ok(None) => {}
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
    });
    // Every batch but the last carries the start: a read that ends without its
    // last batch (its task died) must not look like a complete one.
    let start = from.to_string();
    let batches = futures::stream::unfold((rx, false), move |(mut rx, ended)| {
        let start = start.clone();
        async move {
            match rx.recv().await {
                Some(item) => {
                    let last = match &item {
                        Ok(b) => b.position.watermark.as_deref() != Some(start.as_str()),
                        Err(_) => true,
                    };
                    Some((item, (rx, ended || last)))
                }
                None if ended => None,
                None => {
                    Some((Err(Error::internal("the change reader stopped before the end of its read")), (rx, true)))
                }
            }
        }
    })
    .boxed();
    Ok(SourceStream::new(schema, batches))
}

/// How much one read takes.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Rows per batch.
    batch_size: usize,
    /// Stop at the first commit past this many changes.
    commit_rows: u64,
}

/// Stream from `from` until the server has sent every transaction that
/// committed before `until` (or `commit_rows` changes, to a commit), sending
/// batches of changes to `tx`. Returns the last batch (with the read's end as
/// its position) for the caller to send once the stream is parked; `None` when
/// the stream cannot go on from there (it stopped inside a transaction) and
/// its last batch was sent.
async fn read_changes(
    stream: &mut Parked,
    table: &Table,
    from: Lsn,
    mut until: Lsn,
    limits: Limits,
    tx: &mpsc::Sender<Result<SourceBatch>>,
) -> Result<Option<SourceBatch>> {
    let batch_size = limits.batch_size;
    struct Tx {
        commit_lsn: i64,
        commit_time: i64,
        skip: bool,
        /// Changes of this read before this transaction.
        rows_before: u64,
    }
    let mut batcher = ChangeBatcher::new(&table.columns);
    // Relation id → where each of our columns sits in its tuples; `None`: another table.
    let mut relations: HashMap<u32, Option<Vec<Option<usize>>>> = HashMap::new();
    for (id, rel) in &stream.relations {
        relations.insert(*id, map_relation(table, rel).await?);
    }
    let mut current: Option<Tx> = None;
    let mut changes_sent = 0u64;
    let mut resumable = true;
    let mut position = Position { watermark: Some(from.to_string()), ..Default::default() };
    loop {
        let message = match stream.pending.take() {
            Some(m) => m,
            None => stream.repl.next().await?.ok_or_else(|| Error::transient("the server ended the change stream"))?,
        };
        let (start, body) = match message {
            Streamed::Keepalive { end, reply } => {
                if current.is_none() && end >= until {
                    break;
                }
                if reply {
                    stream.repl.status(from, from).await?;
                }
                continue;
            }
            Streamed::Data { start, end, body } => {
                // A transaction past the end starts the next read.
                if body.first() == Some(&b'B')
                    && let Ok(Message::Begin { final_lsn, .. }) = pgoutput::decode(body.clone())
                    && final_lsn >= until
                {
                    stream.pending = Some(Streamed::Data { start, end, body });
                    break;
                }
                (start, body)
            }
        };
        position.bytes_read += body.len() as u64;
        let message = pgoutput::decode(body)?;
        let meta = |tx: &Tx| Meta { lsn: start.0 as i64, commit_lsn: tx.commit_lsn, commit_time: Some(tx.commit_time) };
        match message {
            Message::Begin { final_lsn, commit_time, .. } => {
                current = Some(Tx {
                    commit_lsn: final_lsn.0 as i64,
                    commit_time: commit_time + EPOCH_MICROS,
                    skip: final_lsn < from,
                    rows_before: changes_sent + batcher.rows() as u64,
                });
            }
            Message::Commit { end_lsn, .. } => {
                current = None;
                // Enough for one commit: the next starts after this transaction.
                if changes_sent + batcher.rows() as u64 >= limits.commit_rows {
                    until = end_lsn;
                    break;
                }
            }
            Message::Relation(rel) => {
                relations.insert(rel.id, map_relation(table, &rel).await?);
                stream.relations.insert(rel.id, rel);
            }
            Message::Insert { relation, new } => {
                if let (Some(tx), Some(Some(map))) = (&current, relations.get(&relation))
                    && !tx.skip
                {
                    batcher.push(op::INSERT, &values(map, &new), meta(tx))?;
                }
            }
            Message::Update { relation, old, new } => {
                if let (Some(tx), Some(Some(map))) = (&current, relations.get(&relation))
                    && !tx.skip
                {
                    let mut new_values = values(map, &new);
                    if let Some(old) = &old {
                        let old_values = values(map, old);
                        // With REPLICA IDENTITY FULL the old row is whole: it
                        // has the values an update did not send.
                        let full = stream.relations.get(&relation).is_some_and(|r| r.identity == b'f');
                        if full {
                            for (new, old) in new_values.iter_mut().zip(&old_values) {
                                if matches!(new, Some(Value::Unchanged)) && !matches!(old, Some(Value::Unchanged)) {
                                    *new = *old;
                                }
                            }
                        }
                        // A changed key: the row under the old key is gone.
                        if table.key.iter().any(|&k| old_values[k] != new_values[k]) {
                            batcher.push(op::DELETE, &old_values, meta(tx))?;
                        }
                    }
                    batcher.push(op::UPDATE, &new_values, meta(tx))?;
                }
            }
            Message::Delete { relation, old } => {
                if let (Some(tx), Some(Some(map))) = (&current, relations.get(&relation))
                    && !tx.skip
                {
                    batcher.push(op::DELETE, &values(map, &old), meta(tx))?;
                }
            }
            Message::Truncate { relations: truncated } => {
                if let Some(tx) = &current
                    && !tx.skip
                    && truncated.iter().any(|id| matches!(relations.get(id), Some(Some(_))))
                {
                    // A truncate starts a read of its own, so that a sink can
                    // plan for it (Delta's MERGE): end this one before its
                    // transaction, unless that transaction changed the table first.
                    let rows = changes_sent + batcher.rows() as u64;
                    if rows > 0 && rows == tx.rows_before {
                        // Its Begin is read: the next read starts over from it.
                        until = Lsn(tx.commit_lsn as u64);
                        resumable = false;
                        break;
                    }
                    batcher.push_truncate(meta(tx))?;
                }
            }
            Message::Other => {}
        }
        if batcher.rows() >= batch_size || batcher.bytes() >= BATCH_BYTES {
            changes_sent += batcher.rows() as u64;
            let batch = batcher.finish()?;
            if tx.send(Ok(SourceBatch { batch, position: position.clone() })).await.is_err() {
                return Ok(None); // the load stopped: the stream is mid-read and not parked
            }
        }
    }
    // Everything that committed before `until` is in: that is the new watermark.
    position.watermark = Some(until.to_string());
    let last = SourceBatch { batch: batcher.finish()?, position };
    if resumable {
        return Ok(Some(last));
    }
    let _ = tx.send(Ok(last)).await;
    Ok(None)
}

/// Where each of the table's columns sits in a relation's tuples. A retyped
/// column's values are read as its type today: one that type cannot read
/// fails naming the column, and so does a destination column that cannot take
/// the new type. Columns the read does not know come back by name.
fn columns_of(table: &Table, rel: &pgoutput::Relation) -> (Vec<Option<usize>>, Vec<String>) {
    let unknown =
        rel.columns.iter().filter(|r| !table.columns.iter().any(|c| c.name == r.name)).map(|r| r.name.clone());
    let map = table.columns.iter().map(|c| rel.columns.iter().position(|r| r.name == c.name)).collect();
    (map, unknown.collect())
}

/// A relation the server describes, as the read maps it: `None` for another
/// table. A column the read does not know was added since it began (the
/// catalog has it: the read stops, to be read again with it) or was dropped or
/// renamed since the change was logged (the catalog has it no more: ignored).
async fn map_relation(table: &Table, rel: &pgoutput::Relation) -> Result<Option<Vec<Option<usize>>>> {
    if rel.schema != table.schema || rel.name != table.name {
        return Ok(None);
    }
    let (map, unknown) = columns_of(table, rel);
    if !unknown.is_empty() {
        let mut conn = crate::source::connect(&table.connection).await?;
        let added: Option<String> = sqlx::query_scalar(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass AND attname = ANY ($2)
             AND NOT attisdropped LIMIT 1",
        )
        .bind(&table.regclass)
        .bind(&unknown)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| db_error(e, "reading the table's columns"))?;
        if let Some(column) = added {
            return Err(Error::transient(format!(
                "{} gained column `{column}` while the changes were read; the next attempt reads it",
                table.display
            )));
        }
    }
    Ok(Some(map))
}

fn values<'a>(map: &[Option<usize>], tuple: &'a [Value]) -> Vec<Option<&'a Value>> {
    map.iter().map(|i| i.and_then(|i| tuple.get(i))).collect()
}

/// The slot's state and the WAL it holds on the server.
pub async fn status(source: &PostgresSource, names: &CdcNames) -> Result<weir_core::CaptureStatus> {
    let mut conn = source.connect().await?;
    type Row = (bool, Option<String>, Option<i64>, Option<i64>, Option<String>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT active, to_jsonb(s) ->> 'wal_status',
                pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8,
                pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8,
                confirmed_flush_lsn::text
         FROM pg_replication_slots s WHERE slot_name = $1",
    )
    .bind(&names.slot)
    .fetch_optional(&mut conn)
    .await
    .map_err(|e| db_error(e, &format!("reading replication slot `{}`", names.slot)))?;
    let warn_bytes = source.config().options.slot_warn_mb.unwrap_or(1024).saturating_mul(1 << 20) as i64;
    let mut status = weir_core::CaptureStatus {
        slot: names.slot.clone(),
        missing: row.is_none(),
        active: false,
        lost: false,
        retained_bytes: 0,
        behind_bytes: 0,
        confirmed: None,
        warn_bytes,
    };
    if let Some((active, wal_status, retained, behind, confirmed)) = row {
        status.active = active;
        status.lost = wal_status.as_deref() == Some("lost");
        status.retained_bytes = retained.unwrap_or(0);
        status.behind_bytes = behind.unwrap_or(0);
        status.confirmed = confirmed;
    }
    Ok(status)
}

/// Drop the pipeline's slot (not the publication: it costs the server nothing).
pub async fn drop_slot(source: &PostgresSource, names: &CdcNames) -> Result<Option<String>> {
    let mut conn = source.connect().await?;
    let dropped: Option<bool> = sqlx::query_scalar(
        "SELECT pg_drop_replication_slot(slot_name) IS NULL FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(&names.slot)
    .fetch_optional(&mut conn)
    .await
    .map_err(|e| db_error(e, &format!("dropping replication slot `{}`", names.slot)))?;
    Ok(dropped.map(|_| names.slot.clone()))
}

/// Tell the slot that the destination holds everything before `watermark`:
/// on the parked stream if there is one (it stays parked for the next read),
/// else on a connection of its own.
pub async fn confirm(source: &PostgresSource, names: &CdcNames, watermark: &str) -> Result<()> {
    let lsn = Lsn::parse(watermark).ok_or_else(|| Error::internal(format!("`{watermark}` is not an LSN")))?;
    {
        let mut parked = source.holder().0.lock().await;
        if let Some(stream) = parked.as_mut().filter(|p| p.slot == names.slot) {
            match stream.repl.status(lsn, lsn).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    warn!(slot = %names.slot, error = %e, "the parked replication connection is gone; confirming on a new one");
                    *parked = None;
                }
            }
        }
    }
    let mut repl = ReplicationConn::connect(source.connection()).await?;
    repl.start(&names.slot, lsn, &names.publication).await?;
    repl.finish(lsn).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::lsn_text;

    #[test]
    fn slot_names_derive_from_the_pipeline() {
        let names = CdcNames::new("Orders-EU 2", None, None).unwrap();
        assert_eq!(names.slot, "weir_orders_eu_2");
        assert_eq!(names.publication, "weir_orders_eu_2");
        assert!(CdcNames::new("x", Some("Bad-Name"), None).unwrap_err().to_string().contains("options.slot"));
        assert_eq!(lsn_text(0x1_0000_00A0), "1/A0");
    }
}
