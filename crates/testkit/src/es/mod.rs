//! An Elasticsearch test server: the REST protocol for exactly what Weir uses,
//! written from the Elasticsearch REST reference, with faults on demand.
//!
//! Elasticsearch cannot be installed here, so the Elasticsearch source is
//! tested against this server (and against a real cluster when
//! `WEIR_TEST_ES_URL` is set). It speaks:
//!
//! - `GET /` (the version: Elasticsearch 8, Elasticsearch 7.9 without point in
//!   time, or OpenSearch), basic and API-key authentication (401, 403);
//! - `PUT /{index}` with settings (`number_of_shards`), mappings and aliases,
//!   `DELETE /{index}`, `PUT /{index}/_alias/{name}`, `GET /{index}/_mapping`,
//!   `GET /{index}/_settings`, `POST /{index}/_refresh`;
//! - `POST [/{index}]/_bulk` (index, create, delete) with dynamic mapping,
//!   `strict` and `false` dynamic modes, and `mapper_parsing_exception` for
//!   values that do not fit their type unless `ignore_malformed`;
//! - `GET|POST /{index}/_count` and `_search` with `query` (`match_all`,
//!   `match_none`, `range`, `term`, `terms`, `exists`, `ids`, `bool`), `sort`
//!   (`_shard_doc`, `_doc`, fields), `search_after`, `slice`, `size`,
//!   `_source` filtering and `track_total_hits`;
//! - `POST /{index}/_pit` and `DELETE /_pit`; `?scroll=`, `POST /_search/scroll`
//!   and `DELETE /_search/scroll`, with keep-alives that expire;
//! - the documented error bodies: `index_not_found_exception` (404),
//!   `search_context_missing_exception` (404), `es_rejected_execution_exception`
//!   (429), `parsing_exception` and `illegal_argument_exception` (400),
//!   `security_exception` (401, 403).
//!
//! What it does not do: relevance scoring (every hit scores `null` or 1.0),
//! text analysis beyond lowercase whitespace tokens, refresh intervals
//! (documents are searchable at once), replicas.

mod api;
mod dates;
mod query;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use state::Cluster;

/// Which server the emulator claims to be, in `GET /`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
    /// Elasticsearch at this version; point in time from 7.10 on.
    Elasticsearch(String),
    /// OpenSearch 2: scroll only, as far as Weir is concerned.
    OpenSearch,
}

impl Flavor {
    pub fn elasticsearch_8() -> Self {
        Flavor::Elasticsearch("8.15.0".into())
    }

    /// An Elasticsearch before point in time (7.10).
    pub fn elasticsearch_7_9() -> Self {
        Flavor::Elasticsearch("7.9.3".into())
    }

    fn has_pit(&self) -> bool {
        match self {
            Flavor::Elasticsearch(v) => {
                let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
                (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (7, 10)
            }
            Flavor::OpenSearch => false,
        }
    }
}

/// Who may talk to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Basic base64(user:password)`.
    Basic { user: String, password: String },
    /// `Authorization: ApiKey <key>`.
    ApiKey(String),
}

#[derive(Debug, Clone)]
pub struct EsConfig {
    pub flavor: Flavor,
    pub auth: Option<Auth>,
    /// Indices the credentials may not read: 403 on any request that names them.
    pub forbidden: Vec<String>,
}

impl Default for EsConfig {
    fn default() -> Self {
        Self { flavor: Flavor::elasticsearch_8(), auth: None, forbidden: Vec::new() }
    }
}

/// Faults to inject into search requests (`_search`, scroll, `_pit`): each
/// counter is used up one request at a time.
#[derive(Debug, Default)]
pub struct Faults {
    /// Answer this many requests with 429 `es_rejected_execution_exception`.
    pub reject: AtomicU64,
    /// Answer this many requests with 503 (no master, a node restarting).
    pub unavailable: AtomicU64,
    /// Drop this many connections without an answer.
    pub drop: AtomicU64,
    /// Expire every open point in time and scroll after this many more pages
    /// (0: never): the next page finds its context gone.
    pub expire_after_pages: AtomicU64,
    /// Do it again after each expiry, this many times.
    pub expire_repeats: AtomicU64,
    /// Search requests served (pages, PIT opens), for assertions.
    pub searches: AtomicU64,
}

impl Faults {
    /// Reject the next `n` search requests with 429.
    pub fn reject_next(&self, n: u64) {
        self.reject.store(n, Ordering::SeqCst);
    }

    /// Answer the next `n` search requests with 503.
    pub fn unavailable_next(&self, n: u64) {
        self.unavailable.store(n, Ordering::SeqCst);
    }

    /// Drop the next `n` search connections unanswered.
    pub fn drop_next(&self, n: u64) {
        self.drop.store(n, Ordering::SeqCst);
    }

    /// Expire every point in time and scroll after `pages` more pages, `times` times.
    pub fn expire_contexts_after(&self, pages: u64, times: u64) {
        self.expire_after_pages.store(pages, Ordering::SeqCst);
        self.expire_repeats.store(times.saturating_sub(1), Ordering::SeqCst);
    }

    /// Take one from `counter` if it is not zero.
    fn take(counter: &AtomicU64) -> bool {
        counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

/// An Elasticsearch test server on `127.0.0.1:<port>`, in memory.
pub struct EsServer {
    pub addr: SocketAddr,
    cluster: Arc<Cluster>,
    task: JoinHandle<()>,
}

impl EsServer {
    /// An Elasticsearch 8 without authentication.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(EsConfig::default()).await
    }

    pub async fn start_with(config: EsConfig) -> anyhow::Result<Self> {
        Self::bind("127.0.0.1:0", config).await
    }

    /// Serve on `addr` (`127.0.0.1:9200`).
    pub async fn bind(addr: &str, config: EsConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let cluster = Arc::new(Cluster::new(config));
        let shared = cluster.clone();
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                let cluster = shared.clone();
                let handler = service_fn(move |req: hyper::Request<Incoming>| api::handle(cluster.clone(), req));
                let conn = http.serve_connection(TokioIo::new(socket), handler).into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Ok(Self { addr, cluster, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn faults(&self) -> &Faults {
        &self.cluster.faults
    }

    /// Points in time and scrolls still open (Weir must release its own).
    pub fn open_contexts(&self) -> usize {
        self.cluster.open_contexts()
    }

    /// Wait until the server is stopped (for the standalone binary).
    pub async fn serve_forever(self) {
        let _ = (&mut { self }.task).await;
    }
}

impl Drop for EsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where a test's Elasticsearch is: a real cluster from `WEIR_TEST_ES_URL`,
/// or a test server started for it.
pub struct TestCluster {
    url: String,
    /// The test server, when no real cluster was given.
    pub server: Option<EsServer>,
    /// A prefix unique to this test, for its index names.
    pub prefix: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestCluster {
    /// The real cluster if `WEIR_TEST_ES_URL` is set, else a fresh test server.
    pub async fn new(label: &str) -> anyhow::Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("weir_t_{label}_{}_{n}", std::process::id());
        match std::env::var("WEIR_TEST_ES_URL").ok().filter(|u| !u.is_empty()) {
            Some(url) => Ok(Self { url: url.trim_end_matches('/').to_owned(), server: None, prefix }),
            None => {
                let server = EsServer::start().await?;
                Ok(Self { url: server.url(), server: Some(server), prefix })
            }
        }
    }

    /// Always a test server (for faults a real cluster cannot be made to show).
    pub async fn emulated(label: &str, config: EsConfig) -> anyhow::Result<Self> {
        let server = EsServer::start_with(config).await?;
        let prefix = format!("weir_t_{label}_{}", std::process::id());
        Ok(Self { url: server.url(), server: Some(server), prefix })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// This test's name for `index`.
    pub fn index(&self, index: &str) -> String {
        format!("{}_{index}", self.prefix)
    }

    pub fn client(&self) -> EsClient {
        EsClient::new(&self.url)
    }
}

/// A small client for setting up indices, against the test server or a real cluster.
#[derive(Clone)]
pub struct EsClient {
    base: String,
    http: reqwest::Client,
}

impl EsClient {
    pub fn new(base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_owned(), http: reqwest::Client::new() }
    }

    /// Send a request with a JSON (or NDJSON) body; an error unless 2xx.
    pub async fn send(&self, method: &str, path: &str, body: Option<String>) -> anyhow::Result<serde_json::Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            let ndjson = path.contains("_bulk");
            req =
                req.header("content-type", if ndjson { "application/x-ndjson" } else { "application/json" }).body(body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            anyhow::bail!("{method} {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// Create `index` with `body` (`{"settings": …, "mappings": …}`).
    pub async fn create_index(&self, index: &str, body: serde_json::Value) -> anyhow::Result<()> {
        self.send("PUT", &format!("/{index}"), Some(body.to_string())).await.map(drop)
    }

    pub async fn delete_index(&self, index: &str) -> anyhow::Result<()> {
        self.send("DELETE", &format!("/{index}"), None).await.map(drop)
    }

    /// Index `docs` (`(id, source)`) with `_bulk`, refreshed; an error names the first failed item.
    pub async fn bulk(&self, index: &str, docs: &[(String, serde_json::Value)]) -> anyhow::Result<()> {
        for chunk in docs.chunks(5000) {
            let mut body = String::new();
            for (id, doc) in chunk {
                body.push_str(&serde_json::json!({"index": {"_index": index, "_id": id}}).to_string());
                body.push('\n');
                body.push_str(&doc.to_string());
                body.push('\n');
            }
            let resp = self.send("POST", "/_bulk?refresh=true", Some(body)).await?;
            if resp["errors"].as_bool() == Some(true) {
                let failed = resp["items"].as_array().into_iter().flatten().find(|i| i["index"]["error"].is_object());
                anyhow::bail!("bulk into {index} failed: {}", failed.map(|i| i.to_string()).unwrap_or_default());
            }
        }
        Ok(())
    }
}
