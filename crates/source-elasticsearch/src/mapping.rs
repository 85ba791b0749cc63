//! The Arrow schema of an index (or of every index a pattern or alias names),
//! from `GET /{index}/_mapping`.
//!
//! | Elasticsearch | Arrow |
//! | --- | --- |
//! | `keyword`, `text`, `match_only_text`, `wildcard`, `constant_keyword`, `version`, `search_as_you_type`, `completion` | Utf8 |
//! | `ip` | Utf8 (the address as written) |
//! | `byte`, `short`, `integer`, `long` | Int8, Int16, Int32, Int64 |
//! | `unsigned_long` | UInt64 |
//! | `half_float`, `float` / `double`, `scaled_float` | Float32 / Float64 |
//! | `boolean` | Boolean |
//! | `date` (any `format`) / `date_nanos` | Timestamp(µs, UTC) / Timestamp(ns, UTC) |
//! | `geo_point` | Struct { lat: Float64, lon: Float64 } |
//! | `binary` | Binary (decoded from base64) |
//! | `object` (or `properties` without a type) | Struct of its fields |
//! | `nested` | List of Struct |
//! | `flattened`, an object with `enabled: false`, ranges, shapes, `join`, others | Utf8 holding JSON (tagged `arrow.json`) |
//!
//! A field listed in `options.array_fields` becomes a List of its type.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field as ArrowField, Fields, TimeUnit};
use serde_json::{Map, Value};
use weir_core::{Error, Result};

use crate::dates::DateFormats;

/// How one field's values load.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Text,
    Ip,
    Int8,
    Int16,
    Int32,
    Int64,
    UInt64,
    Float32,
    Float64,
    Bool,
    Date { formats: DateFormats, nanos: bool },
    GeoPoint,
    Binary,
    Json,
    Object(Vec<Field>),
    Nested(Vec<Field>),
    List(Box<Kind>),
}

/// A mapped field: its name within its parent, its Elasticsearch type, its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub es_type: String,
    pub kind: Kind,
}

impl Kind {
    pub fn arrow(&self) -> DataType {
        match self {
            Kind::Text | Kind::Ip | Kind::Json => DataType::Utf8,
            Kind::Int8 => DataType::Int8,
            Kind::Int16 => DataType::Int16,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::UInt64 => DataType::UInt64,
            Kind::Float32 => DataType::Float32,
            Kind::Float64 => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Date { nanos: false, .. } => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Date { nanos: true, .. } => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            Kind::GeoPoint => DataType::Struct(geo_fields()),
            Kind::Binary => DataType::Binary,
            Kind::Object(children) => DataType::Struct(arrow_fields(children)),
            Kind::Nested(children) => {
                DataType::List(Arc::new(ArrowField::new("item", DataType::Struct(arrow_fields(children)), true)))
            }
            Kind::List(inner) => DataType::List(Arc::new(arrow_field("item", inner))),
        }
    }
}

pub fn geo_fields() -> Fields {
    Fields::from(vec![ArrowField::new("lat", DataType::Float64, true), ArrowField::new("lon", DataType::Float64, true)])
}

pub fn arrow_field(name: &str, kind: &Kind) -> ArrowField {
    let field = ArrowField::new(name, kind.arrow(), true);
    match kind {
        Kind::Json => weir_core::json::json_field(field),
        _ => field,
    }
}

pub fn arrow_fields(fields: &[Field]) -> Fields {
    fields.iter().map(|f| arrow_field(&f.name, &f.kind)).collect()
}

/// The fields of one index's `mappings`, and warnings for types loaded as JSON text.
pub fn parse_mappings(mappings: &Value, warnings: &mut Vec<String>) -> Vec<Field> {
    let props = mappings.get("properties").and_then(Value::as_object);
    // Elasticsearch 6 and older nest mappings under a type name.
    let props = props.or_else(|| {
        mappings.as_object().and_then(|m| m.values().find_map(|t| t.get("properties").and_then(Value::as_object)))
    });
    props.map(|p| parse_properties(p, "", warnings)).unwrap_or_default()
}

fn parse_properties(props: &Map<String, Value>, prefix: &str, warnings: &mut Vec<String>) -> Vec<Field> {
    let mut out = Vec::new();
    for (name, spec) in props {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        let es_type = spec.get("type").and_then(Value::as_str).unwrap_or("object").to_owned();
        let mut children =
            || spec.get("properties").and_then(Value::as_object).map(|p| parse_properties(p, &path, warnings));
        let kind = match es_type.as_str() {
            // An alias points at another field; it is not in `_source`.
            "alias" => continue,
            "keyword" | "text" | "match_only_text" | "wildcard" | "constant_keyword" | "version"
            | "search_as_you_type" | "completion" => Kind::Text,
            "ip" => Kind::Ip,
            "byte" => Kind::Int8,
            "short" => Kind::Int16,
            "integer" | "token_count" => Kind::Int32,
            "long" => Kind::Int64,
            "unsigned_long" => Kind::UInt64,
            "half_float" | "float" | "rank_feature" => Kind::Float32,
            "double" | "scaled_float" => Kind::Float64,
            "boolean" => Kind::Bool,
            "date" | "date_nanos" => {
                let format = spec.get("format").and_then(Value::as_str).unwrap_or(crate::dates::DEFAULT_FORMAT);
                Kind::Date { formats: DateFormats::parse(format), nanos: es_type == "date_nanos" }
            }
            "geo_point" => Kind::GeoPoint,
            "binary" => Kind::Binary,
            "object" if spec.get("enabled") == Some(&Value::Bool(false)) => Kind::Json,
            "object" => Kind::Object(children().unwrap_or_default()),
            "nested" => Kind::Nested(children().unwrap_or_default()),
            "flattened"
            | "join"
            | "geo_shape"
            | "shape"
            | "point"
            | "integer_range"
            | "long_range"
            | "float_range"
            | "double_range"
            | "date_range"
            | "ip_range"
            | "histogram"
            | "aggregate_metric_double"
            | "percolator"
            | "dense_vector"
            | "sparse_vector"
            | "rank_features" => Kind::Json,
            other => {
                warnings.push(format!("field `{path}` has type `{other}`, which Weir loads as JSON text"));
                Kind::Json
            }
        };
        out.push(Field { name: name.clone(), es_type, kind });
    }
    out
}

/// Merge the fields of several indices (a pattern or alias): the same field
/// must have one type everywhere, but for widths (`integer` and `long`:
/// Int64) and date formats (tried in turn). A conflict names the field, both
/// types and an index that has each.
pub fn merge(per_index: Vec<(String, Vec<Field>)>) -> Result<Vec<Field>> {
    let mut merged: Vec<Field> = Vec::new();
    let mut first_seen: HashMap<String, String> = HashMap::new();
    for (index, fields) in per_index {
        merge_into(&mut merged, fields, "", &index, &mut first_seen)?;
    }
    Ok(merged)
}

fn merge_into(
    into: &mut Vec<Field>,
    fields: Vec<Field>,
    prefix: &str,
    index: &str,
    seen: &mut HashMap<String, String>,
) -> Result<()> {
    for field in fields {
        let path = if prefix.is_empty() { field.name.clone() } else { format!("{prefix}.{}", field.name) };
        let Some(existing) = into.iter_mut().find(|f| f.name == field.name) else {
            seen.insert(path.clone(), index.to_owned());
            record_children(&field.kind, &path, index, seen);
            into.push(field);
            continue;
        };
        let conflict = |a: &Field, b: &Field| {
            Error::user(format!(
                "mapping conflict: field `{path}` is `{}` in index `{}` but `{}` in index `{index}`; make the \
                 mappings agree (reindex), or narrow source_table to indices that agree",
                a.es_type,
                seen.get(&path).map(String::as_str).unwrap_or("?"),
                b.es_type
            ))
        };
        let kind = match (&mut existing.kind, field.kind.clone()) {
            (Kind::Object(a), Kind::Object(b)) | (Kind::Nested(a), Kind::Nested(b)) => {
                merge_into(a, b, &path, index, seen)?;
                continue;
            }
            (a, b) if *a == b => continue,
            (a, b) => match widen(a, &b) {
                Some(k) => k,
                None => return Err(conflict(existing, &field)),
            },
        };
        existing.kind = kind;
    }
    Ok(())
}

fn record_children(kind: &Kind, path: &str, index: &str, seen: &mut HashMap<String, String>) {
    if let Kind::Object(children) | Kind::Nested(children) = kind {
        for c in children {
            let p = format!("{path}.{}", c.name);
            seen.insert(p.clone(), index.to_owned());
            record_children(&c.kind, &p, index, seen);
        }
    }
}

fn widen(a: &Kind, b: &Kind) -> Option<Kind> {
    use Kind::*;
    let rank = |k: &Kind| match k {
        Int8 => Some(1),
        Int16 => Some(2),
        Int32 => Some(3),
        Int64 => Some(4),
        _ => None,
    };
    match (a, b) {
        (Text, Text) => Some(Text),
        (Float32 | Float64, Float32 | Float64) => Some(Float64),
        (Date { formats: fa, nanos: na }, Date { formats: fb, nanos: nb }) => {
            Some(Date { formats: fa.union(fb), nanos: *na || *nb })
        }
        _ => match (rank(a), rank(b)) {
            (Some(x), Some(y)) => Some(if x >= y { a.clone() } else { b.clone() }),
            _ => None,
        },
    }
}

/// Whether `pattern` (`*` matches any run) matches the dotted `path`.
pub fn glob(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == path,
        Some((head, rest)) => {
            path.starts_with(head) && {
                let tail = &path[head.len()..];
                (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
            }
        }
    }
}

/// Keep the fields `include` patterns name (all if empty) and drop those
/// `exclude` names. An object stays if any field below it is kept.
pub fn select(fields: Vec<Field>, include: &[String], exclude: &[String], prefix: &str) -> Vec<Field> {
    let mut out = Vec::new();
    for mut field in fields {
        let path = if prefix.is_empty() { field.name.clone() } else { format!("{prefix}.{}", field.name) };
        if exclude.iter().any(|p| glob(p, &path)) {
            continue;
        }
        let whole = include.is_empty() || include.iter().any(|p| glob(p, &path));
        match &mut field.kind {
            Kind::Object(children) | Kind::Nested(children) => {
                // A whole object keeps every field below it but the excluded ones.
                let had_children = !children.is_empty();
                let kept = select(std::mem::take(children), if whole { &[] } else { include }, exclude, &path);
                if kept.is_empty() && (had_children || !whole) {
                    continue;
                }
                *children = kept;
                out.push(field);
            }
            _ if whole => out.push(field),
            _ => {}
        }
    }
    out
}

/// Make the fields at `paths` lists of their type; a path that names no field is an error.
pub fn as_arrays(fields: &mut [Field], paths: &[String]) -> Result<()> {
    for path in paths {
        let mut node: &mut [Field] = fields;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let Some(field) = node.iter_mut().find(|f| f.name == part) else {
                return Err(Error::user(format!("options.array_fields: `{path}` is not a field of the index mapping")));
            };
            if parts.peek().is_none() {
                if !matches!(field.kind, Kind::List(_)) {
                    field.kind = Kind::List(Box::new(field.kind.clone()));
                }
                break;
            }
            match &mut field.kind {
                Kind::Object(children) | Kind::Nested(children) => node = children,
                _ => {
                    return Err(Error::user(format!(
                        "options.array_fields: `{path}`: `{part}` is not an object field"
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(m: Value) -> Vec<Field> {
        parse_mappings(&m, &mut Vec::new())
    }

    #[test]
    fn maps_every_type() {
        let f = fields(json!({"properties": {
            "name": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
            "age": {"type": "integer"},
            "born": {"type": "date", "format": "yyyy/MM/dd||epoch_millis"},
            "home": {"type": "geo_point"},
            "address": {"properties": {"city": {"type": "keyword"}}},
            "kids": {"type": "nested", "properties": {"name": {"type": "keyword"}}},
            "labels": {"type": "flattened"},
            "nick": {"type": "alias", "path": "name"},
        }}));
        let names: Vec<_> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["address", "age", "born", "home", "kids", "labels", "name"], "aliases are not loaded");
        let ty = |n: &str| f.iter().find(|f| f.name == n).map(|f| f.kind.arrow()).unwrap();
        assert_eq!(ty("age"), DataType::Int32);
        assert_eq!(ty("born"), DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        assert!(matches!(ty("kids"), DataType::List(_)));
        assert!(matches!(ty("address"), DataType::Struct(_)));
        assert_eq!(arrow_field("labels", &f[5].kind).metadata()["ARROW:extension:name"], "arrow.json");
    }

    #[test]
    fn merges_widths_and_names_conflicts() {
        let a = fields(json!({"properties": {"n": {"type": "integer"}, "o": {"properties": {"x": {"type": "long"}}}}}));
        let b = fields(json!({"properties": {"n": {"type": "long"}, "o": {"properties": {"y": {"type": "keyword"}}}}}));
        let m = merge(vec![("a".into(), a.clone()), ("b".into(), b)]).unwrap();
        assert_eq!(m[0].kind, Kind::Int64);
        assert!(matches!(&m[1].kind, Kind::Object(c) if c.len() == 2));
        let c = fields(json!({"properties": {"o": {"properties": {"x": {"type": "keyword"}}}}}));
        let err = merge(vec![("logs-1".into(), a), ("logs-2".into(), c)]).unwrap_err().to_string();
        assert!(err.contains("field `o.x` is `long` in index `logs-1` but `keyword` in index `logs-2`"), "{err}");
    }

    #[test]
    fn selects_fields_and_arrays() {
        let f = fields(json!({"properties": {
            "a": {"type": "keyword"}, "b": {"type": "keyword"},
            "o": {"properties": {"x": {"type": "long"}, "y": {"type": "long"}}},
        }}));
        let kept = select(f.clone(), &["a".into(), "o.x".into()], &[], "");
        assert_eq!(kept.len(), 2);
        assert!(matches!(&kept[1].kind, Kind::Object(c) if c.len() == 1 && c[0].name == "x"));
        let kept = select(f.clone(), &[], &["o.*".into(), "b".into()], "");
        assert_eq!(kept.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["a"], "an emptied object goes too");
        let mut f = f;
        as_arrays(&mut f, &["o.y".into()]).unwrap();
        assert!(matches!(&f[2].kind, Kind::Object(c) if matches!(c[1].kind, Kind::List(_))));
        assert!(as_arrays(&mut f, &["nope".into()]).is_err());
    }
}
