//! Rows → commands → chunks, each applied once by one script (see the crate's note).

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use tracing::{debug, info};
use weir_core::{ConnectionUrl, Error, LoadOutcome, LoadRequest, Result, Sink, SourceStream, WriteMode};

use crate::{Amount, RedisOptions};

const DEFAULT_CHUNK_ROWS: usize = 500;

/// Applies one chunk if the position says it is the next; moves the position.
/// KEYS[1]: the position hash. ARGV: from, load, before, after, final (0/1),
/// watermark, the number of commands, then each command as its argument count
/// and arguments. Returns 1 if applied, 0 if it already was.
const APPLY: &str = r#"
local st = redis.call('HMGET', KEYS[1], 'from', 'rows', 'done', 'load')
local from, rows, done, load = st[1], tonumber(st[2] or '0'), st[3], st[4]
local before, after = tonumber(ARGV[3]), tonumber(ARGV[4])
local applied = 0
if from == ARGV[1] and load == ARGV[2] and rows >= after then
  applied = 0 -- this load's chunk ran already; its answer was lost
elseif done == '0' and from == ARGV[1] and rows == before then
  applied = 1 -- the next chunk of this load, or of a killed load from the same watermark
elseif before == 0 then
  applied = 1 -- a new load
else
  return redis.error_reply('WEIRPOSITION the position holds ' .. tostring(rows) .. ' rows of load ' ..
    tostring(load) .. ' from ' .. tostring(from) .. '; this chunk starts at row ' .. before ..
    ' (was the position reset, or does another writer move it?)')
end
if applied == 1 then
  local i = 8
  for c = 1, tonumber(ARGV[7]) do
    local n = tonumber(ARGV[i])
    redis.call(unpack(ARGV, i + 1, i + n))
    i = i + n + 1
  end
  redis.call('HSET', KEYS[1], 'from', ARGV[1], 'load', ARGV[2], 'rows', after, 'done', '0')
end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], 'done', '1', 'committed', ARGV[6])
end
return applied
"#;

/// Writes pipelines' rows into one Redis server.
pub struct RedisSink {
    client: redis::Client,
    server: String,
    state_key: String,
    options: RedisOptions,
}

/// A key template: `enriched_events:{content_type}`.
#[derive(Debug, Clone)]
struct Template(Vec<Part>);

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Column(String),
}

impl Template {
    fn parse(text: &str) -> Result<Self> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close =
                rest[open..].find('}').ok_or_else(|| Error::user(format!("key `{text}`: a `{{` without its `}}`")))?;
            let column = &rest[open + 1..open + close];
            if column.is_empty() {
                return Err(Error::user(format!("key `{text}`: `{{}}` names no column")));
            }
            parts.push(Part::Column(column.to_owned()));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template(parts))
    }

    fn columns(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Column(c) => Some(c.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The row's key; `None` if a column it names is NULL there.
    fn render(&self, values: &Values, row: usize) -> Option<String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Column(c) => out.push_str(values.text(c, row)?),
            }
        }
        Some(out)
    }
}

/// A batch's columns as text, the ones the options name.
struct Values {
    columns: BTreeMap<String, Vec<Option<String>>>,
    /// Whether a column holds integers (HINCRBY) rather than other numbers (HINCRBYFLOAT).
    integer: BTreeMap<String, bool>,
}

impl Values {
    fn of(batch: &RecordBatch, names: &[String]) -> Result<Self> {
        let mut columns = BTreeMap::new();
        let mut integer = BTreeMap::new();
        for name in names {
            let array = batch
                .column_by_name(name)
                .ok_or_else(|| Error::internal(format!("the batch has no column `{name}`")))?;
            integer.insert(name.clone(), array.data_type().is_integer());
            columns.insert(name.clone(), text(array, name)?);
        }
        Ok(Self { columns, integer })
    }

    fn text(&self, column: &str, row: usize) -> Option<&str> {
        self.columns.get(column)?.get(row)?.as_deref()
    }
}

/// A column's values as text: numbers and strings as themselves, nested values as JSON.
fn text(array: &ArrayRef, name: &str) -> Result<Vec<Option<String>>> {
    let nested = matches!(
        array.data_type(),
        DataType::Struct(_) | DataType::Map(..) | DataType::List(_) | DataType::LargeList(_) | DataType::Union(..)
    );
    let strings = if nested {
        weir_core::json::encode_column(array.as_ref(), name)?.0
    } else {
        arrow::compute::cast(array, &DataType::Utf8)?
    };
    let strings = strings.as_string::<i32>();
    Ok((0..strings.len()).map(|i| (!strings.is_null(i)).then(|| strings.value(i).to_owned())).collect())
}

/// Commands of one chunk, as the script takes them.
#[derive(Default)]
struct Chunk {
    args: Vec<Vec<u8>>,
    commands: usize,
    rows: u64,
}

impl Chunk {
    fn push(&mut self, command: &[&[u8]]) {
        self.args.push(command.len().to_string().into_bytes());
        self.args.extend(command.iter().map(|a| a.to_vec()));
        self.commands += 1;
    }
}

impl RedisSink {
    pub fn new(connection: ConnectionUrl, pipeline: &str, options: RedisOptions) -> Result<Self> {
        let bad = |e: redis::RedisError| {
            Error::user(format!("destination_connection {connection} is not a Redis URL: {:?}", e.kind()))
        };
        // `rediss://…?tls_ca_file=/etc/weir/ca.pem`: the server's certificate checked against
        // that PEM file rather than the system's roots.
        let ca_file = connection.url().query_pairs().find(|(k, _)| k == "tls_ca_file").map(|(_, v)| v.into_owned());
        let client = match ca_file {
            None => redis::Client::open(connection.expose()).map_err(bad)?,
            Some(_) if connection.scheme() != "rediss" => {
                return Err(Error::user(format!(
                    "destination_connection {connection}: tls_ca_file is for rediss:// URLs"
                )));
            }
            Some(path) => {
                let pem = std::fs::read(&path).map_err(|e| Error::user(format!("tls_ca_file `{path}`: {e}")))?;
                let mut url = connection.url().clone();
                let rest: Vec<(String, String)> = url
                    .query_pairs()
                    .filter(|(k, _)| k != "tls_ca_file")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                url.set_query(None);
                if !rest.is_empty() {
                    url.query_pairs_mut().extend_pairs(rest);
                }
                let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
                redis::Client::build_with_tls(url.as_str(), certificates).map_err(bad)?
            }
        };
        let url = connection.url();
        let server = format!("{}:{}", url.host_str().unwrap_or("localhost"), url.port().unwrap_or(6379));
        Ok(Self { client, server, state_key: format!("weir:{{{pipeline}}}:applied"), options })
    }

    async fn connect(&self) -> Result<MultiplexedConnection> {
        self.client.get_multiplexed_async_connection().await.map_err(|e| self.error(e, "connecting"))
    }

    /// A Redis error, with the server and what was being done; no URL, so no password.
    fn error(&self, e: redis::RedisError, doing: &str) -> Error {
        let text = format!("Redis {}: {doing}: {e}", self.server);
        if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
            Error::transient(text)
        } else if e.code() == Some("WEIRPOSITION") {
            Error::user(text)
        } else {
            Error::external(text)
        }
    }

    /// Every column the options name, checked against the schema.
    fn columns(&self, schema: &Schema) -> Result<(Vec<String>, Plan)> {
        let mut names = Vec::new();
        let mut need = |column: &str, what: &str| -> Result<()> {
            let field = schema.field_with_name(column).map_err(|_| {
                Error::user(format!("options.{what} names column `{column}`, which the source does not have"))
            })?;
            if what.ends_with("increment") && !(field.data_type().is_numeric()) {
                return Err(Error::user(format!(
                    "options.{what}: column `{column}` is a {}, not a number",
                    field.data_type()
                )));
            }
            if !names.iter().any(|n| n == column) {
                names.push(column.to_owned());
            }
            Ok(())
        };
        let mut plan = Plan::default();
        for (i, s) in self.options.streams.iter().enumerate() {
            let key = Template::parse(&s.key)?;
            for c in key.columns() {
                need(c, &format!("streams[{i}].key"))?;
            }
            let fields: Vec<String> = match &s.fields {
                Some(f) => f.clone(),
                None => schema.fields().iter().map(|f| f.name().clone()).collect(),
            };
            for f in &fields {
                need(f, &format!("streams[{i}].fields"))?;
            }
            plan.streams.push((key, s.maxlen, fields));
        }
        for (i, s) in self.options.sorted_sets.iter().enumerate() {
            let key = Template::parse(&s.key)?;
            for c in key.columns() {
                need(c, &format!("sorted_sets[{i}].key"))?;
            }
            need(&s.member, &format!("sorted_sets[{i}].member"))?;
            if let Amount::Column(c) = &s.increment {
                need(c, &format!("sorted_sets[{i}].increment"))?;
            }
            plan.sorted_sets.push((key, s.member.clone(), s.increment.clone()));
        }
        for (i, h) in self.options.hashes.iter().enumerate() {
            let key = Template::parse(&h.key)?;
            for c in key.columns() {
                need(c, &format!("hashes[{i}].key"))?;
            }
            for amount in h.increment.values() {
                if let Amount::Column(c) = amount {
                    need(c, &format!("hashes[{i}].increment"))?;
                }
            }
            for c in h.set.values() {
                need(c, &format!("hashes[{i}].set"))?;
            }
            plan.hashes.push((key, h.increment.clone(), h.set.clone()));
        }
        Ok((names, plan))
    }

    /// One row's commands; counts what a NULL left out.
    fn row(&self, plan: &Plan, values: &Values, row: usize, chunk: &mut Chunk, skipped: &mut u64) {
        for (key, maxlen, fields) in &plan.streams {
            let Some(key) = key.render(values, row) else {
                *skipped += 1;
                continue;
            };
            let maxlen_text = maxlen.map(|m| m.to_string());
            let mut command: Vec<&[u8]> = vec![b"XADD", key.as_bytes()];
            if let Some(m) = &maxlen_text {
                command.extend([b"MAXLEN".as_slice(), b"~", m.as_bytes()]);
            }
            command.push(b"*");
            let mut any = false;
            for f in fields {
                if let Some(v) = values.text(f, row) {
                    command.push(f.as_bytes());
                    command.push(v.as_bytes());
                    any = true;
                }
            }
            if !any {
                command.extend([b"_weir_empty".as_slice(), b"1"]);
            }
            chunk.push(&command);
        }
        for (key, member, increment) in &plan.sorted_sets {
            let (Some(key), Some(member)) = (key.render(values, row), values.text(member, row)) else {
                *skipped += 1;
                continue;
            };
            let Some((by, _)) = amount(increment, values, row) else {
                *skipped += 1;
                continue;
            };
            chunk.push(&[b"ZINCRBY", key.as_bytes(), by.as_bytes(), member.as_bytes()]);
        }
        for (key, increments, sets) in &plan.hashes {
            let Some(key) = key.render(values, row) else {
                *skipped += 1;
                continue;
            };
            for (field, increment) in increments {
                match amount(increment, values, row) {
                    Some((by, true)) => chunk.push(&[b"HINCRBY", key.as_bytes(), field.as_bytes(), by.as_bytes()]),
                    Some((by, false)) => {
                        chunk.push(&[b"HINCRBYFLOAT", key.as_bytes(), field.as_bytes(), by.as_bytes()])
                    }
                    None => *skipped += 1,
                }
            }
            let set: Vec<(&String, &str)> =
                sets.iter().filter_map(|(field, column)| Some((field, values.text(column, row)?))).collect();
            if !set.is_empty() {
                let mut command: Vec<&[u8]> = vec![b"HSET", key.as_bytes()];
                for (field, value) in &set {
                    command.push(field.as_bytes());
                    command.push(value.as_bytes());
                }
                chunk.push(&command);
            }
        }
    }

    /// Apply a chunk: `before..after` rows of the load that started at `from`.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        conn: &mut MultiplexedConnection,
        script: &redis::Script,
        from: &str,
        load: i64,
        before: u64,
        chunk: Chunk,
        last: Option<&str>,
    ) -> Result<()> {
        let after = before + chunk.rows;
        let mut invocation = script.key(&self.state_key);
        invocation
            .arg(from)
            .arg(load)
            .arg(before)
            .arg(after)
            .arg(if last.is_some() { "1" } else { "0" })
            .arg(last.unwrap_or(""))
            .arg(chunk.commands);
        for a in &chunk.args {
            invocation.arg(a.as_slice());
        }
        // A lost answer or a restarted server: the script is sent again, and the
        // position says whether it had run.
        let mut tries = 0;
        loop {
            tries += 1;
            match invocation.invoke_async::<i64>(conn).await {
                Ok(applied) => {
                    if applied == 0 {
                        debug!(rows = after - before, "the chunk had been applied (its answer was lost)");
                    }
                    return Ok(());
                }
                Err(e) if tries < 5 && (e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()) => {
                    debug!(server = %self.server, error = %e, "a chunk's answer was lost; sending it again");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * tries)).await;
                    *conn = self.connect().await?;
                }
                Err(e) => return Err(self.error(e, "applying a chunk of rows")),
            }
        }
    }
}

/// The tests that prove a killed load is continued end the process once
/// `WEIR_REDIS_CRASH_AFTER_ROWS` rows of a load are applied. Debug builds only.
fn crash_after(rows: u64) {
    #[cfg(debug_assertions)]
    if std::env::var("WEIR_REDIS_CRASH_AFTER_ROWS").ok().and_then(|v| v.parse::<u64>().ok()).is_some_and(|n| rows >= n)
    {
        std::process::abort();
    }
    let _ = rows;
}

/// What each row becomes, the options' templates parsed.
#[derive(Default)]
struct Plan {
    streams: Vec<(Template, Option<u64>, Vec<String>)>,
    sorted_sets: Vec<(Template, String, Amount)>,
    hashes: Vec<(Template, Increments, BTreeMap<String, String>)>,
}

/// A hash's counters: field → what to add.
type Increments = BTreeMap<String, Amount>;

/// An increment's text for this row, and whether it is an integer.
fn amount(amount: &Amount, values: &Values, row: usize) -> Option<(String, bool)> {
    match amount {
        Amount::Integer(i) => Some((i.to_string(), true)),
        Amount::Float(f) => Some((f.to_string(), false)),
        Amount::Column(c) => Some((values.text(c, row)?.to_owned(), values.integer.get(c).copied().unwrap_or(false))),
    }
}

#[async_trait::async_trait]
impl Sink for RedisSink {
    async fn check(&self) -> Result<()> {
        let mut conn = self.connect().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| self.error(e, "PING"))?;
        Ok(())
    }

    async fn check_schema(&self, schema: &Schema) -> Result<()> {
        self.columns(schema).map(|_| ())
    }

    async fn committed_watermark(&self, _pipeline: &str) -> Result<Option<String>> {
        let mut conn = self.connect().await?;
        // A load under way has not committed its watermark; the last one that did, has.
        let committed: Option<String> = redis::cmd("HGET")
            .arg(&self.state_key)
            .arg("committed")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e, "reading the pipeline's position"))?;
        Ok(committed.filter(|c| !c.is_empty()))
    }

    async fn load(&self, request: &LoadRequest, input: SourceStream) -> Result<LoadOutcome> {
        // Counters count what they are sent: a load that sends rows again would count them twice.
        let again = match request.write_mode()? {
            WriteMode::Replace => Some("a full load sends every row on every run"),
            WriteMode::Upsert => Some(
                "an incremental load with primary_key reads the rows at the last watermark again, to merge them by key",
            ),
            WriteMode::ReplaceDate => Some("a date-sliced load reads its date again"),
            WriteMode::Append | WriteMode::Mirror => None,
        };
        if let Some(why) = again {
            return Err(Error::user(format!(
                "a redis destination counts every row it is sent, and {why}: feed it a change stream (load_type = \
                 'cdc' with options.history = true), a topic, or an incremental load without primary_key"
            )));
        }
        let (names, plan) = self.columns(&input.schema)?;
        let mut conn = self.connect().await?;
        let script = redis::Script::new(APPLY);
        let from = request.watermark_before.clone().unwrap_or_default();
        // A load killed half way left its position: this one reads the same rows from the same
        // watermark, and goes on after those applied.
        let (state_from, state_rows, state_done): (Option<String>, Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(&self.state_key)
            .arg("from")
            .arg("rows")
            .arg("done")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e, "reading the pipeline's position"))?;
        let skip = match (state_done.as_deref(), state_from) {
            (Some("0"), Some(f)) if f == from => state_rows.unwrap_or(0),
            _ => 0,
        };
        if skip > 0 {
            info!(rows = skip, "continuing a load that was killed half way: its first rows are applied");
        }
        let chunk_rows = self.options.chunk_rows.unwrap_or(DEFAULT_CHUNK_ROWS).max(1) as u64;
        let mut outcome = LoadOutcome { watermark: request.watermark_before.clone(), ..Default::default() };
        let (mut seen, mut skipped) = (0u64, 0u64);
        let mut position = skip;
        let mut chunk = Chunk::default();
        let mut batches = input.batches;
        while let Some(item) = batches.next().await {
            let item = item?;
            outcome.record(&item);
            let values = Values::of(&item.batch, &names)?;
            for row in 0..item.batch.num_rows() {
                seen += 1;
                if seen <= skip {
                    continue;
                }
                self.row(&plan, &values, row, &mut chunk, &mut skipped);
                chunk.rows += 1;
                if chunk.rows >= chunk_rows {
                    let rows = chunk.rows;
                    let chunk = std::mem::take(&mut chunk);
                    self.apply(&mut conn, &script, &from, request.load_seq, position, chunk, None).await?;
                    position += rows;
                    crash_after(position);
                }
            }
        }
        let last = outcome.watermark.clone().unwrap_or_default();
        self.apply(&mut conn, &script, &from, request.load_seq, position, chunk, Some(&last)).await?;
        if skipped > 0 {
            outcome.counts.insert("redis_null_keys_or_values_skipped", skipped);
        }
        outcome.rows_written = seen;
        debug!(rows = outcome.rows_written, "applied");
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_templates_name_columns() {
        let t = Template::parse("top:{content_type}:{id}!").unwrap();
        assert_eq!(t.columns().collect::<Vec<_>>(), ["content_type", "id"]);
        assert!(Template::parse("bad:{x").is_err());
        assert!(Template::parse("bad:{}").is_err());
        let amounts: Vec<Amount> = serde_json::from_str(r#"[1, 2.5, "engagement_seconds"]"#).unwrap();
        assert_eq!(amounts, [Amount::Integer(1), Amount::Float(2.5), Amount::Column("engagement_seconds".into())]);
    }
}
