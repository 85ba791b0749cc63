//! What every request handler shares.

use std::sync::{Arc, Mutex};

use tokio::task::{JoinHandle, JoinSet};
use tracing::{info, warn};
use uuid::Uuid;
use weir_core::{Result, RunDate};
use weir_engine::{CancellationToken, Engine, RunConfig};
use weir_meta::MetaStore;

use crate::ServerConfig;
use crate::auth::Auth;
use crate::ingest::Ingest;

#[derive(Clone)]
pub(crate) struct AppState {
    pub engine: Engine,
    pub meta: MetaStore,
    pub auth: Arc<Auth>,
    pub ingest: Ingest,
    pub runs: Runs,
    pub config: Arc<ServerConfig>,
}

impl AppState {
    /// The state, and the task that commits the events it takes.
    pub fn new(engine: Engine, config: ServerConfig, cancel: CancellationToken) -> (Self, JoinHandle<()>) {
        let meta = engine.meta().clone();
        let (ingest, committer) = Ingest::start(meta.clone(), config.ingest.clone());
        let state = Self {
            auth: Arc::new(Auth::new(config.tokens.clone(), config.secure_cookies)),
            ingest,
            runs: Runs { tasks: Arc::default(), cancel },
            engine,
            meta,
            config: Arc::new(config),
        };
        (state, committer)
    }
}

/// The runs this server started ("run now"), so that stopping the server
/// stops them as `runner run` stops on SIGTERM: before they commit.
#[derive(Clone)]
pub(crate) struct Runs {
    tasks: Arc<Mutex<JoinSet<()>>>,
    cancel: CancellationToken,
}

impl Runs {
    /// Start a run of one pipeline for `date`; its id, at once.
    pub fn trigger(&self, engine: &Engine, pipeline: &str, date: RunDate) -> Result<Uuid> {
        let run_id = Uuid::new_v4();
        let mut config = RunConfig::new(date);
        config.pipelines = vec![pipeline.to_owned()];
        config.run_id = Some(run_id);
        let engine = engine.clone();
        let cancel = self.cancel.child_token();
        let pipeline = pipeline.to_owned();
        let mut tasks = self.tasks.lock().map_err(|_| weir_core::Error::internal("the run list is poisoned"))?;
        // Reap the runs that ended.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            info!(%run_id, %pipeline, %date, "run started from the server");
            match engine.run(&config, cancel).await {
                Ok(report) => info!(%run_id, succeeded = report.all_succeeded(), "run from the server finished"),
                Err(e) => warn!(%run_id, error = %e, "run from the server could not start"),
            }
        });
        Ok(run_id)
    }

    /// Cancel the runs under way and wait for them to record it.
    pub async fn close_and_wait(&self) {
        self.cancel.cancel();
        let tasks = match self.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return,
        };
        tasks.join_all().await;
    }
}
