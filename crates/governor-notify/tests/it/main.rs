//! Integration tests for governor-notify.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod email;
mod sink;
mod slack;
mod webhook;
