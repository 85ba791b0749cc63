//! ClickHouse's HTTP interface: statements as the request body, inserts as
//! `INSERT … FORMAT RowBinary` in the query string with the rows as the body.
//! The password travels in an `Authorization` header, never in a URL, so no
//! error or server log line carries it.

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tracing::warn;
use url::Url;
use weir_core::{ConnectionUrl, Error, Result, Secret};

/// Tries of a request that is safe to repeat before the error is the load's.
const TRIES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One HTTP client per process: its connections are reused by every load.
static HTTP: LazyLock<reqwest::Result<reqwest::Client>> = LazyLock::new(|| {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(600))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
});

/// A server, as a `clickhouse://user:password@host:8123/database` connection names it.
#[derive(Clone)]
pub struct Client {
    base: Url,
    auth: Option<Secret>,
    /// The connection's database: where tables without a schema go.
    pub database: String,
    /// `host:port`, for messages.
    pub server: String,
}

/// A failed request: the server's exception code, if it answered with one.
#[derive(Debug)]
pub struct Failure {
    pub code: Option<u32>,
    pub message: String,
}

impl Failure {
    /// Worth trying again: the network, or a server that is busy or starting.
    pub fn is_transient(&self) -> bool {
        match self.code {
            None => true,
            // Timeouts, too many queries or parts, memory, network, a table
            // read-only for a moment, an insert of unknown outcome.
            Some(c) => matches!(c, 159 | 164 | 202 | 203 | 209 | 210 | 241 | 242 | 252 | 319 | 425),
        }
    }

    pub fn into_error(self, doing: &str) -> Error {
        let text = format!("ClickHouse: {doing}: {}", self.message);
        match (self.is_transient(), self.code) {
            (true, _) => Error::transient(text),
            // Unknown table, column, database, identifier; syntax; type mismatches; access.
            (false, Some(_)) => Error::user(text),
            (false, None) => Error::external(text),
        }
    }
}

impl Client {
    pub fn new(connection: &ConnectionUrl) -> Result<Self> {
        let url = connection.url();
        let scheme = match connection.scheme() {
            "clickhouse" | "http" => "http",
            "clickhouses" | "https" => "https",
            other => {
                return Err(Error::user(format!(
                    "destination_connection {connection} is a {other}:// URL; a clickhouse destination needs \
                     clickhouse://user:password@host:8123/database (clickhouses:// for TLS)"
                )));
            }
        };
        let mut secure = scheme == "https";
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "secure" => secure = matches!(v.as_ref(), "true" | "1" | "yes"),
                other => {
                    return Err(Error::user(format!(
                        "destination_connection {connection}: unknown URL parameter `{other}` (known: secure)"
                    )));
                }
            }
        }
        let host =
            url.host_str().ok_or_else(|| Error::user(format!("destination_connection {connection} names no host")))?;
        let port = url.port().unwrap_or(if secure { 8443 } else { 8123 });
        let base = Url::parse(&format!("{}://{host}:{port}/", if secure { "https" } else { "http" }))
            .map_err(|e| Error::user(format!("destination_connection {connection}: {e}")))?;
        let user = decode(url.username());
        let auth = (!user.is_empty()).then(|| {
            let password = url.password().map(decode).unwrap_or_default();
            Secret::new(format!("Basic {}", base64(format!("{user}:{password}").as_bytes())))
        });
        let database = decode(url.path().trim_start_matches('/'));
        let database = if database.is_empty() { "default".to_owned() } else { database };
        Ok(Self { base, auth, database, server: format!("{host}:{port}") })
    }

    /// Run a statement that is safe to repeat (DDL with IF [NOT] EXISTS, a
    /// SELECT, an ALTER that attaches what it already attached): retried on
    /// transient failures. The answer's text.
    pub async fn execute(&self, sql: &str) -> std::result::Result<String, Failure> {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.send(&[], Bytes::copy_from_slice(sql.as_bytes())).await {
                Ok(body) => return Ok(String::from_utf8_lossy(&body).into_owned()),
                Err(f) if f.is_transient() && tries < TRIES => {
                    warn!(server = %self.server, code = f.code, error = %f.message, try_ = tries, "ClickHouse request failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(f) => return Err(f),
            }
        }
    }

    /// Run a statement, failing the load with what it was doing.
    pub async fn run(&self, sql: &str, doing: &str) -> Result<String> {
        self.execute(sql).await.map_err(|f| f.into_error(doing))
    }

    /// A SELECT's rows, as JSON objects (`FORMAT JSONEachRow` is added).
    pub async fn rows(&self, sql: &str, doing: &str) -> Result<Vec<serde_json::Map<String, Value>>> {
        let text = self.run(&format!("{sql} FORMAT JSONEachRow"), doing).await?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| match serde_json::from_str(l) {
                Ok(Value::Object(row)) => Ok(row),
                _ => Err(Error::external(format!("ClickHouse: {doing}: an answer that is not a JSON row: {l}"))),
            })
            .collect()
    }

    /// Send rows once: `INSERT INTO target FORMAT RowBinary` with `data`. Not
    /// retried here: a lost answer leaves it unknown whether the block
    /// landed, which only the caller can tell (see `load::insert_block`).
    pub async fn insert(&self, target: &str, columns: &str, data: Bytes) -> std::result::Result<(), Failure> {
        let query = format!("INSERT INTO {target} ({columns}) FORMAT RowBinary");
        self.send(&[("query", &query)], data).await.map(|_| ())
    }

    async fn send(&self, params: &[(&str, &str)], body: Bytes) -> std::result::Result<Bytes, Failure> {
        let http =
            HTTP.as_ref().map_err(|e| Failure { code: None, message: format!("building the HTTP client: {e}") })?;
        let mut url = self.base.clone();
        url.query_pairs_mut().append_pair("database", &self.database);
        for (k, v) in params {
            url.query_pairs_mut().append_pair(k, v);
        }
        let mut request = http.post(url).body(body);
        if let Some(auth) = &self.auth {
            request = request.header("authorization", auth.expose());
        }
        let response =
            request.send().await.map_err(|e| Failure { code: None, message: transport(&e, &self.server) })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| Failure { code: None, message: transport(&e, &self.server) })?;
        if status.is_success() {
            return Ok(body);
        }
        let text = String::from_utf8_lossy(&body);
        Err(Failure { code: exception_code(&text), message: exception_text(&text, status) })
    }
}

/// `Code: 60, e.displayText() = DB::Exception: Table x doesn't exist., e.what() = DB::Exception`
/// (18.16) or `Code: 60. DB::Exception: Table x does not exist. (UNKNOWN_TABLE) (version 24.3)`.
fn exception_code(text: &str) -> Option<u32> {
    let rest = text.trim_start().strip_prefix("Code: ")?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn exception_text(text: &str, status: reqwest::StatusCode) -> String {
    let text = text.trim();
    let text = text.split(", e.what() = ").next().unwrap_or(text);
    let text = text.replace("e.displayText() = ", "");
    if text.is_empty() { format!("HTTP {status}") } else { text }
}

/// A transport error's text and causes, without the URL (which carries the query).
fn transport(e: &reqwest::Error, server: &str) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(&format!(" ({url})"), "").replace(url.as_str(), "the server");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    format!("{text} (server {server})")
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn base64(input: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// A string literal: `'…'` with `\` and `'` escaped.
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// An identifier: `` `…` `` with `` ` `` and `\` escaped.
pub fn ident(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('`');
    for c in s.chars() {
        if c == '\\' || c == '`' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('`');
    out
}

/// A JSON value ClickHouse wrote as a number or, for 64-bit integers, a string.
pub fn as_u64(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::Number(n)) => n.as_u64().unwrap_or_default(),
        Some(Value::String(s)) => s.parse().unwrap_or_default(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_of_old_and_new_servers_give_their_code() {
        let old =
            "Code: 60, e.displayText() = DB::Exception: Table default.x doesn't exist., e.what() = DB::Exception\n";
        assert_eq!(exception_code(old), Some(60));
        assert_eq!(
            exception_text(old, reqwest::StatusCode::NOT_FOUND),
            "Code: 60, DB::Exception: Table default.x doesn't exist."
        );
        let new = "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED) (version 24.3.1.1)";
        assert_eq!(exception_code(new), Some(241));
        assert!(Failure { code: Some(241), message: String::new() }.is_transient());
        assert!(!Failure { code: Some(60), message: String::new() }.is_transient());
    }

    #[test]
    fn quoting_and_credentials() {
        assert_eq!(literal(r"it's a \ path"), r"'it\'s a \\ path'");
        assert_eq!(ident("we`ird"), r"`we\`ird`");
        assert_eq!(base64(b"default:"), "ZGVmYXVsdDo=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        let conn = ConnectionUrl::parse("ch", "clickhouse://weir:p%40ss@localhost:18123/analytics").unwrap();
        let client = Client::new(&conn).unwrap();
        assert_eq!(client.database, "analytics");
        assert_eq!(client.base.as_str(), "http://localhost:18123/");
        assert_eq!(client.auth.as_ref().unwrap().expose(), format!("Basic {}", base64(b"weir:p@ss")));
    }
}
