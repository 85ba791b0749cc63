//! `runner`: Weir's command line. Parses, calls the engine, prints.
//!
//! Exit codes: 0 every pipeline succeeded; 1 some pipeline failed (or was
//! skipped, or the run was cancelled); 2 usage or configuration error (bad
//! flags, no metadata database, unknown pipeline, a `depends_on` cycle, bad
//! email settings).

mod output;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing::warn;
use weir_core::{ConnectionUrl, Redactor, RunDate};
use weir_engine::{CancellationToken, Dialect, Engine, MaintainOptions, Notifier, Registry, RunConfig, StreamConfig};
use weir_meta::MetaStore;

use crate::output::Format;
use crate::progress::Progress;

#[derive(Parser, Debug)]
#[command(name = "runner", version, about = "Weir: metadata-driven ETL. Runs the pipelines of the controller table.")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no command: `runner --date 20250323` is `runner run --date 20250323`.
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    global: Global,
}

#[derive(Args, Debug, Clone)]
struct Global {
    /// The metadata database (else DATABASE_URL).
    #[arg(long, env = "WEIR_DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Log lines as text or JSON (on stderr).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Also append log lines to a daily file in this folder (weir.log.YYYY-MM-DD).
    #[arg(long, env = "WEIR_LOG_DIR", global = true)]
    log_dir: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create or upgrade the metadata tables (controller, audit, watermark, catalog). Idempotent.
    Init,
    /// Run every active pipeline (or those named) for a date.
    Run(RunArgs),
    /// Run every active pipeline now and then at each interval, until SIGTERM or Ctrl-C.
    Schedule(ScheduleArgs),
    /// Keep the `cdc` pipelines (or those named) applying their changes, until SIGTERM or Ctrl-C.
    Stream(StreamArgs),
    /// Show each `cdc` pipeline's replication slot (the WAL it keeps), or drop one.
    Slots(SlotsArgs),
    /// Show the run history from the audit table.
    Audit(AuditArgs),
    /// List the pipelines of the controller table.
    Pipelines(FormatArgs),
    /// Check each pipeline's configuration and connections without moving data.
    Check(CheckArgs),
    /// List the lake tables Weir has written (`catalog ddl`: register them in Spark or Trino).
    Catalog(CatalogArgs),
    /// Run SQL over the catalog's Delta tables: runner query "SELECT … FROM bronze.orders".
    Query(QueryArgs),
    /// Compact small files and vacuum old versions of the catalog's Delta tables.
    Maintain(MaintainArgs),
    /// Serve the dashboard, the JSON API and event ingestion (POST /events), until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on. Beyond loopback only with tokens (WEIR_ADMIN_TOKENS, WEIR_READ_TOKENS,
    /// WEIR_INGEST_TOKENS: comma-separated lists).
    #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Stop a SQL box (or lake analytics) query after this long.
    #[arg(long, env = "WEIR_QUERY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    query_timeout: Duration,
    /// The most rows a SQL box answer shows.
    #[arg(long, env = "WEIR_QUERY_ROWS", default_value_t = 1000)]
    query_rows: usize,
    /// Events per second one ingest token may send (429 beyond).
    #[arg(long, env = "WEIR_INGEST_RATE", default_value_t = 100_000)]
    ingest_rate: u32,
    /// Events waiting for their commit at most (503 beyond).
    #[arg(long, env = "WEIR_INGEST_QUEUE", default_value_t = 100_000)]
    ingest_queue: usize,
    /// The lake table that `GET /analytics/query?source=lake` reads.
    #[arg(long, env = "WEIR_EVENTS_LAKE_TABLE", default_value = "bronze.events")]
    events_lake_table: String,
    /// Mark the session cookie Secure (the server is reached over HTTPS, through a proxy).
    #[arg(long, env = "WEIR_SECURE_COOKIES")]
    secure_cookies: bool,
}

#[derive(Args, Debug)]
struct CatalogArgs {
    #[command(subcommand)]
    action: Option<CatalogAction>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Subcommand, Debug)]
enum CatalogAction {
    /// Print the statements that register every catalog table in another engine.
    Ddl {
        #[arg(long, value_enum, default_value_t = DdlDialect::Spark)]
        dialect: DdlDialect,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum DdlDialect {
    /// `CREATE TABLE … USING DELTA LOCATION …` (Spark SQL, Hive Metastore, Databricks).
    Spark,
    /// `CALL delta.system.register_table(…)` (Trino's Delta Lake connector).
    Trino,
}

#[derive(Args, Debug)]
struct QueryArgs {
    /// The SQL; name tables as schema.table, as `runner catalog` lists them.
    sql: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Args, Debug)]
struct MaintainArgs {
    /// Only this table, as schema.table (repeatable); all catalog tables when absent.
    #[arg(long = "table", short = 't')]
    tables: Vec<String>,
    /// Keep the files that versions of the last N hours need (time travel, slow readers).
    #[arg(long, default_value_t = 168)]
    retention_hours: u64,
    /// Compact into files of about this many MiB (default: delta-rs's, 100 MiB).
    #[arg(long)]
    target_file_mb: Option<u64>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Args, Debug, Clone, Default)]
struct RunArgs {
    /// The logical date to load: 20250323 or 2025-03-23 (default: today, UTC).
    #[arg(long, value_parser = parse_date)]
    date: Option<RunDate>,
    #[command(flatten)]
    opts: RunOpts,
}

#[derive(Args, Debug)]
struct ScheduleArgs {
    /// Run the pipelines without a `schedule` (cron) now and then at this
    /// interval: 1h, 30m, 90s. A run that takes longer delays the next one;
    /// missed intervals are not made up. Without it, only pipelines with a
    /// `schedule` run.
    #[arg(long, value_parser = humantime::parse_duration)]
    every: Option<Duration>,
    #[command(flatten)]
    opts: RunOpts,
}

#[derive(Args, Debug)]
struct SlotsArgs {
    #[command(subcommand)]
    action: Option<SlotsAction>,
    /// Only this pipeline (repeatable).
    #[arg(long = "pipeline", short = 'p')]
    pipelines: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum SlotsAction {
    /// Drop the replication slot of a pipeline (set it inactive first): the
    /// server recycles the WAL the slot kept. Its next run would fail.
    Drop {
        pipeline: String,
        /// Drop it even though the pipeline is active.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
struct StreamArgs {
    /// Stream only this pipeline (repeatable); inactive pipelines stream when named.
    #[arg(long = "pipeline", short = 'p')]
    pipelines: Vec<String>,
    /// Seconds without a heartbeat after which another runner takes a pipeline over.
    #[arg(long, env = "WEIR_LEASE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    lease_seconds: u64,
}

#[derive(Args, Debug, Clone, Default)]
struct RunOpts {
    /// Run only this pipeline (repeatable); inactive pipelines run when named.
    #[arg(long = "pipeline", short = 'p')]
    pipelines: Vec<String>,
    /// Read and check the sources and count rows, without writing anything.
    #[arg(long)]
    skip_load: bool,
    /// Pipelines at once (default: the number of cores).
    #[arg(long, env = "WEIR_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Retries after a transient error, for pipelines whose options.retries is unset (default 2).
    #[arg(long, env = "WEIR_RETRIES")]
    retries: Option<u32>,
    /// Seconds without a heartbeat after which another runner takes a pipeline over.
    #[arg(long, env = "WEIR_LEASE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    lease_seconds: u64,
    /// No progress bars, even on a terminal.
    #[arg(long)]
    no_progress: bool,
    /// Print the run summary as a table or JSON.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

impl RunOpts {
    fn config(&self, run_date: RunDate) -> RunConfig {
        let mut config = RunConfig::new(run_date);
        config.pipelines.clone_from(&self.pipelines);
        config.skip_load = self.skip_load;
        if let Some(n) = self.concurrency {
            config.concurrency = n.max(1);
        }
        config.retries = self.retries;
        config.lease = Duration::from_secs(self.lease_seconds);
        config
    }
}

#[derive(Args, Debug)]
struct AuditArgs {
    /// Only this pipeline.
    #[arg(long = "pipeline", short = 'p')]
    pipeline: Option<String>,
    /// How many rows, newest first.
    #[arg(long, default_value_t = 20)]
    last: i64,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Args, Debug)]
struct FormatArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Args, Debug)]
struct CheckArgs {
    #[arg(long = "pipeline", short = 'p')]
    pipelines: Vec<String>,
}

fn parse_date(s: &str) -> Result<RunDate, String> {
    RunDate::parse(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    // A missing .env is fine; a broken one is reported.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: .env could not be read: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    // Both rustls providers are linked in: name one, for the libraries that take the default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let progress = Progress::new(show_progress(&cli));
    let _log_file = match init_logging(&cli.global, &progress) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(cli, progress))
}

/// Progress bars: for runs, on a terminal, with text logs.
fn show_progress(cli: &Cli) -> bool {
    let opts = match &cli.command {
        None => &cli.run.opts,
        Some(Command::Run(args)) => &args.opts,
        Some(Command::Schedule(args)) => &args.opts,
        Some(_) => return false,
    };
    !opts.no_progress
        && matches!(cli.global.log_format, LogFormat::Text)
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Log lines to stderr (above the progress bars), and to a daily file with `--log-dir`.
fn init_logging(
    global: &Global,
    progress: &Progress,
) -> Result<Option<tracing_appender::non_blocking::WorkerGuard>, String> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, fmt};
    let filter =
        EnvFilter::try_from_env("WEIR_LOG").or_else(|_| EnvFilter::try_from_default_env()).unwrap_or_else(|_| {
            EnvFilter::new("info,sqlx=warn,sqlx::query=error,buoyant_kernel=warn,deltalake_core=off,rskafka=warn")
        });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let progress = progress.clone();
    let stderr = move || progress.writer();
    let json = matches!(global.log_format, LogFormat::Json);
    let (file, guard) = match &global.log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("--log-dir {}: {e}", dir.display()))?;
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("weir.log")
                .build(dir)
                .map_err(|e| format!("--log-dir {}: {e}", dir.display()))?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (Some(writer), Some(guard))
        }
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(filter);
    match json {
        true => registry
            .with(fmt::layer().json().with_writer(stderr))
            .with(file.map(|w| fmt::layer().json().with_writer(w)))
            .init(),
        false => registry
            .with(fmt::layer().with_target(false).compact().with_ansi(ansi).with_writer(stderr))
            .with(file.map(|w| fmt::layer().with_target(false).with_ansi(false).with_writer(w)))
            .init(),
    }
    Ok(guard)
}

/// The metadata database URL: `--database-url`, `WEIR_DATABASE_URL`, else `DATABASE_URL`.
fn metadata_url(global: &Global) -> Result<ConnectionUrl, String> {
    let url = global.database_url.clone().or_else(|| std::env::var("DATABASE_URL").ok()).ok_or(
        "no metadata database: set WEIR_DATABASE_URL (or DATABASE_URL), e.g. postgres://postgres@127.0.0.1:5432/weir",
    )?;
    ConnectionUrl::parse("metadata", &url).map_err(|e| e.to_string())
}

async fn run(cli: Cli, progress: Progress) -> ExitCode {
    let url = match metadata_url(&cli.global) {
        Ok(u) => u,
        Err(e) => return usage_error(&e, &Redactor::new()),
    };
    let mut redactor = Redactor::new();
    redactor.add_connection(&url);
    // The server keeps a larger pool, whose requests say "down" within seconds.
    let connected = match &cli.command {
        Some(Command::Serve(_)) => MetaStore::connect_with(&url, 16, Duration::from_secs(3)).await,
        _ => MetaStore::connect(&url).await,
    };
    let meta = match connected {
        Ok(m) => m,
        Err(e) => return usage_error(e.message(), &redactor),
    };
    let command = cli.command.unwrap_or(Command::Run(cli.run));
    let result = match command {
        Command::Init => init(&meta).await,
        Command::Run(args) => return run_pipelines(meta, url, args, progress, &redactor).await,
        Command::Schedule(args) => return schedule(meta, url, args, progress, &redactor).await,
        Command::Stream(args) => return stream(meta, url, args, &redactor).await,
        Command::Slots(args) => slots(&engine(meta, url), args).await,
        Command::Audit(args) => match meta.audit_history(args.pipeline.as_deref(), args.last.max(1)).await {
            Ok(rows) => output::audit(&rows, args.format),
            Err(e) => Err(e.to_string()),
        },
        Command::Pipelines(args) => match meta.pipelines(&[], true).await {
            Ok(rows) => {
                // Each cdc pipeline's slot, from its source (a few seconds at most).
                let mut slots = std::collections::HashMap::new();
                if rows.iter().any(|r| r.load_type == "cdc") {
                    let engine = engine(meta.clone(), url.clone());
                    if let Ok(Ok(reports)) = tokio::time::timeout(Duration::from_secs(10), engine.slots(&[])).await {
                        for r in reports {
                            let text = match r.status {
                                Ok(s) if s.needs_attention() => format!("WARN {}", s.describe()),
                                Ok(s) => s.describe(),
                                Err(e) => format!("unknown: {e}"),
                            };
                            slots.insert(r.pipeline, text);
                        }
                    }
                }
                output::pipelines(&rows, &slots, args.format)
            }
            Err(e) => Err(e.to_string()),
        },
        Command::Check(args) => return check(meta, url, &args.pipelines, &redactor).await,
        Command::Catalog(args) => catalog(&engine(meta, url), args).await,
        Command::Query(args) => query(&engine(meta, url), args).await,
        Command::Maintain(args) => return maintain(&engine(meta, url), args, &redactor).await,
        Command::Serve(args) => return serve(meta, url, args, &redactor).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage_error(&e, &redactor),
    }
}

fn usage_error(message: &str, redactor: &Redactor) -> ExitCode {
    eprintln!("error: {}", redactor.redact(message));
    ExitCode::from(2)
}

fn engine(meta: MetaStore, url: ConnectionUrl) -> Engine {
    Engine::new(meta, url, Registry::builtin(), Arc::new(|k| std::env::var(k).ok()))
}

async fn init(meta: &MetaStore) -> Result<(), String> {
    let report = meta.init().await.map_err(|e| e.to_string())?;
    if report.applied.is_empty() {
        println!("metadata tables are up to date ({} migration(s) already applied)", report.already);
    } else {
        for m in &report.applied {
            println!("applied migration {m}");
        }
        println!("metadata tables ready: controller, audit, watermark, catalog");
    }
    Ok(())
}

/// The engine for runs: with the completion email, if configured, and progress.
fn run_engine(meta: MetaStore, url: ConnectionUrl, progress: &Progress) -> Result<Engine, String> {
    let mut engine = engine(meta, url).with_observer(progress.observer());
    if let Some(notifier) = Notifier::from_env(|k| std::env::var(k).ok()).map_err(|e| e.to_string())? {
        engine = engine.with_notifier(notifier);
    }
    Ok(engine)
}

/// Ctrl-C or SIGTERM cancels the run: running loads stop before they commit and
/// are recorded `failed` ("cancelled"). A second one exits at once.
fn cancel_on_signals() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            #[cfg(unix)]
            let terminate = async {
                match term.as_mut() {
                    Some(t) => t.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let terminate = std::future::pending::<Option<()>>();
            let signal = tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = terminate => "SIGTERM",
            };
            if token.is_cancelled() {
                eprintln!("runner: {signal} again: exiting now");
                std::process::exit(130);
            }
            warn!(signal, "stopping: running loads are rolled back; send it again to exit at once");
            token.cancel();
        }
    });
    cancel
}

async fn run_pipelines(
    meta: MetaStore,
    url: ConnectionUrl,
    args: RunArgs,
    progress: Progress,
    redactor: &Redactor,
) -> ExitCode {
    let engine = match run_engine(meta, url, &progress) {
        Ok(e) => e,
        Err(e) => return usage_error(&e, redactor),
    };
    let config = args.opts.config(args.date.unwrap_or_else(RunDate::today_utc));
    let report = match engine.run(&config, cancel_on_signals()).await {
        Ok(r) => r,
        Err(e) => return usage_error(e.message(), redactor),
    };
    if let Err(e) = output::run_summary(&report, args.opts.format) {
        return usage_error(&e, redactor);
    }
    if report.all_succeeded() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// `runner schedule [--every 1h]`: see [`Engine::schedule`]. Stops on SIGTERM
/// or Ctrl-C: at once between runs (exit 0), or by cancelling the running
/// loads (exit 1).
async fn schedule(
    meta: MetaStore,
    url: ConnectionUrl,
    args: ScheduleArgs,
    progress: Progress,
    redactor: &Redactor,
) -> ExitCode {
    if args.every.is_some_and(|e| e.is_zero()) {
        return usage_error("--every must be longer than zero", redactor);
    }
    let engine = match run_engine(meta, url, &progress) {
        Ok(e) => e,
        Err(e) => return usage_error(&e, redactor),
    };
    let template = args.opts.config(RunDate::today_utc());
    let format = args.opts.format;
    let clean = engine
        .schedule(args.every, &template, cancel_on_signals(), |report| {
            if let Err(e) = output::run_summary(report, format) {
                warn!(error = %e, "could not print the run summary");
            }
        })
        .await;
    if clean { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// The first Ctrl-C or SIGTERM cancels the token (logging `message`); the
/// command then finishes in its own time.
fn cancel_on_first_signal(message: &'static str) -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => term.recv().await,
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<Option<()>>();
        let signal = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = terminate => "SIGTERM",
        };
        warn!(signal, "{message}");
        token.cancel();
    });
    cancel
}

/// `runner stream`: see [`Engine::stream`]. SIGTERM or Ctrl-C commits what
/// each pipeline has and exits 0; a pipeline whose stream failed makes it 1.
async fn stream(meta: MetaStore, url: ConnectionUrl, args: StreamArgs, redactor: &Redactor) -> ExitCode {
    let config = StreamConfig { pipelines: args.pipelines, lease: Duration::from_secs(args.lease_seconds) };
    let cancel = cancel_on_first_signal("stopping: each pipeline commits what it has read, then the stream ends");
    let reports = match engine(meta, url).stream(&config, cancel).await {
        Ok(r) => r,
        Err(e) => return usage_error(e.message(), redactor),
    };
    for r in &reports {
        match &r.error {
            None => println!(
                "{}: {} rows read, {} written, at {}",
                r.name,
                r.records_read,
                r.records_written,
                r.watermark.as_deref().unwrap_or("-")
            ),
            Some(e) => println!("{}: FAILED: {e}", r.name),
        }
    }
    if reports.iter().all(|r| r.succeeded()) { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// A slot's line, with the other pipelines that read it.
fn slot_line(status: &weir_core::CaptureStatus, shared_with: &[String]) -> String {
    match shared_with {
        [] => status.describe(),
        others => format!("{}; shared with {}", status.describe(), others.join(", ")),
    }
}

/// `runner slots`: one line per cdc pipeline; `runner slots drop PIPELINE`.
async fn slots(engine: &Engine, args: SlotsArgs) -> Result<(), String> {
    if let Some(SlotsAction::Drop { pipeline, force }) = args.action {
        match engine.drop_slot(&pipeline, force).await.map_err(|e| e.to_string())? {
            Some(slot) => println!("dropped replication slot {slot} of pipeline {pipeline}"),
            None => println!("pipeline {pipeline} has no replication slot on its source"),
        }
        return Ok(());
    }
    let reports = engine.slots(&args.pipelines).await.map_err(|e| e.to_string())?;
    if reports.is_empty() {
        println!("no cdc pipeline");
    }
    for r in reports {
        let state = if r.active { "" } else { " (pipeline inactive)" };
        match r.status {
            Ok(s) if s.needs_attention() => {
                println!("WARN    {}{state}: {}", r.pipeline, slot_line(&s, &r.shared_with))
            }
            Ok(s) => println!("ok      {}{state}: {}", r.pipeline, slot_line(&s, &r.shared_with)),
            Err(e) => println!("FAILED  {}{state}: {e}", r.pipeline),
        }
    }
    Ok(())
}

async fn check(meta: MetaStore, url: ConnectionUrl, pipelines: &[String], redactor: &Redactor) -> ExitCode {
    let engine = match run_engine(meta, url, &Progress::new(false)) {
        Ok(e) => e,
        Err(e) => return usage_error(&e, redactor),
    };
    let results = match engine.check(pipelines).await {
        Ok(r) => r,
        Err(e) => return usage_error(e.message(), redactor),
    };
    let mut ok = true;
    for (name, result) in &results {
        match result {
            Ok(None) => println!("ok      {name}"),
            Ok(Some(schema)) => {
                // The columns options.transform gives the destination.
                println!("ok      {name}: options.transform gives");
                for f in schema.fields().iter().filter(|f| !weir_core::changes::is_meta(f.name())) {
                    let null = if f.is_nullable() { "" } else { " not null" };
                    println!("          {} {}{null}", f.name(), f.data_type());
                }
            }
            Err(e) => {
                ok = false;
                println!("FAILED  {name}: {e}");
            }
        }
    }
    // The slots of the cdc pipelines: a slot that keeps too much WAL fills the server's disk.
    if let Ok(reports) = engine.slots(pipelines).await {
        for r in reports {
            // A slot that cannot be read: the pipeline's own check above says why.
            if let Ok(s) = r.status {
                let level = if s.needs_attention() { "WARN" } else { "ok" };
                println!("{level:<7} {}: {}", r.pipeline, slot_line(&s, &r.shared_with));
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

async fn catalog(engine: &Engine, args: CatalogArgs) -> Result<(), String> {
    match args.action {
        None => output::catalog(&engine.catalog().await.map_err(|e| e.to_string())?, args.format),
        Some(CatalogAction::Ddl { dialect }) => {
            let dialect = match dialect {
                DdlDialect::Spark => Dialect::Spark,
                DdlDialect::Trino => Dialect::Trino,
            };
            print!("{}", engine.catalog_ddl(dialect).await.map_err(|e| e.to_string())?);
            Ok(())
        }
    }
}

/// A query's errors before the first row (bad SQL, unknown table) exit with 2.
async fn query(engine: &Engine, args: QueryArgs) -> Result<(), String> {
    let result = engine.query(&args.sql).await.map_err(|e| e.to_string())?;
    output::query(result, args.format).await
}

async fn maintain(engine: &Engine, args: MaintainArgs, redactor: &Redactor) -> ExitCode {
    let options = MaintainOptions {
        retention: std::time::Duration::from_secs(args.retention_hours.saturating_mul(3600)),
        target_file_size: args.target_file_mb.and_then(|mb| std::num::NonZeroU64::new(mb.saturating_mul(1 << 20))),
    };
    let outcomes = match engine.maintain(&args.tables, &options).await {
        Ok(o) => o,
        Err(e) => return usage_error(e.message(), redactor),
    };
    if let Err(e) = output::maintain(&outcomes, args.format) {
        return usage_error(&e, redactor);
    }
    if outcomes.iter().all(|o| o.error.is_none()) { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// `runner serve`: see [`weir_server::serve`]. SIGTERM or Ctrl-C stops taking
/// requests, answers those under way, stores the events queued, and exits 0.
async fn serve(meta: MetaStore, url: ConnectionUrl, args: ServeArgs, redactor: &Redactor) -> ExitCode {
    let engine = match run_engine(meta, url, &Progress::new(false)) {
        Ok(e) => e,
        Err(e) => return usage_error(&e, redactor),
    };
    let mut config =
        weir_server::ServerConfig::new(args.listen, weir_server::Tokens::from_env(|k| std::env::var(k).ok()));
    config.query_timeout = args.query_timeout;
    config.query_rows = args.query_rows.max(1);
    config.ingest.rate = args.ingest_rate;
    config.ingest.queue = args.ingest_queue.max(1);
    config.events_lake_table = args.events_lake_table;
    config.secure_cookies = args.secure_cookies;
    let cancel = cancel_on_first_signal("stopping: answering the requests under way and storing the queued events");
    match weir_server::serve(engine, config, cancel).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage_error(e.message(), redactor),
    }
}
