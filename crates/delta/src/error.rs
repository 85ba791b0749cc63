//! delta-rs errors as Weir errors: what a person can fix is the user's, a
//! store that failed or a concurrent commit is retried, the rest is external.

use deltalake::DeltaTableError;
use deltalake::kernel::transaction::TransactionError;
use weir_core::Error;

/// `what` says what was being done: "writing the Delta table at s3://…".
pub fn delta_error(e: DeltaTableError, what: &str) -> Error {
    match &e {
        DeltaTableError::VersionAlreadyExists(_)
        | DeltaTableError::Transaction {
            source:
                TransactionError::VersionAlreadyExists(_)
                | TransactionError::CommitConflict(_)
                | TransactionError::MaxCommitAttempts(_),
        } => Error::transient(format!("{what}: another writer committed to the table at the same time ({e})")),
        DeltaTableError::SchemaMismatch { .. } | DeltaTableError::InvalidTableLocation(_) => {
            Error::user(format!("{what}: {e}"))
        }
        _ if caused_by_store(&e) => Error::transient(format!("{what}: the store failed: {}", root_cause(&e))),
        _ => Error::external(format!("{what}: {e}")),
    }
}

/// An object store error met outside delta-rs (Weir's commit markers): access
/// is the connection's to fix, anything else is retried.
pub fn store_error(e: object_store::Error, what: &str) -> Error {
    match e {
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            Error::external(format!("{what}: access denied ({e}); check the connection's credentials"))
        }
        other => Error::transient(format!("{what}: {other}")),
    }
}

/// Whether an object store error sits anywhere in the chain: the storage
/// failed (down, timed out, refused), which a later attempt may not meet.
fn caused_by_store(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<object_store::Error>() || err.is::<std::io::Error>() {
            return true;
        }
        if let Some(df) = err.downcast_ref::<deltalake::datafusion::error::DataFusionError>()
            && matches!(df, deltalake::datafusion::error::DataFusionError::ObjectStore(_))
        {
            return true;
        }
        current = err.source();
    }
    let text = e.to_string();
    text.contains("error sending request") || text.contains("Connection refused") || text.contains("connection closed")
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
