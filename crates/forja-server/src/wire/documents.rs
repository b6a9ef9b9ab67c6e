//! The JSON of a corrections delta (`forja corrections diff --json` and the
//! documents API): one object per paragraph operation with both texts, the
//! word edits and what forja learns from it.

use forja_docs::diff::Delta;
use forja_docs::entity::EntityRule;
use forja_docs::learn::{learning, Learning};
use forja_docs::Block;
use serde_json::{json, Value};

/// `{"object": "corrections.delta", "summary": {...}, "paragraphs": [...]}`.
pub fn delta(delta: &Delta, generated: &[Block], final_: &[Block], rule: &EntityRule) -> Value {
    let text = |blocks: &[Block], idx: &[usize]| -> Value {
        if idx.is_empty() {
            Value::Null
        } else {
            Value::String(
                idx.iter().map(|&i| blocks[i].text.as_str()).collect::<Vec<_>>().join("\n"),
            )
        }
    };
    let mut summary = serde_json::Map::new();
    for name in
        ["unchanged", "edited", "moved", "moved_edited", "inserted", "deleted", "split", "merged"]
    {
        summary.insert(name.into(), json!(0));
    }
    let mut learned = serde_json::Map::new();
    let paragraphs: Vec<Value> = delta
        .ops
        .iter()
        .map(|op| {
            *summary.get_mut(op.kind.name()).expect("every kind is listed") =
                json!(summary[op.kind.name()].as_u64().unwrap_or(0) + 1);
            let decision = learning(op, rule);
            let n = learned.entry(decision.name()).or_insert(json!(0));
            *n = json!(n.as_u64().unwrap_or(0) + 1);
            let mut v = json!({
                "op": op.kind.name(),
                "generated": op.generated,
                "final": op.final_,
                "matched_by": op.matched_by,
                "chunk_ids": op.chunk_ids,
                "edit_ratio": (op.edit_ratio * 1000.0).round() / 1000.0,
                "edits": op.edits.iter().map(|e| json!({"old": e.old, "new": e.new})).collect::<Vec<_>>(),
                "generated_text": text(generated, if op.matched_by == "copy" { &[] } else { &op.generated }),
                "final_text": text(final_, &op.final_),
                "learning": decision.name(),
            });
            match decision {
                Learning::Nothing(why) => v["reason"] = json!(why),
                Learning::Dictionary(fixes) => {
                    v["entities"] = fixes
                        .iter()
                        .map(|f| json!({"wrong": f.wrong, "right": f.right, "similarity": (f.similarity * 1000.0).round() / 1000.0}))
                        .collect();
                }
                Learning::Pair => {}
            }
            v
        })
        .collect();
    json!({
        "object": "corrections.delta",
        "summary": summary,
        "learning": learned,
        "paragraphs": paragraphs,
    })
}
