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
//!   the transactions that committed before it. A slot that exists already
//!   (other pipelines read it) stays: a temporary slot exports the snapshot.
//! - **Later runs**: read the server's WAL position at the start, stream the
//!   slot from the watermark, apply the transactions that committed in
//!   between, and stop there. The new watermark is that position. Pipelines
//!   that name one slot read it in one pass ([`read`]).
//! - **After the commit**, and only then, the position is confirmed to the
//!   slot (the lowest that every pipeline reading it has committed), so the
//!   server may recycle its WAL. A run killed between the two re-reads from
//!   the committed watermark: transactions before it are skipped by their
//!   commit position, so none is applied twice.

mod read;

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, ListArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field};
use futures::StreamExt;
use sqlx::PgConnection;
use tracing::info;
use weir_core::changes::op;
use weir_core::{Error, Position, ReadRequest, Result, SourceBatch, SourceStream, quote_ident};

pub(crate) use self::read::{Hold, Reader};
use self::read::{Request, Table};
use crate::changes::{ChangeBatcher, Meta, schema};
use crate::error::db_error;
use crate::read::Chunk;
use crate::relation::{Relation, describe_table};
use crate::replication::{Lsn, ReplicationConn};
use crate::source::{PostgresSource, Target};

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
    // without a word (the server starts at its confirmed position): the slot
    // was dropped and made again, or this pipeline's position was cleared
    // while others read the slot on.
    let ahead = match (watermark, &slot) {
        (Some(from), Some(SlotState { confirmed: Some(confirmed), .. })) if *confirmed > from => Some(*confirmed),
        _ => None,
    };
    if let (Some(confirmed), Some(from)) = (ahead, watermark)
        && !resnapshot
    {
        return Err(Error::user(format!(
            "replication slot `{}` was confirmed up to {confirmed}, past the destination's {from}: the changes in \
             between are gone from the server (the slot was made again, or this pipeline's position was cleared \
             while other pipelines read the slot on). Set options.on_slot_lost = 'resnapshot' to copy the table again",
            names.slot
        )));
    }
    match (watermark, &slot) {
        (Some(from), Some(state)) if !state.lost && ahead.is_none() => {
            let at = (schema_name.clone(), table);
            let mut stream = changes(source, conn, relation, at, &key, names, from, state, request).await?;
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
    // A snapshot reads nothing from the slot: its group's round need not wait for it.
    Reader::of(request.group.as_deref(), source.reader()).pass();
    let kind = match slot {
        None => SnapshotSlot::Create,
        Some(state) if state.lost => {
            info!(slot = %names.slot, "dropping the invalidated slot to start over with a snapshot");
            sqlx::query("SELECT pg_drop_replication_slot($1)")
                .bind(&names.slot)
                .execute(&mut conn)
                .await
                .map_err(|e| db_error(e, &format!("dropping replication slot `{}`", names.slot)))?;
            SnapshotSlot::Create
        }
        // Other pipelines may read it (or a first run died before its commit):
        // it stays, and a temporary slot gives the snapshot its exact point.
        Some(_) => SnapshotSlot::Temporary,
    };
    let mut stream = snapshot(source, conn, relation, &key, names, kind).await?;
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
    lost: bool,
    /// What the slot was told the destination holds.
    confirmed: Option<Lsn>,
}

async fn slot_state(conn: &mut PgConnection, slot: &str) -> Result<Option<SlotState>> {
    type Row = (Option<String>, Option<String>, Option<String>, bool, Option<String>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT to_jsonb(s) ->> 'wal_status', plugin::text, database::text,
                database = current_database(), confirmed_flush_lsn::text
         FROM pg_replication_slots s WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| db_error(e, &format!("reading replication slot `{slot}`")))?;
    let Some((wal_status, plugin, database, here, confirmed)) = row else { return Ok(None) };
    if !here || plugin.as_deref() != Some("pgoutput") {
        return Err(Error::user(format!(
            "replication slot `{slot}` exists for {} with plugin {}; a cdc pipeline needs a pgoutput slot in this \
             database: name another in options.slot",
            database.map(|d| format!("database {d}")).unwrap_or_else(|| "physical replication".to_owned()),
            plugin.unwrap_or_else(|| "none".to_owned())
        )));
    }
    let confirmed = confirmed.as_deref().and_then(Lsn::parse);
    Ok(Some(SlotState { lost: wal_status.as_deref() == Some("lost"), confirmed }))
}

/// Which slot exports a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotSlot {
    /// The pipeline's own, new: its consistent point is where the stream starts.
    Create,
    /// A temporary one, gone with its connection: the pipeline's slot exists
    /// and is behind its consistent point, so it streams from there too.
    Temporary,
}

/// The first run: the table as of a new slot's consistent point.
async fn snapshot(
    source: &PostgresSource,
    mut conn: PgConnection,
    relation: Relation,
    key: &[String],
    names: &CdcNames,
    mut kind: SnapshotSlot,
) -> Result<SourceStream> {
    let mut repl = ReplicationConn::connect(source.connection()).await?;
    // From before the slot exists until this pipeline commits, peers must not
    // confirm past this snapshot's point (see `Hold`).
    let hold = Reader::of(None, source.reader()).hold();
    let created = loop {
        let (name, temporary) = match kind {
            SnapshotSlot::Create => (names.slot.clone(), ""),
            SnapshotSlot::Temporary => {
                // A slot another pipeline is still creating has no position
                // yet, and its consistent point may come after this snapshot's:
                // the changes in between would be in neither.
                let ready: Option<Option<String>> = sqlx::query_scalar(
                    "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                )
                .bind(&names.slot)
                .fetch_optional(&mut conn)
                .await
                .map_err(|e| db_error(e, &format!("reading replication slot `{}`", names.slot)))?;
                if ready.flatten().is_none() {
                    return Err(Error::transient(format!(
                        "replication slot `{}` is being created by another pipeline; the snapshot is taken once it is",
                        names.slot
                    )));
                }
                (temporary_slot(), "TEMPORARY ")
            }
        };
        let sql = format!("CREATE_REPLICATION_SLOT {} {temporary}LOGICAL pgoutput EXPORT_SNAPSHOT", quote_ident(&name));
        match repl.query(&sql).await {
            Ok(rows) => break rows,
            // Another pipeline of the slot created it a moment ago.
            Err(e) if kind == SnapshotSlot::Create && e.message().contains("SQLSTATE 42710") => {
                kind = SnapshotSlot::Temporary;
            }
            Err(e) => return Err(e.context(format!("creating replication slot `{name}`"))),
        }
    };
    let row = created.first().ok_or_else(|| Error::internal("CREATE_REPLICATION_SLOT returned no row"))?;
    let consistent = row.get(1).cloned().flatten().and_then(|t| Lsn::parse(&t));
    let exported = row.get(2).cloned().flatten();
    let (Some(consistent), Some(exported)) = (consistent, exported) else {
        return Err(Error::internal("CREATE_REPLICATION_SLOT returned no consistent point or snapshot"));
    };
    hold.at(consistent);
    source.keep_hold(hold);
    match kind {
        SnapshotSlot::Create => {
            info!(slot = %names.slot, %consistent, "created the replication slot; reading the snapshot at its consistent point")
        }
        SnapshotSlot::Temporary => {
            info!(slot = %names.slot, %consistent, "the slot exists; reading a snapshot at a temporary slot's consistent point")
        }
    }
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

/// A name no other slot has, for a temporary one (at most 63 bytes).
fn temporary_slot() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("weir_snapshot_{:x}_{:x}", std::process::id(), nanos as u64)
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

/// A later run: the changes committed between the watermark and the server's
/// WAL position now, read in a round of the slot's reader (with the other
/// pipelines of its read group).
#[allow(clippy::too_many_arguments)]
async fn changes(
    source: &PostgresSource,
    mut conn: PgConnection,
    relation: Relation,
    (schema_name, table_name): (String, String),
    key: &[String],
    names: &CdcNames,
    from: Lsn,
    slot: &SlotState,
    request: &ReadRequest,
) -> Result<SourceStream> {
    let until: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| db_error(e, "reading the server's WAL position"))?;
    let until = Lsn::parse(&until).ok_or_else(|| Error::internal("pg_current_wal_lsn() is not an LSN"))?;
    drop(conn);
    let reader = Reader::of(request.group.as_deref(), source.reader());
    if until <= from {
        reader.pass();
        let schema = schema(&relation.columns);
        let position = Position { watermark: Some(from.to_string()), ..Default::default() };
        let batch = RecordBatch::new_empty(schema.clone());
        let batches = futures::stream::iter([Ok(SourceBatch { batch, position })]).boxed();
        return Ok(SourceStream::new(schema, batches));
    }
    let table = Table {
        schema: schema_name,
        name: table_name,
        display: relation.display.clone(),
        key: key.iter().filter_map(|k| relation.columns.iter().position(|c| &c.name == k)).collect(),
        connection: source.connection().clone(),
        regclass: relation.from.clone(),
        columns: relation.columns,
    };
    let options = &source.config().options;
    let read = Request {
        table,
        from,
        until,
        publication: names.publication.clone(),
        batch_size: options.batch_size.unwrap_or(50_000).max(1),
        commit_rows: options.commit_rows.unwrap_or(u64::MAX).max(1),
        confirmed: slot.confirmed,
    };
    Ok(reader.read(&names.slot, source.connection(), request.group.clone(), read))
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

/// Tell the slot that the destination holds everything before `watermark`,
/// and the other pipelines reading the slot everything before `peers`: it may
/// recycle the WAL before the lowest of them.
pub async fn confirm(source: &PostgresSource, names: &CdcNames, watermark: &str, peers: &[String]) -> Result<()> {
    let lsn = Lsn::parse(watermark).ok_or_else(|| Error::internal(format!("`{watermark}` is not an LSN")))?;
    let lsn = peers.iter().filter_map(|p| Lsn::parse(p)).fold(lsn, Lsn::min);
    // This pipeline's snapshot is committed now: only the others' hold the slot.
    drop(source.take_hold());
    let reader = Reader::of(None, source.reader());
    let lsn = reader.held().map_or(lsn, |held| held.min(lsn));
    if lsn == Lsn(0) {
        return Ok(()); // a peer's snapshot has not found its position yet
    }
    reader.confirm(&names.slot, source.connection(), &names.publication, lsn).await
}

/// The pipelines that name one slot on one server read it together.
pub fn read_group(source: &PostgresSource, names: &CdcNames) -> String {
    let url = source.connection().url();
    format!(
        "postgres://{}:{}{} slot {}",
        url.host_str().unwrap_or("localhost"),
        url.port().unwrap_or(5432),
        url.path(),
        names.slot
    )
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
