use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::mpsc;
use tracing::info;
use weir_core::lag::Lag;
use weir_core::watermark::{MaxTracker, parse_as};
use weir_core::{
    ConnectionUrl, Error, Ident, Position, ReadRequest, Result, RunDate, Source, SourceBatch, SourceStream,
    WatermarkFilter,
};

use crate::cdc::{self, CdcNames, Hold, OnSlotLost, Reader};
use crate::error::db_error;
use crate::read::{Chunk, Plan, exec, literal, read_range, start_snapshot, text_literal};
use crate::relation::{Relation, describe_query, describe_table};
use crate::types::{Column, quote};

/// Batches waiting between a range's reader and the sink, per range.
const RANGE_QUEUE: usize = 2;

/// `options` keys of a postgres source.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresOptions {
    /// A `SELECT` to read instead of `source_table`.
    pub query: Option<String>,
    /// Rows per Arrow batch, and per page of an incremental read (default 50000).
    pub batch_size: Option<usize>,
    /// Key ranges read at once, each on its own connection, in one snapshot (default 1).
    pub parallelism: Option<usize>,
    /// Re-read this far behind the stored watermark (`"5 minutes"`; a number for an integer watermark).
    pub lag: Option<Lag>,
    /// Limit a run to `--date`'s day of this column.
    pub date_column: Option<String>,
    /// `cdc`: the replication slot to read (default `weir_<pipeline>`).
    pub slot: Option<String>,
    /// `cdc`: the publication that names the table (default `weir_<pipeline>`).
    pub publication: Option<String>,
    /// `cdc`: what to do when the slot is gone: `fail` (default) or `resnapshot`.
    pub on_slot_lost: Option<OnSlotLost>,
    /// `cdc`: end a commit early, at the first transaction boundary past this many changes.
    pub commit_rows: Option<u64>,
    /// `cdc`: `runner check` warns when the slot retains more WAL than this (default 1024 MB).
    pub slot_warn_mb: Option<u64>,
}

impl PostgresOptions {
    pub const KEYS: &'static [&'static str] = &[
        "query",
        "batch_size",
        "parallelism",
        "lag",
        "date_column",
        "slot",
        "publication",
        "on_slot_lost",
        "commit_rows",
        "slot_warn_mb",
    ];
    const DEFAULT_BATCH_SIZE: usize = 50_000;
}

/// Where a pipeline reads: a table (`schema.table`, date templates allowed) or a query.
#[derive(Debug, Clone)]
pub enum Target {
    Table { schema: String, table: String },
    Query(String),
}

/// What the controller row asks of the source, checked when it is built.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    pub target: Target,
    pub primary_key: Vec<String>,
    pub watermark_column: Option<String>,
    pub options: PostgresOptions,
    /// `load_type = 'cdc'`: the slot and publication it reads.
    pub cdc: Option<CdcNames>,
}

/// Reads a PostgreSQL table, view or query.
pub struct PostgresSource {
    connection: ConnectionUrl,
    config: PostgresConfig,
    /// A cdc pipeline's slot reader: its read group's, or its own.
    reader: std::sync::Mutex<Option<Arc<Reader>>>,
    /// A cdc snapshot's hold on the slot, until its commit is confirmed (or
    /// the pipeline is done with this source).
    hold: std::sync::Mutex<Option<Hold>>,
}

impl PostgresSource {
    pub fn new(connection: ConnectionUrl, config: PostgresConfig) -> Self {
        Self { connection, config, reader: std::sync::Mutex::default(), hold: std::sync::Mutex::default() }
    }

    pub(crate) fn config(&self) -> &PostgresConfig {
        &self.config
    }

    pub(crate) fn connection(&self) -> &ConnectionUrl {
        &self.connection
    }

    /// Keep a snapshot's hold on the slot (replacing an earlier attempt's).
    pub(crate) fn keep_hold(&self, hold: Hold) {
        if let Ok(mut held) = self.hold.lock() {
            *held = Some(hold);
        }
    }

    pub(crate) fn take_hold(&self) -> Option<Hold> {
        self.hold.lock().ok().and_then(|mut held| held.take())
    }

    pub(crate) fn reader(&self) -> &std::sync::Mutex<Option<Arc<Reader>>> {
        &self.reader
    }

    pub(crate) async fn connect(&self) -> Result<PgConnection> {
        connect(&self.connection).await
    }

    async fn describe(&self, conn: &mut PgConnection, run_date: RunDate) -> Result<Relation> {
        match &self.config.target {
            Target::Query(query) => describe_query(conn, &run_date.render(query)?).await,
            Target::Table { schema, table } => describe_table(conn, schema, &run_date.render(table)?).await,
        }
    }

    /// Read `relation` (rows meeting `conds`, in keyset pages when `order` is
    /// set) on `options.parallelism` connections in one snapshot: a new one, or
    /// `imported` (a snapshot another session exported). Returns the chunks as
    /// they arrive, and warnings.
    pub(crate) async fn read_ranges(
        &self,
        mut conn: PgConnection,
        relation: &Relation,
        conds: Vec<String>,
        order: Vec<String>,
        key_names: &[String],
        imported: Option<&str>,
    ) -> Result<(BoxStream<'static, Result<Chunk>>, Vec<String>)> {
        let options = &self.config.options;
        let mut warnings = Vec::new();
        let columns = relation.columns.clone();
        let key = key_names.iter().filter_map(|k| columns.iter().position(|c| &c.name == k)).collect();
        // Every range's connection, then one snapshot for all of them.
        let parallelism = options.parallelism.unwrap_or(1).max(1);
        let split = key_names.first().and_then(|k| relation.column(k)).filter(|c| c.is_integer());
        if parallelism > 1 && split.is_none() {
            warnings.push(format!(
                "options.parallelism = {parallelism} needs an integer key to cut ranges on, and {} has none \
                 (key: {}); reading with one connection",
                relation.display,
                if key_names.is_empty() { "none".to_owned() } else { key_names.join(", ") }
            ));
        }
        let mut others = Vec::new();
        if split.is_some() {
            for _ in 1..parallelism {
                others.push(self.connect().await?);
            }
        }
        start_snapshot(&mut conn, &mut others, imported).await?;
        let mut range_conds: Vec<Vec<String>> = vec![Vec::new()];
        if let Some(column) = split.filter(|_| parallelism > 1) {
            range_conds = ranges(&mut conn, &relation.from, &conds, column, parallelism).await?;
            others.truncate(range_conds.len().saturating_sub(1));
        }
        let select: Vec<String> = columns.iter().map(Column::select).collect();
        let plan = Arc::new(Plan {
            schema: schema_of(&columns),
            select: format!("SELECT {} FROM {}", select.join(", "), relation.from),
            columns,
            conds,
            order,
            key,
            batch_size: options.batch_size.unwrap_or(PostgresOptions::DEFAULT_BATCH_SIZE).max(1),
        });
        info!(source = %relation.display, ranges = range_conds.len(), paged = !plan.order.is_empty(), "reading PostgreSQL");

        let mut receivers = Vec::with_capacity(range_conds.len());
        for (conn, extra) in std::iter::once(conn).chain(others).zip(range_conds) {
            let (tx, rx) = mpsc::channel(RANGE_QUEUE);
            // A range whose task died must not look like a range read to its end.
            let watch = tx.clone();
            let reader = tokio::spawn(read_range(conn, plan.clone(), extra, tx));
            tokio::spawn(async move {
                if let Err(e) = reader.await {
                    let _ = watch.send(Err(Error::internal(format!("a range reader stopped: {e}")))).await;
                }
            });
            receivers
                .push(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }).boxed());
        }

        Ok((futures::stream::select_all(receivers).boxed(), warnings))
    }

    /// Check the controller row against what the server has; warnings for what
    /// works but should be fixed.
    pub(crate) fn validate(&self, relation: &Relation, watermark: Option<&str>) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        if let Some(wm) = watermark {
            relation.require("watermark_column", &[wm])?;
        }
        let key: Vec<&str> = self.config.primary_key.iter().map(String::as_str).collect();
        relation.require("primary_key", &key)?;
        if let Some(col) = &self.config.options.date_column {
            relation.require("options.date_column", &[col])?;
        }
        if let Some(wm) = watermark
            && relation.is_table
            && !relation.index_leaders.iter().any(|c| c == wm)
        {
            let mut columns = vec![quote(wm)];
            columns.extend(key.iter().filter(|k| **k != wm).map(|k| quote(k)));
            warnings.push(format!(
                "watermark_column `{wm}` of {} leads no index, so each page scans the table; create one: \
                 CREATE INDEX ON {} ({})",
                relation.display,
                relation.from,
                columns.join(", ")
            ));
        }
        Ok(warnings)
    }
}

/// A connection to the source database.
pub(crate) async fn connect(connection: &ConnectionUrl) -> Result<PgConnection> {
    let options = PgConnectOptions::from_str(connection.expose())
        .map_err(|e| Error::user(format!("source connection {connection} is not valid: {e}")))?
        .application_name("weir")
        .disable_statement_logging();
    PgConnection::connect_with(&options).await.map_err(|e| db_error(e, &format!("connecting to {connection}")))
}

fn schema_of(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().map(Column::field).collect::<Vec<_>>()))
}

#[async_trait::async_trait]
impl Source for PostgresSource {
    async fn check(&self) -> Result<Option<SchemaRef>> {
        let mut conn = self.connect().await?;
        let relation = self.describe(&mut conn, RunDate::today_utc()).await?;
        self.validate(&relation, self.config.watermark_column.as_deref())?;
        let select: Vec<String> = relation.columns.iter().map(Column::select).collect();
        exec(
            &mut conn,
            &format!("SELECT {} FROM {} LIMIT 0", select.join(", "), relation.from),
            &format!("reading {}", relation.display),
        )
        .await?;
        if self.config.cdc.is_some() {
            // What capture needs of the server: logical WAL, the REPLICATION attribute, a replica identity.
            cdc::preflight(&mut conn, &relation, self).await?;
            return Ok(Some(crate::changes::schema(&relation.columns)));
        }
        Ok(Some(schema_of(&relation.columns)))
    }

    async fn open(&self, request: &ReadRequest) -> Result<SourceStream> {
        if self.config.cdc.is_some() {
            return cdc::open(self, request).await;
        }
        let mut conn = self.connect().await?;
        let relation = self.describe(&mut conn, request.run_date).await?;
        let watermark = request.watermark_column.as_ref().map(Ident::as_str);
        let mut warnings = self.validate(&relation, watermark)?;
        let options = &self.config.options;
        let columns = relation.columns.clone();
        let schema = schema_of(&columns);
        let key_names: Vec<String> = match self.config.primary_key.is_empty() {
            false => self.config.primary_key.clone(),
            true => relation.primary_key.clone(),
        };

        let mut conds = Vec::new();
        if let Some(col) = &options.date_column {
            conds.push(day(col, request.run_date));
        }
        if let (Some(filter), Some(wm)) = (&request.filter, watermark) {
            let column = relation.column(wm).ok_or_else(|| Error::internal("a validated column is missing"))?;
            conds.push(lower_bound(column, &schema, filter, options.lag)?);
        }
        let order: Vec<String> = match watermark {
            Some(wm) if !key_names.is_empty() => {
                std::iter::once(wm.to_owned()).chain(key_names.iter().filter(|k| *k != wm).cloned()).collect()
            }
            _ => Vec::new(),
        };

        let (chunks, range_warnings) = self.read_ranges(conn, &relation, conds, order, &key_names, None).await?;
        warnings.extend(range_warnings);

        let mut tracker = match watermark {
            Some(wm) => {
                let ty = schema.field_with_name(wm).map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
                Some(MaxTracker::new(wm, &ty, request.watermark_before.as_deref())?)
            }
            None => None,
        };
        let mut position = Position { watermark: request.watermark_before.clone(), ..Default::default() };
        let batches = chunks
            .map(move |chunk: Result<Chunk>| {
                let chunk = chunk?;
                if let Some(t) = tracker.as_mut() {
                    t.observe(&chunk.batch)?;
                    position.watermark = t.value().map(str::to_owned);
                }
                position.bytes_read += chunk.bytes;
                Ok(SourceBatch { batch: chunk.batch, position: position.clone() })
            })
            .boxed();
        Ok(SourceStream { schema, batches, warnings, primary_key: Vec::new() })
    }

    fn reads_by_date(&self) -> bool {
        self.config.options.date_column.is_some()
    }

    fn read_group(&self) -> Option<String> {
        self.config.cdc.as_ref().map(|names| cdc::read_group(self, names))
    }

    async fn confirm(&self, watermark: &str, peers: &[String]) -> Result<()> {
        match &self.config.cdc {
            Some(names) => cdc::confirm(self, names, watermark, peers).await,
            None => Ok(()),
        }
    }

    async fn capture_status(&self) -> Result<Option<weir_core::CaptureStatus>> {
        match &self.config.cdc {
            Some(names) => cdc::status(self, names).await.map(Some),
            None => Ok(None),
        }
    }

    async fn drop_capture(&self) -> Result<Option<String>> {
        match &self.config.cdc {
            Some(names) => cdc::drop_slot(self, names).await,
            None => Ok(None),
        }
    }
}

/// `column` within `date`'s day: `[day, next day)`.
fn day(column: &str, date: RunDate) -> String {
    let start = date.date();
    let next = start.succ_opt().unwrap_or(start);
    format!(
        "{c} >= {} AND {c} < {}",
        text_literal(&start.format("%Y-%m-%d").to_string()),
        text_literal(&next.format("%Y-%m-%d").to_string()),
        c = quote(column)
    )
}

/// Rows past the stored watermark (`>=` when they are merged by key), moved back by the lag.
fn lower_bound(column: &Column, schema: &Schema, filter: &WatermarkFilter, lag: Option<Lag>) -> Result<String> {
    let ty = schema.field_with_name(&column.name).map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
    let value = parse_as(&filter.value, &ty, &column.name)?;
    let value = match lag {
        Some(lag) => lag.subtract(&value, &column.name)?,
        None => value,
    };
    let op = if filter.inclusive || lag.is_some() { ">=" } else { ">" };
    Ok(format!("{} {op} {}", quote(&column.name), literal(&value, &column.pg_type)?))
}

/// `parallelism` ranges of `column` between its minimum and maximum (in the
/// run's snapshot): `[lo, hi)`, the last one closed.
async fn ranges(
    conn: &mut PgConnection,
    from: &str,
    conds: &[String],
    column: &Column,
    parallelism: usize,
) -> Result<Vec<Vec<String>>> {
    let c = quote(&column.name);
    let mut sql = format!("SELECT min({c})::int8, max({c})::int8 FROM {from}");
    for (i, cond) in conds.iter().enumerate() {
        sql.push_str(if i == 0 { " WHERE " } else { " AND " });
        sql.push_str(cond);
    }
    let (lo, hi): (Option<i64>, Option<i64>) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| db_error(e, "finding the key range to split"))?;
    let (Some(lo), Some(hi)) = (lo, hi) else { return Ok(vec![Vec::new()]) };
    let span = (i128::from(hi) - i128::from(lo) + 1) as u128;
    let n = (parallelism as u128).min(span).max(1);
    let edges: Vec<i128> = (0..=n).map(|i| i128::from(lo) + (span * i / n) as i128).collect();
    Ok(edges
        .windows(2)
        .map(|w| {
            let mut range = vec![format!("{c} >= {}", w[0])];
            if w[1] <= i128::from(hi) {
                range.push(format!("{c} < {}", w[1]));
            }
            range
        })
        .collect())
}
