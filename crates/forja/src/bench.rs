//! `forja bench generate`: llama-bench-style throughput tests. `pp`: one
//! prefill pass over N prompt tokens; `tg`: N tokens decoded one at a time
//! after a single BOS token. Both use random token ids, like llama-bench.
//! With `tg`, the machine's read bandwidth is measured in the same run and
//! decode is reported as a fraction of it.
//! `forja bench speculative`: greedy decoding of a chat prompt, plain and
//! with a draft model. `forja bench train`: LoRA training throughput.

use crate::args::{BenchGenerateArgs, BenchSpeculativeArgs};
use crate::run::load;
use anyhow::Result;
use forja_core::{GenerationParams, SamplingParams};
use forja_engine::Request;
use std::process::ExitCode;
use std::time::Instant;

struct Stat {
    mean: f64,
    std: f64,
}

fn stat(xs: &[f64]) -> Stat {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Stat { mean, std: var.sqrt() }
}

pub fn generate(a: BenchGenerateArgs) -> Result<ExitCode> {
    let engine = load(&a.model)?;
    let vocab = engine.model().config().vocab_size as u64;
    let reps = a.repetitions.max(1);
    // Deterministic pseudo-random prompt (xorshift), as llama-bench uses random tokens.
    let mut s = 0x2545F4914F6CDD1Du64;
    let prompt: Vec<u32> = (0..a.prompt_tokens)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % vocab) as u32
        })
        .collect();
    let bos = engine.tokenizer().bos().unwrap_or(prompt.first().copied().unwrap_or(0));
    // Warm-up: touch every weight once.
    engine.logits(&[bos])?;
    let mut pp = Vec::new();
    if a.prompt_tokens > 0 {
        for _ in 0..reps {
            let t = Instant::now();
            engine.logits(&prompt)?;
            pp.push(a.prompt_tokens as f64 / t.elapsed().as_secs_f64());
        }
    }
    let mut tg = Vec::new();
    if a.gen_tokens > 0 {
        let params = GenerationParams {
            max_tokens: a.gen_tokens,
            ignore_eos: true,
            sampling: SamplingParams::greedy(),
            ..Default::default()
        };
        for _ in 0..reps {
            let req = Request { prompt: vec![bos], params: params.clone() };
            let t = Instant::now();
            let (out, _) = engine.generate_batch(&[req], None, &mut |_, _| true)?;
            // The first token comes out of the 1-token prefill, the rest from decode passes.
            tg.push(out[0].tokens.len() as f64 / t.elapsed().as_secs_f64());
        }
    }
    let bytes = engine.model().decode_weight_bytes();
    // Bandwidth after the runs, on the same threads: decode at `tg` tok/s
    // reads `bytes` per token, the same bytes every token.
    let threads = engine.threads();
    let bw = (a.gen_tokens > 0).then(|| read_bandwidth(threads, bytes));
    let dram = (a.gen_tokens > 0).then(|| read_bandwidth(threads, 1 << 30));
    let (pp, tg, bytes) = (stat(&pp), stat(&tg), bytes as f64);
    let fraction = bw.map(|bw| tg.mean * bytes / bw);
    let info = engine.info();
    if a.json {
        let j = serde_json::json!({
            "engine": "forja",
            "model": info.path.display().to_string(),
            "threads": engine.threads(),
            "kv_cache_type": engine.model().kv_type().name(),
            "n_prompt": a.prompt_tokens,
            "n_gen": a.gen_tokens,
            "repetitions": reps,
            "pp_tps": pp.mean, "pp_tps_std": pp.std,
            "tg_tps": tg.mean, "tg_tps_std": tg.std,
            "decode_weight_bytes": bytes as u64,
            "read_bandwidth_gbs": bw.map(|b| b / 1e9),
            "dram_bandwidth_gbs": dram.map(|b| b / 1e9),
            "decode_bandwidth_fraction": fraction,
        });
        println!("{j}");
    } else {
        println!("| model | threads | test | t/s |");
        println!("| --- | ---: | ---: | ---: |");
        if a.prompt_tokens > 0 {
            println!(
                "| {} | {} | pp{} | {:.2} ± {:.2} |",
                info.name,
                engine.threads(),
                a.prompt_tokens,
                pp.mean,
                pp.std
            );
        }
        if a.gen_tokens > 0 {
            println!(
                "| {} | {} | tg{} | {:.2} ± {:.2} |",
                info.name,
                engine.threads(),
                a.gen_tokens,
                tg.mean,
                tg.std
            );
        }
        if let (Some(bw), Some(f), Some(dram)) = (bw, fraction, dram) {
            println!(
                "\ndecode reads {:.1} MB of weights per token: {:.1} GB/s, {:.0} % of the \
                 {:.1} GB/s {threads} threads read streaming through {:.1} MB ({:.1} GB/s \
                 through 1 GiB)",
                bytes / 1e6,
                tg.mean * bytes / 1e9,
                100.0 * f,
                bw / 1e9,
                bytes / 1e6,
                dram / 1e9,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Read bandwidth of `threads` threads streaming through `bytes` of
/// memory, again and again for at least 0.3 s per pass, best of five
/// passes, in bytes/s. A buffer the size of the weights measures what
/// decode could read at best (on a CPU whose last-level cache holds the
/// model, that is cache bandwidth); 1 GiB measures DRAM.
fn read_bandwidth(threads: usize, bytes: usize) -> f64 {
    let threads = threads.max(1);
    let words = (bytes / 8).max(threads * 1024);
    // Distinct values so no page is shared zero memory.
    let buf: Vec<u64> = (0..words as u64).collect();
    let chunk = words.div_ceil(threads);
    let sweep = |c: &[u64]| {
        // Eight independent sums: the loop is bound by loads, not adds.
        let mut acc = [0u64; 8];
        for w in c.chunks_exact(8) {
            for (a, &b) in acc.iter_mut().zip(w) {
                *a = a.wrapping_add(b);
            }
        }
        acc.iter().fold(0u64, |a, &b| a.wrapping_add(b))
    };
    let mut best = 0f64;
    for _ in 0..5 {
        let (t, mut passes) = (Instant::now(), 0usize);
        while passes == 0 || t.elapsed().as_secs_f64() < 0.3 {
            let sum = std::thread::scope(|s| {
                let handles: Vec<_> =
                    buf.chunks(chunk).map(|c| s.spawn(move || sweep(c))).collect();
                handles.into_iter().map(|h| h.join().unwrap_or(0)).fold(0u64, u64::wrapping_add)
            });
            std::hint::black_box(sum);
            passes += 1;
        }
        best = best.max((passes * words * 8) as f64 / t.elapsed().as_secs_f64());
    }
    best
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// `forja bench speculative`: greedy decode of a chat prompt, plainly and
/// with a draft model, `repetitions` times each; medians of decode tok/s.
pub fn speculative(a: BenchSpeculativeArgs) -> Result<ExitCode> {
    use forja_engine::speculative::{self, SpecConfig};
    let opts = forja_engine::LoadOptions { dequantize: a.dequantize, ..a.model.load_options() };
    let target = crate::run::load_with(&crate::models::resolve(&a.model.model)?, &opts)?;
    let draft_opts = forja_engine::LoadOptions { dequantize: false, ..opts.clone() };
    let draft = crate::run::load_with(&crate::models::resolve(&a.draft)?, &draft_opts)?;
    speculative::check_compatible(&target, &draft)?;
    let tok = target.tokenizer();
    let prompt = if target.has_chat_template() {
        let text = target.render_chat(&[forja_core::ChatMessage::user(a.prompt.clone())], true)?;
        tok.encode(&text, false)?
    } else {
        tok.encode(&a.prompt, true)?
    };
    let params = GenerationParams {
        max_tokens: a.gen_tokens.max(1),
        ignore_eos: true,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    let cfg = SpecConfig { k: a.draft_k, k_max: a.draft_k.max(8), ..Default::default() };
    let warm = GenerationParams { max_tokens: 4, ..params.clone() };
    let req = |p: &GenerationParams| Request { prompt: prompt.clone(), params: p.clone() };
    target.generate_batch(&[req(&warm)], None, &mut |_, _| true)?;
    speculative::generate(&target, &draft, &prompt, &warm, None, &cfg)?;
    let (mut plain_tps, mut spec_tps) = (Vec::new(), Vec::new());
    let mut identical = true;
    let mut last = None;
    for _ in 0..a.repetitions.max(1) {
        let (out, t) = target.generate_batch(&[req(&params)], None, &mut |_, _| true)?;
        plain_tps.push(t.decode_tps());
        let (tokens, stats, secs) =
            speculative::generate(&target, &draft, &prompt, &params, None, &cfg)?;
        spec_tps.push(tokens.len() as f64 / secs.max(1e-9));
        identical &= tokens == out[0].tokens;
        last = Some((tokens.len(), stats));
    }
    let (n, stats) = last.expect("at least one repetition");
    let (plain, spec) = (median(&mut plain_tps), median(&mut spec_tps));
    let per_pass = n as f64 / stats.steps.max(1) as f64;
    if a.json {
        let j = serde_json::json!({
            "engine": "forja",
            "target": target.info().path.display().to_string(),
            "target_dequantized": a.dequantize,
            "draft": draft.info().path.display().to_string(),
            "threads": target.threads(),
            "n_prompt": prompt.len(),
            "n_gen": n,
            "repetitions": a.repetitions.max(1),
            "plain_tps": plain, "speculative_tps": spec, "speedup": spec / plain.max(1e-9),
            "acceptance": stats.acceptance(), "token_acceptance": stats.token_acceptance(),
            "drafted": stats.drafted, "accepted": stats.accepted, "rejected": stats.rejected,
            "tokens_per_target_pass": per_pass, "k_start": cfg.k, "k_end": stats.k,
            "fell_back": stats.fell_back, "identical_to_plain": identical,
        });
        println!("{j}");
    } else {
        println!(
            "| target | draft | threads | tokens | plain t/s | speculative t/s | speedup | kept drafts | token acceptance | tokens/pass | k end | same output |"
        );
        println!(
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        );
        println!(
            "| {}{} | {} | {} | {} | {:.2} | {:.2} | {:.2}x | {:.1}% | {:.1}% | {:.2} | {} | {} |",
            target.info().name,
            if a.dequantize { " (f32)" } else { "" },
            draft.info().path.file_name().map(|f| f.to_string_lossy()).unwrap_or_default(),
            target.threads(),
            n,
            plain,
            spec,
            spec / plain.max(1e-9),
            100.0 * stats.acceptance(),
            100.0 * stats.token_acceptance(),
            per_pass,
            stats.k,
            if identical { "yes" } else { "no" }
        );
        if stats.fell_back {
            println!(
                "(acceptance fell below {:.0}%: speculation stopped)",
                100.0 * cfg.min_acceptance
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Nominal peak f32 FLOP/s of `threads` cores at the best vector level
/// the CPU runs (the one `gemm` picks too): two FMA units × lanes (8 for
/// AVX2, 16 for AVX-512, 4 for NEON) × 2 FLOPs per cycle at the clock
/// `/proc/cpuinfo` reports. Some CPUs have one 512-bit FMA unit per core;
/// for them this is twice the real peak.
fn peak_flops(threads: usize) -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 =
        info.lines().find(|l| l.starts_with("cpu MHz"))?.split(':').nth(1)?.trim().parse().ok()?;
    let lanes = forja_engine::isa::Isa::detected().f32_lanes();
    Some(threads as f64 * 4.0 * lanes as f64 * mhz * 1e6)
}

pub fn train(a: crate::args::BenchTrainArgs) -> Result<ExitCode> {
    use forja_engine::lora::{parse_targets, Adapter, LoraConfig, Module};
    use forja_engine::train::{self, data::Example, optim::AdamW};
    let opts = forja_engine::LoadOptions { dequantize: true, ..a.model.load_options() };
    let engine = crate::run::load_with(&crate::models::resolve(&a.model.model)?, &opts)?;
    let cfg = engine.model().config().clone();
    let lcfg = LoraConfig {
        r: a.lora_r,
        alpha: 2.0 * a.lora_r as f64,
        dropout: 0.0,
        targets: parse_targets(&a.target_modules)?,
        rslora: false,
    };
    let adapter = Adapter::new(engine.model(), &lcfg, "bench", 0)?;
    let mut s = 0x9E37_79B9u64;
    let examples: Vec<Example> = (0..a.batch_size)
        .map(|_| {
            let ids: Vec<u32> = (0..a.seq_len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s % cfg.vocab_size as u64) as u32
                })
                .collect();
            Example { target: vec![true; ids.len()], ids }
        })
        .collect();
    let refs: Vec<&Example> = examples.iter().collect();
    let mut opt = AdamW::new(adapter.vars(), 0.9, 0.999, 1e-8, 0.0);
    let what = train::Trainable::Lora(&adapter);
    let precision = crate::train::parse_precision(&a.precision)?;
    let cfg_check = train::TrainConfig { precision, ..Default::default() };
    cfg_check.validate()?;
    let step =
        |opt: &mut AdamW| train::single_step(engine.model(), &what, &refs, opt, 1e-4, precision);
    engine.install(|| step(&mut opt))?; // warm-up
    let t = Instant::now();
    for _ in 0..a.steps {
        engine.install(|| step(&mut opt))?;
    }
    let secs = t.elapsed().as_secs_f64();
    let tokens = (a.batch_size * a.seq_len * a.steps) as f64;
    let tps = tokens / secs;
    // FLOPs per token: forward and activation-gradient passes over the frozen
    // matrices (2 + 2 per weight), 6 per LoRA weight, attention.
    let frozen: usize = (0..cfg.num_hidden_layers)
        .flat_map(|l| Module::ALL.map(|m| (l, m)))
        .map(|(l, m)| {
            let lin = engine.model().linear(l, m);
            lin.in_dim() * lin.out_dim()
        })
        .sum::<usize>()
        + cfg.vocab_size * cfg.hidden_size;
    let attn = 6 * cfg.num_hidden_layers * a.seq_len * cfg.num_attention_heads * cfg.head_dim();
    let flops_per_token = (4 * frozen + 6 * adapter.num_params() + attn) as f64;
    // MFU is against the f32 FMA peak; a BF16 step's AMX peak is another.
    let mfu = peak_flops(engine.threads())
        .filter(|_| precision == train::Precision::F32)
        .map(|p| tps * flops_per_token / p);
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "engine": "forja", "threads": engine.threads(), "batch_size": a.batch_size, "seq_len": a.seq_len,
                "steps": a.steps, "lora_r": a.lora_r, "targets": a.target_modules, "tok_per_s": tps,
                "flops_per_token": flops_per_token, "mfu": mfu, "trainable_params": adapter.num_params(),
                "precision": precision.name(),
            })
        );
    } else {
        println!(
            "{}: LoRA r={} on {}, batch {} x {} tokens, {} threads, {}: {:.1} tok/s, {:.2} GFLOP/s{}",
            engine.info().name,
            a.lora_r,
            a.target_modules,
            a.batch_size,
            a.seq_len,
            engine.threads(),
            precision.name(),
            tps,
            tps * flops_per_token / 1e9,
            mfu.map(|m| format!(
                ", MFU {:.1}% of the nominal {} FMA peak",
                m * 100.0,
                forja_engine::isa::Isa::detected()
            ))
            .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
