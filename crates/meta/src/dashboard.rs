//! What `runner serve` reads and edits: runs newest first, a run's attempts,
//! pipelines with their last outcome, the audit history by filter, and the
//! controller rows it saves. Every list pages by key, never by OFFSET, so a
//! page costs the same with a hundred audit rows or a million.

use chrono::{DateTime, NaiveDate, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;
use weir_core::{ControllerRow, Error, Result};

use crate::MetaStore;
use crate::store::{AUDIT_COLUMNS, AuditRow, CONTROLLER_COLUMNS, controller_row, db_error};

/// One row of `run`, with what its attempts say while it is under way.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunRow {
    pub run_id: Uuid,
    pub run_date: NaiveDate,
    /// `running`, `success`, `failed`, `cancelled` or `abandoned`.
    pub status: String,
    pub host: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub heartbeat_at: DateTime<Utc>,
    /// A running run whose heartbeat is older than its lease: its runner is gone.
    pub stale: bool,
    pub pipelines: Option<i32>,
    pub succeeded: Option<i32>,
    pub failed: Option<i32>,
    pub skipped: Option<i32>,
    /// Rows read by its attempts so far.
    pub records_read: Option<i64>,
}

/// Which runs, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<String>,
    pub run_date: Option<NaiveDate>,
    /// Runs older than this one (the last of the page before).
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Which audit rows, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub pipeline: Option<String>,
    pub status: Option<String>,
    /// Run dates from, and to (both included).
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// Rows older than this `audit_id`.
    pub before: Option<i64>,
    /// At most this many (none: all, for a download).
    pub limit: Option<i64>,
}

/// A controller row with its last outcomes.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineSummary {
    #[serde(flatten)]
    pub row: ControllerRow,
    pub last_status: Option<String>,
    pub last_start: Option<DateTime<Utc>>,
    pub last_end: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_success: Option<DateTime<Utc>>,
    /// The committed watermark (a CDC pipeline's LSN, a topic's offsets).
    pub watermark: Option<String>,
    pub updated_at: DateTime<Utc>,
}

const RUN_COLUMNS: &str = "r.run_id, r.run_date, r.status, r.host, r.started_at, r.finished_at, r.heartbeat_at,
    (r.finished_at IS NULL AND r.heartbeat_at < now() - make_interval(secs => r.lease_seconds)) AS stale,
    r.pipelines, r.succeeded, r.failed, r.skipped,
    (SELECT sum(a.records_read)::bigint FROM audit a WHERE a.run_id = r.run_id) AS records_read";

impl MetaStore {
    /// Runs, newest first, by filter.
    pub async fn runs(&self, f: &RunFilter) -> Result<Vec<RunRow>> {
        let (before_at, before_id) = f.before.unzip();
        sqlx::query_as::<_, RunRow>(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS}
             FROM run r
             WHERE ($1::text IS NULL OR r.status = $1)
               AND ($2::date IS NULL OR r.run_date = $2)
               AND ($3::timestamptz IS NULL OR (r.started_at, r.run_id) < ($3, $4))
             ORDER BY r.started_at DESC, r.run_id DESC
             LIMIT $5"
        )))
        .bind(&f.status)
        .bind(f.run_date)
        .bind(before_at)
        .bind(before_id)
        .bind(f.limit)
        .fetch_all(self.db())
        .await
        .map_err(|e| db_error(e, "reading the runs"))
    }

    pub async fn run(&self, run_id: Uuid) -> Result<Option<RunRow>> {
        sqlx::query_as::<_, RunRow>(AssertSqlSafe(format!("SELECT {RUN_COLUMNS} FROM run r WHERE r.run_id = $1")))
            .bind(run_id)
            .fetch_optional(self.db())
            .await
            .map_err(|e| db_error(e, "reading the run"))
    }

    /// A run's attempts, in the order they started.
    pub async fn run_attempts(&self, run_id: Uuid) -> Result<Vec<AuditRow>> {
        sqlx::query_as::<_, AuditRow>(AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE run_id = $1 ORDER BY start_time, audit_id"
        )))
        .bind(run_id)
        .fetch_all(self.db())
        .await
        .map_err(|e| db_error(e, "reading the run's attempts"))
    }

    /// Audit rows by filter, newest first.
    pub async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditRow>> {
        sqlx::query_as::<_, AuditRow>(AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS}
             FROM audit
             WHERE ($1::text IS NULL OR pipeline_name = $1)
               AND ($2::text IS NULL OR status = $2)
               AND ($3::date IS NULL OR run_date >= $3)
               AND ($4::date IS NULL OR run_date <= $4)
               AND ($5::bigint IS NULL OR audit_id < $5)
             ORDER BY audit_id DESC
             LIMIT $6"
        )))
        .bind(&f.pipeline)
        .bind(&f.status)
        .bind(f.from)
        .bind(f.to)
        .bind(f.before)
        .bind(f.limit)
        .fetch_all(self.db())
        .await
        .map_err(|e| db_error(e, "reading the audit table"))
    }

    /// Audit rows by filter, newest first, read a page at a time as the
    /// stream is consumed: a download of the whole history holds one page.
    pub fn audit_stream(&self, f: &AuditFilter) -> BoxStream<'static, Result<AuditRow>> {
        const PAGE: i64 = 1000;
        let meta = self.clone();
        let first = AuditFilter { limit: Some(PAGE), ..f.clone() };
        let left = f.limit;
        futures::stream::try_unfold((Some(first), left), move |(next, left)| {
            let meta = meta.clone();
            async move {
                let Some(filter) = next else { return Ok::<_, Error>(None) };
                if left.is_some_and(|l| l <= 0) {
                    return Ok::<_, Error>(None);
                }
                let filter = AuditFilter { limit: Some(left.map_or(PAGE, |l| l.min(PAGE))), ..filter };
                let rows = meta.audit(&filter).await?;
                let left = left.map(|l| l - rows.len() as i64);
                let next = match rows.last() {
                    Some(last) if rows.len() as i64 == filter.limit.unwrap_or(PAGE) => {
                        Some(AuditFilter { before: Some(last.audit_id), ..filter })
                    }
                    _ => None,
                };
                Ok(Some((futures::stream::iter(rows.into_iter().map(Ok)), (next, left))))
            }
        })
        .try_flatten()
        .boxed()
    }

    /// Controller rows by name, after `after`, with their last outcomes.
    pub async fn pipeline_summaries(
        &self,
        names: &[String],
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PipelineSummary>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONTROLLER_COLUMNS}, c.updated_at,
                    l.status AS last_status, l.start_time AS last_start, l.end_time AS last_end,
                    l.error_message AS last_error, s.end_time AS last_success, w.value AS watermark
             FROM controller c
             LEFT JOIN LATERAL (SELECT status, start_time, end_time, error_message FROM audit a
                                WHERE a.pipeline_name = c.name AND a.operation = 'load'
                                ORDER BY a.start_time DESC LIMIT 1) l ON true
             LEFT JOIN LATERAL (SELECT end_time FROM audit a
                                WHERE a.pipeline_name = c.name AND a.status = 'success' AND a.operation = 'load'
                                ORDER BY a.start_time DESC LIMIT 1) s ON true
             LEFT JOIN watermark w ON w.pipeline_id = c.id
             WHERE (cardinality($1::text[]) = 0 OR c.name = ANY($1))
               AND ($2::text IS NULL OR c.name > $2)
             ORDER BY c.name
             LIMIT $3"
        )))
        .bind(names)
        .bind(after)
        .bind(limit)
        .fetch_all(self.db())
        .await
        .map_err(|e| db_error(e, "reading the pipelines"))?;
        rows.iter()
            .map(|r| {
                Ok(PipelineSummary {
                    row: controller_row(r)?,
                    last_status: r.try_get("last_status")?,
                    last_start: r.try_get("last_start")?,
                    last_end: r.try_get("last_end")?,
                    last_error: r.try_get("last_error")?,
                    last_success: r.try_get("last_success")?,
                    watermark: r.try_get("watermark")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(|e| db_error(e, "reading the pipelines"))
    }

    /// Create a controller row (`create`), or replace the one of that name.
    /// Returns the row as stored.
    pub async fn save_pipeline(&self, row: &ControllerRow, create: bool) -> Result<ControllerRow> {
        let values = "$1, $2, $3, $4, $5, $6, $7, $8, NULLIF($9, ''), $10, $11, $12, $13, $14, $15, $16, $17, $18";
        let sql = if create {
            format!(
                "INSERT INTO controller (name, source_type, source_connection, source_table, data_source,
                     destination_type, destination_connection, schema_name, destination_table, load_type,
                     watermark_column, primary_key, partition_by, options, depends_on, notify_emails, schedule, active)
                 VALUES ({values})
                 RETURNING {CONTROLLER_COLUMNS}"
            )
        } else {
            format!(
                "UPDATE controller SET (source_type, source_connection, source_table, data_source,
                     destination_type, destination_connection, schema_name, destination_table, load_type,
                     watermark_column, primary_key, partition_by, options, depends_on, notify_emails, schedule, active)
                     = ({})
                 WHERE name = $1
                 RETURNING {CONTROLLER_COLUMNS}",
                values.split_once(", ").map_or(values, |(_, rest)| rest)
            )
        };
        let saved = sqlx::query(AssertSqlSafe(sql))
            .bind(&row.name)
            .bind(&row.source_type)
            .bind(&row.source_connection)
            .bind(&row.source_table)
            .bind(&row.data_source)
            .bind(&row.destination_type)
            .bind(&row.destination_connection)
            .bind(&row.schema_name)
            .bind(&row.destination_table)
            .bind(&row.load_type)
            .bind(&row.watermark_column)
            .bind(&row.primary_key)
            .bind(&row.partition_by)
            .bind(&row.options)
            .bind(&row.depends_on)
            .bind(&row.notify_emails)
            .bind(&row.schedule)
            .bind(row.active)
            .fetch_optional(self.db())
            .await;
        match saved {
            Ok(Some(r)) => controller_row(&r).map_err(|e| db_error(e, "reading the saved pipeline")),
            Ok(None) => Err(Error::user(format!("no pipeline named `{}` in the controller table", row.name))),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => {
                Err(Error::user(format!("a pipeline named `{}` exists already", row.name)))
            }
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23514") => {
                Err(Error::user(format!("pipeline `{}`: {}", row.name, db.message())))
            }
            Err(e) => Err(db_error(e, "saving the pipeline")),
        }
    }

    /// Pause (`false`) or resume a pipeline. `false` if there is no such pipeline.
    pub async fn set_active(&self, name: &str, active: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE controller SET active = $2 WHERE name = $1")
            .bind(name)
            .bind(active)
            .execute(self.db())
            .await
            .map_err(|e| db_error(e, "pausing or resuming the pipeline"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Is the database there? (A page says so when it is not.)
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.db()).await.map_err(|e| db_error(e, "reaching the metadata database"))?;
        Ok(())
    }
}
