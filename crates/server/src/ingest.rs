//! `POST /events`: one event or an array of up to 1,000, answered 200 only
//! once they are committed to PostgreSQL.
//!
//! Requests put their events on one queue; one committer takes everything
//! queued (up to [`IngestConfig::max_batch`] events) and stores it with one
//! statement, in one transaction, then answers every request in it (group
//! commit: the busier the server, the more requests share a commit). An event
//! whose `message_id` is already stored is not stored again, so a client that
//! got no answer sends the same events again. A full queue, or a database that
//! is down, answers 503 with `Retry-After`: never a 2xx for an event not stored.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::warn;
use weir_meta::{MetaStore, NewEvent};

use crate::auth::Caller;
use crate::state::AppState;

/// Ingestion's limits.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The largest request body, in bytes (413 beyond).
    pub max_body: usize,
    /// The most events one request may carry (413 beyond).
    pub max_events: usize,
    /// Events waiting for a commit at most (503 beyond).
    pub queue: usize,
    /// The most events one commit takes.
    pub max_batch: usize,
    /// Events per second one token may send (429 beyond); a second's worth may come at once.
    pub rate: u32,
    /// A commit that takes longer is given up (503; the client sends again).
    pub commit_timeout: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body: 4 << 20,
            max_events: 1000,
            queue: 100_000,
            max_batch: 10_000,
            rate: 100_000,
            commit_timeout: Duration::from_secs(10),
        }
    }
}

/// The fields an event may have.
const FIELDS: &str = "event, timestamp, user_id, properties, message_id";
const MAX_TEXT: usize = 512;

struct Job {
    events: Vec<NewEvent>,
    done: oneshot::Sender<Result<usize, String>>,
}

/// The queue to the committer.
#[derive(Clone)]
pub(crate) struct Ingest {
    tx: Arc<Mutex<Option<mpsc::UnboundedSender<Job>>>>,
    queued: Arc<AtomicUsize>,
    config: IngestConfig,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

impl Ingest {
    pub fn start(meta: MetaStore, config: IngestConfig) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let committer = tokio::spawn(commit_loop(meta, rx, queued.clone(), config.clone()));
        let ingest = Self { tx: Arc::new(Mutex::new(Some(tx))), queued, config, buckets: Arc::default() };
        (ingest, committer)
    }

    /// Take no more events; the committer stores those queued, then ends.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
    }

    /// Queue events; the receiver answers once they are committed.
    fn submit(&self, events: Vec<NewEvent>) -> Result<oneshot::Receiver<Result<usize, String>>, Refused> {
        let n = events.len();
        if self.queued.fetch_add(n, Ordering::SeqCst) + n > self.config.queue {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            return Err(Refused::QueueFull);
        }
        let (done, answer) = oneshot::channel();
        let sent = self.tx.lock().ok().and_then(|tx| tx.as_ref().map(|tx| tx.send(Job { events, done })));
        match sent {
            Some(Ok(())) => Ok(answer),
            _ => {
                self.queued.fetch_sub(n, Ordering::SeqCst);
                Err(Refused::ShuttingDown)
            }
        }
    }

    /// May `key` send `n` more events now? Else how long to wait.
    fn admit(&self, key: &str, n: usize) -> Result<(), Duration> {
        let rate = f64::from(self.config.rate.max(1));
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let now = Instant::now();
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: rate, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(rate);
        bucket.at = now;
        if bucket.tokens >= n as f64 {
            bucket.tokens -= n as f64;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((n as f64 - bucket.tokens) / rate).max(1.0)))
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

enum Refused {
    QueueFull,
    ShuttingDown,
}

/// Take everything queued, store it in one statement, answer each request.
async fn commit_loop(
    meta: MetaStore,
    mut rx: mpsc::UnboundedReceiver<Job>,
    queued: Arc<AtomicUsize>,
    config: IngestConfig,
) {
    let mut jobs: Vec<Job> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut n = first.events.len();
        jobs.push(first);
        while n < config.max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    n += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let events: Vec<NewEvent> = jobs.iter().flat_map(|j| j.events.iter().cloned()).collect();
        let stored = match tokio::time::timeout(config.commit_timeout, meta.insert_events(&events)).await {
            Ok(Ok(ids)) => Ok(ids.into_iter().collect::<HashSet<String>>()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("the metadata database did not commit within {:?}", config.commit_timeout)),
        };
        if let Err(e) = &stored {
            warn!(events = n, error = %e, "events not stored; their requests are answered 503");
        }
        queued.fetch_sub(n, Ordering::SeqCst);
        for job in jobs.drain(..) {
            let answer = match &stored {
                Ok(ids) => Ok(job.events.iter().filter(|e| ids.contains(&e.message_id)).count()),
                Err(e) => Err(e.clone()),
            };
            // The client may have gone: its events are stored all the same.
            let _ = job.done.send(answer);
        }
    }
}

/// `POST /events`.
pub(crate) async fn post_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let config = &state.ingest.config;
    let body = match axum::body::to_bytes(req.into_body(), config.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} bytes; send fewer events per request", config.max_body),
            );
        }
    };
    let events = match parse(&body, config.max_events) {
        Ok(events) => events,
        Err((status, message)) => return error(status, message),
    };
    let n = events.len();
    if let Err(wait) = state.ingest.admit(&caller.key, n) {
        return retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            format!("this token sends more than {} events per second", config.rate),
            wait,
        );
    }
    let answer = match state.ingest.submit(events) {
        Ok(answer) => answer,
        Err(Refused::QueueFull) => {
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "the queue of events waiting for a commit is full".into(),
                Duration::from_secs(1),
            );
        }
        Err(Refused::ShuttingDown) => {
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is stopping".into(),
                Duration::from_secs(5),
            );
        }
    };
    match answer.await {
        Ok(Ok(stored)) => {
            (StatusCode::OK, axum::Json(json!({ "stored": stored, "duplicates": n - stored }))).into_response()
        }
        Ok(Err(e)) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the events were not stored: {e}"),
            Duration::from_secs(2),
        ),
        Err(_) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "the events were not stored: the committer stopped".into(),
            Duration::from_secs(2),
        ),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

fn retry_later(status: StatusCode, message: String, after: Duration) -> Response {
    let mut response = error(status, message);
    let secs = after.as_secs().max(1).to_string();
    if let Ok(v) = HeaderValue::from_str(&secs) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// One event object, or an array of them; the first fault names its field.
fn parse(body: &[u8], max_events: usize) -> Result<Vec<NewEvent>, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(vec![event(map, "").map_err(bad)?]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(bad("the array holds no event".into()));
            }
            if items.len() > max_events {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("{} events in one request; send at most {max_events}", items.len()),
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(map) => event(map, &format!("[{i}].")).map_err(bad),
                    _ => Err(bad(format!("[{i}]: an event is a JSON object"))),
                })
                .collect()
        }
        _ => Err(bad("send one event (a JSON object) or an array of them".into())),
    }
}

fn event(mut map: serde_json::Map<String, Value>, at: &str) -> Result<NewEvent, String> {
    if let Some(unknown) = map.keys().find(|k| !FIELDS.split(", ").any(|f| f == k.as_str())) {
        return Err(format!("{at}{unknown}: not a field of an event (they are: {FIELDS})"));
    }
    let mut text = |field: &str, required: bool| -> Result<Option<String>, String> {
        match map.remove(field) {
            None | Some(Value::Null) if required => Err(format!("{at}{field}: missing")),
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Err(format!("{at}{field}: empty")),
            Some(Value::String(s)) if s.len() > MAX_TEXT => Err(format!("{at}{field}: longer than {MAX_TEXT} bytes")),
            Some(Value::String(s)) => Ok(Some(s)),
            // A numeric user id is common; kept as its text.
            Some(Value::Number(n)) if field == "user_id" => Ok(Some(n.to_string())),
            Some(other) => Err(format!("{at}{field}: a string, not {}", kind(&other))),
        }
    };
    let event = text("event", true)?.unwrap_or_default();
    let user_id = text("user_id", true)?.unwrap_or_default();
    let stamp = text("timestamp", true)?.unwrap_or_default();
    let message_id = text("message_id", false)?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let timestamp = DateTime::parse_from_rfc3339(&stamp)
        .map_err(|e| format!("{at}timestamp: `{stamp}` is not an RFC 3339 time such as 2025-03-23T14:05:00Z ({e})"))?
        .with_timezone(&Utc);
    let properties = match map.remove("properties") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => v,
        Some(other) => return Err(format!("{at}properties: an object, not {}", kind(&other))),
    };
    Ok(NewEvent { message_id, event, user_id, timestamp, properties })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_or_an_array() {
        let one = br#"{"event":"play","timestamp":"2025-03-23T10:00:00+02:00","user_id":7,"properties":{"n":1},"message_id":"m1"}"#;
        let events = parse(one, 1000).expect("valid");
        assert_eq!(events[0].user_id, "7");
        assert_eq!(events[0].timestamp.to_rfc3339(), "2025-03-23T08:00:00+00:00");
        assert_eq!(events[0].message_id, "m1");
        let many = br#"[{"event":"a","timestamp":"2025-03-23T10:00:00Z","user_id":"u"},{"event":"b","timestamp":"2025-03-23T10:00:00Z","user_id":"u"}]"#;
        let events = parse(many, 1000).expect("valid");
        assert_eq!(events.len(), 2);
        assert_ne!(events[0].message_id, events[1].message_id, "drawn ids differ");
    }

    #[test]
    fn faults_name_their_field() {
        let cases: [(&[u8], &str); 6] = [
            (br#"{"event":"a","user_id":"u"}"#, "timestamp: missing"),
            (br#"{"event":"a","timestamp":"yesterday","user_id":"u"}"#, "timestamp: `yesterday` is not an RFC 3339"),
            (
                br#"[{"event":"a","timestamp":"2025-03-23T10:00:00Z","user_id":"u"},{"evnt":"a"}]"#,
                "[1].evnt: not a field",
            ),
            (
                br#"{"event":"a","timestamp":"2025-03-23T10:00:00Z","user_id":"u","properties":[1]}"#,
                "properties: an object, not an array",
            ),
            (br#"{"event":"","timestamp":"2025-03-23T10:00:00Z","user_id":"u"}"#, "event: empty"),
            (b"[1]", "[0]: an event is a JSON object"),
        ];
        for (body, expected) in cases {
            let (status, message) = parse(body, 1000).expect_err("invalid");
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(message.contains(expected), "{message} should contain {expected}");
        }
        let (status, _) = parse(b"[{},{}]", 1).expect_err("too many");
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
