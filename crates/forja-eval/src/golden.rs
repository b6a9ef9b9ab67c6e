//! Golden sets and prediction files: JSONL readers with line-precise
//! errors, and the prompt key that keeps golden prompts out of training.
//!
//! A golden line is either chat-shaped, the last message being the
//! reference answer:
//! `{"messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}]}`
//! or prompt-shaped: `{"prompt": "…", "reference": "…"}` (`completion` is
//! accepted for `reference`). Optional fields: `id`, `format` (`text`,
//! `json`, `xml`) and `schema` (a JSON Schema; implies `json`).
//! A predictions line is `{"reference": "…", "prediction": "…"}` with the
//! same optional fields.

use crate::validity::{compile_schema, Format};
use crate::{EvalError, Result};
use forja_core::{ChatMessage, Role};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One example of a golden set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldenExample {
    /// Its id (the line number when the file gives none).
    pub id: String,
    /// The conversation to answer (chat-shaped lines).
    pub messages: Option<Vec<ChatMessage>>,
    /// The raw prompt (prompt-shaped lines).
    pub prompt: Option<String>,
    /// The expected answer.
    pub reference: String,
    /// What the answer must be.
    pub format: Format,
    /// JSON Schema the answer must conform to.
    pub schema: Option<serde_json::Value>,
}

impl GoldenExample {
    /// The key that identifies this example's prompt, for keeping it out
    /// of training data (see [`prompt_key`]).
    pub fn prompt_key(&self) -> String {
        match (&self.messages, &self.prompt) {
            (Some(m), _) => prompt_key(m),
            (None, Some(p)) => prompt_key(&[ChatMessage::user(p.clone())]),
            (None, None) => prompt_key(&[]),
        }
    }
}

/// sha256 over the normalised user turns of a conversation: two examples
/// asking the same thing get the same key whatever the answers.
pub fn prompt_key(messages: &[ChatMessage]) -> String {
    let mut h = Sha256::new();
    for m in messages.iter().filter(|m| m.role == Role::User) {
        let norm = crate::metrics::normalize(&m.content, crate::metrics::Normalization::Standard);
        h.update(norm.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// A parsed golden set.
#[derive(Debug, Clone, PartialEq)]
pub struct GoldenSet {
    /// The examples, in file order.
    pub examples: Vec<GoldenExample>,
    /// sha256 of the file bytes (its version).
    pub sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: Option<serde_json::Value>,
    messages: Option<Vec<ChatMessage>>,
    prompt: Option<String>,
    reference: Option<String>,
    completion: Option<String>,
    prediction: Option<String>,
    format: Option<Format>,
    schema: Option<serde_json::Value>,
}

fn bad(file: &str, line: usize, reason: impl Into<String>) -> EvalError {
    EvalError::InvalidLine { file: file.into(), line, reason: reason.into() }
}

fn lines<'a>(file: &'a str, text: &'a str) -> impl Iterator<Item = Result<(usize, Line)>> + 'a {
    text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(move |(i, l)| {
        serde_json::from_str::<Line>(l)
            .map(|v| (i + 1, v))
            .map_err(|e| bad(file, i + 1, format!("not a JSON object of the expected shape: {e}")))
    })
}

fn check_common(file: &str, n: usize, l: &Line, reference: &str) -> Result<(String, Format)> {
    if reference.trim().is_empty() {
        return Err(bad(file, n, "the reference is empty; every example needs an expected answer"));
    }
    let format = match (&l.schema, l.format) {
        (Some(_), Some(f)) if f != Format::Json => {
            return Err(bad(file, n, "`schema` is only allowed with format `json`"))
        }
        (Some(s), _) => {
            compile_schema(s).map_err(|e| bad(file, n, format!("`schema`: {e}")))?;
            Format::Json
        }
        (None, f) => f.unwrap_or_default(),
    };
    let id = match &l.id {
        None => n.to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(x)) => x.to_string(),
        Some(_) => return Err(bad(file, n, "`id` must be a string or a number")),
    };
    Ok((id, format))
}

/// Reads a golden set; `file` names it in errors.
pub fn parse_golden(file: &str, bytes: &[u8]) -> Result<GoldenSet> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| bad(file, 1, format!("the file is not UTF-8: {e}")))?;
    let mut examples = Vec::new();
    for r in lines(file, text) {
        let (n, l) = r?;
        if l.prediction.is_some() {
            return Err(bad(
                file,
                n,
                "`prediction` belongs in a predictions file, not a golden set",
            ));
        }
        let (messages, prompt, reference) = match (l.messages.clone(), l.prompt.clone()) {
            (Some(_), Some(_)) => {
                return Err(bad(file, n, "give either `messages` or `prompt`, not both"))
            }
            (Some(mut m), None) => {
                if l.reference.is_some() || l.completion.is_some() {
                    return Err(bad(
                        file,
                        n,
                        "with `messages`, the reference is the last (assistant) message",
                    ));
                }
                match m.pop() {
                    Some(last) if last.role == Role::Assistant && !m.is_empty() => {
                        (Some(m), None, last.content)
                    }
                    _ => {
                        return Err(bad(
                            file,
                            n,
                            "`messages` must end with the assistant's reference answer after at least one prompt message",
                        ))
                    }
                }
            }
            (None, Some(p)) => {
                let r = l.reference.clone().or(l.completion.clone()).ok_or_else(|| {
                    bad(file, n, "a `prompt` line needs a `reference` (the expected answer)")
                })?;
                (None, Some(p), r)
            }
            (None, None) => {
                return Err(bad(file, n, "missing `messages` or `prompt`"));
            }
        };
        let (id, format) = check_common(file, n, &l, &reference)?;
        examples.push(GoldenExample { id, messages, prompt, reference, format, schema: l.schema });
    }
    if examples.is_empty() {
        return Err(EvalError::EmptyGolden { file: file.into() });
    }
    Ok(GoldenSet { examples, sha256: hex::encode(Sha256::digest(bytes)) })
}

/// One precomputed output to score.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Its id.
    pub id: String,
    /// The expected answer.
    pub reference: String,
    /// What the system answered.
    pub prediction: String,
    /// What the answer must be.
    pub format: Format,
    /// JSON Schema the answer must conform to.
    pub schema: Option<serde_json::Value>,
}

/// Reads a `{reference, prediction}` JSONL file.
pub fn parse_predictions(file: &str, bytes: &[u8]) -> Result<Vec<Prediction>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| bad(file, 1, format!("the file is not UTF-8: {e}")))?;
    let mut out = Vec::new();
    for r in lines(file, text) {
        let (n, l) = r?;
        let reference = l
            .reference
            .clone()
            .ok_or_else(|| bad(file, n, "missing `reference` (the expected answer)"))?;
        let prediction = l
            .prediction
            .clone()
            .ok_or_else(|| bad(file, n, "missing `prediction` (the system's answer)"))?;
        let (id, format) = check_common(file, n, &l, &reference)?;
        out.push(Prediction { id, reference, prediction, format, schema: l.schema });
    }
    if out.is_empty() {
        return Err(EvalError::EmptyGolden { file: file.into() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_shapes_and_errors() {
        let ok = concat!(
            r#"{"messages":[{"role":"user","content":"hola"},{"role":"assistant","content":"Hola."}]}"#,
            "\n\n",
            r#"{"id":"x","prompt":"dame json","reference":"{\"a\":1}","schema":{"type":"object"}}"#,
            "\n",
        );
        let g = parse_golden("g.jsonl", ok.as_bytes()).unwrap();
        assert_eq!(g.examples.len(), 2);
        assert_eq!(g.examples[0].id, "1");
        assert_eq!(g.examples[1].format, Format::Json);
        assert_eq!(g.sha256.len(), 64);
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("{\"prompt\":\"a\"}", "line 1: a `prompt` line needs a `reference`"),
            ("{\"prompt\":\"a\",\"reference\":\"  \"}", "line 1: the reference is empty"),
            (
                "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
                "must end with the assistant",
            ),
            ("{\"prompt\":\"a\",\"reference\":\"b\",\"extra\":1}", "unknown field `extra`"),
            ("{\"prompt\":\"a\",\"reference\":\"b\",\"schema\":{\"type\":7}}", "`schema`"),
            ("{\"prompt\":\"a\",\"reference\":\"b\",\"format\":\"yaml\"}", "line 1"),
            ("[1]", "line 1: not a JSON object"),
        ];
        for (text, want) in cases {
            let e = parse_golden("g.jsonl", text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn prompt_keys_ignore_case_punctuation_and_answers() {
        let a = [ChatMessage::user("¿Qué se aprobó?"), ChatMessage::assistant("x")];
        let b = [
            ChatMessage::system("s"),
            ChatMessage::user("que se aprobo"),
            ChatMessage::assistant("y"),
        ];
        let c = [ChatMessage::user("qué se aprobó")];
        assert_eq!(prompt_key(&a), prompt_key(&c));
        assert_ne!(prompt_key(&a), prompt_key(&b), "accents matter");
    }

    #[test]
    fn predictions() {
        let p = parse_predictions("p", br#"{"reference":"a b","prediction":"a"}"#).unwrap();
        assert_eq!(p[0].prediction, "a");
        let e = parse_predictions("p", br#"{"reference":"a b"}"#).unwrap_err().to_string();
        assert!(e.contains("p: line 1: missing `prediction`"), "{e}");
    }
}
