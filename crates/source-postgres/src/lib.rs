//! Weir source `postgres`: PostgreSQL tables, views and queries, read by
//! binary COPY into streamed Arrow batches from one consistent snapshot.
//!
//! `source_connection` is a `postgres://` URL; `source_table` a table or view
//! (`schema.table`, or `table` in `public`; date templates allowed), or
//! `options.query` a `SELECT`. A full load is one `COPY (SELECT …) TO STDOUT
//! (FORMAT binary)` in a `REPEATABLE READ, READ ONLY` snapshot; an incremental
//! load reads keyset pages ordered by (watermark, key) past the stored
//! watermark; `options.parallelism` reads key ranges on several connections
//! sharing one exported snapshot. Types map as [`types`] documents.
//!
//! `load_type = 'cdc'` reads a table's changes from a logical replication
//! slot instead (`cdc/`): a snapshot at the slot's consistent point, then
//! every change, over Weir's own replication connection ([`replication`]),
//! decoded from pgoutput ([`pgoutput`]) into Arrow change rows (`changes.rs`);
//! pipelines that name one slot read it in one pass (`cdc/read.rs`).

mod cdc;
mod changes;
mod decode;
mod error;
pub mod pgoutput;
mod read;
mod relation;
pub mod replication;
mod source;
pub mod types;

use weir_core::{Error, LoadType, Result, SourceContext, SourceRegistration};

pub use cdc::{CdcNames, OnSlotLost};
pub use source::{PostgresConfig, PostgresOptions, PostgresSource, Target};

/// How the engine finds this source: `source_type = 'postgres'`.
pub const REGISTRATION: SourceRegistration = SourceRegistration {
    name: "postgres",
    option_keys: PostgresOptions::KEYS,
    needs_connection: true,
    captures_changes: true,
    build,
};

fn build(ctx: SourceContext<'_>) -> Result<Box<dyn weir_core::Source>> {
    let options: PostgresOptions = weir_core::options::parse(ctx.options, PostgresOptions::KEYS)?;
    let def = ctx.pipeline;
    let connection =
        ctx.connection.ok_or_else(|| Error::user("source_connection is empty: name a postgres:// connection"))?;
    if !matches!(connection.scheme(), "postgres" | "postgresql") {
        return Err(Error::user(format!(
            "source_connection `{}` is a {}:// URL; a postgres source needs postgres://user:password@host:5432/database",
            connection.name(),
            connection.scheme()
        )));
    }
    let target = match (&options.query, &def.source_table) {
        (Some(_), Some(_)) => return Err(Error::user("set either source_table or options.query, not both")),
        (Some(query), None) => Target::Query(query.clone()),
        (None, Some(table)) => {
            let mut parts = table.split('.');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(t), None, None) => Target::Table { schema: "public".to_owned(), table: t.to_owned() },
                (Some(s), Some(t), None) => Target::Table { schema: s.to_owned(), table: t.to_owned() },
                _ => return Err(Error::user(format!("source_table `{table}` is not `table` or `schema.table`"))),
            }
        }
        (None, None) => {
            return Err(Error::user("source_table is empty: name a table (`public.orders`) or set options.query"));
        }
    };
    if def.load_type == LoadType::Incremental && def.watermark_column.is_some() && def.primary_key.is_empty() {
        return Err(Error::user(
            "an incremental postgres pipeline with a watermark_column needs primary_key: rows that share the last \
             watermark value are read again and merged by it, so none is lost or loaded twice",
        ));
    }
    if options.lag.is_some() && (def.watermark_column.is_none() || def.primary_key.is_empty()) {
        return Err(Error::user(
            "options.lag re-reads rows behind the watermark: it needs watermark_column and primary_key",
        ));
    }
    if let Some(col) = &options.date_column {
        weir_core::Ident::parse(col, "options.date_column")?;
    }
    let cdc = match def.load_type {
        LoadType::Cdc => {
            let refused = [
                (options.query.is_some(), "options.query (capture reads a table: name it in source_table)"),
                (def.watermark_column.is_some(), "watermark_column (the position is the WAL's)"),
                (options.lag.is_some(), "options.lag"),
                (options.date_column.is_some(), "options.date_column"),
            ];
            if let Some((_, what)) = refused.iter().find(|(set, _)| *set) {
                return Err(Error::user(format!("a cdc pipeline takes no {what}")));
            }
            Some(CdcNames::new(&def.name, options.slot.as_deref(), options.publication.as_deref())?)
        }
        _ => {
            let cdc_only = [
                ("slot", options.slot.is_some()),
                ("publication", options.publication.is_some()),
                ("on_slot_lost", options.on_slot_lost.is_some()),
                ("commit_rows", options.commit_rows.is_some()),
                ("slot_warn_mb", options.slot_warn_mb.is_some()),
            ];
            if let Some((key, _)) = cdc_only.iter().find(|(_, set)| *set) {
                return Err(Error::user(format!("options.{key} is for load_type `cdc`")));
            }
            None
        }
    };
    let primary_key = def.primary_key.iter().map(|k| k.as_str().to_owned()).collect();
    let watermark_column = def.watermark_column.as_ref().map(|w| w.as_str().to_owned());
    let config = PostgresConfig { target, primary_key, watermark_column, options, cdc };
    Ok(Box::new(PostgresSource::new(connection, config)))
}
