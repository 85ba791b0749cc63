use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use futures::{StreamExt, TryStreamExt, stream};
use weir_core::narrow::counts::TRUNCATED_NANOSECONDS;
use weir_core::traits::non_empty;
use weir_core::watermark::{MaxTracker, filter_batch};
use weir_core::{ConnectionUrl, Error, Position, ReadRequest, Result, Source, SourceBatch, SourceStream};

use crate::file::{FOOTER_ROW_COUNT_MISMATCH, ParquetFile, Reading};
use crate::location::Location;
use crate::schema::{conform, unify};

/// How many footers are fetched at once when a run opens many files.
const FOOTER_CONCURRENCY: usize = 8;

/// `options` keys of a parquet source.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetOptions {
    /// Rows per Arrow batch at most (default 65536).
    pub batch_size: Option<usize>,
    /// Bytes per Arrow batch, roughly (default 32 MiB): a row group of wide
    /// rows is read in batches of fewer rows, down to one.
    pub batch_bytes: Option<usize>,
    /// Check each page against its CRC-32 when the file has them (default true).
    pub verify_checksums: Option<bool>,
}

impl ParquetOptions {
    pub const KEYS: &'static [&'static str] = &["batch_size", "batch_bytes", "verify_checksums"];
    const DEFAULT_BATCH_SIZE: usize = 65_536;
    const DEFAULT_BATCH_BYTES: usize = 32 * 1024 * 1024;

    fn reading(&self) -> Reading {
        Reading {
            batch_rows: self.batch_size.unwrap_or(Self::DEFAULT_BATCH_SIZE).max(1),
            batch_bytes: self.batch_bytes.unwrap_or(Self::DEFAULT_BATCH_BYTES).max(1),
            verify_checksums: self.verify_checksums.unwrap_or(true),
        }
    }
}

/// Reads the Parquet files a run's `data_source` names.
pub struct ParquetSource {
    connection: Option<ConnectionUrl>,
    data_source: String,
    options: ParquetOptions,
}

impl ParquetSource {
    pub fn new(connection: Option<ConnectionUrl>, data_source: String, options: ParquetOptions) -> Self {
        Self { connection, data_source, options }
    }

    /// The one schema of a run's files.
    fn schema(&self, files: &[ParquetFile]) -> Result<SchemaRef> {
        let schemas: Vec<_> = files.iter().map(|f| f.metadata.schema().clone()).collect();
        let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
        Ok(with_json_columns(unify(&schemas, &names)?, files))
    }

    fn location(&self, request: &ReadRequest) -> Result<Location> {
        let path = request.run_date.render(&self.data_source)?;
        Location::resolve(self.connection.as_ref(), &path)
    }
}

#[async_trait::async_trait]
impl Source for ParquetSource {
    async fn check(&self) -> Result<Option<SchemaRef>> {
        let path = weir_core::RunDate::today_utc().render(&self.data_source)?;
        let location = Location::resolve(self.connection.as_ref(), &path)?;
        let files = location.files().await?;
        if files.is_empty() {
            return Ok(None);
        }
        let files = read_footers(&location, &files).await?;
        self.schema(&files).map(Some)
    }

    async fn open(&self, request: &ReadRequest) -> Result<SourceStream> {
        let location = self.location(request)?;
        let files = location.files().await?;
        if files.is_empty() {
            return Err(Error::user(format!(
                "no Parquet file matches {} for {}: check data_source, or that the files for this date have arrived",
                location.describe(),
                request.run_date
            )));
        }
        let files = read_footers(&location, &files).await?;
        let schema = self.schema(&files)?;
        let mut warnings = Vec::new();
        let mut counts = BTreeMap::new();
        for file in &files {
            if let Some(warning) = &file.warning {
                tracing::warn!(file = %file.name, "{warning}");
                warnings.push(warning.clone());
                *counts.entry(FOOTER_ROW_COUNT_MISMATCH).or_insert(0u64) += 1;
            }
        }

        let mut tracker = match &request.watermark_column {
            Some(col) => {
                let field = schema.field_with_name(col.as_str()).map_err(|_| {
                    Error::user(format!(
                        "watermark_column `{col}` is not in the Parquet data (columns: {})",
                        schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                    ))
                })?;
                Some(MaxTracker::new(col.as_str(), field.data_type(), request.watermark_before.as_deref())?)
            }
            None => None,
        };
        let filter = request.filter.clone().zip(request.watermark_column.clone());
        let reading = self.options.reading();
        let store = location.store.clone();
        let per_file = files.into_iter().map(move |file| {
            let size = file.size;
            file.batches(store.clone(), reading)
                .enumerate()
                .map(move |(i, b)| b.map(|b| (if i == 0 { size } else { 0 }, b)))
        });

        let conform_to = schema.clone();
        let mut bytes_read = 0u64;
        let batches = stream::iter(per_file)
            .flatten()
            .map(move |item| {
                let (bytes, (batch, int96_lost)) = item?;
                bytes_read += bytes;
                let (mut batch, lost) = conform(batch, &conform_to)?;
                if lost + int96_lost > 0 {
                    *counts.entry(TRUNCATED_NANOSECONDS).or_insert(0) += lost + int96_lost;
                }
                if let Some((f, col)) = &filter {
                    batch = filter_batch(&batch, col.as_str(), f)?;
                }
                if let Some(t) = tracker.as_mut() {
                    t.observe(&batch)?;
                }
                let position = Position {
                    watermark: tracker.as_ref().and_then(|t| t.value().map(str::to_owned)),
                    bytes_read,
                    counts: counts.clone(),
                };
                Ok(SourceBatch { batch, position })
            })
            .try_filter(|b| futures::future::ready(non_empty(&b.batch)))
            .boxed();
        Ok(SourceStream { schema, batches, warnings, primary_key: Vec::new() })
    }
}

/// Mark the columns some file annotates as JSON, so that sinks load them as JSON.
fn with_json_columns(schema: SchemaRef, files: &[ParquetFile]) -> SchemaRef {
    let json: BTreeSet<&str> = files.iter().flat_map(ParquetFile::json_columns).collect();
    if json.is_empty() {
        return schema;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match json.contains(f.name().as_str()) && f.data_type() == &DataType::Utf8 {
            true => weir_core::json::json_field(f.as_ref().clone()),
            false => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

async fn read_footers(location: &Location, files: &[object_store::ObjectMeta]) -> Result<Vec<ParquetFile>> {
    let reads: Vec<_> = files.iter().map(|file| ParquetFile::open(location, file)).collect();
    stream::iter(reads).buffered(FOOTER_CONCURRENCY).try_collect().await
}
