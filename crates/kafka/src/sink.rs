//! Rows into a topic, each produced once per load.
//!
//! A broker without transactions (or a client without them) cannot undo a
//! message, so a load's messages carry where they come from: headers
//! `weir.pipeline`, `weir.from` (the watermark the load started from) and
//! `weir.row` (the row's place in the load). A row's partition follows from its
//! key, and a partition keeps the order it was sent, so the last message of
//! each partition says how far a load got there. A load that starts from the
//! watermark a killed one started from reads the same rows in the same order,
//! and skips in each partition the rows already there; so does a batch resent
//! after its answer was lost. The load after a complete one starts from a new
//! watermark and skips nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use tracing::{debug, info, warn};
use weir_core::{Error, LoadOutcome, LoadRequest, Result, Sink, SourceStream};

use crate::SinkOptions;
use crate::client::{Brokers, broker_error, ensure_topic};
use crate::envelope::{Encoder, partition_of};

const BATCH_BYTES: usize = 1024 * 1024;
const BATCH_RECORDS: usize = 5_000;
const PATIENCE: Duration = Duration::from_secs(30);

pub struct KafkaSink {
    brokers: Brokers,
    pipeline: String,
    topic: String,
    options: SinkOptions,
}

/// One partition: where the load resumes there, and what waits to be sent.
struct Partition {
    /// For reading its tail (patient).
    reader: PartitionClient,
    /// For producing (one try: a failure is checked against the tail).
    writer: PartitionClient,
    /// The last row of this load already in the partition.
    resume: Option<u64>,
    pending: Vec<Record>,
    pending_bytes: usize,
    last_row: u64,
}

impl KafkaSink {
    pub fn new(brokers: Brokers, pipeline: &str, topic: String, options: SinkOptions) -> Result<Self> {
        Ok(Self { brokers, pipeline: pipeline.to_owned(), topic, options })
    }

    /// The last row of the load that started at `from` in this partition, if its last message is one.
    async fn tail(&self, reader: &PartitionClient, from: &str) -> Result<Option<u64>> {
        let end =
            reader.get_offset(OffsetAt::Latest).await.map_err(|e| broker_error(e, "reading a partition's end"))?;
        if end <= 0 {
            return Ok(None);
        }
        let (records, _) = reader
            .fetch_records(end - 1, 1..64 * 1024 * 1024, 1_000)
            .await
            .map_err(|e| broker_error(e, "reading a partition's last message"))?;
        // The last record of what came back (a broker may answer with the whole batch
        // that holds the offset asked for, and Tansu's end offset is its last batch's).
        let Some(last) = records.into_iter().max_by_key(|r| r.offset) else { return Ok(None) };
        let header = |k: &str| last.record.headers.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
        if header("weir.pipeline").as_deref() != Some(self.pipeline.as_str())
            || header("weir.from").as_deref() != Some(from)
        {
            return Ok(None);
        }
        Ok(header("weir.row").and_then(|r| r.parse().ok()))
    }

    /// Send a partition's pending messages. A failure is checked against the
    /// partition's tail: if the batch landed (its answer was lost) it is not sent again.
    async fn flush(&self, p: &mut Partition, from: &str) -> Result<()> {
        if p.pending.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut p.pending);
        p.pending_bytes = 0;
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=6 {
            let failure = match p.writer.produce(records.clone(), Compression::NoCompression).await {
                Ok(_) if lose_answer() => "the answer was lost (WEIR_KAFKA_LOSE_ANSWER)".to_owned(),
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            };
            warn!(partition = p.writer.partition(), error = %failure, attempt, "producing failed; checking whether the batch landed");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            match self.tail(&p.reader, from).await {
                Ok(Some(row)) if row >= p.last_row => {
                    debug!(partition = p.writer.partition(), "the batch had landed");
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) if attempt < 6 => warn!(error = %e, "could not read the partition's tail; trying again"),
                Err(e) => return Err(e),
            }
        }
        Err(Error::transient(format!(
            "Kafka: producing to partition {} of `{}` failed 6 times",
            p.writer.partition(),
            self.topic
        )))
    }
}

/// The tests that prove a batch is never produced twice lose the answer to
/// the `WEIR_KAFKA_LOSE_ANSWER`-th batch (after the broker took it). Debug builds only.
fn lose_answer() -> bool {
    #[cfg(debug_assertions)]
    {
        static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if let Some(n) = std::env::var("WEIR_KAFKA_LOSE_ANSWER").ok().and_then(|v| v.parse::<u64>().ok()) {
            return SENT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == n;
        }
    }
    false
}

/// The tests that prove a killed load is continued end the process once
/// `WEIR_KAFKA_CRASH_AFTER_ROWS` rows are produced. Debug builds only.
fn crash_after(rows: u64) {
    #[cfg(debug_assertions)]
    if std::env::var("WEIR_KAFKA_CRASH_AFTER_ROWS").ok().and_then(|v| v.parse::<u64>().ok()).is_some_and(|n| rows >= n)
    {
        std::process::abort();
    }
    let _ = rows;
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    async fn check(&self) -> Result<()> {
        let client = self.brokers.connect(Some(Duration::from_secs(10))).await?;
        client.list_topics().await.map_err(|e| broker_error(e, "listing topics"))?;
        Ok(())
    }

    async fn committed_watermark(&self, _pipeline: &str) -> Result<Option<String>> {
        // A load killed after its last message and before the metadata database
        // heard of it is run again from the same watermark, and skips every row.
        Ok(None)
    }

    async fn load(&self, request: &LoadRequest, input: SourceStream) -> Result<LoadOutcome> {
        let topic = request.run_date.render(&self.topic)?;
        let patient = self.brokers.connect(Some(PATIENCE)).await?;
        let hasty: Arc<rskafka::client::Client> = self.brokers.connect(None).await?;
        let partitions = ensure_topic(
            &patient,
            &topic,
            self.options.partitions.unwrap_or(1).max(1),
            self.options.replication_factor.unwrap_or(1),
        )
        .await?;
        let from = request.watermark_before.clone().unwrap_or_default();
        let mut parts = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let reader = patient
                .partition_client(topic.as_str(), p, UnknownTopicHandling::Retry)
                .await
                .map_err(|e| broker_error(e, &format!("reaching partition {p} of `{topic}`")))?;
            let writer = hasty
                .partition_client(topic.as_str(), p, UnknownTopicHandling::Error)
                .await
                .map_err(|e| broker_error(e, &format!("reaching partition {p} of `{topic}`")))?;
            let resume = self.tail(&reader, &from).await?;
            if let Some(row) = resume {
                info!(partition = p, row, "a load from this watermark got this far before: going on after it");
            }
            parts.push(Partition { reader, writer, resume, pending: Vec::new(), pending_bytes: 0, last_row: 0 });
        }

        let key: Vec<String> = request.primary_key.iter().map(|k| k.as_str().to_owned()).collect();
        let mut encoder = Encoder::new(&input.schema, &key, &request.pipeline)?;
        let mut outcome = LoadOutcome { watermark: request.watermark_before.clone(), ..Default::default() };
        let (mut row, mut sent) = (0u64, 0u64);
        let from_header = from.clone().into_bytes();
        let mut batches = input.batches;
        while let Some(item) = batches.next().await {
            let item = item?;
            outcome.record(&item);
            let now = chrono::Utc::now();
            for r in 0..item.batch.num_rows() {
                let this = row;
                row += 1;
                let key = encoder.key(&item.batch, r)?;
                let p = match &key {
                    Some(k) => partition_of(k, partitions),
                    None => (this % partitions as u64) as i32,
                } as usize;
                let part = &mut parts[p];
                if part.resume.is_some_and(|done| this <= done) {
                    continue;
                }
                let value = encoder.message(&item.batch, r, now.timestamp_millis())?;
                let headers = BTreeMap::from([
                    ("weir.pipeline".to_owned(), self.pipeline.clone().into_bytes()),
                    ("weir.from".to_owned(), from_header.clone()),
                    ("weir.row".to_owned(), this.to_string().into_bytes()),
                ]);
                let record = Record { key, value: Some(value), headers, timestamp: now };
                part.pending_bytes += record.approximate_size();
                part.pending.push(record);
                part.last_row = this;
                if part.pending_bytes >= BATCH_BYTES || part.pending.len() >= BATCH_RECORDS {
                    sent += part.pending.len() as u64;
                    self.flush(part, &from).await?;
                    crash_after(sent);
                }
            }
        }
        for part in &mut parts {
            sent += part.pending.len() as u64;
            self.flush(part, &from).await?;
            crash_after(sent);
        }
        debug!(topic, rows = row, sent, "produced");
        let json = encoder.counts;
        for (key, n) in [
            (weir_core::narrow::counts::JSON_SPECIAL_FLOATS, json.special_floats),
            (weir_core::narrow::counts::JSON_DUPLICATE_MAP_KEYS, json.duplicate_map_keys),
        ] {
            if n > 0 {
                outcome.counts.insert(key, n);
            }
        }
        outcome.rows_written = row;
        Ok(outcome)
    }
}
