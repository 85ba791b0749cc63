//! Arrow ↔ PostgreSQL types: what a new column is created as, what an existing
//! column accepts, and how a batch is converted before binary COPY.
//!
//! Binary COPY sends each value in the exact binary format of the column's type,
//! so every column is cast to the Arrow type whose encoding matches it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use pgpq::ArrowToPostgresBinaryEncoder;
use pgpq::encoders::{EncoderBuilder, StringEncoderBuilder};
use pgpq::pg_schema::PostgresType;
use weir_core::{Error, Result, quote_ident};

/// How one source column is written.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnPlan {
    pub name: String,
    /// The column's type in DDL form (`bigint`, `numeric(12,2)`, `text[]`).
    pub pg_type: String,
    /// What the Arrow column is cast to before encoding.
    pub arrow: DataType,
    /// Written as JSON text into a `jsonb`/`json` column.
    pub json: Option<JsonKind>,
    /// The source value is converted to JSON text first (structs, maps, nested lists).
    pub to_json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Json,
    Jsonb,
}

/// The PostgreSQL type a new column gets, and the Arrow type it is encoded from.
/// `None` means: store as `jsonb`.
fn default_type(dt: &DataType) -> Option<(String, DataType)> {
    use DataType::*;
    let t = |s: &str, a: DataType| Some((s.to_owned(), a));
    match dt {
        Boolean => t("boolean", Boolean),
        Int8 | Int16 | UInt8 => t("smallint", Int16),
        Int32 | UInt16 => t("integer", Int32),
        Int64 | UInt32 => t("bigint", Int64),
        UInt64 => t("numeric(20,0)", Decimal128(20, 0)),
        Float16 | Float32 => t("real", Float32),
        Float64 => t("double precision", Float64),
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) => Some(numeric(*p, *s)),
        Decimal256(p, s) if *p <= 38 => Some(numeric(*p, *s)),
        Date32 | Date64 => t("date", Date32),
        Timestamp(_, None) => t("timestamp", Timestamp(TimeUnit::Microsecond, None)),
        Timestamp(_, Some(tz)) => t("timestamptz", Timestamp(TimeUnit::Microsecond, Some(tz.clone()))),
        Time32(_) | Time64(_) => t("time", Time64(TimeUnit::Microsecond)),
        Duration(_) => t("interval", Duration(TimeUnit::Microsecond)),
        Utf8 | LargeUtf8 | Utf8View | Null => t("text", Utf8),
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => t("bytea", Binary),
        Dictionary(_, value) => default_type(value),
        List(item) | LargeList(item) | ListView(item) | LargeListView(item) | FixedSizeList(item, _) => {
            match default_type(item.data_type()) {
                Some((pg, arrow)) if !pg.ends_with("[]") => {
                    Some((format!("{pg}[]"), List(Arc::new(Field::new("item", arrow, true)))))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn numeric(p: u8, s: i8) -> (String, DataType) {
    let pg = if s >= 0 { format!("numeric({p},{s})") } else { "numeric".to_owned() };
    (pg, DataType::Decimal128(p.min(38), s))
}

/// Arrow's canonical extension type for JSON text (a MySQL `JSON` column, say).
const JSON_EXTENSION: &str = "arrow.json";

/// The plan for a column of a table Weir creates.
pub fn new_column(field: &Field) -> ColumnPlan {
    if field.metadata().get("ARROW:extension:name").map(String::as_str) == Some(JSON_EXTENSION) {
        return ColumnPlan {
            name: field.name().clone(),
            pg_type: "jsonb".to_owned(),
            arrow: DataType::Utf8,
            json: Some(JsonKind::Jsonb),
            to_json: false,
        };
    }
    match default_type(field.data_type()) {
        Some((pg_type, arrow)) => ColumnPlan { name: field.name().clone(), pg_type, arrow, json: None, to_json: false },
        None => ColumnPlan {
            name: field.name().clone(),
            pg_type: "jsonb".to_owned(),
            arrow: DataType::Utf8,
            json: Some(JsonKind::Jsonb),
            to_json: true,
        },
    }
}

/// The plan for writing `field` into an existing column of type `existing`
/// (as `format_type` prints it), or an error naming the column when the
/// source type cannot be written there without loss.
pub fn existing_column(field: &Field, existing: &str) -> Result<ColumnPlan> {
    let fresh = new_column(field);
    let base = base_type(existing);
    let source = unwrap_dictionary(field.data_type());
    let plan = |arrow: DataType, json: Option<JsonKind>| ColumnPlan {
        name: field.name().clone(),
        pg_type: existing.to_owned(),
        arrow,
        json,
        to_json: fresh.to_json,
    };
    if let Some(json) = match base {
        "jsonb" => Some(JsonKind::Jsonb),
        "json" => Some(JsonKind::Json),
        _ => None,
    } && (fresh.to_json || matches!(source, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
    {
        return Ok(plan(DataType::Utf8, Some(json)));
    }
    if let Some(element) = existing.strip_suffix("[]") {
        if let Some(item) = list_item(source) {
            let inner = existing_column(item, element).map_err(|_| incompatible(field, existing))?;
            if inner.json.is_none() && !inner.to_json {
                return Ok(plan(DataType::List(Arc::new(Field::new("item", inner.arrow, true))), None));
            }
        }
        return Err(incompatible(field, existing));
    }
    let fresh_base = base_type(&fresh.pg_type);
    let int_rank = |t: &str| ["smallint", "integer", "bigint"].iter().position(|x| *x == t);
    use DataType::*;
    let arrow = match (base, fresh_base) {
        // Same type; numeric(p,s) keeps the source's scale and the server applies the column's.
        (a, b) if a == b => Some(fresh.arrow.clone()),
        (a, b) if int_rank(a).is_some() && int_rank(b).is_some() && int_rank(a) >= int_rank(b) => Some(match a {
            "smallint" => Int16,
            "integer" => Int32,
            _ => Int64,
        }),
        ("numeric", "smallint" | "integer" | "bigint") => Some(Decimal128(38, 0)),
        ("double precision", "real") => Some(Float64),
        ("timestamp" | "timestamptz", "timestamp" | "timestamptz") => Some(fresh.arrow.clone()),
        ("text" | "character varying" | "character", "text") => Some(Utf8),
        _ => None,
    };
    arrow.map(|a| plan(a, None)).ok_or_else(|| incompatible(field, existing))
}

fn incompatible(field: &Field, existing: &str) -> Error {
    let name = field.name();
    let became = new_column(field).pg_type;
    Error::user(format!(
        "column `{name}` is {existing} in the destination but the source now has {} ({became}); \
         fix the source, or change the column yourself (ALTER TABLE … ALTER COLUMN {} TYPE {became}) and re-run",
        field.data_type(),
        quote_ident(name),
    ))
}

fn unwrap_dictionary(dt: &DataType) -> &DataType {
    match dt {
        DataType::Dictionary(_, v) => unwrap_dictionary(v),
        other => other,
    }
}

fn list_item(dt: &DataType) -> Option<&Field> {
    match dt {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => Some(f),
        _ => None,
    }
}

/// `numeric(12,2)` → `numeric`; `timestamp with time zone` → `timestamptz`.
pub fn base_type(pg: &str) -> &str {
    let base = pg.split('(').next().unwrap_or(pg).trim();
    match base {
        "timestamp with time zone" => "timestamptz",
        "timestamp without time zone" => "timestamp",
        "time without time zone" => "time",
        "int2" => "smallint",
        "int4" | "int" => "integer",
        "int8" => "bigint",
        "float8" => "double precision",
        "float4" => "real",
        "bool" => "boolean",
        "varchar" => "character varying",
        other => other,
    }
}

/// Turns source batches into binary COPY data for a list of column plans.
pub struct BatchEncoder {
    plans: Vec<ColumnPlan>,
    schema: SchemaRef,
    encoder: ArrowToPostgresBinaryEncoder,
    /// A constant column appended to every row (`_weir_run_date`).
    constant: Option<(String, ArrayRef)>,
}

impl BatchEncoder {
    pub fn new(plans: Vec<ColumnPlan>, constant: Option<(String, ArrayRef)>) -> Result<Self> {
        let mut fields: Vec<FieldRef> =
            plans.iter().map(|p| Arc::new(Field::new(&p.name, p.arrow.clone(), true))).collect();
        if let Some((name, value)) = &constant {
            fields.push(Arc::new(Field::new(name, value.data_type().clone(), true)));
        }
        let schema = Arc::new(Schema::new(fields));
        let mut encoders: HashMap<String, EncoderBuilder> =
            pgpq::build_encoders(schema.fields()).map_err(encode_error)?.into_iter().collect();
        for (plan, field) in plans.iter().zip(schema.fields()) {
            if let Some(kind) = plan.json {
                let output = match kind {
                    JsonKind::Json => PostgresType::Json,
                    JsonKind::Jsonb => PostgresType::Jsonb,
                };
                let builder = StringEncoderBuilder::new_with_output(field.clone(), output).map_err(encode_error)?;
                encoders.insert(plan.name.clone(), EncoderBuilder::String(builder));
            }
        }
        let encoder = ArrowToPostgresBinaryEncoder::try_new_with_encoders(&schema, &encoders).map_err(encode_error)?;
        Ok(Self { plans, schema, encoder, constant })
    }

    /// The quoted column list for `COPY … (…)`.
    pub fn column_list(&self) -> String {
        self.column_names().iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ")
    }

    /// The columns written, in COPY order.
    pub fn column_names(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    pub fn header(&mut self, out: &mut bytes::BytesMut) -> Result<()> {
        self.encoder.write_header(out).map_err(encode_error)
    }

    pub fn footer(&mut self, out: &mut bytes::BytesMut) -> Result<()> {
        self.encoder.write_footer(out).map_err(encode_error)
    }

    /// Convert `batch` (with the source schema the plans were made from) and append it to `out`.
    pub fn encode(&mut self, batch: &RecordBatch, out: &mut bytes::BytesMut) -> Result<()> {
        let options = CastOptions { safe: false, ..Default::default() };
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (plan, column) in self.plans.iter().zip(batch.columns()) {
            let converted = if plan.to_json {
                to_json_text(column, &plan.name)?
            } else if column.data_type() != &plan.arrow {
                cast_with_options(column, &plan.arrow, &options).map_err(|e| {
                    Error::user(format!("column `{}`: a value cannot be written as {} ({e})", plan.name, plan.pg_type))
                })?
            } else {
                column.clone()
            };
            columns.push(converted);
        }
        if let Some((_, value)) = &self.constant {
            let repeated = arrow::compute::take(
                value.as_ref(),
                &arrow::array::UInt32Array::from(vec![0u32; batch.num_rows()]),
                None,
            )?;
            columns.push(repeated);
        }
        let converted = RecordBatch::try_new(self.schema.clone(), columns)?;
        self.encoder.write_batch(&converted, out).map_err(encode_error)
    }
}

/// Each value as JSON text (structs, maps and nested lists go to `jsonb`).
fn to_json_text(column: &ArrayRef, name: &str) -> Result<ArrayRef> {
    let field = Arc::new(Field::new(name, column.data_type().clone(), true));
    let options = arrow::json::writer::EncoderOptions::default();
    let mut encoder = arrow::json::writer::make_encoder(&field, column.as_ref(), &options)?;
    let mut out = StringBuilder::with_capacity(column.len(), column.len() * 32);
    let mut buf = Vec::with_capacity(256);
    for i in 0..column.len() {
        if column.is_null(i) {
            out.append_null();
            continue;
        }
        buf.clear();
        encoder.encode(i, &mut buf);
        let text = std::str::from_utf8(&buf)
            .map_err(|e| Error::internal(format!("column `{name}`: JSON encoding produced invalid UTF-8: {e}")))?;
        out.append_value(text);
    }
    Ok(Arc::new(out.finish()))
}

fn encode_error(e: pgpq::error::ErrorKind) -> Error {
    Error::user(format!("encoding for PostgreSQL COPY: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, dt: DataType) -> Field {
        Field::new(name, dt, true)
    }

    #[test]
    fn new_columns_follow_the_documented_mapping() {
        use DataType::*;
        let cases = [
            (Int8, "smallint"),
            (UInt32, "bigint"),
            (UInt64, "numeric(20,0)"),
            (Float64, "double precision"),
            (Decimal128(12, 2), "numeric(12,2)"),
            (Date64, "date"),
            (Timestamp(TimeUnit::Nanosecond, None), "timestamp"),
            (Timestamp(TimeUnit::Millisecond, Some("UTC".into())), "timestamptz"),
            (LargeUtf8, "text"),
            (Binary, "bytea"),
            (List(Arc::new(f("item", Int32))), "integer[]"),
            (Struct(vec![f("a", Int32)].into()), "jsonb"),
            (List(Arc::new(f("item", Struct(vec![f("a", Int32)].into())))), "jsonb"),
            (Dictionary(Box::new(Int32), Box::new(Utf8)), "text"),
        ];
        for (dt, pg) in cases {
            assert_eq!(new_column(&f("c", dt.clone())).pg_type, pg, "{dt}");
        }
        let json = f("doc", Utf8).with_metadata([("ARROW:extension:name".to_owned(), "arrow.json".to_owned())].into());
        assert_eq!(new_column(&json).json, Some(JsonKind::Jsonb));
    }

    #[test]
    fn existing_columns_accept_widening_only() {
        use DataType::*;
        assert_eq!(existing_column(&f("n", Int32), "bigint").unwrap().arrow, Int64);
        assert_eq!(existing_column(&f("n", Int16), "numeric(10,0)").unwrap().arrow, Decimal128(38, 0));
        assert_eq!(existing_column(&f("x", Float32), "double precision").unwrap().arrow, Float64);
        assert!(existing_column(&f("s", Utf8), "jsonb").unwrap().json.is_some());
        assert!(existing_column(&f("l", List(Arc::new(f("item", Int16)))), "bigint[]").is_ok());
        let err = existing_column(&f("amount", Utf8), "bigint").unwrap_err().to_string();
        assert!(err.contains("column `amount` is bigint") && err.contains("ALTER TABLE"), "{err}");
        assert!(existing_column(&f("n", Int64), "integer").is_err());
        assert!(existing_column(&f("d", Date32), "timestamp without time zone").is_err());
    }

    #[test]
    fn structs_become_json_text() {
        use arrow::array::{Int32Array, StructArray};
        let s = StructArray::from(vec![(
            Arc::new(f("a", DataType::Int32)),
            Arc::new(Int32Array::from(vec![Some(1), None])) as ArrayRef,
        )]);
        let json = to_json_text(&(Arc::new(s) as ArrayRef), "s").unwrap();
        let json = json.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
        assert_eq!(json.value(0), r#"{"a":1}"#);
        assert_eq!(json.value(1), "{}");
    }
}
