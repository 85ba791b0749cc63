//! Watermarks: the highest value of a pipeline's watermark column, kept as text
//! and compared with the column's own type (so `9 < 10` and dates order as dates).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, Scalar, StringArray};
use arrow::compute::kernels::cmp::{gt, gt_eq};
use arrow::compute::{SortOptions, concat, filter_record_batch, sort_to_indices};
use arrow::datatypes::DataType;
use arrow::util::display::array_value_to_string;

use crate::{Error, Result, WatermarkFilter};

/// A stored watermark as a one-element array of `data_type`, or a user error
/// naming the column when the text does not parse as that type.
pub fn parse_as(value: &str, data_type: &DataType, column: &str) -> Result<ArrayRef> {
    let text: ArrayRef = Arc::new(StringArray::from(vec![value]));
    let options = arrow::compute::CastOptions { safe: false, ..Default::default() };
    arrow::compute::cast_with_options(&text, data_type, &options).map_err(|e| {
        Error::user(format!(
            "stored watermark `{value}` does not fit watermark column `{column}` of type {data_type} ({e}); \
             reset it with `DELETE FROM watermark WHERE pipeline_name = …` or fix watermark_column"
        ))
    })
}

/// Keep the rows of `batch` whose `column` is past `filter` (rows with a NULL watermark are dropped).
pub fn filter_batch(batch: &RecordBatch, column: &str, filter: &WatermarkFilter) -> Result<RecordBatch> {
    let idx = column_index(batch, column)?;
    let col = batch.column(idx);
    let bound = Scalar::new(parse_as(&filter.value, col.data_type(), column)?);
    let mask = if filter.inclusive { gt_eq(col, &bound)? } else { gt(col, &bound)? };
    Ok(filter_record_batch(batch, &mask)?)
}

fn column_index(batch: &RecordBatch, column: &str) -> Result<usize> {
    batch.schema().index_of(column).map_err(|_| {
        Error::user(format!(
            "watermark_column `{column}` is not in the source data (columns: {})",
            batch.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Tracks the running maximum of a watermark column across batches.
#[derive(Debug, Clone)]
pub struct MaxTracker {
    column: String,
    max: Option<ArrayRef>,
    text: Option<String>,
}

impl MaxTracker {
    /// Start at `initial` (the stored watermark), typed as `data_type`.
    pub fn new(column: &str, data_type: &DataType, initial: Option<&str>) -> Result<Self> {
        let max = initial.map(|v| parse_as(v, data_type, column)).transpose()?;
        Ok(Self { column: column.to_owned(), max, text: initial.map(str::to_owned) })
    }

    /// Fold the batch's maximum into the running maximum.
    pub fn observe(&mut self, batch: &RecordBatch) -> Result<()> {
        let col = batch.column(column_index(batch, &self.column)?);
        let Some(batch_max) = max_of(col)? else { return Ok(()) };
        let candidate = match &self.max {
            Some(current) => {
                let both = concat(&[current.as_ref(), batch_max.as_ref()])?;
                max_of(&both)?.unwrap_or(batch_max)
            }
            None => batch_max,
        };
        if self.max.as_ref() != Some(&candidate) {
            self.text = Some(array_value_to_string(&candidate, 0)?);
            self.max = Some(candidate);
        }
        Ok(())
    }

    pub fn value(&self) -> Option<&str> {
        self.text.as_deref()
    }
}

/// The largest non-null value of `array` as a one-element array.
fn max_of(array: &ArrayRef) -> Result<Option<ArrayRef>> {
    if array.len() == array.null_count() {
        return Ok(None);
    }
    let options = SortOptions { descending: true, nulls_first: false };
    let idx = sort_to_indices(array, Some(options), Some(1))?;
    Ok(Some(array.slice(idx.value(0) as usize, 1)))
}

/// Whether `a` is after `b`, compared as `data_type` (used to never move a watermark back).
pub fn is_after(a: &str, b: &str, data_type: &DataType, column: &str) -> Result<bool> {
    let a = parse_as(a, data_type, column)?;
    let b = parse_as(b, data_type, column)?;
    Ok(gt(&a, &Scalar::new(b))?.value(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};

    fn batch(ids: Vec<Option<i64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(ids))]).unwrap()
    }

    #[test]
    fn tracks_typed_maximum() {
        let mut t = MaxTracker::new("v", &DataType::Int64, Some("9")).unwrap();
        t.observe(&batch(vec![Some(3), None, Some(8)])).unwrap();
        assert_eq!(t.value(), Some("9"));
        t.observe(&batch(vec![Some(10), Some(2)])).unwrap();
        assert_eq!(t.value(), Some("10"), "10 > 9 as numbers, not text");
        t.observe(&batch(vec![None])).unwrap();
        assert_eq!(t.value(), Some("10"));
    }

    #[test]
    fn filters_past_the_watermark() {
        let b = batch(vec![Some(1), Some(5), Some(6), None]);
        let f = WatermarkFilter { value: "5".into(), inclusive: false };
        assert_eq!(filter_batch(&b, "v", &f).unwrap().num_rows(), 1);
        let f = WatermarkFilter { value: "5".into(), inclusive: true };
        assert_eq!(filter_batch(&b, "v", &f).unwrap().num_rows(), 2);
        let bad = WatermarkFilter { value: "five".into(), inclusive: true };
        assert!(filter_batch(&b, "v", &bad).unwrap_err().to_string().contains("`v`"));
        assert!(filter_batch(&b, "nope", &f).unwrap_err().to_string().contains("`nope`"));
    }

    #[test]
    fn timestamps_round_trip_as_text() {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let schema = Arc::new(Schema::new(vec![Field::new("t", ts.clone(), true)]));
        let arr = TimestampMicrosecondArray::from(vec![1_742_688_000_000_000, 1_742_688_000_000_001]);
        let b = RecordBatch::try_new(schema, vec![Arc::new(arr)]).unwrap();
        let mut t = MaxTracker::new("t", &ts, None).unwrap();
        t.observe(&b).unwrap();
        let text = t.value().unwrap().to_owned();
        assert_eq!(text, "2025-03-23T00:00:00.000001");
        let f = WatermarkFilter { value: text.clone(), inclusive: false };
        assert_eq!(filter_batch(&b, "t", &f).unwrap().num_rows(), 0);
        assert!(is_after(&text, "2025-03-23T00:00:00", &ts, "t").unwrap());
    }
}
