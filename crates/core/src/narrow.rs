//! Values a destination keeps with fewer digits than the source has, and the
//! names under which a load counts them in `audit.details`.
//!
//! PostgreSQL and Delta keep timestamps, times and durations in microseconds.
//! A nanosecond value whose last three digits are not zero cannot arrive
//! exactly: it is rounded down to the microsecond (toward the past, so
//! `23:59:59.999999999` stays in its second) and counted, never changed
//! silently. A value out of the microsecond range fails naming the column.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, LargeListArray, ListArray, PrimitiveArray};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType,
    DurationSecondType, Field, Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};

use crate::{Error, Result};

/// `audit.details` keys for values a sink had to change, and why.
pub mod counts {
    /// Timestamps, times or durations whose sub-microsecond digits were dropped.
    pub const TRUNCATED_NANOSECONDS: &str = "truncated_nanoseconds";
    /// NaN, ±Infinity or -0.0 inside a nested value, written to JSON as a string.
    pub const JSON_SPECIAL_FLOATS: &str = "json_special_floats";
    /// Map entries whose key repeats an earlier key's text; a JSON object keeps the last.
    pub const JSON_DUPLICATE_MAP_KEYS: &str = "json_duplicate_map_keys";
}

/// Whether `dt` (or anything inside it) is a temporal type that is not in microseconds.
pub fn needs_microseconds(dt: &DataType) -> bool {
    match dt {
        DataType::Timestamp(unit, _) | DataType::Duration(unit) => *unit != TimeUnit::Microsecond,
        DataType::Time32(_) => true,
        DataType::Time64(unit) => *unit != TimeUnit::Microsecond,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => needs_microseconds(f.data_type()),
        DataType::Dictionary(_, value) => needs_microseconds(value),
        _ => false,
    }
}

/// `array` with every timestamp, time and duration in microseconds (also the
/// items of lists), and how many values lost nanoseconds. Other types pass
/// through. `name` is the column's, for messages.
pub fn to_microseconds(array: &ArrayRef, name: &str) -> Result<(ArrayRef, u64)> {
    let out_of_range = |v: i64| {
        Error::user(format!(
            "the value {v} of column `{name}` cannot be held in microseconds (beyond year ±294,000); \
             fix it in the source or leave the column out"
        ))
    };
    let dt = array.data_type();
    if !needs_microseconds(dt) {
        return Ok((array.clone(), 0));
    }
    Ok(match dt {
        // Dictionaries and list views as their plain forms first: a cast between
        // units would round toward zero, uncounted.
        DataType::Dictionary(_, value) => to_microseconds(&arrow::compute::cast(array, value)?, name)?,
        DataType::ListView(f) | DataType::LargeListView(f) => {
            to_microseconds(&arrow::compute::cast(array, &DataType::List(f.clone()))?, name)?
        }
        DataType::Timestamp(unit, tz) => {
            let (values, lost) = match unit {
                TimeUnit::Second => scale_up::<TimestampSecondType, TimestampMicrosecondType>(array, 1_000_000),
                TimeUnit::Millisecond => scale_up::<TimestampMillisecondType, TimestampMicrosecondType>(array, 1_000),
                TimeUnit::Nanosecond => Ok(floor::<TimestampNanosecondType, TimestampMicrosecondType>(array)),
                TimeUnit::Microsecond => return Ok((array.clone(), 0)),
            }
            .map_err(out_of_range)?;
            (Arc::new(values.with_timezone_opt(tz.clone())) as ArrayRef, lost)
        }
        DataType::Duration(unit) => {
            let (values, lost) = match unit {
                TimeUnit::Second => scale_up::<DurationSecondType, DurationMicrosecondType>(array, 1_000_000),
                TimeUnit::Millisecond => scale_up::<DurationMillisecondType, DurationMicrosecondType>(array, 1_000),
                TimeUnit::Nanosecond => Ok(floor::<DurationNanosecondType, DurationMicrosecondType>(array)),
                TimeUnit::Microsecond => return Ok((array.clone(), 0)),
            }
            .map_err(out_of_range)?;
            (Arc::new(values) as ArrayRef, lost)
        }
        DataType::Time32(unit) => {
            let values = match unit {
                TimeUnit::Second => array
                    .as_primitive::<Time32SecondType>()
                    .unary::<_, Time64MicrosecondType>(|v| i64::from(v) * 1_000_000),
                _ => array
                    .as_primitive::<Time32MillisecondType>()
                    .unary::<_, Time64MicrosecondType>(|v| i64::from(v) * 1_000),
            };
            (Arc::new(values) as ArrayRef, 0)
        }
        DataType::Time64(_) => {
            let (values, lost) = floor::<Time64NanosecondType, Time64MicrosecondType>(array);
            (Arc::new(values) as ArrayRef, lost)
        }
        DataType::List(f) => {
            let list = array.as_list::<i32>();
            let (values, lost) = to_microseconds(list.values(), name)?;
            let field = Arc::new(Field::new(f.name(), values.data_type().clone(), f.is_nullable()));
            let rebuilt = ListArray::try_new(field, list.offsets().clone(), values, list.nulls().cloned())?;
            (Arc::new(rebuilt) as ArrayRef, lost)
        }
        DataType::LargeList(f) => {
            let list = array.as_list::<i64>();
            let (values, lost) = to_microseconds(list.values(), name)?;
            let field = Arc::new(Field::new(f.name(), values.data_type().clone(), f.is_nullable()));
            let rebuilt = LargeListArray::try_new(field, list.offsets().clone(), values, list.nulls().cloned())?;
            (Arc::new(rebuilt) as ArrayRef, lost)
        }
        DataType::FixedSizeList(f, size) => {
            let list = array.as_fixed_size_list();
            let (values, lost) = to_microseconds(list.values(), name)?;
            let field = Arc::new(Field::new(f.name(), values.data_type().clone(), f.is_nullable()));
            let rebuilt = FixedSizeListArray::try_new(field, *size, values, list.nulls().cloned())?;
            (Arc::new(rebuilt) as ArrayRef, lost)
        }
        _ => (array.clone(), 0),
    })
}

/// Nanoseconds to microseconds, rounded down; how many values had digits below a microsecond.
fn floor<From, To>(array: &ArrayRef) -> (PrimitiveArray<To>, u64)
where
    From: ArrowPrimitiveType<Native = i64>,
    To: ArrowPrimitiveType<Native = i64>,
{
    let values = array.as_primitive::<From>();
    let mut lost = 0u64;
    let out = values.unary::<_, To>(|v| v.div_euclid(1_000));
    for (i, v) in values.values().iter().enumerate() {
        if v.rem_euclid(1_000) != 0 && values.is_valid(i) {
            lost += 1;
        }
    }
    (out, lost)
}

/// Seconds or milliseconds to microseconds; the first value that overflows, if any.
fn scale_up<From, To>(array: &ArrayRef, factor: i64) -> std::result::Result<(PrimitiveArray<To>, u64), i64>
where
    From: ArrowPrimitiveType<Native = i64>,
    To: ArrowPrimitiveType<Native = i64>,
{
    let values = array.as_primitive::<From>();
    if let Some(bad) = values.iter().flatten().find(|v| v.checked_mul(factor).is_none()) {
        return Err(bad);
    }
    Ok((values.unary::<_, To>(|v| v.wrapping_mul(factor)), 0))
}

#[cfg(test)]
mod tests {
    use arrow::array::{TimestampNanosecondArray, TimestampSecondArray};

    use super::*;

    #[test]
    fn nanoseconds_round_down_and_are_counted() {
        let ns: ArrayRef = Arc::new(
            TimestampNanosecondArray::from(vec![Some(-1), Some(1_500), Some(2_000), None]).with_timezone("UTC"),
        );
        let (us, lost) = to_microseconds(&ns, "t").unwrap();
        assert_eq!(lost, 2);
        assert_eq!(us.data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        let us = us.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(us.iter().collect::<Vec<_>>(), [Some(-1), Some(1), Some(2), None]);
    }

    #[test]
    fn seconds_past_the_microsecond_range_fail_naming_the_column() {
        let s: ArrayRef = Arc::new(TimestampSecondArray::from(vec![i64::MAX / 10]));
        let err = to_microseconds(&s, "born").unwrap_err().to_string();
        assert!(err.contains("of column `born`"), "{err}");
    }
}
