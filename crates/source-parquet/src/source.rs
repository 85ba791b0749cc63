use futures::{StreamExt, TryStreamExt, stream};
use object_store::ObjectMeta;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use weir_core::traits::non_empty;
use weir_core::watermark::{MaxTracker, filter_batch};
use weir_core::{ConnectionUrl, Error, Position, ReadRequest, Result, Source, SourceBatch, SourceStream};

use crate::location::{Location, store_error};
use crate::reader::ObjectReader;
use crate::schema::{conform, unify};

/// How many footers are fetched at once when a run opens many files.
const FOOTER_CONCURRENCY: usize = 8;

/// `options` keys of a parquet source.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetOptions {
    /// Rows per Arrow batch (default 65536).
    pub batch_size: Option<usize>,
}

impl ParquetOptions {
    pub const KEYS: &'static [&'static str] = &["batch_size"];
    const DEFAULT_BATCH_SIZE: usize = 65_536;
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

    fn location(&self, request: &ReadRequest) -> Result<Location> {
        let path = request.run_date.render(&self.data_source)?;
        Location::resolve(self.connection.as_ref(), &path)
    }
}

#[async_trait::async_trait]
impl Source for ParquetSource {
    async fn check(&self) -> Result<()> {
        let path = weir_core::RunDate::today_utc().render(&self.data_source)?;
        let location = Location::resolve(self.connection.as_ref(), &path)?;
        location.files().await.map(|_| ())
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
        let metadata = read_footers(&location, &files).await?;
        let names: Vec<String> = files.iter().map(|f| location.describe_file(&f.location)).collect();
        let schemas: Vec<_> = metadata.iter().map(|m| m.schema().clone()).collect();
        let schema = unify(&schemas, &names)?;

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
        let batch_size = self.options.batch_size.unwrap_or(ParquetOptions::DEFAULT_BATCH_SIZE).max(1);

        let store = location.store.clone();
        let per_file = files.into_iter().zip(metadata).zip(names).map(move |((file, meta), name)| {
            let reader = ObjectReader::new(store.clone(), &file);
            let opened = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
                .with_batch_size(batch_size)
                .build()
                .map_err(|e| corrupt(&name, e));
            match opened {
                Ok(batches) => batches
                    .map_err(move |e| corrupt(&name, e))
                    .enumerate()
                    .map(move |(i, b)| b.map(|b| (if i == 0 { file.size } else { 0 }, b)))
                    .boxed(),
                Err(e) => stream::once(async { Err(e) }).boxed(),
            }
        });

        let conform_to = schema.clone();
        let mut bytes_read = 0u64;
        let batches = stream::iter(per_file)
            .flatten()
            .map(move |item| {
                let (bytes, batch) = item?;
                bytes_read += bytes;
                let mut batch = conform(batch, &conform_to)?;
                if let Some((f, col)) = &filter {
                    batch = filter_batch(&batch, col.as_str(), f)?;
                }
                if let Some(t) = tracker.as_mut() {
                    t.observe(&batch)?;
                }
                let position = Position {
                    watermark: tracker.as_ref().and_then(|t| t.value().map(str::to_owned)),
                    bytes_read,
                    ..Default::default()
                };
                Ok(SourceBatch { batch, position })
            })
            .try_filter(|b| futures::future::ready(non_empty(&b.batch)))
            .boxed();
        Ok(SourceStream::new(schema, batches))
    }
}

async fn read_footers(location: &Location, files: &[ObjectMeta]) -> Result<Vec<ArrowReaderMetadata>> {
    let reads: Vec<_> = files
        .iter()
        .map(|file| {
            let mut reader = ObjectReader::new(location.store.clone(), file);
            let name = location.describe_file(&file.location);
            async move {
                ArrowReaderMetadata::load_async(&mut reader, Default::default()).await.map_err(|e| corrupt(&name, e))
            }
        })
        .collect();
    stream::iter(reads).buffered(FOOTER_CONCURRENCY).try_collect().await
}

/// A read error names the file: a broken file is the user's to replace, a store
/// that stopped answering is retried.
fn corrupt(file: &str, e: parquet::errors::ParquetError) -> Error {
    match e {
        parquet::errors::ParquetError::External(inner) => match inner.downcast::<object_store::Error>() {
            Ok(store) => store_error(*store, &format!("reading `{file}`")),
            Err(other) => Error::transient(format!("reading `{file}`: {other}")),
        },
        other => {
            Error::user(format!("`{file}` is not a readable Parquet file ({other}); replace or remove it and re-run"))
        }
    }
}
