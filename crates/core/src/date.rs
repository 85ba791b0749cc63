//! The logical run date (`--date 20250323`) and date templates in `data_source`.

use std::fmt;

use chrono::NaiveDate;

use crate::{Error, Result};

/// The logical date a run loads, as given by `--date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunDate(NaiveDate);

impl RunDate {
    pub fn new(date: NaiveDate) -> Self {
        Self(date)
    }

    /// Today in UTC: the default when no `--date` is given.
    pub fn today_utc() -> Self {
        Self(chrono::Utc::now().date_naive())
    }

    /// Parse `20250323` or `2025-03-23`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        NaiveDate::parse_from_str(s, "%Y%m%d")
            .or_else(|_| NaiveDate::parse_from_str(s, "%Y-%m-%d"))
            .map(Self)
            .map_err(|_| Error::user(format!("`{s}` is not a date: write it as 20250323 or 2025-03-23")))
    }

    pub fn date(&self) -> NaiveDate {
        self.0
    }

    /// Render every `{date}` (→ `20250323`) and `{date:FORMAT}` (strftime, e.g.
    /// `{date:%Y-%m-%d}` → `2025-03-23`) in `template`. Other braces (glob
    /// alternatives like `{a,b}`) are left as they are.
    pub fn render(&self, template: &str) -> Result<String> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("{date") {
            out.push_str(&rest[..start]);
            let after = &rest[start + "{date".len()..];
            let Some(end) = after.find('}') else {
                return Err(unclosed(template));
            };
            let spec = &after[..end];
            if spec.is_empty() {
                out.push_str(&self.0.format("%Y%m%d").to_string());
            } else if let Some(format) = spec.strip_prefix(':') {
                out.push_str(&format_date(self.0, format, template)?);
            } else {
                // `{datetime}` or similar: not ours, keep it.
                out.push_str(&rest[start..start + "{date".len() + end + 1]);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Whether `s` holds a date template, i.e. whether a run's data depends on `--date`.
pub fn has_template(s: &str) -> bool {
    s.contains("{date}") || s.contains("{date:")
}

fn unclosed(template: &str) -> Error {
    Error::user(format!("date template in `{template}` is not closed: write {{date}} or {{date:%Y-%m-%d}}"))
}

fn format_date(date: NaiveDate, format: &str, template: &str) -> Result<String> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if format.is_empty() || items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(Error::user(format!(
            "`{{date:{format}}}` in `{template}` is not a valid strftime format (try {{date:%Y-%m-%d}})"
        )));
    }
    Ok(date.format_with_items(items.into_iter()).to_string())
}

impl fmt::Display for RunDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> RunDate {
        RunDate::parse("20250323").unwrap()
    }

    #[test]
    fn parses_both_forms() {
        assert_eq!(RunDate::parse("2025-03-23").unwrap(), d());
        assert_eq!(d().to_string(), "2025-03-23");
        let err = RunDate::parse("23/03/2025").unwrap_err();
        assert!(err.to_string().contains("20250323"), "{err}");
        assert!(RunDate::parse("20250230").is_err());
    }

    #[test]
    fn renders_templates() {
        assert_eq!(d().render("s3://raw/orders/dt={date}/").unwrap(), "s3://raw/orders/dt=20250323/");
        assert_eq!(d().render("o/{date:%Y-%m-%d}/*.parquet").unwrap(), "o/2025-03-23/*.parquet");
        assert_eq!(d().render("y={date:%Y}/m={date:%m}/{a,b}.parquet").unwrap(), "y=2025/m=03/{a,b}.parquet");
        assert_eq!(d().render("plain/path").unwrap(), "plain/path");
        assert!(d().render("x/{date:%Y").is_err());
        assert!(has_template("a/{date}/b") && has_template("{date:%Y}") && !has_template("a/{b}"));
    }
}
