//! The demo's simulated secretary (seed 002): opens the minutes the node
//! drafted and corrects them the way a secretary does in Word before
//! uploading the final version. Each drafted paragraph is kept when it
//! already reads like the official minutes, gets only its misspelled
//! officials' names respelled now and then (an entity fix), or is
//! rewritten to the official paragraph; then one paragraph is deleted and
//! one agenda paragraph is moved later. Chunk ids travel with their
//! paragraphs, as Word's bookmarks do.
//!
//! What the node makes of these edits is its own business: the demo
//! reports the node's delta next to what the secretary did.

use super::scenario::{strip_accents, Council, Rng};
use forja_docs::Block;
use serde::Serialize;
use std::collections::HashMap;

/// How often a paragraph that names an official misspelled gets only the
/// names fixed (the rest of the draft left as it is).
const ENTITY_FIX_CHANCE: f64 = 0.35;

/// What the secretary did to one document, counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct Actions {
    /// Paragraphs left as drafted (they already read like the minutes).
    pub kept: u64,
    /// Paragraphs replaced by the official paragraph.
    pub rewritten: u64,
    /// Paragraphs where only misspelled names were respelled.
    pub entity_fixed: u64,
    /// Paragraphs moved later in the document.
    pub moved: u64,
    /// Paragraphs deleted.
    pub deleted: u64,
}

impl Actions {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Actions) {
        self.kept += other.kept;
        self.rewritten += other.rewritten;
        self.entity_fixed += other.entity_fixed;
        self.moved += other.moved;
        self.deleted += other.deleted;
    }
}

/// A corrected document.
#[derive(Debug, Clone)]
pub struct Edited {
    /// The final version's blocks, chunk ids included.
    pub blocks: Vec<Block>,
    /// What was done.
    pub actions: Actions,
    /// Chunk ids of the moved paragraphs.
    pub moved: Vec<String>,
    /// Chunk ids of the deleted paragraphs.
    pub deleted: Vec<String>,
}

/// Corrects `draft`: `reference` maps a chunk id to its official
/// paragraph; blocks without a known chunk id (the title) stay.
pub fn edit(
    draft: &[Block],
    reference: &HashMap<String, String>,
    council: &Council,
    rng: &mut Rng,
) -> Edited {
    let mut actions = Actions::default();
    let mut blocks: Vec<Block> = draft.to_vec();
    // Positions of the paragraphs the secretary corrects, in order.
    let mut chunked = Vec::new();
    for (i, b) in blocks.iter_mut().enumerate() {
        let Some(want) = b.chunk_ids.first().and_then(|c| reference.get(c)) else {
            continue;
        };
        chunked.push(i);
        if b.text.trim() == want.trim() {
            actions.kept += 1;
            continue;
        }
        match fix_names(&b.text, council) {
            Some(fixed) if rng.chance(ENTITY_FIX_CHANCE) => {
                b.text = fixed;
                actions.entity_fixed += 1;
            }
            _ => {
                b.text = want.clone();
                actions.rewritten += 1;
            }
        }
    }
    let mut deleted = Vec::new();
    if chunked.len() >= 5 {
        // Never the opening paragraph.
        let at = chunked.remove(1 + rng.below(chunked.len() - 1));
        deleted.extend(blocks[at].chunk_ids.iter().cloned());
        blocks.remove(at);
        for p in chunked.iter_mut().filter(|p| **p > at) {
            *p -= 1;
        }
        actions.deleted += 1;
    }
    let mut moved = Vec::new();
    if chunked.len() >= 4 {
        // An agenda paragraph goes two or more places later.
        let from = 1 + rng.below(chunked.len() - 3);
        let to = from + 2 + rng.below(chunked.len() - from - 2);
        let b = blocks.remove(chunked[from]);
        moved.extend(b.chunk_ids.iter().cloned());
        blocks.insert(chunked[to], b);
        actions.moved += 1;
    }
    Edited { blocks, actions, moved, deleted }
}

/// `text` with every official's name the speech recogniser misspelled
/// (or wrote without capitals or accents) respelled as the roster writes
/// it; `None` when no name needed it.
pub fn fix_names(text: &str, council: &Council) -> Option<String> {
    let mut words: Vec<String> = text.split_whitespace().map(String::from).collect();
    let mut changed = false;
    for m in council.everyone() {
        let right: Vec<&str> = m.name.split(' ').collect();
        let plain = strip_accents(&m.name.to_lowercase());
        for variant in m.misspellings.iter().chain(std::iter::once(&plain)) {
            let v: Vec<&str> = variant.split(' ').collect();
            if v.len() != right.len() {
                continue;
            }
            for start in 0..words.len().saturating_sub(v.len() - 1) {
                let window = &words[start..start + v.len()];
                let hit = window.iter().zip(&v).all(|(w, v)| core(w).to_lowercase() == *v);
                let already = window.iter().zip(&right).all(|(w, r)| core(w) == *r);
                if hit && !already {
                    for (w, r) in words[start..start + v.len()].iter_mut().zip(&right) {
                        *w = w.replacen(core(w), r, 1);
                    }
                    changed = true;
                }
            }
        }
    }
    changed.then(|| words.join(" "))
}

/// A word without the punctuation around it.
fn core(word: &str) -> &str {
    word.trim_matches(|c: char| !c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::scenario;

    fn council() -> Council {
        scenario::council(7)
    }

    #[test]
    fn names_misspelled_by_asr_are_respelled_and_nothing_else_changes() {
        let c = council();
        let m = &c.members[2];
        let wrong = &m.misspellings[0];
        let text = format!("Interviene {wrong}, que propone ampliar el horario.");
        let fixed = fix_names(&text, &c).expect("a misspelled name");
        assert_eq!(fixed, format!("Interviene {}, que propone ampliar el horario.", m.name));
        // Capitalised in the draft, still respelled; already right, left alone.
        let caps: String =
            wrong.split(' ').map(|w| w[..1].to_uppercase() + &w[1..]).collect::<Vec<_>>().join(" ");
        assert!(fix_names(&format!("Habla {caps}."), &c).is_some());
        assert_eq!(fix_names(&format!("Habla {}.", m.name), &c), None);
        assert_eq!(fix_names("Se aprueba el acta.", &c), None);
    }

    #[test]
    fn the_secretary_rewrites_deletes_and_moves_and_says_so() {
        let c = council();
        let draft: Vec<Block> = std::iter::once(
            Block::paragraph("Acta").with_kind(forja_docs::BlockKind::Heading { level: 1 }),
        )
        .chain(
            (1..=8)
                .map(|i| Block::paragraph(format!("borrador {i}")).with_chunk(format!("c{i:04}"))),
        )
        .collect();
        let reference: HashMap<String, String> = (1..=8)
            .map(|i| {
                (
                    format!("c{i:04}"),
                    if i == 3 { "borrador 3".into() } else { format!("Párrafo {i}.") },
                )
            })
            .collect();
        let e = edit(&draft, &reference, &c, &mut Rng::new(1, 2));
        assert_eq!(
            e.actions,
            Actions { kept: 1, rewritten: 7, entity_fixed: 0, moved: 1, deleted: 1 },
            "{e:?}"
        );
        assert_eq!(e.blocks.len(), 8, "the title and 7 paragraphs");
        assert_eq!(e.blocks[0].text, "Acta", "the title stays first");
        assert_eq!(e.blocks[1].chunk_ids, ["c0001"], "the opening is never moved or deleted");
        assert!(!e.blocks.iter().any(|b| b.chunk_ids == e.deleted));
        let order: Vec<&str> = e.blocks[1..].iter().map(|b| b.chunk_ids[0].as_str()).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_ne!(order, sorted, "one paragraph moved: {order:?}");
        // Deterministic: the same seed edits the same way.
        let again = edit(&draft, &reference, &c, &mut Rng::new(1, 2));
        assert_eq!(again.blocks, e.blocks);
    }
}
