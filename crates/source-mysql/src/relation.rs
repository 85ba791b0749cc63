//! What a run reads: a table (or view) or a query, with its columns' declared
//! types, its keys and which columns lead an index, as the server describes them.

use sqlx::AssertSqlSafe;
use sqlx::mysql::{MySqlConnection, MySqlRow};
use weir_core::{Error, Result};

use crate::decode::raw_value;
use crate::error::db_error;
use crate::types::MysqlType;

/// A table, view or query and what the server says about it.
#[derive(Debug, Clone)]
pub struct Relation {
    /// For messages: `chat.messages`, or `options.query`.
    pub display: String,
    /// What `FROM` names: `` `chat`.`messages` `` or `(SELECT …) AS q`.
    pub from: String,
    /// Columns in the server's order.
    pub columns: Vec<(String, MysqlType)>,
    pub primary_key: Vec<String>,
    /// Unique keys, the primary key included.
    pub unique_keys: Vec<Vec<String>>,
    /// Columns that are the first column of some index.
    pub index_leaders: Vec<String>,
    /// A base table: its keys and indexes are known. Views and queries have none.
    pub is_table: bool,
}

impl Relation {
    pub fn column(&self, name: &str) -> Option<MysqlType> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }

    /// A user error unless every one of `names` is a column.
    pub fn require(&self, what: &str, names: &[&str]) -> Result<()> {
        let missing: Vec<&&str> = names.iter().filter(|n| self.column(n).is_none()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::user(format!(
            "{what} {} {} not a column of {} (columns: {})",
            missing.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            self.display,
            self.columns.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
        )))
    }

    /// Whether `columns` identify a row: some unique key is made of them.
    pub fn is_unique(&self, columns: &[&str]) -> bool {
        self.unique_keys.iter().any(|key| key.iter().all(|k| columns.contains(&k.as_str())))
    }
}

/// `` `name` ``, with embedded backticks doubled.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Describe `database.table` from `information_schema`.
pub async fn describe_table(conn: &mut MySqlConnection, database: &str, table: &str) -> Result<Relation> {
    let display = format!("{database}.{table}");
    let kind: Option<MySqlRow> =
        sqlx::query("SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?")
            .bind(database)
            .bind(table)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db_error(e, &format!("looking up table `{display}`")))?;
    let Some(kind) = kind else {
        return Err(Error::user(format!(
            "MySQL table `{display}` does not exist (or this user cannot see it); check source_table and the \
             connection's database"
        )));
    };
    let is_table = text(&kind, 0)? == "BASE TABLE";

    let rows = sqlx::query(
        "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
    )
    .bind(database)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| db_error(e, &format!("reading the columns of `{display}`")))?;
    let mut columns = Vec::with_capacity(rows.len());
    for row in &rows {
        let (name, column_type) = (text(row, 0)?, text(row, 1)?);
        let ty = MysqlType::parse(&column_type).map_err(|e| e.context(format!("column `{name}` of `{display}`")))?;
        columns.push((name, ty));
    }

    // MariaDB's JSON is LONGTEXT with a `json_valid` check named after the column.
    if is_mariadb(conn).await? {
        let checks = sqlx::query(
            "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
             WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
        )
        .bind(database)
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error(e, &format!("reading the checks of `{display}`")))?;
        for check in &checks {
            let (name, clause) = (text(check, 0)?, text(check, 1)?);
            if clause.replace('`', "") == format!("json_valid({name})")
                && let Some(col) = columns.iter_mut().find(|(n, t)| *n == name && *t == MysqlType::Text)
            {
                col.1 = MysqlType::Json;
            }
        }
    }

    let mut relation = Relation {
        display,
        from: format!("{}.{}", quote(database), quote(table)),
        columns,
        primary_key: Vec::new(),
        unique_keys: Vec::new(),
        index_leaders: Vec::new(),
        is_table,
    };
    let stats = sqlx::query(
        "SELECT INDEX_NAME, CAST(NON_UNIQUE AS CHAR), CAST(SEQ_IN_INDEX AS CHAR), COLUMN_NAME
         FROM information_schema.STATISTICS
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX",
    )
    .bind(database)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| db_error(e, &format!("reading the indexes of `{}`", relation.display)))?;
    let mut current: Option<(String, bool, Vec<String>)> = None;
    let mut indexes = Vec::new();
    for row in &stats {
        let (index, non_unique, column) = (text(row, 0)?, text(row, 1)? != "0", text(row, 3)?);
        if text(row, 2)? == "1" {
            relation.index_leaders.push(column.clone());
        }
        match &mut current {
            Some((name, _, cols)) if *name == index => cols.push(column),
            _ => indexes.extend(current.replace((index, !non_unique, vec![column]))),
        }
    }
    indexes.extend(current);
    for (name, unique, cols) in indexes {
        if name == "PRIMARY" {
            relation.primary_key = cols.clone();
        }
        if unique {
            relation.unique_keys.push(cols);
        }
    }
    Ok(relation)
}

/// Describe the result of `query`: a temporary table made from it with no
/// rows gives every column's exact declared type (the wire protocol drops
/// precision, scale and fractional seconds).
pub async fn describe_query(conn: &mut MySqlConnection, query: &str) -> Result<Relation> {
    let query = query.trim().trim_end_matches(';');
    let probe = "_weir_probe";
    exec(conn, &format!("DROP TEMPORARY TABLE IF EXISTS {probe}"), "options.query").await?;
    exec(conn, &format!("CREATE TEMPORARY TABLE {probe} AS SELECT * FROM ({query}) AS q LIMIT 0"), "options.query")
        .await
        .map_err(|e| {
            e.map_message(|m| {
                format!(
                    "{m}; Weir learns the query's column types from an empty temporary table, which needs the \
                     CREATE TEMPORARY TABLES privilege (or make the query a view and name it in source_table)"
                )
            })
        })?;
    let rows = sqlx::raw_sql(AssertSqlSafe(format!("SHOW COLUMNS FROM {probe}")))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error(e, "options.query: reading the result's columns"));
    exec(conn, &format!("DROP TEMPORARY TABLE IF EXISTS {probe}"), "options.query").await?;
    let mut columns = Vec::new();
    for row in &rows? {
        let (name, column_type) = (text(row, 0)?, text(row, 1)?);
        let ty = MysqlType::parse(&column_type).map_err(|e| e.context(format!("options.query column `{name}`")))?;
        columns.push((name, ty));
    }
    Ok(Relation {
        display: "options.query".to_owned(),
        from: format!("({query}) AS q"),
        columns,
        primary_key: Vec::new(),
        unique_keys: Vec::new(),
        index_leaders: Vec::new(),
        is_table: false,
    })
}

async fn is_mariadb(conn: &mut MySqlConnection) -> Result<bool> {
    let row = sqlx::query("SELECT VERSION()")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| db_error(e, "reading the server version"))?;
    Ok(text(&row, 0)?.contains("MariaDB"))
}

pub async fn exec(conn: &mut MySqlConnection, sql: &str, doing: &str) -> Result<()> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&mut *conn).await.map_err(|e| db_error(e, doing))?;
    Ok(())
}

/// A text column of a metadata row (`information_schema` types differ between
/// MySQL and MariaDB, some binary: read the bytes).
fn text(row: &MySqlRow, index: usize) -> Result<String> {
    Ok(raw_value(row, index)?.map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default())
}
