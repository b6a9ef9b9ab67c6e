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
mod serving;
mod tenancy;
mod ui_api;
mod web_ui;
