//! Wire types of `/v1/memory`: facts, their edits, forgetting, extraction
//! from a text, refusals, and the facts a chat answer was given.

use super::ApiError;
use forja_control::memory::{Outcome, RawFact};
use forja_store::{Fact, Forgotten, MemoryRejection, Remembered};
use serde::Deserialize;
use serde_json::{json, Value};

/// Most facts in one `POST /v1/memory/facts`.
pub const MAX_FACTS_PER_REQUEST: usize = 64;
/// Most paragraphs one extraction request reads.
pub const MAX_PARAGRAPHS: usize = 32;

/// A fact as a client states it (`POST` and `PATCH /v1/memory/facts`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactIn {
    /// Who or what.
    pub subject: String,
    /// The relation.
    pub verb: String,
    /// The other side.
    pub object: String,
    /// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    #[serde(default)]
    pub since: Option<String>,
}

impl From<FactIn> for RawFact {
    fn from(f: FactIn) -> RawFact {
        RawFact { subject: f.subject, verb: f.verb, object: f.object, since: f.since }
    }
}

/// `POST /v1/memory/facts`: one fact, or `{"facts": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AddFacts {
    /// Several.
    Many {
        /// The facts.
        facts: Vec<FactIn>,
    },
    /// One.
    One(FactIn),
}

impl AddFacts {
    /// The facts, at most [`MAX_FACTS_PER_REQUEST`].
    pub fn into_facts(self) -> Result<Vec<RawFact>, ApiError> {
        let v = match self {
            AddFacts::Many { facts } => facts,
            AddFacts::One(f) => vec![f],
        };
        if v.is_empty() || v.len() > MAX_FACTS_PER_REQUEST {
            return Err(ApiError::bad("facts", format!("send 1 to {MAX_FACTS_PER_REQUEST} facts")));
        }
        Ok(v.into_iter().map(RawFact::from).collect())
    }
}

/// `POST /v1/memory/forget`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forget {
    /// The person or thing to forget.
    pub entity: String,
}

/// `POST /v1/memory/extract`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extract {
    /// The text (paragraphs separated by blank lines).
    pub text: String,
    /// What it is (a document title), kept as the facts' source.
    #[serde(default)]
    pub source: Option<String>,
}

/// A fact (its `object` is the fact's object: facts carry no type tag).
pub fn fact(f: &Fact) -> Value {
    json!({
        "id": f.id, "subject": f.subject, "verb": f.verb, "object": f.object, "since": f.since, "source": {"kind": f.source_kind, "ref": f.source_ref},
        "confidence": f.confidence, "mentions": f.mentions, "created_at": f.created_at,
        "updated_at": f.updated_at, "current": f.is_current(), "superseded_by": f.superseded_by,
        "superseded_at": f.superseded_at,
    })
}

/// A fact as a chat answer lists it (`memory_facts`).
pub fn used(i: usize, f: &Fact) -> Value {
    json!({"index": i, "id": f.id, "subject": f.subject, "verb": f.verb, "object": f.object,
           "since": f.since})
}

/// What remembering did.
pub fn remembered(r: &Remembered) -> Value {
    match r {
        Remembered::New { fact: f, superseded } => json!({
            "result": "new", "fact": fact(f),
            "superseded": superseded.iter().map(fact).collect::<Vec<_>>(),
        }),
        Remembered::Merged(f) => json!({"result": "merged", "fact": fact(f), "superseded": []}),
    }
}

/// What an extraction or an add did.
pub fn outcome(o: &Outcome) -> Value {
    json!({
        "object": "memory.outcome",
        "stored": o.stored.iter().map(remembered).collect::<Vec<_>>(),
        "rejected": o.rejected.iter().map(|(t, r)| json!({"fact": t, "reason": r})).collect::<Vec<_>>(),
    })
}

/// What forgetting removed.
pub fn forgotten(f: &Forgotten) -> Value {
    json!({"object": "memory.forgotten", "facts": f.facts, "rejections": f.rejections,
           "restored": f.restored})
}

/// A refusal.
pub fn rejection(r: &MemoryRejection) -> Value {
    json!({"id": r.id, "source": {"kind": r.source_kind, "ref": r.source_ref},
           "reason": r.reason, "fact": r.text, "created_at": r.created_at})
}
