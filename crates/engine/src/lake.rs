//! The lake side of the engine: the catalog of tables the Delta sink wrote,
//! SQL over them, and their maintenance (each run recorded in `audit`).

use std::time::Instant;

use chrono::Utc;
use serde::Serialize;
use tracing::{info, warn};
use url::Url;
use uuid::Uuid;
use weir_core::Status;
use weir_core::{ConnectionUrl, Error, Redactor, Result, RunDate};
use weir_delta::{Commit, Lake, MaintainOptions, MaintainReport, QueryResult, QueryTable, Registration};
use weir_meta::{CatalogRow, MaintenanceRecord};

use crate::run::{Engine, EnvLookup};

pub use weir_delta::Dialect;

/// The variable that names the default lake.
pub const LAKE_URI_VAR: &str = "WEIR_LAKE_URI";

/// `WEIR_LAKE_URI`, else a `lake/` folder in the working directory.
pub(crate) fn default_lake(env: &EnvLookup) -> Result<ConnectionUrl> {
    match env(LAKE_URI_VAR).filter(|v| !v.trim().is_empty()) {
        Some(uri) => ConnectionUrl::parse(LAKE_URI_VAR, uri.trim()),
        None => {
            let dir = std::env::current_dir()
                .map_err(|e| Error::user(format!("the working directory cannot be read ({e}); set {LAKE_URI_VAR}")))?
                .join("lake");
            let url = Url::from_directory_path(&dir).map_err(|()| {
                Error::user(format!("{} is not a usable lake folder; set {LAKE_URI_VAR}", dir.display()))
            })?;
            ConnectionUrl::parse(LAKE_URI_VAR, url.as_str())
        }
    }
}

/// How maintenance of one table ended.
#[derive(Debug, Clone, Serialize)]
pub struct MaintainOutcome {
    pub table: String,
    pub report: Option<MaintainReport>,
    /// Redacted.
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl Engine {
    /// Every table in the catalog.
    pub async fn catalog(&self) -> Result<Vec<CatalogRow>> {
        self.meta().catalog().await
    }

    /// The DDL that registers the catalog's tables in Spark or Trino.
    pub async fn catalog_ddl(&self, dialect: Dialect) -> Result<String> {
        let rows = self.catalog().await?;
        let tables: Vec<Registration<'_>> = rows
            .iter()
            .map(|r| Registration { schema_name: &r.schema_name, table_name: &r.table_name, location: &r.location })
            .collect();
        Ok(weir_delta::ddl(&tables, dialect))
    }

    /// Run SQL over the catalog's tables.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        let mut redactor = self.redactor().clone();
        let rows = self.catalog().await?;
        let tables: Vec<QueryTable> = rows
            .iter()
            .map(|r| QueryTable {
                schema_name: r.schema_name.clone(),
                table_name: r.table_name.clone(),
                location: self.locate(r, &mut redactor),
            })
            .collect();
        weir_delta::query(&tables, sql).await.map_err(|e| e.map_message(|m| redactor.redact(m)))
    }

    /// The last `limit` commits of a catalog table (`schema.table`), newest first.
    pub async fn table_history(&self, name: &str, limit: usize) -> Result<Vec<Commit>> {
        let rows = self.catalog().await?;
        let row = rows
            .iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| Error::user(format!("table `{name}` is not in the catalog")))?;
        let mut redactor = self.redactor().clone();
        let location = self.locate(row, &mut redactor)?;
        weir_delta::history(&location, limit).await.map_err(|e| e.map_message(|m| redactor.redact(m)))
    }

    /// Compact and vacuum the named tables (`schema.table`), or all of them.
    /// Each table's outcome is recorded in `audit`; one failing does not stop the others.
    pub async fn maintain(&self, names: &[String], options: &MaintainOptions) -> Result<Vec<MaintainOutcome>> {
        let rows = self.catalog().await?;
        let unknown: Vec<&str> =
            names.iter().filter(|n| !rows.iter().any(|r| &r.name() == *n)).map(String::as_str).collect();
        if !unknown.is_empty() {
            return Err(Error::user(format!(
                "not in the catalog: {}; `runner catalog` lists the tables",
                unknown.join(", ")
            )));
        }
        let run_id = Uuid::new_v4();
        let mut outcomes = Vec::new();
        for row in rows.iter().filter(|r| names.is_empty() || names.contains(&r.name())) {
            let name = row.name();
            let mut redactor = self.redactor().clone();
            let started_at = Utc::now();
            let started = Instant::now();
            let result = match self.locate(row, &mut redactor) {
                Ok(location) => weir_delta::maintain(&location, options).await,
                Err(e) => Err(e),
            };
            let (status, report, error) = match result {
                Ok(report) => {
                    info!(table = %name, ?report, "maintained");
                    self.meta().set_table_version(&row.schema_name, &row.table_name, report.version).await?;
                    (Status::Success, Some(report), None)
                }
                Err(e) => {
                    let message = redactor.redact(&format!("table `{name}`: {e}"));
                    warn!(table = %name, error = %message, "maintenance failed");
                    (Status::Failed, None, Some((message, e.domain().to_string())))
                }
            };
            let record = MaintenanceRecord {
                table: &name,
                run_id,
                run_date: RunDate::today_utc().date(),
                started: started_at,
                status,
                files_changed: report.as_ref().map(|r| (r.files_compacted + r.files_vacuumed) as i64),
                details: report.as_ref().and_then(|r| serde_json::to_value(r).ok()),
                error_message: error.as_ref().map(|(m, _)| m.clone()),
                error_domain: error.as_ref().map(|(_, d)| d.clone()),
            };
            self.meta().record_maintenance(&record).await?;
            outcomes.push(MaintainOutcome {
                table: name,
                report,
                error: error.map(|(m, _)| m),
                duration_ms: started.elapsed().as_millis() as u64,
            });
        }
        Ok(outcomes)
    }

    /// Where a catalog table is, with the credentials of its connection.
    fn locate(&self, row: &CatalogRow, redactor: &mut Redactor) -> Result<weir_delta::TableLocation> {
        let conn = match &row.connection {
            Some(name) => self.resolve(name, redactor)?,
            None => self.default_lake(redactor)?,
        };
        Lake::parse(&conn)?.locate(&row.location)
    }
}
