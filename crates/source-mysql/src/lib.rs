//! Weir source `mysql`: MySQL and MariaDB tables, views and queries, read as
//! streamed Arrow batches from consistent snapshots.
//!
//! `source_connection` is a `mysql://` (or `mariadb://`) URL; `source_table` a
//! table or view (`db.table`, or `table` in the URL's database; date templates
//! allowed), or `options.query` a `SELECT`. A full load is one consistent
//! snapshot; an incremental load reads keyset pages ordered by (watermark,
//! key) past the stored watermark; `options.parallelism` reads key ranges on
//! several connections at once. Types map as [`types`] documents.

mod decode;
mod error;
mod geometry;
mod read;
mod relation;
mod source;
pub mod types;

use weir_core::{Error, LoadType, Result, SourceContext, SourceRegistration};

pub use source::{MysqlConfig, MysqlOptions, MysqlSource, Target};

/// How the engine finds this source: `source_type = 'mysql'`.
pub const REGISTRATION: SourceRegistration = SourceRegistration {
    name: "mysql",
    option_keys: MysqlOptions::KEYS,
    needs_connection: true,
    captures_changes: false,
    build,
};

fn build(ctx: SourceContext<'_>) -> Result<Box<dyn weir_core::Source>> {
    let options: MysqlOptions = weir_core::options::parse(ctx.options, MysqlOptions::KEYS)?;
    let def = ctx.pipeline;
    let connection =
        ctx.connection.ok_or_else(|| Error::user("source_connection is empty: name a mysql:// connection"))?;
    if !matches!(connection.scheme(), "mysql" | "mariadb") {
        return Err(Error::user(format!(
            "source_connection `{}` is a {}:// URL; a mysql source needs mysql://user:password@host:3306/database",
            connection.name(),
            connection.scheme()
        )));
    }
    let target = match (&options.query, &def.source_table) {
        (Some(_), Some(_)) => {
            return Err(Error::user("set either source_table or options.query, not both"));
        }
        (Some(query), None) => Target::Query(query.clone()),
        (None, Some(table)) => {
            let mut parts = table.split('.');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(t), None, None) => Target::Table { database: None, table: t.to_owned() },
                (Some(db), Some(t), None) => Target::Table { database: Some(db.to_owned()), table: t.to_owned() },
                _ => return Err(Error::user(format!("source_table `{table}` is not `table` or `database.table`"))),
            }
        }
        (None, None) => {
            return Err(Error::user("source_table is empty: name a table (`chat.messages`) or set options.query"));
        }
    };
    if def.load_type == LoadType::Incremental && def.watermark_column.is_some() && def.primary_key.is_empty() {
        return Err(Error::user(
            "an incremental mysql pipeline with a watermark_column needs primary_key: rows that share the last \
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
    let primary_key = def.primary_key.iter().map(|k| k.as_str().to_owned()).collect();
    let watermark_column = def.watermark_column.as_ref().map(|w| w.as_str().to_owned());
    Ok(Box::new(MysqlSource::new(connection, MysqlConfig { target, primary_key, watermark_column, options })))
}
