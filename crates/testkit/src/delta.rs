//! Independent readers of Delta tables, run as a subprocess: the Python
//! `deltalake` package (the delta-rs Python binding, with its own log replay
//! and pyarrow reader) and DuckDB's `delta` extension (delta-kernel-rs and
//! DuckDB's Parquet reader: no code shared with the writer). Every read goes
//! through both, and a table they read differently fails the read. Proves a
//! table Weir wrote is valid Delta to someone else. `scripts/services.sh`
//! installs both.

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
import datetime, decimal, glob, json, os, sys
from urllib.parse import urlparse
import duckdb, duckdb_extension_delta, duckdb_extension_httpfs
import pyarrow
from deltalake import DeltaTable, QueryBuilder
uri, options = sys.argv[1], json.loads(sys.argv[2])
t = DeltaTable(uri, storage_options=options or None)
if "delta.columnMapping.mode" in t.metadata().configuration:
    # to_pyarrow_table() reads a column-mapped table's columns as NULL (deltalake 1.6);
    # its DataFusion reader applies the mapping.
    data = pyarrow.table(QueryBuilder().register("t", t).execute("SELECT * FROM t").read_all())
else:
    data = t.to_pyarrow_table()

def extension(module, name):
    found = glob.glob(os.path.join(os.path.dirname(module.__file__), "**", name + ".duckdb_extension"), recursive=True)
    return found[0]

con = duckdb.connect()
con.execute("SET autoinstall_known_extensions = false")
con.execute(f"LOAD '{extension(duckdb_extension_httpfs, 'httpfs')}'")
con.execute(f"LOAD '{extension(duckdb_extension_delta, 'delta')}'")
if uri.startswith("s3://"):
    endpoint = urlparse(options["AWS_ENDPOINT_URL"])
    con.execute(
        "CREATE SECRET (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL false)",
        [options["AWS_ACCESS_KEY_ID"], options["AWS_SECRET_ACCESS_KEY"], options["AWS_REGION"], endpoint.netloc],
    )
duck = con.sql("SELECT * FROM delta_scan(?)", params=[uri]).fetch_arrow_table()

def plain(v):
    """A value as both readers' Python forms agree on: instants in UTC, containers as lists."""
    if isinstance(v, datetime.datetime) and v.tzinfo is not None:
        return v.astimezone(datetime.timezone.utc).replace(tzinfo=None).isoformat() + "Z"
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (decimal.Decimal, datetime.timedelta)):
        return str(v)
    return v

def jsonable(v):
    """NaN and ±Infinity, which JSON has no numbers for, as the strings Rust's f64 parses."""
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return "NaN" if v != v else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v

def canonical(table):
    return sorted(json.dumps(plain(r), default=repr, sort_keys=True) for r in table.to_pylist())

mine, theirs = canonical(data), canonical(duck)
if [f.name for f in data.schema] != [f.name for f in duck.schema] or mine != theirs:
    diff = next(((a, b) for a, b in zip(mine, theirs) if a != b), None)
    sys.stderr.write(
        "deltalake and DuckDB read the table differently: columns %s vs %s, %d vs %d rows; first difference: %s\n"
        % ([f.name for f in data.schema], [f.name for f in duck.schema], len(mine), len(theirs), diff)
    )
    sys.stderr.flush()
    os._exit(3)
print(json.dumps({
    "version": t.version(),
    "columns": [[f.name, str(f.type)] for f in data.schema],
    "rows": jsonable(data.to_pylist()),
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
