//! An independent reader of Delta tables: the Python `deltalake` package (the
//! delta-rs Python binding, with its own log replay and pyarrow reader), run as
//! a subprocess. Proves a table Weir wrote is valid Delta to someone else.
//! `scripts/services.sh` installs it.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::Deserialize;

/// What the reader saw: the latest version, the columns and every row.
#[derive(Debug, Deserialize)]
pub struct DeltaRead {
    pub version: i64,
    /// `(name, pyarrow type)`, e.g. `("order_id", "int64")`.
    pub columns: Vec<(String, String)>,
    /// Rows as JSON objects; timestamps and decimals as text.
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    pub files: usize,
    pub partition_columns: Vec<String>,
}

impl DeltaRead {
    /// The values of one column, in row order.
    pub fn column(&self, name: &str) -> Vec<serde_json::Value> {
        self.rows.iter().map(|r| r.get(name).cloned().unwrap_or(serde_json::Value::Null)).collect()
    }

    /// The row whose `key` column equals `value`.
    pub fn row(&self, key: &str, value: i64) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.rows.iter().find(|r| r.get(key).and_then(serde_json::Value::as_i64) == Some(value))
    }
}

const READER: &str = r#"
import json, os, sys
from deltalake import DeltaTable
uri, options = sys.argv[1], json.loads(sys.argv[2])
t = DeltaTable(uri, storage_options=options or None)
data = t.to_pyarrow_table()
print(json.dumps({
    "version": t.version(),
    "columns": [[f.name, str(f.type)] for f in data.schema],
    "rows": data.to_pylist(),
    "files": len(t.file_uris()),
    "partition_columns": t.metadata().partition_columns,
}, default=str))
sys.stdout.flush()
# Skip interpreter teardown: pyarrow's and delta-rs's thread pools can abort
# ("terminate called without an active exception") while being torn down.
os._exit(0)
"#;

/// Read the table at `uri` (`/local/path` or `s3://bucket/…` with `options`).
/// Async: the S3 server it may talk to runs on the caller's runtime.
pub async fn read(uri: &str, options: &BTreeMap<String, String>) -> anyhow::Result<DeltaRead> {
    let out = tokio::process::Command::new("python3")
        .args(["-c", READER, uri, &serde_json::to_string(options)?])
        .output()
        .await
        .context("running python3 (the deltalake reader)")?;
    if !out.status.success() {
        bail!("the deltalake reader failed on {uri}: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).context("parsing the deltalake reader's output")
}

/// Storage options for the Python reader on the test S3 server.
pub fn s3_options(endpoint: &str) -> BTreeMap<String, String> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", crate::s3::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", crate::s3::SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}
