//! The digit-based recognizers: phone numbers, payment cards (Luhn + IIN),
//! Spanish DNI/NIE (check letter), Colombian cédulas (context word) and IPv4.
//!
//! One pass over the text cuts it into *chunks*: digit groups joined by short
//! separator runs (space, no-break space, `-`, `.`, parentheses), with an
//! optional leading `+` or `(`. `+34 612 345 678`, `(415) 555-0132`,
//! `4111 1111 1111 1111`, `1.234.567` and `2024-01-15` are each one chunk.
//! Every recognizer then looks for a run of whole groups that has its shape and
//! validates it, so no finding ever starts or ends inside a digit run. A run
//! that is not the whole chunk must be separated from the rest by a space, so
//! `192.168.1.1` or a date never yields a phone number.

use super::text::{char_at, char_before, is_word_char, ContextWords};
use super::{EntityKind, Finding};

/// Which digit-based kinds to look for, and how strictly.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NumericKinds {
    pub phone: bool,
    pub card: bool,
    pub nif: bool,
    pub nie: bool,
    pub cedula: bool,
    pub ip: bool,
    /// Audit mode: only phones written with `+` and a valid country code;
    /// DNI/NIE letters in upper case only.
    pub strict: bool,
}

/// More groups than this in one chunk: the chunk is cut (a table of numbers).
const MAX_GROUPS: usize = 64;

const PHONE_CONTEXT: ContextWords = ContextWords(&[
    "tel*",
    "tlf*",
    "tfno*",
    "movil*",
    "celular*",
    "cel",
    "cell*",
    "llam*",
    "phone*",
    "call*",
    "whatsapp*",
    "wasap*",
    "wsp",
    "whats*",
    "mobile*",
    "contact*",
    "fijo",
    "fax",
    "sms",
    "marca*",
    "dial*",
]);

/// Words that make a number an identifier of something else (an order, a ticket).
const PHONE_NEGATIVE: ContextWords = ContextWords(&[
    "pedido*",
    "order*",
    "orden",
    "ref",
    "refer*",
    "factura*",
    "invoice*",
    "ticket*",
    "expediente",
    "tracking",
    "seguimiento",
    "envio*",
    "codigo*",
    "code",
    "cuenta",
    "account",
    "id",
    "nº",
    "num",
    "radicado",
    "caso",
    "case",
    "serial",
    "serie",
    "lote",
    "sku",
    "modelo",
    "model",
    "isbn",
    "nit",
    "precio",
    "price",
    "total",
    "importe",
]);

const CEDULA_CONTEXT: ContextWords =
    ContextWords(&["cedula*", "c.c", "cc", "documento*", "identificacion", "nuip", "ciudadania"]);

const VERSION_CONTEXT: ContextWords =
    ContextWords(&["version*", "v", "ver", "build", "release", "firmware"]);

/// Words after a number that make it an amount or a measure.
const UNITS: ContextWords = ContextWords(&[
    "eur", "euro*", "usd", "cop", "peso*", "dolar*", "dollar*", "mil", "millon*", "million*", "km",
    "kg", "mb", "gb", "kb", "ms", "mg", "ml", "cm", "mm", "uds", "unidades", "units",
]);

#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
}

/// Whether `c` separates digit groups inside a number.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}')
}

/// Byte length of the separator run at `j` if a digit follows it.
fn gap_len(text: &str, j: usize) -> Option<usize> {
    let rest = text.get(j..)?;
    let (mut dots, mut dashes, mut open, mut close, mut chars) = (0, 0, 0, 0, 0);
    for (k, c) in rest.char_indices() {
        match c {
            '0'..='9' if chars > 0 => return Some(k),
            '.' => dots += 1,
            '-' => dashes += 1,
            '(' => open += 1,
            ')' => close += 1,
            c if is_space(c) => {}
            _ => return None,
        }
        chars += 1;
        if chars > 3 || dots > 1 || dashes > 1 || open > 1 || close > 1 {
            return None;
        }
    }
    None
}

struct Chunk<'a> {
    text: &'a str,
    /// Start of the chunk: the `+` or `(` before the first group, or the group.
    start: usize,
    plus: bool,
    paren: bool,
    groups: &'a [Group],
}

impl Chunk<'_> {
    fn n(&self) -> usize {
        self.groups.len()
    }

    fn len(&self, g: usize) -> usize {
        self.groups[g].end - self.groups[g].start
    }

    fn gap(&self, k: usize) -> &str {
        self.text.get(self.groups[k].end..self.groups[k + 1].start).unwrap_or("")
    }

    fn gap_has_space(&self, k: usize) -> bool {
        self.gap(k).chars().any(is_space)
    }

    /// The digits of groups `a..=b` (values 0-9) into `buf`; `None` past its size.
    fn digits<'b>(&self, a: usize, b: usize, buf: &'b mut [u8; 19]) -> Option<&'b [u8]> {
        let mut n = 0;
        for g in &self.groups[a..=b] {
            for &d in self.text.as_bytes().get(g.start..g.end)? {
                *buf.get_mut(n)? = d - b'0';
                n += 1;
            }
        }
        Some(&buf[..n])
    }

    /// Whether the text before the chunk lets a number start here: not inside a
    /// word, not after `12,` / `3.` / `10:` / `1/`.
    fn left_ok(&self) -> bool {
        left_ok(self.text, self.start)
    }

    /// Byte range of groups `a..=b`, with the leading `+` (group 0) and a `(`
    /// whose `)` is inside the range.
    fn span(&self, a: usize, b: usize) -> (usize, usize) {
        let mut start = self.groups[a].start;
        if a == 0 && self.plus {
            start = self.start;
        } else if b > a && self.gap(a).starts_with(')') {
            let opened = if a == 0 { self.paren } else { self.gap(a - 1).ends_with('(') };
            if opened {
                start -= 1;
            }
        }
        (start, self.groups[b].end)
    }

    /// Whether groups `a..=b` read as an amount or a measure (`€ 612 345 678`,
    /// `3101234567 pesos`).
    fn is_amount(&self, a: usize, b: usize) -> bool {
        let (start, end) = self.span(a, b);
        let before = self.text.get(..start).unwrap_or("").trim_end_matches(is_space);
        if before.ends_with(['$', '€', '£']) {
            return true;
        }
        let after = self.text.get(end..).unwrap_or("");
        let after = after.strip_prefix(is_space).unwrap_or(after);
        if after.starts_with(['€', '$', '%', '£']) {
            return true;
        }
        let word = after.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("");
        !word.is_empty() && word.len() <= 12 && {
            let mut s = String::new();
            UNITS.before(word, word.len(), 12, &mut s)
        }
    }
}

fn left_ok(text: &str, start: usize) -> bool {
    match char_before(text, start) {
        None => true,
        Some(c) if is_word_char(c) => false,
        Some('.' | ',' | ':' | '/') => {
            !char_before(text, start - 1).is_some_and(|d| d.is_ascii_digit())
        }
        Some(_) => true,
    }
}

/// Whether the text after a number ending at `end` lets it end there.
fn right_ok(text: &str, end: usize) -> bool {
    match char_at(text, end) {
        None => true,
        Some(c) if is_word_char(c) => false,
        Some('.' | ',' | ':' | '/') => !char_at(text, end + 1).is_some_and(|d| d.is_ascii_digit()),
        Some(_) => true,
    }
}

/// Runs the enabled digit recognizers over `text`, appending to `out`.
pub(crate) fn scan(text: &str, kinds: NumericKinds, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut groups: Vec<Group> = Vec::new();
    let mut scratch = String::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        groups.clear();
        let mut j = i;
        loop {
            let s = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            groups.push(Group { start: s, end: j });
            if groups.len() == MAX_GROUPS {
                break;
            }
            match gap_len(text, j) {
                Some(k) => j += k,
                None => break,
            }
        }
        let before = if i > 0 { b[i - 1] } else { 0 };
        let chunk = Chunk {
            text,
            start: if before == b'+' || before == b'(' { i - 1 } else { i },
            plus: before == b'+',
            paren: before == b'(',
            groups: &groups,
        };
        if kinds.card {
            cards(&chunk, out);
        }
        if kinds.phone {
            phones(&chunk, kinds.strict, &mut scratch, out);
        }
        if kinds.nif || kinds.nie {
            nif_nie(&chunk, kinds, out);
        }
        if kinds.cedula {
            cedulas(&chunk, &mut scratch, out);
        }
        if kinds.ip {
            ipv4(&chunk, &mut scratch, out);
        }
        i = j;
    }
}

fn push(out: &mut Vec<Finding>, kind: EntityKind, (start, end): (usize, usize), score: f32) {
    out.push(Finding { kind, start, end, score: score.min(1.0) });
}

// ---------------------------------------------------------------- cards

/// The Luhn checksum.
pub(crate) fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let v = u32::from(x) * if i % 2 == 1 { 2 } else { 1 };
            if v > 9 {
                v - 9
            } else {
                v
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether the number starts with an issuer prefix of a card network that
/// issues numbers of this length.
fn iin_ok(d: &[u8]) -> bool {
    let n = d.len();
    if n < 13 {
        return false;
    }
    let p = |k: usize| d[..k].iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x));
    let (p2, p3, p4) = (p(2), p(3), p(4));
    match d[0] {
        // Visa
        4 => matches!(n, 13 | 16 | 19),
        // Mastercard, Maestro
        5 => ((51..=55).contains(&p2) && n == 16) || matches!(p2, 50 | 56..=58),
        // Mastercard 2-series, Mir
        2 => ((2221..=2720).contains(&p4) && n == 16) || ((2200..=2204).contains(&p4) && n >= 16),
        // Amex, JCB, Diners
        3 => {
            (matches!(p2, 34 | 37) && n == 15)
                || ((3528..=3589).contains(&p4) && n >= 16)
                || (((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && n >= 14)
        }
        // Discover, UnionPay, Maestro
        6 => {
            ((p4 == 6011 || p2 == 65 || p2 == 62 || (644..=649).contains(&p3)) && n >= 16)
                || matches!(p2, 63 | 67)
        }
        _ => false,
    }
}

fn cards(c: &Chunk, out: &mut Vec<Finding>) {
    let n = c.n();
    let mut a = 0;
    while a < n {
        let left = if a == 0 { !c.plus && c.left_ok() } else { c.gap_has_space(a - 1) };
        match left.then(|| card_from(c, a)).flatten() {
            Some(b) => {
                let whole = a == 0 && b + 1 == n;
                push(out, EntityKind::CreditCard, c.span(a, b), if whole { 1.0 } else { 0.95 });
                a = b + 1;
            }
            None => a += 1,
        }
    }
}

/// The last group of a card number that starts at group `a`.
fn card_from(c: &Chunk, a: usize) -> Option<usize> {
    let n = c.n();
    let mut buf = [0u8; 19];
    let mut nd = 0;
    for b in a..n {
        if b > a {
            let gap = c.gap(b - 1);
            if gap.chars().count() != 1 || !gap.starts_with(|ch| is_space(ch) || ch == '-') {
                return None;
            }
        }
        nd += c.len(b);
        if nd > 19 {
            return None;
        }
        let right = if b + 1 == n { right_ok(c.text, c.groups[b].end) } else { c.gap_has_space(b) };
        let shaped = a == b || (a..=b).all(|g| (3..=6).contains(&c.len(g)));
        if nd >= 13 && right && shaped {
            if let Some(d) = c.digits(a, b, &mut buf) {
                if luhn(d) && iin_ok(d) {
                    return Some(b);
                }
            }
        }
    }
    None
}

// ---------------------------------------------------------------- phones

/// Assigned E.164 country codes (prefix-free).
fn is_country_code(cc: &[u8]) -> bool {
    let v = cc.iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x));
    match cc.len() {
        1 => matches!(v, 1 | 7),
        2 => matches!(
            v,
            20 | 27 | 30..=34 | 36 | 39 | 40 | 41 | 43..=49 | 51..=58 | 60..=66 | 81 | 82 | 84 | 86
                | 90..=95 | 98
        ),
        3 => matches!(
            v,
            211..=218 | 220..=258 | 260..=269 | 290 | 291 | 297..=299 | 350..=359 | 370..=389
                | 420 | 421 | 423 | 500..=509 | 590..=599 | 670..=692 | 850 | 852 | 853 | 855
                | 856 | 880 | 886 | 960..=968 | 970..=977 | 992..=998
        ),
        _ => false,
    }
}

fn nanp(d: &[u8]) -> bool {
    d.len() == 10 && d[0] >= 2 && d[3] >= 2
}

/// Score of an international number (`d` without the `+` or `00`), whose
/// country code must lie inside the first group (`first_len` digits).
fn international(d: &[u8], first_len: usize) -> Option<f32> {
    (1..=3).take_while(|&k| k <= first_len && k < d.len()).find_map(|k| {
        let (cc, nat) = d.split_at(k);
        if !is_country_code(cc) {
            return None;
        }
        let v = cc.iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x));
        match v {
            34 => (nat.len() == 9 && nat[0] >= 6).then_some(0.8),
            57 => (nat.len() == 10 && (nat[0] == 3 || (nat[0] == 6 && nat[1] == 0))).then_some(0.8),
            1 => nanp(nat).then_some(0.8),
            52 => (nat.len() == 10).then_some(0.8),
            _ => ((6..=12).contains(&nat.len()) && d.len() <= 15).then_some(0.7),
        }
    })
}

/// Score of a national number from its digits and group lengths; below the
/// default threshold where only context makes it a phone.
fn national(d: &[u8], lens: &[usize], paren: bool) -> Option<f32> {
    let grouped = lens.len() > 1;
    let shape = |shapes: &[&[usize]]| shapes.contains(&lens);
    match d.len() {
        // Spain: 6/7 mobile, 8/9 landline.
        9 if d[0] >= 6 => {
            if !shape(&[&[9], &[3, 3, 3], &[2, 3, 2, 2], &[3, 2, 2, 2]]) {
                None
            } else if grouped {
                Some(0.6)
            } else {
                Some(if d[0] <= 7 { 0.55 } else { 0.5 })
            }
        }
        10 => {
            let co_mobile = d[0] == 3 && d[1] <= 5;
            let co_land = d[0] == 6 && d[1] == 0 && (1..=8).contains(&d[2]);
            if (co_mobile || co_land) && shape(&[&[10], &[3, 3, 4], &[3, 7], &[3, 3, 2, 2]]) {
                Some(if grouped {
                    0.6
                } else if co_mobile {
                    0.5
                } else {
                    0.45
                })
            } else if nanp(d) && shape(&[&[3, 3, 4], &[10]]) {
                Some(if grouped { 0.6 } else { 0.4 })
            } else if paren && d[0] >= 2 && shape(&[&[3, 3, 4]]) {
                // `(555) 123-4567`: not a valid exchange, but written as a phone.
                Some(0.55)
            } else {
                None
            }
        }
        11 if d[0] == 1 && nanp(&d[1..]) && shape(&[&[1, 3, 3, 4]]) => Some(0.6),
        // Colombian landline without the area code.
        7 if (2..=8).contains(&d[0]) && shape(&[&[7], &[3, 4], &[3, 2, 2]]) => Some(0.25),
        _ => None,
    }
}

/// Base score of groups `a..=b` as a phone number.
fn phone_base(c: &Chunk, a: usize, b: usize, strict: bool) -> Option<f32> {
    if b - a >= 6 {
        return None;
    }
    let mut buf = [0u8; 19];
    let d = c.digits(a, b, &mut buf)?;
    if !(7..=15).contains(&d.len()) {
        return None;
    }
    if a == 0 && c.plus {
        return international(d, c.len(a));
    }
    if strict {
        return None;
    }
    if d.starts_with(&[0, 0]) && c.len(a) >= 4 {
        return international(&d[2..], c.len(a) - 2).map(|s| s - 0.05);
    }
    let mut lens = [0usize; 6];
    for (l, g) in lens.iter_mut().zip(a..=b) {
        *l = c.len(g);
    }
    let paren = c.span(a, b).0 < c.groups[a].start;
    national(d, &lens[..=b - a], paren)
}

fn phones(c: &Chunk, strict: bool, scratch: &mut String, out: &mut Vec<Finding>) {
    let n = c.n();
    let mut a = 0;
    while a < n {
        if (a == 0 && !c.left_ok()) || (a > 0 && !c.gap_has_space(a - 1)) {
            a += 1;
            continue;
        }
        // The best run starting at `a`: highest score, then longest.
        let mut best: Option<(usize, f32)> = None;
        for b in a..n.min(a + 6) {
            let right =
                if b + 1 == n { right_ok(c.text, c.groups[b].end) } else { c.gap_has_space(b) };
            if !right {
                continue;
            }
            if let Some(s) = phone_base(c, a, b, strict) {
                if best.is_none_or(|(_, bs)| s >= bs) {
                    best = Some((b, s));
                }
            }
        }
        let Some((b, mut score)) = best else {
            a += 1;
            continue;
        };
        if c.is_amount(a, b) {
            a = b + 1;
            continue;
        }
        let (start, end) = c.span(a, b);
        let intl = a == 0 && c.plus;
        if !(a == 0 && b + 1 == n) {
            score -= 0.05;
        }
        if PHONE_CONTEXT.before(c.text, start, 40, scratch) {
            score += if intl { 0.15 } else { 0.3 };
        } else if !intl
            && (c.text.get(..start).unwrap_or("").trim_end().ends_with('#')
                || PHONE_NEGATIVE.before(c.text, start, 12, scratch))
        {
            score -= 0.3;
        }
        push(out, EntityKind::PhoneNumber, (start, end), score);
        a = b + 1;
    }
}

// ---------------------------------------------------------------- DNI / NIE

const NIF_LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";

/// The DNI/NIE check letter of a number.
pub(crate) fn nif_letter(number: u32) -> u8 {
    NIF_LETTERS[(number % 23) as usize]
}

fn nif_nie(c: &Chunk, kinds: NumericKinds, out: &mut Vec<Finding>) {
    let n = c.n();
    let last = n - 1;
    let end = c.groups[last].end;
    // The letter, right after the last group or after one `-` / space.
    let (pos, sep) = match char_at(c.text, end) {
        Some('-' | ' ') => (end + 1, true),
        _ => (end, false),
    };
    let Some(letter) = char_at(c.text, pos).filter(char::is_ascii_alphabetic) else { return };
    if char_at(c.text, pos + 1).is_some_and(is_word_char) {
        return;
    }
    if letter.is_ascii_lowercase() && (sep || kinds.strict) {
        return;
    }
    let upper = letter.to_ascii_uppercase() as u8;
    let mut buf = [0u8; 19];
    // Candidate runs ending at the last group: `12345678`, `12.345.678`.
    let single = last;
    let dotted = (n >= 3
        && c.gap(last - 1) == "."
        && c.gap(last - 2) == "."
        && (1..=2).contains(&c.len(last - 2))
        && c.len(last - 1) == 3
        && c.len(last) == 3)
        .then(|| last - 2);
    for a in [Some(single), dotted].into_iter().flatten() {
        let Some(d) = c.digits(a, last, &mut buf) else { continue };
        // A DNI has 7–8 digits (a NIE's 7 after its letter); a longer run
        // is something else, and would overflow the number below.
        if !(7..=8).contains(&d.len()) {
            continue;
        }
        let number = d.iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x));
        let (start, _) = c.span(a, last);
        if a == 0 && a == single && !c.plus && d.len() == 7 {
            if let Some((nie_start, prefix)) = nie_prefix(c.text, c.start, kinds.strict) {
                // A NIE prefix: never read as a DNI.
                if kinds.nie && nif_letter(prefix * 10_000_000 + number) == upper {
                    push(out, EntityKind::EsNie, (nie_start, pos + 1), 1.0);
                }
                return;
            }
        }
        let left = if a == 0 { !c.plus && c.left_ok() } else { c.gap_has_space(a - 1) };
        if kinds.nif && left && (7..=8).contains(&d.len()) && nif_letter(number) == upper {
            let score = match (d.len(), letter.is_ascii_uppercase()) {
                (8, true) => 1.0,
                (8, false) => 0.9,
                _ => 0.8,
            };
            push(out, EntityKind::EsNif, (start, pos + 1), score);
            return;
        }
    }
}

/// The `X`/`Y`/`Z` before a NIE's digits (maybe with one `-` or space
/// between): its position and value.
fn nie_prefix(text: &str, digits_start: usize, strict: bool) -> Option<(usize, u32)> {
    let mut p = digits_start;
    if let Some('-' | ' ') = char_before(text, p) {
        p -= 1;
    }
    let x = char_before(text, p)?;
    let spaced = p != digits_start;
    let value = match x {
        'X' => 0,
        'Y' => 1,
        'Z' => 2,
        'x' if !spaced && !strict => 0,
        'y' if !spaced && !strict => 1,
        'z' if !spaced && !strict => 2,
        _ => return None,
    };
    let start = p - 1;
    (!char_before(text, start).is_some_and(is_word_char)).then_some((start, value))
}

// ---------------------------------------------------------------- cédula

fn cedulas(c: &Chunk, scratch: &mut String, out: &mut Vec<Finding>) {
    let n = c.n();
    let mut a = 0;
    while a < n {
        // `1234567890` or `1.234.567.890`.
        let mut b = a;
        while b + 1 < n && c.gap(b) == "." && c.len(b + 1) == 3 && b - a < 3 {
            b += 1;
        }
        let digits: usize = (a..=b).map(|g| c.len(g)).sum();
        let shaped = if a == b {
            true
        } else {
            (1..=3).contains(&c.len(a)) && (b + 1 == n || c.gap(b) != ".")
        };
        let left = if a == 0 { !c.plus && c.left_ok() } else { c.gap_has_space(a - 1) };
        let right = if b + 1 == n { right_ok(c.text, c.groups[b].end) } else { c.gap_has_space(b) };
        if shaped && left && right && (6..=10).contains(&digits) && !c.is_amount(a, b) {
            let (start, end) = c.span(a, b);
            if let Some(d) = CEDULA_CONTEXT.nearest(c.text, start, 40, scratch) {
                // `CC 80.123.456 TEL 3115551234`: the nearer word decides.
                let phone_nearer =
                    PHONE_CONTEXT.nearest(c.text, start, 40, scratch).is_some_and(|p| p < d);
                push(
                    out,
                    EntityKind::CoCedula,
                    (start, end),
                    if phone_nearer { 0.6 } else { 0.85 },
                );
            }
        }
        a = b + 1;
    }
}

// ---------------------------------------------------------------- IPv4

fn ipv4(c: &Chunk, scratch: &mut String, out: &mut Vec<Finding>) {
    let n = c.n();
    if n < 4 {
        return;
    }
    for a in 0..=n - 4 {
        let b = a + 3;
        if !(a..b).all(|g| c.gap(g) == ".") {
            continue;
        }
        if a > 0 && c.gap(a - 1).contains('.') || b + 1 < n && c.gap(b).contains('.') {
            continue;
        }
        let octets_ok = (a..=b).all(|g| {
            let s = &c.text.as_bytes()[c.groups[g].start..c.groups[g].end];
            s.len() <= 3
                && (s.len() == 1 || s[0] != b'0')
                && s.iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x - b'0')) <= 255
        });
        if !octets_ok {
            continue;
        }
        let (start, end) = (c.groups[a].start, c.groups[b].end);
        if a == 0 {
            let before = char_before(c.text, start);
            if before.is_some_and(|ch| is_word_char(ch) || ch == '.' || ch == '+') {
                continue;
            }
        }
        if b + 1 == n {
            match char_at(c.text, end) {
                Some(ch) if is_word_char(ch) => continue,
                Some('.') if char_at(c.text, end + 1).is_some_and(is_word_char) => continue,
                _ => {}
            }
        }
        if VERSION_CONTEXT.before(c.text, start, 15, scratch) {
            continue;
        }
        push(out, EntityKind::IpAddress, (start, end), 0.7);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: NumericKinds = NumericKinds {
        phone: true,
        card: true,
        nif: true,
        nie: true,
        cedula: true,
        ip: true,
        strict: false,
    };

    /// `expected`: `KIND:text` for each finding at or above 0.5, in order.
    fn check(input: &str, expected: &[&str]) {
        let mut out = Vec::new();
        scan(input, ALL, &mut out);
        out.retain(|f| f.score >= 0.5);
        let out = crate::pii::resolve(input, out);
        let got: Vec<String> =
            out.iter().map(|f| format!("{}:{}", f.kind, &input[f.start..f.end])).collect();
        assert_eq!(got, expected, "{input:?} {out:?}");
    }

    #[test]
    fn phones_positive() {
        check("llama al +34 612 345 678", &["PHONE_NUMBER:+34 612 345 678"]);
        check("+34612345678", &["PHONE_NUMBER:+34612345678"]);
        check("+57 310 123 4567", &["PHONE_NUMBER:+57 310 123 4567"]);
        check("+57 601 234 5678.", &["PHONE_NUMBER:+57 601 234 5678"]);
        check("+1 415 555 0132", &["PHONE_NUMBER:+1 415 555 0132"]);
        check("+1 (415) 555-0132", &["PHONE_NUMBER:+1 (415) 555-0132"]);
        check("+1-415-555-0132", &["PHONE_NUMBER:+1-415-555-0132"]);
        check("+44 20 7946 0958", &["PHONE_NUMBER:+44 20 7946 0958"]);
        check("+33 1 23 45 67 89", &["PHONE_NUMBER:+33 1 23 45 67 89"]);
        check("0034 612 345 678", &["PHONE_NUMBER:0034 612 345 678"]);
        check("mi número 612 345 678", &["PHONE_NUMBER:612 345 678"]);
        check("612-345-678", &["PHONE_NUMBER:612-345-678"]);
        // A negative word far before the number does not veto it (regression:
        // "the code never reached <phone>" was missed).
        check("el código no llegó al 954 36 43 57.", &["PHONE_NUMBER:954 36 43 57"]);
        check("the code never reached 310 614 3641.", &["PHONE_NUMBER:310 614 3641"]);
        check("612.345.678", &["PHONE_NUMBER:612.345.678"]);
        check("91 123 45 67", &["PHONE_NUMBER:91 123 45 67"]);
        check("612 34 56 78", &["PHONE_NUMBER:612 34 56 78"]);
        check("escríbeme: 612345678", &["PHONE_NUMBER:612345678"]);
        check("(612) 345 678", &["PHONE_NUMBER:(612) 345 678"]);
        check("310 123 4567", &["PHONE_NUMBER:310 123 4567"]);
        check("3101234567", &["PHONE_NUMBER:3101234567"]);
        check("(601) 234 5678", &["PHONE_NUMBER:(601) 234 5678"]);
        check("601 2345678", &["PHONE_NUMBER:601 2345678"]);
        check("(415) 555-0132", &["PHONE_NUMBER:(415) 555-0132"]);
        check("415-555-0132", &["PHONE_NUMBER:415-555-0132"]);
        check("1-415-555-0132", &["PHONE_NUMBER:1-415-555-0132"]);
        check("(555) 123-4567", &["PHONE_NUMBER:(555) 123-4567"]);
        check("555 123-4567", &[]);
        check("tel. 234 5678", &["PHONE_NUMBER:234 5678"]);
        check("whatsapp 6123456789", &["PHONE_NUMBER:6123456789"]);
        check(
            "a 612 345 678 o 699 111 222",
            &["PHONE_NUMBER:612 345 678", "PHONE_NUMBER:699 111 222"],
        );
        check("612\u{a0}345\u{a0}678", &["PHONE_NUMBER:612\u{a0}345\u{a0}678"]);
    }

    #[test]
    fn phones_negative() {
        check("612345678901", &[]);
        check("fecha 2024-01-15", &[]);
        check("a las 10:30", &[]);
        check("6.123.456,78 €", &[]);
        check("612 345 678 €", &[]);
        check("precio 612.345.678", &[]);
        check("pedido 612345678", &[]);
        check("pedido #699123456", &[]);
        check("versión 6.12.345.678", &[]);
        check("v612345678", &[]);
        check("612345678x", &[]);
        check("1,612345678", &[]);
        check("3.1415926535", &[]);
        check("4155550132", &[]);
        check("234 5678", &[]);
        check("+99 123 456 789", &[]);
        check("+34 512 345 678", &[]);
        check("123 456 789", &[]);
        check("15/01/2024 612", &[]);
        check("2024 01 15", &[]);
    }

    #[test]
    fn cards() {
        check("4111 1111 1111 1111", &["CREDIT_CARD:4111 1111 1111 1111"]);
        check("4111-1111-1111-1111", &["CREDIT_CARD:4111-1111-1111-1111"]);
        check("tarjeta 4111111111111111.", &["CREDIT_CARD:4111111111111111"]);
        check("5555 5555 5555 4444", &["CREDIT_CARD:5555 5555 5555 4444"]);
        check("2223 0031 2200 3222", &["CREDIT_CARD:2223 0031 2200 3222"]);
        check("amex 3782 822463 10005", &["CREDIT_CARD:3782 822463 10005"]);
        check("3056 930902 5904", &["CREDIT_CARD:3056 930902 5904"]);
        check("(4111 1111 1111 1111)", &["CREDIT_CARD:4111 1111 1111 1111"]);
        check("6011 1111 1111 1117", &["CREDIT_CARD:6011 1111 1111 1117"]);
        check("3530 1113 3330 0000", &["CREDIT_CARD:3530 1113 3330 0000"]);
        check("ref 12 4111 1111 1111 1111", &["CREDIT_CARD:4111 1111 1111 1111"]);
        check("4111 1111 1111 1112", &[]);
        check("4111111111111112", &[]);
        check("1234 5678 9012 3452", &[]);
        check("41111111111111111111", &[]);
        check("4111  1111 1111 1111", &[]);
        check("4111.1111.1111.1111", &[]);
        check("x4111111111111111", &[]);
        check("4111111111111111,50", &[]);
    }

    #[test]
    fn nif_nie() {
        check("DNI 12345678Z", &["ES_NIF:12345678Z"]);
        check("dni: 12345678-Z.", &["ES_NIF:12345678-Z"]);
        check("12345678 Z", &["ES_NIF:12345678 Z"]);
        check("12.345.678-Z", &["ES_NIF:12.345.678-Z"]);
        check("12345678z", &["ES_NIF:12345678z"]);
        check("00000000T", &["ES_NIF:00000000T"]);
        check("1234567L", &["ES_NIF:1234567L"]);
        check("NIE X1234567L", &["ES_NIE:X1234567L"]);
        check("X-1234567-L", &["ES_NIE:X-1234567-L"]);
        check("Y 1234567 X", &["ES_NIE:Y 1234567 X"]);
        check("z1234567r", &["ES_NIE:z1234567r"]);
        check("12345678A", &[]);
        check("12345678 z", &[]);
        check("12345678ZA", &[]);
        check("A12345678Z", &[]);
        check("X1234567A", &[]);
        check("AX1234567L", &[]);
        check("x 1234567 l", &[]);
        // Longer digit runs before a letter are no DNI (and once overflowed).
        check("expediente 4294967296123 Z", &[]);
        check("99999999999999999Z", &[]);
    }

    #[test]
    fn cedulas() {
        check("cédula 1.234.567.890", &["CO_CEDULA:1.234.567.890"]);
        check("C.C. 1020304050", &["CO_CEDULA:1020304050"]);
        check("CC: 79.123.456", &["CO_CEDULA:79.123.456"]);
        check("mi documento de identidad es 52123456", &["CO_CEDULA:52123456"]);
        check("cédula de ciudadanía número 1.020.304.050", &["CO_CEDULA:1.020.304.050"]);
        check("NUIP 1234567890", &["CO_CEDULA:1234567890"]);
        check("CC 80.123.456 TEL 3115551234", &["CO_CEDULA:80.123.456", "PHONE_NUMBER:3115551234"]);
        check("1.234.567.890", &[]);
        check("tengo 52123456 puntos", &[]);
        check("cédula 12345", &[]);
        check("cédula 12345678901", &[]);
        check("cc 1.234.567,50", &[]);
        check("documento 3.500.000 pesos", &[]);
        check("accc 52123456", &[]);
    }

    #[test]
    fn ipv4() {
        check("desde 192.168.1.10 ayer", &["IP_ADDRESS:192.168.1.10"]);
        check("ip: 8.8.8.8.", &["IP_ADDRESS:8.8.8.8"]);
        check("(10.0.0.1)", &["IP_ADDRESS:10.0.0.1"]);
        check("1.2.3.4.5", &[]);
        check("256.1.1.1", &[]);
        check("192.168.01.1", &[]);
        check("v1.2.3.4", &[]);
        check("versión 1.2.3.4", &[]);
        check("1.2.3", &[]);
        check("1.2.3.4.txt", &[]);
    }

    #[test]
    fn validators() {
        assert!(luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
        assert!(!luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
        assert_eq!(nif_letter(12345678), b'Z');
        assert_eq!(nif_letter(0), b'T');
    }
}
