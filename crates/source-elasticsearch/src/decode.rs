//! Search hits → one Arrow batch, each `_source` value decoded by its mapped
//! type.
//!
//! Elasticsearch lets any field hold an array. A field mapped as a scalar
//! loads a one-element array as its element and an empty array as NULL; an
//! array of several values is a bad value (list the field in
//! `options.array_fields` to load it as a list). A value that does not fit
//! its type (`"abc"` in an `integer` field indexed with `ignore_malformed`)
//! is handled by `options.on_bad_value`: `fail` (the default) fails the
//! pipeline naming the field and the document, `null` loads NULL, `reject`
//! skips the document; the last two count in `audit.details`. Fields of a
//! document that the mapping does not have are counted (`unmapped_fields`)
//! and not loaded.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanArray, BooleanBuilder, Float32Builder, Float64Builder, Int8Builder, Int16Builder,
    Int32Builder, Int64Builder, ListArray, NullBufferBuilder, PrimitiveBuilder, RecordBatch, StringBuilder,
    StructArray, UInt64Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, FieldRef, Fields, SchemaRef, TimestampMicrosecondType, TimestampNanosecondType};
use base64::Engine;
use serde_json::{Map, Value};
use weir_core::{Error, Result};

use crate::dates::DateFormats;
use crate::mapping::{Field, Kind, arrow_field, arrow_fields, geo_fields};

/// What to do with a value that does not fit its mapped type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBadValue {
    #[default]
    Fail,
    Null,
    Reject,
}

/// One search hit, as much of it as Weir reads.
#[derive(Debug, serde::Deserialize)]
pub struct Hit {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_index")]
    pub index: String,
    #[serde(rename = "_source", default)]
    pub source: Option<Map<String, Value>>,
    #[serde(default)]
    pub sort: Option<Vec<Value>>,
}

/// A batch and what decoding it met.
pub struct Decoded {
    pub batch: RecordBatch,
    pub bad_values: u64,
    pub rejected: u64,
    pub unmapped: u64,
}

/// Decodes pages of hits into batches of one schema.
pub struct Decoder {
    schema: SchemaRef,
    fields: Vec<Field>,
    include_index: bool,
    on_bad: OnBadValue,
}

impl Decoder {
    pub fn new(schema: SchemaRef, fields: Vec<Field>, include_index: bool, on_bad: OnBadValue) -> Self {
        Self { schema, fields, include_index, on_bad }
    }

    /// `_id`, then `_index` if asked for, then the mapped fields.
    pub fn schema_for(fields: &[Field], include_index: bool) -> arrow::datatypes::Schema {
        let mut columns = vec![arrow::datatypes::Field::new("_id", DataType::Utf8, false)];
        if include_index {
            columns.push(arrow::datatypes::Field::new("_index", DataType::Utf8, false));
        }
        columns.extend(fields.iter().map(|f| arrow_field(&f.name, &f.kind)));
        arrow::datatypes::Schema::new(columns)
    }

    pub fn decode(&self, hits: &[Hit], unmapped_names: &mut BTreeSet<String>) -> Result<Decoded> {
        let mut ids = StringBuilder::with_capacity(hits.len(), hits.len() * 16);
        let mut indices = StringBuilder::new();
        let mut cols: Vec<Col> = self.fields.iter().map(|f| Col::new(&f.kind)).collect();
        let mut keep = Vec::with_capacity(hits.len());
        let mut ctx =
            Ctx { on_bad: self.on_bad, id: "", index: "", bad: 0, row_bad: false, unmapped: 0, unmapped_names };
        let empty = Map::new();
        for hit in hits {
            ids.append_value(&hit.id);
            if self.include_index {
                indices.append_value(&hit.index);
            }
            ctx.id = &hit.id;
            ctx.index = &hit.index;
            ctx.row_bad = false;
            let source = undotted(hit.source.as_ref().unwrap_or(&empty));
            ctx.count_unmapped(&source, &self.fields, "");
            for (field, col) in self.fields.iter().zip(cols.iter_mut()) {
                col.append(source.get(&field.name), &field.name, &mut ctx)?;
            }
            keep.push(!(ctx.row_bad && self.on_bad == OnBadValue::Reject));
        }
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(ids.finish())];
        if self.include_index {
            arrays.push(Arc::new(indices.finish()));
        }
        arrays.extend(cols.iter_mut().map(Col::finish));
        let mut batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        let rejected = keep.iter().filter(|k| !**k).count() as u64;
        if rejected > 0 {
            batch = arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep))?;
        }
        Ok(Decoded { batch, bad_values: ctx.bad, rejected, unmapped: ctx.unmapped })
    }
}

/// The object with dotted keys expanded (borrowed when it has none).
fn undotted(o: &Map<String, Value>) -> std::borrow::Cow<'_, Map<String, Value>> {
    match o.keys().any(|k| k.contains('.')) {
        true => std::borrow::Cow::Owned(expand_dots(o)),
        false => std::borrow::Cow::Borrowed(o),
    }
}

/// `{"a.b": 1, "a": {"c": 2}}` → `{"a": {"b": 1, "c": 2}}`, as Elasticsearch reads it.
fn expand_dots(source: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in source {
        let mut parts: Vec<&str> = k.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut node = &mut out;
        for p in parts {
            let entry = node.entry(p.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            node = match entry {
                Value::Object(m) => m,
                _ => unreachable!("made an object above"),
            };
        }
        match (node.get_mut(last), v) {
            (Some(Value::Object(existing)), Value::Object(more)) => {
                existing.extend(more.iter().map(|(a, b)| (a.clone(), b.clone())));
            }
            _ => {
                node.insert(last.to_owned(), v.clone());
            }
        }
    }
    out
}

struct Ctx<'a> {
    on_bad: OnBadValue,
    id: &'a str,
    index: &'a str,
    bad: u64,
    row_bad: bool,
    unmapped: u64,
    unmapped_names: &'a mut BTreeSet<String>,
}

/// Field names kept for the unmapped-fields warning.
const UNMAPPED_NAMES: usize = 20;

impl Ctx<'_> {
    /// A bad value: an error (`fail`), or counted and loaded as NULL.
    fn bad(&mut self, path: &str, value: &Value, why: &str) -> Result<()> {
        if self.on_bad == OnBadValue::Fail {
            let mut shown = value.to_string();
            if shown.len() > 80 {
                shown = format!("{}…", &shown[..shown.floor_char_boundary(80)]);
            }
            return Err(Error::user(format!(
                "field `{path}` of document `{}` in index `{}`: {shown} {why}; set options.on_bad_value to `null` \
                 (load NULL) or `reject` (skip the document), or fix the document",
                self.id, self.index
            )));
        }
        self.bad += 1;
        self.row_bad = true;
        Ok(())
    }

    fn count_unmapped(&mut self, source: &Map<String, Value>, fields: &[Field], prefix: &str) {
        for key in source.keys() {
            if !fields.iter().any(|f| f.name == *key) {
                self.unmapped += 1;
                if self.unmapped_names.len() < UNMAPPED_NAMES {
                    let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    self.unmapped_names.insert(path);
                }
            }
        }
    }
}

/// A column being built, one per mapped field (recursively for objects).
enum Col {
    Text(StringBuilder),
    Ip(StringBuilder),
    Json(StringBuilder),
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    U64(UInt64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Micros(PrimitiveBuilder<TimestampMicrosecondType>, DateFormats),
    Nanos(PrimitiveBuilder<TimestampNanosecondType>, DateFormats),
    Geo { lat: Float64Builder, lon: Float64Builder, valid: NullBufferBuilder },
    Binary(BinaryBuilder),
    Struct { fields: Vec<Field>, arrow: Fields, children: Vec<Col>, valid: NullBufferBuilder },
    List { item: FieldRef, child: Box<Col>, offsets: Vec<i32>, valid: NullBufferBuilder },
}

impl Col {
    fn new(kind: &Kind) -> Col {
        match kind {
            Kind::Text => Col::Text(StringBuilder::new()),
            Kind::Ip => Col::Ip(StringBuilder::new()),
            Kind::Json => Col::Json(StringBuilder::new()),
            Kind::Int8 => Col::I8(Int8Builder::new()),
            Kind::Int16 => Col::I16(Int16Builder::new()),
            Kind::Int32 => Col::I32(Int32Builder::new()),
            Kind::Int64 => Col::I64(Int64Builder::new()),
            Kind::UInt64 => Col::U64(UInt64Builder::new()),
            Kind::Float32 => Col::F32(Float32Builder::new()),
            Kind::Float64 => Col::F64(Float64Builder::new()),
            Kind::Bool => Col::Bool(BooleanBuilder::new()),
            Kind::Date { formats, nanos: false } => Col::Micros(PrimitiveBuilder::new(), formats.clone()),
            Kind::Date { formats, nanos: true } => Col::Nanos(PrimitiveBuilder::new(), formats.clone()),
            Kind::GeoPoint => {
                Col::Geo { lat: Float64Builder::new(), lon: Float64Builder::new(), valid: NullBufferBuilder::new(0) }
            }
            Kind::Binary => Col::Binary(BinaryBuilder::new()),
            Kind::Object(fields) => Col::Struct {
                fields: fields.clone(),
                arrow: arrow_fields(fields),
                children: fields.iter().map(|f| Col::new(&f.kind)).collect(),
                valid: NullBufferBuilder::new(0),
            },
            Kind::Nested(fields) => Col::list(Col::new(&Kind::Object(fields.clone())), kind),
            Kind::List(inner) => Col::list(Col::new(inner), kind),
        }
    }

    fn list(child: Col, kind: &Kind) -> Col {
        let DataType::List(item) = kind.arrow() else { unreachable!("a list kind has a list type") };
        Col::List { item, child: Box::new(child), offsets: vec![0], valid: NullBufferBuilder::new(0) }
    }

    fn append_null(&mut self) {
        match self {
            Col::Text(b) | Col::Ip(b) | Col::Json(b) => b.append_null(),
            Col::I8(b) => b.append_null(),
            Col::I16(b) => b.append_null(),
            Col::I32(b) => b.append_null(),
            Col::I64(b) => b.append_null(),
            Col::U64(b) => b.append_null(),
            Col::F32(b) => b.append_null(),
            Col::F64(b) => b.append_null(),
            Col::Bool(b) => b.append_null(),
            Col::Micros(b, _) => b.append_null(),
            Col::Nanos(b, _) => b.append_null(),
            Col::Geo { lat, lon, valid } => {
                lat.append_value(0.0);
                lon.append_value(0.0);
                valid.append_null();
            }
            Col::Binary(b) => b.append_null(),
            Col::Struct { children, valid, .. } => {
                children.iter_mut().for_each(Col::append_null);
                valid.append_null();
            }
            Col::List { offsets, valid, .. } => {
                offsets.push(*offsets.last().unwrap_or(&0));
                valid.append_null();
            }
        }
    }

    /// Append one document's value (`None`: the field is absent).
    fn append(&mut self, value: Option<&Value>, path: &str, ctx: &mut Ctx<'_>) -> Result<()> {
        let value = match value {
            None | Some(Value::Null) => {
                self.append_null();
                return Ok(());
            }
            Some(v) => v,
        };
        // Lists take arrays; `[lon, lat]` is one geo point; JSON keeps arrays as they are.
        let is_point = matches!(self, Col::Geo { .. }) && is_coordinates(value);
        if let (Value::Array(items), false) = (value, matches!(self, Col::List { .. } | Col::Json(_)) || is_point) {
            return match items.len() {
                0 => {
                    self.append_null();
                    Ok(())
                }
                1 => self.append(items.first(), path, ctx),
                n => {
                    self.append_null();
                    ctx.bad(path, value, &format!("is an array of {n} values; list the field in options.array_fields"))
                }
            };
        }
        let ok = match self {
            Col::Text(b) => match value {
                Value::String(s) => {
                    b.append_value(s);
                    Some(())
                }
                Value::Number(_) | Value::Bool(_) => {
                    b.append_value(value.to_string());
                    Some(())
                }
                _ => None,
            },
            Col::Ip(b) => value.as_str().filter(|s| s.parse::<std::net::IpAddr>().is_ok()).map(|s| b.append_value(s)),
            Col::Json(b) => {
                b.append_value(value.to_string());
                Some(())
            }
            Col::I8(b) => int(value).and_then(|i| i8::try_from(i).ok()).map(|i| b.append_value(i)),
            Col::I16(b) => int(value).and_then(|i| i16::try_from(i).ok()).map(|i| b.append_value(i)),
            Col::I32(b) => int(value).and_then(|i| i32::try_from(i).ok()).map(|i| b.append_value(i)),
            Col::I64(b) => int(value).and_then(|i| i64::try_from(i).ok()).map(|i| b.append_value(i)),
            Col::U64(b) => int(value).and_then(|i| u64::try_from(i).ok()).map(|i| b.append_value(i)),
            Col::F32(b) => float(value).map(|f| b.append_value(f as f32)),
            Col::F64(b) => float(value).map(|f| b.append_value(f)),
            Col::Bool(b) => match value {
                Value::Bool(v) => {
                    b.append_value(*v);
                    Some(())
                }
                Value::String(s) if s == "true" => {
                    b.append_value(true);
                    Some(())
                }
                Value::String(s) if s == "false" || s.is_empty() => {
                    b.append_value(false);
                    Some(())
                }
                _ => None,
            },
            Col::Micros(b, formats) => formats.instant(value).map(|t| b.append_value(t.timestamp_micros())),
            Col::Nanos(b, formats) => {
                formats.instant(value).and_then(|t| t.timestamp_nanos_opt()).map(|n| b.append_value(n))
            }
            Col::Geo { lat, lon, valid } => geo_point(value).map(|(y, x)| {
                lat.append_value(y);
                lon.append_value(x);
                valid.append_non_null();
            }),
            Col::Binary(b) => value
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .map(|bytes| b.append_value(bytes)),
            Col::Struct { fields, children, valid, .. } => match value {
                Value::Object(o) => {
                    let o = undotted(o);
                    ctx.count_unmapped(&o, fields, path);
                    for (f, c) in fields.iter().zip(children.iter_mut()) {
                        c.append(o.get(&f.name), &format!("{path}.{}", f.name), ctx)?;
                    }
                    valid.append_non_null();
                    Some(())
                }
                _ => None,
            },
            Col::List { child, offsets, valid, .. } => {
                let items = match value {
                    Value::Array(items) => items.as_slice(),
                    one => std::slice::from_ref(one),
                };
                for item in items {
                    child.append(Some(item), path, ctx)?;
                }
                offsets.push(offsets.last().unwrap_or(&0) + items.len() as i32);
                valid.append_non_null();
                Some(())
            }
        };
        if ok.is_none() {
            self.append_null();
            return ctx.bad(path, value, &format!("is not a valid {}", self.type_name()));
        }
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        match self {
            Col::Text(_) => "string",
            Col::Ip(_) => "IP address",
            Col::Json(_) => "JSON value",
            Col::I8(_) => "byte",
            Col::I16(_) => "short",
            Col::I32(_) => "integer",
            Col::I64(_) => "long",
            Col::U64(_) => "unsigned_long",
            Col::F32(_) => "float",
            Col::F64(_) => "double",
            Col::Bool(_) => "boolean",
            Col::Micros(..) | Col::Nanos(..) => "date in the field's format",
            Col::Geo { .. } => "geo_point",
            Col::Binary(_) => "base64 binary value",
            Col::Struct { .. } => "object",
            Col::List { .. } => "list",
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Text(b) | Col::Ip(b) | Col::Json(b) => Arc::new(b.finish()),
            Col::I8(b) => Arc::new(b.finish()),
            Col::I16(b) => Arc::new(b.finish()),
            Col::I32(b) => Arc::new(b.finish()),
            Col::I64(b) => Arc::new(b.finish()),
            Col::U64(b) => Arc::new(b.finish()),
            Col::F32(b) => Arc::new(b.finish()),
            Col::F64(b) => Arc::new(b.finish()),
            Col::Bool(b) => Arc::new(b.finish()),
            Col::Micros(b, _) => Arc::new(b.finish().with_timezone("UTC")),
            Col::Nanos(b, _) => Arc::new(b.finish().with_timezone("UTC")),
            Col::Geo { lat, lon, valid } => {
                let children: Vec<ArrayRef> = vec![Arc::new(lat.finish()), Arc::new(lon.finish())];
                Arc::new(StructArray::new(geo_fields(), children, valid.finish()))
            }
            Col::Binary(b) => Arc::new(b.finish()),
            Col::Struct { arrow, children, valid, .. } => {
                let arrays = children.iter_mut().map(Col::finish).collect();
                let len = valid.len();
                let nulls = valid.finish();
                if arrow.is_empty() {
                    Arc::new(StructArray::new_empty_fields(len, nulls))
                } else {
                    Arc::new(StructArray::new(arrow.clone(), arrays, nulls))
                }
            }
            Col::List { item, child, offsets, valid } => {
                let values = child.finish();
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(ListArray::new(item.clone(), offsets, values, valid.finish()))
            }
        }
    }
}

/// An integer as Elasticsearch coerces one: a number (a fraction is
/// truncated, as indexing does) or a numeric string.
fn int(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| n.as_f64().filter(|f| f.is_finite() && f.abs() < 1.8e19).map(|f| f.trunc() as i128)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i128>().ok().or_else(|| {
                s.parse::<f64>().ok().filter(|f| f.is_finite() && f.abs() < 1.8e19).map(|f| f.trunc() as i128)
            })
        }
        _ => None,
    }
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `[lon, lat]` (GeoJSON order), optionally with a z.
fn is_coordinates(v: &Value) -> bool {
    matches!(v, Value::Array(a) if (2..=3).contains(&a.len()) && a.iter().all(Value::is_number))
}

/// A geo point in any form Elasticsearch accepts, as `(lat, lon)`: an object
/// `{"lat", "lon"}`, GeoJSON `{"type": "Point", "coordinates": [lon, lat]}`,
/// `[lon, lat]`, `"lat,lon"`, WKT `"POINT (lon lat)"` or a geohash.
fn geo_point(v: &Value) -> Option<(f64, f64)> {
    let (lat, lon) = match v {
        Value::Object(o) if o.contains_key("lat") => (float(o.get("lat")?)?, float(o.get("lon")?)?),
        Value::Object(o) if o.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("point")) => {
            let c = o.get("coordinates")?.as_array()?;
            (float(c.get(1)?)?, float(c.first()?)?)
        }
        Value::Array(c) if is_coordinates(v) => (float(c.get(1)?)?, float(c.first()?)?),
        Value::String(s) => {
            let s = s.trim();
            if let Some(rest) = s.strip_prefix("POINT").or_else(|| s.strip_prefix("point")) {
                let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
                let mut parts = inner.split_whitespace();
                let lon: f64 = parts.next()?.parse().ok()?;
                (parts.next()?.parse().ok()?, lon)
            } else if let Some((a, b)) = s.split_once(',') {
                (a.trim().parse().ok()?, b.trim().parse().ok()?)
            } else {
                geohash(s)?
            }
        }
        _ => return None,
    };
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
}

/// The centre of a geohash cell.
fn geohash(hash: &str) -> Option<(f64, f64)> {
    const BASE32: &[u8] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    if hash.is_empty() || hash.len() > 12 {
        return None;
    }
    let (mut lat, mut lon) = ((-90.0, 90.0), (-180.0, 180.0));
    let mut even = true;
    for c in hash.bytes() {
        let bits = BASE32.iter().position(|&b| b == c.to_ascii_lowercase())?;
        for shift in (0..5).rev() {
            let range: &mut (f64, f64) = if even { &mut lon } else { &mut lat };
            let mid = (range.0 + range.1) / 2.0;
            if bits >> shift & 1 == 1 {
                range.0 = mid;
            } else {
                range.1 = mid;
            }
            even = !even;
        }
    }
    Some(((lat.0 + lat.1) / 2.0, (lon.0 + lon.1) / 2.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::parse_mappings;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int32Type;
    use serde_json::json;

    fn decode(mapping: Value, docs: Vec<Value>, on_bad: OnBadValue) -> Result<Decoded> {
        let fields = parse_mappings(&mapping, &mut Vec::new());
        let schema = Arc::new(Decoder::schema_for(&fields, false));
        let hits: Vec<Hit> = docs
            .into_iter()
            .enumerate()
            .map(|(i, d)| Hit { id: i.to_string(), index: "people".into(), source: d.as_object().cloned(), sort: None })
            .collect();
        Decoder::new(schema, fields, false, on_bad).decode(&hits, &mut BTreeSet::new())
    }

    #[test]
    fn arrays_in_scalar_fields() {
        let m = json!({"properties": {"n": {"type": "integer"}}});
        let d = decode(m.clone(), vec![json!({"n": [7]}), json!({"n": []}), json!({})], OnBadValue::Fail).unwrap();
        let n = d.batch.column(1).as_primitive::<Int32Type>();
        assert_eq!((n.value(0), n.is_null(1), n.is_null(2)), (7, true, true));
        let err = decode(m.clone(), vec![json!({"n": [1, 2]})], OnBadValue::Fail).err().unwrap().to_string();
        assert!(err.contains("field `n` of document `0` in index `people`: [1,2] is an array of 2 values"), "{err}");
        let d = decode(m, vec![json!({"n": "x"}), json!({"n": "12"}), json!({"n": 3.9})], OnBadValue::Reject).unwrap();
        assert_eq!((d.batch.num_rows(), d.rejected, d.bad_values), (2, 1, 1));
        let n = d.batch.column(1).as_primitive::<Int32Type>();
        assert_eq!((n.value(0), n.value(1)), (12, 3), "numeric strings and fractions coerce as indexing does");
    }

    #[test]
    fn geo_points_in_every_form() {
        for v in [
            json!({"lat": 35.7, "lon": 51.4}),
            json!("35.7,51.4"),
            json!([51.4, 35.7]),
            json!("POINT (51.4 35.7)"),
            json!({"type": "Point", "coordinates": [51.4, 35.7]}),
        ] {
            let (lat, lon) = geo_point(&v).unwrap_or_else(|| panic!("{v}"));
            assert!((lat - 35.7).abs() < 1e-9 && (lon - 51.4).abs() < 1e-9, "{v}");
        }
        let (lat, lon) = geohash("tnke1").unwrap();
        assert!((lat - 35.7).abs() < 0.05 && (lon - 51.4).abs() < 0.05, "{lat},{lon}");
        assert!(geo_point(&json!("100,0")).is_none(), "latitude out of range");
    }

    #[test]
    fn objects_nested_and_dotted_keys() {
        let m = json!({"properties": {
            "a": {"properties": {"b": {"type": "keyword"}, "c": {"type": "long"}}},
            "kids": {"type": "nested", "properties": {"name": {"type": "keyword"}}},
        }});
        let docs = [json!({"a.b": "x", "a": {"c": 2}, "kids": [{"name": "k1"}, {"name": "k2"}], "extra": 1})];
        let mut names = BTreeSet::new();
        let fields = parse_mappings(&m, &mut Vec::new());
        let schema = Arc::new(Decoder::schema_for(&fields, false));
        let hits = vec![Hit { id: "1".into(), index: "i".into(), source: docs[0].as_object().cloned(), sort: None }];
        let d = Decoder::new(schema, fields, false, OnBadValue::Fail).decode(&hits, &mut names).unwrap();
        let a = d.batch.column(1).as_struct();
        assert_eq!(a.column(0).as_string::<i32>().value(0), "x");
        let kids = d.batch.column(2).as_list::<i32>();
        assert_eq!(kids.value(0).len(), 2);
        assert_eq!((d.unmapped, names.into_iter().collect::<Vec<_>>()), (1, vec!["extra".to_owned()]));
    }
}
