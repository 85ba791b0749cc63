//! Weir sink `redis`: each row becomes commands on the structures the
//! controller row's `options` describe:
//!
//! ```json
//! {"streams":     [{"key": "enriched_events:{content_type}", "maxlen": 100000}],
//!  "sorted_sets": [{"key": "top_engaging_content:{content_type}", "member": "content_id",
//!                   "increment": "engagement_seconds"}],
//!  "hashes":      [{"key": "content_summary:{content_id}",
//!                   "increment": {"events": 1, "engagement_seconds": "engagement_seconds"},
//!                   "set": {"last_user_id": "user_id"}}]}
//! ```
//!
//! `{column}` in a key is the row's value; an increment is a column or a
//! constant. Streams get `XADD … MAXLEN ~ n`, sorted sets `ZINCRBY`, hashes
//! `HINCRBY`/`HINCRBYFLOAT` and `HSET`.
//!
//! Exactly once: counters must never count a row twice, and Redis has no
//! rollback. Rows go in chunks (`options.chunk_rows`), each applied by one
//! Lua script (atomic in Redis) that first checks the pipeline's position in
//! `weir:{<pipeline>}:applied` — the watermark the load started from and how
//! many of its rows are applied — and moves it with the writes. A chunk whose
//! answer was lost is found applied and skipped; a load killed half way is
//! continued by the next one, which starts from the same watermark and reads
//! the same rows in the same order, after the rows already applied. The
//! last chunk records the load's watermark as committed; it wins over the
//! metadata database's copy.

mod load;

use std::collections::BTreeMap;

use serde::Deserialize;
use weir_core::{DefaultConnection, Error, Result, SinkContext, SinkRegistration};

pub use load::RedisSink;

/// How the engine finds this sink: `destination_type = 'redis'`.
pub const REGISTRATION: SinkRegistration = SinkRegistration {
    name: "redis",
    option_keys: RedisOptions::KEYS,
    default_connection: DefaultConnection::None,
    applies_changes: false,
    resumes_by_count: true,
    build,
};

/// `options` of a redis destination.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisOptions {
    pub streams: Vec<StreamSpec>,
    pub sorted_sets: Vec<SortedSetSpec>,
    pub hashes: Vec<HashSpec>,
    /// Rows per script call (default 500).
    pub chunk_rows: Option<usize>,
}

impl RedisOptions {
    pub const KEYS: &'static [&'static str] = &["streams", "sorted_sets", "hashes", "chunk_rows"];
}

/// A stream per key: every row appended as an entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    pub key: String,
    /// Keep about this many entries (`MAXLEN ~`); none: no trimming.
    pub maxlen: Option<u64>,
    /// The columns an entry holds (default: all).
    pub fields: Option<Vec<String>>,
}

/// A sorted set per key: each row adds its increment to its member's score.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SortedSetSpec {
    pub key: String,
    /// The column whose value is the member.
    pub member: String,
    /// A column or a constant (default 1).
    #[serde(default = "one")]
    pub increment: Amount,
}

/// A hash per key: counters incremented and fields set from the row.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashSpec {
    pub key: String,
    /// Field → a column or a constant to add.
    #[serde(default)]
    pub increment: BTreeMap<String, Amount>,
    /// Field → the column whose value it takes (the row's last value).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
}

/// An increment: a number, or the name of a numeric column.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    Integer(i64),
    Float(f64),
    Column(String),
}

fn one() -> Amount {
    Amount::Integer(1)
}

fn build(ctx: SinkContext<'_>) -> Result<Box<dyn weir_core::Sink>> {
    let options: RedisOptions = weir_core::options::parse(ctx.options, RedisOptions::KEYS)?;
    if options.streams.is_empty() && options.sorted_sets.is_empty() && options.hashes.is_empty() {
        return Err(Error::user(
            "a redis destination writes what options describe: give it streams, sorted_sets or hashes",
        ));
    }
    let connection =
        ctx.connection.ok_or_else(|| Error::user("destination_connection is empty; a redis destination needs one"))?;
    if !matches!(connection.scheme(), "redis" | "rediss") {
        return Err(Error::user(format!(
            "destination_connection {connection} is a {}:// URL; a redis destination needs redis://[user:password@]host:6379[/db]",
            connection.scheme()
        )));
    }
    Ok(Box::new(RedisSink::new(connection, &ctx.pipeline.name, options)?))
}
