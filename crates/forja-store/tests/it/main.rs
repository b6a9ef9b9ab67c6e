//! The integration tests of `forja-store`, one binary: each module was a test
//! binary of its own, and linking them one by one cost CI minutes and
//! gigabytes of disk.

mod backend;
mod documents;
mod governance;
mod pg;
mod registry;
mod store;
mod tasks;
