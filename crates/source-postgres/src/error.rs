//! Database errors as Weir errors: connection trouble is retried, a query the
//! server refuses is the user's to fix.

use weir_core::Error;

pub fn db_error(e: sqlx::Error, doing: &str) -> Error {
    let retryable_code = |c: &str| c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01";
    match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
            Error::transient(format!("{doing}: {e}"))
        }
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default().into_owned();
            if retryable_code(&code) {
                Error::transient(format!("{doing}: {db}"))
            } else if code == "42501" {
                Error::external(format!(
                    "{doing}: {db} (SQLSTATE {code}); grant the connection's user SELECT on the table"
                ))
            } else if code.starts_with("22") || code.starts_with("42") || code.starts_with("0A") {
                Error::user(format!("{doing}: {db} (SQLSTATE {code})"))
            } else {
                Error::external(format!("{doing}: {db} (SQLSTATE {code})"))
            }
        }
        _ => Error::external(format!("{doing}: {e}")),
    }
}
