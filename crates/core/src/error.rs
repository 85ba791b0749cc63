//! The error taxonomy: every failure carries a domain and a retry hint.
//!
//! The engine retries only what is retryable and writes the domain and the
//! message to `audit`, so messages say what went wrong *and* what to do.

use std::fmt;

/// Who has to act on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// Bad configuration or bad data: the user fixes it; retrying cannot help.
    User,
    /// A server or network failed; often transient.
    External,
    /// A bug in Weir.
    Internal,
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Domain::User => "user",
            Domain::External => "external",
            Domain::Internal => "internal",
        })
    }
}

/// An error with a domain, a retry hint and an actionable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    domain: Domain,
    retryable: bool,
    message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Bad configuration or data. Never retried.
    pub fn user(message: impl Into<String>) -> Self {
        Self { domain: Domain::User, retryable: false, message: message.into() }
    }

    /// A server or network failure that may pass: retried with backoff.
    pub fn transient(message: impl Into<String>) -> Self {
        Self { domain: Domain::External, retryable: true, message: message.into() }
    }

    /// A server refused for a reason that will not pass by waiting (permissions, ...).
    pub fn external(message: impl Into<String>) -> Self {
        Self { domain: Domain::External, retryable: false, message: message.into() }
    }

    /// A bug in Weir.
    pub fn internal(message: impl Into<String>) -> Self {
        Self { domain: Domain::Internal, retryable: false, message: message.into() }
    }

    pub fn domain(&self) -> Domain {
        self.domain
    }

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefix the message with where the error happened, keeping domain and hint.
    pub fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    /// Rewrite the message (to redact secrets, say), keeping domain and hint.
    pub fn map_message(mut self, f: impl FnOnce(&str) -> String) -> Self {
        self.message = f(&self.message);
        self
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        match e {
            arrow::error::ArrowError::ExternalError(inner) => Error::external(inner.to_string()),
            arrow::error::ArrowError::IoError(msg, _) => Error::transient(msg),
            other => Error::user(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_domain_and_hint() {
        let e = Error::transient("connection reset").context("reading orders.parquet");
        assert_eq!(e.domain(), Domain::External);
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "reading orders.parquet: connection reset");
    }
}
