//! Integration tests for the facade and `#[govern]`.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod govern_fn;
mod govern_impl;
mod resume;
