//! Integration tests for the PostgreSQL store, against the server named by
//! `GOVERNOR_TEST_POSTGRES_URL` (`.ci/run` starts one and sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod instances;
mod rate_limit;
mod support;
