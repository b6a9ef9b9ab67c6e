//! Engine tests on tiny random models written by the tests: HF and GGUF
//! loading agree, GGUF tokenizers equal their tokenizer.json twins, the KV
//! cache equals a cache-free forward for every family, batching changes no
//! tokens, and bad inputs give clear errors.

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use forja_core::{ChatMessage, GenerationParams, SamplingParams};
use forja_engine::fixtures as common;
use forja_engine::fixtures::Spec;
use forja_engine::models::llama::Lora;
use forja_engine::{Engine, KvType, LoadOptions, Request};
use std::path::Path;

fn load(path: &Path) -> Engine {
    Engine::load(path, &LoadOptions { threads: Some(2), ..Default::default() }, &mut |_| {})
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn load_err(path: &Path) -> String {
    Engine::load(path, &LoadOptions::default(), &mut |_| {}).unwrap_err().to_string()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

fn greedy(max_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_tokens,
        ignore_eos: true,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    }
}

const PROMPT: &[u32] = &[5, 17, 42, 99, 7, 63, 120, 8];

#[test]
fn hf_and_gguf_f32_give_the_same_logits_for_every_family() {
    for spec in [Spec::llama(), Spec::qwen2(), Spec::qwen3(), Spec::mistral()] {
        let tmp = tempfile::tempdir().unwrap();
        let w = common::weights(&spec, 1);
        common::write_hf(&tmp.path().join("hf"), &spec, &w);
        let gguf = tmp.path().join("model.gguf");
        common::write_gguf(&gguf, &spec, &w, GgmlDType::F32);
        let (hf, gg) = (load(&tmp.path().join("hf")), load(&gguf));
        let (a, b) = (hf.logits(PROMPT).unwrap(), gg.logits(PROMPT).unwrap());
        assert_eq!(a.len(), spec.vocab());
        let d = max_abs_diff(&a, &b);
        assert!(d < 1e-4, "{}: HF vs GGUF max |Δlogit| = {d}", spec.family);
    }
}

#[test]
fn quantized_gguf_tracks_f32() {
    let spec = Spec::llama();
    let tmp = tempfile::tempdir().unwrap();
    let w = common::weights(&spec, 2);
    let mut logits: Vec<Vec<f32>> = Vec::new();
    for (dtype, min_cos) in [
        (GgmlDType::F32, 1.0),
        (GgmlDType::F16, 0.9999),
        (GgmlDType::Q8_0, 0.999),
        (GgmlDType::Q4_1, 0.97),
        (GgmlDType::Q4_0, 0.95),
    ] {
        let p = tmp.path().join(format!("{dtype:?}.gguf"));
        common::write_gguf(&p, &spec, &w, dtype);
        let l = load(&p).logits(PROMPT).unwrap();
        if let Some(reference) = logits.first() {
            let c = cosine(reference, &l);
            assert!(c >= min_cos, "{dtype:?}: cosine to f32 logits {c} < {min_cos}");
        }
        logits.push(l);
    }
}

#[test]
fn quantizing_at_load_equals_the_gguf_file_of_that_format() {
    // A serving copy of safetensors weights (`LoadOptions::quantize`) is the
    // model llama.cpp's converter would write in that format: same blocks,
    // same logits; the tied output layer is quantized with the embedding.
    for spec in [Spec::llama(), Spec::qwen2()] {
        let tmp = tempfile::tempdir().unwrap();
        let w = common::weights(&spec, 13);
        common::write_hf(&tmp.path().join("hf"), &spec, &w);
        let dense = load(&tmp.path().join("hf")).logits(PROMPT).unwrap();
        for (qt, dtype, min_cos) in [
            (forja_engine::quant::QType::Q8_0, GgmlDType::Q8_0, 0.999),
            (forja_engine::quant::QType::Q4_0, GgmlDType::Q4_0, 0.95),
        ] {
            let gguf = tmp.path().join(format!("{dtype:?}.gguf"));
            common::write_gguf(&gguf, &spec, &w, dtype);
            let opts = LoadOptions { threads: Some(2), quantize: Some(qt), ..Default::default() };
            let q = Engine::load(&tmp.path().join("hf"), &opts, &mut |_| {}).unwrap();
            assert_eq!(q.model().weight_formats(), [qt.name()]);
            let a = q.logits(PROMPT).unwrap();
            let b = load(&gguf).logits(PROMPT).unwrap();
            let d = max_abs_diff(&a, &b);
            assert!(d < 1e-3, "{} {dtype:?}: at-load vs GGUF max |Δlogit| = {d}", spec.family);
            let c = cosine(&dense, &a);
            assert!(c >= min_cos, "{} {dtype:?}: cosine to f32 {c}", spec.family);
            assert!(max_abs_diff(&dense, &a) > 0.0, "{dtype:?}: nothing was quantized");
            // Training and the unquantized reference ignore the option.
            let opts = LoadOptions { dequantize: true, ..opts };
            let r = Engine::load(&tmp.path().join("hf"), &opts, &mut |_| {}).unwrap();
            assert_eq!(r.model().weight_formats(), ["F32"]);
            assert_eq!(r.logits(PROMPT).unwrap(), dense);
        }
    }
}

#[test]
fn k_quants_run_through_candle() {
    // k-quant blocks are 256 wide: a slightly wider model.
    let spec = Spec { hidden: 256, inter: 512, head_dim: 64, ..Spec::llama() };
    let tmp = tempfile::tempdir().unwrap();
    let w = common::weights(&spec, 12);
    let mut logits: Vec<Vec<f32>> = Vec::new();
    for dtype in [GgmlDType::F32, GgmlDType::Q6K, GgmlDType::Q4K] {
        let p = tmp.path().join(format!("{dtype:?}.gguf"));
        common::write_gguf(&p, &spec, &w, dtype);
        logits.push(load(&p).logits(PROMPT).unwrap());
    }
    assert!(cosine(&logits[0], &logits[1]) > 0.99);
    assert!(cosine(&logits[0], &logits[2]) > 0.95);
}

#[test]
fn gguf_tokenizer_encodes_like_its_tokenizer_json() {
    let spec = Spec::llama();
    let tmp = tempfile::tempdir().unwrap();
    let w = common::weights(&spec, 3);
    common::write_hf(&tmp.path().join("hf"), &spec, &w);
    common::write_gguf(&tmp.path().join("m.gguf"), &spec, &w, GgmlDType::F32);
    let (hf, gg) = (load(&tmp.path().join("hf")), load(&tmp.path().join("m.gguf")));
    let extra = ["<|im_start|>user\nhola<|im_end|>", "  spaces\n\nand\ttabs ", "😀 emoji", ""];
    for text in common::sample_texts().iter().chain(extra.iter()) {
        let a = hf.tokenizer().encode(text, false).unwrap();
        let b = gg.tokenizer().encode(text, false).unwrap();
        assert_eq!(a, b, "{text:?}");
        assert_eq!(gg.tokenizer().decode(&b, false).unwrap(), *text);
    }
    assert_eq!(gg.tokenizer().encode("<|im_start|>", false).unwrap(), vec![1]);
    assert_eq!(gg.tokenizer().eog_ids(), &[0, 2]);
}

/// Logits for each position of `tokens` from a cache-free forward.
fn full_forward(e: &Engine, tokens: &[u32]) -> Vec<Vec<f32>> {
    let ids = Tensor::new(tokens, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let l = e.model().forward_full(&ids, Lora::NONE).unwrap();
    l.squeeze(0).unwrap().to_vec2().unwrap()
}

/// Every prefix through the cache gives the logits of a cache-free
/// forward: to rounding with an f32 cache, to f16's precision with the
/// default f16 one (and then not exactly: the f16 cache is really used).
#[test]
fn kv_cache_decoding_equals_a_full_forward() {
    for (kind, tol) in [(KvType::F32, 1e-4), (KvType::F16, 2e-2)] {
        let mut worst = 0f32;
        for spec in [Spec::llama(), Spec::qwen2(), Spec::qwen3(), Spec::mistral()] {
            worst = worst.max(cached_vs_full(&spec, kind, tol));
        }
        if kind == KvType::F16 {
            assert!(worst > 1e-6, "an f16 cache gave f32's logits exactly: is it used?");
        }
    }
}

/// The largest |Δlogit| between cached decoding and a full forward.
fn cached_vs_full(spec: &Spec, kind: KvType, tol: f32) -> f32 {
    let mut worst = 0f32;
    let tmp = tempfile::tempdir().unwrap();
    common::write_hf(tmp.path(), spec, &common::weights(spec, 4));
    let opts = LoadOptions { threads: Some(2), kv_type: kind, ..Default::default() };
    let e = Engine::load(tmp.path(), &opts, &mut |_| {}).unwrap();
    assert_eq!(e.model().kv_type(), kind);
    let full = full_forward(&e, PROMPT);
    let mut cache = e.model().new_cache();
    for (pos, &t) in PROMPT.iter().enumerate() {
        let slots = [forja_engine::Slot { seq: 0, pos }];
        let batch =
            forja_engine::models::llama::Batch { tokens: &[t], slots: &slots, logits_rows: &[0] };
        let l = e.model().forward(&batch, &mut [&mut cache], Lora::NONE).unwrap();
        let l: Vec<f32> = l.flatten_all().unwrap().to_vec1().unwrap();
        let d = max_abs_diff(&l, &full[pos]);
        assert!(d < tol, "{} {kind} cache, pos {pos}: |Δ| = {d}", spec.family);
        worst = worst.max(d);
    }
    assert_eq!(cache.len(), PROMPT.len());
    worst
}

#[test]
fn batched_generation_matches_one_by_one() {
    let spec = Spec::llama();
    let tmp = tempfile::tempdir().unwrap();
    common::write_gguf(
        &tmp.path().join("m.gguf"),
        &spec,
        &common::weights(&spec, 5),
        GgmlDType::Q8_0,
    );
    let e = load(&tmp.path().join("m.gguf"));
    let prompts: Vec<Vec<u32>> = vec![PROMPT.to_vec(), vec![9, 10], vec![30, 31, 32, 33, 34]];
    let reqs: Vec<Request> =
        prompts.iter().map(|p| Request { prompt: p.clone(), params: greedy(12) }).collect();
    let (batched, timings) = e.generate_batch(&reqs, None, &mut |_, _| true).unwrap();
    assert_eq!(timings.prompt_tokens, 15);
    for (r, b) in reqs.iter().zip(&batched) {
        let (alone, _) = e.generate_batch(std::slice::from_ref(r), None, &mut |_, _| true).unwrap();
        assert_eq!(alone[0].tokens, b.tokens);
        assert_eq!(b.tokens.len(), 12);
        assert_eq!(b.finish, forja_engine::FinishReason::Length);
    }
}

#[test]
fn streaming_text_stop_strings_and_cancellation() {
    let spec = Spec::llama();
    let tmp = tempfile::tempdir().unwrap();
    common::write_hf(tmp.path(), &spec, &common::weights(&spec, 6));
    let e = load(tmp.path());
    let (full, _) = e.generate("hello world", &greedy(24), None, |_| true).unwrap();
    assert!(!full.text.is_empty());
    // Streamed pieces concatenate to the final text.
    let mut streamed = String::new();
    let (again, _) = e
        .generate("hello world", &greedy(24), None, |t| {
            streamed.push_str(t);
            true
        })
        .unwrap();
    assert_eq!(streamed, again.text);
    assert_eq!(again.text, full.text);
    // A stop string cuts the text before it, and is never streamed.
    let chars: Vec<char> = full.text.chars().collect();
    let stop: String =
        chars[chars.len() / 2..(chars.len() / 2 + 2).min(chars.len())].iter().collect();
    let mut streamed = String::new();
    let p = GenerationParams { stop: vec![stop.clone()], ..greedy(24) };
    let (cut, _) = e
        .generate("hello world", &p, None, |t| {
            streamed.push_str(t);
            true
        })
        .unwrap();
    assert_eq!(cut.finish, forja_engine::FinishReason::Stop);
    assert!(!cut.text.contains(&stop), "{:?} contains {stop:?}", cut.text);
    assert!(full.text.starts_with(&cut.text));
    assert_eq!(streamed, cut.text);
    // Cancelling from the callback ends generation early.
    let mut calls = 0;
    let (c, _) = e
        .generate("hello world", &greedy(24), None, |_| {
            calls += 1;
            calls < 2
        })
        .unwrap();
    assert_eq!(c.finish, forja_engine::FinishReason::Cancelled);
    assert!(c.tokens.len() < 24);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let spec = Spec::llama();
    let tmp = tempfile::tempdir().unwrap();
    common::write_hf(tmp.path(), &spec, &common::weights(&spec, 7));
    let e = load(tmp.path());
    let p = |seed| GenerationParams {
        max_tokens: 16,
        ignore_eos: true,
        sampling: SamplingParams {
            temperature: 3.0,
            seed: Some(seed),
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let run = |seed| e.generate("the", &p(seed), None, |_| true).unwrap().0.tokens;
    assert_eq!(run(1), run(1));
    assert!((2..6).any(|s| run(s) != run(1)), "different seeds never differ");
}

#[test]
fn chat_uses_the_models_template() {
    let spec = Spec::qwen2();
    let tmp = tempfile::tempdir().unwrap();
    common::write_hf(tmp.path(), &spec, &common::weights(&spec, 8));
    let e = load(tmp.path());
    let text = e.render_chat(&[ChatMessage::user("hi")], true).unwrap();
    assert_eq!(text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    let ids = e.tokenizer().encode(&text, false).unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is one special token");
    let (reply, t) = e.chat(&[ChatMessage::user("hi")], &greedy(5), None, |_| true).unwrap();
    assert_eq!(reply.prompt_tokens, ids.len());
    assert_eq!(t.prompt_tokens, ids.len());
}

#[test]
fn prompt_longer_than_the_context_is_refused() {
    let spec = Spec::llama();
    let tmp = tempfile::tempdir().unwrap();
    common::write_hf(tmp.path(), &spec, &common::weights(&spec, 9));
    let e = Engine::load(
        tmp.path(),
        &LoadOptions { ctx_size: Some(8), ..Default::default() },
        &mut |_| {},
    )
    .unwrap();
    let err = e
        .generate_batch(&[Request { prompt: vec![5; 8], params: greedy(4) }], None, &mut |_, _| {
            true
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("prompt has 8 tokens but the context window is 8 tokens"), "{err}");
    assert!(err.contains("--ctx-size"), "{err}");
    // A prompt that fits stops at the context end with finish = length.
    let (out, _) = e
        .generate_batch(&[Request { prompt: vec![5; 6], params: greedy(50) }], None, &mut |_, _| {
            true
        })
        .unwrap();
    assert_eq!(out[0].tokens.len(), 2);
    assert_eq!(out[0].finish, forja_engine::FinishReason::Length);
    let err = Engine::load(
        tmp.path(),
        &LoadOptions { ctx_size: Some(100_000), ..Default::default() },
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("ctx_size") && err.contains("supports 1..=256"), "{err}");
}

/// Breaks a valid model in one way and checks the error names the problem.
fn check_broken(break_it: impl FnOnce(&Path) -> std::path::PathBuf, want: &[&str]) {
    let spec = Spec::llama();
    let tmp = tempfile::tempdir().unwrap();
    let w = common::weights(&spec, 10);
    common::write_hf(&tmp.path().join("hf"), &spec, &w);
    common::write_gguf(&tmp.path().join("m.gguf"), &spec, &w, GgmlDType::Q8_0);
    let path = break_it(tmp.path());
    let err = load_err(&path);
    for w in want {
        assert!(err.contains(w), "error {err:?} lacks {w:?}");
    }
    assert!(!err.contains('\n'), "error spans lines: {err:?}");
}

#[test]
fn bad_models_give_one_clear_line() {
    check_broken(|d| d.join("nope.gguf"), &["model not found", "nope.gguf"]);
    check_broken(
        |d| {
            std::fs::remove_file(d.join("hf/config.json")).unwrap();
            d.join("hf")
        },
        &["no config.json"],
    );
    check_broken(
        |d| {
            std::fs::write(d.join("hf/config.json"), "{ not json").unwrap();
            d.join("hf")
        },
        &["config.json", "invalid JSON"],
    );
    check_broken(
        |d| {
            let p = d.join("hf/config.json");
            let s = std::fs::read_to_string(&p).unwrap().replace("\"llama\"", "\"gpt_neox\"");
            std::fs::write(&p, s).unwrap();
            d.join("hf")
        },
        &["unsupported architecture `gpt_neox`", "llama, mistral, qwen2, qwen3"],
    );
    check_broken(
        |d| {
            let p = d.join("hf/config.json");
            let s = std::fs::read_to_string(&p)
                .unwrap()
                .replace("\"num_key_value_heads\":2", "\"num_key_value_heads\":3");
            std::fs::write(&p, s).unwrap();
            d.join("hf")
        },
        &["num_key_value_heads", "must divide"],
    );
    check_broken(
        |d| {
            let p = d.join("hf/config.json");
            let s = std::fs::read_to_string(&p)
                .unwrap()
                .replace("\"intermediate_size\":128", "\"intermediate_size\":96");
            std::fs::write(&p, s).unwrap();
            d.join("hf")
        },
        &["model.layers.0.mlp.gate_proj.weight", "shape [128, 64], expected [96, 64]"],
    );
    check_broken(
        |d| {
            std::fs::remove_file(d.join("hf/tokenizer.json")).unwrap();
            d.join("hf")
        },
        &["tokenizer.json is missing"],
    );
    check_broken(
        |d| {
            std::fs::write(d.join("hf/tokenizer.json"), "{}").unwrap();
            d.join("hf")
        },
        &["tokenizer", "tokenizer.json"],
    );
    check_broken(
        |d| {
            std::fs::remove_file(d.join("hf/model.safetensors")).unwrap();
            d.join("hf")
        },
        &["no *.safetensors weights"],
    );
    check_broken(
        |d| {
            let p = d.join("m.gguf");
            let len = std::fs::metadata(&p).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len - 100).unwrap();
            p
        },
        &["m.gguf", "truncated"],
    );
    check_broken(
        |d| {
            let p = d.join("garbage.gguf");
            std::fs::write(&p, b"not a model at all").unwrap();
            p
        },
        &["garbage.gguf", "not a GGUF file"],
    );
    check_broken(
        |d| {
            let p = d.join("header.gguf");
            let mut bytes = std::fs::read(d.join("m.gguf")).unwrap();
            bytes.truncate(40);
            std::fs::write(&p, bytes).unwrap();
            p
        },
        &["header.gguf", "not a valid GGUF file"],
    );
    check_broken(
        |d| d.join("hf/model.safetensors"),
        &["not a GGUF file", "directory that holds config.json"],
    );
}

#[test]
fn gguf_metadata_errors_name_the_key() {
    let spec = Spec::llama();
    let tmp = tempfile::tempdir().unwrap();
    let w = common::weights(&spec, 11);
    let p = tmp.path().join("m.gguf");
    common::write_gguf(&p, &spec, &w, GgmlDType::F32);
    // Rewrite the architecture to one forja does not implement.
    let bytes = std::fs::read(&p).unwrap();
    let needle = b"\x05\x00\x00\x00\x00\x00\x00\x00llama";
    let at = bytes.windows(needle.len()).position(|x| x == needle).expect("architecture string");
    let mut b2 = bytes.clone();
    b2[at + 8..at + 13].copy_from_slice(b"gemma");
    let p2 = tmp.path().join("gemma.gguf");
    std::fs::write(&p2, b2).unwrap();
    let err = load_err(&p2);
    assert!(err.contains("unsupported architecture `gemma`"), "{err}");
}

#[test]
fn unsupported_tensor_types_are_named() {
    let spec = Spec::llama();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("m.gguf");
    common::write_gguf(&p, &spec, &common::weights(&spec, 13), GgmlDType::F32);
    let mut bytes = std::fs::read(&p).unwrap();
    // Tensor info: name, n_dims (u32), dims (u64 each), type (u32), offset.
    let name = b"output_norm.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let ty = at + 4 + 8 * n_dims;
    bytes[ty..ty + 4].copy_from_slice(&20u32.to_le_bytes());
    std::fs::write(&p, bytes).unwrap();
    let err = load_err(&p);
    assert!(err.contains("GGML type 20 (IQ4_NL)") && err.contains("llama-quantize"), "{err}");
}

#[test]
fn sharded_safetensors_load_through_the_index() {
    let spec = Spec::qwen2();
    let tmp = tempfile::tempdir().unwrap();
    let w = common::weights(&spec, 14);
    let single = tmp.path().join("single");
    common::write_hf(&single, &spec, &w);
    // Same model, weights split over two shards listed in the index.
    let sharded = tmp.path().join("sharded");
    common::write_hf(&sharded, &spec, &w);
    std::fs::remove_file(sharded.join("model.safetensors")).unwrap();
    let mut names: Vec<&String> = w.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (file, part) in
        [("model-00001-of-00002.safetensors", a), ("model-00002-of-00002.safetensors", b)]
    {
        let tensors: std::collections::HashMap<String, Tensor> =
            part.iter().map(|n| ((*n).clone(), w[*n].clone())).collect();
        candle_core::safetensors::save(&tensors, sharded.join(file)).unwrap();
        for n in part {
            map.insert((*n).clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(sharded.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let (x, y) = (load(&single).logits(PROMPT).unwrap(), load(&sharded).logits(PROMPT).unwrap());
    assert_eq!(x, y);
    // A shard named in the index but absent is reported by name.
    std::fs::remove_file(sharded.join("model-00002-of-00002.safetensors")).unwrap();
    let err = load_err(&sharded);
    assert!(
        err.contains("model-00002-of-00002.safetensors") && err.contains("incomplete"),
        "{err}"
    );
}

/// Regression (hardening #6): `Engine::logits_at` on a quantized model
/// panicked ("chunk size must be non-zero") when a prompt chunk before the
/// last asked for no rows.
#[test]
fn logits_at_skips_chunks_without_rows_on_quantized_models() {
    let spec = Spec::llama();
    let tmp = tempfile::tempdir().unwrap();
    let w = common::weights(&spec, 2);
    let p = tmp.path().join("q.gguf");
    common::write_gguf(&p, &spec, &w, GgmlDType::Q4_1);
    let opts = LoadOptions { threads: Some(2), ubatch: 4, ..Default::default() };
    let e = Engine::load(&p, &opts, &mut |_| {}).unwrap();
    let tokens: Vec<u32> = (0..13).map(|i| (i * 11 + 2) % 100).collect();
    let chunked = e.logits_at(&tokens, &[12, 1], None).unwrap();
    let whole =
        Engine::load(&p, &LoadOptions { threads: Some(2), ..Default::default() }, &mut |_| {})
            .unwrap()
            .logits_at(&tokens, &[1, 12], None)
            .unwrap();
    assert!(
        max_abs_diff(&chunked[0], &whole[1]) < 1e-3 && max_abs_diff(&chunked[1], &whole[0]) < 1e-3
    );
}
