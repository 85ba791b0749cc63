//! The dashboard's pages: runs (live while under way), pipelines (history
//! charts, pause, run now, add and edit), audit (filters, CSV), lake (catalog,
//! history, a SQL box), streams and events. Server-rendered HTML; the little
//! JavaScript in `assets/app.js` only follows live pages.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use futures::Stream;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;
use weir_core::{Error, Result};
use weir_meta::{AuditRow, RunRow};

use crate::analytics;
use crate::api::{self, AuditParams, PipelineInput, PipelinesParams, RunsParams, run_cursor};
use crate::auth::{Caller, Scope};
use crate::html::{self, badge, count, csrf_field, duration_ms, esc, opt_count, opt_time, page, span, url};
use crate::state::AppState;

/// A page that could not be built: the database down says so, and the page retries on its own.
pub(crate) struct PageError(Error);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, retry) = match self.0.domain() {
            weir_core::Domain::User => (StatusCode::BAD_REQUEST, "That did not work", false),
            weir_core::Domain::External => {
                (StatusCode::SERVICE_UNAVAILABLE, "The metadata database cannot be reached", true)
            }
            weir_core::Domain::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", false),
        };
        let again = if retry {
            "<p class=\"muted\">This page tries again every 5 seconds.</p><meta http-equiv=\"refresh\" content=\"5\">"
        } else {
            ""
        };
        let body =
            format!("<h1>{title}</h1><div class=\"error\" role=\"alert\">{}</div>{again}", esc(self.0.message()));
        (status, Html(page(title, "", None, &body))).into_response()
    }
}

type PageResult = std::result::Result<Response, PageError>;

fn ok(title: &str, active: &str, caller: &Caller, body: &str) -> PageResult {
    Ok(Html(page(title, active, Some(caller), body)).into_response())
}

// ---- runs

pub(crate) async fn runs(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<RunsParams>,
) -> PageResult {
    let table = runs_table(&s, &p).await?;
    let status = html::select(
        "status",
        &[
            ("", "any status"),
            ("running", "running"),
            ("success", "success"),
            ("failed", "failed"),
            ("cancelled", "cancelled"),
            ("abandoned", "abandoned"),
        ],
        p.status.as_deref().unwrap_or(""),
    );
    // The first page follows new runs as they start and finish.
    let live = if p.before.as_deref().unwrap_or("").is_empty() {
        format!(
            " data-live=\"/runs/live?status={}&amp;date={}\"",
            url(p.status.as_deref().unwrap_or("")),
            url(p.date.as_deref().unwrap_or(""))
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Runs</h1><form class=\"filters\" method=\"get\" action=\"/runs\">{status}\
         <label>run date <input type=\"date\" name=\"date\" value=\"{date}\"></label><button>Filter</button></form>\
         <div id=\"runs\"{live}>{table}</div>",
        date = esc(p.date.as_deref().unwrap_or(""))
    );
    ok("Runs", "/runs", &caller, &body)
}

async fn runs_table(s: &AppState, p: &RunsParams) -> Result<String> {
    let filter = p.filter()?;
    let runs = s.meta.runs(&filter).await?;
    let mut out = String::from(
        "<table class=\"grid\"><thead><tr><th>Status</th><th>Run</th><th>Date</th><th>Started</th><th>Duration</th>\
         <th>Pipelines</th><th class=\"num\">Rows read</th><th>Host</th></tr></thead><tbody>",
    );
    if runs.is_empty() {
        out.push_str("<tr><td colspan=\"8\" class=\"muted\">No run yet. `runner run`, `runner schedule`, or Run now on a pipeline, start one.</td></tr>");
    }
    for r in &runs {
        let _ = write!(
            out,
            "<tr><td>{}</td><td><a href=\"/runs/{id}\"><code>{short}</code></a></td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            run_badge(r),
            r.run_date,
            html::time(&r.started_at),
            duration_ms(span(&r.started_at, r.finished_at.as_ref())),
            pipelines_cell(r),
            opt_count(r.records_read),
            esc(r.host.as_deref().unwrap_or("")),
            id = r.run_id,
            short = &r.run_id.to_string()[..8],
        );
    }
    out.push_str("</tbody></table>");
    if runs.len() as i64 == filter.limit
        && let Some(last) = runs.last()
    {
        let _ = write!(
            out,
            "<p class=\"pager\"><a href=\"/runs?status={}&amp;date={}&amp;before={}\">Older runs →</a></p>",
            url(p.status.as_deref().unwrap_or("")),
            url(p.date.as_deref().unwrap_or("")),
            url(&run_cursor(last))
        );
    }
    Ok(out)
}

fn run_badge(r: &RunRow) -> String {
    if r.stale { badge("abandoned").replace(">abandoned<", ">lost<") } else { badge(&r.status) }
}

fn pipelines_cell(r: &RunRow) -> String {
    match (r.pipelines, r.succeeded, r.failed, r.skipped) {
        (Some(n), Some(ok), Some(failed), Some(skipped)) => {
            let mut s = format!("{ok}/{n} ok");
            if failed > 0 {
                let _ = write!(s, ", <span class=\"bad-text\">{failed} failed</span>");
            }
            if skipped > 0 {
                let _ = write!(s, ", {skipped} skipped");
            }
            s
        }
        _ => "under way".to_owned(),
    }
}

/// Server-sent events: `render` again every second; send it when it changed;
/// stop after `done` says the page has nothing more to follow.
fn live<F, Fut>(render: F) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(String, bool)>> + Send,
{
    let stream = futures::stream::unfold((render, String::new(), false), |(render, last, finished)| async move {
        if finished {
            return None;
        }
        loop {
            match render().await {
                Ok((html, done)) if done => {
                    let event = Event::default().event("done").data(html);
                    return Some((Ok(event), (render, String::new(), true)));
                }
                Ok((html, _)) if html != last => {
                    let event = Event::default().data(html.clone());
                    return Some((Ok(event), (render, html, false)));
                }
                Ok(_) => {}
                Err(e) => {
                    let event = Event::default().event("trouble").data(e.message());
                    tokio::time::sleep(LIVE_EVERY).await;
                    return Some((Ok(event), (render, last, false)));
                }
            }
            tokio::time::sleep(LIVE_EVERY).await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

const LIVE_EVERY: Duration = Duration::from_secs(1);

pub(crate) async fn runs_live(State(s): State<AppState>, Query(p): Query<RunsParams>) -> Response {
    let p = std::sync::Arc::new(p);
    live(move || {
        let (s, p) = (s.clone(), p.clone());
        async move { Ok((runs_table(&s, &p).await?, false)) }
    })
    .into_response()
}

pub(crate) async fn run(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> PageResult {
    let Ok(run_id) = id.parse::<Uuid>() else { return Ok(not_found_page(&caller, "no such run")) };
    let Some((body, done)) = run_body(&s, run_id).await? else {
        return Ok(not_found_page(&caller, &format!("no run {run_id}")));
    };
    let live = if done { String::new() } else { format!(" data-live=\"/runs/{run_id}/live\"") };
    let page_body = format!(
        "<p class=\"crumbs\"><a href=\"/runs\">Runs</a> /</p><h1>Run <code>{}</code></h1><div id=\"run\"{live}>{body}</div>",
        &run_id.to_string()[..8]
    );
    ok("Run", "/runs", &caller, &page_body)
}

pub(crate) async fn run_live(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(run_id) = id.parse::<Uuid>() else { return api::not_found(format!("`{id}` is not a run id")) };
    live(move || {
        let s = s.clone();
        async move {
            match run_body(&s, run_id).await? {
                Some((body, done)) => Ok((body, done)),
                None => Ok((String::new(), true)),
            }
        }
    })
    .into_response()
}

/// A run's summary, Gantt and attempts; and whether it is over.
async fn run_body(s: &AppState, run_id: Uuid) -> Result<Option<(String, bool)>> {
    let Some(r) = s.meta.run(run_id).await? else { return Ok(None) };
    let attempts = s.meta.run_attempts(run_id).await?;
    let done = r.finished_at.is_some() || r.stale;
    let elapsed = span(&r.started_at, r.finished_at.as_ref().or(r.stale.then_some(&r.heartbeat_at)));
    let rows: i64 = attempts.iter().filter_map(|a| a.records_read).sum();
    let mut out = format!(
        "<dl class=\"facts\"><div><dt>Status</dt><dd>{}</dd></div><div><dt>Run date</dt><dd>{}</dd></div>\
         <div><dt>Started</dt><dd>{}</dd></div><div><dt>Elapsed</dt><dd id=\"elapsed\">{}</dd></div>\
         <div><dt>Rows read</dt><dd id=\"rows\">{}</dd></div><div><dt>Rows/s</dt><dd>{}</dd></div>\
         <div><dt>Pipelines</dt><dd>{}</dd></div><div><dt>Host</dt><dd>{}</dd></div></dl>",
        run_badge(&r),
        r.run_date,
        html::time(&r.started_at),
        duration_ms(elapsed),
        count(rows),
        html::rate(Some(rows), elapsed),
        pipelines_cell(&r),
        esc(r.host.as_deref().unwrap_or("")),
    );
    if r.stale {
        out.push_str(
            "<div class=\"error\">Its runner stopped heartbeating: it was killed, or its machine was lost. The next \
             runner marks it abandoned; nothing it had not committed is visible.</div>",
        );
    }
    let labels: Vec<String> = attempts
        .iter()
        .map(|a| {
            if a.attempt > 1 { format!("{} (attempt {})", a.pipeline_name, a.attempt) } else { a.pipeline_name.clone() }
        })
        .collect();
    let bars: Vec<html::Bar<'_>> = attempts
        .iter()
        .zip(&labels)
        .map(|(a, label)| html::Bar {
            label,
            start: a.start_time,
            end: a.end_time,
            status: &a.status,
            href: Some(format!("/pipelines/{}", url(&a.pipeline_name))),
        })
        .collect();
    out.push_str(&html::gantt(&bars));
    out.push_str(&attempts_table(&attempts, false));
    Ok(Some((out, done)))
}

/// Attempts as a table; `with_run` adds the run's link and date.
fn attempts_table(attempts: &[AuditRow], with_run: bool) -> String {
    let run_head = if with_run { "<th>Run</th><th>Date</th>" } else { "" };
    let mut out = format!(
        "<table class=\"grid\"><thead><tr><th>Status</th><th>Pipeline</th>{run_head}<th>Attempt</th><th>Started</th>\
         <th>Duration</th><th class=\"num\">Rows read</th><th class=\"num\">Written</th><th class=\"num\">Rows/s</th>\
         <th>Watermark</th></tr></thead><tbody>"
    );
    for a in attempts {
        let ms = span(&a.start_time, a.end_time.as_ref());
        let run_cells = if with_run {
            format!(
                "<td><a href=\"/runs/{}\"><code>{}</code></a></td><td>{}</td>",
                a.run_id,
                &a.run_id.to_string()[..8],
                a.run_date
            )
        } else {
            String::new()
        };
        let name = match a.operation.as_str() {
            "load" => format!("<a href=\"/pipelines/{}\">{}</a>", url(&a.pipeline_name), esc(&a.pipeline_name)),
            op => format!("{}: {}", esc(op), esc(&a.pipeline_name)),
        };
        let watermark = match (&a.watermark_before, &a.watermark_after) {
            (None, None) => String::new(),
            (b, after) => format!(
                "<code>{}</code> → <code>{}</code>",
                esc(b.as_deref().unwrap_or("∅")),
                esc(after.as_deref().unwrap_or("…"))
            ),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{name}</td>{run_cells}<td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"wm\">{watermark}</td></tr>",
            badge(&a.status),
            a.attempt,
            html::time(&a.start_time),
            duration_ms(ms),
            opt_count(a.records_read),
            opt_count(a.records_processed),
            html::rate(a.records_read, ms),
        );
        let mut extra = String::new();
        if let Some(e) = &a.error_message {
            let _ = write!(
                extra,
                "<div class=\"error\"><strong>{}</strong> {}</div>",
                esc(a.error_domain.as_deref().unwrap_or("error")),
                esc(e)
            );
        }
        if let Some(d) = a.details.as_ref().filter(|d| d.as_object().is_some_and(|o| !o.is_empty())) {
            let pretty = serde_json::to_string_pretty(d).unwrap_or_default();
            let _ = write!(extra, "<details><summary>details</summary><pre>{}</pre></details>", esc(&pretty));
        }
        if !extra.is_empty() {
            let cols = if with_run { 11 } else { 9 };
            let _ = write!(out, "<tr class=\"sub\"><td></td><td colspan=\"{cols}\">{extra}</td></tr>");
        }
    }
    out.push_str("</tbody></table>");
    out
}

// ---- pipelines

pub(crate) async fn pipelines(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<PipelinesParams>,
) -> PageResult {
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let rows = s.meta.pipeline_summaries(&[], p.after.as_deref().filter(|a| !a.is_empty()), limit).await?;
    let add =
        if caller.can(Scope::Admin) { "<a class=\"button\" href=\"/pipelines/new\">Add a pipeline</a>" } else { "" };
    let mut out = format!(
        "<div class=\"title\"><h1>Pipelines</h1>{add}</div><table class=\"grid\"><thead><tr><th>Pipeline</th>\
         <th>Source → destination</th><th>Load</th><th>Last run</th><th>Last success</th><th>Next scheduled</th>\
         </tr></thead><tbody>"
    );
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"6\" class=\"muted\">No pipeline: add a row to the controller table.</td></tr>");
    }
    let last_name = rows.last().map(|r| r.row.name.clone());
    let full = rows.len() as i64 == limit;
    for summary in rows {
        let v = api::view(summary);
        let r = &v.summary.row;
        let paused = if r.active { String::new() } else { format!(" {}", badge("paused")) };
        let last = match (&v.summary.last_status, &v.summary.last_start) {
            (Some(st), Some(t)) => format!("{} {}", badge(st), html::time(t)),
            _ => "<span class=\"muted\">never</span>".to_owned(),
        };
        let next = match (&r.schedule, v.next_run) {
            (Some(expr), Some(t)) => format!("{} <code>{}</code>", html::time(&t), esc(expr)),
            (Some(expr), None) => format!("<code>{}</code>", esc(expr)),
            (None, _) => "<span class=\"muted\">with each run</span>".to_owned(),
        };
        let _ = write!(
            out,
            "<tr><td><a href=\"/pipelines/{}\">{}</a>{paused}</td><td>{} → {}</td><td>{}</td><td>{last}</td><td>{}</td><td>{next}</td></tr>",
            url(&r.name),
            esc(&r.name),
            esc(&r.source_type),
            esc(&r.destination_type),
            esc(&r.load_type),
            opt_time(v.summary.last_success.as_ref()),
        );
    }
    out.push_str("</tbody></table>");
    if full && let Some(last) = last_name {
        let _ = write!(out, "<p class=\"pager\"><a href=\"/pipelines?after={}\">More pipelines →</a></p>", url(&last));
    }
    ok("Pipelines", "/pipelines", &caller, &out)
}

pub(crate) async fn pipeline(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let Some((v, history)) = api::pipeline_with_history(&s, &name, 60).await? else {
        return Ok(not_found_page(&caller, &format!("no pipeline named `{name}`")));
    };
    let r = &v.summary.row;
    let mut out = format!(
        "<p class=\"crumbs\"><a href=\"/pipelines\">Pipelines</a> /</p><div class=\"title\"><h1>{}</h1>",
        esc(&r.name)
    );
    if caller.can(Scope::Admin) {
        let (label, to) = if r.active { ("Pause", "false") } else { ("Resume", "true") };
        let _ = write!(
            out,
            "<div class=\"actions\"><form method=\"post\" action=\"/pipelines/{n}/active\">{csrf}\
             <input type=\"hidden\" name=\"active\" value=\"{to}\"><button>{label}</button></form>\
             <form method=\"post\" action=\"/pipelines/{n}/trigger\">{csrf}<input type=\"date\" name=\"date\" \
             value=\"{today}\" aria-label=\"run date\"><button class=\"primary\">Run now</button></form>\
             <a class=\"button\" href=\"/pipelines/{n}/edit\">Edit</a></div>",
            n = url(&r.name),
            csrf = csrf_field(&caller),
            today = chrono::Utc::now().format("%Y-%m-%d"),
        );
    }
    out.push_str("</div>");
    if let Some(msg) = q.get("saved") {
        let _ = write!(out, "<div class=\"notice\">{}</div>", esc(msg));
    }
    let state = if r.active { badge("active").replace("muted", "ok") } else { badge("paused") };
    let _ = write!(
        out,
        "<dl class=\"facts\"><div><dt>State</dt><dd id=\"state\">{state}</dd></div><div><dt>Last run</dt><dd>{}</dd></div>\
         <div><dt>Last success</dt><dd>{}</dd></div><div><dt>Next scheduled</dt><dd>{}</dd></div>\
         <div><dt>Watermark</dt><dd><code>{}</code></dd></div></dl>",
        v.summary.last_status.as_deref().map(badge).unwrap_or_else(|| "never".into()),
        opt_time(v.summary.last_success.as_ref()),
        v.next_run.map(|t| html::time(&t)).unwrap_or_else(|| "—".into()),
        esc(v.summary.watermark.as_deref().unwrap_or("—")),
    );
    // Charts, oldest first.
    let loads: Vec<&AuditRow> = history.iter().rev().filter(|a| a.operation == "load").collect();
    let durations: Vec<(String, Option<f64>, &str)> = loads
        .iter()
        .map(|a| {
            let d = a.end_time.map(|e| (e - a.start_time).num_milliseconds() as f64);
            (format!("{} #{}", a.run_date, a.attempt), d, a.status.as_str())
        })
        .collect();
    let rows: Vec<(String, Option<f64>, &str)> = loads
        .iter()
        .map(|a| (format!("{} #{}", a.run_date, a.attempt), a.records_read.map(|r| r as f64), a.status.as_str()))
        .collect();
    let _ = write!(
        out,
        "<div class=\"charts\">{}{}</div>",
        html::bars("Duration of the last attempts", &durations, |ms| duration_ms(ms as i64)),
        html::bars("Rows read", &rows, |n| count(n as i64)),
    );
    out.push_str("<h2>Definition</h2>");
    out.push_str(&definition(r));
    let _ = write!(
        out,
        "<div class=\"title\"><h2>History</h2><a href=\"/audit?pipeline={}\">All of it in Audit →</a></div>",
        url(&r.name)
    );
    let recent: Vec<AuditRow> = history.into_iter().take(20).collect();
    out.push_str(&attempts_table(&recent, true));
    ok(&name, "/pipelines", &caller, &out)
}

fn definition(r: &weir_core::ControllerRow) -> String {
    let list = |v: &[String]| if v.is_empty() { "—".to_owned() } else { esc(&v.join(", ")) };
    let opt = |v: &Option<String>| esc(v.as_deref().unwrap_or("—"));
    let options = serde_json::to_string_pretty(&r.options).unwrap_or_default();
    format!(
        "<table class=\"kv\"><tbody>\
         <tr><th>source</th><td>{} <code>{}</code> {}</td></tr>\
         <tr><th>data_source</th><td><code>{}</code></td></tr>\
         <tr><th>destination</th><td>{} <code>{}</code> {}.{}</td></tr>\
         <tr><th>load_type</th><td>{}</td></tr><tr><th>watermark_column</th><td>{}</td></tr>\
         <tr><th>primary_key</th><td>{}</td></tr><tr><th>partition_by</th><td>{}</td></tr>\
         <tr><th>depends_on</th><td>{}</td></tr><tr><th>schedule</th><td>{}</td></tr>\
         <tr><th>notify_emails</th><td>{}</td></tr><tr><th>options</th><td><pre>{}</pre></td></tr></tbody></table>",
        esc(&r.source_type),
        opt(&r.source_connection),
        opt(&r.source_table),
        opt(&r.data_source),
        esc(&r.destination_type),
        opt(&r.destination_connection),
        esc(&r.schema_name),
        esc(&r.destination_table),
        esc(&r.load_type),
        opt(&r.watermark_column),
        list(&r.primary_key),
        list(&r.partition_by),
        list(&r.depends_on),
        opt(&r.schedule),
        list(&r.notify_emails),
        esc(&options),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActiveForm {
    active: bool,
}

pub(crate) async fn pipeline_active(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(f): Form<ActiveForm>,
) -> PageResult {
    if !s.meta.set_active(&name, f.active).await? {
        return Ok(not_found_page(&caller, &format!("no pipeline named `{name}`")));
    }
    let note = if f.active { "Resumed: runs take it again." } else { "Paused: runs leave it out until it is resumed." };
    Ok(Redirect::to(&format!("/pipelines/{}?saved={}", url(&name), url(note))).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct TriggerForm {
    #[serde(default)]
    date: String,
}

pub(crate) async fn pipeline_trigger(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(f): Form<TriggerForm>,
) -> PageResult {
    match api::trigger(&s, &name, Some(&f.date)).await? {
        Some(run_id) => Ok(Redirect::to(&format!("/runs/{run_id}")).into_response()),
        None => Ok(not_found_page(&caller, &format!("no pipeline named `{name}`"))),
    }
}

/// The add and edit form's fields, as typed.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PipelineForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    source_type: String,
    #[serde(default)]
    source_connection: String,
    #[serde(default)]
    source_table: String,
    #[serde(default)]
    data_source: String,
    #[serde(default)]
    destination_type: String,
    #[serde(default)]
    destination_connection: String,
    #[serde(default)]
    schema_name: String,
    #[serde(default)]
    destination_table: String,
    #[serde(default)]
    load_type: String,
    #[serde(default)]
    watermark_column: String,
    #[serde(default)]
    primary_key: String,
    #[serde(default)]
    partition_by: String,
    #[serde(default)]
    options: String,
    #[serde(default)]
    depends_on: String,
    #[serde(default)]
    notify_emails: String,
    #[serde(default)]
    schedule: String,
    #[serde(default)]
    active: Option<String>,
}

impl PipelineForm {
    fn from_row(r: &weir_core::ControllerRow) -> Self {
        Self {
            name: r.name.clone(),
            source_type: r.source_type.clone(),
            source_connection: r.source_connection.clone().unwrap_or_default(),
            source_table: r.source_table.clone().unwrap_or_default(),
            data_source: r.data_source.clone().unwrap_or_default(),
            destination_type: r.destination_type.clone(),
            destination_connection: r.destination_connection.clone().unwrap_or_default(),
            schema_name: r.schema_name.clone(),
            destination_table: r.destination_table.clone(),
            load_type: r.load_type.clone(),
            watermark_column: r.watermark_column.clone().unwrap_or_default(),
            primary_key: r.primary_key.join(", "),
            partition_by: r.partition_by.join(", "),
            options: serde_json::to_string_pretty(&r.options).unwrap_or_default(),
            depends_on: r.depends_on.join(", "),
            notify_emails: r.notify_emails.join(", "),
            schedule: r.schedule.clone().unwrap_or_default(),
            active: r.active.then(|| "on".to_owned()),
        }
    }

    fn input(&self) -> Result<PipelineInput> {
        let list = |s: &str| Some(s.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect());
        let text = |s: &str| Some(s.to_owned());
        let options = match self.options.trim() {
            "" => None,
            o => Some(serde_json::from_str::<Value>(o).map_err(|e| Error::user(format!("options is not JSON: {e}")))?),
        };
        Ok(PipelineInput {
            name: Some(self.name.trim().to_owned()),
            source_type: self.source_type.clone(),
            source_connection: text(&self.source_connection),
            source_table: text(&self.source_table),
            data_source: text(&self.data_source),
            destination_type: text(&self.destination_type),
            destination_connection: text(&self.destination_connection),
            schema_name: text(&self.schema_name),
            destination_table: text(&self.destination_table),
            load_type: text(&self.load_type),
            watermark_column: text(&self.watermark_column),
            primary_key: list(&self.primary_key),
            partition_by: list(&self.partition_by),
            options,
            depends_on: list(&self.depends_on),
            notify_emails: list(&self.notify_emails),
            schedule: text(&self.schedule),
            active: Some(self.active.is_some()),
        })
    }
}

fn pipeline_form(caller: &Caller, f: &PipelineForm, action: &str, editing: bool, error: Option<&str>) -> String {
    let field = |name: &str, label: &str, value: &str, hint: &str| {
        format!(
            "<label><span>{label}</span><input name=\"{name}\" value=\"{}\" placeholder=\"{}\"></label>",
            esc(value),
            esc(hint)
        )
    };
    let name = if editing {
        format!("<input type=\"hidden\" name=\"name\" value=\"{}\">", esc(&f.name))
    } else {
        field("name", "name", &f.name, "orders_daily")
    };
    let error = error.map(|e| format!("<div class=\"error\" role=\"alert\">{}</div>", esc(e))).unwrap_or_default();
    let checked = if f.active.is_some() || !editing && f.name.is_empty() { " checked" } else { "" };
    format!(
        "{error}<form class=\"edit\" method=\"post\" action=\"{action}\">{csrf}{name}\
         {}{}{}{}{}{}{}{}{}{}{}{}{}{}{}\
         <label><span>options (JSON)</span><textarea name=\"options\" rows=\"6\">{}</textarea></label>\
         <label class=\"check\"><input type=\"checkbox\" name=\"active\"{checked}> active</label>\
         <p class=\"muted\">Saved only if <code>runner check</code> passes: the connections are reached, nothing is moved.</p>\
         <button class=\"primary\">Check and save</button></form>",
        field("source_type", "source_type", &f.source_type, "parquet, mysql, postgres, elasticsearch, kafka, dbt"),
        field("source_connection", "source_connection", &f.source_connection, "a connection name (WEIR_CONN_<NAME>)"),
        field("source_table", "source_table", &f.source_table, "schema.table"),
        field("data_source", "data_source", &f.data_source, "s3://raw/orders/dt={date}/"),
        field("destination_type", "destination_type", &f.destination_type, "postgres"),
        field("destination_connection", "destination_connection", &f.destination_connection, "a connection name"),
        field("schema_name", "schema_name", &f.schema_name, "public"),
        field("destination_table", "destination_table", &f.destination_table, ""),
        field("load_type", "load_type", &f.load_type, "full, incremental or cdc"),
        field("watermark_column", "watermark_column", &f.watermark_column, ""),
        field("primary_key", "primary_key", &f.primary_key, "comma-separated"),
        field("partition_by", "partition_by", &f.partition_by, "comma-separated"),
        field("depends_on", "depends_on", &f.depends_on, "comma-separated pipeline names"),
        field("notify_emails", "notify_emails", &f.notify_emails, "comma-separated"),
        field("schedule", "schedule", &f.schedule, "cron, as 0 2 * * *"),
        esc(&f.options),
        csrf = csrf_field(caller),
    )
}

pub(crate) async fn pipeline_new(Extension(caller): Extension<Caller>) -> PageResult {
    let form = PipelineForm {
        destination_type: "postgres".into(),
        schema_name: "public".into(),
        load_type: "full".into(),
        options: "{}".into(),
        ..Default::default()
    };
    let body = format!(
        "<p class=\"crumbs\"><a href=\"/pipelines\">Pipelines</a> /</p><h1>Add a pipeline</h1>{}",
        pipeline_form(&caller, &form, "/pipelines/new", false, None)
    );
    ok("Add a pipeline", "/pipelines", &caller, &body)
}

pub(crate) async fn pipeline_create(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<PipelineForm>,
) -> PageResult {
    let name = f.name.trim().to_owned();
    save_form(&s, &caller, &f, &name, true).await
}

/// Check and store the form's row; on a fault the user can fix (a row
/// `runner check` rejects), the form again with the reason.
async fn save_form(s: &AppState, caller: &Caller, f: &PipelineForm, name: &str, create: bool) -> PageResult {
    let saved = match f.input().and_then(|i| i.into_row(name)) {
        Ok(row) => api::save(s, row, create).await,
        Err(e) => Err(e),
    };
    let e = match saved {
        Ok(row) => {
            let note = if create { "Added." } else { "Saved." };
            return Ok(Redirect::to(&format!("/pipelines/{}?saved={}", url(&row.name), url(note))).into_response());
        }
        Err(e) if e.is_retryable() => return Err(e.into()),
        Err(e) => e,
    };
    let (title, heading, action) = if create {
        ("Add a pipeline", "Add a pipeline".to_owned(), "/pipelines/new".to_owned())
    } else {
        ("Edit", format!("Edit {}", esc(name)), format!("/pipelines/{}/edit", url(name)))
    };
    let body = format!(
        "<p class=\"crumbs\"><a href=\"/pipelines\">Pipelines</a> /</p><h1>{heading}</h1>{}",
        pipeline_form(caller, f, &action, !create, Some(e.message()))
    );
    Ok((StatusCode::BAD_REQUEST, Html(page(title, "/pipelines", Some(caller), &body))).into_response())
}

pub(crate) async fn pipeline_edit(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> PageResult {
    let Some(summary) = s.meta.pipeline_summaries(std::slice::from_ref(&name), None, 1).await?.pop() else {
        return Ok(not_found_page(&caller, &format!("no pipeline named `{name}`")));
    };
    let action = format!("/pipelines/{}/edit", url(&name));
    let body = format!(
        "<p class=\"crumbs\"><a href=\"/pipelines\">Pipelines</a> / <a href=\"/pipelines/{}\">{}</a> /</p><h1>Edit {}</h1>{}",
        url(&name),
        esc(&name),
        esc(&name),
        pipeline_form(&caller, &PipelineForm::from_row(&summary.row), &action, true, None)
    );
    ok("Edit", "/pipelines", &caller, &body)
}

pub(crate) async fn pipeline_save(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(f): Form<PipelineForm>,
) -> PageResult {
    save_form(&s, &caller, &f, &name, false).await
}

// ---- audit

pub(crate) async fn audit(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<AuditParams>,
) -> PageResult {
    let filter = p.filter(Some(100))?;
    let rows = s.meta.audit(&filter).await?;
    let v = |o: &Option<String>| esc(o.as_deref().unwrap_or(""));
    let status = html::select(
        "status",
        &[
            ("", "any status"),
            ("success", "success"),
            ("failed", "failed"),
            ("running", "running"),
            ("skipped", "skipped"),
            ("abandoned", "abandoned"),
        ],
        p.status.as_deref().unwrap_or(""),
    );
    let query = format!(
        "pipeline={}&amp;status={}&amp;from={}&amp;to={}",
        url(p.pipeline.as_deref().unwrap_or("")),
        url(p.status.as_deref().unwrap_or("")),
        url(p.from.as_deref().unwrap_or("")),
        url(p.to.as_deref().unwrap_or(""))
    );
    let mut out = format!(
        "<div class=\"title\"><h1>Audit</h1><a class=\"button\" href=\"/audit.csv?{query}\">Download CSV</a></div>\
         <form class=\"filters\" method=\"get\" action=\"/audit\"><label>pipeline <input name=\"pipeline\" value=\"{}\"></label>\
         {status}<label>from <input type=\"date\" name=\"from\" value=\"{}\"></label>\
         <label>to <input type=\"date\" name=\"to\" value=\"{}\"></label><button>Filter</button></form>",
        v(&p.pipeline),
        v(&p.from),
        v(&p.to),
    );
    out.push_str(&attempts_table(&rows, true));
    if Some(rows.len() as i64) == filter.limit
        && let Some(last) = rows.last()
    {
        let _ =
            write!(out, "<p class=\"pager\"><a href=\"/audit?{query}&amp;before={}\">Older →</a></p>", last.audit_id);
    }
    ok("Audit", "/audit", &caller, &out)
}

// ---- lake

pub(crate) async fn lake(State(s): State<AppState>, Extension(caller): Extension<Caller>) -> PageResult {
    lake_page(&s, &caller, "", None).await
}

async fn lake_page(s: &AppState, caller: &Caller, sql: &str, answer: Option<Result<api::QueryAnswer>>) -> PageResult {
    let tables = s.engine.catalog().await?;
    let mut out = String::from(
        "<h1>Lake</h1><table class=\"grid\"><thead><tr><th>Table</th><th>Format</th><th class=\"num\">Version</th>\
         <th class=\"num\">Columns</th><th>Partitioned by</th><th>Written by</th><th>Updated</th></tr></thead><tbody>",
    );
    if tables.is_empty() {
        out.push_str("<tr><td colspan=\"7\" class=\"muted\">No lake table yet: a pipeline with destination_type = 'delta' makes one.</td></tr>");
    }
    for t in &tables {
        let cols = t.columns.as_array().map_or(0, Vec::len);
        let _ = write!(
            out,
            "<tr><td><a href=\"/lake/{}\">{}</a></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{cols}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            url(&t.name()),
            esc(&t.name()),
            esc(&t.format),
            t.version,
            esc(&t.partition_by.join(", ")),
            t.pipeline_name
                .as_deref()
                .map(|p| format!("<a href=\"/pipelines/{}\">{}</a>", url(p), esc(p)))
                .unwrap_or_default(),
            html::time(&t.updated_at),
        );
    }
    out.push_str("</tbody></table>");
    if caller.can(Scope::Admin) {
        let example = tables.first().map(|t| format!("SELECT * FROM {} LIMIT 10", t.name())).unwrap_or_default();
        let _ = write!(
            out,
            "<h2>Query</h2><form method=\"post\" action=\"/lake/query\" class=\"sql\">{}\
             <textarea name=\"sql\" rows=\"5\" placeholder=\"{}\" aria-label=\"SQL\">{}</textarea>\
             <p class=\"muted\">Read-only (SELECT, WITH); at most {} rows; stopped after {} s. \
             JSON text columns: <code>json_text(col, 'key')</code>, <code>json_number(col, 'key')</code>.</p>\
             <button class=\"primary\">Run</button></form>",
            csrf_field(caller),
            esc(&example),
            esc(sql),
            s.config.query_rows,
            s.config.query_timeout.as_secs()
        );
    }
    match answer {
        None => {}
        Some(Err(e)) => {
            let _ = write!(out, "<div class=\"error\" role=\"alert\">{}</div>", esc(e.message()));
        }
        Some(Ok(a)) => {
            let _ = write!(
                out,
                "<p class=\"muted\" id=\"answer-meta\">{} row(s){} in {}</p><div class=\"scroll\"><table class=\"grid\" id=\"answer\"><thead><tr>",
                count(a.rows.len() as i64),
                if a.truncated { " (more were left out)" } else { "" },
                duration_ms(a.elapsed_ms as i64)
            );
            for c in &a.columns {
                let _ = write!(out, "<th title=\"{}\">{}</th>", esc(&c.data_type), esc(&c.name));
            }
            out.push_str("</tr></thead><tbody>");
            for row in &a.rows {
                out.push_str("<tr>");
                for v in row {
                    let text = match v {
                        Value::Null => "<span class=\"muted\">NULL</span>".to_owned(),
                        Value::String(s) => esc(s),
                        other => esc(&other.to_string()),
                    };
                    let _ = write!(out, "<td>{text}</td>");
                }
                out.push_str("</tr>");
            }
            out.push_str("</tbody></table></div>");
        }
    }
    ok("Lake", "/lake", caller, &out)
}

#[derive(Debug, Deserialize)]
pub(crate) struct QueryForm {
    sql: String,
}

pub(crate) async fn lake_query(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<QueryForm>,
) -> PageResult {
    let answer = api::run_query(&s, &f.sql).await;
    lake_page(&s, &caller, &f.sql, Some(answer)).await
}

pub(crate) async fn lake_table(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> PageResult {
    let Some((t, history)) = api::table_with_history(&s, &name).await? else {
        return Ok(not_found_page(&caller, &format!("table `{name}` is not in the catalog")));
    };
    let mut out = format!(
        "<p class=\"crumbs\"><a href=\"/lake\">Lake</a> /</p><h1>{}</h1><dl class=\"facts\"><div><dt>Format</dt><dd>{}</dd></div>\
         <div><dt>Version</dt><dd>{}</dd></div><div><dt>Location</dt><dd><code>{}</code></dd></div>\
         <div><dt>Partitioned by</dt><dd>{}</dd></div></dl><h2>Schema</h2><table class=\"grid\"><thead><tr><th>Column</th>\
         <th>Type</th><th>Nullable</th></tr></thead><tbody>",
        esc(&name),
        esc(&t.format),
        t.version,
        esc(&t.location),
        esc(&t.partition_by.join(", ")),
    );
    for c in t.columns.as_array().into_iter().flatten() {
        let get = |k: &str| {
            c.get(k).map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).unwrap_or_default()
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&get("name")),
            esc(&get("type")),
            esc(&get("nullable"))
        );
    }
    out.push_str("</tbody></table><h2>History</h2>");
    match history {
        Err(e) => {
            let _ = write!(out, "<div class=\"error\">{}</div>", esc(e.message()));
        }
        Ok(commits) => {
            out.push_str("<table class=\"grid\"><thead><tr><th class=\"num\">Version</th><th>Time</th><th>Operation</th><th>Metrics</th></tr></thead><tbody>");
            for c in commits {
                let when = c
                    .timestamp
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|t| html::time(&t))
                    .unwrap_or_default();
                let metrics = c.metrics.map(|m| m.to_string()).unwrap_or_default();
                let _ = write!(
                    out,
                    "<tr><td class=\"num\">{}</td><td>{when}</td><td>{}</td><td><code class=\"small\">{}</code></td></tr>",
                    c.version,
                    esc(c.operation.as_deref().unwrap_or("")),
                    esc(&metrics)
                );
            }
            out.push_str("</tbody></table>");
        }
    }
    ok(&name, "/lake", &caller, &out)
}

// ---- streams

pub(crate) async fn streams(State(s): State<AppState>, Extension(caller): Extension<Caller>) -> PageResult {
    let views = api::stream_views(&s).await?;
    let mut out = String::from(
        "<h1>Streams</h1><table class=\"grid\"><thead><tr><th>Pipeline</th><th>Session</th><th>Started</th>\
         <th class=\"num\">Rows</th><th class=\"num\">Rows/s</th><th>Last heartbeat</th><th>Position</th><th>Slot</th></tr></thead><tbody>",
    );
    if views.is_empty() {
        out.push_str("<tr><td colspan=\"8\" class=\"muted\">No cdc pipeline. <code>runner stream</code> follows the pipelines with load_type = 'cdc'.</td></tr>");
    }
    for v in &views {
        let (status, started, rows, beat) = match &v.session {
            Some(a) => {
                (badge(&a.status), html::time(&a.start_time), opt_count(a.records_read), html::time(&a.heartbeat_at))
            }
            None => ("<span class=\"muted\">never ran</span>".into(), String::new(), String::new(), String::new()),
        };
        let slot_class = if v.slot_needs_attention { "bad-text" } else { "" };
        let _ = write!(
            out,
            "<tr><td><a href=\"/pipelines/{}\">{}</a></td><td>{status}</td><td>{started}</td><td class=\"num\">{rows}</td>\
             <td class=\"num\">{}</td><td>{beat}</td><td><code>{}</code></td><td class=\"{slot_class}\">{}</td></tr>",
            url(&v.pipeline),
            esc(&v.pipeline),
            v.rows_per_second.map(|r| count(r.round() as i64)).unwrap_or_else(|| "—".into()),
            esc(v.position.as_deref().unwrap_or("—")),
            esc(v.slot.as_deref().unwrap_or("—")),
        );
    }
    out.push_str("</tbody></table>");
    ok("Streams", "/streams", &caller, &out)
}

// ---- events

pub(crate) async fn events(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
) -> PageResult {
    let g = |k: &str| params.get(k).cloned().unwrap_or_default();
    let metric = html::select(
        "metric",
        &[("count", "count"), ("unique_users", "unique users"), ("sum", "sum of"), ("avg", "average of")],
        &g("metric"),
    );
    let group_by = g("group_by");
    let group = html::select(
        "group_by",
        &[("", "no grouping"), ("day", "by day"), ("hour", "by hour")],
        if group_by.starts_with("property:") { "" } else { &group_by },
    );
    let source = html::select("source", &[("postgres", "PostgreSQL"), ("lake", "the lake")], &g("source"));
    let group_property = g("group_by").strip_prefix("property:").unwrap_or("").to_owned();
    let mut out = format!(
        "<h1>Events</h1><form class=\"filters wrap\" method=\"get\" action=\"/events\">{metric}\
         <input name=\"property\" placeholder=\"property\" value=\"{}\" aria-label=\"property\">\
         <input name=\"event\" placeholder=\"event name\" value=\"{}\" aria-label=\"event\">\
         <input name=\"filters\" placeholder='filters, as {{\"plan\":\"pro\"}}' value=\"{}\" aria-label=\"filters\">\
         {group}<input name=\"group_property\" placeholder=\"or by property\" value=\"{}\" aria-label=\"group by property\">\
         <label>from <input type=\"date\" name=\"from\" value=\"{}\"></label><label>to <input type=\"date\" name=\"to\" value=\"{}\"></label>\
         {source}<button class=\"primary\">Ask</button></form>",
        esc(&g("property")),
        esc(&g("event")),
        esc(&g("filters")),
        esc(&group_property),
        esc(&g("from")),
        esc(&g("to")),
    );
    if params.contains_key("metric") {
        // The form's own fields, as the API's parameters.
        let mut q: HashMap<String, String> = params.clone();
        if let Some(p) = q.remove("group_property").filter(|p| !p.trim().is_empty()) {
            q.insert("group_by".into(), format!("property:{}", p.trim()));
        }
        q.retain(|_, v| !v.trim().is_empty());
        let answer = match analytics::parse(&q) {
            Ok((query, source)) => analytics::answer(&s, &query, source).await.map(|rows| (query, source, rows)),
            Err(e) => Err(e),
        };
        match answer {
            Err(e) => {
                let _ = write!(out, "<div class=\"error\" role=\"alert\">{}</div>", esc(e.message()));
            }
            Ok((query, source, rows)) => {
                let json = analytics::to_json(&query, source, &rows);
                let values: Vec<(String, Option<f64>, &str)> = rows
                    .iter()
                    .map(|r| (r.group.clone().unwrap_or_else(|| "(none)".into()), r.value, "success"))
                    .collect();
                if query.group_by.is_some() {
                    out.push_str(&html::bars("Answer", &values, |v| format!("{v}")));
                }
                out.push_str("<table class=\"grid\" id=\"answer\"><thead><tr><th>Group</th><th class=\"num\">Value</th></tr></thead><tbody>");
                for row in json["rows"].as_array().into_iter().flatten() {
                    let group = row["group"].as_str().unwrap_or("—");
                    let _ = write!(
                        out,
                        "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                        esc(group),
                        esc(&row["value"].to_string())
                    );
                }
                out.push_str("</tbody></table>");
                let api_q: String =
                    q.iter().map(|(k, v)| format!("{}={}", url(k), url(v))).collect::<Vec<_>>().join("&");
                let _ = write!(
                    out,
                    "<p class=\"muted\">The same answer as JSON: <a href=\"/analytics/query?{}\"><code>GET /analytics/query?{}</code></a></p>",
                    esc(&api_q),
                    esc(&api_q)
                );
            }
        }
    }
    ok("Events", "/events", &caller, &out)
}

// ---- the rest

pub(crate) async fn login(Query(q): Query<HashMap<String, String>>) -> Response {
    login_page(q.get("next").map(String::as_str).unwrap_or("/"), None, StatusCode::OK)
}

pub(crate) fn login_failed(next: &str) -> Response {
    login_page(next, Some("That token is not known to this server (or only ingests events)."), StatusCode::UNAUTHORIZED)
}

fn login_page(next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let error = error.map(|e| format!("<div class=\"error\" role=\"alert\">{}</div>", esc(e))).unwrap_or_default();
    let body = format!(
        "<div class=\"login\"><h1>Log in to Weir</h1>{error}<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\"><label><span>Token</span>\
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus></label>\
         <p class=\"muted\">A read or admin token, from WEIR_READ_TOKENS or WEIR_ADMIN_TOKENS.</p>\
         <button class=\"primary\">Log in</button></form></div>",
        esc(next)
    );
    (status, Html(page("Log in", "", None, &body))).into_response()
}

fn not_found_page(caller: &Caller, what: &str) -> Response {
    let body = format!("<h1>Not found</h1><p>{}</p>", esc(what));
    (StatusCode::NOT_FOUND, Html(page("Not found", "", Some(caller), &body))).into_response()
}

pub(crate) async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Html(page("Not found", "", None, "<h1>Not found</h1>"))).into_response()
}

pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.css" => (include_str!("../assets/app.css"), "text/css; charset=utf-8"),
        "app.js" => (include_str!("../assets/app.js"), "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}
