//! Date values as Elasticsearch reads them: a mapping's `format` is a list of
//! formats separated by `||` (built-in names or Java time patterns), tried in
//! order; the first that parses wins. Values are milliseconds since the epoch.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use serde_json::Value;

/// The `date` type's default format.
pub const DEFAULT_FORMAT: &str = "strict_date_optional_time||epoch_millis";

/// `value` as epoch milliseconds under `format`, or `None` if no format parses it.
pub fn to_millis(value: &Value, format: &str) -> Option<i64> {
    format.split("||").find_map(|f| parse_one(value, f.trim()))
}

fn parse_one(value: &Value, format: &str) -> Option<i64> {
    match format {
        "epoch_millis" => match value {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.parse::<f64>().ok().map(|f| f as i64),
            _ => None,
        },
        "epoch_second" => match value {
            Value::Number(n) => n.as_f64().map(|f| (f * 1000.0) as i64),
            Value::String(s) => s.parse::<f64>().ok().map(|f| (f * 1000.0) as i64),
            _ => None,
        },
        _ => iso_or_pattern(value.as_str()?, format),
    }
}

fn iso_or_pattern(s: &str, format: &str) -> Option<i64> {
    match format {
        "strict_date_optional_time"
        | "date_optional_time"
        | "strict_date_optional_time_nanos"
        | "strict_date_time"
        | "date_time"
        | "strict_date"
        | "date"
        | "strict_date_hour_minute_second"
        | "date_hour_minute_second" => iso(s),
        "basic_date" => NaiveDate::parse_from_str(s, "%Y%m%d").ok().map(midnight),
        "basic_date_time" => DateTime::parse_from_str(s, "%Y%m%dT%H%M%S%.3f%z").ok().map(|d| d.timestamp_millis()),
        pattern => java_pattern(s, pattern),
    }
}

fn midnight(d: NaiveDate) -> i64 {
    d.and_time(NaiveTime::MIN).and_utc().timestamp_millis()
}

/// ISO 8601: a date, optionally with a time and a zone (UTC when absent).
fn iso(s: &str) -> Option<i64> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp_millis());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%:z"] {
        if let Ok(d) = DateTime::parse_from_str(s, f) {
            return Some(d.timestamp_millis());
        }
    }
    let naive = s.trim_end_matches('Z');
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(naive, f) {
            return Some(d.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(midnight)
}

/// A Java `DateTimeFormatter` pattern (`yyyy/MM/dd HH:mm:ss`), by way of chrono.
fn java_pattern(s: &str, pattern: &str) -> Option<i64> {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let (mut has_time, mut has_zone) = (false, false);
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        match c {
            '\'' => {
                let end = chars[i + 1..].iter().position(|&x| x == '\'').map_or(chars.len(), |p| i + 1 + p);
                out.extend(&chars[i + 1..end]);
                i = end + 1;
                continue;
            }
            'y' | 'u' => out.push_str(if run == 2 { "%y" } else { "%Y" }),
            'M' => out.push_str(match run {
                1 | 2 => "%m",
                3 => "%b",
                _ => "%B",
            }),
            'd' => out.push_str("%d"),
            'H' => {
                has_time = true;
                out.push_str("%H")
            }
            'm' => out.push_str("%M"),
            's' => out.push_str("%S"),
            'S' => out.push_str("%.f"),
            'Z' | 'X' | 'x' => {
                has_zone = true;
                out.push_str(if run >= 3 { "%:z" } else { "%z" })
            }
            other => out.extend(std::iter::repeat_n(other, run)),
        }
        i += run;
    }
    if out.contains("%.f") {
        // Java's `.SSS` is a literal dot then digits; chrono's `%.f` brings its own dot.
        out = out.replace(".%.f", "%.f");
    }
    if has_zone {
        return DateTime::parse_from_str(s, &out).ok().map(|d| d.timestamp_millis());
    }
    if has_time {
        return NaiveDateTime::parse_from_str(s, &out).ok().map(|d| d.and_utc().timestamp_millis());
    }
    NaiveDate::parse_from_str(s, &out).ok().map(midnight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_documented_formats() {
        let day = 1_742_688_000_000; // 2025-03-23T00:00:00Z
        assert_eq!(to_millis(&json!("2025-03-23"), DEFAULT_FORMAT), Some(day));
        assert_eq!(to_millis(&json!("2025-03-23T01:00:00+01:00"), DEFAULT_FORMAT), Some(day));
        assert_eq!(to_millis(&json!(day), DEFAULT_FORMAT), Some(day));
        assert_eq!(to_millis(&json!("2025/03/23 00:00:01"), "yyyy/MM/dd HH:mm:ss"), Some(day + 1000));
        assert_eq!(to_millis(&json!(1_742_688_000), "epoch_second"), Some(day));
        assert_eq!(to_millis(&json!("23.03.2025"), "dd.MM.yyyy||epoch_millis"), Some(day));
        assert_eq!(to_millis(&json!("yesterday"), DEFAULT_FORMAT), None);
    }
}
