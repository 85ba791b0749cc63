use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Row};
use uuid::Uuid;
use weir_core::{ConnectionUrl, ControllerRow, Error, Result, Status, TableEntry};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// What `runner init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Migrations applied now, as `0001 metadata`.
    pub applied: Vec<String>,
    /// How many were already in place.
    pub already: usize,
}

/// An attempt starting: written as `running`.
#[derive(Debug, Clone)]
pub struct AttemptStart<'a> {
    pub pipeline_id: i64,
    pub pipeline_name: &'a str,
    pub run_id: Uuid,
    pub run_date: NaiveDate,
    pub attempt: i32,
    pub skip_load: bool,
}

/// An attempt ending.
#[derive(Debug, Clone)]
pub struct AttemptEnd {
    pub status: Status,
    pub records_read: Option<i64>,
    pub records_processed: Option<i64>,
    pub bytes_read: Option<i64>,
    pub watermark_before: Option<String>,
    pub watermark_after: Option<String>,
    /// What the source met on the way: `{"zero_dates": 3, "warnings": […]}`.
    pub details: Option<serde_json::Value>,
    /// Already redacted.
    pub error_message: Option<String>,
    pub error_domain: Option<String>,
}

impl AttemptEnd {
    /// An attempt that moved no data: failed (with the error's domain) or skipped.
    pub fn without_data(status: Status, message: String, domain: Option<String>) -> Self {
        Self {
            status,
            records_read: None,
            records_processed: None,
            bytes_read: None,
            watermark_before: None,
            watermark_after: None,
            details: None,
            error_message: Some(message),
            error_domain: domain,
        }
    }
}

/// One row of `audit`, as `runner audit` shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub audit_id: i64,
    pub pipeline_id: Option<i64>,
    pub pipeline_name: String,
    pub run_id: Uuid,
    pub run_date: NaiveDate,
    pub status: String,
    pub attempt: i32,
    pub start_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub records_read: Option<i64>,
    pub records_processed: Option<i64>,
    pub bytes_read: Option<i64>,
    pub watermark_before: Option<String>,
    pub watermark_after: Option<String>,
    pub heartbeat_at: DateTime<Utc>,
    pub error_message: Option<String>,
    /// `user`, `external` or `internal`, for a failed attempt.
    pub error_domain: Option<String>,
    /// `load` or `maintain`.
    pub operation: String,
    /// What the attempt met on the way (`audit.details`).
    pub details: Option<serde_json::Value>,
    /// The machine that ran it.
    pub host: Option<String>,
}

/// The columns of an [`AuditRow`], for `SELECT`s that read them.
pub(crate) const AUDIT_COLUMNS: &str = "audit_id, pipeline_id, pipeline_name, run_id, run_date, status, attempt,
    start_time, end_time, records_read, records_processed, bytes_read, watermark_before, watermark_after,
    heartbeat_at, error_message, error_domain, operation, details, host";

/// One row of `catalog`.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct CatalogRow {
    pub schema_name: String,
    pub table_name: String,
    pub format: String,
    pub location: String,
    pub connection: Option<String>,
    pub version: i64,
    pub columns: serde_json::Value,
    pub partition_by: Vec<String>,
    pub pipeline_name: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl CatalogRow {
    pub fn name(&self) -> String {
        format!("{}.{}", self.schema_name, self.table_name)
    }
}

/// A maintenance run on one lake table, as `audit` records it.
#[derive(Debug, Clone)]
pub struct MaintenanceRecord<'a> {
    pub table: &'a str,
    pub run_id: Uuid,
    pub run_date: NaiveDate,
    pub started: DateTime<Utc>,
    pub status: Status,
    pub files_changed: Option<i64>,
    pub details: Option<serde_json::Value>,
    /// Already redacted.
    pub error_message: Option<String>,
    pub error_domain: Option<String>,
}

/// The metadata database.
#[derive(Clone)]
pub struct MetaStore {
    pool: PgPool,
    /// Statements sent so far: the run loop's own cost, reported per run.
    queries: Arc<AtomicU64>,
}

impl MetaStore {
    /// Connect to the metadata database (`WEIR_DATABASE_URL`).
    pub async fn connect(url: &ConnectionUrl) -> Result<Self> {
        Self::connect_with(url, 8, Duration::from_secs(15)).await
    }

    /// Connect with a pool of `connections`, each request waiting at most
    /// `acquire_timeout` for one (a server answers "down" sooner than a run gives up).
    pub async fn connect_with(url: &ConnectionUrl, connections: u32, acquire_timeout: Duration) -> Result<Self> {
        let options = PgConnectOptions::from_str(url.expose())
            .map_err(|e| Error::user(format!("metadata database URL {url} is not valid: {e}")))?
            .application_name("weir");
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| db_error(e, &format!("connecting to the metadata database {url}")))?;
        Ok(Self { pool, queries: Arc::default() })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool, counting one statement.
    pub(crate) fn db(&self) -> &PgPool {
        self.queries.fetch_add(1, Ordering::Relaxed);
        &self.pool
    }

    /// Statements sent to the metadata database by this store (and its clones) so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Create or upgrade the metadata tables. Idempotent.
    pub async fn init(&self) -> Result<InitReport> {
        let before = self.applied_versions().await?;
        MIGRATOR.run(&self.pool).await.map_err(|e| Error::external(format!("applying metadata migrations: {e}")))?;
        let applied = MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration() && !before.contains(&m.version))
            .map(|m| format!("{:04} {}", m.version, m.description))
            .collect();
        Ok(InitReport { applied, already: before.len() })
    }

    async fn applied_versions(&self) -> Result<Vec<i64>> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(self.db())
            .await
            .map_err(|e| db_error(e, "reading the migration history"))?;
        if !exists {
            return Ok(Vec::new());
        }
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(self.db())
            .await
            .map_err(|e| db_error(e, "reading the migration history"))
    }

    /// Controller rows by name order: the active ones, or those named (active or not).
    pub async fn pipelines(&self, names: &[String], include_inactive: bool) -> Result<Vec<ControllerRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONTROLLER_COLUMNS}
             FROM controller
             WHERE (cardinality($1::text[]) = 0 OR name = ANY($1))
               AND (active OR $2 OR cardinality($1::text[]) > 0)
             ORDER BY name"
        )))
        .bind(names)
        .bind(include_inactive)
        .fetch_all(self.db())
        .await
        .map_err(|e| db_error(e, "reading the controller table"))?;
        rows.iter()
            .map(controller_row)
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(|e| db_error(e, "reading the controller table"))
    }

    /// Write an attempt as `running`; returns its `audit_id`.
    pub async fn start_attempt(&self, a: &AttemptStart<'_>) -> Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO audit (pipeline_id, pipeline_name, run_id, run_date, status, attempt,
                                skip_load, host)
             VALUES ($1, $2, $3, $4, 'running', $5, $6, $7)
             RETURNING audit_id",
        )
        .bind(a.pipeline_id)
        .bind(a.pipeline_name)
        .bind(a.run_id)
        .bind(a.run_date)
        .bind(a.attempt)
        .bind(a.skip_load)
        .bind(hostname())
        .fetch_one(self.db())
        .await
        .map_err(|e| db_error(e, "writing the audit row"))
    }

    /// Record a pipeline that did not start (bad configuration, failed dependency) in one row.
    pub async fn record_not_started(&self, a: &AttemptStart<'_>, end: &AttemptEnd) -> Result<i64> {
        let id = self.start_attempt(a).await?;
        self.finish_attempt(id, end).await?;
        Ok(id)
    }

    pub async fn finish_attempt(&self, audit_id: i64, end: &AttemptEnd) -> Result<()> {
        sqlx::query(
            "UPDATE audit SET status = $2, end_time = now(), heartbeat_at = now(),
                    records_read = $3, records_processed = $4, bytes_read = $5,
                    watermark_before = $6, watermark_after = $7, error_message = $8, error_domain = $9,
                    details = $10
             WHERE audit_id = $1",
        )
        .bind(audit_id)
        .bind(end.status.as_str())
        .bind(end.records_read)
        .bind(end.records_processed)
        .bind(end.bytes_read)
        .bind(&end.watermark_before)
        .bind(&end.watermark_after)
        .bind(&end.error_message)
        .bind(&end.error_domain)
        .bind(&end.details)
        .execute(self.db())
        .await
        .map_err(|e| db_error(e, "finishing the audit row"))?;
        Ok(())
    }

    /// The stored watermark of a pipeline.
    pub async fn watermark(&self, pipeline_id: i64) -> Result<Option<String>> {
        let v: Option<Option<String>> = sqlx::query_scalar("SELECT value FROM watermark WHERE pipeline_id = $1")
            .bind(pipeline_id)
            .fetch_optional(self.db())
            .await
            .map_err(|e| db_error(e, "reading the watermark"))?;
        Ok(v.flatten())
    }

    /// Store a pipeline's watermark after its data was committed.
    pub async fn save_watermark(
        &self,
        pipeline_id: i64,
        pipeline_name: &str,
        value: Option<&str>,
        run_id: Uuid,
        run_date: NaiveDate,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO watermark (pipeline_id, pipeline_name, value, run_id, run_date, updated_at)
             VALUES ($1, $2, $3, $4, $5, now())
             ON CONFLICT (pipeline_id) DO UPDATE
             SET pipeline_name = EXCLUDED.pipeline_name, value = EXCLUDED.value,
                 run_id = EXCLUDED.run_id, run_date = EXCLUDED.run_date, updated_at = now()",
        )
        .bind(pipeline_id)
        .bind(pipeline_name)
        .bind(value)
        .bind(run_id)
        .bind(run_date)
        .execute(self.db())
        .await
        .map_err(|e| db_error(e, "saving the watermark"))?;
        Ok(())
    }

    /// The next load sequence number (see `migrations/0002_catalog.sql`).
    pub async fn next_load_seq(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT nextval('load_seq')")
            .fetch_one(self.db())
            .await
            .map_err(|e| db_error(e, "drawing a load sequence number"))
    }

    /// Record (or update) a lake table a pipeline committed.
    pub async fn register_table(&self, entry: &TableEntry, pipeline_name: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO catalog (schema_name, table_name, format, location, connection, version, columns,
                                  partition_by, pipeline_name)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (schema_name, table_name) DO UPDATE
             SET format = EXCLUDED.format, location = EXCLUDED.location, connection = EXCLUDED.connection,
                 version = EXCLUDED.version, columns = EXCLUDED.columns, partition_by = EXCLUDED.partition_by,
                 pipeline_name = EXCLUDED.pipeline_name, updated_at = now()",
        )
        .bind(&entry.schema_name)
        .bind(&entry.table_name)
        .bind(entry.format)
        .bind(&entry.location)
        .bind(&entry.connection)
        .bind(entry.version)
        .bind(&entry.columns)
        .bind(&entry.partition_by)
        .bind(pipeline_name)
        .execute(self.db())
        .await
        .map_err(|e| db_error(e, "registering the table in the catalog"))?;
        Ok(())
    }

    /// The catalog, by name.
    pub async fn catalog(&self) -> Result<Vec<CatalogRow>> {
        sqlx::query_as::<_, CatalogRow>(
            "SELECT schema_name, table_name, format, location, connection, version, columns, partition_by,
                    pipeline_name, updated_at
             FROM catalog ORDER BY schema_name, table_name",
        )
        .fetch_all(self.db())
        .await
        .map_err(|e| db_error(e, "reading the catalog"))
    }

    /// Record a table's new version after maintenance.
    pub async fn set_table_version(&self, schema_name: &str, table_name: &str, version: i64) -> Result<()> {
        sqlx::query("UPDATE catalog SET version = $3, updated_at = now() WHERE schema_name = $1 AND table_name = $2")
            .bind(schema_name)
            .bind(table_name)
            .bind(version)
            .execute(self.db())
            .await
            .map_err(|e| db_error(e, "updating the catalog"))?;
        Ok(())
    }

    /// Write one finished maintenance run to `audit` (`operation = 'maintain'`,
    /// `pipeline_name` the table's name).
    pub async fn record_maintenance(&self, m: &MaintenanceRecord<'_>) -> Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO audit (pipeline_name, run_id, run_date, status, start_time, end_time, records_processed,
                                details, error_message, error_domain, operation, host)
             VALUES ($1, $2, $3, $4, $5, now(), $6, $7, $8, $9, 'maintain', $10)
             RETURNING audit_id",
        )
        .bind(m.table)
        .bind(m.run_id)
        .bind(m.run_date)
        .bind(m.status.as_str())
        .bind(m.started)
        .bind(m.files_changed)
        .bind(&m.details)
        .bind(&m.error_message)
        .bind(&m.error_domain)
        .bind(hostname())
        .fetch_one(self.db())
        .await
        .map_err(|e| db_error(e, "writing the maintenance audit row"))
    }

    /// The last `last` audit rows, newest first, of one pipeline or all.
    pub async fn audit_history(&self, pipeline: Option<&str>, last: i64) -> Result<Vec<AuditRow>> {
        sqlx::query_as::<_, AuditRow>(AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS}
             FROM audit
             WHERE $1::text IS NULL OR pipeline_name = $1
             ORDER BY audit_id DESC
             LIMIT $2"
        )))
        .bind(pipeline)
        .bind(last)
        .fetch_all(self.db())
        .await
        .map_err(|e| db_error(e, "reading the audit table"))
    }
}

/// The columns of a [`ControllerRow`].
pub(crate) const CONTROLLER_COLUMNS: &str = "id, name, source_type, source_connection, source_table, data_source,
    destination_type, destination_connection, schema_name, COALESCE(destination_table, '') AS destination_table,
    load_type, watermark_column, primary_key, partition_by, options, depends_on, notify_emails, schedule, active";

pub(crate) fn controller_row(r: &sqlx::postgres::PgRow) -> std::result::Result<ControllerRow, sqlx::Error> {
    Ok(ControllerRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        source_type: r.try_get("source_type")?,
        source_connection: r.try_get("source_connection")?,
        source_table: r.try_get("source_table")?,
        data_source: r.try_get("data_source")?,
        destination_type: r.try_get("destination_type")?,
        destination_connection: r.try_get("destination_connection")?,
        schema_name: r.try_get("schema_name")?,
        destination_table: r.try_get("destination_table")?,
        load_type: r.try_get("load_type")?,
        watermark_column: r.try_get("watermark_column")?,
        primary_key: r.try_get("primary_key")?,
        partition_by: r.try_get("partition_by")?,
        options: r.try_get("options")?,
        depends_on: r.try_get("depends_on")?,
        notify_emails: r.try_get("notify_emails")?,
        schedule: r.try_get("schedule")?,
        active: r.try_get("active")?,
    })
}

pub(crate) fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// A database error as a Weir error: connection trouble is transient, a missing
/// metadata table means `runner init` was not run.
pub(crate) fn db_error(e: sqlx::Error, doing: &str) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => {
            Error::user(format!("{doing}: {db}; the metadata tables are missing: run `runner init` first"))
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            Error::transient(format!("{doing}: {e}"))
        }
        sqlx::Error::Database(db)
            if db.code().as_deref().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")) =>
        {
            Error::transient(format!("{doing}: {e}"))
        }
        sqlx::Error::Configuration(_) => Error::user(format!("{doing}: {e}")),
        _ => Error::external(format!("{doing}: {e}")),
    }
}
