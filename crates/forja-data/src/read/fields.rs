//! From a JSON object (a JSONL line, a CSV row, a Parquet row) to a
//! [`Record`]: which field holds the text, chat or instruction pair, and
//! which hold id, group, license and language.

use std::sync::Arc;

use forja_core::{ChatMessage, Role};
use serde_json::{Map, Value};

use super::InputSpec;
use crate::{Body, Kind, Meta, Origin, Record, Rejected};

/// The field mapping of one input.
#[derive(Debug, Clone)]
pub(crate) struct Mapper {
    spec: InputSpec,
}

impl Mapper {
    pub(crate) fn new(spec: &InputSpec) -> Self {
        Mapper { spec: spec.clone() }
    }

    pub(crate) fn default_license(&self) -> Option<String> {
        self.spec.license.clone()
    }

    /// The record kind for a record with this path (or none).
    pub(crate) fn kind_for(&self, path: Option<&str>, from_code_field: bool) -> Kind {
        match self.spec.kind {
            Some(k) => k,
            None if from_code_field => Kind::Code,
            None => match path {
                Some(p) if super::is_code_path(p) => Kind::Code,
                _ => Kind::Text,
            },
        }
    }

    /// Maps one object to a record, or to a rejection naming the field.
    pub(crate) fn item(&self, obj: &Map<String, Value>, origin: Origin) -> super::Item {
        match self.map(obj, origin) {
            Ok(r) => super::Item::Record(r),
            Err(r) => super::Item::Rejected(r),
        }
    }

    /// Maps one object; a rejection names the field that is missing or wrong.
    pub(crate) fn map(&self, obj: &Map<String, Value>, origin: Origin) -> Result<Record, Rejected> {
        let reject = |reason: String| Rejected { origin: origin.clone(), reason };
        let s = &self.spec;
        let (body, from_code) = self.body(obj).map_err(reject)?;
        let text_of = |name: &str| obj.get(name).and_then(scalar);
        let pick = |configured: &Option<String>, defaults: &[&str]| match configured {
            Some(f) => text_of(f),
            None => defaults.iter().find_map(|f| text_of(f)),
        };
        let id = pick(&s.id_field, &["id"]).unwrap_or_else(|| origin.to_string());
        let path = text_of("path").or_else(|| text_of("max_stars_repo_path"));
        let license = match &s.license_field {
            Some(f) => obj.get(f).and_then(license_of),
            None => obj.get("license").or_else(|| obj.get("licenses")).and_then(license_of),
        }
        .or_else(|| s.license.clone());
        let meta = Meta {
            license,
            lang: pick(&s.lang_field, &["lang", "language"]),
            group: pick(&s.group_field, &["group"]),
            kind: self.kind_for(path.as_deref(), from_code),
            path,
        };
        Ok(Record { origin, id, body, meta })
    }

    fn body(&self, obj: &Map<String, Value>) -> Result<(Body, bool), String> {
        let s = &self.spec;
        // Chat first: an explicit field, else `messages` or ShareGPT `conversations`.
        let chat_field = match &s.messages_field {
            Some(f) => obj.get(f).map(|v| (f.as_str(), v)),
            None => obj
                .get("messages")
                .map(|v| ("messages", v))
                .filter(|(_, v)| !v.is_null())
                .or_else(|| obj.get("conversations").map(|v| ("conversations", v))),
        };
        if let Some((name, v)) = chat_field.filter(|(_, v)| !v.is_null()) {
            return chat(name, v).map(|m| (Body::Chat(m), false));
        }
        if let Some(pair) = self.pair(obj)? {
            return Ok((pair, false));
        }
        let candidates: Vec<&str> = match &s.text_field {
            Some(f) => vec![f.as_str()],
            None => vec!["text", "content", "code"],
        };
        for name in &candidates {
            match obj.get(*name) {
                Some(Value::String(t)) => return Ok((Body::Text(t.clone()), *name == "code")),
                Some(Value::Null) | None => continue,
                Some(other) => {
                    return Err(format!("field `{name}` is {}, not a string", type_name(other)))
                }
            }
        }
        Err(format!(
            "no text: expected field {} (set text_field, messages_field or prompt_field/completion_field in the [[input]])",
            candidates.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
        ))
    }

    fn pair(&self, obj: &Map<String, Value>) -> Result<Option<Body>, String> {
        let s = &self.spec;
        let get = |name: &str| -> Result<Option<String>, String> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(t)) => Ok(Some(t.clone())),
                Some(v) => Err(format!("field `{name}` is {}, not a string", type_name(v))),
            }
        };
        let (p, c) = match (&s.prompt_field, &s.completion_field) {
            (Some(p), Some(c)) => (get(p)?, get(c)?),
            (Some(_), None) | (None, Some(_)) => {
                return Err("set both prompt_field and completion_field".into())
            }
            (None, None) => match (get("prompt")?, get("completion")?) {
                (Some(p), Some(c)) => (Some(p), Some(c)),
                _ => match (get("instruction")?, get("output")?) {
                    (Some(i), Some(o)) => {
                        let input = get("input")?.filter(|x| !x.trim().is_empty());
                        (Some(input.map_or(i.clone(), |x| format!("{i}\n\n{x}"))), Some(o))
                    }
                    _ => (None, None),
                },
            },
        };
        match (p, c) {
            (Some(prompt), Some(completion)) => Ok(Some(Body::Pair { prompt, completion })),
            (None, None) => Ok(None),
            (Some(_), None) => Err("has a prompt but no completion".into()),
            (None, Some(_)) => Err("has a completion but no prompt".into()),
        }
    }
}

/// Parses `[{role, content}]` or ShareGPT `[{from, value}]`.
fn chat(field: &str, v: &Value) -> Result<Vec<ChatMessage>, String> {
    let Value::Array(turns) = v else {
        return Err(format!("field `{field}` is {}, not an array of messages", type_name(v)));
    };
    if turns.is_empty() {
        return Err(format!("field `{field}` is an empty conversation"));
    }
    let mut out = Vec::with_capacity(turns.len());
    for (i, t) in turns.iter().enumerate() {
        let obj = t.as_object().ok_or_else(|| format!("{field}[{i}] is not an object"))?;
        let role = obj.get("role").or_else(|| obj.get("from")).and_then(Value::as_str);
        let content = obj.get("content").or_else(|| obj.get("value")).and_then(Value::as_str);
        let (Some(role), Some(content)) = (role, content) else {
            return Err(format!(
                "{field}[{i}] needs string `role` and `content` (or ShareGPT `from`/`value`)"
            ));
        };
        let role = match role {
            "human" | "user" => Role::User,
            "gpt" | "assistant" | "model" | "bot" => Role::Assistant,
            "system" => Role::System,
            "tool" | "function" | "function_call" | "observation" => Role::Tool,
            other => return Err(format!("{field}[{i}] has unknown role `{other}`")),
        };
        out.push(ChatMessage::new(role, content));
    }
    Ok(out)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A license: a string, or a list (The Stack's `licenses`) read as alternatives.
fn license_of(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) => {
            let ls: Vec<String> = items.iter().filter_map(scalar).collect();
            (!ls.is_empty()).then(|| ls.join(" OR "))
        }
        other => scalar(other),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An origin for `source` at `loc`.
pub(crate) fn origin(source: &Arc<str>, loc: crate::Loc) -> Origin {
    Origin { source: source.clone(), loc }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Loc;

    fn check(spec: InputSpec, json: &str, want: Result<(&str, Body), &str>) {
        let obj: Map<String, Value> = serde_json::from_str(json).unwrap();
        let o = Origin { source: "in.jsonl".into(), loc: Loc::Line(3) };
        let got = Mapper::new(&spec).map(&obj, o);
        match (got, want) {
            (Ok(r), Ok((id, body))) => {
                assert_eq!(r.id, id, "{json}");
                assert_eq!(r.body, body, "{json}");
            }
            (Err(e), Err(reason)) => assert!(e.reason.contains(reason), "{json}: {}", e.reason),
            (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn maps_texts_chats_and_pairs() {
        let d = InputSpec::default;
        let text = |s: &str| Body::Text(s.into());
        check(d(), r#"{"text":"hola","id":7}"#, Ok(("7", text("hola"))));
        check(d(), r#"{"content":"x"}"#, Ok(("in.jsonl:3", text("x"))));
        let spec = InputSpec { text_field: Some("body".into()), ..d() };
        check(spec.clone(), r#"{"body":"b","text":"t"}"#, Ok(("in.jsonl:3", text("b"))));
        check(spec, r#"{"text":"t"}"#, Err("expected field `body`"));
        check(d(), r#"{"text":3}"#, Err("field `text` is a number, not a string"));
        check(d(), r#"{"title":"no text"}"#, Err("no text"));
        let pair = |p: &str, c: &str| Body::Pair { prompt: p.into(), completion: c.into() };
        check(d(), r#"{"prompt":"p","completion":"c"}"#, Ok(("in.jsonl:3", pair("p", "c"))));
        check(
            d(),
            r#"{"instruction":"i","input":"x","output":"o"}"#,
            Ok(("in.jsonl:3", pair("i\n\nx", "o"))),
        );
        check(
            d(),
            r#"{"instruction":"i","input":"","output":"o"}"#,
            Ok(("in.jsonl:3", pair("i", "o"))),
        );
        check(d(), r#"{"prompt":"p"}"#, Err("no text"));
        let chat = Body::Chat(vec![
            ChatMessage::new(Role::User, "q"),
            ChatMessage::new(Role::Assistant, "a"),
        ]);
        check(
            d(),
            r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}"#,
            Ok(("in.jsonl:3", chat.clone())),
        );
        check(
            d(),
            r#"{"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}"#,
            Ok(("in.jsonl:3", chat)),
        );
        check(d(), r#"{"messages":[]}"#, Err("empty conversation"));
        check(
            d(),
            r#"{"messages":[{"role":"wizard","content":"x"}]}"#,
            Err("unknown role `wizard`"),
        );
        check(d(), r#"{"messages":"hi"}"#, Err("not an array"));
    }

    #[test]
    fn metadata_comes_from_fields_or_defaults() {
        let spec = InputSpec {
            license: Some("MIT".into()),
            group_field: Some("session".into()),
            ..Default::default()
        };
        let m = Mapper::new(&spec);
        let o = Origin { source: "x".into(), loc: Loc::Row(0) };
        let obj = |j: &str| serde_json::from_str::<Map<String, Value>>(j).unwrap();
        let r = m
            .map(
                &obj(r#"{"code":"fn main(){}","session":"s1","licenses":["mit","apache-2.0"]}"#),
                o.clone(),
            )
            .unwrap();
        assert_eq!(r.meta.license.as_deref(), Some("mit OR apache-2.0"));
        assert_eq!(r.meta.group.as_deref(), Some("s1"));
        assert_eq!(r.meta.kind, Kind::Code);
        let r = m.map(&obj(r#"{"text":"t","path":"src/a.py"}"#), o.clone()).unwrap();
        assert_eq!((r.meta.license.as_deref(), r.meta.kind), (Some("MIT"), Kind::Code));
        let r = m.map(&obj(r#"{"text":"t","lang":"es"}"#), o).unwrap();
        assert_eq!((r.meta.lang.as_deref(), r.meta.kind), (Some("es"), Kind::Text));
    }
}
