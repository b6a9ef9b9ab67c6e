//! Text metrics: word and character error rate, exact match and token F1.
//!
//! WER and CER follow `jiwer` (4.x) exactly so the numbers can be compared
//! with other systems: with [`Normalization::None`] a text is treated as
//! `jiwer.wer_default` / `jiwer.cer_default` treat it (runs of two or more
//! whitespace characters become one space, the ends are stripped, words
//! are split on single spaces; CER keeps every character, spaces
//! included, runs of spaces too). [`Normalization::Standard`] lower-cases and removes Unicode
//! punctuation (general category `P*`) first, the usual ASR scoring. Corpus
//! rates are total edits over total reference length, not a mean of
//! per-example rates. `scripts/jiwer-check.py` holds the Python side.

use regex::Regex;
use std::collections::HashMap;
use std::sync::LazyLock;

/// How texts are normalised before scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// jiwer's defaults: whitespace only.
    None,
    /// Lower case, Unicode punctuation removed, then whitespace as in `None`.
    #[default]
    Standard,
}

static PUNCT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\p{P}").expect("valid regex"));

/// Python's `str.isspace`: Unicode White_Space plus the four ASCII
/// information separators.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Applies `norm` and jiwer's `RemoveMultipleSpaces` + `Strip`.
pub fn normalize(text: &str, norm: Normalization) -> String {
    let text = match norm {
        Normalization::None => text.to_string(),
        Normalization::Standard => PUNCT.replace_all(&text.to_lowercase(), "").into_owned(),
    };
    // `re.sub(r"\s\s+", " ", s)`: a run of two or more spaces becomes one
    // space; a lone tab stays a tab.
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_space(chars[i]) {
            let mut j = i;
            while j < chars.len() && is_space(chars[j]) {
                j += 1;
            }
            if j - i >= 2 {
                out.push(' ');
            } else {
                out.push(chars[i]);
            }
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out.trim_matches(is_space).to_string()
}

/// Words as jiwer splits them: on single spaces, empty pieces dropped.
pub fn words(normalized: &str) -> Vec<&str> {
    normalized.split(' ').filter(|w| !w.is_empty()).collect()
}

/// Levenshtein distance between two sequences (unit costs).
pub fn levenshtein<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    if a.is_empty() {
        return b.len();
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(x != y);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Edits and reference length of one pair, for summing over a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EditCount {
    /// Substitutions + deletions + insertions.
    pub edits: usize,
    /// Reference length (words or characters).
    pub reference_len: usize,
}

impl EditCount {
    /// `edits / reference_len` (0 for an empty reference and hypothesis).
    pub fn rate(&self) -> f64 {
        match self.reference_len {
            0 if self.edits == 0 => 0.0,
            0 => f64::INFINITY,
            n => self.edits as f64 / n as f64,
        }
    }

    /// Adds another pair's counts.
    pub fn add(&mut self, o: EditCount) {
        self.edits += o.edits;
        self.reference_len += o.reference_len;
    }
}

/// Word edits of one pair.
pub fn word_edits(reference: &str, hypothesis: &str, norm: Normalization) -> EditCount {
    let (r, h) = (normalize(reference, norm), normalize(hypothesis, norm));
    let (r, h) = (words(&r), words(&h));
    EditCount { edits: levenshtein(&r, &h), reference_len: r.len() }
}

/// Character edits of one pair. Like `jiwer.cer_default`, `None` only
/// strips the ends: runs of spaces count character by character.
pub fn char_edits(reference: &str, hypothesis: &str, norm: Normalization) -> EditCount {
    let prep = |t: &str| -> Vec<char> {
        match norm {
            Normalization::None => t.trim_matches(is_space).chars().collect(),
            Normalization::Standard => normalize(t, norm).chars().collect(),
        }
    };
    let (r, h) = (prep(reference), prep(hypothesis));
    EditCount { edits: levenshtein(&r, &h), reference_len: r.len() }
}

/// Whether the texts are equal after [`Normalization::Standard`].
pub fn exact_match(reference: &str, hypothesis: &str) -> bool {
    normalize(reference, Normalization::Standard) == normalize(hypothesis, Normalization::Standard)
}

/// SQuAD-style token F1 over the multiset of normalised words.
pub fn token_f1(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (
        normalize(reference, Normalization::Standard),
        normalize(hypothesis, Normalization::Standard),
    );
    let (r, h) = (words(&r), words(&h));
    if r.is_empty() || h.is_empty() {
        return f64::from(u8::from(r.is_empty() && h.is_empty()));
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in &r {
        *counts.entry(w).or_default() += 1;
    }
    let mut common = 0usize;
    for w in &h {
        if let Some(c) = counts.get_mut(w).filter(|c| **c > 0) {
            *c -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let p = common as f64 / h.len() as f64;
    let rc = common as f64 / r.len() as f64;
    2.0 * p * rc / (p + rc)
}

/// Month names in Spanish, in order (facts of minutes; the demo's
/// generator writes its dates with them).
pub const MONTHS_ES: [&str; 12] = [
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
];

/// Month names in English, in order.
pub const MONTHS_EN: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// The facts of a text, as written: numbers (amounts, dates, times,
/// counts: `242.000`, `20:00`, `2019`), month names, and capitalised words
/// that do not start a sentence (names, places, bodies: `Yolanda`,
/// `Johnson`, `Diputación`). A wrong amount or a misspelled name in
/// official minutes is worse than any typo; `fact_fidelity` checks these.
/// Abbreviations of one to three letters with a dot (`D.`, `Dña.`) are
/// titles, not sentence ends.
pub fn facts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut sentence_start = true;
    for token in text.split_whitespace() {
        let core = token.trim_matches(|c: char| !c.is_alphanumeric());
        if core.is_empty() {
            continue;
        }
        let lower = core.to_lowercase();
        let digits = core.chars().any(|c| c.is_ascii_digit());
        let title = token.ends_with('.') && core.chars().count() <= 3 && !digits;
        if digits {
            out.push(core.to_string());
        } else if MONTHS_ES.contains(&lower.as_str()) || MONTHS_EN.contains(&lower.as_str()) {
            out.push(lower);
        } else if !sentence_start && !title && core.chars().next().is_some_and(char::is_uppercase) {
            out.push(core.to_string());
        }
        sentence_start = token.ends_with(['.', '!', '?', ':']) && !title;
    }
    out
}

/// Facts of one pair: how many of the reference's are in the output
/// (as a multiset), and each side's total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FactCount {
    /// Reference facts the output has.
    pub matched: u32,
    /// Facts in the reference.
    pub reference: u32,
    /// Facts in the output.
    pub output: u32,
}

impl FactCount {
    /// Adds another pair's counts.
    pub fn add(&mut self, o: FactCount) {
        self.matched += o.matched;
        self.reference += o.reference;
        self.output += o.output;
    }

    /// (recall, precision, F1); a side without facts counts as right when
    /// the other has none either.
    pub fn scores(&self) -> (f64, f64, f64) {
        let ratio = |n: u32, d: u32, other: u32| {
            if d > 0 {
                f64::from(n) / f64::from(d)
            } else {
                f64::from(u8::from(other == 0))
            }
        };
        let r = ratio(self.matched, self.reference, self.output);
        let p = ratio(self.matched, self.output, self.reference);
        let f = if r + p > 0.0 { 2.0 * r * p / (r + p) } else { 0.0 };
        (r, p, f)
    }
}

/// The facts of `reference` found in `output`.
pub fn fact_count(reference: &str, output: &str) -> FactCount {
    let (r, o) = (facts(reference), facts(output));
    let mut left: HashMap<&str, usize> = HashMap::new();
    for f in &r {
        *left.entry(f).or_default() += 1;
    }
    let mut matched = 0u32;
    for f in &o {
        if let Some(n) = left.get_mut(f.as_str()).filter(|n| **n > 0) {
            *n -= 1;
            matched += 1;
        }
    }
    FactCount { matched, reference: r.len() as u32, output: o.len() as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_numbers_months_and_names_inside_sentences() {
        let r = "La concejala de Deportes, Dña. Yolanda Johnson (Independiente) propone abrir el \
                 polideportivo los domingos hasta las 20:00 horas. Punto 1. Convenio por importe de 242.000 euros.";
        assert_eq!(
            facts(r),
            ["Deportes", "Yolanda", "Johnson", "Independiente", "20:00", "1", "242.000"]
        );
        assert_eq!(facts("el 22 de febrero de 2019."), ["22", "febrero", "2019"]);
        let wrong = "La concejala de Deportes, Dña. Yolanda Jonson (Independiente) propone abrir el \
                     polideportivo los domingos hasta las 22:00 horas. Punto 1. Convenio por importe de 229.000 euros.";
        let c = fact_count(r, wrong);
        assert_eq!(c, FactCount { matched: 4, reference: 7, output: 7 });
        assert_eq!(fact_count(r, r).scores(), (1.0, 1.0, 1.0));
        assert_eq!(fact_count("sin datos", "nada").scores(), (1.0, 1.0, 1.0));
        assert_eq!(fact_count("el 5 de mayo", "").scores().2, 0.0);
    }

    #[test]
    fn normalisation_matches_jiwer_rules() {
        let cases = [
            ("  hola   mundo  ", Normalization::None, "hola mundo"),
            ("a\tb", Normalization::None, "a\tb"),
            ("a \t b\n", Normalization::None, "a b"),
            ("¡Hola, Mundo!", Normalization::Standard, "hola mundo"),
            ("El 3,5 % — dijo", Normalization::Standard, "el 35 dijo"),
        ];
        for (input, norm, want) in cases {
            assert_eq!(normalize(input, norm), want, "{input:?}");
        }
    }

    #[test]
    fn error_rates() {
        let n = Normalization::None;
        let cases = [
            ("a b c", "a b c", 0, 3),
            ("a b c", "a x c", 1, 3),
            ("a b c", "a c", 1, 3),
            ("a b c", "a b c d e", 2, 3),
            ("a b c", "", 3, 3),
            ("kitten sitting", "sitting kitten", 2, 2),
        ];
        for (r, h, edits, len) in cases {
            assert_eq!(word_edits(r, h, n), EditCount { edits, reference_len: len }, "{r} / {h}");
        }
        assert_eq!(char_edits("kitten", "sitting", n).edits, 3);
        assert_eq!(char_edits("ab cd", "abcd", n), EditCount { edits: 1, reference_len: 5 });
        assert!(EditCount { edits: 1, reference_len: 0 }.rate().is_infinite());
    }

    #[test]
    fn match_and_f1() {
        assert!(exact_match("Se aprueba.", "se aprueba"));
        assert!(!exact_match("se aprueba", "no se aprueba"));
        assert_eq!(token_f1("a b c d", "a b c d"), 1.0);
        assert_eq!(token_f1("a b", "c d"), 0.0);
        // 2 common of 3 predicted, 2 of 4 reference: p = 2/3, r = 1/2.
        let f = token_f1("a b c d", "a b x");
        assert!((f - 2.0 * (2.0 / 3.0) * 0.5 / (2.0 / 3.0 + 0.5)).abs() < 1e-12);
        assert_eq!(token_f1("", ""), 1.0);
    }
}
