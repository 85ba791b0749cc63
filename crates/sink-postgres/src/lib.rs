//! Weir sink `postgres`: PostgreSQL tables loaded by binary COPY in one transaction.
//!
//! Every load runs in a single transaction, so a failure at any point leaves
//! the table as it was:
//! - `full`: `TRUNCATE` then `COPY` into the table; readers wait for the commit
//!   and then see the new contents, never an empty or half-loaded table.
//! - `incremental` without `primary_key`: `COPY` appends; a date-sliced run
//!   first deletes the rows an earlier run loaded for that date (`_weir_run_date`).
//! - `incremental` with `primary_key`: `COPY` into a temporary staging table,
//!   then one `INSERT … ON CONFLICT DO UPDATE` of the latest row per key.
//!
//! The pipeline's watermark is written to `_weir.commits` in the same
//! transaction as the data, so a crash between the sink's commit and the
//! metadata store's update can never load the same rows twice.

mod load;
mod table;
mod types;

use weir_core::{DefaultConnection, Error, Result, SinkContext, SinkRegistration};

pub use load::PostgresSink;
pub use types::{ColumnPlan, existing_column, new_column};

/// How the engine finds this sink: `destination_type = 'postgres'`.
pub const REGISTRATION: SinkRegistration = SinkRegistration {
    name: "postgres",
    option_keys: PostgresOptions::KEYS,
    default_connection: DefaultConnection::MetadataDb,
    applies_changes: true,
    resumes_by_count: false,
    build,
};

/// `options` keys of a postgres destination.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresOptions {
    /// Flush COPY data to the server every this many bytes (default 8 MiB).
    pub copy_buffer_bytes: Option<usize>,
}

impl PostgresOptions {
    pub const KEYS: &'static [&'static str] = &["copy_buffer_bytes"];
}

fn build(ctx: SinkContext<'_>) -> Result<Box<dyn weir_core::Sink>> {
    let options: PostgresOptions = weir_core::options::parse(ctx.options, PostgresOptions::KEYS)?;
    let connection = ctx.connection.ok_or_else(|| Error::internal("postgres sink built without a connection"))?;
    if !matches!(connection.scheme(), "postgres" | "postgresql") {
        return Err(Error::user(format!(
            "destination_connection `{}` is a {}:// URL; a postgres destination needs postgres://…",
            connection.name(),
            connection.scheme()
        )));
    }
    Ok(Box::new(PostgresSink::new(connection, ctx.pipeline, options)?))
}
