//! Arrow → ClickHouse: the column type a new table gets, the types of an
//! existing table Weir can write, and RowBinary encoding of each.
//!
//! Every value arrives exactly, or is counted in `audit.details`, or fails the
//! load naming the column. What a server's version cannot hold decides the
//! type (see [`Caps`]): 18.16 has no `DateTime64`, `Date32`, `Bool` or
//! `Decimal256`, so a timestamp loses its fraction of a second there
//! (counted), a date before 1970 fails, and a decimal past 38 digits is text.

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Decimal256Array,
    FixedSizeBinaryArray, Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, ListArray,
    PrimitiveArray, StringArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use bytes::{BufMut, BytesMut};
use weir_core::{Error, Result};

/// Counted in `audit.details`: values ClickHouse holds differently.
pub mod counts {
    /// Timestamps whose fraction of a second a `DateTime` column (no `DateTime64` before 20.1) dropped.
    pub const TRUNCATED_SUBSECONDS: &str = "truncated_subseconds";
    /// NULL lists stored as empty arrays: no ClickHouse version has a nullable `Array`.
    pub const NULL_ARRAYS_AS_EMPTY: &str = "null_arrays_as_empty";
    /// Decimals of more than 38 digits kept as exact text (no `Decimal256` before 20.8).
    pub const DECIMALS_AS_TEXT: &str = "decimals_as_text";
}

/// What the server's version can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub datetime64: bool,
    pub date32: bool,
    pub bool: bool,
    pub decimal256: bool,
}

impl Caps {
    /// From `SELECT version()`: `18.16.1`, `24.3.2.23`.
    pub fn of(version: &str) -> Self {
        let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        Caps { datetime64: v >= (20, 1), date32: v >= (21, 9), bool: v >= (22, 1), decimal256: v >= (20, 8) }
    }
}

/// A column type, as far as Weir writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChType {
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Float32,
    Float64,
    Bool,
    String,
    FixedString(usize),
    Uuid,
    /// Days since 1970 in a UInt16: 1970-01-01 to 2105-12-31 (as old servers print it).
    Date,
    /// Days since 1970 in an Int32: 1900-01-01 to 2299-12-31.
    Date32,
    /// Seconds since 1970 in a UInt32.
    DateTime(Option<String>),
    /// Ticks of 10^-precision seconds since 1970 in an Int64.
    DateTime64(u32, Option<String>),
    Decimal(u8, i8),
    Nullable(Box<ChType>),
    LowCardinality(Box<ChType>),
    Array(Box<ChType>),
}

impl ChType {
    /// Parse a type as `system.columns` spells it. `None` for a type Weir does not write.
    pub fn parse(text: &str) -> Option<ChType> {
        let text = text.trim();
        let inner = |prefix: &str| text.strip_prefix(prefix).and_then(|r| r.strip_suffix(')'));
        if let Some(t) = inner("Nullable(") {
            return Some(ChType::Nullable(Box::new(ChType::parse(t)?)));
        }
        if let Some(t) = inner("LowCardinality(") {
            return Some(ChType::LowCardinality(Box::new(ChType::parse(t)?)));
        }
        if let Some(t) = inner("Array(") {
            return Some(ChType::Array(Box::new(ChType::parse(t)?)));
        }
        if let Some(n) = inner("FixedString(") {
            return n.trim().parse().ok().map(ChType::FixedString);
        }
        if let Some(args) = inner("DateTime64(") {
            let mut args = args.splitn(2, ',');
            let precision = args.next()?.trim().parse().ok()?;
            let tz = args.next().map(|t| t.trim().trim_matches('\'').to_owned());
            return Some(ChType::DateTime64(precision, tz));
        }
        if let Some(tz) = inner("DateTime(") {
            return Some(ChType::DateTime(Some(tz.trim().trim_matches('\'').to_owned())));
        }
        if let Some(args) = inner("Decimal(") {
            let (p, s) = args.split_once(',')?;
            return Some(ChType::Decimal(p.trim().parse().ok()?, s.trim().parse().ok()?));
        }
        for (prefix, precision) in [("Decimal32(", 9), ("Decimal64(", 18), ("Decimal128(", 38), ("Decimal256(", 76)] {
            if let Some(s) = inner(prefix) {
                return Some(ChType::Decimal(precision, s.trim().parse().ok()?));
            }
        }
        Some(match text {
            "Int8" => ChType::Int8,
            "Int16" => ChType::Int16,
            "Int32" => ChType::Int32,
            "Int64" => ChType::Int64,
            "UInt8" => ChType::UInt8,
            "UInt16" => ChType::UInt16,
            "UInt32" => ChType::UInt32,
            "UInt64" => ChType::UInt64,
            "Float32" => ChType::Float32,
            "Float64" => ChType::Float64,
            "Bool" | "Boolean" => ChType::Bool,
            "String" => ChType::String,
            "UUID" => ChType::Uuid,
            "Date" => ChType::Date,
            "Date32" => ChType::Date32,
            "DateTime" => ChType::DateTime(None),
            _ => return None,
        })
    }

    /// The type a new column gets for `field`; whether it is counted when it
    /// cannot hold the values exactly shows in `prepare`.
    pub fn for_field(field: &Field, caps: Caps, key: bool) -> ChType {
        let base = Self::for_type(field.data_type(), caps);
        // No version has a nullable Array; keys are never NULL (ORDER BY refuses it before 20.x).
        if field.is_nullable() && !key && !matches!(base, ChType::Array(_)) {
            ChType::Nullable(Box::new(base))
        } else {
            base
        }
    }

    fn for_type(dt: &DataType, caps: Caps) -> ChType {
        match dt {
            DataType::Boolean if caps.bool => ChType::Bool,
            DataType::Boolean => ChType::UInt8,
            DataType::Int8 => ChType::Int8,
            DataType::Int16 => ChType::Int16,
            DataType::Int32 => ChType::Int32,
            DataType::Int64 => ChType::Int64,
            DataType::UInt8 => ChType::UInt8,
            DataType::UInt16 => ChType::UInt16,
            DataType::UInt32 => ChType::UInt32,
            DataType::UInt64 => ChType::UInt64,
            DataType::Float16 | DataType::Float32 => ChType::Float32,
            DataType::Float64 => ChType::Float64,
            DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
                ChType::Decimal(*p, *s)
            }
            DataType::Decimal256(p, s) if *p <= 38 => ChType::Decimal(*p, *s),
            DataType::Decimal256(p, s) if caps.decimal256 => ChType::Decimal(*p, *s),
            DataType::Date32 | DataType::Date64 if caps.date32 => ChType::Date32,
            DataType::Date32 | DataType::Date64 => ChType::Date,
            DataType::Timestamp(unit, _) if caps.datetime64 => {
                let precision = if *unit == TimeUnit::Nanosecond { 9 } else { 6 };
                ChType::DateTime64(precision, Some("UTC".to_owned()))
            }
            DataType::Timestamp(..) => ChType::DateTime(Some("UTC".to_owned())),
            // Microseconds of a duration; nanoseconds are counted where dropped.
            DataType::Duration(_) => ChType::Int64,
            DataType::Dictionary(_, value) => Self::for_type(value, caps),
            DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _)
                if is_scalar(item.data_type()) || matches!(item.data_type(), DataType::List(_)) =>
            {
                let inner = Self::for_type(item.data_type(), caps);
                match inner {
                    ChType::Array(_) => ChType::Array(Box::new(inner)),
                    inner => ChType::Array(Box::new(ChType::Nullable(Box::new(inner)))),
                }
            }
            // Text: strings, bytes, times of day, intervals, and nested values as JSON.
            _ => ChType::String,
        }
    }

    /// As ClickHouse spells it.
    pub fn ddl(&self) -> String {
        match self {
            ChType::Int8 => "Int8".into(),
            ChType::Int16 => "Int16".into(),
            ChType::Int32 => "Int32".into(),
            ChType::Int64 => "Int64".into(),
            ChType::UInt8 => "UInt8".into(),
            ChType::UInt16 => "UInt16".into(),
            ChType::UInt32 => "UInt32".into(),
            ChType::UInt64 => "UInt64".into(),
            ChType::Float32 => "Float32".into(),
            ChType::Float64 => "Float64".into(),
            ChType::Bool => "Bool".into(),
            ChType::String => "String".into(),
            ChType::FixedString(n) => format!("FixedString({n})"),
            ChType::Uuid => "UUID".into(),
            ChType::Date => "Date".into(),
            ChType::Date32 => "Date32".into(),
            ChType::DateTime(None) => "DateTime".into(),
            ChType::DateTime(Some(tz)) => format!("DateTime('{tz}')"),
            ChType::DateTime64(p, None) => format!("DateTime64({p})"),
            ChType::DateTime64(p, Some(tz)) => format!("DateTime64({p}, '{tz}')"),
            ChType::Decimal(p, s) => format!("Decimal({p}, {s})"),
            ChType::Nullable(t) => format!("Nullable({})", t.ddl()),
            ChType::LowCardinality(t) => format!("LowCardinality({})", t.ddl()),
            ChType::Array(t) => format!("Array({})", t.ddl()),
        }
    }

    /// The type without Nullable or LowCardinality around it.
    fn plain(&self) -> &ChType {
        match self {
            ChType::Nullable(t) | ChType::LowCardinality(t) => t.plain(),
            t => t,
        }
    }

    pub fn is_nullable(&self) -> bool {
        match self {
            ChType::Nullable(_) => true,
            ChType::LowCardinality(t) => t.is_nullable(),
            _ => false,
        }
    }
}

/// Numbers, text, bytes, dates and times: what an Array's items may be.
fn is_scalar(dt: &DataType) -> bool {
    dt.is_primitive()
        || matches!(
            dt,
            DataType::Boolean
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
        )
}

/// Whether an existing column of type `ch` can take `field`'s values exactly
/// (beyond what `prepare` counts or checks value by value); the reason if not.
pub fn check_existing(field: &Field, ch: &ChType) -> std::result::Result<(), String> {
    let dt = field.data_type();
    let dt = match dt {
        DataType::Dictionary(_, value) => value.as_ref(),
        dt => dt,
    };
    let refuse = |why: &str| Err(format!("a {dt} value {why} a {} column", ch.ddl()));
    match (dt, ch.plain()) {
        (_, ChType::String) => Ok(()),
        (
            DataType::Decimal32(p, s)
            | DataType::Decimal64(p, s)
            | DataType::Decimal128(p, s)
            | DataType::Decimal256(p, s),
            ChType::Decimal(cp, cs),
        ) => {
            if cs < s || (i32::from(*cp) - i32::from(*cs)) < (i32::from(*p) - i32::from(*s)) {
                refuse("may not fit")
            } else {
                Ok(())
            }
        }
        (DataType::Float64, ChType::Float32) => refuse("would be rounded in"),
        (DataType::Float16 | DataType::Float32 | DataType::Float64, ChType::Float32 | ChType::Float64) => Ok(()),
        (
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64,
            ChType::Int8
            | ChType::Int16
            | ChType::Int32
            | ChType::Int64
            | ChType::UInt8
            | ChType::UInt16
            | ChType::UInt32
            | ChType::UInt64,
        ) => Ok(()), // checked value by value
        (DataType::Boolean, ChType::Bool | ChType::UInt8) => Ok(()),
        (DataType::Date32 | DataType::Date64, ChType::Date | ChType::Date32) => Ok(()),
        (DataType::Timestamp(..), ChType::DateTime(_) | ChType::DateTime64(..)) => Ok(()),
        (DataType::Duration(_), ChType::Int64) => Ok(()),
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, ChType::Uuid) => Ok(()),
        (DataType::FixedSizeBinary(16), ChType::Uuid) => Ok(()),
        (
            DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_),
            ChType::FixedString(_),
        ) => Ok(()),
        (DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _), ChType::Array(inner)) => {
            check_existing(item, inner)
        }
        _ => refuse("cannot be written to"),
    }
}

/// A column ready to encode: its values in the form its ClickHouse type
/// encodes from.
pub enum Prepared {
    Int8(Int8Array),
    Int16(Int16Array),
    Int32(Int32Array),
    Int64(Int64Array),
    UInt8(UInt8Array),
    UInt16(UInt16Array),
    UInt32(UInt32Array),
    UInt64(UInt64Array),
    Float32(Float32Array),
    Float64(Float64Array),
    Bool(BooleanArray),
    Text(StringArray),
    Bytes(BinaryArray),
    Fixed(usize, BinaryArray),
    Uuid(FixedSizeBinaryArray),
    /// Days as UInt16 (`Date`) or Int32 (`Date32`).
    Date(Date32Array, bool),
    /// Seconds in a UInt32.
    DateTime(Int64Array),
    DateTime64(Int64Array),
    Decimal128(Decimal128Array, usize),
    Decimal256(Decimal256Array),
    Nullable(ArrayRef, Box<Prepared>),
    Array(ListArray, Box<Prepared>),
}

fn cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    Ok(cast_with_options(array, to, &CastOptions { safe: false, ..Default::default() })?)
}

/// Bring `array` (the column `name`) into the form `ch` encodes from; what
/// ClickHouse holds differently is added to `counts`.
pub fn prepare(
    array: &ArrayRef,
    ch: &ChType,
    name: &str,
    counts: &mut std::collections::BTreeMap<&'static str, u64>,
) -> Result<Prepared> {
    prepare_values(array, ch, name, counts, false)
}

/// `prepare`, where `nulls` says whether a NULL is sent as such (inside a Nullable).
fn prepare_values(
    array: &ArrayRef,
    ch: &ChType,
    name: &str,
    counts: &mut std::collections::BTreeMap<&'static str, u64>,
    nulls: bool,
) -> Result<Prepared> {
    let array = match array.data_type() {
        DataType::Dictionary(_, value) => cast(array, value)?,
        DataType::Utf8View | DataType::LargeUtf8 => cast(array, &DataType::Utf8)?,
        DataType::BinaryView | DataType::LargeBinary => cast(array, &DataType::Binary)?,
        DataType::LargeList(item) | DataType::FixedSizeList(item, _) | DataType::ListView(item) => {
            cast(array, &DataType::List(item.clone()))?
        }
        _ => array.clone(),
    };
    let out_of_range = |what: &str| {
        Error::user(format!(
            "column `{name}`: {what}; store it in a String column (create the table so) or fix the source"
        ))
    };
    match ch {
        ChType::LowCardinality(inner) => return prepare_values(&array, inner, name, counts, nulls),
        ChType::Nullable(inner) => {
            let values = prepare_values(&array, inner, name, counts, true)?;
            return Ok(Prepared::Nullable(array, Box::new(values)));
        }
        _ => {}
    }
    if !nulls && !matches!(ch, ChType::Array(_)) && array.null_count() > 0 {
        // A NULL in a column that cannot hold one (an existing table's, or a key).
        return Err(Error::user(format!(
            "column `{name}` has NULL values and its ClickHouse type {} cannot hold them",
            ch.ddl()
        )));
    }
    let dt = array.data_type().clone();
    Ok(match ch {
        ChType::Int8 => Prepared::Int8(cast(&array, &DataType::Int8)?.as_primitive().clone()),
        ChType::Int16 => Prepared::Int16(cast(&array, &DataType::Int16)?.as_primitive().clone()),
        ChType::Int32 => Prepared::Int32(cast(&array, &DataType::Int32)?.as_primitive().clone()),
        ChType::Int64 => match dt {
            DataType::Duration(_) => {
                let (micros, lost) = weir_core::narrow::to_microseconds(&array, name)?;
                add(counts, weir_core::narrow::counts::TRUNCATED_NANOSECONDS, lost);
                Prepared::Int64(cast(&micros, &DataType::Int64)?.as_primitive().clone())
            }
            _ => Prepared::Int64(cast(&array, &DataType::Int64)?.as_primitive().clone()),
        },
        ChType::UInt8 => Prepared::UInt8(cast(&array, &DataType::UInt8)?.as_primitive().clone()),
        ChType::UInt16 => Prepared::UInt16(cast(&array, &DataType::UInt16)?.as_primitive().clone()),
        ChType::UInt32 => Prepared::UInt32(cast(&array, &DataType::UInt32)?.as_primitive().clone()),
        ChType::UInt64 => Prepared::UInt64(cast(&array, &DataType::UInt64)?.as_primitive().clone()),
        ChType::Float32 => Prepared::Float32(cast(&array, &DataType::Float32)?.as_primitive().clone()),
        ChType::Float64 => Prepared::Float64(cast(&array, &DataType::Float64)?.as_primitive().clone()),
        ChType::Bool => Prepared::Bool(cast(&array, &DataType::Boolean)?.as_boolean().clone()),
        ChType::String => match dt {
            DataType::Utf8 => Prepared::Text(array.as_string::<i32>().clone()),
            DataType::Binary => Prepared::Bytes(array.as_binary::<i32>().clone()),
            DataType::FixedSizeBinary(_) => Prepared::Bytes(cast(&array, &DataType::Binary)?.as_binary().clone()),
            DataType::Decimal256(..) => {
                add(counts, counts::DECIMALS_AS_TEXT, (array.len() - array.null_count()) as u64);
                Prepared::Text(cast(&array, &DataType::Utf8)?.as_string::<i32>().clone())
            }
            DataType::Struct(_) | DataType::Map(..) | DataType::List(_) | DataType::Union(..) => {
                let (json, json_counts) = weir_core::json::encode_column(array.as_ref(), name)?;
                add(counts, weir_core::narrow::counts::JSON_SPECIAL_FLOATS, json_counts.special_floats);
                add(counts, weir_core::narrow::counts::JSON_DUPLICATE_MAP_KEYS, json_counts.duplicate_map_keys);
                Prepared::Text(json.as_string::<i32>().clone())
            }
            _ => Prepared::Text(cast(&array, &DataType::Utf8)?.as_string::<i32>().clone()),
        },
        ChType::FixedString(n) => {
            let bytes = cast(&array, &DataType::Binary)?;
            let bytes = bytes.as_binary::<i32>();
            if let Some(long) = bytes.iter().flatten().find(|v| v.len() > *n) {
                return Err(out_of_range(&format!("a value of {} bytes does not fit FixedString({n})", long.len())));
            }
            Prepared::Fixed(*n, bytes.clone())
        }
        ChType::Uuid => match dt {
            DataType::FixedSizeBinary(16) => Prepared::Uuid(array.as_fixed_size_binary().clone()),
            _ => {
                let text = cast(&array, &DataType::Utf8)?;
                let mut values = Vec::with_capacity(text.len());
                for v in text.as_string::<i32>().iter() {
                    let v = v.unwrap_or("00000000-0000-0000-0000-000000000000");
                    values.push(parse_uuid(v).ok_or_else(|| out_of_range(&format!("`{v}` is not a UUID")))?);
                }
                Prepared::Uuid(
                    FixedSizeBinaryArray::try_from_iter(values.into_iter())
                        .map_err(|e| Error::internal(e.to_string()))?,
                )
            }
        },
        ChType::Date | ChType::Date32 => {
            let days: Date32Array = cast(&array, &DataType::Date32)?.as_primitive().clone();
            let (lo, hi, range) = match ch {
                // The UInt16 goes to 2149, but servers before 20.x print days past 2105 as 1970.
                ChType::Date => (0, 49_709, "1970-01-01 to 2105-12-31 (what a ClickHouse Date holds)"),
                _ => (-25_567, 120_529, "1900-01-01 to 2299-12-31"),
            };
            if let Some(v) = days.iter().flatten().find(|d| !(lo..=hi).contains(d)) {
                let date = chrono_date(v);
                return Err(out_of_range(&format!("the date {date} is outside {range}")));
            }
            Prepared::Date(days, matches!(ch, ChType::Date))
        }
        ChType::DateTime(_) => {
            let (seconds, lost) = ticks(&array, 0, name)?;
            add(counts, counts::TRUNCATED_SUBSECONDS, lost);
            // 2105-12-31 23:59:59: old servers' calendar ends there, though the UInt32 goes on.
            if let Some(v) = seconds.iter().flatten().find(|s| !(0..=4_291_747_199).contains(s)) {
                let at = arrow::temporal_conversions::timestamp_s_to_datetime(v)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| format!("{v} s after 1970"));
                return Err(out_of_range(&format!(
                    "the timestamp {at} is outside 1970-01-01 00:00:00 to 2105-12-31 23:59:59, what a ClickHouse \
                     DateTime holds"
                )));
            }
            Prepared::DateTime(seconds)
        }
        ChType::DateTime64(precision, _) => {
            let (ticks, lost) = ticks(&array, *precision, name)?;
            add(counts, weir_core::narrow::counts::TRUNCATED_NANOSECONDS, lost);
            Prepared::DateTime64(ticks)
        }
        ChType::Decimal(p, s) if *p <= 38 => {
            let d = cast(&array, &DataType::Decimal128(*p, *s))?;
            let width = match p {
                0..=9 => 4,
                10..=18 => 8,
                _ => 16,
            };
            Prepared::Decimal128(d.as_primitive().clone(), width)
        }
        ChType::Decimal(p, s) => {
            Prepared::Decimal256(cast(&array, &DataType::Decimal256(*p, *s))?.as_primitive().clone())
        }
        ChType::Array(inner) => {
            let list = array.as_list::<i32>().clone();
            add(counts, counts::NULL_ARRAYS_AS_EMPTY, list.null_count() as u64);
            let values = prepare_values(list.values(), inner, name, counts, false)?;
            Prepared::Array(list, Box::new(values))
        }
        ChType::Nullable(_) | ChType::LowCardinality(_) => unreachable!("handled above"),
    })
}

fn add(counts: &mut std::collections::BTreeMap<&'static str, u64>, key: &'static str, n: u64) {
    if n > 0 {
        *counts.entry(key).or_default() += n;
    }
}

/// A timestamp column as ticks of 10^-precision s, floored, and how many values lost digits.
fn ticks(array: &ArrayRef, precision: u32, name: &str) -> Result<(Int64Array, u64)> {
    let (values, per_second): (Int64Array, i64) = match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => (reinterpret::<TimestampSecondType>(array), 1),
        DataType::Timestamp(TimeUnit::Millisecond, _) => (reinterpret::<TimestampMillisecondType>(array), 1_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => (reinterpret::<TimestampMicrosecondType>(array), 1_000_000),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => (reinterpret::<TimestampNanosecondType>(array), 1_000_000_000),
        other => return Err(Error::user(format!("column `{name}`: a {other} value is not a timestamp"))),
    };
    let target = 10i64.pow(precision.min(9));
    if target >= per_second {
        let factor = target / per_second;
        let scaled: Result<Vec<Option<i64>>> = values
            .iter()
            .map(|v| {
                v.map(|v| {
                    v.checked_mul(factor)
                        .ok_or_else(|| Error::user(format!("column `{name}`: the timestamp {v} is out of range")))
                })
                .transpose()
            })
            .collect();
        return Ok((Int64Array::from(scaled?), 0));
    }
    let factor = per_second / target;
    let lost = values.iter().flatten().filter(|v| v % factor != 0).count() as u64;
    let floored: Int64Array = values.unary(|v| v.div_euclid(factor));
    Ok((floored, lost))
}

fn reinterpret<T: ArrowPrimitiveType<Native = i64>>(array: &ArrayRef) -> Int64Array {
    let values: &PrimitiveArray<T> = array.as_primitive();
    Int64Array::new(values.values().clone(), values.nulls().cloned())
}

fn chrono_date(days: i32) -> String {
    arrow::temporal_conversions::date32_to_datetime(days)
        .map(|d| d.date().to_string())
        .unwrap_or_else(|| format!("{days} days after 1970-01-01"))
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// ClickHouse's variable-length integer (LEB128), before strings and arrays.
fn varint(buf: &mut BytesMut, mut n: u64) {
    while n >= 0x80 {
        buf.put_u8((n as u8) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

impl Prepared {
    /// Append row `row`'s value in RowBinary.
    pub fn write(&self, row: usize, buf: &mut BytesMut) {
        match self {
            Prepared::Int8(a) => buf.put_i8(a.value(row)),
            Prepared::Int16(a) => buf.put_i16_le(a.value(row)),
            Prepared::Int32(a) => buf.put_i32_le(a.value(row)),
            Prepared::Int64(a) => buf.put_i64_le(a.value(row)),
            Prepared::UInt8(a) => buf.put_u8(a.value(row)),
            Prepared::UInt16(a) => buf.put_u16_le(a.value(row)),
            Prepared::UInt32(a) => buf.put_u32_le(a.value(row)),
            Prepared::UInt64(a) => buf.put_u64_le(a.value(row)),
            Prepared::Float32(a) => buf.put_f32_le(a.value(row)),
            Prepared::Float64(a) => buf.put_f64_le(a.value(row)),
            Prepared::Bool(a) => buf.put_u8(u8::from(a.value(row))),
            Prepared::Text(a) => {
                let v = if a.is_null(row) { "" } else { a.value(row) };
                varint(buf, v.len() as u64);
                buf.put_slice(v.as_bytes());
            }
            Prepared::Bytes(a) => {
                let v: &[u8] = if a.is_null(row) { b"" } else { a.value(row) };
                varint(buf, v.len() as u64);
                buf.put_slice(v);
            }
            Prepared::Fixed(n, a) => {
                let v: &[u8] = if a.is_null(row) { b"" } else { a.value(row) };
                buf.put_slice(v);
                buf.put_bytes(0, n - v.len());
            }
            Prepared::Uuid(a) => {
                // Two little-endian UInt64 halves, high first.
                let v = a.value(row);
                let (hi, lo) = v.split_at(8);
                buf.put_slice(&hi.iter().rev().copied().collect::<Vec<u8>>());
                buf.put_slice(&lo.iter().rev().copied().collect::<Vec<u8>>());
            }
            Prepared::Date(a, true) => buf.put_u16_le(a.value(row) as u16),
            Prepared::Date(a, false) => buf.put_i32_le(a.value(row)),
            Prepared::DateTime(a) => buf.put_u32_le(a.value(row) as u32),
            Prepared::DateTime64(a) => buf.put_i64_le(a.value(row)),
            Prepared::Decimal128(a, width) => {
                let v = a.value(row);
                buf.put_slice(&v.to_le_bytes()[..*width]);
            }
            Prepared::Decimal256(a) => buf.put_slice(&a.value(row).to_le_bytes()),
            Prepared::Nullable(array, inner) => {
                if array.is_null(row) {
                    buf.put_u8(1); // and no value
                } else {
                    buf.put_u8(0);
                    inner.write(row, buf);
                }
            }
            Prepared::Array(list, items) => {
                if list.is_null(row) {
                    varint(buf, 0);
                    return;
                }
                let offsets = list.value_offsets();
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                varint(buf, (end - start) as u64);
                for i in start..end {
                    items.write(i, buf);
                }
            }
        }
    }
}

/// A constant column (`_weir_load`, `_weir_run_date`) or one computed per row.
pub fn constant_u64(value: u64, rows: usize) -> Prepared {
    Prepared::UInt64(UInt64Array::from_value(value, rows))
}

pub fn constant_u8(value: u8, rows: usize) -> Prepared {
    Prepared::UInt8(UInt8Array::from_value(value, rows))
}

pub fn constant_date(days: i32, rows: usize, date32: bool) -> Prepared {
    Prepared::Date(Date32Array::from_value(days, rows), !date32)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::datatypes::Field;

    const OLD: Caps = Caps { datetime64: false, date32: false, bool: false, decimal256: false };

    #[test]
    fn types_parse_as_system_columns_spells_them() {
        for text in [
            "Nullable(Int32)",
            "Array(Nullable(String))",
            "LowCardinality(String)",
            "DateTime('UTC')",
            "DateTime64(6, 'UTC')",
            "Decimal(38, 10)",
            "FixedString(3)",
            "UUID",
        ] {
            assert_eq!(ChType::parse(text).unwrap().ddl(), text);
        }
        assert_eq!(ChType::parse("Decimal64(4)"), Some(ChType::Decimal(18, 4)));
        assert_eq!(ChType::parse("Enum8('a' = 1)"), None);
        assert_eq!(Caps::of("18.16.1"), OLD);
        assert!(Caps::of("24.3.2.23").datetime64);
    }

    #[test]
    fn new_columns_follow_the_server_version() {
        let ts = Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), true);
        assert_eq!(ChType::for_field(&ts, OLD, false).ddl(), "Nullable(DateTime('UTC'))");
        assert_eq!(ChType::for_field(&ts, Caps::of("24.3"), false).ddl(), "Nullable(DateTime64(6, 'UTC'))");
        let list = Field::new("l", DataType::List(Arc::new(Field::new("item", DataType::Int32, true))), true);
        assert_eq!(ChType::for_field(&list, OLD, false).ddl(), "Array(Nullable(Int32))");
        let key = Field::new("k", DataType::Int64, true);
        assert_eq!(ChType::for_field(&key, OLD, true).ddl(), "Int64");
    }

    #[test]
    fn row_binary_of_strings_nulls_and_arrays() {
        let mut counts = Default::default();
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("ab"), None]));
        let prepared = prepare(&text, &ChType::Nullable(Box::new(ChType::String)), "s", &mut counts).unwrap();
        let mut buf = BytesMut::new();
        prepared.write(0, &mut buf);
        prepared.write(1, &mut buf);
        assert_eq!(&buf[..], &[0, 2, b'a', b'b', 1]);

        let seconds: ArrayRef = Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![1_500_000, 2_000_000]));
        let prepared = prepare(&seconds, &ChType::DateTime(None), "t", &mut counts).unwrap();
        let mut buf = BytesMut::new();
        prepared.write(0, &mut buf);
        assert_eq!(&buf[..], &1u32.to_le_bytes());
        assert_eq!(counts.get(counts::TRUNCATED_SUBSECONDS), Some(&1));
    }
}
