//! The cluster's state: indices with their mappings, shards and documents,
//! and the search contexts (points in time, scrolls) that hold snapshots.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::{EsConfig, Faults, dates};

/// An error as Elasticsearch answers it: a status and a body `{"error": …, "status": …}`.
#[derive(Debug)]
pub struct EsError {
    pub status: u16,
    pub body: Value,
}

impl EsError {
    fn new(status: u16, kind: &str, reason: &str, extra: Value) -> Self {
        let mut cause = json!({"type": kind, "reason": reason});
        if let (Some(c), Value::Object(extra)) = (cause.as_object_mut(), extra) {
            c.extend(extra);
        }
        let mut error = cause.clone();
        error["root_cause"] = json!([cause]);
        Self { status, body: json!({"error": error, "status": status}) }
    }

    pub fn index_not_found(index: &str) -> Self {
        Self::new(
            404,
            "index_not_found_exception",
            &format!("no such index [{index}]"),
            json!({"index_uuid": "_na_", "resource.type": "index_or_alias", "resource.id": index, "index": index}),
        )
    }

    pub fn bad_request(kind: &str, reason: &str) -> Self {
        Self::new(400, kind, reason, Value::Null)
    }

    pub fn illegal_argument(reason: &str) -> Self {
        Self::bad_request("illegal_argument_exception", reason)
    }

    pub fn parsing(reason: &str) -> Self {
        Self::new(400, "parsing_exception", reason, json!({"line": 1, "col": 1}))
    }

    /// A point in time or scroll that expired or never existed.
    pub fn context_missing(id: &str) -> Self {
        let reason = format!("No search context found for id [{id}]");
        let cause = json!({"type": "search_context_missing_exception", "reason": reason});
        let error = json!({
            "root_cause": [cause],
            "type": "search_phase_execution_exception",
            "reason": "all shards failed",
            "phase": "query",
            "grouped": true,
            "failed_shards": [{"shard": -1, "index": null, "reason": cause}],
        });
        Self { status: 404, body: json!({"error": error, "status": 404}) }
    }

    pub fn rejected() -> Self {
        Self::new(
            429,
            "es_rejected_execution_exception",
            "rejected execution of org.elasticsearch.action.search.SearchTask on EsThreadPoolExecutor[name = \
             weir-es/search, queue capacity = 1000, active threads = 13, queued tasks = 1000]",
            Value::Null,
        )
    }

    pub fn unavailable() -> Self {
        Self::new(503, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master];", Value::Null)
    }

    pub fn unauthenticated(path: &str) -> Self {
        Self::new(
            401,
            "security_exception",
            &format!("missing authentication credentials for REST request [{path}]"),
            json!({"header": {"WWW-Authenticate": ["Basic realm=\"security\" charset=\"UTF-8\"", "ApiKey"]}}),
        )
    }

    pub fn forbidden(index: &str) -> Self {
        Self::new(
            403,
            "security_exception",
            &format!(
                "action [indices:data/read/search] is unauthorized for user [weir] with effective roles [reader] \
                 on indices [{index}], this action is granted by the index privileges [read,all]"
            ),
            Value::Null,
        )
    }
}

pub type EsResult<T> = Result<T, EsError>;

/// One stored document version.
#[derive(Debug)]
pub struct Doc {
    pub index: Arc<str>,
    pub id: String,
    /// `_source`, exactly as indexed.
    pub source: String,
    pub version: u64,
}

/// A document in a snapshot, with its `_shard_doc` value: the shard's place
/// among the snapshot's shards in the high 32 bits, its doc number in the low.
#[derive(Debug, Clone)]
pub struct Hit {
    pub key: u64,
    pub doc: Arc<Doc>,
    /// The index's mapping properties, for field types.
    pub mapping: Arc<Value>,
}

pub struct Index {
    pub uuid: String,
    pub shards: u32,
    /// `{"dynamic": …, "properties": {…}}`.
    pub mappings: Arc<Value>,
    pub aliases: BTreeSet<String>,
    pub ignore_malformed: bool,
    pub created: i64,
    /// Per shard: doc number → document. An update is a delete plus a new doc number, as in Lucene.
    shard_docs: Vec<BTreeMap<u32, Arc<Doc>>>,
    next_doc: Vec<u32>,
    ids: HashMap<String, (u32, u32)>,
}

impl Index {
    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// What a point in time or a scroll holds.
pub enum Context {
    Pit { hits: Arc<Vec<Hit>>, shards: u32 },
    Scroll { hits: Vec<Hit>, pos: usize, size: usize, shards: u32, source: Option<super::query::SourceFilter> },
}

struct Open {
    context: Context,
    keep_alive: Duration,
    expires: Instant,
}

#[derive(Default)]
struct State {
    indices: BTreeMap<String, Index>,
    contexts: HashMap<String, Open>,
    next_context: u64,
    pages_since_expiry: u64,
}

pub struct Cluster {
    pub config: EsConfig,
    pub faults: Faults,
    state: Mutex<State>,
}

/// The routing hash: a document's shard is `hash(_id) % shards`; slices use it too.
pub fn route(id: &str) -> u64 {
    // FNV-1a.
    id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// `1m`, `30s`, `500ms`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> EsResult<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| EsError::illegal_argument(&format!("failed to parse [{s}]")))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => {
            return Err(EsError::illegal_argument(&format!(
                "failed to parse setting [keep_alive] with value [{s}] as a time value: unit is missing or unrecognized"
            )));
        }
    };
    Ok(Duration::from_millis(ms))
}

impl Cluster {
    pub fn new(config: EsConfig) -> Self {
        Self { config, faults: Faults::default(), state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn open_contexts(&self) -> usize {
        let mut state = self.lock();
        let now = Instant::now();
        state.contexts.retain(|_, c| c.expires > now);
        state.contexts.len()
    }

    /// Index names an expression (`a,b`, `logs-*`, an alias, `_all`) resolves to.
    /// A concrete name that does not exist is a 404; a wildcard may match nothing.
    pub fn resolve(&self, expr: &str) -> EsResult<Vec<String>> {
        let state = self.lock();
        resolve(&state, expr)
    }

    pub fn create_index(&self, name: &str, body: &Value) -> EsResult<Value> {
        if name.starts_with(['_', '-', '+'])
            || name.chars().any(|c| c.is_ascii_uppercase() || "\\/*?\"<>| ,#:".contains(c))
        {
            return Err(EsError::new(
                400,
                "invalid_index_name_exception",
                &format!("Invalid index name [{name}], must be lowercase and not contain special characters"),
                json!({"index": name, "index_uuid": "_na_"}),
            ));
        }
        let mut state = self.lock();
        if state.indices.contains_key(name) {
            return Err(EsError::new(
                400,
                "resource_already_exists_exception",
                &format!("index [{name}/{}] already exists", state.indices[name].uuid),
                json!({"index": name}),
            ));
        }
        let settings = &body["settings"];
        let setting = |key: &str| settings.get(key).or_else(|| settings["index"].get(key)).cloned();
        let shards = match setting("number_of_shards") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(1),
            Some(Value::String(s)) => s.parse().unwrap_or(1),
            _ => 1,
        } as u32;
        let ignore_malformed = setting("mapping.ignore_malformed")
            .or_else(|| settings["index"]["mapping"].get("ignore_malformed").cloned())
            .is_some_and(|v| v == json!(true) || v == json!("true"));
        let mut mappings = body.get("mappings").cloned().unwrap_or_else(|| json!({}));
        if mappings.get("properties").is_none() {
            mappings["properties"] = json!({});
        }
        let aliases = body["aliases"].as_object().map(|a| a.keys().cloned().collect()).unwrap_or_default();
        let uuid = format!("{:022x}", route(name) ^ state.indices.len() as u64);
        state.indices.insert(name.to_owned(), new_index(uuid, shards.max(1), mappings, aliases, ignore_malformed));
        Ok(json!({"acknowledged": true, "shards_acknowledged": true, "index": name}))
    }

    pub fn delete_index(&self, expr: &str) -> EsResult<Value> {
        let mut state = self.lock();
        for name in resolve(&state, expr)? {
            state.indices.remove(&name);
        }
        Ok(json!({"acknowledged": true}))
    }

    pub fn put_alias(&self, expr: &str, alias: &str) -> EsResult<Value> {
        let mut state = self.lock();
        for name in resolve(&state, expr)? {
            if let Some(index) = state.indices.get_mut(&name) {
                index.aliases.insert(alias.to_owned());
            }
        }
        Ok(json!({"acknowledged": true}))
    }

    pub fn mapping(&self, expr: &str) -> EsResult<Value> {
        let state = self.lock();
        let mut out = Map::new();
        for name in resolve(&state, expr)? {
            out.insert(name.clone(), json!({"mappings": &*state.indices[&name].mappings}));
        }
        Ok(Value::Object(out))
    }

    pub fn settings(&self, expr: &str) -> EsResult<Value> {
        let state = self.lock();
        let mut out = Map::new();
        for name in resolve(&state, expr)? {
            let index = &state.indices[&name];
            out.insert(
                name.clone(),
                json!({"settings": {"index": {
                    "number_of_shards": index.shards.to_string(),
                    "number_of_replicas": "1",
                    "uuid": index.uuid,
                    "provided_name": name,
                    "creation_date": index.created.to_string(),
                    "version": {"created": "8512000"},
                }}}),
            );
        }
        Ok(Value::Object(out))
    }

    /// `_bulk`: NDJSON action and source lines. Items fail one by one, as in Elasticsearch.
    pub fn bulk(&self, default_index: Option<&str>, body: &str) -> EsResult<Value> {
        let started = Instant::now();
        let mut lines = body.lines().filter(|l| !l.trim().is_empty());
        let mut items = Vec::new();
        let mut errors = false;
        let mut state = self.lock();
        while let Some(line) = lines.next() {
            let action: Value = serde_json::from_str(line)
                .map_err(|e| EsError::illegal_argument(&format!("Malformed action/metadata line: {e}")))?;
            let Some((op, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
                return Err(EsError::illegal_argument("Malformed action/metadata line [1], expected START_OBJECT"));
            };
            let index = meta["_index"].as_str().or(default_index).unwrap_or_default().to_owned();
            let id = meta["_id"].as_str().map(str::to_owned).unwrap_or_else(|| {
                state.next_context += 1;
                format!("auto{:016x}", route(&format!("{index}{}", state.next_context)))
            });
            let result = match op.as_str() {
                "index" | "create" => {
                    let source = lines.next().unwrap_or_default();
                    index_doc(&mut state, &index, &id, source, op == "create")
                }
                "delete" => delete_doc(&mut state, &index, &id),
                other => Err(EsError::illegal_argument(&format!("Malformed action/metadata line, unknown [{other}]"))),
            };
            let item = match result {
                Ok((status, result, version)) => json!({
                    "_index": index, "_id": id, "_version": version, "result": result,
                    "_shards": {"total": 2, "successful": 1, "failed": 0},
                    "_seq_no": version - 1, "_primary_term": 1, "status": status,
                }),
                Err(e) => {
                    errors = true;
                    json!({"_index": index, "_id": id, "status": e.status, "error": e.body["error"].clone()})
                }
            };
            items.push(json!({ op.as_str(): item }));
        }
        Ok(json!({"took": started.elapsed().as_millis() as u64, "errors": errors, "items": items}))
    }

    /// A snapshot of the documents of `indices`, in `_shard_doc` order.
    pub fn snapshot(&self, indices: &[String]) -> (Vec<Hit>, u32) {
        let state = self.lock();
        snapshot(&state, indices)
    }

    /// Open a point in time over `indices`; its id.
    pub fn open_pit(&self, indices: &[String], keep_alive: Duration) -> (String, u32) {
        let mut state = self.lock();
        let (hits, shards) = snapshot(&state, indices);
        let id = new_context_id(&mut state, "pit");
        let open = Open {
            context: Context::Pit { hits: Arc::new(hits), shards },
            keep_alive,
            expires: Instant::now() + keep_alive,
        };
        state.contexts.insert(id.clone(), open);
        (id, shards)
    }

    pub fn open_scroll(&self, context: Context, keep_alive: Duration) -> String {
        let mut state = self.lock();
        let id = new_context_id(&mut state, "scroll");
        state.contexts.insert(id.clone(), Open { context, keep_alive, expires: Instant::now() + keep_alive });
        id
    }

    /// Use a context for one page: `f` reads (or advances) it, with its keep-alive
    /// renewed (to `keep_alive` if given). Missing or expired: 404.
    pub fn with_context<T>(
        &self,
        id: &str,
        keep_alive: Option<Duration>,
        f: impl FnOnce(&mut Context) -> EsResult<T>,
    ) -> EsResult<T> {
        let mut state = self.lock();
        self.count_page(&mut state);
        let now = Instant::now();
        let open = match state.contexts.get_mut(id) {
            Some(open) if open.expires > now => open,
            _ => {
                state.contexts.remove(id);
                return Err(EsError::context_missing(id));
            }
        };
        if let Some(k) = keep_alive {
            open.keep_alive = k;
        }
        open.expires = now + open.keep_alive;
        f(&mut open.context)
    }

    /// The expiry fault: after so many pages, every context is gone.
    fn count_page(&self, state: &mut State) {
        use std::sync::atomic::Ordering::SeqCst;
        let after = self.faults.expire_after_pages.load(SeqCst);
        if after == 0 {
            return;
        }
        state.pages_since_expiry += 1;
        if state.pages_since_expiry > after {
            state.contexts.clear();
            state.pages_since_expiry = 0;
            if !Faults::take(&self.faults.expire_repeats) {
                self.faults.expire_after_pages.store(0, SeqCst);
            }
        }
    }

    /// Release contexts; how many existed.
    pub fn release(&self, ids: &[String]) -> usize {
        let mut state = self.lock();
        let now = Instant::now();
        ids.iter().filter(|id| state.contexts.remove(id.as_str()).is_some_and(|o| o.expires > now)).count()
    }

    pub fn release_all_scrolls(&self) -> usize {
        let mut state = self.lock();
        let before = state.contexts.len();
        state.contexts.retain(|_, o| matches!(o.context, Context::Pit { .. }));
        before - state.contexts.len()
    }

    /// Documents in `indices` (for `_count` without a query).
    pub fn doc_count(&self, indices: &[String]) -> usize {
        let state = self.lock();
        indices.iter().filter_map(|i| state.indices.get(i)).map(Index::len).sum()
    }

    pub fn shard_count(&self, indices: &[String]) -> u32 {
        let state = self.lock();
        indices.iter().filter_map(|i| state.indices.get(i)).map(|i| i.shards).sum()
    }
}

fn new_index(uuid: String, shards: u32, mappings: Value, aliases: BTreeSet<String>, ignore_malformed: bool) -> Index {
    Index {
        uuid,
        shards,
        mappings: Arc::new(mappings),
        aliases,
        ignore_malformed,
        created: chrono::Utc::now().timestamp_millis(),
        shard_docs: vec![BTreeMap::new(); shards as usize],
        next_doc: vec![0; shards as usize],
        ids: HashMap::new(),
    }
}

fn new_context_id(state: &mut State, kind: &str) -> String {
    state.next_context += 1;
    // Opaque, base64-looking, as the real ones are.
    format!("{kind}{:016x}{:08x}AAAAAAAAAA==", route(&state.next_context.to_string()), state.next_context)
}

fn resolve(state: &State, expr: &str) -> EsResult<Vec<String>> {
    let mut out = BTreeSet::new();
    for part in expr.split(',').filter(|p| !p.is_empty()) {
        if part == "_all" || part == "*" {
            out.extend(state.indices.keys().filter(|k| !k.starts_with('.')).cloned());
        } else if part.contains('*') {
            out.extend(
                state
                    .indices
                    .iter()
                    .filter(|(k, i)| glob(part, k) || i.aliases.iter().any(|a| glob(part, a)))
                    .map(|(k, _)| k.clone()),
            );
        } else {
            let found: Vec<String> = state
                .indices
                .iter()
                .filter(|(k, i)| *k == part || i.aliases.contains(part))
                .map(|(k, _)| k.clone())
                .collect();
            if found.is_empty() {
                return Err(EsError::index_not_found(part));
            }
            out.extend(found);
        }
    }
    Ok(out.into_iter().collect())
}

/// `*` matches any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            text.starts_with(head) && {
                let text = &text[head.len()..];
                (0..=text.len()).any(|i| text.is_char_boundary(i) && glob(rest, &text[i..]))
            }
        }
    }
}

fn snapshot(state: &State, indices: &[String]) -> (Vec<Hit>, u32) {
    let mut hits = Vec::new();
    let mut shard_base = 0u64;
    for name in indices {
        let Some(index) = state.indices.get(name) else { continue };
        for (s, docs) in index.shard_docs.iter().enumerate() {
            let shard = shard_base + s as u64;
            hits.extend(docs.iter().map(|(n, doc)| Hit {
                key: (shard << 32) | *n as u64,
                doc: doc.clone(),
                mapping: index.mappings.clone(),
            }));
        }
        shard_base += index.shards as u64;
    }
    (hits, shard_base as u32)
}

type Indexed = (u16, &'static str, u64);

fn index_doc(state: &mut State, index: &str, id: &str, source: &str, create: bool) -> EsResult<Indexed> {
    let doc: Value = serde_json::from_str(source)
        .map_err(|e| EsError::bad_request("document_parsing_exception", &format!("[1:1] failed to parse: {e}")))?;
    if !doc.is_object() {
        return Err(EsError::bad_request("document_parsing_exception", "[1:1] failed to parse: not an object"));
    }
    if !state.indices.contains_key(index) {
        if resolve(state, index).is_ok() {
            return Err(EsError::illegal_argument(&format!("no write index is defined for alias [{index}]")));
        }
        let uuid = format!("{:022x}", route(index));
        state.indices.insert(index.to_owned(), new_index(uuid, 1, json!({"properties": {}}), BTreeSet::new(), false));
    }
    let entry = state.indices.get_mut(index).ok_or_else(|| EsError::index_not_found(index))?;
    // Validate values and grow the mapping on a copy; commit both together.
    let mut mappings = (*entry.mappings).clone();
    let dynamic = mappings.get("dynamic").cloned().unwrap_or(json!(true));
    map_object(&mut mappings, &doc, "", &dynamic, entry.ignore_malformed, id)?;
    let shard = (route(id) % entry.shards as u64) as u32;
    let previous = entry.ids.get(id).copied();
    if previous.is_some() && create {
        return Err(EsError::new(
            409,
            "version_conflict_engine_exception",
            &format!("[{id}]: version conflict, document already exists (current version [1])"),
            json!({"index": index, "shard": shard.to_string(), "index_uuid": entry.uuid}),
        ));
    }
    let mut version = 1;
    if let Some((s, n)) = previous
        && let Some(old) = entry.shard_docs[s as usize].remove(&n)
    {
        version = old.version + 1;
    }
    let n = entry.next_doc[shard as usize];
    entry.next_doc[shard as usize] += 1;
    let doc = Doc { index: Arc::from(index), id: id.to_owned(), source: source.to_owned(), version };
    entry.shard_docs[shard as usize].insert(n, Arc::new(doc));
    entry.ids.insert(id.to_owned(), (shard, n));
    entry.mappings = Arc::new(mappings);
    let (status, result) = if version == 1 { (201, "created") } else { (200, "updated") };
    Ok((status, result, version))
}

fn delete_doc(state: &mut State, index: &str, id: &str) -> EsResult<Indexed> {
    let entry = state.indices.get_mut(index).ok_or_else(|| EsError::index_not_found(index))?;
    match entry.ids.remove(id) {
        Some((s, n)) => {
            let version = entry.shard_docs[s as usize].remove(&n).map_or(1, |d| d.version + 1);
            Ok((200, "deleted", version))
        }
        None => Ok((404, "not_found", 1)),
    }
}

/// Check `doc`'s values against `mapping` (an object mapping with `properties`)
/// and add the fields dynamic mapping adds.
fn map_object(
    mapping: &mut Value,
    doc: &Value,
    path: &str,
    dynamic: &Value,
    ignore_malformed: bool,
    id: &str,
) -> EsResult<()> {
    let Some(fields) = doc.as_object() else { return Ok(()) };
    let dynamic = mapping.get("dynamic").cloned().unwrap_or_else(|| dynamic.clone());
    for (name, value) in fields {
        let full = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
        if mapping["properties"].get(name).is_none() {
            if value.is_null() || dynamic == json!(false) || dynamic == json!("false") {
                continue;
            }
            if dynamic == json!("strict") {
                return Err(EsError::bad_request(
                    "strict_dynamic_mapping_exception",
                    &format!(
                        "[1:2] mapping set to strict, dynamic introduction of [{name}] within [_doc] is not allowed"
                    ),
                ));
            }
            let Some(new) = dynamic_mapping(value) else { continue };
            mapping["properties"][name] = new;
        }
        let field = &mut mapping["properties"][name];
        let ty = field.get("type").and_then(Value::as_str).unwrap_or("object").to_owned();
        let malformed_ok = ignore_malformed || field.get("ignore_malformed") == Some(&json!(true));
        let values: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for v in values.into_iter().filter(|v| !v.is_null()) {
            match ty.as_str() {
                "object" | "nested" => {
                    if !v.is_object() {
                        return Err(EsError::bad_request(
                            "document_parsing_exception",
                            &format!(
                                "[1:2] object mapping for [{full}] tried to parse field [{name}] as object, but found a concrete value"
                            ),
                        ));
                    }
                    if field.get("enabled") != Some(&json!(false)) {
                        if field.get("properties").is_none() {
                            field["properties"] = json!({});
                        }
                        map_object(field, v, &full, &dynamic, ignore_malformed, id)?;
                    }
                }
                _ if !fits(&ty, field, v) && !malformed_ok => {
                    return Err(EsError::bad_request(
                        "document_parsing_exception",
                        &format!(
                            "[1:2] failed to parse field [{full}] of type [{ty}] in document with id '{id}'. \
                             Preview of field's value: '{}'",
                            v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Whether `v` is a valid value for a field of type `ty`.
fn fits(ty: &str, field: &Value, v: &Value) -> bool {
    let number = |v: &Value| v.is_number() || v.as_str().is_some_and(|s| s.trim().parse::<f64>().is_ok());
    match ty {
        // `coerce` (on by default) takes numeric strings and truncates fractions.
        "long" | "integer" | "short" | "byte" | "unsigned_long" | "double" | "float" | "half_float"
        | "scaled_float" => number(v),
        "boolean" => matches!(v, Value::Bool(_)) || matches!(v.as_str(), Some("true" | "false" | "")),
        "date" | "date_nanos" => {
            let format = field.get("format").and_then(Value::as_str).unwrap_or(dates::DEFAULT_FORMAT);
            dates::to_millis(v, format).is_some()
        }
        "ip" => v.as_str().is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
        _ => true,
    }
}

/// The mapping dynamic mapping gives a new field, from its first value.
fn dynamic_mapping(value: &Value) -> Option<Value> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"type": "long"}),
        Value::Number(_) => json!({"type": "float"}),
        Value::String(s) if dates::to_millis(value, "strict_date_optional_time").is_some() && s.len() >= 8 => {
            json!({"type": "date"})
        }
        Value::String(_) => json!({"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}),
        Value::Array(items) => return items.iter().find_map(dynamic_mapping),
        Value::Object(_) => json!({"properties": {}}),
    })
}
