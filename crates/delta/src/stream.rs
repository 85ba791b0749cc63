//! A source stream as DataFusion input: delta-rs writes and merges read a
//! DataFusion plan, so the source's batches reach it through a one-shot
//! [`PartitionStream`] that conforms each batch to the write's schema and keeps
//! the position reached. Nothing is buffered here: a batch goes to the Parquet
//! writer as it arrives.

use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, Date32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use weir_core::{Error, Position, SourceStream};

use crate::types::conform;

/// The name of the column that records which run date loaded a row.
pub const RUN_DATE_COLUMN: &str = "_weir_run_date";

/// The arrival order of rows in a MERGE's source, to pick the latest per key.
pub const SEQ_COLUMN: &str = "_weir_seq";

/// What the stream saw, read by the sink once the write is done.
#[derive(Debug, Default)]
pub struct Progress {
    pub position: Position,
    pub rows_read: u64,
    /// Values whose nanoseconds were dropped (Delta keeps microseconds).
    pub truncated_nanoseconds: u64,
    /// The first error the source or a conversion raised: it, not DataFusion's
    /// wrapping of it, is what the load reports.
    pub error: Option<Error>,
}

pub type SharedProgress = Arc<Mutex<Progress>>;

/// Runs once the source is exhausted, before the stream ends (and so before
/// delta-rs commits): the sink writes its commit marker here.
pub type OnEnd = Box<dyn FnOnce(Position, u64) -> BoxFuture<'static, weir_core::Result<()>> + Send>;

/// The source as one DataFusion partition, readable once.
pub struct OnceStream {
    schema: SchemaRef,
    inner: Mutex<Option<BoxStream<'static, datafusion::error::Result<RecordBatch>>>>,
}

impl std::fmt::Debug for OnceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnceStream").field("schema", &self.schema).finish_non_exhaustive()
    }
}

impl OnceStream {
    /// `run_date`: add the [`RUN_DATE_COLUMN`] with this value (days since the
    /// epoch). `with_seq`: add a `_weir_seq` column numbering the rows in arrival order.
    pub fn new(
        input: SourceStream,
        schema: SchemaRef,
        run_date: Option<i32>,
        progress: SharedProgress,
        on_end: OnEnd,
        with_seq: bool,
    ) -> Self {
        let target = schema.clone();
        let seen = progress.clone();
        let mut next_seq = 0i64;
        let batches = input.batches.map(move |item| {
            let mut p = seen.lock().unwrap_or_else(|e| e.into_inner());
            let converted = item.and_then(|sb| {
                p.position = sb.position;
                p.rows_read += sb.batch.num_rows() as u64;
                let batch = match run_date {
                    Some(days) => with_run_date(&sb.batch, days)?,
                    None => sb.batch,
                };
                let batch = conform(&batch, &target, &mut p.truncated_nanoseconds)?;
                if !with_seq {
                    return Ok(batch);
                }
                let n = batch.num_rows() as i64;
                let seq = Int64Array::from_iter_values(next_seq..next_seq + n);
                next_seq += n;
                with_column(&batch, seq_field(), Arc::new(seq))
            });
            converted.map_err(|e| {
                let wrapped = DataFusionError::External(Box::new(e.clone()));
                p.error.get_or_insert(e);
                wrapped
            })
        });
        let tail = {
            let ending = progress.clone();
            futures::stream::once(async move {
                let (position, rows) = {
                    let p = ending.lock().unwrap_or_else(|e| e.into_inner());
                    (p.position.clone(), p.rows_read)
                };
                on_end(position, rows).await
            })
            .try_filter_map(|()| async { Ok(None) })
            .map_err(move |e: Error| {
                let wrapped = DataFusionError::External(Box::new(e.clone()));
                progress.lock().unwrap_or_else(|e| e.into_inner()).error.get_or_insert(e);
                wrapped
            })
        };
        let schema = match with_seq {
            false => schema,
            true => Arc::new(with_field(&schema, seq_field())),
        };
        Self { schema, inner: Mutex::new(Some(batches.chain(tail).boxed())) }
    }
}

impl PartitionStream for OnceStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        let stream = match taken {
            Some(s) => s,
            None => futures::stream::once(async {
                Err(DataFusionError::Internal("a Weir source stream can be read only once".into()))
            })
            .boxed(),
        };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

fn seq_field() -> Field {
    Field::new(SEQ_COLUMN, DataType::Int64, false)
}

/// The [`RUN_DATE_COLUMN`] a date-sliced load adds to every row.
pub fn run_date_field() -> Field {
    Field::new(RUN_DATE_COLUMN, DataType::Date32, true)
}

fn with_run_date(batch: &RecordBatch, days: i32) -> weir_core::Result<RecordBatch> {
    with_column(batch, run_date_field(), Arc::new(Date32Array::from(vec![days; batch.num_rows()])))
}

/// `schema` with `field` last (replacing a field of that name).
pub fn with_field(schema: &Schema, field: Field) -> Schema {
    let mut fields: Vec<_> = schema.fields().iter().filter(|f| f.name() != field.name()).cloned().collect();
    fields.push(Arc::new(field));
    Schema::new(fields)
}

/// `batch` with `column` as `field`, last (replacing a column of that name).
fn with_column(batch: &RecordBatch, field: Field, column: ArrayRef) -> weir_core::Result<RecordBatch> {
    let name = field.name().clone();
    let mut columns = batch.columns().to_vec();
    if let Ok(i) = batch.schema().index_of(&name) {
        columns.remove(i);
    }
    columns.push(column);
    RecordBatch::try_new(Arc::new(with_field(&batch.schema(), field)), columns)
        .map_err(|e| Error::internal(format!("adding {name}: {e}")))
}
