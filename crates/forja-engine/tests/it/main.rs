//! The integration tests of `forja-engine`, one binary: each module was a test
//! binary of its own, and linking them one by one cost CI minutes and
//! gigabytes of disk.

mod batcher;
mod constraint;
mod llamacpp_vocab;
mod minilm;
mod smollm2;
mod speculative;
mod tiny;
mod train;
