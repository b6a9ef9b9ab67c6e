//! Fuzzes the PII recognisers and the scrubber (see `pii_case.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("pii_case.rs");

fuzz_target!(|data: &[u8]| pii_case(data));
