//! SQL identifiers: validated when they come from the controller, always quoted in SQL.

use std::fmt;

use crate::{Error, Result};

/// PostgreSQL truncates identifiers longer than this many bytes.
pub const MAX_IDENT_LEN: usize = 63;

/// A table, schema or column name from the controller: letters, digits and
/// underscores, not starting with a digit, at most 63 bytes.
///
/// Controller names are checked *before* any SQL runs, so a typo or an injection
/// attempt fails with a message instead of reaching the database. Names are still
/// always quoted, so `OrderId` stays `OrderId` (not `orderid`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Validate `name`; `what` names the controller column in the error ("schema_name").
    pub fn parse(name: &str, what: &str) -> Result<Self> {
        let valid_start = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let valid_rest = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if name.is_empty() || !valid_start || !valid_rest || name.len() > MAX_IDENT_LEN {
            return Err(Error::user(format!(
                "{what} `{name}` is not a valid identifier: use letters, digits and underscores, \
                 starting with a letter or underscore, at most {MAX_IDENT_LEN} characters"
            )));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier: `"name"`.
    pub fn quoted(&self) -> String {
        quote_ident(&self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Quote any name (a column name found in source data, say) as a SQL identifier,
/// doubling embedded quotes. Use [`Ident`] for names that must be validated first.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote text as a SQL string literal, doubling embedded quotes (for a server
/// with `standard_conforming_strings` on, PostgreSQL's default).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["orders", "_tmp", "Order_2025", "a"] {
            assert_eq!(Ident::parse(ok, "destination_table").unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_what_is_not_a_name() {
        let long = "x".repeat(64);
        for bad in ["", "1abc", "orders; drop table audit", "a-b", "a b", "\"q\"", "é", &long] {
            let err = Ident::parse(bad, "schema_name").unwrap_err();
            assert!(err.to_string().starts_with("schema_name `"), "{err}");
            assert_eq!(err.domain(), crate::Domain::User);
        }
    }

    #[test]
    fn quoting_escapes_quotes() {
        assert_eq!(quote_ident("we\"ird col"), "\"we\"\"ird col\"");
        assert_eq!(Ident::parse("Orders", "t").unwrap().quoted(), "\"Orders\"");
    }
}
