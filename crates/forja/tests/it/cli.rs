//! The `forja` binary end to end on tiny models: stdout carries only the
//! generated text, errors are one line on stderr with exit code 1, never a
//! panic or backtrace.

use crate::common;

use common::{check_user_error, forja, stderr, tiny_gguf};
use forja_core::{ChatMessage, GenerationParams, SamplingParams};
use forja_engine::{Engine, LoadOptions};

#[test]
fn generate_prints_exactly_the_generated_text() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let args = |p: &str| -> Vec<String> {
        [
            "generate",
            "-m",
            model.to_str().unwrap(),
            "-p",
            p,
            "-n",
            "12",
            "--temperature",
            "0",
            "--ignore-eos",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |p: &str, stdin| {
        let a = args(p);
        forja(&a.iter().map(String::as_str).collect::<Vec<_>>(), stdin)
    };
    let o = run("hello world", None);
    assert!(o.status.success(), "{}", stderr(&o));
    let engine = Engine::load(&model, &LoadOptions::default(), &mut |_| {}).unwrap();
    let p = GenerationParams {
        max_tokens: 12,
        ignore_eos: true,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    let (want, _) = engine.generate("hello world", &p, None, |_| true).unwrap();
    assert_eq!(String::from_utf8(o.stdout).unwrap(), want.text);
    // The prompt can come from stdin.
    let o2 = run("-", Some("hello world"));
    assert_eq!(String::from_utf8(o2.stdout).unwrap(), want.text);
}

#[test]
fn chat_reads_turns_from_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let o = forja(
        &["chat", "-m", model.to_str().unwrap(), "-n", "4", "--temperature", "0", "--ignore-eos"],
        Some("hi\n/reset\nhello again\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("(conversation cleared)"));
    // /reset dropped the first turn: each answer is a fresh one-turn chat.
    let engine = Engine::load(&model, &LoadOptions::default(), &mut |_| {}).unwrap();
    let p = GenerationParams {
        max_tokens: 4,
        ignore_eos: true,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    let reply = |q: &str| engine.chat(&[ChatMessage::user(q)], &p, None, |_| true).unwrap().0.text;
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}\n{}\n", reply("hi"), reply("hello again"))
    );
}

#[test]
fn user_errors_are_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let m = model.to_str().unwrap();
    check_user_error(
        &forja(&["generate", "-m", "missing/model.gguf", "-p", "x"], None),
        "model not found at missing/model.gguf",
    );
    check_user_error(
        &forja(&["generate", "-m", "no-such-model", "-p", "x"], None),
        "neither a path that exists nor a built-in model",
    );
    check_user_error(
        &forja(&["generate", "-m", m, "-p", "x", "--temperature=-1"], None),
        "invalid parameter `temperature`",
    );
    check_user_error(
        &forja(&["generate", "-m", m, "-p", "x", "--top-p", "0"], None),
        "invalid parameter `top_p`",
    );
    check_user_error(
        &forja(&["generate", "-m", m, "-c", "4", "-p", "a long prompt that does not fit"], None),
        "context window is 4 tokens",
    );
    check_user_error(
        &forja(&["generate", "-m", m, "-p", "x", "--device", "cuda:0"], None),
        "device `cuda:0` is unavailable",
    );
    let junk = tmp.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    check_user_error(
        &forja(&["generate", "-m", junk.to_str().unwrap(), "-p", "x"], None),
        "not a valid GGUF file",
    );
    check_user_error(&forja(&["models", "install", "nope"], None), "unknown built-in model `nope`");
}

#[test]
fn models_path_resolves_paths_and_names() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let o = forja(&["models", "path", model.to_str().unwrap()], None);
    assert!(o.status.success());
    assert_eq!(String::from_utf8(o.stdout).unwrap().trim(), model.to_str().unwrap());
    let o = forja(&["models", "list"], None);
    assert!(String::from_utf8(o.stdout).unwrap().contains("smollm2-135m-instruct"));
}

#[test]
fn config_file_env_and_flags_in_precedence_and_unknown_keys_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    std::fs::write(
        tmp.path().join("forja.toml"),
        "port = 8123\nmax_batch = 4\ntick_ms = 700\npii_allow = [\"Ana Ruiz\", \"Jorge Gil\"]\n",
    )
    .unwrap();
    let mut cmd = common::forja_cmd(&["config", "show", "--data-dir", d, "--tick-ms", "900"]);
    let o = cmd.env("FORJA_MODEL", "tiny.gguf").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    // (key line, source)
    for (line, source) in [
        ("port = 8123", "# file"),
        ("max_batch = 4", "# file"),
        ("pii_allow = [\"Ana Ruiz\", \"Jorge Gil\"]", "# file"),
        ("tick_ms = 900", "# flag"),
        ("model = \"tiny.gguf\"", "# env FORJA_MODEL"),
        ("host = \"127.0.0.1\"", "# default"),
    ] {
        let l =
            out.lines().find(|l| l.starts_with(line)).unwrap_or_else(|| panic!("{line}: {out}"));
        assert!(l.ends_with(source), "{l}");
    }
    let bad = tmp.path().join("bad.toml");
    for (text, want) in [
        ("prot = 1\n", "unknown key `prot`"),
        ("port = [\n", "bad.toml"),
        ("demo = 3\n", "`demo` is a switch"),
        ("port = \"x\"\n", "came from"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let o = forja(&["up", "--config", bad.to_str().unwrap(), "--data-dir", d], None);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(want), "{text}: {}", stderr(&o));
    }
}

#[test]
fn keys_never_create_tenants_silently_and_rotate_and_revoke() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    check_user_error(
        &forja(&["keys", "create", "--tenant", "nope", "--data-dir", d], None),
        "no tenant `nope`: create it with `forja tenants create nope`",
    );
    let o = forja(
        &["keys", "create", "--tenant", "acme", "--create-tenant", "--name", "ci", "--data-dir", d],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let key = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("forja-"), "{key}");
    let list = |d: &str| {
        let o = forja(&["keys", "list", "--data-dir", d], None);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let rows = list(d);
    let row = rows.lines().find(|l| l.contains(" acme ")).expect("the key is listed");
    assert!(row.contains(" tenant ") && row.contains(" ci ") && row.ends_with("yes"), "{row}");
    // The listing never shows the secret.
    assert!(!rows.contains(&key), "{rows}");
    let id = row.split_whitespace().next().unwrap().to_string();
    let o = forja(&["keys", "rotate", &id, "--grace", "1h", "--data-dir", d], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let fresh = String::from_utf8(o.stdout.clone()).unwrap().trim().to_string();
    assert_ne!(fresh, key);
    assert!(stderr(&o).contains(&format!("replaces {id} (which expires at")), "{}", stderr(&o));
    let o = forja(&["keys", "revoke", &id, "--data-dir", d], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = list(d);
    let old = rows.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(old.ends_with("no"), "{old}");
    assert_eq!(rows.lines().filter(|l| l.ends_with("yes")).count(), 1, "{rows}");
    let o = forja(&["keys", "revoke", "key_nope", "--data-dir", d], None);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

/// `FORJA_ISA` forces a lower kernel level; an unknown level, or one above
/// what the CPU runs, is one line instead of a silently different kernel.
/// Every level gives the same logits within the activations' 8-bit
/// quantization (the kernels themselves are compared exactly in
/// `forja-engine`'s `quant` tests).
#[test]
fn forja_isa_levels_agree_and_bad_levels_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let run = |isa: &str| {
        common::forja_cmd(&[
            "debug",
            "logits",
            "--model",
            model.to_str().unwrap(),
            "--ids",
            "1,5,9,17,33",
        ])
        .env("FORJA_ISA", isa)
        .output()
        .unwrap()
    };
    check_user_error(
        &run("avx9"),
        "FORJA_ISA: unknown level `avx9`: use scalar, avx2, avx512 or neon",
    );
    let logits = |isa: &str| -> Vec<f64> {
        let o = run(isa);
        assert!(o.status.success(), "{isa}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["logits"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().clone())
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let reference = logits("scalar");
    for isa in forja_engine::isa::Isa::available() {
        let got = logits(isa.name());
        let d = got.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
        assert!(d < 1e-3, "{isa} vs scalar: max |delta logit| {d}");
    }
    if forja_engine::isa::Isa::detected() < forja_engine::isa::Isa::Avx512 {
        check_user_error(&run("avx512"), "FORJA_ISA=avx512: this CPU runs scalar");
    }
    // A level of another architecture is refused, not silently ignored.
    let foreign = if cfg!(target_arch = "aarch64") { "avx2" } else { "neon" };
    check_user_error(&run(foreign), &format!("FORJA_ISA={foreign}: this CPU runs scalar"));
}
