//! The Delta sink: every load is one Delta commit.
//!
//! - `full`: an overwrite commit;
//! - `incremental`: an append; with a date-templated `data_source`, a predicate
//!   overwrite of that date's `_weir_run_date` slice;
//! - `incremental` with `primary_key`: a MERGE, the latest row per key winning.
//!
//! Each commit carries the application transaction `weir:<pipeline>` at the
//! run's load sequence number. Before writing, the sink reads that transaction
//! back: if this run's load already landed (an attempt that committed and then
//! lost its answer), nothing is written twice. Just before the commit, the sink
//! writes `_weir/<pipeline>/<load_seq>.json` beside the log with the watermark
//! reached; the committed transaction version says which of these markers is
//! real, so the watermark commits atomically with the data.
//!
//! Concurrent writers are made safe by the log store's conditional put
//! (`If-None-Match: *` on S3, create-new on local disk): two writers can never
//! both create commit N; the loser re-checks for conflicts and retries at N+1,
//! or fails with a retryable error that the engine retries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::Int64Type;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::Column;
use datafusion::common::ScalarValue;
use datafusion::functions::core::expr_fn::{coalesce, get_field, named_struct};
use datafusion::functions_nested::expr_fn::array_has;
use datafusion::functions_window::expr_fn::{first_value, row_number};
use datafusion::logical_expr::expr::NullTreatment;
use datafusion::logical_expr::{ExprFunctionExt, SortExpr, WindowFrame, WindowFrameBound, WindowFrameUnits, not, when};
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit};
use deltalake::DeltaTable;
use deltalake::datafusion;
use deltalake::delta_datafusion::DeltaSessionContext;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::DeltaOperation;
use deltalake::protocol::SaveMode;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tracing::info;
use weir_core::changes;
use weir_core::{
    Error, LoadOutcome, LoadRequest, LoadType, Position, Result, Sink, SinkContext, SourceStream, TableEntry,
};

use crate::error::{delta_error, store_error};
use crate::location::TableLocation;
use crate::stream::{
    OnEnd, OnceStream, Progress, RUN_DATE_COLUMN, SEQ_COLUMN, SharedProgress, run_date_field, with_field,
};
use crate::types::{WritePlan, name_needing_mapping};

pub struct DeltaSink {
    location: TableLocation,
    /// The destination connection's name, for the catalog; `None` for the default lake.
    connection: Option<String>,
    schema_name: String,
    table_name: String,
    partition_by: Vec<String>,
}

/// What the sink writes beside the log just before a commit.
#[derive(Debug, Serialize, Deserialize)]
struct CommitMarker {
    pipeline: String,
    load_seq: i64,
    run_id: String,
    run_date: String,
    watermark: Option<String>,
    rows_read: u64,
    bytes_read: u64,
}

impl DeltaSink {
    pub fn build(ctx: SinkContext<'_>) -> Result<Box<dyn Sink>> {
        let def = ctx.pipeline;
        let conn = ctx.connection.ok_or_else(|| Error::internal("the delta sink was built without a location"))?;
        let table = def.table()?.as_str();
        let location = TableLocation::resolve(&conn, def.schema_name.as_str(), table)?;
        Ok(Box::new(Self {
            location,
            connection: def.destination_connection.clone(),
            schema_name: def.schema_name.as_str().to_owned(),
            table_name: table.to_owned(),
            partition_by: def.partition_by.iter().map(|c| c.as_str().to_owned()).collect(),
        }))
    }

    /// The table at this location: loaded if it exists, empty (version `None`) if not.
    async fn open(&self) -> Result<DeltaTable> {
        if self.location.url.scheme() == "file" {
            let path = self.location.url.to_file_path().map_err(|_| Error::internal("a file URL without a path"))?;
            std::fs::create_dir_all(&path).map_err(|e| {
                Error::user(format!(
                    "the Delta table location {} cannot be created: {e}; check the path and its permissions",
                    self.location.display()
                ))
            })?;
        }
        self.location.open_or_empty().await
    }

    fn marker_path(pipeline: &str, load_seq: i64) -> Path {
        Path::from_iter(["_weir", pipeline, &format!("{load_seq}.json")])
    }

    async fn read_marker(table: &DeltaTable, pipeline: &str, load_seq: i64) -> Result<Option<CommitMarker>> {
        let store = table.object_store();
        match store.get(&Self::marker_path(pipeline, load_seq)).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(|e| store_error(e, "reading Weir's commit marker"))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| Error::internal(format!("Weir's commit marker for load {load_seq} is not valid: {e}")))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e, "reading Weir's commit marker")),
        }
    }

    fn entry(&self, table: &DeltaTable) -> Result<TableEntry> {
        let state = table.snapshot().map_err(|e| delta_error(e, "reading the committed table"))?;
        let schema = serde_json::to_value(state.schema().as_ref())
            .map_err(|e| Error::internal(format!("describing the table schema: {e}")))?;
        let columns = schema
            .get("fields")
            .and_then(|f| f.as_array())
            .map(|fields| {
                fields
                    .iter()
                    .map(|f| serde_json::json!({"name": f["name"], "type": f["type"], "nullable": f["nullable"]}))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        Ok(TableEntry {
            schema_name: self.schema_name.clone(),
            table_name: self.table_name.clone(),
            format: "delta",
            location: self.location.display().to_owned(),
            connection: self.connection.clone(),
            version: table.version().unwrap_or_default() as i64,
            columns: serde_json::Value::Array(columns),
            partition_by: state.metadata().partition_columns().to_vec(),
        })
    }

    fn check_partitioning(&self, table: &DeltaTable, plan: &WritePlan) -> Result<()> {
        for c in &self.partition_by {
            if plan.schema.field_with_name(c).is_err() {
                let names: Vec<_> = plan.schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(Error::user(format!(
                    "partition_by column `{c}` is not in the data (its columns: {}); fix partition_by",
                    names.join(", ")
                )));
            }
        }
        if let Ok(state) = table.snapshot() {
            let existing = state.metadata().partition_columns();
            if existing != self.partition_by.as_slice() {
                return Err(Error::user(format!(
                    "the Delta table at {} is partitioned by [{}] but partition_by says [{}]; set partition_by to \
                     match, or load into a new table to repartition",
                    self.location.display(),
                    existing.join(", "),
                    self.partition_by.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The table properties a new table is created with: column mapping (mode
    /// `name`) when a column name has a character Delta takes only that way. An
    /// existing table keeps what it has; a name it cannot take fails here,
    /// before anything is written.
    fn column_mapping(&self, table: &DeltaTable, plan: &WritePlan) -> Result<Vec<(String, Option<String>)>> {
        let needed = name_needing_mapping(&plan.schema);
        let mapped = match table.snapshot() {
            Err(_) if needed.is_some() => {
                return Ok(vec![("delta.columnMapping.mode".to_owned(), Some("name".to_owned()))]);
            }
            Err(_) => return Ok(Vec::new()),
            Ok(_) => column_mapped(table),
        };
        if mapped && !plan.new_columns.is_empty() {
            return Err(Error::user(format!(
                "the source has new columns ({}) but the Delta table at {} uses column mapping, and delta-rs \
                 cannot add columns to such a table yet; leave the new columns out of the source (or \
                 options.query), or load into a new table",
                plan.new_columns.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
                self.location.display()
            )));
        }
        let Some((name, c)) = needed else { return Ok(Vec::new()) };
        if !mapped {
            return Err(Error::user(format!(
                "column `{name}` has {c:?} in its name, which a Delta table takes only with column mapping, and the \
                 table at {} was created without it (delta-rs cannot turn it on later); rename the column (in the \
                 source, or with an alias in options.query where the source takes one), or load into a new table",
                self.location.display()
            )));
        }
        Ok(Vec::new())
    }

    async fn already_committed(&self, table: &DeltaTable, request: &LoadRequest) -> Result<LoadOutcome> {
        let marker = Self::read_marker(table, &request.pipeline, request.load_seq).await?;
        info!(load_seq = request.load_seq, "this run's load is already committed to the table; not writing it again");
        let (rows, bytes, watermark) = match marker {
            Some(m) => (m.rows_read, m.bytes_read, m.watermark),
            None => (0, 0, request.watermark_before.clone()),
        };
        Ok(LoadOutcome {
            rows_written: rows,
            rows_read: rows,
            bytes_read: bytes,
            watermark,
            table: Some(self.entry(table)?),
            counts: Default::default(),
        })
    }
}

/// What `on_end` does: write this load's commit marker, with the position the
/// source reached, beside the log, before delta-rs commits.
fn marker_writer(table: &DeltaTable, request: &LoadRequest) -> OnEnd {
    let store = table.object_store();
    let (pipeline, load_seq) = (request.pipeline.clone(), request.load_seq);
    let (run_id, run_date) = (request.run_id.to_string(), request.run_date.to_string());
    Box::new(move |position: Position, rows_read: u64| {
        Box::pin(async move {
            let path = DeltaSink::marker_path(&pipeline, load_seq);
            let marker = CommitMarker {
                pipeline,
                load_seq,
                run_id,
                run_date,
                watermark: position.watermark,
                rows_read,
                bytes_read: position.bytes_read,
            };
            let body = serde_json::to_vec(&marker)
                .map_err(|e| Error::internal(format!("writing Weir's commit marker: {e}")))?;
            store.put(&path, body.into()).await.map(drop).map_err(|e| store_error(e, "writing Weir's commit marker"))
        })
    })
}

/// The DataFusion session a load plans in: delta-rs's (its planner knows the
/// write and merge nodes). A MERGE runs with the join order as written (the
/// source, the changes, is the hash join's build side) and in one partition:
/// each partition scans and rewrites target files with its own buffers, so
/// partitions multiply memory (measured: 1.2 GB with two, 0.44 GB with one, in
/// the same time, for 100k changes into a 10M-row table; docs/benchmarks.md).
fn session(merge: bool) -> Result<SessionContext> {
    let mut overrides = HashMap::new();
    if merge {
        overrides.insert("datafusion.optimizer.join_reordering".to_owned(), "false".to_owned());
        overrides.insert("datafusion.execution.target_partitions".to_owned(), "1".to_owned());
    }
    DeltaSessionContext::new_with_session_overrides(&overrides)
        .map(DeltaSessionContext::into_inner)
        .map_err(|e| Error::internal(format!("configuring DataFusion: {e}")))
}

/// The commit's application transaction and provenance.
fn commit_properties(request: &LoadRequest) -> CommitProperties {
    CommitProperties::default()
        .with_application_transaction(Transaction::new(app_id(&request.pipeline), request.load_seq))
        .with_metadata([(
            "weir".to_owned(),
            serde_json::json!({
                "pipeline": request.pipeline,
                "run_id": request.run_id.to_string(),
                "run_date": request.run_date.to_string(),
                "load_seq": request.load_seq,
            }),
        )])
}

/// The rows the table's last commit added, from its operation metrics.
async fn added_rows(table: &DeltaTable) -> u64 {
    let last: Vec<_> = table.history(Some(1)).collect().await;
    last.into_iter()
        .flatten()
        .find_map(|c| c.info.get("operationMetrics").and_then(|m| m.get("num_added_rows")).and_then(|n| n.as_u64()))
        .unwrap_or_default()
}

/// The load sequence number of this pipeline's last commit to the table.
pub(crate) async fn committed_load(table: &DeltaTable, pipeline: &str) -> Result<Option<i64>> {
    let Ok(state) = table.snapshot() else { return Ok(None) };
    state
        .transaction_version(table.log_store().as_ref(), app_id(pipeline))
        .await
        .map_err(|e| delta_error(e, "reading the table's application transactions"))
}

/// Whether the table uses column mapping (physical names in its files).
pub(crate) fn column_mapped(table: &DeltaTable) -> bool {
    table
        .snapshot()
        .is_ok_and(|s| s.metadata().configuration().get("delta.columnMapping.mode").is_some_and(|m| m != "none"))
}

fn app_id(pipeline: &str) -> String {
    format!("weir:{pipeline}")
}

#[async_trait::async_trait]
impl Sink for DeltaSink {
    async fn check(&self) -> Result<()> {
        self.open().await.map(drop)
    }

    async fn check_schema(&self, schema: &arrow::datatypes::Schema) -> Result<()> {
        let table = self.open().await?;
        let existing = table.snapshot().ok().map(|s| s.snapshot().arrow_schema());
        // A date-sliced load adds its run date column, which a table may be partitioned by.
        let schema = match self.partition_by.iter().any(|c| c == RUN_DATE_COLUMN) {
            true => with_field(schema, run_date_field()),
            false => schema.clone(),
        };
        let plan = WritePlan::new(existing.as_deref(), &schema)?;
        self.check_partitioning(&table, &plan)?;
        self.column_mapping(&table, &plan).map(drop)
    }

    async fn committed_watermark(&self, pipeline: &str) -> Result<Option<String>> {
        let table = self.open().await?;
        let Some(load_seq) = committed_load(&table, pipeline).await? else { return Ok(None) };
        Ok(Self::read_marker(&table, pipeline, load_seq).await?.and_then(|m| m.watermark))
    }

    async fn load(&self, request: &LoadRequest, input: SourceStream) -> Result<LoadOutcome> {
        let table = self.open().await?;
        if let Some(committed) = committed_load(&table, &request.pipeline).await? {
            if committed == request.load_seq {
                return self.already_committed(&table, request).await;
            }
            if committed > request.load_seq {
                return Err(Error::user(format!(
                    "a later run of pipeline `{}` (load {committed}) has already committed to {}; this run's \
                     load {} is older and is not applied",
                    request.pipeline,
                    self.location.display(),
                    request.load_seq
                )));
            }
        }

        let run_date = request.replace_date.map(|d| (d.date() - chrono::NaiveDate::default()).num_days() as i32);
        // A change stream mirrored: the table holds the source's columns; the
        // change columns steer the MERGE.
        let mirror = request.load_type == LoadType::Cdc && !request.history;
        if mirror && request.primary_key.is_empty() {
            return Err(Error::user(
                "a change stream is applied to the mirror row by row, by key, and the source table has no primary \
                 key: set primary_key to the columns that identify a row, or options.history = true to append every \
                 change instead",
            ));
        }
        let unsent_after_key_change = Arc::new(AtomicU64::new(0));
        let (input, truncate_first) = match mirror {
            true => guard_truncates(input, unsent_after_key_change.clone()).await,
            false => (input, false),
        };
        let source_schema = match (run_date, mirror) {
            (Some(_), _) => with_field(&input.schema, run_date_field()),
            (None, true) => changes::without_meta(&input.schema).as_ref().clone(),
            (None, false) => input.schema.as_ref().clone(),
        };
        let existing = table.snapshot().ok().map(|s| s.snapshot().arrow_schema());
        let plan = WritePlan::new(existing.as_deref(), &source_schema)?;
        self.check_partitioning(&table, &plan)?;
        let configuration = self.column_mapping(&table, &plan)?;
        let upsert =
            matches!(request.load_type, LoadType::Incremental | LoadType::Cdc) && !request.primary_key.is_empty();
        for key in &request.primary_key {
            if plan.schema.field_with_name(key.as_str()).is_err() {
                return Err(Error::user(format!("primary_key column `{key}` is not in the data")));
            }
        }
        if !plan.new_columns.is_empty() && existing.is_some() {
            info!(columns = ?plan.new_columns, "new columns: adding them to the Delta table");
        }

        let progress: SharedProgress = Arc::new(Mutex::new(Progress {
            position: Position { watermark: request.watermark_before.clone(), ..Default::default() },
            ..Default::default()
        }));
        let on_end = marker_writer(&table, request);
        let stream_schema = match mirror {
            true => Arc::new(with_change_columns(&plan.schema)),
            false => plan.schema.clone(),
        };
        let source = OnceStream::new(input, stream_schema, run_date, progress.clone(), on_end, upsert);
        let provider = StreamingTable::try_new(source.schema().clone(), vec![Arc::new(source)])
            .map_err(|e| Error::internal(format!("preparing the Delta write: {e}")))?;
        let ctx = session(upsert)?;
        let df = ctx.read_table(Arc::new(provider)).map_err(|e| Error::internal(format!("reading the source: {e}")))?;

        let commit = commit_properties(request);
        let schema_mode = (!plan.new_columns.is_empty() && existing.is_some()).then_some(SchemaMode::Merge);
        let what = format!("writing the Delta table at {}", self.location.display());

        let result = if mirror {
            self.mirror(table, &ctx, df, &plan, request, truncate_first, (commit, configuration)).await
        } else if upsert {
            self.merge(table, &ctx, df, &plan, request, (commit, configuration)).await
        } else {
            let mut write = table
                .write(Vec::new())
                .with_input_plan(df.into_unoptimized_plan())
                .with_partition_columns(self.partition_by.clone())
                .with_configuration(configuration)
                .with_commit_properties(commit);
            if let Some(mode) = schema_mode {
                write = write.with_schema_mode(mode);
            }
            write = match (request.load_type, request.replace_date) {
                (LoadType::Full, _) => write.with_save_mode(SaveMode::Overwrite),
                (LoadType::Incremental, Some(date)) => write
                    .with_save_mode(SaveMode::Overwrite)
                    .with_replace_where(format!("{RUN_DATE_COLUMN} = '{}'", date.date().format("%Y-%m-%d"))),
                // A change stream reaches Delta only as history (the engine refuses a mirror).
                (LoadType::Incremental | LoadType::Cdc, None) => write.with_save_mode(SaveMode::Append),
                (LoadType::Cdc, Some(_)) => return Err(Error::internal("a change stream is never date-sliced")),
            };
            let rows = || progress.lock().map(|p| p.rows_read).unwrap_or_default();
            write.await.map(|t| (t, rows())).map_err(|e| delta_error(e, &what))
        };

        let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
        let (table, rows_written) = match result {
            Ok(done) => done,
            // The source's own error (with its domain) beats DataFusion's wrapping of it.
            Err(e) => return Err(p.error.take().unwrap_or(e)),
        };
        let mut counts = std::collections::BTreeMap::new();
        if p.truncated_nanoseconds > 0 {
            counts.insert(weir_core::narrow::counts::TRUNCATED_NANOSECONDS, p.truncated_nanoseconds);
        }
        let unsent = unsent_after_key_change.load(Ordering::Relaxed);
        if unsent > 0 {
            counts.insert("unchanged_values_missing", unsent);
        }
        Ok(LoadOutcome {
            rows_written,
            rows_read: p.rows_read,
            bytes_read: p.position.bytes_read,
            watermark: p.position.watermark.take(),
            table: Some(self.entry(&table)?),
            counts,
        })
    }
}

impl DeltaSink {
    /// A keyed load into a table that does not exist yet: its rows are the table.
    async fn first_write(
        &self,
        table: DeltaTable,
        rows: DataFrame,
        configuration: Vec<(String, Option<String>)>,
        commit: CommitProperties,
        what: &str,
    ) -> Result<(DeltaTable, u64)> {
        let written = table
            .write(Vec::new())
            .with_input_plan(rows.into_unoptimized_plan())
            .with_partition_columns(self.partition_by.clone())
            .with_configuration(configuration)
            .with_commit_properties(commit)
            .with_save_mode(SaveMode::Append)
            .await
            .map_err(|e| delta_error(e, what))?;
        let rows = added_rows(&written).await;
        Ok((written, rows))
    }

    /// MERGE the source into the table: the latest row per key (by watermark,
    /// then arrival) updates or inserts; a table row with a newer watermark is kept.
    async fn merge(
        &self,
        table: DeltaTable,
        ctx: &SessionContext,
        source: DataFrame,
        plan: &WritePlan,
        request: &LoadRequest,
        (commit, configuration): (CommitProperties, Vec<(String, Option<String>)>),
    ) -> Result<(DeltaTable, u64)> {
        let what = format!("merging into the Delta table at {}", self.location.display());
        let df_error = |e: datafusion::error::DataFusionError| Error::internal(format!("{what}: {e}"));
        let keys: Vec<Expr> = request.primary_key.iter().map(|k| Expr::Column(Column::from_name(k.as_str()))).collect();
        let mut order: Vec<SortExpr> = Vec::new();
        if let Some(w) = &request.watermark_column {
            order.push(Expr::Column(Column::from_name(w.as_str())).sort(false, true));
        }
        order.push(col(SEQ_COLUMN).sort(false, true));
        let latest = row_number().partition_by(keys).order_by(order).build().map_err(df_error)?.alias("_weir_rn");
        let columns: Vec<Expr> =
            plan.schema.fields().iter().map(|f| Expr::Column(Column::from_name(f.name().as_str()))).collect();
        let deduplicated = source
            .window(vec![latest])
            .and_then(|df| df.filter(col("_weir_rn").eq(lit(1u64))))
            .and_then(|df| df.select(columns))
            .map_err(df_error)?;

        if table.version().is_none() {
            // Nothing to merge into yet: the deduplicated rows are the table.
            return self.first_write(table, deduplicated, configuration, commit, &what).await;
        }

        let side = |alias: &str, name: &str| Expr::Column(Column::new(Some(alias), name));
        let keys: Vec<&str> = request.primary_key.iter().map(|k| k.as_str()).collect();
        let on = same_key(&keys)?;
        let present: Vec<&str> = plan
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|n| !plan.missing_columns.iter().any(|m| m == n))
            .collect();
        let guard = request
            .watermark_column
            .as_ref()
            .map(|w| side("s", w.as_str()).gt_eq(side("t", w.as_str())).or(side("t", w.as_str()).is_null()));
        let (table, metrics) = table
            .merge(deduplicated, on)
            .with_source_alias("s")
            .with_target_alias("t")
            .with_session_state(Arc::new(ctx.state()))
            .with_streaming(true)
            .with_merge_schema(!plan.new_columns.is_empty())
            .with_commit_properties(commit)
            .when_matched_update(|mut update| {
                if let Some(g) = guard {
                    update = update.predicate(g);
                }
                for name in &present {
                    update = update.update(Column::from_name(*name), side("s", name));
                }
                update
            })
            .and_then(|m| {
                m.when_not_matched_insert(|mut insert| {
                    for name in &present {
                        insert = insert.set(Column::from_name(*name), side("s", name));
                    }
                    insert
                })
            })
            .map_err(|e| delta_error(e, &what))?
            .await
            .map_err(|e| delta_error(e, &what))?;
        let written = metrics.num_target_rows_inserted + metrics.num_target_rows_updated;
        Ok((table, written as u64))
    }
}

/// A MERGE's join: the target's (`t`) key columns equal the source's (`s`).
fn same_key(keys: &[&str]) -> Result<Expr> {
    let side = |alias: &str, n: &str| Expr::Column(Column::new(Some(alias), n));
    keys.iter()
        .map(|k| side("t", k).eq(side("s", k)))
        .reduce(Expr::and)
        .ok_or_else(|| Error::internal("a merge without keys"))
}

/// The stream with its first batch looked at: does it start with a truncate?
/// A truncate anywhere else fails the load (a MERGE is planned before it
/// reads), naming what to do; the source starts a new read at each truncate
/// transaction, so this is a transaction that changed the table and then truncated it.
/// `unsent_after_key_change` counts updates that changed the key and did not
/// send some value: the mirror writes NULL there (it does not look up the old
/// key's row), and `audit.details` says so.
async fn guard_truncates(mut input: SourceStream, unsent_after_key_change: Arc<AtomicU64>) -> (SourceStream, bool) {
    let is_truncate = |b: &RecordBatch, i: usize| {
        b.column_by_name(changes::OP)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().map(|a| a.value(i) == "t"))
            .unwrap_or(false)
    };
    // Fused: the head may have read it to its end.
    let mut batches = std::mem::replace(&mut input.batches, futures::stream::empty().boxed()).fuse();
    let mut first = None;
    while let Some(item) = batches.next().await {
        match item {
            Ok(b) if b.batch.num_rows() == 0 => first.get_or_insert_with(Vec::new).push(Ok(b)),
            other => {
                first.get_or_insert_with(Vec::new).push(other);
                break;
            }
        }
    }
    let head = first.unwrap_or_default();
    let truncate_first = matches!(head.last(), Some(Ok(b)) if b.batch.num_rows() > 0 && is_truncate(&b.batch, 0));
    let mut row = 0usize;
    // The previous row's operation and position: a key change is a delete and,
    // at the same position, the new row.
    let mut previous: Option<(bool, i64)> = None;
    input.batches = futures::stream::iter(head)
        .chain(batches)
        .map(move |item| {
            let b = item?;
            let ops =
                b.batch.column_by_name(changes::OP).and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
            let lsns = b.batch.column_by_name(changes::LSN).and_then(|c| c.as_primitive_opt::<Int64Type>().cloned());
            let unsent = b.batch.column_by_name(changes::UNCHANGED).and_then(|c| c.as_list_opt::<i32>().cloned());
            if let (Some(ops), Some(lsns), Some(unsent)) = (ops, lsns, unsent) {
                for i in 0..b.batch.num_rows() {
                    let (op, lsn) = (ops.value(i), lsns.value(i));
                    let partial = unsent.is_valid(i) && !unsent.value(i).is_empty();
                    if op == "u" && partial && previous == Some((true, lsn)) {
                        unsent_after_key_change.fetch_add(1, Ordering::Relaxed);
                    }
                    previous = Some((op == "d", lsn));
                }
            }
            for i in 0..b.batch.num_rows() {
                if row + i > 0 && is_truncate(&b.batch, i) {
                    return Err(Error::user(
                        "a transaction changed the table and then truncated it; a Delta mirror applies a truncate \
                         only at the start of a load. Take a new snapshot (drop the Delta table and the pipeline's \
                         watermark), or capture into PostgreSQL or with options.history = true",
                    ));
                }
            }
            row += b.batch.num_rows();
            Ok(b)
        })
        .boxed();
    (input, truncate_first)
}

fn with_change_columns(schema: &Schema) -> Schema {
    let mut fields: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(changes::fields());
    Schema::new(fields)
}

/// Types PostgreSQL may store out of line (TOAST), whose unchanged values an update does not send.
fn may_be_unsent(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::List(_)
            | DataType::LargeList(_)
    )
}

impl DeltaSink {
    /// Apply a change stream to the table with one MERGE: after a leading
    /// truncate (the snapshot's marker) every row the stream does not have is
    /// deleted; the last change of each key wins: a delete deletes, an insert
    /// or update writes the row, except the values the update did not send
    /// (unchanged TOAST), which come from the key's latest change in this load
    /// that sent them, else stay as the table has them.
    #[allow(clippy::too_many_arguments)]
    async fn mirror(
        &self,
        table: DeltaTable,
        ctx: &SessionContext,
        source: DataFrame,
        plan: &WritePlan,
        request: &LoadRequest,
        truncate_first: bool,
        (commit, configuration): (CommitProperties, Vec<(String, Option<String>)>),
    ) -> Result<(DeltaTable, u64)> {
        let what = format!("applying changes to the Delta table at {}", self.location.display());
        let df_error = |e: datafusion::error::DataFusionError| Error::internal(format!("{what}: {e}"));
        let name = |n: &str| Expr::Column(Column::from_name(n));
        let key_names: Vec<&str> = request.primary_key.iter().map(|k| k.as_str()).collect();
        let keys: Vec<Expr> = key_names.iter().map(|k| name(k)).collect();
        let present: Vec<&Field> = plan
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref())
            .filter(|f| !plan.missing_columns.iter().any(|m| m == f.name()))
            .collect();
        let unsent: Vec<&str> = present
            .iter()
            .filter(|f| !key_names.contains(&f.name().as_str()) && may_be_unsent(f.data_type()))
            .map(|f| f.name().as_str())
            .collect();

        let mut windows = vec![
            row_number()
                .partition_by(keys.clone())
                .order_by(vec![col(SEQ_COLUMN).sort(false, true)])
                .build()
                .map_err(df_error)?
                .alias("_weir_rn"),
        ];
        for (i, column) in unsent.iter().enumerate() {
            let sent = not(coalesce(vec![array_has(name(changes::UNCHANGED), lit(*column)), lit(false)]));
            let value = when(sent, named_struct(vec![lit("v"), name(column)])).end().map_err(df_error)?;
            // Newest first (as the row number counts, so one sort serves both):
            // from a row to the key's oldest, the first value that was sent.
            let frame = WindowFrame::new_bounds(
                WindowFrameUnits::Rows,
                WindowFrameBound::CurrentRow,
                WindowFrameBound::Following(ScalarValue::UInt64(None)),
            );
            windows.push(
                first_value(value)
                    .partition_by(keys.clone())
                    .order_by(vec![col(SEQ_COLUMN).sort(false, true)])
                    .window_frame(frame)
                    .null_treatment(NullTreatment::IgnoreNulls)
                    .build()
                    .map_err(df_error)?
                    .alias(format!("_weir_v{i}")),
            );
        }
        let mut select: Vec<Expr> = vec![name(changes::OP)];
        for f in &present {
            match unsent.iter().position(|u| *u == f.name()) {
                Some(i) => {
                    let v = col(format!("_weir_v{i}"));
                    select.push(get_field(v.clone(), "v").alias(f.name()));
                    select.push(v.is_null().alias(format!("_weir_keep{i}")));
                }
                None => select.push(name(f.name())),
            }
        }
        let latest = source
            .filter(name(changes::OP).not_eq(lit(changes::op::TRUNCATE)))
            .and_then(|df| df.window(windows))
            .and_then(|df| df.filter(col("_weir_rn").eq(lit(1u64))))
            .and_then(|df| df.select(select))
            .map_err(df_error)?;

        if table.version().is_none() {
            let rows: Vec<Expr> = present.iter().map(|f| name(f.name())).collect();
            let written = latest
                .filter(name(changes::OP).not_eq(lit(changes::op::DELETE)))
                .and_then(|df| df.select(rows))
                .map_err(df_error)?;
            return self.first_write(table, written, configuration, commit, &what).await;
        }

        let side = |alias: &str, n: &str| Expr::Column(Column::new(Some(alias), n));
        let on = same_key(&key_names)?;
        let is_delete = side("s", changes::OP).eq(lit(changes::op::DELETE));
        let (table_version, commit_again) = (table.version(), commit.clone());
        let mut merge = table
            .merge(latest, on)
            .with_source_alias("s")
            .with_target_alias("t")
            .with_session_state(Arc::new(ctx.state()))
            .with_streaming(true)
            .with_merge_schema(!plan.new_columns.is_empty())
            .with_commit_properties(commit)
            .when_matched_delete(|delete| delete.predicate(is_delete.clone()))
            .and_then(|m| {
                m.when_matched_update(|mut update| {
                    for f in present.iter().filter(|f| !key_names.contains(&f.name().as_str())) {
                        let value = match unsent.iter().position(|u| *u == f.name()) {
                            Some(i) => when(side("s", &format!("_weir_keep{i}")), side("t", f.name()))
                                .otherwise(side("s", f.name()))
                                .unwrap_or_else(|_| side("s", f.name())),
                            None => side("s", f.name()),
                        };
                        update = update.update(Column::from_name(f.name()), value);
                    }
                    update
                })
            })
            .and_then(|m| {
                m.when_not_matched_insert(|mut insert| {
                    insert = insert.predicate(not(is_delete.clone()));
                    for f in &present {
                        insert = insert.set(Column::from_name(f.name()), side("s", f.name()));
                    }
                    insert
                })
            })
            .map_err(|e| delta_error(e, &what))?;
        if truncate_first {
            merge = merge.when_not_matched_by_source_delete(|delete| delete).map_err(|e| delta_error(e, &what))?;
        }
        let before = table_version;
        let (mut table, metrics) = merge.await.map_err(|e| delta_error(e, &what))?;
        if table.version() == before {
            // A MERGE that changes nothing makes no commit; the load's position
            // must still be committed, or the slot would be confirmed past it.
            let state = table.snapshot().map_err(|e| delta_error(e, &what))?;
            let operation = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
            CommitBuilder::from(commit_again)
                .build(Some(state), table.log_store(), operation)
                .await
                .map_err(|e| delta_error(e, &what))?;
            table.update_state().await.map_err(|e| delta_error(e, &what))?;
        }
        let written =
            metrics.num_target_rows_inserted + metrics.num_target_rows_updated + metrics.num_target_rows_deleted;
        Ok((table, written as u64))
    }
}

/// Options the delta sink owns (none yet: layout follows `partition_by`).
pub const OPTION_KEYS: &[&str] = &[];
