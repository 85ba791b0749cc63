//! The JSON API (`/api/…`): the same runs, pipelines, audit, catalog, query
//! and streams as the pages, for scripts. `/api/openapi.json` describes it.

use std::collections::HashMap;
use std::time::Duration;

use arrow::array::RecordBatch;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;
use weir_core::{ControllerRow, Domain, Error, Result, RunDate};
use weir_engine::{Commit, Cron, SlotReport};
use weir_meta::{AuditFilter, AuditRow, CatalogRow, PipelineSummary, RunFilter, RunRow};

use crate::state::AppState;

/// A Weir error as an answer: the user's fault is 400, a server that is down
/// (the metadata database) 503 with `Retry-After`, our bug 500.
pub(crate) struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0.domain() {
            Domain::User => StatusCode::BAD_REQUEST,
            Domain::External => StatusCode::SERVICE_UNAVAILABLE,
            Domain::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = (status, Json(json!({ "error": self.0.message() }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

pub(crate) fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": what }))).into_response()
}

type ApiResult = std::result::Result<Response, ApiError>;

/// `GET /healthz`: 200 when the metadata database answers, else 503.
pub(crate) async fn health(State(s): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(3), s.meta.ping()).await {
        Ok(Ok(())) => Json(json!({ "status": "ok" })).into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "degraded", "error": e.message() })))
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "degraded", "error": "the metadata database did not answer within 3 s" })),
        )
            .into_response(),
    }
}

pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("../assets/openapi.json")).into_response()
}

// ---- runs

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunsParams {
    pub status: Option<String>,
    pub date: Option<String>,
    pub before: Option<String>,
    pub limit: Option<i64>,
}

impl RunsParams {
    pub fn filter(&self) -> Result<RunFilter> {
        let date = match self.date.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            Some(d) => Some(RunDate::parse(d)?.date()),
            None => None,
        };
        Ok(RunFilter {
            status: self.status.clone().filter(|s| !s.is_empty()),
            run_date: date,
            before: self.before.as_deref().filter(|b| !b.is_empty()).map(parse_run_cursor).transpose()?,
            limit: self.limit.unwrap_or(50).clamp(1, 500),
        })
    }
}

/// A run's place in the newest-first order: `<started_at µs>~<run_id>`.
pub(crate) fn run_cursor(r: &RunRow) -> String {
    format!("{}~{}", r.started_at.timestamp_micros(), r.run_id)
}

fn parse_run_cursor(s: &str) -> Result<(DateTime<Utc>, Uuid)> {
    let bad = || Error::user(format!("before `{s}` is not a cursor this server gave"));
    let (micros, id) = s.split_once('~').ok_or_else(bad)?;
    let at = micros.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(bad)?;
    Ok((at, id.parse().map_err(|_| bad())?))
}

pub(crate) async fn runs(State(s): State<AppState>, Query(p): Query<RunsParams>) -> ApiResult {
    let filter = p.filter()?;
    let runs = s.meta.runs(&filter).await?;
    let next = (runs.len() as i64 == filter.limit).then(|| runs.last().map(run_cursor)).flatten();
    Ok(Json(json!({ "runs": runs, "next": next })).into_response())
}

pub(crate) async fn run(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let Ok(id) = id.parse::<Uuid>() else { return Ok(not_found(format!("`{id}` is not a run id"))) };
    let Some(run) = s.meta.run(id).await? else { return Ok(not_found(format!("no run {id}"))) };
    let attempts = s.meta.run_attempts(id).await?;
    Ok(Json(json!({ "run": run, "attempts": attempts })).into_response())
}

// ---- pipelines

/// A pipeline with its next scheduled time.
#[derive(Debug, Serialize)]
pub(crate) struct PipelineView {
    #[serde(flatten)]
    pub summary: PipelineSummary,
    /// When `runner schedule` runs it next (its cron), if it has a schedule.
    pub next_run: Option<DateTime<Utc>>,
}

pub(crate) fn view(summary: PipelineSummary) -> PipelineView {
    let next_run =
        summary.row.schedule.as_deref().and_then(|expr| Cron::parse(expr).ok()).and_then(|c| c.next_after(Utc::now()));
    PipelineView { summary, next_run }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PipelinesParams {
    pub after: Option<String>,
    pub limit: Option<i64>,
}

pub(crate) async fn pipelines(State(s): State<AppState>, Query(p): Query<PipelinesParams>) -> ApiResult {
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let rows = s.meta.pipeline_summaries(&[], p.after.as_deref().filter(|a| !a.is_empty()), limit).await?;
    let next = (rows.len() as i64 == limit).then(|| rows.last().map(|r| r.row.name.clone())).flatten();
    let views: Vec<PipelineView> = rows.into_iter().map(view).collect();
    Ok(Json(json!({ "pipelines": views, "next": next })).into_response())
}

/// A pipeline and its last attempts, or `None`.
pub(crate) async fn pipeline_with_history(
    s: &AppState,
    name: &str,
    last: i64,
) -> Result<Option<(PipelineView, Vec<AuditRow>)>> {
    let Some(summary) = s.meta.pipeline_summaries(&[name.to_owned()], None, 1).await?.pop() else {
        return Ok(None);
    };
    let history =
        s.meta.audit(&AuditFilter { pipeline: Some(name.to_owned()), limit: Some(last), ..Default::default() }).await?;
    Ok(Some((view(summary), history)))
}

pub(crate) async fn pipeline(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    match pipeline_with_history(&s, &name, 50).await? {
        Some((view, history)) => Ok(Json(json!({ "pipeline": view, "history": history })).into_response()),
        None => Ok(not_found(format!("no pipeline named `{name}`"))),
    }
}

/// A controller row as the API and the edit form send it. Lists may be null
/// ("none"); `name` may be left out of an update.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PipelineInput {
    pub name: Option<String>,
    pub source_type: String,
    pub source_connection: Option<String>,
    pub source_table: Option<String>,
    pub data_source: Option<String>,
    pub destination_type: Option<String>,
    pub destination_connection: Option<String>,
    pub schema_name: Option<String>,
    pub destination_table: Option<String>,
    pub load_type: Option<String>,
    pub watermark_column: Option<String>,
    pub primary_key: Option<Vec<String>>,
    pub partition_by: Option<Vec<String>>,
    pub options: Option<Value>,
    pub depends_on: Option<Vec<String>>,
    pub notify_emails: Option<Vec<String>>,
    pub schedule: Option<String>,
    pub active: Option<bool>,
}

impl PipelineInput {
    /// The row it describes, named `name`.
    pub fn into_row(self, name: &str) -> Result<ControllerRow> {
        if let Some(n) = &self.name
            && n != name
        {
            return Err(Error::user(format!(
                "`name` is `{n}` but the pipeline is `{name}`: a pipeline is not renamed (its audit and watermark \
                 keep its name); create a new one"
            )));
        }
        let text = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let list = |v: Option<Vec<String>>| -> Vec<String> {
            v.unwrap_or_default().into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
        };
        let options = match self.options {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => return Err(Error::user("options: a JSON object")),
        };
        Ok(ControllerRow {
            id: 0,
            name: name.to_owned(),
            source_type: self.source_type.trim().to_owned(),
            source_connection: text(self.source_connection),
            source_table: text(self.source_table),
            data_source: text(self.data_source),
            destination_type: text(self.destination_type).unwrap_or_else(|| "postgres".into()),
            destination_connection: text(self.destination_connection),
            schema_name: text(self.schema_name).unwrap_or_else(|| "public".into()),
            destination_table: text(self.destination_table).unwrap_or_default(),
            load_type: text(self.load_type).unwrap_or_else(|| "full".into()),
            watermark_column: text(self.watermark_column),
            primary_key: list(self.primary_key),
            partition_by: list(self.partition_by),
            options,
            depends_on: list(self.depends_on),
            notify_emails: list(self.notify_emails),
            schedule: text(self.schedule),
            active: self.active.unwrap_or(true),
        })
    }
}

/// Check a row as `runner check` does, then store it.
pub(crate) async fn save(s: &AppState, row: ControllerRow, create: bool) -> Result<ControllerRow> {
    s.engine.check_row(&row).await?;
    s.meta.save_pipeline(&row, create).await
}

pub(crate) async fn pipeline_create(State(s): State<AppState>, body: Body) -> ApiResult {
    let input: PipelineInput = json_body(body).await?;
    let name = input.name.clone().ok_or_else(|| Error::user("name: missing"))?;
    let row = input.into_row(&name)?;
    let saved = save(&s, row, true).await?;
    Ok((StatusCode::CREATED, Json(saved)).into_response())
}

pub(crate) async fn pipeline_update(State(s): State<AppState>, Path(name): Path<String>, body: Body) -> ApiResult {
    let input: PipelineInput = json_body(body).await?;
    let row = input.into_row(&name)?;
    let saved = save(&s, row, false).await?;
    Ok(Json(saved).into_response())
}

pub(crate) async fn pipeline_pause(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    set_active(&s, &name, false).await
}

pub(crate) async fn pipeline_resume(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    set_active(&s, &name, true).await
}

async fn set_active(s: &AppState, name: &str, active: bool) -> ApiResult {
    if !s.meta.set_active(name, active).await? {
        return Ok(not_found(format!("no pipeline named `{name}`")));
    }
    Ok(Json(json!({ "name": name, "active": active })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TriggerInput {
    /// 20250323 or 2025-03-23; today (UTC) when absent.
    pub date: Option<String>,
}

/// Start a run of one pipeline, as `runner run -p NAME --date D` would.
pub(crate) async fn trigger(s: &AppState, name: &str, date: Option<&str>) -> Result<Option<Uuid>> {
    if s.meta.pipeline_summaries(&[name.to_owned()], None, 1).await?.is_empty() {
        return Ok(None);
    }
    let date = match date.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => RunDate::parse(d)?,
        None => RunDate::today_utc(),
    };
    let run_id = s.runs.trigger(&s.engine, name, date)?;
    // Answer once the run's row is there, so that its page exists when a browser follows the answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.meta.run(run_id).await?.is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Some(run_id))
}

pub(crate) async fn pipeline_trigger(State(s): State<AppState>, Path(name): Path<String>, body: Body) -> ApiResult {
    let bytes = axum::body::to_bytes(body, 64 << 10).await.map_err(|e| Error::user(format!("the body: {e}")))?;
    let input: TriggerInput = if bytes.iter().all(u8::is_ascii_whitespace) {
        TriggerInput::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| Error::user(format!("the body: {e}")))?
    };
    match trigger(&s, &name, input.date.as_deref()).await? {
        Some(run_id) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "run_id": run_id, "pipeline": name, "url": format!("/runs/{run_id}") })),
        )
            .into_response()),
        None => Ok(not_found(format!("no pipeline named `{name}`"))),
    }
}

async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T> {
    let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|e| Error::user(format!("the body: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::user(format!("the body: {e}")))
}

// ---- audit

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    pub pipeline: Option<String>,
    pub status: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub before: Option<i64>,
    pub limit: Option<i64>,
    pub format: Option<String>,
}

impl AuditParams {
    pub fn filter(&self, default_limit: Option<i64>) -> Result<AuditFilter> {
        let date = |v: &Option<String>| -> Result<Option<NaiveDate>> {
            match v.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
                Some(d) => Ok(Some(RunDate::parse(d)?.date())),
                None => Ok(None),
            }
        };
        Ok(AuditFilter {
            pipeline: self.pipeline.clone().filter(|p| !p.trim().is_empty()),
            status: self.status.clone().filter(|s| !s.is_empty()),
            from: date(&self.from)?,
            to: date(&self.to)?,
            before: self.before,
            limit: self.limit.map(|l| l.clamp(1, 10_000)).or(default_limit),
        })
    }
}

pub(crate) async fn audit(State(s): State<AppState>, Query(p): Query<AuditParams>) -> ApiResult {
    if p.format.as_deref() == Some("csv") {
        return Ok(csv_download(&s, &p)?);
    }
    let filter = p.filter(Some(100))?;
    let rows = s.meta.audit(&filter).await?;
    let next = (Some(rows.len() as i64) == filter.limit).then(|| rows.last().map(|r| r.audit_id)).flatten();
    Ok(Json(json!({ "rows": rows, "next": next })).into_response())
}

/// `GET /audit.csv`: the filtered history as CSV, read and sent a page at a time.
pub(crate) async fn audit_csv(State(s): State<AppState>, Query(p): Query<AuditParams>) -> ApiResult {
    Ok(csv_download(&s, &p)?)
}

const CSV_HEADER: [&str; 18] = [
    "audit_id",
    "pipeline_name",
    "operation",
    "run_id",
    "run_date",
    "status",
    "attempt",
    "start_time",
    "end_time",
    "records_read",
    "records_processed",
    "bytes_read",
    "watermark_before",
    "watermark_after",
    "error_domain",
    "error_message",
    "host",
    "details",
];

fn csv_download(s: &AppState, p: &AuditParams) -> Result<Response> {
    let filter = p.filter(None)?;
    let header = csv_line(&CSV_HEADER.map(str::to_owned));
    let rows = s.meta.audit_stream(&filter).map_ok(|r| {
        let opt = |v: Option<String>| v.unwrap_or_default();
        let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
        csv_line(&[
            r.audit_id.to_string(),
            r.pipeline_name,
            r.operation,
            r.run_id.to_string(),
            r.run_date.to_string(),
            r.status,
            r.attempt.to_string(),
            r.start_time.to_rfc3339(),
            opt(r.end_time.map(|t| t.to_rfc3339())),
            num(r.records_read),
            num(r.records_processed),
            num(r.bytes_read),
            opt(r.watermark_before),
            opt(r.watermark_after),
            opt(r.error_domain),
            opt(r.error_message),
            opt(r.host),
            opt(r.details.map(|d| d.to_string())),
        ])
    });
    let body = futures::stream::once(async move { Ok::<_, Error>(header) })
        .chain(rows)
        .map_err(|e| std::io::Error::other(e.to_string()));
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"audit.csv\""));
    Ok(response)
}

fn csv_line(fields: &[String]) -> Bytes {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::with_capacity(256));
    // Writing to a Vec cannot fail.
    let _ = w.write_record(fields);
    Bytes::from(w.into_inner().unwrap_or_default())
}

// ---- catalog and the SQL box

pub(crate) async fn catalog(State(s): State<AppState>) -> ApiResult {
    let tables = s.engine.catalog().await?;
    Ok(Json(json!({ "tables": tables })).into_response())
}

/// A catalog table and its last commits.
pub(crate) async fn table_with_history(s: &AppState, name: &str) -> Result<Option<(CatalogRow, Result<Vec<Commit>>)>> {
    let Some(row) = s.engine.catalog().await?.into_iter().find(|r| r.name() == name) else { return Ok(None) };
    let history = s.engine.table_history(name, 20).await;
    Ok(Some((row, history)))
}

pub(crate) async fn catalog_table(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    match table_with_history(&s, &name).await? {
        Some((table, history)) => {
            let (history, history_error) = match history {
                Ok(h) => (h, None),
                Err(e) => (Vec::new(), Some(e.message().to_owned())),
            };
            Ok(Json(json!({ "table": table, "history": history, "history_error": history_error })).into_response())
        }
        None => Ok(not_found(format!("table `{name}` is not in the catalog"))),
    }
}

/// A SQL box answer: at most the row cap, as JSON values.
#[derive(Debug, Serialize)]
pub(crate) struct QueryAnswer {
    pub columns: Vec<QueryColumn>,
    pub rows: Vec<Vec<Value>>,
    /// More rows were left out (the cap).
    pub truncated: bool,
    pub elapsed_ms: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct QueryColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

/// Run a read-only query over the lake, stopped after the timeout, capped.
pub(crate) async fn run_query(s: &AppState, sql: &str) -> Result<QueryAnswer> {
    let started = std::time::Instant::now();
    let cap = s.config.query_rows;
    let work = async {
        let result = s.engine.query(sql).await?;
        let columns = result
            .schema
            .fields()
            .iter()
            .map(|f| QueryColumn { name: f.name().clone(), data_type: f.data_type().to_string() })
            .collect::<Vec<_>>();
        let mut batches = result.batches;
        let mut rows = Vec::new();
        let mut truncated = false;
        while let Some(batch) = batches.try_next().await? {
            let left = cap - rows.len();
            if batch.num_rows() > left {
                truncated = true;
            }
            rows.extend(json_rows(&batch.slice(0, batch.num_rows().min(left)), &columns)?);
            if rows.len() >= cap {
                // Was there more? The batch said so, or the next one will.
                truncated = truncated || batches.try_next().await?.is_some_and(|b| b.num_rows() > 0);
                break;
            }
        }
        Ok::<_, Error>(QueryAnswer { columns, rows, truncated, elapsed_ms: 0 })
    };
    let mut answer = tokio::time::timeout(s.config.query_timeout, work).await.map_err(|_| {
        Error::user(format!(
            "the query ran longer than {} s and was stopped (WEIR_QUERY_TIMEOUT)",
            s.config.query_timeout.as_secs_f64()
        ))
    })??;
    answer.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(answer)
}

fn json_rows(batch: &RecordBatch, columns: &[QueryColumn]) -> Result<Vec<Vec<Value>>> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(batch).map_err(|e| Error::internal(format!("writing the answer as JSON: {e}")))?;
    writer.finish().map_err(|e| Error::internal(format!("writing the answer as JSON: {e}")))?;
    let bytes = writer.into_inner();
    let objects: Vec<serde_json::Map<String, Value>> = if bytes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| Error::internal(e.to_string()))?
    };
    Ok(objects
        .into_iter()
        .map(|mut o| columns.iter().map(|c| o.remove(&c.name).unwrap_or(Value::Null)).collect())
        .collect())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryInput {
    pub sql: String,
}

pub(crate) async fn query(State(s): State<AppState>, body: Body) -> ApiResult {
    let input: QueryInput = json_body(body).await?;
    Ok(Json(run_query(&s, &input.sql).await?).into_response())
}

// ---- streams

/// A change-capture pipeline: its slot and its stream session.
#[derive(Debug, Serialize)]
pub(crate) struct StreamView {
    pub pipeline: String,
    pub active: bool,
    pub source_type: String,
    /// The slot's state (WAL kept, lag), or why it could not be read.
    pub slot: Option<String>,
    pub slot_needs_attention: bool,
    /// The last session (a running `runner stream`, or the last run).
    pub session: Option<AuditRow>,
    /// Rows per second of that session so far.
    pub rows_per_second: Option<f64>,
    /// The committed position.
    pub position: Option<String>,
}

pub(crate) async fn stream_views(s: &AppState) -> Result<Vec<StreamView>> {
    let pipelines: Vec<PipelineSummary> =
        s.meta.pipeline_summaries(&[], None, 10_000).await?.into_iter().filter(|p| p.row.load_type == "cdc").collect();
    let slots: HashMap<String, SlotReport> =
        match tokio::time::timeout(Duration::from_secs(5), s.engine.slots(&[])).await {
            Ok(Ok(reports)) => reports.into_iter().map(|r| (r.pipeline.clone(), r)).collect(),
            _ => HashMap::new(),
        };
    let mut out = Vec::with_capacity(pipelines.len());
    for p in pipelines {
        let session = s
            .meta
            .audit(&AuditFilter { pipeline: Some(p.row.name.clone()), limit: Some(1), ..Default::default() })
            .await?
            .pop();
        let rows_per_second = session.as_ref().and_then(|a| {
            let until = a.end_time.unwrap_or(a.heartbeat_at);
            let secs = (until - a.start_time).num_milliseconds() as f64 / 1000.0;
            a.records_read.filter(|_| secs > 0.0).map(|r| r as f64 / secs)
        });
        let (slot, slot_needs_attention) = match slots.get(&p.row.name).map(|r| &r.status) {
            Some(Ok(status)) => (Some(status.describe()), status.needs_attention()),
            Some(Err(e)) => (Some(format!("unknown: {e}")), true),
            None => (None, false),
        };
        out.push(StreamView {
            pipeline: p.row.name.clone(),
            active: p.row.active,
            source_type: p.row.source_type.clone(),
            slot,
            slot_needs_attention,
            position: session.as_ref().and_then(|a| a.watermark_after.clone()).or(p.watermark.clone()),
            session,
            rows_per_second,
        });
    }
    Ok(out)
}

pub(crate) async fn streams(State(s): State<AppState>) -> ApiResult {
    Ok(Json(json!({ "streams": stream_views(&s).await? })).into_response())
}
