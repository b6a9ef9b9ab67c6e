//! PII detection and anonymisation (placeholder: being written on the `pii` branch).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntityKind {
    /// A person's name.
    Person,
    /// An e-mail address.
    EmailAddress,
    /// A phone number.
    PhoneNumber,
    /// A payment card number (Luhn-valid).
    CreditCard,
    /// An IBAN (mod-97-valid).
    IbanCode,
    /// A Spanish DNI/NIF.
    EsNif,
    /// A Spanish NIE.
    EsNie,
    /// A Colombian cédula de ciudadanía.
    CoCedula,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// A URL.
    Url,
}

/// How findings of one kind are rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operator {
    /// `<PERSON>`.
    #[default]
    Replace,
    /// Removed.
    Redact,
    /// `*` for every character.
    Mask,
    /// Salted sha256, hex, first 16 digits.
    Hash,
    /// A consistent fake value per document.
    Pseudonym,
}

/// PII settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PiiConfig {
    /// Default operator.
    pub operator: Operator,
    /// Names that are always masked.
    pub deny_list: Vec<String>,
    /// Salt for [`Operator::Hash`].
    pub salt: String,
    /// Operator per kind.
    pub operators: BTreeMap<EntityKind, Operator>,
}

/// Placeholder.
#[derive(Debug, Clone, Default)]
pub struct Scrubber;

/// Placeholder.
#[derive(Debug, Clone, Default)]
pub struct DocScrub;

/// Placeholder.
#[derive(Debug, Clone, Default)]
pub struct Scrubbed {
    /// Text.
    pub text: String,
    /// Counts.
    pub counts: BTreeMap<EntityKind, u32>,
}

/// Placeholder.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Kind.
    pub kind: EntityKind,
    /// Start.
    pub start: usize,
    /// End.
    pub end: usize,
    /// Score.
    pub score: f32,
}

impl Scrubber {
    /// Placeholder.
    pub fn new(_: &PiiConfig) -> crate::Result<Scrubber> {
        Ok(Scrubber)
    }
    /// Placeholder.
    pub fn scrub(&self, text: &str, _: &mut DocScrub) -> Scrubbed {
        Scrubbed { text: text.to_string(), counts: BTreeMap::new() }
    }
    /// Placeholder.
    pub fn analyze(&self, _: &str) -> Vec<Finding> {
        Vec::new()
    }
}

impl EntityKind {
    /// Placeholder.
    pub fn as_str(self) -> &'static str {
        "X"
    }
}

/// Placeholder.
pub fn audit(_: &str) -> Vec<Finding> {
    Vec::new()
}
