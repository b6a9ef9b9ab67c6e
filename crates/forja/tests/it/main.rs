//! The integration tests of `forja`, one binary: each module was a test
//! binary of its own, and linking them one by one cost CI minutes and
//! gigabytes of disk.

mod cli;
mod common;
mod continual_cli;
mod curate_cli;
mod docs_cli;
mod documents_api;
mod eval_cli;
mod federation_cli;
mod federation_hub;
mod governance_cli;
mod knowledge_api;
mod loop_e2e;
mod memory_api;
mod ops;
#[path = "../../../forja-store/tests/it/pg.rs"]
mod pg;
mod registry_cli;
mod replicas;
mod s3;
mod serve_api;
mod serve_cli;
mod tasks_cli;
mod train_cli;
mod trl_backend;
mod web_ui;
