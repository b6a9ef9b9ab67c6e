//! Instruction formatting: a kept record becomes one JSON line in the chat
//! `messages` format the trainer reads, Alpaca, ShareGPT, or plain `text`.
//!
//! Conversations keep their turns. A prompt/completion pair becomes one user
//! and one assistant turn. Free text and code become an assistant turn
//! answering a prompt drawn from a pool (`{title}`, `{path}` and `{lang}` are
//! filled in). A system prompt from a pool is added to conversations that
//! have none. Every choice hashes the record id, so output is reproducible.

use forja_core::{ChatMessage, Role};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::{Body, Kind, Record};

/// The output format of the data shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// `{"messages": [{"role", "content"}]}`: what `forja train` reads.
    #[default]
    Messages,
    /// `{"instruction", "input", "output"}` (+ `system`).
    Alpaca,
    /// `{"conversations": [{"from", "value"}]}`.
    Sharegpt,
    /// `{"text"}`: for continued pre-training.
    Text,
}

/// Formatting settings (`[format]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FormatConfig {
    /// The output format.
    pub format: OutputFormat,
    /// System prompts, one chosen per example that has none (empty: no system turn).
    pub system_prompts: Vec<String>,
    /// Prompts that introduce a free text (`{title}`, `{lang}`).
    pub text_prompts: Vec<String>,
    /// Prompts that introduce a code file (`{path}`, `{lang}`).
    pub code_prompts: Vec<String>,
    /// Seed of the choices.
    pub seed: u64,
}

impl Default for FormatConfig {
    fn default() -> Self {
        FormatConfig {
            format: OutputFormat::Messages,
            system_prompts: Vec::new(),
            text_prompts: vec![
                "Write a text titled \"{title}\".".into(),
                "Write about: {title}".into(),
                "Draft the piece \"{title}\".".into(),
            ],
            code_prompts: vec![
                "Write the file `{path}`.".into(),
                "Show me the {lang} source of `{path}`.".into(),
                "Implement `{path}`.".into(),
            ],
            seed: 0,
        }
    }
}

impl FormatConfig {
    /// Checks the pools.
    pub fn validate(&self) -> Result<(), String> {
        if self.text_prompts.is_empty() || self.code_prompts.is_empty() {
            return Err("format.text_prompts and format.code_prompts must not be empty".into());
        }
        Ok(())
    }

    fn pick<'a>(&self, pool: &'a [String], id: &str, salt: u64) -> Option<&'a str> {
        if pool.is_empty() {
            return None;
        }
        let h = xxh3_64_with_seed(id.as_bytes(), self.seed ^ salt);
        Some(&pool[(h % pool.len() as u64) as usize])
    }

    /// The record as conversation turns.
    pub fn turns(&self, rec: &Record) -> Vec<ChatMessage> {
        let mut turns = match &rec.body {
            Body::Chat(m) => m.clone(),
            Body::Pair { prompt, completion } => {
                vec![
                    ChatMessage::new(Role::User, prompt.clone()),
                    ChatMessage::new(Role::Assistant, completion.clone()),
                ]
            }
            Body::Text(text) => {
                let (title, body) = title_and_body(text);
                let (pool, salt) = match rec.meta.kind {
                    Kind::Code => (&self.code_prompts, 1),
                    Kind::Text => (&self.text_prompts, 2),
                };
                let template = self.pick(pool, &rec.id, salt).unwrap_or("{title}");
                let lang = rec.meta.lang.as_deref().unwrap_or(match rec.meta.kind {
                    Kind::Code => "code",
                    Kind::Text => "text",
                });
                let path = rec.meta.path.as_deref().unwrap_or(&rec.id);
                let prompt = template
                    .replace("{title}", &title)
                    .replace("{path}", path)
                    .replace("{lang}", lang);
                let answer = if rec.meta.kind == Kind::Code { text.clone() } else { body };
                vec![
                    ChatMessage::new(Role::User, prompt),
                    ChatMessage::new(Role::Assistant, answer),
                ]
            }
        };
        if turns.first().is_none_or(|t| t.role != Role::System) {
            if let Some(sys) = self.pick(&self.system_prompts, &rec.id, 3) {
                turns.insert(0, ChatMessage::system(sys));
            }
        }
        turns
    }

    /// The record as one JSON line (no newline).
    pub fn render(&self, rec: &Record) -> String {
        let line = match self.format {
            OutputFormat::Text => json!({ "id": rec.id, "text": rec.body.joined() }),
            OutputFormat::Messages => {
                let m: Vec<Value> = self
                    .turns(rec)
                    .iter()
                    .map(|t| json!({"role": t.role.as_str(), "content": t.content}))
                    .collect();
                json!({ "id": rec.id, "messages": m })
            }
            OutputFormat::Sharegpt => {
                let from = |r: Role| match r {
                    Role::System => "system",
                    Role::User => "human",
                    Role::Assistant => "gpt",
                    Role::Tool => "tool",
                };
                let c: Vec<Value> = self
                    .turns(rec)
                    .iter()
                    .map(|t| json!({"from": from(t.role), "value": t.content}))
                    .collect();
                json!({ "id": rec.id, "conversations": c })
            }
            OutputFormat::Alpaca => {
                let mut turns = self.turns(rec);
                let system = if turns.first().is_some_and(|t| t.role == Role::System) {
                    turns.remove(0).content
                } else {
                    String::new()
                };
                let last = turns.iter().rposition(|t| t.role == Role::Assistant);
                let (output, before) = match last {
                    Some(i) => (turns[i].content.clone(), &turns[..i]),
                    None => (String::new(), &turns[..]),
                };
                let (instruction, input) = match before {
                    [one] => (one.content.clone(), String::new()),
                    [history @ .., last] => {
                        let h: Vec<String> =
                            history.iter().map(|t| format!("{}: {}", t.role, t.content)).collect();
                        (last.content.clone(), h.join("\n"))
                    }
                    [] => (String::new(), String::new()),
                };
                json!({ "id": rec.id, "system": system, "instruction": instruction, "input": input, "output": output })
            }
        };
        line.to_string()
    }
}

/// A title (the first line when it is short and followed by more text, else
/// the first words) and the body that answers it.
fn title_and_body(text: &str) -> (String, String) {
    if let Some((first, rest)) = text.split_once('\n') {
        let first = first.trim();
        if !first.is_empty() && first.chars().count() <= 150 && !rest.trim().is_empty() {
            return (first.to_string(), rest.trim().to_string());
        }
    }
    let words: Vec<&str> = text.split_whitespace().take(12).collect();
    let mut title = words.join(" ");
    if text.split_whitespace().nth(12).is_some() {
        title.push('…');
    }
    (title, text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Loc, Meta, Origin};

    fn rec(id: &str, body: Body, kind: Kind) -> Record {
        let meta = Meta {
            kind,
            path: (kind == Kind::Code).then(|| "src/lib.rs".into()),
            ..Default::default()
        };
        Record { origin: Origin { source: "x".into(), loc: Loc::Whole }, id: id.into(), body, meta }
    }

    /// JSON lines are compared as values: key order follows serde_json's
    /// map (insertion order once any crate enables `preserve_order`, as
    /// llguidance does), which is deterministic but not what this test is about.
    fn check(cfg: &FormatConfig, r: &Record, want: &str) {
        let got = cfg.render(r);
        match (
            serde_json::from_str::<serde_json::Value>(&got),
            serde_json::from_str::<serde_json::Value>(want),
        ) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{got}"),
            _ => assert_eq!(got, want),
        }
    }

    #[test]
    fn formats() {
        let pair = rec(
            "p1",
            Body::Pair { prompt: "¿Hora?".into(), completion: "Las 3.".into() },
            Kind::Text,
        );
        let mut cfg = FormatConfig::default();
        check(
            &cfg,
            &pair,
            r#"{"id":"p1","messages":[{"content":"¿Hora?","role":"user"},{"content":"Las 3.","role":"assistant"}]}"#,
        );
        cfg.format = OutputFormat::Alpaca;
        check(
            &cfg,
            &pair,
            r#"{"id":"p1","input":"","instruction":"¿Hora?","output":"Las 3.","system":""}"#,
        );
        cfg.format = OutputFormat::Sharegpt;
        check(
            &cfg,
            &pair,
            r#"{"conversations":[{"from":"human","value":"¿Hora?"},{"from":"gpt","value":"Las 3."}],"id":"p1"}"#,
        );
        cfg.format = OutputFormat::Text;
        check(&cfg, &pair, r#"{"id":"p1","text":"¿Hora?\nLas 3."}"#);

        let chat = Body::Chat(vec![
            ChatMessage::new(Role::User, "a"),
            ChatMessage::new(Role::Assistant, "b"),
            ChatMessage::new(Role::User, "c"),
            ChatMessage::new(Role::Assistant, "d"),
        ]);
        let cfg = FormatConfig {
            format: OutputFormat::Alpaca,
            system_prompts: vec!["Be brief.".into()],
            ..Default::default()
        };
        check(
            &cfg,
            &rec("c1", chat, Kind::Text),
            r#"{"id":"c1","input":"user: a\nassistant: b","instruction":"c","output":"d","system":"Be brief."}"#,
        );

        let cfg = FormatConfig {
            text_prompts: vec!["T: {title}".into()],
            code_prompts: vec!["C: {path} {lang}".into()],
            ..Default::default()
        };
        check(
            &cfg,
            &rec("t1", Body::Text("Noticia\n\nCuerpo.".into()), Kind::Text),
            r#"{"id":"t1","messages":[{"content":"T: Noticia","role":"user"},{"content":"Cuerpo.","role":"assistant"}]}"#,
        );
        check(
            &cfg,
            &rec("k1", Body::Text("fn a() {}".into()), Kind::Code),
            r#"{"id":"k1","messages":[{"content":"C: src/lib.rs code","role":"user"},{"content":"fn a() {}","role":"assistant"}]}"#,
        );
    }

    #[test]
    fn system_prompts_vary_by_id_and_are_stable() {
        let cfg = FormatConfig {
            system_prompts: (0..4).map(|i| format!("S{i}")).collect(),
            ..Default::default()
        };
        let sys =
            |id: &str| cfg.turns(&rec(id, Body::Text("x".into()), Kind::Text))[0].content.clone();
        let distinct: std::collections::HashSet<String> =
            (0..40).map(|i| sys(&format!("r{i}"))).collect();
        assert_eq!(distinct.len(), 4);
        assert_eq!(sys("r1"), sys("r1"));
    }
}
