//! Weir `kafka`: Kafka-protocol topics (Apache Kafka, Redpanda, Tansu), over
//! the broker protocol itself (rskafka: no consumer groups, no broker-side
//! transactions; Weir keeps its own positions).
//!
//! As a source ([`source`]): a topic's messages, JSON, decoded strictly into
//! the columns `options.columns` declares (plain rows, or Debezium's change
//! envelope), read from the offsets the destination committed with the data.
//! As a destination ([`sink`]): one message per row, keyed by the primary key,
//! the value the row as JSON, or for a change stream the envelope Debezium's
//! users know; each row of a load produced once, however often the load is
//! killed and run again.

mod client;
mod decode;
mod envelope;
mod sink;
mod source;

use weir_core::{
    DefaultConnection, Error, LoadType, Result, SinkContext, SinkRegistration, SourceContext, SourceRegistration,
};

pub use client::Brokers;
pub use sink::KafkaSink;
pub use source::{KafkaSource, Offsets, SourceOptions, counts};

/// How the engine finds the source: `source_type = 'kafka'`.
pub const SOURCE: SourceRegistration = SourceRegistration {
    name: "kafka",
    option_keys: SourceOptions::KEYS,
    needs_connection: true,
    captures_changes: true,
    build: build_source,
};

fn build_source(ctx: SourceContext<'_>) -> Result<Box<dyn weir_core::Source>> {
    let options: SourceOptions = weir_core::options::parse(ctx.options, SourceOptions::KEYS)?;
    if ctx.pipeline.load_type != LoadType::Cdc {
        return Err(Error::user(format!(
            "load_type `{}`: a topic is read from the position its destination committed, as a change log is: use              load_type = 'cdc' (options.history = true appends every message; without it, messages are applied              by primary_key)",
            ctx.pipeline.load_type
        )));
    }
    let connection =
        ctx.connection.ok_or_else(|| Error::user("source_connection is empty; a kafka source needs one"))?;
    let topic = ctx
        .pipeline
        .source_table
        .clone()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Error::user("source_table is empty; a kafka source reads the topic named there"))?;
    Ok(Box::new(KafkaSource::new(Brokers::new(&connection)?, &ctx.pipeline.name, topic, options)?))
}

/// How the engine finds the destination: `destination_type = 'kafka'`.
pub const SINK: SinkRegistration = SinkRegistration {
    name: "kafka",
    option_keys: SinkOptions::KEYS,
    default_connection: DefaultConnection::None,
    applies_changes: true,
    resumes_by_count: true,
    build: build_sink,
};

/// `options` of a kafka destination.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkOptions {
    /// Partitions of a topic Weir creates (default 1).
    pub partitions: Option<i32>,
    /// Replicas of a topic Weir creates (default 1).
    pub replication_factor: Option<i16>,
}

impl SinkOptions {
    pub const KEYS: &'static [&'static str] = &["partitions", "replication_factor"];
}

fn build_sink(ctx: SinkContext<'_>) -> Result<Box<dyn weir_core::Sink>> {
    let options: SinkOptions = weir_core::options::parse(ctx.options, SinkOptions::KEYS)?;
    let connection =
        ctx.connection.ok_or_else(|| Error::user("destination_connection is empty; a kafka destination needs one"))?;
    let brokers = Brokers::new(&connection)?;
    let topic =
        ctx.pipeline.destination_name.clone().ok_or_else(|| {
            Error::user("destination_table is empty; a kafka destination needs the topic's name there")
        })?;
    Ok(Box::new(KafkaSink::new(brokers, &ctx.pipeline.name, topic, options)?))
}
