//! Training files: the check an uploaded JSONL file must pass (the line and
//! the reason when it does not), the file a triggered job trains on (built
//! from the examples it claimed), and the validation split.

use crate::feedback::{audit_strings, scrub_strings, ScrubCounts};
use crate::{ControlError, Result};
use forja_data::pii::{Auditor, DocScrub, Scrubber};
use forja_store::sha256_hex;
use serde_json::Value;
use std::collections::HashSet;

/// What checking a file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCheck {
    /// Examples (non-empty lines).
    pub examples: u64,
}

const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

fn check_line(v: &Value) -> std::result::Result<(), String> {
    let Some(obj) = v.as_object() else { return Err("not a JSON object".into()) };
    if let Some(m) = obj.get("messages") {
        let Some(msgs) = m.as_array().filter(|a| !a.is_empty()) else {
            return Err("`messages` must be a non-empty array".into());
        };
        let mut answers = 0;
        for (i, msg) in msgs.iter().enumerate() {
            let role = msg.get("role").and_then(Value::as_str).unwrap_or("");
            if !ROLES.contains(&role) {
                return Err(format!(
                    "messages[{i}].role must be one of system, user, assistant, tool (got {})",
                    msg.get("role").map_or("nothing".into(), Value::to_string)
                ));
            }
            let Some(content) = msg.get("content").and_then(Value::as_str) else {
                return Err(format!("messages[{i}].content must be a string"));
            };
            if role == "assistant" && !content.trim().is_empty() {
                answers += 1;
            }
        }
        if answers == 0 {
            return Err("no assistant message with content: nothing to train on".into());
        }
        return Ok(());
    }
    match (obj.get("prompt"), obj.get("completion"), obj.get("text")) {
        (Some(p), Some(c), _) if p.is_string() && c.as_str().is_some_and(|c| !c.is_empty()) => {
            Ok(())
        }
        (None, None, Some(t)) if t.as_str().is_some_and(|t| !t.is_empty()) => Ok(()),
        _ => Err("expected `messages` (chat format), `prompt` and `completion`, or `text`".into()),
    }
}

/// Checks a fine-tuning file: UTF-8 JSONL, one example per line in the
/// chat format (`{"messages": [...]}` with at least one assistant answer),
/// or `prompt`/`completion`, or `text`.
pub fn check_training_file(name: &str, bytes: &[u8]) -> Result<FileCheck> {
    let bad = |line, reason: String| ControlError::InvalidFile { file: name.into(), line, reason };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        bad(line, "not UTF-8 text".into())
    })?;
    let mut examples = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| bad(i + 1, format!("not JSON ({e})")))?;
        check_line(&v).map_err(|r| bad(i + 1, r))?;
        examples += 1;
    }
    if examples == 0 {
        return Err(bad(1, "the file has no examples".into()));
    }
    Ok(FileCheck { examples })
}

/// A checked training file with every string PII-scrubbed (one document
/// state per line, so a name keeps one replacement within an example),
/// and how many items were rewritten. Blank lines are dropped; lines are
/// re-serialised as compact JSON.
pub fn scrub_training_file(bytes: &[u8], s: &Scrubber) -> (Vec<u8>, ScrubCounts) {
    let mut out = Vec::with_capacity(bytes.len());
    let mut counts = ScrubCounts::new();
    for line in String::from_utf8_lossy(bytes).lines() {
        if line.trim().is_empty() {
            continue;
        }
        let Ok(mut v) = serde_json::from_str::<Value>(line) else { continue };
        scrub_strings(s, &mut v, &mut DocScrub::default(), &mut counts);
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    }
    (out, counts)
}

/// How a failure of the final audit begins (a job failed by it gets the
/// error code `pii_found`).
pub const PII_AUDIT: &str = "the final PII audit found";

/// The final audit before a dataset reaches training (seed 002: "regex
/// scan for DNI/email on the final JSONL"): every string of every line;
/// the first finding fails with its line and kind.
pub fn audit_file(name: &str, bytes: &[u8], a: &Auditor) -> Result<()> {
    for (i, line) in String::from_utf8_lossy(bytes).lines().enumerate() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        if let Some(f) = audit_strings(a, &v).first() {
            return Err(ControlError::InvalidFile {
                file: name.into(),
                line: i + 1,
                reason: format!(
                    "{PII_AUDIT} a {} left in the data; the job will not train on it",
                    f.kind.as_str()
                ),
            });
        }
    }
    Ok(())
}

/// The chat messages of a training line (`messages`, or `prompt` as a
/// user turn).
fn messages_of(v: &Value) -> Vec<forja_core::ChatMessage> {
    if let Some(m) = v.get("messages").and_then(|m| serde_json::from_value(m.clone()).ok()) {
        return m;
    }
    v.get("prompt")
        .and_then(Value::as_str)
        .map(|p| vec![forja_core::ChatMessage::user(p)])
        .unwrap_or_default()
}

/// Whether a training line asks a golden-set prompt.
pub fn is_golden(v: &Value, golden: &HashSet<String>) -> bool {
    let m = messages_of(v);
    !golden.is_empty()
        && m.iter().any(|m| m.role == forja_core::Role::User)
        && golden.contains(&forja_eval::golden::prompt_key(&m))
}

/// Refuses a training file that contains a golden-set prompt: golden
/// examples are never trained on, or the evaluation would measure recall.
pub fn check_no_golden(name: &str, bytes: &[u8], golden: &HashSet<String>) -> Result<()> {
    if golden.is_empty() {
        return Ok(());
    }
    for (i, line) in String::from_utf8_lossy(bytes).lines().enumerate() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        if is_golden(&v, golden) {
            return Err(ControlError::InvalidFile {
                file: name.into(),
                line: i + 1,
                reason: "this prompt is in the tenant's golden set; remove it (golden examples are never trained on)".into(),
            });
        }
    }
    Ok(())
}

/// A triggered job's files: JSONL of its claimed examples, with every
/// tenth (by content hash) held out for validation when there are at
/// least 20, then the replayed earlier examples (training only: the
/// validation loss measures the new data).
pub fn build_files(records: &[Value], replay: &[Value]) -> (Vec<u8>, Option<Vec<u8>>) {
    let hold_out = records.len() >= 20;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for r in records {
        let line = serde_json::to_string(r).expect("json");
        let to_val = hold_out && sha256_hex(line.as_bytes()).as_bytes()[0].is_multiple_of(10);
        let out = if to_val { &mut val } else { &mut train };
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    if train.is_empty() {
        std::mem::swap(&mut train, &mut val);
    }
    for r in replay {
        train.extend_from_slice(serde_json::to_string(r).expect("json").as_bytes());
        train.push(b'\n');
    }
    (train, (!val.is_empty()).then_some(val))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_checked_line_by_line() {
        let good = r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#;
        type Want = std::result::Result<u64, (usize, &'static str)>;
        let cases: &[(&str, Want)] = &[
            (good, Ok(1)),
            (&format!("{good}\n\n{good}\n"), Ok(2)),
            (r#"{"prompt": "a", "completion": "b"}"#, Ok(1)),
            (r#"{"text": "plain text"}"#, Ok(1)),
            (&format!("{good}\nnot json"), Err((2, "not JSON"))),
            (
                r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
                Err((1, "no assistant message")),
            ),
            (r#"{"messages": [{"role": "robot", "content": "hi"}]}"#, Err((1, "messages[0].role"))),
            (r#"{"messages": [{"role": "user", "content": 3}]}"#, Err((1, "messages[0].content"))),
            (r#"{"messages": []}"#, Err((1, "non-empty array"))),
            ("[1, 2]", Err((1, "not a JSON object"))),
            (r#"{"input": "x"}"#, Err((1, "expected `messages`"))),
            ("\n\n", Err((1, "no examples"))),
        ];
        for (text, want) in cases {
            let got = check_training_file("t.jsonl", text.as_bytes());
            match (want, got) {
                (Ok(n), Ok(c)) => assert_eq!(c.examples, *n, "{text}"),
                (Err((line, part)), Err(ControlError::InvalidFile { line: l, reason, .. })) => {
                    assert_eq!(*line, l, "{text}: {reason}");
                    assert!(reason.contains(part), "{text}: {reason}");
                }
                (w, g) => panic!("{text}: wanted {w:?}, got {g:?}"),
            }
        }
        let e =
            check_training_file("t.jsonl", b"{\"text\": \"a\"}\n\xff\xfe").unwrap_err().to_string();
        assert_eq!(e, "t.jsonl: line 2: not UTF-8 text");
    }

    #[test]
    fn built_files_hold_out_a_tenth_and_lose_nothing() {
        let records: Vec<Value> =
            (0..200).map(|i| serde_json::json!({"text": format!("example {i}")})).collect();
        let (train, val) = build_files(&records, &[]);
        let (nt, nv) = (
            train.split(|&b| b == b'\n').count() - 1,
            val.unwrap().split(|&b| b == b'\n').count() - 1,
        );
        assert_eq!(nt + nv, 200);
        assert!((8..=35).contains(&nv), "{nv}");
        let (train, val) = build_files(&records[..5], &records[5..7]);
        assert_eq!((train.iter().filter(|&&b| b == b'\n').count(), val), (7, None));
    }

    /// Regression (hardening #13): uploaded training files were validated
    /// but stored with their personal data.
    #[test]
    fn uploads_are_scrubbed_and_the_final_audit_catches_leftovers() {
        let s = Scrubber::new(&Default::default()).unwrap();
        let file = "{\"prompt\": \"Mi DNI es 12345678Z\", \"completion\": \"Escriba a ana@correo.es\"}\n\n{\"text\": \"nada\"}\n";
        check_training_file("f.jsonl", file.as_bytes()).unwrap();
        let (clean, counts) = scrub_training_file(file.as_bytes(), &s);
        let text = String::from_utf8(clean.clone()).unwrap();
        assert!(!text.contains("12345678Z") && !text.contains("ana@correo.es"), "{text}");
        assert_eq!(text.lines().count(), 2);
        assert_eq!(counts.values().sum::<u32>(), 2, "{counts:?}");
        assert_eq!(check_training_file("f.jsonl", &clean).unwrap().examples, 2);
        let audit = Auditor::new(&["Ana Ruiz".into()]).unwrap();
        audit_file("f.jsonl", &clean, &audit).unwrap();
        let leak = b"{\"text\": \"ok\"}\n{\"text\": \"hola Ana Ruiz\"}\n";
        let e = audit_file("t.jsonl", leak, &audit).unwrap_err().to_string();
        assert!(e.starts_with("t.jsonl: line 2: the final PII audit"), "{e}");
    }
}
