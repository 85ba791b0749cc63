//! A connection: `kafka://host:port[,host:port]` with SASL and TLS settings as query keys.

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
    /// `tls=true`: the brokers' certificates checked against `tls_ca_file`, else the system's roots.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Brokers {
    /// `kafka://broker1:9092,broker2:9092?sasl_mechanism=SCRAM-SHA-256&sasl_username=u&sasl_password=p`,
    /// `…?tls=true[&tls_ca_file=/etc/weir/ca.pem]`.
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
        let (mut tls, mut ca_file) = (false, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned();
            match k {
                "sasl_mechanism" => mechanism = Some(v),
                "sasl_username" => username = Some(v),
                "sasl_password" => password = Some(v),
                "tls" => {
                    tls = match v.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(Error::user(format!("connection {connection}: tls is `true` or `false`"))),
                    }
                }
                "tls_ca_file" => ca_file = Some(v),
                other => {
                    return Err(Error::user(format!(
                        "connection {connection}: unknown key `{other}` (known: sasl_mechanism, sasl_username, \
                         sasl_password, tls, tls_ca_file)"
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
        let tls = match (tls, ca_file) {
            (true, ca_file) => {
                Some(tls_config(ca_file.as_deref()).map_err(|e| e.context(format!("connection {connection}")))?)
            }
            (false, None) => None,
            (false, Some(_)) => {
                return Err(Error::user(format!("connection {connection}: tls_ca_file is for tls=true")));
            }
        };
        Ok(Self { bootstrap, sasl, tls })
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
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(tls.clone());
        }
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

/// The topic, created with `partitions` and `replication` if missing, once a
/// broker lists it; its number of partitions.
pub async fn ensure_topic(client: &Client, topic: &str, partitions: i32, replication: i16) -> Result<i32> {
    let find = |topics: Vec<rskafka::topic::Topic>| topics.into_iter().find(|t| t.name == topic);
    if let Some(t) = find(client.list_topics().await.map_err(|e| broker_error(e, "listing topics"))?) {
        return Ok(t.partitions.len() as i32);
    }
    tracing::info!(topic, partitions, "creating the topic");
    let created = client
        .controller_client()
        .map_err(|e| broker_error(e, "reaching the controller"))?
        .create_topic(topic, partitions, replication, 30_000)
        .await;
    if let Err(e) = created
        && !e.to_string().contains("TopicAlreadyExists")
    {
        return Err(broker_error(e, &format!("creating topic `{topic}`")));
    }
    for _ in 0..50 {
        if let Some(t) = find(client.list_topics().await.map_err(|e| broker_error(e, "listing topics"))?)
            && !t.partitions.is_empty()
        {
            return Ok(t.partitions.len() as i32);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::transient(format!("topic `{topic}` was created but no broker lists it yet")))
}

/// TLS with ring (the provider the rest of Weir uses, named here rather than
/// taken from the process default): the roots in `ca_file` (PEM), else the system's.
fn tls_config(ca_file: Option<&str>) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| Error::user(format!("tls_ca_file `{path}`: {e}")))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| Error::user(format!("tls_ca_file `{path}`: {e}")))?;
                roots.add(cert).map_err(|e| Error::user(format!("tls_ca_file `{path}`: {e}")))?;
            }
            if roots.is_empty() {
                return Err(Error::user(format!("tls_ca_file `{path}` holds no certificate (PEM)")));
            }
        }
        None => {
            let (added, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if added == 0 {
                return Err(Error::user("tls=true: the system has no CA certificates; name them with tls_ca_file"));
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A broker error, with what was being done. Transient unless the broker said the request is wrong.
pub fn broker_error(e: rskafka::client::error::Error, doing: &str) -> Error {
    let text = format!("Kafka: {doing}: {e}");
    let refused = ["Authorization", "Authentication", "InvalidTopic", "InvalidReplicationFactor", "PolicyViolation"];
    if refused.iter().any(|r| text.contains(r)) { Error::user(text) } else { Error::transient(text) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(url: &str) -> Result<Brokers> {
        Brokers::new(&ConnectionUrl::parse("stream", url)?)
    }

    /// A test CA (`openssl req -x509 -newkey rsa:2048`), public part only.
    const CA: &str = include_str!("../testdata/ca.pem");

    #[test]
    fn tls_settings_are_query_keys() {
        let dir = std::env::temp_dir().join(format!("weir_kafka_tls_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, CA).unwrap();
        let b = brokers(&format!("kafka://a:9093,b:9093?tls=true&tls_ca_file={}", ca.display())).unwrap();
        assert!(b.tls.is_some() && b.bootstrap == ["a:9093", "b:9093"]);
        assert!(brokers("kafka://a:9092").unwrap().tls.is_none());
        let missing = brokers("kafka://a:9093?tls=true&tls_ca_file=/nonexistent/ca.pem").err().unwrap().to_string();
        assert!(missing.contains("tls_ca_file `/nonexistent/ca.pem`"), "{missing}");
        assert!(brokers("kafka://a:9093?tls=yes").is_err());
        assert!(brokers(&format!("kafka://a:9093?tls_ca_file={}", ca.display())).is_err());
        std::fs::write(&ca, "not a certificate").unwrap();
        assert!(brokers(&format!("kafka://a:9093?tls=true&tls_ca_file={}", ca.display())).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
