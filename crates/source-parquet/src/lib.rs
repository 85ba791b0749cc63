//! Weir source `parquet`: Parquet files on local disk or any S3-compatible store.
//!
//! `data_source` names a file, a folder or a glob, relative to the
//! `source_connection` (`file:///…` or `s3://bucket/prefix?…`) or absolute
//! without one, with date templates (`orders/dt={date}/`). Files of one run are
//! read in path order, row group by row group; their schemas must agree
//! (columns matched by name, integer and float widths widened).

mod checksum;
mod file;
mod location;
mod reader;
mod schema;
mod source;

use weir_core::{Error, Result, SourceContext, SourceRegistration};

pub use source::{ParquetOptions, ParquetSource};

/// How the engine finds this source: `source_type = 'parquet'`.
pub const REGISTRATION: SourceRegistration = SourceRegistration {
    name: "parquet",
    option_keys: ParquetOptions::KEYS,
    needs_connection: false,
    captures_changes: false,
    build,
};

fn build(ctx: SourceContext<'_>) -> Result<Box<dyn weir_core::Source>> {
    let options: ParquetOptions = weir_core::options::parse(ctx.options, ParquetOptions::KEYS)?;
    let data_source = ctx.pipeline.data_source.clone().ok_or_else(|| {
        Error::user("data_source is empty: set it to a Parquet file, folder or glob, e.g. `orders/dt={date}/`")
    })?;
    if let Some(conn) = &ctx.connection
        && !matches!(conn.scheme(), "file" | "s3")
    {
        return Err(Error::user(format!(
            "source_connection `{}` is a {}:// URL; a parquet source reads file:/// or s3:// locations",
            conn.name(),
            conn.scheme()
        )));
    }
    Ok(Box::new(ParquetSource::new(ctx.connection, data_source, options)))
}
