//! Text helpers shared by the recognizers: case/accent folding (with an offset
//! map back to the original for the deny-list), char lookups at byte positions
//! that never split a char, and the context-word search before a position.
//!
//! Folding itself is `forja_core::text` (one rule for every crate); this
//! module adds the offset map.

pub(crate) use forja_core::text::{fold, fold_char_into, fold_into, fold_words};
use unicode_normalization::char::is_combining_mark;

/// A folded copy of a text that remembers, for each byte of the copy, the
/// original char it came from.
pub(crate) struct Folded {
    /// The folded text; whitespace runs are one space.
    pub text: String,
    /// Per folded byte: start of the original char (or whitespace run).
    starts: Vec<usize>,
    /// Per folded byte: end of the original char, including combining marks
    /// that followed it and were dropped.
    ends: Vec<usize>,
}

impl Folded {
    /// Folds `original`.
    pub fn new(original: &str) -> Folded {
        let mut f = Folded {
            text: String::with_capacity(original.len()),
            starts: Vec::with_capacity(original.len()),
            ends: Vec::with_capacity(original.len()),
        };
        // Folded bytes produced by the last non-space original char: a dropped
        // combining mark extends their end.
        let mut last = 0..0;
        let mut in_space = false;
        for (i, c) in original.char_indices() {
            let end = i + c.len_utf8();
            if c.is_whitespace() {
                if in_space {
                    if let Some(e) = f.ends.last_mut() {
                        *e = end;
                    }
                } else {
                    f.text.push(' ');
                    f.starts.push(i);
                    f.ends.push(end);
                    in_space = true;
                }
                last = 0..0;
                continue;
            }
            in_space = false;
            let before = f.text.len();
            fold_char_into(c, &mut f.text);
            let after = f.text.len();
            if after == before {
                for e in &mut f.ends[last.clone()] {
                    *e = end;
                }
                continue;
            }
            f.starts.resize(after, i);
            f.ends.resize(after, end);
            last = before..after;
        }
        f
    }

    /// The original byte range of the folded range `start..end` (`start < end`,
    /// both char boundaries of the folded text).
    pub fn original(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        if start >= end {
            return None;
        }
        Some((*self.starts.get(start)?, *self.ends.get(end - 1)?))
    }
}

/// The char ending at byte `i` of `text`, if `i` is a char boundary.
pub(crate) fn char_before(text: &str, i: usize) -> Option<char> {
    text.get(..i)?.chars().next_back()
}

/// The char starting at byte `i` of `text`, if `i` is a char boundary.
pub(crate) fn char_at(text: &str, i: usize) -> Option<char> {
    text.get(i..)?.chars().next()
}

/// Whether `c` continues a word (letters, digits, combining marks, `_`).
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || is_combining_mark(c)
}

/// A list of context words, folded. An entry ending in `*` matches as a prefix
/// (`tel*` matches `teléfono`, `tlf.` does not match `tel*`).
pub(crate) struct ContextWords(pub &'static [&'static str]);

impl ContextWords {
    fn matches(&self, word: &str) -> bool {
        self.0.iter().any(|k| match k.strip_suffix('*') {
            Some(prefix) => word.starts_with(prefix),
            None => word == *k,
        })
    }

    /// Whether one of the words occurs in the `max_chars` chars before byte
    /// `pos` of `text`. Words are runs of letters, digits and inner dots
    /// (`C.C.` is the word `c.c`); `scratch` is reused for folding.
    pub fn before(&self, text: &str, pos: usize, max_chars: usize, scratch: &mut String) -> bool {
        self.nearest(text, pos, max_chars, scratch).is_some()
    }

    /// Like [`ContextWords::before`], giving how many bytes separate the
    /// nearest such word from `pos`.
    pub fn nearest(
        &self,
        text: &str,
        pos: usize,
        max_chars: usize,
        scratch: &mut String,
    ) -> Option<usize> {
        let head = text.get(..pos)?;
        let from = head.char_indices().rev().take(max_chars).last().map_or(pos, |(i, _)| i);
        let window = &head[from..];
        let mut words = window.split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '\''));
        // The first word may be cut by the window: skip it unless the window
        // starts the text or a word.
        let cut = from > 0 && char_before(text, from).is_some_and(is_word_char);
        if cut {
            words.next();
        }
        let mut nearest = None;
        for w in words {
            let t = w.trim_matches(|c| c == '.' || c == '\'');
            if t.is_empty() {
                continue;
            }
            scratch.clear();
            fold_into(t, scratch);
            if self.matches(scratch) {
                // Offset of the word's end inside the window (sub-slice arithmetic).
                let end = t.as_ptr() as usize - window.as_ptr() as usize + t.len();
                nearest = Some(window.len() - end);
            }
        }
        nearest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_map(original: &str, folded_needle: &str, want: &str) {
        let f = Folded::new(original);
        let s = f.text.find(folded_needle).unwrap();
        let (a, b) = f.original(s, s + folded_needle.len()).unwrap();
        assert_eq!(&original[a..b], want, "{original:?} {:?}", f.text);
    }

    #[test]
    fn folded_offsets_map_back() {
        check_map("Hola JOSÉ  ÁLVAREZ!", "jose alvarez", "JOSÉ  ÁLVAREZ");
        check_map("x Jose\u{301} y", "jose", "Jose\u{301}");
        check_map("ﬁn Ñandú", "nandu", "Ñandú");
        check_map("a\u{301}\u{301}b c", "ab", "a\u{301}\u{301}b");
        check_map("\u{301}abc", "abc", "abc");
    }

    #[test]
    fn context_words() {
        const W: ContextWords = ContextWords(&["tel*", "cc", "c.c", "movil"]);
        let mut s = String::new();
        for (text, pos_of, max, want) in [
            ("Teléfono: 612", "612", 30, true),
            ("mi móvil es 612", "612", 30, true),
            ("C.C. 1234", "1234", 30, true),
            ("hotel 612", "612", 30, false),
            ("tel ................................ 612", "612", 20, false),
            ("xcc 1234", "1234", 30, false),
            ("accc 1234", "1234", 3, false),
            ("", "", 10, false),
        ] {
            let pos = text.find(pos_of).unwrap();
            assert_eq!(W.before(text, pos, max, &mut s), want, "{text}");
        }
        assert!(!W.before("é", 1, 10, &mut s));
        assert_eq!(W.nearest("tel 1 movil 2", 12, 30, &mut s), Some(1));
        assert_eq!(W.nearest("tel 1 x 2", 8, 30, &mut s), Some(5));
    }
}
