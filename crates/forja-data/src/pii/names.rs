//! PERSON recognition: the tenant deny-list (every occurrence, folded, whole
//! words) and the name recognizer (gazetteers of first names and surnames,
//! titles and cue phrases), plus the fake-name lists the pseudonyms draw from.
//!
//! The recognizer tokenises the text into words and looks for a *chain* of
//! capitalised words (with particles such as `de la`, `van`) that has
//! evidence of being a name:
//!
//! | evidence                                             | score |
//! |------------------------------------------------------|-------|
//! | title before (`Sr.`, `Dra.`, `Mr.`) or intro cue (`me llamo`, `Nombre:`) | 0.8 (0.9 with a gazetteer word) |
//! | known first name + known surname in the chain        | 0.85  |
//! | known first name + unknown capitalised word          | 0.7   |
//! | greeting cue (`Hola`, `Dear`, `Gracias`)             | 0.7   |
//! | weak cue (`soy`, `I'm`, `this is`)                   | 0.65  |
//! | two known surnames (`García Márquez`)                | 0.65  |
//! | known first name alone                               | 0.6   |
//! | first name that is also a word (`Rosa`, `Will`) alone, mid-sentence | 0.55 |
//!
//! Words in `not_names.txt` (places, months, weekdays, greetings, roles,
//! brands) never start or extend a chain, except that a known surname still
//! extends one after a first name (`Juan León`).
//!
//! Known gaps: lower-case names (except after `me llamo`/`Nombre:` or once
//! seen in the document), unknown first names with no title or cue, a bare
//! surname, inverted `Pérez, Juan`, handles, all-caps names outside the
//! lists; false positives on places named after people (`Avenida Juan
//! Pablo II`) and unknown capitalised words after `soy`/`Hola`.

use std::collections::HashMap;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, MatchKind};
use unicode_normalization::char::is_combining_mark;

use super::text::{char_at, char_before, fold_into, fold_words, is_word_char, Folded};
use super::{EntityKind, Finding};
use crate::{DataError, Result};

const FIRST_M: u8 = 1;
const FIRST_F: u8 = 2;
const FIRST: u8 = FIRST_M | FIRST_F;
const SURNAME: u8 = 4;
const STOP: u8 = 8;
const TITLE: u8 = 16;
const PARTICLE: u8 = 32;

const TITLES: &[&str] = &[
    "sr",
    "sra",
    "srta",
    "sres",
    "don",
    "dona",
    "dr",
    "dra",
    "mr",
    "mrs",
    "ms",
    "mx",
    "miss",
    "prof",
    "profa",
    "lic",
    "ing",
    "senor",
    "senora",
    "senorita",
    "sir",
    "madam",
    "doctor",
    "doctora",
    "profesor",
    "profesora",
    "licenciado",
    "licenciada",
    "ingeniero",
    "ingeniera",
    "presidente",
    "presidenta",
    "president",
    "ministro",
    "ministra",
    "minister",
    "alcalde",
    "alcaldesa",
    "gobernador",
    "gobernadora",
    "governor",
    "senador",
    "senadora",
    "senator",
    "concejal",
    "diputado",
    "diputada",
    "juez",
    "jueza",
    "judge",
    "capitan",
    "captain",
    "coronel",
    "sargento",
    "fray",
    "sor",
];

/// Words for relatives and colleagues: a capitalised word right after one is
/// taken as a name (`mi esposa Yurany`), as after a weak cue.
const RELATIONS: &[&str] = &[
    "hijo",
    "hija",
    "esposo",
    "esposa",
    "marido",
    "novio",
    "novia",
    "amigo",
    "amiga",
    "hermano",
    "hermana",
    "primo",
    "prima",
    "tio",
    "tia",
    "jefe",
    "jefa",
    "companero",
    "companera",
    "vecino",
    "vecina",
    "mama",
    "papa",
    "abuelo",
    "abuela",
    "sobrino",
    "sobrina",
    "cunado",
    "cunada",
    "suegro",
    "suegra",
    "son",
    "daughter",
    "wife",
    "husband",
    "boyfriend",
    "girlfriend",
    "friend",
    "brother",
    "sister",
    "boss",
    "colleague",
    "coworker",
    "neighbour",
    "neighbor",
    "mom",
    "dad",
    "uncle",
    "aunt",
    "cousin",
    "grandma",
    "grandpa",
    "nephew",
    "niece",
];

const PARTICLES: &[&str] = &[
    "de", "del", "la", "las", "los", "da", "das", "do", "dos", "van", "von", "der", "den", "di",
    "du", "le", "y",
];

/// Words before an ambiguous first name that make it a place or a date
/// (`en Santiago`, `de Julio`, `la Paz`).
const PLACE_WORDS: &[&str] = &[
    "en", "de", "del", "desde", "hasta", "hacia", "in", "of", "from", "at", "on", "since", "until",
    "el", "la", "los", "las", "the",
];

/// How strongly a cue phrase announces a name, and what may separate it from
/// the name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cue {
    /// `me llamo`, `my name is`: spaces only; a lower-case known first name counts.
    Intro,
    /// `Nombre:`, `De:`, `From:`: a colon in between; lower case counts too.
    Field,
    /// `Atentamente,` / `Regards,`: commas, dashes and line breaks in between.
    SignOff,
    /// `Hola`, `Dear`: spaces or a comma.
    Greeting,
    /// `soy`, `I'm`, `mi esposa`: spaces only.
    Weak,
    /// `this is`, `I am`: spaces only, and only before a known name.
    Known,
}

impl Cue {
    fn score(self) -> f32 {
        match self {
            Cue::Intro | Cue::Field | Cue::SignOff => 0.8,
            Cue::Greeting => 0.7,
            Cue::Weak | Cue::Known => 0.65,
        }
    }

    fn gap_ok(self, gap: &str) -> bool {
        let only = |allowed: &dyn Fn(char) -> bool| !gap.is_empty() && gap.chars().all(allowed);
        match self {
            Cue::Intro | Cue::Weak | Cue::Known => only(&|c| is_hspace(c)),
            Cue::Field => only(&|c| is_hspace(c) || c == ':') && gap.contains(':'),
            Cue::Greeting => only(&|c| is_hspace(c) || c == ',') && gap.matches(',').count() <= 1,
            Cue::SignOff => only(&|c| c.is_whitespace() || matches!(c, ',' | '-' | '.' | ':')),
        }
    }
}

const CUES: &[(&[&str], Cue)] = &[
    (&["me", "llamo"], Cue::Intro),
    (&["mi", "nombre", "es"], Cue::Intro),
    (&["my", "name", "is"], Cue::Intro),
    (&["name", "is"], Cue::Intro),
    (&["atendido", "por"], Cue::Intro),
    (&["atendida", "por"], Cue::Intro),
    (&["attended", "by"], Cue::Intro),
    (&["le", "habla"], Cue::Intro),
    (&["les", "habla"], Cue::Intro),
    (&["nombre"], Cue::Field),
    (&["name"], Cue::Field),
    (&["nombres"], Cue::Field),
    (&["apellidos"], Cue::Field),
    (&["cliente"], Cue::Field),
    (&["titular"], Cue::Field),
    (&["contacto"], Cue::Field),
    (&["contact"], Cue::Field),
    (&["paciente"], Cue::Field),
    (&["usuario"], Cue::Field),
    (&["de"], Cue::Field),
    (&["para"], Cue::Field),
    (&["from"], Cue::Field),
    (&["to"], Cue::Field),
    (&["firma"], Cue::Field),
    (&["firmado"], Cue::SignOff),
    (&["signed"], Cue::SignOff),
    (&["atentamente"], Cue::SignOff),
    (&["cordialmente"], Cue::SignOff),
    (&["saludos"], Cue::SignOff),
    (&["un", "saludo"], Cue::SignOff),
    (&["regards"], Cue::SignOff),
    (&["sincerely"], Cue::SignOff),
    (&["cheers"], Cue::SignOff),
    (&["hola"], Cue::Greeting),
    (&["hi"], Cue::Greeting),
    (&["hello"], Cue::Greeting),
    (&["hey"], Cue::Greeting),
    (&["dear"], Cue::Greeting),
    (&["estimado"], Cue::Greeting),
    (&["estimada"], Cue::Greeting),
    (&["querido"], Cue::Greeting),
    (&["querida"], Cue::Greeting),
    (&["gracias"], Cue::Greeting),
    (&["thanks"], Cue::Greeting),
    (&["thank", "you"], Cue::Greeting),
    (&["buenos", "dias"], Cue::Greeting),
    (&["buenas", "tardes"], Cue::Greeting),
    (&["buenas", "noches"], Cue::Greeting),
    (&["buenas"], Cue::Greeting),
    (&["good", "morning"], Cue::Greeting),
    (&["good", "afternoon"], Cue::Greeting),
    (&["soy"], Cue::Weak),
    (&["i'm"], Cue::Weak),
    (&["im"], Cue::Weak),
    (&["i", "am"], Cue::Known),
    (&["this", "is"], Cue::Known),
];

fn is_hspace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{a0}' | '\u{202f}')
}

/// The gazetteers, parsed once per process from the embedded data files.
pub(crate) struct Gazetteer {
    words: HashMap<Box<str>, u8>,
    /// Fake male first names for pseudonyms.
    pub fake_m: Vec<&'static str>,
    /// Fake female first names for pseudonyms.
    pub fake_f: Vec<&'static str>,
    /// Fake surnames for pseudonyms.
    pub fake_surnames: Vec<&'static str>,
}

fn lines(data: &'static str) -> impl Iterator<Item = &'static str> {
    data.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The process-wide gazetteer.
pub(crate) fn gazetteer() -> &'static Gazetteer {
    static GAZ: OnceLock<Gazetteer> = OnceLock::new();
    GAZ.get_or_init(|| {
        let mut words: HashMap<Box<str>, u8> = HashMap::new();
        let mut add = |data: &'static str, flag: u8| {
            for l in lines(data) {
                let mut f = String::new();
                fold_into(l, &mut f);
                *words.entry(f.into_boxed_str()).or_default() |= flag;
            }
        };
        add(include_str!("data/first_names_m.txt"), FIRST_M);
        add(include_str!("data/first_names_f.txt"), FIRST_F);
        add(include_str!("data/surnames.txt"), SURNAME);
        add(include_str!("data/not_names.txt"), STOP);
        for t in TITLES {
            *words.entry((*t).into()).or_default() |= TITLE;
        }
        for p in PARTICLES {
            *words.entry((*p).into()).or_default() |= PARTICLE;
        }
        Gazetteer {
            words,
            fake_m: lines(include_str!("data/fake_first_m.txt")).collect(),
            fake_f: lines(include_str!("data/fake_first_f.txt")).collect(),
            fake_surnames: lines(include_str!("data/fake_surnames.txt")).collect(),
        }
    })
}

/// What the gazetteer knows of a word as a first name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstName {
    Male,
    Female,
    /// Listed as both (`Joan`, `Andrea` in Italian...).
    Either,
    Unknown,
}

impl Gazetteer {
    fn flags(&self, folded: &str) -> u8 {
        if let Some(&f) = self.words.get(folded) {
            return f;
        }
        // Compound words: `María-José`, `García-Márquez`.
        if folded.contains('-') {
            let mut parts = folded.split('-');
            let first = parts.next().map_or(0, |p| self.words.get(p).copied().unwrap_or(0));
            let sur =
                folded.split('-').any(|p| self.words.get(p).is_some_and(|f| f & SURNAME != 0));
            return (first & FIRST) | if sur { SURNAME } else { 0 };
        }
        0
    }

    /// The gender a folded first name is listed with.
    pub fn first_name(&self, folded: &str) -> FirstName {
        match self.flags(folded) & FIRST {
            FIRST_M => FirstName::Male,
            FIRST_F => FirstName::Female,
            FIRST => FirstName::Either,
            _ => FirstName::Unknown,
        }
    }

    /// Whether a folded word is a place, month, common word, title or
    /// particle (never remembered on its own as a name).
    pub fn is_common_word(&self, folded: &str) -> bool {
        self.flags(folded) & (STOP | TITLE | PARTICLE) != 0
    }

    /// Whether a folded word is a known first name or surname.
    pub fn is_name(&self, folded: &str) -> bool {
        self.flags(folded) & (FIRST | SURNAME) != 0
    }

    /// Whether a folded word is a known surname and not a known first name.
    pub fn is_surname_only(&self, folded: &str) -> bool {
        let f = self.flags(folded);
        f & SURNAME != 0 && f & FIRST == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// `juan`
    Lower,
    /// `Juan`, `McDonald`, `O'Brien`, `María-José`
    Title,
    /// `JUAN`
    Upper,
    /// `J`
    Initial,
    /// `iPhone`, `WhatsApp`, `abc123`
    Other,
}

struct Tok {
    start: usize,
    end: usize,
    /// Range of the folded word in the arena.
    folded: (usize, usize),
    flags: u8,
    case: Case,
}

fn case_of(word: &str) -> Case {
    let mut chars = word.chars().filter(|c| !is_combining_mark(*c));
    let Some(first) = chars.next() else { return Case::Other };
    if word.chars().any(char::is_numeric) {
        return Case::Other;
    }
    if !first.is_uppercase() {
        return if first.is_lowercase() { Case::Lower } else { Case::Other };
    }
    let rest: Vec<char> = chars.collect();
    if rest.is_empty() {
        return Case::Initial;
    }
    if rest.iter().all(|c| !c.is_lowercase()) {
        return Case::Upper;
    }
    // Inner capitals only after a joiner or a Mc/Mac prefix.
    let mut prev = first;
    for (k, &c) in rest.iter().enumerate() {
        if c.is_uppercase() {
            let after_joiner = matches!(prev, '-' | '\'' | '\u{2019}');
            let after_mc = matches!(first, 'M')
                && (k == 1 && rest[0] == 'c' || k == 2 && rest[..2] == ['a', 'c']);
            if !after_joiner && !after_mc {
                return Case::Other;
            }
        }
        prev = c;
    }
    Case::Title
}

fn tokenize(text: &str, gaz: &Gazetteer, arena: &mut String) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some((start, c)) = it.next() {
        if !c.is_alphanumeric() {
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some(&(j, d)) = it.peek() {
            if d.is_alphanumeric() || is_combining_mark(d) {
                end = j + d.len_utf8();
                it.next();
            } else if matches!(d, '\'' | '\u{2019}' | '-')
                && char_at(text, j + d.len_utf8()).is_some_and(char::is_alphabetic)
            {
                it.next();
            } else {
                break;
            }
        }
        let word = &text[start..end];
        let f0 = arena.len();
        fold_into(word, arena);
        let folded = &arena[f0..];
        let flags = gaz.flags(folded);
        toks.push(Tok { start, end, folded: (f0, arena.len()), flags, case: case_of(word) });
    }
    toks
}

/// Whether `a..b` of `text` is one or more horizontal spaces.
fn space_gap(text: &str, a: usize, b: usize) -> bool {
    a < b && text.get(a..b).is_some_and(|g| g.chars().all(is_hspace))
}

/// Whether `a..b` is `.` then spaces (after an initial: `John F. Kennedy`).
fn initial_gap(text: &str, a: usize, b: usize) -> bool {
    text.get(a..b)
        .and_then(|g| g.strip_prefix('.'))
        .is_some_and(|g| !g.is_empty() && g.chars().all(is_hspace))
}

struct Names<'a> {
    text: &'a str,
    toks: Vec<Tok>,
    arena: String,
}

impl Names<'_> {
    fn word(&self, i: usize) -> &str {
        let (a, b) = self.toks[i].folded;
        &self.arena[a..b]
    }

    fn gap(&self, i: usize) -> &str {
        // Between token i - 1 and token i.
        self.text.get(self.toks[i - 1].end..self.toks[i].start).unwrap_or("")
    }

    /// Whether token `i` starts a sentence (first word, or after `.!?` or a
    /// line break).
    fn sentence_start(&self, i: usize) -> bool {
        let gap =
            if i == 0 { self.text.get(..self.toks[0].start).unwrap_or("") } else { self.gap(i) };
        i == 0
            || gap.contains([
                '.', '!', '?', '\n', '¡', '¿', ':', ';', '"', '«', '\u{201c}', '(', '*', '>', '-',
            ])
    }

    fn has_title(&self, i: usize) -> bool {
        i > 0 && self.toks[i - 1].flags & TITLE != 0 && {
            let gap = self.gap(i);
            gap.chars().all(is_hspace) && !gap.is_empty()
                || gap.strip_prefix('.').is_some_and(|g| !g.is_empty() && g.chars().all(is_hspace))
        }
    }

    /// The strongest cue phrase right before token `i`.
    fn cue(&self, i: usize) -> Option<Cue> {
        if i == 0 {
            return None;
        }
        let prev = self.word(i - 1);
        let mut best: Option<Cue> = None;
        if RELATIONS.contains(&prev) && Cue::Weak.gap_ok(self.gap(i)) {
            best = Some(Cue::Weak);
        }
        for &(seq, kind) in CUES {
            let k = seq.len();
            if i < k || seq[k - 1] != prev || !kind.gap_ok(self.gap(i)) {
                continue;
            }
            let first = i - k;
            let words_match = seq.iter().enumerate().all(|(n, w)| self.word(first + n) == *w);
            let inner_spaces = (first + 1..i)
                .all(|t| space_gap(self.text, self.toks[t - 1].end, self.toks[t].start));
            if words_match && inner_spaces && best.is_none_or(|b| kind.score() > b.score()) {
                best = Some(kind);
            }
        }
        best
    }

    fn nameish(&self, i: usize) -> bool {
        let t = &self.toks[i];
        match t.case {
            Case::Title => true,
            Case::Upper => t.flags & (FIRST | SURNAME) != 0,
            _ => false,
        }
    }

    /// Extends a chain that starts at token `i`: returns the last token, and
    /// whether a known surname, and a known first name, follow the first token.
    fn extend(&self, i: usize, lower: bool) -> (usize, bool, bool) {
        let n = self.toks.len();
        let mut last = i;
        let mut names = 1;
        let mut has_surname = false;
        let mut has_first = false;
        while names < 4 {
            // Particles: up to two lower-case ones (`de la`).
            let mut p = last + 1;
            while p < n
                && p - last <= 2
                && self.toks[p].flags & PARTICLE != 0
                && self.toks[p].case == Case::Lower
                && space_gap(self.text, self.toks[p - 1].end, self.toks[p].start)
            {
                p += 1;
            }
            if p >= n {
                break;
            }
            let gap_ok = space_gap(self.text, self.toks[p - 1].end, self.toks[p].start)
                || (p == last + 1
                    && self.toks[last].case == Case::Initial
                    && initial_gap(self.text, self.toks[last].end, self.toks[p].start));
            if !gap_ok {
                break;
            }
            let t = &self.toks[p];
            let known = t.flags & (FIRST | SURNAME) != 0;
            let ok = if lower {
                t.case == Case::Lower && known && t.flags & (STOP | PARTICLE) == 0
            } else if t.case == Case::Initial {
                p + 1 < n
                    && initial_gap(self.text, t.end, self.toks[p + 1].start)
                    && self.nameish(p + 1)
            } else {
                self.nameish(p)
                    && t.flags & TITLE == 0
                    && (t.flags & STOP == 0 || t.flags & SURNAME != 0)
            };
            // `y` joins two surnames only (`Ortega y Gasset`).
            let y_ok = p == last + 1
                || (last + 1..p).all(|q| self.word(q) != "y")
                || (self.toks[last].flags & SURNAME != 0 && t.flags & SURNAME != 0);
            if !ok || !y_ok {
                break;
            }
            has_surname |= t.flags & SURNAME != 0;
            has_first |= t.flags & FIRST != 0 && t.flags & STOP == 0;
            last = p;
            if t.case != Case::Initial {
                names += 1;
            }
        }
        (last, has_surname, has_first)
    }

    fn find(&self, out: &mut Vec<Finding>) {
        let n = self.toks.len();
        let mut i = 0;
        while i < n {
            match self.chain_at(i) {
                Some((last, score)) => {
                    out.push(Finding {
                        kind: EntityKind::Person,
                        start: self.toks[i].start,
                        end: self.toks[last].end,
                        score,
                    });
                    i = last + 1;
                }
                None => i += 1,
            }
        }
    }

    /// The name starting at token `i`, if any: its last token and score.
    fn chain_at(&self, i: usize) -> Option<(usize, f32)> {
        let t = &self.toks[i];
        if t.flags & TITLE != 0 {
            return None;
        }
        let first = t.flags & FIRST != 0;
        let surname = t.flags & SURNAME != 0;
        let stop = t.flags & STOP != 0;
        if t.case == Case::Lower {
            // Only known first names right after `me llamo` / `Nombre:`.
            if !first || stop || !matches!(self.cue(i)?, Cue::Intro | Cue::Field) {
                return None;
            }
            let (last, _, _) = self.extend(i, true);
            return Some((last, 0.75));
        }
        if !self.nameish(i) {
            return None;
        }
        let blocked = stop && !first && !surname;
        if blocked {
            return None;
        }
        let (last, has_surname, has_first) = self.extend(i, false);
        let names = last > i;
        let mut score: f32 = 0.0;
        let after_saint = i > 0
            && matches!(self.word(i - 1), "san" | "santa" | "santo" | "saint" | "st" | "sant")
            && space_gap(self.text, self.toks[i - 1].end, t.start);
        if after_saint && !has_surname {
            return None; // `Hospital San Ignacio`, `San Juan`
        }
        if first && !stop {
            score = if has_surname {
                0.85
            } else if names {
                0.7
            } else {
                0.6
            };
        } else if first && has_surname {
            score = 0.85;
        } else if first && has_first {
            score = 0.7; // `Julio César`, `Rosa María`
        } else if surname && !stop && has_surname {
            score = 0.65;
        } else if !surname && !stop && has_surname && !self.sentence_start(i) {
            // `con Yurany Gómez`: an unknown word before a known surname.
            score = 0.6;
        }
        let known = first || surname || has_surname;
        let context = if self.has_title(i) {
            Some(0.8)
        } else {
            self.cue(i).filter(|&c| known || c != Cue::Known).map(Cue::score)
        };
        if let Some(c) = context {
            score = score.max(if known { c + 0.1 } else { c });
        }
        if score == 0.0 && first && stop && !names {
            // `Rosa`, `Will`, `Julio` alone: a name mid-sentence, not after a
            // place word or a number.
            let prev_is_place = i > 0 && {
                let prev = self.word(i - 1);
                PLACE_WORDS.contains(&prev) || prev.chars().all(|c| c.is_ascii_digit())
            };
            if !self.sentence_start(i) && !prev_is_place {
                score = 0.55;
            }
        }
        (score > 0.0).then_some((last, score.min(0.95)))
    }
}

/// Appends the names found by the gazetteer/context recognizer to `out`.
pub(crate) fn find_names(text: &str, gaz: &Gazetteer, out: &mut Vec<Finding>) {
    let mut arena = String::new();
    let toks = tokenize(text, gaz, &mut arena);
    Names { text, toks, arena }.find(out);
}

/// The tenant deny-list: folded entries searched in a folded copy of the text.
#[derive(Clone)]
pub(crate) struct DenyList {
    ac: AhoCorasick,
}

impl DenyList {
    /// Compiles the entries; `None` when there are none.
    pub fn new(entries: &[String]) -> Result<Option<DenyList>> {
        let mut folded: Vec<String> =
            entries.iter().map(|e| fold_words(e)).filter(|e| !e.is_empty()).collect();
        folded.sort();
        folded.dedup();
        if folded.is_empty() {
            return Ok(None);
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&folded)
            .map_err(|e| DataError::Config(format!("pii.deny_list cannot be compiled: {e}")))?;
        Ok(Some(DenyList { ac }))
    }

    /// Appends every whole-word occurrence in `text` to `out` (PERSON, score 1).
    pub fn find(&self, text: &str, out: &mut Vec<Finding>) {
        let f = Folded::new(text);
        for m in self.ac.find_overlapping_iter(&f.text) {
            let (s, e) = (m.start(), m.end());
            if char_before(&f.text, s).is_some_and(is_word_char)
                || char_at(&f.text, e).is_some_and(is_word_char)
            {
                continue;
            }
            if let Some((start, end)) = f.original(s, e) {
                out.push(Finding { kind: EntityKind::Person, start, end, score: 1.0 });
            }
        }
    }

    /// Whether `text` contains an entry as whole words.
    pub fn hits(&self, text: &str) -> bool {
        let mut out = Vec::new();
        self.find(text, &mut out);
        !out.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expected`: the names found, as text.
    fn check(input: &str, expected: &[&str]) {
        let mut out = Vec::new();
        find_names(input, gazetteer(), &mut out);
        out.retain(|f| f.score >= 0.5);
        let got: Vec<&str> = out.iter().map(|f| &input[f.start..f.end]).collect();
        assert_eq!(got, expected, "{input:?} {out:?}");
    }

    #[test]
    fn gazetteer_names() {
        check("Juan Pérez llamó ayer", &["Juan Pérez"]);
        check("ayer vino María José García López", &["María José García López"]);
        check("JUAN PÉREZ", &["JUAN PÉREZ"]);
        check("hablé con Carlos", &["Carlos"]);
        check("Carlos dice que sí", &["Carlos"]);
        check("con Juan Xyzt Pérez", &["Juan Xyzt Pérez"]);
        check("John Smith called", &["John Smith"]);
        check("John F. Kennedy", &["John F. Kennedy"]);
        check("María de la Torre", &["María de la Torre"]);
        check("Ana de Madrid", &["Ana"]);
        check("Juan León", &["Juan León"]);
        check("Juan y María", &["Juan", "María"]);
        check("José Ortega y Gasset", &["José Ortega y Gasset"]);
        check("Sean O'Brien", &["Sean O'Brien"]);
        check("María-José Núñez", &["María-José Núñez"]);
        check("según García Márquez", &["García Márquez"]);
        check("Abril García", &["Abril García"]);
        check("Julio César vino", &["Julio César"]);
        check("Rosa María", &["Rosa María"]);
        check("hablé con Rosa ayer", &["Rosa"]);
        check("Jose\u{301} Pe\u{301}rez", &["Jose\u{301} Pe\u{301}rez"]);
    }

    #[test]
    fn titles_and_cues() {
        check("el Sr. Xiomar vino", &["Xiomar"]);
        check("la Dra. Quiñones", &["Quiñones"]);
        check("Mr. Thornbury", &["Thornbury"]);
        check("el señor Gaitán", &["Gaitán"]);
        check("Me llamo Yeraldín Cuartas", &["Yeraldín Cuartas"]);
        check("me llamo juan pérez y tengo", &["juan pérez"]);
        check("mi nombre es Wendolyn", &["Wendolyn"]);
        check("My name is Thaddeus Crumb", &["Thaddeus Crumb"]);
        check("Nombre: Ximeno Tafur", &["Ximeno Tafur"]);
        check("From: Zebulon Quist", &["Zebulon Quist"]);
        check("Hola Yurleidy, gracias", &["Yurleidy"]);
        check("Hola, Yurleidy", &["Yurleidy"]);
        check("Dear Thaddeus,", &["Thaddeus"]);
        check("Atentamente,\nWendolyn Quist", &["Wendolyn Quist"]);
        check("soy Yeraldín", &["Yeraldín"]);
        check("I'm Thaddeus", &["Thaddeus"]);
        check("atendido por Ximeno", &["Ximeno"]);
        check("Gracias Pilar", &["Pilar"]);
        check("mi esposa Yurany dice", &["Yurany"]);
        check("el Presidente Petro", &["Petro"]);
        check("hablé con Yurany Gómez", &["Yurany Gómez"]);
        check("Yurany Gómez", &[]);
        check("mi amigo Google", &[]);
        check("This is Amazing, really", &[]);
        check("this is Sarah", &["Sarah"]);
        check("Fui al Hospital San Ignacio", &[]);
        check("la Segunda Guerra Mundial", &[]);
    }

    #[test]
    fn not_names() {
        check("Madrid es bonita", &[]);
        check("Vivo en Bogotá, Colombia", &[]);
        check("Gracias por todo", &[]);
        check("El Lunes 5 de Mayo", &[]);
        check("Hola Equipo", &[]);
        check("Hola Buenas tardes", &[]);
        check("Dear Customer", &[]);
        check("Soy Colombiano", &[]);
        check("Soy de Medellín", &[]);
        check("uso WhatsApp y iPhone", &[]);
        check("Hola SQL", &[]);
        check("Rosa es un color", &[]);
        check("Will you help me?", &[]);
        check("vivo en Santiago", &[]);
        check("el 15 de Julio", &[]);
        check("la Paz", &[]);
        check("Torres", &[]);
        check("Blanco y Negro", &[]);
        check("Medellín Antioquia", &[]);
        check("me llamo mucho la atención", &[]);
        check("", &[]);
    }

    fn deny(entries: &[&str], input: &str, expected: &[&str]) {
        let list: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        let d = DenyList::new(&list).unwrap().unwrap();
        let mut out = Vec::new();
        d.find(input, &mut out);
        let got: Vec<&str> = out.iter().map(|f| &input[f.start..f.end]).collect();
        assert_eq!(got, expected, "{input:?}");
    }

    #[test]
    fn deny_list() {
        deny(&["jose alvarez"], "Hablé con JOSÉ ÁLVAREZ ayer", &["JOSÉ ÁLVAREZ"]);
        deny(&["José Álvarez"], "jose  alvarez.", &["jose  alvarez"]);
        deny(&["jose alvarez"], "Jose\u{301} A\u{301}lvarez", &["Jose\u{301} A\u{301}lvarez"]);
        deny(&["jose alvarez"], "josé álvarezz", &[]);
        deny(&["ana"], "Ana, ana y ANA; banana", &["Ana", "ana", "ANA"]);
        deny(&["ana", "ana maria"], "Ana María Marianne", &["Ana", "Ana María"]);
        deny(&["Zoë"], "zoe y ZOË", &["zoe", "ZOË"]);
        assert!(DenyList::new(&[]).unwrap().is_none());
    }
}
