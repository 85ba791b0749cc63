//! Weir's metadata store: the `controller`, `audit`, `watermark` and `catalog`
//! tables in PostgreSQL, with the migrations from `/migrations` embedded in the binary.

mod store;

pub use store::{AttemptEnd, AttemptStart, AuditRow, CatalogRow, InitReport, MaintenanceRecord, MetaStore, Status};
