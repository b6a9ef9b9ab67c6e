//! Fuzzes what entity memory makes of a model's extraction answer and of a
//! user's text (see `memory_case.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("memory_case.rs");

fuzz_target!(|data: &[u8]| memory_case(data));
