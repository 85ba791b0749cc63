//! The REST client: authentication from the connection URL, TLS with an
//! optional CA file, retries with backoff on 429 and 5xx, and Elasticsearch's
//! error bodies turned into errors that say what to do.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tracing::warn;
use url::Url;
use weir_core::{ConnectionUrl, Error, Result, Secret};

/// Tries per request for 429, 5xx and dropped connections, before the error
/// goes to the engine (which may retry the whole attempt).
const TRIES: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// An error answer, as Elasticsearch gives it: `{"error": {"type", "reason"}, "status"}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: Option<u16>,
    /// `index_not_found_exception`, `search_context_missing_exception`, …;
    /// `transport` for a failure without an answer.
    pub kind: String,
    pub reason: String,
}

impl ApiError {
    fn transport(reason: String) -> Self {
        Self { status: None, kind: "transport".into(), reason }
    }

    fn from_body(status: u16, body: &[u8]) -> Self {
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let error = &parsed["error"];
        // The root cause says most: a search_context_missing_exception under a
        // search_phase_execution_exception, say.
        let cause = error["root_cause"].get(0).filter(|c| c["type"].is_string()).unwrap_or(error);
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let kind = text(&cause["type"]).unwrap_or_else(|| format!("http_{status}"));
        let reason = text(&cause["reason"])
            .or_else(|| text(error))
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
        Self { status: Some(status), kind, reason }
    }

    /// Worth trying again: rejected (429), a server error, or no answer at all.
    fn is_retryable(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s == 429 || s >= 500,
        }
    }

    /// A point in time or scroll that expired (or was never there).
    pub fn is_context_missing(&self) -> bool {
        self.kind == "search_context_missing_exception"
    }

    /// As a Weir error, with `what` ("reading index `people`") in front.
    pub fn into_error(self, what: &str) -> Error {
        let msg = format!("{what}: {} ({})", self.reason, self.kind);
        match self.status {
            None => Error::transient(msg),
            Some(401) => Error::external(format!(
                "{what}: authentication failed (401): check the user and password, or the api_key, of the source \
                 connection"
            )),
            Some(403) => Error::external(format!(
                "{what}: permission denied (403): {}; the connection's user needs the `read` and `view_index_metadata` \
                 privileges on the index",
                self.reason
            )),
            Some(404) if self.kind == "index_not_found_exception" => Error::user(format!(
                "{what}: {}; check source_table (an index, alias or pattern such as `logs-*`)",
                self.reason
            )),
            Some(429) | Some(500..) => Error::transient(msg),
            Some(_) => Error::user(msg),
        }
    }
}

/// A client for one cluster.
#[derive(Clone)]
pub struct Client {
    base: Url,
    auth: Option<Secret>,
    http: reqwest::Client,
}

impl Client {
    /// From `http(s)://[user:password@]host:9200[/prefix][?api_key=…&ca_file=…]`.
    pub fn new(connection: &ConnectionUrl) -> Result<Self> {
        let mut base = connection.url().clone();
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::user(format!(
                "source connection {connection} is a {}:// URL; an elasticsearch source needs \
                 http(s)://[user:password@]host:9200",
                base.scheme()
            )));
        }
        let mut auth = None;
        let mut ca_file = None;
        for (k, v) in connection.url().query_pairs() {
            match k.as_ref() {
                "api_key" => auth = Some(Secret::new(format!("ApiKey {v}"))),
                "ca_file" => ca_file = Some(v.into_owned()),
                other => {
                    return Err(Error::user(format!(
                        "source connection {connection}: unknown URL parameter `{other}` (known: api_key, ca_file)"
                    )));
                }
            }
        }
        if !connection.url().username().is_empty() {
            use base64::Engine;
            let user = url_decode(connection.url().username());
            let password = url_decode(connection.url().password().unwrap_or(""));
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            auth = Some(Secret::new(format!("Basic {token}")));
        }
        base.set_query(None);
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(path) = ca_file {
            let pem = std::fs::read(&path)
                .map_err(|e| Error::user(format!("source connection {connection}: ca_file {path}: {e}")))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Error::user(format!("source connection {connection}: ca_file {path} is not a PEM certificate: {e}"))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| Error::internal(format!("building the HTTP client: {e}")))?;
        Ok(Self { base, auth, http })
    }

    /// `GET path`, as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.json(Method::GET, path, None).await
    }

    /// A request with an optional JSON body; the answer as JSON.
    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, ApiError> {
        let bytes = self.send(method, path, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::transport(format!("the answer to {path} is not JSON: {e}")))
    }

    /// A request, retried with exponential backoff on 429, 5xx and transport
    /// errors (every request Weir sends is safe to repeat); the answer's bytes.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<bytes::Bytes, ApiError> {
        let url = self.base.join(path.trim_start_matches('/')).map_err(|e| ApiError::transport(e.to_string()))?;
        let body = body.map(|b| b.to_string());
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            let mut req = self.http.request(method.clone(), url.clone());
            if let Some(auth) = &self.auth {
                req = req.header("authorization", auth.expose());
            }
            if let Some(body) = &body {
                req = req.header("content-type", "application/json").body(body.clone());
            }
            let (error, retry_after) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(&resp);
                    match resp.bytes().await {
                        Ok(bytes) if status.is_success() => return Ok(bytes),
                        Ok(bytes) => (ApiError::from_body(status.as_u16(), &bytes), retry_after),
                        Err(e) => (ApiError::transport(without_url(&e)), None),
                    }
                }
                Err(e) => (ApiError::transport(without_url(&e)), None),
            };
            if !error.is_retryable() || tries >= TRIES {
                return Err(error);
            }
            let wait = retry_after.unwrap_or(backoff).min(MAX_BACKOFF);
            warn!(
                path,
                status = error.status.map(|s| StatusCode::from_u16(s).map(|s| s.to_string()).unwrap_or_default()),
                kind = %error.kind,
                try_ = tries,
                wait_ms = wait.as_millis() as u64,
                "Elasticsearch request failed; retrying"
            );
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Fire-and-forget release of a point in time or scroll (used when a
    /// stream is dropped before its end; must not block the drop).
    pub fn release_in_background(&self, method: Method, path: &'static str, body: Value) {
        let client = self.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = client.json(method, path, Some(&body)).await {
                    warn!(kind = %e.kind, "releasing an Elasticsearch search context failed: {}", e.reason);
                }
            });
        }
    }
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = resp.headers().get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// A transport error's text and causes, the URL replaced (it carries no
/// credentials, but the request path adds nothing for the reader).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(&format!(" ({url})"), "").replace(url.as_str(), "the cluster");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
