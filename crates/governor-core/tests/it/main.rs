//! Integration tests for governor-core.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approvals;
mod approver_view;
mod binding;
mod channels;
mod config;
mod delivery;
mod external;
mod integrity;
mod lifecycle;
mod links;
mod memory_store;
mod pause;
mod policies;
mod policy_files;
mod resume;
mod sealed;
