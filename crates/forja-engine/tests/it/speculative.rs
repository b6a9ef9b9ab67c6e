//! Speculative decoding on tiny random models: greedy output equals plain
//! greedy decoding whatever the draft (the same model, a quantized copy, an
//! unrelated model; with repetition penalty; with a LoRA adapter on the
//! target), acceptance falls back when it should, sampled tokens follow the
//! target's distribution (a chi-square test that a wrong acceptance rule
//! fails), and mismatched drafts or calls give clear errors.

use candle_core::quantized::GgmlDType;
use candle_core::Tensor;
use forja_core::{GenerationParams, SamplingParams};
use forja_engine::fixtures::{self as common, Spec};
use forja_engine::lora::{Adapter, LoraConfig};
use forja_engine::models::llama::{Batch, Lora};
use forja_engine::speculative::{self, SpecConfig, SpecStats, Speculator};
use forja_engine::{Engine, EngineError, LoadOptions, Request, Sampler, Slot};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn load(path: &Path) -> Engine {
    Engine::load(path, &LoadOptions { threads: Some(2), ..Default::default() }, &mut |_| {})
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// The models every test shares, written once.
struct Models {
    _dir: tempfile::TempDir,
    /// Target weights (seed 1), as HF and as a Q8_0 GGUF.
    target: PathBuf,
    target_q8: PathBuf,
    /// An unrelated model with the same tokenizer (1 layer, seed 2).
    other: PathBuf,
    /// The target with noise on its output layer: distributions that
    /// overlap the target's without matching them.
    near: PathBuf,
}

fn models() -> &'static Models {
    static M: OnceLock<Models> = OnceLock::new();
    M.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // Untied output layers: a tied random model mostly repeats its input
        // token with probability ~1, which any draft guesses.
        let spec = Spec { tie: false, ..Spec::llama() };
        let w = common::weights(&spec, 1);
        let target = dir.path().join("target");
        common::write_hf(&target, &spec, &w);
        let target_q8 = dir.path().join("target-q8.gguf");
        common::write_gguf(&target_q8, &spec, &w, GgmlDType::Q8_0);
        let small = Spec { layers: 1, tie: false, ..Spec::llama() };
        let other = dir.path().join("other");
        common::write_hf(&other, &small, &common::weights(&small, 2));
        let mut near = w.clone();
        let noise = &common::weights(&spec, 7)["lm_head.weight"];
        let head = (&w["lm_head.weight"] + (noise * 0.8).unwrap()).unwrap();
        near.insert("lm_head.weight".into(), head);
        let near_dir = dir.path().join("near");
        common::write_hf(&near_dir, &spec, &near);
        Models { _dir: dir, target, target_q8, other, near: near_dir }
    })
}

const PROMPTS: &[&[u32]] =
    &[&[5, 17, 42, 99, 7, 63, 120, 8], &[9, 10], &[30], &[200, 201, 3, 77, 150, 12, 12, 12, 9]];

fn params(max_tokens: usize, sampling: SamplingParams) -> GenerationParams {
    GenerationParams { max_tokens, ignore_eos: true, sampling, ..Default::default() }
}

fn plain(e: &Engine, prompt: &[u32], p: &GenerationParams, adapter: Option<&Adapter>) -> Vec<u32> {
    let req = Request { prompt: prompt.to_vec(), params: p.clone() };
    let (out, _) = e.generate_batch(&[req], adapter, &mut |_, _| true).unwrap();
    out[0].tokens.clone()
}

/// A trained-looking adapter: PEFT starts B at zero (no change), so every
/// variable gets deterministic non-zero values.
fn adapter(e: &Engine) -> Adapter {
    let a = Adapter::new(e.model(), &LoraConfig { dropout: 0.0, ..Default::default() }, "t", 3)
        .unwrap();
    for (i, (_, v)) in a.vars().iter().enumerate() {
        let vals: Vec<f32> = (0..v.elem_count())
            .map(|j| ((j as u64 * 2654435761 + i as u64 * 97) % 1000) as f32 / 2500.0 - 0.2)
            .collect();
        v.set(&Tensor::from_vec(vals, v.shape(), v.device()).unwrap()).unwrap();
    }
    a.frozen().unwrap()
}

/// Speculative greedy decoding of every prompt equals plain greedy decoding;
/// returns the summed statistics.
fn check_greedy(
    target: &Engine,
    draft: &Engine,
    adapter: Option<&Adapter>,
    penalty: f32,
    cfg: &SpecConfig,
) -> SpecStats {
    let sampling = SamplingParams { repetition_penalty: penalty, ..SamplingParams::greedy() };
    let mut total = SpecStats::default();
    for max_tokens in [40, 1, 2, 5] {
        let p = params(max_tokens, sampling.clone());
        for prompt in PROMPTS {
            let want = plain(target, prompt, &p, adapter);
            let (got, stats, _) =
                speculative::generate(target, draft, prompt, &p, adapter, cfg).unwrap();
            assert_eq!(got, want, "prompt {prompt:?}, max_tokens {max_tokens}, {stats:?}");
            assert!(stats.accepted + stats.rejected <= stats.drafted);
            assert!(stats.rejected <= stats.steps && stats.steps <= got.len());
            assert!((cfg.k_min..=cfg.k_max).contains(&stats.k));
            total.drafted += stats.drafted;
            total.accepted += stats.accepted;
            total.rejected += stats.rejected;
            total.steps += stats.steps;
            total.fell_back |= stats.fell_back;
        }
    }
    total
}

#[test]
fn greedy_with_the_same_model_as_draft_accepts_everything() {
    let m = models();
    let (target, draft) = (load(&m.target), load(&m.target));
    for penalty in [1.0, 1.3] {
        let s = check_greedy(&target, &draft, None, penalty, &SpecConfig::default());
        assert!(s.drafted > 100, "{s:?}");
        assert_eq!((s.accepted, s.rejected), (s.drafted, 0), "penalty {penalty}: {s:?}");
        assert!(!s.fell_back);
    }
}

#[test]
fn greedy_with_a_quantized_copy_as_draft_equals_plain_decoding() {
    let m = models();
    let (target, draft) = (load(&m.target), load(&m.target_q8));
    let s = check_greedy(&target, &draft, None, 1.0, &SpecConfig::default());
    assert!(s.accepted as f64 > 0.8 * s.drafted as f64, "{s:?}");
}

#[test]
fn greedy_with_an_unrelated_draft_equals_plain_decoding() {
    let m = models();
    let (target, draft) = (load(&m.target), load(&m.other));
    // Never falls back: rejections and k adaptation all the way.
    let keep_going = SpecConfig { min_acceptance: 0.0, ..Default::default() };
    for penalty in [1.0, 1.3] {
        let s = check_greedy(&target, &draft, None, penalty, &keep_going);
        assert!(s.accepted < s.drafted && s.drafted > 100, "penalty {penalty}: {s:?}");
        assert!(!s.fell_back);
    }
    // Demanding acceptance: the sequences fall back and still match.
    let strict = SpecConfig { min_acceptance: 0.95, window: 8, ..Default::default() };
    let s = check_greedy(&target, &draft, None, 1.0, &strict);
    assert!(s.fell_back, "{s:?}");
}

#[test]
fn greedy_with_an_adapter_on_the_target_equals_plain_decoding() {
    let m = models();
    let (target, draft) = (load(&m.target), load(&m.target));
    let a = adapter(&target);
    let base = plain(&target, PROMPTS[0], &params(40, SamplingParams::greedy()), None);
    let adapted = plain(&target, PROMPTS[0], &params(40, SamplingParams::greedy()), Some(&a));
    assert_ne!(base, adapted, "the adapter must change the output for this test to mean anything");
    let cfg = SpecConfig { min_acceptance: 0.0, ..Default::default() };
    for penalty in [1.0, 1.3] {
        let s = check_greedy(&target, &draft, Some(&a), penalty, &cfg);
        assert!(s.accepted < s.drafted, "the base draft cannot know the adapter: {s:?}");
    }
}

#[test]
fn k_adapts_within_its_bounds() {
    let m = models();
    let (target, same, other) = (load(&m.target), load(&m.target), load(&m.other));
    let p = params(40, SamplingParams::greedy());
    let cfg = SpecConfig { k: 2, k_min: 2, k_max: 6, min_acceptance: 0.0, window: 32 };
    // All accepted: k climbs to k_max.
    let (_, s, _) = speculative::generate(&target, &same, PROMPTS[0], &p, None, &cfg).unwrap();
    assert_eq!(s.k, 6, "{s:?}");
    // Mostly rejected: k sinks to k_min.
    let cfg = SpecConfig { k: 6, ..cfg };
    let (_, s, _) = speculative::generate(&target, &other, PROMPTS[0], &p, None, &cfg).unwrap();
    assert_eq!(s.k, 2, "{s:?}");
}

/// The target's processed distribution after `history`.
fn target_dist(e: &Engine, history: &[u32], sampling: &SamplingParams) -> HashMap<u32, f64> {
    let mut logits = e.logits(history).unwrap();
    let d = Sampler::new(sampling).distribution(&mut logits, history).unwrap();
    d.into_iter().map(|(t, p)| (t, p as f64)).collect()
}

/// Exact joint distribution of the first two generated tokens.
fn joint(e: &Engine, prompt: &[u32], sampling: &SamplingParams) -> HashMap<(u32, u32), f64> {
    let mut out = HashMap::new();
    for (t1, p1) in target_dist(e, prompt, sampling) {
        let h: Vec<u32> = prompt.iter().copied().chain([t1]).collect();
        for (t2, p2) in target_dist(e, &h, sampling) {
            out.insert((t1, t2), p1 * p2);
        }
    }
    out
}

fn chi_square(counts: &HashMap<(u32, u32), usize>, p: &HashMap<(u32, u32), f64>, n: usize) -> f64 {
    let mut chi = 0.0;
    if counts.keys().any(|pair| p.get(pair).copied().unwrap_or(0.0) == 0.0) {
        return f64::INFINITY; // a pair the distribution cannot produce
    }
    for (pair, &q) in p {
        let e = q * n as f64;
        let o = counts.get(pair).copied().unwrap_or(0) as f64;
        chi += (o - e).powi(2) / e;
    }
    chi
}

/// The first two tokens of many seeded speculative runs follow the target's
/// joint distribution, and not the draft's (which is what accepting every
/// draft token would give).
fn check_sampling(sampling: SamplingParams, prompt: &[u32]) {
    let m = models();
    let (target, draft) = (load(&m.target), load(&m.near));
    let want = joint(&target, prompt, &sampling);
    let draft_joint = joint(&draft, prompt, &sampling);
    let cfg = SpecConfig { k: 2, k_min: 1, k_max: 3, min_acceptance: 0.0, window: 8 };
    let n = 4000;
    let mut counts: HashMap<(u32, u32), usize> = HashMap::new();
    let (mut drafted, mut accepted) = (0, 0);
    let model = target.model();
    for seed in 0..n as u64 {
        let s = SamplingParams { seed: Some(seed), ..sampling.clone() };
        let mut spec = Speculator::new(&draft, &cfg, &s).unwrap();
        let mut cache = model.new_cache();
        let head = &prompt[..prompt.len() - 1];
        if !head.is_empty() {
            let slots: Vec<Slot> = (0..head.len()).map(|pos| Slot { seq: 0, pos }).collect();
            let b = Batch { tokens: head, slots: &slots, logits_rows: &[0] };
            model.forward(&b, &mut [&mut cache], Lora::NONE).unwrap();
        }
        let mut h = prompt.to_vec();
        while h.len() < prompt.len() + 2 {
            let left = prompt.len() + 2 - h.len();
            let got = spec.step(model, &mut cache, Lora::NONE, &h, left).unwrap();
            assert!(!got.is_empty() && got.len() <= left);
            h.extend(got);
            assert_eq!(cache.len(), h.len() - 1);
        }
        *counts.entry((h[prompt.len()], h[prompt.len() + 1])).or_default() += 1;
        drafted += spec.stats().drafted;
        accepted += spec.stats().accepted;
    }
    // At most 4 x 4 pairs: 15 degrees of freedom, 37.7 is the 0.1% tail.
    let chi = chi_square(&counts, &want, n);
    assert!(chi < 37.7, "chi-square vs the target {chi:.1}; counts {counts:?}; want {want:?}");
    let chi_draft = chi_square(&counts, &draft_joint, n);
    assert!(
        chi_draft > 200.0,
        "the draft is too close to the target to test the rule: {chi_draft}"
    );
    // Both branches of the rule ran.
    assert!(accepted > 0 && accepted < drafted, "accepted {accepted} of {drafted}");
}

#[test]
fn sampled_tokens_follow_the_target_distribution() {
    let base =
        SamplingParams { temperature: 1.0, top_k: 4, top_p: 1.0, min_p: 0.0, ..Default::default() };
    check_sampling(base.clone(), PROMPTS[0]);
    // The whole pipeline: penalty, top-p, min-p and a temperature; a 1-token prompt.
    let all = SamplingParams {
        temperature: 0.7,
        top_p: 0.9,
        min_p: 0.05,
        repetition_penalty: 1.3,
        ..base
    };
    check_sampling(all, &[12]);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let m = models();
    let (target, draft) = (load(&m.target), load(&m.other));
    let sampling = SamplingParams { seed: Some(11), temperature: 1.0, ..Default::default() };
    let p = params(30, sampling);
    let cfg = SpecConfig { min_acceptance: 0.0, ..Default::default() };
    let run = || speculative::generate(&target, &draft, PROMPTS[0], &p, None, &cfg).unwrap().0;
    let a = run();
    assert_eq!(a.len(), 30);
    assert_eq!(a, run());
}

#[test]
fn generation_stops_at_an_end_token_unless_ignored() {
    let m = models();
    let (target, draft) = (load(&m.target), load(&m.target_q8));
    let cfg = SpecConfig::default();
    for prompt in PROMPTS {
        let p = GenerationParams {
            max_tokens: 40,
            sampling: SamplingParams::greedy(),
            ..Default::default()
        };
        let want = plain(&target, prompt, &p, None);
        let (got, _, _) = speculative::generate(&target, &draft, prompt, &p, None, &cfg).unwrap();
        assert_eq!(got, want);
    }
}

fn spec_err(r: Result<impl std::fmt::Debug, EngineError>) -> String {
    match r {
        Err(e @ EngineError::Speculative(_)) => e.to_string(),
        other => panic!("expected a speculative-decoding error, got {other:?}"),
    }
}

#[test]
fn a_draft_with_another_vocabulary_is_refused() {
    let m = models();
    let target = load(&m.target);
    let tmp = tempfile::tempdir().unwrap();
    // 16 more rows in the embedding (tied output): 16 more logits.
    let spec = Spec::llama();
    let mut w = common::weights(&spec, 4);
    let e = &w["model.embed_tokens.weight"];
    let extra = Tensor::zeros((16, spec.hidden), e.dtype(), e.device()).unwrap();
    let e = Tensor::cat(&[e, &extra], 0).unwrap();
    w.insert("model.embed_tokens.weight".into(), e);
    let dir = tmp.path().join("wide");
    common::write_hf(&dir, &spec, &w);
    let cfg_path = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["vocab_size"] = (spec.vocab() + 16).into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let wide = load(&dir);
    let msg = spec_err(speculative::check_compatible(&target, &wide));
    let want =
        format!("its vocabulary has {} tokens, the target's {}", spec.vocab() + 16, spec.vocab());
    assert!(msg.contains(&want) && msg.contains("share the target's tokenizer"), "{msg}");
    let p = params(8, SamplingParams::greedy());
    let msg = spec_err(speculative::generate(
        &target,
        &wide,
        PROMPTS[0],
        &p,
        None,
        &SpecConfig::default(),
    ));
    assert!(msg.contains(&want), "{msg}");
    // The step checks the logit width too.
    let mut s = Speculator::new(&wide, &SpecConfig::default(), &SamplingParams::greedy()).unwrap();
    let mut cache = target.model().new_cache();
    let msg = spec_err(s.step(target.model(), &mut cache, Lora::NONE, &[7], 4));
    assert!(msg.contains("scores"), "{msg}");
}

#[test]
fn a_draft_with_another_tokenizer_is_refused() {
    let m = models();
    let target = load(&m.target);
    let tmp = tempfile::tempdir().unwrap();
    let texts = ["zebra yak xylophone wombat vulture", "0123456789 9876543210", "QWERTY qwerty"];
    let json = forja_engine::train_byte_level_bpe(
        texts.iter().cycle().take(30),
        384,
        &["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    )
    .unwrap();
    let tok = tmp.path().join("tokenizer.json");
    std::fs::write(&tok, json).unwrap();
    let opts = LoadOptions { threads: Some(2), tokenizer: Some(tok), ..Default::default() };
    let draft = Engine::load(&m.target, &opts, &mut |_| {}).unwrap();
    let msg = spec_err(speculative::check_compatible(&target, &draft));
    assert!(msg.contains("token"), "{msg}");
}

#[test]
fn misuse_gives_errors_not_panics() {
    let m = models();
    let (target, draft) = (load(&m.target), load(&m.target));
    for (cfg, field) in [
        (SpecConfig { k: 0, ..Default::default() }, "`k`"),
        (SpecConfig { k_min: 0, ..Default::default() }, "`k_min`"),
        (SpecConfig { k: 9, ..Default::default() }, "`k`"),
        (SpecConfig { k_min: 5, k_max: 4, ..Default::default() }, "`k_min`"),
        (SpecConfig { window: 0, ..Default::default() }, "`window`"),
        (SpecConfig { min_acceptance: 1.5, ..Default::default() }, "`min_acceptance`"),
    ] {
        let e = Speculator::new(&draft, &cfg, &SamplingParams::greedy()).unwrap_err().to_string();
        assert!(e.contains(field), "{cfg:?}: {e}");
    }
    let mut s = Speculator::new(&draft, &SpecConfig::default(), &SamplingParams::greedy()).unwrap();
    // The cache must hold all of the history but its last token.
    let mut cache = target.model().new_cache();
    let msg = spec_err(s.step(target.model(), &mut cache, Lora::NONE, &[1, 2, 3], 4));
    assert!(msg.contains("must hold all but the last"), "{msg}");
    assert!(matches!(
        s.step(target.model(), &mut cache, Lora::NONE, &[], 4),
        Err(EngineError::EmptyPrompt)
    ));
    assert_eq!(s.step(target.model(), &mut cache, Lora::NONE, &[5], 0).unwrap(), Vec::<u32>::new());
    assert_eq!(s.step(target.model(), &mut cache, Lora::NONE, &[5], 1).unwrap().len(), 1);
    assert_eq!(cache.len(), 1);
}
