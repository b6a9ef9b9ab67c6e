//! Picking the next token: repetition penalty, then greedy arg-max or
//! top-k → top-p → min-p → temperature → a draw from a seeded ChaCha8
//! generator (llama.cpp's default order, so the same settings mean the same
//! thing in both tools). [`Sampler::distribution`] exposes the filtered
//! distribution itself (speculative decoding compares two of them).
//! [`logprob`] scores a token under the model's raw distribution (before
//! penalties, filters and grammar masks, as vLLM's `raw_logprobs`).
//!
//! A row with a NaN, or with every token forbidden, is an error for that
//! sequence (a broken adapter, a grammar that allows nothing), never a
//! panic.

use crate::{EngineError, Result};
use forja_core::SamplingParams;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A per-sequence sampler.
#[derive(Debug)]
pub struct Sampler {
    p: SamplingParams,
    rng: ChaCha8Rng,
    cand: Vec<(f32, u32)>,
}

impl Sampler {
    /// A sampler for `p`; the seed is `p.seed`, or drawn from the OS.
    pub fn new(p: &SamplingParams) -> Self {
        let seed = p.seed.unwrap_or_else(|| rand::rng().random());
        Sampler { p: p.clone(), rng: ChaCha8Rng::seed_from_u64(seed), cand: Vec::new() }
    }

    /// Chooses a token from `logits` (modified in place by the penalty);
    /// `history` is the sequence so far, prompt included.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> Result<u32> {
        check_row(logits)?;
        self.penalize(logits, history);
        if self.p.is_greedy() {
            return Ok(argmax(logits));
        }
        let probs = self.filter(logits)?;
        let mut r: f32 = self.rng.random();
        for (p, c) in probs.iter().zip(self.cand.iter()) {
            if r < *p {
                return Ok(c.1);
            }
            r -= p;
        }
        self.cand.last().map(|c| c.1).ok_or_else(nothing_allowed)
    }

    /// The distribution [`Sampler::sample`] would draw from, as sparse
    /// `(token, probability)` pairs, most likely first (one pair with
    /// probability 1 when greedy). `logits` is modified in place by the
    /// penalty, as in `sample`; the generator is not touched.
    pub fn distribution(&mut self, logits: &mut [f32], history: &[u32]) -> Result<Vec<(u32, f32)>> {
        check_row(logits)?;
        self.penalize(logits, history);
        if self.p.is_greedy() {
            return Ok(vec![(argmax(logits), 1.0)]);
        }
        let probs = self.filter(logits)?;
        Ok(self.cand.iter().zip(probs).map(|(c, p)| (c.1, p)).collect())
    }

    /// Applies top-k → top-p → min-p to penalized `logits`, leaving the
    /// survivors in `self.cand` (most likely first), and returns their
    /// probabilities at the sampling temperature.
    fn filter(&mut self, logits: &[f32]) -> Result<Vec<f32>> {
        let cand = &mut self.cand;
        cand.clear();
        if self.p.min_p > 0.0 {
            // Tokens below min_p * p_max can never survive; skip them before sorting.
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let floor = max + self.p.min_p.ln();
            cand.extend(
                logits.iter().enumerate().filter(|(_, &l)| l >= floor).map(|(i, &l)| (l, i as u32)),
            );
        } else {
            cand.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
        }
        let by_logit = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if self.p.top_k > 0 && self.p.top_k < cand.len() {
            cand.select_nth_unstable_by(self.p.top_k - 1, by_logit);
            cand.truncate(self.p.top_k);
        }
        cand.sort_unstable_by(by_logit);
        if cand.is_empty() {
            return Err(nothing_allowed());
        }
        // Probabilities at temperature 1 decide top-p and min-p.
        let probs = softmax(cand.iter().map(|c| c.0), 1.0);
        let mut keep = cand.len();
        if self.p.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= self.p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if self.p.min_p > 0.0 {
            let floor = probs[0] * self.p.min_p;
            keep = keep.min(probs.iter().take_while(|&&p| p >= floor).count().max(1));
        }
        cand.truncate(keep.max(1));
        Ok(softmax(cand.iter().map(|c| c.0), self.p.temperature))
    }

    fn penalize(&self, logits: &mut [f32], history: &[u32]) {
        let pen = self.p.repetition_penalty;
        if pen == 1.0 || self.p.repeat_last_n == 0 {
            return;
        }
        let recent = &history[history.len().saturating_sub(self.p.repeat_last_n)..];
        let mut seen: Vec<u32> = recent.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for id in seen {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = if *l > 0.0 { *l / pen } else { *l * pen };
            }
        }
    }
}

fn nothing_allowed() -> EngineError {
    EngineError::Generation("no token is allowed next (every logit is -inf)".into())
}

/// Refuses a row the sampler cannot use: a NaN anywhere (a broken adapter
/// or numerical blow-up), or nothing allowed at all.
fn check_row(logits: &[f32]) -> Result<()> {
    if logits.iter().any(|l| l.is_nan()) {
        return Err(EngineError::Generation(
            "the model produced NaN logits (a broken adapter?); the request was stopped".into(),
        ));
    }
    if logits.iter().all(|&l| l == f32::NEG_INFINITY) {
        return Err(nothing_allowed());
    }
    Ok(())
}

/// A token's log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token.
    pub token: u32,
    /// `ln p(token)` under the model's raw distribution.
    pub logprob: f32,
    /// The `n` most likely tokens and their log-probabilities, most likely
    /// first (ties by lower id).
    pub top: Vec<(u32, f32)>,
}

/// Scores `token` under `logits` (raw: before penalties, temperature,
/// filters and masks), with the `top` most likely alternatives.
pub fn logprob(logits: &[f32], token: u32, top: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let norm = max + sum.ln() as f32;
    let lp = |l: f32| l - norm;
    let mut best: Vec<(u32, f32)> = Vec::new();
    if top > 0 {
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let by =
            |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
        let k = top.min(idx.len());
        if k > 0 && k < idx.len() {
            idx.select_nth_unstable_by(k - 1, by);
            idx.truncate(k);
        }
        idx.sort_unstable_by(by);
        best = idx.into_iter().map(|t| (t, lp(logits[t as usize]))).collect();
    }
    let l = logits.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY);
    TokenLogprob { token, logprob: lp(l), top: best }
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn softmax(logits: impl Iterator<Item = f32> + Clone, temperature: f32) -> Vec<f32> {
    let max = logits.clone().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.map(|l| ((l - max) / temperature).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(edit: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams {
            seed: Some(7),
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        };
        edit(&mut p);
        p
    }

    fn histogram(p: &SamplingParams, logits: &[f32], n: usize) -> Vec<usize> {
        let mut s = Sampler::new(p);
        let mut h = vec![0; logits.len()];
        for _ in 0..n {
            h[s.sample(&mut logits.to_vec(), &[]).unwrap() as usize] += 1;
        }
        h
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(&SamplingParams::greedy());
        assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0], &[]).unwrap(), 1);
    }

    #[test]
    fn repetition_penalty_follows_llama_cpp() {
        let p = SamplingParams { repetition_penalty: 2.0, ..SamplingParams::greedy() };
        let mut s = Sampler::new(&p);
        // Token 0 (logit 3) is halved to 1.5 and loses to token 2 (2.0).
        assert_eq!(s.sample(&mut [3.0, -1.0, 2.0], &[0, 0]).unwrap(), 2);
        let mut l = [3.0, -1.0, 2.0];
        s.penalize(&mut l, &[1]);
        assert_eq!(l, [3.0, -2.0, 2.0]);
    }

    #[test]
    fn filters_restrict_the_support() {
        let logits = [2.0, 1.0, 0.0, -1.0, -5.0];
        assert_eq!(histogram(&params(|p| p.top_k = 2), &logits, 2000)[2..], [0, 0, 0]);
        // top_p 0.5: token 0 alone has p = 0.64.
        assert_eq!(histogram(&params(|p| p.top_p = 0.5), &logits, 500)[0], 500);
        // min_p 0.3: tokens with p < 0.3 * p0 are dropped (tokens 2.. have ratio <= e^-2).
        let h = histogram(&params(|p| p.min_p = 0.3), &logits, 2000);
        assert!(h[0] > 0 && h[1] > 0 && h[2..].iter().all(|&c| c == 0), "{h:?}");
    }

    #[test]
    fn temperature_one_matches_softmax_frequencies() {
        let logits = [1.0f32, 0.0, -1.0];
        let n = 20_000;
        let h = histogram(&params(|p| p.temperature = 1.0), &logits, n);
        let want = softmax(logits.iter().copied(), 1.0);
        for (c, w) in h.iter().zip(want) {
            let f = *c as f32 / n as f32;
            assert!((f - w).abs() < 0.02, "freq {f} vs p {w}");
        }
    }

    #[test]
    fn distribution_is_what_sample_draws_from() {
        let logits = [2.0, 1.0, 0.0, -1.0, -5.0];
        let n = 20_000;
        for p in [
            params(|p| p.top_k = 2),
            params(|p| p.top_p = 0.9),
            params(|p| p.min_p = 0.3),
            params(|p| p.temperature = 1.5),
        ] {
            let d = Sampler::new(&p).distribution(&mut logits.to_vec(), &[]).unwrap();
            assert!((d.iter().map(|x| x.1).sum::<f32>() - 1.0).abs() < 1e-5);
            for (t, c) in histogram(&p, &logits, n).into_iter().enumerate() {
                let want = d.iter().find(|x| x.0 == t as u32).map_or(0.0, |x| x.1);
                let f = c as f32 / n as f32;
                assert!((f - want).abs() < 0.02, "{p:?}: token {t} freq {f} vs p {want}");
            }
        }
        // Greedy: the penalized arg-max, with certainty.
        let p = SamplingParams { repetition_penalty: 2.0, ..SamplingParams::greedy() };
        assert_eq!(
            Sampler::new(&p).distribution(&mut [3.0, -1.0, 2.0], &[0]).unwrap(),
            vec![(2, 1.0)]
        );
    }

    #[test]
    fn same_seed_same_draws() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.3).sin()).collect();
        let p = params(|p| p.temperature = 1.5);
        assert_eq!(histogram(&p, &logits, 100), histogram(&p, &logits, 100));
    }

    /// Regression (hardening #6): a NaN row with `min_p > 0` emptied the
    /// candidate list and `probs[0]` panicked on the batcher thread.
    #[test]
    fn nan_or_all_forbidden_rows_are_errors_not_panics() {
        for p in [
            params(|p| p.min_p = 0.1),
            params(|p| p.top_k = 3),
            params(|p| p.top_p = 0.5),
            SamplingParams::greedy(),
        ] {
            let mut s = Sampler::new(&p);
            let e = s.sample(&mut [f32::NAN, 1.0, f32::NAN], &[]).unwrap_err().to_string();
            assert!(e.contains("NaN"), "{e}");
            assert!(s.sample(&mut [f32::NAN; 4], &[]).is_err());
            assert!(s.sample(&mut [f32::NEG_INFINITY; 4], &[]).is_err());
            assert!(s.distribution(&mut [f32::NAN; 4], &[]).is_err());
            assert_eq!(s.sample(&mut [f32::NEG_INFINITY, 2.0, f32::NEG_INFINITY], &[]).unwrap(), 1);
        }
    }

    #[test]
    fn logprobs_are_log_softmax_of_the_raw_row() {
        let logits = [2.0f32, 1.0, 0.0, 1.0];
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        let t = logprob(&logits, 2, 3);
        assert!((t.logprob - (0.0 - z.ln())).abs() < 1e-6, "{t:?}");
        assert_eq!(t.top.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 1, 3], "ties by id");
        assert!((t.top[0].1 - (2.0 - z.ln())).abs() < 1e-6);
        assert!(logprob(&logits, 0, 0).top.is_empty());
        let sum: f32 = (0..4).map(|i| logprob(&logits, i, 0).logprob.exp()).sum();
        assert!((sum - 1.0).abs() < 1e-6);
    }
}
