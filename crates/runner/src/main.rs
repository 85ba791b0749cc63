//! `runner`: Weir's command line. Parses, calls the engine, prints.
//!
//! Exit codes: 0 every pipeline succeeded; 1 some pipeline failed; 2 usage or
//! configuration error (bad flags, no metadata database, unknown pipeline).

mod output;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use weir_core::{ConnectionUrl, Redactor, RunDate};
use weir_engine::{Dialect, Engine, MaintainOptions, Registry, RunConfig};
use weir_meta::MetaStore;

use crate::output::Format;

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
    /// Run only this pipeline (repeatable); inactive pipelines run when named.
    #[arg(long = "pipeline", short = 'p')]
    pipelines: Vec<String>,
    /// Read and check the sources and count rows, without writing anything.
    #[arg(long)]
    skip_load: bool,
    /// Print the run summary as a table or JSON.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
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
    init_logging(cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(cli))
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WEIR_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,buoyant_kernel=warn,deltalake_core=off"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_target(false).compact().init(),
    }
}

/// The metadata database URL: `--database-url`, `WEIR_DATABASE_URL`, else `DATABASE_URL`.
fn metadata_url(global: &Global) -> Result<ConnectionUrl, String> {
    let url = global.database_url.clone().or_else(|| std::env::var("DATABASE_URL").ok()).ok_or(
        "no metadata database: set WEIR_DATABASE_URL (or DATABASE_URL), e.g. postgres://postgres@127.0.0.1:5432/weir",
    )?;
    ConnectionUrl::parse("metadata", &url).map_err(|e| e.to_string())
}

async fn run(cli: Cli) -> ExitCode {
    let url = match metadata_url(&cli.global) {
        Ok(u) => u,
        Err(e) => return usage_error(&e, &Redactor::new()),
    };
    let mut redactor = Redactor::new();
    redactor.add_connection(&url);
    let meta = match MetaStore::connect(&url).await {
        Ok(m) => m,
        Err(e) => return usage_error(e.message(), &redactor),
    };
    let command = cli.command.unwrap_or(Command::Run(cli.run));
    let result = match command {
        Command::Init => init(&meta).await,
        Command::Run(args) => return run_pipelines(meta, url, args, &redactor).await,
        Command::Audit(args) => match meta.audit_history(args.pipeline.as_deref(), args.last.max(1)).await {
            Ok(rows) => output::audit(&rows, args.format),
            Err(e) => Err(e.to_string()),
        },
        Command::Pipelines(args) => match meta.pipelines(&[], true).await {
            Ok(rows) => output::pipelines(&rows, args.format),
            Err(e) => Err(e.to_string()),
        },
        Command::Check(args) => return check(meta, url, &args.pipelines, &redactor).await,
        Command::Catalog(args) => catalog(&engine(meta, url), args).await,
        Command::Query(args) => query(&engine(meta, url), args).await,
        Command::Maintain(args) => return maintain(&engine(meta, url), args, &redactor).await,
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

async fn run_pipelines(meta: MetaStore, url: ConnectionUrl, args: RunArgs, redactor: &Redactor) -> ExitCode {
    let config = RunConfig {
        run_date: args.date.unwrap_or_else(RunDate::today_utc),
        pipelines: args.pipelines,
        skip_load: args.skip_load,
    };
    let report = match engine(meta, url).run(&config).await {
        Ok(r) => r,
        Err(e) => return usage_error(e.message(), redactor),
    };
    if let Err(e) = output::run_summary(&report, args.format) {
        return usage_error(&e, redactor);
    }
    if report.all_succeeded() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

async fn check(meta: MetaStore, url: ConnectionUrl, pipelines: &[String], redactor: &Redactor) -> ExitCode {
    let results = match engine(meta, url).check(pipelines).await {
        Ok(r) => r,
        Err(e) => return usage_error(e.message(), redactor),
    };
    let mut ok = true;
    for (name, result) in &results {
        match result {
            Ok(()) => println!("ok      {name}"),
            Err(e) => {
                ok = false;
                println!("FAILED  {name}: {e}");
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
