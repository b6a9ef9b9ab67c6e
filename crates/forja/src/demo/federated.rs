//! The demo task cut into non-IID slices for a federation measurement:
//! three nodes, each holding the council's utterances of different kinds
//! (A: openings, agenda items, closings; B: proposals and debate; C:
//! votes and citizens' turns), and one golden set over every kind, its
//! ids prefixed with the slice so per-slice WER can be read back from a
//! report. Utterances with personal data are left out (the demo scrubs
//! them through curation; this writes files directly).

use super::scenario::{self as demo, Split, Utterance};
use super::{messages, DemoConfig};
use anyhow::{Context, Result};
use serde_json::json;
use std::path::Path;

/// The slices and the utterance kinds each holds.
pub const SLICES: [(&str, &[&str]); 3] = [
    ("A", &["opening", "item", "closing"]),
    ("B", &["proposal", "debate"]),
    ("C", &["vote", "citizen"]),
];

fn slice_of(kind: &str) -> Option<&'static str> {
    SLICES.iter().find(|(_, kinds)| kinds.contains(&kind)).map(|(s, _)| *s)
}

fn chat(u: &Utterance, itn: bool) -> serde_json::Value {
    let mut m = messages(u, itn);
    m.as_array_mut().expect("an array").push(json!({"role": "assistant", "content": u.minutes}));
    m
}

/// Writes `train-A.jsonl`, `train-B.jsonl`, `train-C.jsonl` (up to
/// `per_slice` utterances each) and `golden.jsonl` (up to `cfg.golden`,
/// as evenly over the slices as the held-out sessions allow) into `out`.
pub fn write(out: &Path, cfg: &DemoConfig, per_slice: usize) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let council = demo::council(cfg.seed);
    let mut train: Vec<(&str, Vec<String>)> =
        SLICES.iter().map(|(s, _)| (*s, Vec::new())).collect();
    let mut golden: Vec<(&str, Vec<String>)> =
        SLICES.iter().map(|(s, _)| (*s, Vec::new())).collect();
    let golden_each = cfg.golden.div_ceil(SLICES.len());
    for s in demo::sessions(&council, cfg.seed, 400) {
        let split = demo::split_of(&s.id);
        for u in s.utterances.iter().filter(|u| u.pii.is_empty()) {
            let Some(slice) = slice_of(u.kind) else { continue };
            let k = SLICES.iter().position(|(s, _)| *s == slice).expect("a slice");
            match split {
                Split::Train if train[k].1.len() < per_slice => {
                    train[k].1.push(json!({"messages": chat(u, cfg.itn)}).to_string());
                }
                Split::Golden if golden[k].1.len() < golden_each => {
                    let id = format!("{slice}:{}#{}", u.session, u.index);
                    golden[k].1.push(json!({"id": id, "messages": chat(u, cfg.itn)}).to_string());
                }
                _ => {}
            }
        }
    }
    for (slice, lines) in &train {
        let p = out.join(format!("train-{slice}.jsonl"));
        std::fs::write(&p, lines.join("\n") + "\n")
            .with_context(|| format!("cannot write {}", p.display()))?;
        eprintln!("{}: {} examples", p.display(), lines.len());
    }
    let all: Vec<String> = golden.iter().flat_map(|(_, l)| l.iter().cloned()).collect();
    let p = out.join("golden.jsonl");
    std::fs::write(&p, all.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", p.display()))?;
    eprintln!(
        "{}: {} examples ({})",
        p.display(),
        all.len(),
        golden.iter().map(|(s, l)| format!("{s} {}", l.len())).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
