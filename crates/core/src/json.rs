//! Arrow values as JSON text, exactly: what a sink writes when a destination
//! keeps a nested value (a struct, a map, a list of lists) as a JSON document.
//!
//! Nothing is dropped and nothing is rounded:
//! - nulls are written, at every level (`{"k1": 2, "k2": null}`);
//! - integers of every width and decimals are JSON numbers with their exact
//!   digits (a decimal keeps its scale: `12.30`);
//! - a finite float is the shortest decimal that reads back as the same float
//!   of its own width; NaN, ±Infinity and -0.0, which a JSON number (and
//!   PostgreSQL's `jsonb`) cannot hold, are the strings `"NaN"`, `"Infinity"`,
//!   `"-Infinity"` and `"-0.0"` — each is counted, and each casts back to the
//!   same float in SQL (`(doc->>'x')::float8`);
//! - a map is an object whose keys are the keys' text (`{"1": "a"}` for an
//!   integer key); two keys with the same text are counted, since a JSON
//!   object keeps only one;
//! - binary values are `"\x…"` hex (PostgreSQL's `bytea` text form); dates,
//!   times and timestamps are ISO 8601 with all the digits of their unit
//!   (nanoseconds are kept); a timestamp with a time zone is written in UTC
//!   with `Z`; a duration is `PT…S`.

use std::collections::HashSet;
use std::fmt::Write;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type, DecimalType,
    DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType, DurationSecondType, Float16Type,
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, IntervalDayTimeType, IntervalMonthDayNanoType,
    IntervalUnit, IntervalYearMonthType, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};

use crate::{Error, Result};

/// Arrow's field metadata key for an extension type.
pub const EXTENSION_KEY: &str = "ARROW:extension:name";
/// Arrow's canonical extension for JSON text: a Utf8 column whose values are
/// JSON documents (a MySQL `JSON` column, Parquet's `JSON` type). Sinks load it
/// as JSON (`jsonb` in PostgreSQL).
pub const JSON_EXTENSION: &str = "arrow.json";

/// Whether `field` holds JSON text.
pub fn is_json_field(field: &arrow::datatypes::Field) -> bool {
    field.metadata().get(EXTENSION_KEY).map(String::as_str) == Some(JSON_EXTENSION)
}

/// `field` tagged as JSON text.
pub fn json_field(field: arrow::datatypes::Field) -> arrow::datatypes::Field {
    let mut metadata = field.metadata().clone();
    metadata.insert(EXTENSION_KEY.to_owned(), JSON_EXTENSION.to_owned());
    field.with_metadata(metadata)
}

/// What had to be written differently from a plain JSON value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonCounts {
    /// NaN, ±Infinity and -0.0, written as strings.
    pub special_floats: u64,
    /// Map entries whose key's text repeats an earlier key of the same map.
    pub duplicate_map_keys: u64,
    /// Strings holding U+0000 (valid JSON, but PostgreSQL refuses it).
    pub nul_chars: u64,
}

impl JsonCounts {
    pub fn add(&mut self, other: JsonCounts) {
        self.special_floats += other.special_floats;
        self.duplicate_map_keys += other.duplicate_map_keys;
        self.nul_chars += other.nul_chars;
    }
}

/// Every value of `column` as JSON text (a null value stays a null, not the
/// text `null`). `name` is the column's, for messages.
pub fn encode_column(column: &dyn Array, name: &str) -> Result<(ArrayRef, JsonCounts)> {
    let mut counts = JsonCounts::default();
    let mut out = StringBuilder::with_capacity(column.len(), column.len() * 32);
    let mut text = String::with_capacity(256);
    for row in 0..column.len() {
        if column.is_null(row) {
            out.append_null();
            continue;
        }
        text.clear();
        write_value(column, row, &mut text, &mut counts).map_err(|e| Error::user(format!("column `{name}`: {e}")))?;
        out.append_value(&text);
    }
    Ok((std::sync::Arc::new(out.finish()), counts))
}

/// Append the JSON text of `array[row]` to `out`.
pub fn write_value(array: &dyn Array, row: usize, out: &mut String, counts: &mut JsonCounts) -> Result<(), String> {
    if array.is_null(row) {
        out.push_str("null");
        return Ok(());
    }
    macro_rules! display {
        ($t:ty) => {{
            let _ = write!(out, "{}", array.as_primitive::<$t>().value(row));
        }};
    }
    macro_rules! decimal {
        ($t:ty, $p:expr, $s:expr) => {
            out.push_str(&<$t>::format_decimal(array.as_primitive::<$t>().value(row), *$p, *$s))
        };
    }
    match array.data_type() {
        DataType::Null => out.push_str("null"),
        DataType::Boolean => out.push_str(if array.as_boolean().value(row) { "true" } else { "false" }),
        DataType::Int8 => display!(Int8Type),
        DataType::Int16 => display!(Int16Type),
        DataType::Int32 => display!(Int32Type),
        DataType::Int64 => display!(Int64Type),
        DataType::UInt8 => display!(UInt8Type),
        DataType::UInt16 => display!(UInt16Type),
        DataType::UInt32 => display!(UInt32Type),
        DataType::UInt64 => display!(UInt64Type),
        DataType::Float16 => {
            write_f32(f32::from(array.as_primitive::<Float16Type>().value(row)), out, counts);
        }
        DataType::Float32 => write_f32(array.as_primitive::<Float32Type>().value(row), out, counts),
        DataType::Float64 => write_f64(array.as_primitive::<Float64Type>().value(row), out, counts),
        DataType::Decimal32(p, s) => decimal!(Decimal32Type, p, s),
        DataType::Decimal64(p, s) => decimal!(Decimal64Type, p, s),
        DataType::Decimal128(p, s) => decimal!(Decimal128Type, p, s),
        DataType::Decimal256(p, s) => decimal!(Decimal256Type, p, s),
        DataType::Utf8 => write_str(array.as_string::<i32>().value(row), out, counts),
        DataType::LargeUtf8 => write_str(array.as_string::<i64>().value(row), out, counts),
        DataType::Utf8View => write_str(array.as_string_view().value(row), out, counts),
        DataType::Binary => write_hex(array.as_binary::<i32>().value(row), out),
        DataType::LargeBinary => write_hex(array.as_binary::<i64>().value(row), out),
        DataType::BinaryView => write_hex(array.as_binary_view().value(row), out),
        DataType::FixedSizeBinary(_) => write_hex(array.as_fixed_size_binary().value(row), out),
        DataType::List(_) => write_list(array.as_list::<i32>().value(row).as_ref(), out, counts)?,
        DataType::LargeList(_) => write_list(array.as_list::<i64>().value(row).as_ref(), out, counts)?,
        DataType::FixedSizeList(_, _) => write_list(array.as_fixed_size_list().value(row).as_ref(), out, counts)?,
        DataType::Struct(fields) => {
            let s = array.as_struct();
            out.push('{');
            for (i, (field, column)) in fields.iter().zip(s.columns()).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(field.name(), out, &mut JsonCounts::default());
                out.push(':');
                write_value(column.as_ref(), row, out, counts)?;
            }
            out.push('}');
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            let mut seen = HashSet::new();
            out.push('{');
            for i in 0..entries.len() {
                if i > 0 {
                    out.push(',');
                }
                let key = key_text(keys.as_ref(), i, counts)?;
                if entries.len() > 1 && !seen.insert(key.clone()) {
                    counts.duplicate_map_keys += 1;
                }
                write_str(&key, out, counts);
                out.push(':');
                write_value(values.as_ref(), i, out, counts)?;
            }
            out.push('}');
        }
        DataType::Dictionary(_, _) => {
            let dict = array.as_any_dictionary();
            let index = dictionary_key(dict.keys(), row)?;
            write_value(dict.values().as_ref(), index, out, counts)?;
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            let date =
                date_from_days(i64::from(days)).ok_or_else(|| format!("date {days} days from 1970 is out of range"))?;
            quoted(out, |o| write_date(date, o));
        }
        DataType::Date64 => {
            let ms = array.as_primitive::<Date64Type>().value(row);
            let date =
                date_from_days(ms.div_euclid(86_400_000)).ok_or_else(|| format!("date {ms} ms is out of range"))?;
            if ms.rem_euclid(86_400_000) != 0 {
                return Err(format!("Date64 value {ms} is not a whole day"));
            }
            quoted(out, |o| write_date(date, o));
        }
        DataType::Timestamp(unit, tz) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(row),
                TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
            };
            let (secs, frac) = split(v, *unit);
            let at = chrono::DateTime::from_timestamp(secs, 0)
                .ok_or_else(|| format!("timestamp {v} ({unit:?}s from 1970) is out of range"))?
                .naive_utc();
            quoted(out, |o| {
                write_date(at.date(), o);
                let _ = write!(o, "T{}", at.time().format("%H:%M:%S"));
                write_fraction(frac, *unit, o);
                if tz.is_some() {
                    o.push('Z');
                }
            });
        }
        DataType::Time32(unit) | DataType::Time64(unit) => {
            let v = match unit {
                TimeUnit::Second => i64::from(array.as_primitive::<Time32SecondType>().value(row)),
                TimeUnit::Millisecond => i64::from(array.as_primitive::<Time32MillisecondType>().value(row)),
                TimeUnit::Microsecond => array.as_primitive::<Time64MicrosecondType>().value(row),
                TimeUnit::Nanosecond => array.as_primitive::<Time64NanosecondType>().value(row),
            };
            let (secs, frac) = split(v, *unit);
            if !(0..86_400).contains(&secs) {
                return Err(format!("time {v} ({unit:?}s) is not a time of day"));
            }
            quoted(out, |o| {
                let _ = write!(o, "{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
                write_fraction(frac, *unit, o);
            });
        }
        DataType::Duration(unit) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<DurationSecondType>().value(row),
                TimeUnit::Millisecond => array.as_primitive::<DurationMillisecondType>().value(row),
                TimeUnit::Microsecond => array.as_primitive::<DurationMicrosecondType>().value(row),
                TimeUnit::Nanosecond => array.as_primitive::<DurationNanosecondType>().value(row),
            };
            quoted(out, |o| {
                o.push_str("PT");
                write_seconds(i128::from(v), *unit, o);
                o.push('S');
            });
        }
        DataType::Interval(IntervalUnit::YearMonth) => {
            let months = array.as_primitive::<IntervalYearMonthType>().value(row);
            let _ = write!(out, "\"P{months}M\"");
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(row);
            quoted(out, |o| {
                let _ = write!(o, "P{}DT", v.days);
                write_seconds(i128::from(v.milliseconds), TimeUnit::Millisecond, o);
                o.push('S');
            });
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            quoted(out, |o| {
                let _ = write!(o, "P{}M{}DT", v.months, v.days);
                write_seconds(i128::from(v.nanoseconds), TimeUnit::Nanosecond, o);
                o.push('S');
            });
        }
        other => return Err(format!("{other} values cannot be written as JSON")),
    }
    Ok(())
}

/// JSON text with every negative zero number (`-0`, `-0.0`, `-0e3`) written as
/// the string `"-0.0"`, as [`write_value`] writes them: PostgreSQL's `jsonb`
/// keeps numbers as `numeric`, which has no negative zero. Returns `None` when
/// the text has none (the usual case, checked without allocating), else the
/// new text and how many were rewritten.
pub fn rewrite_negative_zeros(text: &str) -> Option<(String, u64)> {
    let bytes = text.as_bytes();
    let mut found: Vec<(usize, usize)> = Vec::new();
    let (mut i, mut in_string) = (0, false);
    while i < bytes.len() {
        match (in_string, bytes[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') | (false, b'"') => in_string = !in_string,
            (false, b'-') => {
                let start = i;
                let mut j = i + 1;
                while j < bytes.len() && matches!(bytes[j], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    j += 1;
                }
                let number = &text[start + 1..j];
                let mantissa = number.split(['e', 'E']).next().unwrap_or("");
                if !mantissa.is_empty() && mantissa.bytes().all(|b| b == b'0' || b == b'.') {
                    found.push((start, j));
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if found.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len() + found.len() * 4);
    let mut last = 0;
    for (start, end) in &found {
        out.push_str(&text[last..*start]);
        out.push_str("\"-0.0\"");
        last = *end;
    }
    out.push_str(&text[last..]);
    Some((out, found.len() as u64))
}

fn write_list(items: &dyn Array, out: &mut String, counts: &mut JsonCounts) -> Result<(), String> {
    out.push('[');
    for i in 0..items.len() {
        if i > 0 {
            out.push(',');
        }
        write_value(items, i, out, counts)?;
    }
    out.push(']');
    Ok(())
}

/// A map key as object-key text: a string as it is, anything else as its JSON
/// form without quotes.
fn key_text(keys: &dyn Array, i: usize, counts: &mut JsonCounts) -> Result<String, String> {
    if keys.is_null(i) {
        return Ok("null".to_owned());
    }
    match keys.data_type() {
        DataType::Dictionary(_, _) => {
            let dict = keys.as_any_dictionary();
            key_text(dict.values().as_ref(), dictionary_key(dict.keys(), i)?, counts)
        }
        DataType::Utf8 => Ok(keys.as_string::<i32>().value(i).to_owned()),
        DataType::LargeUtf8 => Ok(keys.as_string::<i64>().value(i).to_owned()),
        DataType::Utf8View => Ok(keys.as_string_view().value(i).to_owned()),
        _ => {
            let mut text = String::new();
            write_value(keys, i, &mut text, counts)?;
            match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                // Only our own quoting of dates, binary and special floats: no escapes inside.
                Some(inner) => Ok(inner.replace("\\\\", "\\")),
                None => Ok(text),
            }
        }
    }
}

fn dictionary_key(keys: &dyn Array, row: usize) -> Result<usize, String> {
    let key = match keys.data_type() {
        DataType::Int8 => i64::from(keys.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => i64::from(keys.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => i64::from(keys.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => keys.as_primitive::<Int64Type>().value(row),
        DataType::UInt8 => i64::from(keys.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => i64::from(keys.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => i64::from(keys.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => i64::try_from(keys.as_primitive::<UInt64Type>().value(row)).unwrap_or(-1),
        other => return Err(format!("dictionary keys of type {other} are not supported")),
    };
    usize::try_from(key).map_err(|_| format!("dictionary key {key} is out of range"))
}

fn write_f64(v: f64, out: &mut String, counts: &mut JsonCounts) {
    if let Some(special) = special_float(v.is_nan(), v.is_infinite(), v.is_sign_negative(), v == 0.0) {
        counts.special_floats += 1;
        out.push_str(special);
    } else if v != 0.0 && !(1e-6..1e17).contains(&v.abs()) {
        let _ = write!(out, "{v:e}");
    } else {
        let _ = write!(out, "{v}");
    }
}

fn write_f32(v: f32, out: &mut String, counts: &mut JsonCounts) {
    if let Some(special) = special_float(v.is_nan(), v.is_infinite(), v.is_sign_negative(), v == 0.0) {
        counts.special_floats += 1;
        out.push_str(special);
    } else if v != 0.0 && !(1e-6..1e17).contains(&v.abs()) {
        let _ = write!(out, "{v:e}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// The string a float JSON numbers cannot hold is written as, if it is one.
fn special_float(nan: bool, infinite: bool, negative: bool, zero: bool) -> Option<&'static str> {
    match (nan, infinite, negative, zero) {
        (true, ..) => Some("\"NaN\""),
        (false, true, false, _) => Some("\"Infinity\""),
        (false, true, true, _) => Some("\"-Infinity\""),
        (false, false, true, true) => Some("\"-0.0\""),
        _ => None,
    }
}

/// A JSON string, escaped.
pub fn write_str(s: &str, out: &mut String, counts: &mut JsonCounts) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            if b == 0 {
                counts.nul_chars += 1;
            }
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_hex(bytes: &[u8], out: &mut String) {
    out.reserve(bytes.len() * 2 + 5);
    out.push_str("\"\\\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out.push('"');
}

fn quoted(out: &mut String, f: impl FnOnce(&mut String)) {
    out.push('"');
    f(out);
    out.push('"');
}

fn date_from_days(days: i64) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::from_num_days_from_ce_opt(i32::try_from(days.checked_add(719_163)?).ok()?)
}

/// `YYYY-MM-DD`; years past 9999 with a `+`, before year 0 with a `-` (ISO 8601's expanded form).
fn write_date(date: chrono::NaiveDate, out: &mut String) {
    let _ = write!(out, "{}", date.format("%Y-%m-%d"));
}

fn unit_digits(unit: TimeUnit) -> (i64, usize) {
    match unit {
        TimeUnit::Second => (1, 0),
        TimeUnit::Millisecond => (1_000, 3),
        TimeUnit::Microsecond => (1_000_000, 6),
        TimeUnit::Nanosecond => (1_000_000_000, 9),
    }
}

/// Whole seconds (rounded down) and the fraction below them, in `unit`s.
fn split(v: i64, unit: TimeUnit) -> (i64, i64) {
    let (per_second, _) = unit_digits(unit);
    (v.div_euclid(per_second), v.rem_euclid(per_second))
}

fn write_fraction(frac: i64, unit: TimeUnit, out: &mut String) {
    let (_, digits) = unit_digits(unit);
    if digits > 0 {
        let _ = write!(out, ".{frac:0digits$}");
    }
}

/// A signed number of seconds with the unit's digits: `-5.500`.
fn write_seconds(v: i128, unit: TimeUnit, out: &mut String) {
    let (per_second, digits) = unit_digits(unit);
    let per_second = i128::from(per_second);
    if v < 0 {
        out.push('-');
    }
    let abs = v.unsigned_abs();
    let _ = write!(out, "{}", abs / per_second.unsigned_abs());
    if digits > 0 {
        let _ = write!(out, ".{:0digits$}", abs % per_second.unsigned_abs());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BinaryArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int32Array, Int64Array, ListArray,
        MapBuilder, StringArray, StructArray, TimestampNanosecondArray,
    };
    use arrow::array::{Int32Builder, StringBuilder as SB};
    use arrow::datatypes::{Field, Int32Type as I32};

    use super::*;

    fn json(array: &dyn Array) -> (Vec<Option<String>>, JsonCounts) {
        let (out, counts) = encode_column(array, "c").unwrap();
        let out = out.as_string::<i32>();
        ((0..out.len()).map(|i| out.is_valid(i).then(|| out.value(i).to_owned())).collect(), counts)
    }

    #[test]
    fn nulls_inside_structs_lists_and_maps_are_kept() {
        let mut maps = MapBuilder::new(None, SB::new(), Int32Builder::new());
        maps.keys().append_value("k1");
        maps.values().append_value(2);
        maps.keys().append_value("k2");
        maps.values().append_null();
        maps.append(true).unwrap();
        maps.append(false).unwrap();
        let (out, _) = json(&maps.finish());
        assert_eq!(out, [Some(r#"{"k1":2,"k2":null}"#.to_owned()), None]);

        let s = StructArray::from(vec![
            (
                Arc::new(Field::new("a", DataType::Int32, true)),
                Arc::new(Int32Array::from(vec![Some(1), None])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("b", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec![None, Some("x\"y")])) as ArrayRef,
            ),
        ]);
        let (out, _) = json(&s);
        assert_eq!(out, [Some(r#"{"a":1,"b":null}"#.to_owned()), Some(r#"{"a":null,"b":"x\"y"}"#.to_owned())]);

        let lists = ListArray::from_iter_primitive::<I32, _, _>(vec![Some(vec![Some(1), None]), Some(vec![]), None]);
        let (out, _) = json(&lists);
        assert_eq!(out, [Some("[1,null]".to_owned()), Some("[]".to_owned()), None]);
    }

    #[test]
    fn map_keys_of_any_type_are_text_and_duplicates_are_counted() {
        let mut maps = MapBuilder::new(None, Int32Builder::new(), SB::new());
        for (k, v) in [(1, "a"), (-2, "b"), (1, "c")] {
            maps.keys().append_value(k);
            maps.values().append_value(v);
        }
        maps.append(true).unwrap();
        let (out, counts) = json(&maps.finish());
        assert_eq!(out, [Some(r#"{"1":"a","-2":"b","1":"c"}"#.to_owned())]);
        assert_eq!(counts.duplicate_map_keys, 1);
    }

    #[test]
    fn floats_are_exact_and_specials_are_strings() {
        let values = [36.355399999999996, 0.1, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e308, 5e-324, 0.0];
        let (out, counts) = json(&Float64Array::from(values.to_vec()));
        let out: Vec<String> = out.into_iter().map(Option::unwrap_or_default).collect();
        assert_eq!(
            out,
            [
                "36.355399999999996",
                "0.1",
                "\"-0.0\"",
                "\"NaN\"",
                "\"Infinity\"",
                "\"-Infinity\"",
                "1e308",
                "5e-324",
                "0"
            ]
        );
        assert_eq!(counts.special_floats, 4);
        for (text, v) in out.iter().zip(values) {
            if !text.starts_with('"') {
                assert_eq!(text.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{text}");
            }
        }
        let (out, _) = json(&Float32Array::from(vec![0.1f32, 16777217.0]));
        assert_eq!(out, [Some("0.1".to_owned()), Some("16777216".to_owned())]);
    }

    #[test]
    fn decimals_binary_and_times_keep_every_digit() {
        let d = Decimal128Array::from(vec![1230, -5]).with_precision_and_scale(10, 2).unwrap();
        assert_eq!(json(&d).0, [Some("12.30".to_owned()), Some("-0.05".to_owned())]);
        let b = BinaryArray::from(vec![&[0u8, 0xff][..]]);
        assert_eq!(json(&b).0, [Some(r#""\\x00ff""#.to_owned())]);
        let ts = TimestampNanosecondArray::from(vec![-1]).with_timezone("+02:00");
        assert_eq!(json(&ts).0, [Some(r#""1969-12-31T23:59:59.999999999Z""#.to_owned())]);
        let dates = Date32Array::from(vec![0, 2_932_896]);
        assert_eq!(json(&dates).0, [Some(r#""1970-01-01""#.to_owned()), Some(r#""9999-12-31""#.to_owned())]);
        let big = Int64Array::from(vec![i64::MIN]);
        assert_eq!(json(&big).0, [Some("-9223372036854775808".to_owned())]);
    }

    #[test]
    fn negative_zeros_in_json_text_become_strings() {
        let (out, n) = rewrite_negative_zeros(r#"{"a":-0.0,"b":[-0,-0.5,-0e3],"s":"-0.0 \" -0"}"#).unwrap();
        assert_eq!(out, r#"{"a":"-0.0","b":["-0.0",-0.5,"-0.0"],"s":"-0.0 \" -0"}"#);
        assert_eq!(n, 3);
        assert!(rewrite_negative_zeros(r#"{"a":-1.0,"b":"-0"}"#).is_none());
    }

    #[test]
    fn nul_characters_are_counted() {
        let (out, counts) = json(&StringArray::from(vec!["a\0b"]));
        assert_eq!(out, [Some(r#""a\u0000b""#.to_owned())]);
        assert_eq!(counts.nul_chars, 1);
    }
}
