//! The entity fast path's rule: is an edit only a spelling fix of a name or
//! term ("Jhon Yonson" → "John Johnson"), which goes to the tenant's
//! dictionary in seconds, or a change of meaning (another person, another
//! amount), which is a training example?
//!
//! An edit is an entity fix when every changed span is a replacement (no
//! pure insertion or deletion), and in each span:
//! - both sides have the same number of words, at most
//!   [`EntityRule::max_words`], and no digits (amounts and dates are
//!   meaning);
//! - the new side looks like a name or term: every word starts with a
//!   capital letter, except particles such as `de`, `del`, `la`, `y`;
//!   a lower-case single word counts as a term only at
//!   [`EntityRule::min_term_similarity`];
//! - each changed word is spelled like its replacement: similarity ≥
//!   [`EntityRule::min_similarity`], the larger of the normalised
//!   Levenshtein similarity of the folded words (case and accents dropped)
//!   and of their phonetic keys (Spanish/English: silent `h`, b/v, s/z/c,
//!   ll/y, qu/k…). `Yonson`/`Johnson` 0.71 passes; `López`/`Pérez` 0.4 and
//!   `Juan`/`Julián` 0.67 do not.
//!
//! Spelling cannot tell every pair apart: `Marta` → `María` (0.8) reads as
//! a fix although it may be another person.
//!
//! The rule errs towards training: an uncertain edit becomes a training
//! pair, where the gate judges it, rather than a dictionary entry that
//! rewrites every later generation.

use crate::diff::WordEdit;
use crate::text::{fold, is_word, tokens};

/// One spelling fix: `wrong` → `right`.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityFix {
    /// As generated.
    pub wrong: String,
    /// As corrected.
    pub right: String,
    /// The lowest word similarity in the span (0..=1).
    pub similarity: f32,
}

/// The verdict on an edited paragraph.
#[derive(Debug, Clone, PartialEq)]
pub enum EditClass {
    /// Only spelling fixes of names or terms.
    EntityFix(Vec<EntityFix>),
    /// A change of meaning: why (one short phrase).
    Change(String),
}

/// Thresholds of the rule.
#[derive(Debug, Clone, Copy)]
pub struct EntityRule {
    /// Most words in one replaced span.
    pub max_words: usize,
    /// Least similarity of each replaced word.
    pub min_similarity: f32,
    /// Least similarity for a lower-case single-word fix (a term).
    pub min_term_similarity: f32,
}

impl Default for EntityRule {
    fn default() -> Self {
        EntityRule { max_words: 4, min_similarity: 0.7, min_term_similarity: 0.8 }
    }
}

const PARTICLES: &[&str] = &[
    "de", "del", "la", "las", "los", "y", "e", "i", "da", "do", "dos", "van", "von", "der", "di",
    "le",
];

/// Classifies the word edits of one paragraph.
pub fn classify(edits: &[WordEdit], rule: &EntityRule) -> EditClass {
    if edits.is_empty() {
        return EditClass::Change("no edit".into());
    }
    let mut fixes = Vec::new();
    for e in edits {
        if e.old.is_empty() || e.new.is_empty() {
            return EditClass::Change("words inserted or deleted".into());
        }
        let old: Vec<&str> = tokens(&e.old).into_iter().filter(|t| is_word(t)).collect();
        let new: Vec<&str> = tokens(&e.new).into_iter().filter(|t| is_word(t)).collect();
        if old.is_empty() || new.is_empty() {
            return EditClass::Change("punctuation changed".into());
        }
        if old.len() != new.len() {
            return EditClass::Change(format!(
                "\"{}\" → \"{}\" changes the number of words",
                e.old, e.new
            ));
        }
        if old.len() > rule.max_words {
            return EditClass::Change(format!(
                "\"{}\" replaces more than {} words",
                e.old, rule.max_words
            ));
        }
        if e.old.chars().chain(e.new.chars()).any(|c| c.is_ascii_digit()) {
            return EditClass::Change(format!("\"{}\" → \"{}\" changes a number", e.old, e.new));
        }
        let name_like =
            new.iter().all(|w| capitalized(w) || PARTICLES.contains(&w.to_lowercase().as_str()))
                && new.iter().any(|w| capitalized(w));
        let floor = if name_like {
            rule.min_similarity
        } else if new.len() == 1 {
            rule.min_term_similarity
        } else {
            return EditClass::Change(format!("\"{}\" is not a name", e.new));
        };
        let mut least = 1.0f32;
        for (a, b) in old.iter().zip(&new) {
            let s = similarity(a, b);
            if s < floor {
                return EditClass::Change(format!(
                    "\"{a}\" → \"{b}\" is another word (similarity {s:.2})"
                ));
            }
            least = least.min(s);
        }
        fixes.push(EntityFix { wrong: e.old.clone(), right: e.new.clone(), similarity: least });
    }
    EditClass::EntityFix(fixes)
}

fn capitalized(w: &str) -> bool {
    w.chars().next().is_some_and(char::is_uppercase)
}

/// Spelling similarity of two words, 0..=1 (see the module docs).
pub fn similarity(a: &str, b: &str) -> f32 {
    let (fa, fb) = (fold(a), fold(b));
    let plain = strsim::normalized_levenshtein(&fa, &fb);
    let sound = strsim::normalized_levenshtein(&phonetic(&fa), &phonetic(&fb));
    plain.max(sound) as f32
}

/// A rough phonetic key of a folded word, for the confusions of Spanish
/// and English speech recognition.
fn phonetic(w: &str) -> String {
    let chars: Vec<char> = w.chars().collect();
    let mut out = String::with_capacity(w.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let mapped = match (c, next) {
            ('h', _) => None,
            ('l', Some('l')) => {
                i += 1;
                Some('y')
            }
            ('q', Some('u')) => {
                i += 1;
                Some('k')
            }
            ('c', Some('e' | 'i')) | ('z', _) => Some('s'),
            ('c', _) | ('k', _) => Some('k'),
            ('v', _) | ('w', _) => Some('b'),
            ('g', Some('e' | 'i')) => Some('j'),
            ('y', Some(n)) if !"aeiou".contains(n) => Some('i'),
            ('y', None) => Some('i'),
            _ => Some(c),
        };
        if let Some(m) = mapped {
            // Doubled letters sound single.
            if !out.ends_with(m) {
                out.push(m);
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(old: &str, new: &str) -> Vec<WordEdit> {
        vec![WordEdit { old: old.into(), new: new.into() }]
    }

    #[test]
    fn spelling_fixes_of_names_are_entity_fixes() {
        let rule = EntityRule::default();
        for (old, new) in [
            ("Jhon Yonson", "John Johnson"),
            ("Gonzalez", "González"),
            ("Rodrigez", "Rodríguez"),
            ("Smit", "Smith"),
            ("Jimenez", "Giménez"),
            ("Balverde", "Valverde"),
            ("fotoboltaica", "fotovoltaica"),
        ] {
            assert!(
                matches!(classify(&edit(old, new), &rule), EditClass::EntityFix(_)),
                "{old} -> {new}"
            );
        }
    }

    #[test]
    fn another_person_or_amount_is_a_change() {
        let rule = EntityRule::default();
        for (old, new) in [
            ("Pedro Gómez", "Luis Martín"),
            ("López", "Pérez"),
            ("Juan", "Julián"),
            ("1.200", "1.500"),
            ("aprobó", "rechazó"),
            ("aprobó", "aprobará"),
            ("la moción", "las mociones del grupo"),
            ("Gómez", ""),
        ] {
            assert!(
                matches!(classify(&edit(old, new), &rule), EditClass::Change(_)),
                "{old} -> {new}"
            );
        }
    }
}
