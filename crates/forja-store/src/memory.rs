//! Entity memory's durable half: a tenant's subject-verb-object facts with
//! their source, confidence and history (a fact another superseded keeps
//! pointing at its successor), the words of their entities for recall, and
//! the facts that were refused with the reason. What makes two facts the
//! same or one supersede another is decided by the caller (forja-control's
//! `memory`), which passes folded keys and a [`Slot`]; the store applies it
//! in one transaction, so two extractions racing cannot both insert.

use crate::{Result, Timestamp};

/// Most facts (current and past) a tenant keeps; past it new facts are
/// refused until some are forgotten.
pub const MAX_FACTS: u64 = 20_000;

/// Most refusals kept per tenant (older ones are dropped).
pub const MAX_REJECTIONS: u64 = 1_000;

/// A remembered fact.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    /// `mem-…`.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// Who or what it is about, as shown.
    pub subject: String,
    /// The relation.
    pub verb: String,
    /// The other side.
    pub object: String,
    /// Since when it holds (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`).
    pub since: Option<String>,
    /// `subject` folded (lower case, no accents, words separated by one
    /// space, a leading article dropped).
    pub subject_key: String,
    /// `verb` folded, trailing prepositions dropped.
    pub verb_key: String,
    /// `object` folded.
    pub object_key: String,
    /// `conversation`, `document` or `manual`.
    pub source_kind: String,
    /// The completion id, document title, … it came from.
    pub source_ref: Option<String>,
    /// 0..=1.
    pub confidence: f32,
    /// How many times it was stated.
    pub mentions: u64,
    /// When it was first remembered.
    pub created_at: Timestamp,
    /// When it was last stated or edited.
    pub updated_at: Timestamp,
    /// The fact that replaced it (`None` while current, or after its
    /// successor was forgotten).
    pub superseded_by: Option<String>,
    /// When it stopped being current (`None`: current).
    pub superseded_at: Option<Timestamp>,
}

impl Fact {
    /// True while no other fact superseded it.
    pub fn is_current(&self) -> bool {
        self.superseded_at.is_none()
    }
}

/// Which current facts a new one replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// None: facts with this relation accumulate ("likes", "visited").
    None,
    /// One object per subject and verb ("lives in": a new city replaces
    /// the old one).
    Subject,
    /// One subject per verb and object (a role: "is mayor" held by one
    /// person at a time).
    Object,
}

/// A fact to remember (or the new content of an edited one).
#[derive(Debug, Clone, PartialEq)]
pub struct NewFact {
    /// See [`Fact`].
    pub subject: String,
    /// See [`Fact`].
    pub verb: String,
    /// See [`Fact`].
    pub object: String,
    /// See [`Fact`].
    pub since: Option<String>,
    /// See [`Fact`].
    pub subject_key: String,
    /// See [`Fact`].
    pub verb_key: String,
    /// See [`Fact`].
    pub object_key: String,
    /// The folded words recall finds it by (its subject's and object's).
    pub terms: Vec<String>,
    /// See [`Fact`].
    pub source_kind: String,
    /// See [`Fact`].
    pub source_ref: Option<String>,
    /// See [`Fact`].
    pub confidence: f32,
    /// Which facts it supersedes.
    pub slot: Slot,
}

/// What remembering did.
#[derive(Debug, Clone, PartialEq)]
pub enum Remembered {
    /// A new fact, and the current facts it superseded.
    New {
        /// The fact.
        fact: Fact,
        /// Facts no longer current because of it.
        superseded: Vec<Fact>,
    },
    /// The same current fact was known: its mentions, confidence and time
    /// were updated.
    Merged(Fact),
}

impl Remembered {
    /// The fact stored or merged into.
    pub fn fact(&self) -> &Fact {
        match self {
            Remembered::New { fact, .. } | Remembered::Merged(fact) => fact,
        }
    }
}

/// Which facts to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FactFilter {
    /// Only facts whose subject or object contains these folded words, in
    /// a row.
    pub entity: Option<String>,
    /// Superseded facts too.
    pub history: bool,
    /// Most facts, newest first.
    pub limit: usize,
}

/// A fact that was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRejection {
    /// Sequence number.
    pub id: i64,
    /// Owner.
    pub tenant_id: String,
    /// See [`Fact::source_kind`].
    pub source_kind: String,
    /// See [`Fact::source_ref`].
    pub source_ref: Option<String>,
    /// Why (one line).
    pub reason: String,
    /// What was refused (scrubbed, clipped).
    pub text: String,
    /// When.
    pub created_at: Timestamp,
}

/// What forgetting an entity removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Facts (current and past) that named it.
    pub facts: u64,
    /// Refusals whose text named it.
    pub rejections: u64,
    /// Facts it had superseded that are current again.
    pub restored: u64,
}

/// Storage of entity memory (part of every [`crate::Store`]).
pub trait Memory {
    /// Remembers a fact: merges it into the same current fact (same three
    /// keys) or inserts it, superseding the current facts its slot names.
    /// Charged to the tenant's quota; `Conflict` past [`MAX_FACTS`].
    fn remember_fact(&self, tenant_id: &str, fact: &NewFact) -> Result<Remembered>;
    /// A tenant's facts, newest first.
    fn memory_facts(&self, tenant_id: &str, filter: &FactFilter) -> Result<Vec<Fact>>;
    /// One fact; another tenant's is `NotFound`.
    fn memory_fact(&self, tenant_id: &str, id: &str) -> Result<Fact>;
    /// Replaces a fact's content (its slot is not applied: an edit
    /// corrects, it does not supersede).
    fn edit_memory_fact(&self, tenant_id: &str, id: &str, fact: &NewFact) -> Result<Fact>;
    /// Deletes a fact (refunded); the facts it superseded are current
    /// again.
    fn forget_memory_fact(&self, tenant_id: &str, id: &str) -> Result<Fact>;
    /// Deletes every fact whose subject or object contains the folded
    /// words `key` in a row, and every refusal whose text does.
    fn forget_memory_entity(&self, tenant_id: &str, key: &str) -> Result<Forgotten>;
    /// Current facts with any of `terms`, the most matched terms first,
    /// then the newest.
    fn recall_memory(&self, tenant_id: &str, terms: &[String], limit: usize) -> Result<Vec<Fact>>;
    /// Records a refused fact (`text_key` is its folded text).
    fn reject_memory_fact(
        &self,
        tenant_id: &str,
        r: &MemoryRejection,
        text_key: &str,
    ) -> Result<()>;
    /// A tenant's refusals, newest first.
    fn memory_rejections(&self, tenant_id: &str, limit: usize) -> Result<Vec<MemoryRejection>>;
}
