//! Weir's engine: the connector registry and the run loop.
//!
//! For each pipeline of a run: parse its controller row, resolve its
//! connections, build its source and sink from the [`Registry`], write an
//! `audit` row as `running`, stream the source into the sink, save the
//! watermark once the sink has committed, and finish the audit row. A failing
//! pipeline never stops the others; transient errors are retried with backoff,
//! each attempt its own audit row.

mod lake;
mod registry;
mod run;

pub use lake::{Dialect, LAKE_URI_VAR, MaintainOutcome};
pub use registry::Registry;
pub use run::{Engine, EnvLookup, PipelineReport, RunConfig, RunReport};
pub use weir_delta::{MaintainOptions, MaintainReport, QueryResult};
