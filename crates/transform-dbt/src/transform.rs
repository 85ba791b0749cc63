//! Running dbt: a child process per run, in a private folder for its profile,
//! artifacts and logs, so runs never share state and the project folder stays
//! untouched.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tracing::{debug, info};
use weir_core::{ConnectionUrl, Error, Result, Secret, Transform, TransformOutcome, TransformRequest};

use crate::DbtOptions;
use crate::profile::{self, PASSWORD_VAR, PROFILE};
use crate::results::RunResults;

/// The dbt executable: `WEIR_DBT`, else `dbt` on the `PATH`.
const EXECUTABLE_VAR: &str = "WEIR_DBT";
/// Lines of dbt's output kept for an error that `run_results.json` cannot explain.
const TAIL_LINES: usize = 40;

pub struct DbtTransform {
    project: PathBuf,
    /// The profile's default schema: where models without their own schema go.
    schema: String,
    /// The warehouse; `None` when `options.profiles_dir` names the user's own profile.
    connection: Option<ConnectionUrl>,
    options: DbtOptions,
}

/// What one dbt process left behind.
struct Finished {
    status: ExitStatus,
    /// The end of its output, for errors before any node ran.
    tail: Vec<String>,
    results: Option<RunResults>,
}

impl DbtTransform {
    pub fn new(project: PathBuf, schema: String, connection: Option<ConnectionUrl>, options: DbtOptions) -> Self {
        Self { project, schema, connection, options }
    }

    fn executable() -> String {
        std::env::var(EXECUTABLE_VAR).ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "dbt".to_owned())
    }

    fn target(&self) -> &str {
        self.options.target.as_deref().unwrap_or("weir")
    }

    fn check_project(&self) -> Result<()> {
        if self.project.join("dbt_project.yml").is_file() {
            return Ok(());
        }
        Err(Error::user(format!(
            "data_source `{}` holds no dbt_project.yml (from the working directory {}); name a dbt project's folder",
            self.project.display(),
            std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default()
        )))
    }

    /// Run `dbt <args…>` with the pipeline's profile and wait for it.
    async fn invoke(&self, args: Vec<String>) -> Result<Finished> {
        self.check_project()?;
        let work = tempfile::Builder::new()
            .prefix("weir-dbt-")
            .tempdir()
            .map_err(|e| Error::external(format!("creating a folder for dbt's artifacts: {e}")))?;
        let exe = Self::executable();
        let mut cmd = Command::new(&exe);
        cmd.args(&args)
            .arg("--project-dir")
            .arg(&self.project)
            // As variables, not flags: every dbt command takes them (`dbt debug` has no --target-path).
            .env("DBT_TARGET_PATH", work.path().join("target"))
            .env("DBT_LOG_PATH", work.path().join("logs"))
            .arg("--target")
            .arg(self.target())
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            .env("DBT_USE_COLORS", "false")
            .env_remove(PASSWORD_VAR)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // What dbt prints is logged; it must never carry the password.
        let mut password = None;
        match (&self.options.profiles_dir, &self.connection) {
            (Some(dir), _) => {
                cmd.arg("--profiles-dir").arg(dir);
            }
            (None, Some(conn)) => {
                let threads = self.options.threads.unwrap_or(4);
                let (text, secret) = profile::render(conn, self.target(), &self.schema, threads);
                std::fs::write(work.path().join("profiles.yml"), text)
                    .map_err(|e| Error::external(format!("writing dbt's profile: {e}")))?;
                cmd.arg("--profiles-dir").arg(work.path()).arg("--profile").arg(PROFILE);
                cmd.env(PASSWORD_VAR, secret.as_ref().map(Secret::expose).unwrap_or_default());
                password = secret.filter(|p| !p.expose().is_empty());
            }
            (None, None) => return Err(Error::internal("dbt has neither a connection nor a profiles_dir")),
        }
        debug!(command = %format!("{exe} {}", args.join(" ")), "starting dbt");
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::user(format!(
                "dbt is not installed here (`{exe}` not found): pip install \"dbt-core<1.12\" dbt-postgres, \
                 or set {EXECUTABLE_VAR} to its path"
            )),
            _ => Error::external(format!("starting dbt (`{exe}`): {e}")),
        })?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (out_tail, err_tail, status) =
            tokio::join!(lines(stdout, &password), lines(stderr, &password), child.wait());
        let status = status.map_err(|e| Error::external(format!("waiting for dbt: {e}")))?;
        let mut tail: Vec<String> = out_tail.into_iter().collect();
        tail.extend(err_tail);
        let results = match std::fs::read_to_string(work.path().join("target/run_results.json")) {
            Ok(text) => Some(
                RunResults::parse(&text)
                    .map_err(|e| Error::external(format!("reading dbt's run_results.json: {e}")))?,
            ),
            Err(_) => None,
        };
        Ok(Finished { status, tail, results })
    }

    fn vars(&self, request: &TransformRequest) -> Value {
        let mut vars = self.options.vars.clone().unwrap_or_default();
        vars.insert("run_date".into(), request.run_date.date().to_string().into());
        vars.insert("weir_run_id".into(), request.run_id.to_string().into());
        vars.insert("weir_pipeline".into(), request.pipeline.clone().into());
        Value::Object(vars)
    }
}

#[async_trait::async_trait]
impl Transform for DbtTransform {
    async fn check(&self) -> Result<()> {
        let done = self.invoke(vec!["debug".into()]).await?;
        match done.status.success() {
            true => Ok(()),
            false => Err(not_run("debug", &done)),
        }
    }

    async fn run(&self, request: &TransformRequest) -> Result<TransformOutcome> {
        let command = match request.dry_run {
            true => "compile",
            false => self.options.command.as_deref().unwrap_or("build"),
        };
        let mut args = vec![command.to_owned(), "--vars".to_owned(), self.vars(request).to_string()];
        if let Some(threads) = self.options.threads {
            args.extend(["--threads".to_owned(), threads.to_string()]);
        }
        for (flag, selection) in [("--select", &self.options.select), ("--exclude", &self.options.exclude)] {
            if let Some(selection) = selection {
                args.push(flag.to_owned());
                args.extend(selection.args());
            }
        }
        if request.full_refresh && matches!(command, "build" | "run" | "seed") {
            args.push("--full-refresh".to_owned());
        }
        let done = self.invoke(args).await?;
        let results = match (&done.results, done.status.success()) {
            (Some(results), true) => results,
            (Some(results), false) => match results.failure() {
                Some(failure) => return Err(classify(format!("dbt {command} failed: {failure}"))),
                None => return Err(not_run(command, &done)),
            },
            (None, _) => return Err(not_run(command, &done)),
        };
        let (summary, rows_affected) = (results.summary(command), results.rows_affected());
        info!(dbt = command, summary = %summary, rows_affected, "dbt finished");
        Ok(TransformOutcome {
            rows_affected,
            summary: format!("dbt {command}: {summary}"),
            details: Some(results.details(command)),
        })
    }
}

/// An error from dbt's output, for a dbt that stopped before or outside its
/// nodes (a bad project, a profile it cannot use, a database it cannot reach).
fn not_run(command: &str, done: &Finished) -> Error {
    let lines: Vec<&str> = done.tail.iter().map(|l| strip_clock(l)).filter(|l| !l.is_empty()).collect();
    // dbt says "Encountered an error:" and then what; else its last words.
    let from = lines.iter().rposition(|l| l.starts_with("Encountered an error")).map(|i| i + 1);
    let said = match from {
        Some(i) => lines[i..].join(" "),
        None => lines[lines.len().saturating_sub(5)..].join(" "),
    };
    let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
    let how = match done.status.code() {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_owned(),
    };
    classify(format!("dbt {command} did not finish ({how}): {}", if said.is_empty() { "no output" } else { &said }))
}

/// A lost or refused database connection may pass; anything else is the project's to fix.
fn classify(message: String) -> Error {
    let lower = message.to_ascii_lowercase();
    let transient = ["could not connect", "connection refused", "server closed the connection", "connection timed out"]
        .iter()
        .any(|p| lower.contains(p));
    if transient { Error::transient(message) } else { Error::user(message) }
}

/// `12:00:01  Completed successfully` → `Completed successfully`.
fn strip_clock(line: &str) -> &str {
    let line = line.trim();
    let b = line.as_bytes();
    if b.len() >= 8 && b[2] == b':' && b[5] == b':' && b[..8].iter().all(|c| c.is_ascii_digit() || *c == b':') {
        return line[8..].trim_start();
    }
    line
}

/// Log a stream's lines at debug level and keep its last [`TAIL_LINES`].
async fn lines(stream: Option<impl AsyncRead + Unpin>, password: &Option<Secret>) -> VecDeque<String> {
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let Some(stream) = stream else { return tail };
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = match password {
            Some(p) => line.replace(p.expose(), "***"),
            None => line,
        };
        debug!(target: "weir::dbt", "{line}");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail
}
