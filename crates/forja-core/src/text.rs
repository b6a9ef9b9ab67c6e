//! Case and accent folding, one rule for every crate that compares words:
//! lowercase, canonical decomposition with the combining marks dropped
//! (`José` → `jose`, `Peña` → `pena`), typographic apostrophes as `'`.
//! PII recognizers (forja-data) and the document diff (forja-docs) both
//! compare in this form.

use unicode_normalization::char::{decompose_canonical, is_combining_mark};

/// Appends the folded form of `c` to `out`.
pub fn fold_char_into(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
    } else if matches!(c, '\u{2019}' | '\u{2018}' | '\u{02bc}') {
        out.push('\'');
    } else if !is_combining_mark(c) {
        decompose_canonical(c, |d| {
            if !is_combining_mark(d) {
                for l in d.to_lowercase() {
                    if !is_combining_mark(l) {
                        out.push(l);
                    }
                }
            }
        });
    }
}

/// Appends the folded form of `s` to `out`.
pub fn fold_into(s: &str, out: &mut String) {
    if s.is_ascii() {
        out.extend(s.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        for c in s.chars() {
            fold_char_into(c, out);
        }
    }
}

/// The folded form of `s`.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    fold_into(s, &mut out);
    out
}

/// `s` folded with every whitespace run turned into one space and the ends
/// trimmed: the form deny-list entries and pseudonym keys are compared in.
pub fn fold_words(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        fold_into(w, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding() {
        for (input, want) in [
            ("José Álvarez", "jose alvarez"),
            ("JOSÉ ÁLVAREZ", "jose alvarez"),
            ("Jose\u{301}", "jose"),
            ("Peña Muñoz", "pena munoz"),
            ("O’Brien", "o'brien"),
            ("İstanbul", "istanbul"),
            ("straße", "straße"),
            ("", ""),
        ] {
            assert_eq!(fold(input), want, "{input}");
        }
        assert_eq!(fold_words("  José \n\t ÁLVAREZ "), "jose alvarez");
    }
}
