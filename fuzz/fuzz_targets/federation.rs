//! Fuzzes what a federation hub and node parse from each other: delta
//! manifests with their signatures, round manifests, public keys (see
//! `federation_case.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("federation_case.rs");

fuzz_target!(|data: &[u8]| federation_case(data));
