//! Speculative decoding with a draft model: a small (or quantized) model
//! that shares the target's vocabulary proposes `k` tokens one at a time,
//! and the target checks all of them in one forward pass over
//! `[last, d1..dk]`, so one target pass yields between 1 and `k + 1` tokens.
//!
//! The output follows the target exactly:
//! - greedy: a draft token is kept while it equals the target's arg-max
//!   (repetition penalty applied as [`Sampler`] does), then the target's own
//!   arg-max is emitted, so the tokens are those of plain greedy decoding;
//! - sampling: the rejection rule of Leviathan et al. (2023) and Chen et al.
//!   (2023): draft token `x ~ q` is kept with probability `min(1, p(x)/q(x))`,
//!   on rejection a token is drawn from `norm(max(0, p − q))`, and after `k`
//!   acceptances a bonus token is drawn from `p`; `p` and `q` are the
//!   target's and draft's final distributions after the Sampler's
//!   processing ([`Sampler::distribution`]). Each emitted token is then
//!   distributed as plain sampling from the target would draw it.
//!
//! [`Speculator`] holds one sequence's speculation state (the draft's KV
//! cache, the current `k`, the acceptance window, a seeded generator) and
//! advances that sequence by one [`Speculator::step`]; a scheduler calls it
//! per sequence. [`generate`] loops it for benchmarks and tests.
//!
//! `k` adapts: it grows by one after a step whose drafts were all accepted
//! and shrinks by one after a step that rejected a draft in the first half
//! (fewer than `k / 2` accepted), within `k_min..=k_max`.
//!
//! The acceptance rate that decides the fallback is per verified draft
//! token: each accepted draft counts as a success and the first rejected one
//! of a step as a failure; drafts after a rejection are discarded unjudged
//! (the target never saw them in their context). Counting them as failures
//! would make the rate fall as `k` grows even when every step pays off.
//! When the rate over the last `window` verified drafts is below
//! `min_acceptance`, the sequence stops speculating: [`Speculator::active`]
//! turns false and later steps decode plainly (one target pass, one token).

use crate::attention::Slot;
use crate::lora::Adapter;
use crate::models::llama::{Batch, Llama, Lora};
use crate::sampler::Sampler;
use crate::{Engine, EngineError, KvCache, Result};
use candle_core::DType;
use forja_core::{CoreError, GenerationParams, SamplingParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::time::Instant;

/// Most tokens in one pass when a cache catches up on a long history.
const CHUNK: usize = 512;

/// How a sequence speculates.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecConfig {
    /// Draft tokens per step to start with (default 4).
    pub k: usize,
    /// Smallest `k` adaptation goes to (default 1).
    pub k_min: usize,
    /// Largest `k` adaptation goes to (default 8).
    pub k_max: usize,
    /// Below this acceptance rate over the recent window, stop speculating
    /// for this sequence and fall back to plain decoding (default 0.6).
    pub min_acceptance: f32,
    /// Verified draft tokens (accepted, or the first rejected of a step) in
    /// the acceptance window (default 32); no fallback decision before the
    /// window is full.
    pub window: usize,
}

impl Default for SpecConfig {
    fn default() -> Self {
        SpecConfig { k: 4, k_min: 1, k_max: 8, min_acceptance: 0.6, window: 32 }
    }
}

impl SpecConfig {
    /// Checks that the numbers make sense together.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, reason: String| Err(CoreError::InvalidParam { name, reason }.into());
        if self.k_min == 0 {
            return bad("k_min", "must be at least 1 draft token".into());
        }
        if self.k_min > self.k_max {
            return bad("k_min", format!("{} is above k_max ({})", self.k_min, self.k_max));
        }
        if !(self.k_min..=self.k_max).contains(&self.k) {
            return bad(
                "k",
                format!("{} is outside k_min..=k_max ({}..={})", self.k, self.k_min, self.k_max),
            );
        }
        if !(0.0..=1.0).contains(&self.min_acceptance) {
            return bad("min_acceptance", "must be in [0, 1]".into());
        }
        if self.window == 0 {
            return bad("window", "must be at least 1 drafted token".into());
        }
        Ok(())
    }
}

/// What speculation did for one sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpecStats {
    /// Tokens the draft proposed.
    pub drafted: usize,
    /// Proposed tokens the target accepted.
    pub accepted: usize,
    /// Proposed tokens the target rejected (at most one per step; the
    /// drafts after it are discarded).
    pub rejected: usize,
    /// Steps taken (each one target pass), speculative or plain.
    pub steps: usize,
    /// Whether the sequence stopped speculating for low acceptance.
    pub fell_back: bool,
    /// The draft length the next speculative step would use.
    pub k: usize,
}

impl SpecStats {
    /// Accepted / drafted: the share of the draft's work that was kept
    /// (0 before any draft).
    pub fn acceptance(&self) -> f64 {
        self.accepted as f64 / self.drafted.max(1) as f64
    }

    /// Accepted / (accepted + rejected): the chance that the target accepts
    /// a draft token it judges, what the fallback looks at.
    pub fn token_acceptance(&self) -> f64 {
        self.accepted as f64 / (self.accepted + self.rejected).max(1) as f64
    }
}

/// Checks that `draft` can speculate for `target`: the same number of
/// logits, and the same tokenizer (every token string, BOS and the
/// end-of-generation ids). Call it once when pairing two engines; it reads
/// the whole vocabulary.
pub fn check_compatible(target: &Engine, draft: &Engine) -> Result<()> {
    let (tn, dn) = (&target.info().name, &draft.info().name);
    let fail = |what: String| {
        Err(EngineError::Speculative(format!(
            "the draft `{dn}` does not fit the target `{tn}`: {what}; a draft must share the target's tokenizer (the same model quantized, or a smaller model of the same family)"
        )))
    };
    let (tv, dv) = (target.model().config().vocab_size, draft.model().config().vocab_size);
    if tv != dv {
        return fail(format!("its vocabulary has {dv} tokens, the target's {tv}"));
    }
    let (tt, dt) = (target.tokenizer(), draft.tokenizer());
    if tt.vocab_size() != dt.vocab_size() {
        return fail(format!(
            "its tokenizer knows {} tokens, the target's {}",
            dt.vocab_size(),
            tt.vocab_size()
        ));
    }
    if let Some(id) = (0..tt.vocab_size() as u32).find(|&id| tt.token(id) != dt.token(id)) {
        return fail(format!(
            "token {id} is {:?} for the draft but {:?} for the target",
            dt.token(id).unwrap_or_default(),
            tt.token(id).unwrap_or_default()
        ));
    }
    if tt.bos() != dt.bos() || tt.eog_ids() != dt.eog_ids() {
        return fail(format!(
            "its special tokens differ (BOS {:?} vs {:?}, end-of-generation {:?} vs {:?})",
            dt.bos(),
            tt.bos(),
            dt.eog_ids(),
            tt.eog_ids()
        ));
    }
    Ok(())
}

/// Per-sequence speculation state: the draft model's KV cache, the current
/// `k`, the acceptance window, the sampler and its seeded generator.
pub struct Speculator<'d> {
    draft: &'d Engine,
    cache: KvCache,
    /// The tokens `cache` holds, position by position.
    fed: Vec<u32>,
    cfg: SpecConfig,
    k: usize,
    window: Window,
    active: bool,
    greedy: bool,
    sampler: Sampler,
    rng: ChaCha8Rng,
    stats: SpecStats,
    /// Dense copy of a draft distribution (zero outside its support).
    dense_q: Vec<f32>,
}

impl std::fmt::Debug for Speculator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speculator")
            .field("draft", &self.draft)
            .field("k", &self.k)
            .field("active", &self.active)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<'d> Speculator<'d> {
    /// State for one sequence drafted by `draft`, sampled with `sampling`
    /// (seeded by `sampling.seed`, else from the OS). Does not see the
    /// target: pair the engines with [`check_compatible`] first.
    pub fn new(draft: &'d Engine, cfg: &SpecConfig, sampling: &SamplingParams) -> Result<Self> {
        cfg.validate()?;
        sampling.validate()?;
        let seed = sampling.seed.unwrap_or_else(|| rand::rng().random());
        // The sampler only filters here; draws come from `rng`.
        let sampler = Sampler::new(&SamplingParams { seed: Some(0), ..sampling.clone() });
        Ok(Speculator {
            draft,
            cache: draft.model().new_cache(),
            fed: Vec::new(),
            cfg: cfg.clone(),
            k: cfg.k,
            window: Window::new(cfg.window),
            active: true,
            greedy: sampling.is_greedy(),
            sampler,
            rng: ChaCha8Rng::seed_from_u64(seed),
            stats: SpecStats { k: cfg.k, ..Default::default() },
            dense_q: Vec::new(),
        })
    }

    /// Runs the draft over all of `history` but its last token (the
    /// prompt's prefill), so the first [`Speculator::step`] only feeds the
    /// last token. Optional: `step` catches up by itself.
    pub fn prefill(&mut self, history: &[u32]) -> Result<()> {
        if self.active && !history.is_empty() && history.len() <= self.draft.ctx_size() {
            self.catch_up(&history[..history.len() - 1], false)?;
        }
        Ok(())
    }

    /// False once acceptance stayed below `min_acceptance` over a full
    /// window: the caller decodes plainly from then on (or keeps calling
    /// `step`, which then runs one plain target pass per call).
    pub fn active(&self) -> bool {
        self.active
    }

    /// Counters so far.
    pub fn stats(&self) -> SpecStats {
        SpecStats { k: self.k, ..self.stats }
    }

    /// One speculative step. `history` = prompt + generated tokens so far;
    /// on entry `target_cache` holds exactly `history.len() - 1` positions
    /// (the last token not yet fed). Drafts up to `k` tokens with the draft
    /// model (its own cache is caught up internally), verifies them with one
    /// target forward pass over `[last, d1..dk]` (`lora` applied), and
    /// returns the accepted tokens plus one correction or bonus token
    /// (`1..=k+1` tokens, never more than `max_new`; none if `max_new` is 0).
    /// On return `target_cache` holds `history.len() + returned.len() - 1`
    /// positions. The returned tokens may run past an end-of-generation
    /// token: the caller cuts there.
    pub fn step(
        &mut self,
        target: &Llama,
        target_cache: &mut KvCache,
        lora: Lora<'_>,
        history: &[u32],
        max_new: usize,
    ) -> Result<Vec<u32>> {
        let n = history.len();
        if n == 0 {
            return Err(EngineError::EmptyPrompt);
        }
        if target_cache.len() != n - 1 {
            return Err(EngineError::Speculative(format!(
                "the target cache holds {} positions for a history of {n} tokens; it must hold all but the last",
                target_cache.len()
            )));
        }
        let vocab = target.config().vocab_size;
        if self.draft.model().config().vocab_size != vocab {
            return Err(EngineError::Speculative(format!(
                "the draft scores {} tokens but the target {vocab}",
                self.draft.model().config().vocab_size
            )));
        }
        if max_new == 0 {
            return Ok(Vec::new());
        }
        // Draft positions n-1..n+k-2 and target positions n-1..n+k-1 must fit.
        let k = if self.active {
            self.k
                .min(max_new - 1)
                .min((self.draft.ctx_size() + 1).saturating_sub(n))
                .min(target.config().max_position_embeddings.saturating_sub(n))
        } else {
            0
        };

        // Draft: `ext` = history + drafts; `qs` = the draft's distributions.
        let mut ext = Vec::with_capacity(n + k);
        ext.extend_from_slice(history);
        let mut qs: Vec<Vec<(u32, f32)>> = Vec::with_capacity(if self.greedy { 0 } else { k });
        if k > 0 {
            let mut logits = self.catch_up(history, true)?.unwrap_or_default();
            for j in 0..k {
                let d = if self.greedy {
                    self.sampler.sample(&mut logits, &ext)?
                } else {
                    let q = self.sampler.distribution(&mut logits, &ext)?;
                    let d = draw(&q, &mut self.rng);
                    qs.push(q);
                    d
                };
                ext.push(d);
                if j + 1 < k {
                    logits =
                        feed(self.draft.model(), &mut self.cache, &[d], n + j, Lora::NONE, true)?
                            .unwrap_or_default();
                    self.fed.push(d);
                }
            }
        }

        // Verify: one target pass over [last, d1..dk], a logit row per token.
        let tokens = &ext[n - 1..];
        let slots: Vec<Slot> = (0..=k).map(|i| Slot { seq: 0, pos: n - 1 + i }).collect();
        let rows: Vec<usize> = (0..=k).collect();
        let batch = Batch { tokens, slots: &slots, logits_rows: &rows };
        let logits = target.forward(&batch, &mut [&mut *target_cache], lora)?;
        let logits: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
        let mut out = Vec::with_capacity(k + 1);
        for (i, mut row) in logits.into_iter().enumerate() {
            let ctx = &ext[..n + i];
            if i == k {
                // Every draft accepted (or none made): the bonus token.
                let t = if self.greedy {
                    self.sampler.sample(&mut row, ctx)?
                } else {
                    let p = self.sampler.distribution(&mut row, ctx)?;
                    draw(&p, &mut self.rng)
                };
                out.push(t);
                break;
            }
            let d = ext[n + i];
            if self.greedy {
                let t = self.sampler.sample(&mut row, ctx)?;
                out.push(t);
                if t != d {
                    break;
                }
            } else {
                let p = self.sampler.distribution(&mut row, ctx)?;
                let (px, qx) = (prob(&p, d), prob(&qs[i], d));
                let u: f32 = self.rng.random();
                if u * qx < px {
                    out.push(d);
                } else {
                    let t = self.residual(&p, &qs[i], vocab);
                    out.push(t);
                    break;
                }
            }
        }
        target_cache.truncate(n + out.len() - 1)?;

        let accepted = out.len() - 1;
        self.stats.steps += 1;
        if k > 0 {
            self.stats.drafted += k;
            self.stats.accepted += accepted;
            self.stats.rejected += usize::from(accepted < k);
            let verdicts =
                std::iter::repeat_n(true, accepted).chain((accepted < k).then_some(false));
            for hit in verdicts {
                if self.window.push(hit).is_some_and(|rate| rate < self.cfg.min_acceptance) {
                    self.active = false;
                    self.stats.fell_back = true;
                }
            }
            self.k = next_k(self.k, k, accepted, &self.cfg);
            if !self.active {
                // Plain decoding from here on: the draft's cache is dead weight.
                self.cache = self.draft.model().new_cache();
                self.fed.clear();
            }
        }
        Ok(out)
    }

    /// Makes the draft cache hold `tokens` (all but the last one when
    /// `want_last`, which then feeds the last one too and returns the logits
    /// after it), reusing the longest prefix it already holds.
    fn catch_up(&mut self, tokens: &[u32], want_last: bool) -> Result<Option<Vec<f32>>> {
        let common = self.fed.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        let keep = if want_last { common.min(tokens.len().saturating_sub(1)) } else { common };
        self.cache.truncate(keep)?;
        self.fed.truncate(keep);
        let logits = feed(
            self.draft.model(),
            &mut self.cache,
            &tokens[keep..],
            keep,
            Lora::NONE,
            want_last,
        )?;
        self.fed.extend_from_slice(&tokens[keep..]);
        Ok(logits)
    }

    /// A draw from `norm(max(0, p − q))` (from `p` if that is all zero,
    /// which only rounding can bring about).
    fn residual(&mut self, p: &[(u32, f32)], q: &[(u32, f32)], vocab: usize) -> u32 {
        self.dense_q.resize(vocab, 0.0);
        for &(t, v) in q {
            self.dense_q[t as usize] = v;
        }
        let mut r: Vec<(u32, f32)> =
            p.iter().map(|&(t, v)| (t, (v - self.dense_q[t as usize]).max(0.0))).collect();
        for &(t, _) in q {
            self.dense_q[t as usize] = 0.0;
        }
        let sum: f32 = r.iter().map(|x| x.1).sum();
        if sum <= 0.0 {
            return draw(p, &mut self.rng);
        }
        r.iter_mut().for_each(|x| x.1 /= sum);
        draw(&r, &mut self.rng)
    }
}

/// The outcomes of the most recent verified drafts.
#[derive(Debug)]
struct Window {
    outcomes: VecDeque<bool>,
    hits: usize,
    size: usize,
}

impl Window {
    fn new(size: usize) -> Self {
        Window { outcomes: VecDeque::with_capacity(size + 1), hits: 0, size }
    }

    /// Adds one outcome (true: accepted); the acceptance rate once full.
    fn push(&mut self, hit: bool) -> Option<f32> {
        self.outcomes.push_back(hit);
        self.hits += usize::from(hit);
        if self.outcomes.len() > self.size && self.outcomes.pop_front() == Some(true) {
            self.hits -= 1;
        }
        (self.outcomes.len() == self.size).then(|| self.hits as f32 / self.size as f32)
    }
}

/// The next `k` after a step that drafted `used` tokens (`cur` unless
/// capped by `max_new` or the context) and kept `accepted` of them: one
/// more after a full-length draft was all accepted, one less after a
/// rejection in the first half.
fn next_k(cur: usize, used: usize, accepted: usize, cfg: &SpecConfig) -> usize {
    if accepted == used && used == cur {
        (cur + 1).min(cfg.k_max)
    } else if 2 * accepted < used {
        cur.saturating_sub(1).max(cfg.k_min)
    } else {
        cur
    }
}

/// Feeds `tokens` at positions `start..` into `cache` (in chunks), and
/// returns the logits after the last one if `want_last`. Every pass asks
/// for its last row: quantized output layers refuse an empty batch.
fn feed(
    model: &Llama,
    cache: &mut KvCache,
    tokens: &[u32],
    start: usize,
    lora: Lora<'_>,
    want_last: bool,
) -> Result<Option<Vec<f32>>> {
    let mut last = None;
    let chunks = tokens.len().div_ceil(CHUNK);
    for (c, chunk) in tokens.chunks(CHUNK).enumerate() {
        let lo = start + c * CHUNK;
        let slots: Vec<Slot> = (0..chunk.len()).map(|i| Slot { seq: 0, pos: lo + i }).collect();
        let batch = Batch { tokens: chunk, slots: &slots, logits_rows: &[chunk.len() - 1] };
        let l = model.forward(&batch, &mut [&mut *cache], lora)?;
        if want_last && c + 1 == chunks {
            last = Some(l.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?);
        }
    }
    Ok(last)
}

/// A draw from sparse `(token, probability)` pairs, the way [`Sampler`] draws.
fn draw(dist: &[(u32, f32)], rng: &mut ChaCha8Rng) -> u32 {
    let mut r: f32 = rng.random();
    for &(t, p) in dist {
        if r < p {
            return t;
        }
        r -= p;
    }
    dist.last().map_or(0, |d| d.0)
}

fn prob(dist: &[(u32, f32)], t: u32) -> f32 {
    dist.iter().find(|d| d.0 == t).map_or(0.0, |d| d.1)
}

/// Generates for one prompt with speculative decoding: prefill on both
/// models, then [`Speculator::step`] until an end-of-generation token
/// (unless `params.ignore_eos`) or `params.max_tokens`. Stop strings are
/// not looked for. Everything runs on the target's thread pool. Returns
/// the generated tokens (end token included), the statistics and the
/// seconds spent after prefill.
pub fn generate(
    target: &Engine,
    draft: &Engine,
    prompt: &[u32],
    params: &GenerationParams,
    adapter: Option<&Adapter>,
    cfg: &SpecConfig,
) -> Result<(Vec<u32>, SpecStats, f64)> {
    params.validate()?;
    check_compatible(target, draft)?;
    let ctx = target.ctx_size();
    if prompt.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    if prompt.len() >= ctx {
        return Err(EngineError::PromptTooLong {
            prompt_tokens: prompt.len(),
            context: ctx,
            model_max: target.model().config().max_position_embeddings,
        });
    }
    let vocab = target.model().config().vocab_size;
    if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
        return Err(EngineError::Tokenizer {
            source_desc: target.tokenizer().source().to_string(),
            reason: format!("token id {bad} is outside the model's vocabulary of {vocab}"),
        });
    }
    let max_new = params.max_tokens.min(ctx - prompt.len());
    let eog = target.tokenizer().eog_ids();
    target.install(|| {
        let model = target.model();
        let lora = Lora::with(adapter);
        let mut spec = Speculator::new(draft, cfg, &params.sampling)?;
        let mut cache = model.new_cache();
        feed(model, &mut cache, &prompt[..prompt.len() - 1], 0, lora, false)?;
        spec.prefill(prompt)?;
        let mut history = prompt.to_vec();
        let t = Instant::now();
        'decode: while history.len() - prompt.len() < max_new {
            let left = max_new - (history.len() - prompt.len());
            for tok in spec.step(model, &mut cache, lora, &history, left)? {
                history.push(tok);
                if !params.ignore_eos && eog.contains(&tok) {
                    break 'decode;
                }
            }
        }
        Ok((history.split_off(prompt.len()), spec.stats(), t.elapsed().as_secs_f64()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `outcomes` ('+' accepted, '-' rejected) to a window of `size`;
    /// the index of the first one after which the rate is below `min`.
    fn check_fallback(size: usize, min: f32, outcomes: &str, want: Option<usize>) {
        let mut w = Window::new(size);
        let got = outcomes.chars().position(|c| w.push(c == '+').is_some_and(|r| r < min));
        assert_eq!(got, want, "window {size}, min {min}, {outcomes}");
    }

    #[test]
    fn fallback_waits_for_a_full_window_then_follows_the_recent_rate() {
        check_fallback(4, 0.6, "---", None);
        check_fallback(4, 0.6, "----", Some(3));
        check_fallback(4, 0.6, "++-+", None); // 3/4
        check_fallback(4, 0.6, "++-+-", Some(4)); // last four: 2/4
        check_fallback(4, 0.6, "--++++++", Some(3));
        check_fallback(4, 0.0, "--------", None);
        check_fallback(4, 1.0, "+++++++-", Some(7));
        check_fallback(1, 0.5, "+++-", Some(3));
    }

    fn check_k(cur: usize, used: usize, accepted: usize, want: usize) {
        let cfg = SpecConfig { k: 4, k_min: 2, k_max: 6, ..Default::default() };
        assert_eq!(
            next_k(cur, used, accepted, &cfg),
            want,
            "k {cur}, drafted {used}, kept {accepted}"
        );
    }

    #[test]
    fn k_grows_on_full_acceptance_and_shrinks_on_early_rejection() {
        check_k(4, 4, 4, 5);
        check_k(6, 6, 6, 6); // at k_max
        check_k(4, 2, 2, 4); // capped draft: no evidence for more
        check_k(4, 4, 3, 4); // late rejection
        check_k(4, 4, 2, 4);
        check_k(4, 4, 1, 3); // early rejection
        check_k(4, 4, 0, 3);
        check_k(2, 2, 0, 2); // at k_min
    }
}
