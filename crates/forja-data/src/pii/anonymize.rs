//! Anonymisation: the operators applied to the findings of one text
//! ([`Scrubber::scrub`]), with the per-document pseudonym state
//! ([`DocScrub`]) that the fields of one record share.
//!
//! Every output is a pure function of the config, the text and the state of
//! the document so far: no randomness, no iteration over hash maps.

use std::collections::{BTreeMap, HashMap, HashSet};

use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::names::{DenyList, FirstName, Gazetteer};
use super::text::{char_at, char_before, fold, fold_words, is_word_char, Folded};
use super::{resolve, EntityKind, Finding, Operator, Scrubber};

/// A scrubbed text and how many findings of each kind were rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scrubbed {
    /// The text with every finding rewritten.
    pub text: String,
    /// Findings rewritten, per kind.
    pub counts: BTreeMap<EntityKind, u32>,
}

/// Pseudonym state of one document (one record): the same original value
/// gets the same replacement in every field scrubbed with it, and different
/// values get different replacements. Start a fresh one per record.
#[derive(Debug, Clone, Default)]
pub struct DocScrub {
    /// (kind, folded original) → replacement.
    map: HashMap<(EntityKind, String), String>,
    /// Folded replacements given out.
    used: HashSet<String>,
    /// Folded original first name → fake first name.
    first: HashMap<String, String>,
    /// Folded fake first names given out.
    used_first: HashSet<String>,
    /// Per person pseudonymised: the folded words of the original, and its
    /// replacement (e-mails that contain the name follow it).
    people: Vec<(Vec<String>, String)>,
    /// Last number given per kind (`<URL_2>`, `user3@example.com`).
    numbers: [u32; 10],
    /// Folded names (and their uncommon words) found so far in the
    /// document, and whether a mention in lower case counts.
    known: Vec<(String, bool)>,
}

/// Score of a later mention of a name already found in the document.
const RECALL_SCORE: f32 = 0.9;

/// The first 16 hex digits of `sha256(salt + value)`. In the rare case
/// (about 1 in 1 900) that all 16 are decimal digits, the first 16-digit
/// window of the digest that has a letter is used instead, so a hash can never
/// pass for a card, phone or ID number.
pub(crate) fn hash_value(salt: &str, value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest =
        Sha256::new().chain_update(salt.as_bytes()).chain_update(value.as_bytes()).finalize();
    let hex: Vec<u8> =
        digest.iter().flat_map(|&b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]).collect();
    let window =
        hex.windows(16).find(|w| w.iter().any(u8::is_ascii_alphabetic)).unwrap_or(&hex[..16]);
    window.iter().map(|&c| char::from(c)).collect()
}

/// Draws from `list` by a hash of the salt, the key and the attempt number.
fn pick<'a>(list: &[&'a str], salt: &str, key: &str, attempt: u32) -> &'a str {
    if list.is_empty() {
        return "";
    }
    let mut bytes = Vec::with_capacity(salt.len() + key.len() + 5);
    bytes.extend_from_slice(salt.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(&attempt.to_le_bytes());
    let h = xxh3_64_with_seed(&bytes, 0x5eed_f0a1);
    list[(h % list.len() as u64) as usize]
}

/// `fake` in the letter case of `original` (all upper, all lower, or as listed).
fn same_case(original: &str, fake: &str) -> String {
    let letters = || original.chars().filter(|c| c.is_alphabetic());
    if letters().all(char::is_uppercase) {
        fake.to_uppercase()
    } else if letters().all(char::is_lowercase) {
        fake.to_lowercase()
    } else {
        fake.to_string()
    }
}

fn is_particle(word: &str) -> bool {
    matches!(
        word,
        "de" | "del"
            | "la"
            | "las"
            | "los"
            | "da"
            | "das"
            | "do"
            | "dos"
            | "van"
            | "von"
            | "der"
            | "den"
            | "di"
            | "du"
            | "le"
            | "y"
    )
}

/// Lower-case ASCII letters and digits of a folded name, words joined by `.`.
fn email_slug(name: &str) -> String {
    fold(name)
        .split_whitespace()
        .map(|w| w.chars().filter(char::is_ascii_alphanumeric).collect::<String>())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

impl DocScrub {
    fn number(&mut self, kind: EntityKind) -> u32 {
        let n = &mut self.numbers[kind.index()];
        *n += 1;
        *n
    }

    /// A fake first name for the folded original first name `first`,
    /// consistent within the document.
    fn fake_first(
        &mut self,
        first: &str,
        gaz: &Gazetteer,
        salt: &str,
        deny: Option<&DenyList>,
    ) -> Option<String> {
        if let Some(f) = self.first.get(first) {
            return Some(f.clone());
        }
        let list = match gaz.first_name(first) {
            FirstName::Male => &gaz.fake_m,
            FirstName::Female => &gaz.fake_f,
            FirstName::Either | FirstName::Unknown => {
                if xxh3_64_with_seed(first.as_bytes(), 7).is_multiple_of(2) {
                    &gaz.fake_m
                } else {
                    &gaz.fake_f
                }
            }
        };
        for attempt in 0..64 {
            let cand = pick(list, salt, first, attempt);
            let folded = fold(cand);
            if folded != first
                && !self.used_first.contains(&folded)
                && !deny.is_some_and(|d| d.hits(cand))
            {
                self.used_first.insert(folded);
                self.first.insert(first.to_string(), cand.to_string());
                return Some(cand.to_string());
            }
        }
        None
    }

    /// The pseudonym of a person's name: one word → a first name (or a
    /// surname if the word is only known as a surname), more → first name and
    /// surname; the letter case of the original kept.
    fn person(
        &mut self,
        value: &str,
        gaz: &Gazetteer,
        salt: &str,
        deny: Option<&DenyList>,
    ) -> String {
        let key = fold_words(value);
        if let Some(r) = self.map.get(&(EntityKind::Person, key.clone())) {
            return same_case(value, r);
        }
        let original: Vec<&str> = key.split(' ').collect();
        let names: Vec<&str> = original.iter().copied().filter(|w| !is_particle(w)).collect();
        let replacement = (|| {
            let first = *names.first()?;
            let surname_only = names.len() == 1 && gaz.is_surname_only(first);
            let fake_first =
                if surname_only { None } else { Some(self.fake_first(first, gaz, salt, deny)?) };
            for attempt in 0..64 {
                let cand = match &fake_first {
                    None => pick(&gaz.fake_surnames, salt, &key, attempt).to_string(),
                    Some(f) if names.len() == 1 => f.clone(),
                    Some(f) => format!("{f} {}", pick(&gaz.fake_surnames, salt, &key, attempt)),
                };
                let folded = fold_words(&cand);
                let leaks = folded.split(' ').any(|w| original.contains(&w));
                if !leaks && !self.used.contains(&folded) && !deny.is_some_and(|d| d.hits(&cand)) {
                    return Some(cand);
                }
            }
            None
        })()
        .unwrap_or_else(|| format!("<PERSON_{}>", self.number(EntityKind::Person)));
        self.used.insert(fold_words(&replacement));
        let words =
            original.iter().filter(|w| w.chars().count() >= 3).map(|w| w.to_string()).collect();
        self.people.push((words, replacement.clone()));
        let out = same_case(value, &replacement);
        self.map.insert((EntityKind::Person, key), replacement);
        out
    }

    /// Remembers the names found in a field, so later mentions in the
    /// document are found whatever their case (`Pedro Ruiz` ... `pedro ruiz`).
    fn remember(&mut self, text: &str, findings: &[Finding], gaz: &Gazetteer) {
        for f in findings.iter().filter(|f| f.kind == EntityKind::Person) {
            let Some(value) = text.get(f.start..f.end) else { continue };
            let key = fold_words(value);
            let words: Vec<&str> = key.split(' ').collect();
            let mut add = |w: &str, any_case: bool| {
                if w.chars().count() >= 3 && !self.known.iter().any(|(k, _)| k == w) {
                    self.known.push((w.to_string(), any_case));
                }
            };
            if words.len() > 1 {
                add(&key, true);
            }
            for w in words {
                if !gaz.is_common_word(w) {
                    add(w, gaz.is_name(w));
                }
            }
        }
    }

    /// Appends the mentions of remembered names in `text` to `out`; whether
    /// there were any. A lone word the gazetteer does not know as a name
    /// (`Torre` of `María de la Torre`) counts only capitalised.
    fn recall(&self, text: &str, out: &mut Vec<Finding>) -> bool {
        if self.known.is_empty() {
            return false;
        }
        let folded = Folded::new(text);
        let before = out.len();
        for (name, any_case) in &self.known {
            for (s, m) in folded.text.match_indices(name.as_str()) {
                let e = s + m.len();
                if char_before(&folded.text, s).is_some_and(is_word_char)
                    || char_at(&folded.text, e).is_some_and(is_word_char)
                {
                    continue;
                }
                if let Some((start, end)) = folded.original(s, e) {
                    if *any_case || char_at(text, start).is_some_and(char::is_uppercase) {
                        out.push(Finding {
                            kind: EntityKind::Person,
                            start,
                            end,
                            score: RECALL_SCORE,
                        });
                    }
                }
            }
        }
        out.len() > before
    }

    /// The pseudonym of an e-mail address: `first.surname@example.com` after
    /// the pseudonym of a person whose name is in the local part, else
    /// `userN@example.com`.
    fn email(&mut self, value: &str) -> String {
        let key = fold(value);
        if let Some(r) = self.map.get(&(EntityKind::EmailAddress, key.clone())) {
            return r.clone();
        }
        let local = key.rsplit_once('@').map_or(key.as_str(), |(l, _)| l);
        let parts: Vec<&str> = local
            .split(|c: char| !c.is_alphanumeric())
            .filter(|p| p.chars().count() >= 3)
            .collect();
        let from_person = self
            .people
            .iter()
            .find(|(words, _)| parts.iter().any(|p| words.iter().any(|w| w == p)))
            .map(|(_, fake)| email_slug(fake))
            .filter(|slug| !slug.is_empty())
            .map(|slug| format!("{slug}@example.com"))
            .filter(|e| !self.used.contains(e));
        let replacement = from_person.unwrap_or_else(|| loop {
            let e = format!("user{}@example.com", self.number(EntityKind::EmailAddress));
            if !self.used.contains(&e) {
                break e;
            }
        });
        self.used.insert(replacement.clone());
        self.map.insert((EntityKind::EmailAddress, key), replacement.clone());
        replacement
    }

    /// `<KIND_n>`, numbered per document in order of first appearance; values
    /// equal up to case, accents and separators share a number.
    fn numbered(&mut self, kind: EntityKind, value: &str) -> String {
        let key: String = fold(value).chars().filter(|c| c.is_alphanumeric()).collect();
        if let Some(r) = self.map.get(&(kind, key.clone())) {
            return r.clone();
        }
        let r = format!("<{}_{}>", kind.as_str(), self.number(kind));
        self.map.insert((kind, key), r.clone());
        r
    }
}

impl Scrubber {
    /// Finds the personal data in `text` ([`Scrubber::analyze`]) and rewrites
    /// it with the configured operators. Pseudonyms are consistent across all
    /// the texts scrubbed with the same `doc`.
    ///
    /// Names found in the document so far are also looked for in `text` as
    /// whole words, whatever their case or accents: `Pedro Ruiz` in the
    /// first turn makes `pedro ruiz` and `ruiz` in a later one a PERSON too.
    pub fn scrub(&self, text: &str, doc: &mut DocScrub) -> Scrubbed {
        let mut findings = self.analyze(text);
        if self.enabled[EntityKind::Person.index()] {
            doc.remember(text, &findings, self.gaz);
            if doc.recall(text, &mut findings) {
                findings = resolve(text, findings);
            }
        }
        self.apply(text, &findings, doc)
    }

    /// Rewrites `findings` (sorted, non-overlapping, as [`Scrubber::analyze`]
    /// returns them) in `text`.
    fn apply(&self, text: &str, findings: &[Finding], doc: &mut DocScrub) -> Scrubbed {
        let deny = self.deny.as_ref();
        // Names first, so e-mails can follow the pseudonym of a name that
        // comes after them.
        for f in findings {
            if f.kind == EntityKind::Person && self.ops[f.kind.index()] == Operator::Pseudonym {
                if let Some(v) = text.get(f.start..f.end) {
                    doc.person(v, self.gaz, &self.salt, deny);
                }
            }
        }
        let mut out = String::with_capacity(text.len() + 16 * findings.len());
        let mut counts = BTreeMap::new();
        let mut last = 0;
        let mut skip_space = false;
        for f in findings {
            let (Some(before), Some(value)) = (text.get(last..f.start), text.get(f.start..f.end))
            else {
                continue;
            };
            out.push_str(if skip_space {
                before.strip_prefix(' ').unwrap_or(before)
            } else {
                before
            });
            skip_space = false;
            *counts.entry(f.kind).or_insert(0) += 1;
            match self.ops[f.kind.index()] {
                Operator::Replace => {
                    out.push('<');
                    out.push_str(f.kind.as_str());
                    out.push('>');
                }
                Operator::Redact => {
                    let next = text[f.end..].chars().next();
                    match out.chars().next_back() {
                        None | Some(' ' | '\n') if next == Some(' ') => skip_space = true,
                        Some(' ')
                            if next.is_some_and(|c| {
                                matches!(c, ',' | '.' | ';' | ':' | '!' | '?' | ')')
                            }) =>
                        {
                            out.pop();
                        }
                        _ => {}
                    }
                }
                Operator::Mask => out.extend(value.chars().map(|c| {
                    if c.is_alphanumeric() || unicode_normalization::char::is_combining_mark(c) {
                        self.mask_char
                    } else {
                        c
                    }
                })),
                Operator::Hash => out.push_str(&hash_value(&self.salt, value)),
                Operator::Pseudonym => {
                    let r = match f.kind {
                        EntityKind::Person => doc.person(value, self.gaz, &self.salt, deny),
                        EntityKind::EmailAddress => doc.email(value),
                        kind => doc.numbered(kind, value),
                    };
                    out.push_str(&r);
                }
            }
            last = f.end;
        }
        let rest = text.get(last..).unwrap_or("");
        out.push_str(if skip_space { rest.strip_prefix(' ').unwrap_or(rest) } else { rest });
        Scrubbed { text: out, counts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes() {
        let h = hash_value("salt", "Juan Pérez");
        assert_eq!(h.len(), 16);
        assert!(h.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(h.bytes().any(|c| c.is_ascii_alphabetic()));
        assert_eq!(h, hash_value("salt", "Juan Pérez"));
        assert_ne!(h, hash_value("salt2", "Juan Pérez"));
        // Every hash has a letter.
        for i in 0..5000 {
            assert!(hash_value("s", &i.to_string()).bytes().any(|c| c.is_ascii_alphabetic()));
        }
    }

    #[test]
    fn letter_case() {
        for (original, fake, want) in [
            ("JUAN", "Hugo", "HUGO"),
            ("juan pérez", "Hugo Arce", "hugo arce"),
            ("Juan Pérez", "Hugo Arce", "Hugo Arce"),
        ] {
            assert_eq!(same_case(original, fake), want);
        }
        assert_eq!(email_slug("Lucía Núñez"), "lucia.nunez");
    }
}
