//! `options.lag`: how far behind the stored watermark a run starts reading,
//! so rows whose transactions committed after the last run (with a watermark
//! value from before it) are not missed. They are read again and merged by key.

use std::sync::Arc;

use crate::{Error, Result};
use arrow::array::{Array, ArrayRef, AsArray, Date32Array, Int64Array, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Date32Type, Int64Type, TimeUnit, TimestampMicrosecondType, UInt64Type};

const MICROS_PER_DAY: i64 = 86_400_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// A duration (`"5 minutes"`), for date and time watermarks.
    Micros(i64),
    /// A plain number, for integer watermarks (a version or sequence column).
    Units(i64),
}

impl Lag {
    /// Parse `5 minutes`, `30s`, `2 hours`, `1 day`, `500ms`.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let bad = || {
            Error::user(format!(
                "options.lag `{text}` is not a duration: write e.g. \"5 minutes\", \"30s\", \"2 hours\", \"1 day\""
            ))
        };
        let n: i64 = number.parse().map_err(|_| bad())?;
        let micros = match unit.trim().to_ascii_lowercase().as_str() {
            "" => return Ok(Lag::Units(n)),
            "us" | "microsecond" | "microseconds" => 1,
            "ms" | "millisecond" | "milliseconds" => 1_000,
            "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000,
            "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000,
            "h" | "hour" | "hours" => 3_600_000_000,
            "d" | "day" | "days" => MICROS_PER_DAY,
            _ => return Err(bad()),
        };
        n.checked_mul(micros).map(Lag::Micros).ok_or_else(bad)
    }

    /// `value` (a one-element watermark array) moved back by the lag.
    pub fn subtract(&self, value: &ArrayRef, column: &str) -> Result<ArrayRef> {
        let mismatch = |what: &str| {
            Error::user(format!(
                "options.lag {self:?} does not fit watermark_column `{column}` of type {}: {what}",
                value.data_type()
            ))
        };
        Ok(match (value.data_type(), *self) {
            (DataType::Timestamp(TimeUnit::Microsecond, tz), Lag::Micros(lag)) => {
                let v = value.as_primitive::<TimestampMicrosecondType>().value(0);
                Arc::new(TimestampMicrosecondArray::from(vec![v - lag]).with_timezone_opt(tz.clone()))
            }
            (DataType::Date32, Lag::Micros(lag)) => {
                let days = (lag + MICROS_PER_DAY - 1) / MICROS_PER_DAY;
                let v = value.as_primitive::<Date32Type>().value(0);
                Arc::new(Date32Array::from(vec![v - days as i32]))
            }
            (DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64, Lag::Units(lag)) => {
                let v = arrow::compute::cast(value, &DataType::UInt64)?;
                let v = v.as_primitive::<UInt64Type>().value(0);
                Arc::new(UInt64Array::from(vec![v.saturating_sub(lag.max(0) as u64)]))
            }
            (dt, Lag::Units(lag)) if dt.is_integer() => {
                let v = arrow::compute::cast(value, &DataType::Int64)?;
                Arc::new(Int64Array::from(vec![v.as_primitive::<Int64Type>().value(0).saturating_sub(lag)]))
            }
            (dt, Lag::Units(_)) if dt.is_temporal() => return Err(mismatch("give it a unit, e.g. \"5 minutes\"")),
            (dt, Lag::Micros(_)) if dt.is_integer() => return Err(mismatch("give it a plain number")),
            _ => return Err(mismatch("lag needs a date, time stamp or integer watermark")),
        })
    }
}

impl<'de> serde::Deserialize<'de> for Lag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Lag::parse(&s).map_err(serde::de::Error::custom),
            serde_json::Value::Number(n) => {
                n.as_i64().map(Lag::Units).ok_or_else(|| serde::de::Error::custom("lag must be a whole number"))
            }
            other => Err(serde::de::Error::custom(format!("lag must be a duration like \"5 minutes\", not {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(Lag::parse("5 minutes").unwrap(), Lag::Micros(300_000_000));
        assert_eq!(Lag::parse("30s").unwrap(), Lag::Micros(30_000_000));
        assert_eq!(Lag::parse("1 day").unwrap(), Lag::Micros(MICROS_PER_DAY));
        assert_eq!(Lag::parse("100").unwrap(), Lag::Units(100));
        assert!(Lag::parse("five minutes").is_err());
        assert!(Lag::parse("5 fortnights").is_err());
    }

    #[test]
    fn moves_watermarks_back() {
        let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![600_000_000]));
        let back = Lag::parse("5 minutes").unwrap().subtract(&ts, "t").unwrap();
        assert_eq!(back.as_primitive::<TimestampMicrosecondType>().value(0), 300_000_000);
        let n: ArrayRef = Arc::new(Int64Array::from(vec![10]));
        assert!(Lag::parse("5 minutes").unwrap().subtract(&n, "v").is_err());
        assert!(Lag::Units(5).subtract(&ts, "t").is_err());
    }
}
