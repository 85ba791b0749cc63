//! A connection: `kafka://host:port[,host:port]` with SASL settings as query keys.

use std::sync::Arc;
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use weir_core::{ConnectionUrl, Error, Result};

/// Where the brokers are and how to log in.
#[derive(Clone)]
pub struct Brokers {
    pub bootstrap: Vec<String>,
    sasl: Option<(String, String, String)>,
}

impl Brokers {
    /// `kafka://broker1:9092,broker2:9092?sasl_mechanism=SCRAM-SHA-256&sasl_username=u&sasl_password=p`.
    pub fn new(connection: &ConnectionUrl) -> Result<Self> {
        if connection.scheme() != "kafka" {
            return Err(Error::user(format!(
                "connection {connection} is a {}:// URL; a kafka connection is kafka://host:port[,host:port]",
                connection.scheme()
            )));
        }
        // The host list is not one URL host: read it from the text.
        let text = connection.expose();
        let rest = &text["kafka://".len().min(text.len())..];
        let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
        let hosts = hosts.trim_end_matches('/');
        let bootstrap: Vec<String> = hosts.split(',').map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).collect();
        if bootstrap.is_empty() {
            return Err(Error::user(format!("connection {connection} names no broker")));
        }
        let (mut mechanism, mut username, mut password) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned();
            match k {
                "sasl_mechanism" => mechanism = Some(v),
                "sasl_username" => username = Some(v),
                "sasl_password" => password = Some(v),
                other => {
                    return Err(Error::user(format!(
                        "connection {connection}: unknown key `{other}` (known: sasl_mechanism, sasl_username, \
                         sasl_password)"
                    )));
                }
            }
        }
        let sasl = match (mechanism, username, password) {
            (None, None, None) => None,
            (Some(m), Some(u), Some(p)) if matches!(m.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") => {
                Some((m, u, p))
            }
            _ => {
                return Err(Error::user(format!(
                    "connection {connection}: SASL needs sasl_mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), \
                     sasl_username and sasl_password"
                )));
            }
        };
        Ok(Self { bootstrap, sasl })
    }

    /// A client whose requests retry for `patience` (none: one try, the
    /// caller decides what a failure means).
    pub async fn connect(&self, patience: Option<Duration>) -> Result<Arc<Client>> {
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
            deadline: Some(patience.unwrap_or(Duration::from_millis(1))),
        };
        let mut builder = ClientBuilder::new(self.bootstrap.clone()).client_id("weir").backoff_config(backoff);
        if let Some((mechanism, username, password)) = &self.sasl {
            let credentials = Credentials::new(username.clone(), password.clone());
            builder = builder.sasl_config(match mechanism.as_str() {
                "PLAIN" => SaslConfig::Plain(credentials),
                "SCRAM-SHA-256" => SaslConfig::ScramSha256(credentials),
                _ => SaslConfig::ScramSha512(credentials),
            });
        }
        let client = tokio::time::timeout(Duration::from_secs(30), builder.build())
            .await
            .map_err(|_| Error::transient(format!("no broker of {} answered in 30 s", self.bootstrap.join(","))))?
            .map_err(|e| broker_error(e, &format!("connecting to {}", self.bootstrap.join(","))))?;
        Ok(Arc::new(client))
    }
}

/// A broker error, with what was being done. Transient unless the broker said the request is wrong.
pub fn broker_error(e: rskafka::client::error::Error, doing: &str) -> Error {
    let text = format!("Kafka: {doing}: {e}");
    let refused = ["Authorization", "Authentication", "InvalidTopic", "InvalidReplicationFactor", "PolicyViolation"];
    if refused.iter().any(|r| text.contains(r)) { Error::user(text) } else { Error::transient(text) }
}
