//! Mapping PostgreSQL errors onto the portable store error kinds.

use governor_core::{StoreError, StoreErrorKind};
use tokio_postgres::error::SqlState;

/// Translates a driver error raised while doing `op`.
pub(crate) fn map(op: &'static str, e: tokio_postgres::Error) -> StoreError {
    let kind = match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreErrorKind::AlreadyExists,
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            StoreErrorKind::Conflict
        }
        // Class 08 (connection), 53 (resources), 57 (operator intervention,
        // e.g. a server shutting down or failing over): worth retrying.
        Some(c) if ["08", "53", "57"].iter().any(|p| c.code().starts_with(p)) => {
            StoreErrorKind::Unavailable
        }
        Some(c) if c.code().starts_with("22") || c.code().starts_with("23") => {
            StoreErrorKind::Invalid
        }
        Some(_) => StoreErrorKind::Other,
        // No SQLSTATE: the connection broke or could not be made.
        None => StoreErrorKind::Unavailable,
    };
    let message = match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        // "error performing TLS handshake" says little without its causes
        // (such as which certificate check failed).
        None => {
            let mut message = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                message.push_str(": ");
                message.push_str(&c.to_string());
                cause = c.source();
            }
            message
        }
    };
    StoreError::new(kind, op, message).with_source(e)
}

/// The store's writer task is gone.
pub(crate) fn closed(op: &'static str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        op,
        "the postgres writer has stopped",
    )
}
