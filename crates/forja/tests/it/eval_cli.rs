//! `forja eval` end to end: WER and CER agree with the `jiwer` package to
//! 1e-9 (a hand-written corpus of the hard cases and a seeded random one,
//! both normalisations), a golden set is evaluated with a real model, and
//! bad inputs are one-line errors naming the file and line.

use crate::common;

use common::{check_user_error, forja, tiny_gguf};
use rand::{Rng, SeedableRng};
use std::path::Path;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wer_corpus.jsonl");

/// jiwer's numbers for a predictions file, or `None` when jiwer is not
/// installed (a failure under FORJA_REQUIRE_TESTDATA).
fn jiwer(file: &Path, norm: &str) -> Option<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/jiwer-check.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(file)
        .arg(norm)
        .env("PYTHONPATH", std::env::var("FORJA_PYTHONPATH").unwrap_or_default())
        .output()
        .ok()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            std::env::var_os("FORJA_REQUIRE_TESTDATA").is_none(),
            "jiwer is missing (run `make setup-test`): {err}"
        );
        eprintln!("skipping: jiwer is not installed (make setup-test installs it)");
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn forja_metrics(file: &Path, norm: &str) -> serde_json::Value {
    let f = file.to_str().unwrap();
    let out = forja(
        &[
            "eval",
            "--predictions",
            f,
            "--metrics",
            "wer,cer",
            "--json",
            "--normalization",
            norm,
            "--embedding-model",
            "none",
        ],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Random pairs with the characters that make normalisation hard: case,
/// accents, punctuation, runs of spaces, tabs, non-breaking spaces.
fn random_corpus(path: &Path, n: usize, seed: u64) {
    let words = [
        "el",
        "Pleno",
        "aprobó",
        "MOCIÓN",
        "concejal",
        "votos",
        "favor",
        "acta",
        "sesión",
        "Jhon",
        "John",
        "12",
        "doce",
        "presupuesto",
        "¿qué?",
        "«sí»",
        "—",
        "D.",
        "3,5",
        "%",
    ];
    let seps = [" ", " ", " ", "  ", "\t", "\u{a0}", " , ", ". "];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let sentence = |rng: &mut rand_chacha::ChaCha8Rng, min: usize| {
        let n = rng.random_range(min..12);
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push_str(seps[rng.random_range(0..seps.len())]);
            }
            s.push_str(words[rng.random_range(0..words.len())]);
        }
        s
    };
    let mut out = String::new();
    for _ in 0..n {
        // References keep at least one plain word so jiwer accepts them.
        let r = format!("acta {}", sentence(&mut rng, 1));
        let h = sentence(&mut rng, 0);
        out.push_str(&serde_json::json!({"reference": r, "prediction": h}).to_string());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn wer_and_cer_agree_with_jiwer() {
    let tmp = tempfile::tempdir().unwrap();
    let random = tmp.path().join("random.jsonl");
    random_corpus(&random, 400, 7);
    for file in [Path::new(CORPUS), random.as_path()] {
        for norm in ["standard", "none"] {
            let Some(want) = jiwer(file, norm) else { return };
            let got = forja_metrics(file, norm);
            for m in ["wer", "cer"] {
                let (g, w) = (got[m].as_f64().unwrap(), want[m].as_f64().unwrap());
                assert!((g - w).abs() < 1e-9, "{} {norm} {m}: forja {g} jiwer {w}", file.display());
            }
        }
    }
}

#[test]
fn a_golden_set_is_evaluated_with_a_real_model() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let golden = tmp.path().join("golden.jsonl");
    std::fs::write(
        &golden,
        concat!(
            r#"{"messages":[{"role":"user","content":"hello"},{"role":"assistant","content":"hello world"}]}"#,
            "\n",
            r#"{"id":"j","prompt":"json please","reference":"{\"a\": 1}","schema":{"type":"object"}}"#,
            "\n",
        ),
    )
    .unwrap();
    let report = tmp.path().join("report.json");
    let out = forja(
        &[
            "eval",
            "-m",
            model.to_str().unwrap(),
            "--golden",
            golden.to_str().unwrap(),
            "--max-tokens",
            "8",
            "--json",
            "--embedding-model",
            "none",
            "--report",
            report.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in
        ["wer", "cer", "exact_match", "token_f1", "validity", "loss", "perplexity", "latency_ms"]
    {
        assert!(m[k].as_f64().is_some_and(f64::is_finite), "{k} missing in {m}");
    }
    assert!(m["loss"].as_f64().unwrap() > 0.0);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let ex = r["examples"].as_array().unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[1]["id"], "j");
    assert!(ex[1]["valid"].is_boolean() && ex[0]["valid"].is_null(), "{r}");
}

#[test]
fn bad_eval_inputs_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str, text: &str| {
        let f = tmp.path().join(name);
        std::fs::write(&f, text).unwrap();
        f.to_str().unwrap().to_string()
    };
    let empty = p("empty.jsonl", "\n");
    let no_ref =
        p("noref.jsonl", "{\"prompt\": \"a\", \"reference\": \"b\"}\n{\"prompt\": \"c\"}\n");
    let preds = p("preds.jsonl", "{\"reference\": \"a\", \"prediction\": \"b\"}\n");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["eval", "--golden", &empty], "the golden set is empty".into()),
        (
            vec!["eval", "--golden", &no_ref],
            format!("{no_ref}: line 2: a `prompt` line needs a `reference`"),
        ),
        (
            vec!["eval", "--golden", "/nonexistent/g.jsonl"],
            "cannot read /nonexistent/g.jsonl".into(),
        ),
        (vec!["eval", "--predictions", &no_ref], format!("{no_ref}: line 1: missing `prediction`")),
        (
            vec!["eval", "--predictions", &preds, "--metrics", "wer,bleu"],
            "unknown metric `bleu`".into(),
        ),
        (
            vec![
                "eval",
                "--predictions",
                &preds,
                "--metrics",
                "similarity",
                "--embedding-model",
                "none",
            ],
            "metric `similarity` was not computed".into(),
        ),
        (
            vec!["eval", "--predictions", &preds, "--normalization", "loud"],
            "--normalization must be".into(),
        ),
    ];
    for (args, want) in cases {
        check_user_error(&forja(&args, None), &want);
    }
}
