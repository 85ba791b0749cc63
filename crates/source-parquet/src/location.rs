//! Where the files of a run are: an object store, and which paths in it.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use globset::{GlobBuilder, GlobMatcher};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig};
use url::Url;
use weir_core::connection::redact_url;
use weir_core::{ConnectionUrl, Error, Result};

/// A store and the (rendered) `data_source` inside it.
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// Where `path` lives, for messages: `s3://raw/lake` (never with secrets).
    pub base: String,
    /// The rendered `data_source`, relative to the store.
    pub path: String,
}

impl Location {
    /// Resolve `data_source` (already rendered) against the connection, or on its own.
    pub fn resolve(conn: Option<&ConnectionUrl>, data_source: &str) -> Result<Self> {
        match conn {
            Some(c) if c.scheme() == "s3" => s3(c.url(), data_source),
            Some(c) => {
                let base = c.url().to_file_path().map_err(|()| {
                    Error::user(format!("connection `{}` ({c}) is not a local file:/// path", c.name()))
                })?;
                local(&base.to_string_lossy(), data_source.trim_start_matches('/'))
            }
            None if data_source.starts_with("s3://") => {
                let url = Url::parse(data_source)
                    .map_err(|e| Error::user(format!("data_source `{data_source}` is not a valid URL: {e}")))?;
                let key = url.path().trim_start_matches('/').to_owned();
                let mut bucket = url.clone();
                bucket.set_path("");
                s3(&bucket, &decode(&key))
            }
            None => {
                let path = data_source.strip_prefix("file://").unwrap_or(data_source);
                let abs = std::path::absolute(path)
                    .map_err(|e| Error::user(format!("data_source `{data_source}` is not a usable path: {e}")))?;
                local("/", abs.to_string_lossy().trim_start_matches('/'))
            }
        }
    }

    /// The files this run reads, in path order.
    pub async fn files(&self) -> Result<Vec<ObjectMeta>> {
        let mut files = match split_glob(&self.path) {
            Some((prefix, pattern)) => {
                let matcher = glob(&pattern)?;
                self.list(&prefix, |p| matcher.is_match(p)).await?
            }
            None if self.path.ends_with('/') || self.path.is_empty() => self.list(&self.path, is_parquet_name).await?,
            None => match self.store.head(&Path::from(self.path.as_str())).await {
                Ok(meta) => vec![meta],
                Err(object_store::Error::NotFound { .. }) => self.list(&self.path, is_parquet_name).await?,
                Err(e) => return Err(store_error(e, &self.describe())),
            },
        };
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }

    async fn list(&self, prefix: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<ObjectMeta>> {
        let prefix = prefix.trim_end_matches('/');
        let prefix = (!prefix.is_empty()).then(|| Path::from(prefix));
        let all: Vec<ObjectMeta> =
            self.store.list(prefix.as_ref()).try_collect().await.map_err(|e| store_error(e, &self.describe()))?;
        Ok(all.into_iter().filter(|m| !is_hidden(m.location.as_ref()) && keep(m.location.as_ref())).collect())
    }

    /// `s3://raw/lake/orders/dt=20250323/`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.base.trim_end_matches('/'), self.path)
    }

    /// A file's full name, for messages.
    pub fn describe_file(&self, path: &Path) -> String {
        format!("{}/{}", self.base.trim_end_matches('/'), path)
    }
}

fn local(base: &str, path: &str) -> Result<Location> {
    let store = LocalFileSystem::new_with_prefix(base)
        .map_err(|e| Error::user(format!("local folder `{base}` cannot be used: {e}")))?;
    Ok(Location { store: Arc::new(store), base: format!("file://{base}"), path: path.to_owned() })
}

/// `s3://bucket[/prefix]?endpoint=…&region=…&access_key_id=…`: the query keys
/// are object_store's S3 option names; `AWS_*` variables fill in the rest.
fn s3(url: &Url, data_source: &str) -> Result<Location> {
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::user(format!("S3 URL {} has no bucket: write s3://bucket/prefix", redact_url(url))))?;
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: Duration::from_secs(60),
    });
    for (key, value) in url.query_pairs() {
        let config: AmazonS3ConfigKey = key.parse().map_err(|_| {
            Error::user(format!(
                "S3 URL {}: `{key}` is not an S3 option (use endpoint, region, access_key_id, \
                 secret_access_key, allow_http, …)",
                redact_url(url)
            ))
        })?;
        builder = builder.with_config(config, value.as_ref());
    }
    let store =
        builder.build().map_err(|e| Error::user(format!("S3 location {} cannot be used: {e}", redact_url(url))))?;
    let prefix = url.path().trim_matches('/');
    let path = match (prefix.is_empty(), data_source.trim_start_matches('/')) {
        (true, p) => p.to_owned(),
        (false, p) => format!("{prefix}/{p}"),
    };
    let mut base = url.clone();
    base.set_query(None);
    base.set_path("");
    Ok(Location { store: Arc::new(store), base: base.to_string(), path })
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// Split `a/b/*/c.parquet` into the literal prefix `a/b` and the whole pattern.
fn split_glob(path: &str) -> Option<(String, String)> {
    let is_glob = |s: &str| s.contains(['*', '?', '[', '{']);
    if !is_glob(path) {
        return None;
    }
    let literal: Vec<&str> = path.split('/').take_while(|seg| !is_glob(seg)).collect();
    Some((literal.join("/"), path.to_owned()))
}

fn glob(pattern: &str) -> Result<GlobMatcher> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| Error::user(format!("data_source glob `{pattern}` is not valid: {e}")))
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `_SUCCESS`, `.crc` and other hidden files that writers leave beside the data.
fn is_hidden(path: &str) -> bool {
    let name = file_name(path);
    name.starts_with('.') || name.starts_with('_')
}

fn is_parquet_name(path: &str) -> bool {
    let name = file_name(path).to_ascii_lowercase();
    name.ends_with(".parquet") || name.ends_with(".parq") || name.ends_with(".pq")
}

/// An object store error as a Weir error: a missing object is the user's to fix,
/// an unreachable store is retried.
pub fn store_error(e: object_store::Error, what: &str) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::user(format!("{what} does not exist")),
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            Error::external(format!("{what}: access denied ({e}); check the connection's credentials"))
        }
        object_store::Error::Generic { .. } => Error::transient(format!("{what}: {e}")),
        other => Error::external(format!("{what}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_globs_at_the_first_wild_segment() {
        assert_eq!(split_glob("a/b/*.parquet"), Some(("a/b".into(), "a/b/*.parquet".into())));
        assert_eq!(split_glob("a/dt=*/x/*.parquet").unwrap().0, "a");
        assert_eq!(split_glob("a/b/c.parquet"), None);
    }

    #[test]
    fn globs_do_not_cross_folders_unless_asked() {
        let g = glob("o/*.parquet").unwrap();
        assert!(g.is_match("o/a.parquet") && !g.is_match("o/x/a.parquet"));
        assert!(glob("o/**/*.parquet").unwrap().is_match("o/x/y/a.parquet"));
    }

    #[test]
    fn hidden_and_non_parquet_files_are_skipped() {
        assert!(is_hidden("o/_SUCCESS") && is_hidden("o/.part-0.parquet.crc") && !is_hidden("o/part-0.parquet"));
        assert!(is_parquet_name("o/part-0.snappy.parquet") && !is_parquet_name("o/readme.txt"));
    }
}
