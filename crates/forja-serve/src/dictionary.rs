//! A tenant's entity dictionary applied to what it is served: every whole
//! word occurrence of a known misspelling ("Jhon Yonson") in generated
//! text becomes its fix ("John Johnson"). Chosen over a glossary in the
//! prompt because it is exact and immediate (a small model does not
//! reliably follow a glossary, and a glossary costs prompt tokens on every
//! request); the price is that token ids and log-probabilities still show
//! what the model wrote, and grammar-constrained answers are left alone
//! (a rewrite could break their grammar).
//!
//! Streaming keeps back the last few characters of each choice (as many as
//! the longest misspelling) until it knows no misspelling straddles them.

use aho_corasick::{AhoCorasick, MatchKind};
use std::borrow::Cow;
use std::sync::Arc;

/// A compiled dictionary.
#[derive(Debug, Clone)]
pub struct Dictionary {
    ac: Option<AhoCorasick>,
    rights: Vec<String>,
    /// Longest misspelling, in bytes.
    longest: usize,
}

impl Dictionary {
    /// No entries: text passes through.
    pub fn empty() -> Dictionary {
        Dictionary { ac: None, rights: Vec::new(), longest: 0 }
    }

    /// From `(wrong, right)` pairs; longer misspellings win over their
    /// prefixes. Empty `wrong`s are skipped.
    pub fn new(entries: &[(String, String)]) -> Dictionary {
        let entries: Vec<&(String, String)> =
            entries.iter().filter(|(w, _)| !w.trim().is_empty()).collect();
        if entries.is_empty() {
            return Dictionary::empty();
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(entries.iter().map(|(w, _)| w.as_str()))
            .ok();
        Dictionary {
            longest: entries.iter().map(|(w, _)| w.len()).max().unwrap_or(0),
            rights: entries.iter().map(|(_, r)| r.clone()).collect(),
            ac,
        }
    }

    /// True when there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.ac.is_none()
    }

    /// `text` with every whole-word misspelling fixed. `before` is the
    /// character just before `text` (for the word-boundary check at its
    /// start), `after` the one just after it (`None`: end of text).
    fn apply_within<'a>(
        &self,
        text: &'a str,
        before: Option<char>,
        after: Option<char>,
    ) -> Cow<'a, str> {
        let Some(ac) = &self.ac else { return Cow::Borrowed(text) };
        let mut out = String::new();
        let mut last = 0;
        for m in ac.find_iter(text) {
            let prev = text[..m.start()].chars().next_back().or(if m.start() == 0 {
                before
            } else {
                None
            });
            let next =
                text[m.end()..].chars().next().or(if m.end() == text.len() { after } else { None });
            if prev.is_some_and(char::is_alphanumeric) || next.is_some_and(char::is_alphanumeric) {
                continue;
            }
            out.push_str(&text[last..m.start()]);
            out.push_str(&self.rights[m.pattern().as_usize()]);
            last = m.end();
        }
        if last == 0 {
            return Cow::Borrowed(text);
        }
        out.push_str(&text[last..]);
        Cow::Owned(out)
    }

    /// A whole text with the dictionary applied.
    pub fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.apply_within(text, None, None)
    }
}

/// Applies a [`Dictionary`] to text that arrives in pieces.
#[derive(Debug)]
pub struct StreamRewriter {
    dict: Arc<Dictionary>,
    pending: String,
    before: Option<char>,
}

impl StreamRewriter {
    /// A rewriter for one streamed choice.
    pub fn new(dict: Arc<Dictionary>) -> StreamRewriter {
        StreamRewriter { dict, pending: String::new(), before: None }
    }

    /// Takes the next piece; returns what can be sent now (maybe empty).
    pub fn push(&mut self, piece: &str) -> String {
        if self.dict.is_empty() {
            return piece.to_string();
        }
        self.pending.push_str(piece);
        // Keep back enough for a misspelling and the character after it.
        let keep = self.dict.longest + 4;
        if self.pending.len() <= keep {
            return String::new();
        }
        let mut cut = self.pending.len() - keep;
        while !self.pending.is_char_boundary(cut) {
            cut -= 1;
        }
        // Never cut inside a match: move the cut to the match's start.
        if let Some(ac) = &self.dict.ac {
            for m in ac.find_iter(&self.pending) {
                if m.start() < cut && m.end() > cut {
                    cut = m.start();
                }
            }
        }
        let after = self.pending[cut..].chars().next();
        let head: String = self.pending[..cut].to_string();
        let out = self.dict.apply_within(&head, self.before, after).into_owned();
        if let Some(c) = head.chars().next_back() {
            self.before = Some(c);
        }
        self.pending.drain(..cut);
        out
    }

    /// The rest, at the end of the choice.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.dict.apply_within(&rest, self.before, None).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict() -> Dictionary {
        Dictionary::new(&[
            ("Jhon Yonson".into(), "John Johnson".into()),
            ("Balverde".into(), "Valverde".into()),
        ])
    }

    #[test]
    fn whole_words_only() {
        let d = dict();
        assert_eq!(
            d.apply("Interviene Jhon Yonson, concejal."),
            "Interviene John Johnson, concejal."
        );
        assert_eq!(d.apply("Balverde y Balverdes"), "Valverde y Balverdes");
        assert_eq!(d.apply("XBalverde"), "XBalverde");
        assert!(matches!(d.apply("nada que cambiar"), Cow::Borrowed(_)));
        assert_eq!(Dictionary::empty().apply("Balverde"), "Balverde");
    }

    #[test]
    fn streaming_equals_whole_text_for_every_split() {
        let d = Arc::new(dict());
        let text = "Jhon Yonson habla; luego Jhon Yonsonx y Balverde. Fin Balverde";
        let want = d.apply(text).into_owned();
        for step in 1..=7 {
            let mut r = StreamRewriter::new(d.clone());
            let mut got = String::new();
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(step) {
                got += &r.push(&piece.iter().collect::<String>());
            }
            got += &r.finish();
            assert_eq!(got, want, "pieces of {step}");
        }
    }
}
