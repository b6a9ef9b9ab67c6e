//! Replays the kept cargo-fuzz corpus of the `federation` target
//! (`fuzz/corpus/federation/`) on stable Rust through the same case the
//! fuzzer runs (`fuzz/fuzz_targets/federation_case.rs`): delta and round
//! manifests, signatures and keys from the other side. Fails only on a
//! panic.

use std::path::Path;

include!("../../../../fuzz/fuzz_targets/federation_case.rs");

#[test]
fn the_federation_corpus_replays_without_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/federation");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "fuzz/corpus/federation is empty: the replay would test nothing");
    for f in &files {
        federation_case(&std::fs::read(f).unwrap());
    }
}
