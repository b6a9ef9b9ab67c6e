//! The integration tests of `forja-server`, one binary: each module was a test
//! binary of its own, and linking them one by one cost CI minutes and
//! gigabytes of disk.

mod common;
mod continual;
mod conversations;
mod documents;
mod follow;
mod fuzz_routes;
mod governance;
mod hardening;
#[path = "../../../forja-store/tests/it/pg.rs"]
mod pg;
mod serving;
mod tenancy;
mod ui_api;
mod web_ui;
