//! The IBAN recognizer: country code, two check digits and a BBAN of the
//! country's length, written solid or with single spaces (`ES91 2100 0418
//! 4502 0005 1332`), validated with ISO 13616 mod-97.

use super::text::{char_before, is_word_char};
use super::{EntityKind, Finding};

/// IBAN length per country (SEPA and the other registry countries commonly seen).
const LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

fn country_length(cc: [u8; 2]) -> Option<usize> {
    LENGTHS.iter().find(|(c, _)| **c == cc).map(|&(_, n)| n)
}

/// ISO 13616 check: the IBAN (alphanumerics only, upper case) with its first
/// four chars moved to the end, letters as 10..35, is 1 mod 97.
pub(crate) fn mod97_ok(iban: &[u8]) -> bool {
    if iban.len() < 5 {
        return false;
    }
    let (head, tail) = iban.split_at(4);
    let mut r: u32 = 0;
    for &ch in tail.iter().chain(head) {
        r = match ch {
            b'0'..=b'9' => (r * 10 + u32::from(ch - b'0')) % 97,
            b'A'..=b'Z' => (r * 100 + u32::from(ch - b'A') + 10) % 97,
            _ => return false,
        };
    }
    r == 1
}

/// Appends the IBANs in `text` to `out`. `strict` (the audit) takes upper-case
/// ones only.
pub(crate) fn scan(text: &str, strict: bool, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut buf = [0u8; 34];
    let mut i = 0;
    while i + 4 <= b.len() {
        let start = i;
        i += 1;
        if !(b[start].is_ascii_alphabetic()
            && b[start + 1].is_ascii_alphabetic()
            && b[start + 2].is_ascii_digit()
            && b[start + 3].is_ascii_digit())
        {
            continue;
        }
        if strict && !(b[start].is_ascii_uppercase() && b[start + 1].is_ascii_uppercase()) {
            continue;
        }
        if char_before(text, start).is_some_and(is_word_char) {
            continue;
        }
        let cc = [b[start].to_ascii_uppercase(), b[start + 1].to_ascii_uppercase()];
        let Some(len) = country_length(cc) else { continue };
        buf[..4].copy_from_slice(&[cc[0], cc[1], b[start + 2], b[start + 3]]);
        let mut n = 4;
        let mut j = start + 4;
        while n < len && j < b.len() {
            let ch = b[j];
            if ch.is_ascii_alphanumeric() {
                if strict && ch.is_ascii_lowercase() {
                    break;
                }
                buf[n] = ch.to_ascii_uppercase();
                n += 1;
                j += 1;
            } else if ch == b' ' && b.get(j + 1).is_some_and(u8::is_ascii_alphanumeric) {
                j += 1;
            } else {
                break;
            }
        }
        if n < len || b.get(j).is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_') {
            continue;
        }
        if text[j..].chars().next().is_some_and(is_word_char) {
            continue;
        }
        if mod97_ok(&buf[..n]) {
            out.push(Finding { kind: EntityKind::IbanCode, start, end: j, score: 1.0 });
            i = j;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &[&str]) {
        let mut out = Vec::new();
        scan(input, false, &mut out);
        let got: Vec<&str> = out.iter().map(|f| &input[f.start..f.end]).collect();
        assert_eq!(got, expected, "{input:?}");
    }

    #[test]
    fn ibans() {
        check("ES91 2100 0418 4502 0005 1332", &["ES91 2100 0418 4502 0005 1332"]);
        check("iban: ES9121000418450200051332.", &["ES9121000418450200051332"]);
        check("es9121000418450200051332", &["es9121000418450200051332"]);
        check("DE89 3704 0044 0532 0130 00", &["DE89 3704 0044 0532 0130 00"]);
        check("GB29 NWBK 6016 1331 9268 19", &["GB29 NWBK 6016 1331 9268 19"]);
        check("FR14 2004 1010 0505 0001 3M02 606", &["FR14 2004 1010 0505 0001 3M02 606"]);
        check("NL91ABNA0417164300 y", &["NL91ABNA0417164300"]);
        check("BE68539007547034", &["BE68539007547034"]);
        check("ES91 2100 0418 4502 0005 1332 34", &["ES91 2100 0418 4502 0005 1332"]);
        // Wrong check digits, wrong length, glued to a word, unknown country.
        check("ES92 2100 0418 4502 0005 1332", &[]);
        check("ES91 2100 0418 4502 0005 133", &[]);
        check("ES9121000418450200051332X", &[]);
        check("XES9121000418450200051332", &[]);
        check("ZZ91 2100 0418 4502 0005 1332", &[]);
        check("ES91  2100 0418 4502 0005 1332", &[]);
        check("ES91ñ", &[]);
    }

    #[test]
    fn strict_is_upper_case_only() {
        let mut out = Vec::new();
        scan("es9121000418450200051332 ES9121000418450200051332", true, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].start, 25);
    }
}
