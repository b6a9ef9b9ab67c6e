//! What each paragraph of a delta teaches: nothing, a dictionary entry
//! (a spelling fix of a name), or a training pair (a change of meaning).

use crate::diff::{Op, OpKind};
use crate::entity::{classify, EditClass, EntityFix, EntityRule};

/// The learning decision for one [`Op`].
#[derive(Debug, Clone, PartialEq)]
pub enum Learning {
    /// Nothing to learn; why.
    Nothing(&'static str),
    /// Only spelling fixes of names or terms: the tenant's dictionary.
    Dictionary(Vec<EntityFix>),
    /// A training pair: source (transcript segment or generated paragraph)
    /// → the corrected paragraph.
    Pair,
}

impl Learning {
    /// `none`, `dictionary` or `training_pair`.
    pub fn name(&self) -> &'static str {
        match self {
            Learning::Nothing(_) => "none",
            Learning::Dictionary(_) => "dictionary",
            Learning::Pair => "training_pair",
        }
    }
}

/// Decides what `op` teaches.
pub fn learning(op: &Op, rule: &EntityRule) -> Learning {
    match op.kind {
        OpKind::Unchanged | OpKind::Moved => Learning::Nothing("not edited: the draft was right"),
        OpKind::Inserted if op.matched_by == "copy" => {
            Learning::Nothing("a copy of another paragraph")
        }
        OpKind::Inserted => Learning::Nothing("inserted without a source paragraph to learn from"),
        OpKind::Deleted => Learning::Nothing("a deletion has no corrected text to learn"),
        OpKind::Edited | OpKind::MovedEdited | OpKind::Split | OpKind::Merged => {
            if op.edits.is_empty() {
                return Learning::Nothing("only the paragraph boundaries changed");
            }
            match classify(&op.edits, rule) {
                EditClass::EntityFix(fixes)
                    if matches!(op.kind, OpKind::Edited | OpKind::MovedEdited) =>
                {
                    Learning::Dictionary(fixes)
                }
                _ => Learning::Pair,
            }
        }
    }
}
