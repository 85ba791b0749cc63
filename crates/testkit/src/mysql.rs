//! A fresh MariaDB/MySQL database per test, on the server the services script
//! started (`WEIR_TEST_MYSQL_URL`).

use sqlx::{Connection, MySqlConnection};

use crate::pg::database_name;

/// The server tests use: `WEIR_TEST_MYSQL_URL`, default the local root account.
pub fn server_url() -> String {
    std::env::var("WEIR_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// Create an empty database and return its URL (`mysql://…/weir_t_label_1a2b3c4d`).
pub async fn fresh_database(label: &str) -> anyhow::Result<String> {
    let server = server_url();
    let mut conn = MySqlConnection::connect(&server).await?;
    let name = database_name(label);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4")))
        .execute(&mut conn)
        .await?;
    let mut url = url::Url::parse(&server)?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

/// Run `sql` (one or more statements) against `url`.
pub async fn exec(url: &str, sql: &str) -> anyhow::Result<()> {
    let mut conn = MySqlConnection::connect(url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await?;
    Ok(())
}

/// The rows of `sql` against `url`, every column read as text (cast it to
/// `CHAR` in the query); `NULL` as an empty string.
pub async fn query_text(url: &str, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
    use sqlx::Row;
    let mut conn = MySqlConnection::connect(url).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(&mut conn).await?;
    rows.iter()
        .map(|r| (0..r.len()).map(|i| Ok(r.try_get::<Option<String>, _>(i)?.unwrap_or_default())).collect())
        .collect()
}
