//! Weir sink `clickhouse`: ClickHouse tables over the HTTP interface.
//!
//! Rows go to a staging table in RowBinary blocks (`options.batch_rows`,
//! 100,000 by default) and become visible at once, when the stage's
//! partitions are attached to the table (see [`load`] for the commit and how
//! a killed load is finished). What the table is:
//! - `full`, and `incremental` without `primary_key`: a MergeTree (appends
//!   carry `_weir_load`, date-sliced ones are partitioned by `_weir_run_date`);
//! - `incremental` with `primary_key`, and `cdc`: a ReplacingMergeTree
//!   versioned by `_weir_version` (the change's LSN, or the load's sequence),
//!   never by the wall clock, so a replay converges; a delete is a row with
//!   `_weir_deleted = 1`; the view `<table>_current` shows the current rows.
//!
//! The column types follow the server's version ([`types`]).

mod client;
mod load;
mod types;

use weir_core::{DefaultConnection, Error, Result, SinkContext, SinkRegistration};

pub use client::Client;
pub use load::{ClickHouseSink, DELETED, LOAD, RUN_DATE, VERSION};
pub use types::{Caps, ChType};

/// How the engine finds this sink: `destination_type = 'clickhouse'`.
pub const REGISTRATION: SinkRegistration = SinkRegistration {
    name: "clickhouse",
    option_keys: ClickHouseOptions::KEYS,
    default_connection: DefaultConnection::None,
    applies_changes: true,
    resumes_by_count: false,
    build,
};

/// `options` keys of a clickhouse destination.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseOptions {
    /// Rows per insert (default 100,000; at most 1,000,000, one atomic block).
    pub batch_rows: Option<usize>,
    /// The new table's sorting key (default: `primary_key`, else none).
    pub order_by: Option<Vec<String>>,
}

impl ClickHouseOptions {
    pub const KEYS: &'static [&'static str] = &["batch_rows", "order_by"];
}

fn build(ctx: SinkContext<'_>) -> Result<Box<dyn weir_core::Sink>> {
    let options: ClickHouseOptions = weir_core::options::parse(ctx.options, ClickHouseOptions::KEYS)?;
    let connection = ctx
        .connection
        .ok_or_else(|| Error::user("destination_connection is empty; a clickhouse destination needs one"))?;
    let client = Client::new(&connection)?;
    Ok(Box::new(ClickHouseSink::new(client, ctx.pipeline, options)?))
}
