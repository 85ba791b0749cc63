//! PostgreSQL types → Arrow, exactly.
//!
//! Each column is read in one of two ways. The common types are decoded from
//! their binary COPY form straight into Arrow builders. Every other type is
//! selected as its text (`col::text`: the server's own rendering, which its
//! input function reads back exactly) and kept as Utf8, tagged with the
//! declared type, so a PostgreSQL destination recreates the column with that
//! type and casts the text back: a table copied PostgreSQL → PostgreSQL equals
//! its source, type for type.
//!
//! | PostgreSQL | Arrow | note |
//! | --- | --- | --- |
//! | `boolean` | Boolean | |
//! | `smallint`, `integer`, `bigint` | Int16, Int32, Int64 | |
//! | `real`, `double precision` | Float32, Float64 | NaN, ±Infinity, -0.0 kept |
//! | `numeric(p,s)`, p ≤ 38 | Decimal128(p,s) | NaN or ±Infinity fails naming the row |
//! | `numeric`, `numeric(p,s)` p > 38 | Utf8, the exact digits (`NaN` too) | tagged `numeric` |
//! | `text`, `varchar(n)`, `char(n)`, `name`, enums | Utf8 | tagged with the declared type |
//! | `bytea` | Binary | |
//! | `date` | Date32 | ±infinity fails naming the row |
//! | `time` | Time64(µs) | |
//! | `timestamp`, `timestamptz` | Timestamp(µs), Timestamp(µs, UTC) | ±infinity fails naming the row |
//! | `uuid` | Utf8 (`8-4-4-4-12` hex) | tagged `uuid` |
//! | `json`, `jsonb` | Utf8 tagged `arrow.json` | |
//! | one-dimensional arrays of the above | List | more dimensions fail naming the row |
//! | anything else (`interval`, `timetz`, `inet`, `cidr`, `macaddr`, `money`, `xml`, `bit`, ranges, …) | Utf8, the server's text | tagged with the declared type |
//!
//! Domains read as their base type.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};

/// Field metadata: the column's declared PostgreSQL type (`format_type`), for a
/// PostgreSQL destination to recreate it.
pub const PG_TYPE_KEY: &str = "weir:pg_type";

/// How a column's values are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// A `numeric` whose precision Decimal128 holds.
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// Text in the binary form: `text`, `varchar`, `bpchar`, `name`, enums,
    /// and every type selected as `::text`.
    Text,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    /// `jsonb`: a version byte, then the text.
    Jsonb,
    Array(Box<Kind>),
}

/// A column as the source reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    /// The declared type, as `format_type` prints it (`character varying(20)`, `inet[]`).
    pub pg_type: String,
    /// The declared type is read as its text (`col::text`): see the module's table.
    pub as_text: bool,
}

/// Well-known type OIDs (pg_type.dat).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// What the catalog says of a column's type, domains already resolved to their base.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    pub oid: u32,
    /// `atttypmod` (or the domain's `typtypmod`): `numeric`'s precision and scale.
    pub typmod: i32,
    /// `e` for an enum.
    pub typtype: String,
    /// For an array: its element type's OID, and whether that is an enum.
    pub element: Option<(u32, String)>,
}

/// The kind a scalar type reads as, if it is decoded from its binary form.
fn scalar(oid: u32, typmod: i32, typtype: &str) -> Option<Kind> {
    Some(match oid {
        oid::BOOL => Kind::Bool,
        oid::INT2 => Kind::Int2,
        oid::INT4 => Kind::Int4,
        oid::INT8 => Kind::Int8,
        oid::FLOAT4 => Kind::Float4,
        oid::FLOAT8 => Kind::Float8,
        oid::NUMERIC => {
            // typmod = ((precision << 16) | scale) + 4; -1 when unconstrained.
            let (precision, scale) = (((typmod - 4) >> 16) & 0xffff, (typmod - 4) & 0xffff);
            if typmod < 4 || !(1..=38).contains(&precision) {
                return None;
            }
            // The scale is 11 bits, signed (PostgreSQL 15 allows -1000..1000).
            let scale = if scale > 1000 { scale - 2048 } else { scale };
            Kind::Decimal { precision: precision as u8, scale: i8::try_from(scale).ok()? }
        }
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME => Kind::Text,
        oid::BYTEA => Kind::Bytea,
        oid::DATE => Kind::Date,
        oid::TIME => Kind::Time,
        oid::TIMESTAMP => Kind::Timestamp,
        oid::TIMESTAMPTZ => Kind::TimestampTz,
        oid::UUID => Kind::Uuid,
        oid::JSON => Kind::Json,
        oid::JSONB => Kind::Jsonb,
        _ if typtype == "e" => Kind::Text,
        _ => return None,
    })
}

impl Column {
    /// How a column of this type is read.
    pub fn new(name: String, pg_type: String, info: &TypeInfo) -> Self {
        let (kind, as_text) = match &info.element {
            Some((element, typtype)) => match scalar(*element, info.typmod, typtype) {
                Some(kind) => (Kind::Array(Box::new(kind)), false),
                None => (Kind::Array(Box::new(Kind::Text)), true),
            },
            None => match scalar(info.oid, info.typmod, &info.typtype) {
                Some(kind) => (kind, false),
                None => (Kind::Text, true),
            },
        };
        Self { name, kind, pg_type, as_text }
    }

    /// The Arrow field this column is read as.
    pub fn field(&self) -> Field {
        let metadata = HashMap::from([(PG_TYPE_KEY.to_owned(), self.pg_type.clone())]);
        let field = Field::new(&self.name, arrow_type(&self.kind), true).with_metadata(metadata);
        match self.kind {
            Kind::Json | Kind::Jsonb => weir_core::json::json_field(field),
            _ => field,
        }
    }

    /// The column in the `SELECT` a COPY reads: itself, or its text.
    pub fn select(&self) -> String {
        let name = quote(&self.name);
        match (&self.kind, self.as_text) {
            (Kind::Array(_), true) => format!("{name}::text[]"),
            (_, true) => format!("{name}::text"),
            _ => name,
        }
    }

    /// Whether a key range can be cut on this column.
    pub fn is_integer(&self) -> bool {
        matches!(self.kind, Kind::Int2 | Kind::Int4 | Kind::Int8)
    }
}

pub fn arrow_type(kind: &Kind) -> DataType {
    match kind {
        Kind::Bool => DataType::Boolean,
        Kind::Int2 => DataType::Int16,
        Kind::Int4 => DataType::Int32,
        Kind::Int8 => DataType::Int64,
        Kind::Float4 => DataType::Float32,
        Kind::Float8 => DataType::Float64,
        Kind::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
        Kind::Text | Kind::Uuid | Kind::Json | Kind::Jsonb => DataType::Utf8,
        Kind::Bytea => DataType::Binary,
        Kind::Date => DataType::Date32,
        Kind::Time => DataType::Time64(TimeUnit::Microsecond),
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Kind::Array(item) => DataType::List(Arc::new(Field::new("item", arrow_type(item), true))),
    }
}

pub use weir_core::quote_ident as quote;

#[cfg(test)]
mod tests {
    use super::*;

    fn info(oid: u32, typmod: i32) -> TypeInfo {
        TypeInfo { oid, typmod, typtype: "b".into(), element: None }
    }

    #[test]
    fn numerics_decode_as_decimals_only_where_decimal128_holds_them() {
        let col = |typmod| Column::new("n".into(), "numeric".into(), &info(oid::NUMERIC, typmod));
        assert_eq!(col((12 << 16 | 2) + 4).kind, Kind::Decimal { precision: 12, scale: 2 });
        assert!(col(-1).as_text, "unconstrained numeric reads as its exact text");
        assert!(col((50 << 16 | 10) + 4).as_text);
    }

    #[test]
    fn other_types_read_as_their_text_and_keep_the_declared_type() {
        let inet = Column::new("ip".into(), "inet".into(), &info(869, -1));
        assert!(inet.as_text);
        assert_eq!(inet.select(), "\"ip\"::text");
        assert_eq!(inet.field().metadata()[PG_TYPE_KEY], "inet");
        let arr = Column::new(
            "ips".into(),
            "inet[]".into(),
            &TypeInfo { oid: 1041, typmod: -1, typtype: "b".into(), element: Some((869, "b".into())) },
        );
        assert_eq!(arr.select(), "\"ips\"::text[]");
        assert_eq!(arr.kind, Kind::Array(Box::new(Kind::Text)));
    }
}
