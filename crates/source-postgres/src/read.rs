//! Reading: the statements a run sends, and one task per key range that turns
//! their binary COPY data into Arrow batches.
//!
//! Every range reads inside the same snapshot: the first connection opens a
//! `REPEATABLE READ, READ ONLY` transaction and exports its snapshot, the
//! others adopt it, so a parallel read is the table as of one instant.
//! Without a watermark, a range is one `COPY (SELECT …) TO STDOUT`, streamed.
//! With one, it is read in keyset pages ordered by (watermark, key): each page
//! starts after the last row of the one before, never at an OFFSET.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, SchemaRef, Time64MicrosecondType,
    TimeUnit, TimestampMicrosecondType,
};
use futures::StreamExt;
use sqlx::{AssertSqlSafe, PgConnection};
use tokio::sync::mpsc;
use weir_core::{Error, Result};

use crate::decode::Decoder;
use crate::error::db_error;
use crate::types::{Column, quote};

/// What every range of one run reads.
pub struct Plan {
    pub schema: SchemaRef,
    pub columns: Vec<Column>,
    /// `SELECT <columns> FROM <relation>`.
    pub select: String,
    /// Conditions every range applies (SQL with literals: COPY takes no parameters).
    pub conds: Vec<String>,
    /// Keyset order (watermark, then key); empty: one streamed COPY.
    pub order: Vec<String>,
    /// Columns that name a row in an error.
    pub key: Vec<usize>,
    pub batch_size: usize,
}

impl Plan {
    fn statement(&self, extra: &[String], cursor: Option<&[String]>) -> String {
        let mut conds: Vec<String> = self.conds.iter().chain(extra).cloned().collect();
        if let Some(values) = cursor {
            conds.push(keyset(&self.order, values));
        }
        let mut sql = self.select.clone();
        for (i, c) in conds.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            sql.push_str(c);
        }
        if !self.order.is_empty() {
            let (first, rest) = self.order.split_first().map(|(f, r)| (quote(f), r)).unwrap_or_default();
            let mut order = vec![format!("{first} NULLS FIRST")];
            order.extend(rest.iter().map(|c| quote(c)));
            sql.push_str(&format!(" ORDER BY {} LIMIT {}", order.join(", "), self.batch_size));
        }
        format!("COPY ({sql}) TO STDOUT (FORMAT binary)")
    }

    fn order_indexes(&self) -> Vec<usize> {
        self.order.iter().filter_map(|o| self.columns.iter().position(|c| &c.name == o)).collect()
    }
}

/// Rows after `values` (SQL literals, `NULL` allowed first) in the order of
/// `keys`: a row comparison the server can seek an index with. A NULL first
/// value (a NULL watermark, sorted first) is followed by the other
/// NULL-watermark rows after it, then every row with a watermark.
pub fn keyset(keys: &[String], values: &[String]) -> String {
    let row = |keys: &[String], values: &[String]| {
        let k: Vec<String> = keys.iter().map(|k| quote(k)).collect();
        format!("({}) > ({})", k.join(", "), values.join(", "))
    };
    if values.first().map(String::as_str) == Some("NULL") {
        let first = quote(&keys[0]);
        return match keys.len() {
            1 => format!("{first} IS NOT NULL"),
            _ => format!("(({first} IS NULL AND {}) OR {first} IS NOT NULL)", row(&keys[1..], &values[1..])),
        };
    }
    row(keys, values)
}

/// Rows decoded into one batch, with the bytes they took.
pub struct Chunk {
    pub batch: RecordBatch,
    pub bytes: u64,
}

/// Open the run's snapshot on `first` and share it with `others`; or, given
/// `imported` (a snapshot another session exported), open that one on all.
pub async fn start_snapshot(
    first: &mut PgConnection,
    others: &mut [PgConnection],
    imported: Option<&str>,
) -> Result<()> {
    // Long reads into a slow sink must not trip the server's timeouts.
    const SESSION: &str = "SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; \
                           SET standard_conforming_strings = on; SET DateStyle = 'ISO, YMD'; \
                           SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3; \
                           BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    exec(first, SESSION, "starting a consistent snapshot").await?;
    let snapshot = match imported {
        Some(name) => {
            exec(first, &format!("SET TRANSACTION SNAPSHOT {}", text_literal(name)), "adopting the slot's snapshot")
                .await?;
            name.to_owned()
        }
        None if others.is_empty() => return Ok(()),
        None => sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut *first)
            .await
            .map_err(|e| db_error(e, "exporting the snapshot to the other ranges"))?,
    };
    for conn in others {
        exec(conn, SESSION, "starting a consistent snapshot").await?;
        exec(conn, &format!("SET TRANSACTION SNAPSHOT {}", text_literal(&snapshot)), "sharing the snapshot").await?;
    }
    Ok(())
}

pub async fn exec(conn: &mut PgConnection, sql: &str, doing: &str) -> Result<()> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&mut *conn).await.map_err(|e| db_error(e, doing))?;
    Ok(())
}

/// Read one range (`extra` conditions) on its own connection, sending batches
/// to `tx`. Stops quietly when the receiver is gone.
pub async fn read_range(mut conn: PgConnection, plan: Arc<Plan>, extra: Vec<String>, tx: mpsc::Sender<Result<Chunk>>) {
    let result = match plan.order.is_empty() {
        true => stream_all(&mut conn, &plan, &extra, &tx).await,
        false => read_pages(&mut conn, &plan, &extra, &tx).await,
    };
    match result {
        Ok(()) => {
            let _ = exec(&mut conn, "COMMIT", "ending the snapshot").await;
        }
        Err(e) => {
            let _ = tx.send(Err(e)).await;
        }
    }
}

/// One COPY for the whole range, streamed in batches.
async fn stream_all(
    conn: &mut PgConnection,
    plan: &Plan,
    extra: &[String],
    tx: &mpsc::Sender<Result<Chunk>>,
) -> Result<()> {
    let mut decoder = Decoder::new(plan.schema.clone(), &plan.columns, plan.key.clone(), plan.batch_size);
    let bytes = copy(conn, &plan.statement(extra, None), &mut decoder, tx).await?;
    if decoder.pending() > 0 {
        let batch = decoder.finish()?;
        let _ = tx.send(Ok(Chunk { batch, bytes })).await;
    }
    Ok(())
}

/// Keyset pages until a page comes back short.
async fn read_pages(
    conn: &mut PgConnection,
    plan: &Plan,
    extra: &[String],
    tx: &mpsc::Sender<Result<Chunk>>,
) -> Result<()> {
    let order = plan.order_indexes();
    let mut cursor: Option<Vec<String>> = None;
    loop {
        let mut decoder = Decoder::new(plan.schema.clone(), &plan.columns, plan.key.clone(), plan.batch_size + 1);
        let bytes = copy(conn, &plan.statement(extra, cursor.as_deref()), &mut decoder, tx).await?;
        let rows = decoder.pending();
        if rows == 0 {
            return Ok(());
        }
        let batch = decoder.finish()?;
        let last: Vec<String> = order
            .iter()
            .map(|&i| literal(&batch.column(i).slice(rows - 1, 1), &plan.columns[i].pg_type))
            .collect::<Result<_>>()?;
        if tx.send(Ok(Chunk { batch, bytes })).await.is_err() {
            return Ok(());
        }
        if rows < plan.batch_size {
            return Ok(());
        }
        cursor = Some(last);
    }
}

/// Run one `COPY … TO STDOUT (FORMAT binary)`, feeding its data to `decoder`
/// and sending full batches. Returns the bytes received since the last batch sent.
async fn copy(
    conn: &mut PgConnection,
    statement: &str,
    decoder: &mut Decoder,
    tx: &mpsc::Sender<Result<Chunk>>,
) -> Result<u64> {
    let mut data = conn.copy_out_raw(statement).await.map_err(|e| db_error(e, "starting COPY"))?;
    let mut batches = Vec::new();
    let mut unsent = 0u64;
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(|e| db_error(e, "reading COPY data"))?;
        unsent += chunk.len() as u64;
        decoder.feed(&chunk, &mut batches)?;
        for batch in batches.drain(..) {
            if tx.send(Ok(Chunk { batch, bytes: std::mem::take(&mut unsent) })).await.is_err() {
                return Ok(0);
            }
        }
    }
    if !decoder.ended() {
        return Err(Error::transient("the server's COPY data ended without its trailer (the connection broke?)"));
    }
    Ok(unsent)
}

pub use weir_core::quote_literal as text_literal;

/// A one-element array as an SQL literal of the column's type (`pg_type`):
/// COPY takes no parameters, so keyset cursors and watermarks are inlined.
pub fn literal(value: &ArrayRef, pg_type: &str) -> Result<String> {
    if value.is_null(0) {
        return Ok("NULL".to_owned());
    }
    let typed = |text: String| format!("{}::{pg_type}", text_literal(&text));
    Ok(match value.data_type() {
        DataType::Int16 => value.as_primitive::<Int16Type>().value(0).to_string(),
        DataType::Int32 => value.as_primitive::<Int32Type>().value(0).to_string(),
        DataType::Int64 => value.as_primitive::<Int64Type>().value(0).to_string(),
        DataType::Float32 => typed(format!("{:e}", value.as_primitive::<Float32Type>().value(0))),
        DataType::Float64 => typed(format!("{:e}", value.as_primitive::<Float64Type>().value(0))),
        DataType::Boolean => value.as_boolean().value(0).to_string(),
        DataType::Decimal128(..) => typed(arrow::util::display::array_value_to_string(value, 0)?),
        DataType::Utf8 => typed(value.as_string::<i32>().value(0).to_owned()),
        DataType::Binary => {
            let hex: String = value.as_binary::<i32>().value(0).iter().map(|b| format!("{b:02x}")).collect();
            typed(format!("\\x{hex}"))
        }
        DataType::Date32 => {
            let days = value.as_primitive::<Date32Type>().value(0);
            typed(date_text(days).ok_or_else(|| Error::internal("a date out of range"))?)
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            let us = value.as_primitive::<Time64MicrosecondType>().value(0);
            typed(format!(
                "{:02}:{:02}:{:02}.{:06}",
                us / 3_600_000_000,
                us / 60_000_000 % 60,
                us / 1_000_000 % 60,
                us % 1_000_000
            ))
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let us = value.as_primitive::<TimestampMicrosecondType>().value(0);
            let at = chrono::DateTime::from_timestamp_micros(us)
                .ok_or_else(|| Error::internal("a timestamp out of range"))?
                .naive_utc()
                .format("%Y-%m-%d %H:%M:%S%.6f");
            typed(if tz.is_some() { format!("{at}+00") } else { at.to_string() })
        }
        other => {
            return Err(Error::user(format!(
                "a {other} column cannot order a keyset read; use an integer, decimal, text, date or timestamp column"
            )));
        }
    })
}

fn date_text(days: i32) -> Option<String> {
    let date = chrono::NaiveDate::from_num_days_from_ce_opt(days.checked_add(719_163)?)?;
    Some(date.format("%Y-%m-%d").to_string())
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};

    use super::*;

    #[test]
    fn keysets_compare_rows_and_put_null_watermarks_first() {
        let keys = vec!["updated_at".to_owned(), "id".to_owned()];
        assert_eq!(
            keyset(&keys, &["'x'::timestamp".into(), "7".into()]),
            "(\"updated_at\", \"id\") > ('x'::timestamp, 7)"
        );
        assert_eq!(
            keyset(&keys, &["NULL".into(), "7".into()]),
            "((\"updated_at\" IS NULL AND (\"id\") > (7)) OR \"updated_at\" IS NOT NULL)"
        );
    }

    #[test]
    fn literals_are_typed_and_quoted() {
        let text: ArrayRef = Arc::new(StringArray::from(vec!["O'Brien"]));
        assert_eq!(literal(&text, "text").unwrap(), "'O''Brien'::text");
        let n: ArrayRef = Arc::new(Int64Array::from(vec![-5]));
        assert_eq!(literal(&n, "bigint").unwrap(), "-5");
        let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![1_000_001]).with_timezone("UTC"));
        assert_eq!(
            literal(&ts, "timestamp with time zone").unwrap(),
            "'1970-01-01 00:00:01.000001+00'::timestamp with time zone"
        );
    }
}
