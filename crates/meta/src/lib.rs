//! Weir's metadata store: the `controller`, `audit` and `watermark` tables in
//! PostgreSQL, with the migrations from `/migrations` embedded in the binary.

mod store;

pub use store::{AttemptEnd, AttemptStart, AuditRow, InitReport, MetaStore, Status};
