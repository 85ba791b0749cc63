//! Parquet's async reader over an object store.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::checksum::{ChecksumMismatch, verify_chunk};

/// Footers are usually small: fetch the last 64 KiB in one request.
const FOOTER_PREFETCH: usize = 64 * 1024;

/// Reads one Parquet file of a known size with ranged GETs.
#[derive(Clone, Debug)]
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    /// Column chunks whose pages are checked against their checksums when
    /// fetched whole: byte range → (row group, column path).
    verify: Option<Arc<Chunks>>,
}

/// Column chunks by byte range: (row group, column path).
type Chunks = HashMap<Range<u64>, (usize, String)>;

impl ObjectReader {
    pub fn new(store: Arc<dyn ObjectStore>, file: &ObjectMeta) -> Self {
        Self { store, path: file.location.clone(), size: file.size, verify: None }
    }

    /// Verify page checksums (where the file has them) of every column chunk read.
    pub fn verifying(mut self, metadata: &ParquetMetaData) -> Self {
        let mut chunks = HashMap::new();
        for (i, rg) in metadata.row_groups().iter().enumerate() {
            for column in rg.columns() {
                let (start, len) = column.byte_range();
                chunks.insert(start..start + len, (i, column.column_path().string()));
            }
        }
        self.verify = Some(Arc::new(chunks));
        self
    }
}

/// A column chunk whose page failed its checksum, and where it is.
#[derive(Debug)]
pub struct CorruptChunk {
    pub row_group: usize,
    pub column: String,
    pub mismatch: ChecksumMismatch,
}

impl std::fmt::Display for CorruptChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column `{}` in row group {}: {}", self.column, self.row_group, self.mismatch)
    }
}

impl std::error::Error for CorruptChunk {}

/// Keep the object store error inside, so a caller can tell a broken file from a broken store.
fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        async move { self.store.get_range(&self.path, range).await.map_err(external) }.boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        async move {
            let fetched = self.store.get_ranges(&self.path, &ranges).await.map_err(external)?;
            if let Some(chunks) = &self.verify {
                for (range, bytes) in ranges.iter().zip(&fetched) {
                    if let Some((row_group, column)) = chunks.get(range) {
                        verify_chunk(bytes, range.start).map_err(|mismatch| {
                            ParquetError::External(Box::new(CorruptChunk {
                                row_group: *row_group,
                                column: column.clone(),
                                mismatch,
                            }))
                        })?;
                    }
                }
            }
            Ok(fetched)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
