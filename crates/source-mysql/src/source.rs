use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use futures::StreamExt;
use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use tokio::sync::mpsc;
use tracing::{debug, info};
use weir_core::watermark::{MaxTracker, parse_as};
use weir_core::{
    ConnectionUrl, Error, Ident, Position, ReadRequest, Result, RunDate, Source, SourceBatch, SourceStream,
    WatermarkFilter,
};

use crate::decode::{Param, datetime_literal};
use crate::error::db_error;
use crate::read::{Chunk, Cond, Plan, bind_all, bounds, ranges, read_range, start_snapshot};
use crate::relation::{Relation, describe_query, describe_table, quote};
use crate::types::{GeometryForm, MysqlType, srid_column};
use weir_core::lag::Lag;

/// Batches each range decodes ahead of the sink.
const RANGE_QUEUE: usize = 2;

/// `options` keys of a mysql source.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MysqlOptions {
    /// A `SELECT` to read instead of `source_table`.
    pub query: Option<String>,
    /// Rows per Arrow batch, and per page of an incremental read (default 50000).
    pub batch_size: Option<usize>,
    /// Key ranges read at once, each on its own connection (default 1).
    pub parallelism: Option<usize>,
    /// Re-read this far behind the stored watermark, for rows committed late
    /// (`"5 minutes"`; a number for an integer watermark).
    pub lag: Option<Lag>,
    /// Limit a run to `--date`'s day of this column.
    pub date_column: Option<String>,
    /// What spatial columns load as: `wkb` (default), `wkt` or `internal`.
    pub geometry: Option<GeometryForm>,
}

impl MysqlOptions {
    pub const KEYS: &'static [&'static str] = &["query", "batch_size", "parallelism", "lag", "date_column", "geometry"];
    const DEFAULT_BATCH_SIZE: usize = 50_000;
}

/// Where a pipeline reads: a table (`db.table`, `table`, date templates
/// allowed) or a query.
#[derive(Debug, Clone)]
pub enum Target {
    Table { database: Option<String>, table: String },
    Query(String),
}

/// What the controller row asks of the source, checked when it is built.
#[derive(Debug, Clone)]
pub struct MysqlConfig {
    pub target: Target,
    /// The controller's `primary_key`: the keyset order after the watermark.
    pub primary_key: Vec<String>,
    /// The controller's `watermark_column`, checked by `runner check`.
    pub watermark_column: Option<String>,
    pub options: MysqlOptions,
}

/// Reads a MySQL or MariaDB table or query.
pub struct MysqlSource {
    connection: ConnectionUrl,
    config: MysqlConfig,
}

impl MysqlSource {
    pub fn new(connection: ConnectionUrl, config: MysqlConfig) -> Self {
        Self { connection, config }
    }

    async fn connect(&self) -> Result<MySqlConnection> {
        // `mariadb://` is the same protocol.
        let url = self.connection.expose().replacen("mariadb://", "mysql://", 1);
        let options = MySqlConnectOptions::from_str(&url)
            .map_err(|e| Error::user(format!("source connection {} is not valid: {e}", self.connection)))?;
        MySqlConnection::connect_with(&options)
            .await
            .map_err(|e| db_error(e, &format!("connecting to {}", self.connection)))
    }

    /// The table or query this run reads, as the server describes it.
    async fn describe(&self, conn: &mut MySqlConnection, run_date: RunDate) -> Result<Relation> {
        let mut relation = match &self.config.target {
            Target::Query(query) => describe_query(conn, &run_date.render(query)?).await?,
            Target::Table { database, table } => {
                let database = match database {
                    Some(db) => db.clone(),
                    None => self.default_database()?,
                };
                describe_table(conn, &database, &run_date.render(table)?).await?
            }
        };
        let form = self.config.options.geometry.unwrap_or_default();
        for (_, ty) in &mut relation.columns {
            if let MysqlType::Geometry(f) = ty {
                *f = form;
            }
        }
        if form != GeometryForm::Internal {
            for (name, ty) in &relation.columns {
                let srid = srid_column(name);
                if matches!(ty, MysqlType::Geometry(_)) && relation.column(&srid).is_some() {
                    return Err(Error::user(format!(
                        "spatial column `{name}` loads with its SRID in a column `{srid}`, and {} already has a \
                         column of that name; rename one in options.query, or set options.geometry = 'internal'",
                        relation.display
                    )));
                }
            }
        }
        Ok(relation)
    }

    fn default_database(&self) -> Result<String> {
        let path = self.connection.url().path().trim_start_matches('/');
        if path.is_empty() {
            return Err(Error::user(format!(
                "source_table names no database and the connection {} has none: write `database.table`, \
                 or end the URL with /database",
                self.connection
            )));
        }
        Ok(path.to_owned())
    }

    /// Check the controller row against what the server has; warnings for what
    /// works but should be fixed.
    fn validate(&self, relation: &Relation, watermark: Option<&str>) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        if let Some(wm) = watermark {
            relation.require("watermark_column", &[wm])?;
        }
        if let Some(col) = &self.config.options.date_column {
            relation.require("options.date_column", &[col])?;
            let ty = relation.column(col).map(|t| t.arrow());
            if !matches!(ty, Some(DataType::Date32 | DataType::Timestamp(..))) {
                return Err(Error::user(format!(
                    "options.date_column `{col}` of {} is not a DATE, DATETIME or TIMESTAMP column",
                    relation.display
                )));
            }
        }
        let pk: Vec<&str> = self.config.primary_key.iter().map(String::as_str).collect();
        relation.require("primary_key", &pk)?;
        if relation.is_table && !pk.is_empty() && !relation.is_unique(&pk) {
            return Err(Error::user(format!(
                "primary_key ({}) is not a unique key of {}; rows are paged and merged by it, so it must \
                 identify one row (the table's primary key is ({}))",
                pk.join(", "),
                relation.display,
                relation.primary_key.join(", ")
            )));
        }
        if let Some(wm) = watermark
            && relation.is_table
            && !relation.index_leaders.iter().any(|c| c == wm)
        {
            let table = relation.display.rsplit('.').next().unwrap_or_default();
            let mut columns = vec![quote(wm)];
            columns.extend(pk.iter().map(|c| quote(c)));
            warnings.push(format!(
                "watermark_column `{wm}` of {} has no index, so every incremental page scans the table; add one: \
                 CREATE INDEX {} ON {} ({})",
                relation.display,
                quote(&format!("ix_{table}_{wm}")),
                relation.from,
                columns.join(", ")
            ));
        }
        Ok(warnings)
    }
}

/// The Arrow schema of a relation's columns (a spatial column brings its SRID column).
fn schema_of(columns: &[(String, MysqlType)]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().flat_map(|(n, t)| t.fields(n)).collect::<Vec<_>>()))
}

#[async_trait::async_trait]
impl Source for MysqlSource {
    async fn check(&self) -> Result<Option<SchemaRef>> {
        let mut conn = self.connect().await?;
        let relation = self.describe(&mut conn, RunDate::today_utc()).await?;
        self.validate(&relation, self.config.watermark_column.as_deref())?;
        let select = format!("SELECT * FROM {} LIMIT 0", relation.from);
        bind_all(select, Vec::new())
            .fetch_all(&mut conn)
            .await
            .map_err(|e| db_error(e, &format!("reading {}", relation.display)))?;
        Ok(Some(schema_of(&relation.columns)))
    }

    async fn open(&self, request: &ReadRequest) -> Result<SourceStream> {
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
        let key = key_names.iter().filter_map(|k| columns.iter().position(|(n, _)| n == k)).collect();

        let mut conds = Vec::new();
        if let Some(col) = &options.date_column {
            conds.push(day(col, request.run_date));
        }
        if let (Some(filter), Some(wm)) = (&request.filter, watermark) {
            let ty = relation.column(wm).map(|t| t.arrow()).unwrap_or(DataType::Null);
            conds.push(lower_bound(wm, &ty, filter, options.lag)?);
        }
        // Keyset pages need a total order: the watermark, then a unique key.
        let order: Vec<String> = match watermark {
            Some(wm) if !key_names.is_empty() => {
                std::iter::once(wm.to_owned()).chain(key_names.iter().filter(|k| *k != wm).cloned()).collect()
            }
            _ => Vec::new(),
        };

        // Key ranges, each on its own connection.
        let parallelism = options.parallelism.unwrap_or(1).max(1);
        let mut range_conds: Vec<Vec<Cond>> = vec![Vec::new()];
        if parallelism > 1 {
            let split = key_names.first().and_then(|k| relation.column(k).map(|t| (k.as_str(), t)));
            match split {
                Some((column, ty)) if ty.is_integer() => {
                    let wm = watermark.and_then(|w| relation.column(w).map(|t| (w, t)));
                    let (edges, top) = bounds(&mut conn, &relation.from, (column, ty), wm, &conds).await?;
                    // Every range reads up to the same watermark, taken before
                    // any range's snapshot: a row one range misses because it
                    // committed later is past it, so the next run reads it.
                    if let (Some(wm), Some(top)) = (watermark, top) {
                        conds.push(match top {
                            Param::Null => Cond::new(format!("{} IS NULL", quote(wm)), Vec::new()),
                            top => Cond::new(format!("{} <= ?", quote(wm)), vec![top]),
                        });
                    }
                    if let Some(edges) = edges {
                        range_conds = ranges(column, ty, edges, parallelism).into_iter().map(|c| vec![c]).collect();
                    }
                }
                _ => warnings.push(format!(
                    "options.parallelism = {parallelism} needs an integer key to cut ranges on, and {} has none \
                     (key: {}); reading with one connection",
                    relation.display,
                    if key_names.is_empty() { "none".to_owned() } else { key_names.join(", ") }
                )),
            }
        }

        let plan = Arc::new(Plan {
            schema: schema.clone(),
            select: format!(
                "SELECT {} FROM {}",
                columns.iter().map(|(n, _)| quote(n)).collect::<Vec<_>>().join(", "),
                relation.from
            ),
            columns,
            conds,
            order,
            key,
            batch_size: options.batch_size.unwrap_or(MysqlOptions::DEFAULT_BATCH_SIZE).max(1),
        });

        // Open every range's connection first, then their snapshots together.
        let mut conns = vec![conn];
        for _ in 1..range_conds.len() {
            conns.push(self.connect().await?);
        }
        futures::future::try_join_all(conns.iter_mut().map(start_snapshot)).await?;
        info!(
            source = %relation.display,
            ranges = range_conds.len(),
            paged = !plan.order.is_empty(),
            "reading MySQL"
        );
        let mut receivers = Vec::with_capacity(conns.len());
        for (conn, extra) in conns.into_iter().zip(range_conds) {
            let (tx, rx) = mpsc::channel(RANGE_QUEUE);
            tokio::spawn(read_range(conn, plan.clone(), extra, tx));
            receivers
                .push(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }).boxed());
        }

        let mut tracker = match watermark {
            Some(wm) => {
                let ty = schema.field_with_name(wm).map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
                Some(MaxTracker::new(wm, &ty, request.watermark_before.as_deref())?)
            }
            None => None,
        };
        let mut position = Position { watermark: request.watermark_before.clone(), ..Default::default() };
        let batches = futures::stream::select_all(receivers)
            .map(move |chunk: Result<Chunk>| {
                let chunk = chunk?;
                if let Some(t) = tracker.as_mut() {
                    t.observe(&chunk.batch)?;
                    position.watermark = t.value().map(str::to_owned);
                }
                position.bytes_read += chunk.bytes;
                if chunk.zero_dates > 0 {
                    *position.counts.entry("zero_dates").or_default() += chunk.zero_dates;
                }
                debug!(rows = chunk.batch.num_rows(), "batch read");
                Ok(SourceBatch { batch: chunk.batch, position: position.clone() })
            })
            .boxed();
        Ok(SourceStream { schema, batches, warnings, primary_key: Vec::new() })
    }

    fn reads_by_date(&self) -> bool {
        self.config.options.date_column.is_some()
    }
}

/// `column` within `date`'s day: `[day, next day)`.
fn day(column: &str, date: RunDate) -> Cond {
    let start = date.date();
    let next = start.succ_opt().unwrap_or(start);
    Cond::new(
        format!("{c} >= ? AND {c} < ?", c = quote(column)),
        vec![Param::Text(start.format("%Y-%m-%d").to_string()), Param::Text(next.format("%Y-%m-%d").to_string())],
    )
}

/// Rows past the stored watermark (`>=` when they are merged by key), moved
/// back by the lag.
fn lower_bound(column: &str, ty: &DataType, filter: &WatermarkFilter, lag: Option<Lag>) -> Result<Cond> {
    let value = parse_as(&filter.value, ty, column)?;
    let value = match lag {
        Some(lag) => lag.subtract(&value, column)?,
        None => value,
    };
    let param = to_param(&value, column)?;
    let op = if filter.inclusive || lag.is_some() { ">=" } else { ">" };
    Ok(Cond::new(format!("{} {op} ?", quote(column)), vec![param]))
}

/// A one-element Arrow array (a typed watermark) as a statement parameter.
fn to_param(value: &arrow::array::ArrayRef, column: &str) -> Result<Param> {
    use arrow::array::AsArray;
    use arrow::datatypes::*;
    Ok(match value.data_type() {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let v = arrow::compute::cast(value, &DataType::Int64)?;
            Param::Int(v.as_primitive::<Int64Type>().value(0))
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let v = arrow::compute::cast(value, &DataType::UInt64)?;
            Param::UInt(v.as_primitive::<UInt64Type>().value(0))
        }
        DataType::Float32 | DataType::Float64 => {
            let v = arrow::compute::cast(value, &DataType::Float64)?;
            Param::Float(v.as_primitive::<Float64Type>().value(0))
        }
        DataType::Date32 => {
            let days = value.as_primitive::<Date32Type>().value(0) as i64;
            Param::Text(datetime_literal(days * 86_400_000_000)[..10].to_owned())
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Param::Text(datetime_literal(value.as_primitive::<TimestampMicrosecondType>().value(0)))
        }
        DataType::Utf8 | DataType::Decimal128(..) => {
            Param::Text(arrow::util::display::array_value_to_string(value, 0)?)
        }
        other => {
            return Err(Error::user(format!(
                "watermark_column `{column}` is {other}; use an integer, decimal, date, time stamp or text column"
            )));
        }
    })
}
