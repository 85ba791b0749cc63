//! One pipeline of a run: validate it, claim it, run its attempts, release it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};
use weir_core::options;
use weir_core::traits::{
    LoadRequest, ReadRequest, SinkContext, SourceContext, SourceRegistration, TransformRegistration, WatermarkFilter,
};
use weir_core::{
    BatchStream, ConnectionUrl, ControllerRow, DefaultConnection, Error, Ident, LoadOutcome, LoadType, PipelineDef,
    PipelineReport, Redactor, Result, RunDate, Sink, Source, SourceStream, Status, Transform, TransformContext,
    TransformRequest,
};
use weir_meta::{Abandoned, AttemptEnd, AttemptStart, Claim};

use crate::enrich::SqlTransform;
use crate::registry::TaskKind;
use crate::run::{Engine, RunCtx, RunEvent};
use crate::schedule::Cron;

/// Batches decoded ahead of the sink, so reading and writing overlap: at most
/// this many, and at most [`PREFETCH_BYTES`] of them.
const PREFETCH_BATCHES: usize = 4;

/// The memory that batches decoded ahead of the sink may take, counting the
/// batch the sink is working on. A batch larger than this waits until the sink
/// is done with the one before, so huge values are held one batch at a time.
const PREFETCH_BYTES: usize = 64 * 1024 * 1024;

/// `options` keys the engine itself owns.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RunOptions {
    /// Extra attempts after a transient failure (default: `--retries`, else 2).
    retries: Option<u32>,
    /// Wait before the first retry; doubles each time (default 1000).
    retry_backoff_ms: Option<u64>,
    /// `load_type = 'cdc'`: append every change (the changelog) instead of mirroring the table.
    history: bool,
    /// `runner stream`: commit this often (`1s`, `500ms`; default 1 s).
    commit_interval: Option<String>,
    /// SQL over each batch (`FROM input`), between the source and the sink.
    transform: Option<String>,
    /// The tables `transform` may join: a name → `{"connection", "table" | "query"}`.
    lookups: Option<serde_json::Map<String, serde_json::Value>>,
    /// Read the lookups again once they are this old (`5m`).
    lookup_refresh: Option<String>,
}

impl RunOptions {
    pub(crate) const KEYS: &'static [&'static str] =
        &["retries", "retry_backoff_ms", "history", "commit_interval", "transform", "lookups", "lookup_refresh"];
    const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(1);
    const DEFAULT_RETRIES: u32 = 2;
    const DEFAULT_BACKOFF_MS: u64 = 1000;
}

/// A pipeline ready to run: validated, connected to its connectors.
pub(crate) struct Prepared {
    pub def: PipelineDef,
    pub task: Task,
    /// `options.transform`: SQL over each batch on its way to the sink.
    transform: Option<SqlTransform>,
    options: RunOptions,
    /// How often `runner stream` commits this pipeline.
    pub commit_interval: Duration,
}

impl Prepared {
    /// Can it run? Moves no data. Returns the columns the transform gives the
    /// destination, if the pipeline has one (and its source can tell its own
    /// columns without a read).
    pub(crate) async fn check(&self) -> Result<Option<SchemaRef>> {
        let mirror = self.def.load_type == LoadType::Cdc && !self.options.history;
        self.task.check(mirror, self.transform.as_ref(), RunDate::today_utc()).await
    }
}

/// What a pipeline does.
pub(crate) enum Task {
    /// Stream a source into a sink.
    Load {
        source: Box<dyn Source>,
        sink: Box<dyn Sink>,
        /// The sink resumes a killed load by counting rows: the source must repeat itself.
        same_order: bool,
    },
    /// Run work inside the destination (dbt).
    Transform(Box<dyn Transform>),
}

impl Task {
    /// Can it run? Moves no data. `mirror`: the source's change columns steer
    /// the load and never reach the destination's table.
    async fn check(&self, mirror: bool, transform: Option<&SqlTransform>, date: RunDate) -> Result<Option<SchemaRef>> {
        match self {
            Task::Load { source, sink, .. } => {
                let mut schema = source.check().await.map_err(|e| e.context("source"))?;
                sink.check().await.map_err(|e| e.context("destination"))?;
                let mut output = None;
                if let (Some(t), Some(input)) = (transform, &schema) {
                    let out = t.plan(input.clone(), date, true).await?.output();
                    schema = Some(out.clone());
                    output = Some(out);
                }
                if mirror {
                    schema = schema.map(|s| weir_core::changes::without_meta(&s));
                }
                if let Some(schema) = schema {
                    sink.check_schema(&schema).await.map_err(|e| e.context("destination"))?;
                }
                Ok(output)
            }
            Task::Transform(t) => t.check().await.map(|()| None),
        }
    }
}

/// Columns that mean nothing for a transform, and are refused rather than ignored.
const NOT_FOR_TRANSFORMS: &str = "source_connection, source_table, watermark_column, primary_key, partition_by";

/// How a pipeline's turn in the run ended.
pub(crate) enum Outcome {
    Finished(PipelineReport),
    /// Another live runner holds the pipeline: try again later.
    Held {
        by: String,
    },
}

impl Engine {
    /// One pipeline, start to end. Never fails: the report says what happened.
    pub(crate) async fn run_one(&self, row: &ControllerRow, unknown_deps: &[String], ctx: &RunCtx) -> Outcome {
        let started = Instant::now();
        let config = &ctx.config;
        let mut report = PipelineReport::new(&row.name);
        let start = AttemptStart {
            pipeline_id: row.id,
            pipeline_name: &row.name,
            run_id: ctx.run_id,
            run_date: config.run_date.date(),
            attempt: 1,
            skip_load: config.skip_load,
        };
        let finish = |mut report: PipelineReport| {
            report.duration_ms = started.elapsed().as_millis() as u64;
            Outcome::Finished(report)
        };

        let prepared = match unknown_deps {
            [] => self.prepare(row),
            names => Err((
                Error::user(format!(
                    "depends_on names {}, which is not a pipeline in the controller table; fix depends_on or add \
                     the pipeline",
                    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                )),
                self.redactor().clone(),
            )),
        };
        let (prepared, redactor) = match prepared {
            Ok(p) => p,
            Err((e, redactor)) => {
                let message = redactor.redact(&format!("pipeline `{}`: {e}", row.name));
                warn!(error = %message, "pipeline not started");
                self.record_not_started(&start, &failed_end(&e, message.clone()), &redactor).await;
                report.error = Some(message);
                return finish(report);
            }
        };

        // One runner at a time: claim the pipeline's lease (a read-only run needs none).
        let token = ctx.cancel.child_token();
        if !config.skip_load {
            match self.meta().claim(row.id, &row.name, ctx.run_id, config.run_date.date(), config.lease, true).await {
                Ok(Claim::Claimed { took_over }) => log_takeovers(&took_over),
                Ok(Claim::Held { run_id, host }) => {
                    let by = match run_id {
                        Some(id) => format!("run {id} on {}", host.as_deref().unwrap_or("an unknown host")),
                        None => "another runner".to_owned(),
                    };
                    return Outcome::Held { by };
                }
                Ok(Claim::Done(done)) => {
                    let by = format!("run {} on {}", done.run_id, done.host.as_deref().unwrap_or("an unknown host"));
                    info!(by = %by, "another runner loaded this pipeline for this date during this run; not loading it again");
                    report.status = Status::Success;
                    report.attempts = done.attempt.max(0) as u32;
                    report.records_read = done.records_read.unwrap_or(0).max(0) as u64;
                    report.records_written = done.records_processed.unwrap_or(0).max(0) as u64;
                    report.watermark = done.watermark_after;
                    report.ran_by = Some(by);
                    report.duration_ms = done.duration_ms.unwrap_or(0).max(0) as u64;
                    return Outcome::Finished(report);
                }
                Err(e) => {
                    let message = redactor.redact(&format!("pipeline `{}`: {e}", row.name));
                    warn!(error = %message, "pipeline not started");
                    report.error = Some(message);
                    return finish(report);
                }
            }
            ctx.hold(row.id, token.clone());
        }

        let report = self.attempts(&prepared, &start, &redactor, ctx, &token, report).await;
        if !config.skip_load {
            ctx.unhold(row.id);
            if let Err(e) = self.meta().release(row.id, ctx.run_id).await {
                warn!(error = %redactor.redact(e.message()), "could not release the pipeline's lease; it expires by itself");
            }
        }
        finish(report)
    }

    /// Attempts until one succeeds, one fails for good, or retries run out.
    async fn attempts(
        &self,
        prepared: &Prepared,
        start: &AttemptStart<'_>,
        redactor: &Redactor,
        ctx: &RunCtx,
        token: &CancellationToken,
        mut report: PipelineReport,
    ) -> PipelineReport {
        let name = &prepared.def.name;
        // One number for every attempt of this run: a sink that commits it can
        // tell a retry of a load that already landed from a new load.
        let load_seq = match self.meta().next_load_seq().await {
            Ok(seq) => seq,
            Err(e) => {
                report.error = Some(redactor.redact(&format!("pipeline `{name}`: {e}")));
                return report;
            }
        };
        let retries = prepared.options.retries.or(ctx.config.retries).unwrap_or(RunOptions::DEFAULT_RETRIES);
        let backoff = prepared.options.retry_backoff_ms.unwrap_or(RunOptions::DEFAULT_BACKOFF_MS);
        let max_attempts = retries + 1;
        for attempt in 1..=max_attempts {
            report.attempts = attempt;
            let start = AttemptStart { attempt: attempt as i32, ..start.clone() };
            let audit_id = match self.meta().start_attempt(&start).await {
                Ok(id) => id,
                Err(e) => {
                    report.error = Some(redactor.redact(&format!("pipeline `{name}`: {e}")));
                    break;
                }
            };
            self.emit(RunEvent::Started { pipeline: name, attempt });
            ctx.track(prepared.def.id, audit_id);
            let attempted = self.attempt(prepared, ctx, load_seq, token).await;
            ctx.untrack(prepared.def.id);
            match attempted {
                Ok(Attempted { outcome, watermark_before, details, summary }) => {
                    // A transform reads nothing through Weir.
                    let reads = summary.is_none();
                    let end = AttemptEnd {
                        status: Status::Success,
                        records_read: reads.then_some(outcome.rows_read as i64),
                        records_processed: Some(outcome.rows_written as i64),
                        bytes_read: reads.then_some(outcome.bytes_read as i64),
                        watermark_before,
                        watermark_after: outcome.watermark.clone(),
                        details,
                        error_message: None,
                        error_domain: None,
                    };
                    if let Err(e) = self.meta().finish_attempt(audit_id, &end).await {
                        warn!(error = %redactor.redact(e.message()), "could not finish the audit row");
                    }
                    info!(
                        rows_read = outcome.rows_read,
                        rows_written = outcome.rows_written,
                        watermark = outcome.watermark.as_deref(),
                        "pipeline succeeded"
                    );
                    report.status = Status::Success;
                    report.records_read = outcome.rows_read;
                    report.records_written = outcome.rows_written;
                    report.watermark = outcome.watermark;
                    report.summary = summary;
                    report.error = None;
                    break;
                }
                Err(e) => {
                    let message = redactor.redact(&format!("pipeline `{name}`: {e}"));
                    if let Err(audit) = self.meta().finish_attempt(audit_id, &failed_end(&e, message.clone())).await {
                        warn!(error = %redactor.redact(audit.message()), "could not finish the audit row");
                    }
                    report.error = Some(message.clone());
                    if e.is_retryable() && attempt < max_attempts {
                        let wait = Duration::from_millis(backoff).saturating_mul(2u32.saturating_pow(attempt - 1));
                        warn!(attempt, wait_ms = wait.as_millis() as u64, error = %message, "attempt failed; retrying");
                        let _away = ctx.groups.of(name).map(|g| g.read.step_out());
                        tokio::select! {
                            () = tokio::time::sleep(wait) => continue,
                            () = token.cancelled() => {
                                report.error = Some(format!("pipeline `{name}`: {}", ctx.stop_reason(prepared.def.id)));
                                break;
                            }
                        }
                    }
                    warn!(attempt, domain = %e.domain(), error = %message, "pipeline failed");
                    break;
                }
            }
        }
        report
    }

    /// Validate a controller row and build its connectors. On error, the
    /// redactor knows whatever secrets were resolved before the failure.
    pub(crate) fn prepare(&self, row: &ControllerRow) -> std::result::Result<(Prepared, Redactor), (Error, Redactor)> {
        let mut redactor = self.redactor().clone();
        let built = (|| {
            let def = PipelineDef::parse(row)?;
            if let Some(expr) = &def.schedule {
                Cron::parse(expr)?;
            }
            let run_options: RunOptions = options::parse(&def.options, RunOptions::KEYS)?;
            let (task, transform) = match self.registry().task(&def.source_type)? {
                TaskKind::Load(source) => {
                    let task = self.load_task(&def, source, run_options.history, &mut redactor)?;
                    let mirror = def.load_type == LoadType::Cdc && !run_options.history;
                    let transform = self.transform_of(
                        &def,
                        run_options.transform.as_deref(),
                        run_options.lookups.as_ref(),
                        run_options.lookup_refresh.as_deref(),
                        mirror,
                        &mut redactor,
                    )?;
                    (task, transform)
                }
                TaskKind::Transform(transform) => {
                    if run_options.transform.is_some() || run_options.lookups.is_some() {
                        return Err(Error::user(format!(
                            "options.transform runs SQL over a load's batches; a {} pipeline has none",
                            transform.name
                        )));
                    }
                    (self.transform_task(&def, transform, &mut redactor)?, None)
                }
            };
            let commit_interval = match &run_options.commit_interval {
                None => RunOptions::DEFAULT_COMMIT_INTERVAL,
                Some(_) if def.load_type != LoadType::Cdc => {
                    return Err(Error::user("options.commit_interval is for load_type `cdc` (runner stream)"));
                }
                Some(text) => humantime::parse_duration(text).map_err(|e| {
                    Error::user(format!("options.commit_interval `{text}` is not a duration like `1s` or `500ms`: {e}"))
                })?,
            };
            Ok(Prepared { def, task, transform, options: run_options, commit_interval })
        })();
        match built {
            Ok(p) => Ok((p, redactor)),
            Err(e) => Err((e, redactor)),
        }
    }

    /// A source and a sink, connected.
    fn load_task(
        &self,
        def: &PipelineDef,
        source: &SourceRegistration,
        history: bool,
        redactor: &mut Redactor,
    ) -> Result<Task> {
        let sink = self.registry().sink(&def.destination_type)?;
        options::check_known(&def.options, &[RunOptions::KEYS, source.option_keys, sink.option_keys])?;
        if def.load_type == LoadType::Cdc {
            if !source.captures_changes {
                return Err(Error::user(format!(
                    "load_type `cdc` reads a database's change log; a {} source has none: use `full` or `incremental`",
                    source.name
                )));
            }
            if !sink.applies_changes && !history {
                return Err(Error::user(format!(
                    "a {} destination cannot mirror a change stream yet (deletes need a MERGE Weir does not run \
                     there); set options.history = true to append every change instead",
                    sink.name
                )));
            }
        } else if def.options.contains_key("history") {
            return Err(Error::user("options.history is for load_type `cdc`"));
        }
        let source_conn = match &def.source_connection {
            Some(name) => Some(self.resolve(name, redactor).map_err(|e| e.context("source_connection"))?),
            None if source.needs_connection => {
                return Err(Error::user(format!("source_connection is empty; a {} source needs one", source.name)));
            }
            None => None,
        };
        let sink_conn = self.destination(def, sink.default_connection, redactor)?;
        Ok(Task::Load {
            source: (source.build)(SourceContext { pipeline: def, connection: source_conn, options: &def.options })?,
            sink: (sink.build)(SinkContext { pipeline: def, connection: sink_conn, options: &def.options })?,
            same_order: sink.resumes_by_count,
        })
    }

    /// A transform, in its destination. The columns that describe a read must be empty.
    fn transform_task(
        &self,
        def: &PipelineDef,
        transform: &TransformRegistration,
        redactor: &mut Redactor,
    ) -> Result<Task> {
        options::check_known(&def.options, &[RunOptions::KEYS, transform.option_keys])?;
        if !transform.destinations.contains(&def.destination_type.as_str()) {
            return Err(Error::user(format!(
                "destination_type `{}`: a {} pipeline runs in a {} destination",
                def.destination_type,
                transform.name,
                transform.destinations.join(" or ")
            )));
        }
        let reads = def.source_connection.is_some()
            || def.source_table.is_some()
            || def.watermark_column.is_some()
            || !def.primary_key.is_empty()
            || !def.partition_by.is_empty();
        if reads {
            return Err(Error::user(format!(
                "a {} pipeline reads nothing itself: leave {NOT_FOR_TRANSFORMS} empty, and name the database it \
                 works in with destination_connection",
                transform.name
            )));
        }
        let connection = self.destination(def, transform.default_connection, redactor)?;
        Ok(Task::Transform((transform.build)(TransformContext { pipeline: def, connection, options: &def.options })?))
    }

    /// The destination's connection: the row's, else the destination type's default.
    fn destination(
        &self,
        def: &PipelineDef,
        default: DefaultConnection,
        redactor: &mut Redactor,
    ) -> Result<Option<ConnectionUrl>> {
        Ok(match (&def.destination_connection, default) {
            (Some(name), _) => Some(self.resolve(name, redactor).map_err(|e| e.context("destination_connection"))?),
            (None, DefaultConnection::MetadataDb) => Some(self.metadata_url().clone()),
            (None, DefaultConnection::Lake) => Some(self.default_lake(redactor)?),
            (None, DefaultConnection::None) => None,
        })
    }

    /// One attempt: read the watermark, stream the source into the sink (or
    /// run the transform). A cancelled token stops it before the sink commits;
    /// once the sink has committed, the attempt finishes its bookkeeping
    /// whatever happens.
    pub(crate) async fn attempt(
        &self,
        p: &Prepared,
        ctx: &RunCtx,
        load_seq: i64,
        token: &CancellationToken,
    ) -> Result<Attempted> {
        let def = &p.def;
        let config = &ctx.config;
        let (source, sink, same_order) = match &p.task {
            Task::Load { source, sink, same_order } => (source, sink, *same_order),
            Task::Transform(transform) => return self.transform(transform.as_ref(), def, ctx, token).await,
        };
        if config.skip_load && def.load_type == LoadType::Cdc {
            return Err(Error::user(
                "--skip-load does not read cdc pipelines: reading one creates and moves its replication slot; \
                 runner check checks them without moving anything",
            ));
        }
        let stored = self.meta().watermark(def.id).await?;
        // What the destination committed wins: it is what the data holds, even if
        // the run that committed it died before updating the metadata store.
        let committed = match config.skip_load {
            false => sink.committed_watermark(&def.name).await?,
            true => None,
        };
        let watermark_before = match def.load_type {
            LoadType::Incremental | LoadType::Cdc => committed.or(stored),
            LoadType::Full => None,
        };
        let date_sliced = def.is_date_sliced() || source.reads_by_date();
        let filter = match (&watermark_before, &def.watermark_column, date_sliced) {
            _ if def.load_type == LoadType::Cdc => None,
            (Some(value), Some(_), false) => {
                Some(WatermarkFilter { value: value.clone(), inclusive: !def.primary_key.is_empty() })
            }
            _ => None,
        };
        let request = ReadRequest {
            run_date: config.run_date,
            watermark_column: def.watermark_column.clone(),
            filter,
            watermark_before: watermark_before.clone(),
            group: ctx.groups.of(&def.name).map(|g| g.read.clone()),
            same_order,
        };
        let stop = || Error::user(ctx.stop_reason(def.id));
        let stream = tokio::select! {
            stream = source.open(&request).instrument(info_span!("extract")) => stream?,
            () = token.cancelled() => return Err(stop()),
        };
        for warning in &stream.warnings {
            warn!(warning = %warning, "source");
        }
        let stream = match &p.transform {
            Some(t) => t.wrap(stream, config.run_date).await?,
            None => stream,
        };
        // The last position's counts are the run's totals.
        let counts = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let last_counts = counts.clone();
        let rows = ctx.rows_counter(def.id);
        let observer = self.observer();
        let name = def.name.clone();
        let batches = stream.batches.inspect(move |item| {
            if let Ok(b) = item {
                if let Ok(mut counts) = last_counts.lock() {
                    counts.clone_from(&b.position.counts);
                }
                let total = rows.fetch_add(b.batch.num_rows() as u64, Ordering::Relaxed) + b.batch.num_rows() as u64;
                if let Some(observer) = &observer {
                    observer(RunEvent::Rows { pipeline: &name, rows_read: total });
                }
            }
        });
        let stream_warnings = stream.warnings.clone();
        // The controller row's key wins; else the source's own (a table's
        // primary key). A changelog repeats keys: it has none.
        let primary_key = match (p.options.history, def.primary_key.is_empty()) {
            (true, _) => Vec::new(),
            (false, false) => def.primary_key.clone(),
            (false, true) => {
                stream.primary_key.iter().map(|k| Ident::parse(k, "the source's primary key")).collect::<Result<_>>()?
            }
        };
        let stream = SourceStream { batches: prefetch(batches.boxed(), PREFETCH_BATCHES, PREFETCH_BYTES), ..stream };

        let outcome = match config.skip_load {
            false => {
                let load = LoadRequest {
                    pipeline: def.name.clone(),
                    run_id: ctx.run_id,
                    run_date: config.run_date,
                    load_type: def.load_type,
                    primary_key,
                    watermark_column: def.watermark_column.clone(),
                    replace_date: (def.load_type == LoadType::Incremental && date_sliced && def.primary_key.is_empty())
                        .then_some(config.run_date),
                    watermark_before: watermark_before.clone(),
                    load_seq,
                    history: p.options.history,
                };
                let outcome = tokio::select! {
                    outcome = sink.load(&load, stream).instrument(info_span!("load")) => outcome?,
                    () = token.cancelled() => return Err(stop()),
                };
                // The tests that prove exactly-once end the process here: the
                // destination has committed; nothing else has recorded it yet.
                // Debug builds only: a release runner has no such switch.
                #[cfg(debug_assertions)]
                if std::env::var_os("WEIR_CRASH_AFTER_COMMIT").is_some_and(|p| p == def.name.as_str()) {
                    std::process::abort();
                }
                if let Some(table) = &outcome.table {
                    self.meta().register_table(table, &def.name).await?;
                }
                if def.watermark_column.is_some() || def.load_type == LoadType::Cdc {
                    self.meta()
                        .save_watermark(
                            def.id,
                            &def.name,
                            outcome.watermark.as_deref(),
                            ctx.run_id,
                            config.run_date.date(),
                        )
                        .await?;
                }
                // Only now may the source let go of what it kept for us (and
                // for the pipelines that read it with us).
                if let Some(watermark) = &outcome.watermark {
                    let confirmed = match self.peer_positions(&ctx.groups, &def.name).await {
                        Ok(peers) => source.confirm(watermark, &peers).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = confirmed {
                        warn!(error = %e, "could not confirm the committed position to the source; the next run does");
                    }
                }
                outcome
            }
            true => tokio::select! {
                outcome = count_only(stream.batches) => outcome?,
                () = token.cancelled() => return Err(stop()),
            },
        };
        let mut counts = counts.lock().map(|c| c.clone()).unwrap_or_default();
        for (key, n) in &outcome.counts {
            *counts.entry(key).or_default() += n;
        }
        Ok(Attempted { outcome, watermark_before, details: details(&counts, &stream_warnings), summary: None })
    }

    /// One attempt of a transform: run it, stopping it if the run is cancelled.
    async fn transform(
        &self,
        transform: &dyn Transform,
        def: &PipelineDef,
        ctx: &RunCtx,
        token: &CancellationToken,
    ) -> Result<Attempted> {
        let request = TransformRequest {
            pipeline: def.name.clone(),
            run_id: ctx.run_id,
            run_date: ctx.config.run_date,
            full_refresh: def.load_type == LoadType::Full,
            dry_run: ctx.config.skip_load,
        };
        // Dropping the run stops the transform's process.
        let done = tokio::select! {
            done = transform.run(&request).instrument(info_span!("transform")) => done?,
            () = token.cancelled() => return Err(Error::user(ctx.stop_reason(def.id))),
        };
        Ok(Attempted {
            outcome: LoadOutcome { rows_written: done.rows_affected, ..LoadOutcome::default() },
            watermark_before: None,
            details: done.details,
            summary: Some(done.summary),
        })
    }

    /// Write a pipeline that did not start (bad configuration, failed dependency) as one audit row.
    pub(crate) async fn record_not_started(&self, start: &AttemptStart<'_>, end: &AttemptEnd, redactor: &Redactor) {
        if let Err(e) = self.meta().record_not_started(start, end).await {
            warn!(error = %redactor.redact(e.message()), "could not write the audit row");
        }
    }
}

/// What a successful attempt committed.
pub(crate) struct Attempted {
    pub(crate) outcome: LoadOutcome,
    /// The watermark the attempt started from.
    pub(crate) watermark_before: Option<String>,
    /// For `audit.details`: what the source counted and warned about, or what the transform did.
    pub(crate) details: Option<serde_json::Value>,
    /// A transform's one-line account of its work; `None` for a load.
    summary: Option<String>,
}

/// `audit.details` for a load: the source's and the sink's counts, and the source's warnings, if any.
fn details(counts: &BTreeMap<&'static str, u64>, warnings: &[String]) -> Option<serde_json::Value> {
    let mut details: serde_json::Map<String, serde_json::Value> =
        counts.iter().filter(|(_, n)| **n > 0).map(|(k, n)| ((*k).to_owned(), (*n).into())).collect();
    if !warnings.is_empty() {
        details.insert("warnings".to_owned(), warnings.into());
    }
    (!details.is_empty()).then_some(serde_json::Value::Object(details))
}

/// Say whose attempts a claim took over: runners that stopped heartbeating.
pub(crate) fn log_takeovers(took_over: &[Abandoned]) {
    for a in took_over {
        warn!(
            dead_run = %a.run_id,
            host = a.host.as_deref().unwrap_or("?"),
            last_heartbeat = %a.heartbeat_at,
            "took over from a runner that stopped heartbeating; its attempt is now abandoned"
        );
    }
}

pub(crate) fn failed_end(e: &Error, message: String) -> AttemptEnd {
    AttemptEnd::without_data(Status::Failed, message, Some(e.domain().to_string()))
}

/// `--skip-load`: read everything, count, write nothing, commit no watermark.
async fn count_only(mut batches: BatchStream) -> Result<LoadOutcome> {
    let mut outcome = LoadOutcome::default();
    while let Some(item) = batches.next().await {
        let item = item?;
        outcome.rows_read += item.batch.num_rows() as u64;
        outcome.bytes_read = item.position.bytes_read;
        outcome.watermark = item.position.watermark;
    }
    Ok(outcome)
}

/// Drive `stream` on its own task, up to `depth` batches and `bytes` of them
/// ahead of the consumer, so decoding the source and writing the sink use both
/// cores. A batch's share of `bytes` is held until the consumer asks for the
/// next one (it is done with this one then). Dropping the returned stream stops the task.
fn prefetch(mut stream: BatchStream, depth: usize, bytes: usize) -> BatchStream {
    const UNIT: usize = 64 * 1024;
    let units = u32::try_from(bytes / UNIT).unwrap_or(u32::MAX).max(1);
    let budget = Arc::new(tokio::sync::Semaphore::new(units as usize));
    let (tx, rx) = tokio::sync::mpsc::channel(depth);
    tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let size = item.as_ref().map(|b| b.batch.get_array_memory_size()).unwrap_or(0);
            let want = u32::try_from(size / UNIT).unwrap_or(u32::MAX).clamp(1, units);
            let Ok(permit) = budget.clone().acquire_many_owned(want).await else { break };
            let stop = item.is_err();
            if tx.send((item, permit)).await.is_err() || stop {
                break;
            }
        }
    });
    futures::stream::unfold((rx, None), |(mut rx, held)| async move {
        drop(held);
        rx.recv().await.map(|(item, permit)| (item, (rx, Some(permit))))
    })
    .boxed()
}
