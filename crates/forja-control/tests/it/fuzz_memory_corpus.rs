//! Replays the `memory` fuzz corpus (`fuzz/corpus/memory`, kept in git) on
//! stable Rust: the same case as the fuzz target, no panic on any input.

include!("../../../../fuzz/fuzz_targets/memory_case.rs");

#[test]
fn the_memory_fuzz_corpus_parses_and_keys_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/memory");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        memory_case(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 5, "{n} inputs in {}", dir.display());
}
