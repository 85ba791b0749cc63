//! One schema for all the files of a run.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use weir_core::{Error, Result, narrow};

/// Merge file schemas by column name, in first-seen order. Every column is
/// nullable: a column missing from one file loads as NULL for its rows.
/// `files[i]` names the file of `schemas[i]` in the error when two disagree.
pub fn unify(schemas: &[SchemaRef], files: &[String]) -> Result<SchemaRef> {
    let mut fields: Vec<(Field, usize)> = Vec::new();
    for (i, schema) in schemas.iter().enumerate() {
        for field in schema.fields() {
            match fields.iter_mut().find(|(f, _)| f.name() == field.name()) {
                None => fields.push((field.as_ref().clone().with_nullable(true).with_metadata(Default::default()), i)),
                Some((seen, first)) => {
                    let merged = widen(seen.data_type(), field.data_type()).ok_or_else(|| {
                        Error::user(format!(
                            "column `{}` is {} in `{}` but {} in `{}`: files of one run must agree on \
                             column types; fix or remove the odd file",
                            field.name(),
                            seen.data_type(),
                            files[*first],
                            field.data_type(),
                            files[i]
                        ))
                    })?;
                    *seen = seen.clone().with_data_type(merged);
                }
            }
        }
    }
    Ok(Arc::new(Schema::new(fields.into_iter().map(|(f, _)| f).collect::<Vec<_>>())))
}

/// The type both `a` and `b` fit in without loss, if any.
fn widen(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    if a == b {
        return Some(a.clone());
    }
    let int_rank = |t: &DataType| match t {
        Int8 => Some(1),
        Int16 => Some(2),
        Int32 => Some(3),
        Int64 => Some(4),
        _ => None,
    };
    let unit_rank = |u: &TimeUnit| match u {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    };
    match (a, b) {
        (x, y) if int_rank(x).is_some() && int_rank(y).is_some() => {
            Some(if int_rank(x) >= int_rank(y) { x.clone() } else { y.clone() })
        }
        (Float32 | Float64, Float32 | Float64) => Some(Float64),
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => Some(Utf8),
        (Binary | LargeBinary | BinaryView, Binary | LargeBinary | BinaryView) => Some(Binary),
        // Files in different units meet at microseconds, what the destinations keep
        // (nanoseconds would overflow for the other file's values past 2262).
        (Timestamp(ua, za), Timestamp(ub, zb)) if za.is_some() == zb.is_some() => {
            let unit = if unit_rank(ua) >= unit_rank(ub) { *ua } else { *ub };
            let unit = if ua != ub && unit == TimeUnit::Nanosecond { TimeUnit::Microsecond } else { unit };
            Some(Timestamp(unit, za.clone()))
        }
        (Dictionary(_, va), other) | (other, Dictionary(_, va)) => widen(va, other),
        _ => None,
    }
}

/// Reorder, cast and null-fill `batch` so that it has exactly `schema`; also
/// returns how many values lost nanoseconds on the way to microseconds. A value
/// a cast cannot carry fails naming the column, never becomes NULL.
pub fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<(RecordBatch, u64)> {
    if batch.schema() == *schema {
        return Ok((batch, 0));
    }
    let rows = batch.num_rows();
    let mut lost = 0;
    let options = CastOptions { safe: false, ..Default::default() };
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            None => Ok(new_null_array(field.data_type(), rows)),
            Some(col) if col.data_type() == field.data_type() => Ok(col.clone()),
            Some(col) => {
                let col = match (col.data_type(), field.data_type()) {
                    (DataType::Timestamp(TimeUnit::Nanosecond, _), DataType::Timestamp(TimeUnit::Microsecond, _)) => {
                        let (us, n) = narrow::to_microseconds(col, field.name())?;
                        lost += n;
                        us
                    }
                    _ => col.clone(),
                };
                cast_with_options(&col, field.data_type(), &options).map_err(|e| {
                    Error::user(format!("column `{}` cannot be read as {}: {e}", field.name(), field.data_type()))
                })
            }
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok((RecordBatch::try_new(schema.clone(), columns)?, lost))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: Vec<(&str, DataType)>) -> SchemaRef {
        Arc::new(Schema::new(fields.into_iter().map(|(n, t)| Field::new(n, t, false)).collect::<Vec<_>>()))
    }

    #[test]
    fn unifies_by_name_and_widens() {
        let a = schema(vec![("id", DataType::Int32), ("name", DataType::Utf8)]);
        let b = schema(vec![("name", DataType::LargeUtf8), ("id", DataType::Int64), ("extra", DataType::Float32)]);
        let u = unify(&[a, b], &["a".into(), "b".into()]).unwrap();
        let names: Vec<_> = u.fields().iter().map(|f| (f.name().as_str(), f.data_type().clone())).collect();
        assert_eq!(names, vec![("id", DataType::Int64), ("name", DataType::Utf8), ("extra", DataType::Float32)]);
        assert!(u.fields().iter().all(|f| f.is_nullable()));
    }

    #[test]
    fn a_conflict_names_the_column_and_both_files() {
        let a = schema(vec![("amount", DataType::Int64)]);
        let b = schema(vec![("amount", DataType::Utf8)]);
        let err = unify(&[a, b], &["d/one.parquet".into(), "d/two.parquet".into()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`amount`") && msg.contains("d/one.parquet") && msg.contains("d/two.parquet"), "{msg}");
    }
}
