//! Replays the kept cargo-fuzz corpus (`fuzz/corpus/<target>/`) through
//! `read_bytes` on stable Rust, so CI exercises every input the fuzzers found
//! interesting. An `Err` is a clean failure; the test fails only on a panic.

use std::path::{Path, PathBuf};

use forja_data::read::{read_bytes, Format, InputSpec};

const TARGETS: &[(&str, Format)] = &[
    ("jsonl", Format::Jsonl),
    ("csv", Format::Csv),
    ("parquet", Format::Parquet),
    ("feed", Format::Feed),
    ("text", Format::Text),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

/// The non-hidden files of one target's corpus, sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir().join(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

fn replay(target: &str, format: Format) {
    let files = inputs(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target} is empty: the replay would test nothing");
    let spec = InputSpec::default();
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // Ok or Err are both fine; a panic fails the test and names the input.
        let result = std::panic::catch_unwind(|| {
            let _ = read_bytes(&spec, format, bytes);
        });
        assert!(result.is_ok(), "read_bytes panicked on {}", file.display());
    }
}

#[test]
fn jsonl_corpus() {
    replay("jsonl", Format::Jsonl);
}

#[test]
fn csv_corpus() {
    replay("csv", Format::Csv);
}

#[test]
fn parquet_corpus() {
    replay("parquet", Format::Parquet);
}

#[test]
fn feed_corpus() {
    replay("feed", Format::Feed);
}

#[test]
fn text_corpus() {
    replay("text", Format::Text);
}

#[test]
fn every_target_has_a_corpus_directory() {
    for (target, _) in TARGETS {
        assert!(corpus_dir().join(target).is_dir(), "missing fuzz/corpus/{target}");
    }
}

include!("../../../fuzz/fuzz_targets/pii_case.rs");

/// The `pii` target's corpus (the recognisers and the scrubber): a long
/// digit run before a letter once overflowed the DNI check.
#[test]
fn pii_corpus() {
    let files = inputs("pii");
    assert!(files.len() >= 5, "fuzz/corpus/pii has {} inputs", files.len());
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let result = std::panic::catch_unwind(|| pii_case(&bytes));
        assert!(result.is_ok(), "the PII scrubber panicked on {}", file.display());
    }
}
