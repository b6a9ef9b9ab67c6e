//! OpenAI's two shapes of log-probabilities: the completions form
//! (`tokens`, `token_logprobs`, `top_logprobs` as `{token: logprob}`,
//! `text_offset`; with `echo`, the prompt's tokens first, the first of
//! them with `null`s) and the chat form (`content`: `{token, logprob,
//! bytes, top_logprobs: [{token, logprob, bytes}]}`). Log-probabilities
//! are the model's raw distribution (before temperature, penalties and
//! grammar masks), like vLLM's default.

use forja_engine::TokenLogprob;
use forja_serve::Serving;
use serde_json::{json, Map, Value};

/// The completions form over the echoed prompt (when given) and the
/// generated tokens; `offset0` is where the first token's text starts.
pub fn completion(
    sv: &Serving,
    prompt: &[Option<TokenLogprob>],
    prompt_ids: &[u32],
    generated: &[TokenLogprob],
    offset0: usize,
) -> Value {
    let (mut tokens, mut lps, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
    let mut at = offset0;
    let mut push = |id: u32, lp: Option<&TokenLogprob>| {
        let (text, _) = sv.token_piece(id);
        offsets.push(at);
        at += text.chars().count();
        tokens.push(json!(text));
        lps.push(lp.map_or(Value::Null, |l| json!(l.logprob)));
        tops.push(lp.map_or(Value::Null, |l| {
            let mut m = Map::new();
            for (t, p) in &l.top {
                // Two ids may print the same; the likelier one is kept.
                m.entry(sv.token_piece(*t).0).or_insert(json!(p));
            }
            Value::Object(m)
        }));
    };
    for (i, &id) in prompt_ids.iter().enumerate() {
        push(id, prompt.get(i).and_then(Option::as_ref));
    }
    for g in generated {
        push(g.token, Some(g));
    }
    json!({ "tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets })
}

fn entry(sv: &Serving, id: u32, logprob: f32) -> Value {
    let (text, bytes) = sv.token_piece(id);
    json!({ "token": text, "logprob": logprob, "bytes": bytes })
}

/// The chat form over the generated tokens.
pub fn chat(sv: &Serving, generated: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = generated
        .iter()
        .map(|g| {
            let mut e = entry(sv, g.token, g.logprob);
            e["top_logprobs"] = g.top.iter().map(|(t, p)| entry(sv, *t, *p)).collect();
            e
        })
        .collect();
    json!({ "content": content, "refusal": null })
}
