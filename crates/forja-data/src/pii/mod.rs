//! PII detection and anonymisation: [`Scrubber`] finds personal data in a text
//! and rewrites it, [`audit`] re-checks output for the high-confidence kinds.
//!
//! Modelled on Presidio (same entity names, scores in `0..=1`, the same
//! operators), but every recognizer validates what it matches instead of
//! trusting a regex: cards pass Luhn and an issuer prefix, IBANs mod-97, DNI/NIE
//! their check letter, phones a numbering plan, IPs `std::net`. Cheap byte
//! scans decide which recognizers run (no digit: no digit recognizer; no `@`:
//! no e-mail), and there is one pass per family, not one regex per pattern.
//!
//! ```
//! use forja_data::pii::{DocScrub, Operator, PiiConfig, Scrubber};
//! let cfg = PiiConfig { operator: Operator::Pseudonym, ..PiiConfig::default() };
//! let s = Scrubber::new(&cfg).unwrap();
//! let mut doc = DocScrub::default();
//! let a = s.scrub("Soy Juan Pérez, mi móvil es 612 345 678", &mut doc);
//! let b = s.scrub("Gracias Juan Pérez", &mut doc);
//! assert!(!a.text.contains("Pérez") && !a.text.contains("612"));
//! assert!(a.text.ends_with("<PHONE_NUMBER_1>"));
//! // The same name gets the same pseudonym in every field of the document.
//! let fake = &a.text["Soy ".len()..a.text.find(',').unwrap()];
//! assert_eq!(b.text, format!("Gracias {fake}"));
//! assert!(forja_data::pii::audit(&a.text).is_empty());
//! ```
//!
//! Overlaps are resolved so that everything any kept recognizer matched stays
//! covered: a finding inside another is dropped (the container wins: a URL
//! holding an e-mail is a URL, a card is never also a phone); of two that
//! partly overlap, the higher score (then the longer) is kept whole and the
//! other is cut back to the part outside it.

mod anonymize;
mod audit;
mod config;
mod iban;
mod names;
mod numeric;
mod text;
mod web;

use serde::{Deserialize, Serialize};

pub use anonymize::{DocScrub, Scrubbed};
pub use audit::{audit, Auditor};
pub use config::{EntityKind, Operator, PiiConfig};

use names::{DenyList, Gazetteer};
use numeric::NumericKinds;

/// One piece of personal data found in a text.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What it is.
    pub kind: EntityKind,
    /// Byte offset of its first char.
    pub start: usize,
    /// Byte offset just past its last char.
    pub end: usize,
    /// Confidence in `0..=1`.
    pub score: f32,
}

/// Finds and rewrites personal data. Built once from a [`PiiConfig`] (all
/// lists and automata compiled then); `Send + Sync`, cheap to clone, meant to
/// be shared by the threads of a pipeline.
#[derive(Clone)]
pub struct Scrubber {
    enabled: [bool; 10],
    min_score: f32,
    ops: [Operator; 10],
    salt: String,
    mask_char: char,
    deny: Option<DenyList>,
    /// Allow-list entries, folded, as word lists.
    allow: Vec<Vec<String>>,
    gaz: &'static Gazetteer,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let enabled: Vec<&str> = EntityKind::ALL
            .iter()
            .filter(|k| self.enabled[k.index()])
            .map(|k| k.as_str())
            .collect();
        f.debug_struct("Scrubber")
            .field("enabled", &enabled)
            .field("min_score", &self.min_score)
            .field("ops", &self.ops)
            .field("mask_char", &self.mask_char)
            .field("deny_list", &self.deny.is_some())
            .finish_non_exhaustive()
    }
}

impl Scrubber {
    /// Validates `cfg` and compiles the recognizers.
    pub fn new(cfg: &PiiConfig) -> crate::Result<Scrubber> {
        cfg.validate()?;
        let mut enabled = [false; 10];
        for k in &cfg.enabled {
            enabled[k.index()] = true;
        }
        Ok(Scrubber {
            enabled,
            min_score: cfg.min_score,
            ops: EntityKind::ALL.map(|k| cfg.operator_for(k)),
            salt: cfg.salt.clone(),
            mask_char: cfg.mask_char,
            deny: DenyList::new(&cfg.deny_list)?,
            allow: cfg
                .allow_list
                .iter()
                .map(|e| text::fold_words(e).split(' ').map(String::from).collect::<Vec<_>>())
                .filter(|w: &Vec<String>| !w.iter().all(String::is_empty))
                .collect(),
            gaz: names::gazetteer(),
        })
    }

    /// The personal data in `text`: sorted by start, non-overlapping, of the
    /// enabled kinds and scoring at least `min_score`, plus every deny-list hit.
    pub fn analyze(&self, text: &str) -> Vec<Finding> {
        let on = |k: EntityKind| self.enabled[k.index()];
        let b = text.as_bytes();
        let mut found = Vec::new();
        let has_digit = b.iter().any(u8::is_ascii_digit);
        if has_digit {
            let kinds = NumericKinds {
                phone: on(EntityKind::PhoneNumber),
                card: on(EntityKind::CreditCard),
                nif: on(EntityKind::EsNif),
                nie: on(EntityKind::EsNie),
                cedula: on(EntityKind::CoCedula),
                ip: on(EntityKind::IpAddress),
                strict: false,
            };
            numeric::scan(text, kinds, &mut found);
            if on(EntityKind::IbanCode) {
                iban::scan(text, false, &mut found);
            }
            if on(EntityKind::IpAddress) && b.contains(&b':') {
                web::ipv6(text, &mut found);
            }
        }
        if on(EntityKind::EmailAddress) && b.contains(&b'@') {
            web::emails(text, &mut found);
        }
        if on(EntityKind::Url) && (b.contains(&b'.') || b.contains(&b':')) {
            web::urls(text, &mut found);
        }
        if on(EntityKind::Person) {
            names::find_names(text, self.gaz, &mut found);
        }
        found.retain(|f| f.score >= self.min_score && !self.allowed(&text[f.start..f.end]));
        if let Some(deny) = &self.deny {
            deny.find(text, &mut found);
        }
        resolve(text, found)
    }
}

impl Scrubber {
    /// Whether a finding's text is on the allow list (see [`PiiConfig::allow_list`]).
    fn allowed(&self, found: &str) -> bool {
        if self.allow.is_empty() {
            return false;
        }
        const TITLES: [&str; 10] =
            ["d", "dna", "sr", "sra", "don", "dona", "mr", "mrs", "ms", "srta"];
        let folded = text::fold_words(&found.replace('.', " "));
        let mut words: Vec<&str> = folded.split(' ').filter(|w| !w.is_empty()).collect();
        while words.len() > 1 && TITLES.contains(&words[0]) {
            words.remove(0);
        }
        !words.is_empty()
            && self.allow.iter().any(|e| e.windows(words.len()).any(|w| w.iter().eq(words.iter())))
    }
}

/// Whether `a` beats `b` when they partly overlap: higher score, then longer,
/// then earlier.
fn wins(a: &Finding, b: &Finding) -> bool {
    a.score
        .total_cmp(&b.score)
        .then((a.end - a.start).cmp(&(b.end - b.start)))
        .then(b.start.cmp(&a.start))
        != std::cmp::Ordering::Less
}

/// Sorts findings and removes overlaps while keeping every byte any of them
/// covered (see the module doc).
pub(crate) fn resolve(text: &str, mut found: Vec<Finding>) -> Vec<Finding> {
    found.retain(|f| f.start < f.end);
    found.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then(b.score.total_cmp(&a.score))
            .then(a.kind.cmp(&b.kind))
    });
    let mut out: Vec<Finding> = Vec::with_capacity(found.len());
    let mut max_end = 0;
    for mut f in found {
        if f.end <= max_end {
            continue; // inside a kept one (or cut back from one that is)
        }
        max_end = f.end;
        while let Some(last) = out.last_mut() {
            if last.end <= f.start {
                break;
            }
            if wins(last, &f) {
                f.start = last.end;
                break;
            }
            last.end = f.start;
            trim_end(text, last);
            if last.start < last.end {
                break;
            }
            out.pop();
        }
        trim_start(text, &mut f);
        if f.start < f.end {
            out.push(f);
        }
    }
    out
}

fn trim_start(text: &str, f: &mut Finding) {
    if let Some(s) = text.get(f.start..f.end) {
        f.start = f.end - s.trim_start().len();
    }
}

fn trim_end(text: &str, f: &mut Finding) {
    if let Some(s) = text.get(f.start..f.end) {
        f.end = f.start + s.trim_end().len();
    }
}

#[cfg(test)]
mod tests;
