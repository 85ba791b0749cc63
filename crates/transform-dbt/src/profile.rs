//! The `profiles.yml` Weir writes for a dbt run: one profile, `weir`, with one
//! output for the pipeline's destination. The password is not in the file:
//! the profile reads it from an environment variable Weir sets on dbt alone.

use serde_json::{Map, Value, json};
use weir_core::{ConnectionUrl, Secret};

/// The profile name Weir's file defines (`dbt --profile weir`).
pub const PROFILE: &str = "weir";
/// The variable dbt reads the password from.
pub const PASSWORD_VAR: &str = "WEIR_DBT_PASSWORD";

/// libpq's TLS parameters that dbt-postgres takes as profile fields.
const TLS_PARAMS: &[&str] = &["sslmode", "sslcert", "sslkey", "sslrootcert"];

/// The file's text, and the password to hand dbt in [`PASSWORD_VAR`].
pub fn render(conn: &ConnectionUrl, target: &str, schema: &str, threads: u32) -> (String, Option<Secret>) {
    let url = conn.url();
    let mut output = Map::new();
    output.insert("type".into(), "postgres".into());
    output.insert("host".into(), url.host_str().unwrap_or("localhost").trim_matches(['[', ']']).into());
    output.insert("port".into(), url.port().unwrap_or(5432).into());
    output.insert("user".into(), conn.username().into());
    output.insert("password".into(), format!("{{{{ env_var('{PASSWORD_VAR}', '') }}}}").into());
    output.insert("dbname".into(), url.path().trim_start_matches('/').into());
    output.insert("schema".into(), schema.into());
    output.insert("threads".into(), threads.into());
    for (k, v) in url.query_pairs() {
        if TLS_PARAMS.contains(&k.as_ref()) {
            output.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    let profile = json!({ PROFILE: { "target": target, "outputs": { target: output } } });
    // JSON is YAML: no YAML writer needed, and every value is quoted.
    (serde_json::to_string_pretty(&profile).unwrap_or_default(), conn.password())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_stays_out_of_the_file() {
        let conn = ConnectionUrl::parse(
            "dw",
            "postgres://loader:s%40cret@db.example.com:6432/warehouse?sslmode=require&application_name=x",
        )
        .unwrap();
        let (text, password) = render(&conn, "prod", "analytics", 8);
        assert!(!text.contains("cret"), "{text}");
        assert_eq!(password.unwrap().expose(), "s@cret");
        let v: Value = serde_json::from_str(&text).unwrap();
        let out = &v["weir"]["outputs"]["prod"];
        assert_eq!(v["weir"]["target"], "prod");
        assert_eq!(out["host"], "db.example.com");
        assert_eq!(out["port"], 6432);
        assert_eq!(out["user"], "loader");
        assert_eq!(out["dbname"], "warehouse");
        assert_eq!(out["schema"], "analytics");
        assert_eq!(out["sslmode"], "require");
        assert_eq!(out["password"], "{{ env_var('WEIR_DBT_PASSWORD', '') }}");
        assert!(out.get("application_name").is_none());
    }
}
