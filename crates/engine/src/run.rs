//! The run loop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tracing::{Instrument, info, info_span, warn};
use uuid::Uuid;
use weir_core::options;
use weir_core::traits::{LoadRequest, ReadRequest, SinkContext, SourceContext, WatermarkFilter};
use weir_core::{
    BatchStream, ConnectionUrl, ControllerRow, DefaultConnection, Error, LoadOutcome, LoadType, PipelineDef, Redactor,
    Result, RunDate, Sink, Source, SourceStream,
};
use weir_meta::{AttemptEnd, AttemptStart, MetaStore, Status};

use crate::Registry;

/// Looks a variable up (the process environment, in production).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How often a running attempt proves it is alive in `audit.heartbeat_at`.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);
/// Batches decoded ahead of the sink, so reading and writing overlap.
const PREFETCH_BATCHES: usize = 4;

/// `options` keys the engine itself owns.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RunOptions {
    /// Extra attempts after a transient failure.
    retries: u32,
    /// Wait before the first retry; doubles each time.
    retry_backoff_ms: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { retries: 2, retry_backoff_ms: 1000 }
    }
}

impl RunOptions {
    const KEYS: &'static [&'static str] = &["retries", "retry_backoff_ms"];
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub run_date: RunDate,
    /// Only these pipelines (active or not); all active ones when empty.
    pub pipelines: Vec<String>,
    /// Read and check the sources, count rows, write nothing.
    pub skip_load: bool,
}

/// How one pipeline ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineReport {
    pub name: String,
    pub status: &'static str,
    pub attempts: u32,
    pub records_read: u64,
    pub records_written: u64,
    pub watermark: Option<String>,
    pub duration_ms: u64,
    /// Redacted.
    pub error: Option<String>,
}

impl PipelineReport {
    pub fn succeeded(&self) -> bool {
        self.status == Status::Success.as_str()
    }
}

/// How a whole run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub run_id: Uuid,
    pub run_date: String,
    pub pipelines: Vec<PipelineReport>,
}

impl RunReport {
    pub fn all_succeeded(&self) -> bool {
        self.pipelines.iter().all(PipelineReport::succeeded)
    }
}

/// A pipeline ready to run: validated, connected to its connectors.
struct Prepared {
    def: PipelineDef,
    source: Box<dyn Source>,
    sink: Box<dyn Sink>,
    options: RunOptions,
}

pub struct Engine {
    meta: MetaStore,
    metadata_url: ConnectionUrl,
    registry: Registry,
    env: EnvLookup,
    redactor: Redactor,
}

impl Engine {
    pub fn new(meta: MetaStore, metadata_url: ConnectionUrl, registry: Registry, env: EnvLookup) -> Self {
        let mut redactor = Redactor::new();
        redactor.add_connection(&metadata_url);
        Self { meta, metadata_url, registry, env, redactor }
    }

    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// Knows every secret the engine itself holds (the metadata database's).
    pub(crate) fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Run every selected pipeline for the run date; a failing pipeline never stops the others.
    pub async fn run(&self, config: &RunConfig) -> Result<RunReport> {
        let run_id = Uuid::new_v4();
        let rows = self.selected(&config.pipelines).await?;
        let span = info_span!("run", %run_id, date = %config.run_date);
        async {
            info!(pipelines = rows.len(), skip_load = config.skip_load, "run started");
            let mut reports = Vec::with_capacity(rows.len());
            for row in &rows {
                let span = info_span!("pipeline", name = %row.name);
                reports.push(self.run_pipeline(row, run_id, config).instrument(span).await);
            }
            let failed = reports.iter().filter(|r| !r.succeeded()).count();
            info!(pipelines = reports.len(), failed, "run finished");
            Ok(RunReport { run_id, run_date: config.run_date.to_string(), pipelines: reports })
        }
        .instrument(span)
        .await
    }

    /// Check each selected pipeline's configuration and connections, moving no data.
    pub async fn check(&self, pipelines: &[String]) -> Result<Vec<(String, Result<()>)>> {
        let rows = self.selected(pipelines).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let (result, redactor) = match self.prepare(row) {
                Ok((p, redactor)) => {
                    let mut result = p.source.check().await.map_err(|e| e.context("source"));
                    if result.is_ok() {
                        result = p.sink.check().await.map_err(|e| e.context("destination"));
                    }
                    (result, redactor)
                }
                Err((e, redactor)) => (Err(e), redactor),
            };
            out.push((row.name.clone(), result.map_err(|e| e.map_message(|m| redactor.redact(m)))));
        }
        Ok(out)
    }

    async fn selected(&self, names: &[String]) -> Result<Vec<ControllerRow>> {
        let rows = self.meta.pipelines(names, false).await?;
        let missing: Vec<&str> =
            names.iter().filter(|n| !rows.iter().any(|r| &r.name == *n)).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(Error::user(format!(
                "no pipeline named {} in the controller table (see `runner pipelines`)",
                missing.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(rows)
    }

    async fn run_pipeline(&self, row: &ControllerRow, run_id: Uuid, config: &RunConfig) -> PipelineReport {
        let started = Instant::now();
        let mut report = PipelineReport {
            name: row.name.clone(),
            status: Status::Failed.as_str(),
            attempts: 0,
            records_read: 0,
            records_written: 0,
            watermark: None,
            duration_ms: 0,
            error: None,
        };
        let start = AttemptStart {
            pipeline_id: row.id,
            pipeline_name: &row.name,
            run_id,
            run_date: config.run_date.date(),
            attempt: 1,
            skip_load: config.skip_load,
        };

        let (prepared, redactor) = match self.prepare(row) {
            Ok(p) => p,
            Err((e, redactor)) => {
                let message = redactor.redact(&format!("pipeline `{}`: {e}", row.name));
                warn!(error = %message, "pipeline not started");
                let end = failed_end(&e, message.clone(), None);
                if let Err(audit) = self.meta.record_not_started(&start, &end).await {
                    warn!(error = %redactor.redact(audit.message()), "could not write the audit row");
                }
                report.error = Some(message);
                report.duration_ms = started.elapsed().as_millis() as u64;
                return report;
            }
        };

        // One number for every attempt of this run: a sink that commits it can
        // tell a retry of a load that already landed from a new load.
        let load_seq = match self.meta.next_load_seq().await {
            Ok(seq) => seq,
            Err(e) => {
                let message = redactor.redact(&format!("pipeline `{}`: {e}", row.name));
                report.error = Some(message);
                report.duration_ms = started.elapsed().as_millis() as u64;
                return report;
            }
        };
        let max_attempts = prepared.options.retries + 1;
        for attempt in 1..=max_attempts {
            report.attempts = attempt;
            let start = AttemptStart { attempt: attempt as i32, ..start.clone() };
            let audit_id = match self.meta.start_attempt(&start).await {
                Ok(id) => id,
                Err(e) => {
                    report.error = Some(redactor.redact(&format!("pipeline `{}`: {e}", row.name)));
                    break;
                }
            };
            let heartbeat = self.spawn_heartbeat(audit_id);
            let result = self.attempt(&prepared, run_id, load_seq, config).await;
            heartbeat.abort();

            match result {
                Ok(Attempted { outcome, watermark_before, details }) => {
                    let end = AttemptEnd {
                        status: Status::Success,
                        records_read: Some(outcome.rows_read as i64),
                        records_processed: Some(outcome.rows_written as i64),
                        bytes_read: Some(outcome.bytes_read as i64),
                        watermark_before,
                        watermark_after: outcome.watermark.clone(),
                        details,
                        error_message: None,
                        error_domain: None,
                    };
                    if let Err(e) = self.meta.finish_attempt(audit_id, &end).await {
                        warn!(error = %redactor.redact(e.message()), "could not finish the audit row");
                    }
                    info!(
                        rows_read = outcome.rows_read,
                        rows_written = outcome.rows_written,
                        watermark = outcome.watermark.as_deref(),
                        "pipeline succeeded"
                    );
                    report.status = Status::Success.as_str();
                    report.records_read = outcome.rows_read;
                    report.records_written = outcome.rows_written;
                    report.watermark = outcome.watermark;
                    report.error = None;
                    break;
                }
                Err(e) => {
                    let message = redactor.redact(&format!("pipeline `{}`: {e}", row.name));
                    let end = failed_end(&e, message.clone(), None);
                    if let Err(audit) = self.meta.finish_attempt(audit_id, &end).await {
                        warn!(error = %redactor.redact(audit.message()), "could not finish the audit row");
                    }
                    report.error = Some(message.clone());
                    if e.is_retryable() && attempt < max_attempts {
                        let wait = Duration::from_millis(prepared.options.retry_backoff_ms)
                            .saturating_mul(2u32.saturating_pow(attempt - 1));
                        warn!(attempt, wait_ms = wait.as_millis() as u64, error = %message, "attempt failed; retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    warn!(attempt, domain = %e.domain(), error = %message, "pipeline failed");
                    break;
                }
            }
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    /// Validate a controller row and build its connectors. On error, the
    /// redactor knows whatever secrets were resolved before the failure.
    fn prepare(&self, row: &ControllerRow) -> std::result::Result<(Prepared, Redactor), (Error, Redactor)> {
        let mut redactor = self.redactor.clone();
        let built = (|| {
            let def = PipelineDef::parse(row)?;
            let source_reg = self.registry.source(&def.source_type)?;
            let sink_reg = self.registry.sink(&def.destination_type)?;
            options::check_known(&def.options, &[RunOptions::KEYS, source_reg.option_keys, sink_reg.option_keys])?;
            let run_options: RunOptions = options::parse(&def.options, RunOptions::KEYS)?;

            let source_conn = match &def.source_connection {
                Some(name) => Some(self.resolve(name, &mut redactor).map_err(|e| e.context("source_connection"))?),
                None if source_reg.needs_connection => {
                    return Err(Error::user(format!(
                        "source_connection is empty; a {} source needs one",
                        source_reg.name
                    )));
                }
                None => None,
            };
            let sink_conn = match (&def.destination_connection, sink_reg.default_connection) {
                (Some(name), _) => {
                    Some(self.resolve(name, &mut redactor).map_err(|e| e.context("destination_connection"))?)
                }
                (None, DefaultConnection::MetadataDb) => Some(self.metadata_url.clone()),
                (None, DefaultConnection::Lake) => Some(self.default_lake(&mut redactor)?),
                (None, DefaultConnection::None) => None,
            };
            let source =
                (source_reg.build)(SourceContext { pipeline: &def, connection: source_conn, options: &def.options })?;
            let sink = (sink_reg.build)(SinkContext { pipeline: &def, connection: sink_conn, options: &def.options })?;
            Ok(Prepared { def, source, sink, options: run_options })
        })();
        match built {
            Ok(p) => Ok((p, redactor)),
            Err(e) => Err((e, redactor)),
        }
    }

    pub(crate) fn resolve(&self, name: &str, redactor: &mut Redactor) -> Result<ConnectionUrl> {
        let conn = ConnectionUrl::resolve(name, |k| (self.env)(k))?;
        redactor.add_connection(&conn);
        Ok(conn)
    }

    /// The lake a destination without a connection writes to.
    pub(crate) fn default_lake(&self, redactor: &mut Redactor) -> Result<ConnectionUrl> {
        let conn = crate::lake::default_lake(&self.env)?;
        redactor.add_connection(&conn);
        Ok(conn)
    }

    /// One attempt: read the watermark, stream the source into the sink.
    async fn attempt(&self, p: &Prepared, run_id: Uuid, load_seq: i64, config: &RunConfig) -> Result<Attempted> {
        let def = &p.def;
        let stored = self.meta.watermark(def.id).await?;
        // What the destination committed wins: it is what the data holds, even if
        // the run that committed it died before updating the metadata store.
        let committed = match config.skip_load {
            false => p.sink.committed_watermark(&def.name).await?,
            true => None,
        };
        let watermark_before = if def.load_type == LoadType::Incremental { committed.or(stored) } else { None };
        let date_sliced = def.is_date_sliced() || p.source.reads_by_date();
        let filter = match (&watermark_before, &def.watermark_column, date_sliced) {
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
        };
        let stream = p.source.open(&request).instrument(info_span!("extract")).await?;
        for warning in &stream.warnings {
            warn!(warning = %warning, "source");
        }
        // The last position's counts are the run's totals.
        let counts = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let last_counts = counts.clone();
        let batches = stream.batches.inspect(move |item| {
            if let (Ok(b), Ok(mut counts)) = (item, last_counts.lock()) {
                counts.clone_from(&b.position.counts);
            }
        });
        let stream_warnings = stream.warnings.clone();
        let stream = SourceStream { batches: prefetch(batches.boxed(), PREFETCH_BATCHES), ..stream };

        let outcome = match config.skip_load {
            false => {
                let load = LoadRequest {
                    pipeline: def.name.clone(),
                    run_id,
                    run_date: config.run_date,
                    load_type: def.load_type,
                    primary_key: def.primary_key.clone(),
                    watermark_column: def.watermark_column.clone(),
                    replace_date: (def.load_type == LoadType::Incremental && date_sliced && def.primary_key.is_empty())
                        .then_some(config.run_date),
                    watermark_before: watermark_before.clone(),
                    load_seq,
                };
                let outcome = p.sink.load(&load, stream).instrument(info_span!("load")).await?;
                if let Some(table) = &outcome.table {
                    self.meta.register_table(table, &def.name).await?;
                }
                if def.watermark_column.is_some() {
                    self.meta
                        .save_watermark(def.id, &def.name, outcome.watermark.as_deref(), run_id, config.run_date.date())
                        .await?;
                }
                outcome
            }
            true => count_only(stream.batches).await?,
        };
        let counts = counts.lock().map(|c| c.clone()).unwrap_or_default();
        Ok(Attempted { outcome, watermark_before, details: details(&counts, &stream_warnings) })
    }

    fn spawn_heartbeat(&self, audit_id: i64) -> tokio::task::JoinHandle<()> {
        let meta = self.meta.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                if let Err(e) = meta.heartbeat(audit_id).await {
                    warn!(error = %e, "heartbeat failed");
                }
            }
        })
    }
}

/// What a successful attempt committed.
struct Attempted {
    outcome: LoadOutcome,
    /// The watermark the attempt started from.
    watermark_before: Option<String>,
    /// For `audit.details`: what the source counted and warned about.
    details: Option<serde_json::Value>,
}

/// `audit.details` for a load: the source's counts and warnings, if any.
fn details(counts: &BTreeMap<&'static str, u64>, warnings: &[String]) -> Option<serde_json::Value> {
    let mut details: serde_json::Map<String, serde_json::Value> =
        counts.iter().filter(|(_, n)| **n > 0).map(|(k, n)| ((*k).to_owned(), (*n).into())).collect();
    if !warnings.is_empty() {
        details.insert("warnings".to_owned(), warnings.into());
    }
    (!details.is_empty()).then_some(serde_json::Value::Object(details))
}

fn failed_end(e: &Error, message: String, watermark_before: Option<String>) -> AttemptEnd {
    AttemptEnd {
        status: Status::Failed,
        records_read: None,
        records_processed: None,
        bytes_read: None,
        watermark_before,
        watermark_after: None,
        details: None,
        error_message: Some(message),
        error_domain: Some(e.domain().to_string()),
    }
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

/// Drive `stream` on its own task, `depth` batches ahead of the consumer, so
/// decoding the source and writing the sink use both cores. Dropping the
/// returned stream stops the task.
fn prefetch(mut stream: BatchStream, depth: usize) -> BatchStream {
    let (tx, rx) = tokio::sync::mpsc::channel(depth);
    tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
}
