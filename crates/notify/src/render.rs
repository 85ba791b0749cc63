//! The summary's words: subject, text body and HTML body.

use std::fmt::Write;

use weir_core::{PipelineReport, RunReport, Status};

/// A run's summary, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Errors are cut to this many characters: the audit table has the whole text.
const ERROR_CHARS: usize = 240;

pub fn render(report: &RunReport) -> Rendered {
    let counts = counts(report);
    let subject = format!("[Weir] {}: {counts}{}", report.run_date, if report.cancelled { " (cancelled)" } else { "" });
    Rendered { subject, text: text(report, &counts), html: html(report, &counts) }
}

/// "3 succeeded, 1 failed", plus skipped when there are any.
fn counts(report: &RunReport) -> String {
    let mut s = format!("{} succeeded, {} failed", report.count(Status::Success), report.count(Status::Failed));
    let skipped = report.count(Status::Skipped);
    if skipped > 0 {
        let _ = write!(s, ", {skipped} skipped");
    }
    s
}

fn text(report: &RunReport, counts: &str) -> String {
    let mut out = format!(
        "Weir run for {}: {counts}.\nrun {} took {}.\n\n",
        report.run_date,
        report.run_id,
        duration(report.duration_ms)
    );
    let width = report.pipelines.iter().map(|p| p.name.chars().count()).max().unwrap_or(8).max(8);
    let _ = writeln!(
        out,
        "{:<width$}  {:<9}  {:>12}  {:>12}  {:>9}",
        "pipeline", "status", "rows read", "rows written", "duration"
    );
    for p in &report.pipelines {
        let _ = writeln!(
            out,
            "{:<width$}  {:<9}  {:>12}  {:>12}  {:>9}",
            p.name,
            p.status.as_str(),
            rows_read(p),
            thousands(p.records_written),
            duration(p.duration_ms)
        );
        if let Some(note) = note(p) {
            let _ = writeln!(out, "    {note}");
        }
    }
    out.push_str("\nThe audit table has every attempt: runner audit\n");
    out
}

fn html(report: &RunReport, counts: &str) -> String {
    let mut out =
        String::from("<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif; font-size: 14px; color: #222\">\n");
    let _ = writeln!(
        out,
        "<p><b>Weir run for {}</b>: {}.<br><span style=\"color: #666\">run {} took {}.</span></p>",
        escape(&report.run_date),
        escape(counts),
        report.run_id,
        duration(report.duration_ms)
    );
    out.push_str(
        "<table style=\"border-collapse: collapse\" cellpadding=\"4\">\n<tr style=\"text-align: left; \
         border-bottom: 1px solid #999\"><th>pipeline</th><th>status</th><th style=\"text-align: right\">rows \
         read</th><th style=\"text-align: right\">rows written</th><th style=\"text-align: \
         right\">duration</th><th>error</th></tr>\n",
    );
    for p in &report.pipelines {
        let colour = match p.status {
            Status::Success => "#1a7f37",
            Status::Skipped => "#9a6700",
            _ => "#cf222e",
        };
        let _ = writeln!(
            out,
            "<tr style=\"border-bottom: 1px solid #ddd\"><td>{}</td><td style=\"color: {colour}\"><b>{}</b></td>\
             <td style=\"text-align: right\">{}</td><td style=\"text-align: right\">{}</td>\
             <td style=\"text-align: right\">{}</td><td>{}</td></tr>",
            escape(&p.name),
            p.status.as_str(),
            rows_read(p),
            thousands(p.records_written),
            duration(p.duration_ms),
            note(p).as_deref().map(escape).unwrap_or_default()
        );
    }
    out.push_str(
        "</table>\n<p style=\"color: #666\">The audit table has every attempt: <code>runner audit</code></p>\n",
    );
    out.push_str("</body></html>\n");
    out
}

/// The error in short, who ran it, or what a transform did.
fn note(p: &PipelineReport) -> Option<String> {
    match (&p.error, &p.ran_by) {
        (Some(e), _) => Some(short(e.lines().next().unwrap_or_default())),
        (None, Some(by)) => Some(format!("loaded by {by}")),
        _ => p.summary.clone(),
    }
}

/// Rows read, or a dash for a transform (dbt), which reads nothing through Weir.
fn rows_read(p: &PipelineReport) -> String {
    match p.summary {
        Some(_) => "-".to_owned(),
        None => thousands(p.records_read),
    }
}

fn short(text: &str) -> String {
    if text.chars().count() <= ERROR_CHARS {
        return text.to_owned();
    }
    format!("{}…", text.chars().take(ERROR_CHARS - 1).collect::<String>())
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
    }
}

fn escape(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> RunReport {
        let mut ok = PipelineReport::new("orders");
        ok.status = Status::Success;
        ok.records_read = 1_234_567;
        ok.records_written = 1_234_567;
        ok.duration_ms = 83_000;
        let mut bad = PipelineReport::new("chat_<messages>");
        bad.error = Some("pipeline `chat`: column `amount` changed\nsecond line".into());
        let mut skipped = PipelineReport::new("gold");
        skipped.status = Status::Skipped;
        skipped.error = Some("dependency `chat_<messages>` did not succeed".into());
        RunReport {
            run_id: uuid::Uuid::nil(),
            run_date: "2025-03-23".into(),
            cancelled: false,
            duration_ms: 90_500,
            pipelines: vec![ok, bad, skipped],
        }
    }

    #[test]
    fn subject_counts_and_rows() {
        let r = render(&report());
        assert_eq!(r.subject, "[Weir] 2025-03-23: 1 succeeded, 1 failed, 1 skipped");
        assert!(r.text.contains("1,234,567") && r.text.contains("1m23s"), "{}", r.text);
        assert!(r.text.contains("column `amount` changed") && !r.text.contains("second line"));
        assert!(r.html.contains("chat_&lt;messages&gt;") && !r.html.contains("<messages>"));
    }

    #[test]
    fn a_transform_shows_what_it_did_and_no_rows_read() {
        let mut dbt = PipelineReport::new("warehouse");
        (dbt.status, dbt.records_written) = (Status::Success, 153_264);
        dbt.summary = Some("dbt build: 13 models built, 39 tests passed".into());
        let r = render(&RunReport { pipelines: vec![dbt], ..report() });
        let row = r.text.lines().find(|l| l.starts_with("warehouse")).unwrap_or_default();
        assert!(row.contains(" - ") && row.contains("153,264"), "{row}");
        assert!(r.text.contains("\n    dbt build: 13 models built, 39 tests passed\n"), "{}", r.text);
        assert!(r.html.contains("<td>dbt build: 13 models built, 39 tests passed</td>"), "{}", r.html);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(duration(1500), "1.5 s");
    }
}
