//! The `orders` dataset: ten columns of the kinds a warehouse loads (integers,
//! floats, text, timestamps with and without zone, decimals), deterministic
//! from the order id so tests can compute expected values independently.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Array, Float64Array, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

pub const STATUSES: [&str; 4] = ["new", "paid", "shipped", "returned"];

pub fn orders_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int32, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("quantity", DataType::Int16, false),
        Field::new("unit_price", DataType::Decimal128(10, 2), false),
        Field::new("discount", DataType::Float64, false),
        Field::new("total", DataType::Decimal128(12, 2), false),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        Field::new("updated_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("note", DataType::Utf8, true),
    ]))
}

/// One order, computed from its id (and the day it belongs to).
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub order_id: i64,
    pub customer_id: i32,
    pub status: &'static str,
    pub quantity: i16,
    /// In cents.
    pub unit_price_cents: i128,
    pub discount: f64,
    /// In cents.
    pub total_cents: i128,
    /// Microseconds since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
    pub note: Option<String>,
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
    x ^ (x >> 33)
}

pub fn order(order_id: i64, day: NaiveDate) -> Order {
    let h = mix(order_id as u64);
    let quantity = (h % 9 + 1) as i16;
    let unit_price_cents = (h >> 8) as i128 % 50_000 + 100;
    let discount = ((h >> 24) % 30) as f64 / 100.0;
    let gross = unit_price_cents * quantity as i128;
    let total_cents = gross - (gross as f64 * discount).round() as i128;
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_micros();
    let created_at = midnight + (mix(h) % 86_400_000_000) as i64;
    Order {
        order_id,
        customer_id: (h % 100_000) as i32 + 1,
        status: STATUSES[(h >> 4) as usize % STATUSES.len()],
        quantity,
        unit_price_cents,
        discount,
        total_cents,
        created_at,
        updated_at: created_at + 60_000_000,
        note: h.is_multiple_of(5).then(|| format!("gift wrap order {order_id} ✓")),
    }
}

/// Orders `first..first + n` of `day` as one batch.
pub fn orders_batch(first: i64, n: usize, day: NaiveDate) -> RecordBatch {
    let orders: Vec<Order> = (first..first + n as i64).map(|id| order(id, day)).collect();
    orders_to_batch(&orders)
}

pub fn orders_to_batch(orders: &[Order]) -> RecordBatch {
    let col = |a: ArrayRef| a;
    let columns = vec![
        col(Arc::new(Int64Array::from_iter_values(orders.iter().map(|o| o.order_id)))),
        col(Arc::new(Int32Array::from_iter_values(orders.iter().map(|o| o.customer_id)))),
        col(Arc::new(StringArray::from_iter_values(orders.iter().map(|o| o.status)))),
        col(Arc::new(Int16Array::from_iter_values(orders.iter().map(|o| o.quantity)))),
        col(Arc::new(
            Decimal128Array::from_iter_values(orders.iter().map(|o| o.unit_price_cents))
                .with_precision_and_scale(10, 2)
                .unwrap_or_else(|e| panic!("{e}")),
        )),
        col(Arc::new(Float64Array::from_iter_values(orders.iter().map(|o| o.discount)))),
        col(Arc::new(
            Decimal128Array::from_iter_values(orders.iter().map(|o| o.total_cents))
                .with_precision_and_scale(12, 2)
                .unwrap_or_else(|e| panic!("{e}")),
        )),
        col(Arc::new(TimestampMicrosecondArray::from_iter_values(orders.iter().map(|o| o.created_at)))),
        col(Arc::new(
            TimestampMicrosecondArray::from_iter_values(orders.iter().map(|o| o.updated_at)).with_timezone("UTC"),
        )),
        col(Arc::new(StringArray::from(orders.iter().map(|o| o.note.clone()).collect::<Vec<_>>()))),
    ];
    RecordBatch::try_new(orders_schema(), columns).unwrap_or_else(|e| panic!("orders batch: {e}"))
}

/// Orders `first..first + n` after a schema change: `note` dropped, a `channel`
/// column (all `web`) added.
pub fn evolved_orders_batch(first: i64, n: usize, day: NaiveDate) -> RecordBatch {
    let base = orders_batch(first, n, day);
    let keep: Vec<usize> = (0..base.num_columns()).filter(|&i| base.schema().field(i).name() != "note").collect();
    let base = base.project(&keep).unwrap_or_else(|e| panic!("{e}"));
    replace_column(&base, "channel", Arc::new(StringArray::from(vec!["web"; n])))
}

/// Orders `first..first + n` whose `quantity` became text (`"q1"`, `"q2"`, …):
/// a change no destination can take without loss.
pub fn retyped_orders_batch(first: i64, n: usize, day: NaiveDate) -> RecordBatch {
    let base = orders_batch(first, n, day);
    replace_column(&base, "quantity", Arc::new(StringArray::from_iter_values((1..=n).map(|i| format!("q{i}")))))
}

/// `batch` with column `name` replaced by `column` (or added last).
pub fn replace_column(batch: &RecordBatch, name: &str, column: ArrayRef) -> RecordBatch {
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = batch.columns().to_vec();
    let field = Field::new(name, column.data_type().clone(), true);
    match fields.iter().position(|f| f.name() == name) {
        Some(i) => (fields[i], columns[i]) = (field, column),
        None => {
            fields.push(field);
            columns.push(column);
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap_or_else(|e| panic!("replace {name}: {e}"))
}

/// Write batches to one Parquet file (zstd, `row_group_rows` rows per row group).
pub fn write_parquet(path: &Path, batches: &[RecordBatch], row_group_rows: usize) -> anyhow::Result<()> {
    let schema = batches.first().map(|b| b.schema()).ok_or_else(|| anyhow::anyhow!("no batches"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_max_row_group_row_count(Some(row_group_rows))
        .build();
    let mut writer = ArrowWriter::try_new(File::create(path)?, schema, Some(props))?;
    for b in batches {
        writer.write(b)?;
    }
    writer.close()?;
    Ok(())
}

/// Write `rows` orders of `day`, starting at `first`, in `files` files under `dir`.
pub fn write_orders(dir: &Path, day: NaiveDate, first: i64, rows: usize, files: usize) -> anyhow::Result<()> {
    const CHUNK: usize = 65_536;
    let files = files.max(1);
    let per_file = rows.div_ceil(files);
    let mut next = first;
    let end = first + rows as i64;
    for f in 0..files {
        let path = dir.join(format!("part-{f:05}.parquet"));
        let schema = orders_schema();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .set_max_row_group_row_count(Some(1_000_000))
            .build();
        std::fs::create_dir_all(dir)?;
        let mut writer = ArrowWriter::try_new(File::create(&path)?, schema, Some(props))?;
        let file_end = (next + per_file as i64).min(end);
        while next < file_end {
            let n = ((file_end - next) as usize).min(CHUNK);
            writer.write(&orders_batch(next, n, day))?;
            next += n as i64;
        }
        writer.close()?;
    }
    Ok(())
}
