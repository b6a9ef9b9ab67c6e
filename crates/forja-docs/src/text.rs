//! Words: how the diff, the entity rule and the aligner cut text into
//! tokens and compare them regardless of case and accents.

/// Splits `text` into tokens: runs of letters and digits (with inner
/// apostrophes, dots and commas between digits, so `1.200,50` stays one
/// token) and single punctuation marks. Whitespace separates and is dropped.
pub fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_alphanumeric() {
            start.get_or_insert(i);
            continue;
        }
        // A joiner inside a word: l'Hospitalet, 1.200, 3,5.
        let next = chars.peek().map(|&(_, n)| n);
        let joins = match (start, next) {
            (Some(s), Some(n)) => {
                let prev = text[s..i].chars().next_back().unwrap_or(' ');
                ((c == '\'' || c == '’') && prev.is_alphabetic() && n.is_alphabetic())
                    || ((c == '.' || c == ',') && prev.is_ascii_digit() && n.is_ascii_digit())
            }
            _ => false,
        };
        if joins {
            continue;
        }
        if let Some(s) = start.take() {
            out.push(&text[s..i]);
        }
        if !c.is_whitespace() {
            out.push(&text[i..i + c.len_utf8()]);
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

pub use forja_core::text::fold;

/// True for a token made of letters or digits (not punctuation).
pub fn is_word(token: &str) -> bool {
    token.chars().next().is_some_and(char::is_alphanumeric)
}

/// The folded words of `text`, punctuation left out: what similarity and
/// alignment compare.
pub fn content_words(text: &str) -> Vec<String> {
    tokens(text).into_iter().filter(|t| is_word(t)).map(fold).collect()
}

/// Collapses runs of whitespace into one space and trims.
pub fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_numbers_and_elisions_whole() {
        assert_eq!(
            tokens("Se aprueban 1.200,50 € para l'Hospitalet, (sí)."),
            ["Se", "aprueban", "1.200,50", "€", "para", "l'Hospitalet", ",", "(", "sí", ")", "."]
        );
        assert_eq!(tokens("  "), Vec::<&str>::new());
        assert_eq!(tokens("fin."), ["fin", "."]);
    }

    #[test]
    fn fold_drops_case_and_accents() {
        assert_eq!(fold("GÓMEZ"), "gomez");
        assert_eq!(fold("Peña"), "pena");
        assert_eq!(content_words("¡Sí, Señor!"), ["si", "senor"]);
    }
}
