//! Weir's lake, with delta-rs: the Delta sink (`destination_type = 'delta'`),
//! SQL over the catalog's tables ([`query`]) and table maintenance
//! ([`maintain`]). The catalog itself lives in the metadata store; the sink
//! reports each table it committed in [`weir_core::LoadOutcome::table`].
//!
//! A table lives at the destination connection's base URI (or the default
//! lake's) + `schema_name/destination_table`.

mod catalog;
mod error;
mod json;
mod location;
mod maintain;
mod query;
mod sink;
mod stream;
mod types;

pub use catalog::{Dialect, Registration, ddl};
pub use location::{Lake, TableLocation};
pub use maintain::{MaintainOptions, MaintainReport, maintain};
pub use query::{Commit, QueryResult, QueryTable, history, query};
pub use sink::DeltaSink;
pub use stream::RUN_DATE_COLUMN;

use weir_core::{DefaultConnection, SinkRegistration};

pub const REGISTRATION: SinkRegistration = SinkRegistration {
    name: "delta",
    option_keys: sink::OPTION_KEYS,
    default_connection: DefaultConnection::Lake,
    applies_changes: true,
    resumes_by_count: false,
    build: DeltaSink::build,
};
