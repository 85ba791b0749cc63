//! The Parquet type matrix: one file per case, written by pyarrow
//! (`typematrix/gen.py`: every physical and logical type, encoding, page
//! version and codec, nulls at every nesting level, legacy layouts, malformed
//! footers, corrupt pages), each with what PostgreSQL and Delta must make of it;
//! and the checker (`typematrix/check.py`) that reads what Weir loaded with
//! independent clients (psycopg; Python deltalake and DuckDB) and compares it,
//! value for value, with pyarrow's own reading of the file.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The folder of the generator and the checker.
pub fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("typematrix")
}

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    /// The case's folder, relative to the output folder (`ints_signed/`).
    pub path: String,
    pub postgres: Expect,
    pub delta: Expect,
}

/// What a destination must make of a case.
#[derive(Debug, Deserialize)]
pub struct Expect {
    /// `exact` or `fails`.
    pub outcome: String,
    /// For `exact`: the `audit.details` counts the load must report.
    #[serde(default)]
    pub counted: serde_json::Map<String, serde_json::Value>,
    /// For `fails`: substrings of the error message.
    #[serde(default)]
    pub message: Vec<String>,
}

impl Expect {
    pub fn fails(&self) -> bool {
        self.outcome == "fails"
    }
}

/// Write every case's file under `out` and return the manifest.
pub async fn generate(out: &Path) -> anyhow::Result<Manifest> {
    let done = tokio::process::Command::new("python3")
        .arg(folder().join("gen.py"))
        .arg(out)
        .output()
        .await
        .context("running python3 typematrix/gen.py (scripts/services.sh installs pyarrow)")?;
    if !done.status.success() {
        bail!("typematrix/gen.py failed: {}", String::from_utf8_lossy(&done.stderr));
    }
    let text = std::fs::read_to_string(out.join("manifest.json")).context("reading the manifest")?;
    serde_json::from_str(&text).context("parsing the manifest")
}

/// Where the checker finds what was loaded.
pub struct Loaded<'a> {
    pub data: &'a Path,
    pub pg_url: &'a str,
    pub pg_schema: &'a str,
    pub lake: &'a Path,
    pub delta_schema: &'a str,
    /// `{case: {"postgres": details, "delta": details}}`, the audit rows' counts.
    pub details: &'a Path,
}

/// Run the checker; `Ok(report)` when every value matched, else the report of what did not.
pub async fn check(loaded: &Loaded<'_>) -> anyhow::Result<Result<String, String>> {
    let done = tokio::process::Command::new("python3")
        .arg(folder().join("check.py"))
        .arg("--manifest")
        .arg(loaded.data.join("manifest.json"))
        .arg("--data")
        .arg(loaded.data)
        .args(["--pg-url", loaded.pg_url, "--pg-schema", loaded.pg_schema])
        .arg("--lake")
        .arg(loaded.lake)
        .args(["--delta-schema", loaded.delta_schema])
        .arg("--details")
        .arg(loaded.details)
        .env("PYTHONWARNINGS", "ignore::DeprecationWarning")
        .output()
        .await
        .context("running python3 typematrix/check.py")?;
    let report = format!("{}{}", String::from_utf8_lossy(&done.stdout), String::from_utf8_lossy(&done.stderr));
    Ok(if done.status.success() { Ok(report) } else { Err(report) })
}
