//! The run loop: every selected pipeline for one date, up to `concurrency` at
//! once, in `depends_on` order, each claimed from the metadata database so that
//! runners sharing it never run a pipeline twice at once.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};
use uuid::Uuid;
use weir_core::{ConnectionUrl, ControllerRow, Error, PipelineReport, Redactor, Result, RunDate, RunReport, Status};
use weir_meta::{AttemptEnd, AttemptStart, MetaStore, NotificationRecord, RunEnd, RunStart};
use weir_notify::{Delivery, Notifier};

use crate::Registry;
use crate::attempt::Outcome;
use crate::group::Groups;
use crate::plan::{Node, plan};

/// Looks a variable up (the process environment, in production).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Hears what a run does, as it does it (progress bars, say).
pub type Observer = Arc<dyn Fn(RunEvent<'_>) + Send + Sync>;

/// What a run tells its [`Observer`].
#[derive(Debug, Clone, Copy)]
pub enum RunEvent<'a> {
    /// An attempt started.
    Started { pipeline: &'a str, attempt: u32 },
    /// Rows read so far by the current attempt.
    Rows { pipeline: &'a str, rows_read: u64 },
    /// The pipeline is done, one way or another.
    Finished { report: &'a PipelineReport },
}

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub run_date: RunDate,
    /// Only these pipelines (active or not); all active ones when empty.
    pub pipelines: Vec<String>,
    /// Read and check the sources, count rows, write nothing.
    pub skip_load: bool,
    /// Pipelines at once.
    pub concurrency: usize,
    /// A runner that has not heartbeat for this long is dead; it heartbeats
    /// three times per lease.
    pub lease: Duration,
    /// `options.retries` for pipelines that do not set it (else 2).
    pub retries: Option<u32>,
    /// The run's id, when the caller must know it before the run ends (the
    /// server answers a trigger with it); a new one when `None`.
    pub run_id: Option<Uuid>,
}

impl RunConfig {
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

    pub fn new(run_date: RunDate) -> Self {
        Self {
            run_date,
            pipelines: Vec::new(),
            skip_load: false,
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            lease: Self::DEFAULT_LEASE,
            retries: None,
            run_id: None,
        }
    }
}

/// A run under way, shared by its pipelines' tasks.
pub(crate) struct RunCtx {
    pub run_id: Uuid,
    pub config: RunConfig,
    /// Cancelled on Ctrl-C or SIGTERM; each pipeline's token is a child.
    pub cancel: CancellationToken,
    /// The leases this run holds, by pipeline id.
    held: Mutex<HashMap<i64, Arc<Held>>>,
    /// The pipelines that read one source stream together.
    pub groups: Groups,
    /// The running attempts' rows so far, by pipeline id: written to their
    /// audit rows every few seconds, so that a run under way shows its progress
    /// to anyone reading the metadata database (`runner serve`'s pages).
    live: Mutex<HashMap<i64, Live>>,
}

struct Live {
    audit_id: Option<i64>,
    rows: Arc<AtomicU64>,
    written: u64,
}

struct Held {
    token: CancellationToken,
    lost: AtomicBool,
}

impl RunCtx {
    pub(crate) fn new(run_id: Uuid, config: RunConfig, cancel: CancellationToken, groups: Groups) -> Self {
        Self { run_id, config, cancel, held: Mutex::default(), groups, live: Mutex::default() }
    }

    /// A new attempt of a pipeline: its rows count from zero, into its audit row.
    pub(crate) fn track(&self, pipeline_id: i64, audit_id: i64) {
        if let Ok(mut live) = self.live.lock() {
            live.insert(pipeline_id, Live { audit_id: Some(audit_id), rows: Arc::default(), written: 0 });
        }
    }

    pub(crate) fn untrack(&self, pipeline_id: i64) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(&pipeline_id);
        }
    }

    /// The counter of the pipeline's rows read so far (tracked or not).
    pub(crate) fn rows_counter(&self, pipeline_id: i64) -> Arc<AtomicU64> {
        match self.live.lock() {
            Ok(mut live) => live
                .entry(pipeline_id)
                .or_insert_with(|| Live { audit_id: None, rows: Arc::default(), written: 0 })
                .rows
                .clone(),
            Err(_) => Arc::default(),
        }
    }

    /// `(audit_id, rows)` of the attempts whose count moved since the last call.
    fn progress(&self) -> Vec<(i64, i64)> {
        let Ok(mut live) = self.live.lock() else { return Vec::new() };
        live.values_mut()
            .filter_map(|l| {
                let rows = l.rows.load(Ordering::Relaxed);
                let id = l.audit_id?;
                (rows != l.written).then(|| {
                    l.written = rows;
                    (id, rows as i64)
                })
            })
            .collect()
    }

    pub(crate) fn hold(&self, pipeline_id: i64, token: CancellationToken) {
        if let Ok(mut held) = self.held.lock() {
            held.insert(pipeline_id, Arc::new(Held { token, lost: AtomicBool::new(false) }));
        }
    }

    pub(crate) fn unhold(&self, pipeline_id: i64) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(&pipeline_id);
        }
    }

    /// Why a pipeline's token was cancelled.
    pub(crate) fn stop_reason(&self, pipeline_id: i64) -> String {
        let lost = self
            .held
            .lock()
            .ok()
            .and_then(|h| h.get(&pipeline_id).map(|h| h.lost.load(Ordering::SeqCst)))
            .unwrap_or(false);
        if lost && !self.cancel.is_cancelled() {
            "lease lost: this runner could not prove to the metadata database that it was alive for longer than \
             the lease, so it stopped before committing and another runner may take the pipeline over"
                .to_owned()
        } else {
            "cancelled: the runner was asked to stop (Ctrl-C or SIGTERM) before this load committed; nothing of it \
             is visible"
                .to_owned()
        }
    }

    /// Heartbeat failed to renew these leases, or could not reach the database
    /// for a whole lease: stop their pipelines before they commit.
    fn lose(&self, ids: &[i64]) {
        if let Ok(held) = self.held.lock() {
            for id in ids {
                if let Some(h) = held.get(id) {
                    h.lost.store(true, Ordering::SeqCst);
                    h.token.cancel();
                }
            }
        }
    }

    fn held_ids(&self) -> Vec<i64> {
        self.held.lock().map(|h| h.keys().copied().collect()).unwrap_or_default()
    }
}

#[derive(Clone)]
pub struct Engine {
    meta: MetaStore,
    metadata_url: ConnectionUrl,
    registry: Registry,
    env: EnvLookup,
    redactor: Redactor,
    observer: Option<Observer>,
    notifier: Option<Notifier>,
}

impl Engine {
    pub fn new(meta: MetaStore, metadata_url: ConnectionUrl, registry: Registry, env: EnvLookup) -> Self {
        let mut redactor = Redactor::new();
        redactor.add_connection(&metadata_url);
        Self { meta, metadata_url, registry, env, redactor, observer: None, notifier: None }
    }

    /// Tell `observer` what runs do.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Mail a summary after each run.
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.redactor.add_connection(notifier.connection());
        self.notifier = Some(notifier);
        self
    }

    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    pub(crate) fn metadata_url(&self) -> &ConnectionUrl {
        &self.metadata_url
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Knows every secret the engine itself holds (the metadata database's, the SMTP server's).
    pub(crate) fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub(crate) fn observer(&self) -> Option<Observer> {
        self.observer.clone()
    }

    pub(crate) fn emit(&self, event: RunEvent<'_>) {
        if let Some(observer) = &self.observer {
            observer(event);
        }
    }

    /// Run every selected pipeline for the run date; a failing pipeline never
    /// stops the others. Errors are the run's, before any pipeline ran: the
    /// metadata database unreachable, an unknown `--pipeline`, a `depends_on` cycle.
    pub async fn run(&self, config: &RunConfig, cancel: CancellationToken) -> Result<RunReport> {
        let started = Instant::now();
        let run_id = config.run_id.unwrap_or_else(Uuid::new_v4);
        let all = self.meta.pipelines(&[], true).await?;
        let rows = select(&all, &config.pipelines)?;
        let names: BTreeSet<&str> = all.iter().map(|r| r.name.as_str()).collect();
        let nodes = plan(rows, &names)?;
        let concurrency = config.concurrency.max(1);

        let span = info_span!("run", %run_id, date = %config.run_date);
        async {
            self.meta
                .start_run(&RunStart {
                    run_id,
                    run_date: config.run_date.date(),
                    concurrency: concurrency as u32,
                    lease: config.lease,
                })
                .await?;
            for a in self.meta.recover(config.lease).await? {
                warn!(
                    pipeline = %a.pipeline_name,
                    dead_run = %a.run_id,
                    host = a.host.as_deref().unwrap_or("?"),
                    last_heartbeat = %a.heartbeat_at,
                    "marked abandoned: its runner stopped heartbeating"
                );
            }
            info!(pipelines = nodes.len(), concurrency, skip_load = config.skip_load, "run started");
            let groups = self.read_groups(&all);
            let ctx = Arc::new(RunCtx::new(run_id, RunConfig { concurrency, ..config.clone() }, cancel, groups));
            let heartbeat = tokio::spawn(heartbeat(self.meta.clone(), ctx.clone()));
            let progress = tokio::spawn(progress(self.meta.clone(), ctx.clone()));
            let pipelines = self.dispatch(&nodes, &ctx).await;
            heartbeat.abort();
            progress.abort();

            let report = RunReport {
                run_id,
                run_date: config.run_date.to_string(),
                cancelled: ctx.cancel.is_cancelled(),
                duration_ms: started.elapsed().as_millis() as u64,
                pipelines,
            };
            let end = RunEnd {
                status: match (report.cancelled, report.all_succeeded()) {
                    (true, _) => "cancelled",
                    (false, true) => "success",
                    (false, false) => "failed",
                },
                pipelines: report.pipelines.len() as i32,
                succeeded: report.count(Status::Success) as i32,
                failed: report.count(Status::Failed) as i32,
                skipped: report.count(Status::Skipped) as i32,
            };
            if let Err(e) = self.meta.finish_run(run_id, &end).await {
                warn!(error = %self.redactor.redact(e.message()), "could not finish the run row");
            }
            info!(
                pipelines = report.pipelines.len(),
                succeeded = end.succeeded,
                failed = end.failed,
                skipped = end.skipped,
                metadata_queries = self.meta.queries(),
                elapsed_ms = report.duration_ms,
                "run finished"
            );
            self.notify(&report, &nodes).await;
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Start pipelines as their dependencies finish, up to the concurrency.
    async fn dispatch(&self, nodes: &[Node], ctx: &Arc<RunCtx>) -> Vec<PipelineReport> {
        #[derive(Clone, Copy, PartialEq)]
        enum State {
            Pending,
            /// Held by another runner: ask again at this time.
            Waiting(tokio::time::Instant),
            Running,
            Done,
        }
        let poll = (ctx.config.lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let mut states = vec![State::Pending; nodes.len()];
        let mut reports: Vec<Option<PipelineReport>> = vec![None; nodes.len()];
        let mut tasks: JoinSet<(usize, Outcome)> = JoinSet::new();
        let mut task_node = HashMap::new();
        let mut running = 0;
        let mut waited = vec![false; nodes.len()];
        let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.row.name.as_str(), i)).collect();
        loop {
            // Start what can start; skip what cannot run. Repeat until nothing changes,
            // as a skip can decide the fate of pipelines that depend on it.
            let mut changed = true;
            while changed {
                changed = false;
                let now = tokio::time::Instant::now();
                for (i, node) in nodes.iter().enumerate() {
                    match states[i] {
                        State::Pending => {}
                        State::Waiting(at) if at <= now => {}
                        _ => continue,
                    }
                    let skip = if ctx.cancel.is_cancelled() {
                        Some("the run was cancelled before this pipeline started".to_owned())
                    } else {
                        node.deps.iter().find_map(|&d| match &reports[d] {
                            Some(r) if !r.succeeded() => {
                                Some(format!("dependency `{}` did not succeed ({})", nodes[d].row.name, r.status))
                            }
                            _ => None,
                        })
                    };
                    if let Some(reason) = skip {
                        let record = !ctx.cancel.is_cancelled();
                        let report = self.skip(&node.row, ctx, reason, record).await;
                        self.emit(RunEvent::Finished { report: &report });
                        reports[i] = Some(report);
                        states[i] = State::Done;
                        changed = true;
                        continue;
                    }
                    // A read group's pipelines start together: they read one stream.
                    let peer_running = ctx
                        .groups
                        .peers(&node.row.name)
                        .iter()
                        .any(|p| index.get(p).is_some_and(|&j| states[j] == State::Running));
                    if (running >= ctx.config.concurrency && !peer_running)
                        || node.deps.iter().any(|&d| reports[d].is_none())
                    {
                        continue;
                    }
                    let engine = self.clone();
                    let (row, unknown, task_ctx) = (node.row.clone(), node.unknown.clone(), ctx.clone());
                    let span = info_span!("pipeline", name = %node.row.name);
                    let group = ctx.groups.of(&node.row.name).map(|g| g.read.clone());
                    if let Some(group) = &group {
                        group.enter();
                    }
                    let handle = tasks.spawn(
                        async move {
                            let outcome = engine.run_one(&row, &unknown, &task_ctx).await;
                            if let Some(group) = group {
                                group.leave();
                            }
                            (i, outcome)
                        }
                        .instrument(span),
                    );
                    task_node.insert(handle.id(), i);
                    states[i] = State::Running;
                    running += 1;
                    changed = true;
                }
            }
            if running == 0 && states.iter().all(|s| *s == State::Done) {
                break;
            }
            let wake = states
                .iter()
                .filter_map(|s| match s {
                    State::Waiting(at) => Some(*at),
                    _ => None,
                })
                .min();
            tokio::select! {
                Some(joined) = tasks.join_next_with_id(), if running > 0 => {
                    running -= 1;
                    let (i, outcome) = match joined {
                        Ok((id, (i, outcome))) => {
                            task_node.remove(&id);
                            (i, outcome)
                        }
                        Err(e) => {
                            let i = task_node.remove(&e.id()).unwrap_or_default();
                            let mut report = PipelineReport::new(&nodes[i].row.name);
                            report.error = Some(format!("pipeline `{}`: internal error: {e}", nodes[i].row.name));
                            (i, Outcome::Finished(report))
                        }
                    };
                    match outcome {
                        Outcome::Finished(report) => {
                            self.emit(RunEvent::Finished { report: &report });
                            reports[i] = Some(report);
                            states[i] = State::Done;
                        }
                        Outcome::Held { by } => {
                            if !std::mem::replace(&mut waited[i], true) {
                                info!(pipeline = %nodes[i].row.name, held_by = %by, "another runner is running this pipeline; waiting for it");
                            }
                            states[i] = State::Waiting(tokio::time::Instant::now() + poll);
                        }
                    }
                }
                () = sleep_until(wake), if wake.is_some() => {}
                () = ctx.cancel.cancelled(), if !ctx.cancel.is_cancelled() => {
                    warn!(running, "stopping: cancelling the running pipelines; nothing they have not committed becomes visible");
                }
            }
        }
        nodes.iter().zip(reports).map(|(n, r)| r.unwrap_or_else(|| PipelineReport::new(&n.row.name))).collect()
    }

    /// A pipeline that will not run in this run. Recorded in `audit` unless the
    /// run was cancelled (so that another runner still loads it).
    async fn skip(&self, row: &ControllerRow, ctx: &RunCtx, reason: String, record: bool) -> PipelineReport {
        let message = format!("pipeline `{}` skipped: {reason}", row.name);
        info!(pipeline = %row.name, reason = %reason, "pipeline skipped");
        if record {
            let start = AttemptStart {
                pipeline_id: row.id,
                pipeline_name: &row.name,
                run_id: ctx.run_id,
                run_date: ctx.config.run_date.date(),
                attempt: 1,
                skip_load: ctx.config.skip_load,
            };
            let end = AttemptEnd::without_data(Status::Skipped, message.clone(), None);
            self.record_not_started(&start, &end, &self.redactor).await;
        }
        let mut report = PipelineReport::new(&row.name);
        report.status = Status::Skipped;
        report.error = Some(message);
        report
    }

    /// Mail the run's summary, if configured; record what became of it.
    async fn notify(&self, report: &RunReport, nodes: &[Node]) {
        let Some(notifier) = &self.notifier else { return };
        let extra: Vec<(String, String)> =
            nodes.iter().flat_map(|n| n.row.notify_emails.iter().map(|e| (n.row.name.clone(), e.clone()))).collect();
        let (sent, recipients, subject, error) = match notifier.send(report, &extra).await {
            Delivery::NotSent { reason } => {
                info!(reason = %reason, "no completion email");
                return;
            }
            Delivery::Sent { recipients, subject } => {
                info!(recipients = %recipients.join(", "), "completion email sent");
                (true, recipients, subject, None)
            }
            Delivery::Failed { recipients, subject, error } => {
                let error = self.redactor.redact(&error);
                warn!(recipients = %recipients.join(", "), error = %error, "completion email not sent; the run's result stands");
                (false, recipients, subject, Some(error))
            }
        };
        let record = NotificationRecord {
            run_id: report.run_id,
            sent,
            recipients: &recipients,
            subject: &subject,
            error_message: error.as_deref(),
        };
        if let Err(e) = self.meta.record_notification(&record).await {
            warn!(error = %self.redactor.redact(e.message()), "could not record the completion email");
        }
    }

    /// Check each selected pipeline's configuration and connections, moving no
    /// data, and the mail server if the completion email is configured.
    /// Check each pipeline without moving data; for a pipeline with
    /// `options.transform`, the columns it gives the destination.
    pub async fn check(&self, pipelines: &[String]) -> Result<Vec<(String, Result<Option<SchemaRef>>)>> {
        let all = self.meta.pipelines(pipelines, false).await?;
        let rows = select(&all, pipelines)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push((row.name.clone(), self.check_row(row).await));
        }
        if let Some(notifier) = &self.notifier {
            out.push(("(completion email)".to_owned(), notifier.check().await.map(|()| None)));
        }
        Ok(out)
    }

    /// Check one controller row, stored or not (an edit before it is saved),
    /// as `runner check` does; errors are redacted.
    pub async fn check_row(&self, row: &ControllerRow) -> Result<Option<SchemaRef>> {
        let (result, redactor) = match self.prepare(row) {
            Ok((p, redactor)) => (p.check().await, redactor),
            Err((e, redactor)) => (Err(e), redactor),
        };
        result.map_err(|e| e.map_message(|m| redactor.redact(m)))
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
}

/// The rows a run takes from the controller: those named (active or not), or
/// every active one.
fn select(all: &[ControllerRow], names: &[String]) -> Result<Vec<ControllerRow>> {
    if names.is_empty() {
        return Ok(all.iter().filter(|r| r.active).cloned().collect());
    }
    let missing: Vec<String> =
        names.iter().filter(|n| !all.iter().any(|r| &r.name == *n)).map(|n| format!("`{n}`")).collect();
    if !missing.is_empty() {
        return Err(Error::user(format!(
            "no pipeline named {} in the controller table (see `runner pipelines`)",
            missing.join(", ")
        )));
    }
    Ok(all.iter().filter(|r| names.contains(&r.name)).cloned().collect())
}

/// Every third of a lease: prove the run alive and renew its leases. A lease
/// that did not renew (another runner took it over), or a database that stayed
/// unreachable for a whole lease, stops the pipelines concerned before they commit.
pub(crate) async fn heartbeat(meta: MetaStore, ctx: Arc<RunCtx>) {
    let every = ctx.config.lease / 3;
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let before = ctx.held_ids();
        // A database that hangs counts as one that fails.
        let beat = tokio::time::timeout(every, meta.heartbeat_run(ctx.run_id, ctx.config.lease)).await;
        match beat.unwrap_or_else(|_| Err(Error::transient("the heartbeat got no answer in time"))) {
            Ok(renewed) => {
                last_ok = Instant::now();
                let lost: Vec<i64> = before.into_iter().filter(|id| !renewed.contains(id)).collect();
                if !lost.is_empty() {
                    warn!(pipelines = ?lost, "lease lost: another runner took these pipelines over; stopping them");
                    ctx.lose(&lost);
                }
            }
            Err(e) => {
                warn!(error = %e, "heartbeat failed");
                if last_ok.elapsed() >= ctx.config.lease {
                    warn!("no heartbeat for a whole lease: stopping every pipeline of this run before it commits");
                    ctx.lose(&before);
                }
            }
        }
    }
}

/// Every two seconds: the rows each running attempt has read so far, into its
/// audit row. One statement for all of them, and none when nothing moved.
async fn progress(meta: MetaStore, ctx: Arc<RunCtx>) {
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let moved = ctx.progress();
        if !moved.is_empty()
            && let Err(e) = meta.progress_rows(&moved).await
        {
            warn!(error = %e, "could not record the attempts' progress");
        }
    }
}

const PROGRESS_EVERY: Duration = Duration::from_secs(2);

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
