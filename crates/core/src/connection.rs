//! Connections by name, and keeping their secrets out of everything we print.
//!
//! A controller row names a connection (`source_connection = 'lake'`); its URL,
//! secrets included, comes from the environment (`WEIR_CONN_LAKE`) or `.env`.
//! Nothing that holds a secret prints it: [`Secret`] and [`ConnectionUrl`] show
//! `***`, and a [`Redactor`] scrubs known secrets from any message (a driver
//! error that echoes a URL, say) before it reaches a log, `audit` or an email.

use std::fmt;

use url::Url;

use crate::{Error, Result};

/// A value that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it (a driver).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Query parameters whose values are secrets.
const SECRET_PARAMS: &[&str] = &[
    "secret_access_key",
    "aws_secret_access_key",
    "session_token",
    "aws_session_token",
    "token",
    "password",
    "api_key",
    "sslpassword",
    "sasl_password",
];

/// The connection URL of a named connection. Prints redacted.
#[derive(Clone)]
pub struct ConnectionUrl {
    name: String,
    url: Secret,
    parsed: Url,
}

impl ConnectionUrl {
    /// The environment variable that holds connection `name`: `WEIR_CONN_<NAME>`.
    pub fn env_var(name: &str) -> String {
        format!("WEIR_CONN_{}", name.to_ascii_uppercase().replace('-', "_"))
    }

    /// Resolve connection `name` through `lookup` (the process environment, in
    /// production). The error names the variable to set, never a value.
    pub fn resolve(name: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(Error::user(format!("connection name `{name}` is not valid: use letters, digits, `_` or `-`")));
        }
        let var = Self::env_var(name);
        let value = lookup(&var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            Error::user(format!(
                "connection `{name}` is not configured: set {var} in the environment or in .env \
                 (for example {var}=postgres://user:password@host:5432/db)"
            ))
        })?;
        Self::parse(name, value.trim())
    }

    /// Parse a URL given directly (the metadata database's, say).
    pub fn parse(name: &str, url: &str) -> Result<Self> {
        let parsed = Url::parse(url).or_else(|e| match url.strip_prefix("kafka://") {
            // `kafka://host:port,host:port`: a list of brokers, which a URL cannot hold; the
            // first stands for them here (the kafka connector reads the list from the text).
            Some(rest) if rest.contains(',') => {
                let end = rest.find(['/', '?']).unwrap_or(rest.len());
                let first = rest[..end].split(',').next().unwrap_or_default();
                Url::parse(&format!("kafka://{first}{}", &rest[end..]))
            }
            _ => Err(e),
        });
        let parsed = parsed.map_err(|e| {
            Error::user(format!(
                "connection `{name}` is not a valid URL ({e}); expected postgres://, mysql://, \
                 http(s)://, file:///, s3://bucket/prefix?endpoint=…, clickhouse://, redis:// or kafka://"
            ))
        })?;
        Ok(Self { name: name.to_owned(), url: Secret::new(url), parsed })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn scheme(&self) -> &str {
        self.parsed.scheme()
    }

    /// The parsed URL, secrets included: hand it to a driver, never to a log.
    pub fn url(&self) -> &Url {
        &self.parsed
    }

    /// The URL as given, secrets included.
    pub fn expose(&self) -> &str {
        self.url.expose()
    }

    /// The user name, percent-decoded (for a tool that takes it apart from the URL).
    pub fn username(&self) -> String {
        percent_encoding::percent_decode_str(self.parsed.username()).decode_utf8_lossy().into_owned()
    }

    /// The password, percent-decoded.
    pub fn password(&self) -> Option<Secret> {
        let p = self.parsed.password()?;
        Some(Secret::new(percent_encoding::percent_decode_str(p).decode_utf8_lossy()))
    }

    /// The URL with its password and secret query parameters replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.parsed)
    }

    /// The secret parts of this URL, for a [`Redactor`].
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        // The whole URL too, when it holds a secret (a URL without one, like
        // file:///data/lake, is no secret and is what errors must name).
        let has_secret = self.parsed.password().is_some()
            || self.parsed.query_pairs().any(|(k, v)| is_secret_param(&k) && !v.is_empty());
        if has_secret {
            out.push(self.url.expose().to_owned());
        }
        if let Some(p) = self.parsed.password() {
            out.push(p.to_owned());
            if let Ok(decoded) = urldecode(p) {
                out.push(decoded);
            }
        }
        for (k, v) in self.parsed.query_pairs() {
            if is_secret_param(&k) && !v.is_empty() {
                out.push(v.into_owned());
            }
        }
        out
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionUrl({}: {})", self.name, self.redacted())
    }
}

impl fmt::Display for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn is_secret_param(key: &str) -> bool {
    SECRET_PARAMS.contains(&key.to_ascii_lowercase().as_str())
}

fn urldecode(s: &str) -> std::result::Result<String, std::str::Utf8Error> {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| Ok(v.into_owned()))
        .unwrap_or_else(|| Ok(s.to_owned()))
}

/// `url` with its password and secret query parameters replaced by `***`.
pub fn redact_url(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) { "***".to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string().replace("%2A%2A%2A", "***")
}

/// Scrubs known secrets out of free text before it is logged, audited or mailed.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remember every secret in `conn` (its whole URL, password, secret params).
    pub fn add_connection(&mut self, conn: &ConnectionUrl) {
        for s in conn.secrets() {
            self.add(s);
        }
    }

    pub fn add(&mut self, secret: impl Into<String>) {
        let secret = secret.into();
        // Very short values ("a") would shred unrelated text; such secrets are weak anyway.
        if secret.len() >= 4 && !self.secrets.iter().any(|s| s.expose() == secret) {
            self.secrets.push(Secret::new(secret));
            // Longest first, so a whole URL is replaced before the password inside it.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        }
    }

    /// `text` with every known secret replaced by `***`, and any URL password
    /// (`scheme://user:pass@host`) masked even if it was never registered.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.expose()) {
                out = out.replace(s.expose(), "***");
            }
        }
        mask_url_passwords(&out)
    }
}

/// Mask `pass` in every `scheme://user:pass@` found in `text`.
fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'').unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| pairs.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn resolves_by_name_from_the_environment() {
        let c = ConnectionUrl::resolve("lake", env(&[("WEIR_CONN_LAKE", "file:///data/lake")])).unwrap();
        assert_eq!(c.scheme(), "file");
        assert_eq!(ConnectionUrl::env_var("oltp-eu"), "WEIR_CONN_OLTP_EU");
    }

    #[test]
    fn a_missing_connection_names_the_variable() {
        let err = ConnectionUrl::resolve("lake", env(&[])).unwrap_err();
        assert!(err.to_string().contains("set WEIR_CONN_LAKE"), "{err}");
        assert_eq!(err.domain(), crate::Domain::User);
    }

    #[test]
    fn urls_print_redacted() {
        let c = ConnectionUrl::parse(
            "lake",
            "s3://raw/x?endpoint=http://localhost:9000&access_key_id=AK&secret_access_key=s3cr3tKEY",
        )
        .unwrap();
        let shown = format!("{c} {c:?}");
        assert!(!shown.contains("s3cr3tKEY"), "{shown}");
        assert!(shown.contains("secret_access_key=***"), "{shown}");
        let pg = ConnectionUrl::parse("w", "postgres://weir:hunter22@db:5432/dw").unwrap();
        assert_eq!(pg.redacted(), "postgres://weir:***@db:5432/dw");
        // A broker list is no URL host; the first broker stands for it, the SASL password hidden.
        let kafka = ConnectionUrl::parse(
            "stream",
            "kafka://b1:9092,b2:9092?sasl_mechanism=PLAIN&sasl_username=u&sasl_password=hunter22",
        )
        .unwrap();
        assert!(!kafka.redacted().contains("hunter22"), "{}", kafka.redacted());
        assert!(kafka.secrets().iter().any(|s| s == "hunter22"));
        assert_eq!(
            kafka.expose(),
            "kafka://b1:9092,b2:9092?sasl_mechanism=PLAIN&sasl_username=u&sasl_password=hunter22"
        );
    }

    #[test]
    fn redactor_scrubs_secrets_from_free_text() {
        let c = ConnectionUrl::parse("w", "postgres://weir:hunter22@db:5432/dw").unwrap();
        let mut r = Redactor::new();
        r.add_connection(&c);
        let msg = r.redact("password authentication failed (hunter22) for postgres://weir:hunter22@db:5432/dw");
        assert!(!msg.contains("hunter22"), "{msg}");
        // Unregistered URL passwords are masked too.
        assert_eq!(r.redact("at mysql://u:pw@h/db failed"), "at mysql://u:***@h/db failed");
        assert_eq!(format!("{:?}", Secret::new("x")), "***");
    }
}
