//! Arrow types as Delta stores them, and the schema a load writes.
//!
//! Delta has fewer types than Arrow. Each source type maps to one Delta type,
//! chosen so that no value changes:
//!
//! | Arrow | Delta |
//! | --- | --- |
//! | Int8/16/32/64, Float32/64, Boolean, Date32, Decimal128 | the same |
//! | UInt8 / UInt16 / UInt32 | the next wider signed integer |
//! | UInt64 | DECIMAL(20,0) |
//! | Float16 | FLOAT |
//! | Timestamp(any unit, zone) | TIMESTAMP (µs, UTC); without a zone TIMESTAMP_NTZ |
//! | Date64 | DATE |
//! | Time32/Time64 | STRING (`HH:MM:SS` and the unit's fraction digits) |
//! | Duration | LONG (microseconds) |
//! | Utf8, LargeUtf8, Utf8View, Dictionary of strings | STRING |
//! | Binary, LargeBinary, BinaryView, FixedSizeBinary | BINARY |
//! | Decimal256 up to 38 digits | DECIMAL |
//! | Decimal256 past 38 digits | STRING (the exact digits) |
//! | Null | STRING (all null) |
//! | Struct, List, LargeList, Map | the same, their children mapped |
//!
//! Every column is written nullable: a later load may lack it. A map keeps
//! its keys (never null) and its values (nullable). Nanoseconds are rounded
//! down to microseconds and counted (`truncated_nanoseconds`).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, ListArray, MapArray, RecordBatch, RecordBatchOptions, StringBuilder, StructArray,
    new_null_array,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use weir_core::narrow;
use weir_core::{Error, Result};

/// Characters Delta does not allow in a column name (without column mapping).
const FORBIDDEN_IN_NAMES: &[char] = &[' ', ',', ';', '{', '}', '(', ')', '\n', '\t', '='];

/// The Delta-storable type for `dt`, or why there is none.
pub fn delta_type(dt: &DataType) -> std::result::Result<DataType, String> {
    use DataType::*;
    Ok(match dt {
        Boolean | Int8 | Int16 | Int32 | Int64 | Float32 | Float64 | Date32 | Utf8 | Binary => dt.clone(),
        UInt8 => Int16,
        UInt16 => Int32,
        UInt32 => Int64,
        UInt64 => Decimal128(20, 0),
        Float16 => Float32,
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) if *s >= 0 => Decimal128(*p, *s),
        Decimal256(p, s) if *p <= 38 && *s >= 0 => Decimal128(*p, *s),
        Decimal256(_, s) if *s >= 0 => Utf8,
        Decimal128(p, s) | Decimal256(p, s) => {
            return Err(format!("DECIMAL({p},{s}) does not fit Delta's DECIMAL (scale ≥ 0)"));
        }
        Timestamp(_, Some(_)) => Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Timestamp(_, None) => Timestamp(TimeUnit::Microsecond, None),
        Duration(_) => Int64,
        Date64 => Date32,
        Time32(_) | Time64(_) | LargeUtf8 | Utf8View | Null => Utf8,
        LargeBinary | BinaryView | FixedSizeBinary(_) => Binary,
        Dictionary(_, value) => delta_type(value)?,
        Struct(fields) => Struct(delta_fields(fields)?),
        List(f) | LargeList(f) | ListView(f) | LargeListView(f) | FixedSizeList(f, _) => List(delta_field(f)?),
        Map(_, _) if has_naive_timestamp(dt) => {
            return Err("a timestamp without time zone inside a map: delta-rs does not turn on the timestampNtz \
                        table feature for it (its check skips maps); give the timestamps a time zone in the source, \
                        or load the column into PostgreSQL"
                .to_owned());
        }
        Map(entries, sorted) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err(format!("a map whose entries are {} is not valid Arrow", entries.data_type()));
            };
            let [key, value] = kv.iter().collect::<Vec<_>>()[..] else {
                return Err("a map's entries must be a key and a value".to_owned());
            };
            let key = Field::new(key.name(), delta_type(key.data_type())?, false);
            let value = delta_field(value)?;
            let kv = Struct(vec![Arc::new(key), value].into());
            Map(Arc::new(Field::new(entries.name(), kv, false)), *sorted)
        }
        other => return Err(format!("{other} has no Delta type")),
    })
}

fn has_naive_timestamp(dt: &DataType) -> bool {
    match dt {
        DataType::Timestamp(_, None) => true,
        DataType::Struct(fields) => fields.iter().any(|f| has_naive_timestamp(f.data_type())),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => has_naive_timestamp(f.data_type()),
        DataType::Dictionary(_, v) => has_naive_timestamp(v),
        _ => false,
    }
}

fn delta_field(f: &FieldRef) -> std::result::Result<FieldRef, String> {
    let dt = delta_type(f.data_type()).map_err(|e| format!("`{}`: {e}", f.name()))?;
    Ok(Arc::new(Field::new(f.name(), dt, true)))
}

fn delta_fields(fields: &Fields) -> std::result::Result<Fields, String> {
    fields.iter().map(delta_field).collect()
}

/// The source schema as Delta stores it. Names a column Delta cannot store.
pub fn delta_schema(source: &Schema) -> Result<Schema> {
    let mut fields = Vec::with_capacity(source.fields().len());
    for f in source.fields() {
        let dt = delta_type(f.data_type())
            .map_err(|e| Error::user(format!("column `{}` cannot be stored in Delta: {e}", f.name())))?;
        fields.push(Field::new(f.name(), dt, true));
    }
    Ok(Schema::new(fields))
}

/// The first column or nested field name (as `a.b`) that Delta takes only with
/// column mapping, and the character at fault.
pub fn name_needing_mapping(schema: &Schema) -> Option<(String, char)> {
    fn walk(prefix: &str, dt: &DataType) -> Option<(String, char)> {
        match dt {
            DataType::Struct(fields) => fields.iter().find_map(|f| {
                let path = format!("{prefix}.{}", f.name());
                bad_char(f.name()).map(|c| (path.clone(), c)).or_else(|| walk(&path, f.data_type()))
            }),
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => walk(prefix, f.data_type()),
            DataType::Map(f, _) => walk(prefix, f.data_type()),
            _ => None,
        }
    }
    schema
        .fields()
        .iter()
        .find_map(|f| bad_char(f.name()).map(|c| (f.name().clone(), c)).or_else(|| walk(f.name(), f.data_type())))
}

fn bad_char(name: &str) -> Option<char> {
    name.chars().find(|c| FORBIDDEN_IN_NAMES.contains(c))
}

/// What a load writes: the table's columns (in the table's order) followed by
/// the source's new ones. Source columns of a narrower type are widened to the
/// table's (INT → BIGINT, FLOAT → DOUBLE, a smaller DECIMAL); anything else that
/// differs is an incompatible change.
#[derive(Debug, Clone)]
pub struct WritePlan {
    pub schema: SchemaRef,
    /// Columns the table does not have yet.
    pub new_columns: Vec<String>,
    /// Table columns the source lacks (written as NULL).
    pub missing_columns: Vec<String>,
}

impl WritePlan {
    pub fn new(table: Option<&Schema>, source: &Schema) -> Result<Self> {
        let source = delta_schema(source)?;
        let Some(table) = table else {
            return Ok(Self { schema: Arc::new(source), new_columns: Vec::new(), missing_columns: Vec::new() });
        };
        let table = delta_schema(table)?;
        let mut fields: Vec<Field> = Vec::with_capacity(table.fields().len());
        let mut missing_columns = Vec::new();
        for t in table.fields() {
            match source.field_with_name(t.name()) {
                Ok(s) if same_shape(s.data_type(), t.data_type()) || widens(s.data_type(), t.data_type()) => {}
                Ok(s) => {
                    return Err(Error::user(format!(
                        "column `{}` is {} in the Delta table but {} in the source; this change cannot be merged. \
                         Cast it back in the source, or load into a new table (or drop this one) to change its type",
                        t.name(),
                        t.data_type(),
                        s.data_type()
                    )));
                }
                Err(_) => missing_columns.push(t.name().clone()),
            }
            fields.push(t.as_ref().clone());
        }
        let known: HashSet<&str> = table.fields().iter().map(|f| f.name().as_str()).collect();
        let mut new_columns = Vec::new();
        for s in source.fields() {
            if !known.contains(s.name().as_str()) {
                new_columns.push(s.name().clone());
                fields.push(s.as_ref().clone());
            }
        }
        Ok(Self { schema: Arc::new(Schema::new(fields)), new_columns, missing_columns })
    }
}

/// The same type as Delta stores it: list item names (`item` in Arrow,
/// `element` in a Delta table), nullability and metadata aside.
fn same_shape(a: &DataType, b: &DataType) -> bool {
    use DataType::*;
    match (a, b) {
        (List(x), List(y)) | (LargeList(x), LargeList(y)) | (Map(x, _), Map(y, _)) => {
            same_shape(x.data_type(), y.data_type())
        }
        (Struct(x), Struct(y)) => {
            x.len() == y.len()
                && x.iter().zip(y.iter()).all(|(f, g)| f.name() == g.name() && same_shape(f.data_type(), g.data_type()))
        }
        _ => a == b,
    }
}

/// Whether every value of `from` is a value of `to`.
fn widens(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    match (from, to) {
        (Int8, Int16 | Int32 | Int64) | (Int16, Int32 | Int64) | (Int32, Int64) => true,
        (Float32, Float64) | (Int8 | Int16 | Int32, Float64) => true,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            s1 <= s2 && i16::from(*p1) - i16::from(*s1) <= i16::from(*p2) - i16::from(*s2)
        }
        (Int8 | Int16 | Int32 | Int64, Decimal128(p, s)) => {
            let digits = match from {
                Int8 => 3,
                Int16 => 5,
                Int32 => 10,
                _ => 19,
            };
            i16::from(*p) - i16::from(*s) >= digits
        }
        (Date32, Timestamp(TimeUnit::Microsecond, None)) => true,
        _ => false,
    }
}

/// Make `batch` have exactly `schema`: columns by name, converted, absent
/// ones NULL. Adds the values that lost nanoseconds to `lost`.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef, lost: &mut u64) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => convert(c, f.data_type(), f.name(), lost).map_err(|e| {
                Error::user(format!("column `{}`: a value cannot be stored as {}: {e}", f.name(), f.data_type()))
            }),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        .map_err(|e| Error::internal(format!("building a Delta batch: {e}")))
}

/// One column as `to` (its Delta form), children first for nested types.
/// Only the conversions of the module's table are asked of it.
fn convert(array: &ArrayRef, to: &DataType, name: &str, lost: &mut u64) -> std::result::Result<ArrayRef, String> {
    use DataType::*;
    let from = array.data_type();
    if from == to {
        return Ok(array.clone());
    }
    let cast = |array: &ArrayRef, to: &DataType| {
        cast_with_options(array, to, &CastOptions { safe: false, ..Default::default() }).map_err(|e| e.to_string())
    };
    let micros = |array: &ArrayRef, lost: &mut u64| {
        let (us, n) = narrow::to_microseconds(array, name).map_err(|e| e.to_string())?;
        *lost += n;
        Ok::<_, String>(us)
    };
    Ok(match (from, to) {
        (Dictionary(_, value), _) => convert(&cast(array, value)?, to, name, lost)?,
        (Timestamp(_, _), Timestamp(_, _)) => cast(&micros(array, lost)?, to)?,
        (Duration(_), Int64) => cast(&micros(array, lost)?, to)?,
        (Time32(_) | Time64(_), Utf8) => time_text(array)?,
        (Date64, Date32) => {
            let ms = array.as_primitive::<arrow::datatypes::Date64Type>();
            if let Some(v) = ms.iter().flatten().find(|v| v.rem_euclid(86_400_000) != 0) {
                return Err(format!("the Date64 value {v} is not a whole day"));
            }
            cast(array, to)?
        }
        (Struct(_), Struct(fields)) => {
            let s = array.as_struct();
            let columns = s
                .columns()
                .iter()
                .zip(fields.iter())
                .map(|(c, f)| convert(c, f.data_type(), name, lost))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Arc::new(StructArray::try_new(fields.clone(), columns, s.nulls().cloned()).map_err(|e| e.to_string())?)
        }
        (List(_), List(item)) => {
            let l = array.as_list::<i32>();
            let values = convert(l.values(), item.data_type(), name, lost)?;
            Arc::new(
                ListArray::try_new(item.clone(), l.offsets().clone(), values, l.nulls().cloned())
                    .map_err(|e| e.to_string())?,
            )
        }
        (LargeList(f) | FixedSizeList(f, _) | ListView(f) | LargeListView(f), List(_)) => {
            convert(&cast(array, &List(f.clone()))?, to, name, lost)?
        }
        (Map(_, _), Map(entries, sorted)) => {
            let m = array.as_map();
            let kv: ArrayRef = Arc::new(m.entries().clone());
            let converted = convert(&kv, entries.data_type(), name, lost)?;
            Arc::new(
                MapArray::try_new(
                    entries.clone(),
                    m.offsets().clone(),
                    converted.as_struct().clone(),
                    m.nulls().cloned(),
                    *sorted,
                )
                .map_err(|e| e.to_string())?,
            )
        }
        _ => cast(array, to)?,
    })
}

/// Times of day as `HH:MM:SS` with the unit's digits (`10:00:00.100000000` for nanoseconds).
fn time_text(array: &ArrayRef) -> std::result::Result<ArrayRef, String> {
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 18);
    let mut text = String::with_capacity(32);
    let mut counts = weir_core::json::JsonCounts::default();
    for i in 0..array.len() {
        if array.is_null(i) {
            out.append_null();
            continue;
        }
        text.clear();
        weir_core::json::write_value(array.as_ref(), i, &mut text, &mut counts)?;
        out.append_value(text.trim_matches('"'));
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray, UInt64Array};

    fn schema(fields: &[(&str, DataType)]) -> Schema {
        Schema::new(fields.iter().map(|(n, t)| Field::new(*n, t.clone(), false)).collect::<Vec<_>>())
    }

    #[test]
    fn maps_types_delta_lacks_without_losing_values() {
        assert_eq!(delta_type(&DataType::UInt64).unwrap(), DataType::Decimal128(20, 0));
        assert_eq!(
            delta_type(&DataType::Timestamp(TimeUnit::Nanosecond, Some("+02:00".into()))).unwrap(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(delta_type(&DataType::LargeUtf8).unwrap(), DataType::Utf8);
        assert_eq!(delta_type(&DataType::Decimal256(50, 2)).unwrap(), DataType::Utf8);
    }

    #[test]
    fn new_columns_go_last_and_missing_ones_are_null() {
        let table = schema(&[("id", DataType::Int64), ("name", DataType::Utf8)]);
        let source = schema(&[("email", DataType::Utf8), ("id", DataType::Int32)]);
        let plan = WritePlan::new(Some(&table), &source).unwrap();
        let names: Vec<_> = plan.schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "name", "email"]);
        assert_eq!(plan.new_columns, ["email"]);
        assert_eq!(plan.missing_columns, ["name"]);

        let batch = RecordBatch::try_new(
            Arc::new(source),
            vec![Arc::new(StringArray::from(vec!["a@x"])), Arc::new(Int32Array::from(vec![7]))],
        )
        .unwrap();
        let out = conform(&batch, &plan.schema, &mut 0).unwrap();
        assert_eq!(out.column(0).data_type(), &DataType::Int64);
        assert_eq!(out.column(1).null_count(), 1);
    }

    #[test]
    fn list_item_names_and_nullability_do_not_matter() {
        let item = |name: &str, nullable: bool| Arc::new(Field::new(name, DataType::Utf8, nullable));
        let table = schema(&[("tags", DataType::List(item("element", true)))]);
        let source = schema(&[("tags", DataType::List(item("item", false)))]);
        let plan = WritePlan::new(Some(&table), &source).unwrap();
        assert!(plan.new_columns.is_empty() && plan.missing_columns.is_empty());
        let other = schema(&[("tags", DataType::List(Arc::new(Field::new("item", DataType::Int64, true))))]);
        assert!(WritePlan::new(Some(&table), &other).is_err());
    }

    #[test]
    fn an_incompatible_change_names_the_column() {
        let table = schema(&[("amount", DataType::Int64)]);
        let source = schema(&[("amount", DataType::Utf8)]);
        let err = WritePlan::new(Some(&table), &source).unwrap_err().to_string();
        assert!(err.contains("column `amount` is Int64 in the Delta table but Utf8 in the source"), "{err}");
    }

    #[test]
    fn unsigned_values_survive() {
        let s = Arc::new(schema(&[("n", DataType::UInt64)]));
        let batch = RecordBatch::try_new(s.clone(), vec![Arc::new(UInt64Array::from(vec![u64::MAX]))]).unwrap();
        let plan = WritePlan::new(None, &s).unwrap();
        let out = conform(&batch, &plan.schema, &mut 0).unwrap();
        assert_eq!(arrow::util::display::array_value_to_string(out.column(0), 0).unwrap(), "18446744073709551615");
    }
}
