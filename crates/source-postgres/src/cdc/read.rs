//! Reading a slot's changes: one pass over the log (a *round*) serves every
//! pipeline that reads the slot at that time, each receiving its own table's
//! changes.
//!
//! A slot costs the server a full decoding of the WAL, so pipelines that name
//! one slot share it ([`weir_core::ReadGroup`]): the first to ask leads the
//! round, waits until the others that take part in the run have asked too (or
//! [`GATHER`] has passed), then streams from the lowest of their positions to
//! the WAL position read at their start, and routes each change to the
//! pipelines whose table it changed and whose position it is past. A pipeline
//! alone in its group is a round of one.
//!
//! Between rounds the replication connection is parked, so that the next
//! round (in `runner stream`) goes on where this one stopped without
//! reconnecting and decoding the log again. Nothing reads it while it is
//! parked: the server waits on a full socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{Mutex, mpsc};
use tracing::{debug, warn};
use weir_core::changes::op;
use weir_core::{ConnectionUrl, Error, Position, ReadGroup, Result, SourceBatch, SourceStream};

use crate::changes::{ChangeBatcher, Meta, schema};
use crate::error::db_error;
use crate::pgoutput::{self, Message, Value};
use crate::replication::{Lsn, ReplicationConn, Streamed};
use crate::types::Column;

/// Microseconds from 1970 to PostgreSQL's epoch, 2000-01-01.
const EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Text of changes held for one pipeline before a batch goes to its sink.
const BATCH_BYTES: usize = 32 * 1024 * 1024;
/// How long a round waits at most for the group's other pipelines to ask
/// (those between attempts step out of the group meanwhile). One that asks
/// later reads in a pass of its own: slower, never wrong.
const GATHER: Duration = Duration::from_secs(60);
/// How often a gathering round looks again.
const GATHER_POLL: Duration = Duration::from_millis(10);

/// A replication stream parked between rounds.
struct Parked {
    repl: ReplicationConn,
    /// The publications it was started with: a round that needs another starts anew.
    publications: Vec<String>,
    /// Where the last round ended: the next one must start here to go on.
    at: Lsn,
    /// The message that ended the last round, the first of the next.
    pending: Option<Streamed>,
    /// The relations the server described on this connection (it does so once).
    relations: HashMap<u32, pgoutput::Relation>,
}

/// A slot's reader, shared by the pipelines of its read group (or owned by a
/// pipeline that reads alone).
#[derive(Default)]
pub struct Reader {
    /// The connection: held by the round under way, else parked here.
    conn: Mutex<Option<Parked>>,
    /// The pipelines gathered for the next round.
    forming: std::sync::Mutex<Forming>,
    /// The highest position confirmed to the slot, and whether the server has
    /// not heard of it yet (a round held the connection then).
    confirmed: std::sync::Mutex<(Lsn, bool)>,
    /// Positions that snapshots under way will commit ([`Hold`]): the slot
    /// must not be confirmed past them, though no watermark says so yet.
    holds: std::sync::Mutex<HashMap<u64, Lsn>>,
    next_hold: AtomicU64,
}

/// A snapshot under way holds the slot at its position until its pipeline has
/// committed (or gives up): a peer that commits a later position meanwhile
/// must not confirm it, or the changes between the two would be gone when the
/// snapshot's pipeline reads on.
pub(crate) struct Hold {
    reader: Arc<Reader>,
    id: u64,
}

impl Hold {
    /// The position is known now (until then the hold is at the start: nothing is confirmed).
    pub(crate) fn at(&self, lsn: Lsn) {
        if let Ok(mut holds) = self.reader.holds.lock() {
            holds.insert(self.id, lsn);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Ok(mut holds) = self.reader.holds.lock() {
            holds.remove(&self.id);
        }
    }
}

#[derive(Default)]
struct Forming {
    members: Vec<Member>,
    /// Pipelines of the group that will not read in this round (a snapshot, nothing new).
    passes: usize,
    since: Option<Instant>,
}

/// What a round needs to know of a pipeline's table.
pub(crate) struct Table {
    pub schema: String,
    pub name: String,
    pub display: String,
    /// As the catalog describes them at the start of the read: values are read as these types.
    pub columns: Vec<Column>,
    /// The key columns' indexes: an update that changes them deletes the old row.
    pub key: Vec<usize>,
    /// Where to ask the catalog about a column the read does not know.
    pub connection: ConnectionUrl,
    pub regclass: String,
}

/// One pipeline's part in a round.
pub(crate) struct Request {
    pub table: Table,
    /// Its committed position: transactions that committed before it are skipped.
    pub from: Lsn,
    /// The server's WAL position when it asked: the round reads at least that far.
    pub until: Lsn,
    pub publication: String,
    /// Rows per batch.
    pub batch_size: usize,
    /// End the round at the first commit past this many of its changes.
    pub commit_rows: u64,
    /// The slot's confirmed position, as read when it asked.
    pub confirmed: Option<Lsn>,
}

struct Member {
    request: Request,
    tx: mpsc::Sender<Sent>,
}

/// What a round sends a pipeline: a batch, and whether it is the read's last
/// (an error is). The last batch carries the read's end as its position.
type Sent = (Result<SourceBatch>, bool);

impl Reader {
    /// The group's reader, or a reader of the pipeline's own.
    pub(crate) fn of(group: Option<&ReadGroup>, own: &std::sync::Mutex<Option<Arc<Reader>>>) -> Arc<Reader> {
        if let Some(reader) = group.and_then(ReadGroup::state::<Reader>) {
            if let Ok(mut own) = own.lock() {
                *own = Some(reader.clone());
            }
            return reader;
        }
        let mut own = match own.lock() {
            Ok(own) => own,
            Err(poisoned) => poisoned.into_inner(),
        };
        own.get_or_insert_with(Arc::default).clone()
    }

    /// Hold the slot back for a snapshot under way (see [`Hold`]).
    pub(crate) fn hold(self: &Arc<Self>) -> Hold {
        let id = self.next_hold.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut holds) = self.holds.lock() {
            holds.insert(id, Lsn(0));
        }
        Hold { reader: self.clone(), id }
    }

    /// The lowest position a snapshot under way holds the slot at.
    pub(crate) fn held(&self) -> Option<Lsn> {
        self.holds.lock().ok().and_then(|holds| holds.values().copied().min())
    }

    /// This pipeline reads nothing from the slot this time: the round need not wait for it.
    pub(crate) fn pass(&self) {
        if let Ok(mut forming) = self.forming.lock() {
            forming.passes += 1;
        }
    }

    /// Ask for `request`'s changes: join the round being gathered (leading
    /// it, if first). The stream's last batch carries the new position.
    pub(crate) fn read(
        self: &Arc<Self>,
        slot: &str,
        connection: &ConnectionUrl,
        group: Option<Arc<ReadGroup>>,
        request: Request,
    ) -> SourceStream {
        let schema = schema(&request.table.columns);
        let (tx, rx) = mpsc::channel(2);
        let lead = match self.forming.lock() {
            Ok(mut forming) => {
                forming.members.push(Member { request, tx });
                forming.since.get_or_insert_with(Instant::now);
                forming.members.len() == 1
            }
            Err(_) => {
                let _ = tx.try_send((Err(Error::internal("the slot's reader was poisoned by a panic")), true));
                false
            }
        };
        if lead {
            let (reader, slot, connection) = (self.clone(), slot.to_owned(), connection.clone());
            tokio::spawn(async move {
                let members = reader.gather(group.as_deref()).await;
                reader.round(&slot, &connection, members).await;
            });
        }
        // A read that ends without its last batch (the round died) must not
        // look like a complete one.
        let batches = futures::stream::unfold((rx, false), move |(mut rx, ended)| async move {
            match rx.recv().await {
                Some((item, last)) => Some((item, (rx, ended || last))),
                None if ended => None,
                None => {
                    Some((Err(Error::internal("the change reader stopped before the end of its read")), (rx, true)))
                }
            }
        })
        .boxed();
        SourceStream::new(schema, batches)
    }

    /// Wait for the group's pipelines that take part to join, then take them.
    async fn gather(&self, group: Option<&ReadGroup>) -> Vec<Member> {
        loop {
            if let Ok(mut forming) = self.forming.lock() {
                let expected = group.map_or(1, ReadGroup::members).max(1);
                let waited = forming.since.is_some_and(|s| s.elapsed() >= GATHER);
                if forming.members.len() + forming.passes >= expected || waited {
                    if waited {
                        warn!(
                            joined = forming.members.len(),
                            expected, "the slot's other pipelines did not ask in time; reading for those that did"
                        );
                    }
                    let taken = std::mem::take(&mut *forming);
                    return taken.members;
                }
            }
            tokio::time::sleep(GATHER_POLL).await;
        }
    }

    /// Tell the slot that every pipeline reading it has committed up to `lsn`:
    /// on the parked connection if there is one (it stays parked), after the
    /// round if one holds it, else on a connection of its own.
    pub(crate) async fn confirm(
        &self,
        slot: &str,
        connection: &ConnectionUrl,
        publication: &str,
        lsn: Lsn,
    ) -> Result<()> {
        if let Ok(mut confirmed) = self.confirmed.lock() {
            // The server has it already (or a higher one, which it keeps).
            if confirmed.0 > lsn || (confirmed.0 == lsn && !confirmed.1) {
                return Ok(());
            }
            *confirmed = (lsn, true);
        }
        // Whoever holds the connection (a round, another confirmation) sends it when done.
        let Ok(mut conn) = self.conn.try_lock() else { return Ok(()) };
        let mut lsn = lsn;
        while let Some(parked) = conn.as_mut() {
            match parked.repl.status(lsn, lsn).await {
                Ok(()) => match self.sent(lsn) {
                    Some(higher) => lsn = higher, // confirmed meanwhile
                    None => return Ok(()),
                },
                Err(e) => {
                    warn!(slot, error = %e, "the parked replication connection is gone; confirming on a new one");
                    *conn = None;
                }
            }
        }
        let mut repl = ReplicationConn::connect(connection).await?;
        repl.start(slot, lsn, &[publication.to_owned()]).await?;
        repl.finish(lsn).await?;
        self.sent(lsn);
        Ok(())
    }

    /// The server has heard of `lsn`; returns a higher position confirmed
    /// meanwhile, which it has not.
    fn sent(&self, lsn: Lsn) -> Option<Lsn> {
        let mut confirmed = self.confirmed.lock().ok()?;
        if confirmed.0 == lsn {
            confirmed.1 = false;
        }
        (confirmed.1 && confirmed.0 > lsn).then_some(confirmed.0)
    }

    /// The highest confirmed position, if the server has not heard of it.
    fn unsent(&self) -> Option<Lsn> {
        self.confirmed.lock().ok().filter(|c| c.1).map(|c| c.0)
    }

    /// One pass over the slot for `members`.
    async fn round(&self, slot: &str, connection: &ConnectionUrl, members: Vec<Member>) {
        if members.is_empty() {
            return;
        }
        let mut conn = self.conn.lock().await;
        let from = members.iter().map(|m| m.request.from).min().unwrap_or_default();
        let until = members.iter().map(|m| m.request.until).max().unwrap_or_default();
        let mut publications: Vec<String> = members.iter().map(|m| m.request.publication.clone()).collect();
        publications.sort();
        publications.dedup();
        if let Ok(mut confirmed) = self.confirmed.lock() {
            let known = members.iter().filter_map(|m| m.request.confirmed).max().unwrap_or_default();
            if known > confirmed.0 {
                *confirmed = (known, false);
            }
        }
        // A connection that asks for more publications serves as well: changes nobody reads are dropped.
        let parked = match conn.take() {
            Some(p) if p.at == from && publications.iter().all(|n| p.publications.contains(n)) => Some(p),
            Some(mut other) => {
                // It holds the slot: end it, so that the new connection may take it.
                let confirmed = self.confirmed.lock().map(|c| c.0).unwrap_or_default();
                if let Err(e) = other.repl.finish(confirmed).await {
                    debug!(slot, error = %e, "the parked replication connection did not end cleanly");
                }
                None
            }
            None => None,
        };
        let resumed = parked.is_some();
        let mut stream = match parked {
            Some(parked) => parked,
            None => match start(slot, connection, from, publications).await {
                Ok(stream) => stream,
                Err(e) => {
                    for m in &members {
                        let _ = m.tx.send((Err(e.clone()), true)).await;
                    }
                    return;
                }
            },
        };
        debug!(slot, %from, %until, pipelines = members.len(), resumed, "streaming changes");
        let mut readings = Vec::with_capacity(members.len());
        for m in members {
            readings.push(Reading::new(m, &stream.relations).await);
        }
        match self.stream(&mut stream, &mut readings, until).await {
            Ok(Some(end)) => {
                stream.at = end;
                // What was confirmed while the round held the connection.
                while let Some(lsn) = self.unsent() {
                    if let Err(e) = stream.repl.status(lsn, lsn).await {
                        warn!(slot, error = %e, "could not confirm on the replication connection; the next run does");
                        break;
                    }
                    if self.sent(lsn).is_none() {
                        break;
                    }
                }
                *conn = Some(stream);
                drop(conn);
                for r in readings {
                    r.finish(end).await;
                }
            }
            Ok(None) => {
                // Mid-read: end the stream, so that the next round's connection may take the slot.
                let confirmed = self.confirmed.lock().map(|c| c.0).unwrap_or_default();
                if let Err(e) = stream.repl.finish(confirmed).await {
                    debug!(slot, error = %e, "the replication connection did not end cleanly");
                }
                drop(conn);
                for r in readings {
                    r.finish(Lsn::default()).await;
                }
            }
            Err(e) => {
                drop(conn);
                for r in readings.iter_mut() {
                    r.fail(e.clone()).await;
                }
            }
        }
    }

    /// Stream until the server has sent every transaction that committed
    /// before `until` (or a pipeline's `commit_rows` changes, to a commit),
    /// sending each pipeline its batches as they fill. Returns where the round
    /// ended, if the connection can go on from there (it stopped between
    /// transactions); `None` ends every reading where it stood (the
    /// pipelines' last batches carry the position themselves).
    async fn stream(&self, stream: &mut Parked, readings: &mut [Reading], mut until: Lsn) -> Result<Option<Lsn>> {
        struct Tx {
            commit_lsn: i64,
            commit_time: i64,
        }
        let mut current: Option<Tx> = None;
        let mut bytes = 0u64;
        loop {
            let message = match stream.pending.take() {
                Some(m) => m,
                None => {
                    stream.repl.next().await?.ok_or_else(|| Error::transient("the server ended the change stream"))?
                }
            };
            let (start, body) = match message {
                Streamed::Keepalive { end, reply } => {
                    if current.is_none() && end >= until {
                        break;
                    }
                    if reply {
                        let confirmed = self.confirmed.lock().map(|c| c.0).unwrap_or_default();
                        stream.repl.status(confirmed, confirmed).await?;
                    }
                    continue;
                }
                Streamed::Data { start, end, body } => {
                    // A transaction past the end starts the next round.
                    if body.first() == Some(&b'B')
                        && let Ok(Message::Begin { final_lsn, .. }) = pgoutput::decode(body.clone())
                        && final_lsn >= until
                    {
                        stream.pending = Some(Streamed::Data { start, end, body });
                        break;
                    }
                    (start, body)
                }
            };
            bytes += body.len() as u64;
            let meta =
                |tx: &Tx| Meta { lsn: start.0 as i64, commit_lsn: tx.commit_lsn, commit_time: Some(tx.commit_time) };
            match pgoutput::decode(body)? {
                Message::Begin { final_lsn, commit_time, .. } => {
                    current = Some(Tx { commit_lsn: final_lsn.0 as i64, commit_time: commit_time + EPOCH_MICROS });
                    for r in readings.iter_mut() {
                        r.skip = final_lsn < r.request.from;
                        r.rows_before = r.rows();
                    }
                }
                Message::Commit { end_lsn, .. } => {
                    current = None;
                    // Enough for one commit: the next round starts after this transaction.
                    if readings.iter().any(|r| r.live() && r.rows() >= r.request.commit_rows) {
                        until = end_lsn;
                        break;
                    }
                }
                Message::Relation(rel) => {
                    for r in readings.iter_mut() {
                        r.describe(&rel).await;
                    }
                    stream.relations.insert(rel.id, rel);
                }
                Message::Insert { relation, new } => {
                    if let Some(tx) = &current {
                        for r in readings.iter_mut() {
                            r.push_row(relation, op::INSERT, &new, meta(tx));
                        }
                    }
                }
                Message::Update { relation, old, new } => {
                    if let Some(tx) = &current {
                        // With REPLICA IDENTITY FULL the old row is whole: it
                        // has the values an update did not send.
                        let full = stream.relations.get(&relation).is_some_and(|r| r.identity == b'f');
                        for r in readings.iter_mut() {
                            let Some(map) = r.map(relation) else { continue };
                            let mut new_values = values(map, &new);
                            let mut deleted = None;
                            if let Some(old) = &old {
                                let old_values = values(map, old);
                                if full {
                                    for (new, old) in new_values.iter_mut().zip(&old_values) {
                                        if matches!(new, Some(Value::Unchanged))
                                            && !matches!(old, Some(Value::Unchanged))
                                        {
                                            *new = *old;
                                        }
                                    }
                                }
                                // A changed key: the row under the old key is gone.
                                if r.request.table.key.iter().any(|&k| old_values[k] != new_values[k]) {
                                    deleted = Some(old_values);
                                }
                            }
                            if let Some(old_values) = deleted {
                                r.push(op::DELETE, &old_values, meta(tx));
                            }
                            r.push(op::UPDATE, &new_values, meta(tx));
                        }
                    }
                }
                Message::Delete { relation, old } => {
                    if let Some(tx) = &current {
                        for r in readings.iter_mut() {
                            r.push_row(relation, op::DELETE, &old, meta(tx));
                        }
                    }
                }
                Message::Truncate { relations: truncated } => {
                    if let Some(tx) = &current {
                        let hit = |r: &Reading| truncated.iter().any(|id| r.map(*id).is_some());
                        // A truncate starts a read of its own, so that a sink can
                        // plan for it (Delta's MERGE): end the round before its
                        // transaction, unless that transaction changed the table first.
                        if readings.iter().any(|r| hit(r) && r.rows() > 0 && r.rows() == r.rows_before) {
                            // Its Begin is read: the next round starts over from it.
                            let end = Lsn(tx.commit_lsn as u64);
                            for r in readings.iter_mut() {
                                r.send_last(end, bytes).await;
                            }
                            return Ok(None);
                        }
                        for r in readings.iter_mut() {
                            if hit(r) {
                                r.push_truncate(meta(tx));
                            }
                        }
                    }
                }
                Message::Other => {}
            }
            for r in readings.iter_mut() {
                r.flush(bytes).await;
            }
            if readings.iter().all(|r| !r.live()) {
                return Ok(None); // nobody listens: the connection is mid-read, not parked
            }
        }
        // Everything that committed before `until` is in: that is the new position.
        for r in readings.iter_mut() {
            r.bytes = bytes;
        }
        Ok(Some(until))
    }
}

/// A new replication connection, streaming the slot from `from`.
async fn start(slot: &str, connection: &ConnectionUrl, from: Lsn, publications: Vec<String>) -> Result<Parked> {
    let mut repl = ReplicationConn::connect(connection).await?;
    repl.start(slot, from, &publications).await?;
    Ok(Parked { repl, publications, at: from, pending: None, relations: HashMap::new() })
}

/// One pipeline's share of a round.
struct Reading {
    request: Request,
    tx: mpsc::Sender<Sent>,
    batcher: ChangeBatcher,
    /// Relation id → where each of its table's columns sits in the tuples; `None`: another table.
    relations: HashMap<u32, Option<Vec<Option<usize>>>>,
    /// Changes sent in earlier batches.
    sent: u64,
    /// Changes of this round before the current transaction.
    rows_before: u64,
    /// The current transaction committed before this pipeline's position.
    skip: bool,
    /// Its sink stopped listening, or its read failed.
    gone: bool,
    /// A value it could not read, to send it.
    failed: Option<Error>,
    /// Bytes of the log the round read.
    bytes: u64,
}

impl Reading {
    async fn new(member: Member, known: &HashMap<u32, pgoutput::Relation>) -> Self {
        let batcher = ChangeBatcher::new(&member.request.table.columns);
        let mut reading = Reading {
            request: member.request,
            tx: member.tx,
            batcher,
            relations: HashMap::new(),
            sent: 0,
            rows_before: 0,
            skip: false,
            gone: false,
            failed: None,
            bytes: 0,
        };
        for rel in known.values() {
            reading.describe(rel).await;
        }
        reading
    }

    fn live(&self) -> bool {
        !self.gone
    }

    fn rows(&self) -> u64 {
        self.sent + self.batcher.rows() as u64
    }

    /// Where this pipeline's columns sit in `relation`'s tuples, if it reads
    /// that table and the current transaction is past its position.
    fn map(&self, relation: u32) -> Option<&[Option<usize>]> {
        if self.gone || self.skip {
            return None;
        }
        self.relations.get(&relation)?.as_deref()
    }

    /// The server described a relation: map it, or fail this pipeline's read.
    async fn describe(&mut self, rel: &pgoutput::Relation) {
        if self.gone {
            return;
        }
        match map_relation(&self.request.table, rel).await {
            Ok(map) => {
                self.relations.insert(rel.id, map);
            }
            Err(e) => self.fail(e).await,
        }
    }

    fn push(&mut self, operation: &str, values: &[Option<&Value>], meta: Meta) {
        if let Err(e) = self.batcher.push(operation, values, meta) {
            self.gone = true;
            self.failed = Some(e);
        }
    }

    /// A row's change as the log sent it, if this pipeline reads its table.
    fn push_row(&mut self, relation: u32, operation: &str, tuple: &[Value], meta: Meta) {
        if let Some(map) = self.map(relation) {
            let values = values(map, tuple);
            self.push(operation, &values, meta);
        }
    }

    fn push_truncate(&mut self, meta: Meta) {
        if let Err(e) = self.batcher.push_truncate(meta) {
            self.gone = true;
            self.failed = Some(e);
        }
    }

    /// Send the batch if it is full, carrying the start position.
    async fn flush(&mut self, bytes: u64) {
        if let Some(e) = self.failed.take() {
            let _ = self.tx.send((Err(e), true)).await;
            return;
        }
        let full = self.batcher.rows() >= self.request.batch_size || self.batcher.bytes() >= BATCH_BYTES;
        if self.gone || !full || self.batcher.rows() == 0 {
            return;
        }
        self.sent += self.batcher.rows() as u64;
        let position =
            Position { watermark: Some(self.request.from.to_string()), bytes_read: bytes, ..Default::default() };
        match self.batcher.finish() {
            Ok(batch) => {
                if self.tx.send((Ok(SourceBatch { batch, position }), false)).await.is_err() {
                    self.gone = true; // the load stopped
                }
            }
            Err(e) => self.fail(e).await,
        }
    }

    /// The last batch: what is left, and `end` as the position (never below the pipeline's own).
    async fn send_last(&mut self, end: Lsn, bytes: u64) {
        if self.gone {
            return;
        }
        self.gone = true;
        let end = end.max(self.request.from);
        let position = Position { watermark: Some(end.to_string()), bytes_read: bytes, ..Default::default() };
        let last = self.batcher.finish().map(|batch| SourceBatch { batch, position });
        let _ = self.tx.send((last, true)).await;
    }

    /// The round ended at `end` (`Lsn(0)`: it stopped where the pipeline's last batch said).
    async fn finish(mut self, end: Lsn) {
        if end > Lsn::default() {
            let bytes = self.bytes;
            self.send_last(end, bytes).await;
        }
    }

    async fn fail(&mut self, e: Error) {
        if !self.gone {
            self.gone = true;
            let _ = self.tx.send((Err(e), true)).await;
        }
    }
}

/// Where each of the table's columns sits in a relation's tuples. A retyped
/// column's values are read as its type today: one that type cannot read
/// fails naming the column, and so does a destination column that cannot take
/// the new type. Columns the read does not know come back by name.
fn columns_of(table: &Table, rel: &pgoutput::Relation) -> (Vec<Option<usize>>, Vec<String>) {
    let unknown =
        rel.columns.iter().filter(|r| !table.columns.iter().any(|c| c.name == r.name)).map(|r| r.name.clone());
    let map = table.columns.iter().map(|c| rel.columns.iter().position(|r| r.name == c.name)).collect();
    (map, unknown.collect())
}

/// A relation the server describes, as a pipeline's read maps it: `None` for
/// another table. A column the read does not know was added since it began
/// (the catalog has it: the read stops, to be read again with it) or was
/// dropped or renamed since the change was logged (the catalog has it no
/// more: ignored).
async fn map_relation(table: &Table, rel: &pgoutput::Relation) -> Result<Option<Vec<Option<usize>>>> {
    if rel.schema != table.schema || rel.name != table.name {
        return Ok(None);
    }
    let (map, unknown) = columns_of(table, rel);
    if !unknown.is_empty() {
        let mut conn = crate::source::connect(&table.connection).await?;
        let added: Option<String> = sqlx::query_scalar(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass AND attname = ANY ($2)
             AND NOT attisdropped LIMIT 1",
        )
        .bind(&table.regclass)
        .bind(&unknown)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| db_error(e, "reading the table's columns"))?;
        if let Some(column) = added {
            return Err(Error::transient(format!(
                "{} gained column `{column}` while the changes were read; the next attempt reads it",
                table.display
            )));
        }
    }
    Ok(Some(map))
}

fn values<'a>(map: &[Option<usize>], tuple: &'a [Value]) -> Vec<Option<&'a Value>> {
    map.iter().map(|i| i.and_then(|i| tuple.get(i))).collect()
}
