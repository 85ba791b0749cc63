//! MySQL / MariaDB column types and the Arrow type each one is read as.
//!
//! Types come from the server's own description of the column (`COLUMN_TYPE`
//! in `information_schema.COLUMNS`, e.g. `decimal(12,2) unsigned`), not from
//! the wire protocol, which drops precision, scale and fractional seconds.
//!
//! | MySQL | Arrow | notes |
//! | --- | --- | --- |
//! | `TINYINT(1)`, `BOOL` | Boolean | a value other than 0 or 1 is an error naming the row |
//! | `TINYINT`, `SMALLINT`, `MEDIUMINT`, `INT`, `BIGINT` | Int8, Int16, Int32, Int32, Int64 | |
//! | … `UNSIGNED` | UInt8, UInt16, UInt32, UInt32, UInt64 | `BIGINT UNSIGNED` keeps all 64 bits |
//! | `DECIMAL(p,s)`, p ≤ 38 | Decimal128(p,s) | exact |
//! | `DECIMAL(p,s)`, p > 38 | Utf8 | exact digits as text: no Arrow sink takes wider decimals |
//! | `FLOAT`, `DOUBLE` | Float32, Float64 | |
//! | `BIT(1)` / `BIT(2..63)` / `BIT(64)` | Boolean / Int64 / UInt64 | |
//! | `DATE` | Date32 | zero dates (`0000-00-00`, a zero month or day) → NULL, counted |
//! | `DATETIME(fsp)` | Timestamp(µs) | wall-clock time, no zone; zero → NULL, counted |
//! | `TIMESTAMP(fsp)` | Timestamp(µs, UTC) | read in a `+00:00` session, so the instant is exact |
//! | `TIME(fsp)` | Time64(µs) | a time of day; negative or ≥ 24 h values are an error naming the row |
//! | `YEAR` | Int16 | |
//! | `CHAR`, `VARCHAR`, `*TEXT`, `ENUM` | Utf8 | read as utf8mb4 (emoji intact) |
//! | `SET` | List(Utf8) | `'a,b'` → `["a", "b"]` |
//! | `BINARY`, `VARBINARY`, `*BLOB` | Binary | the exact bytes |
//! | spatial types | Binary WKB (or Utf8 WKT), and a UInt32 `<column>_srid` | `options.geometry` |
//! | `JSON` | Utf8 tagged `arrow.json` | MariaDB's `JSON` (`LONGTEXT` + `json_valid` check) too |

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};
use weir_core::{Error, Result};

/// Precision an Arrow `Decimal128` holds.
const DECIMAL128_MAX_PRECISION: u8 = 38;

/// A column type as the server declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MysqlType {
    /// `TINYINT(1)` / `BOOL`.
    Bool,
    /// Storage bytes (1, 2, 3, 4, 8) and signedness.
    Int {
        bytes: u8,
        unsigned: bool,
    },
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: i8,
    },
    Bit {
        width: u8,
    },
    Date,
    Datetime,
    Timestamp,
    Time,
    Year,
    /// Character data: `CHAR`, `VARCHAR`, `*TEXT`, `ENUM`.
    Text,
    Set,
    /// Byte strings: `BINARY`, `VARBINARY`, `*BLOB`.
    Bytes,
    Json,
    /// Spatial types (`GEOMETRY`, `POINT`, …), read in `options.geometry`'s form.
    Geometry(GeometryForm),
}

/// What a spatial column is loaded as (`options.geometry`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeometryForm {
    /// Standard (OGC) WKB, and the SRID in a `<column>_srid` column beside it.
    #[default]
    Wkb,
    /// Well-known text, and the SRID in a `<column>_srid` column beside it.
    Wkt,
    /// MySQL's own bytes: a 4-byte little-endian SRID, then WKB.
    Internal,
}

/// The name of the column that holds a spatial column's SRID.
pub fn srid_column(name: &str) -> String {
    format!("{name}_srid")
}

impl MysqlType {
    /// Parse a `COLUMN_TYPE` (`int(10) unsigned`, `decimal(65,30)`, `enum('a','b')`).
    pub fn parse(column_type: &str) -> Result<Self> {
        let lower = column_type.trim().to_ascii_lowercase();
        let unsigned = lower.contains(" unsigned");
        let (base, args) = match lower.find('(') {
            Some(open) => (&lower[..open], lower[open + 1..].split(')').next().unwrap_or_default()),
            None => (lower.split_whitespace().next().unwrap_or_default(), ""),
        };
        let numbers: Vec<u32> = args.split(',').filter_map(|a| a.trim().parse().ok()).collect();
        let first = numbers.first().copied();
        use MysqlType::*;
        let int = |bytes| Int { bytes, unsigned };
        Ok(match base.trim() {
            "tinyint" if first == Some(1) && !unsigned => Bool,
            "bool" | "boolean" => Bool,
            "tinyint" => int(1),
            "smallint" => int(2),
            "mediumint" => int(3),
            "int" | "integer" => int(4),
            "bigint" => int(8),
            "float" => Float,
            "double" | "real" | "double precision" => Double,
            "decimal" | "numeric" | "dec" | "fixed" => Decimal {
                // MySQL's defaults: DECIMAL = DECIMAL(10,0).
                precision: first.unwrap_or(10).min(u8::MAX as u32) as u8,
                scale: numbers.get(1).copied().unwrap_or(0).min(i8::MAX as u32) as i8,
            },
            "bit" => Bit { width: first.unwrap_or(1).min(64) as u8 },
            "date" => Date,
            "datetime" => Datetime,
            "timestamp" => Timestamp,
            "time" => Time,
            "year" => Year,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "nchar" | "nvarchar"
            | "uuid" | "inet4" | "inet6" => Text,
            "set" => Set,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => Bytes,
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
            | "geometrycollection" | "geomcollection" => Geometry(GeometryForm::Wkb),
            "json" => Json,
            other => {
                return Err(Error::user(format!(
                    "MySQL type `{column_type}` is not supported ({other}); cast it in options.query"
                )));
            }
        })
    }

    /// The Arrow type this column is read as.
    pub fn arrow(&self) -> DataType {
        use MysqlType::*;
        match *self {
            Bool => DataType::Boolean,
            Int { bytes: 1, unsigned: false } => DataType::Int8,
            Int { bytes: 1, unsigned: true } => DataType::UInt8,
            Int { bytes: 2, unsigned: false } => DataType::Int16,
            Int { bytes: 2, unsigned: true } => DataType::UInt16,
            Int { bytes: 3 | 4, unsigned: false } => DataType::Int32,
            Int { bytes: 3 | 4, unsigned: true } => DataType::UInt32,
            Int { unsigned: false, .. } => DataType::Int64,
            Int { unsigned: true, .. } => DataType::UInt64,
            Float => DataType::Float32,
            Double => DataType::Float64,
            Decimal { precision, scale } if precision <= DECIMAL128_MAX_PRECISION => {
                DataType::Decimal128(precision.max(1), scale)
            }
            Decimal { .. } => DataType::Utf8,
            Bit { width: 1 } => DataType::Boolean,
            Bit { width: 64 } => DataType::UInt64,
            Bit { .. } => DataType::Int64,
            Date => DataType::Date32,
            Datetime => DataType::Timestamp(TimeUnit::Microsecond, None),
            Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Time => DataType::Time64(TimeUnit::Microsecond),
            Year => DataType::Int16,
            Text | Json => DataType::Utf8,
            Set => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            Bytes | Geometry(GeometryForm::Wkb | GeometryForm::Internal) => DataType::Binary,
            Geometry(GeometryForm::Wkt) => DataType::Utf8,
        }
    }

    /// The Arrow fields a column of this type becomes: itself, and for a
    /// spatial column in WKB or WKT its SRID beside it.
    pub fn fields(&self, name: &str) -> Vec<Field> {
        match self {
            MysqlType::Geometry(GeometryForm::Wkb | GeometryForm::Wkt) => {
                vec![self.field(name), Field::new(srid_column(name), DataType::UInt32, true)]
            }
            _ => vec![self.field(name)],
        }
    }

    /// The Arrow field for a column of this type. Every field is nullable: a
    /// zero date reads as NULL even in a `NOT NULL` column.
    pub fn field(&self, name: &str) -> Field {
        let field = Field::new(name, self.arrow(), true);
        match self {
            MysqlType::Json => weir_core::json::json_field(field),
            _ => field,
        }
    }

    /// Whether a zero value of this type (`0000-00-00`) is read as NULL.
    pub fn has_zero_dates(&self) -> bool {
        matches!(self, MysqlType::Date | MysqlType::Datetime | MysqlType::Timestamp)
    }

    /// Whether this is an integer a key range can be split on.
    pub fn is_integer(&self) -> bool {
        matches!(self, MysqlType::Int { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_column_types() {
        use MysqlType::*;
        let cases = [
            ("tinyint(1)", Bool),
            ("tinyint(4)", Int { bytes: 1, unsigned: false }),
            ("tinyint(3) unsigned", Int { bytes: 1, unsigned: true }),
            ("bigint(20) unsigned zerofill", Int { bytes: 8, unsigned: true }),
            ("bigint unsigned", Int { bytes: 8, unsigned: true }),
            ("mediumint(8) unsigned", Int { bytes: 3, unsigned: true }),
            ("decimal(12,2)", Decimal { precision: 12, scale: 2 }),
            ("decimal(65,30) unsigned", Decimal { precision: 65, scale: 30 }),
            ("decimal", Decimal { precision: 10, scale: 0 }),
            ("bit(1)", Bit { width: 1 }),
            ("bit(12)", Bit { width: 12 }),
            ("datetime(6)", Datetime),
            ("timestamp(3)", Timestamp),
            ("time", Time),
            ("year(4)", Year),
            ("enum('a','b,c')", Text),
            ("set('x','y')", Set),
            ("varbinary(16)", Bytes),
            ("longtext", Text),
            ("json", Json),
        ];
        for (text, want) in cases {
            assert_eq!(MysqlType::parse(text).unwrap(), want, "{text}");
        }
        assert!(MysqlType::parse("vector(3)").unwrap_err().to_string().contains("options.query"));
    }

    #[test]
    fn maps_to_arrow_without_loss() {
        let t = |s: &str| MysqlType::parse(s).unwrap().arrow();
        assert_eq!(t("bigint unsigned"), DataType::UInt64);
        assert_eq!(t("decimal(38,10)"), DataType::Decimal128(38, 10));
        assert_eq!(t("decimal(39,2)"), DataType::Utf8);
        assert_eq!(t("timestamp"), DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        assert_eq!(t("bit(64)"), DataType::UInt64);
        let json = MysqlType::Json.field("doc");
        assert!(weir_core::json::is_json_field(&json));
    }
}
