//! Integration tests for the MongoDB store, against the server named by
//! `GOVERNOR_TEST_MONGODB_URL` (`.ci/run` starts one and sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod instances;
mod support;
