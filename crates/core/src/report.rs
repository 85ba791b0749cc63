//! How a run ended, pipeline by pipeline: what `runner` prints, what the
//! completion email says and what `audit.status` holds.

use std::fmt;

use uuid::Uuid;

/// The state of one pipeline in a run, as `audit.status` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Success,
    Failed,
    /// Not run: a dependency failed, or the run was cancelled before it started.
    Skipped,
    /// Left `running` by a runner that died; found by the next runner.
    Abandoned,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Abandoned => "abandoned",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one pipeline ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineReport {
    pub name: String,
    pub status: Status,
    pub attempts: u32,
    pub records_read: u64,
    pub records_written: u64,
    pub watermark: Option<String>,
    pub duration_ms: u64,
    /// Redacted.
    pub error: Option<String>,
    /// Set when another runner sharing the metadata database ran this pipeline
    /// for the same date while this run was under way: `run <id> on <host>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ran_by: Option<String>,
    /// What a transform did, in a line: `9 models built, 31 tests passed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl PipelineReport {
    /// A report for a pipeline that has not run yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            status: Status::Failed,
            attempts: 0,
            records_read: 0,
            records_written: 0,
            watermark: None,
            duration_ms: 0,
            error: None,
            ran_by: None,
            summary: None,
        }
    }

    pub fn succeeded(&self) -> bool {
        self.status == Status::Success
    }
}

/// How a whole run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub run_id: Uuid,
    pub run_date: String,
    /// The run was stopped (Ctrl-C, SIGTERM) before every pipeline finished.
    pub cancelled: bool,
    pub duration_ms: u64,
    pub pipelines: Vec<PipelineReport>,
}

impl RunReport {
    pub fn all_succeeded(&self) -> bool {
        self.pipelines.iter().all(PipelineReport::succeeded)
    }

    pub fn count(&self, status: Status) -> usize {
        self.pipelines.iter().filter(|p| p.status == status).count()
    }

    /// Pipelines that did not succeed: failed, skipped or abandoned.
    pub fn unsuccessful(&self) -> usize {
        self.pipelines.len() - self.count(Status::Success)
    }
}
