//! SQL in flight for a load: `options.transform` run over each batch between
//! the source and the sink (`weir_enrich`), joined with `options.lookups`.
//!
//! A lookup is read by the same source connectors as a pipeline (a table or a
//! query of a `postgres` or `mysql` connection, a Parquet path), whole, into
//! memory, when the first batch needs it and again once it is older than
//! `options.lookup_refresh` (default 5 minutes: a `runner stream` session
//! sees new content within that).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};
use tracing::info;
use weir_core::traits::{ReadRequest, SourceContext};
use weir_core::{
    ControllerRow, Error, LoadType, PipelineDef, Redactor, Result, RunDate, Source, SourceBatch, SourceStream, changes,
};
use weir_enrich::{Enrich, Lookup};

use crate::registry::TaskKind;
use crate::run::Engine;

const DEFAULT_REFRESH: Duration = Duration::from_secs(300);

/// One entry of `options.lookups`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupOptions {
    /// A connection's name (`WEIR_CONN_<NAME>`).
    connection: String,
    /// A table (`public.content`), or for `parquet` a path.
    table: Option<String>,
    /// A `SELECT`, instead of a table.
    query: Option<String>,
    /// The source type, when the connection's scheme does not say it.
    #[serde(rename = "type")]
    source_type: Option<String>,
}

struct LookupSource {
    name: String,
    source: Box<dyn Source>,
}

/// A pipeline's transform: its statement and its lookups' sources.
pub(crate) struct SqlTransform {
    sql: String,
    lookups: Vec<LookupSource>,
    refresh: Duration,
    /// A change stream applied to a mirror: the change columns must come out too.
    mirror: bool,
    loaded: tokio::sync::Mutex<Option<(Instant, Arc<Vec<Lookup>>)>>,
}

impl Engine {
    /// The pipeline's `options.transform`, its lookups' sources built; `None` without one.
    pub(crate) fn transform_of(
        &self,
        def: &PipelineDef,
        sql: Option<&str>,
        lookups: Option<&Map<String, Value>>,
        refresh: Option<&str>,
        mirror: bool,
        redactor: &mut Redactor,
    ) -> Result<Option<SqlTransform>> {
        let Some(sql) = sql.map(str::trim).filter(|s| !s.is_empty()) else {
            if lookups.is_some() || refresh.is_some() {
                return Err(Error::user("options.lookups and options.lookup_refresh are for options.transform"));
            }
            return Ok(None);
        };
        let refresh = match refresh {
            None => DEFAULT_REFRESH,
            Some(text) => humantime::parse_duration(text).map_err(|e| {
                Error::user(format!("options.lookup_refresh `{text}` is not a duration like `5m` or `30s`: {e}"))
            })?,
        };
        let mut sources = Vec::new();
        for (name, spec) in lookups.into_iter().flatten() {
            let source =
                self.lookup_source(def, name, spec, redactor).map_err(|e| e.context(format!("lookup `{name}`")))?;
            sources.push(LookupSource { name: name.clone(), source });
        }
        Ok(Some(SqlTransform {
            sql: sql.to_owned(),
            lookups: sources,
            refresh,
            mirror,
            loaded: tokio::sync::Mutex::new(None),
        }))
    }

    /// A lookup's source, built as a `full` read of its table or query.
    fn lookup_source(
        &self,
        def: &PipelineDef,
        name: &str,
        spec: &Value,
        redactor: &mut Redactor,
    ) -> Result<Box<dyn Source>> {
        weir_core::Ident::parse(name, "a lookup's name")?;
        let spec: LookupOptions = serde_json::from_value(spec.clone()).map_err(|e| {
            Error::user(format!(
                "{e}; write {{\"connection\": \"<name>\", \"table\": \"schema.table\"}} or {{\"connection\": …, \
                 \"query\": \"SELECT …\"}}"
            ))
        })?;
        let connection = self.resolve(&spec.connection, redactor).map_err(|e| e.context("connection"))?;
        let source_type = match (spec.source_type.as_deref(), connection.scheme()) {
            (Some(t), _) => t.to_owned(),
            (None, "postgres" | "postgresql") => "postgres".to_owned(),
            (None, "mysql" | "mariadb") => "mysql".to_owned(),
            (None, "s3" | "file" | "gs" | "az" | "abfss") => "parquet".to_owned(),
            (None, other) => {
                return Err(Error::user(format!("a {other}:// connection: name the source with \"type\"")));
            }
        };
        let registration = match self.registry().task(&source_type)? {
            TaskKind::Load(r) => r,
            TaskKind::Transform(_) => return Err(Error::user(format!("`{source_type}` does not read a table"))),
        };
        let mut options = Map::new();
        match (&spec.table, &spec.query) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(Error::user("name either \"table\" or \"query\""));
            }
            (None, Some(query)) if registration.option_keys.contains(&"query") => {
                options.insert("query".to_owned(), Value::String(query.clone()));
            }
            (None, Some(_)) => return Err(Error::user(format!("a {source_type} lookup reads a table, not a query"))),
            (Some(_), None) => {}
        }
        let parquet = source_type == "parquet";
        let row = ControllerRow {
            id: def.id,
            name: format!("{}.lookup.{name}", def.name),
            source_type,
            source_connection: Some(spec.connection.clone()),
            source_table: spec.table.clone().filter(|_| !parquet),
            data_source: spec.table.clone().filter(|_| parquet),
            destination_type: "lookup".to_owned(),
            destination_connection: None,
            schema_name: "lookup".to_owned(),
            destination_table: name.to_owned(),
            load_type: LoadType::Full.as_str().to_owned(),
            watermark_column: None,
            primary_key: Vec::new(),
            partition_by: Vec::new(),
            options: Value::Object(options.clone()),
            depends_on: Vec::new(),
            notify_emails: Vec::new(),
            schedule: None,
            active: true,
        };
        let lookup_def = PipelineDef::parse(&row)?;
        (registration.build)(SourceContext { pipeline: &lookup_def, connection: Some(connection), options: &options })
    }
}

impl SqlTransform {
    /// Plan the statement over `input`, with the lookups' columns (and rows,
    /// unless `schema_only`): what `runner check` and each attempt do first.
    pub(crate) async fn plan(
        &self,
        input: arrow::datatypes::SchemaRef,
        run_date: RunDate,
        schema_only: bool,
    ) -> Result<Enrich> {
        let lookups = match schema_only {
            true => Arc::new(self.read(run_date, true).await?),
            false => self.loaded(run_date).await?,
        };
        let enrich = Enrich::plan(&self.sql, input, &lookups).await?;
        if self.mirror {
            let output = enrich.output();
            for field in changes::fields() {
                let kept = output.field_with_name(field.name()).is_ok_and(|f| f.data_type() == field.data_type());
                if !kept {
                    return Err(Error::user(format!(
                        "options.transform drops the change column `{}`, which applying changes to the mirror \
                         needs: select it (`SELECT input.*, …` keeps them all), or set options.history = true to \
                         append every change instead",
                        field.name()
                    )));
                }
            }
        }
        Ok(enrich)
    }

    /// Run the statement over every batch of `stream`; positions pass through.
    pub(crate) async fn wrap(&self, stream: SourceStream, run_date: RunDate) -> Result<SourceStream> {
        let enrich = Arc::new(self.plan(stream.schema.clone(), run_date, false).await?);
        let schema = enrich.output();
        let batches = stream
            .batches
            .and_then(move |item| {
                let enrich = enrich.clone();
                async move {
                    let batch = enrich.apply(item.batch).await?;
                    Ok(SourceBatch { batch, position: item.position })
                }
            })
            .boxed();
        Ok(SourceStream { schema, batches, ..stream })
    }

    /// The lookups, read again once older than `refresh`.
    async fn loaded(&self, run_date: RunDate) -> Result<Arc<Vec<Lookup>>> {
        let mut loaded = self.loaded.lock().await;
        if let Some((at, lookups)) = loaded.as_ref()
            && at.elapsed() < self.refresh
        {
            return Ok(lookups.clone());
        }
        let lookups = Arc::new(self.read(run_date, false).await?);
        *loaded = Some((Instant::now(), lookups.clone()));
        Ok(lookups)
    }

    /// Read every lookup (only its schema, with `schema_only`).
    async fn read(&self, run_date: RunDate, schema_only: bool) -> Result<Vec<Lookup>> {
        let mut out = Vec::with_capacity(self.lookups.len());
        for l in &self.lookups {
            let request = ReadRequest {
                run_date,
                watermark_column: None,
                filter: None,
                watermark_before: None,
                group: None,
                same_order: false,
            };
            let context = |e: Error| e.context(format!("lookup `{}`", l.name));
            let stream = l.source.open(&request).await.map_err(context)?;
            let schema = stream.schema.clone();
            let batches = match schema_only {
                true => Vec::new(),
                false => stream.batches.map_ok(|b| b.batch).try_collect().await.map_err(context)?,
            };
            let lookup = Lookup { name: l.name.clone(), schema, batches };
            if !schema_only {
                info!(lookup = %l.name, rows = lookup.rows(), "lookup loaded");
            }
            out.push(lookup);
        }
        Ok(out)
    }
}
