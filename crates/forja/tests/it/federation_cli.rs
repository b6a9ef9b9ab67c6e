//! `forja federation aggregate` end to end: two PEFT adapters of a tiny
//! model in, one PEFT adapter (and its report) out that the model loads;
//! bad input is one line naming what to fix.

use crate::common;

use common::{check_user_error, forja, tiny_gguf};
use forja_engine::lora::Module;
use forja_engine::{Engine, LoadOptions};
use std::path::Path;

/// A random adapter of rank `r` (alpha 2r) over every module, saved as PEFT.
fn write_adapter(e: &Engine, r: usize, seed: u64, dir: &Path) {
    forja_engine::fixtures::random_adapter(e.model(), r, 2.0 * r as f64, &Module::ALL, seed)
        .save(dir)
        .unwrap();
}

#[test]
fn aggregate_writes_a_peft_adapter_and_its_report() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let e = Engine::load(&model, &LoadOptions::default(), &mut |_| {}).unwrap();
    let (a, b, out) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("out"));
    write_adapter(&e, 2, 1, &a);
    write_adapter(&e, 4, 2, &b);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (m, a_s, b_s, out_s) = (s(&model), s(&a), s(&b), s(&out));
    let args = ["federation", "aggregate", "-m", &m, "--out", &out_s, "--weights", "1,3", "--json"];
    let o = forja(&[&args[..], &[a_s.as_str(), b_s.as_str()]].concat(), None);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["method"], "exact");
    assert_eq!(report["rank"], 6, "{report}");
    assert_eq!(report["weights"], serde_json::json!([0.25, 0.75]));
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("aggregation.json")).unwrap()).unwrap();
    assert_eq!(saved["adapters"][1], b_s.as_str());
    let back = e.load_adapter(&out).unwrap();
    assert_eq!(back.config().r, 6);
    assert_eq!(back.config().targets.len(), 7);

    // A rank cut says what it lost.
    let cut = s(&tmp.path().join("cut"));
    let args = ["federation", "aggregate", "-m", &m, "--out", &cut, "--rank", "3"];
    let o = forja(&[&args[..], &[a_s.as_str(), b_s.as_str()]].concat(), None);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("rank cut: relative error"), "{text}");
    assert!(text.contains("(exact, rank 3, 14 modules)"), "{text}");
    // FedIT reports under the name the CLI takes.
    let fedit = s(&tmp.path().join("fedit"));
    let args =
        ["federation", "aggregate", "-m", &m, "--method", "fedit", "--out", &fedit, "--json"];
    let o = forja(&[&args[..], &[a_s.as_str(), b_s.as_str()]].concat(), None);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["method"], "fedit", "{report}");

    // Bad input: one line each.
    let missing = s(&tmp.path().join("nope"));
    let o = forja(&["federation", "aggregate", "-m", &m, "--out", &out_s, &a_s, &missing], None);
    check_user_error(&o, "nope");
    let o = forja(
        &["federation", "aggregate", "-m", &m, "--out", &out_s, "--weights", "1", &a_s, &b_s],
        None,
    );
    check_user_error(&o, "1 weights for 2 adapters");
}

#[test]
fn keygen_pack_and_verify_a_signed_delta() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let e = Engine::load(&model, &LoadOptions::default(), &mut |_| {}).unwrap();
    let adapter = tmp.path().join("adapter");
    write_adapter(&e, 2, 3, &adapter);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (m, key, pkg) = (s(&model), s(&tmp.path().join("node.key")), s(&tmp.path().join("pkg")));
    let o = forja(&["federation", "keygen", "--out", &key], None);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let public = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(public.len(), 64, "{public}");
    check_user_error(&forja(&["federation", "keygen", "--out", &key], None), "never overwritten");

    let a = s(&adapter);
    let args =
        ["federation", "pack", "--key", &key, "--adapter", &a, "-m", &m, "--examples", "300"];
    let o = forja(
        &[&args[..], &["--metric", "wer=0.05", "--lineage", "ftjob-1", "--out", &pkg]].concat(),
        None,
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let o = forja(&["federation", "verify", &pkg, "--trust", &public, "-m", &m], None);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("300 examples"), "{text} {}", common::stderr(&o));

    // Untrusted key, tampered weights: one line each, naming the package.
    check_user_error(
        &forja(&["federation", "verify", &pkg, "--trust", &"0".repeat(64)], None),
        "not trusted",
    );
    let w = tmp.path().join("pkg").join("adapter_model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&w, bytes).unwrap();
    check_user_error(&forja(&["federation", "verify", &pkg], None), "tampered or truncated");
    let o = forja(
        &[
            "federation",
            "pack",
            "--key",
            &key,
            "--adapter",
            &a,
            "-m",
            &m,
            "--examples",
            "1",
            "--metric",
            "wer",
            "--out",
            &pkg,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "clap refuses a metric without a value");
}
