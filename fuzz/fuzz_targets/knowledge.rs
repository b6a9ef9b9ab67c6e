//! Fuzzes what a tenant's document becomes in the knowledge base:
//! extraction of every format, chunking, and the passages a prompt shows
//! (see `knowledge_case.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("knowledge_case.rs");

fuzz_target!(|data: &[u8]| knowledge_case(data));
