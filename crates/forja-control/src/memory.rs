//! Entity memory: subject-verb-object facts a tenant's users and documents
//! state, remembered across conversations (seed 004).
//!
//! - **Extraction** is the served model's job, under [`schema`] (a JSON
//!   schema the server compiles with llguidance), prompted by
//!   [`extraction_messages`]. What it writes is then checked here: a fact
//!   whose subject or object is not in the text (a small model invents),
//!   that is empty, too long, or carries personal data other than a name
//!   is refused, and the refusal is recorded with its reason.
//! - **Normalisation**: entities through the tenant's entity dictionary
//!   (a known misspelling becomes its fix), then folded into keys (lower
//!   case, no accents, one leading article dropped); verbs lose trailing
//!   prepositions and first-person forms become third-person ("vivo en" →
//!   `vive`); the feminine forms of roles fold to one key (`alcaldesa` →
//!   `alcalde`).
//! - **Updates**: the same three keys merge (mentions counted). A new fact
//!   supersedes current ones by its [`Slot`]: a role after a copula ("X es
//!   alcalde") is held by one subject at a time; the relations in
//!   `SINGLE` ("vive en", "abre a las", "works at") have one object per
//!   subject; every other relation accumulates. Superseded facts are kept
//!   as history. The rule is lexical and says so: "Ana es vecina" and
//!   "Luis es vecino" do not conflict because `vecino` is not a role.
//! - **Recall** finds the current facts whose subject or object shares a
//!   word with the request (stop words aside), most shared words first.

use crate::{clip, Control, Result};
use forja_core::text::fold;
use forja_core::{ChatMessage, Role};
use forja_data::pii::DocScrub;
use forja_store::{
    DictionaryEntry, Fact, FactFilter, Forgotten, MemoryRejection, NewFact, Remembered, Slot,
    Tenant,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// Longest subject and object, in characters.
pub const MAX_ENTITY: usize = 80;
/// Longest verb, in characters.
pub const MAX_VERB: usize = 40;
/// Most facts one extraction may return.
pub const MAX_PER_TEXT: usize = 4;
/// Most characters of a text given to extraction.
pub const MAX_TEXT: usize = 1500;
/// Most facts recalled into one prompt.
pub const MAX_RECALL: usize = 32;

/// Where a fact came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A user's turn in a served conversation (the completion id).
    Conversation(String),
    /// A document (its title or id).
    Document(String),
    /// Added or edited by hand.
    Manual,
}

impl Source {
    fn kind(&self) -> &'static str {
        match self {
            Source::Conversation(_) => "conversation",
            Source::Document(_) => "document",
            Source::Manual => "manual",
        }
    }

    fn reference(&self) -> Option<String> {
        match self {
            Source::Conversation(r) | Source::Document(r) => Some(clip(r, 200)),
            Source::Manual => None,
        }
    }

    /// How much a fact from here is trusted: a user's own statement 0.9, a
    /// document 0.8, an operator 1.0.
    fn confidence(&self) -> f32 {
        match self {
            Source::Conversation(_) => 0.9,
            Source::Document(_) => 0.8,
            Source::Manual => 1.0,
        }
    }
}

/// A fact as extraction (or a client) states it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFact {
    /// Who or what.
    pub subject: String,
    /// The relation.
    pub verb: String,
    /// The other side.
    pub object: String,
    /// Since when (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`).
    #[serde(default)]
    pub since: Option<String>,
}

impl RawFact {
    fn line(&self) -> String {
        let since = self.since.as_deref().map(|s| format!(" (since {s})")).unwrap_or_default();
        format!("{} | {} | {}{since}", self.subject, self.verb, self.object)
    }
}

/// What one call to [`Control::remember`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Facts stored or merged.
    pub stored: Vec<Remembered>,
    /// Facts refused: the fact as a line, and why.
    pub rejected: Vec<(String, String)>,
}

/// A fact as one line: `subject | verb | object (since …)`, as prompts
/// show it.
pub fn fact_line(f: &Fact) -> String {
    RawFact {
        subject: f.subject.clone(),
        verb: f.verb.clone(),
        object: f.object.clone(),
        since: f.since.clone(),
    }
    .line()
}

/// The JSON schema extraction answers under.
pub fn schema() -> Value {
    let text = |max: usize| json!({"type": "string", "minLength": 1, "maxLength": max});
    json!({
        "type": "object",
        "properties": {
            "facts": {
                "type": "array",
                "maxItems": MAX_PER_TEXT,
                "items": {
                    "type": "object",
                    "properties": {
                        "subject": text(MAX_ENTITY),
                        "verb": text(MAX_VERB),
                        "object": text(MAX_ENTITY),
                        "since": {"type": "string", "pattern": r"^[0-9]{4}(-[0-9]{2}){0,2}$"}
                    },
                    "required": ["subject", "verb", "object"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["facts"],
        "additionalProperties": false
    })
}

const SYSTEM: &str = "You read a text and write the facts it states as JSON: each fact is a \
subject, a verb and an object copied from the text, and `since` (YYYY-MM) when the text says \
since when. Write only facts the text states; questions state none.";

const EXAMPLES: &[(&str, &str)] = &[
    (
        "Mi vecino Pedro Sanz trabaja de conductor en la empresa de autobuses.",
        r#"{"facts": [{"subject": "Pedro Sanz", "verb": "trabaja en", "object": "empresa de autobuses"}]}"#,
    ),
    (
        "Desde marzo de 2025 la concejala de Cultura es Rosa Vidal, y el mercado cierra los lunes.",
        r#"{"facts": [{"subject": "Rosa Vidal", "verb": "es", "object": "concejala de Cultura", "since": "2025-03"}, {"subject": "mercado", "verb": "cierra", "object": "los lunes"}]}"#,
    ),
    ("¿A qué hora abre la biblioteca?", r#"{"facts": []}"#),
];

/// The conversation that asks the model for the facts of `text` (clipped
/// to [`MAX_TEXT`] characters).
pub fn extraction_messages(text: &str) -> Vec<ChatMessage> {
    let mut m = vec![ChatMessage { role: Role::System, content: SYSTEM.into() }];
    for (q, a) in EXAMPLES {
        m.push(ChatMessage { role: Role::User, content: format!("Text: {q}") });
        m.push(ChatMessage { role: Role::Assistant, content: (*a).into() });
    }
    let text: String = text.chars().take(MAX_TEXT).collect();
    m.push(ChatMessage { role: Role::User, content: format!("Text: {text}") });
    m
}

/// The facts in an extraction's output; `Err` (the reason) when it is not
/// the schema's JSON (a generation cut short by its token limit).
pub fn parse(output: &str) -> std::result::Result<Vec<RawFact>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Out {
        facts: Vec<RawFact>,
    }
    serde_json::from_str::<Out>(output).map(|o| o.facts).map_err(|e| {
        format!("the output does not follow the fact schema: {}", clip(&e.to_string(), 120))
    })
}

const ARTICLES: &[&str] = &["el", "la", "los", "las", "un", "una", "the", "a", "an"];
const PREPOSITIONS: &[&str] = &[
    "en", "de", "a", "al", "del", "desde", "in", "at", "of", "on", "for", "since", "el", "la",
    "las", "los",
];
const STOP: &[&str] = &[
    "de", "del", "la", "el", "los", "las", "un", "una", "y", "o", "en", "a", "al", "que", "quien",
    "quienes", "es", "son", "se", "su", "sus", "por", "para", "con", "lo", "le", "mi", "me", "te",
    "desde", "hasta", "como", "cual", "donde", "cuando", "que", "hay", "esta", "este", "esa",
    "ese", "the", "an", "of", "in", "on", "at", "to", "is", "are", "who", "what", "where", "when",
    "and", "or", "for", "with", "my", "his", "her", "does", "do", "which", "was", "sr", "sra",
    "don", "dona",
];
const COPULAS: &[&str] = &["es", "son", "sera", "fue", "era", "soy", "is", "are", "was", "will be"];
/// Roles one person holds at a time, by their folded masculine form.
const ROLES: &[&str] = &[
    "alcalde",
    "teniente",
    "concejal",
    "secretario",
    "interventor",
    "tesorero",
    "presidente",
    "vicepresidente",
    "director",
    "jefe",
    "portavoz",
    "gerente",
    "mayor",
    "secretary",
    "president",
    "chair",
    "chairman",
    "treasurer",
    "councillor",
    "councilor",
    "manager",
    "ceo",
    "head",
];
const FEMININE: &[(&str, &str)] = &[
    ("alcaldesa", "alcalde"),
    ("tenienta", "teniente"),
    ("concejala", "concejal"),
    ("secretaria", "secretario"),
    ("interventora", "interventor"),
    ("tesorera", "tesorero"),
    ("presidenta", "presidente"),
    ("vicepresidenta", "vicepresidente"),
    ("directora", "director"),
    ("jefa", "jefe"),
    ("gerenta", "gerente"),
    ("chairwoman", "chairman"),
];
/// Relations with one object per subject (verb keys).
const SINGLE: &[&str] = &[
    "vive",
    "reside",
    "trabaja",
    "nacio",
    "se llama",
    "abre",
    "cierra",
    "cuesta",
    "empieza",
    "comienza",
    "termina",
    "acaba",
    "se celebra",
    "lives",
    "resides",
    "works",
    "was born",
    "is called",
    "opens",
    "closes",
    "costs",
    "starts",
    "begins",
    "ends",
    "takes place",
];
const FIRST_PERSON: &[(&str, &str)] = &[
    ("vivo", "vive"),
    ("resido", "reside"),
    ("trabajo", "trabaja"),
    ("naci", "nacio"),
    ("me llamo", "se llama"),
    ("soy", "es"),
    ("live", "lives"),
    ("work", "works"),
    ("am", "is"),
];

/// Folded words of `s`: lower case, no accents, runs of anything but
/// letters and digits as one space.
fn words(s: &str) -> Vec<String> {
    fold(s)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| FEMININE.iter().find(|(f, _)| *f == w).map_or(w, |(_, m)| *m).to_string())
        .collect()
}

/// An entity's key: its folded words without one leading article (role
/// nouns in their masculine form).
pub fn entity_key(s: &str) -> String {
    let mut w = words(s);
    if w.len() > 1 && ARTICLES.contains(&w[0].as_str()) {
        w.remove(0);
    }
    w.join(" ")
}

/// A verb's key: folded, trailing prepositions and articles dropped,
/// first-person forms in the third person.
pub fn verb_key(s: &str) -> String {
    let mut w: Vec<String> = fold(s)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    while w.len() > 1 && PREPOSITIONS.contains(&w[w.len() - 1].as_str()) {
        w.pop();
    }
    // A Spanish infinitive as the third person ("vivir en" → `vive`).
    if let Some(first) = w.first_mut() {
        *first = match first.as_str() {
            "ser" => "es".into(),
            "estar" => "esta".into(),
            "ir" => "va".into(),
            v if v.len() > 3 && v.ends_with("ar") => format!("{}a", &v[..v.len() - 2]),
            v if v.len() > 3 && (v.ends_with("er") || v.ends_with("ir")) => {
                format!("{}e", &v[..v.len() - 2])
            }
            v => v.into(),
        };
    }
    let joined = w.join(" ");
    for (first, third) in FIRST_PERSON {
        if joined == *first {
            return (*third).to_string();
        }
        if let Some(rest) = joined.strip_prefix(&format!("{first} ")) {
            return format!("{third} {rest}");
        }
    }
    joined
}

/// Whether an entity names a role ("la alcaldesa", "concejal de Cultura").
fn is_role(entity: &str) -> bool {
    ROLES.contains(&entity_key(entity).split(' ').next().unwrap_or_default())
}

/// `verb` without the object a small model often repeats in it ("trabajar
/// en el centro de salud" with object "centro de salud" → "trabajar en"),
/// and without trailing articles.
fn tidy_verb(verb: &str, object: &str) -> String {
    let mut v: Vec<&str> = verb.split_whitespace().collect();
    let o: Vec<String> = object.split_whitespace().map(fold).collect();
    if v.len() > o.len() && v[v.len() - o.len()..].iter().map(|w| fold(w)).eq(o.iter().cloned()) {
        v.truncate(v.len() - o.len());
    }
    while v.len() > 1 && ARTICLES.contains(&fold(v[v.len() - 1]).as_str()) {
        v.pop();
    }
    v.join(" ")
}

/// Which current facts a fact with these keys supersedes.
pub fn slot(verb_key: &str, object_key: &str) -> Slot {
    let head = object_key.split(' ').next().unwrap_or_default();
    if COPULAS.contains(&verb_key) {
        if ROLES.contains(&head) {
            Slot::Object
        } else {
            Slot::None
        }
    } else if SINGLE.contains(&verb_key) {
        Slot::Subject
    } else {
        Slot::None
    }
}

/// The words recall looks a text up by (stop words dropped, at most 64).
pub fn terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in words(text) {
        if w.chars().count() >= 2 && !STOP.contains(&w.as_str()) && !out.contains(&w) {
            out.push(w);
            if out.len() == 64 {
                break;
            }
        }
    }
    out
}

/// Words that introduce oneself rather than name ("Soy Ana Ruiz"), the
/// longer first.
const INTRO: &[&[&str]] = &[
    &["mi", "nombre", "es"],
    &["my", "name", "is"],
    &["me", "llamo"],
    &["yo", "soy"],
    &["i", "am"],
    &["i'm"],
    &["soy"],
    &["yo"],
];

/// `entity` through the dictionary: an entity that is a known misspelling
/// (compared folded) becomes its fix. A self-introduction is dropped.
fn normalize(entity: &str, dict: &[DictionaryEntry]) -> String {
    let w: Vec<&str> = entity.split_whitespace().collect();
    let cue = INTRO
        .iter()
        .find(|c| w.len() > c.len() && w.iter().zip(c.iter()).all(|(x, c)| fold(x) == *c))
        .map_or(0, |c| c.len());
    let entity = w[cue..].join(" ");
    let key = entity_key(&entity);
    dict.iter().find(|e| entity_key(&e.wrong) == key).map_or(entity, |e| e.right.clone())
}

/// `since` when it is a real date whose year the text names (when there
/// is a text); `None` otherwise.
fn since_in(since: Option<&str>, text: Option<&str>) -> Option<String> {
    let s = since?.trim();
    let parts: Vec<&str> = s.split('-').collect();
    let ok = match parts.as_slice() {
        [y] => y.len() == 4,
        [y, m] => y.len() == 4 && matches!(m.parse::<u32>(), Ok(1..=12)),
        [y, m, d] => {
            y.len() == 4
                && matches!(m.parse::<u32>(), Ok(1..=12))
                && matches!(d.parse::<u32>(), Ok(1..=31))
        }
        _ => false,
    } && parts[0].bytes().all(|b| b.is_ascii_digit());
    (ok && text.is_none_or(|t| t.contains(parts[0]))).then(|| s.to_string())
}

/// Whether the folded words `needle` occur in a row in `hay` (`hay` is
/// `" w1 w2 … "`).
fn contains_words(hay: &str, needle: &str) -> bool {
    !needle.is_empty() && hay.contains(&format!(" {needle} "))
}

impl Control {
    /// Checks, normalises, scrubs and stores facts from `source`. With
    /// `grounded_in` (the text they were extracted from), a subject or
    /// object that is not in it is refused. Refusals are recorded.
    pub fn remember(
        &self,
        tenant: &Tenant,
        facts: &[RawFact],
        source: &Source,
        grounded_in: Option<&str>,
    ) -> Result<Outcome> {
        let dict = self.store.dictionary(&tenant.id)?;
        let scrubber = self.curator.memory_scrubber(tenant)?;
        let grounding = grounded_in.map(|t| format!(" {} ", words(t).join(" ")));
        let mut out = Outcome::default();
        for raw in facts {
            match self.check(raw, &dict, &scrubber, source, grounding.as_deref(), grounded_in) {
                Ok(f) => out.stored.push(self.store.remember_fact(&tenant.id, &f)?),
                Err(reason) => {
                    let line = self.reject(tenant, source, &raw.line(), &reason)?;
                    out.rejected.push((line, reason));
                }
            }
        }
        Ok(out)
    }

    /// Records a refusal of `text` (scrubbed here like facts, then
    /// clipped); returns the text as recorded.
    pub fn reject(
        &self,
        tenant: &Tenant,
        source: &Source,
        text: &str,
        reason: &str,
    ) -> Result<String> {
        let scrubber = self.curator.memory_scrubber(tenant)?;
        let text = clip(&scrubber.scrub(text, &mut DocScrub::default()).text, 500);
        let r = MemoryRejection {
            id: 0,
            tenant_id: tenant.id.clone(),
            source_kind: source.kind().into(),
            source_ref: source.reference(),
            reason: clip(reason, 300),
            text: text.clone(),
            created_at: 0,
        };
        self.store.reject_memory_fact(&tenant.id, &r, &words(&text).join(" "))?;
        Ok(text)
    }

    fn check(
        &self,
        raw: &RawFact,
        dict: &[DictionaryEntry],
        scrubber: &forja_data::pii::Scrubber,
        source: &Source,
        grounding: Option<&str>,
        text: Option<&str>,
    ) -> std::result::Result<NewFact, String> {
        let limits = [
            ("subject", &raw.subject, MAX_ENTITY),
            ("verb", &raw.verb, MAX_VERB),
            ("object", &raw.object, MAX_ENTITY),
        ];
        for (field, v, max) in limits {
            if v.trim().is_empty() {
                return Err(format!("`{field}` is empty"));
            }
            if v.chars().count() > max {
                return Err(format!("`{field}` is longer than {max} characters"));
            }
            if v.chars().any(char::is_control) {
                return Err(format!("`{field}` has control characters"));
            }
        }
        let (mut subject, mut object) =
            (normalize(&raw.subject, dict), normalize(&raw.object, dict));
        let verb = tidy_verb(&raw.verb, &object);
        if COPULAS.contains(&verb_key(&verb).as_str()) && is_role(&subject) && !is_role(&object) {
            // "La alcaldesa es Ana Ruiz": the person is the subject.
            std::mem::swap(&mut subject, &mut object);
        }
        let (sk, vk, ok) = (entity_key(&subject), verb_key(&verb), entity_key(&object));
        for (field, key) in [("subject", &sk), ("verb", &vk), ("object", &ok)] {
            if key.is_empty() {
                return Err(format!("`{field}` has no letters or digits"));
            }
        }
        if sk == ok {
            return Err("the subject and the object are the same".into());
        }
        for (field, v) in [("subject", &subject), ("object", &object)] {
            if terms(v).is_empty() {
                return Err(format!("`{field}` names nothing (only common words)"));
            }
        }
        if let Some(g) = grounding {
            // Checked on the keys of what the model wrote (before the
            // dictionary), so a fix of a misspelling still grounds.
            for (field, v) in [("subject", &raw.subject), ("object", &raw.object)] {
                let bare = normalize(v, &[]);
                let found = [v.as_str(), bare.as_str()].into_iter().any(|x| {
                    contains_words(g, &entity_key(x)) || contains_words(g, &words(x).join(" "))
                });
                if !found {
                    return Err(format!("the {field} `{}` is not in the text", clip(v, 60)));
                }
            }
        }
        let mut doc = DocScrub::default();
        let mut found = Vec::new();
        let mut scrubbed = Vec::new();
        for v in [&subject, &verb, &object] {
            let s = scrubber.scrub(v, &mut doc);
            found.extend(s.counts.keys().map(|k| k.as_str()));
            scrubbed.push(s.text);
        }
        if !found.is_empty() {
            found.sort_unstable();
            found.dedup();
            return Err(format!(
                "it holds personal data memory does not keep ({})",
                found.join(", ")
            ));
        }
        let mut terms = terms(&subject);
        for t in self::terms(&object) {
            if !terms.contains(&t) {
                terms.push(t);
            }
        }
        Ok(NewFact {
            slot: slot(&vk, &ok),
            subject,
            verb,
            object,
            since: since_in(raw.since.as_deref(), text),
            subject_key: sk,
            verb_key: vk,
            object_key: ok,
            terms,
            source_kind: source.kind().into(),
            source_ref: source.reference(),
            confidence: source.confidence(),
        })
    }

    /// Replaces a fact's content by hand (checked like any other).
    pub fn edit_fact(&self, tenant: &Tenant, id: &str, raw: &RawFact) -> Result<Fact> {
        // Another tenant's fact is not found before anything is checked.
        self.store.memory_fact(&tenant.id, id)?;
        Ok(self.store.edit_memory_fact(&tenant.id, id, &self.manual(tenant, raw)?)?)
    }

    /// Remembers a fact given by hand (a refusal is the caller's error, not
    /// recorded).
    pub fn add_fact(&self, tenant: &Tenant, raw: &RawFact) -> Result<Remembered> {
        Ok(self.store.remember_fact(&tenant.id, &self.manual(tenant, raw)?)?)
    }

    /// A fact given by hand, checked like extracted ones (without
    /// grounding); a refusal is an invalid `fact`.
    fn manual(&self, tenant: &Tenant, raw: &RawFact) -> Result<NewFact> {
        let dict = self.store.dictionary(&tenant.id)?;
        let scrubber = self.curator.memory_scrubber(tenant)?;
        self.check(raw, &dict, &scrubber, &Source::Manual, None, None)
            .map_err(|e| crate::ControlError::invalid("fact", e))
    }

    /// The current facts about what `text` mentions, at most `k`.
    pub fn recall(&self, tenant: &Tenant, text: &str, k: usize) -> Result<Vec<Fact>> {
        let terms = terms(text);
        Ok(self.store.recall_memory(&tenant.id, &terms, k.min(MAX_RECALL))?)
    }

    /// Forgets every fact naming `entity` (whole words, folded), and every
    /// refusal whose text does.
    pub fn forget_entity(&self, tenant: &Tenant, entity: &str) -> Result<Forgotten> {
        let key = entity_key(entity);
        if key.is_empty() {
            return Err(crate::ControlError::invalid("entity", "name someone or something"));
        }
        Ok(self.store.forget_memory_entity(&tenant.id, &key)?)
    }

    /// A tenant's facts (`entity` folded like a key).
    pub fn facts(
        &self,
        tenant: &Tenant,
        entity: Option<&str>,
        history: bool,
        limit: usize,
    ) -> Result<Vec<Fact>> {
        let filter =
            FactFilter { entity: entity.map(entity_key).filter(|k| !k.is_empty()), history, limit };
        Ok(self.store.memory_facts(&tenant.id, &filter)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_articles_roles_and_persons() {
        assert_eq!(entity_key("la Alcaldesa"), "alcalde");
        assert_eq!(entity_key("  Luis  Gil "), "luis gil");
        assert_eq!(entity_key("El"), "el");
        assert_eq!(verb_key("vive en"), "vive");
        assert_eq!(verb_key("Vivo en la"), "vive");
        assert_eq!(verb_key("me llamo"), "se llama");
        assert_eq!(verb_key("es"), "es");
        assert_eq!(verb_key("vivir en"), "vive");
        assert_eq!(verb_key("trabajar en"), "trabaja");
        assert_eq!(verb_key("ser"), "es");
        assert_eq!(normalize("Soy Lucía  Quiroga", &[]), "Lucía Quiroga");
        assert_eq!(normalize("Soy", &[]), "Soy");
        assert_eq!(tidy_verb("trabajar en el centro de Salud", "centro de salud"), "trabajar en");
        assert_eq!(tidy_verb("vive en", "Madrid"), "vive en");
        assert!(is_role("La Alcaldesa") && !is_role("Ana Ruiz"));
        assert_eq!(slot("es", "alcalde de villanueva"), Slot::Object);
        assert_eq!(slot("es", "vecino"), Slot::None);
        assert_eq!(slot("vive", "madrid"), Slot::Subject);
        assert_eq!(slot("le gusta", "el futbol"), Slot::None);
        assert_eq!(terms("¿Quién es la alcaldesa de Villanueva?"), ["alcalde", "villanueva"]);
    }

    #[test]
    fn since_is_a_date_the_text_names() {
        assert_eq!(since_in(Some("2026-06"), Some("desde junio de 2026")), Some("2026-06".into()));
        assert_eq!(since_in(Some("2026-13"), None), None);
        assert_eq!(since_in(Some("2025-06"), Some("desde junio de 2026")), None);
        assert_eq!(since_in(Some("20x6"), None), None);
        assert_eq!(since_in(Some("2026-02-30"), None), Some("2026-02-30".into()));
    }

    #[test]
    fn parse_refuses_what_the_schema_does_not_allow() {
        let ok = parse(r#"{"facts": [{"subject": "Ana", "verb": "es", "object": "alcaldesa"}]}"#);
        assert_eq!(ok.unwrap()[0].object, "alcaldesa");
        assert!(parse(r#"{"facts": [{"subject": "Ana", "verb": "es""#).is_err());
        assert!(parse(r#"{"facts": [], "extra": 1}"#).is_err());
        assert!(
            parse(r#"{"facts": [{"subject": "A", "verb": "b", "object": "c", "x": 1}]}"#).is_err()
        );
    }

    #[test]
    fn the_schema_names_every_field_of_raw_fact() {
        let s = schema();
        let props = &s["properties"]["facts"]["items"]["properties"];
        for f in ["subject", "verb", "object", "since"] {
            assert!(props.get(f).is_some(), "{f}");
        }
    }
}
