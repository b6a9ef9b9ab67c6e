//! Training data: JSONL examples (chat `messages`, `prompt`/`completion`,
//! or plain `text`) tokenized with a loss mask, raw text packed for
//! pre-training, and length-bucketed micro-batches.
//!
//! A bad line is data, not an error: it is skipped and reported with its
//! line number and reason (or, with `OnBadLine::Fail`, fails the load).

use crate::chat_template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use crate::{EngineError, Result};
use forja_core::{ChatMessage, Role};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// One tokenized example. `target[i]` says whether token `i` is predicted
/// (and so contributes to the loss) from the tokens before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Loss mask, one per token.
    pub target: Vec<bool>,
}

impl Example {
    /// Tokens that contribute to the loss.
    pub fn target_tokens(&self) -> usize {
        self.target.iter().skip(1).filter(|&&t| t).count()
    }
}

/// What to do with a line that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBadLine {
    /// Skip it, count it and report it.
    #[default]
    Skip,
    /// Stop with an error naming the line.
    Fail,
}

/// What loading a file found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataReport {
    /// The file.
    pub path: PathBuf,
    /// Non-empty lines read.
    pub lines: usize,
    /// Examples kept.
    pub examples: usize,
    /// Skipped lines: (line number, reason).
    pub skipped: Vec<(usize, String)>,
    /// Examples cut to the maximum length.
    pub truncated: usize,
    /// Tokens in the kept examples.
    pub tokens: usize,
    /// Of which the loss is computed on.
    pub target_tokens: usize,
}

/// Loads a JSONL file of training examples.
pub fn load_jsonl(
    path: &Path,
    tok: &Tokenizer,
    template: Option<&ChatTemplate>,
    max_len: usize,
    on_bad: OnBadLine,
) -> Result<(Vec<Example>, DataReport)> {
    let file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let mut report = DataReport { path: path.to_path_buf(), ..Default::default() };
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let lineno = i + 1;
        let bytes = line.map_err(|e| EngineError::io(path, e))?;
        let parsed = match String::from_utf8(bytes) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => {
                report.lines += 1;
                example_from_json(&text, tok, template)
            }
            Err(_) => {
                report.lines += 1;
                Err("is not valid UTF-8".to_string())
            }
        };
        let ex = parsed.and_then(|mut ex| {
            if ex.ids.len() > max_len {
                ex.ids.truncate(max_len);
                ex.target.truncate(max_len);
                report.truncated += 1;
            }
            if ex.target_tokens() == 0 {
                return Err(format!(
                    "has no tokens to learn from{}",
                    if ex.ids.len() == max_len { " after truncation to max_len" } else { "" }
                ));
            }
            Ok(ex)
        });
        match ex {
            Ok(ex) => {
                report.tokens += ex.ids.len();
                report.target_tokens += ex.target_tokens();
                out.push(ex);
            }
            Err(reason) => {
                if on_bad == OnBadLine::Fail {
                    return Err(EngineError::Data(format!(
                        "{}:{lineno}: {reason}",
                        path.display()
                    )));
                }
                report.skipped.push((lineno, reason));
            }
        }
    }
    report.examples = out.len();
    if out.is_empty() {
        let first =
            report.skipped.first().map(|(l, r)| format!("; line {l} {r}")).unwrap_or_default();
        return Err(EngineError::Data(format!(
            "{}: no usable examples ({} lines, {} skipped{first})",
            path.display(),
            report.lines,
            report.skipped.len()
        )));
    }
    Ok((out, report))
}

/// One JSON line → example. Errors are the reason the line is skipped.
fn example_from_json(
    text: &str,
    tok: &Tokenizer,
    template: Option<&ChatTemplate>,
) -> std::result::Result<Example, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("is not JSON ({e})"))?;
    let enc = |s: &str, special: bool| tok.encode(s, special).map_err(|e| e.to_string());
    if let Some(msgs) = v.get("messages") {
        let template = template.ok_or("has `messages` but the model has no chat template")?;
        let messages = parse_messages(msgs)?;
        return chat_example(&messages, tok, template);
    }
    if let (Some(p), Some(c)) = (v.get("prompt"), v.get("completion")) {
        let (p, c) = (
            p.as_str().ok_or("field `prompt` is not a string")?,
            c.as_str().ok_or("field `completion` is not a string")?,
        );
        let mut ids = enc(p, true)?;
        let n_prompt = ids.len();
        ids.extend(enc(c, false)?);
        ids.extend(tok.eos());
        let target = (0..ids.len()).map(|i| i >= n_prompt).collect();
        return Ok(Example { ids, target });
    }
    if let Some(t) = v.get("text") {
        let mut ids = enc(t.as_str().ok_or("field `text` is not a string")?, true)?;
        ids.extend(tok.eos());
        let target = vec![true; ids.len()];
        return Ok(Example { ids, target });
    }
    Err("has none of `messages`, `prompt` + `completion`, `text`".into())
}

fn parse_messages(v: &Value) -> std::result::Result<Vec<ChatMessage>, String> {
    let arr = v.as_array().ok_or("field `messages` is not a list")?;
    if arr.is_empty() {
        return Err("field `messages` is empty".into());
    }
    arr.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m
                .get("role")
                .and_then(Value::as_str)
                .ok_or(format!("messages[{i}] has no `role`"))?;
            let content = m
                .get("content")
                .and_then(Value::as_str)
                .ok_or(format!("messages[{i}] has no string `content`"))?;
            let role: Role =
                role.parse().map_err(|e: forja_core::CoreError| format!("messages[{i}]: {e}"))?;
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

/// Renders a conversation and marks the assistant turns (content and the
/// end-of-turn marker) as targets. Spans come from rendering each prefix of
/// the conversation; templates that are not prefix-stable fall back to
/// locating each assistant message's content in the full text.
fn chat_example(
    messages: &[ChatMessage],
    tok: &Tokenizer,
    template: &ChatTemplate,
) -> std::result::Result<Example, String> {
    if !messages.iter().any(|m| m.role == Role::Assistant) {
        return Err("has no assistant message to learn from".into());
    }
    let full = template.render(messages, false).map_err(|e| e.to_string())?;
    let mut spans = Vec::new();
    let mut stable = true;
    let mut search_from = 0;
    for (i, m) in messages.iter().enumerate() {
        if m.role != Role::Assistant {
            continue;
        }
        let before = template.render(&messages[..i], true).map_err(|e| e.to_string())?;
        let upto = template.render(&messages[..=i], false).map_err(|e| e.to_string())?;
        if stable && full.starts_with(&upto) && upto.starts_with(&before) {
            spans.push((before.len(), upto.len()));
        } else {
            stable = false;
            let at = full[search_from..]
                .find(m.content.as_str())
                .ok_or(format!("assistant message {i} is not found in the rendered chat"))?
                + search_from;
            spans.push((at, at + m.content.len()));
            search_from = at + m.content.len();
        }
    }
    let (ids, offsets) = tok.encode_with_offsets(&full).map_err(|e| e.to_string())?;
    let target =
        offsets.iter().map(|&(s, _)| spans.iter().any(|&(a, b)| s >= a && s < b)).collect();
    Ok(Example { ids, target })
}

/// Packs plain-text documents for pre-training: each document tokenized
/// and followed by EOS, all concatenated, cut into windows of `seq_len`
/// tokens, every token a target.
pub fn pack_texts<S: AsRef<str>>(
    texts: &[S],
    tok: &Tokenizer,
    seq_len: usize,
) -> Result<Vec<Example>> {
    let mut stream = Vec::new();
    for t in texts {
        stream.extend(tok.encode(t.as_ref(), false)?);
        stream.extend(tok.eos());
    }
    Ok(stream
        .chunks(seq_len)
        .filter(|c| c.len() >= 2)
        .map(|c| Example { ids: c.to_vec(), target: vec![true; c.len()] })
        .collect())
}

/// The micro-batches of one epoch: examples shuffled (seeded by `seed` and
/// `epoch`), then sorted by length within windows of 16 batches so padding
/// stays small, then the batches shuffled again.
pub fn epoch_batches(
    lens: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut idx: Vec<usize> = (0..lens.len()).collect();
    idx.shuffle(&mut rng);
    let bs = batch_size.max(1);
    let mut batches = Vec::new();
    for window in idx.chunks(bs * 16) {
        let mut w = window.to_vec();
        w.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
        batches.extend(w.chunks(bs).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_example_once_and_are_reproducible() {
        let lens: Vec<usize> = (0..37).map(|i| (i * 7919) % 100 + 1).collect();
        let a = epoch_batches(&lens, 4, 7, 0);
        let mut all: Vec<usize> = a.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..37).collect::<Vec<_>>());
        assert_eq!(a, epoch_batches(&lens, 4, 7, 0));
        assert_ne!(a, epoch_batches(&lens, 4, 7, 1));
        // Length bucketing: within a batch lengths are close.
        let spread: usize = a
            .iter()
            .map(|b| {
                b.iter().map(|&i| lens[i]).max().unwrap()
                    - b.iter().map(|&i| lens[i]).min().unwrap()
            })
            .sum();
        let random_spread: usize = (0..37)
            .collect::<Vec<_>>()
            .chunks(4)
            .map(|b| {
                b.iter().map(|&i| lens[i]).max().unwrap()
                    - b.iter().map(|&i| lens[i]).min().unwrap()
            })
            .sum();
        assert!(
            spread * 2 < random_spread,
            "bucketing does not reduce padding: {spread} vs {random_spread}"
        );
    }
}
