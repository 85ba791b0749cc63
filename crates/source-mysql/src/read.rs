//! Reading: the statements a run sends, and one task per key range that turns
//! their rows into Arrow batches.
//!
//! Without a watermark, a range is one streamed `SELECT` inside a consistent
//! snapshot. With one, it is read in keyset pages ordered by (watermark,
//! key): each page starts after the last row of the one before, never at an
//! OFFSET, so a page costs the same however deep into the table it is.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use sqlx::AssertSqlSafe;
use sqlx::mysql::{MySql, MySqlArguments, MySqlConnection};
use sqlx::query::Query;
use tokio::sync::mpsc;
use tracing::debug;
use weir_core::Result;

use crate::decode::{BatchBuilder, Param, raw_value};
use crate::error::db_error;
use crate::relation::{exec, quote};
use crate::types::MysqlType;

/// A piece of a `WHERE` clause with its parameters.
#[derive(Debug, Clone)]
pub struct Cond {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Cond {
    pub fn new(sql: impl Into<String>, params: Vec<Param>) -> Self {
        Self { sql: sql.into(), params }
    }
}

/// Rows after `values` in the order of `keys`, spelled out as nested
/// comparisons (`a > ? OR (a = ? AND b > ?)`) so the server can seek an index.
/// A NULL first value (a NULL watermark, which sorts first) is followed by the
/// other NULL-watermark rows after it, then every row with a watermark.
pub fn keyset(keys: &[String], values: &[Param]) -> Cond {
    fn after(keys: &[String], values: &[Param]) -> Cond {
        let (k, v) = (quote(&keys[0]), &values[0]);
        if keys.len() == 1 {
            return Cond::new(format!("{k} > ?"), vec![v.clone()]);
        }
        let rest = after(&keys[1..], &values[1..]);
        let mut params = vec![v.clone(), v.clone()];
        params.extend(rest.params);
        Cond::new(format!("({k} > ? OR ({k} = ? AND {}))", rest.sql), params)
    }
    if values[0] == Param::Null && keys.len() > 1 {
        let k = quote(&keys[0]);
        let rest = after(&keys[1..], &values[1..]);
        return Cond::new(format!("(({k} IS NULL AND {}) OR {k} IS NOT NULL)", rest.sql), rest.params);
    }
    after(keys, values)
}

/// What every range of one run reads.
pub struct Plan {
    pub schema: SchemaRef,
    pub columns: Vec<(String, MysqlType)>,
    /// `SELECT <columns> FROM <relation>`.
    pub select: String,
    /// Conditions every range applies.
    pub conds: Vec<Cond>,
    /// Keyset order (watermark, then key); empty: one streamed statement.
    pub order: Vec<String>,
    /// Columns that name a row in an error.
    pub key: Vec<usize>,
    pub batch_size: usize,
}

impl Plan {
    fn statement(&self, extra: &[Cond], cursor: Option<&[Param]>) -> (String, Vec<Param>) {
        let mut conds: Vec<Cond> = self.conds.iter().chain(extra).cloned().collect();
        if let Some(values) = cursor {
            conds.push(keyset(&self.order, values));
        }
        let mut sql = self.select.clone();
        let params = push_where(&mut sql, conds);
        if !self.order.is_empty() {
            let order: Vec<String> = self.order.iter().map(|c| quote(c)).collect();
            sql.push_str(&format!(" ORDER BY {} LIMIT {}", order.join(", "), self.batch_size));
        }
        (sql, params)
    }

    fn order_indexes(&self) -> Vec<usize> {
        self.order.iter().filter_map(|o| self.columns.iter().position(|(n, _)| n == o)).collect()
    }
}

/// Append `conds` to `sql` as its `WHERE` clause; their parameters, in order.
fn push_where(sql: &mut String, conds: Vec<Cond>) -> Vec<Param> {
    let mut params = Vec::new();
    for (i, c) in conds.into_iter().enumerate() {
        sql.push_str(if i == 0 { " WHERE " } else { " AND " });
        sql.push_str(&c.sql);
        params.extend(c.params);
    }
    params
}

/// Bind `params` in order.
pub fn bind_all(sql: String, params: Vec<Param>) -> Query<'static, MySql, MySqlArguments> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for p in params {
        query = match p {
            Param::Null => query.bind(None::<i64>),
            Param::Int(v) => query.bind(v),
            Param::UInt(v) => query.bind(v),
            Param::Float(v) => query.bind(v),
            Param::Text(v) => query.bind(v),
            Param::Bytes(v) => query.bind(v),
        };
    }
    query
}

/// Rows decoded into one batch, with what reading them met.
pub struct Chunk {
    pub batch: RecordBatch,
    pub bytes: u64,
    pub zero_dates: u64,
}

/// Start a consistent, read-only snapshot on `conn`: every statement of the
/// range sees the database as it was at this moment. Long reads into a slow
/// sink must not trip the server's write timeout.
pub async fn start_snapshot(conn: &mut MySqlConnection) -> Result<()> {
    exec(
        conn,
        "SET SESSION net_write_timeout = 3600; \
         SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
         START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        "starting a consistent snapshot",
    )
    .await
}

/// Read one range (`extra` conditions) on its own connection, sending batches
/// to `tx`. Stops quietly when the receiver is gone.
pub async fn read_range(mut conn: MySqlConnection, plan: Arc<Plan>, extra: Vec<Cond>, tx: mpsc::Sender<Result<Chunk>>) {
    let mut builder = BatchBuilder::new(plan.schema.clone(), &plan.columns, plan.key.clone(), plan.batch_size);
    let sent = read(&mut conn, &plan, &extra, &mut builder, &tx).await;
    match sent {
        Ok(true) => {
            // End the snapshot; a failure here changes nothing that was read.
            let _ = exec(&mut conn, "COMMIT", "ending the snapshot").await;
        }
        Ok(false) => {}
        Err(e) => {
            let _ = tx.send(Err(e)).await;
        }
    }
}

/// Returns `false` when the receiver went away.
async fn read(
    conn: &mut MySqlConnection,
    plan: &Plan,
    extra: &[Cond],
    builder: &mut BatchBuilder,
    tx: &mpsc::Sender<Result<Chunk>>,
) -> Result<bool> {
    let reading = |e| db_error(e, "reading rows");
    if plan.order.is_empty() {
        let (sql, params) = plan.statement(extra, None);
        debug!(sql = %sql, "reading");
        let mut rows = bind_all(sql, params).fetch(&mut *conn);
        while let Some(row) = rows.try_next().await.map_err(reading)? {
            builder.push(&row)?;
            if builder.len() >= plan.batch_size && !send(builder, tx).await? {
                return Ok(false);
            }
        }
        return if builder.is_empty() { Ok(true) } else { send(builder, tx).await };
    }

    let order = plan.order_indexes();
    let mut cursor: Option<Vec<Param>> = None;
    loop {
        let (sql, params) = plan.statement(extra, cursor.as_deref());
        debug!(sql = %sql, "reading a page");
        let mut rows = bind_all(sql, params).fetch(&mut *conn);
        let mut last = None;
        while let Some(row) = rows.try_next().await.map_err(reading)? {
            builder.push(&row)?;
            last = Some(row);
        }
        drop(rows);
        let full = builder.len() >= plan.batch_size;
        if !builder.is_empty() && !send(builder, tx).await? {
            return Ok(false);
        }
        match (full, last) {
            (true, Some(row)) => {
                let values = order
                    .iter()
                    .map(|&i| Param::from_raw(plan.columns[i].1, raw_value(&row, i)?))
                    .collect::<Result<Vec<_>>>()?;
                cursor = Some(values);
            }
            _ => return Ok(true),
        }
    }
}

async fn send(builder: &mut BatchBuilder, tx: &mpsc::Sender<Result<Chunk>>) -> Result<bool> {
    let (bytes, zero_dates) = (builder.bytes, builder.zero_dates);
    let batch = builder.finish()?;
    Ok(tx.send(Ok(Chunk { batch, bytes, zero_dates })).await.is_ok())
}

/// `MIN` and `MAX` of an integer column (as wide integers), and the `MAX` of
/// `watermark` if given, under `conds`: where key ranges are cut.
pub async fn bounds(
    conn: &mut MySqlConnection,
    from: &str,
    split: (&str, MysqlType),
    watermark: Option<(&str, MysqlType)>,
    conds: &[Cond],
) -> Result<(Option<(i128, i128)>, Option<Param>)> {
    let s = quote(split.0);
    let mut sql = format!("SELECT MIN({s}), MAX({s})");
    if let Some((wm, _)) = watermark {
        sql.push_str(&format!(", MAX({})", quote(wm)));
    }
    sql.push_str(&format!(" FROM {from}"));
    let params = push_where(&mut sql, conds.to_vec());
    let row = bind_all(sql, params).fetch_one(&mut *conn).await.map_err(|e| db_error(e, "finding key ranges"))?;
    let edge = |i: usize| -> Result<Option<i128>> {
        Ok(match Param::from_raw(split.1, raw_value(&row, i)?)? {
            Param::Int(v) => Some(v as i128),
            Param::UInt(v) => Some(v as i128),
            _ => None,
        })
    };
    let range = edge(0)?.zip(edge(1)?);
    let top = match watermark {
        Some((_, ty)) => Some(Param::from_raw(ty, raw_value(&row, 2)?)?),
        None => None,
    };
    Ok((range, top))
}

/// Cut `[min, max]` into at most `n` ranges of equal width, as conditions on `column`.
pub fn ranges(column: &str, ty: MysqlType, (min, max): (i128, i128), n: usize) -> Vec<Cond> {
    let width = max - min + 1;
    let n = (n as i128).clamp(1, width.max(1));
    let step = width / n + i128::from(width % n != 0);
    let param = |v: i128| match ty {
        MysqlType::Int { unsigned: true, .. } => Param::UInt(v as u64),
        _ => Param::Int(v as i64),
    };
    let c = quote(column);
    let mut out = Vec::new();
    let mut lo = min;
    while lo <= max {
        let hi = lo.saturating_add(step - 1).min(max);
        out.push(Cond::new(format!("{c} BETWEEN ? AND ?"), vec![param(lo), param(hi)]));
        if hi == max {
            break;
        }
        lo = hi + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_spells_out_the_order() {
        let keys = vec!["updated_at".to_owned(), "id".to_owned()];
        let c = keyset(&keys, &[Param::Text("2025-03-23".into()), Param::Int(7)]);
        assert_eq!(c.sql, "(`updated_at` > ? OR (`updated_at` = ? AND `id` > ?))");
        assert_eq!(c.params.len(), 3);
        let c = keyset(&keys, &[Param::Null, Param::Int(7)]);
        assert_eq!(c.sql, "((`updated_at` IS NULL AND `id` > ?) OR `updated_at` IS NOT NULL)");
    }

    #[test]
    fn ranges_cover_every_key_once() {
        let r = ranges("id", MysqlType::Int { bytes: 8, unsigned: false }, (1, 10), 3);
        let edges: Vec<_> = r.iter().map(|c| c.params.clone()).collect();
        assert_eq!(
            edges,
            vec![
                vec![Param::Int(1), Param::Int(4)],
                vec![Param::Int(5), Param::Int(8)],
                vec![Param::Int(9), Param::Int(10)]
            ]
        );
        assert_eq!(ranges("id", MysqlType::Int { bytes: 4, unsigned: false }, (5, 5), 4).len(), 1);
        let big = ranges("id", MysqlType::Int { bytes: 8, unsigned: true }, (0, u64::MAX as i128), 2);
        assert_eq!(big[1].params[1], Param::UInt(u64::MAX));
    }
}
