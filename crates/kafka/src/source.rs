//! A topic as a source: its partitions read from the offsets the destination
//! committed with the data (the pipeline's watermark, `0:1200,1:1187`: the
//! next offset of each partition), so that a topic → PostgreSQL, Delta or
//! ClickHouse pipeline is exactly once without consumer groups.
//!
//! A read drains each partition, in partition order, to the end offset the
//! broker reported when the read started: `runner --date` reads what was in
//! the topic then, and each cycle of `runner stream` what arrived since the
//! last. Read again from the same offsets, a partition yields the same
//! messages in the same order, which the destinations that cannot take a
//! write back (a topic, Redis) count on to finish a killed load.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rskafka::client::Client;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::{Record, RecordAndOffset};
use tracing::warn;
use weir_core::{Error, Position, ReadRequest, Result, Source, SourceBatch, SourceStream};

use crate::client::{Brokers, broker_error, ensure_topic};
use crate::decode::{Envelope, Message, MessageDecoder};

/// Bytes one fetch may bring back (a batch of rows).
const FETCH_BYTES: i32 = 8 * 1024 * 1024;
const PATIENCE: Duration = Duration::from_secs(30);

/// `audit.details` keys.
pub mod counts {
    pub const BAD_MESSAGES_SKIPPED: &str = "bad_messages_skipped";
    pub const BAD_MESSAGES_DEAD_LETTERED: &str = "bad_messages_dead_lettered";
    pub const TOMBSTONES_SKIPPED: &str = "tombstones_skipped";
}

/// `options` of a kafka source.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceOptions {
    /// The message's fields, as a SQL column list: `id bigint not null, name text`.
    pub columns: Option<String>,
    /// `none` (the value is the row) or `debezium` (a change envelope).
    pub envelope: Option<String>,
    /// Where a pipeline without a stored position starts: `earliest` (the
    /// default), `latest`, a time (`2025-03-23T00:00:00Z`), or offsets (`0:1200,1:1187`).
    pub start: Option<String>,
    /// `fail` (the default), `skip`, or `dead_letter`.
    pub on_bad_message: Option<String>,
    /// The topic bad messages go to, with `on_bad_message = dead_letter`.
    pub dead_letter_topic: Option<String>,
}

impl SourceOptions {
    pub const KEYS: &'static [&'static str] = &["columns", "envelope", "start", "on_bad_message", "dead_letter_topic"];
}

/// What a message that does not fit the columns gets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OnBad {
    Fail,
    Skip,
    DeadLetter(String),
}

/// Where a read starts without a stored position.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    Earliest,
    Latest,
    Time(chrono::DateTime<chrono::Utc>),
    Offsets(Offsets),
}

/// The next offset to read, by partition: the watermark's text `0:1200,1:1187`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offsets(pub BTreeMap<i32, i64>);

impl Offsets {
    pub fn parse(text: &str) -> Result<Self> {
        let mut map = BTreeMap::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parsed = pair.split_once(':').and_then(|(p, o)| Some((p.trim().parse().ok()?, o.trim().parse().ok()?)));
            match parsed {
                Some((p, o)) if p >= 0 && o >= 0 => {
                    map.insert(p, o);
                }
                _ => {
                    return Err(Error::user(format!(
                        "`{text}` is not a topic position: write partition:offset pairs, like `0:1200,1:1187`"
                    )));
                }
            }
        }
        Ok(Self(map))
    }

    pub fn render(&self) -> String {
        self.0.iter().map(|(p, o)| format!("{p}:{o}")).collect::<Vec<_>>().join(",")
    }
}

pub struct KafkaSource {
    brokers: Brokers,
    pipeline: String,
    topic: String,
    decoder: Arc<MessageDecoder>,
    start: Start,
    on_bad: OnBad,
    /// One client for the source's life (a `runner stream` session reads it every cycle).
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl KafkaSource {
    pub fn new(brokers: Brokers, pipeline: &str, topic: String, options: SourceOptions) -> Result<Self> {
        let columns = options.columns.as_deref().ok_or_else(|| {
            Error::user(
                "options.columns is empty: a kafka source needs the fields of its messages as a SQL column list, \
                 e.g. \"id bigint not null, name text, updated_at timestamptz\"",
            )
        })?;
        let decoder = MessageDecoder::new(columns, Envelope::parse(options.envelope.as_deref())?)?;
        let start = match options.start.as_deref().unwrap_or("earliest") {
            "earliest" => Start::Earliest,
            "latest" => Start::Latest,
            text => match (Offsets::parse(text), chrono::DateTime::parse_from_rfc3339(text)) {
                (Ok(offsets), _) => Start::Offsets(offsets),
                (_, Ok(time)) => Start::Time(time.to_utc()),
                _ => {
                    return Err(Error::user(format!(
                        "options.start `{text}`: use earliest, latest, a time like 2025-03-23T00:00:00Z, or offsets \
                         like 0:1200,1:1187"
                    )));
                }
            },
        };
        let on_bad = match (options.on_bad_message.as_deref().unwrap_or("fail"), options.dead_letter_topic) {
            ("fail", None) => OnBad::Fail,
            ("skip", None) => OnBad::Skip,
            ("dead_letter", Some(topic)) if !topic.trim().is_empty() => OnBad::DeadLetter(topic),
            ("dead_letter", _) => {
                return Err(Error::user("options.on_bad_message = dead_letter needs options.dead_letter_topic"));
            }
            ("fail" | "skip", Some(_)) => {
                return Err(Error::user("options.dead_letter_topic is for options.on_bad_message = dead_letter"));
            }
            (other, _) => {
                return Err(Error::user(format!(
                    "options.on_bad_message `{other}` is not known: use fail, skip or dead_letter"
                )));
            }
        };
        Ok(Self {
            brokers,
            pipeline: pipeline.to_owned(),
            topic,
            decoder: Arc::new(decoder),
            start,
            on_bad,
            client: tokio::sync::Mutex::new(None),
        })
    }

    async fn client(&self) -> Result<Arc<Client>> {
        let mut held = self.client.lock().await;
        if let Some(c) = held.as_ref() {
            return Ok(c.clone());
        }
        let c = self.brokers.connect(Some(PATIENCE)).await?;
        *held = Some(c.clone());
        Ok(c)
    }

    /// The topic's partitions, sorted; a transient error while it does not exist (its producer may create it yet).
    async fn partitions(&self, client: &Client) -> Result<Vec<i32>> {
        let topics = client.list_topics().await.map_err(|e| broker_error(e, "listing topics"))?;
        let topic = topics.into_iter().find(|t| t.name == self.topic).ok_or_else(|| {
            Error::transient(format!(
                "topic `{}` does not exist on {} (yet: it is created by its first producer)",
                self.topic,
                self.brokers.bootstrap.join(",")
            ))
        })?;
        Ok(topic.partitions.into_iter().collect())
    }

    /// Where a partition without a stored offset starts.
    async fn start_of(&self, part: &PartitionClient, stored_any: bool) -> Result<i64> {
        let at = match (&self.start, stored_any) {
            // A partition added since the last read: all of it is new.
            (_, true) | (Start::Earliest, false) => OffsetAt::Earliest,
            (Start::Latest, false) => OffsetAt::Latest,
            (Start::Time(t), false) => OffsetAt::Timestamp(*t),
            (Start::Offsets(o), false) => match o.0.get(&part.partition()) {
                Some(offset) => return Ok(*offset),
                None => OffsetAt::Earliest,
            },
        };
        let offset = part.get_offset(at).await.map_err(|e| broker_error(e, "reading a partition's offsets"))?;
        // A time past the last message answers -1: start at the end.
        if offset < 0 {
            return part.get_offset(OffsetAt::Latest).await.map_err(|e| broker_error(e, "reading a partition's end"));
        }
        Ok(offset)
    }
}

/// One partition's read: from `next` to `end` (the end offset the broker reported at the start).
struct Range {
    client: Arc<PartitionClient>,
    next: i64,
    end: i64,
}

/// The read's state between batches.
struct Read {
    topic: String,
    pipeline: String,
    decoder: Arc<MessageDecoder>,
    on_bad: OnBad,
    ranges: Vec<Range>,
    current: usize,
    offsets: Offsets,
    /// The last position yielded (at first, the stored one).
    last: Option<String>,
    counts: BTreeMap<&'static str, u64>,
    bytes: u64,
    dead_letters: Option<PartitionClient>,
    client: Arc<Client>,
}

impl Read {
    /// The next batch of rows, or `None` once every partition reached its end.
    async fn next(&mut self) -> Result<Option<SourceBatch>> {
        loop {
            let Some(range) = self.ranges.get(self.current) else {
                // Every partition read to its end: a position that moved without a row
                // (a first read from `latest`, bad messages skipped) is committed too.
                let position = self.offsets.render();
                if self.last.as_deref() == Some(position.as_str()) {
                    return Ok(None);
                }
                return Ok(Some(self.batch(arrow::array::RecordBatch::new_empty(self.decoder.schema.clone()))));
            };
            if range.next >= range.end {
                self.current += 1;
                continue;
            }
            let (partition, from) = (range.client.partition(), range.next);
            let (records, _) = match range.client.fetch_records(from, 1..FETCH_BYTES, 100).await {
                Ok(r) => r,
                Err(KafkaError::ServerError { protocol_error: ProtocolError::OffsetOutOfRange, .. }) => {
                    let earliest = range.client.get_offset(OffsetAt::Earliest).await.unwrap_or(-1);
                    return Err(Error::user(format!(
                        "topic `{}` partition {partition}: offset {from} is gone (the broker keeps offsets from \
                         {earliest} on: its retention deleted messages this pipeline had not read). Nothing after \
                         it was read; to go on with what is left, set the pipeline's position past the gap (see the \
                         README's topic source)",
                        self.topic
                    )));
                }
                Err(e) => return Err(broker_error(e, &format!("reading partition {partition} of `{}`", self.topic))),
            };
            // A broker answers with whole record batches: keep what is at or after `from`.
            let mut records: Vec<RecordAndOffset> = records.into_iter().filter(|r| r.offset >= from).collect();
            records.sort_by_key(|r| r.offset);
            let Some(last) = records.last().map(|r| r.offset) else {
                // Nothing came back below the end the broker reported (its answer was empty, or
                // what is left are transaction markers): this read stops here, at the offset it
                // has, and the next one asks again. Moving past offsets no message was read from
                // could skip messages.
                warn!(topic = %self.topic, partition, from, end = range.end, "the broker returned no message before the partition's end; going on from here next time");
                self.current += 1;
                continue;
            };
            self.ranges[self.current].next = last + 1;
            self.offsets.0.insert(partition, last + 1);
            let batch = self.rows(partition, &records).await?;
            return Ok(Some(self.batch(batch)));
        }
    }

    /// A batch at the position reached.
    fn batch(&mut self, batch: arrow::array::RecordBatch) -> SourceBatch {
        let watermark = self.offsets.render();
        self.last = Some(watermark.clone());
        SourceBatch {
            batch,
            position: Position { watermark: Some(watermark), bytes_read: self.bytes, counts: self.counts.clone() },
        }
    }

    /// Decode a fetch's messages; the bad ones fail the read, or are skipped or dead-lettered.
    async fn rows(&mut self, partition: i32, records: &[RecordAndOffset]) -> Result<arrow::array::RecordBatch> {
        let mut messages = Vec::with_capacity(records.len());
        for r in records {
            self.bytes += r.record.approximate_size() as u64;
            match &r.record.value {
                Some(value) => messages.push(Message {
                    value,
                    offset: r.offset,
                    timestamp_ms: r.record.timestamp.timestamp_millis(),
                }),
                // A key's tombstone (a log-compaction marker after a delete): no row.
                None if self.decoder.envelope() == Envelope::Debezium => {
                    *self.counts.entry(counts::TOMBSTONES_SKIPPED).or_default() += 1;
                }
                None => {}
            }
        }
        if messages.len() < records.len() && self.decoder.envelope() == Envelope::None {
            let bad: Vec<_> = records.iter().filter(|r| r.record.value.is_none()).collect();
            for r in bad {
                self.bad(partition, r, "the message has no value".into()).await?;
            }
        }
        if let Ok(batch) = self.decoder.decode(&messages) {
            return Ok(batch);
        }
        // Find the bad ones: one message at a time.
        let mut good = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            match self.decoder.decode(std::slice::from_ref(m)) {
                Ok(b) => good.push(b),
                Err(why) => {
                    let record = records.iter().find(|r| r.offset == m.offset).unwrap_or(&records[i]);
                    self.bad(partition, record, why).await?;
                }
            }
        }
        Ok(arrow::compute::concat_batches(&self.decoder.schema, &good)?)
    }

    async fn bad(&mut self, partition: i32, record: &RecordAndOffset, why: String) -> Result<()> {
        let at = format!("topic `{}` partition {partition} offset {}", self.topic, record.offset);
        match &self.on_bad {
            OnBad::Fail => Err(Error::user(format!(
                "{at}: the message does not fit options.columns: {why} (options.on_bad_message = skip or \
                 dead_letter lets the pipeline go on without it)"
            ))),
            OnBad::Skip => {
                warn!(topic = %self.topic, partition, offset = record.offset, error = %why, "skipping a bad message");
                *self.counts.entry(counts::BAD_MESSAGES_SKIPPED).or_default() += 1;
                Ok(())
            }
            OnBad::DeadLetter(topic) => {
                if self.dead_letters.is_none() {
                    self.dead_letters = Some(dead_letter_partition(&self.client, topic).await?);
                }
                let mut headers = record.record.headers.clone();
                for (k, v) in [
                    ("weir.pipeline", self.pipeline.clone()),
                    ("weir.error", why.clone()),
                    ("weir.topic", self.topic.clone()),
                    ("weir.partition", partition.to_string()),
                    ("weir.offset", record.offset.to_string()),
                ] {
                    headers.insert(k.to_owned(), v.into_bytes());
                }
                let copy = Record { headers, ..record.record.clone() };
                let client = self.dead_letters.as_ref().expect("set above");
                client
                    .produce(vec![copy], Compression::NoCompression)
                    .await
                    .map_err(|e| broker_error(e, &format!("sending a bad message to `{topic}`")))?;
                warn!(topic = %self.topic, partition, offset = record.offset, dead_letter_topic = %topic, error = %why, "sent a bad message to the dead-letter topic");
                *self.counts.entry(counts::BAD_MESSAGES_DEAD_LETTERED).or_default() += 1;
                Ok(())
            }
        }
    }
}

/// Partition 0 of the dead-letter topic, created (one partition) if missing.
async fn dead_letter_partition(client: &Client, topic: &str) -> Result<PartitionClient> {
    ensure_topic(client, topic, 1, 1).await?;
    client
        .partition_client(topic, 0, UnknownTopicHandling::Retry)
        .await
        .map_err(|e| broker_error(e, &format!("reaching the dead-letter topic `{topic}`")))
}

#[async_trait::async_trait]
impl Source for KafkaSource {
    async fn check(&self) -> Result<Option<arrow::datatypes::SchemaRef>> {
        let client = self.client().await?;
        client.list_topics().await.map_err(|e| broker_error(e, "listing topics"))?;
        Ok(Some(self.decoder.schema.clone()))
    }

    async fn open(&self, request: &ReadRequest) -> Result<SourceStream> {
        let stored = request.watermark_before.as_deref().map(Offsets::parse).transpose()?;
        let client = self.client().await?;
        let ids = match self.partitions(&client).await {
            Ok(ids) => ids,
            Err(e) => {
                // The client may hold a dead connection: the next attempt makes a new one.
                *self.client.lock().await = None;
                return Err(e);
            }
        };
        if request.same_order && ids.len() > 1 {
            // Partition by partition, a partition that grew between a killed load and
            // its re-run would move every row after it: counting rows would skip the wrong ones.
            return Err(Error::user(format!(
                "topic `{}` has {} partitions, and this destination finishes a killed load by counting the rows \
                 it already wrote, which needs the same messages in the same order on every read: read a topic of \
                 one partition into it, or read this one into a destination that commits the offsets with the data \
                 (postgres, delta, clickhouse)",
                self.topic,
                ids.len()
            )));
        }
        let mut ranges = Vec::with_capacity(ids.len());
        let mut offsets = stored.clone().unwrap_or_default();
        for id in ids {
            let part = client
                .partition_client(self.topic.as_str(), id, UnknownTopicHandling::Retry)
                .await
                .map_err(|e| broker_error(e, &format!("reaching partition {id} of `{}`", self.topic)))?;
            let next = match stored.as_ref().and_then(|s| s.0.get(&id)) {
                Some(offset) => *offset,
                None => self.start_of(&part, stored.is_some()).await?,
            };
            let end =
                part.get_offset(OffsetAt::Latest).await.map_err(|e| broker_error(e, "reading a partition's end"))?;
            offsets.0.insert(id, next);
            ranges.push(Range { client: Arc::new(part), next, end });
        }
        let read = Read {
            topic: self.topic.clone(),
            pipeline: self.pipeline.clone(),
            decoder: self.decoder.clone(),
            on_bad: self.on_bad.clone(),
            ranges,
            current: 0,
            offsets,
            last: request.watermark_before.clone(),
            counts: BTreeMap::new(),
            bytes: 0,
            dead_letters: None,
            client,
        };
        let batches =
            futures::stream::try_unfold(
                read,
                |mut read| async move { Ok(read.next().await?.map(|batch| (batch, read))) },
            );
        Ok(SourceStream::new(self.decoder.schema.clone(), batches.boxed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_and_write_as_text() {
        let o = Offsets::parse("1:1187, 0:1200").unwrap();
        assert_eq!(o.render(), "0:1200,1:1187");
        for bad in ["0/16B3748", "a:1", "0:-1", "0:1:2"] {
            assert!(Offsets::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_start_is_a_word_offsets_or_a_time() {
        let brokers = Brokers::new(&weir_core::ConnectionUrl::parse("s", "kafka://127.0.0.1:9092").unwrap()).unwrap();
        let start = |s: &str| {
            let options =
                SourceOptions { columns: Some("id bigint".into()), start: Some(s.into()), ..Default::default() };
            KafkaSource::new(brokers.clone(), "p", "t".into(), options).map(|k| k.start)
        };
        assert_eq!(start("latest").unwrap(), Start::Latest);
        assert!(matches!(start("0:5,1:7").unwrap(), Start::Offsets(o) if o.0.len() == 2));
        assert!(matches!(start("2025-03-23T00:00:00Z").unwrap(), Start::Time(_)));
        assert!(start("yesterday").unwrap_err().to_string().contains("options.start"));
    }
}
