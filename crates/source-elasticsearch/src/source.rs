use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use futures::StreamExt;
use serde_json::{Value, json};
use tracing::{info, warn};
use weir_core::watermark::{MaxTracker, parse_as};
use weir_core::{
    ConnectionUrl, Error, Position, ReadRequest, Result, RunDate, Source, SourceBatch, SourceStream, WatermarkFilter,
};

use crate::client::Client;
use crate::decode::{Decoder, OnBadValue};
use crate::mapping::{Field, Kind, as_arrays, merge, parse_mappings, select};
use crate::read::{Export, Mode, start};

/// `options` keys of an elasticsearch source.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EsOptions {
    /// A query DSL object; only matching documents are read.
    pub query: Option<Value>,
    /// Limit a run to `--date`'s day of this `date` field.
    pub date_field: Option<String>,
    /// Read only these fields (`name`, `address.*`).
    pub fields: Option<Vec<String>>,
    /// Do not read these fields.
    pub exclude_fields: Option<Vec<String>>,
    /// Documents per page and per Arrow batch (default 5000, at most 10000).
    pub page_size: Option<usize>,
    /// Slices read at once (default: the primary shard count, at most 8).
    pub slices: Option<usize>,
    /// How long the point in time (or scroll) lives between pages (default `5m`).
    pub keep_alive: Option<String>,
    /// Fields that hold arrays, loaded as lists.
    pub array_fields: Option<Vec<String>>,
    /// `fail` (default), `null` or `reject`.
    pub on_bad_value: Option<OnBadValue>,
    /// Add an `_index` column.
    pub include_index: Option<bool>,
    /// `pit` or `scroll`; by default point in time where the server has it.
    pub export: Option<Mode>,
}

impl EsOptions {
    pub const KEYS: &'static [&'static str] = &[
        "query",
        "date_field",
        "fields",
        "exclude_fields",
        "page_size",
        "slices",
        "keep_alive",
        "array_fields",
        "on_bad_value",
        "include_index",
        "export",
    ];
    const DEFAULT_PAGE_SIZE: usize = 5000;
    /// `index.max_result_window`'s default.
    const MAX_PAGE_SIZE: usize = 10_000;
    const MAX_DEFAULT_SLICES: usize = 8;
    /// `index.max_slices_per_scroll`'s default.
    const MAX_SLICES: usize = 1024;
}

/// What the controller row asks of the source, checked when it is built.
#[derive(Debug, Clone)]
pub struct EsConfig {
    /// The index, alias or pattern (date templates allowed).
    pub target: String,
    pub primary_key: Vec<String>,
    pub watermark_column: Option<String>,
    pub options: EsOptions,
}

/// Reads an Elasticsearch (or OpenSearch) index, alias or pattern.
pub struct EsSource {
    client: Client,
    config: EsConfig,
}

/// An index expression's mapped fields, as this pipeline reads them.
struct Resolved {
    target: String,
    fields: Vec<Field>,
    warnings: Vec<String>,
}

impl EsSource {
    pub fn new(connection: &ConnectionUrl, config: EsConfig) -> Result<Self> {
        Ok(Self { client: Client::new(connection)?, config })
    }

    fn display(target: &str) -> String {
        format!("index `{target}`")
    }

    /// The server's mode: point in time from Elasticsearch 7.10; scroll before, and on OpenSearch.
    async fn mode(&self) -> Result<Mode> {
        let info = self.client.get("").await.map_err(|e| e.into_error("connecting to Elasticsearch"))?;
        let version = &info["version"];
        let number = version["number"].as_str().unwrap_or("0.0");
        let mut parts = number.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        let opensearch = version["distribution"].as_str() == Some("opensearch");
        let auto = if !opensearch && (major, minor) >= (7, 10) { Mode::Pit } else { Mode::Scroll };
        match self.config.options.export {
            Some(Mode::Pit) if auto == Mode::Scroll => Err(Error::user(format!(
                "options.export = 'pit' needs Elasticsearch 7.10 or later; the server is {} {number}",
                if opensearch { "OpenSearch" } else { "Elasticsearch" }
            ))),
            Some(forced) => Ok(forced),
            None => Ok(auto),
        }
    }

    /// The mapping of every index `run_date`'s target names, merged, and the
    /// fields this pipeline reads.
    async fn resolve(&self, run_date: RunDate) -> Result<Resolved> {
        let target = run_date.render(&self.config.target)?;
        let display = Self::display(&target);
        let path = format!("{}/_mapping", encode(&target));
        let answer =
            self.client.get(&path).await.map_err(|e| e.into_error(&format!("reading the mapping of {display}")))?;
        let mut warnings = Vec::new();
        let per_index: Vec<(String, Vec<Field>)> = answer
            .as_object()
            .into_iter()
            .flatten()
            .map(|(index, m)| (index.clone(), parse_mappings(&m["mappings"], &mut warnings)))
            .collect();
        if per_index.is_empty() {
            return Err(Error::user(format!(
                "source_table `{target}` matches no index; check the pattern (and the date template)"
            )));
        }
        let options = &self.config.options;
        let fields = merge(per_index)?;
        let fields = select(
            fields,
            options.fields.as_deref().unwrap_or_default(),
            options.exclude_fields.as_deref().unwrap_or_default(),
            "",
        );
        let mut fields = fields;
        as_arrays(&mut fields, options.array_fields.as_deref().unwrap_or_default())?;
        let resolved = Resolved { target, fields, warnings };
        self.validate(&resolved)?;
        Ok(resolved)
    }

    fn validate(&self, r: &Resolved) -> Result<()> {
        let top = |name: &str| r.fields.iter().find(|f| f.name == name);
        let known = || {
            let mut names = vec!["_id".to_owned()];
            names.extend(r.fields.iter().map(|f| f.name.clone()));
            names.join(", ")
        };
        let display = Self::display(&r.target);
        for key in &self.config.primary_key {
            if key != "_id" && key != "_index" && top(key).is_none_or(|f| !is_scalar(&f.kind)) {
                return Err(Error::user(format!(
                    "primary_key `{key}` is not a top-level scalar field of {display} (fields: {})",
                    known()
                )));
            }
        }
        if let Some(wm) = &self.config.watermark_column {
            match top(wm) {
                Some(f)
                    if matches!(
                        f.kind,
                        Kind::Date { .. }
                            | Kind::Int8
                            | Kind::Int16
                            | Kind::Int32
                            | Kind::Int64
                            | Kind::UInt64
                            | Kind::Float32
                            | Kind::Float64
                    ) || f.es_type == "keyword" => {}
                Some(f) => {
                    return Err(Error::user(format!(
                        "watermark_column `{wm}` of {display} is `{}`; use a date, numeric or keyword field",
                        f.es_type
                    )));
                }
                None => {
                    return Err(Error::user(format!(
                        "watermark_column `{wm}` is not a field of {display} (fields: {})",
                        known()
                    )));
                }
            }
        }
        if let Some(df) = &self.config.options.date_field
            && !top(df).is_some_and(|f| matches!(f.kind, Kind::Date { .. }))
        {
            return Err(Error::user(format!(
                "options.date_field `{df}` is not a top-level date field of {display} (fields: {})",
                known()
            )));
        }
        Ok(())
    }

    /// The primary shard count of the target, for the default slices.
    async fn shards(&self, target: &str) -> Result<usize> {
        let path = format!("{}/_settings/index.number_of_shards", encode(target));
        let answer = self
            .client
            .get(&path)
            .await
            .map_err(|e| e.into_error(&format!("reading the settings of {}", Self::display(target))))?;
        let shards = answer
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, s)| {
                let n = &s["settings"]["index"]["number_of_shards"];
                n.as_u64().or_else(|| n.as_str().and_then(|s| s.parse().ok()))
            })
            .sum::<u64>();
        Ok(shards.max(1) as usize)
    }

    /// The query every page asks: the user's, the run's day, the watermark.
    fn query(&self, request: &ReadRequest, fields: &[Field]) -> Result<Value> {
        let mut filters = Vec::new();
        if let Some(q) = &self.config.options.query {
            filters.push(q.clone());
        }
        if let Some(df) = &self.config.options.date_field {
            let day = request.run_date.date();
            let next = day.succ_opt().unwrap_or(day);
            filters.push(json!({"range": {df: {
                "gte": format!("{}T00:00:00Z", day.format("%Y-%m-%d")),
                "lt": format!("{}T00:00:00Z", next.format("%Y-%m-%d")),
                "format": "strict_date_optional_time",
            }}}));
        }
        if let (Some(filter), Some(wm)) = (&request.filter, &request.watermark_column) {
            let field = fields.iter().find(|f| f.name == wm.as_str());
            filters.push(watermark_range(wm.as_str(), field.map(|f| &f.kind), filter)?);
        }
        Ok(match filters.len() {
            0 => json!({"match_all": {}}),
            1 => filters.remove(0),
            _ => json!({"bool": {"filter": filters}}),
        })
    }

    /// `_source` filtering for `fields`/`exclude_fields`: fewer bytes on the wire.
    fn source_filter(&self) -> Option<Value> {
        let o = &self.config.options;
        let mut f = serde_json::Map::new();
        if let Some(inc) = o.fields.as_ref().filter(|v| !v.is_empty()) {
            let mut inc = inc.clone();
            // The key and watermark must come along.
            inc.extend(self.config.primary_key.iter().filter(|k| !k.starts_with('_')).cloned());
            inc.extend(self.config.watermark_column.clone());
            inc.extend(o.date_field.clone());
            f.insert("includes".into(), json!(inc));
        }
        if let Some(exc) = o.exclude_fields.as_ref().filter(|v| !v.is_empty()) {
            f.insert("excludes".into(), json!(exc));
        }
        (!f.is_empty()).then_some(Value::Object(f))
    }
}

fn is_scalar(kind: &Kind) -> bool {
    !matches!(kind, Kind::Object(_) | Kind::Nested(_) | Kind::List(_) | Kind::GeoPoint | Kind::Json)
}

/// An index expression as a URL path segment (`,` and `*` stay as they are).
fn encode(target: &str) -> String {
    target
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b',' | b'*' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `{"range": {wm: {"gt"|"gte": v, "format": …}}}` for the stored watermark.
fn watermark_range(column: &str, kind: Option<&Kind>, filter: &WatermarkFilter) -> Result<Value> {
    let op = if filter.inclusive { "gte" } else { "gt" };
    let mut spec = serde_json::Map::new();
    match kind {
        Some(Kind::Date { nanos, .. }) => {
            let ty = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
            let value = parse_as(&filter.value, &ty, column)?;
            let micros =
                arrow::array::AsArray::as_primitive::<arrow::datatypes::TimestampMicrosecondType>(&value).value(0);
            if *nanos {
                let t = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
                spec.insert(op.into(), json!(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()));
                spec.insert("format".into(), json!("strict_date_optional_time_nanos"));
            } else {
                spec.insert(op.into(), json!(micros.div_euclid(1000)));
                spec.insert("format".into(), json!("epoch_millis"));
            }
        }
        Some(Kind::Text) | None => {
            spec.insert(op.into(), json!(filter.value));
        }
        Some(_) => {
            let number: Value = serde_json::from_str(&filter.value).map_err(|_| {
                Error::user(format!("stored watermark `{}` of `{column}` is not a number", filter.value))
            })?;
            spec.insert(op.into(), number);
        }
    }
    Ok(json!({"range": {column: spec}}))
}

#[async_trait::async_trait]
impl Source for EsSource {
    async fn check(&self) -> Result<Option<SchemaRef>> {
        self.mode().await?;
        let resolved = self.resolve(RunDate::today_utc()).await?;
        let body = json!({"size": 0, "query": {"match_all": {}}});
        let path = format!("{}/_search", encode(&resolved.target));
        self.client
            .json(reqwest::Method::POST, &path, Some(&body))
            .await
            .map_err(|e| e.into_error(&format!("searching {}", Self::display(&resolved.target))))?;
        let include_index = self.config.options.include_index.unwrap_or(false);
        Ok(Some(Arc::new(Decoder::schema_for(&resolved.fields, include_index))))
    }

    async fn open(&self, request: &ReadRequest) -> Result<SourceStream> {
        let mode = self.mode().await?;
        let Resolved { target, fields, warnings } = self.resolve(request.run_date).await?;
        let options = &self.config.options;
        let label = Self::display(&target);
        let slices = match options.slices {
            Some(n) => n.clamp(1, EsOptions::MAX_SLICES),
            None => self.shards(&target).await?.min(EsOptions::MAX_DEFAULT_SLICES),
        };
        let page_size = options.page_size.unwrap_or(EsOptions::DEFAULT_PAGE_SIZE).clamp(1, EsOptions::MAX_PAGE_SIZE);
        let query = self.query(request, &fields)?;
        let count_body = json!({"query": query});
        let expected = self
            .client
            .json(reqwest::Method::POST, &format!("{}/_count", encode(&target)), Some(&count_body))
            .await
            .map_err(|e| e.into_error(&format!("counting {label}")))?;
        info!(
            source = %label,
            mode = ?mode,
            slices,
            documents = expected["count"].as_u64().unwrap_or(0),
            "reading Elasticsearch"
        );

        let include_index = options.include_index.unwrap_or(false);
        let schema = Arc::new(Decoder::schema_for(&fields, include_index));
        let decoder =
            Arc::new(Decoder::new(schema.clone(), fields, include_index, options.on_bad_value.unwrap_or_default()));
        let mut body = json!({"size": page_size, "query": query, "track_total_hits": false});
        if let Some(source) = self.source_filter() {
            body["_source"] = source;
        }
        let export = Export {
            client: self.client.clone(),
            target: encode(&target),
            display: label.clone(),
            body,
            slices,
            keep_alive: options.keep_alive.clone().unwrap_or_else(|| "5m".into()),
            mode,
            decoder,
        };
        let (pages, unmapped) = start(export).await?;

        let mut tracker = match &request.watermark_column {
            Some(wm) => {
                let ty = schema.field_with_name(wm.as_str()).map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
                Some(MaxTracker::new(wm.as_str(), &ty, request.watermark_before.as_deref())?)
            }
            None => None,
        };
        let mut position = Position { watermark: request.watermark_before.clone(), ..Default::default() };
        let batches = pages
            .map(move |page| -> Option<Result<SourceBatch>> {
                Some((|| {
                let page = page?;
                let d = page.decoded;
                if let Some(t) = tracker.as_mut() {
                    t.observe(&d.batch)?;
                    position.watermark = t.value().map(str::to_owned);
                }
                position.bytes_read += page.bytes;
                for (key, n) in [("bad_values", d.bad_values), ("rejected_docs", d.rejected), ("unmapped_fields", d.unmapped)] {
                    if n > 0 {
                        *position.counts.entry(key).or_default() += n;
                    }
                }
                Ok(SourceBatch { batch: d.batch, position: position.clone() })
                })())
            })
            .chain(futures::stream::once(async move {
                let names = std::mem::take(&mut *unmapped.lock().unwrap_or_else(|e| e.into_inner()));
                if !names.is_empty() {
                    warn!(
                        source = %label,
                        fields = %names.into_iter().collect::<Vec<_>>().join(", "),
                        "documents hold fields the mapping does not have; they were not loaded (counted in audit.details.unmapped_fields)"
                    );
                }
                None
            }))
            .filter_map(|item| async move { item })
            .boxed();
        Ok(SourceStream { schema, batches, warnings, primary_key: Vec::new() })
    }

    fn reads_by_date(&self) -> bool {
        self.config.options.date_field.is_some()
    }
}
