//! The completion email: one summary per run, in text and HTML, over SMTP.
//!
//! Configured from the environment:
//! - `WEIR_SMTP_URL`, lettre's URL form: `smtp://host:port` (plain),
//!   `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465` (TLS);
//! - `WEIR_NOTIFY_FROM`, the sender;
//! - `WEIR_NOTIFY_TO`, comma-separated recipients (each pipeline's
//!   `notify_emails` are added to them);
//! - `WEIR_NOTIFY_ON`: `always` (the default) or `failure`.
//!
//! Sending never changes a run's result: the caller logs and records a failure.

mod render;

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use weir_core::{ConnectionUrl, Error, Redactor, Result, RunReport};

pub use render::{Rendered, render};

/// When to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOn {
    Always,
    /// Only when some pipeline did not succeed.
    Failure,
}

/// A configured completion email.
#[derive(Debug, Clone)]
pub struct Notifier {
    smtp: ConnectionUrl,
    from: Mailbox,
    to: Vec<Mailbox>,
    on: NotifyOn,
    timeout: Duration,
}

/// What became of one run's email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Not wanted (`WEIR_NOTIFY_ON=failure` and all succeeded) or nobody to send to.
    NotSent {
        reason: String,
    },
    Sent {
        recipients: Vec<String>,
        subject: String,
    },
    /// Redacted.
    Failed {
        recipients: Vec<String>,
        subject: String,
        error: String,
    },
}

impl Notifier {
    /// The configuration from the environment: `None` when `WEIR_SMTP_URL` is
    /// unset; an error (a configuration error, before anything runs) when it is
    /// set but the rest is missing or malformed.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(url) = env("WEIR_SMTP_URL").filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        let smtp = ConnectionUrl::parse("smtp", url.trim()).map_err(|e| e.context("WEIR_SMTP_URL"))?;
        if !matches!(smtp.scheme(), "smtp" | "smtps") {
            return Err(Error::user(format!(
                "WEIR_SMTP_URL {smtp} must start with smtp:// (plain, or STARTTLS with ?tls=required) or smtps:// (TLS)"
            )));
        }
        // Checked now, so that a typo is a configuration error, not a failed email.
        AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp.expose())
            .map_err(|e| Error::user(format!("WEIR_SMTP_URL {smtp} is not usable: {e}")))?;
        let from = env("WEIR_NOTIFY_FROM")
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| Error::user("WEIR_SMTP_URL is set but WEIR_NOTIFY_FROM is not: set the sender address"))?;
        let from = mailbox(&from).map_err(|e| e.context("WEIR_NOTIFY_FROM"))?;
        let to = env("WEIR_NOTIFY_TO").unwrap_or_default();
        let to = addresses(&to).map(mailbox).collect::<Result<Vec<_>>>().map_err(|e| e.context("WEIR_NOTIFY_TO"))?;
        let on = match env("WEIR_NOTIFY_ON").unwrap_or_default().trim().to_ascii_lowercase().as_str() {
            "" | "always" => NotifyOn::Always,
            "failure" | "failures" => NotifyOn::Failure,
            other => {
                return Err(Error::user(format!("WEIR_NOTIFY_ON `{other}` is not known: use `always` or `failure`")));
            }
        };
        Ok(Some(Self { smtp, from, to, on, timeout: Duration::from_secs(30) }))
    }

    /// The SMTP URL, for the caller's redactor.
    pub fn connection(&self) -> &ConnectionUrl {
        &self.smtp
    }

    /// Send the run's summary to `WEIR_NOTIFY_TO` plus `extra` (the pipelines'
    /// `notify_emails`, as `(pipeline, address)`). Never fails: the outcome says
    /// what happened.
    pub async fn send(&self, report: &RunReport, extra: &[(String, String)]) -> Delivery {
        if self.on == NotifyOn::Failure && report.all_succeeded() {
            return Delivery::NotSent { reason: "every pipeline succeeded and WEIR_NOTIFY_ON=failure".into() };
        }
        let mut to = self.to.clone();
        for (pipeline, address) in extra {
            match mailbox(address) {
                Ok(m) if !to.iter().any(|t| t.email == m.email) => to.push(m),
                Ok(_) => {}
                Err(e) => tracing::warn!(pipeline = %pipeline, error = %e, "notify_emails: address skipped"),
            }
        }
        if to.is_empty() {
            return Delivery::NotSent {
                reason: "no recipients: set WEIR_NOTIFY_TO or a pipeline's notify_emails".into(),
            };
        }
        let rendered = render(report);
        let recipients: Vec<String> = to.iter().map(|m| m.email.to_string()).collect();
        let subject = rendered.subject.clone();
        match self.deliver(to, rendered).await {
            Ok(()) => Delivery::Sent { recipients, subject },
            Err(e) => {
                let mut redactor = Redactor::new();
                redactor.add_connection(&self.smtp);
                Delivery::Failed { recipients, subject, error: redactor.redact(&e) }
            }
        }
    }

    fn transport(&self) -> std::result::Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        Ok(AsyncSmtpTransport::<Tokio1Executor>::from_url(self.smtp.expose())
            .map_err(|e| format!("WEIR_SMTP_URL {}: {e}", self.smtp))?
            .timeout(Some(self.timeout))
            .build())
    }

    /// Can the mail server be reached and does it greet us? (`runner check`)
    pub async fn check(&self) -> Result<()> {
        let transport = self.transport().map_err(Error::user)?;
        let mut redactor = Redactor::new();
        redactor.add_connection(&self.smtp);
        match transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::external(format!("the mail server {} did not answer as SMTP", self.smtp))),
            Err(e) => Err(Error::external(redactor.redact(&format!("the mail server {}: {e}", self.smtp)))),
        }
    }

    async fn deliver(&self, to: Vec<Mailbox>, rendered: Rendered) -> std::result::Result<(), String> {
        let mut message = Message::builder().from(self.from.clone()).subject(rendered.subject);
        for m in to {
            message = message.to(m);
        }
        let message = message
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(rendered.text))
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(rendered.html)),
            )
            .map_err(|e| format!("building the message: {e}"))?;
        self.transport()?.send(message).await.map(|_| ()).map_err(|e| format!("sending through {}: {e}", self.smtp))
    }
}

/// Comma- (or semicolon-) separated addresses.
fn addresses(list: &str) -> impl Iterator<Item = &str> {
    list.split([',', ';']).map(str::trim).filter(|a| !a.is_empty())
}

fn mailbox(address: &str) -> Result<Mailbox> {
    address.trim().parse::<Mailbox>().map_err(|e| Error::user(format!("`{address}` is not an email address ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn reads_the_environment() {
        assert!(Notifier::from_env(env(&[])).unwrap().is_none());
        let n = Notifier::from_env(env(&[
            ("WEIR_SMTP_URL", "smtp://weir:pw@mail.example.com:587?tls=required"),
            ("WEIR_NOTIFY_FROM", "Weir <weir@example.com>"),
            ("WEIR_NOTIFY_TO", "a@example.com, b@example.com;"),
            ("WEIR_NOTIFY_ON", "failure"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(n.to.len(), 2);
        assert_eq!(n.on, NotifyOn::Failure);
        assert!(!format!("{n:?}").contains("pw@"), "the password never prints");
    }

    #[test]
    fn names_what_is_wrong() {
        let err = |pairs: &[(&str, &str)]| Notifier::from_env(env(pairs)).unwrap_err().to_string();
        assert!(err(&[("WEIR_SMTP_URL", "smtp://localhost:25")]).contains("WEIR_NOTIFY_FROM"));
        let e = err(&[("WEIR_SMTP_URL", "http://localhost:25"), ("WEIR_NOTIFY_FROM", "w@x.y")]);
        assert!(e.contains("smtp://"), "{e}");
        let e =
            err(&[("WEIR_SMTP_URL", "smtp://localhost"), ("WEIR_NOTIFY_FROM", "w@x.y"), ("WEIR_NOTIFY_TO", "nobody")]);
        assert!(e.starts_with("WEIR_NOTIFY_TO: `nobody`"), "{e}");
        let e = err(&[("WEIR_SMTP_URL", "smtp://localhost"), ("WEIR_NOTIFY_FROM", "w@x.y"), ("WEIR_NOTIFY_ON", "x")]);
        assert!(e.contains("always"), "{e}");
    }
}
