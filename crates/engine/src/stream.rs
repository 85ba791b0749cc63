//! The stream loop: `runner stream` keeps `cdc` pipelines running.
//!
//! Each pipeline is claimed like a run's (one runner streams it; another waits
//! for the lease), gets one `audit` row for the session, and then commits in
//! cycles: every `options.commit_interval` (default 1 s) it applies what the
//! source logged since the last commit, exactly as a batch run does, so each
//! cycle is one destination commit carrying its position, confirmed to the
//! source after. A cycle also ends early at `options.commit_rows` changes. The
//! audit row is updated after each cycle (rows, bytes, position, heartbeat).
//! Transient failures (the source restarting, a network blip) are retried
//! with backoff, resuming at the committed position; anything else ends that
//! pipeline's session as `failed`, and the others stream on. SIGTERM or Ctrl-C
//! lets the cycle under way commit, closes the sessions as `success`, and
//! returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};
use uuid::Uuid;
use weir_core::{CaptureStatus, ControllerRow, Error, LoadType, PipelineReport, Redactor, Result, RunDate, Status};
use weir_meta::{AttemptEnd, AttemptStart, Claim, RunEnd, RunStart};

use crate::attempt::{Prepared, Task, failed_end, log_takeovers};
use crate::run::{Engine, RunConfig, RunCtx, heartbeat};

/// Longest wait between retries of a failing cycle.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What `runner stream` runs.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Only these pipelines; every active `cdc` pipeline when empty.
    pub pipelines: Vec<String>,
    /// As for runs: a runner that has not heartbeat for this long is dead.
    pub lease: Duration,
}

/// A `cdc` pipeline's slot, as `runner slots` and `runner check` show it.
pub struct SlotReport {
    pub pipeline: String,
    pub active: bool,
    pub status: Result<CaptureStatus>,
    /// The other pipelines that read the same slot (one decoding serves them all).
    pub shared_with: Vec<String>,
}

impl Engine {
    /// The replication slot of each `cdc` pipeline (or of those named).
    pub async fn slots(&self, names: &[String]) -> Result<Vec<SlotReport>> {
        let all = self.meta().pipelines(&[], true).await?;
        let groups = self.read_groups(&all);
        let mut out = Vec::new();
        for row in all.iter().filter(|r| r.load_type.trim() == "cdc" && (names.is_empty() || names.contains(&r.name))) {
            let status = match self.prepare(row) {
                Ok((prepared, redactor)) => match &prepared.task {
                    Task::Load { source, .. } => match source.capture_status().await {
                        // A source that keeps nothing on the server (a topic): no slot to show.
                        Ok(None) => continue,
                        Ok(Some(status)) => Ok(status),
                        Err(e) => Err(e.map_message(|m| redactor.redact(m))),
                    },
                    Task::Transform(_) => Err(Error::internal("a cdc transform")),
                },
                Err((e, redactor)) => Err(e.map_message(|m| redactor.redact(m))),
            };
            let shared_with = groups.peers(&row.name).into_iter().map(str::to_owned).collect();
            out.push(SlotReport { pipeline: row.name.clone(), active: row.active, status, shared_with });
        }
        Ok(out)
    }

    /// Drop the replication slot of `pipeline`. Without `force`, the pipeline
    /// must be inactive and the slot its own: the next run of any pipeline
    /// reading it would find it gone and fail (or take a new snapshot).
    pub async fn drop_slot(&self, pipeline: &str, force: bool) -> Result<Option<String>> {
        let all = self.meta().pipelines(&[], true).await?;
        let row = all
            .iter()
            .find(|r| r.name == pipeline)
            .ok_or_else(|| Error::user(format!("no pipeline named `{pipeline}` in the controller table")))?;
        if row.active && !force {
            return Err(Error::user(format!(
                "pipeline `{pipeline}` is active: its next run would find its slot gone and fail; set active = false \
                 first, or pass --force"
            )));
        }
        let peers = self.read_groups(&all).peers(pipeline).join(", ");
        if !peers.is_empty() && !force {
            return Err(Error::user(format!(
                "pipeline `{pipeline}` shares its slot with {peers}, whose next runs would find it gone and fail; \
                 pass --force to drop it for all of them"
            )));
        }
        let (prepared, redactor) = self.prepare(row).map_err(|(e, redactor)| e.map_message(|m| redactor.redact(m)))?;
        match &prepared.task {
            Task::Load { source, .. } => source.drop_capture().await.map_err(|e| e.map_message(|m| redactor.redact(m))),
            Task::Transform(_) => Ok(None),
        }
    }

    /// Stream the selected `cdc` pipelines until `cancel`. Errors are the
    /// session's before any pipeline started (no such pipeline, none to stream).
    pub async fn stream(&self, config: &StreamConfig, cancel: CancellationToken) -> Result<Vec<PipelineReport>> {
        let all = self.meta().pipelines(&[], true).await?;
        for name in &config.pipelines {
            match all.iter().find(|r| &r.name == name) {
                None => return Err(Error::user(format!("no pipeline named `{name}` in the controller table"))),
                Some(r) if r.load_type.trim() != "cdc" => {
                    return Err(Error::user(format!(
                        "pipeline `{name}` has load_type `{}`; runner stream runs `cdc` pipelines",
                        r.load_type
                    )));
                }
                Some(_) => {}
            }
        }
        let groups = self.read_groups(&all);
        // A pipeline named streams with the active ones that read its slot:
        // two runners cannot read one slot at once.
        let mut selected = config.pipelines.clone();
        for name in &config.pipelines {
            for peer in groups.peers(name) {
                if !selected.iter().any(|s| s == peer) && all.iter().any(|r| r.name == peer && r.active) {
                    info!(pipeline = %name, peer, "streaming a pipeline that reads the same slot too");
                    selected.push(peer.to_owned());
                }
            }
        }
        let rows: Vec<ControllerRow> = all
            .into_iter()
            .filter(|r| r.load_type.trim() == "cdc")
            .filter(|r| if selected.is_empty() { r.active } else { selected.contains(&r.name) })
            .collect();
        if rows.is_empty() {
            return Err(Error::user("no active pipeline has load_type `cdc`: there is nothing to stream"));
        }
        let run_id = Uuid::new_v4();
        let run_config = RunConfig {
            pipelines: rows.iter().map(|r| r.name.clone()).collect(),
            concurrency: rows.len(),
            lease: config.lease,
            ..RunConfig::new(RunDate::today_utc())
        };
        self.meta()
            .start_run(&RunStart {
                run_id,
                run_date: run_config.run_date.date(),
                concurrency: rows.len() as u32,
                lease: config.lease,
            })
            .await?;
        info!(%run_id, pipelines = rows.len(), "streaming");
        let ctx = Arc::new(RunCtx::new(run_id, run_config, cancel, groups));
        let beat = tokio::spawn(heartbeat(self.meta().clone(), ctx.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        for row in rows {
            let (engine, ctx) = (self.clone(), ctx.clone());
            let span = info_span!("stream", name = %row.name);
            let group = ctx.groups.of(&row.name).map(|g| g.read.clone());
            if let Some(group) = &group {
                group.enter();
            }
            tasks.spawn(
                async move {
                    let report = engine.stream_one(&row, &ctx).await;
                    if let Some(group) = group {
                        group.leave();
                    }
                    report
                }
                .instrument(span),
            );
        }
        let mut reports = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(report) => reports.push(report),
                Err(e) => warn!(error = %e, "a stream task ended abnormally"),
            }
        }
        beat.abort();
        let failed = reports.iter().filter(|r| !r.succeeded()).count() as i32;
        let end = RunEnd {
            status: if failed == 0 { "success" } else { "failed" },
            pipelines: reports.len() as i32,
            succeeded: reports.len() as i32 - failed,
            failed,
            skipped: 0,
        };
        if let Err(e) = self.meta().finish_run(run_id, &end).await {
            warn!(error = %self.redactor().redact(e.message()), "could not finish the run row");
        }
        Ok(reports)
    }

    /// One pipeline's session: claim, cycle until cancelled or failed, release.
    async fn stream_one(&self, row: &ControllerRow, ctx: &RunCtx) -> PipelineReport {
        let started = Instant::now();
        let mut report = PipelineReport::new(&row.name);
        let (prepared, redactor) = match self.prepare(row) {
            Ok(p) => p,
            Err((e, redactor)) => {
                report.error = Some(redactor.redact(&format!("pipeline `{}`: {e}", row.name)));
                return report;
            }
        };
        if prepared.def.load_type != LoadType::Cdc {
            report.error = Some(format!("pipeline `{}`: runner stream runs `cdc` pipelines", row.name));
            return report;
        }
        let config = &ctx.config;
        // Two runners never stream one pipeline: wait for the lease (and
        // meanwhile let the pipelines that read its slot read without it).
        let group = ctx.groups.of(&row.name).map(|g| g.read.clone());
        let mut waiting = false;
        loop {
            match self.meta().claim(row.id, &row.name, ctx.run_id, config.run_date.date(), config.lease, false).await {
                Ok(Claim::Claimed { took_over }) => {
                    log_takeovers(&took_over);
                    break;
                }
                Ok(Claim::Done(_)) => break,
                Ok(Claim::Held { run_id, host }) => {
                    if !std::mem::replace(&mut waiting, true) {
                        if let Some(group) = &group {
                            group.leave();
                        }
                        info!(
                            held_by = %run_id.map(|r| r.to_string()).unwrap_or_default(),
                            host = host.as_deref().unwrap_or("?"),
                            "another runner holds this pipeline; waiting for its lease"
                        );
                    }
                }
                Err(e) => warn!(error = %redactor.redact(e.message()), "could not claim the pipeline; trying again"),
            }
            let poll = (config.lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = ctx.cancel.cancelled() => {
                    if let (true, Some(group)) = (waiting, &group) {
                        group.enter(); // the caller's leave balances it
                    }
                    report.status = Status::Success;
                    return report;
                }
            }
        }
        if let (true, Some(group)) = (waiting, &group) {
            group.enter();
        }
        // Losing the lease stops the cycle under way; a signal waits for it to commit.
        let lease = CancellationToken::new();
        ctx.hold(row.id, lease.clone());
        let start = AttemptStart {
            pipeline_id: row.id,
            pipeline_name: &row.name,
            run_id: ctx.run_id,
            run_date: config.run_date.date(),
            attempt: 1,
            skip_load: false,
        };
        report = match self.meta().start_attempt(&start).await {
            Ok(audit_id) => self.cycles(&prepared, &redactor, audit_id, ctx, &lease, report).await,
            Err(e) => {
                report.error = Some(redactor.redact(&format!("pipeline `{}`: {e}", row.name)));
                report
            }
        };
        ctx.unhold(row.id);
        if let Err(e) = self.meta().release(row.id, ctx.run_id).await {
            warn!(error = %redactor.redact(e.message()), "could not release the pipeline's lease; it expires by itself");
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    /// Commit cycles until cancelled; returns the session's report, its audit row finished.
    async fn cycles(
        &self,
        prepared: &Prepared,
        redactor: &Redactor,
        audit_id: i64,
        ctx: &RunCtx,
        lease: &CancellationToken,
        mut report: PipelineReport,
    ) -> PipelineReport {
        let name = &prepared.def.name;
        let interval = prepared.commit_interval;
        let (mut read, mut written, mut bytes) = (0u64, 0u64, 0u64);
        let mut first_watermark: Option<Option<String>> = None;
        let mut watermark: Option<String> = None;
        let mut failures = 0u32;
        let mut ended: std::result::Result<(), Error> = Ok(());
        while !ctx.cancel.is_cancelled() {
            let cycle_started = Instant::now();
            let load_seq = match self.meta().next_load_seq().await {
                Ok(seq) => seq,
                Err(e) => {
                    ended = Err(e);
                    break;
                }
            };
            match self.attempt(prepared, ctx, load_seq, lease).await {
                Ok(done) => {
                    failures = 0;
                    first_watermark.get_or_insert(done.watermark_before.clone());
                    read += done.outcome.rows_read;
                    written += done.outcome.rows_written;
                    bytes += done.outcome.bytes_read;
                    watermark = done.outcome.watermark.clone();
                    if let Err(e) = self
                        .meta()
                        .progress_attempt(audit_id, read as i64, written as i64, bytes as i64, watermark.as_deref())
                        .await
                    {
                        warn!(error = %redactor.redact(e.message()), "could not record the stream's progress");
                    }
                }
                Err(e) if lease.is_cancelled() => {
                    ended = Err(e);
                    break;
                }
                Err(e) if e.is_retryable() => {
                    failures += 1;
                    let wait = Duration::from_millis(500)
                        .saturating_mul(2u32.saturating_pow(failures.min(10)))
                        .min(MAX_BACKOFF);
                    warn!(error = %redactor.redact(&e.to_string()), wait_ms = wait.as_millis() as u64, "a commit cycle failed; resuming from the committed position");
                    let _away = ctx.groups.of(name).map(|g| g.read.step_out());
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = ctx.cancel.cancelled() => {}
                    }
                    continue;
                }
                Err(e) => {
                    ended = Err(e);
                    break;
                }
            }
            let rest = interval.saturating_sub(cycle_started.elapsed());
            tokio::select! {
                () = tokio::time::sleep(rest) => {}
                () = ctx.cancel.cancelled() => {}
            }
        }
        report.records_read = read;
        report.records_written = written;
        report.watermark.clone_from(&watermark);
        let end = match ended {
            Ok(()) => {
                report.status = Status::Success;
                info!(rows_read = read, rows_written = written, watermark = watermark.as_deref(), "stream stopped");
                AttemptEnd {
                    status: Status::Success,
                    records_read: Some(read as i64),
                    records_processed: Some(written as i64),
                    bytes_read: Some(bytes as i64),
                    watermark_before: first_watermark.flatten(),
                    watermark_after: watermark,
                    details: None,
                    error_message: None,
                    error_domain: None,
                }
            }
            Err(e) => {
                let message = redactor.redact(&format!("pipeline `{name}`: {e}"));
                warn!(error = %message, "stream failed");
                report.error = Some(message.clone());
                AttemptEnd {
                    records_read: Some(read as i64),
                    records_processed: Some(written as i64),
                    watermark_after: watermark,
                    ..failed_end(&e, message)
                }
            }
        };
        if let Err(e) = self.meta().finish_attempt(audit_id, &end).await {
            warn!(error = %redactor.redact(e.message()), "could not finish the audit row");
        }
        report
    }
}
