//! General replay rows: what keeps an adapter from forgetting what the
//! base model could do (seed 002: 20 % of every training mix). The prompts
//! are a small general instruction set written for forja
//! (`data/general-replay-v1.jsonl`: explanations, advice, translation,
//! arithmetic, short writing, formatting, chit-chat; English and Spanish;
//! same licence as forja). The answers are the base model's own (greedy,
//! self-distillation, as in self-synthesised rehearsal): training on them
//! pulls the adapter back toward the base model's behaviour on general
//! requests without any outside data. An answer cut at the token cap is
//! not used (it would teach the model to stop mid-sentence). Answers are
//! cached per base model in the worker's directory, so each is generated
//! once.

use crate::{ControlError, Result};
use forja_core::{ChatMessage, GenerationParams, SamplingParams};
use forja_engine::{Engine, FinishReason, Request};
use forja_store::sha256_hex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The set's name and version.
pub const SET: &str = "general-replay-v1";
const PROMPTS: &str = include_str!("../data/general-replay-v1.jsonl");
/// Token cap of an answer.
pub const ANSWER_TOKENS: usize = 160;
const BATCH: usize = 8;

/// One prompt of the set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Prompt {
    /// Stable id (`g001`).
    pub id: String,
    /// The user's request.
    pub prompt: String,
}

/// The set's prompts.
pub fn prompts() -> Vec<Prompt> {
    PROMPTS.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The rows picked for a job, and which prompts they answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// Training lines (chat format).
    pub lines: Vec<serde_json::Value>,
    /// The prompts' ids, in the rows' order.
    pub ids: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cache {
    /// id → the base model's answer (`None`: cut at the cap, unusable).
    answers: BTreeMap<String, Option<String>>,
}

/// `n` general rows for a job seeded `seed` (fewer when the set runs out
/// of usable answers), generating and caching the answers of `engine`'s
/// base model (whose weights hash to `model`) in `cache_dir` as needed.
pub fn rows(engine: &Engine, model: &str, n: usize, seed: u64, cache_dir: &Path) -> Result<Rows> {
    let mut order = prompts();
    order.sort_by_key(|p| sha256_hex(format!("{seed}/{}", p.id).as_bytes()));
    let path =
        cache_dir.join(format!("{SET}-{}-{ANSWER_TOKENS}.json", &model[..model.len().min(16)]));
    let mut cache: Cache =
        std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let mut out = Rows { lines: Vec::new(), ids: Vec::new() };
    let mut next = 0;
    while out.lines.len() < n && next < order.len() {
        // A prompt not answered yet: answer it and the next ones not in
        // the cache, a batch at a time.
        if !cache.answers.contains_key(&order[next].id) {
            let missing: Vec<&Prompt> = order[next..]
                .iter()
                .filter(|p| !cache.answers.contains_key(&p.id))
                .take(BATCH)
                .collect();
            let reqs = missing
                .iter()
                .map(|p| {
                    let text = engine.render_chat(&[ChatMessage::user(p.prompt.clone())], true)?;
                    Ok(Request {
                        prompt: engine.tokenizer().encode(&text, false)?,
                        params: GenerationParams {
                            max_tokens: ANSWER_TOKENS,
                            sampling: SamplingParams::greedy(),
                            ..GenerationParams::default()
                        },
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let (done, _) = engine.generate_batch(&reqs, None, &mut |_, _| true)?;
            for (p, c) in missing.iter().zip(done) {
                let text = c.text.trim().to_string();
                let usable = c.finish == FinishReason::Stop && !text.is_empty();
                cache.answers.insert(p.id.clone(), usable.then_some(text));
            }
            save(&path, &cache)?;
        }
        let p = &order[next];
        next += 1;
        if let Some(Some(answer)) = cache.answers.get(&p.id) {
            out.lines.push(serde_json::json!({"messages": [
                {"role": "user", "content": p.prompt},
                {"role": "assistant", "content": answer},
            ]}));
            out.ids.push(p.id.clone());
        }
    }
    Ok(out)
}

fn save(path: &Path, cache: &Cache) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| ControlError::io(d, e))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(cache).expect("json"))
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| ControlError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_is_well_formed_and_apart_from_the_probe() {
        let p = prompts();
        assert_eq!(p.len(), PROMPTS.lines().count(), "every line parses");
        assert!(p.len() >= 150);
        let ids: std::collections::HashSet<_> = p.iter().map(|p| &p.id).collect();
        assert_eq!(ids.len(), p.len());
        // No probe question is a replay prompt (the probe must stay unseen).
        let probe: std::collections::HashSet<String> =
            forja_eval::probe::general().items.iter().map(|i| i.question.to_lowercase()).collect();
        assert!(p.iter().all(|p| !probe.contains(&p.prompt.to_lowercase())));
    }
}
