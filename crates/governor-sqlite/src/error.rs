//! Mapping SQLite errors onto the portable store error kinds.

use governor_core::{StoreError, StoreErrorKind};
use rusqlite::ErrorCode;

/// Translates a SQLite error raised while doing `op`.
pub(crate) fn map(op: &'static str, e: rusqlite::Error) -> StoreError {
    let (kind, message) = match &e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            let kind = match f.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreErrorKind::Unavailable,
                ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::CannotOpen => {
                    StoreErrorKind::Unavailable
                }
                ErrorCode::ReadOnly | ErrorCode::PermissionDenied => StoreErrorKind::Unavailable,
                // Primary key and unique violations mean "already there";
                // any other constraint means the write itself was wrong.
                ErrorCode::ConstraintViolation if matches!(f.extended_code, 1555 | 2067) => {
                    StoreErrorKind::AlreadyExists
                }
                ErrorCode::ConstraintViolation => StoreErrorKind::Invalid,
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreErrorKind::Corrupt,
                _ => StoreErrorKind::Other,
            };
            let what = match f.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => "database is locked",
                ErrorCode::DiskFull => "disk is full",
                ErrorCode::ReadOnly => "database is read-only",
                ErrorCode::CannotOpen => "cannot open the database file",
                _ => "",
            };
            let detail = msg.clone().unwrap_or_else(|| f.to_string());
            (
                kind,
                if what.is_empty() {
                    detail
                } else {
                    format!("{what} ({detail})")
                },
            )
        }
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            (StoreErrorKind::Corrupt, e.to_string())
        }
        _ => (StoreErrorKind::Other, e.to_string()),
    };
    StoreError::new(kind, op, message).with_source(e)
}

/// One of the store's background threads could not be started.
pub(crate) fn no_thread(e: std::io::Error) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, "open", e.to_string())
}

/// The store's background thread is gone.
pub(crate) fn closed(op: &'static str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        op,
        "the sqlite writer has stopped",
    )
}
