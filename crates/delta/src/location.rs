//! Where a Delta table lives: the destination connection's base URI (`file:///…`
//! or `s3://bucket/prefix?…`) + `schema_name/destination_table`, and the storage
//! options delta-rs needs to reach it.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Once;

use deltalake::{DeltaTable, DeltaTableBuilder};
use object_store::aws::AmazonS3ConfigKey;
use url::Url;
use weir_core::connection::redact_url;
use weir_core::{ConnectionUrl, Error, Result};

use crate::error::delta_error;

/// delta-rs's retry settings, accepted in the URL's query beside the S3 options.
const RETRY_KEYS: &[&str] = &[
    "max_retries",
    "retry_timeout",
    "backoff_config.init_backoff",
    "backoff_config.max_backoff",
    "backoff_config.base",
];

/// Retries of a failed store request: a few, quickly, then the engine's own
/// retry (a whole new attempt) takes over. delta-rs alone would try for minutes.
const DEFAULT_RETRY: &[(&str, &str)] = &[
    ("max_retries", "4"),
    ("retry_timeout", "60s"),
    ("backoff_config.init_backoff", "100ms"),
    ("backoff_config.max_backoff", "5s"),
];

/// A table's location: a URL without credentials, and the options that carry them.
#[derive(Clone)]
pub struct TableLocation {
    /// `file:///…/schema/table` or `s3://bucket/prefix/schema/table`, no query.
    pub url: Url,
    /// delta-rs storage options (object_store's S3 keys, canonical names).
    pub storage_options: HashMap<String, String>,
}

impl std::fmt::Debug for TableLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The options hold credentials: never print them.
        f.debug_struct("TableLocation").field("url", &self.url.as_str()).finish_non_exhaustive()
    }
}

impl TableLocation {
    /// The table `schema/table` under the lake `base`.
    pub fn resolve(base: &ConnectionUrl, schema: &str, table: &str) -> Result<Self> {
        let lake = Lake::parse(base)?;
        Ok(lake.table(schema, table))
    }

    /// The location as a person reads it (no credentials: there are none in `url`).
    pub fn display(&self) -> &str {
        self.url.as_str()
    }

    /// The table here at its latest version; an empty (version `None`) table if
    /// there is none yet.
    pub async fn open_or_empty(&self) -> Result<DeltaTable> {
        let what = || format!("opening the Delta table at {}", self.display());
        let mut table = DeltaTableBuilder::from_url(self.url.clone())
            .and_then(|b| b.with_storage_options(self.storage_options.clone()).build())
            .map_err(|e| delta_error(e, &what()))?;
        // Asking first spares delta-rs's loader an error (and its log line) on a new table.
        if table.verify_deltatable_existence().await.map_err(|e| delta_error(e, &what()))? {
            table.load().await.map_err(|e| delta_error(e, &what()))?;
        }
        Ok(table)
    }

    /// The table here at its latest version; an error if there is none.
    pub async fn open(&self) -> Result<DeltaTable> {
        let table = self.open_or_empty().await?;
        if table.version().is_none() {
            return Err(Error::user(format!("there is no Delta table at {} (was it deleted?)", self.display())));
        }
        Ok(table)
    }
}

/// A lake's base URI and options.
#[derive(Clone)]
pub struct Lake {
    base: Url,
    storage_options: HashMap<String, String>,
}

impl Lake {
    pub fn parse(conn: &ConnectionUrl) -> Result<Self> {
        register_handlers();
        let url = conn.url();
        match url.scheme() {
            "file" => {
                let path = url.to_file_path().map_err(|_| {
                    Error::user(format!("connection `{}`: {} is not a local path", conn.name(), conn.redacted()))
                })?;
                let base = Url::from_directory_path(&path).map_err(|_| {
                    Error::user(format!(
                        "connection `{}`: {} must be an absolute path (file:///…)",
                        conn.name(),
                        conn.redacted()
                    ))
                })?;
                Ok(Self { base, storage_options: HashMap::new() })
            }
            "s3" | "s3a" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(Error::user(format!(
                        "connection `{}`: S3 URL {} has no bucket: write s3://bucket/prefix",
                        conn.name(),
                        redact_url(url)
                    )));
                }
                let mut storage_options: HashMap<String, String> =
                    DEFAULT_RETRY.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
                for (key, value) in url.query_pairs() {
                    if RETRY_KEYS.contains(&key.as_ref()) {
                        storage_options.insert(key.into_owned(), value.into_owned());
                        continue;
                    }
                    let config = AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase()).map_err(|_| {
                        Error::user(format!(
                            "connection `{}`: `{key}` is not an S3 option (use endpoint, region, access_key_id, \
                             secret_access_key, allow_http, …, or max_retries / retry_timeout)",
                            conn.name()
                        ))
                    })?;
                    storage_options.insert(config.as_ref().to_owned(), value.into_owned());
                }
                let mut base = url.clone();
                base.set_query(None);
                if !base.path().ends_with('/') {
                    let path = format!("{}/", base.path());
                    base.set_path(&path);
                }
                Ok(Self { base, storage_options })
            }
            other => Err(Error::user(format!(
                "connection `{}` is a {other}:// URL; a delta destination needs file:///… or s3://bucket/prefix",
                conn.name()
            ))),
        }
    }

    /// A table at `location` (as the catalog recorded it), reached with this lake's options.
    pub fn locate(&self, location: &str) -> Result<TableLocation> {
        let url = Url::parse(location)
            .map_err(|e| Error::internal(format!("the catalog's location `{location}` is not a URL: {e}")))?;
        Ok(TableLocation { url, storage_options: self.storage_options.clone() })
    }

    pub fn table(&self, schema: &str, table: &str) -> TableLocation {
        let mut url = self.base.clone();
        let path = format!("{}{schema}/{table}", url.path());
        url.set_path(&path);
        TableLocation { url, storage_options: self.storage_options.clone() }
    }
}

/// delta-rs finds S3 through a registry of URL schemes; fill it once.
fn register_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| deltalake::aws::register_handlers(None));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_lakes_put_tables_under_schema_folders() {
        let conn = ConnectionUrl::parse("lake", "file:///tmp/lake").unwrap();
        let t = TableLocation::resolve(&conn, "bronze", "orders").unwrap();
        assert_eq!(t.display(), "file:///tmp/lake/bronze/orders");
        assert!(t.storage_options.is_empty());
    }

    #[test]
    fn s3_lakes_move_credentials_out_of_the_url() {
        let conn = ConnectionUrl::parse(
            "lake",
            "s3://bucket/warehouse?endpoint=http://127.0.0.1:9000&access_key_id=k&secret_access_key=s&allow_http=true",
        )
        .unwrap();
        let t = TableLocation::resolve(&conn, "bronze", "orders").unwrap();
        assert_eq!(t.display(), "s3://bucket/warehouse/bronze/orders");
        assert_eq!(t.storage_options.get("aws_endpoint").map(String::as_str), Some("http://127.0.0.1:9000"));
        assert_eq!(t.storage_options.get("aws_secret_access_key").map(String::as_str), Some("s"));
        assert!(!format!("{t:?}").contains("aws_secret"));
    }

    #[test]
    fn unknown_s3_options_and_schemes_are_rejected() {
        let conn = ConnectionUrl::parse("lake", "s3://bucket?endpoitn=x").unwrap();
        assert!(Lake::parse(&conn).err().unwrap().to_string().contains("`endpoitn` is not an S3 option"));
        let conn = ConnectionUrl::parse("lake", "postgres://h/db").unwrap();
        assert!(Lake::parse(&conn).is_err());
    }
}
