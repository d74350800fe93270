//! Integration tests for governor-core.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod lifecycle;
mod memory_store;
