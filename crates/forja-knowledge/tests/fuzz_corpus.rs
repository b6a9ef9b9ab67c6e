//! Replays the `knowledge` fuzz corpus (`fuzz/corpus/knowledge`, kept in
//! git) on stable Rust: the same case as the fuzz target, no panic on any
//! input.

include!("../../../fuzz/fuzz_targets/knowledge_case.rs");

#[test]
fn the_knowledge_fuzz_corpus_extracts_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/knowledge");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        knowledge_case(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 5, "{n} inputs in {}", dir.display());
}
