//! Feedback to training lines: a posted example (a conversation or prompt,
//! the model's output, a correction, a rating) is checked, normalised,
//! quality-filtered and PII-scrubbed with forja-data before the store
//! counts it toward a trigger. Refused examples are kept with the reason.

use crate::{ControlError, Result};
use forja_core::{ChatMessage, Role};
use forja_data::pii::{DocScrub, PiiConfig, Scrubber};
use forja_data::{Kind, QualityConfig};
use forja_store::{sha256_hex, Curated, NewExample};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One feedback item, as the API and the CLI accept it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    /// The conversation up to the answer (or use `prompt`).
    #[serde(default)]
    pub messages: Option<Vec<ChatMessage>>,
    /// A single user turn (instead of `messages`).
    #[serde(default)]
    pub prompt: Option<String>,
    /// What the model answered.
    #[serde(default)]
    pub output: Option<String>,
    /// The answer it should have given.
    #[serde(default)]
    pub correction: Option<String>,
    /// 1 (bad) to 5 (good).
    #[serde(default)]
    pub rating: Option<u8>,
    /// Free-form metadata kept with the example.
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Where it came from (`api` by default).
    #[serde(default)]
    pub source: Option<String>,
    /// A completion this server returned: its conversation and output are
    /// used unless `messages`/`prompt` and `output` are given.
    #[serde(default)]
    pub completion_id: Option<String>,
}

/// Turns feedback into curated training lines.
#[derive(Debug)]
pub struct Curator {
    scrubber: Scrubber,
    quality: QualityConfig,
}

impl Curator {
    /// A curator with forja-data's PII defaults (every recognizer, replace
    /// operator) and quality rules relaxed for short answers.
    pub fn new(pii: &PiiConfig) -> Result<Curator> {
        let mut quality = QualityConfig::default();
        quality.text.min_chars = 2;
        Ok(Curator { scrubber: Scrubber::new(pii)?, quality })
    }

    /// Checks the shape (an error is the caller's mistake: a 400), then
    /// curates (a refusal is data: the example is stored as rejected).
    pub fn curate(&self, fb: &Feedback) -> Result<NewExample> {
        let mut context = match (&fb.messages, &fb.prompt) {
            (Some(m), None) if !m.is_empty() => m.clone(),
            (None, Some(p)) if !p.trim().is_empty() => {
                vec![ChatMessage { role: Role::User, content: p.clone() }]
            }
            (Some(_), Some(_)) => {
                return Err(ControlError::invalid(
                    "messages",
                    "give `messages` or `prompt`, not both",
                ))
            }
            _ => {
                return Err(ControlError::invalid(
                    "messages",
                    "give the conversation as `messages` (or a `prompt`)",
                ))
            }
        };
        if let Some(r) = fb.rating.filter(|r| !(1..=5).contains(r)) {
            return Err(ControlError::invalid("rating", format!("{r} is not in 1..=5")));
        }
        // A conversation that ends with the model's answer carries the output.
        let mut output = fb.output.clone();
        if context.last().is_some_and(|m| m.role == Role::Assistant) && output.is_none() {
            output = context.pop().map(|m| m.content);
        }
        if !context.iter().any(|m| m.role == Role::User) {
            return Err(ControlError::invalid("messages", "the conversation has no user turn"));
        }
        let input = serde_json::to_value(fb).expect("feedback serialises");
        let source = fb.source.clone().unwrap_or_else(|| "api".into());
        let target = match (&fb.correction, fb.rating) {
            (Some(c), _) if !c.trim().is_empty() => Ok(c.clone()),
            (_, Some(r)) if r >= 4 => output.ok_or_else(|| {
                "rated well but has no `output` to learn from".to_string()
            }),
            _ => Err(
                "nothing to learn from: give a `correction`, or a `rating` of 4-5 with the `output`"
                    .to_string(),
            ),
        };
        let curated = target.and_then(|t| self.line(context, &t));
        Ok(NewExample { source, input, curated })
    }

    fn line(
        &self,
        mut turns: Vec<ChatMessage>,
        target: &str,
    ) -> std::result::Result<Curated, String> {
        turns.push(ChatMessage { role: Role::Assistant, content: target.to_string() });
        let mut doc = DocScrub::default();
        for m in &mut turns {
            let text = forja_data::normalize(&m.content, Kind::Text);
            m.content = self.scrubber.scrub(&text, &mut doc).text;
        }
        let answer = &turns.last().expect("pushed").content;
        if let Some(why) = self.quality.check(answer, Kind::Text, None) {
            return Err(format!("the answer fails curation: {why}"));
        }
        let canonical = serde_json::to_string(&turns).expect("messages serialise");
        Ok(Curated {
            record: serde_json::json!({ "messages": turns }),
            content_hash: sha256_hex(canonical.as_bytes()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fb(v: serde_json::Value) -> Feedback {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn curation_cases() {
        let c = Curator::new(&PiiConfig::default()).unwrap();
        // (input, Ok(answer) | Err(part of the rejection), for curated lines)
        let cases = [
            (
                serde_json::json!({"prompt": "Resume el acta", "output": "mal", "correction": "El pleno aprobó la moción."}),
                Ok("El pleno aprobó la moción."),
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": "hola"}, {"role": "assistant", "content": "Buenos días."}], "rating": 5}),
                Ok("Buenos días."),
            ),
            (
                serde_json::json!({"prompt": "hola", "output": "Buenas", "rating": 2}),
                Err("nothing to learn from"),
            ),
            (
                serde_json::json!({"prompt": "Llama a Juan", "correction": "Su teléfono es +34 612 345 678, escriba a juan.perez@example.com."}),
                Ok("PHONE"),
            ),
            (serde_json::json!({"prompt": "hola", "correction": "x"}), Err("fails curation")),
        ];
        for (input, want) in cases {
            let ex = c.curate(&fb(input.clone())).unwrap();
            match (want, &ex.curated) {
                (Ok(part), Ok(cur)) => {
                    let msgs = cur.record["messages"].as_array().unwrap();
                    let last = msgs.last().unwrap()["content"].as_str().unwrap();
                    assert!(
                        last.contains(part) || last.contains(&format!("<{part}")),
                        "{input}: {last}"
                    );
                    assert!(
                        !last.contains("612 345 678") && !last.contains("juan.perez"),
                        "{last}"
                    );
                }
                (Err(part), Err(why)) => assert!(why.contains(part), "{input}: {why}"),
                (w, got) => panic!("{input}: wanted {w:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn shape_errors_are_request_errors() {
        let c = Curator::new(&PiiConfig::default()).unwrap();
        for (input, param) in [
            (serde_json::json!({"correction": "x"}), "messages"),
            (serde_json::json!({"prompt": "a", "messages": [], "correction": "x"}), "messages"),
            (serde_json::json!({"prompt": "a", "rating": 9}), "rating"),
            (
                serde_json::json!({"messages": [{"role": "system", "content": "s"}], "correction": "x"}),
                "messages",
            ),
        ] {
            let e = c.curate(&fb(input.clone())).unwrap_err();
            assert!(
                matches!(&e, ControlError::InvalidRequest { param: p, .. } if p == param),
                "{input}: {e}"
            );
        }
    }
}
