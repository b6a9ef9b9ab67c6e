//! `forja bench generate`: llama-bench-style throughput tests. `pp`: one
//! prefill pass over N prompt tokens; `tg`: N tokens decoded one at a time
//! after a single BOS token. Both use random token ids, like llama-bench.

use crate::args::BenchGenerateArgs;
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
    let (pp, tg) = (stat(&pp), stat(&tg));
    let info = engine.info();
    if a.json {
        let j = serde_json::json!({
            "engine": "forja",
            "model": info.path.display().to_string(),
            "threads": engine.threads(),
            "n_prompt": a.prompt_tokens,
            "n_gen": a.gen_tokens,
            "repetitions": reps,
            "pp_tps": pp.mean, "pp_tps_std": pp.std,
            "tg_tps": tg.mean, "tg_tps_std": tg.std,
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
    }
    Ok(ExitCode::SUCCESS)
}
