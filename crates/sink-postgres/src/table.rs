//! The destination table: what exists, and the DDL that makes it fit the source.

use sqlx::PgConnection;
use weir_core::{Error, Ident, Result, quote_ident};

use crate::load::db_error;

/// A table that exists: its columns as `format_type` prints them.
#[derive(Debug, Clone)]
pub struct Existing {
    pub columns: Vec<(String, String)>,
}

impl Existing {
    pub fn column_type(&self, name: &str) -> Option<&str> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, t)| t.as_str())
    }
}

/// `"schema"."table"`.
pub fn qualified(schema: &Ident, table: &Ident) -> String {
    format!("{}.{}", schema.quoted(), table.quoted())
}

pub async fn inspect(conn: &mut PgConnection, schema: &Ident, table: &Ident) -> Result<Option<Existing>> {
    let oid: Option<i64> = sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint")
        .bind(qualified(schema, table))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| db_error(e, "looking up the destination table"))?;
    let Some(oid) = oid else { return Ok(None) };
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod)
         FROM pg_attribute WHERE attrelid = $1::bigint::oid AND attnum > 0 AND NOT attisdropped
         ORDER BY attnum",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| db_error(e, "reading the destination table's columns"))?;
    Ok(Some(Existing { columns }))
}

/// Whether a unique index covers exactly `key` (what `ON CONFLICT` needs).
pub async fn has_unique_key(conn: &mut PgConnection, schema: &Ident, table: &Ident, key: &[Ident]) -> Result<bool> {
    let key: Vec<&str> = key.iter().map(Ident::as_str).collect();
    sqlx::query_scalar(
        "SELECT EXISTS (
           SELECT 1 FROM pg_index i
           WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL
             AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text)
                  FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
               = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) k))",
    )
    .bind(qualified(schema, table))
    .bind(&key)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| db_error(e, "checking the destination table's unique indexes"))
}

/// `CREATE TABLE` for a table Weir creates: the source columns, plus extras, plus a primary key.
pub fn create_table(qualified: &str, columns: &[(String, String)], primary_key: &[Ident]) -> String {
    let mut defs: Vec<String> = columns.iter().map(|(n, t)| format!("{} {t}", quote_ident(n))).collect();
    if !primary_key.is_empty() {
        let key: Vec<String> = primary_key.iter().map(Ident::quoted).collect();
        defs.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!("CREATE TABLE {qualified} (\n  {}\n)", defs.join(",\n  "))
}

/// Fail unless every key column is among the source's columns.
pub fn check_columns_exist(what: &str, names: &[Ident], available: &[&str]) -> Result<()> {
    for name in names {
        if !available.contains(&name.as_str()) {
            return Err(Error::user(format!(
                "{what} `{name}` is not a column of the source (columns: {})",
                available.join(", ")
            )));
        }
    }
    Ok(())
}
