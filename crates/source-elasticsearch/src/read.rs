//! The export: every document a query matches, as of one instant, in pages.
//!
//! With a point in time (Elasticsearch ≥ 7.10): one PIT over the target,
//! pages sorted by `_shard_doc` and continued with `search_after`, each slice
//! (`"slice": {"id", "max"}`) read by its own task. Without one (older
//! Elasticsearch, OpenSearch): a scroll per slice, sorted by `_doc`. Either
//! way the search contexts are released when the export ends, also when it
//! fails; a stream dropped half-way releases them in the background (and
//! their keep-alive ends them in any case).
//!
//! A context that expires mid-export cannot be resumed: `_shard_doc` values
//! and scroll cursors belong to one context, so reading on under a new one
//! could skip or repeat documents. The export fails with a retryable error;
//! nothing of it was committed, and the engine's next attempt starts over.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weir_core::{Error, Result};

use crate::client::{ApiError, Client};
use crate::decode::{Decoded, Decoder, Hit};

/// Pages each slice decodes ahead of the sink, at most.
const QUEUE_PER_SLICE: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Point in time + `search_after` (Elasticsearch ≥ 7.10).
    Pit,
    /// The scroll API.
    Scroll,
}

/// What to export and how.
pub struct Export {
    pub client: Client,
    /// The index expression, as a path segment.
    pub target: String,
    /// `index `people``, for messages.
    pub display: String,
    /// `query`, `_source` and `size`: what every page asks.
    pub body: Value,
    pub slices: usize,
    pub keep_alive: String,
    pub mode: Mode,
    pub decoder: Arc<Decoder>,
}

/// One page, decoded.
pub struct Page {
    pub decoded: Decoded,
    pub bytes: u64,
}

#[derive(serde::Deserialize)]
struct SearchResponse {
    #[serde(default)]
    pit_id: Option<String>,
    #[serde(rename = "_scroll_id", default)]
    scroll_id: Option<String>,
    #[serde(default)]
    timed_out: bool,
    #[serde(rename = "_shards", default)]
    shards: Option<Shards>,
    hits: Hits,
}

#[derive(serde::Deserialize, Default)]
struct Shards {
    #[serde(default)]
    failed: u64,
    #[serde(default)]
    failures: Vec<Value>,
}

#[derive(serde::Deserialize)]
struct Hits {
    hits: Vec<Hit>,
}

/// The search contexts an export holds, for release.
#[derive(Default)]
struct Contexts {
    pit: Option<String>,
    scrolls: BTreeSet<String>,
}

struct Shared {
    export: Export,
    contexts: Mutex<Contexts>,
    unmapped: Mutex<BTreeSet<String>>,
}

impl Shared {
    fn contexts(&self) -> std::sync::MutexGuard<'_, Contexts> {
        self.contexts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Release every context still held; failures are logged, not raised.
    async fn release(&self) {
        let (pit, scrolls) = {
            let mut c = self.contexts();
            (c.pit.take(), std::mem::take(&mut c.scrolls))
        };
        let client = &self.export.client;
        if let Some(id) = pit
            && let Err(e) = client.json(Method::DELETE, "_pit", Some(&json!({"id": id}))).await
        {
            tracing::warn!(kind = %e.kind, "closing the point in time failed: {}", e.reason);
        }
        if !scrolls.is_empty() {
            let body = json!({"scroll_id": scrolls.into_iter().collect::<Vec<_>>()});
            if let Err(e) = client.json(Method::DELETE, "_search/scroll", Some(&body)).await {
                tracing::warn!(kind = %e.kind, "clearing the scrolls failed: {}", e.reason);
            }
        }
    }

    fn release_in_background(&self) {
        let mut c = self.contexts();
        let client = &self.export.client;
        if let Some(id) = c.pit.take() {
            client.release_in_background(Method::DELETE, "_pit", json!({"id": id}));
        }
        if !c.scrolls.is_empty() {
            let ids: Vec<String> = std::mem::take(&mut c.scrolls).into_iter().collect();
            client.release_in_background(Method::DELETE, "_search/scroll", json!({"scroll_id": ids}));
        }
    }

    fn error(&self, e: ApiError, docs: u64) -> Error {
        let display = &self.export.display;
        if e.is_context_missing() {
            let what = match self.export.mode {
                Mode::Pit => "point in time",
                Mode::Scroll => "scroll",
            };
            return Error::transient(format!(
                "reading {display}: the {what} expired after {docs} documents of a slice (keep_alive {}); nothing \
                 was committed and the next attempt starts over; raise options.keep_alive if this repeats",
                self.export.keep_alive
            ));
        }
        e.into_error(&format!("reading {display}"))
    }
}

/// Releases the contexts of an export whose stream is dropped before its end.
struct Guard {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    done: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
        if !self.done {
            self.shared.release_in_background();
        }
    }
}

/// Start the export: the pages of every slice, in arrival order, then the end
/// (after the contexts are released). Unmapped field names found on the way
/// are in the returned set at the end.
pub async fn start(export: Export) -> Result<(BoxStream<'static, Result<Page>>, Arc<Mutex<BTreeSet<String>>>)> {
    let slices = export.slices.max(1);
    let shared = Arc::new(Shared { export, contexts: Mutex::default(), unmapped: Mutex::default() });
    if shared.export.mode == Mode::Pit {
        let path = format!("{}/_pit?keep_alive={}", shared.export.target, shared.export.keep_alive);
        let opened = shared.export.client.json(Method::POST, &path, None).await;
        let id = opened
            .map_err(|e| shared.error(e, 0))?
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::external("opening a point in time: the answer has no `id`"))?;
        shared.contexts().pit = Some(id);
    }
    let (tx, rx) = mpsc::channel(QUEUE_PER_SLICE * slices);
    let tasks = (0..slices)
        .map(|slice| {
            let (shared, tx) = (shared.clone(), tx.clone());
            tokio::spawn(async move {
                let slice = (slices > 1).then_some((slice, slices));
                if let Err(e) = read_slice(&shared, slice, &tx).await {
                    let _ = tx.send(Err(e)).await;
                }
            })
        })
        .collect();
    drop(tx);
    let unmapped = Arc::new(Mutex::new(BTreeSet::new()));
    let guard = Guard { shared, tasks, done: false };
    let names = unmapped.clone();
    let stream = futures::stream::unfold((rx, guard, names), |(mut rx, mut guard, names)| async move {
        if guard.done {
            return None;
        }
        match rx.recv().await {
            Some(Ok(page)) => Some((Ok(page), (rx, guard, names))),
            // An error or the end: release the contexts before saying so.
            last => {
                guard.tasks.iter().for_each(JoinHandle::abort);
                guard.shared.release().await;
                guard.done = true;
                let found = std::mem::take(&mut *guard.shared.unmapped.lock().unwrap_or_else(|e| e.into_inner()));
                names.lock().unwrap_or_else(|e| e.into_inner()).extend(found);
                match last {
                    Some(Err(e)) => Some((Err(e), (rx, guard, names))),
                    _ => None,
                }
            }
        }
    });
    Ok((stream.boxed(), unmapped))
}

async fn read_slice(shared: &Shared, slice: Option<(usize, usize)>, tx: &mpsc::Sender<Result<Page>>) -> Result<()> {
    let export = &shared.export;
    let mut body = export.body.clone();
    if let Some((id, max)) = slice {
        body["slice"] = json!({"id": id, "max": max});
    }
    let mut docs = 0u64;
    let mut scroll_id: Option<String> = None;
    let mut search_after: Option<Vec<Value>> = None;
    loop {
        let (path, request) = match (export.mode, &scroll_id) {
            (Mode::Pit, _) => {
                let mut b = body.clone();
                let pit = shared.contexts().pit.clone().unwrap_or_default();
                b["pit"] = json!({"id": pit, "keep_alive": export.keep_alive});
                b["sort"] = json!([{"_shard_doc": "asc"}]);
                if let Some(after) = &search_after {
                    b["search_after"] = Value::Array(after.clone());
                }
                ("_search".to_owned(), b)
            }
            (Mode::Scroll, None) => {
                let mut b = body.clone();
                b["sort"] = json!(["_doc"]);
                (format!("{}/_search?scroll={}", export.target, export.keep_alive), b)
            }
            (Mode::Scroll, Some(id)) => {
                ("_search/scroll".to_owned(), json!({"scroll": export.keep_alive, "scroll_id": id}))
            }
        };
        let bytes = export.client.send(Method::POST, &path, Some(&request)).await.map_err(|e| shared.error(e, docs))?;
        let response: SearchResponse = serde_json::from_slice(&bytes).map_err(|e| {
            Error::external(format!("reading {}: a search answer is not as expected: {e}", export.display))
        })?;
        let shards = response.shards.unwrap_or_default();
        if shards.failed > 0 || response.timed_out {
            // A page missing shards would silently lose documents.
            let why = shards.failures.first().map(|f| f["reason"]["reason"].to_string()).unwrap_or_default();
            return Err(Error::transient(format!(
                "reading {}: {} shard(s) failed{} {why}; the attempt is retried",
                export.display,
                shards.failed,
                if response.timed_out { " (timed out)" } else { "" }
            )));
        }
        match export.mode {
            Mode::Pit => {
                if let Some(id) = response.pit_id {
                    shared.contexts().pit = Some(id);
                }
            }
            Mode::Scroll => {
                let mut c = shared.contexts();
                if let Some(old) = &scroll_id {
                    c.scrolls.remove(old);
                }
                if let Some(id) = &response.scroll_id {
                    c.scrolls.insert(id.clone());
                }
                scroll_id = response.scroll_id;
            }
        }
        let hits = response.hits.hits;
        if hits.is_empty() {
            break;
        }
        search_after = hits.last().and_then(|h| h.sort.clone());
        if export.mode == Mode::Pit && search_after.is_none() {
            return Err(Error::external(format!("reading {}: a hit came back without `sort` values", export.display)));
        }
        docs += hits.len() as u64;
        let full_page = body["size"].as_u64().is_some_and(|size| hits.len() as u64 >= size);
        let mut names = BTreeSet::new();
        let decoded = export.decoder.decode(&hits, &mut names)?;
        if !names.is_empty() {
            shared.unmapped.lock().unwrap_or_else(|e| e.into_inner()).extend(names);
        }
        if tx.send(Ok(Page { decoded, bytes: bytes.len() as u64 })).await.is_err() {
            return Ok(()); // the reader stopped
        }
        // A short page is the last (a scroll says so with an empty one; skip that round trip).
        if export.mode == Mode::Pit && !full_page {
            break;
        }
    }
    // A finished scroll is cleared now, not at the end of every slice.
    if let Some(id) = scroll_id {
        let released = shared.contexts().scrolls.remove(&id);
        if released {
            let body = json!({"scroll_id": [id]});
            if let Err(e) = export.client.json(Method::DELETE, "_search/scroll", Some(&body)).await {
                tracing::warn!(kind = %e.kind, "clearing a scroll failed: {}", e.reason);
            }
        }
    }
    Ok(())
}
