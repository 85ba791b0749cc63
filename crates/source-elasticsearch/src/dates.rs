//! A `date` field's `format`: built-in names and Java `DateTimeFormatter`
//! patterns separated by `||`, tried in order, as Elasticsearch does. `_source`
//! keeps a date exactly as it was indexed, so each value is parsed with the
//! field's own formats.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde_json::Value;

/// The `date` type's default format.
pub const DEFAULT_FORMAT: &str = "strict_date_optional_time||epoch_millis";

#[derive(Debug, Clone, PartialEq)]
enum Format {
    EpochMillis,
    EpochSecond,
    /// ISO 8601: a date, optionally a time, optionally a zone (UTC if none).
    Iso,
    /// `yyyyMMdd` and friends.
    Basic {
        time: bool,
    },
    /// A Java pattern, translated to chrono: (chrono format, has time, has zone).
    Pattern {
        chrono: String,
        time: bool,
        zone: bool,
    },
}

/// The formats of one date field.
#[derive(Debug, Clone, PartialEq)]
pub struct DateFormats {
    spec: String,
    formats: Vec<Format>,
}

impl DateFormats {
    pub fn parse(spec: &str) -> Self {
        let formats = spec.split("||").map(|f| parse_format(f.trim())).collect();
        Self { spec: spec.to_owned(), formats }
    }

    /// Both formats' lists (for a field mapped differently in two indices).
    pub fn union(&self, other: &DateFormats) -> DateFormats {
        if self == other { self.clone() } else { DateFormats::parse(&format!("{}||{}", self.spec, other.spec)) }
    }

    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The instant a `_source` value stands for, or `None` if no format reads it.
    pub fn instant(&self, value: &Value) -> Option<DateTime<Utc>> {
        self.formats.iter().find_map(|f| instant(f, value))
    }
}

fn parse_format(name: &str) -> Format {
    match name {
        "epoch_millis" => Format::EpochMillis,
        "epoch_second" => Format::EpochSecond,
        "basic_date" => Format::Basic { time: false },
        "basic_date_time" | "basic_date_time_no_millis" => Format::Basic { time: true },
        n if n.starts_with("strict_") || ISO_NAMES.contains(&n) => Format::Iso,
        pattern => java_pattern(pattern),
    }
}

/// Built-in names whose values are ISO 8601 forms (the `strict_` ones too).
const ISO_NAMES: &[&str] = &[
    "date_optional_time",
    "date",
    "date_time",
    "date_time_no_millis",
    "date_hour",
    "date_hour_minute",
    "date_hour_minute_second",
    "date_hour_minute_second_fraction",
    "date_hour_minute_second_millis",
    "year_month_day",
    "year_month",
    "year",
    "iso8601",
];

fn instant(format: &Format, value: &Value) -> Option<DateTime<Utc>> {
    let number = || value.as_f64().or_else(|| value.as_str().and_then(|s| s.trim().parse::<f64>().ok()));
    match format {
        Format::EpochMillis => from_micros((number()? * 1000.0).round() as i64),
        Format::EpochSecond => from_micros((number()? * 1_000_000.0).round() as i64),
        Format::Iso => iso(value.as_str()?),
        Format::Basic { time: false } => NaiveDate::parse_from_str(value.as_str()?, "%Y%m%d").ok().map(midnight),
        Format::Basic { time: true } => {
            let s = value.as_str()?;
            ["%Y%m%dT%H%M%S%.f%#z", "%Y%m%dT%H%M%S%#z"]
                .iter()
                .find_map(|f| DateTime::parse_from_str(&s.replace('Z', "+00:00"), f).ok())
                .map(|d| d.to_utc())
        }
        Format::Pattern { chrono, time, zone } => {
            let s = value.as_str()?;
            match (zone, time) {
                (true, _) => DateTime::parse_from_str(s, chrono).ok().map(|d| d.to_utc()),
                (false, true) => NaiveDateTime::parse_from_str(s, chrono).ok().map(|d| d.and_utc()),
                (false, false) => NaiveDate::parse_from_str(s, chrono).ok().map(midnight),
            }
        }
    }
}

fn from_micros(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(NaiveTime::MIN).and_utc()
}

/// `2025`, `2025-03`, `2025-03-23`, `2025-03-23T10`, `…T10:15`, `…T10:15:30.123456789`,
/// each optionally followed by `Z`, `±hh:mm`, `±hhmm` or `±hh`.
fn iso(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let (date, time) = match s.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let date = match date.len() {
        4 => NaiveDate::from_ymd_opt(date.parse().ok()?, 1, 1)?,
        7 => NaiveDate::parse_from_str(&format!("{date}-01"), "%Y-%m-%d").ok()?,
        _ => NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?,
    };
    let Some(time) = time else {
        return Some(midnight(date));
    };
    // Split off the zone.
    let (clock, offset_secs) = match time.find(['Z', 'z', '+', '-']) {
        Some(i) => (&time[..i], zone_offset(&time[i..])?),
        None => (time, 0),
    };
    let (hms, frac) = match clock.split_once(['.', ',']) {
        Some((hms, frac)) => (hms, frac),
        None => (clock, ""),
    };
    let mut parts = hms.split(':');
    let h: u32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let sec: u32 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    if parts.next().is_some() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
    let t = NaiveTime::from_hms_nano_opt(h, m, sec, nanos)?;
    let local = NaiveDateTime::new(date, t).and_utc();
    Some(local - chrono::Duration::seconds(offset_secs))
}

fn zone_offset(z: &str) -> Option<i64> {
    if z.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let sign = if z.starts_with('-') { -1 } else { 1 };
    let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i64>().ok()?, 0),
        4 => (digits[..2].parse::<i64>().ok()?, digits[2..].parse::<i64>().ok()?),
        _ => return None,
    };
    Some(sign * (h * 3600 + m * 60))
}

/// Translate a Java `DateTimeFormatter` pattern to a chrono format.
fn java_pattern(pattern: &str) -> Format {
    let chars: Vec<char> = pattern.chars().collect();
    let (mut out, mut time, mut zone) = (String::new(), false, false);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        match c {
            '\'' => {
                // A quoted literal; '' is a quote.
                let end = chars[i + 1..].iter().position(|&x| x == '\'').map_or(chars.len(), |p| i + 1 + p);
                if end == i + 1 {
                    out.push('\'');
                } else {
                    chars[i + 1..end].iter().for_each(|&ch| push_literal(&mut out, ch));
                }
                i = end + 1;
                continue;
            }
            'y' | 'u' | 'Y' => out.push_str(if run == 2 { "%y" } else { "%Y" }),
            'M' | 'L' => out.push_str(match run {
                1 => "%-m",
                2 => "%m",
                3 => "%b",
                _ => "%B",
            }),
            'd' => out.push_str(if run == 1 { "%-d" } else { "%d" }),
            'D' => out.push_str("%j"),
            'E' => out.push_str(if run >= 4 { "%A" } else { "%a" }),
            'a' => out.push_str("%p"),
            'H' | 'k' => {
                time = true;
                out.push_str(if run == 1 { "%-H" } else { "%H" });
            }
            'h' | 'K' => {
                time = true;
                out.push_str(if run == 1 { "%-I" } else { "%I" });
            }
            'm' => out.push_str(if run == 1 { "%-M" } else { "%M" }),
            's' => out.push_str(if run == 1 { "%-S" } else { "%S" }),
            'S' => {
                // `.SSS`: chrono's `%.f` carries the dot itself.
                if out.ends_with('.') {
                    out.pop();
                    out.push_str("%.f");
                } else {
                    out.push_str(match run {
                        3 => "%3f",
                        6 => "%6f",
                        9 => "%9f",
                        _ => "%f",
                    });
                }
            }
            'Z' => {
                zone = true;
                out.push_str(if run == 4 { "%:z" } else { "%z" });
            }
            'X' | 'x' | 'O' => {
                zone = true;
                out.push_str(if run >= 3 { "%:z" } else { "%#z" });
            }
            'V' | 'z' => zone = true,
            other => (0..run).for_each(|_| push_literal(&mut out, other)),
        }
        i += run;
    }
    // A pattern chrono cannot read parses nothing (and the value is a bad value).
    if StrftimeItems::new(&out).any(|item| matches!(item, Item::Error)) {
        out = "\u{0}unreadable".into();
    }
    Format::Pattern { chrono: out, time, zone }
}

fn push_literal(out: &mut String, c: char) {
    if c == '%' { out.push_str("%%") } else { out.push(c) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn micros(format: &str, v: Value) -> Option<i64> {
        DateFormats::parse(format).instant(&v).map(|d| d.timestamp_micros())
    }

    const DAY: i64 = 1_742_688_000_000_000; // 2025-03-23T00:00:00Z in µs

    #[test]
    fn default_format_reads_iso_and_epoch_millis() {
        assert_eq!(micros(DEFAULT_FORMAT, json!("2025-03-23")), Some(DAY));
        assert_eq!(micros(DEFAULT_FORMAT, json!("2025-03-23T03:30:00+03:30")), Some(DAY));
        assert_eq!(micros(DEFAULT_FORMAT, json!("2025-03-23T00:00:00.000001Z")), Some(DAY + 1));
        assert_eq!(micros(DEFAULT_FORMAT, json!("2025-03-23T01")), Some(DAY + 3_600_000_000));
        assert_eq!(micros(DEFAULT_FORMAT, json!(1_742_688_000_123_i64)), Some(DAY + 123_000));
        assert_eq!(micros(DEFAULT_FORMAT, json!("1742688000123")), Some(DAY + 123_000));
        assert_eq!(micros(DEFAULT_FORMAT, json!("not a date")), None);
        assert_eq!(micros(DEFAULT_FORMAT, json!("2025-02-30")), None);
    }

    #[test]
    fn custom_java_patterns() {
        assert_eq!(micros("yyyy/MM/dd HH:mm:ss", json!("2025/03/23 00:00:01")), Some(DAY + 1_000_000));
        assert_eq!(micros("dd.MM.yyyy", json!("23.03.2025")), Some(DAY));
        assert_eq!(micros("yyyy-MM-dd'T'HH:mm:ss.SSSZ", json!("2025-03-23T01:00:00.250+0100")), Some(DAY + 250_000));
        assert_eq!(micros("epoch_second", json!(1_742_688_000)), Some(DAY));
        assert_eq!(micros("basic_date", json!("20250323")), Some(DAY));
        assert_eq!(micros("yyyy/MM/dd||epoch_millis", json!(1_742_688_000_000_i64)), Some(DAY));
    }
}
