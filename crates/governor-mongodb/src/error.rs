//! Mapping MongoDB driver errors onto the portable store error kinds.

use governor_core::{StoreError, StoreErrorKind};
use mongodb::error::{ErrorKind, TRANSIENT_TRANSACTION_ERROR, WriteFailure};

/// MongoDB's duplicate key error.
pub(crate) const DUPLICATE_KEY: i32 = 11000;
/// Two transactions wrote the same document.
const WRITE_CONFLICT: i32 = 112;

/// The server's error code, when the error carries one.
pub(crate) fn code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::InsertMany(i) => i
            .write_errors
            .as_ref()
            .and_then(|errors| errors.first())
            .map(|w| w.code),
        _ => None,
    }
}

/// Whether retrying the whole transaction may succeed.
pub(crate) fn is_transient(e: &mongodb::error::Error) -> bool {
    e.contains_label(TRANSIENT_TRANSACTION_ERROR) || code(e) == Some(WRITE_CONFLICT)
}

/// Translates a driver error raised while doing `op`.
pub(crate) fn map(op: &'static str, e: mongodb::error::Error) -> StoreError {
    let kind = match (&*e.kind, code(&e)) {
        (_, Some(DUPLICATE_KEY)) => StoreErrorKind::AlreadyExists,
        _ if is_transient(&e) => StoreErrorKind::Conflict,
        (
            ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Shutdown,
            _,
        ) => StoreErrorKind::Unavailable,
        (ErrorKind::BsonDeserialization(_), _) => StoreErrorKind::Corrupt,
        (ErrorKind::InvalidArgument { .. }, _) => StoreErrorKind::Invalid,
        _ => StoreErrorKind::Other,
    };
    let message = match &*e.kind {
        ErrorKind::Command(c) => format!("{} ({}): {}", c.code_name, c.code, c.message),
        ErrorKind::Write(WriteFailure::WriteError(w)) => format!("{} ({})", w.message, w.code),
        other => other.to_string(),
    };
    StoreError::new(kind, op, message).with_source(e)
}

/// The store's writer task is gone.
pub(crate) fn closed(op: &'static str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        op,
        "the mongodb writer has stopped",
    )
}
