//! MySQL binary-protocol values → Arrow arrays, one builder per column.
//!
//! Rows arrive in the binary protocol (prepared statements): integers and
//! floats little-endian, dates and times as small structs, decimals as ASCII,
//! everything else as length-prefixed bytes. Each value is decoded straight
//! into its column's Arrow builder; nothing goes through an intermediate row type.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int8Builder, Int16Builder, Int32Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, SchemaRef};
use sqlx::mysql::{MySql, MySqlRow};
use sqlx::{Decode, Row};
use weir_core::{Error, Result};

use crate::geometry;
use crate::types::{GeometryForm, MysqlType};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Why one value could not be read; the caller adds the column and the row key.
type ValueResult<T> = std::result::Result<T, String>;

/// One column's Arrow builder, typed by what the column holds.
enum Builder {
    Bool(BooleanBuilder),
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Decimal(Decimal128Builder, i8),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    Text(StringBuilder),
    Set(ListBuilder<StringBuilder>),
    Bytes(BinaryBuilder),
    /// A spatial value as WKB or WKT, and its SRID.
    Geometry(Box<Builder>, UInt32Builder),
}

impl Builder {
    /// The builder for the Arrow type `ty` is read as ([`MysqlType::arrow`]).
    fn new(ty: MysqlType, capacity: usize) -> Self {
        if let MysqlType::Geometry(GeometryForm::Wkb | GeometryForm::Wkt) = ty {
            let shape = match ty.arrow() {
                DataType::Utf8 => Self::Text(StringBuilder::with_capacity(capacity, capacity * 32)),
                _ => Self::Bytes(BinaryBuilder::with_capacity(capacity, capacity * 32)),
            };
            return Self::Geometry(Box::new(shape), UInt32Builder::with_capacity(capacity));
        }
        let data_type = ty.arrow();
        match data_type {
            DataType::Boolean => Self::Bool(BooleanBuilder::with_capacity(capacity)),
            DataType::Int8 => Self::I8(Int8Builder::with_capacity(capacity)),
            DataType::Int16 => Self::I16(Int16Builder::with_capacity(capacity)),
            DataType::Int32 => Self::I32(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => Self::I64(Int64Builder::with_capacity(capacity)),
            DataType::UInt8 => Self::U8(UInt8Builder::with_capacity(capacity)),
            DataType::UInt16 => Self::U16(UInt16Builder::with_capacity(capacity)),
            DataType::UInt32 => Self::U32(UInt32Builder::with_capacity(capacity)),
            DataType::UInt64 => Self::U64(UInt64Builder::with_capacity(capacity)),
            DataType::Float32 => Self::F32(Float32Builder::with_capacity(capacity)),
            DataType::Float64 => Self::F64(Float64Builder::with_capacity(capacity)),
            DataType::Decimal128(_, scale) => {
                Self::Decimal(Decimal128Builder::with_capacity(capacity).with_data_type(data_type), scale)
            }
            DataType::Date32 => Self::Date(Date32Builder::with_capacity(capacity)),
            DataType::Timestamp(..) => {
                Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity).with_data_type(data_type))
            }
            DataType::Time64(_) => Self::Time(Time64MicrosecondBuilder::with_capacity(capacity)),
            DataType::List(_) => Self::Set(ListBuilder::new(StringBuilder::new())),
            DataType::Binary => Self::Bytes(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            // Utf8: text, JSON and decimals wider than Decimal128.
            _ => Self::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::I8(b) => b.append_null(),
            Self::I16(b) => b.append_null(),
            Self::I32(b) => b.append_null(),
            Self::I64(b) => b.append_null(),
            Self::U8(b) => b.append_null(),
            Self::U16(b) => b.append_null(),
            Self::U32(b) => b.append_null(),
            Self::U64(b) => b.append_null(),
            Self::F32(b) => b.append_null(),
            Self::F64(b) => b.append_null(),
            Self::Decimal(b, _) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Text(b) => b.append_null(),
            Self::Set(b) => b.append_null(),
            Self::Bytes(b) => b.append_null(),
            Self::Geometry(shape, srid) => {
                shape.append_null();
                srid.append_null();
            }
        }
    }

    /// The column's arrays (two for a spatial value with its SRID) onto `out`.
    fn finish_into(&mut self, out: &mut Vec<ArrayRef>) {
        if let Self::Geometry(shape, srid) = self {
            shape.finish_into(out);
            out.push(Arc::new(srid.finish()));
            return;
        }
        out.push(self.finish());
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::I8(b) => Arc::new(b.finish()),
            Self::I16(b) => Arc::new(b.finish()),
            Self::I32(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::U8(b) => Arc::new(b.finish()),
            Self::U16(b) => Arc::new(b.finish()),
            Self::U32(b) => Arc::new(b.finish()),
            Self::U64(b) => Arc::new(b.finish()),
            Self::F32(b) => Arc::new(b.finish()),
            Self::F64(b) => Arc::new(b.finish()),
            Self::Decimal(b, _) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
            Self::Set(b) => Arc::new(b.finish()),
            Self::Bytes(b) => Arc::new(b.finish()),
            Self::Geometry(shape, _) => shape.finish(),
        }
    }
}

/// What decoding one value did beyond appending it.
enum Appended {
    Value,
    /// A zero date (`0000-00-00`), appended as NULL.
    ZeroDate,
}

/// One column: its name, its declared type and its builder.
struct ColumnBuilder {
    name: String,
    ty: MysqlType,
    builder: Builder,
}

impl ColumnBuilder {
    /// Append one non-NULL value in the binary protocol's encoding.
    fn append(&mut self, raw: &[u8]) -> ValueResult<Appended> {
        use MysqlType as T;
        match (&mut self.builder, self.ty) {
            (Builder::Bool(b), T::Bool) => match int(raw)? {
                0 => b.append_value(false),
                1 => b.append_value(true),
                other => {
                    return Err(format!(
                        "TINYINT(1) value {other} is not a boolean (0 or 1); \
                         change the column to TINYINT, or cast it in options.query"
                    ));
                }
            },
            (Builder::Bool(b), _) => b.append_value(bits(raw)? != 0),
            (Builder::I8(b), _) => b.append_value(int(raw)? as i8),
            (Builder::I16(b), _) => b.append_value(int(raw)? as i16),
            (Builder::I32(b), _) => b.append_value(int(raw)? as i32),
            (Builder::I64(b), T::Bit { .. }) => b.append_value(bits(raw)? as i64),
            (Builder::I64(b), _) => b.append_value(int(raw)?),
            (Builder::U8(b), _) => b.append_value(uint(raw)? as u8),
            (Builder::U16(b), _) => b.append_value(uint(raw)? as u16),
            (Builder::U32(b), _) => b.append_value(uint(raw)? as u32),
            (Builder::U64(b), T::Bit { .. }) => b.append_value(bits(raw)?),
            (Builder::U64(b), _) => b.append_value(uint(raw)?),
            (Builder::F32(b), _) => b.append_value(f32::from_le_bytes(fixed(raw)?)),
            (Builder::F64(b), _) => b.append_value(f64::from_le_bytes(fixed(raw)?)),
            (Builder::Decimal(b, scale), _) => b.append_value(decimal(raw, *scale)?),
            (Builder::Date(b), _) => match datetime(raw)? {
                None => return Ok(zero(&mut self.builder)),
                Some(micros) => b.append_value(micros.div_euclid(MICROS_PER_DAY) as i32),
            },
            (Builder::Timestamp(b), _) => match datetime(raw)? {
                None => return Ok(zero(&mut self.builder)),
                Some(micros) => b.append_value(micros),
            },
            (Builder::Time(b), _) => b.append_value(time_of_day(raw)?),
            (Builder::Text(b), _) => b.append_value(utf8(raw)?),
            (Builder::Set(b), _) => {
                let text = utf8(raw)?;
                if !text.is_empty() {
                    for member in text.split(',') {
                        b.values().append_value(member);
                    }
                }
                b.append(true);
            }
            (Builder::Geometry(shape, srid), T::Geometry(form)) => {
                let (id, wkb) = geometry::split(raw).ok_or_else(|| {
                    format!("a spatial value of {} bytes is not MySQL's SRID-and-WKB form", raw.len())
                })?;
                match (shape.as_mut(), form) {
                    (Builder::Text(b), _) => b.append_value(geometry::wkt(wkb).ok_or_else(|| {
                        "a spatial value is not valid WKB; read it with options.geometry = 'internal'".to_owned()
                    })?),
                    (Builder::Bytes(b), _) => b.append_value(wkb),
                    _ => return Err("a spatial column has no builder for its form".to_owned()),
                }
                srid.append_value(id);
            }
            (Builder::Bytes(b), _) => b.append_value(raw),
            (Builder::Geometry(..), _) => return Err("a spatial builder for a column that is not spatial".to_owned()),
        }
        Ok(Appended::Value)
    }
}

fn zero(builder: &mut Builder) -> Appended {
    builder.append_null();
    Appended::ZeroDate
}

fn fixed<const N: usize>(raw: &[u8]) -> ValueResult<[u8; N]> {
    raw.try_into().map_err(|_| format!("expected {N} bytes from the server, got {}", raw.len()))
}

/// A signed integer of any width the server sends (1, 2, 4 or 8 bytes, little-endian).
fn int(raw: &[u8]) -> ValueResult<i64> {
    Ok(match raw.len() {
        1 => raw[0] as i8 as i64,
        2 => i16::from_le_bytes(fixed(raw)?) as i64,
        4 => i32::from_le_bytes(fixed(raw)?) as i64,
        8 => i64::from_le_bytes(fixed(raw)?),
        n => return Err(format!("an integer of {n} bytes is not a MySQL integer")),
    })
}

fn uint(raw: &[u8]) -> ValueResult<u64> {
    Ok(match raw.len() {
        1 => raw[0] as u64,
        2 => u16::from_le_bytes(fixed(raw)?) as u64,
        4 => u32::from_le_bytes(fixed(raw)?) as u64,
        8 => u64::from_le_bytes(fixed(raw)?),
        n => return Err(format!("an integer of {n} bytes is not a MySQL integer")),
    })
}

/// `BIT(M)`: up to 8 bytes, big-endian.
fn bits(raw: &[u8]) -> ValueResult<u64> {
    if raw.len() > 8 {
        return Err(format!("a BIT value of {} bytes does not fit 64 bits", raw.len()));
    }
    Ok(raw.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
}

/// `DECIMAL` as the server prints it (`-123.45`) → the unscaled integer at `scale`.
fn decimal(raw: &[u8], scale: i8) -> ValueResult<i128> {
    let bad = || format!("`{}` is not a decimal number", String::from_utf8_lossy(raw));
    let (negative, digits) = match raw.first() {
        Some(b'-') => (true, &raw[1..]),
        Some(b'+') => (false, &raw[1..]),
        _ => (false, raw),
    };
    let mut value: i128 = 0;
    let mut fraction_digits: i32 = 0;
    let mut seen_point = false;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                value = value.checked_mul(10).and_then(|v| v.checked_add((c - b'0') as i128)).ok_or_else(bad)?;
                if seen_point {
                    fraction_digits += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => return Err(bad()),
        }
    }
    let shift = scale as i32 - fraction_digits;
    if shift < 0 {
        return Err(format!(
            "`{}` has more fraction digits than the column's scale {scale}",
            String::from_utf8_lossy(raw)
        ));
    }
    let value = value.checked_mul(10i128.pow(shift as u32)).ok_or_else(bad)?;
    Ok(if negative { -value } else { value })
}

/// `DATE`, `DATETIME`, `TIMESTAMP`: microseconds since the epoch, or `None`
/// for a zero date (`0000-00-00`, or a zero month or day).
fn datetime(raw: &[u8]) -> ValueResult<Option<i64>> {
    let len = *raw.first().ok_or("an empty date value")? as usize;
    let body = &raw[1..];
    if body.len() != len || !matches!(len, 0 | 4 | 7 | 11) {
        return Err(format!("a date value of {} bytes is not in the binary protocol's form", raw.len()));
    }
    if len == 0 {
        return Ok(None);
    }
    let year = u16::from_le_bytes([body[0], body[1]]) as i32;
    let (month, day) = (body[2] as u32, body[3] as u32);
    if month == 0 || day == 0 {
        return Ok(None);
    }
    let days =
        days_from_civil(year, month, day).ok_or_else(|| format!("{year:04}-{month:02}-{day:02} is not a date"))?;
    let mut micros = days * MICROS_PER_DAY;
    if len >= 7 {
        micros += (body[4] as i64 * 3600 + body[5] as i64 * 60 + body[6] as i64) * MICROS_PER_SECOND;
    }
    if len == 11 {
        micros += u32::from_le_bytes([body[7], body[8], body[9], body[10]]) as i64;
    }
    Ok(Some(micros))
}

/// Days since 1970-01-01 of a proleptic Gregorian date, or `None` if there is
/// no such day (Howard Hinnant's `days_from_civil`: arithmetic only; this runs
/// once per date value).
fn days_from_civil(year: i32, month: u32, day: u32) -> Option<i64> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > month_days {
        return None;
    }
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// `TIME` as a time of day in microseconds; MySQL's negative or ≥ 24 h
/// durations do not fit one.
fn time_of_day(raw: &[u8]) -> ValueResult<i64> {
    let len = *raw.first().ok_or("an empty time value")? as usize;
    let body = &raw[1..];
    if body.len() != len || !matches!(len, 0 | 8 | 12) {
        return Err(format!("a time value of {} bytes is not in the binary protocol's form", raw.len()));
    }
    if len == 0 {
        return Ok(0);
    }
    let negative = body[0] == 1;
    let days = u32::from_le_bytes([body[1], body[2], body[3], body[4]]) as i64;
    let (h, m, s) = (body[5] as i64, body[6] as i64, body[7] as i64);
    let micros = if len == 12 { u32::from_le_bytes([body[8], body[9], body[10], body[11]]) as i64 } else { 0 };
    if negative || days > 0 {
        let hours = days * 24 + h;
        let sign = if negative { "-" } else { "" };
        return Err(format!(
            "TIME value {sign}{hours:02}:{m:02}:{s:02} is not a time of day (00:00:00 to 23:59:59.999999); \
             cast it in options.query, e.g. TIME_TO_SEC(column)"
        ));
    }
    Ok((h * 3600 + m * 60 + s) * MICROS_PER_SECOND + micros)
}

fn utf8(raw: &[u8]) -> ValueResult<&str> {
    std::str::from_utf8(raw).map_err(|e| format!("text is not valid UTF-8 ({e})"))
}

/// A value as text, for naming a row in an error (`id=42`, `code='ab'`).
fn render(ty: MysqlType, raw: &[u8]) -> String {
    match Param::from_raw(ty, Some(raw)) {
        Ok(Param::Null) => "NULL".to_owned(),
        Ok(Param::Int(v)) => v.to_string(),
        Ok(Param::UInt(v)) => v.to_string(),
        Ok(Param::Float(v)) => v.to_string(),
        Ok(Param::Text(v)) => format!("'{v}'"),
        Ok(Param::Bytes(v)) => format!("0x{}", v.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        Err(_) => "?".to_owned(),
    }
}

/// A value to bind into a statement: a keyset cursor, a bound, a range edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Param {
    /// A value of a `ty` column, as the server sent it, to compare that column with.
    pub fn from_raw(ty: MysqlType, raw: Option<&[u8]>) -> Result<Self> {
        let Some(raw) = raw else { return Ok(Param::Null) };
        let param = match ty {
            MysqlType::Int { unsigned: true, .. } => uint(raw).map(Param::UInt),
            MysqlType::Int { .. } | MysqlType::Bool | MysqlType::Year => int(raw).map(Param::Int),
            MysqlType::Bit { .. } => bits(raw).map(Param::UInt),
            MysqlType::Float => fixed(raw).map(|b| Param::Float(f32::from_le_bytes(b) as f64)),
            MysqlType::Double => fixed(raw).map(|b| Param::Float(f64::from_le_bytes(b))),
            MysqlType::Date | MysqlType::Datetime | MysqlType::Timestamp => datetime(raw)
                .map(|m| Param::Text(m.map(datetime_literal).unwrap_or_else(|| "0000-00-00 00:00:00".to_owned()))),
            MysqlType::Bytes => Ok(Param::Bytes(raw.to_vec())),
            _ => utf8(raw).map(|s| Param::Text(s.to_owned())),
        };
        param.map_err(|why| Error::internal(format!("reading a key value: {why}")))
    }
}

/// Microseconds since the epoch as a MySQL literal: `2025-03-23 12:00:00.000000`.
pub fn datetime_literal(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|d| d.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        .unwrap_or_default()
}

/// The columns of a result set, decoded row by row into one Arrow batch at a time.
pub struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    /// Columns that name a row in an error: the primary key.
    key: Vec<usize>,
    capacity: usize,
    rows: usize,
    /// Value bytes decoded since the last `finish`.
    pub bytes: u64,
    /// Zero dates read as NULL since the last `finish`.
    pub zero_dates: u64,
}

impl BatchBuilder {
    /// `columns` in result-set order, with `schema` built from them; `key`
    /// indexes the columns that identify a row.
    pub fn new(schema: SchemaRef, columns: &[(String, MysqlType)], key: Vec<usize>, capacity: usize) -> Self {
        let columns = columns
            .iter()
            .map(|(name, ty)| ColumnBuilder { name: name.clone(), ty: *ty, builder: Builder::new(*ty, capacity) })
            .collect();
        Self { schema, columns, key, capacity, rows: 0, bytes: 0, zero_dates: 0 }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Decode one row. An error names the column, the row's key and the value's problem.
    pub fn push(&mut self, row: &MySqlRow) -> Result<()> {
        for i in 0..self.columns.len() {
            let raw = raw_value(row, i)?;
            let column = &mut self.columns[i];
            match raw {
                None => column.builder.append_null(),
                Some(raw) => {
                    self.bytes += raw.len() as u64;
                    match column.append(raw) {
                        Ok(Appended::Value) => {}
                        Ok(Appended::ZeroDate) => self.zero_dates += 1,
                        Err(why) => return Err(self.value_error(row, i, &why)),
                    }
                }
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn value_error(&self, row: &MySqlRow, column: usize, why: &str) -> Error {
        let key: Vec<String> = self
            .key
            .iter()
            .map(|&k| {
                let c = &self.columns[k];
                let value = raw_value(row, k).ok().flatten().map(|raw| render(c.ty, raw));
                format!("{}={}", c.name, value.as_deref().unwrap_or("NULL"))
            })
            .collect();
        let at = if key.is_empty() {
            "a row without a primary key".to_owned()
        } else {
            format!("the row {}", key.join(", "))
        };
        Error::user(format!("column `{}` at {at}: {why}", self.columns[column].name))
    }

    /// The rows pushed so far as one batch; the builder starts over empty.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for c in &mut self.columns {
            c.builder.finish_into(&mut arrays);
        }
        self.rows = 0;
        self.bytes = 0;
        self.zero_dates = 0;
        for c in &mut self.columns {
            c.builder = Builder::new(c.ty, self.capacity);
        }
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| Error::internal(format!("building an Arrow batch from MySQL rows: {e}")))
    }
}

/// A value's bytes as the server sent them, or `None` for SQL NULL. (sqlx's
/// own NULL check also calls a zero date NULL; we count those separately.)
pub fn raw_value(row: &MySqlRow, index: usize) -> Result<Option<&[u8]>> {
    let value =
        row.try_get_raw(index).map_err(|e| Error::internal(format!("reading column {index} of a MySQL row: {e}")))?;
    Ok(<&[u8] as Decode<MySql>>::decode(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal(b"-123.45", 2).unwrap(), -12345);
        assert_eq!(decimal(b"0.5", 3).unwrap(), 500);
        assert_eq!(decimal(b"99999999999999999999999999999999999999", 0).unwrap(), 10i128.pow(38) - 1);
        assert!(decimal(b"1.234", 2).is_err());
        assert!(decimal(b"1e5", 0).is_err());
    }

    #[test]
    fn dates_in_binary_form() {
        // 2025-03-23 12:34:56.000789
        let raw = [11, 0xe9, 0x07, 3, 23, 12, 34, 56, 0x15, 0x03, 0, 0];
        let micros = datetime(&raw).unwrap().unwrap();
        let dt = chrono::DateTime::from_timestamp_micros(micros).unwrap().naive_utc();
        assert_eq!(dt.to_string(), "2025-03-23 12:34:56.000789");
        assert_eq!(datetime(&[0]).unwrap(), None, "zero date");
        assert_eq!(datetime(&[4, 0xe9, 0x07, 0, 0]).unwrap(), None, "zero month and day");
        assert!(datetime(&[4, 0xe9, 0x07, 2, 30]).is_err(), "February 30th");
    }

    #[test]
    fn civil_days_match_chrono() {
        let epoch = chrono::NaiveDate::default();
        for (y, m, d) in
            [(1970, 1, 1), (2025, 3, 23), (2024, 2, 29), (2000, 12, 31), (1000, 1, 1), (1, 1, 1), (9999, 12, 31)]
        {
            let want = (chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap() - epoch).num_days();
            assert_eq!(days_from_civil(y, m, d), Some(want), "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(2023, 2, 29), None);
        assert_eq!(days_from_civil(1900, 2, 29), None);
        assert_eq!(days_from_civil(2025, 13, 1), None);
    }

    #[test]
    fn times_must_be_times_of_day() {
        assert_eq!(time_of_day(&[8, 0, 0, 0, 0, 0, 23, 59, 59]).unwrap(), 86_399_000_000);
        let err = time_of_day(&[8, 1, 0, 0, 0, 0, 1, 0, 0]).unwrap_err();
        assert!(err.contains("-01:00:00"), "{err}");
        let err = time_of_day(&[8, 0, 2, 0, 0, 0, 3, 0, 0]).unwrap_err();
        assert!(err.contains("51:00:00"), "{err}");
    }

    #[test]
    fn integers_keep_their_sign() {
        assert_eq!(int(&[0xff]).unwrap(), -1);
        assert_eq!(uint(&[0xff; 8]).unwrap(), u64::MAX);
        assert_eq!(bits(&[0x01, 0x02]).unwrap(), 258);
    }
}
