//! The connector contract: a [`Source`] yields Arrow batches with positions, a
//! [`Sink`] loads them and commits once, atomically, with the final position.
//!
//! Modelled on DataFusion's `RecordBatchStream` (one schema per stream) and
//! Arroyo's connector split (typed config from the controller row, then a
//! runtime object). Each connector crate exports a [`SourceRegistration`] or
//! [`SinkRegistration`]; the engine keeps the map from type name to factory.
//!
//! A [`Transform`] is the other kind of pipeline: no batches flow through Weir;
//! it runs work inside the destination (dbt building models from the tables
//! earlier pipelines loaded) and reports what it did.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::stream::BoxStream;
use serde_json::{Map, Value};

use crate::{ConnectionUrl, Ident, LoadType, PipelineDef, Result, RunDate};

/// Where a source stood after a batch; the sink commits the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// The highest value of the watermark column seen so far (and never below
    /// the stored watermark), rendered as text.
    pub watermark: Option<String>,
    /// Bytes read from the source so far.
    pub bytes_read: u64,
    /// Counts of values the source had to treat specially so far, by kind
    /// (`zero_dates`: MySQL zero dates read as NULL). They go to `audit.details`.
    pub counts: BTreeMap<&'static str, u64>,
}

/// One Arrow batch and the position reached after it.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    pub batch: arrow::array::RecordBatch,
    pub position: Position,
}

pub type BatchStream = BoxStream<'static, Result<SourceBatch>>;

/// An open source: one schema, then batches that all have it.
pub struct SourceStream {
    pub schema: SchemaRef,
    pub batches: BatchStream,
    /// Things the user should fix that did not stop the read (a watermark
    /// column without an index). Logged and kept in `audit.details`.
    pub warnings: Vec<String>,
    /// The columns that identify a row, where the source knows them (a table's
    /// primary key): a change stream is applied by them when the controller
    /// row names none.
    pub primary_key: Vec<String>,
}

impl SourceStream {
    pub fn new(schema: SchemaRef, batches: BatchStream) -> Self {
        Self { schema, batches, warnings: Vec::new(), primary_key: Vec::new() }
    }
}

/// Read only rows whose watermark column is past `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkFilter {
    pub value: String,
    /// `>=` instead of `>`: safe (and needed for ties) when rows are merged by key.
    pub inclusive: bool,
}

/// What a run asks of a source.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub run_date: RunDate,
    /// The column whose maximum becomes the new watermark.
    pub watermark_column: Option<Ident>,
    /// Rows at or before the stored watermark are not read.
    pub filter: Option<WatermarkFilter>,
    /// The stored watermark: positions never report less than this.
    pub watermark_before: Option<String>,
    /// The pipelines this one reads its source with (see [`ReadGroup`]), if
    /// its source names a group ([`Source::read_group`]).
    pub group: Option<Arc<ReadGroup>>,
    /// The sink finishes a killed load by counting rows
    /// ([`SinkRegistration::resumes_by_count`]): read again from the same
    /// watermark, the source must yield the same rows first, in the same order,
    /// or say it cannot.
    pub same_order: bool,
}

/// Pipelines whose sources read one stream together: `cdc` pipelines naming
/// one replication slot, which the server then decodes once for all of them.
/// The engine makes one per group for a run (or a `runner stream` session) and
/// counts the members taking part; the source keeps its shared reader in it,
/// and serves the members that read at about the same time with one pass.
pub struct ReadGroup {
    key: String,
    members: AtomicUsize,
    state: OnceLock<Arc<dyn Any + Send + Sync>>,
}

impl ReadGroup {
    pub fn new(key: impl Into<String>) -> Self {
        Self { key: key.into(), members: AtomicUsize::new(0), state: OnceLock::new() }
    }

    /// What [`Source::read_group`] returned for the members.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The members taking part now: a pass that gathers readers waits for this many.
    pub fn members(&self) -> usize {
        self.members.load(Ordering::SeqCst)
    }

    /// A member starts taking part (the engine started its pipeline).
    pub fn enter(&self) {
        self.members.fetch_add(1, Ordering::SeqCst);
    }

    /// A member is done: no pass waits for it any more.
    pub fn leave(&self) {
        let _ = self.members.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_sub(1)));
    }

    /// A member sits out until the guard drops (a retry's backoff): the
    /// group's reads need not wait for it meanwhile.
    pub fn step_out(self: &Arc<Self>) -> SteppedOut {
        self.leave();
        SteppedOut(self.clone())
    }

    /// The source's state for the group, made on first use; `None` if another
    /// type of state took the place (two source types claiming one key).
    pub fn state<T: Default + Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.state.get_or_init(|| Arc::new(T::default())).clone().downcast::<T>().ok()
    }
}

/// See [`ReadGroup::step_out`].
pub struct SteppedOut(Arc<ReadGroup>);

impl Drop for SteppedOut {
    fn drop(&mut self) {
        self.0.enter();
    }
}

impl std::fmt::Debug for ReadGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGroup").field("key", &self.key).field("members", &self.members()).finish_non_exhaustive()
    }
}

/// What a run asks of a sink.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    pub pipeline: String,
    pub run_id: uuid::Uuid,
    pub run_date: RunDate,
    pub load_type: LoadType,
    pub primary_key: Vec<Ident>,
    pub watermark_column: Option<Ident>,
    /// Replace the rows an earlier run loaded for this date (a date-sliced incremental load).
    pub replace_date: Option<RunDate>,
    /// The watermark to commit if the stream yields no batch.
    pub watermark_before: Option<String>,
    /// This pipeline run's place in a sequence the metadata store hands out:
    /// the same for every attempt of one run, higher for every later run. A
    /// sink that records it with its commit (Delta's application transaction)
    /// can tell a retry of a commit that already landed from a new one.
    pub load_seq: i64,
    /// A `cdc` load: append every change with its metadata columns (the
    /// changelog) instead of applying the changes to a mirror of the source.
    pub history: bool,
}

/// How a load's rows reach a table, for the sinks that keep tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// `full`: the table's rows are replaced.
    Replace,
    /// Rows are appended (`incremental` without `primary_key`; a `cdc` history).
    Append,
    /// A date-sliced load: the rows of its run date are replaced.
    ReplaceDate,
    /// Rows are merged by `primary_key`, the latest winning.
    Upsert,
    /// A change stream applied by key to a mirror of the source.
    Mirror,
}

impl LoadRequest {
    /// How this load writes; a `cdc` mirror without a key is refused, saying what to set.
    pub fn write_mode(&self) -> Result<WriteMode> {
        Ok(match (self.load_type, self.primary_key.is_empty(), self.replace_date.is_some()) {
            (LoadType::Cdc, _, _) if self.history => WriteMode::Append,
            (LoadType::Cdc, true, _) => {
                return Err(crate::Error::user(
                    "a change stream is applied to the mirror row by row, by key, and the source table has no \
                     primary key: set primary_key to the columns that identify a row, or options.history = true \
                     to append every change instead",
                ));
            }
            (LoadType::Cdc, false, _) => WriteMode::Mirror,
            (LoadType::Full, _, _) => WriteMode::Replace,
            (LoadType::Incremental, false, _) => WriteMode::Upsert,
            (LoadType::Incremental, true, true) => WriteMode::ReplaceDate,
            (LoadType::Incremental, true, false) => WriteMode::Append,
        })
    }
}

/// What a sink committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOutcome {
    pub rows_written: u64,
    /// The watermark committed with the data.
    pub watermark: Option<String>,
    /// Rows read from the stream (after source-side filtering).
    pub rows_read: u64,
    pub bytes_read: u64,
    /// The lake table the load committed, for the catalog (sinks that keep one).
    pub table: Option<TableEntry>,
    /// Values the sink had to store differently, by kind (`truncated_nanoseconds`;
    /// see [`crate::narrow::counts`]). They go to `audit.details` with the source's counts.
    pub counts: BTreeMap<&'static str, u64>,
}

impl LoadOutcome {
    /// Account for a batch as it is read: rows and bytes so far, and the
    /// position it reached (a batch without one keeps the last).
    pub fn record(&mut self, item: &SourceBatch) {
        self.rows_read += item.batch.num_rows() as u64;
        self.bytes_read = item.position.bytes_read;
        if item.position.watermark.is_some() {
            self.watermark.clone_from(&item.position.watermark);
        }
    }
}

/// A lake table as the catalog records it: what a query engine needs to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    pub schema_name: String,
    pub table_name: String,
    /// `delta`.
    pub format: &'static str,
    /// The table's URI, without credentials.
    pub location: String,
    /// The connection name whose credentials reach it; `None` for the default lake.
    pub connection: Option<String>,
    pub version: i64,
    /// The columns, as `[{"name", "type", "nullable"}]`.
    pub columns: serde_json::Value,
    pub partition_by: Vec<String>,
}

/// Where a sink writes when the controller row names no destination connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultConnection {
    /// Nothing: the row must name one.
    None,
    /// The metadata database (a `postgres` destination).
    MetadataDb,
    /// The default lake: `WEIR_LAKE_URI`, else a `lake/` folder in the working directory.
    Lake,
}

/// What a source factory gets: the pipeline, its resolved connection and its options.
pub struct SourceContext<'a> {
    pub pipeline: &'a PipelineDef,
    pub connection: Option<ConnectionUrl>,
    pub options: &'a Map<String, Value>,
}

/// What a sink factory gets. `connection` is already resolved (for a postgres
/// destination without one, the metadata database's).
pub struct SinkContext<'a> {
    pub pipeline: &'a PipelineDef,
    pub connection: Option<ConnectionUrl>,
    pub options: &'a Map<String, Value>,
}

#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// Can we reach the source and read it? Moves no data. Returns the schema a
    /// run would read today, where the source can tell without reading rows,
    /// so that the destination can say what it would refuse.
    async fn check(&self) -> Result<Option<SchemaRef>>;
    /// Resolve what this run reads, declare its schema, and start streaming.
    async fn open(&self, request: &ReadRequest) -> Result<SourceStream>;
    /// Whether this source's own options limit a run to `--date`'s data (a
    /// date column, say), as a date template in the controller row does.
    fn reads_by_date(&self) -> bool {
        false
    }
    /// The pipelines whose sources return the same key read one stream
    /// together (a replication slot several `cdc` pipelines name): the engine
    /// runs them at once, hands them one [`ReadGroup`], and confirms only what
    /// all of them committed. `None`: this source reads alone.
    fn read_group(&self) -> Option<String> {
        None
    }
    /// The destination committed everything up to `watermark`, and the other
    /// members of the pipeline's read group theirs up to `peers`: a source
    /// that keeps data for Weir until then (a replication slot) may let go of
    /// what all of them hold. Called only after the commit; a failure is
    /// logged, and the next run confirms again.
    async fn confirm(&self, watermark: &str, peers: &[String]) -> Result<()> {
        let _ = (watermark, peers);
        Ok(())
    }
    /// Where a change-capturing source's log stands (its replication slot);
    /// `None` for a source that keeps nothing on the server.
    async fn capture_status(&self) -> Result<Option<CaptureStatus>> {
        Ok(None)
    }
    /// Give back what the source keeps on the server for this pipeline (its
    /// replication slot). Returns what was dropped.
    async fn drop_capture(&self) -> Result<Option<String>> {
        Ok(None)
    }
}

/// A replication slot as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureStatus {
    pub slot: String,
    /// The slot does not exist (yet: before the first run; or any more).
    pub missing: bool,
    /// A connection reads it now.
    pub active: bool,
    /// Invalidated by the server (`wal_status = lost`): its changes are gone.
    pub lost: bool,
    /// WAL the server keeps for the slot, in bytes.
    pub retained_bytes: i64,
    /// How far the slot's confirmed position is behind the server's, in bytes.
    pub behind_bytes: i64,
    /// The position the destination confirmed.
    pub confirmed: Option<String>,
    /// Past this much retained WAL, `runner check` warns.
    pub warn_bytes: i64,
}

impl CaptureStatus {
    /// One line for `runner check` and `runner slots`.
    pub fn describe(&self) -> String {
        let mb = |b: i64| format!("{:.1} MB", b as f64 / 1_048_576.0);
        if self.missing {
            return format!("slot {}: not created yet (the first run creates it)", self.slot);
        }
        if self.lost {
            return format!("slot {}: LOST (invalidated by the server); its changes are gone", self.slot);
        }
        format!(
            "slot {}: {}, retains {} of WAL, {} behind (confirmed {})",
            self.slot,
            if self.active { "active" } else { "idle" },
            mb(self.retained_bytes),
            mb(self.behind_bytes),
            self.confirmed.as_deref().unwrap_or("-")
        )
    }

    /// A slot that fills the server's disk, or is gone: someone should look.
    pub fn needs_attention(&self) -> bool {
        self.lost || self.retained_bytes > self.warn_bytes
    }
}

#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// Can we reach the destination and write to it? Moves no data.
    async fn check(&self) -> Result<()>;
    /// Would a load of `schema` be refused: a column name or type the
    /// destination cannot hold, a change its existing table cannot take? Names
    /// the column, and moves no data.
    async fn check_schema(&self, schema: &arrow::datatypes::Schema) -> Result<()> {
        let _ = schema;
        Ok(())
    }
    /// The watermark the destination itself committed for this pipeline, if it
    /// keeps one. It wins over the metadata store's copy: it is what the data holds.
    async fn committed_watermark(&self, pipeline: &str) -> Result<Option<String>>;
    /// Load the whole stream and commit once, atomically, with the last position.
    /// On error nothing of this load is visible.
    async fn load(&self, request: &LoadRequest, input: SourceStream) -> Result<LoadOutcome>;
}

/// What a run asks of a transform.
#[derive(Debug, Clone)]
pub struct TransformRequest {
    pub pipeline: String,
    pub run_id: uuid::Uuid,
    pub run_date: RunDate,
    /// `load_type = 'full'`: rebuild incremental models from scratch.
    pub full_refresh: bool,
    /// `--skip-load`: check that the work would run (compile it), change nothing.
    pub dry_run: bool,
}

/// What a transform did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransformOutcome {
    /// Rows the destination reported inserted, updated or deleted.
    pub rows_affected: u64,
    /// One line for the report and the email: `9 models built, 31 tests passed`.
    pub summary: String,
    /// For `audit.details`.
    pub details: Option<Value>,
}

/// What a transform factory gets: the pipeline and the destination it works in.
pub struct TransformContext<'a> {
    pub pipeline: &'a PipelineDef,
    pub connection: Option<ConnectionUrl>,
    pub options: &'a Map<String, Value>,
}

#[async_trait::async_trait]
pub trait Transform: Send + Sync {
    /// Can it run: its tool installed, its project in place? Changes nothing.
    async fn check(&self) -> Result<()>;
    /// Run the work; on error, say which step failed and why. Dropping the
    /// future stops the work, and what it had not committed stays invisible.
    async fn run(&self, request: &TransformRequest) -> Result<TransformOutcome>;
}

pub type SourceFactory = fn(SourceContext<'_>) -> Result<Box<dyn Source>>;
pub type SinkFactory = fn(SinkContext<'_>) -> Result<Box<dyn Sink>>;

/// A source type, as the engine's registry knows it.
#[derive(Clone, Copy)]
pub struct SourceRegistration {
    /// The `source_type` value: `parquet`.
    pub name: &'static str,
    /// The `options` keys it owns.
    pub option_keys: &'static [&'static str],
    /// Whether it needs `source_connection`.
    pub needs_connection: bool,
    /// Whether it reads `load_type = 'cdc'`: a change stream (see [`crate::changes`]).
    pub captures_changes: bool,
    pub build: SourceFactory,
}

/// A destination type, as the engine's registry knows it.
#[derive(Clone, Copy)]
pub struct SinkRegistration {
    /// The `destination_type` value: `postgres`.
    pub name: &'static str,
    pub option_keys: &'static [&'static str],
    /// What a row without a `destination_connection` writes to.
    pub default_connection: DefaultConnection,
    /// Whether it applies a change stream (`load_type = 'cdc'`).
    pub applies_changes: bool,
    /// It cannot take a write back (a topic, Redis): a killed load is finished
    /// by the next load from the same watermark, which skips the rows the
    /// first one wrote by counting them. See [`ReadRequest::same_order`].
    pub resumes_by_count: bool,
    pub build: SinkFactory,
}

pub type TransformFactory = fn(TransformContext<'_>) -> Result<Box<dyn Transform>>;

/// A transform type: its `source_type` value and where it works.
#[derive(Clone, Copy)]
pub struct TransformRegistration {
    /// The `source_type` value: `dbt`.
    pub name: &'static str,
    pub option_keys: &'static [&'static str],
    /// The `destination_type`s it can work in (`postgres`).
    pub destinations: &'static [&'static str],
    /// What a row without a `destination_connection` works in.
    pub default_connection: DefaultConnection,
    pub build: TransformFactory,
}

/// Drop empty batches; they carry nothing for a sink.
pub fn non_empty(batch: &RecordBatch) -> bool {
    batch.num_rows() > 0
}
