//! The integration tests of `forja-docs`, one binary: each module was a test
//! binary of its own, and linking them one by one cost CI minutes and
//! gigabytes of disk.

mod align;
mod diff;
mod docx;
mod fuzz_corpus;
mod libreoffice;
