//! The `orders` dataset: ten columns of the kinds a warehouse loads (integers,
//! floats, text, timestamps with and without zone, decimals), deterministic
//! from the order id so tests can compute expected values independently.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Float64Array, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
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

/// The `customers` dataset: the master data orders refer to (`customer_id`
/// 1..=[`CUSTOMERS`]), as a source system exports it: a full extract on the
/// first day, then each day the customers that changed. Some values arrive
/// dirty (padded, mixed-case emails; lower-case countries; capitalised
/// segments) for the silver layer to clean.
pub const CUSTOMERS: i32 = 100_000;
pub const SEGMENTS: [&str; 3] = ["consumer", "business", "enterprise"];
const CUSTOMER_COUNTRIES: [&str; 6] = ["IR", "DE", "US", "FR", "JP", "BR"];

/// One customer as an extract delivers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub customer_id: i32,
    pub name: String,
    /// As delivered: sometimes padded and mixed-case.
    pub email: String,
    /// As delivered: sometimes lower-case.
    pub country: String,
    /// As delivered: sometimes capitalised.
    pub segment: String,
    pub signup_date: NaiveDate,
    /// Microseconds since the epoch.
    pub updated_at: i64,
}

impl Customer {
    /// The segment once cleaned: what silver holds.
    pub fn clean_segment(&self) -> String {
        self.segment.trim().to_lowercase()
    }

    /// The country once cleaned.
    pub fn clean_country(&self) -> String {
        self.country.trim().to_uppercase()
    }
}

pub fn customers_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int32, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("email", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
        Field::new("segment", DataType::Utf8, false),
        Field::new("signup_date", DataType::Date32, false),
        Field::new("updated_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
    ]))
}

/// Customer `id` as first exported (`changed_on = None`), or as changed on a later day.
pub fn customer(id: i32, changed_on: Option<NaiveDate>) -> Customer {
    let h = mix(id as u64 ^ 0xC057_0E11);
    let epoch = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default();
    let signup_date = epoch + chrono::Duration::days((h % 1800) as i64);
    let shift = changed_on.map(|d| chrono::Datelike::ordinal(&d) as u64).unwrap_or(0);
    let segment = SEGMENTS[((h >> 12) + shift) as usize % SEGMENTS.len()];
    let country = CUSTOMER_COUNTRIES[(h >> 20) as usize % CUSTOMER_COUNTRIES.len()];
    let version_day = changed_on.unwrap_or(signup_date);
    let midnight = version_day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_micros();
    Customer {
        customer_id: id,
        name: format!("Customer {id}"),
        email: match h % 7 {
            0 => format!("  Customer{id}@Example.COM "),
            _ => format!("customer{id}@example.com"),
        },
        country: if h.is_multiple_of(11) { country.to_lowercase() } else { country.to_owned() },
        segment: if h.is_multiple_of(13) {
            format!("{}{}", segment[..1].to_uppercase(), &segment[1..])
        } else {
            segment.to_owned()
        },
        signup_date,
        updated_at: midnight + (h % 86_400_000_000) as i64,
    }
}

/// The customers whose record changed on `day` (about 2%).
pub fn customers_changed_on(day: NaiveDate) -> Vec<i32> {
    let seed = chrono::Datelike::num_days_from_ce(&day) as u64;
    (1..=CUSTOMERS).filter(|id| mix(*id as u64 ^ (seed << 24)).is_multiple_of(50)).collect()
}

pub fn customers_to_batch(customers: &[Customer]) -> RecordBatch {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(customers.iter().map(|c| c.customer_id))),
        Arc::new(StringArray::from_iter_values(customers.iter().map(|c| c.name.as_str()))),
        Arc::new(StringArray::from_iter_values(customers.iter().map(|c| c.email.as_str()))),
        Arc::new(StringArray::from_iter_values(customers.iter().map(|c| c.country.as_str()))),
        Arc::new(StringArray::from_iter_values(customers.iter().map(|c| c.segment.as_str()))),
        Arc::new(Date32Array::from_iter_values(customers.iter().map(|c| (c.signup_date - epoch).num_days() as i32))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(customers.iter().map(|c| c.updated_at)).with_timezone("UTC"),
        ),
    ];
    RecordBatch::try_new(customers_schema(), columns).unwrap_or_else(|e| panic!("customers batch: {e}"))
}

/// The customers extract of `day` into `dir/part-00000.parquet`: every customer
/// on the first day, else those that changed that day. Returns the rows written.
pub fn write_customers(dir: &Path, day: NaiveDate, first_day: bool) -> anyhow::Result<usize> {
    let customers: Vec<Customer> = match first_day {
        true => (1..=CUSTOMERS).map(|id| customer(id, None)).collect(),
        false => customers_changed_on(day).into_iter().map(|id| customer(id, Some(day))).collect(),
    };
    let batches: Vec<RecordBatch> = customers.chunks(65_536).map(customers_to_batch).collect();
    write_parquet(&dir.join("part-00000.parquet"), &batches, 1_000_000)?;
    Ok(customers.len())
}
