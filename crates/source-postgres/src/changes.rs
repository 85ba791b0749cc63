//! Changes → Arrow: the rows pgoutput sends, as each type's text, decoded into
//! the same Arrow types the binary snapshot reads, followed by the change's
//! metadata columns ([`weir_core::changes`]).
//!
//! The replication connection fixes the session's output formats (ISO dates in
//! UTC, `extra_float_digits = 3`, hex bytea), so every value's text has one
//! form, and reading it back gives the value the snapshot would have read.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder, make_builder,
};
use arrow::datatypes::{Schema, SchemaRef};
use weir_core::changes::{self, op};
use weir_core::{Error, Result};

use crate::pgoutput::Value;
use crate::types::{Column, Kind, arrow_type};

type ValueResult<T> = std::result::Result<T, String>;

/// Where a change sits in the log.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub lsn: i64,
    pub commit_lsn: i64,
    /// Microseconds since 1970, UTC.
    pub commit_time: Option<i64>,
}

/// The stream's schema: the table's columns, then the metadata columns.
pub fn schema(columns: &[Column]) -> SchemaRef {
    let mut fields: Vec<_> = columns.iter().map(Column::field).collect();
    fields.extend(changes::fields());
    Arc::new(Schema::new(fields))
}

/// Builds batches of change rows.
pub struct ChangeBatcher {
    schema: SchemaRef,
    columns: Vec<Column>,
    builders: Vec<Box<dyn ArrayBuilder>>,
    op: StringBuilder,
    lsn: Int64Builder,
    commit_lsn: Int64Builder,
    commit_time: TimestampMicrosecondBuilder,
    unchanged: ListBuilder<StringBuilder>,
    rows: usize,
    bytes: usize,
}

impl ChangeBatcher {
    pub fn new(columns: &[Column]) -> Self {
        Self {
            schema: schema(columns),
            columns: columns.to_vec(),
            builders: columns.iter().map(|c| make_builder(&arrow_type(&c.kind), 1024)).collect(),
            op: StringBuilder::new(),
            lsn: Int64Builder::new(),
            commit_lsn: Int64Builder::new(),
            commit_time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            unchanged: ListBuilder::new(StringBuilder::new()),
            rows: 0,
            bytes: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The bytes of text taken in since the last batch.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// One change: `values[i]` is the value of the table's column `i`, `None`
    /// when the change does not carry that column at all.
    pub fn push(&mut self, operation: &str, values: &[Option<&Value>], meta: Meta) -> Result<()> {
        let mut unchanged = Vec::new();
        for (i, column) in self.columns.iter().enumerate() {
            let builder = self.builders[i].as_mut();
            match values.get(i).copied().flatten() {
                None | Some(Value::Null) => append_null(&column.kind, builder),
                Some(Value::Unchanged) => {
                    append_null(&column.kind, builder);
                    unchanged.push(i);
                }
                Some(Value::Text(raw)) => {
                    self.bytes += raw.len();
                    let appended = std::str::from_utf8(raw)
                        .map_err(|e| format!("the server sent text that is not UTF-8 ({e})"))
                        .and_then(|text| append_text(&column.kind, builder, text));
                    if let Err(why) = appended {
                        return Err(Error::user(format!(
                            "column `{}` of a change at LSN {}: {why}",
                            column.name,
                            lsn_text(meta.lsn)
                        )));
                    }
                }
            }
        }
        self.op.append_value(operation);
        self.lsn.append_value(meta.lsn);
        self.commit_lsn.append_value(meta.commit_lsn);
        self.commit_time.append_option(meta.commit_time);
        if unchanged.is_empty() {
            self.unchanged.append_null();
        } else {
            for i in unchanged {
                self.unchanged.values().append_value(&self.columns[i].name);
            }
            self.unchanged.append(true);
        }
        self.rows += 1;
        Ok(())
    }

    /// A row that says: everything before it is gone.
    pub fn push_truncate(&mut self, meta: Meta) -> Result<()> {
        self.push(op::TRUNCATE, &[], meta)
    }

    /// The rows so far as one batch; the builders start over.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let mut arrays: Vec<_> = self.builders.iter_mut().map(|b| b.finish()).collect();
        arrays.push(Arc::new(self.op.finish()));
        arrays.push(Arc::new(self.lsn.finish()));
        arrays.push(Arc::new(self.commit_lsn.finish()));
        arrays.push(Arc::new(self.commit_time.finish()));
        arrays.push(Arc::new(self.unchanged.finish()));
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| Error::internal(format!("building an Arrow batch of changes: {e}")))
    }
}

/// `X/Y`, as PostgreSQL prints an LSN.
pub fn lsn_text(lsn: i64) -> String {
    crate::replication::Lsn(lsn as u64).to_string()
}

fn downcast<T: 'static>(builder: &mut dyn ArrayBuilder) -> &mut T {
    // The builder was made from this column's kind.
    #[allow(clippy::expect_used)]
    builder.as_any_mut().downcast_mut::<T>().expect("a builder of the column's kind")
}

fn append_null(kind: &Kind, builder: &mut dyn ArrayBuilder) {
    crate::decode::append_null(kind, builder)
}

/// Append one value from the text its type's output function prints.
fn append_text(kind: &Kind, builder: &mut dyn ArrayBuilder, text: &str) -> ValueResult<()> {
    let bad = || format!("`{text}` is not a value of its type as PostgreSQL prints it");
    match kind {
        Kind::Bool => downcast::<BooleanBuilder>(builder).append_value(match text {
            "t" => true,
            "f" => false,
            _ => return Err(bad()),
        }),
        Kind::Int2 => downcast::<Int16Builder>(builder).append_value(text.parse().map_err(|_| bad())?),
        Kind::Int4 => downcast::<Int32Builder>(builder).append_value(text.parse().map_err(|_| bad())?),
        Kind::Int8 => downcast::<Int64Builder>(builder).append_value(text.parse().map_err(|_| bad())?),
        // Parsed as f32 itself: through f64 first, a value could round twice.
        Kind::Float4 => downcast::<Float32Builder>(builder).append_value(match float(text).ok_or_else(bad)? {
            v if v.is_finite() => text.parse::<f32>().map_err(|_| bad())?,
            v => v as f32,
        }),
        Kind::Float8 => downcast::<Float64Builder>(builder).append_value(float(text).ok_or_else(bad)?),
        Kind::Decimal { precision, scale } => {
            downcast::<Decimal128Builder>(builder).append_value(decimal(text, *precision, *scale)?)
        }
        Kind::Text | Kind::Json | Kind::Jsonb | Kind::Uuid => downcast::<StringBuilder>(builder).append_value(text),
        Kind::Bytea => {
            let hex = text.strip_prefix("\\x").ok_or_else(bad)?;
            downcast::<BinaryBuilder>(builder).append_value(unhex(hex).ok_or_else(bad)?)
        }
        Kind::Date => downcast::<Date32Builder>(builder).append_value(date(text)?),
        Kind::Time => downcast::<Time64MicrosecondBuilder>(builder).append_value(time(text).ok_or_else(bad)?),
        Kind::Timestamp | Kind::TimestampTz => {
            downcast::<TimestampMicrosecondBuilder>(builder).append_value(timestamp(text)?)
        }
        Kind::Array(item) => {
            let list = downcast::<ListBuilder<Box<dyn ArrayBuilder>>>(builder);
            for element in array_elements(text)? {
                match element {
                    None => append_null(item, list.values().as_mut()),
                    Some(value) => append_text(item, list.values().as_mut(), &value)?,
                }
            }
            list.append(true);
        }
    }
    Ok(())
}

/// A float as PostgreSQL prints it: shortest exact digits, or a special value.
/// Rust's parse rounds correctly, so the text gives back the stored double.
fn float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ if text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')) => {
            text.parse().ok()
        }
        _ => None,
    }
}

/// `numeric(p, s)` text (`-12.3400`) as an integer at scale `s`.
fn decimal(text: &str, precision: u8, scale: i8) -> ValueResult<i128> {
    if matches!(text, "NaN" | "Infinity" | "-Infinity") {
        return Err(format!(
            "the numeric value is {text}, which a decimal cannot hold; declare the column `numeric` without \
             precision (it then loads as exact text), or select it in options.query as `col::text`"
        ));
    }
    let bad = || format!("`{text}` is not a numeric value as PostgreSQL prints it");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let overflow = || "the numeric value does not fit its declared precision".to_owned();
    let mut value: i128 = 0;
    let mut push = |d: u8| -> ValueResult<()> {
        value = value.checked_mul(10).and_then(|v| v.checked_add(i128::from(d - b'0'))).ok_or_else(overflow)?;
        Ok(())
    };
    for d in whole.bytes() {
        push(d)?;
    }
    let scale_digits = usize::try_from(scale.max(0)).unwrap_or(0);
    for (i, d) in fraction.bytes().enumerate() {
        if i < scale_digits {
            push(d)?;
        } else if d != b'0' {
            return Err("the numeric value has more fraction digits than its declared scale".to_owned());
        }
    }
    for _ in fraction.len()..scale_digits {
        push(b'0')?;
    }
    if scale < 0 {
        let divisor = 10i128.pow(u32::from(scale.unsigned_abs()));
        if value % divisor != 0 {
            return Err(bad());
        }
        value /= divisor;
    }
    if value.unsigned_abs() >= 10u128.pow(u32::from(precision)) {
        return Err(overflow());
    }
    Ok(if negative { -value } else { value })
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = hex.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes.chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

/// Days from 1970-01-01 to a proleptic Gregorian date (any year; 0 is 1 BC).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn infinite(what: &str) -> String {
    format!(
        "the {what} is ±infinity, which Arrow (and so every destination but PostgreSQL) cannot hold; select it \
         in options.query as NULL (`CASE WHEN isfinite(col) THEN col END`) or as text (`col::text`)"
    )
}

/// `YYYY-MM-DD[ BC]` as days since 1970 (the year may have more than 4 digits).
fn civil_days(text: &str) -> Option<i64> {
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (text, false),
    };
    let mut parts = text.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(if bc { 1 - year } else { year }, month, day))
}

fn date(text: &str) -> ValueResult<i32> {
    if matches!(text, "infinity" | "-infinity") {
        return Err(infinite("date"));
    }
    civil_days(text)
        .and_then(|d| i32::try_from(d).ok())
        .ok_or_else(|| format!("`{text}` is not a date as PostgreSQL prints it"))
}

/// `HH:MM:SS[.ffffff]` as microseconds (24:00:00 included).
fn time(text: &str) -> Option<i64> {
    let (hms, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut parts = hms.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: i64 = parts.next()?.parse().ok()?;
    if fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros: i64 = if fraction.is_empty() { 0 } else { format!("{fraction:0<6}").parse().ok()? };
    Some(((h * 60 + m) * 60 + s) * 1_000_000 + micros)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]][ BC]` as microseconds since 1970, UTC.
fn timestamp(text: &str) -> ValueResult<i64> {
    if matches!(text, "infinity" | "-infinity") {
        return Err(infinite("timestamp"));
    }
    let bad = || format!("`{text}` is not a timestamp as PostgreSQL prints it");
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (text, false),
    };
    let (date_part, rest) = body.split_once(' ').ok_or_else(bad)?;
    // An offset follows the time: the first sign after it.
    let (clock, offset) = match rest.find(['+', '-']) {
        Some(at) => (&rest[..at], Some(&rest[at..])),
        None => (rest, None),
    };
    let days = civil_days(&if bc { format!("{date_part} BC") } else { date_part.to_owned() }).ok_or_else(bad)?;
    let micros = time(clock).ok_or_else(bad)?;
    let offset_secs = match offset {
        None => 0,
        Some(o) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let mut secs = 0i64;
            for (i, part) in o[1..].split(':').enumerate() {
                let n: i64 = part.parse().map_err(|_| bad())?;
                secs += n * [3600, 60, 1].get(i).copied().ok_or_else(bad)?;
            }
            sign * secs
        }
    };
    days.checked_mul(86_400_000_000)
        .and_then(|d| d.checked_add(micros))
        .and_then(|t| t.checked_sub(offset_secs * 1_000_000))
        .ok_or_else(|| "the timestamp is out of range".to_owned())
}

/// The elements of a one-dimensional array's text (`{a,"b c",NULL}`), unquoted.
fn array_elements(text: &str) -> ValueResult<Vec<Option<String>>> {
    if text.starts_with('[') {
        return Err(format!(
            "an array whose first index is not 1 (`{}`; a list would lose that); select it in options.query \
             as JSON (`to_jsonb(col)`) or text",
            text.split('=').next().unwrap_or(text)
        ));
    }
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("`{text}` is not an array as PostgreSQL prints it"))?;
    if inner.starts_with('{') {
        return Err(
            "a multi-dimensional array; Weir loads one-dimensional arrays as lists: select it in options.query \
             as JSON (`to_jsonb(col)`) or text"
                .to_owned(),
        );
    }
    let mut out = Vec::new();
    if inner.is_empty() {
        return Ok(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        let mut value = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("`{text}` has an unterminated quoted element")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push(if !quoted && value == "NULL" { None } else { Some(value) });
        match chars.next() {
            Some(',') => continue,
            None => return Ok(out),
            Some(c) => return Err(format!("`{text}` has `{c}` where a comma belongs")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps_count_from_1970_in_every_era() {
        assert_eq!(date("1970-01-01").unwrap(), 0);
        assert_eq!(date("2000-01-01").unwrap(), 10_957);
        assert_eq!(date("0001-01-01").unwrap(), -719_162);
        assert_eq!(date("0001-12-31 BC").unwrap(), -719_163);
        // PostgreSQL's first and last dates, as the server counts them from 1970.
        assert_eq!(date("4714-11-24 BC").unwrap(), -2_440_588);
        assert_eq!(date("5874897-12-31").unwrap(), 2_145_042_905);
        assert!(date("infinity").unwrap_err().contains("infinity"));
        assert_eq!(timestamp("1970-01-01 00:00:00").unwrap(), 0);
        assert_eq!(timestamp("1970-01-01 00:00:00.5+00").unwrap(), 500_000);
        assert_eq!(timestamp("1970-01-01 05:30:00+05:30").unwrap(), 0);
        assert_eq!(timestamp("1969-12-31 23:59:59.999999-00:00:01").unwrap(), 999_999);
        assert_eq!(time("24:00:00").unwrap(), 86_400_000_000);
        assert_eq!(time("01:02:03.04").unwrap(), 3_723_040_000);
    }

    #[test]
    fn numbers_read_back_exactly() {
        assert_eq!(decimal("-12.3400", 10, 4).unwrap(), -123_400);
        assert_eq!(decimal("12", 10, 2).unwrap(), 1200);
        assert_eq!(decimal("1200", 10, -2).unwrap(), 12);
        assert!(decimal("NaN", 10, 2).unwrap_err().contains("NaN"));
        assert!(decimal("1.005", 10, 2).is_err());
        assert!(decimal("123", 2, 0).is_err());
        assert_eq!(float("0.1").unwrap(), 0.1);
        assert_eq!(float("-0").unwrap().to_bits(), (-0.0f64).to_bits());
        assert!(float("NaN").unwrap().is_nan());
        assert_eq!(float("1.7976931348623157e+308").unwrap(), f64::MAX);
        assert_eq!(float("5e-324").unwrap(), 5e-324);
        assert_eq!(unhex("00ff10").unwrap(), vec![0, 255, 16]);
        // The smallest f32 subnormal, as PostgreSQL prints it.
        let mut b = Float32Builder::new();
        append_text(&Kind::Float4, &mut b, "1e-45").unwrap();
        assert_eq!(b.finish().value(0).to_bits(), 1);
    }

    #[test]
    fn arrays_unquote_their_elements() {
        let got = array_elements(r#"{1,NULL,"NULL","a \"b\", c",""}"#).unwrap();
        assert_eq!(got, [Some("1".into()), None, Some("NULL".into()), Some("a \"b\", c".into()), Some(String::new())]);
        assert!(array_elements("{}").unwrap().is_empty());
        assert!(array_elements("{{1,2},{3,4}}").unwrap_err().contains("multi-dimensional"));
        assert!(array_elements("[0:1]={1,2}").unwrap_err().contains("first index"));
    }
}
