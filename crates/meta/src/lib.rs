//! Weir's metadata store: the `controller`, `audit`, `watermark`, `catalog`,
//! `run`, `pipeline_lease` and `notification` tables in PostgreSQL, with the
//! migrations from `/migrations` embedded in the binary.

mod runs;
mod store;

pub use runs::{Abandoned, Claim, DoneElsewhere, NotificationRecord, RunEnd, RunStart};
pub use store::{AttemptEnd, AttemptStart, AuditRow, CatalogRow, InitReport, MaintenanceRecord, MetaStore};
pub use weir_core::Status;
