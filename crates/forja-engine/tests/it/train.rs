//! Training on tiny random models: gradients reach every trainable tensor
//! and agree with finite differences (so no fused op silently cuts the
//! graph), an optimizer step lowers the loss, the loop learns a task,
//! checkpoints resume on the same curve, adapters round-trip through the
//! PEFT format and merge, and bad data or settings are reported clearly.

use candle_core::{Device, Tensor, Var};
use forja_engine::fixtures::{self as common, Spec};
use forja_engine::lora::{Adapter, LoraConfig, Module};
use forja_engine::models::llama::{Llama, Lora};
use forja_engine::train::data::Example;
use forja_engine::train::{self, Event, TrainConfig, Trainable};
use forja_engine::{Engine, LoadOptions, Weights};
use std::path::Path;

fn engine(spec: &Spec, seed: u64, dir: &Path) -> Engine {
    common::write_hf(dir, spec, &common::weights(spec, seed));
    Engine::load(dir, &LoadOptions { threads: Some(2), ..Default::default() }, &mut |_| {}).unwrap()
}

/// Sets every var to random values (B starts at zero in PEFT's init, which
/// would make A's gradient zero).
fn randomize(adapter: &Adapter, seed: u64) {
    for (i, (_, v)) in adapter.vars().iter().enumerate() {
        let n = v.elem_count();
        let vals: Vec<f32> = (0..n)
            .map(|j| {
                (((j as u64 + 1) * 2654435761 + seed * 97 + i as u64 * 13) % 1000) as f32 / 5000.0
                    - 0.1
            })
            .collect();
        v.set(&Tensor::from_vec(vals, v.shape(), v.device()).unwrap()).unwrap();
    }
}

fn examples() -> Vec<Example> {
    vec![
        Example {
            ids: vec![5, 17, 42, 99, 7, 63, 120, 8],
            target: vec![false, false, false, true, true, true, true, true],
        },
        Example { ids: vec![9, 10, 11, 12, 13], target: vec![false, true, true, true, true] },
    ]
}

fn grad_norms(loss: &Tensor, vars: &[(String, Var)]) -> Vec<(String, f32)> {
    let grads = loss.backward().unwrap();
    vars.iter()
        .map(|(n, v)| {
            let g = grads
                .get(v.as_tensor())
                .map(|g| g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap());
            (n.clone(), g.unwrap_or(0.0))
        })
        .collect()
}

#[test]
fn every_lora_and_full_parameter_gets_a_gradient() {
    for spec in [Spec::llama(), Spec::qwen2(), Spec::qwen3()] {
        let tmp = tempfile::tempdir().unwrap();
        let e = engine(&spec, 1, tmp.path());
        let cfg = LoraConfig { r: 4, alpha: 8.0, dropout: 0.0, ..Default::default() };
        let a = Adapter::new(e.model(), &cfg, "tiny", 1).unwrap();
        assert_eq!(a.vars().len(), 2 * 7 * spec.layers);
        randomize(&a, 2);
        let ex = examples();
        let refs: Vec<&Example> = ex.iter().collect();
        let loss = train::mean_loss(e.model(), Lora::with(Some(&a)), &refs).unwrap();
        for (name, g) in grad_norms(&loss, a.vars()) {
            assert!(g > 0.0 && g.is_finite(), "{}: {name} has gradient norm² {g}", spec.family);
        }
    }
    // Full training: every weight of a freshly initialised model.
    let spec = Spec::qwen3();
    let cfg = full_config(&spec);
    let mut w = Weights::random(3, 0.1, &Device::Cpu);
    let model = Llama::new(&cfg, &mut w).unwrap();
    let vars = w.take_vars();
    let ex = examples();
    let refs: Vec<&Example> = ex.iter().collect();
    let loss = train::mean_loss(&model, Lora::NONE, &refs).unwrap();
    let norms = grad_norms(&loss, &vars);
    // Per layer: 7 projections, q/k norms, 2 layer norms; plus embedding and final norm.
    assert_eq!(
        norms.len(),
        2 + spec.layers * 11,
        "{:?}",
        norms.iter().map(|n| &n.0).collect::<Vec<_>>()
    );
    for (name, g) in norms {
        assert!(g > 0.0 && g.is_finite(), "full: {name} has gradient norm² {g}");
    }
}

fn full_config(spec: &Spec) -> forja_engine::models::llama::LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "model_type": spec.family, "hidden_size": spec.hidden, "intermediate_size": spec.inter,
        "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads, "head_dim": spec.head_dim, "vocab_size": spec.vocab(),
        "tie_word_embeddings": true, "max_position_embeddings": 64,
    }))
    .unwrap()
}

#[test]
fn gradients_agree_with_finite_differences() {
    let spec = Spec { layers: 2, ..Spec::llama() };
    let tmp = tempfile::tempdir().unwrap();
    let e = engine(&spec, 4, tmp.path());
    let cfg =
        LoraConfig { r: 2, alpha: 2.0, dropout: 0.0, targets: Module::ALL.to_vec(), rslora: false };
    let a = Adapter::new(e.model(), &cfg, "tiny", 5).unwrap();
    randomize(&a, 6);
    let ex = examples();
    let refs: Vec<&Example> = ex.iter().collect();
    let loss_of = || -> f64 {
        train::mean_loss(e.model(), Lora::with(Some(&a)), &refs)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let loss = train::mean_loss(e.model(), Lora::with(Some(&a)), &refs).unwrap();
    let grads = loss.backward().unwrap();
    let mut checked = 0;
    // Layer 0's adapters sit below every frozen layer: their gradient has
    // to travel back through attention, norms, RoPE and the MLP.
    for (name, var) in
        a.vars().iter().filter(|(n, _)| n.contains("layers.0.") || n.contains("layers.1.mlp.down"))
    {
        let g: Vec<f32> =
            grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let p: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        // The two coordinates with the largest gradients (f32 round-off in
        // the loss makes tiny gradients unmeasurable by differences).
        let mut order: Vec<usize> = (0..g.len()).collect();
        order.sort_by(|&i, &j| g[j].abs().total_cmp(&g[i].abs()));
        for &i in &order[..2] {
            if g[i].abs() < 5e-3 {
                continue;
            }
            let eps = 1e-2f32;
            let set = |v: f32| {
                let mut q = p.clone();
                q[i] = v;
                var.set(&Tensor::from_vec(q, var.shape(), var.device()).unwrap()).unwrap();
            };
            set(p[i] + eps);
            let up = loss_of();
            set(p[i] - eps);
            let down = loss_of();
            set(p[i]);
            let numeric = (up - down) / (2.0 * eps as f64);
            let rel = (numeric - g[i] as f64).abs() / (g[i].abs() as f64).max(1e-3);
            assert!(
                rel < 0.05,
                "{name}[{i}]: analytic {} vs numeric {numeric} (rel {rel:.3})",
                g[i]
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} coordinates checked");
}

#[test]
fn one_adamw_step_lowers_the_loss() {
    let spec = Spec::llama();
    let tmp = tempfile::tempdir().unwrap();
    let e = engine(&spec, 7, tmp.path());
    let a = Adapter::new(e.model(), &LoraConfig { dropout: 0.0, ..Default::default() }, "tiny", 8)
        .unwrap();
    let ex = examples();
    let refs: Vec<&Example> = ex.iter().collect();
    let before = train::mean_loss(e.model(), Lora::with(Some(&a)), &refs).unwrap();
    let store = before.backward().unwrap();
    let grads: Vec<Tensor> =
        a.vars().iter().map(|(_, v)| store.get(v.as_tensor()).unwrap().clone()).collect();
    let mut opt = train::optim::AdamW::new(a.vars(), 0.9, 0.999, 1e-8, 0.0);
    opt.step(a.vars(), &grads, 1e-2).unwrap();
    let after = train::mean_loss(e.model(), Lora::with(Some(&a)), &refs).unwrap();
    let (b, af) = (before.to_scalar::<f32>().unwrap(), after.to_scalar::<f32>().unwrap());
    assert!(af < b, "loss {b} -> {af}");
}

/// A learnable toy task for the tiny tokenizer: the assistant answers with
/// the word after the one the user names, in a fixed list.
fn toy_chat(n: usize, offset: usize) -> Vec<String> {
    let words = [
        "fox", "dog", "budget", "council", "votes", "minutes", "session", "hello", "world", "forja",
    ];
    (0..n)
        .map(|i| {
            let w = words[(i + offset) % words.len()];
            let next = words[(i + offset + 1) % words.len()];
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("after {w}")},
                {"role": "assistant", "content": next},
            ]})
            .to_string()
        })
        .collect()
}

fn load_examples(e: &Engine, lines: &[String], dir: &Path, name: &str) -> Vec<Example> {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n")).unwrap();
    let tmpl = forja_engine::ChatTemplate::new(e.chat_template().unwrap(), "", "").unwrap();
    train::load_jsonl(&p, e.tokenizer(), Some(&tmpl), 256, train::OnBadLine::Skip).unwrap().0
}

fn run(
    e: &Engine,
    adapter: &Adapter,
    tr: &[Example],
    val: &[Example],
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
) -> (train::TrainReport, Vec<Event>) {
    let mut events = Vec::new();
    let report = e
        .install(|| {
            train::train(
                train::Run {
                    model: e.model(),
                    what: Trainable::Lora(adapter),
                    train: tr,
                    val,
                    cfg,
                    out,
                    resume,
                },
                &mut |dir| adapter.save(dir),
                &mut |ev| {
                    events.push(ev.clone());
                    Ok(())
                },
            )
        })
        .unwrap();
    (report, events)
}

fn step_losses(events: &[Event]) -> Vec<(usize, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step { step, loss, .. } => Some((*step, *loss)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_loop_learns_keeps_the_best_and_resumes_on_the_same_curve() {
    let spec = Spec::llama();
    let tmp = tempfile::tempdir().unwrap();
    let e = engine(&spec, 9, &tmp.path().join("model"));
    let tr = load_examples(&e, &toy_chat(40, 0), tmp.path(), "train.jsonl");
    let val = load_examples(&e, &toy_chat(10, 3), tmp.path(), "val.jsonl");
    let cfg = TrainConfig {
        epochs: 6,
        batch_size: 8,
        lr: 5e-3,
        eval_every: Some(5),
        save_every: 5,
        seed: 11,
        ..Default::default()
    };
    let lcfg = LoraConfig { r: 8, alpha: 16.0, dropout: 0.1, ..Default::default() };
    let fresh = || Adapter::new(e.model(), &lcfg, "tiny", 12).unwrap();
    // Uninterrupted run.
    let a = fresh();
    let out = tmp.path().join("run");
    let (report, events) = run(&e, &a, &tr, &val, &cfg, &out, false);
    assert_eq!(report.steps, 30);
    let (v0, vbest) = (report.initial_val_loss.unwrap(), report.best_val_loss.unwrap());
    assert!(vbest < 0.5 * v0, "validation loss {v0} -> {vbest}");
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "events.jsonl",
        "training_report.json",
        "best/adapter_model.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The kept adapter is the best by validation loss; reloading it scores the same.
    let kept = Adapter::load(&out, e.model()).unwrap();
    let s = train::evaluate(e.model(), Some(&kept), &val, 8).unwrap();
    assert!((s.loss - vbest).abs() < 1e-4, "{} vs {vbest}", s.loss);
    let evals = events.iter().filter(|e| matches!(e, Event::Eval { .. })).count();
    assert_eq!(evals, 6);
    assert!(
        matches!(events.last(), Some(Event::Done { stopped_by, .. }) if stopped_by == "completed")
    );

    // Interrupted run: stopped by the clock after one step, then resumed.
    let b = fresh();
    let out2 = tmp.path().join("run2");
    let (r1, _) = run(
        &e,
        &b,
        &tr,
        &val,
        &TrainConfig { time_limit_secs: Some(0), ..cfg.clone() },
        &out2,
        false,
    );
    assert_eq!((r1.steps, r1.stopped_by.as_str()), (1, "time_limit"));
    // The resumed run has a limit so far away that a naive deadline would
    // overflow `Instant` arithmetic; it must simply never fire.
    let c = fresh();
    let far = TrainConfig { time_limit_secs: Some(u64::MAX), ..cfg.clone() };
    let (r2, _) = run(&e, &c, &tr, &val, &far, &out2, true);
    assert_eq!(r2.steps, 30);
    let logged: Vec<Event> = std::fs::read_to_string(out2.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(step_losses(&logged), step_losses(&events), "resumed curve differs");
    assert_eq!(r2.best_val_loss, report.best_val_loss);
}

#[test]
fn bad_data_and_settings_are_reported() {
    let spec = Spec::llama();
    let tmp = tempfile::tempdir().unwrap();
    let e = engine(&spec, 13, &tmp.path().join("model"));
    let tmpl = forja_engine::ChatTemplate::new(e.chat_template().unwrap(), "", "").unwrap();
    let good = toy_chat(1, 0).remove(0);
    let lines = [
        good.as_str(),
        "{not json",
        r#"{"messages": []}"#,
        r#"{"messages": [{"role": "user", "content": "only a question"}]}"#,
        r#"{"messages": [{"role": "robot", "content": "x"}]}"#,
        r#"{"prompt": "a", "completion": 3}"#,
        r#"{"other": 1}"#,
        "",
        r#"{"prompt": "the quick brown fox", "completion": " jumps over the lazy dog"}"#,
        r#"{"text": "hello world"}"#,
    ];
    let p = tmp.path().join("mixed.jsonl");
    std::fs::write(&p, lines.join("\n")).unwrap();
    let (ex, rep) =
        train::load_jsonl(&p, e.tokenizer(), Some(&tmpl), 256, train::OnBadLine::Skip).unwrap();
    assert_eq!((rep.lines, rep.examples, ex.len()), (9, 3, 3));
    let reasons: Vec<String> = rep.skipped.iter().map(|(l, r)| format!("{l}: {r}")).collect();
    let want = [
        "2: is not JSON",
        "3: field `messages` is empty",
        "4: has no assistant message",
        "5: messages[0]: unknown chat role `robot`",
        "6: field `completion` is not a string",
        "7: has none of `messages`",
    ];
    for (got, want) in reasons.iter().zip(want) {
        assert!(got.starts_with(want), "{got:?} !~ {want:?}");
    }
    let err = train::load_jsonl(&p, e.tokenizer(), Some(&tmpl), 256, train::OnBadLine::Fail)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("mixed.jsonl:2: is not JSON (key must be a string at line 1 column 2)"),
        "{err}"
    );
    // Truncation is counted; an example left without targets is skipped.
    let (_, rep) =
        train::load_jsonl(&p, e.tokenizer(), Some(&tmpl), 6, train::OnBadLine::Skip).unwrap();
    assert!(
        rep.truncated >= 1 && rep.skipped.iter().any(|(_, r)| r.contains("after truncation")),
        "{rep:?}"
    );
    // Nothing usable at all.
    std::fs::write(&p, "{}\n{not json\n").unwrap();
    let err = train::load_jsonl(&p, e.tokenizer(), Some(&tmpl), 256, train::OnBadLine::Skip)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no usable examples (2 lines, 2 skipped; line 1 has none of"), "{err}");
    std::fs::write(&p, "").unwrap();
    let err = train::load_jsonl(&p, e.tokenizer(), Some(&tmpl), 256, train::OnBadLine::Skip)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no usable examples (0 lines"), "{err}");

    // A learning rate that blows the loss up stops the run with an explanation.
    let tr = load_examples(&e, &toy_chat(16, 0), tmp.path(), "t.jsonl");
    let a = Adapter::new(e.model(), &LoraConfig::default(), "tiny", 1).unwrap();
    let cfg = TrainConfig {
        lr: 1e30,
        max_grad_norm: 0.0,
        save_every: 1,
        epochs: 5,
        batch_size: 4,
        ..Default::default()
    };
    let out = tmp.path().join("nan");
    let err = e
        .install(|| {
            train::train(
                train::Run {
                    model: e.model(),
                    what: Trainable::Lora(&a),
                    train: &tr,
                    val: &[],
                    cfg: &cfg,
                    out: &out,
                    resume: false,
                },
                &mut |d| a.save(d),
                &mut |_| Ok(()),
            )
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("NaN or infinite") && err.contains("lower the learning rate"), "{err}");
    assert!(err.contains("step-0000"), "a good checkpoint is named: {err}");

    // Adapters that do not fit the base are refused, naming the tensor.
    let other = Spec { hidden: 32, inter: 64, head_dim: 8, ..Spec::llama() };
    let e2 = engine(&other, 14, &tmp.path().join("other"));
    let small = Adapter::new(e2.model(), &LoraConfig::default(), "other", 1).unwrap();
    small.save(&tmp.path().join("small")).unwrap();
    let err = Adapter::load(&tmp.path().join("small"), e.model()).unwrap_err().to_string();
    assert!(err.contains("lora_A.weight") && err.contains("expected"), "{err}");
    assert!(TrainConfig { batch_size: 0, ..Default::default() }
        .validate()
        .unwrap_err()
        .to_string()
        .contains("batch_size"));
}

#[test]
fn adapters_round_trip_and_merge_into_the_base() {
    let spec = Spec::qwen2();
    let tmp = tempfile::tempdir().unwrap();
    let mut e = engine(&spec, 15, &tmp.path().join("model"));
    let a =
        Adapter::new(e.model(), &LoraConfig { r: 4, alpha: 8.0, ..Default::default() }, "tiny", 2)
            .unwrap();
    randomize(&a, 3);
    a.save(&tmp.path().join("ad")).unwrap();
    let b = e.load_adapter(&tmp.path().join("ad")).unwrap();
    let prompt = [5u32, 17, 42, 99, 7];
    let base = e.logits_at(&prompt, &[4], None).unwrap().remove(0);
    let with_a = e.logits_at(&prompt, &[4], Some(&a.frozen().unwrap())).unwrap().remove(0);
    let with_b = e.logits_at(&prompt, &[4], Some(&b)).unwrap().remove(0);
    assert_eq!(with_a, with_b, "save/load changed the adapter");
    assert!(with_a.iter().zip(&base).any(|(x, y)| (x - y).abs() > 1e-3), "adapter has no effect");
    e.model_mut().merge_adapter(&b, 1.0).unwrap();
    let merged = e.logits_at(&prompt, &[4], None).unwrap().remove(0);
    let d = merged.iter().zip(&with_b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(d < 1e-4, "merged vs adapter: {d}");
    e.save_hf(&tmp.path().join("merged")).unwrap();
    let m = Engine::load(&tmp.path().join("merged"), &LoadOptions::default(), &mut |_| {}).unwrap();
    let reloaded = m.logits_at(&prompt, &[4], None).unwrap().remove(0);
    let d = reloaded.iter().zip(&with_b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(d < 1e-4, "saved merged model vs adapter: {d}");
    e.model_mut().merge_adapter(&b, -1.0).unwrap();
    let unmerged = e.logits_at(&prompt, &[4], None).unwrap().remove(0);
    let d = unmerged.iter().zip(&base).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(d < 1e-4, "unmerge did not restore the base: {d}");
}

#[test]
fn pretraining_from_scratch_learns_and_saves_a_loadable_model() {
    let tmp = tempfile::tempdir().unwrap();
    let docs: Vec<String> = (0..60)
        .map(|i| {
            format!(
                "Session {i} of the council. The mayor opened the session at {} o'clock. The budget was approved with {} votes in favour and {} against. The minutes were read and signed.",
                9 + i % 3,
                10 + i % 7,
                i % 4
            )
        })
        .collect();
    let cfg = forja_engine::train::pretrain::PretrainConfig {
        vocab_size: 320,
        hidden: 64,
        intermediate: 128,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        seq_len: 64,
        ..Default::default()
    };
    let tcfg = TrainConfig {
        epochs: 8,
        batch_size: 8,
        lr: 3e-3,
        eval_every: Some(10),
        save_every: 0,
        ..Default::default()
    };
    let out = tmp.path().join("tiny");
    let report =
        forja_engine::train::pretrain::pretrain(&docs, &cfg, &tcfg, &out, false, &mut |_| Ok(()))
            .unwrap();
    let (v0, v1) = (report.initial_val_loss.unwrap(), report.best_val_loss.unwrap());
    assert!(v1 < 0.5 * v0, "validation loss {v0} -> {v1}");
    // The saved directory loads and generates with the trained tokenizer.
    let e = Engine::load(&out, &LoadOptions::default(), &mut |_| {}).unwrap();
    let p = forja_core::GenerationParams {
        max_tokens: 12,
        sampling: forja_core::SamplingParams::greedy(),
        ..Default::default()
    };
    let (c, _) = e.generate("The budget was", &p, None, |_| true).unwrap();
    assert!(!c.text.trim().is_empty());
    let tok = e.tokenizer();
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    let cfg_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg_json["architectures"][0], "LlamaForCausalLM");
}
