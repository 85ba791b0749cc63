//! A fresh database per test, so tests run in parallel without sharing state.

use sqlx::{Connection, PgConnection};

/// The server tests use: `WEIR_TEST_PG_URL`, default the local trust-auth server.
pub fn server_url() -> String {
    std::env::var("WEIR_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Databases made by the test kit start with this; the test script drops old ones.
pub const PREFIX: &str = "weir_t_";

/// A new database name: the prefix, `label` (letters, digits, `_`) and a random suffix.
pub(crate) fn database_name(label: &str) -> String {
    let label: String = label.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(30).collect();
    format!("{PREFIX}{}_{}", label.to_ascii_lowercase(), &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Create an empty database and return its URL.
pub async fn fresh_database(label: &str) -> anyhow::Result<String> {
    let server = server_url();
    let mut conn = PgConnection::connect(&server).await?;
    let name = database_name(label);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut conn).await?;
    let mut url = url_of(&server);
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

fn url_of(s: &str) -> url::Url {
    url::Url::parse(s).unwrap_or_else(|e| panic!("WEIR_TEST_PG_URL `{s}` is not a URL: {e}"))
}
