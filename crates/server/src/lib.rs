//! `runner serve`: one process that serves the dashboard pages, the JSON API
//! (`/api/…`, described at `/api/openapi.json`), event ingestion (`POST
//! /events`) and the analytics query (`GET /analytics/query`). It reads the
//! metadata database through `weir-meta`, so it shows the runs of every runner
//! that shares that database, and acts through the engine (a run it triggers
//! takes the same leases as `runner run`).
//!
//! Security: tokens from the environment in three scopes (read, admin,
//! ingest); pages log in with a token and keep a session cookie; every request
//! that changes state through a cookie is checked against cross-site forgery.
//! Without a token the server only listens on loopback.

mod analytics;
mod api;
mod auth;
mod html;
mod ingest;
mod pages;
mod state;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tracing::info;
use weir_core::{Error, Result};
use weir_engine::{CancellationToken, Engine};

pub use auth::Tokens;
pub use ingest::IngestConfig;

use crate::state::AppState;

/// How `runner serve` runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tokens: Tokens,
    /// A SQL box query (or a lake analytics query) is stopped after this long.
    pub query_timeout: Duration,
    /// A SQL box answer holds at most this many rows.
    pub query_rows: usize,
    pub ingest: IngestConfig,
    /// Mark the session cookie `Secure` (the server is reached over HTTPS, through a proxy).
    pub secure_cookies: bool,
    /// The lake table `GET /analytics/query?source=lake` reads (`schema.table`).
    pub events_lake_table: String,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, tokens: Tokens) -> Self {
        Self {
            listen,
            tokens,
            query_timeout: Duration::from_secs(30),
            query_rows: 1000,
            ingest: IngestConfig::default(),
            secure_cookies: false,
            events_lake_table: "bronze.events".to_owned(),
        }
    }
}

/// Serve until `cancel`; then stop taking requests, answer those under way,
/// store the events already queued, and cancel the runs it started.
pub async fn serve(engine: Engine, config: ServerConfig, cancel: CancellationToken) -> Result<()> {
    if config.tokens.is_empty() && !config.listen.ip().is_loopback() {
        return Err(Error::user(format!(
            "refusing to listen on {} without tokens: anyone who reaches it could read and change every \
             pipeline. Set WEIR_ADMIN_TOKENS (and WEIR_READ_TOKENS, WEIR_INGEST_TOKENS), or listen on 127.0.0.1",
            config.listen
        )));
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::user(format!("cannot listen on {}: {e}", config.listen)))?;
    let local = listener.local_addr().map_err(|e| Error::external(format!("the listening socket: {e}")))?;
    let (state, committer) = AppState::new(engine, config, cancel.clone());
    let app = router(state.clone());
    info!(address = %local, tokens = !state.auth.is_open(), "serving the dashboard, the API and event ingestion");
    let shutdown = cancel.clone();
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|e| Error::external(format!("serving HTTP: {e}")))?;
    // Requests are answered; store what they queued, then stop.
    state.ingest.close();
    let _ = committer.await;
    state.runs.close_and_wait().await;
    Ok(())
}

fn router(state: AppState) -> Router {
    use axum::middleware::from_fn_with_state as guard;

    let read = Router::new()
        .route("/", get(pages::runs))
        .route("/runs", get(pages::runs))
        .route("/runs/live", get(pages::runs_live))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/live", get(pages::run_live))
        .route("/pipelines", get(pages::pipelines))
        .route("/pipelines/{name}", get(pages::pipeline))
        .route("/audit", get(pages::audit))
        .route("/audit.csv", get(api::audit_csv))
        .route("/lake", get(pages::lake))
        .route("/lake/{table}", get(pages::lake_table))
        .route("/streams", get(pages::streams))
        .route("/events", get(pages::events))
        .route("/api/runs", get(api::runs))
        .route("/api/runs/{id}", get(api::run))
        .route("/api/pipelines", get(api::pipelines))
        .route("/api/pipelines/{name}", get(api::pipeline))
        .route("/api/audit", get(api::audit))
        .route("/api/catalog", get(api::catalog))
        .route("/api/catalog/{table}", get(api::catalog_table))
        .route("/api/streams", get(api::streams))
        .route("/analytics/query", get(analytics::query))
        .route_layer(guard(state.clone(), auth::need_read));
    let admin = Router::new()
        .route("/pipelines/new", get(pages::pipeline_new).post(pages::pipeline_create))
        .route("/pipelines/{name}/edit", get(pages::pipeline_edit).post(pages::pipeline_save))
        .route("/pipelines/{name}/active", post(pages::pipeline_active))
        .route("/pipelines/{name}/trigger", post(pages::pipeline_trigger))
        .route("/lake/query", post(pages::lake_query))
        .route("/api/pipelines", post(api::pipeline_create))
        .route("/api/pipelines/{name}", axum::routing::put(api::pipeline_update))
        .route("/api/pipelines/{name}/pause", post(api::pipeline_pause))
        .route("/api/pipelines/{name}/resume", post(api::pipeline_resume))
        .route("/api/pipelines/{name}/trigger", post(api::pipeline_trigger))
        .route("/api/query", post(api::query))
        .route_layer(guard(state.clone(), auth::need_admin));
    let ingest = Router::new()
        .route("/events", post(ingest::post_events))
        .route_layer(guard(state.clone(), auth::need_ingest))
        .layer(axum::extract::DefaultBodyLimit::disable());
    let open = Router::new()
        .route("/login", get(pages::login).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/healthz", get(api::health))
        .route("/api/openapi.json", get(api::openapi))
        .route("/assets/{file}", get(pages::asset));
    read.merge(admin).merge(ingest).merge(open).fallback(pages::not_found).with_state(state)
}
