//! Quality filters. Code: line count bounds, the share of code lines among
//! non-blank lines (seed 000's comment-to-code rule) and a cap on line length
//! (minified or generated files). Prose: length bounds, symbol and digit
//! ratios, repeated lines and repeated n-grams (the Gopher rules), and an
//! optional language allow-list (whatlang).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::Kind;

/// Quality settings (`[quality]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityConfig {
    /// Rules for prose (and chats and pairs).
    pub text: TextQuality,
    /// Rules for code.
    pub code: CodeQuality,
}

/// Rules for prose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextQuality {
    /// Fewer characters are dropped.
    pub min_chars: usize,
    /// More characters are dropped.
    pub max_chars: usize,
    /// Largest share of non-alphanumeric, non-space, non-punctuation characters.
    pub max_symbol_ratio: f64,
    /// Largest share of digits among non-space characters.
    pub max_digit_ratio: f64,
    /// Largest share of lines that repeat an earlier line (texts of 5+ lines).
    pub max_duplicate_line_ratio: f64,
    /// Largest share of characters covered by the most frequent word 3-gram
    /// (texts of 50+ words).
    pub max_top_trigram_ratio: f64,
    /// Allowed languages (ISO 639-1 or 639-3); empty allows all. Records that
    /// name their language are trusted; others are detected.
    pub languages: Vec<String>,
}

impl Default for TextQuality {
    fn default() -> Self {
        TextQuality {
            min_chars: 8,
            max_chars: 200_000,
            max_symbol_ratio: 0.25,
            max_digit_ratio: 0.5,
            max_duplicate_line_ratio: 0.3,
            max_top_trigram_ratio: 0.2,
            languages: Vec::new(),
        }
    }
}

/// Rules for code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodeQuality {
    /// Fewer lines are dropped (seed 000 uses 50 for The Stack; 3 suits snippets).
    pub min_lines: usize,
    /// More lines are dropped.
    pub max_lines: usize,
    /// Smallest share of code lines among non-blank lines.
    pub min_code_ratio: f64,
    /// Longest line allowed (minified and generated files exceed it).
    pub max_line_chars: usize,
}

impl Default for CodeQuality {
    fn default() -> Self {
        CodeQuality { min_lines: 3, max_lines: 10_000, min_code_ratio: 0.3, max_line_chars: 1_000 }
    }
}

impl QualityConfig {
    /// `None` when the text passes, else the rule it breaks (with numbers).
    pub fn check(&self, text: &str, kind: Kind, lang: Option<&str>) -> Option<String> {
        match kind {
            Kind::Code => self.code.check(text),
            Kind::Text => self.text.check(text, lang),
        }
    }
}

impl CodeQuality {
    fn check(&self, code: &str) -> Option<String> {
        let lines: Vec<&str> = code.lines().collect();
        let n = lines.len();
        if n < self.min_lines {
            return Some(format!(
                "code has {n} lines, under quality.code.min_lines = {}",
                self.min_lines
            ));
        }
        if n > self.max_lines {
            return Some(format!(
                "code has {n} lines, over quality.code.max_lines = {}",
                self.max_lines
            ));
        }
        if let Some(long) =
            lines.iter().map(|l| l.chars().count()).max().filter(|&l| l > self.max_line_chars)
        {
            return Some(format!(
                "a line of {long} chars, over quality.code.max_line_chars = {}",
                self.max_line_chars
            ));
        }
        let (mut code, mut comment, mut in_block) = (0usize, 0usize, false);
        for line in &lines {
            let t = line.trim();
            if t.is_empty() {
                continue;
            }
            let is_comment = in_block
                || ["#", "//", "--", ";", "/*", "*", "\"\"\"", "'''", "<!--"]
                    .iter()
                    .any(|p| t.starts_with(p));
            if t.starts_with("/*") && !t.contains("*/") {
                in_block = true;
            } else if in_block && t.contains("*/") {
                in_block = false;
            }
            if is_comment {
                comment += 1;
            } else {
                code += 1;
            }
        }
        let ratio = code as f64 / (code + comment).max(1) as f64;
        (ratio < self.min_code_ratio).then(|| {
            format!(
                "{:.0}% code lines, under quality.code.min_code_ratio = {}",
                ratio * 100.0,
                self.min_code_ratio
            )
        })
    }
}

impl TextQuality {
    fn check(&self, text: &str, lang: Option<&str>) -> Option<String> {
        let chars = text.chars().count();
        if chars < self.min_chars {
            return Some(format!(
                "{chars} chars, under quality.text.min_chars = {}",
                self.min_chars
            ));
        }
        if chars > self.max_chars {
            return Some(format!(
                "{chars} chars, over quality.text.max_chars = {}",
                self.max_chars
            ));
        }
        let (mut visible, mut digits, mut symbols) = (0usize, 0usize, 0usize);
        for c in text.chars().filter(|c| !c.is_whitespace()) {
            visible += 1;
            if c.is_numeric() {
                digits += 1;
            } else if !c.is_alphanumeric() && !is_punctuation(c) {
                symbols += 1;
            }
        }
        let share = |n: usize| n as f64 / visible.max(1) as f64;
        if share(symbols) > self.max_symbol_ratio {
            return Some(format!(
                "{:.0}% symbols, over quality.text.max_symbol_ratio = {}",
                share(symbols) * 100.0,
                self.max_symbol_ratio
            ));
        }
        if share(digits) > self.max_digit_ratio {
            return Some(format!(
                "{:.0}% digits, over quality.text.max_digit_ratio = {}",
                share(digits) * 100.0,
                self.max_digit_ratio
            ));
        }
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if lines.len() >= 5 {
            let mut seen = std::collections::HashSet::new();
            let dup = lines.iter().filter(|l| !seen.insert(**l)).count();
            let r = dup as f64 / lines.len() as f64;
            if r > self.max_duplicate_line_ratio {
                return Some(format!(
                    "{:.0}% repeated lines, over quality.text.max_duplicate_line_ratio = {}",
                    r * 100.0,
                    self.max_duplicate_line_ratio
                ));
            }
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.len() >= 50 {
            let mut counts: HashMap<(&str, &str, &str), usize> = HashMap::new();
            for w in words.windows(3) {
                *counts.entry((w[0], w[1], w[2])).or_default() += 1;
            }
            if let Some(((a, b, c), n)) = counts.into_iter().max_by_key(|(k, n)| (*n, *k)) {
                let covered = n * (a.len() + b.len() + c.len());
                let total: usize = words.iter().map(|w| w.len()).sum();
                let r = covered as f64 / total.max(1) as f64;
                if n > 1 && r > self.max_top_trigram_ratio {
                    return Some(format!(
                        "the 3-gram `{a} {b} {c}` covers {:.0}% of the text, over quality.text.max_top_trigram_ratio = {}",
                        r * 100.0,
                        self.max_top_trigram_ratio
                    ));
                }
            }
        }
        if !self.languages.is_empty() {
            let detected;
            let lang = match lang {
                Some(l) => l,
                // whatlang's confidence is low on short texts even when right: trust
                // its best guess, but only on texts long enough to have one.
                None => match whatlang::detect(text).filter(|_| chars >= 40) {
                    Some(info) => {
                        detected = info.lang().code();
                        detected
                    }
                    None => return None,
                },
            };
            if !self.languages.iter().any(|l| same_language(l, lang)) {
                return Some(format!("language `{lang}` is not in quality.text.languages"));
            }
        }
        None
    }
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        && !matches!(
            c,
            '#' | '$'
                | '%'
                | '&'
                | '*'
                | '+'
                | '<'
                | '='
                | '>'
                | '@'
                | '\\'
                | '^'
                | '_'
                | '`'
                | '|'
                | '~'
        )
        || matches!(c, '¿' | '¡' | '«' | '»' | '“' | '”' | '‘' | '’' | '—' | '–' | '…' | '·')
}

/// Whether two language codes (ISO 639-1 or 639-3, any case) name the same language.
fn same_language(a: &str, b: &str) -> bool {
    const PAIRS: &[(&str, &str)] = &[
        ("es", "spa"),
        ("en", "eng"),
        ("pt", "por"),
        ("fr", "fra"),
        ("de", "deu"),
        ("it", "ita"),
        ("ca", "cat"),
        ("nl", "nld"),
        ("ru", "rus"),
        ("zh", "cmn"),
        ("ja", "jpn"),
        ("ko", "kor"),
        ("ar", "arb"),
        ("hi", "hin"),
        ("pl", "pol"),
        ("tr", "tur"),
        ("sv", "swe"),
        ("uk", "ukr"),
    ];
    let norm = |x: &str| {
        let x = x.trim().to_ascii_lowercase();
        let x = x.split(['-', '_']).next().unwrap_or("").to_string();
        PAIRS.iter().find(|(_, three)| *three == x).map_or(x, |(two, _)| two.to_string())
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cfg: &QualityConfig, text: &str, kind: Kind, lang: Option<&str>, want: Option<&str>) {
        let got = cfg.check(text, kind, lang);
        match (got.as_deref(), want) {
            (None, None) => {}
            (Some(g), Some(w)) if g.contains(w) => {}
            _ => panic!("{text:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn code_rules() {
        let q = QualityConfig::default();
        let code = "fn main() {\n    let x = 1;\n    println!(\"{x}\");\n}";
        check(&q, code, Kind::Code, None, None);
        check(&q, "x = 1", Kind::Code, None, Some("1 lines, under quality.code.min_lines = 3"));
        check(&q, "# a\n# b\n# c\n# d\nx = 1", Kind::Code, None, Some("20% code lines"));
        check(&q, "/*\n a\n b\n c\n*/\nx();", Kind::Code, None, Some("17% code lines"));
        let minified = format!("a\nb\n{}", "x".repeat(1200));
        check(&q, &minified, Kind::Code, None, Some("a line of 1200 chars"));
    }

    #[test]
    fn text_rules() {
        let q = QualityConfig::default();
        check(&q, "Hola, ¿cómo estás? Bien, gracias.", Kind::Text, None, None);
        check(&q, "hey", Kind::Text, None, Some("3 chars, under"));
        check(&q, "### $$$ @@@ ~~~ hello", Kind::Text, None, Some("symbols"));
        check(&q, "1234567890 12345 abc", Kind::Text, None, Some("digits"));
        check(
            &q,
            "same line\nsame line\nsame line\nother\nmore",
            Kind::Text,
            None,
            Some("40% repeated lines"),
        );
        let spam = "buy cheap pills ".repeat(20);
        check(&q, &spam, Kind::Text, None, Some("the 3-gram"));
        let es = QualityConfig {
            text: TextQuality { languages: vec!["es".into()], ..Default::default() },
            ..Default::default()
        };
        let english = "The quick brown fox jumps over the lazy dog while the farmer watches from the old barn.";
        check(&es, english, Kind::Text, None, Some("language `eng` is not in"));
        check(
            &es,
            "El rápido zorro marrón salta sobre el perro perezoso mientras el granjero mira.",
            Kind::Text,
            None,
            None,
        );
        check(&es, english, Kind::Text, Some("spa"), None);
        check(&es, english, Kind::Text, Some("es-CO"), None);
    }
}
