//! One Parquet file of a run: its footer, checked before any row is read, and
//! its row groups as Arrow batches.
//!
//! What is checked, because writers get it wrong and readers then differ:
//! - the footer's row count against its row groups': a footer that disagrees
//!   is read by its row groups (as pyarrow does), counted and warned about; a
//!   row group whose column chunks hold another number of rows than it says
//!   fails naming the file;
//! - INT96 timestamps (Spark, Impala) are read in microseconds, not in
//!   nanoseconds, whose range ends in 2262; a value past what microseconds
//!   hold fails naming the column and the file;
//! - page checksums, where the file has them (`options.verify_checksums`).
//!
//! Batches are bounded by bytes as well as rows: each row group is read in
//! batches of as many rows as fit `batch_bytes` at its average row size.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, FieldRef, Schema, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::{ObjectMeta, ObjectStore};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::basic::{LogicalType, Type as PhysicalType};
use parquet::errors::ParquetError;
use parquet::file::metadata::{FileMetaData, ParquetMetaData};
use weir_core::{Error, Result};

use crate::location::{Location, store_error};
use crate::reader::{CorruptChunk, ObjectReader};

/// `audit.details` key: files whose footer row count disagreed with their row groups.
pub const FOOTER_ROW_COUNT_MISMATCH: &str = "footer_row_count_mismatch";

/// How batches are cut.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub batch_rows: usize,
    pub batch_bytes: usize,
    pub verify_checksums: bool,
}

pub struct ParquetFile {
    /// The file's full name, for messages.
    pub name: String,
    pub object: ObjectMeta,
    pub size: u64,
    /// The footer, with INT96 columns read as microseconds.
    pub metadata: ArrowReaderMetadata,
    /// For files with INT96 columns: how to check what microseconds lost.
    int96: Option<Int96>,
    /// The footer's row count disagreed with the row groups'.
    pub warning: Option<String>,
}

/// INT96 columns read twice more to check the microsecond reading: in
/// milliseconds, which no INT96 value overflows (a microsecond value that
/// wrapped around differs from it), and in nanoseconds, whose digits below a
/// microsecond survive even when the nanosecond value wrapped around (they are
/// its difference from the microseconds, modulo 2^64).
struct Int96 {
    millis: ArrowReaderMetadata,
    nanos: ArrowReaderMetadata,
    /// The INT96 leaves, by parquet column index.
    leaves: BTreeSet<usize>,
    /// The top-level columns holding them: read whole (a map is read only
    /// with both its keys and its values).
    roots: BTreeSet<usize>,
    /// The leaves of those columns, in order: what the two other readings hold.
    read: Vec<usize>,
}

/// A batch, and how many of its values lost digits below a microsecond.
pub type Batch = (RecordBatch, u64);

impl ParquetFile {
    pub async fn open(location: &Location, object: &ObjectMeta) -> Result<Self> {
        let name = location.describe_file(&object.location);
        let mut reader = ObjectReader::new(location.store.clone(), object);
        let plain = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
            .await
            .map_err(|e| read_error(&name, e))?;
        let (metadata, warning) = check_row_counts(plain.metadata(), &name)?;
        let leaves: Vec<usize> = metadata
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.physical_type() == PhysicalType::INT96)
            .map(|(i, _)| i)
            .collect();
        let with_hint = |unit: TimeUnit| {
            let leaves: BTreeSet<usize> = leaves.iter().copied().collect();
            let schema = hint_int96(plain.schema(), &leaves, unit);
            ArrowReaderMetadata::try_new(metadata.clone(), ArrowReaderOptions::new().with_schema(Arc::new(schema)))
                .map_err(|e| read_error(&name, e))
        };
        let (metadata, int96) = if leaves.is_empty() {
            (ArrowReaderMetadata::try_new(metadata, ArrowReaderOptions::new()).map_err(|e| read_error(&name, e))?, None)
        } else {
            let descr = metadata.file_metadata().schema_descr();
            let roots: BTreeSet<usize> = leaves.iter().map(|&l| descr.get_column_root_idx(l)).collect();
            let read = (0..descr.num_columns()).filter(|&c| roots.contains(&descr.get_column_root_idx(c))).collect();
            let checks = Int96 {
                millis: with_hint(TimeUnit::Millisecond)?,
                nanos: with_hint(TimeUnit::Nanosecond)?,
                leaves: leaves.iter().copied().collect(),
                roots,
                read,
            };
            (with_hint(TimeUnit::Microsecond)?, Some(checks))
        };
        Ok(Self { name, object: object.clone(), size: object.size, metadata, int96, warning })
    }

    /// Top-level columns annotated as JSON text (the `JSON` logical type).
    pub fn json_columns(&self) -> impl Iterator<Item = &str> {
        let root = self.metadata.parquet_schema().root_schema();
        root.get_fields()
            .iter()
            .filter(|f| f.is_primitive() && matches!(f.get_basic_info().logical_type_ref(), Some(LogicalType::Json)))
            .map(|f| f.name())
    }

    /// The file's rows, row group by row group. A row group that yields another
    /// number of rows than its metadata says fails the read: never less than the file holds.
    pub fn batches(self, store: Arc<dyn ObjectStore>, reading: Reading) -> BoxStream<'static, Result<Batch>> {
        let file = Arc::new(self);
        let mut reader = ObjectReader::new(store, &file.object);
        if reading.verify_checksums {
            reader = reader.verifying(file.metadata.metadata());
        }
        let row_groups = file.metadata.metadata().num_row_groups();
        stream::iter(0..row_groups)
            .map(move |rg| match file.row_group(&reader, rg, reading) {
                Ok(batches) => {
                    let expected = file.metadata.metadata().row_group(rg).num_rows();
                    let name = file.name.clone();
                    let read = Arc::new(AtomicI64::new(0));
                    let tally = read.clone();
                    let tail = stream::once(async move {
                        let got = read.load(Ordering::Relaxed);
                        match got == expected {
                            true => Ok(None),
                            false => Err(Error::user(format!(
                                "`{name}`: row group {rg} says it holds {expected} rows, but {got} were read from \
                                 it; the file is damaged or its writer is broken. Rewrite or remove it"
                            ))),
                        }
                    })
                    .try_filter_map(|batch: Option<Batch>| futures::future::ready(Ok(batch)));
                    batches
                        .inspect_ok(move |(b, _)| {
                            tally.fetch_add(b.num_rows() as i64, Ordering::Relaxed);
                        })
                        .chain(tail)
                        .boxed()
                }
                Err(e) => stream::once(async { Err(e) }).boxed(),
            })
            .flatten()
            .boxed()
    }

    fn row_group(
        self: &Arc<Self>,
        reader: &ObjectReader,
        rg: usize,
        reading: Reading,
    ) -> Result<BoxStream<'static, Result<Batch>>> {
        let rows = batch_rows(self.metadata.metadata(), rg, reading);
        let read = |metadata: &ArrowReaderMetadata, mask: Option<ProjectionMask>| {
            let name = self.name.clone();
            let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader.clone(), metadata.clone())
                .with_row_groups(vec![rg])
                .with_batch_size(rows);
            if let Some(mask) = mask {
                builder = builder.with_projection(mask);
            }
            let stream = builder.build().map_err(|e| read_error(&name, e))?;
            Ok::<_, Error>(stream.map_err(move |e| read_error(&name, e)))
        };
        let batches = read(&self.metadata, None)?;
        let Some(int96) = &self.int96 else { return Ok(batches.map_ok(|b| (b, 0)).boxed()) };
        let mask = || Some(ProjectionMask::roots(int96.millis.parquet_schema(), int96.roots.iter().copied()));
        let (millis, nanos) = (read(&int96.millis, mask())?, read(&int96.nanos, mask())?);
        let file = self.clone();
        Ok(batches
            .zip(millis.zip(nanos))
            .map(move |(batch, (millis, nanos))| {
                let batch = batch?;
                let lost = file.check_int96(&batch, &millis?, &nanos?)?;
                Ok((batch, lost))
            })
            .boxed())
    }

    /// Check the INT96 values read in microseconds against the other two
    /// readings: fail if one wrapped around, and count those that had digits
    /// below a microsecond (dropped: the reader rounds them down).
    fn check_int96(&self, batch: &RecordBatch, millis: &RecordBatch, nanos: &RecordBatch) -> Result<u64> {
        let Some(int96) = &self.int96 else { return Ok(0) };
        let leaves = |batch: &RecordBatch| {
            let mut out = Vec::new();
            batch.columns().iter().for_each(|c| collect_leaves(c, &mut out));
            out
        };
        let (all, millis, nanos) = (leaves(batch), leaves(millis), leaves(nanos));
        let misread =
            || Error::internal(format!("`{}`: the three readings of its INT96 columns do not line up", self.name));
        if millis.len() != int96.read.len() || nanos.len() != int96.read.len() {
            return Err(misread());
        }
        let columns = self.metadata.parquet_schema().columns();
        let mut lost = 0;
        for ((leaf, ms), ns) in int96.read.iter().zip(millis).zip(nanos) {
            if !int96.leaves.contains(leaf) {
                continue;
            }
            let us = all.get(*leaf).ok_or_else(misread)?;
            let (Some(us), Some(ms), Some(ns)) = (
                us.as_primitive_opt::<TimestampMicrosecondType>(),
                ms.as_primitive_opt::<TimestampMillisecondType>(),
                ns.as_primitive_opt::<TimestampNanosecondType>(),
            ) else {
                return Err(misread());
            };
            if us.len() != ms.len() || us.len() != ns.len() {
                return Err(misread());
            }
            for i in (0..us.len()).filter(|&i| us.is_valid(i)) {
                let (u, m, n) = (us.value(i), ms.value(i), ns.value(i));
                if (i128::from(u) - i128::from(m) * 1000).abs() >= 1000 {
                    let years = m / 31_556_952_000 + 1970;
                    return Err(Error::user(format!(
                        "column `{}` in `{}`: an INT96 timestamp (around the year {years}) is beyond what \
                         microseconds hold (years -290308 to 294247), so neither PostgreSQL nor Delta can store it; \
                         fix the file, or leave the column out",
                        columns[*leaf].path().string(),
                        self.name
                    )));
                }
                if n.wrapping_sub(u.wrapping_mul(1000)) != 0 {
                    lost += 1;
                }
            }
        }
        Ok(lost)
    }
}

/// Rows per batch for a row group: `batch_rows`, fewer if its rows are wide.
fn batch_rows(metadata: &ParquetMetaData, rg: usize, reading: Reading) -> usize {
    let group = metadata.row_group(rg);
    let rows = usize::try_from(group.num_rows()).unwrap_or(0).max(1);
    let bytes = match group.total_byte_size() {
        n if n > 0 => n,
        _ => group.columns().iter().map(|c| c.uncompressed_size()).sum(),
    };
    let per_row = (usize::try_from(bytes).unwrap_or(0) / rows).max(1);
    (reading.batch_bytes / per_row).clamp(1, reading.batch_rows)
}

/// Footers that contradict themselves. Each row group's flat columns must hold
/// as many values as it has rows; the file's row count must be their sum, or
/// the file is read by its row groups and a warning says so.
fn check_row_counts(metadata: &Arc<ParquetMetaData>, name: &str) -> Result<(Arc<ParquetMetaData>, Option<String>)> {
    let schema = metadata.file_metadata().schema_descr();
    for (i, rg) in metadata.row_groups().iter().enumerate() {
        for (column, chunk) in schema.columns().iter().zip(rg.columns()) {
            if column.max_rep_level() == 0 && chunk.num_values() != rg.num_rows() {
                return Err(Error::user(format!(
                    "`{name}` is not a valid Parquet file: row group {i} says it has {} rows but its column `{}` \
                     holds {} values; the file's metadata contradicts itself, so it cannot be read safely. \
                     Rewrite the file with its writer, or remove it",
                    rg.num_rows(),
                    column.path().string(),
                    chunk.num_values()
                )));
            }
        }
    }
    let in_groups: i64 = metadata.row_groups().iter().map(|rg| rg.num_rows()).sum();
    let footer = metadata.file_metadata().num_rows();
    if footer == in_groups {
        return Ok((metadata.clone(), None));
    }
    let warning = format!(
        "`{name}`: the footer says {footer} rows but the row groups hold {in_groups}; read the {in_groups} rows \
         of the row groups (as pyarrow does). The file's writer has a bug worth reporting"
    );
    let f = metadata.file_metadata();
    let fixed = FileMetaData::new(
        f.version(),
        in_groups,
        f.created_by().map(str::to_owned),
        f.key_value_metadata().cloned(),
        f.schema_descr_ptr(),
        f.column_orders().cloned(),
    );
    Ok((Arc::new(ParquetMetaData::new(fixed, metadata.row_groups().to_vec())), Some(warning)))
}

/// `schema` with the Arrow fields of the INT96 leaves (parquet leaf indexes,
/// in the depth-first order Arrow's fields follow) read in `unit`.
fn hint_int96(schema: &Schema, leaves: &BTreeSet<usize>, unit: TimeUnit) -> Schema {
    fn field(f: &FieldRef, leaf: &mut usize, leaves: &BTreeSet<usize>, unit: TimeUnit) -> FieldRef {
        Arc::new(f.as_ref().clone().with_data_type(data_type(f.data_type(), leaf, leaves, unit)))
    }
    fn data_type(dt: &DataType, leaf: &mut usize, leaves: &BTreeSet<usize>, unit: TimeUnit) -> DataType {
        match dt {
            DataType::Struct(fields) => DataType::Struct(fields.iter().map(|f| field(f, leaf, leaves, unit)).collect()),
            DataType::List(f) => DataType::List(field(f, leaf, leaves, unit)),
            DataType::LargeList(f) => DataType::LargeList(field(f, leaf, leaves, unit)),
            DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f, leaf, leaves, unit), *n),
            DataType::Map(f, sorted) => DataType::Map(field(f, leaf, leaves, unit), *sorted),
            other => {
                let this = *leaf;
                *leaf += 1;
                match other {
                    DataType::Timestamp(_, tz) if leaves.contains(&this) => DataType::Timestamp(unit, tz.clone()),
                    _ => other.clone(),
                }
            }
        }
    }
    let mut leaf = 0;
    let fields: Vec<FieldRef> = schema.fields().iter().map(|f| field(f, &mut leaf, leaves, unit)).collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// The leaf arrays of `array`, depth first (list items, struct fields, map keys then values).
fn collect_leaves(array: &ArrayRef, out: &mut Vec<ArrayRef>) {
    match array.data_type() {
        DataType::Struct(_) => array.as_struct().columns().iter().for_each(|c| collect_leaves(c, out)),
        DataType::List(_) => collect_leaves(array.as_list::<i32>().values(), out),
        DataType::LargeList(_) => collect_leaves(array.as_list::<i64>().values(), out),
        DataType::FixedSizeList(_, _) => collect_leaves(array.as_fixed_size_list().values(), out),
        DataType::Map(_, _) => {
            let entries: ArrayRef = Arc::new(array.as_map().entries().clone());
            collect_leaves(&entries, out);
        }
        _ => out.push(array.clone()),
    }
}

/// A read error names the file: a broken file is the user's to replace, a store
/// that stopped answering is retried.
pub fn read_error(file: &str, e: ParquetError) -> Error {
    match e {
        ParquetError::External(inner) => {
            let inner = match inner.downcast::<CorruptChunk>() {
                Ok(corrupt) => {
                    return Error::user(format!(
                        "`{file}` is corrupt: {corrupt}. Replace the file; if its writer is known to write wrong \
                         checksums, set options.verify_checksums = false to read it anyway"
                    ));
                }
                Err(other) => other,
            };
            match inner.downcast::<object_store::Error>() {
                Ok(store) => store_error(*store, &format!("reading `{file}`")),
                Err(other) => Error::transient(format!("reading `{file}`: {other}")),
            }
        }
        other if other.to_string().contains("overflow") => Error::user(format!(
            "`{file}`: {other}; its values are too large for one batch: lower options.batch_bytes (or \
             options.batch_size) so that fewer rows are read at once"
        )),
        other => {
            Error::user(format!("`{file}` is not a readable Parquet file ({other}); replace or remove it and re-run"))
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::Field;

    use super::*;

    #[test]
    fn int96_hints_follow_leaf_order_through_nesting() {
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let schema = Schema::new(vec![
            Field::new("a", ts.clone(), true),
            Field::new(
                "s",
                DataType::Struct(
                    vec![Field::new("x", DataType::Int32, true), Field::new("t", ts.clone(), true)].into(),
                ),
                true,
            ),
            Field::new("l", DataType::List(Arc::new(Field::new("item", ts.clone(), true))), true),
        ]);
        let hinted = hint_int96(&schema, &[0, 2].into_iter().collect(), TimeUnit::Microsecond);
        let us = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert_eq!(hinted.field(0).data_type(), &us);
        let DataType::Struct(s) = hinted.field(1).data_type() else { panic!() };
        assert_eq!(s[1].data_type(), &us);
        let DataType::List(item) = hinted.field(2).data_type() else { panic!() };
        assert_eq!(item.data_type(), &ts, "leaf 3 is not INT96");
    }
}
