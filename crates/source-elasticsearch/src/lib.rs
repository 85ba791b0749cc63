//! Weir source `elasticsearch`: an index, alias or pattern exported with a
//! point in time and `search_after` (a scroll on servers without one), in
//! parallel slices, as Arrow batches typed by the index mapping.
//!
//! `source_connection` is an `http(s)://` URL (basic auth in it, or
//! `?api_key=`; `?ca_file=` for a private CA); `source_table` an index, alias
//! or pattern, date templates allowed (`logs-{date:%Y.%m.%d}`). Types map as
//! [`mapping`] documents; values decode as [`decode`] documents.

mod client;
mod dates;
pub mod decode;
pub mod mapping;
mod read;
mod source;

use weir_core::{Error, LoadType, Result, SourceContext, SourceRegistration};

pub use source::{EsConfig, EsOptions, EsSource};

/// How the engine finds this source: `source_type = 'elasticsearch'`.
pub const REGISTRATION: SourceRegistration = SourceRegistration {
    name: "elasticsearch",
    option_keys: EsOptions::KEYS,
    needs_connection: true,
    captures_changes: false,
    build,
};

fn build(ctx: SourceContext<'_>) -> Result<Box<dyn weir_core::Source>> {
    let options: EsOptions = weir_core::options::parse(ctx.options, EsOptions::KEYS)?;
    let def = ctx.pipeline;
    let connection = ctx
        .connection
        .ok_or_else(|| Error::user("source_connection is empty: name an http(s):// Elasticsearch connection"))?;
    let target = def
        .source_table
        .clone()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Error::user("source_table is empty: name an index, alias or pattern (`logs-*`)"))?;
    if def.load_type == LoadType::Incremental && def.watermark_column.is_some() && def.primary_key.is_empty() {
        return Err(Error::user(
            "an incremental elasticsearch pipeline with a watermark_column needs primary_key (`{_id}` will do): \
             documents that share the last watermark value are read again and merged by it, so none is lost or \
             loaded twice",
        ));
    }
    if let Some(q) = &options.query
        && !q.is_object()
    {
        return Err(Error::user(
            "options.query must be a query DSL object, such as {\"term\": {\"status\": \"active\"}}",
        ));
    }
    if options.page_size == Some(0) || options.slices == Some(0) {
        return Err(Error::user("options.page_size and options.slices must be at least 1"));
    }
    let config = EsConfig {
        target,
        primary_key: def.primary_key.iter().map(|k| k.as_str().to_owned()).collect(),
        watermark_column: def.watermark_column.as_ref().map(|w| w.as_str().to_owned()),
        options,
    };
    Ok(Box::new(EsSource::new(&connection, config)?))
}
