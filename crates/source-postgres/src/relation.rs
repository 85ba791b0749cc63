//! What a run reads: a table (or view) or a query, with its columns' declared
//! types and its primary key, as the server's catalog describes them.

use sqlx::{AssertSqlSafe, PgConnection, Row};
use weir_core::{Error, Result};

use crate::error::db_error;
use crate::types::{Column, TypeInfo, quote};

/// A table, view or query and what the server says about it.
#[derive(Debug, Clone)]
pub struct Relation {
    /// For messages: `public.orders`, or `options.query`.
    pub display: String,
    /// What `FROM` names: `"public"."orders"` or `(SELECT …) AS q`.
    pub from: String,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    /// Columns that are the first column of some index (tables only).
    pub index_leaders: Vec<String>,
    pub is_table: bool,
}

impl Relation {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// A user error unless every one of `names` is a column.
    pub fn require(&self, what: &str, names: &[&str]) -> Result<()> {
        let missing: Vec<String> =
            names.iter().filter(|n| self.column(n).is_none()).map(|n| format!("`{n}`")).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::user(format!(
            "{what} {} {} not a column of {} (columns: {})",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            self.display,
            self.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        )))
    }
}

/// The catalog's view of a relation's columns: name, declared type, and the
/// type itself with domains resolved to their base type.
const COLUMNS: &str = "
    SELECT a.attname::text,
           format_type(a.atttypid, a.atttypmod),
           base.oid::int8,
           CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
           base.typtype::text,
           elem.oid::int8,
           elem.typtype::text
    FROM pg_attribute a
    JOIN pg_type t ON t.oid = a.atttypid
    JOIN pg_type base ON base.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
    LEFT JOIN pg_type elem ON elem.oid = base.typelem AND base.typcategory = 'A'
    WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum";

async fn columns(conn: &mut PgConnection, regclass: &str, display: &str) -> Result<Vec<Column>> {
    let rows = sqlx::query(COLUMNS)
        .bind(regclass)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error(e, &format!("reading the columns of {display}")))?;
    rows.iter()
        .map(|r| {
            let get = |i| r.try_get::<Option<i64>, _>(i).map_err(|e| db_error(e, "reading the catalog"));
            let info = TypeInfo {
                oid: get(2)?.unwrap_or_default() as u32,
                typmod: r.try_get::<i32, _>(3).map_err(|e| db_error(e, "reading the catalog"))?,
                typtype: r.try_get(4).map_err(|e| db_error(e, "reading the catalog"))?,
                element: get(5)?
                    .map(|oid| (oid as u32, r.try_get::<Option<String>, _>(6).ok().flatten().unwrap_or_default())),
            };
            let name: String = r.try_get(0).map_err(|e| db_error(e, "reading the catalog"))?;
            let pg_type: String = r.try_get(1).map_err(|e| db_error(e, "reading the catalog"))?;
            Ok(Column::new(name, pg_type, &info))
        })
        .collect()
}

/// Describe `schema.table` (a table, view or materialized view).
pub async fn describe_table(conn: &mut PgConnection, schema: &str, table: &str) -> Result<Relation> {
    let display = format!("{schema}.{table}");
    let qualified = format!("{}.{}", quote(schema), quote(table));
    let kind: Option<String> = sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)")
        .bind(&qualified)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| db_error(e, &format!("looking up table {display}")))?;
    let Some(kind) = kind else {
        return Err(Error::user(format!(
            "PostgreSQL table {display} does not exist (or this user cannot see it); check source_table \
             (`schema.table`) and the connection's database"
        )));
    };
    let columns = columns(conn, &qualified, &display).await?;
    let primary_key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i
         JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.n",
    )
    .bind(&qualified)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| db_error(e, &format!("reading the primary key of {display}")))?;
    let index_leaders: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT a.attname::text FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = $1::regclass",
    )
    .bind(&qualified)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| db_error(e, &format!("reading the indexes of {display}")))?;
    Ok(Relation { display, from: qualified, columns, primary_key, index_leaders, is_table: kind == "r" || kind == "p" })
}

/// Describe a query: the server plans it as a temporary view, whose columns
/// the catalog then describes like a table's.
pub async fn describe_query(conn: &mut PgConnection, query: &str) -> Result<Relation> {
    let display = "options.query".to_owned();
    let view = "pg_temp.weir_describe";
    let create = format!("CREATE OR REPLACE TEMPORARY VIEW weir_describe AS {query}");
    sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut *conn).await.map_err(|e| {
        db_error(e, "planning options.query (it must be a single SELECT; fix it and check it with runner check)")
    })?;
    let described = columns(conn, view, &display).await;
    let _ = sqlx::raw_sql("DROP VIEW IF EXISTS pg_temp.weir_describe").execute(&mut *conn).await;
    Ok(Relation {
        display,
        from: format!("({query}) AS q"),
        columns: described?,
        primary_key: Vec::new(),
        index_leaders: Vec::new(),
        is_table: false,
    })
}
