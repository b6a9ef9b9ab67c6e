//! Fuzzes the CSV reader (header row, flexible rows): arbitrary bytes through
//! `forja_data::read::read_bytes` as `Format::Csv`. An `Err` is a clean
//! failure; only panics, hangs and OOMs are bugs.
#![no_main]

use forja_data::read::{read_bytes, Format, InputSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_bytes(&InputSpec::default(), Format::Csv, data.to_vec());
});
