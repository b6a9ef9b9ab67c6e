//! The generation core: sequences that prefill their prompt in chunks and
//! then decode one token per pass, all live sequences of one adapter in
//! the same forward pass (chunked prefill mixed with decode, as vLLM
//! does), with per-sequence sampling, optional token filters (grammars),
//! end-of-generation tokens, stop strings (held back while they might still
//! be forming, so streamed text never shows part of one), token limits and
//! cancellation from the streaming callback. [`run`] drives a fixed batch
//! to completion; the [`crate::batcher`] admits and retires sequences
//! between passes.

use crate::attention::Slot;
use crate::kv_cache::KvCache;
use crate::models::llama::{Batch, Llama, Lora};
use crate::sampler::{logprob, Sampler, TokenLogprob};
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

/// Restricts which token may come next (a grammar; see
/// [`crate::constraint`]). The generation loop masks the logits before
/// sampling, reports the sampled token, and stops when the filter is done.
pub trait TokenFilter: Send {
    /// Sets the logits of forbidden tokens to `-inf`.
    fn mask(&mut self, logits: &mut [f32]) -> Result<()>;
    /// Records the token that was sampled.
    fn accept(&mut self, token: u32) -> Result<()>;
    /// True when nothing more may follow.
    fn is_finished(&self) -> bool;
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token, a stop string, or a completed grammar.
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
    /// Each generated token's log-probability (when the request asked).
    pub logprobs: Vec<TokenLogprob>,
    /// Each prompt token's log-probability given those before it (when the
    /// request asked; the first token has none).
    pub prompt_logprobs: Vec<Option<TokenLogprob>>,
}

/// Where the time went in one call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Prompt tokens processed.
    pub prompt_tokens: usize,
    /// Seconds spent in passes that carried prompt tokens (including the
    /// first sampling).
    pub prompt_secs: f64,
    /// Tokens produced by decode-only passes.
    pub decode_tokens: usize,
    /// Seconds spent in decode-only passes.
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

/// Checks a request against the model before any work: parameters, an
/// empty or too long prompt, token ids outside the vocabulary.
pub(crate) fn check(model: &Llama, tok: &Tokenizer, r: &Request, ctx: usize) -> Result<()> {
    r.params.validate()?;
    if r.prompt.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    if r.prompt.len() >= ctx {
        return Err(EngineError::PromptTooLong {
            prompt_tokens: r.prompt.len(),
            context: ctx,
            model_max: model.config().max_position_embeddings,
        });
    }
    let vocab = model.config().vocab_size;
    if let Some(&bad) = r.prompt.iter().find(|&&t| t as usize >= vocab) {
        return Err(EngineError::Tokenizer {
            source_desc: tok.source().to_string(),
            reason: format!("token id {bad} is outside the model's vocabulary of {vocab}"),
        });
    }
    Ok(())
}

/// One sequence being generated, with its own KV cache.
pub(crate) struct Seq<'t> {
    pub(crate) history: Vec<u32>,
    n_prompt: usize,
    /// Positions already in `cache`.
    fed: usize,
    max_new: usize,
    params: GenerationParams,
    sampler: Sampler,
    stream: TextStream<'t>,
    text: String,
    emitted: usize,
    pub(crate) finish: Option<FinishReason>,
    /// Why a filter failed, if it did (the sequence stops).
    pub(crate) error: Option<EngineError>,
    pub(crate) cache: KvCache,
    filter: Option<Box<dyn TokenFilter + 't>>,
    logprobs: Vec<TokenLogprob>,
    prompt_logprobs: Vec<Option<TokenLogprob>>,
}

impl<'t> Seq<'t> {
    /// A sequence for a request already [`check`]ed.
    pub(crate) fn new(
        model: &Llama,
        tok: &'t Tokenizer,
        r: Request,
        ctx: usize,
        filter: Option<Box<dyn TokenFilter + 't>>,
    ) -> Seq<'t> {
        Seq {
            n_prompt: r.prompt.len(),
            max_new: r.params.max_tokens.min(ctx - r.prompt.len()),
            sampler: Sampler::new(&r.params.sampling),
            history: r.prompt,
            fed: 0,
            params: r.params,
            stream: tok.stream(),
            text: String::new(),
            emitted: 0,
            finish: None,
            error: None,
            cache: model.new_cache(),
            filter,
            logprobs: Vec::new(),
            prompt_logprobs: Vec::new(),
        }
    }

    /// Whether prompt tokens are scored (every prompt position needs logits).
    pub(crate) fn scores_prompt(&self) -> bool {
        self.params.prompt_logprobs.is_some()
    }

    /// Whether it reports log-probabilities (no speculation then).
    pub(crate) fn wants_logprobs(&self) -> bool {
        self.params.logprobs.is_some() || self.params.prompt_logprobs.is_some()
    }

    /// Scores prompt token `pos + 1` with the logits of position `pos`.
    fn score_prompt(&mut self, pos: usize, logits: &[f32]) {
        let top = self.params.prompt_logprobs.unwrap_or(0);
        if self.prompt_logprobs.is_empty() {
            self.prompt_logprobs.push(None);
        }
        if pos + 1 < self.n_prompt && self.prompt_logprobs.len() == pos + 1 {
            self.prompt_logprobs.push(Some(logprob(logits, self.history[pos + 1], top)));
        }
    }

    /// Whether the prompt is still being fed.
    pub(crate) fn in_prefill(&self) -> bool {
        self.fed < self.n_prompt
    }

    /// Tokens this sequence may still generate.
    pub(crate) fn remaining(&self) -> usize {
        self.max_new.saturating_sub(self.generated())
    }

    /// Whether a grammar restricts it (speculation does not apply).
    pub(crate) fn constrained(&self) -> bool {
        self.filter.is_some()
    }

    /// Appends tokens decided elsewhere (a speculative step, which left the
    /// cache holding all of them but the last), stopping at the first that
    /// ends the sequence.
    pub(crate) fn push_run(
        &mut self,
        ids: &[u32],
        tok: &Tokenizer,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) {
        for &id in ids {
            self.push(id, tok, on_text);
            if self.finish.is_some() {
                break;
            }
        }
        self.fed = self.cache.len();
    }

    /// Tokens generated so far.
    pub(crate) fn generated(&self) -> usize {
        self.history.len() - self.n_prompt
    }

    /// The finished result.
    pub(crate) fn into_completion(mut self) -> Completion {
        if self.scores_prompt() && self.prompt_logprobs.is_empty() {
            self.prompt_logprobs.push(None);
        }
        Completion {
            tokens: self.history[self.n_prompt..].to_vec(),
            prompt_tokens: self.n_prompt,
            text: self.text,
            finish: self.finish.unwrap_or(FinishReason::Length),
            logprobs: self.logprobs,
            prompt_logprobs: self.prompt_logprobs,
        }
    }

    /// Samples the next token from `logits` (filter applied) and records it.
    fn sample(
        &mut self,
        logits: &mut [f32],
        tok: &Tokenizer,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) {
        if self.max_new == 0 {
            // Only the prompt was to be scored (echo with max_tokens 0).
            self.finish = Some(FinishReason::Length);
            return;
        }
        let raw = self.params.logprobs.map(|_| logits.to_vec());
        if let Some(f) = &mut self.filter {
            if let Err(e) = f.mask(logits) {
                self.fail(e);
                return;
            }
        }
        let id = match self.sampler.sample(logits, &self.history) {
            Ok(id) => id,
            Err(e) => return self.fail(e),
        };
        if let (Some(raw), Some(top)) = (raw, self.params.logprobs) {
            self.logprobs.push(logprob(&raw, id, top));
        }
        self.push(id, tok, on_text);
    }

    fn fail(&mut self, e: EngineError) {
        self.error = Some(e);
        self.finish = Some(FinishReason::Stop);
    }

    /// Appends a decided token: text, stop strings, limits, streaming.
    pub(crate) fn push(&mut self, id: u32, tok: &Tokenizer, on_text: &mut dyn FnMut(&str) -> bool) {
        self.history.push(id);
        let p = &self.params;
        if !p.ignore_eos && tok.eog_ids().contains(&id) {
            self.finish = Some(FinishReason::Stop);
        } else {
            if let Some(f) = &mut self.filter {
                if let Err(e) = f.accept(id) {
                    return self.fail(e);
                }
            }
            // A decoding error leaves the token out of the text; it is still counted.
            self.text.push_str(&self.stream.push(id).unwrap_or_default());
            if let Some(cut) = find_stop(&self.text, self.emitted, &p.stop) {
                self.text.truncate(cut);
                self.finish = Some(FinishReason::Stop);
            } else if self.filter.as_ref().is_some_and(|f| f.is_finished()) {
                self.finish = Some(FinishReason::Stop);
            }
        }
        if self.finish.is_none() && self.generated() >= self.max_new {
            self.finish = Some(FinishReason::Length);
        }
        let end = if self.finish.is_some() {
            self.text.len()
        } else {
            self.text.len() - held_back(&self.text, &p.stop)
        };
        if end > self.emitted {
            if !on_text(&self.text[self.emitted..end]) && self.finish.is_none() {
                self.finish = Some(FinishReason::Cancelled);
            }
            self.emitted = end;
        }
    }
}

/// What one [`advance`] pass did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pass {
    /// Prompt tokens fed.
    pub(crate) prompt_tokens: usize,
    /// Tokens sampled for sequences that were already decoding.
    pub(crate) decoded: usize,
}

/// One forward pass over `seqs` (all with the same adapter): every
/// decoding sequence feeds its last token, and sequences still in prefill
/// feed prompt chunks while `budget` tokens last. Sequences that reach the
/// end of their prompt or decode a step sample a token; `on_text(i, text)`
/// gets text of `seqs[i]`.
pub(crate) fn advance(
    model: &Llama,
    tok: &Tokenizer,
    seqs: &mut [&mut Seq<'_>],
    budget: usize,
    lora: Lora<'_>,
    on_text: &mut dyn FnMut(usize, &str) -> bool,
) -> Result<Pass> {
    let mut tokens = Vec::new();
    let mut slots = Vec::new();
    // What each logits row is for.
    let mut rows: Vec<(usize, Row)> = Vec::new();
    let mut logits_rows = Vec::new();
    let mut pass = Pass::default();
    for (i, s) in seqs.iter().enumerate() {
        if s.finish.is_none() && !s.in_prefill() {
            tokens.push(*s.history.last().expect("a prompt"));
            slots.push(Slot { seq: i, pos: s.history.len() - 1 });
            logits_rows.push(tokens.len() - 1);
            rows.push((i, Row::Decode));
        }
    }
    let mut left = budget.saturating_sub(tokens.len()).max(1);
    for (i, s) in seqs.iter().enumerate() {
        if left == 0 {
            break;
        }
        if s.finish.is_none() && s.in_prefill() {
            let take = (s.n_prompt - s.fed).min(left);
            let end = s.fed + take == s.n_prompt;
            for pos in s.fed..s.fed + take {
                tokens.push(s.history[pos]);
                slots.push(Slot { seq: i, pos });
                if s.scores_prompt() && !(end && pos + 1 == s.n_prompt) {
                    logits_rows.push(tokens.len() - 1);
                    rows.push((i, Row::Score(pos)));
                }
            }
            left -= take;
            pass.prompt_tokens += take;
            if end {
                logits_rows.push(tokens.len() - 1);
                rows.push((i, Row::PromptEnd));
            }
        }
    }
    if tokens.is_empty() {
        return Ok(pass);
    }
    let mut caches: Vec<&mut KvCache> = seqs.iter_mut().map(|s| &mut s.cache).collect();
    let logits = model.forward(
        &Batch { tokens: &tokens, slots: &slots, logits_rows: &logits_rows },
        &mut caches,
        lora,
    )?;
    for s in slots.iter() {
        seqs[s.seq].fed = seqs[s.seq].fed.max(s.pos + 1);
    }
    let logits: Vec<Vec<f32>> = logits.to_dtype(candle_core::DType::F32)?.to_vec2()?;
    for (&(i, row), mut l) in rows.iter().zip(logits) {
        match row {
            Row::Score(pos) => seqs[i].score_prompt(pos, &l),
            Row::PromptEnd | Row::Decode => {
                if row == Row::PromptEnd && seqs[i].scores_prompt() {
                    seqs[i].score_prompt(seqs[i].n_prompt - 1, &l);
                }
                seqs[i].sample(&mut l, tok, &mut |t| on_text(i, t));
                pass.decoded += usize::from(row == Row::Decode);
            }
        }
    }
    Ok(pass)
}

/// What a logits row of a pass is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    /// The next token of a decoding sequence.
    Decode,
    /// The first token after the prompt.
    PromptEnd,
    /// Scoring the prompt token after this position (echo logprobs).
    Score(usize),
}

/// Runs `reqs` to completion. `ctx` bounds prompt + generated tokens per
/// sequence; `ubatch` bounds the tokens of one pass.
pub(crate) fn run(
    model: &Llama,
    tok: &Tokenizer,
    reqs: &[Request],
    ctx: usize,
    ubatch: usize,
    lora: Lora<'_>,
    on_text: OnText<'_>,
) -> Result<(Vec<Completion>, Timings)> {
    for r in reqs {
        check(model, tok, r, ctx)?;
    }
    let mut seqs: Vec<Seq> =
        reqs.iter().map(|r| Seq::new(model, tok, r.clone(), ctx, None)).collect();
    let mut timings = Timings::default();
    loop {
        let idx: Vec<usize> = (0..seqs.len()).filter(|&i| seqs[i].finish.is_none()).collect();
        if idx.is_empty() {
            break;
        }
        let mut live: Vec<&mut Seq> = seqs.iter_mut().filter(|s| s.finish.is_none()).collect();
        let t = Instant::now();
        let pass = advance(model, tok, &mut live, ubatch, lora, &mut |i, t| on_text(idx[i], t))?;
        let secs = t.elapsed().as_secs_f64();
        if pass.prompt_tokens > 0 {
            timings.prompt_tokens += pass.prompt_tokens;
            timings.prompt_secs += secs;
        } else {
            timings.decode_secs += secs;
            timings.decode_tokens += pass.decoded;
        }
    }
    Ok((seqs.into_iter().map(Seq::into_completion).collect(), timings))
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
