//! The PII vocabulary and settings: [`EntityKind`], [`Operator`], [`PiiConfig`]
//! (serde, read from the `[pii]` TOML table) and its validation.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{DataError, Result};

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

impl EntityKind {
    /// Every kind, in declaration order.
    pub const ALL: [EntityKind; 10] = [
        EntityKind::Person,
        EntityKind::EmailAddress,
        EntityKind::PhoneNumber,
        EntityKind::CreditCard,
        EntityKind::IbanCode,
        EntityKind::EsNif,
        EntityKind::EsNie,
        EntityKind::CoCedula,
        EntityKind::IpAddress,
        EntityKind::Url,
    ];

    /// The Presidio-style name (`PERSON`, `EMAIL_ADDRESS`, ...), as in configs and
    /// in `<PERSON>` placeholders.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Person => "PERSON",
            EntityKind::EmailAddress => "EMAIL_ADDRESS",
            EntityKind::PhoneNumber => "PHONE_NUMBER",
            EntityKind::CreditCard => "CREDIT_CARD",
            EntityKind::IbanCode => "IBAN_CODE",
            EntityKind::EsNif => "ES_NIF",
            EntityKind::EsNie => "ES_NIE",
            EntityKind::CoCedula => "CO_CEDULA",
            EntityKind::IpAddress => "IP_ADDRESS",
            EntityKind::Url => "URL",
        }
    }

    /// Position in [`EntityKind::ALL`], for per-kind tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntityKind {
    type Err = DataError;

    /// Parses the Presidio-style name, case-insensitively.
    fn from_str(s: &str) -> Result<Self> {
        EntityKind::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(s.trim())).ok_or_else(
            || {
                let names: Vec<&str> = EntityKind::ALL.iter().map(|k| k.as_str()).collect();
                DataError::Config(format!(
                    "unknown PII entity kind `{s}`; expected one of {}",
                    names.join(", ")
                ))
            },
        )
    }
}

/// How findings of one kind are rewritten (the Presidio anonymizer operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operator {
    /// `<PERSON>`, `<EMAIL_ADDRESS>`, ...
    #[default]
    Replace,
    /// Removed (the double space it leaves is collapsed).
    Redact,
    /// Every letter and digit replaced by [`PiiConfig::mask_char`]; length and
    /// separators kept.
    Mask,
    /// The first 16 hex digits of `sha256(salt + value)`.
    Hash,
    /// A fake value, consistent within one document (see [`crate::pii::DocScrub`]).
    Pseudonym,
}

/// PII settings, the `[pii]` table of the curation config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PiiConfig {
    /// The kinds looked for (default: all). Deny-list hits are reported whatever this says.
    pub enabled: Vec<EntityKind>,
    /// Findings scoring below this are ignored (default 0.5). Deny-list hits score 1.
    pub min_score: f32,
    /// Names always masked wherever they occur (case-, accent- and
    /// whitespace-insensitive, whole words).
    pub deny_list: Vec<String>,
    /// Names never masked, like Presidio's `allow_list` (public officials in
    /// minutes, a tenant's product names): a finding whose words, folded
    /// like `deny_list` and without a leading title (D., Dña., Sr., Sra.,
    /// Don, Doña, Mr., Mrs., Ms.), are a run of whole words of an entry is
    /// dropped. Deny-list hits are masked even when allowed.
    pub allow_list: Vec<String>,
    /// The operator for kinds without an entry in `operators` (default `replace`).
    pub operator: Operator,
    /// Operator per kind, overriding `operator`.
    pub operators: BTreeMap<EntityKind, Operator>,
    /// Salt for [`Operator::Hash`] (required then) and the pseudonym draws.
    pub salt: String,
    /// The character [`Operator::Mask`] writes (default `*`; not a letter, digit or space).
    pub mask_char: char,
}

impl Default for PiiConfig {
    fn default() -> Self {
        PiiConfig {
            enabled: EntityKind::ALL.to_vec(),
            min_score: 0.5,
            deny_list: Vec::new(),
            allow_list: Vec::new(),
            operator: Operator::Replace,
            operators: BTreeMap::new(),
            salt: String::new(),
            mask_char: '*',
        }
    }
}

impl PiiConfig {
    /// The operator applied to `kind`.
    pub fn operator_for(&self, kind: EntityKind) -> Operator {
        self.operators.get(&kind).copied().unwrap_or(self.operator)
    }

    /// Checks the settings; the error names the field and what to do.
    pub(crate) fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(DataError::Config(format!(
                "pii.min_score is {}; it must be between 0 and 1 (default 0.5)",
                self.min_score
            )));
        }
        let uses_hash = self.operator == Operator::Hash
            || self.operators.values().any(|&op| op == Operator::Hash);
        if uses_hash && self.salt.is_empty() {
            return Err(DataError::Config(
                "pii.salt is empty but the hash operator is used; set pii.salt to a secret \
                 string (unsalted hashes of names and numbers can be reversed by brute force)"
                    .into(),
            ));
        }
        if self.mask_char.is_alphanumeric() || self.mask_char.is_whitespace() {
            return Err(DataError::Config(format!(
                "pii.mask_char is {:?}; use a symbol such as '*' (a letter, digit or space \
                 could form new personal data or vanish)",
                self.mask_char
            )));
        }
        for (i, name) in self.deny_list.iter().enumerate() {
            if !name.chars().any(char::is_alphanumeric) {
                return Err(DataError::Config(format!(
                    "pii.deny_list[{i}] ({name:?}) has no letters; remove it"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in EntityKind::ALL {
            assert_eq!(k.as_str().parse::<EntityKind>().unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
            assert_eq!(EntityKind::ALL[k.index()], k);
        }
        assert_eq!("email_address".parse::<EntityKind>().unwrap(), EntityKind::EmailAddress);
        assert!("NAME".parse::<EntityKind>().is_err());
    }

    fn check(json: &str, expected: std::result::Result<(), &str>) {
        let cfg: std::result::Result<PiiConfig, _> = serde_json::from_str(json);
        let got = match cfg {
            Ok(c) => c.validate().map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match (got, expected) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(want)) => assert!(e.contains(want), "{json}: {e}"),
            (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn config_validation() {
        check("{}", Ok(()));
        check(r#"{"operator":"hash","salt":"s"}"#, Ok(()));
        check(r#"{"operator":"hash"}"#, Err("pii.salt"));
        check(r#"{"operators":{"PERSON":"hash"}}"#, Err("pii.salt"));
        check(r#"{"operators":{"PERSON":"pseudonym","URL":"redact"}}"#, Ok(()));
        check(r#"{"enabled":["PERSON","IBAN_CODE"]}"#, Ok(()));
        check(r#"{"enabled":["NAME"]}"#, Err("unknown variant"));
        check(r#"{"min_score":1.5}"#, Err("pii.min_score"));
        check(r#"{"mask_char":"x"}"#, Err("pii.mask_char"));
        check(r##"{"mask_char":"#"}"##, Ok(()));
        check(r#"{"deny_list":["  "]}"#, Err("pii.deny_list[0]"));
        check(r#"{"colour":"red"}"#, Err("unknown field"));
    }

    #[test]
    fn defaults() {
        let c = PiiConfig::default();
        assert_eq!(c.enabled.len(), 10);
        assert_eq!(c.min_score, 0.5);
        assert_eq!(c.mask_char, '*');
        let mut c = c;
        c.operators.insert(EntityKind::Url, Operator::Redact);
        assert_eq!(c.operator_for(EntityKind::Url), Operator::Redact);
        assert_eq!(c.operator_for(EntityKind::Person), Operator::Replace);
    }
}
