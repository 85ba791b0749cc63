//! The query DSL, sorting and `_source` filtering, over documents and their
//! index's mapping.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::dates;
use super::state::{EsError, EsResult, Hit, glob};

/// A parsed query clause.
#[derive(Debug, Clone)]
pub enum Query {
    MatchAll,
    MatchNone,
    Term { field: String, value: Value },
    Terms { field: String, values: Vec<Value> },
    Range { field: String, bounds: Vec<(Ordering, bool, Value)>, format: Option<String> },
    Exists(String),
    Ids(Vec<String>),
    Bool { must: Vec<Query>, must_not: Vec<Query>, should: Vec<Query>, minimum_should_match: usize },
}

impl Query {
    /// `{"match_all": {}}` and friends; an unknown clause is a `parsing_exception`.
    pub fn parse(v: &Value) -> EsResult<Query> {
        let Some((kind, body)) = v.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next()) else {
            return Err(EsError::parsing("[_na] query malformed, must start with start_object"));
        };
        let single = |what: &str| -> EsResult<(String, Value)> {
            body.as_object()
                .and_then(|o| o.iter().find(|(k, _)| !matches!(k.as_str(), "boost" | "_name" | "case_insensitive")))
                .map(|(k, v)| (k.clone(), v.clone()))
                .ok_or_else(|| EsError::parsing(&format!("[{what}] query does not support an empty body")))
        };
        Ok(match kind.as_str() {
            "match_all" => Query::MatchAll,
            "match_none" => Query::MatchNone,
            "term" => {
                let (field, value) = single("term")?;
                let value = value.get("value").cloned().unwrap_or(value);
                Query::Term { field, value }
            }
            "terms" => {
                let (field, values) = single("terms")?;
                let values = values
                    .as_array()
                    .cloned()
                    .ok_or_else(|| EsError::parsing("[terms] query does not support a non-array value"))?;
                Query::Terms { field, values }
            }
            "range" => {
                let (field, spec) = single("range")?;
                let mut bounds = Vec::new();
                for (op, value) in spec.as_object().into_iter().flatten() {
                    match op.as_str() {
                        "gt" => bounds.push((Ordering::Greater, false, value.clone())),
                        "gte" | "from" => bounds.push((Ordering::Greater, true, value.clone())),
                        "lt" => bounds.push((Ordering::Less, false, value.clone())),
                        "lte" | "to" => bounds.push((Ordering::Less, true, value.clone())),
                        "format" | "time_zone" | "boost" | "relation" => {}
                        other => return Err(EsError::parsing(&format!("[range] query does not support [{other}]"))),
                    }
                }
                let format = spec.get("format").and_then(Value::as_str).map(str::to_owned);
                Query::Range { field, bounds, format }
            }
            "exists" => Query::Exists(
                body["field"]
                    .as_str()
                    .ok_or_else(|| EsError::parsing("[exists] must be provided with a [field]"))?
                    .into(),
            ),
            "ids" => Query::Ids(
                body["values"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            ),
            "bool" => {
                let list = |key: &str| -> EsResult<Vec<Query>> {
                    match body.get(key) {
                        None => Ok(Vec::new()),
                        Some(Value::Array(items)) => items.iter().map(Query::parse).collect(),
                        Some(one) => Ok(vec![Query::parse(one)?]),
                    }
                };
                let mut must = list("must")?;
                must.extend(list("filter")?);
                let should = list("should")?;
                let minimum_should_match = match body.get("minimum_should_match") {
                    Some(v) => v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(1) as usize,
                    None if must.is_empty() && !should.is_empty() => 1,
                    None => 0,
                };
                Query::Bool { must, must_not: list("must_not")?, should, minimum_should_match }
            }
            other => return Err(EsError::parsing(&format!("unknown query [{other}]"))),
        })
    }

    /// Whether evaluating needs the document's `_source`.
    pub fn needs_source(&self) -> bool {
        match self {
            Query::MatchAll | Query::MatchNone | Query::Ids(_) => false,
            Query::Bool { must, must_not, should, .. } => {
                must.iter().chain(must_not).chain(should).any(Query::needs_source)
            }
            _ => true,
        }
    }

    pub fn matches(&self, hit: &Hit, source: &Value) -> bool {
        match self {
            Query::MatchAll => true,
            Query::MatchNone => false,
            Query::Ids(ids) => ids.iter().any(|i| *i == hit.doc.id),
            Query::Exists(field) => values(source, field).iter().any(|v| !v.is_null()),
            Query::Term { field, value } => matches_term(hit, source, field, value),
            Query::Terms { field, values } => values.iter().any(|v| matches_term(hit, source, field, v)),
            Query::Range { field, bounds, format } => {
                let kind = field_type(&hit.mapping, field);
                let field_format = field_format(&hit.mapping, field);
                let format = format.as_deref().unwrap_or(&field_format);
                values(source, field).iter().any(|v| {
                    bounds.iter().all(|(want, inclusive, bound)| {
                        let ord = compare_typed(&kind, v, &field_format, bound, format);
                        ord == Some(*want) || (*inclusive && ord == Some(Ordering::Equal))
                    })
                })
            }
            Query::Bool { must, must_not, should, minimum_should_match } => {
                must.iter().all(|q| q.matches(hit, source))
                    && !must_not.iter().any(|q| q.matches(hit, source))
                    && should.iter().filter(|q| q.matches(hit, source)).count() >= *minimum_should_match
            }
        }
    }
}

fn matches_term(hit: &Hit, source: &Value, field: &str, wanted: &Value) -> bool {
    if field == "_id" {
        return wanted.as_str() == Some(hit.doc.id.as_str());
    }
    if field == "_index" {
        return wanted.as_str() == Some(&*hit.doc.index);
    }
    let kind = field_type(&hit.mapping, field);
    let format = field_format(&hit.mapping, field);
    values(source, field).iter().any(|v| match kind.as_str() {
        // Text is analysed: lowercase tokens; a term matches a token.
        "text" => v.as_str().is_some_and(|s| {
            let w = wanted.as_str().map(str::to_owned).unwrap_or_else(|| wanted.to_string());
            s.split(|c: char| !c.is_alphanumeric()).any(|t| t.to_lowercase() == w)
        }),
        _ => compare_typed(&kind, v, &format, wanted, &format) == Some(Ordering::Equal),
    })
}

/// Compare a document value and a query value as the field's type does.
fn compare_typed(kind: &str, doc: &Value, doc_format: &str, query: &Value, query_format: &str) -> Option<Ordering> {
    match kind {
        "date" | "date_nanos" => {
            let a = dates::to_millis(doc, doc_format)?;
            let b = dates::to_millis(query, query_format).or_else(|| dates::to_millis(query, doc_format))?;
            Some(a.cmp(&b))
        }
        "long" | "integer" | "short" | "byte" | "unsigned_long" | "double" | "float" | "half_float"
        | "scaled_float" => number(doc)?.partial_cmp(&number(query)?),
        "boolean" => Some(boolean(doc)?.cmp(&boolean(query)?)),
        _ => Some(text(doc).cmp(&text(query))),
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" || s.is_empty() => Some(false),
        _ => None,
    }
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
}

/// The values at a dotted path, arrays flattened (a field "holds" every element).
pub fn values<'a>(doc: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    collect(doc, path, &mut out);
    out
}

fn collect<'a>(v: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect(i, path, out)),
        leaf if path.is_empty() => out.push(leaf),
        Value::Object(o) => {
            // `a.b.c` may be stored as `{"a": {"b": …}}`, `{"a.b": …}` or `{"a.b.c": …}`.
            let cuts = path.match_indices('.').map(|(i, _)| i).chain([path.len()]);
            for cut in cuts {
                if let Some(inner) = o.get(&path[..cut]) {
                    collect(inner, path.get(cut + 1..).unwrap_or(""), out);
                }
            }
        }
        _ => {}
    }
}

/// A field's mapping: `a.b` through `properties`, or a multi-field (`name.keyword`).
fn field_mapping<'a>(mapping: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = mapping;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        match node["properties"].get(part) {
            Some(next) => node = next,
            None => return node.get("fields").and_then(|f| f.get(part)).filter(|_| parts.peek().is_none()),
        }
    }
    Some(node)
}

fn field_type(mapping: &Value, path: &str) -> String {
    field_mapping(mapping, path).and_then(|m| m["type"].as_str()).unwrap_or("keyword").to_owned()
}

fn field_format(mapping: &Value, path: &str) -> String {
    field_mapping(mapping, path).and_then(|m| m["format"].as_str()).unwrap_or(dates::DEFAULT_FORMAT).to_owned()
}

/// One `sort` entry.
#[derive(Debug, Clone)]
pub struct SortKey {
    pub field: String,
    pub descending: bool,
}

/// `"sort": ["_shard_doc", {"ts": "desc"}, {"id": {"order": "asc"}}]`.
pub fn parse_sort(v: Option<&Value>) -> EsResult<Vec<SortKey>> {
    let items = match v {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.clone(),
        Some(one) => vec![one.clone()],
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(f) => Ok(SortKey { field: f.clone(), descending: f == "_score" }),
            Value::Object(o) if o.len() == 1 => {
                let (field, spec) = o.iter().next().ok_or_else(|| EsError::parsing("empty sort"))?;
                let order = spec.as_str().or_else(|| spec["order"].as_str()).unwrap_or("asc");
                Ok(SortKey { field: field.clone(), descending: order == "desc" })
            }
            _ => Err(EsError::parsing("[sort] malformed")),
        })
        .collect()
}

/// A sort value, typed, with its JSON form for the `sort` array of a hit.
#[derive(Debug, Clone, PartialEq)]
pub enum SortValue {
    Int(i64),
    Float(f64),
    Text(String),
    Missing,
}

impl SortValue {
    pub fn json(&self) -> Value {
        match self {
            SortValue::Int(i) => Value::from(*i),
            SortValue::Float(f) => Value::from(*f),
            SortValue::Text(s) => Value::from(s.clone()),
            SortValue::Missing => Value::Null,
        }
    }

    /// A `search_after` element, read as the same kind of value as `like`.
    pub fn from_json(v: &Value, like: &SortValue) -> SortValue {
        match (v, like) {
            (Value::Null, _) => SortValue::Missing,
            (v, SortValue::Text(_)) => SortValue::Text(text(v)),
            (v, SortValue::Float(_)) => number(v).map_or(SortValue::Missing, SortValue::Float),
            (v, _) => v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .map(SortValue::Int)
                .or_else(|| number(v).map(SortValue::Float))
                .unwrap_or_else(|| SortValue::Text(text(v))),
        }
    }

    /// Ascending order, missing values last.
    pub fn cmp(&self, other: &SortValue) -> Ordering {
        use SortValue::*;
        match (self, other) {
            (Missing, Missing) => Ordering::Equal,
            (Missing, _) => Ordering::Greater,
            (_, Missing) => Ordering::Less,
            (Int(a), Int(b)) => a.cmp(b),
            (Text(a), Text(b)) => a.cmp(b),
            (a, b) => a.float().partial_cmp(&b.float()).unwrap_or(Ordering::Equal),
        }
    }

    fn float(&self) -> f64 {
        match self {
            SortValue::Int(i) => *i as f64,
            SortValue::Float(f) => *f,
            _ => 0.0,
        }
    }
}

/// The sort value of one hit for one key.
pub fn sort_value(key: &SortKey, hit: &Hit, source: &Value) -> SortValue {
    match key.field.as_str() {
        "_shard_doc" | "_doc" => SortValue::Int(hit.key as i64),
        "_score" => SortValue::Float(1.0),
        "_id" => SortValue::Text(hit.doc.id.clone()),
        field => {
            let kind = field_type(&hit.mapping, field);
            let format = field_format(&hit.mapping, field);
            let mut found: Vec<SortValue> = values(source, field)
                .into_iter()
                .filter(|v| !v.is_null())
                .map(|v| match kind.as_str() {
                    "date" | "date_nanos" => dates::to_millis(v, &format).map_or(SortValue::Missing, SortValue::Int),
                    "long" | "integer" | "short" | "byte" | "unsigned_long" => v
                        .as_i64()
                        .map(SortValue::Int)
                        .unwrap_or_else(|| number(v).map_or(SortValue::Missing, SortValue::Float)),
                    "double" | "float" | "half_float" | "scaled_float" => {
                        number(v).map_or(SortValue::Missing, SortValue::Float)
                    }
                    _ => SortValue::Text(text(v)),
                })
                .collect();
            // An array sorts by its minimum (ascending) or maximum (descending).
            found.sort_by(|a, b| a.cmp(b));
            let pick = if key.descending { found.pop() } else { found.into_iter().next() };
            pick.unwrap_or(SortValue::Missing)
        }
    }
}

/// Compare two hits' sort tuples under `keys`.
pub fn compare_tuples(keys: &[SortKey], a: &[SortValue], b: &[SortValue]) -> Ordering {
    for ((k, x), y) in keys.iter().zip(a).zip(b) {
        let mut ord = x.cmp(y);
        if k.descending && !matches!((x, y), (SortValue::Missing, _) | (_, SortValue::Missing)) {
            ord = ord.reverse();
        }
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// `_source` filtering: `false`, a pattern, a list, or `{"includes", "excludes"}`.
#[derive(Debug, Clone, Default)]
pub struct SourceFilter {
    pub disabled: bool,
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
}

impl SourceFilter {
    pub fn parse(v: Option<&Value>) -> Option<SourceFilter> {
        let list = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
                _ => Vec::new(),
            }
        };
        match v? {
            Value::Bool(true) => None,
            Value::Bool(false) => Some(SourceFilter { disabled: true, ..Default::default() }),
            Value::Object(o) => Some(SourceFilter {
                disabled: false,
                includes: o.get("includes").or_else(|| o.get("include")).map(list).unwrap_or_default(),
                excludes: o.get("excludes").or_else(|| o.get("exclude")).map(list).unwrap_or_default(),
            }),
            other => Some(SourceFilter { disabled: false, includes: list(other), excludes: Vec::new() }),
        }
    }

    pub fn apply(&self, source: &Value) -> Value {
        match source {
            Value::Object(o) => Value::Object(self.filter(o, "")),
            other => other.clone(),
        }
    }

    fn filter(&self, o: &Map<String, Value>, prefix: &str) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in o {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            if self.excludes.iter().any(|p| glob(p, &path)) {
                continue;
            }
            let included = self.includes.is_empty()
                || self.includes.iter().any(|p| glob(p, &path) || glob(p, &format!("{path}.*")));
            let below = self.includes.iter().any(|p| p.starts_with(&format!("{path}.")));
            match v {
                Value::Object(inner) if !included && below => {
                    let inner = self.filter(inner, &path);
                    if !inner.is_empty() {
                        out.insert(k.clone(), Value::Object(inner));
                    }
                }
                Value::Object(inner) if included && !self.excludes.is_empty() => {
                    out.insert(k.clone(), Value::Object(self.filter_excludes(inner, &path)));
                }
                _ if included => {
                    out.insert(k.clone(), v.clone());
                }
                _ => {}
            }
        }
        out
    }

    fn filter_excludes(&self, o: &Map<String, Value>, prefix: &str) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in o {
            let path = format!("{prefix}.{k}");
            if self.excludes.iter().any(|p| glob(p, &path)) {
                continue;
            }
            match v {
                Value::Object(inner) => out.insert(k.clone(), Value::Object(self.filter_excludes(inner, &path))),
                other => out.insert(k.clone(), other.clone()),
            };
        }
        out
    }
}
