//! Weir's metadata store: the `controller`, `audit`, `watermark`, `catalog`,
//! `run`, `pipeline_lease`, `notification` and `events` tables in PostgreSQL,
//! with the migrations from `/migrations` embedded in the binary.

mod dashboard;
mod events;
mod runs;
mod store;

pub use dashboard::{AuditFilter, PipelineSummary, RunFilter, RunRow};
pub use events::{AnalyticsQuery, AnalyticsRow, GroupBy, MAX_GROUPS, Metric, NewEvent};
pub use runs::{Abandoned, Claim, DoneElsewhere, NotificationRecord, RunEnd, RunStart};
pub use store::{AttemptEnd, AttemptStart, AuditRow, CatalogRow, InitReport, MaintenanceRecord, MetaStore};
pub use weir_core::Status;
