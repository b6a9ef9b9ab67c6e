//! The generation loop: prefill every prompt in batched passes, then decode
//! all live sequences together one token per pass, with per-sequence
//! sampling, end-of-generation tokens, stop strings (held back while they
//! might still be forming, so streamed text never shows part of one), token
//! limits and cancellation from the streaming callback.

use crate::attention::Slot;
use crate::models::llama::{Batch, Llama, Lora};
use crate::sampler::Sampler;
use crate::tokenizer::{TextStream, Tokenizer};
use crate::{EngineError, Result};
use forja_core::GenerationParams;
use std::time::Instant;

/// One prompt to continue.
#[derive(Debug, Clone)]
pub struct Request {
    /// Prompt token ids (BOS included if the model wants one).
    pub prompt: Vec<u32>,
    /// Limits and sampling.
    pub params: GenerationParams,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached, or the context window is full.
    Length,
    /// The streaming callback asked to stop.
    Cancelled,
}

impl FinishReason {
    /// OpenAI's spelling (`stop`, `length`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// The result of one request.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Generated text (stop string and end token excluded).
    pub text: String,
    /// Every sampled token, end token included.
    pub tokens: Vec<u32>,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Why it ended.
    pub finish: FinishReason,
}

/// Where the time went in one call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Prompt tokens processed.
    pub prompt_tokens: usize,
    /// Seconds spent on prompt prefill (including the first sampling).
    pub prompt_secs: f64,
    /// Tokens produced by decode passes (after the first one of each sequence).
    pub decode_tokens: usize,
    /// Seconds spent in decode passes.
    pub decode_secs: f64,
}

impl Timings {
    /// Prompt tokens per second.
    pub fn prompt_tps(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_secs.max(1e-9)
    }
    /// Decode tokens per second (summed over sequences).
    pub fn decode_tps(&self) -> f64 {
        self.decode_tokens as f64 / self.decode_secs.max(1e-9)
    }
}

/// Streaming callback: `(request index, new text)`; return `false` to
/// cancel that request.
pub type OnText<'a> = &'a mut (dyn FnMut(usize, &str) -> bool + Send);

struct Seq<'t> {
    history: Vec<u32>,
    n_prompt: usize,
    max_new: usize,
    sampler: Sampler,
    stream: TextStream<'t>,
    text: String,
    emitted: usize,
    finish: Option<FinishReason>,
}

/// Runs `reqs` to completion. `ctx` bounds prompt + generated tokens per
/// sequence; `ubatch` bounds the tokens of one prefill pass.
pub(crate) fn run(
    model: &Llama,
    tok: &Tokenizer,
    reqs: &[Request],
    ctx: usize,
    ubatch: usize,
    lora: Lora<'_>,
    on_text: OnText<'_>,
) -> Result<(Vec<Completion>, Timings)> {
    let model_max = model.config().max_position_embeddings;
    for r in reqs {
        r.params.validate()?;
        if r.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if r.prompt.len() >= ctx {
            return Err(EngineError::PromptTooLong {
                prompt_tokens: r.prompt.len(),
                context: ctx,
                model_max,
            });
        }
        let vocab = model.config().vocab_size;
        if let Some(&bad) = r.prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::Tokenizer {
                source_desc: tok.source().to_string(),
                reason: format!("token id {bad} is outside the model's vocabulary of {vocab}"),
            });
        }
    }
    let mut seqs: Vec<Seq> = reqs
        .iter()
        .map(|r| Seq {
            history: r.prompt.clone(),
            n_prompt: r.prompt.len(),
            max_new: r.params.max_tokens.min(ctx - r.prompt.len()),
            sampler: Sampler::new(&r.params.sampling),
            stream: tok.stream(),
            text: String::new(),
            emitted: 0,
            finish: None,
        })
        .collect();
    let mut caches: Vec<_> = reqs.iter().map(|_| model.new_cache()).collect();
    let mut timings = Timings::default();

    // Prefill: all prompts, flattened, in passes of at most `ubatch` tokens.
    let t0 = Instant::now();
    let flat: Vec<(usize, usize)> = reqs
        .iter()
        .enumerate()
        .flat_map(|(s, r)| (0..r.prompt.len()).map(move |p| (s, p)))
        .collect();
    timings.prompt_tokens = flat.len();
    for chunk in flat.chunks(ubatch.max(1)) {
        let tokens: Vec<u32> = chunk.iter().map(|&(s, p)| reqs[s].prompt[p]).collect();
        let slots: Vec<Slot> = chunk.iter().map(|&(seq, pos)| Slot { seq, pos }).collect();
        let last: Vec<usize> =
            (0..chunk.len()).filter(|&i| chunk[i].1 + 1 == reqs[chunk[i].0].prompt.len()).collect();
        let mut refs: Vec<_> = caches.iter_mut().collect();
        let logits = model.forward(
            &Batch { tokens: &tokens, slots: &slots, logits_rows: &last },
            &mut refs,
            lora,
        )?;
        let logits: Vec<Vec<f32>> = logits.to_dtype(candle_core::DType::F32)?.to_vec2()?;
        for (row, mut l) in last.iter().zip(logits) {
            let s = chunk[*row].0;
            step(&mut seqs[s], s, &mut l, &reqs[s].params, tok, on_text);
        }
    }
    timings.prompt_secs = t0.elapsed().as_secs_f64();

    // Decode: every live sequence advances by one token per pass.
    let t1 = Instant::now();
    loop {
        let live: Vec<usize> = (0..seqs.len()).filter(|&s| seqs[s].finish.is_none()).collect();
        if live.is_empty() {
            break;
        }
        let tokens: Vec<u32> =
            live.iter().map(|&s| *seqs[s].history.last().expect("prompt")).collect();
        let slots: Vec<Slot> =
            live.iter().map(|&s| Slot { seq: s, pos: seqs[s].history.len() - 1 }).collect();
        let rows: Vec<usize> = (0..live.len()).collect();
        let mut refs: Vec<_> = caches.iter_mut().collect();
        let logits = model.forward(
            &Batch { tokens: &tokens, slots: &slots, logits_rows: &rows },
            &mut refs,
            lora,
        )?;
        let logits: Vec<Vec<f32>> = logits.to_dtype(candle_core::DType::F32)?.to_vec2()?;
        for (&s, mut l) in live.iter().zip(logits) {
            step(&mut seqs[s], s, &mut l, &reqs[s].params, tok, on_text);
            timings.decode_tokens += 1;
        }
    }
    timings.decode_secs = t1.elapsed().as_secs_f64();

    let out = seqs
        .into_iter()
        .map(|s| Completion {
            tokens: s.history[s.n_prompt..].to_vec(),
            prompt_tokens: s.n_prompt,
            text: s.text,
            finish: s.finish.unwrap_or(FinishReason::Length),
        })
        .collect();
    Ok((out, timings))
}

/// Samples one token for `seq` and updates its text, stop state and stream.
fn step(
    seq: &mut Seq<'_>,
    idx: usize,
    logits: &mut [f32],
    p: &GenerationParams,
    tok: &Tokenizer,
    on_text: OnText<'_>,
) {
    let id = seq.sampler.sample(logits, &seq.history);
    seq.history.push(id);
    let generated = seq.history.len() - seq.n_prompt;
    if !p.ignore_eos && tok.eog_ids().contains(&id) {
        seq.finish = Some(FinishReason::Stop);
    } else {
        // A decoding error leaves the token out of the text; it is still counted.
        seq.text.push_str(&seq.stream.push(id).unwrap_or_default());
        if let Some(cut) = find_stop(&seq.text, seq.emitted, &p.stop) {
            seq.text.truncate(cut);
            seq.finish = Some(FinishReason::Stop);
        }
    }
    if seq.finish.is_none() && generated >= seq.max_new {
        seq.finish = Some(FinishReason::Length);
    }
    let end = if seq.finish.is_some() {
        seq.text.len()
    } else {
        seq.text.len() - held_back(&seq.text, &p.stop)
    };
    if end > seq.emitted {
        if !on_text(idx, &seq.text[seq.emitted..end]) && seq.finish.is_none() {
            seq.finish = Some(FinishReason::Cancelled);
        }
        seq.emitted = end;
    }
}

/// Byte offset of the earliest stop string at or after `from`.
fn find_stop(text: &str, from: usize, stops: &[String]) -> Option<usize> {
    stops.iter().filter_map(|s| text[from..].find(s.as_str()).map(|i| from + i)).min()
}

/// Length of the longest suffix of `text` that is a proper prefix of a stop string.
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut held = 0;
    for s in stops {
        for (k, _) in s.char_indices().skip(1) {
            if k > held && text.ends_with(&s[..k]) {
                held = k;
            }
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_found_and_held_back() {
        let stops = vec!["###".to_string(), "\nUser:".to_string()];
        assert_eq!(find_stop("abc###def", 0, &stops), Some(3));
        assert_eq!(find_stop("ab\nUser: x ### y", 0, &stops), Some(2));
        assert_eq!(find_stop("abc##", 0, &stops), None);
        assert_eq!(held_back("abc##", &stops), 2);
        assert_eq!(held_back("abc\nUs", &stops), 3);
        assert_eq!(held_back("abc", &stops), 0);
        // Multi-byte characters: prefixes are cut on character boundaries.
        let stops = vec!["ñandú".to_string()];
        assert_eq!(held_back("el ña", &stops), "ña".len());
    }
}
