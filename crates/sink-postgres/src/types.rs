//! Arrow ↔ PostgreSQL types: what a new column is created as, what an existing
//! column accepts, and how a batch is converted before binary COPY.
//!
//! Binary COPY sends each value in the exact binary format of the column's type,
//! so every column is cast to the Arrow type whose encoding matches it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Field, FieldRef, Schema, SchemaRef, Time64MicrosecondType, TimeUnit,
    TimestampMicrosecondType,
};
use pgpq::ArrowToPostgresBinaryEncoder;
use pgpq::encoders::{EncoderBuilder, StringEncoderBuilder};
use pgpq::pg_schema::PostgresType;
use weir_core::narrow::{self, counts as narrow_counts};
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
    /// The value arrives as its text (or an array of texts) and the server
    /// casts it to `pg_type`: the column's declared type, which no binary
    /// encoding here writes (`inet`, `interval`, `uuid`, an unconstrained `numeric`…).
    pub cast: bool,
}

/// Field metadata a source sets with the column's declared PostgreSQL type (a
/// PostgreSQL source does): a new column is created with that type, so a table
/// copied from PostgreSQL keeps its types.
pub const PG_TYPE_KEY: &str = "weir:pg_type";

/// The built-in types a declared type may name (enums, domains and other
/// user-defined types would not exist in the destination).
const BUILTIN_TYPES: &[&str] = &[
    "smallint",
    "integer",
    "bigint",
    "real",
    "double precision",
    "numeric",
    "boolean",
    "text",
    "character varying",
    "character",
    "name",
    "bytea",
    "date",
    "time without time zone",
    "time with time zone",
    "timestamp without time zone",
    "timestamp with time zone",
    "interval",
    "uuid",
    "json",
    "jsonb",
    "inet",
    "cidr",
    "macaddr",
    "macaddr8",
    "money",
    "xml",
    "bit",
    "bit varying",
    "oid",
    "point",
    "line",
    "lseg",
    "box",
    "path",
    "polygon",
    "circle",
    "tsvector",
    "tsquery",
    "int4range",
    "int8range",
    "numrange",
    "tsrange",
    "tstzrange",
    "daterange",
    "pg_lsn",
];

/// A type in one spelling: no type modifiers, the long names (`timestamptz` →
/// `timestamp with time zone`), and how many array dimensions it has.
fn canonical(pg: &str) -> (String, usize) {
    let mut text = pg.trim().to_ascii_lowercase();
    let mut dims = 0;
    while let Some(stripped) = text.strip_suffix("[]") {
        text = stripped.trim_end().to_owned();
        dims += 1;
    }
    let mut base = String::with_capacity(text.len());
    let mut depth = 0;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => base.push(c),
            _ => {}
        }
    }
    let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
    let long = match base.as_str() {
        "timestamptz" => "timestamp with time zone",
        "timestamp" => "timestamp without time zone",
        "timetz" => "time with time zone",
        "time" => "time without time zone",
        "int2" => "smallint",
        "int4" | "int" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "bool" => "boolean",
        "varchar" => "character varying",
        "char" | "bpchar" => "character",
        other if other.starts_with("interval") => "interval",
        other => other,
    };
    (long.to_owned(), dims)
}

/// The declared PostgreSQL type of `field`, if a source gave one and it is a built-in type.
fn declared_type(field: &Field) -> Option<&str> {
    let declared = field.metadata().get(PG_TYPE_KEY)?;
    let safe = declared.chars().all(|c| c.is_ascii_alphanumeric() || " _(),[]".contains(c));
    (safe && BUILTIN_TYPES.contains(&canonical(declared).0.as_str())).then_some(declared.as_str())
}

/// Whether values encoded for `default` (the type Weir would pick) are valid
/// binary input for `declared`: the same type, or text for any text type.
fn same_encoding(declared: &str, default: &str) -> bool {
    let text = |t: &str| matches!(t, "text" | "character varying" | "character" | "name");
    let ((d, d_dims), (f, f_dims)) = (canonical(declared), canonical(default));
    d_dims == f_dims && (d == f || (text(&d) && text(&f)))
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
        // pgpq encodes numerics up to 38 digits: wider ones are their exact digits as text.
        Decimal256(_, _) => t("text", Utf8),
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

/// The plan for a column of a table Weir creates.
pub fn new_column(field: &Field) -> ColumnPlan {
    let plan = |pg_type: &str, arrow: DataType, json: Option<JsonKind>| ColumnPlan {
        name: field.name().clone(),
        pg_type: pg_type.to_owned(),
        arrow,
        json,
        to_json: false,
        cast: false,
    };
    let declared = declared_type(field);
    if weir_core::json::is_json_field(field) {
        return match declared.map(|d| canonical(d).0) {
            Some(json) if json == "json" => plan("json", DataType::Utf8, Some(JsonKind::Json)),
            _ => plan("jsonb", DataType::Utf8, Some(JsonKind::Jsonb)),
        };
    }
    let Some((pg_type, arrow)) = default_type(field.data_type()) else {
        return ColumnPlan { to_json: true, ..plan("jsonb", DataType::Utf8, Some(JsonKind::Jsonb)) };
    };
    let text = matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    match declared {
        Some(declared) if same_encoding(declared, &pg_type) => plan(declared, arrow, None),
        // A uuid's binary form is its 16 bytes: parsed here, it needs no cast on the server.
        Some(declared) if text && canonical(declared) == ("uuid".to_owned(), 0) => {
            plan(declared, DataType::FixedSizeBinary(16), None)
        }
        Some(declared) if matches!(canonical(&pg_type), (t, _) if t == "text") => {
            ColumnPlan { cast: true, ..plan(declared, arrow, None) }
        }
        _ => plan(&pg_type, arrow, None),
    }
}

/// The plan for writing `field` into an existing column of type `existing`
/// (as `format_type` prints it), or an error naming the column when the
/// source type cannot be written there without loss.
pub fn existing_column(field: &Field, existing: &str) -> Result<ColumnPlan> {
    let fresh = new_column(field);
    // A column of the type the source declared takes the value as a new one would.
    if declared_type(field).is_some() && canonical(&fresh.pg_type) == canonical(existing) {
        return Ok(ColumnPlan { pg_type: existing.to_owned(), ..fresh });
    }
    let base = base_type(existing);
    let source = unwrap_dictionary(field.data_type());
    let plan = |arrow: DataType, json: Option<JsonKind>| ColumnPlan {
        name: field.name().clone(),
        pg_type: existing.to_owned(),
        arrow,
        json,
        to_json: fresh.to_json,
        cast: false,
    };
    if let Some(json) = match base {
        "jsonb" => Some(JsonKind::Jsonb),
        "json" => Some(JsonKind::Json),
        _ => None,
    } && (fresh.to_json || matches!(source, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
    {
        return Ok(plan(DataType::Utf8, Some(json)));
    }
    // JSON text into a text column: the text as it is.
    if fresh.json.is_some() && !fresh.to_json && matches!(base, "text" | "character varying") {
        return Ok(ColumnPlan { json: None, ..plan(DataType::Utf8, None) });
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
    /// Values written with fewer digits or in another form, by `audit.details` key.
    counts: BTreeMap<&'static str, u64>,
    /// The columns that are arrays of `timestamptz` (see [`patch_element_oids`]).
    timestamptz_arrays: Vec<usize>,
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
        // By the column's type: a list with a time zone may go into a `timestamp[]` column, and one without into `timestamptz[]`.
        let timestamptz_arrays = plans
            .iter()
            .enumerate()
            .filter(|(_, p)| p.pg_type.strip_suffix("[]").is_some_and(|element| base_type(element) == "timestamptz"))
            .map(|(i, _)| i)
            .collect();
        Ok(Self { plans, schema, encoder, constant, counts: BTreeMap::new(), timestamptz_arrays })
    }

    pub fn plans(&self) -> &[ColumnPlan] {
        &self.plans
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
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (plan, column) in self.plans.iter().zip(batch.columns()) {
            columns.push(convert(plan, column, &mut self.counts)?);
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
        let start = out.len();
        self.encoder.write_batch(&converted, out).map_err(encode_error)?;
        if !self.timestamptz_arrays.is_empty() {
            patch_element_oids(&mut out[start..], batch.num_rows(), &self.timestamptz_arrays, TIMESTAMPTZ_OID)?;
        }
        Ok(())
    }

    /// What the conversions changed so far, for `audit.details`.
    pub fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts
    }
}

const TIMESTAMPTZ_OID: u32 = 1184;

/// pgpq encodes every timestamp as `timestamp` (OID 1114). In a scalar column
/// that is harmless (binary COPY names no types), but an array value carries
/// its element type's OID, and the server refuses a `timestamp` array for a
/// `timestamptz[]` column. So the OIDs of those arrays are rewritten in the
/// rows just encoded: each row is a field count, then per field a length
/// (-1 for NULL) and the value; an array value starts with its dimension
/// count, a flags word and the element OID.
fn patch_element_oids(rows: &mut [u8], count: usize, columns: &[usize], oid: u32) -> Result<()> {
    let broken = || Error::internal("COPY data for an array of timestamptz is not laid out as expected");
    let read_i32 = |buf: &[u8], at: usize| -> Result<i32> {
        buf.get(at..at + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(broken)
    };
    let mut pos = 0;
    for _ in 0..count {
        let fields = rows.get(pos..pos + 2).map(|b| i16::from_be_bytes([b[0], b[1]])).ok_or_else(broken)?;
        pos += 2;
        for field in 0..usize::try_from(fields).map_err(|_| broken())? {
            let len = read_i32(rows, pos)?;
            pos += 4;
            let Ok(len) = usize::try_from(len) else { continue };
            if columns.contains(&field) {
                let at = pos + 8;
                rows.get_mut(at..at + 4).ok_or_else(broken)?.copy_from_slice(&oid.to_be_bytes());
            }
            pos += len;
        }
    }
    Ok(())
}

/// One source column as the Arrow type its PostgreSQL column is encoded from.
/// Values PostgreSQL cannot hold fail naming the column; values it holds with
/// fewer digits are counted.
fn convert(plan: &ColumnPlan, column: &ArrayRef, counts: &mut BTreeMap<&'static str, u64>) -> Result<ArrayRef> {
    let mut add = |key: &'static str, n: u64| {
        if n > 0 {
            *counts.entry(key).or_default() += n;
        }
    };
    if plan.to_json {
        let (json, found) = weir_core::json::encode_column(column.as_ref(), &plan.name)?;
        if found.nul_chars > 0 {
            return Err(nul_error(&plan.name));
        }
        add(narrow_counts::JSON_SPECIAL_FLOATS, found.special_floats);
        add(narrow_counts::JSON_DUPLICATE_MAP_KEYS, found.duplicate_map_keys);
        return Ok(json);
    }
    if let Some(kind) = plan.json {
        return json_text(column, &plan.name, kind, &mut add);
    }
    let (column, lost) = narrow::to_microseconds(column, &plan.name)?;
    add(narrow_counts::TRUNCATED_NANOSECONDS, lost);
    check_holds(&column, &plan.name)?;
    if column.data_type() == &plan.arrow {
        return Ok(column);
    }
    if plan.arrow == DataType::FixedSizeBinary(16) && column.data_type() == &DataType::Utf8 {
        return uuid_bytes(&column, &plan.name);
    }
    let options = CastOptions { safe: false, ..Default::default() };
    cast_with_options(&column, &plan.arrow, &options).map_err(|e| {
        Error::user(format!("column `{}`: a value cannot be written as {} ({e})", plan.name, plan.pg_type))
    })
}

/// JSON text for a `json`/`jsonb` column. `jsonb` keeps numbers as `numeric`,
/// which has no negative zero: there they are written as the string `"-0.0"`
/// and counted. A `json` column keeps the text as it is.
fn json_text(
    column: &ArrayRef,
    name: &str,
    kind: JsonKind,
    add: &mut impl FnMut(&'static str, u64),
) -> Result<ArrayRef> {
    let options = CastOptions { safe: false, ..Default::default() };
    let text = cast_with_options(column, &DataType::Utf8, &options)
        .map_err(|e| Error::user(format!("column `{name}`: a value cannot be written as JSON text ({e})")))?;
    check_holds(&text, name)?;
    if kind == JsonKind::Json {
        return Ok(text);
    }
    let strings = text.as_string::<i32>();
    if !strings.iter().flatten().any(|s| weir_core::json::rewrite_negative_zeros(s).is_some()) {
        return Ok(text);
    }
    let mut rewritten = 0;
    let out: arrow::array::StringArray = strings
        .iter()
        .map(|s| {
            s.map(|s| match weir_core::json::rewrite_negative_zeros(s) {
                Some((new, n)) => {
                    rewritten += n;
                    new
                }
                None => s.to_owned(),
            })
        })
        .collect();
    add(narrow_counts::JSON_SPECIAL_FLOATS, rewritten);
    Ok(Arc::new(out))
}

/// Canonical uuid text (`a0eebc99-9c0b-…`, braces and hyphens optional) as its 16 bytes.
fn uuid_bytes(column: &ArrayRef, name: &str) -> Result<ArrayRef> {
    let strings = column.as_string::<i32>();
    let mut out = arrow::array::FixedSizeBinaryBuilder::with_capacity(strings.len(), 16);
    let mut bytes = [0u8; 16];
    for value in strings.iter() {
        let Some(text) = value else {
            out.append_null();
            continue;
        };
        let hex: Vec<u8> = text.bytes().filter(|b| !matches!(b, b'-' | b'{' | b'}')).collect();
        let parsed = hex.len() == 32
            && hex.chunks(2).zip(bytes.iter_mut()).all(|(pair, byte)| {
                std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok()).map(|b| *byte = b).is_some()
            });
        if !parsed {
            return Err(Error::user(format!("column `{name}`: `{text}` is not a uuid")));
        }
        out.append_value(bytes)?;
    }
    Ok(Arc::new(out.finish()))
}

/// PostgreSQL's limits on values: a `text` or `bytea` field holds at most 1 GB
/// and no U+0000; a date or timestamp starts at 4713 BC; a time is a time of day.
fn check_holds(column: &ArrayRef, name: &str) -> Result<()> {
    const MAX_FIELD: usize = 0x3FFF_FFFF;
    // Days and microseconds from 1970 of PostgreSQL's first date and timestamp (4713-11-24 BC).
    const MIN_DATE: i32 = -2_440_588;
    const END_DATE: i32 = 2_145_042_906;
    const MIN_TIMESTAMP: i64 = -210_866_803_200_000_000;
    let too_long = |len: usize| {
        Error::user(format!(
            "column `{name}`: a value of {len} bytes is larger than the 1 GB PostgreSQL allows in one field; \
             leave the column out, or load it into Delta"
        ))
    };
    let first_bad = |ok: &dyn Fn(usize) -> bool, len: usize| (0..len).find(|&i| column.is_valid(i) && !ok(i));
    match column.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            for value in string_values(column).into_iter().flatten() {
                if value.len() > MAX_FIELD {
                    return Err(too_long(value.len()));
                }
                if value.as_bytes().contains(&0) {
                    return Err(nul_error(name));
                }
            }
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            let longest = (0..column.len()).map(|i| binary_len(column, i)).max().unwrap_or(0);
            if longest > MAX_FIELD {
                return Err(too_long(longest));
            }
        }
        DataType::Date32 => {
            let days = column.as_primitive::<Date32Type>();
            if let Some(i) = first_bad(&|i| (MIN_DATE..END_DATE).contains(&days.value(i)), column.len()) {
                return Err(out_of_range(name, "date", &value_text(column, i), "4713 BC to 5874897 AD"));
            }
        }
        DataType::Date64 => {
            let ms = column.as_primitive::<Date64Type>();
            let ok = |i: usize| {
                let v = ms.value(i);
                v.rem_euclid(86_400_000) == 0
                    && (i64::from(MIN_DATE)..i64::from(END_DATE)).contains(&v.div_euclid(86_400_000))
            };
            if let Some(i) = first_bad(&ok, column.len()) {
                return Err(out_of_range(name, "date", &value_text(column, i), "whole days, 4713 BC to 5874897 AD"));
            }
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let us = column.as_primitive::<TimestampMicrosecondType>();
            if let Some(i) = first_bad(&|i| us.value(i) >= MIN_TIMESTAMP, column.len()) {
                return Err(out_of_range(name, "timestamp", &value_text(column, i), "4713 BC to 294276 AD"));
            }
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            let us = column.as_primitive::<Time64MicrosecondType>();
            if let Some(i) = first_bad(&|i| (0..=86_400_000_000).contains(&us.value(i)), column.len()) {
                return Err(out_of_range(name, "time", &us.value(i).to_string(), "00:00:00 to 24:00:00"));
            }
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            check_holds(&list_values(column), name)?;
        }
        // The dictionary's values (a value no row uses is checked too).
        DataType::Dictionary(_, _) => check_holds(column.as_any_dictionary().values(), name)?,
        _ => {}
    }
    Ok(())
}

fn string_values(column: &ArrayRef) -> Vec<Option<&str>> {
    match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => column.as_string::<i64>().iter().collect(),
        _ => column.as_string_view().iter().collect(),
    }
}

fn binary_len(column: &ArrayRef, i: usize) -> usize {
    match column.data_type() {
        DataType::Binary => column.as_binary::<i32>().value_length(i) as usize,
        DataType::LargeBinary => column.as_binary::<i64>().value_length(i) as usize,
        DataType::BinaryView => column.as_binary_view().value(i).len(),
        _ => column.as_fixed_size_binary().value_length() as usize,
    }
}

/// The items of every list of a list column.
fn list_values(column: &ArrayRef) -> ArrayRef {
    match column.data_type() {
        DataType::List(_) => column.as_list::<i32>().values().clone(),
        DataType::LargeList(_) => column.as_list::<i64>().values().clone(),
        _ => column.as_fixed_size_list().values().clone(),
    }
}

fn value_text(column: &ArrayRef, i: usize) -> String {
    arrow::util::display::array_value_to_string(column, i).unwrap_or_else(|_| "?".to_owned())
}

fn out_of_range(name: &str, what: &str, value: &str, range: &str) -> Error {
    Error::user(format!(
        "column `{name}`: the value {value} is outside PostgreSQL's {what} range ({range}); \
         fix it in the source, or load the column into Delta"
    ))
}

fn nul_error(name: &str) -> Error {
    Error::user(format!(
        "column `{name}`: a value holds the character U+0000, which PostgreSQL cannot store in text or jsonb; \
         remove it in the source, or load the column as binary"
    ))
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
    fn structs_become_json_text_with_their_nulls() {
        use arrow::array::{Int32Array, StructArray};
        let s = StructArray::from(vec![(
            Arc::new(f("a", DataType::Int32)),
            Arc::new(Int32Array::from(vec![Some(1), None])) as ArrayRef,
        )]);
        let plan = new_column(&f("s", s.data_type().clone()));
        let mut counts = BTreeMap::new();
        let json = convert(&plan, &(Arc::new(s) as ArrayRef), &mut counts).unwrap();
        let json = json.as_string::<i32>();
        assert_eq!(json.value(0), r#"{"a":1}"#);
        assert_eq!(json.value(1), r#"{"a":null}"#);
    }

    #[test]
    fn values_postgres_cannot_hold_fail_naming_the_column() {
        use arrow::array::{Date32Array, StringArray, TimestampNanosecondArray};
        let mut counts = BTreeMap::new();
        let text: ArrayRef = Arc::new(StringArray::from(vec!["a\0b"]));
        let err = convert(&new_column(&f("note", DataType::Utf8)), &text, &mut counts).unwrap_err().to_string();
        assert!(err.contains("column `note`") && err.contains("U+0000"), "{err}");
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![i32::MIN]));
        let err = convert(&new_column(&f("d", DataType::Date32)), &dates, &mut counts).unwrap_err().to_string();
        assert!(err.contains("column `d`") && err.contains("date range"), "{err}");
        let ns: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![1_001, 2_000]));
        let plan = new_column(&f("t", ns.data_type().clone()));
        convert(&plan, &ns, &mut counts).unwrap();
        assert_eq!(counts.get("truncated_nanoseconds"), Some(&1));
    }
}
