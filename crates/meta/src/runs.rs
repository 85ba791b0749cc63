//! Runs, pipeline leases and completion emails (`migrations/0003_runs.sql`).
//!
//! Several runners may share one metadata database. Each writes a `run` row
//! and heartbeats it; before running a pipeline it claims the pipeline's row in
//! `pipeline_lease`, which only one runner can hold. A runner that dies stops
//! heartbeating: its lease expires and the next runner takes the pipeline over,
//! marking the dead runner's attempt `abandoned`.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use uuid::Uuid;
use weir_core::Result;

use crate::MetaStore;
use crate::store::{db_error, hostname};

/// A run starting.
#[derive(Debug, Clone)]
pub struct RunStart {
    pub run_id: Uuid,
    pub run_date: NaiveDate,
    pub concurrency: u32,
    /// A runner silent for this long is dead.
    pub lease: Duration,
}

/// A run ending.
#[derive(Debug, Clone)]
pub struct RunEnd {
    /// `success`, `failed` or `cancelled`.
    pub status: &'static str,
    pub pipelines: i32,
    pub succeeded: i32,
    pub failed: i32,
    pub skipped: i32,
}

/// An attempt found `running` whose runner is gone, now `abandoned`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abandoned {
    pub pipeline_name: String,
    pub run_id: Uuid,
    pub host: Option<String>,
    pub heartbeat_at: DateTime<Utc>,
}

/// The answer to "may this run load this pipeline now?".
#[derive(Debug, Clone)]
pub enum Claim {
    /// Yes; the lease is this run's until released. `took_over` is set when the
    /// previous holder's lease had expired (its runner died).
    Claimed { took_over: Vec<Abandoned> },
    /// Another live runner holds it; ask again later.
    Held { run_id: Option<Uuid>, host: Option<String> },
    /// Another runner loaded it for the same date while this run was under way.
    Done(DoneElsewhere),
}

/// A load of the same pipeline and date by a run that overlapped this one.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DoneElsewhere {
    pub run_id: Uuid,
    pub host: Option<String>,
    pub attempt: i32,
    pub records_read: Option<i64>,
    pub records_processed: Option<i64>,
    pub watermark_after: Option<String>,
    pub duration_ms: Option<i64>,
}

/// A completion email, sent or not.
#[derive(Debug, Clone)]
pub struct NotificationRecord<'a> {
    pub run_id: Uuid,
    pub sent: bool,
    pub recipients: &'a [String],
    pub subject: &'a str,
    /// Already redacted.
    pub error_message: Option<&'a str>,
}

/// The `SET` of an `UPDATE audit a` that marks attempts `abandoned`; the
/// parameter `$cause` says why ("(killed, or its machine lost)").
macro_rules! abandon {
    ($cause:literal) => {
        concat!(
            "status = 'abandoned', end_time = now(), error_domain = 'external',
             error_message = 'abandoned: the runner' || coalesce(' on ' || a.host, '')
                 || ' stopped heartbeating at '
                 || to_char(a.heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC '
                 || ",
            $cause,
            "::text || '; nothing it had not committed is visible'"
        )
    };
}

impl MetaStore {
    /// Write the run's row as `running`.
    pub async fn start_run(&self, r: &RunStart) -> Result<()> {
        sqlx::query(
            "INSERT INTO run (run_id, run_date, host, pid, concurrency, lease_seconds)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(r.run_id)
        .bind(r.run_date)
        .bind(hostname())
        .bind(std::process::id() as i32)
        .bind(r.concurrency as i32)
        .bind(lease_seconds(r.lease))
        .execute(self.db())
        .await
        .map_err(|e| db_error(e, "writing the run row"))?;
        Ok(())
    }

    /// Crash recovery: runs whose heartbeat is older than their lease become
    /// `abandoned`, and so do the attempts they left `running` (as do attempts
    /// older than `lease` that belong to no live run).
    pub async fn recover(&self, lease: Duration) -> Result<Vec<Abandoned>> {
        let rows = sqlx::query(concat!(
            "WITH dead AS (
                 UPDATE run SET status = 'abandoned', finished_at = heartbeat_at
                 WHERE finished_at IS NULL AND heartbeat_at < now() - make_interval(secs => lease_seconds)
                 RETURNING run_id
             )
             UPDATE audit a SET ",
            abandon!("$2"),
            "
             WHERE a.status = 'running'
               AND (a.run_id IN (SELECT run_id FROM dead)
                    OR (a.heartbeat_at < now() - make_interval(secs => $1)
                        AND NOT EXISTS (SELECT 1 FROM run r WHERE r.run_id = a.run_id AND r.finished_at IS NULL)))
             RETURNING a.pipeline_name, a.run_id, a.host, a.heartbeat_at"
        ))
        .bind(lease_seconds(lease))
        .bind("(killed, or its machine lost)")
        .fetch_all(self.db())
        .await
        .map_err(|e| db_error(e, "marking dead runs abandoned"))?;
        rows.iter().map(abandoned).collect()
    }

    /// Prove the run is alive: its row, its running attempts and its leases.
    /// Returns the pipelines whose lease the run still holds.
    pub async fn heartbeat_run(&self, run_id: Uuid, lease: Duration) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "WITH r AS (UPDATE run SET heartbeat_at = now() WHERE run_id = $1),
                  a AS (UPDATE audit SET heartbeat_at = now() WHERE run_id = $1 AND status = 'running')
             UPDATE pipeline_lease SET expires_at = now() + make_interval(secs => $2)
             WHERE run_id = $1
             RETURNING pipeline_id",
        )
        .bind(run_id)
        .bind(lease_seconds(lease))
        .fetch_all(self.db())
        .await
        .map_err(|e| db_error(e, "heartbeating the run"))
    }

    /// Claim a pipeline for this run (see [`Claim`]).
    pub async fn claim(
        &self,
        pipeline_id: i64,
        pipeline_name: &str,
        run_id: Uuid,
        run_date: NaiveDate,
        lease: Duration,
        once_per_date: bool,
    ) -> Result<Claim> {
        let host = hostname();
        let inserted = sqlx::query(
            "INSERT INTO pipeline_lease (pipeline_id, pipeline_name, run_id, host, expires_at)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
             ON CONFLICT (pipeline_id) DO NOTHING",
        )
        .bind(pipeline_id)
        .bind(pipeline_name)
        .bind(run_id)
        .bind(&host)
        .bind(lease_seconds(lease))
        .execute(self.db())
        .await
        .map_err(|e| db_error(e, "claiming the pipeline"))?
        .rows_affected()
            == 1;
        let mut took_over = Vec::new();
        if !inserted {
            // Held: by a live runner, or by a dead one whose lease expired.
            let previous: Option<(Uuid, Option<String>)> = sqlx::query_as(
                "WITH old AS (
                     SELECT pipeline_id, run_id, host FROM pipeline_lease
                     WHERE pipeline_id = $1 AND expires_at < now() FOR UPDATE
                 )
                 UPDATE pipeline_lease l
                 SET run_id = $2, host = $3, acquired_at = now(), expires_at = now() + make_interval(secs => $4)
                 FROM old WHERE l.pipeline_id = old.pipeline_id
                 RETURNING old.run_id, old.host",
            )
            .bind(pipeline_id)
            .bind(run_id)
            .bind(&host)
            .bind(lease_seconds(lease))
            .fetch_optional(self.db())
            .await
            .map_err(|e| db_error(e, "taking over an expired lease"))?;
            let Some((dead_run, _)) = previous else {
                let holder: Option<(Uuid, Option<String>)> =
                    sqlx::query_as("SELECT run_id, host FROM pipeline_lease WHERE pipeline_id = $1")
                        .bind(pipeline_id)
                        .fetch_optional(self.db())
                        .await
                        .map_err(|e| db_error(e, "reading the pipeline's lease"))?;
                let (run_id, host) = holder.map_or((None, None), |(r, h)| (Some(r), h));
                return Ok(Claim::Held { run_id, host });
            };
            let rows = sqlx::query(concat!(
                "UPDATE audit a SET ",
                abandon!("$3"),
                " WHERE pipeline_id = $1 AND run_id = $2 AND status = 'running'
                 RETURNING pipeline_name, run_id, host, heartbeat_at"
            ))
            .bind(pipeline_id)
            .bind(dead_run)
            .bind("and its lease expired")
            .fetch_all(self.db())
            .await
            .map_err(|e| db_error(e, "marking the dead runner's attempt abandoned"))?;
            took_over = rows.iter().map(abandoned).collect::<Result<_>>()?;
        }

        if !once_per_date {
            return Ok(Claim::Claimed { took_over });
        }
        // Holding the lease, look for a load by a run that overlapped this one:
        // its audit row was written before it released the lease, so it shows.
        let done: Option<DoneElsewhere> = sqlx::query_as(
            "SELECT a.run_id, a.host, a.attempt, a.records_read, a.records_processed, a.watermark_after,
                    (extract(epoch FROM a.end_time - a.start_time) * 1000)::bigint AS duration_ms
             FROM audit a JOIN run r ON r.run_id = a.run_id
             WHERE a.pipeline_id = $1 AND a.run_date = $2 AND a.run_id <> $3
               AND a.operation = 'load' AND a.status = 'success' AND NOT a.skip_load
               AND (r.finished_at IS NULL OR r.finished_at >= (SELECT started_at FROM run WHERE run_id = $3))
             ORDER BY a.audit_id DESC
             LIMIT 1",
        )
        .bind(pipeline_id)
        .bind(run_date)
        .bind(run_id)
        .fetch_optional(self.db())
        .await
        .map_err(|e| db_error(e, "looking for a load by another runner"))?;
        match done {
            Some(done) => {
                self.release(pipeline_id, run_id).await?;
                Ok(Claim::Done(done))
            }
            None => Ok(Claim::Claimed { took_over }),
        }
    }

    /// A long-lived attempt's progress (a stream session): rows, bytes and
    /// position so far, and a heartbeat.
    pub async fn progress_attempt(
        &self,
        audit_id: i64,
        records_read: i64,
        records_processed: i64,
        bytes_read: i64,
        watermark_after: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE audit SET heartbeat_at = now(), records_read = $2, records_processed = $3, bytes_read = $4,
                    watermark_after = $5
             WHERE audit_id = $1",
        )
        .bind(audit_id)
        .bind(records_read)
        .bind(records_processed)
        .bind(bytes_read)
        .bind(watermark_after)
        .execute(self.db())
        .await
        .map_err(|e| db_error(e, "recording the stream's progress"))?;
        Ok(())
    }

    /// Running attempts' rows so far, `(audit_id, records_read)`, in one statement.
    pub async fn progress_rows(&self, rows: &[(i64, i64)]) -> Result<()> {
        let (ids, counts): (Vec<i64>, Vec<i64>) = rows.iter().copied().unzip();
        sqlx::query(
            "UPDATE audit a SET records_read = v.rows
             FROM unnest($1::bigint[], $2::bigint[]) AS v(id, rows)
             WHERE a.audit_id = v.id AND a.status = 'running'",
        )
        .bind(ids)
        .bind(counts)
        .execute(self.db())
        .await
        .map_err(|e| db_error(e, "recording the attempts' progress"))?;
        Ok(())
    }

    /// Give a pipeline's lease back.
    pub async fn release(&self, pipeline_id: i64, run_id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM pipeline_lease WHERE pipeline_id = $1 AND run_id = $2")
            .bind(pipeline_id)
            .bind(run_id)
            .execute(self.db())
            .await
            .map_err(|e| db_error(e, "releasing the pipeline's lease"))?;
        Ok(())
    }

    /// Finish the run's row, with the statements the run sent to this database,
    /// and give back any lease it still holds.
    pub async fn finish_run(&self, run_id: Uuid, end: &RunEnd) -> Result<()> {
        // Counts itself: the statement below is the run's last.
        let queries = self.queries() as i64 + 1;
        sqlx::query(
            "WITH leases AS (DELETE FROM pipeline_lease WHERE run_id = $1)
             UPDATE run SET status = $2, finished_at = now(), heartbeat_at = now(), pipelines = $3,
                    succeeded = $4, failed = $5, skipped = $6, metadata_queries = $7
             WHERE run_id = $1",
        )
        .bind(run_id)
        .bind(end.status)
        .bind(end.pipelines)
        .bind(end.succeeded)
        .bind(end.failed)
        .bind(end.skipped)
        .bind(queries)
        .execute(self.db())
        .await
        .map_err(|e| db_error(e, "finishing the run row"))?;
        Ok(())
    }

    /// Record a completion email, sent or not.
    pub async fn record_notification(&self, n: &NotificationRecord<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO notification (run_id, status, recipients, subject, error_message)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(n.run_id)
        .bind(if n.sent { "sent" } else { "failed" })
        .bind(n.recipients)
        .bind(n.subject)
        .bind(n.error_message)
        .execute(self.db())
        .await
        .map_err(|e| db_error(e, "recording the completion email"))?;
        Ok(())
    }
}

fn lease_seconds(lease: Duration) -> i32 {
    lease.as_secs().clamp(1, i32::MAX as u64) as i32
}

fn abandoned(r: &sqlx::postgres::PgRow) -> Result<Abandoned> {
    let get = || -> std::result::Result<Abandoned, sqlx::Error> {
        Ok(Abandoned {
            pipeline_name: r.try_get("pipeline_name")?,
            run_id: r.try_get("run_id")?,
            host: r.try_get("host")?,
            heartbeat_at: r.try_get("heartbeat_at")?,
        })
    };
    get().map_err(|e| db_error(e, "reading abandoned attempts"))
}
