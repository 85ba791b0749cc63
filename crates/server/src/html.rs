//! Server-rendered HTML: escaping, the page frame, and the SVG charts (a
//! run's Gantt, a pipeline's durations and rows). Every value that comes from
//! the database goes through [`esc`].

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::auth::Caller;

/// Text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment or query value.
pub(crate) fn url(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

const NAV: [(&str, &str); 6] = [
    ("/runs", "Runs"),
    ("/pipelines", "Pipelines"),
    ("/audit", "Audit"),
    ("/lake", "Lake"),
    ("/streams", "Streams"),
    ("/events", "Events"),
];

/// A whole page: the frame around `body`.
pub(crate) fn page(title: &str, active: &str, caller: Option<&Caller>, body: &str) -> String {
    let mut nav = String::new();
    for (href, label) in NAV {
        let class = if href == active { " class=\"on\"" } else { "" };
        let _ = write!(nav, "<a href=\"{href}\"{class}>{label}</a>");
    }
    let account = match caller {
        Some(c) if c.csrf.is_some() => format!(
            "<form method=\"post\" action=\"/logout\" class=\"inline\">{}<button class=\"link\">Log out</button></form>",
            csrf_field(c)
        ),
        _ => String::new(),
    };
    let csrf = caller.and_then(|c| c.csrf.as_deref()).unwrap_or("");
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf-token\" content=\"{csrf}\">\
         <title>{title} · Weir</title><link rel=\"stylesheet\" href=\"/assets/app.css\">\
         <script src=\"/assets/app.js\" defer></script></head>\
         <body><header><a class=\"brand\" href=\"/\">Weir</a><nav>{nav}</nav><div class=\"account\">{account}</div></header>\
         <main>{body}</main></body></html>",
        title = esc(title),
        csrf = esc(csrf)
    )
}

/// The hidden field that carries a session's CSRF token in a form.
pub(crate) fn csrf_field(c: &Caller) -> String {
    match &c.csrf {
        Some(t) => format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(t)),
        None => String::new(),
    }
}

pub(crate) fn badge(status: &str) -> String {
    let class = match status {
        "success" => "ok",
        "failed" | "abandoned" | "cancelled" => "bad",
        "running" => "live",
        "skipped" | "paused" => "muted",
        _ => "muted",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(status))
}

pub(crate) fn time(t: &DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\" title=\"{}\">{}</time>",
        t.to_rfc3339(),
        t.format("%Y-%m-%d %H:%M:%S UTC"),
        t.format("%Y-%m-%d %H:%M:%S")
    )
}

pub(crate) fn opt_time(t: Option<&DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| "—".to_owned())
}

/// `1 h 02 m`, `3.4 s`, `120 ms`.
pub(crate) fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} m {:02} s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{} h {:02} m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

pub(crate) fn span(start: &DateTime<Utc>, end: Option<&DateTime<Utc>>) -> i64 {
    (end.copied().unwrap_or_else(Utc::now) - *start).num_milliseconds()
}

/// `1,234,567`.
pub(crate) fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

pub(crate) fn opt_count(n: Option<i64>) -> String {
    n.map(count).unwrap_or_else(|| "—".to_owned())
}

pub(crate) fn rate(rows: Option<i64>, ms: i64) -> String {
    match rows {
        Some(r) if ms > 0 => format!("{}/s", count((r as f64 * 1000.0 / ms as f64).round() as i64)),
        _ => "—".to_owned(),
    }
}

/// A bar in a Gantt chart.
pub(crate) struct Bar<'a> {
    pub label: &'a str,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub status: &'a str,
    pub href: Option<String>,
}

/// One row per bar, on a shared time axis from the first start to the last end (or now).
pub(crate) fn gantt(bars: &[Bar<'_>]) -> String {
    let Some(first) = bars.iter().map(|b| b.start).min() else {
        return "<p class=\"muted\">No attempt has started yet.</p>".to_owned();
    };
    let now = Utc::now();
    let last = bars.iter().map(|b| b.end.unwrap_or(now)).max().unwrap_or(now);
    let total = (last - first).num_milliseconds().max(1) as f64;
    let (label_w, plot_w, row_h) = (220.0, 640.0, 26.0);
    let height = row_h * bars.len() as f64 + 24.0;
    let mut svg = format!(
        "<svg class=\"gantt\" viewBox=\"0 0 {w} {height}\" width=\"100%\" role=\"img\" aria-label=\"timeline of the run's attempts\">",
        w = label_w + plot_w + 10.0
    );
    for (i, b) in bars.iter().enumerate() {
        let y = i as f64 * row_h;
        let x = label_w + (b.start - first).num_milliseconds() as f64 / total * plot_w;
        let end = b.end.unwrap_or(now);
        let w = ((end - b.start).num_milliseconds() as f64 / total * plot_w).max(2.0);
        let ms = (end - b.start).num_milliseconds();
        let label = esc(b.label);
        let text = match &b.href {
            Some(h) => format!("<a href=\"{}\"><text x=\"0\" y=\"{}\">{label}</text></a>", esc(h), y + 17.0),
            None => format!("<text x=\"0\" y=\"{}\">{label}</text>", y + 17.0),
        };
        let _ = write!(
            svg,
            "{text}<rect class=\"bar {status}\" x=\"{x:.1}\" y=\"{y1:.1}\" width=\"{w:.1}\" height=\"18\" rx=\"3\">\
             <title>{label}: {st}, {d}</title></rect>",
            status = esc(b.status),
            y1 = y + 4.0,
            st = esc(b.status),
            d = duration_ms(ms)
        );
    }
    let axis_y = row_h * bars.len() as f64 + 16.0;
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{label_w}\" y=\"{axis_y}\">{}</text>\
         <text class=\"axis\" x=\"{}\" y=\"{axis_y}\" text-anchor=\"end\">+{}</text></svg>",
        first.format("%H:%M:%S"),
        label_w + plot_w,
        duration_ms(total as i64)
    );
    svg
}

/// A bar chart of `values` (oldest first), each bar titled with its label.
pub(crate) fn bars(title: &str, values: &[(String, Option<f64>, &str)], unit: impl Fn(f64) -> String) -> String {
    let (w, h) = (640.0, 140.0);
    let max = values.iter().filter_map(|v| v.1).fold(0.0_f64, f64::max);
    let mut svg = format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption><svg viewBox=\"0 0 {w} {}\" width=\"100%\" role=\"img\" aria-label=\"{}\">",
        esc(title),
        h + 20.0,
        esc(title)
    );
    if values.is_empty() || max <= 0.0 {
        svg.push_str("<text x=\"10\" y=\"40\" class=\"axis\">no data yet</text>");
    } else {
        let step = w / values.len() as f64;
        let bar_w = (step * 0.8).clamp(1.0, 28.0);
        for (i, (label, value, status)) in values.iter().enumerate() {
            let v = value.unwrap_or(0.0);
            let bh = (v / max * h).max(if value.is_some() { 1.0 } else { 0.0 });
            let _ = write!(
                svg,
                "<rect class=\"bar {}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{bh:.1}\"><title>{}: {}</title></rect>",
                esc(status),
                i as f64 * step,
                h - bh,
                esc(label),
                value.map(&unit).unwrap_or_else(|| "—".into())
            );
        }
        let _ = write!(svg, "<text class=\"axis\" x=\"0\" y=\"{}\">max {}</text>", h + 16.0, esc(&unit(max)));
    }
    svg.push_str("</svg></figure>");
    svg
}

/// A `<select>` with `current` chosen.
pub(crate) fn select(name: &str, options: &[(&str, &str)], current: &str) -> String {
    let mut out = format!("<select name=\"{name}\">");
    for (value, label) in options {
        let sel = if *value == current { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{}\"{sel}>{}</option>", esc(value), esc(label));
    }
    out.push_str("</select>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formats() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(count(999), "999");
        assert_eq!(duration_ms(1500), "1.5 s");
        assert_eq!(duration_ms(125_000), "2 m 05 s");
        assert_eq!(rate(Some(1000), 500), "2,000/s");
    }
}
