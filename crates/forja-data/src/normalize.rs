//! Text normalisation before anything else looks at a record: Unicode NFC,
//! `\r\n` → `\n`, control characters removed, trailing spaces trimmed. Prose
//! also gets runs of spaces collapsed and at most one blank line in a row;
//! code keeps its indentation.

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

use crate::Kind;

/// Normalises one text of the given kind.
pub fn normalize(text: &str, kind: Kind) -> String {
    let nfc: std::borrow::Cow<str> = match is_nfc_quick(text.chars()) {
        IsNormalized::Yes => text.into(),
        _ => text.nfc().collect::<String>().into(),
    };
    let mut out = String::with_capacity(nfc.len());
    let mut blank_run = 0;
    for line in nfc.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let cleaned: String = line
            .chars()
            .filter(|&c| !c.is_control() || c == '\t')
            .filter(|&c| !matches!(c, '\u{200B}' | '\u{FEFF}' | '\u{00AD}'))
            .collect();
        let cleaned = match kind {
            Kind::Code => cleaned.trim_end().to_string(),
            Kind::Text => cleaned.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        if cleaned.is_empty() {
            blank_run += 1;
            if kind == Kind::Text && blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(&cleaned);
        out.push('\n');
    }
    let trimmed = out.trim_matches('\n');
    if trimmed.len() == out.len() {
        out
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, kind: Kind, want: &str) {
        assert_eq!(normalize(input, kind), want, "{input:?}");
    }

    #[test]
    fn normalises_prose_and_code() {
        check("  Hola   mundo \r\n\r\n\r\n\tadiós ", Kind::Text, "Hola mundo\n\nadiós");
        check("cafe\u{301}", Kind::Text, "caf\u{e9}");
        check("a\u{0}b\u{7}c\u{200B}d", Kind::Text, "abcd");
        check("\n\nfn main() {\n    x();   \n\n\n}\n", Kind::Code, "fn main() {\n    x();\n\n\n}");
        check("", Kind::Text, "");
        check(" \n \n", Kind::Text, "");
    }
}
