//! Replays the `docx` fuzz corpus (`fuzz/corpus/docx`, kept in git) on
//! stable Rust: the same case as the fuzz target, no panic on any input.

#[path = "../../../../fuzz/fuzz_targets/docx_case.rs"]
mod docx_case;

#[test]
fn the_docx_fuzz_corpus_reads_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/docx");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        docx_case::run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 5, "{n} inputs in {}", dir.display());
}
