//! Fuzzes the DOCX reader and the diff engine (see `docx_case.rs`).
#![no_main]

mod docx_case;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    docx_case::run(data);
});
