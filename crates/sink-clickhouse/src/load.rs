//! A load: rows into a staging table in RowBinary blocks, then one commit
//! that moves the staged partitions into the table.
//!
//! ClickHouse has no transactions, but attaching or replacing a partition is
//! atomic. So a load writes into `_weir.stage_<pipeline>_<load>` (invisible
//! to readers, the table's structure), then:
//! 1. records `prepared` in `_weir.commits` with the watermark;
//! 2. attaches the stage's partitions to the table (`ATTACH PARTITION … FROM`)
//!    or, for a full load or a re-snapshot, replaces the table's with them
//!    (`REPLACE PARTITION … FROM`, dropping partitions the stage lacks);
//! 3. records `committed` and drops the stage.
//!
//! A load killed between 1 and 3 is finished by the next one (or by the
//! engine asking for the committed watermark) before anything else, from
//! what the table holds: a replace is repeated (it is idempotent); an attach
//! to a ReplacingMergeTree is repeated (its rows have the same versions, so
//! they collapse); an attach to a plain MergeTree resumes after the
//! partitions already there, which its `_weir_load` column tells. A block sent
//! to the stage whose answer was lost is sent again only if the stage's row
//! count shows it did not land (one block is one atomic insert).

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt8Array, UInt64Array};
use arrow::datatypes::{Schema, SchemaRef};
use bytes::BytesMut;
use futures::StreamExt;
use serde_json::Value;
use tracing::{debug, info, warn};
use weir_core::changes;
use weir_core::{Error, LoadOutcome, LoadRequest, PipelineDef, Result, Sink, SourceStream};

use crate::ClickHouseOptions;
use crate::client::{Client, as_u64, ident, literal};
use crate::types::{self, Caps, ChType, Prepared};

/// The version column of a keyed table: the source position (LSN) of a
/// change, or the load's sequence and the row's place in it.
pub const VERSION: &str = "_weir_version";
/// 1 for a row whose key was deleted at the source.
pub const DELETED: &str = "_weir_deleted";
/// The load that wrote a row (not in a table a full load replaces): how a
/// killed commit tells which of its partitions it had attached.
pub const LOAD: &str = "_weir_load";
/// The run date that loaded a row of a date-sliced table (its partition).
pub const RUN_DATE: &str = "_weir_run_date";
/// Where Weir keeps its commit log and staging tables.
const META_DB: &str = "_weir";
const DEFAULT_BATCH_ROWS: usize = 100_000;
/// One block per insert: ClickHouse inserts a block of up to this many rows atomically.
const MAX_BATCH_ROWS: usize = 1_000_000;

/// Loads pipelines into one ClickHouse server.
pub struct ClickHouseSink {
    client: Client,
    database: String,
    table: String,
    pipeline: String,
    options: ClickHouseOptions,
    partition_by: Vec<String>,
}

// How the staged rows reach the table: a full load and a date's rows replace
// partitions; appends carry their load; keyed rows (Upsert, and Mirror with
// LSNs as versions and deletes flagged) go to a ReplacingMergeTree.
use weir_core::WriteMode as Mode;

fn keyed(mode: Mode) -> bool {
    matches!(mode, Mode::Upsert | Mode::Mirror)
}

/// A column of the table and where its values come from.
struct Target {
    name: String,
    ch: ChType,
}

impl ClickHouseSink {
    pub fn new(client: Client, pipeline: &PipelineDef, options: ClickHouseOptions) -> Result<Self> {
        Ok(Self {
            client,
            database: pipeline.schema_name.as_str().to_owned(),
            table: pipeline.table()?.as_str().to_owned(),
            pipeline: pipeline.name.clone(),
            options,
            partition_by: pipeline.partition_by.iter().map(|c| c.as_str().to_owned()).collect(),
        })
    }

    fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.database), ident(&self.table))
    }

    fn display(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    async fn caps(&self) -> Result<Caps> {
        let version = self.client.run("SELECT version()", "reading the server's version").await?;
        Ok(Caps::of(&version))
    }

    async fn ensure_meta(&self) -> Result<()> {
        self.client
            .run(&format!("CREATE DATABASE IF NOT EXISTS {}", ident(META_DB)), "creating the _weir database")
            .await?;
        self.client
            .run(
                "CREATE TABLE IF NOT EXISTS `_weir`.`commits` (pipeline String, load UInt64, state String, \
                 apply String, target String, stage String, watermark Nullable(String), rows UInt64, \
                 at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY (pipeline, load)",
                "creating _weir.commits",
            )
            .await?;
        Ok(())
    }

    /// The table's columns and types, if it exists.
    async fn columns(&self) -> Result<Option<Vec<(String, String)>>> {
        let rows = self
            .client
            .rows(
                &format!(
                    "SELECT name, type FROM system.columns WHERE database = {} AND table = {}",
                    literal(&self.database),
                    literal(&self.table)
                ),
                "reading the table's columns",
            )
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(rows.iter().map(|r| (text(r.get("name")), text(r.get("type")))).collect()))
    }

    async fn engine(&self) -> Result<String> {
        let rows = self
            .client
            .rows(
                &format!(
                    "SELECT engine FROM system.tables WHERE database = {} AND name = {}",
                    literal(&self.database),
                    literal(&self.table)
                ),
                "reading the table's engine",
            )
            .await?;
        Ok(rows.first().map(|r| text(r.get("engine"))).unwrap_or_default())
    }

    /// Create the table (and the view of current rows of a keyed one), or add
    /// the source's new columns; the columns to write, in order.
    async fn prepare_table(
        &self,
        schema: &Schema,
        request: &LoadRequest,
        mode: Mode,
        caps: Caps,
    ) -> Result<Vec<Target>> {
        let key: Vec<&str> = request.primary_key.iter().map(|k| k.as_str()).collect();
        for k in &key {
            if schema.field_with_name(k).is_err() {
                return Err(Error::user(format!("primary_key column `{k}` is not among the source's columns")));
            }
        }
        for p in &self.partition_by {
            if schema.field_with_name(p).is_err() {
                return Err(Error::user(format!("partition_by column `{p}` is not among the source's columns")));
            }
        }
        let extra: Vec<(&str, ChType)> = match mode {
            Mode::Upsert | Mode::Mirror => {
                vec![(VERSION, ChType::UInt64), (DELETED, ChType::UInt8), (LOAD, ChType::UInt64)]
            }
            Mode::Append => vec![(LOAD, ChType::UInt64)],
            Mode::ReplaceDate => vec![(RUN_DATE, if caps.date32 { ChType::Date32 } else { ChType::Date })],
            Mode::Replace => vec![],
        };
        self.client
            .run(&format!("CREATE DATABASE IF NOT EXISTS {}", ident(&self.database)), "creating the database")
            .await?;
        let existing = self.columns().await?;
        let Some(existing) = existing else {
            let mut targets: Vec<Target> = schema
                .fields()
                .iter()
                .map(|f| Target {
                    name: f.name().clone(),
                    ch: ChType::for_field(f, caps, key.contains(&f.name().as_str())),
                })
                .collect();
            targets.extend(extra.into_iter().map(|(name, ch)| Target { name: name.to_owned(), ch }));
            let columns: Vec<String> = targets.iter().map(|t| format!("{} {}", ident(&t.name), t.ch.ddl())).collect();
            let order_by = match (&self.options.order_by, key.is_empty()) {
                (Some(cols), _) => cols.iter().map(|c| ident(c)).collect::<Vec<_>>(),
                (None, false) => key.iter().map(|c| ident(c)).collect(),
                (None, true) => vec![],
            };
            let order_by =
                if order_by.is_empty() { "tuple()".to_owned() } else { format!("({})", order_by.join(", ")) };
            let engine = match keyed(mode) {
                true => format!("ReplacingMergeTree({})", ident(VERSION)),
                false => "MergeTree".to_owned(),
            };
            let partition = match mode {
                Mode::ReplaceDate => format!(" PARTITION BY {}", ident(RUN_DATE)),
                _ if !self.partition_by.is_empty() => format!(
                    " PARTITION BY ({})",
                    self.partition_by.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
                ),
                _ => String::new(),
            };
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {} ({}) ENGINE = {engine}{partition} ORDER BY {order_by}",
                self.qualified(),
                columns.join(", "),
            );
            self.client.run(&sql, &format!("creating table {}", self.display())).await?;
            if keyed(mode) {
                let view = format!("{}.{}", ident(&self.database), ident(&format!("{}_current", self.table)));
                let visible: Vec<String> = schema.fields().iter().map(|f| ident(f.name())).collect();
                let sql = format!(
                    "CREATE VIEW IF NOT EXISTS {view} AS SELECT {} FROM {} FINAL WHERE {} = 0",
                    visible.join(", "),
                    self.qualified(),
                    ident(DELETED)
                );
                self.client.run(&sql, "creating the view of current rows").await?;
            }
            info!(table = %self.display(), "created the table");
            return Ok(targets);
        };

        // An existing table: every source column must have a place that takes it.
        let engine = self.engine().await?;
        if keyed(mode) && !engine.contains("ReplacingMergeTree") {
            return Err(Error::user(format!(
                "table {} is a {engine}; a keyed or cdc load writes versions of rows to a ReplacingMergeTree({VERSION}) \
                 (drop the table to let Weir create it, or load with load_type = 'incremental' and no primary_key)",
                self.display()
            )));
        }
        let mut targets = Vec::new();
        let mut added = Vec::new();
        for field in schema.fields() {
            match existing.iter().find(|(n, _)| n == field.name()) {
                Some((_, ty)) => {
                    let ch = ChType::parse(ty).ok_or_else(|| {
                        Error::user(format!(
                            "column `{}` of {} is a {ty}, which Weir does not write; make it a String or drop it",
                            field.name(),
                            self.display()
                        ))
                    })?;
                    types::check_existing(field, &ch).map_err(|why| {
                        Error::user(format!("column `{}` of {}: {why}", field.name(), self.display()))
                    })?;
                    targets.push(Target { name: field.name().clone(), ch });
                }
                None => {
                    // A new column: nullable, since the rows already there have none.
                    let ch = ChType::for_field(field, caps, false);
                    let ch = match ch {
                        ChType::Nullable(_) | ChType::Array(_) => ch,
                        ch => ChType::Nullable(Box::new(ch)),
                    };
                    added.push(format!("ADD COLUMN IF NOT EXISTS {} {}", ident(field.name()), ch.ddl()));
                    targets.push(Target { name: field.name().clone(), ch });
                }
            }
        }
        for (name, ch) in extra {
            match existing.iter().find(|(n, _)| n == name) {
                Some(_) => {}
                None if name == LOAD => added.push(format!("ADD COLUMN IF NOT EXISTS {} {}", ident(name), ch.ddl())),
                None => {
                    return Err(Error::user(format!(
                        "table {} has no `{name}` column, which this load needs; drop the table to let Weir create it",
                        self.display()
                    )));
                }
            }
            targets.push(Target { name: name.to_owned(), ch });
        }
        if !added.is_empty() {
            info!(table = %self.display(), columns = added.len(), "adding the source's new columns");
            self.client
                .run(&format!("ALTER TABLE {} {}", self.qualified(), added.join(", ")), "adding new columns")
                .await?;
        }
        Ok(targets)
    }

    fn stage(&self, load: i64) -> String {
        format!("{}{load}", self.stage_prefix())
    }

    /// Staging tables of this pipeline are named `stage_<name>_<hash>_<load>`.
    fn stage_prefix(&self) -> String {
        let clean: String = self
            .pipeline
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .take(40)
            .collect();
        let hash =
            self.pipeline.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
        format!("stage_{clean}_{:08x}_", hash as u32)
    }

    /// Loads are numbered by the metadata database, and a table's position is
    /// its latest committed load's: a load numbered below one already
    /// committed comes from another metadata database (or one initialised
    /// again), and would commit a position older than the one that counts.
    /// Refused, saying how to start over.
    fn check_load_number(&self, load: i64, last: u64) -> Result<()> {
        if last > load.max(0) as u64 {
            return Err(Error::user(format!(
                "ClickHouse's _weir.commits holds a load of pipeline `{}` into {} numbered {last}, above this one \
                 ({load}): those loads came from another metadata database, or from this one before it was \
                 initialised again. To start this table over, drop it and run `ALTER TABLE _weir.commits DELETE \
                 WHERE pipeline = '{}'`",
                self.pipeline,
                self.display(),
                self.pipeline.replace('\'', "''")
            )));
        }
        Ok(())
    }

    /// Finish or abandon what an earlier load of this pipeline left: a
    /// prepared commit is completed, a stage without one is dropped. Returns
    /// the number of the last committed load (0 before the first).
    async fn recover(&self) -> Result<u64> {
        let rows = self
            .client
            .rows(
                &format!(
                    "SELECT load, state, apply, target, stage, rows FROM `_weir`.`commits` WHERE pipeline = {p} AND \
                     target = {t} AND load >= (SELECT max(load) FROM `_weir`.`commits` WHERE pipeline = {p} AND \
                     target = {t} AND state = 'committed') ORDER BY load, state = 'prepared' DESC",
                    p = literal(&self.pipeline),
                    t = literal(&self.qualified())
                ),
                "reading _weir.commits",
            )
            .await?;
        // A load's `prepared` row sorts before its `committed` (or `abandoned`) one,
        // whatever order the table's parts return them in.
        let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
        let mut last_committed = 0;
        for row in &rows {
            let load = as_u64(row.get("load"));
            match text(row.get("state")).as_str() {
                "prepared" => {
                    pending.insert(
                        load,
                        Pending {
                            apply: text(row.get("apply")),
                            target: text(row.get("target")),
                            stage: text(row.get("stage")),
                        },
                    );
                }
                state => {
                    pending.remove(&load);
                    if state == "committed" {
                        last_committed = last_committed.max(load);
                    }
                }
            }
        }
        for (load, p) in &pending {
            let (db, name) = split(&p.stage);
            let there = self
                .client
                .rows(
                    &format!(
                        "SELECT 1 AS x FROM system.tables WHERE database = {} AND name = {}",
                        literal(&db),
                        literal(&name)
                    ),
                    "looking for a staging table",
                )
                .await?;
            if there.is_empty() {
                // Nothing to finish it from (someone dropped the stage): its rows are not in the table.
                warn!(pipeline = %self.pipeline, load, stage = %p.stage, "a prepared load's stage is gone; abandoning it");
                self.record(*load as i64, "abandoned", &p.apply, &p.stage, None, 0).await?;
                continue;
            }
            warn!(pipeline = %self.pipeline, load, "finishing the commit a killed load left prepared");
            let apply = Apply::parse(&p.apply);
            self.apply(apply, &p.stage, &p.target, *load).await?;
            self.record(*load as i64, "committed", &p.apply, &p.stage, None, 0).await?;
            self.drop_stage(&p.stage).await?;
            last_committed = last_committed.max(*load);
        }
        // Stages of loads that never prepared their commit.
        let stages = self
            .client
            .rows(
                &format!(
                    "SELECT name FROM system.tables WHERE database = '_weir' AND startsWith(name, {})",
                    literal(&self.stage_prefix())
                ),
                "listing staging tables",
            )
            .await?;
        for stage in stages {
            let name = text(stage.get("name"));
            debug!(stage = %name, "dropping a staging table an unfinished load left");
            self.drop_stage(&format!("`_weir`.{}", ident(&name))).await?;
        }
        Ok(last_committed)
    }

    async fn drop_stage(&self, stage: &str) -> Result<()> {
        self.client.run(&format!("DROP TABLE IF EXISTS {stage}"), "dropping the staging table").await?;
        Ok(())
    }

    async fn record(
        &self,
        load: i64,
        state: &str,
        apply: &str,
        stage: &str,
        watermark: Option<&str>,
        rows: u64,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO `_weir`.`commits` (pipeline, load, state, apply, target, stage, watermark, rows) VALUES \
             ({}, {load}, {}, {}, {}, {}, {}, {rows})",
            literal(&self.pipeline),
            literal(state),
            literal(apply),
            literal(&self.qualified()),
            literal(stage),
            watermark.map_or("NULL".to_owned(), literal),
        );
        // Repeating it is harmless: the states of a load are read as a set.
        self.client.run(&sql, &format!("recording the load {state} in _weir.commits")).await?;
        Ok(())
    }

    /// The stage's partitions (id, rows), in order.
    async fn partitions(&self, table: &str) -> Result<Vec<(String, u64)>> {
        let (db, name) = split(table);
        let rows = self
            .client
            .rows(
                &format!(
                    "SELECT partition_id, sum(rows) AS rows FROM system.parts WHERE database = {} AND table = {} \
                     AND active GROUP BY partition_id ORDER BY partition_id",
                    literal(&db),
                    literal(&name)
                ),
                "listing partitions",
            )
            .await?;
        Ok(rows.iter().map(|r| (text(r.get("partition_id")), as_u64(r.get("rows")))).collect())
    }

    /// Step 2 of the commit; safe to repeat (see the module's note).
    async fn apply(&self, apply: Apply, stage: &str, target: &str, load: u64) -> Result<()> {
        let staged = self.partitions(stage).await?;
        match apply {
            Apply::Attach { versioned } => {
                // Partitions attached before a kill: their rows carry this load.
                let there = self
                    .client
                    .rows(
                        &format!("SELECT count() AS n FROM {target} WHERE {} = {load}", ident(LOAD)),
                        "counting the rows of an unfinished load",
                    )
                    .await?;
                let there = there.first().map(|r| as_u64(r.get("n"))).unwrap_or(0);
                let mut skip = 0;
                let mut sum = 0;
                while skip < staged.len() && sum + staged[skip].1 <= there {
                    sum += staged[skip].1;
                    skip += 1;
                }
                // A ReplacingMergeTree may have merged rows of the load away
                // already: attaching a partition twice there only repeats
                // versions, which collapse. A plain MergeTree must match exactly.
                if sum != there && !versioned {
                    return Err(Error::internal(format!(
                        "{target} holds {there} rows of load {load}, which no set of its staged partitions \
                         makes; the stage {stage} is kept for inspection"
                    )));
                }
                for (id, _) in &staged[skip..] {
                    let sql = format!("ALTER TABLE {target} ATTACH PARTITION ID {} FROM {stage}", literal(id));
                    self.client.run(&sql, "attaching the staged rows").await?;
                }
            }
            Apply::Replace { only } => {
                for (id, _) in &staged {
                    let sql = format!("ALTER TABLE {target} REPLACE PARTITION ID {} FROM {stage}", literal(id));
                    self.client.run(&sql, "replacing the table's rows with the staged ones").await?;
                }
                for (id, _) in self.partitions(target).await? {
                    let keep = staged.iter().any(|(s, _)| *s == id) || only.as_ref().is_some_and(|o| *o != id);
                    if !keep {
                        let sql = format!("ALTER TABLE {target} DROP PARTITION ID {}", literal(&id));
                        self.client.run(&sql, "dropping the rows the load replaced").await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Send one block to the stage. A block whose answer was lost is sent
    /// again only if the stage does not hold it: the stage is this load's
    /// alone, so its row count says whether the block landed.
    async fn insert_block(&self, stage: &str, columns: &str, data: BytesMut, before: u64, rows: u64) -> Result<()> {
        let data = data.freeze();
        let mut backoff = Duration::from_millis(200);
        for attempt in 1.. {
            let failure = match self.client.insert(stage, columns, data.clone()).await {
                Ok(()) if lose_answer() => crate::client::Failure {
                    code: None,
                    message: "the connection closed before the answer (WEIR_CLICKHOUSE_LOSE_ANSWER)".into(),
                },
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            if !failure.is_transient() || attempt >= 5 {
                return Err(failure.into_error("inserting a block into the staging table"));
            }
            warn!(stage, error = %failure.message, attempt, "a block insert failed; checking whether it landed");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            let counted =
                self.client.rows(&format!("SELECT count() AS n FROM {stage}"), "counting the staged rows").await?;
            let held = counted.first().map(|r| as_u64(r.get("n"))).unwrap_or(0);
            if held == before + rows {
                debug!(stage, "the block had landed; its answer was lost");
                return Ok(());
            }
            if held != before {
                return Err(Error::internal(format!(
                    "the staging table {stage} holds {held} rows; {before} or {} were expected",
                    before + rows
                )));
            }
        }
        Ok(())
    }
}

struct Pending {
    apply: String,
    target: String,
    stage: String,
}

/// Step 2 of a commit, as `_weir.commits` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Apply {
    /// `attach` (a plain MergeTree with `_weir_load`) or `attach-versioned`.
    Attach { versioned: bool },
    /// `replace`, or `replace:<partition id>` for one date's partition.
    Replace { only: Option<String> },
}

impl Apply {
    fn parse(text: &str) -> Apply {
        match text {
            "attach" => Apply::Attach { versioned: false },
            "attach-versioned" => Apply::Attach { versioned: true },
            other => Apply::Replace { only: other.strip_prefix("replace:").map(str::to_owned) },
        }
    }

    fn text(&self) -> String {
        match self {
            Apply::Attach { versioned: false } => "attach".into(),
            Apply::Attach { versioned: true } => "attach-versioned".into(),
            Apply::Replace { only: None } => "replace".into(),
            Apply::Replace { only: Some(id) } => format!("replace:{id}"),
        }
    }
}

fn split(qualified: &str) -> (String, String) {
    let unquote = |s: &str| s.trim_matches('`').replace("\\`", "`").replace("\\\\", "\\");
    match qualified.split_once("`.`") {
        Some((db, name)) => (unquote(db), unquote(name)),
        None => (String::new(), unquote(qualified)),
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

#[async_trait::async_trait]
impl Sink for ClickHouseSink {
    async fn check(&self) -> Result<()> {
        self.client.run("SELECT 1", &format!("reaching {}", self.client.server)).await?;
        Ok(())
    }

    async fn check_schema(&self, schema: &Schema) -> Result<()> {
        let Some(existing) = self.columns().await? else { return Ok(()) };
        let table_schema = changes::without_meta(schema);
        for field in table_schema.fields() {
            if let Some((_, ty)) = existing.iter().find(|(n, _)| n == field.name()) {
                let ch = ChType::parse(ty).ok_or_else(|| {
                    Error::user(format!(
                        "column `{}` of {} is a {ty}, which Weir does not write",
                        field.name(),
                        self.display()
                    ))
                })?;
                types::check_existing(field, &ch)
                    .map_err(|why| Error::user(format!("column `{}` of {}: {why}", field.name(), self.display())))?;
            }
        }
        Ok(())
    }

    async fn committed_watermark(&self, pipeline: &str) -> Result<Option<String>> {
        let exists = self
            .client
            .rows(
                "SELECT 1 AS x FROM system.tables WHERE database = '_weir' AND name = 'commits'",
                "reading _weir.commits",
            )
            .await?;
        if exists.is_empty() {
            return Ok(None);
        }
        self.recover().await?;
        // The position is the table's: a table dropped since holds none of it.
        if self.columns().await?.is_none() {
            return Ok(None);
        }
        let rows = self
            .client
            .rows(
                &format!(
                    "SELECT watermark FROM `_weir`.`commits` WHERE pipeline = {p} AND target = {t} AND state = \
                     'prepared' AND load = (SELECT max(load) FROM `_weir`.`commits` WHERE pipeline = {p} AND \
                     target = {t} AND state = 'committed')",
                    p = literal(pipeline),
                    t = literal(&self.qualified())
                ),
                "reading _weir.commits",
            )
            .await?;
        Ok(rows.first().and_then(|r| r.get("watermark")).and_then(Value::as_str).map(str::to_owned))
    }

    async fn load(&self, request: &LoadRequest, input: SourceStream) -> Result<LoadOutcome> {
        let caps = self.caps().await?;
        self.ensure_meta().await?;
        let last_committed = self.recover().await?;
        self.check_load_number(request.load_seq, last_committed)?;
        let mode = request.write_mode()?;
        let table_schema: SchemaRef = match mode {
            Mode::Mirror => changes::without_meta(&input.schema),
            _ => input.schema.clone(),
        };
        let targets = self.prepare_table(&table_schema, request, mode, caps).await?;
        let columns: Vec<String> = targets.iter().map(|t| ident(&t.name)).collect();
        let columns = columns.join(", ");

        let load = request.load_seq;
        let stage = format!("`_weir`.{}", ident(&self.stage(load)));
        self.drop_stage(&stage).await?;
        self.client.run(&format!("CREATE TABLE {stage} AS {}", self.qualified()), "creating the staging table").await?;

        let batch_rows = self.options.batch_rows.unwrap_or(DEFAULT_BATCH_ROWS).clamp(1, MAX_BATCH_ROWS);
        let run_days = request.run_date.date().signed_duration_since(epoch()).num_days() as i32;
        let mut outcome = LoadOutcome { watermark: request.watermark_before.clone(), ..Default::default() };
        let mut counts = BTreeMap::new();
        let mut buf = BytesMut::with_capacity(8 * 1024 * 1024);
        let (mut staged, mut pending) = (0u64, 0u64);
        let mut replaced = mode == Mode::Replace;
        let mut row_in_load = 0u64;
        let mut batches = input.batches;
        let streamed: Result<()> = async {
            while let Some(item) = batches.next().await {
                let item = item?;
                outcome.record(&item);
                let mut batch = item.batch;
                let mut meta: Vec<Prepared> = Vec::new();
                match mode {
                    Mode::Mirror => {
                        let ops = column(&batch, changes::OP)?.as_string::<i32>().clone();
                        // Everything before a truncate is gone: the stage restarts, and the commit replaces the table.
                        if let Some(last) = (0..ops.len()).rev().find(|&i| ops.value(i) == changes::op::TRUNCATE) {
                            self.client
                                .run(&format!("TRUNCATE TABLE {stage}"), "emptying the staging table after a truncate")
                                .await?;
                            staged = 0;
                            pending = 0;
                            buf.clear();
                            replaced = true;
                            batch = batch.slice(last + 1, batch.num_rows() - last - 1);
                        }
                        check_unchanged(&batch)?;
                        let ops = column(&batch, changes::OP)?.as_string::<i32>().clone();
                        let lsn = column(&batch, changes::LSN)?.as_primitive::<arrow::datatypes::Int64Type>().clone();
                        meta.push(Prepared::UInt64(lsn.unary(|v| v as u64)));
                        meta.push(Prepared::UInt8(UInt8Array::from_iter_values(
                            ops.iter().map(|o| u8::from(o == Some(changes::op::DELETE))),
                        )));
                        meta.push(types::constant_u64(load as u64, batch.num_rows()));
                    }
                    Mode::Upsert => {
                        let n = batch.num_rows() as u64;
                        let base = ((load as u64) << 32) + row_in_load;
                        meta.push(Prepared::UInt64(UInt64Array::from_iter_values(base..base + n)));
                        meta.push(types::constant_u8(0, batch.num_rows()));
                        meta.push(types::constant_u64(load as u64, batch.num_rows()));
                        row_in_load += n;
                    }
                    Mode::Append => meta.push(types::constant_u64(load as u64, batch.num_rows())),
                    Mode::ReplaceDate => meta.push(types::constant_date(run_days, batch.num_rows(), caps.date32)),
                    Mode::Replace => {}
                }
                let rows = batch.num_rows();
                let mut prepared = Vec::with_capacity(targets.len());
                for target in targets.iter().take(targets.len() - meta.len()) {
                    let array = column(&batch, &target.name)?;
                    prepared.push(types::prepare(&array, &target.ch, &target.name, &mut counts)?);
                }
                prepared.extend(meta);
                for row in 0..rows {
                    for p in &prepared {
                        p.write(row, &mut buf);
                    }
                    pending += 1;
                    if pending as usize >= batch_rows {
                        let block = buf.split();
                        self.insert_block(&stage, &columns, block, staged, pending).await?;
                        staged += pending;
                        pending = 0;
                    }
                }
            }
            if pending > 0 {
                let block = buf.split();
                self.insert_block(&stage, &columns, block, staged, pending).await?;
                staged += pending;
            }
            Ok(())
        }
        .await;
        if let Err(e) = streamed {
            let _ = self.drop_stage(&stage).await;
            return Err(e);
        }

        let apply = match (mode, replaced) {
            (_, true) => Apply::Replace { only: None },
            (Mode::ReplaceDate, _) => {
                Apply::Replace { only: Some(request.run_date.date().format("%Y%m%d").to_string()) }
            }
            (Mode::Append, _) => Apply::Attach { versioned: false },
            _ => Apply::Attach { versioned: true },
        };
        let apply_text = apply.text();
        self.record(load, "prepared", &apply_text, &stage, outcome.watermark.as_deref(), staged).await?;
        crash_at("prepared");
        self.apply(apply, &stage, &self.qualified(), load as u64).await?;
        crash_at("applied");
        self.record(load, "committed", &apply_text, &stage, None, staged).await?;
        self.drop_stage(&stage).await?;
        debug!(table = %self.display(), rows = staged, "committed");
        outcome.rows_written = staged;
        outcome.counts = counts;
        Ok(outcome)
    }
}

/// The tests that prove a killed commit is finished end the process at a
/// step (`WEIR_CLICKHOUSE_CRASH = prepared | applied`). Debug builds only.
fn crash_at(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("WEIR_CLICKHOUSE_CRASH").is_some_and(|s| s == step) {
        std::process::abort();
    }
    let _ = step;
}

/// The tests that prove a block is never inserted twice lose the answer to
/// the `WEIR_CLICKHOUSE_LOSE_ANSWER`-th block sent (after the server took it). Debug builds only.
fn lose_answer() -> bool {
    #[cfg(debug_assertions)]
    {
        static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if let Some(n) = std::env::var("WEIR_CLICKHOUSE_LOSE_ANSWER").ok().and_then(|v| v.parse::<u64>().ok()) {
            return SENT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == n;
        }
    }
    false
}

/// The column `name` of `batch`.
fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    batch.column_by_name(name).cloned().ok_or_else(|| Error::internal(format!("the batch has no column `{name}`")))
}

/// A mirror writes whole rows: a value the source did not send (PostgreSQL's
/// unchanged TOAST) would be lost, so it fails the load naming the column.
fn check_unchanged(batch: &RecordBatch) -> Result<()> {
    let Some(unchanged) = batch.column_by_name(changes::UNCHANGED) else { return Ok(()) };
    let lists = unchanged.as_list::<i32>();
    for row in 0..lists.len() {
        if lists.is_null(row) {
            continue;
        }
        let names = lists.value(row);
        let names: &StringArray = names.as_string();
        if let Some(name) = names.iter().flatten().next() {
            return Err(Error::user(format!(
                "an update did not carry column `{name}` (PostgreSQL leaves a large unchanged value out of the \
                 change); a ClickHouse mirror writes whole rows: set REPLICA IDENTITY FULL on the source table so \
                 that updates carry every value, or load with options.history = true"
            )));
        }
    }
    Ok(())
}

fn epoch() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}
