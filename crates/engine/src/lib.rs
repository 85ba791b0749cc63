//! Weir's engine: the connector registry and the run loop.
//!
//! A run reads the controller table, orders the selected pipelines by
//! `depends_on` (a cycle rejects the run), and runs up to `concurrency` of
//! them at once. For each: parse its controller row, resolve its connections,
//! build its source and sink from the [`Registry`], claim its lease in the
//! metadata database (one runner at a time), write an `audit` row as
//! `running`, stream the source into the sink, save the watermark once the sink
//! has committed, and finish the audit row. A failing pipeline never stops the
//! others, and those that depend on it are `skipped`; transient errors are
//! retried with backoff, each attempt its own audit row. The run heartbeats
//! its leases; the next runner marks a dead runner's attempts `abandoned`.
//! At the end, the completion email. `schedule` runs what is due, by
//! `--every` or by each pipeline's cron, until cancelled. `stream` keeps
//! `cdc` pipelines committing their changes every second or so, until cancelled.

mod attempt;
mod enrich;
mod group;
mod lake;
mod plan;
mod registry;
mod run;
mod schedule;
mod stream;

pub use lake::{Dialect, LAKE_URI_VAR, MaintainOutcome};
pub use registry::Registry;
pub use run::{Engine, EnvLookup, Observer, RunConfig, RunEvent};
pub use schedule::Cron;
pub use stream::{SlotReport, StreamConfig};
pub use tokio_util::sync::CancellationToken;
pub use weir_core::{PipelineReport, RunReport, Status};
pub use weir_delta::{Commit, MaintainOptions, MaintainReport, QueryResult};
pub use weir_notify::{Notifier, NotifyOn};
