//! MySQL errors as Weir errors: what is retried, what the user must fix.

use sqlx::mysql::MySqlDatabaseError;
use weir_core::Error;

/// Server error codes worth retrying: lock wait timeout, deadlock, too many
/// connections, server shutting down, query interrupted (a `KILL QUERY`).
const RETRYABLE: &[u16] = &[1205, 1213, 1040, 1053, 1317, 2006, 2013];
/// Codes that mean the configuration names something wrong: unknown database,
/// table or column, SQL syntax, access denied to a table or column.
const USER: &[u16] = &[1049, 1146, 1054, 1064, 1142, 1143, 1060, 1166];

/// A sqlx error as a Weir error. A lost connection is retried; a wrong name is
/// the user's to fix; anything else is the server's.
pub fn db_error(e: sqlx::Error, doing: &str) -> Error {
    match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
            Error::transient(format!("{doing}: {e}"))
        }
        sqlx::Error::Database(db) => {
            let number = db.try_downcast_ref::<MySqlDatabaseError>().map(|e| e.number()).unwrap_or_default();
            let message = format!("{doing}: {} (MySQL error {number})", db.message());
            if RETRYABLE.contains(&number) {
                Error::transient(message)
            } else if USER.contains(&number) {
                Error::user(message)
            } else {
                Error::external(message)
            }
        }
        _ => Error::external(format!("{doing}: {e}")),
    }
}
