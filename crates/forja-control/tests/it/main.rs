//! The integration tests of `forja-control`, one binary: each module was a test
//! binary of its own, and linking them one by one cost CI minutes and
//! gigabytes of disk.

mod common;
mod fuzz_memory_corpus;
mod gate;
mod hub;
mod knowledge;
mod memory;
