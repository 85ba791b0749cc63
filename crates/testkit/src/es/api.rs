//! The REST endpoints: routing, authentication, faults, and search pages.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::query::{Query, SortKey, SortValue, SourceFilter, compare_tuples, parse_sort, sort_value};
use super::state::{Cluster, Context, EsError, EsResult, Hit, parse_duration, route};
use super::{Auth, Faults, Flavor};

type Reply = Response<Full<Bytes>>;

/// An error that makes hyper drop the connection unanswered (a fault).
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the test server")
    }
}

impl std::error::Error for Dropped {}

pub async fn handle(cluster: Arc<Cluster>, req: Request<Incoming>) -> Result<Reply, Dropped> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    if let Err(e) = authenticate(&cluster, &parts.headers, &path) {
        return Ok(json_reply(e.status, &e.body));
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let is_search = segments.iter().any(|s| matches!(*s, "_search" | "_pit"));
    if is_search && parts.method != Method::DELETE {
        cluster.faults.searches.fetch_add(1, Ordering::SeqCst);
        if Faults::take(&cluster.faults.drop) {
            return Err(Dropped);
        }
        if Faults::take(&cluster.faults.reject) {
            let e = EsError::rejected();
            return Ok(json_reply(e.status, &e.body));
        }
        if Faults::take(&cluster.faults.unavailable) {
            let e = EsError::unavailable();
            return Ok(json_reply(e.status, &e.body));
        }
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let result = route_request(&cluster, &parts.method, &segments, &query, &text);
    Ok(match result {
        Ok((status, body)) => raw_reply(status, body),
        Err(e) => json_reply(e.status, &e.body),
    })
}

fn json_reply(status: u16, body: &Value) -> Reply {
    raw_reply(status, body.to_string())
}

fn raw_reply(status: u16, body: String) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    reply.headers_mut().insert("x-elastic-product", hyper::header::HeaderValue::from_static("Elasticsearch"));
    reply
}

fn authenticate(cluster: &Cluster, headers: &hyper::HeaderMap, path: &str) -> EsResult<()> {
    let Some(auth) = &cluster.config.auth else { return Ok(()) };
    let given = headers.get("authorization").and_then(|h| h.to_str().ok()).unwrap_or("");
    let ok = match auth {
        Auth::Basic { user, password } => given == format!("Basic {}", base64(&format!("{user}:{password}"))),
        Auth::ApiKey(key) => given == format!("ApiKey {key}"),
    };
    if ok { Ok(()) } else { Err(EsError::unauthenticated(path)) }
}

/// Standard base64, for the `Authorization: Basic` header.
pub fn base64(s: &str) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v)
}

fn body_json(text: &str) -> EsResult<Value> {
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(text).map_err(|e| EsError::parsing(&format!("request body is not JSON: {e}")))
}

fn check_forbidden(cluster: &Cluster, indices: &[String]) -> EsResult<()> {
    match indices.iter().find(|i| cluster.config.forbidden.contains(i)) {
        Some(i) => Err(EsError::forbidden(i)),
        None => Ok(()),
    }
}

fn route_request(cluster: &Cluster, method: &Method, seg: &[&str], query: &str, body: &str) -> EsResult<(u16, String)> {
    let flavor = &cluster.config.flavor;
    let ok = |v: Value| Ok((200, v.to_string()));
    match (method.as_str(), seg) {
        ("GET" | "HEAD", []) => ok(info(flavor)),
        ("POST" | "PUT", ["_bulk"]) => ok(cluster.bulk(None, body)?),
        ("POST" | "PUT", [index, "_bulk"]) => ok(cluster.bulk(Some(index), body)?),
        ("GET" | "POST", ["_search"]) => Ok((200, search(cluster, None, query, &body_json(body)?)?)),
        ("GET" | "POST", ["_search", "scroll"]) => Ok((200, scroll_next(cluster, &body_json(body)?)?)),
        ("DELETE", ["_search", "scroll", "_all"]) => {
            ok(json!({"succeeded": true, "num_freed": cluster.release_all_scrolls()}))
        }
        ("DELETE", ["_search", "scroll"]) => {
            let body = body_json(body)?;
            let ids: Vec<String> = match &body["scroll_id"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
                _ => return Err(EsError::illegal_argument("no scroll ids specified")),
            };
            let freed = cluster.release(&ids);
            Ok((if freed == 0 { 404 } else { 200 }, json!({"succeeded": true, "num_freed": freed}).to_string()))
        }
        ("DELETE", ["_pit"]) if flavor.has_pit() => {
            let body = body_json(body)?;
            let id = body["id"].as_str().ok_or_else(|| EsError::illegal_argument("[id] is required"))?;
            let freed = cluster.release(&[id.to_owned()]);
            Ok((if freed == 0 { 404 } else { 200 }, json!({"succeeded": true, "num_freed": freed}).to_string()))
        }
        ("GET" | "POST", ["_count"]) => ok(count(cluster, "_all", &body_json(body)?)?),
        ("GET", ["_mapping"]) => ok(cluster.mapping("_all")?),
        ("POST" | "GET", ["_refresh"]) => ok(shards_ok(1)),
        ("PUT", [index]) if !index.starts_with('_') => ok(cluster.create_index(index, &body_json(body)?)?),
        ("DELETE", [index]) if !index.starts_with('_') => ok(cluster.delete_index(index)?),
        ("HEAD", [index]) => cluster.resolve(index).map(|_| (200, String::new())),
        ("GET", [index, "_mapping"]) => {
            let indices = cluster.resolve(index)?;
            check_forbidden(cluster, &indices)?;
            ok(cluster.mapping(index)?)
        }
        ("GET", [index, "_settings", ..]) => ok(cluster.settings(index)?),
        ("POST" | "GET", [index, "_refresh"]) => {
            let indices = cluster.resolve(index)?;
            ok(shards_ok(cluster.shard_count(&indices)))
        }
        ("PUT" | "POST", [index, "_alias" | "_aliases", alias]) => ok(cluster.put_alias(index, alias)?),
        ("GET" | "POST", [index, "_count"]) => ok(count(cluster, index, &body_json(body)?)?),
        ("GET" | "POST", [index, "_search"]) => Ok((200, search(cluster, Some(index), query, &body_json(body)?)?)),
        ("POST", [index, "_pit"]) if flavor.has_pit() => ok(open_pit(cluster, index, query)?),
        ("POST", [_, "_pit"]) if matches!(flavor, Flavor::Elasticsearch(_)) => Err(EsError::bad_request(
            "invalid_type_name_exception",
            "Document mapping type name can't start with '_', found: [_pit]",
        )),
        _ => Ok((
            405,
            json!({
                "error": format!("no handler found for uri [/{}] and method [{method}]", seg.join("/")),
                "status": 405
            })
            .to_string(),
        )),
    }
}

fn shards_ok(n: u32) -> Value {
    json!({"_shards": {"total": n, "successful": n, "failed": 0}})
}

fn info(flavor: &Flavor) -> Value {
    match flavor {
        Flavor::Elasticsearch(number) => json!({
            "name": "weir-es",
            "cluster_name": "weir-test",
            "cluster_uuid": "d2VpcnRlc3RjbHVzdGVy",
            "version": {
                "number": number,
                "build_flavor": "default",
                "build_type": "tar",
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
        Flavor::OpenSearch => json!({
            "name": "weir-os",
            "cluster_name": "weir-test",
            "cluster_uuid": "d2VpcnRlc3RjbHVzdGVy",
            "version": {
                "distribution": "opensearch",
                "number": "2.11.1",
                "build_type": "tar",
                "lucene_version": "9.7.0",
                "minimum_wire_compatibility_version": "7.10.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "The OpenSearch Project: https://opensearch.org/"
        }),
    }
}

fn open_pit(cluster: &Cluster, index: &str, query: &str) -> EsResult<Value> {
    let keep_alive = param(query, "keep_alive").ok_or_else(|| {
        EsError::bad_request(
            "action_request_validation_exception",
            "Validation Failed: 1: [keep_alive] is not specified;",
        )
    })?;
    let keep_alive = parse_duration(keep_alive)?;
    let indices = cluster.resolve(index)?;
    check_forbidden(cluster, &indices)?;
    let (id, shards) = cluster.open_pit(&indices, keep_alive);
    Ok(json!({"id": id, "_shards": {"total": shards, "successful": shards, "skipped": 0, "failed": 0}}))
}

fn count(cluster: &Cluster, index: &str, body: &Value) -> EsResult<Value> {
    let indices = cluster.resolve(index)?;
    check_forbidden(cluster, &indices)?;
    let shards = cluster.shard_count(&indices);
    let n = match body.get("query") {
        None => cluster.doc_count(&indices),
        Some(q) => {
            let q = Query::parse(q)?;
            let (hits, _) = cluster.snapshot(&indices);
            hits.iter().filter(|h| matches(&q, h)).count()
        }
    };
    Ok(json!({"count": n, "_shards": {"total": shards, "successful": shards, "skipped": 0, "failed": 0}}))
}

fn matches(q: &Query, hit: &Hit) -> bool {
    if !q.needs_source() {
        return q.matches(hit, &Value::Null);
    }
    let source: Value = serde_json::from_str(&hit.doc.source).unwrap_or(Value::Null);
    q.matches(hit, &source)
}

/// What one search request asks, parsed and checked.
struct Request1 {
    query: Query,
    sort: Vec<SortKey>,
    after: Option<Vec<Value>>,
    slice: Option<(u64, u64)>,
    size: usize,
    from: usize,
    source: Option<SourceFilter>,
    track_total: Option<u64>,
}

fn parse_request(body: &Value) -> EsResult<Request1> {
    let query = body.get("query").map(Query::parse).transpose()?.unwrap_or(Query::MatchAll);
    let sort = parse_sort(body.get("sort"))?;
    let after = body.get("search_after").map(|v| v.as_array().cloned().unwrap_or_default());
    if let Some(after) = &after {
        if sort.is_empty() {
            return Err(EsError::illegal_argument("Sort must contain at least one field."));
        }
        if after.len() != sort.len() {
            return Err(EsError::illegal_argument(&format!(
                "search_after has {} value(s) but sort has {}.",
                after.len(),
                sort.len()
            )));
        }
    }
    let slice = match body.get("slice") {
        None => None,
        Some(s) => {
            let (id, max) = (s["id"].as_u64().unwrap_or(0), s["max"].as_u64().unwrap_or(0));
            if max <= 1 {
                return Err(EsError::illegal_argument("max must be greater than 1"));
            }
            if id >= max {
                return Err(EsError::illegal_argument("max must be greater than id"));
            }
            Some((id, max))
        }
    };
    let track_total = match body.get("track_total_hits") {
        Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(u64::MAX),
        Some(Value::Number(n)) => n.as_u64(),
        _ => Some(10_000),
    };
    Ok(Request1 {
        query,
        sort,
        after,
        slice,
        size: body.get("size").and_then(Value::as_u64).unwrap_or(10) as usize,
        from: body.get("from").and_then(Value::as_u64).unwrap_or(0) as usize,
        source: SourceFilter::parse(body.get("_source")),
        track_total,
    })
}

fn search(cluster: &Cluster, index: Option<&str>, query: &str, body: &Value) -> EsResult<String> {
    let started = Instant::now();
    let req = parse_request(body)?;
    let scroll = param(query, "scroll").map(parse_duration).transpose()?;
    let pit = body.get("pit");
    let (hits, shards, pit_id) = match (pit, index) {
        (Some(_), Some(_)) => {
            return Err(EsError::bad_request(
                "action_request_validation_exception",
                "Validation Failed: 1: [indices] cannot be used with point in time. Do not specify any index with point in time.;",
            ));
        }
        (Some(_), None) if scroll.is_some() => {
            return Err(EsError::bad_request(
                "action_request_validation_exception",
                "Validation Failed: 1: using [point in time] is not allowed in a scroll context;",
            ));
        }
        (Some(pit), None) => {
            let id = pit["id"].as_str().ok_or_else(|| EsError::parsing("[pit] requires [id]"))?.to_owned();
            let keep_alive = pit.get("keep_alive").and_then(Value::as_str).map(parse_duration).transpose()?;
            let (hits, shards) = cluster.with_context(&id, keep_alive, |ctx| match ctx {
                Context::Pit { hits, shards } => Ok((hits.clone(), *shards)),
                Context::Scroll { .. } => Err(EsError::context_missing("not a point in time")),
            })?;
            (hits, shards, Some(id))
        }
        (None, index) => {
            if req.sort.iter().any(|k| k.field == "_shard_doc") {
                return Err(EsError::illegal_argument(
                    "[_shard_doc] sort field cannot be used without [point in time]",
                ));
            }
            let indices = cluster.resolve(index.unwrap_or("_all"))?;
            check_forbidden(cluster, &indices)?;
            let (hits, shards) = cluster.snapshot(&indices);
            (Arc::new(hits), shards, None)
        }
    };

    let in_slice = |h: &Hit| req.slice.is_none_or(|(id, max)| route(&h.doc.id) % max == id);
    let key_order = req.sort.is_empty()
        || (req.sort.len() == 1
            && matches!(req.sort[0].field.as_str(), "_shard_doc" | "_doc")
            && !req.sort[0].descending);
    let mut total = 0u64;
    let mut page: Vec<(Hit, Vec<SortValue>)> = Vec::new();
    let want = if scroll.is_some() { usize::MAX } else { req.from + req.size };

    if key_order && req.track_total.is_none() {
        // Snapshot order is `_shard_doc` order: start after `search_after`, stop when full.
        let start = match &req.after {
            Some(after) => {
                let after = after[0].as_i64().or_else(|| after[0].as_str().and_then(|s| s.parse().ok())).unwrap_or(-1);
                hits.partition_point(|h| (h.key as i64) <= after)
            }
            None => 0,
        };
        for h in hits[start..].iter().filter(|h| in_slice(h)) {
            if page.len() >= want {
                break;
            }
            if matches(&req.query, h) {
                page.push((h.clone(), vec![SortValue::Int(h.key as i64)]));
            }
        }
    } else {
        let after = req.after.as_ref();
        let mut all = Vec::new();
        let needs = req.query.needs_source() || req.sort.iter().any(|k| !k.field.starts_with('_'));
        for h in hits.iter().filter(|h| in_slice(h)) {
            let source = if needs { serde_json::from_str(&h.doc.source).unwrap_or(Value::Null) } else { Value::Null };
            if !req.query.matches(h, &source) {
                continue;
            }
            total += 1;
            let values: Vec<SortValue> = if req.sort.is_empty() {
                vec![SortValue::Int(h.key as i64)]
            } else {
                req.sort.iter().map(|k| sort_value(k, h, &source)).collect()
            };
            if let Some(after) = after {
                let after: Vec<SortValue> =
                    after.iter().zip(&values).map(|(a, like)| SortValue::from_json(a, like)).collect();
                if compare_tuples(&req.sort, &values, &after) != std::cmp::Ordering::Greater {
                    continue;
                }
            }
            all.push((h.clone(), values));
        }
        let keys = if req.sort.is_empty() {
            vec![SortKey { field: "_doc".into(), descending: false }]
        } else {
            req.sort.clone()
        };
        all.sort_by(|a, b| compare_tuples(&keys, &a.1, &b.1));
        all.truncate(want);
        page = all;
    }
    let page: Vec<(Hit, Vec<SortValue>)> =
        page.into_iter().skip(if req.after.is_some() { 0 } else { req.from }).collect();

    let mut scroll_id = None;
    let page = match scroll {
        Some(keep_alive) => {
            let first: Vec<_> = page.iter().take(req.size).cloned().collect();
            let rest = Context::Scroll {
                hits: page.into_iter().map(|(h, _)| h).collect(),
                pos: first.len(),
                size: req.size,
                shards,
                source: req.source.clone(),
            };
            scroll_id = Some(cluster.open_scroll(rest, keep_alive));
            first
        }
        None => page,
    };
    let show_sort = !req.sort.is_empty();
    let total = req.track_total.map(|cap| (total.min(cap), if total > cap { "gte" } else { "eq" }));
    Ok(page_json(started, shards, pit_id, scroll_id, total, &page, show_sort, req.source.as_ref()))
}

/// One page of hits, written out directly: `_source` goes out as indexed, unparsed.
#[allow(clippy::too_many_arguments)]
fn page_json(
    started: Instant,
    shards: u32,
    pit_id: Option<String>,
    scroll_id: Option<String>,
    total: Option<(u64, &str)>,
    page: &[(Hit, Vec<SortValue>)],
    show_sort: bool,
    source: Option<&SourceFilter>,
) -> String {
    let quote = |s: &str| Value::from(s).to_string();
    let score = if show_sort { "null" } else { "1.0" };
    let mut out = String::with_capacity(256 + page.iter().map(|(h, _)| h.doc.source.len() + 96).sum::<usize>());
    out.push_str(&format!(r#"{{"took":{},"timed_out":false,"#, started.elapsed().as_millis()));
    if let Some(id) = pit_id {
        out.push_str(&format!(r#""pit_id":{},"#, quote(&id)));
    }
    if let Some(id) = scroll_id {
        out.push_str(&format!(r#""_scroll_id":{},"#, quote(&id)));
    }
    out.push_str(&format!(r#""_shards":{{"total":{shards},"successful":{shards},"skipped":0,"failed":0}},"hits":{{"#));
    if let Some((value, relation)) = total {
        out.push_str(&format!(r#""total":{{"value":{value},"relation":"{relation}"}},"#));
    }
    out.push_str(&format!(r#""max_score":{score},"hits":["#));
    for (i, (h, sort)) in page.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(r#"{{"_index":{},"_id":{},"_score":{score}"#, quote(&h.doc.index), quote(&h.doc.id)));
        match source {
            Some(f) if f.disabled => {}
            Some(f) => {
                let filtered = f.apply(&serde_json::from_str(&h.doc.source).unwrap_or(Value::Null));
                out.push_str(&format!(r#","_source":{filtered}"#));
            }
            None => {
                out.push_str(r#","_source":"#);
                out.push_str(&h.doc.source);
            }
        }
        if show_sort {
            let sort: Vec<Value> = sort.iter().map(SortValue::json).collect();
            out.push_str(&format!(r#","sort":{}"#, Value::Array(sort)));
        }
        out.push('}');
    }
    out.push_str("]}}");
    out
}

fn scroll_next(cluster: &Cluster, body: &Value) -> EsResult<String> {
    let started = Instant::now();
    let id = body["scroll_id"].as_str().ok_or_else(|| EsError::illegal_argument("[scroll_id] is required"))?.to_owned();
    let keep_alive: Option<Duration> = body.get("scroll").and_then(Value::as_str).map(parse_duration).transpose()?;
    let (page, shards, source) = cluster.with_context(&id, keep_alive, |ctx| match ctx {
        Context::Scroll { hits, pos, size, shards, source } => {
            let end = (*pos + *size).min(hits.len());
            let page: Vec<(Hit, Vec<SortValue>)> = hits[*pos..end].iter().map(|h| (h.clone(), Vec::new())).collect();
            *pos = end;
            Ok((page, *shards, source.clone()))
        }
        Context::Pit { .. } => Err(EsError::context_missing(&id)),
    })?;
    Ok(page_json(started, shards, None, Some(id), None, &page, false, source.as_ref()))
}
