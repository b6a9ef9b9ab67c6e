//! The integration tests of `forja-fed`, one binary: each module was a test
//! binary of its own, and linking them one by one cost CI minutes and
//! gigabytes of disk.

mod aggregate;
mod fuzz_corpus;
mod package;
