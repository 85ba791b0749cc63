//! Messages as rows: the columns a topic's messages hold (`options.columns`,
//! a SQL column list) and the strict decoding of JSON values into them.
//!
//! The JSON is parsed by arrow-json's tape decoder into a "wire" batch in
//! which every exact type (integers, decimals, dates, timestamps) is still
//! the text of its JSON value, then cast to the declared type with casts that
//! fail instead of rounding: `1.5` for a `bigint`, `70000` for a `smallint`,
//! `1.239` for a `numeric(10,2)` or a timestamp with nanoseconds are bad
//! messages, never a changed value.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, RecordBatch, StringArray, TimestampMicrosecondArray,
    new_null_array,
};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use arrow::json::ReaderBuilder;
use weir_core::changes;
use weir_core::{Error, Result};

/// What a message's value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// The row itself, as a JSON object: every message is an insert.
    None,
    /// Debezium's change envelope (`before`, `after`, `op`, `source`, `ts_ms`),
    /// as Weir's kafka destination and Debezium's JSON converter (without
    /// schemas) write it.
    Debezium,
}

impl Envelope {
    pub fn parse(text: Option<&str>) -> Result<Self> {
        match text.unwrap_or("none") {
            "none" => Ok(Self::None),
            "debezium" => Ok(Self::Debezium),
            other => Err(Error::user(format!("options.envelope `{other}` is not known: use `none` or `debezium`"))),
        }
    }
}

/// One message to decode.
pub struct Message<'a> {
    pub value: &'a [u8],
    pub offset: i64,
    /// The broker's timestamp, in milliseconds.
    pub timestamp_ms: i64,
}

/// Turns messages into rows: the declared columns, then the change columns.
pub struct MessageDecoder {
    envelope: Envelope,
    /// The declared columns, as they reach the destination.
    table: Fields,
    /// What arrow-json decodes a value into.
    wire: SchemaRef,
    /// The columns declared NOT NULL: a row with values (not a delete's key, not a truncate) must hold them.
    required: Vec<usize>,
    /// `table` and the change columns.
    pub schema: SchemaRef,
}

impl MessageDecoder {
    pub fn new(columns: &str, envelope: Envelope) -> Result<Self> {
        let (table, required) = parse_columns(columns)?;
        let table: Fields = table.into();
        let wire_row: Fields =
            table.iter().map(|f| Arc::new(f.as_ref().clone().with_data_type(wire(f.data_type())))).collect();
        let wire = match envelope {
            Envelope::None => Schema::new(wire_row),
            Envelope::Debezium => {
                let text = |name: &str| Field::new(name, DataType::Utf8, true);
                let source = Fields::from(vec![text("lsn"), text("commit_lsn"), text("ts_ms")]);
                Schema::new(vec![
                    Field::new("before", DataType::Struct(wire_row.clone()), true),
                    Field::new("after", DataType::Struct(wire_row), true),
                    text("op"),
                    Field::new("source", DataType::Struct(source), true),
                ])
            }
        };
        let mut fields: Vec<FieldRef> = table.iter().cloned().collect();
        fields.extend(changes::fields().into_iter().map(Arc::new));
        Ok(Self { envelope, table, wire: Arc::new(wire), required, schema: Arc::new(Schema::new(fields)) })
    }

    pub fn envelope(&self) -> Envelope {
        self.envelope
    }

    /// The messages as rows, or why they are not: the first bad message's fault.
    pub fn decode(&self, messages: &[Message<'_>]) -> std::result::Result<RecordBatch, String> {
        let mut decoder = ReaderBuilder::new(self.wire.clone())
            .with_coerce_primitive(true)
            .with_batch_size(messages.len().max(1))
            .build_decoder()
            .map_err(|e| e.to_string())?;
        for m in messages {
            if m.value.iter().all(u8::is_ascii_whitespace) {
                return Err("the message's value is empty".into());
            }
            decoder.decode(m.value).map_err(|e| e.to_string())?;
            if decoder.has_partial_record() {
                return Err("the message's value is not one whole JSON object".into());
            }
            decoder.decode(b"\n").map_err(|e| e.to_string())?;
        }
        let Some(wire) = decoder.flush().map_err(|e| e.to_string())? else {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        };
        if wire.num_rows() != messages.len() {
            return Err("a message's value holds more than one JSON value".into());
        }
        let n = messages.len();
        let offsets = || Int64Array::from_iter_values(messages.iter().map(|m| m.offset));
        let broker_time =
            || TimestampMicrosecondArray::from_iter_values(messages.iter().map(|m| m.timestamp_ms * 1000));
        let (row, op, lsn, commit_lsn, time): (
            Vec<ArrayRef>,
            ArrayRef,
            Int64Array,
            Int64Array,
            TimestampMicrosecondArray,
        ) = match self.envelope {
            Envelope::None => (
                wire.columns().to_vec(),
                Arc::new(StringArray::from_iter_values(std::iter::repeat_n(changes::op::INSERT, n))),
                offsets(),
                offsets(),
                broker_time(),
            ),
            Envelope::Debezium => {
                let op = wire.column(2).as_string::<i32>();
                for i in 0..n {
                    match op.is_valid(i).then(|| op.value(i)) {
                        Some("c" | "u" | "d" | "r" | "t") => {}
                        Some(other) => return Err(format!("`op` is `{other}`, not one of c, u, d, r, t")),
                        None => return Err("the envelope has no `op`".into()),
                    }
                }
                let before = wire.column(0).as_struct();
                let after = wire.column(1).as_struct();
                for i in 0..n {
                    let missing = match op.value(i) {
                        "d" => before.is_null(i).then_some("a delete has no `before`"),
                        "t" => None,
                        _ => after.is_null(i).then_some("the change has no `after`"),
                    };
                    if let Some(m) = missing {
                        return Err(m.into());
                    }
                }
                let deletes = BooleanArray::from_iter((0..n).map(|i| Some(op.value(i) == "d")));
                let row = (0..self.table.len())
                    .map(|c| zip(&deletes, before.column(c), after.column(c)).map_err(|e| e.to_string()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let source = wire.column(3).as_struct();
                let number = |col: usize, what: &str| -> std::result::Result<Vec<Option<i64>>, String> {
                    let text = source.column(col).as_string::<i32>();
                    (0..n)
                        .map(|i| match source.is_valid(i) && text.is_valid(i) {
                            false => Ok(None),
                            true => text
                                .value(i)
                                .parse()
                                .map(Some)
                                .map_err(|_| format!("`source.{what}` is `{}`, not a whole number", text.value(i))),
                        })
                        .collect()
                };
                let (lsns, commits, times) = (number(0, "lsn")?, number(1, "commit_lsn")?, number(2, "ts_ms")?);
                let lsn = Int64Array::from_iter_values((0..n).map(|i| lsns[i].unwrap_or(messages[i].offset)));
                let commit_lsn = Int64Array::from_iter_values((0..n).map(|i| commits[i].unwrap_or(lsn.value(i))));
                let time = TimestampMicrosecondArray::from_iter_values(
                    (0..n).map(|i| times[i].unwrap_or(messages[i].timestamp_ms) * 1000),
                );
                (row, Arc::new(op.clone()), lsn, commit_lsn, time)
            }
        };
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (field, wire) in self.table.iter().zip(row) {
            columns.push(exact(&wire, field.data_type()).map_err(|e| format!("column `{}`: {e}", field.name()))?);
        }
        let ops = op.as_string::<i32>();
        for &c in &self.required {
            let column = &columns[c];
            if (0..n).any(|i| column.is_null(i) && !matches!(ops.value(i), "d" | "t")) {
                return Err(format!(
                    "column `{}` is declared NOT NULL and the message holds none",
                    self.table[c].name()
                ));
            }
        }
        columns.push(op);
        columns.push(Arc::new(lsn));
        columns.push(Arc::new(commit_lsn));
        columns.push(Arc::new(time.with_timezone("UTC")));
        columns.push(new_null_array(&DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), n));
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())
    }
}

/// `options.columns`: `id bigint not null, name text, tags text[], price numeric(12,2)`.
/// Returns the fields (all nullable: a delete carries only its key) and the indexes of those declared NOT NULL.
pub fn parse_columns(text: &str) -> Result<(Vec<Field>, Vec<usize>)> {
    let mut fields: Vec<Field> = Vec::new();
    let mut required = Vec::new();
    for part in split_top(text) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, rest) = part.split_once(char::is_whitespace).ok_or_else(|| {
            Error::user(format!("options.columns: `{part}` names no type (write `name type`, e.g. `id bigint`)"))
        })?;
        let name = name.trim_matches('"');
        if fields.iter().any(|f| f.name() == name) {
            return Err(Error::user(format!("options.columns names `{name}` twice")));
        }
        if changes::is_meta(name) {
            return Err(Error::user(format!("options.columns: `{name}` is one of Weir's change columns")));
        }
        let lower = rest.trim().to_ascii_lowercase();
        let (type_text, nullable) = match lower.strip_suffix("not null") {
            Some(t) => (t.trim(), false),
            None => (lower.as_str(), true),
        };
        let data_type = parse_type(type_text).map_err(|e| e.context(format!("options.columns: column `{name}`")))?;
        if !nullable {
            required.push(fields.len());
        }
        fields.push(Field::new(name, data_type, true));
    }
    if fields.is_empty() {
        return Err(Error::user("options.columns is empty: list the message's fields, e.g. `id bigint, name text`"));
    }
    Ok((fields, required))
}

/// Split at commas outside parentheses (`numeric(10,2)` holds one).
fn split_top(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A SQL type name as Arrow's type.
fn parse_type(text: &str) -> Result<DataType> {
    let text = text.trim();
    if let Some(item) = text.strip_suffix("[]") {
        return Ok(DataType::List(Arc::new(Field::new("item", parse_type(item)?, true))));
    }
    let (base, args) = match text.split_once('(') {
        Some((b, a)) => (b.trim(), Some(a.trim_end_matches(')'))),
        None => (text, None),
    };
    Ok(match (base, args) {
        ("boolean" | "bool", None) => DataType::Boolean,
        ("smallint" | "int2", None) => DataType::Int16,
        ("integer" | "int" | "int4", None) => DataType::Int32,
        ("bigint" | "int8", None) => DataType::Int64,
        ("real" | "float4", None) => DataType::Float32,
        ("double precision" | "double" | "float8" | "float", None) => DataType::Float64,
        ("text" | "string" | "uuid", None) | ("varchar" | "character varying", _) => DataType::Utf8,
        ("date", None) => DataType::Date32,
        ("timestamp" | "timestamp without time zone", None) => DataType::Timestamp(TimeUnit::Microsecond, None),
        ("timestamptz" | "timestamp with time zone", None) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        ("numeric" | "decimal", Some(args)) => {
            let (p, s) = args.split_once(',').unwrap_or((args, "0"));
            let (p, s): (u8, i8) = match (p.trim().parse(), s.trim().parse()) {
                (Ok(p), Ok(s)) if (1..=76).contains(&p) && (0..=p as i8).contains(&s) => (p, s),
                _ => return Err(Error::user(format!("`{text}`: precision 1–76 and scale 0–precision"))),
            };
            if p <= 38 { DataType::Decimal128(p, s) } else { DataType::Decimal256(p, s) }
        }
        ("numeric" | "decimal", None) => {
            return Err(Error::user(format!(
                "`{text}` needs its precision and scale (`numeric(18,4)`): values must fit exactly"
            )));
        }
        _ => {
            return Err(Error::user(format!(
                "type `{text}` is not known; known: boolean, smallint, integer, bigint, real, double precision, \
                 numeric(p,s), text, varchar, uuid, date, timestamp, timestamptz, and any of them followed by []"
            )));
        }
    })
}

/// What a declared type is decoded as before its exact cast: the JSON text of
/// everything whose parsing could round.
fn wire(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Boolean | DataType::Float32 | DataType::Float64 => data_type.clone(),
        DataType::List(item) => DataType::List(Arc::new(item.as_ref().clone().with_data_type(wire(item.data_type())))),
        _ => DataType::Utf8,
    }
}

/// The wire column as its declared type, or why a value does not fit it exactly.
fn exact(wire: &ArrayRef, to: &DataType) -> std::result::Result<ArrayRef, String> {
    if wire.data_type() == to {
        return Ok(wire.clone());
    }
    match (wire.data_type(), to) {
        (DataType::List(_), DataType::List(item)) => {
            let list = wire.as_list::<i32>();
            let values = exact(list.values(), item.data_type())?;
            let list = ListArray::try_new(item.clone(), list.offsets().clone(), values, list.nulls().cloned())
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(list))
        }
        (DataType::Utf8, _) => {
            let text = wire.as_string::<i32>();
            match to {
                DataType::Decimal128(_, scale) | DataType::Decimal256(_, scale) => {
                    for v in text.iter().flatten() {
                        let fraction = v.split_once('.').map_or(0, |(_, f)| f.len());
                        if v.contains(['e', 'E']) || fraction > *scale as usize {
                            return Err(format!("`{v}` does not fit {to} exactly"));
                        }
                    }
                }
                DataType::Timestamp(..) => {
                    for v in text.iter().flatten() {
                        let fraction =
                            v.split_once('.').map_or(0, |(_, f)| f.chars().take_while(char::is_ascii_digit).count());
                        if fraction > 6 {
                            return Err(format!("`{v}` has more than microseconds"));
                        }
                    }
                }
                _ => {}
            }
            let options = CastOptions { safe: false, ..Default::default() };
            cast_with_options(wire, to, &options).map_err(|e| e.to_string())
        }
        _ => Err(format!("cannot read {} as {to}", wire.data_type())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::util::display::array_value_to_string;

    fn msgs(values: &[&'static str]) -> Vec<Message<'static>> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Message { value: v.as_bytes(), offset: i as i64, timestamp_ms: 1_742_688_000_000 })
            .collect()
    }

    fn text(batch: &RecordBatch, column: &str, row: usize) -> String {
        array_value_to_string(batch.column_by_name(column).unwrap(), row).unwrap()
    }

    #[test]
    fn decodes_exact_values() {
        let d = MessageDecoder::new(
            "id bigint not null, small smallint, price numeric(10,2), at timestamptz, day date, tags text[], ok bool",
            Envelope::None,
        )
        .unwrap();
        let b = d
            .decode(&msgs(&[
                r#"{"id": 9223372036854775807, "small": -32768, "price": "12.30", "at": "2025-03-23T10:00:00.123456Z",
                    "day": "2025-03-23", "tags": ["a", null], "ok": true}"#,
                r#"{"id": "7", "price": 1.5, "extra": {"ignored": 1}}"#,
            ]))
            .unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(text(&b, "id", 0), "9223372036854775807");
        assert_eq!(text(&b, "price", 0), "12.30");
        assert_eq!(text(&b, "at", 0), "2025-03-23T10:00:00.123456Z");
        assert_eq!(text(&b, "tags", 0), "[a, ]");
        assert_eq!(text(&b, "id", 1), "7");
        assert_eq!(text(&b, "price", 1), "1.50");
        assert!(b.column_by_name("small").unwrap().is_null(1));
        assert_eq!(text(&b, changes::OP, 1), "c");
        assert_eq!(text(&b, changes::LSN, 1), "1");
        let nulls = d.decode(&msgs(&[r#"{"small": 1}"#]));
        assert!(nulls.unwrap_err().contains("`id`"), "NOT NULL holds for inserts");
    }

    #[test]
    fn refuses_what_would_change() {
        let d = MessageDecoder::new("id bigint, small smallint, price numeric(10,2), at timestamp", Envelope::None)
            .unwrap();
        for bad in [
            r#"{"id": 1.5}"#,
            r#"{"small": 70000}"#,
            r#"{"price": "1.239"}"#,
            r#"{"price": 1e3}"#,
            r#"{"at": "2025-03-23T10:00:00.123456789"}"#,
            r#"{"id": "seven"}"#,
            r#"not json"#,
            r#"[1, 2]"#,
            r#"{"id": 1"#,
            "",
        ] {
            assert!(d.decode(&msgs(&[bad])).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn unwraps_debeziums_envelope() {
        let d = MessageDecoder::new("id bigint, name text", Envelope::Debezium).unwrap();
        let b = d
            .decode(&msgs(&[
                r#"{"before": null, "after": {"id": 1, "name": "a"}, "op": "c", "source": {"lsn": 100, "ts_ms": 5}, "ts_ms": 9}"#,
                r#"{"before": {"id": 1, "name": null}, "after": null, "op": "d", "source": {"lsn": 200, "commit_lsn": 210}}"#,
            ]))
            .unwrap();
        assert_eq!(text(&b, "id", 1), "1");
        assert_eq!(text(&b, changes::OP, 1), "d");
        assert_eq!(text(&b, changes::LSN, 0), "100");
        assert_eq!(text(&b, changes::COMMIT_LSN, 0), "100");
        assert_eq!(text(&b, changes::COMMIT_LSN, 1), "210");
        assert_eq!(text(&b, changes::COMMIT_TIME, 0), "1970-01-01T00:00:00.005Z");
        assert!(d.decode(&msgs(&[r#"{"after": {"id": 1}, "op": "x"}"#])).is_err());
        assert!(d.decode(&msgs(&[r#"{"after": null, "op": "u"}"#])).is_err());
    }

    #[test]
    fn column_lists_parse() {
        assert!(parse_columns("a numeric(10,2), b text[], c timestamp with time zone").is_ok());
        for bad in ["", "a", "a numeric", "a jsonb", "a int, a int", "_weir_op text"] {
            assert!(parse_columns(bad).is_err(), "{bad}");
        }
    }
}
