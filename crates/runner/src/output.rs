//! What `runner` prints: tables for people, JSON and CSV for machines.

use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use futures::StreamExt;
use weir_core::ControllerRow;
use weir_engine::{MaintainOutcome, QueryResult, RunReport, Status};
use weir_meta::{AuditRow, CatalogRow};

#[derive(Copy, Clone, Debug, Default, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Csv,
}

type Out = Result<(), String>;

fn table(header: &[&str], rows: Vec<Vec<String>>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic).set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t
}

fn csv_out(header: &[&str], rows: Vec<Vec<String>>) -> Out {
    let mut w = csv::Writer::from_writer(std::io::stdout());
    w.write_record(header).map_err(|e| e.to_string())?;
    for r in rows {
        w.write_record(r).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())
}

fn json_out<T: serde::Serialize>(value: &T) -> Out {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

fn emit(format: Format, header: &[&str], rows: Vec<Vec<String>>, json: impl FnOnce() -> Out) -> Out {
    match format {
        Format::Table => {
            println!("{}", table(header, rows));
            Ok(())
        }
        Format::Csv => csv_out(header, rows),
        Format::Json => json(),
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    format!("{}…", text.chars().take(max - 1).collect::<String>())
}

fn duration(ms: u64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1000.0) }
}

pub fn run_summary(report: &RunReport, format: Format) -> Out {
    let header = ["pipeline", "status", "attempts", "rows read", "rows written", "watermark", "duration", "note"];
    let full_errors = !matches!(format, Format::Table);
    let rows = report
        .pipelines
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.status.as_str().to_owned(),
                p.attempts.to_string(),
                // A transform (dbt) reads nothing through Weir.
                if p.summary.is_some() { "-".to_owned() } else { p.records_read.to_string() },
                p.records_written.to_string(),
                opt(&p.watermark),
                duration(p.duration_ms),
                match (&p.error, full_errors, &p.ran_by) {
                    (Some(e), true, _) => e.clone(),
                    (Some(e), false, _) => short(e, 160),
                    (None, _, Some(by)) => format!("loaded by {by}"),
                    (None, _, None) => p.summary.clone().unwrap_or_default(),
                },
            ]
        })
        .collect();
    if matches!(format, Format::Table) {
        let skipped = report.count(Status::Skipped);
        println!(
            "run {} for {}: {} succeeded, {} failed{}{}",
            report.run_id,
            report.run_date,
            report.count(Status::Success),
            report.count(Status::Failed),
            if skipped > 0 { format!(", {skipped} skipped") } else { String::new() },
            if report.cancelled { " (cancelled)" } else { "" },
        );
    }
    emit(format, &header, rows, || json_out(report))
}

pub fn audit(rows: &[AuditRow], format: Format) -> Out {
    let header = [
        "audit_id",
        "pipeline",
        "run_date",
        "status",
        "attempt",
        "start_time",
        "end_time",
        "records_read",
        "records_processed",
        "watermark_before",
        "watermark_after",
        "error_message",
    ];
    let full = !matches!(format, Format::Table);
    let ts = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let table_rows = rows
        .iter()
        .map(|r| {
            vec![
                r.audit_id.to_string(),
                match r.operation.as_str() {
                    "load" => r.pipeline_name.clone(),
                    op => format!("{op}: {}", r.pipeline_name),
                },
                r.run_date.to_string(),
                r.status.clone(),
                r.attempt.to_string(),
                ts(&r.start_time),
                r.end_time.as_ref().map(ts).unwrap_or_default(),
                opt(&r.records_read),
                opt(&r.records_processed),
                opt(&r.watermark_before),
                opt(&r.watermark_after),
                r.error_message.as_deref().map(|e| if full { e.to_owned() } else { short(e, 120) }).unwrap_or_default(),
            ]
        })
        .collect();
    emit(format, &header, table_rows, || json_out(&rows))
}

/// The controller's rows; `slots` describes each cdc pipeline's replication slot.
pub fn pipelines(rows: &[ControllerRow], slots: &std::collections::HashMap<String, String>, format: Format) -> Out {
    let header = [
        "id",
        "name",
        "active",
        "source",
        "data_source",
        "destination",
        "load_type",
        "watermark_column",
        "primary_key",
        "depends_on",
        "schedule",
        "slot",
    ];
    let table_rows = rows
        .iter()
        .map(|r| {
            let source = match &r.source_connection {
                Some(c) => format!("{} ({c})", r.source_type),
                None => r.source_type.clone(),
            };
            let dest = match r.destination_table.as_str() {
                "" => format!("{}: {}", r.destination_type, r.schema_name),
                table => format!("{}: {}.{table}", r.destination_type, r.schema_name),
            };
            vec![
                r.id.to_string(),
                r.name.clone(),
                r.active.to_string(),
                source,
                r.data_source.clone().or_else(|| r.source_table.clone()).unwrap_or_default(),
                dest,
                r.load_type.clone(),
                opt(&r.watermark_column),
                r.primary_key.join(", "),
                r.depends_on.join(", "),
                opt(&r.schedule),
                slots.get(&r.name).cloned().unwrap_or_default(),
            ]
        })
        .collect();
    emit(format, &header, table_rows, || json_out(&rows))
}

pub fn catalog(rows: &[CatalogRow], format: Format) -> Out {
    let header = ["table", "format", "version", "columns", "partition_by", "location", "pipeline", "updated_at"];
    let table_rows = rows
        .iter()
        .map(|r| {
            vec![
                r.name(),
                r.format.clone(),
                r.version.to_string(),
                r.columns.as_array().map(Vec::len).unwrap_or_default().to_string(),
                r.partition_by.join(", "),
                r.location.clone(),
                opt(&r.pipeline_name),
                r.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            ]
        })
        .collect();
    emit(format, &header, table_rows, || json_out(&rows))
}

/// Print a query's rows: a table (collected, for people), or CSV / JSON lines
/// streamed batch by batch (for machines, however large the answer).
pub async fn query(mut result: QueryResult, format: Format) -> Out {
    let stdout = std::io::stdout();
    match format {
        Format::Table => {
            let mut batches = Vec::new();
            while let Some(batch) = result.batches.next().await {
                batches.push(batch.map_err(|e| e.to_string())?);
            }
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if batches.is_empty() {
                let names: Vec<&str> = result.schema.fields().iter().map(|f| f.name().as_str()).collect();
                println!("{}", names.join(" | "));
            } else {
                println!("{}", arrow::util::pretty::pretty_format_batches(&batches).map_err(|e| e.to_string())?);
            }
            println!("({rows} row{})", if rows == 1 { "" } else { "s" });
            Ok(())
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(stdout.lock());
            while let Some(batch) = result.batches.next().await {
                writer.write(&batch.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Format::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(stdout.lock());
            while let Some(batch) = result.batches.next().await {
                writer.write(&batch.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            }
            writer.finish().map_err(|e| e.to_string())
        }
    }
}

pub fn maintain(outcomes: &[MaintainOutcome], format: Format) -> Out {
    let header =
        ["table", "status", "files compacted", "files written", "files vacuumed", "version", "duration", "error"];
    let rows = outcomes
        .iter()
        .map(|o| {
            let r = o.report.clone().unwrap_or_default();
            vec![
                o.table.clone(),
                if o.error.is_none() { "success" } else { "failed" }.to_owned(),
                r.files_compacted.to_string(),
                r.files_written.to_string(),
                r.files_vacuumed.to_string(),
                r.version.to_string(),
                duration(o.duration_ms),
                opt(&o.error),
            ]
        })
        .collect();
    emit(format, &header, rows, || json_out(&outcomes))
}
