use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use arrow::array::{ArrayRef, Date32Array};
use arrow::datatypes::SchemaRef;
use bytes::BytesMut;
use futures::StreamExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
// Dynamic SQL here is built only from validated, quoted identifiers; values are bound.
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Postgres};
use weir_core::changes;
use weir_core::{
    ConnectionUrl, Error, Ident, LoadOutcome, LoadRequest, PipelineDef, Result, Sink, SourceStream, quote_ident,
    quote_literal,
};

use crate::PostgresOptions;
use crate::table::{self, Existing, check_columns_exist, qualified};
use crate::types::{BatchEncoder, ColumnPlan, existing_column, new_column};

/// The column that records which run date loaded a row of a date-sliced table.
pub const RUN_DATE_COLUMN: &str = "_weir_run_date";
const DEFAULT_COPY_BUFFER: usize = 8 * 1024 * 1024;

/// Loads pipelines into one PostgreSQL database.
pub struct PostgresSink {
    connection: ConnectionUrl,
    schema: Ident,
    table: Ident,
    options: PostgresOptions,
}

// How the rows reach the table (a mirror: see `apply_changes`).
use weir_core::WriteMode as Mode;

impl PostgresSink {
    pub fn new(connection: ConnectionUrl, pipeline: &PipelineDef, options: PostgresOptions) -> Result<Self> {
        Ok(Self { connection, schema: pipeline.schema_name.clone(), table: pipeline.table()?.clone(), options })
    }

    /// A connection from the process's pool for this destination.
    async fn connect(&self) -> Result<PoolConnection<Postgres>> {
        let pool = {
            let mut pools = POOLS.lock().map_err(|_| Error::internal("the PostgreSQL pool map is poisoned"))?;
            match pools.get(self.connection.expose()) {
                Some(pool) => pool.clone(),
                None => {
                    let options = PgConnectOptions::from_str(self.connection.expose())
                        .map_err(|e| {
                            Error::user(format!("destination connection {} is not valid: {e}", self.connection))
                        })?
                        .application_name("weir");
                    // A load holds its connection for its whole length, so the pool is
                    // larger than any sensible --concurrency. The timeout also bounds how
                    // long a server that refuses connections is retried before the
                    // attempt fails (and the engine's retry takes over).
                    let pool = PgPoolOptions::new()
                        .max_connections(64)
                        .acquire_timeout(Duration::from_secs(30))
                        .idle_timeout(Duration::from_secs(60))
                        .connect_lazy_with(options);
                    pools.insert(self.connection.expose().to_owned(), pool.clone());
                    pool
                }
            }
        };
        pool.acquire().await.map_err(|e| db_error(e, &format!("connecting to {}", self.connection)))
    }
}

/// Connections to each destination, shared by the pipelines of a process: a run
/// of many small pipelines would otherwise spend most of its time in TCP and
/// TLS handshakes (two per pipeline). A load's connection returns to the pool
/// after its transaction, so nothing of one load's session reaches the next.
static POOLS: LazyLock<Mutex<HashMap<String, PgPool>>> = LazyLock::new(Mutex::default);

#[async_trait::async_trait]
impl Sink for PostgresSink {
    async fn check(&self) -> Result<()> {
        let mut conn = self.connect().await?;
        let can_create: bool = sqlx::query_scalar("SELECT has_database_privilege(current_database(), 'CREATE')")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_error(e, "checking privileges"))?;
        if !can_create {
            return Err(Error::external(format!(
                "the user of {} may not create schemas in this database; grant CREATE or create schema {} yourself",
                self.connection, self.schema
            )));
        }
        Ok(())
    }

    async fn check_schema(&self, schema: &arrow::datatypes::Schema) -> Result<()> {
        for field in schema.fields() {
            check_name_length(field.name())?;
        }
        let mut conn = self.connect().await?;
        if let Some(existing) = table::inspect(&mut conn, &self.schema, &self.table).await? {
            for field in schema.fields() {
                if let Some(pg_type) = existing.column_type(field.name()) {
                    existing_column(field, pg_type)?;
                }
            }
        }
        Ok(())
    }

    async fn committed_watermark(&self, pipeline: &str) -> Result<Option<String>> {
        let mut conn = self.connect().await?;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_weir.commits') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_error(e, "reading _weir.commits"))?;
        if !exists {
            return Ok(None);
        }
        let value: Option<Option<String>> =
            sqlx::query_scalar("SELECT watermark FROM _weir.commits WHERE pipeline = $1")
                .bind(pipeline)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| db_error(e, "reading _weir.commits"))?;
        Ok(value.flatten())
    }

    async fn load(&self, request: &LoadRequest, input: SourceStream) -> Result<LoadOutcome> {
        let mut conn = self.connect().await?;
        ensure_schema(&mut conn, &self.schema).await?;
        let mut tx = conn.begin().await.map_err(|e| db_error(e, "starting the load transaction"))?;
        let target = qualified(&self.schema, &self.table);

        // Writers to one table take turns; the lock ends with the transaction.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("weir:{target}"))
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(e, "locking the destination table"))?;

        let mode = request.write_mode()?;
        let source_names: Vec<&str> = input.schema.fields().iter().map(|f| f.name().as_str()).collect();
        check_columns_exist("primary_key", &request.primary_key, &source_names)?;
        if let Some(wm) = &request.watermark_column {
            check_columns_exist("watermark_column", std::slice::from_ref(wm), &source_names)?;
        }

        let existing = table::inspect(&mut tx, &self.schema, &self.table).await?;
        // A mirror holds the table's columns; the change columns stay in staging.
        let table_schema = match mode {
            Mode::Mirror => changes::without_meta(&input.schema),
            _ => input.schema.clone(),
        };
        let mut plans = prepare_table(&mut tx, &target, existing.as_ref(), &table_schema, request, mode).await?;
        let table_plans = plans.clone();
        if mode == Mode::Mirror {
            plans.extend(input.schema.fields().iter().filter(|f| changes::is_meta(f.name())).map(|f| new_column(f)));
        }
        if matches!(mode, Mode::Upsert | Mode::Mirror)
            && !table::has_unique_key(&mut tx, &self.schema, &self.table, &request.primary_key).await?
        {
            let key: Vec<String> = request.primary_key.iter().map(Ident::quoted).collect();
            return Err(Error::user(format!(
                "table {} has no unique index on primary_key ({}), which an upsert needs; \
                 create one: CREATE UNIQUE INDEX ON {target} ({})",
                self.schema.as_str().to_owned() + "." + self.table.as_str(),
                request.primary_key.iter().map(Ident::as_str).collect::<Vec<_>>().join(", "),
                key.join(", ")
            )));
        }

        let run_date_value = (mode == Mode::ReplaceDate).then(|| {
            let days = request.run_date.date().signed_duration_since(chrono_epoch()).num_days() as i32;
            (RUN_DATE_COLUMN.to_owned(), Arc::new(Date32Array::from(vec![days])) as ArrayRef)
        });
        let mut encoder = BatchEncoder::new(plans, run_date_value)?;
        let columns = encoder.column_list();

        let copy_target = match mode {
            Mode::Replace => {
                exec(&mut tx, &format!("TRUNCATE {target}"), "emptying the table for a full load").await?;
                target.clone()
            }
            Mode::Append => target.clone(),
            Mode::ReplaceDate => {
                let delete = format!("DELETE FROM {target} WHERE {} = $1", quote_ident(RUN_DATE_COLUMN));
                let deleted = sqlx::query(AssertSqlSafe(delete))
                    .bind(request.run_date.date())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(e, "removing the rows of an earlier run for this date"))?;
                tracing::debug!(rows = deleted.rows_affected(), date = %request.run_date, "replaced the date's rows");
                target.clone()
            }
            Mode::Upsert | Mode::Mirror => target.clone(),
        };
        // Rows go through a staging table when they are merged, or when some
        // column arrives as text for the server to cast to its declared type.
        let staged = matches!(mode, Mode::Upsert | Mode::Mirror) || encoder.plans().iter().any(|p| p.cast);
        let copy_target = match staged {
            true => {
                exec(&mut tx, &stage_table(&encoder), "creating the staging table").await?;
                "_weir_stage".to_owned()
            }
            false => copy_target,
        };

        let flush_at = self.options.copy_buffer_bytes.unwrap_or(DEFAULT_COPY_BUFFER).max(64 * 1024);
        let mut outcome = LoadOutcome { watermark: request.watermark_before.clone(), ..Default::default() };
        let copied = {
            let mut copy = tx
                .copy_in_raw(&format!("COPY {copy_target} ({columns}) FROM STDIN (FORMAT binary)"))
                .await
                .map_err(|e| db_error(e, "starting COPY"))?;
            let mut buf = BytesMut::with_capacity(flush_at + flush_at / 4);
            encoder.header(&mut buf)?;
            let mut batches = input.batches;
            let streamed: Result<()> = async {
                while let Some(item) = batches.next().await {
                    let item = item?;
                    outcome.record(&item);
                    encoder.encode(&item.batch, &mut buf)?;
                    if buf.len() >= flush_at {
                        copy.send(buf.split()).await.map_err(|e| db_error(e, "sending COPY data"))?;
                    }
                }
                encoder.footer(&mut buf)?;
                copy.send(buf.split()).await.map_err(|e| db_error(e, "sending COPY data"))?;
                Ok(())
            }
            .await;
            match streamed {
                Ok(()) => copy.finish().await.map_err(|e| db_error(e, "finishing COPY"))?,
                Err(e) => {
                    let _ = copy.abort("weir: load failed").await;
                    return Err(e);
                }
            }
        };

        let exprs = stage_exprs(&encoder);
        outcome.counts = encoder.counts().clone();
        outcome.rows_written = match (mode, staged) {
            (Mode::Mirror, _) => apply_changes(&mut tx, &target, &table_plans, request, &mut outcome.counts).await?,
            (Mode::Upsert, _) => merge_staged(&mut tx, &target, &encoder.column_names(), &exprs, request).await?,
            (_, true) => {
                let sql = format!("INSERT INTO {target} ({columns}) SELECT {} FROM _weir_stage", exprs.join(", "));
                sqlx::query(AssertSqlSafe(sql))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        db_error(e, "moving the staged rows into the table (casting them to the column types)")
                    })?
                    .rows_affected()
            }
            (_, false) => copied,
        };

        record_commit(&mut tx, request, outcome.watermark.as_deref(), outcome.rows_written).await?;
        tx.commit().await.map_err(|e| db_error(e, "committing the load"))?;
        Ok(outcome)
    }
}

fn chrono_epoch() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

/// Create the table, or add the source's new columns to it; returns how each
/// source column is written. A type that cannot be written fails naming the column.
async fn prepare_table(
    conn: &mut PgConnection,
    target: &str,
    existing: Option<&Existing>,
    schema: &SchemaRef,
    request: &LoadRequest,
    mode: Mode,
) -> Result<Vec<ColumnPlan>> {
    let fields = schema.fields();
    for field in fields {
        check_name_length(field.name())?;
    }
    let Some(existing) = existing else {
        let plans: Vec<ColumnPlan> = fields.iter().map(|f| new_column(f)).collect();
        let mut columns: Vec<(String, String)> = plans.iter().map(|p| (p.name.clone(), p.pg_type.clone())).collect();
        if mode == Mode::ReplaceDate {
            columns.push((RUN_DATE_COLUMN.to_owned(), "date".to_owned()));
        }
        exec(conn, &table::create_table(target, &columns, &request.primary_key), "creating the table").await?;
        if mode == Mode::ReplaceDate {
            exec(
                conn,
                &format!("CREATE INDEX ON {target} ({})", quote_ident(RUN_DATE_COLUMN)),
                "indexing the run date column",
            )
            .await?;
        }
        return Ok(plans);
    };

    let mut plans = Vec::with_capacity(fields.len());
    for field in fields {
        match existing.column_type(field.name()) {
            Some(pg_type) => plans.push(existing_column(field, pg_type)?),
            None => {
                let plan = new_column(field);
                exec(
                    conn,
                    &format!("ALTER TABLE {target} ADD COLUMN {} {}", quote_ident(&plan.name), plan.pg_type),
                    &format!("adding new source column `{}`", plan.name),
                )
                .await?;
                tracing::info!(column = %plan.name, pg_type = %plan.pg_type, "added a new source column");
                plans.push(plan);
            }
        }
    }
    if mode == Mode::ReplaceDate && existing.column_type(RUN_DATE_COLUMN).is_none() {
        exec(
            conn,
            &format!("ALTER TABLE {target} ADD COLUMN {} date", quote_ident(RUN_DATE_COLUMN)),
            "adding the run date column",
        )
        .await?;
    }
    Ok(plans)
}

/// PostgreSQL keeps the first 63 bytes of a name and drops the rest without a
/// word, so two long names could become one column: refuse them.
pub(crate) fn check_name_length(name: &str) -> Result<()> {
    const MAX_NAME: usize = 63;
    if name.len() <= MAX_NAME {
        return Ok(());
    }
    let mut cut = MAX_NAME;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    Err(Error::user(format!(
        "column `{name}` is {} bytes long, and PostgreSQL keeps only 63 bytes of a name (`{}`); \
         rename it in the source, or with an alias in options.query where the source takes one",
        name.len(),
        &name[..cut]
    )))
}

/// `CREATE TEMP TABLE _weir_stage`: the columns COPY writes, as the table has
/// them, except those that arrive as text for the server to cast; and the
/// arrival order.
fn stage_table(encoder: &BatchEncoder) -> String {
    let mut defs: Vec<String> = encoder
        .plans()
        .iter()
        .map(|p| {
            let pg_type = match (p.cast, p.pg_type.ends_with("[]")) {
                (true, true) => "text[]",
                (true, false) => "text",
                (false, _) => p.pg_type.as_str(),
            };
            format!("{} {pg_type}", quote_ident(&p.name))
        })
        .collect();
    for extra in encoder.column_names().iter().skip(encoder.plans().len()) {
        defs.push(format!("{} date", quote_ident(extra)));
    }
    defs.push("_weir_seq bigint GENERATED ALWAYS AS IDENTITY".to_owned());
    format!("CREATE TEMP TABLE _weir_stage ({}) ON COMMIT DROP", defs.join(", "))
}

/// The staged columns as the table takes them: cast where they arrived as text.
fn stage_exprs(encoder: &BatchEncoder) -> Vec<String> {
    let mut exprs: Vec<String> = encoder
        .plans()
        .iter()
        .map(|p| match p.cast {
            true => format!("{q}::{} AS {q}", p.pg_type, q = quote_ident(&p.name)),
            false => quote_ident(&p.name),
        })
        .collect();
    exprs.extend(encoder.column_names().iter().skip(encoder.plans().len()).map(|c| quote_ident(c)));
    exprs
}

/// Merge the staged rows: the latest row per key (by watermark column, then
/// arrival) replaces the table's row, unless the table's row is newer.
async fn merge_staged(
    conn: &mut PgConnection,
    target: &str,
    columns: &[String],
    exprs: &[String],
    request: &LoadRequest,
) -> Result<u64> {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let key: Vec<String> = request.primary_key.iter().map(Ident::quoted).collect();
    let mut order = key.clone();
    if let Some(wm) = &request.watermark_column {
        order.push(format!("{} DESC NULLS LAST", wm.quoted()));
    }
    order.push("_weir_seq DESC".to_owned());
    let updates: Vec<String> =
        cols.iter().filter(|c| !key.contains(c)).map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    let on_conflict = if updates.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        let newer = match &request.watermark_column {
            Some(wm) => {
                let wm = wm.quoted();
                format!(" WHERE {target}.{wm} IS NULL OR {target}.{wm} <= EXCLUDED.{wm}")
            }
            None => String::new(),
        };
        format!("DO UPDATE SET {}{newer}", updates.join(", "))
    };
    let sql = format!(
        "INSERT INTO {target} ({cols})
         SELECT {cols} FROM (SELECT DISTINCT ON ({key}) {exprs} FROM _weir_stage ORDER BY {order}) latest
         ON CONFLICT ({key}) {on_conflict}",
        cols = cols.join(", "),
        key = key.join(", "),
        exprs = exprs.join(", "),
        order = order.join(", "),
    );
    let done = sqlx::query(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map_err(|e| db_error(e, "merging staged rows into the table"))?;
    Ok(done.rows_affected())
}

/// Apply the staged change stream to the mirror, in stream order (`_weir_seq`):
/// after the last truncate, the last change of each row wins: a delete
/// removes it, an insert or update writes it whole, except for the values the
/// change did not send (unchanged TOAST), which come from the change before it
/// in this load, else stay as the table has them. Returns the rows changed.
async fn apply_changes(
    conn: &mut PgConnection,
    target: &str,
    plans: &[ColumnPlan],
    request: &LoadRequest,
    counts: &mut std::collections::BTreeMap<&'static str, u64>,
) -> Result<u64> {
    let (op, seq, unchanged) = (quote_ident(changes::OP), "_weir_seq", quote_ident(changes::UNCHANGED));
    let key: Vec<&str> = request.primary_key.iter().map(Ident::as_str).collect();
    let plan_of = |name: &str| plans.iter().find(|p| p.name == name);
    // A staged value as the table's type (some arrive as text for the server to cast).
    let value = |p: &ColumnPlan, alias: &str| match p.cast {
        true => format!("{alias}.{}::{}", quote_ident(&p.name), p.pg_type),
        false => format!("{alias}.{}", quote_ident(&p.name)),
    };
    let same_key = |a: &str, b: &str, typed: bool| {
        key.iter()
            .map(|k| {
                let rhs = match (typed, plan_of(k)) {
                    (true, Some(p)) => value(p, b),
                    _ => format!("{b}.{}", quote_ident(k)),
                };
                format!("{a}.{} = {rhs}", quote_ident(k))
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let mut changed = 0u64;

    let truncated_at: Option<i64> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT max({seq}) FROM _weir_stage WHERE {op} = 't'")))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_error(e, "reading the staged changes"))?;
    let after = truncated_at.unwrap_or(0);
    if truncated_at.is_some() {
        changed += exec_count(conn, &format!("DELETE FROM {target}"), "applying a truncate").await?;
    }

    let unsent: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT DISTINCT unnest({unchanged}) FROM _weir_stage WHERE {seq} > {after}"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| db_error(e, "reading the staged changes"))?;
    let lsn = quote_ident(changes::LSN);
    for plan in unsent.iter().filter_map(|c| plan_of(c)) {
        let c = quote_ident(&plan.name);
        // No delete of the row's key between the change that sent the value and the one that did not.
        let unbroken = |from: &str, to: &str| {
            format!(
                "NOT EXISTS (SELECT 1 FROM _weir_stage b WHERE {} AND b.{op} = 'd' AND b.{seq} > {from}.{seq} \
                 AND b.{seq} < {to}.{seq})",
                same_key("b", to, false)
            )
        };
        let sent = |alias: &str| {
            format!("{alias}.{op} IN ('r', 'c', 'u') AND NOT (coalesce({alias}.{unchanged}, '{{}}') @> ARRAY[$1])")
        };
        // The latest earlier change of the same row in this load that sent the value.
        let same_row = format!(
            "UPDATE _weir_stage s SET {c} = p.v, {unchanged} = array_remove(s.{unchanged}, $1)
             FROM (SELECT DISTINCT ON (s2.{seq}) s2.{seq} AS at, p.{c} AS v
                   FROM _weir_stage s2 JOIN _weir_stage p ON {same} AND p.{seq} < s2.{seq} AND p.{seq} > {after}
                        AND {sent_p} AND {unbroken}
                   WHERE s2.{unchanged} @> ARRAY[$1] AND s2.{seq} > {after}
                   ORDER BY s2.{seq}, p.{seq} DESC) p
             WHERE s.{seq} = p.at",
            same = same_key("p", "s2", false),
            sent_p = sent("p"),
            unbroken = unbroken("p", "s2"),
        );
        // An update that changed the key comes as a delete of the old key and,
        // right after it at the same position, the new row: the value is the
        // old row's, from this load or else from the table.
        let old_row_staged = format!(
            "UPDATE _weir_stage s SET {c} = p.v, {unchanged} = array_remove(s.{unchanged}, $1)
             FROM (SELECT DISTINCT ON (s2.{seq}) s2.{seq} AS at, p.{c} AS v
                   FROM _weir_stage s2
                   JOIN _weir_stage d ON d.{seq} = s2.{seq} - 1 AND d.{op} = 'd' AND d.{lsn} = s2.{lsn}
                   JOIN _weir_stage p ON {same} AND p.{seq} < d.{seq} AND p.{seq} > {after} AND {sent_p} AND {unbroken}
                   WHERE s2.{unchanged} @> ARRAY[$1] AND s2.{seq} > {after}
                   ORDER BY s2.{seq}, p.{seq} DESC) p
             WHERE s.{seq} = p.at",
            same = same_key("p", "d", false),
            sent_p = sent("p"),
            unbroken = unbroken("p", "d"),
        );
        let from_table = match (plan.cast, plan.pg_type.ends_with("[]")) {
            (true, true) => format!("t.{c}::text[]"),
            (true, false) => format!("t.{c}::text"),
            (false, _) => format!("t.{c}"),
        };
        let old_row_table = format!(
            "UPDATE _weir_stage s SET {c} = {from_table}, {unchanged} = array_remove(s.{unchanged}, $1)
             FROM _weir_stage d, {target} t
             WHERE s.{unchanged} @> ARRAY[$1] AND s.{seq} > {after} AND d.{seq} = s.{seq} - 1 AND d.{op} = 'd'
               AND d.{lsn} = s.{lsn} AND {same}",
            same = same_key("t", "d", true),
        );
        for sql in [&same_row, &old_row_staged, &old_row_table, &same_row] {
            sqlx::query(AssertSqlSafe(sql.clone())).bind(&plan.name).execute(&mut *conn).await.map_err(|e| {
                db_error(e, &format!("filling in the values of column `{}` that an update left unchanged", plan.name))
            })?;
        }
    }

    let key_list: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
    exec(
        conn,
        &format!(
            "CREATE TEMP TABLE _weir_latest ON COMMIT DROP AS
             SELECT DISTINCT ON ({keys}) * FROM _weir_stage WHERE {seq} > {after} AND {op} <> 't'
             ORDER BY {keys}, {seq} DESC",
            keys = key_list.join(", ")
        ),
        "finding the last change of each row",
    )
    .await?;
    changed += exec_count(
        conn,
        &format!("DELETE FROM {target} t USING _weir_latest l WHERE {} AND l.{op} = 'd'", same_key("t", "l", true)),
        "applying deletes",
    )
    .await?;

    let cols: Vec<String> = plans.iter().map(|p| quote_ident(&p.name)).collect();
    let values: Vec<String> = plans.iter().map(|p| value(p, "l")).collect();
    let non_key: Vec<&ColumnPlan> = plans.iter().filter(|p| !key.contains(&p.name.as_str())).collect();
    let partial = format!("cardinality(coalesce(l.{unchanged}, '{{}}')) > 0");
    if !non_key.is_empty() {
        let sets: Vec<String> = non_key
            .iter()
            .map(|p| {
                let c = quote_ident(&p.name);
                format!(
                    "{c} = CASE WHEN l.{unchanged} @> ARRAY[{}] THEN t.{c} ELSE {} END",
                    quote_literal(&p.name),
                    value(p, "l")
                )
            })
            .collect();
        changed += exec_count(
            conn,
            &format!(
                "UPDATE {target} t SET {} FROM _weir_latest l WHERE {} AND l.{op} <> 'd' AND {partial}",
                sets.join(", "),
                same_key("t", "l", true)
            ),
            "applying updates that left values unchanged",
        )
        .await?;
    }
    // Such an update of a row the mirror lacks has no value to keep: count it.
    let missing = exec_count(
        conn,
        &format!(
            "INSERT INTO {target} ({cols}) SELECT {values} FROM _weir_latest l WHERE l.{op} <> 'd' AND {partial}
             ON CONFLICT ({keys}) DO NOTHING",
            cols = cols.join(", "),
            values = values.join(", "),
            keys = key_list.join(", ")
        ),
        "applying updates of rows the mirror lacks",
    )
    .await?;
    if missing > 0 {
        *counts.entry("unchanged_values_missing").or_default() += missing;
        changed += missing;
    }
    let on_conflict = match non_key.is_empty() {
        true => "DO NOTHING".to_owned(),
        false => format!(
            "DO UPDATE SET {}",
            non_key
                .iter()
                .map(|p| format!("{c} = EXCLUDED.{c}", c = quote_ident(&p.name)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    changed += exec_count(
        conn,
        &format!(
            "INSERT INTO {target} ({cols}) SELECT {values} FROM _weir_latest l WHERE l.{op} <> 'd' AND NOT {partial}
             ON CONFLICT ({keys}) {on_conflict}",
            cols = cols.join(", "),
            values = values.join(", "),
            keys = key_list.join(", ")
        ),
        "applying inserts and updates",
    )
    .await?;
    Ok(changed)
}

/// Run a statement; the rows it changed.
async fn exec_count(conn: &mut PgConnection, sql: &str, doing: &str) -> Result<u64> {
    let done =
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&mut *conn).await.map_err(|e| db_error(e, doing))?;
    Ok(done.rows_affected())
}

/// Record the committed watermark beside the data, in the same transaction.
async fn record_commit(
    conn: &mut PgConnection,
    request: &LoadRequest,
    watermark: Option<&str>,
    rows: u64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO _weir.commits (pipeline, watermark, run_id, run_date, rows_written)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (pipeline) DO UPDATE SET watermark = EXCLUDED.watermark, run_id = EXCLUDED.run_id,
             run_date = EXCLUDED.run_date, rows_written = EXCLUDED.rows_written, committed_at = now()",
    )
    .bind(&request.pipeline)
    .bind(watermark)
    .bind(request.run_id)
    .bind(request.run_date.date())
    .bind(rows as i64)
    .execute(&mut *conn)
    .await
    .map_err(|e| db_error(e, "recording the commit"))?;
    Ok(())
}

/// Create the destination schema and `_weir.commits`, outside the load's
/// transaction: `CREATE … IF NOT EXISTS` is not safe against a concurrent
/// creation (both may insert the catalog row; one fails), and pipelines loading
/// at once into one new schema would collide. A concurrent creation counts as done.
async fn ensure_schema(conn: &mut PgConnection, schema: &Ident) -> Result<()> {
    create_if_missing(conn, &format!("CREATE SCHEMA IF NOT EXISTS {}", schema.quoted()), "creating the schema").await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_weir.commits') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| db_error(e, "reading _weir.commits"))?;
    if !exists {
        create_if_missing(conn, "CREATE SCHEMA IF NOT EXISTS _weir", "creating schema _weir").await?;
        create_if_missing(
            conn,
            "CREATE TABLE IF NOT EXISTS _weir.commits (
                 pipeline     text PRIMARY KEY,
                 watermark    text,
                 run_id       uuid NOT NULL,
                 run_date     date NOT NULL,
                 rows_written bigint NOT NULL,
                 committed_at timestamptz NOT NULL DEFAULT now()
             )",
            "creating _weir.commits",
        )
        .await?;
    }
    Ok(())
}

async fn create_if_missing(conn: &mut PgConnection, sql: &str, doing: &str) -> Result<()> {
    match sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("23505" | "42P06" | "42P07" | "42710")) =>
        {
            Ok(())
        }
        Err(e) => Err(db_error(e, doing)),
    }
}

async fn exec(conn: &mut PgConnection, sql: &str, doing: &str) -> Result<()> {
    exec_count(conn, sql, doing).await.map(drop)
}

/// A database error as a Weir error. Connection trouble is retried; a row the
/// table refuses is the user's to fix; anything else is the server's.
pub(crate) fn db_error(e: sqlx::Error, doing: &str) -> Error {
    let retryable_code = |c: &str| c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01";
    match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
            Error::transient(format!("{doing}: {e}"))
        }
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default().into_owned();
            // Where in a COPY the server was: `COPY orders, line 3, column amount: "…"`.
            let at = db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.r#where())
                .map(|w| format!(" at {}", w.lines().next().unwrap_or(w)))
                .unwrap_or_default();
            if retryable_code(&code) {
                Error::transient(format!("{doing}: {db}"))
            } else if code.starts_with("22") || code.starts_with("23") || code.starts_with("42") {
                // data exceptions, constraint violations, bad names or types
                Error::user(format!("{doing}: {db}{at} (SQLSTATE {code})"))
            } else {
                Error::external(format!("{doing}: {db} (SQLSTATE {code})"))
            }
        }
        _ => Error::external(format!("{doing}: {e}")),
    }
}
