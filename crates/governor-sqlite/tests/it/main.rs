//! Integration tests for the SQLite store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod durability;
