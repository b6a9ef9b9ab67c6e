//! A deterministic generator of Spanish municipal council sessions: the
//! demo scenario of `forja up --demo` and a fixture factory for tests.
//!
//! Each utterance comes twice: as an ASR transcript segment (lower case, no
//! punctuation, filler words, numbers spelled out, names misspelled the way
//! speech recognisers do, now and then a vecino's DNI or phone number) and
//! as the paragraph of the official minutes (acta): capitals, punctuation,
//! canonical names with title, role and group, numbers as digits, no
//! fillers and no personal data. The minutes are a function of the
//! transcript and the council's roster, so a model can learn the mapping.
//!
//! Randomness is a hand-written splitmix64 so the output never changes with
//! a dependency's version: the same seed gives the same sessions forever.

use forja_docs::itn::{dotted as with_dots, spell as spanish_number};
use forja_eval::metrics::MONTHS_ES as MONTHS;

/// The instruction the demo's conversations start with.
pub const SYSTEM_PROMPT: &str = "Convierte la transcripción automática en el párrafo del acta del Pleno: puntuación, nombres bien escritos, cifras con números, sin muletillas ni datos personales.";

/// A council member.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Canonical name.
    pub name: String,
    /// "alcaldesa", "secretario", "concejal de Hacienda", …
    pub role: String,
    /// Fictional municipal group ("" for the secretary).
    pub group: String,
    /// Lower-case ASR variants of the name.
    pub misspellings: Vec<String>,
    female: bool,
}

/// One fictional municipality and its members (the mayor first, the
/// secretary second), and the councillors who replace some of them later
/// (so later sessions bring speakers earlier ones never had).
#[derive(Debug, Clone, PartialEq)]
pub struct Council {
    /// Its name.
    pub municipality: String,
    /// Mayor, secretary, councillors, as the first session has them.
    pub members: Vec<Member>,
    /// (first session, index in `members` replaced, the newcomer).
    pub newcomers: Vec<(usize, usize, Member)>,
}

impl Council {
    /// The members at session `i` (newcomers in their predecessors' seats).
    pub fn roster(&self, i: usize) -> Vec<Member> {
        let mut r = self.members.clone();
        for (from, seat, m) in &self.newcomers {
            if i >= *from {
                r[*seat] = m.clone();
            }
        }
        r
    }

    /// Everyone who ever sits on the council.
    pub fn everyone(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().chain(self.newcomers.iter().map(|(_, _, m)| m))
    }
}

/// Sessions at which a newcomer takes a seat (seats 2, 3, 4 in turn).
pub const NEWCOMERS_FROM: [usize; 3] = [45, 75, 105];
/// The first session whose agenda may carry [`NEW_TOPICS`].
pub const NEW_TOPICS_FROM: usize = 60;

/// One utterance of a session, in both forms.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// The session id.
    pub session: String,
    /// Position in the session.
    pub index: usize,
    /// Canonical name of the speaker ("" for a vecino).
    pub speaker: String,
    /// "opening", "item", "proposal", "debate", "vote", "citizen", "closing".
    pub kind: &'static str,
    /// The ASR-style segment.
    pub transcript: String,
    /// The minutes paragraph.
    pub minutes: String,
    /// Personal data kinds in the transcript: "DNI", "PHONE".
    pub pii: Vec<&'static str>,
}

/// A session of the Pleno.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// `pleno-YYYY-MM-DD-NNN`.
    pub id: String,
    /// ISO date.
    pub date: String,
    /// Its utterances in order.
    pub utterances: Vec<Utterance>,
}

/// Which part of the data a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training (about 70 %).
    Train,
    /// Validation (about 10 %).
    Validation,
    /// The golden set (about 20 %): never trained on.
    Golden,
}

/// The split of a session, from a stable hash of its id.
pub fn split_of(session_id: &str) -> Split {
    let h = session_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x1000_0000_01b3));
    match h % 10 {
        0..=6 => Split::Train,
        7 => Split::Validation,
        _ => Split::Golden,
    }
}

/// splitmix64.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next();
        r
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
    pub(crate) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const ORDINALS: [&str; 8] =
    ["primero", "segundo", "tercero", "cuarto", "quinto", "sexto", "séptimo", "octavo"];
const FILLERS: [&str; 7] = ["eh", "este", "o sea", "bueno", "pues", "digamos", "mm"];
pub(crate) const WOMEN: [&str; 14] = [
    "María",
    "Carmen",
    "Lucía",
    "Elena",
    "Rocío",
    "Pilar",
    "Beatriz",
    "Inmaculada",
    "Yolanda",
    "Jennifer",
    "Ximena",
    "Gisela",
    "Begoña",
    "Verónica",
];
pub(crate) const MEN: [&str; 14] = [
    "José",
    "Javier",
    "Álvaro",
    "Sergio",
    "Vicente",
    "Gonzalo",
    "John",
    "Jorge",
    "Xavier",
    "Rubén",
    "Guillermo",
    "Héctor",
    "Iván",
    "Borja",
];
pub(crate) const SURNAMES: [&str; 20] = [
    "Johnson",
    "Smith",
    "Vázquez",
    "Gil",
    "Herrera",
    "Llorente",
    "Ballesteros",
    "Cevallos",
    "Jiménez",
    "Zamora",
    "Villalba",
    "Hidalgo",
    "Gutiérrez",
    "Quiroga",
    "Bravo",
    "Cerezo",
    "Yáñez",
    "Olivares",
    "Xirau",
    "Valverde",
];
const TOWNS: [&str; 8] = [
    "Villanueva del Río",
    "San Martín de la Vega",
    "Torrealta",
    "Valdemora",
    "Castrillo de Duero",
    "Navalcruz",
    "Puebla de Almenara",
    "Santa Olalla del Cerro",
];
const AREAS: [&str; 10] = [
    "Hacienda",
    "Urbanismo",
    "Cultura",
    "Deportes",
    "Medio Ambiente",
    "Festejos",
    "Seguridad Ciudadana",
    "Educación",
    "Servicios Sociales",
    "Movilidad",
];
const GROUPS: [&str; 4] = ["Vecinos por {T}", "Progresista", "Independiente", "Verde"];

/// Lower-case ASR variants of a name: English spellings heard in Spanish,
/// b/v, ll/y, silent h, z/s, soft c/s, g/j, x/j, dropped accents.
fn misspell(name: &str, rng: &mut Rng) -> String {
    let special: [(&str, &[&str]); 6] = [
        ("john", &["jhon", "yon", "jon"]),
        ("johnson", &["jhonson", "yonson", "johnsons"]),
        ("smith", &["smiht", "esmit", "smit"]),
        ("jennifer", &["yenifer", "jenifer"]),
        ("xavier", &["javier", "xabier"]),
        ("xirau", &["jirau", "sirau"]),
    ];
    let rules: [(&str, &str); 10] = [
        ("v", "b"),
        ("b", "v"),
        ("ll", "y"),
        ("y", "ll"),
        ("h", ""),
        ("z", "s"),
        ("ce", "se"),
        ("ci", "si"),
        ("ge", "je"),
        ("x", "j"),
    ];
    let words: Vec<String> = name
        .split(' ')
        .map(|w| {
            let lw = w.to_lowercase();
            if let Some((_, vs)) = special.iter().find(|(k, _)| *k == lw) {
                return rng.pick(vs).to_string();
            }
            let applicable: Vec<&(&str, &str)> =
                rules.iter().filter(|(a, _)| lw.contains(a)).collect();
            if applicable.is_empty() || rng.chance(0.3) {
                strip_accents(&lw)
            } else {
                let (a, b) = applicable[rng.below(applicable.len())];
                lw.replacen(a, b, 1)
            }
        })
        .collect();
    words.join(" ")
}

pub(crate) fn strip_accents(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'á' => 'a',
            'é' => 'e',
            'í' => 'i',
            'ó' => 'o',
            'ú' => 'u',
            c => c,
        })
        .collect()
}

/// The municipality of `seed` and its members.
pub fn council(seed: u64) -> Council {
    let mut rng = Rng::new(seed, 0xc0);
    let town = rng.pick(&TOWNS).to_string();
    let n = 9 + rng.below(5);
    let mut used = std::collections::HashSet::new();
    let mut members = Vec::new();
    let mut areas: Vec<&str> = AREAS.to_vec();
    let mut new_name = |rng: &mut Rng, female: bool| loop {
        let first = if female { rng.pick(&WOMEN) } else { rng.pick(&MEN) };
        let name = format!("{first} {}", rng.pick(&SURNAMES));
        if used.insert(name.clone()) {
            break name;
        }
    };
    for i in 0..n {
        let female = rng.chance(0.5);
        let name = new_name(&mut rng, female);
        let (role, group) = match i {
            0 => (
                if female { "alcaldesa" } else { "alcalde" }.to_string(),
                GROUPS[0].replace("{T}", &town),
            ),
            1 => (if female { "secretaria" } else { "secretario" }.to_string(), String::new()),
            _ => {
                let area = if areas.is_empty() {
                    "Hacienda"
                } else {
                    areas.remove(rng.below(areas.len()))
                };
                let c = if female { "concejala" } else { "concejal" };
                let g = rng.pick(&GROUPS).replace("{T}", &town);
                (format!("{c} de {area}"), g)
            }
        };
        let misspellings = misspellings(&name, &mut rng);
        members.push(Member { name, role, group, misspellings, female });
    }
    // Drawn after the founding members, so those never change.
    let newcomers = NEWCOMERS_FROM
        .iter()
        .enumerate()
        .map(|(k, &from)| {
            let seat = 2 + k;
            let female = rng.chance(0.5);
            let name = new_name(&mut rng, female);
            let old = &members[seat];
            let area = old.role.split_once(" de ").map_or("Hacienda", |(_, a)| a);
            let role = format!("{} de {area}", if female { "concejala" } else { "concejal" });
            let misspellings = misspellings(&name, &mut rng);
            (from, seat, Member { name, role, group: old.group.clone(), misspellings, female })
        })
        .collect();
    Council { municipality: town, members, newcomers }
}

/// Two distinct ASR misspellings of `name` (fewer when it has few).
fn misspellings(name: &str, rng: &mut Rng) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..6 {
        let m = misspell(name, rng);
        if m != name.to_lowercase() && !out.contains(&m) {
            out.push(m);
        }
        if out.len() == 2 {
            break;
        }
    }
    out
}

/// Canonical names of the officials: public in minutes, not PII.
pub fn public_names(council: &Council) -> Vec<String> {
    council.everyone().map(|m| m.name.clone()).collect()
}

/// (transcript, minutes, has an amount) agenda topics.
const TOPICS: [(&str, &str); 14] = [
    (
        "aprobación si procede del presupuesto para la reforma del parque de la constitución",
        "Aprobación, si procede, del presupuesto para la reforma del Parque de la Constitución",
    ),
    ("aprobación del acta de la sesión anterior", "Aprobación del acta de la sesión anterior"),
    (
        "contrato de mantenimiento del alumbrado público",
        "Contrato de mantenimiento del alumbrado público",
    ),
    (
        "subvenciones a las asociaciones culturales del municipio",
        "Subvenciones a las asociaciones culturales del municipio",
    ),
    (
        "modificación de la ordenanza de tráfico en el casco histórico",
        "Modificación de la ordenanza de tráfico en el casco histórico",
    ),
    ("programa de las fiestas patronales", "Programa de las fiestas patronales"),
    (
        "servicio de limpieza viaria y recogida de residuos",
        "Servicio de limpieza viaria y recogida de residuos",
    ),
    ("ampliación de la biblioteca municipal", "Ampliación de la Biblioteca Municipal"),
    ("reforma del polideportivo municipal", "Reforma del polideportivo municipal"),
    ("rehabilitación del mercado de abastos", "Rehabilitación del mercado de abastos"),
    ("plan de asfaltado de caminos rurales", "Plan de asfaltado de caminos rurales"),
    ("moción sobre el transporte escolar", "Moción sobre el transporte escolar"),
    (
        "convenio con la diputación para el centro de día",
        "Convenio con la Diputación para el centro de día",
    ),
    ("cuenta general del ejercicio anterior", "Cuenta general del ejercicio anterior"),
];

/// Agenda topics that appear only from session [`NEW_TOPICS_FROM`] on.
const NEW_TOPICS: [(&str, &str); 5] = [
    (
        "instalación de placas solares en los edificios municipales",
        "Instalación de placas solares en los edificios municipales",
    ),
    ("creación del carril bici de la ronda norte", "Creación del carril bici de la Ronda Norte"),
    ("adhesión a la red de ciudades por el clima", "Adhesión a la Red de Ciudades por el Clima"),
    ("plan municipal de vivienda joven", "Plan municipal de vivienda joven"),
    ("digitalización del registro municipal", "Digitalización del Registro Municipal"),
];

/// Proposals: transcript and minutes templates; `{N}` is a number (spoken /
/// written), `{E}` an amount in euros, `{H}` an hour.
const ACTIONS: [(&str, &str); 8] = [
    (
        "se amplíe el horario de la biblioteca municipal hasta las {H}",
        "ampliar el horario de la Biblioteca Municipal hasta las {H}",
    ),
    (
        "se destinen {E} a la mejora de los parques infantiles",
        "destinar {E} a la mejora de los parques infantiles",
    ),
    (
        "se instalen {N} nuevas farolas en la calle mayor",
        "instalar {N} nuevas farolas en la calle Mayor",
    ),
    (
        "se contraten {N} monitores para el campamento de verano",
        "contratar {N} monitores para el campamento de verano",
    ),
    (
        "se reserve una partida de {E} para ayudas al comercio local",
        "reservar una partida de {E} para ayudas al comercio local",
    ),
    (
        "se planten {N} árboles en la avenida de la estación",
        "plantar {N} árboles en la avenida de la Estación",
    ),
    (
        "se abra el polideportivo los domingos hasta las {H}",
        "abrir el polideportivo los domingos hasta las {H}",
    ),
    (
        "se rebaje la tasa de basuras en {N} euros por vivienda",
        "rebajar la tasa de basuras en {N} euros por vivienda",
    ),
];
const REASONS: [(&str, &str); 5] = [
    ("es una necesidad de los vecinos", "es una necesidad de los vecinos"),
    ("no hay informe técnico", "no hay informe técnico"),
    ("el gasto no está justificado", "el gasto no está justificado"),
    ("mejora la calidad de vida del barrio", "mejora la calidad de vida del barrio"),
    ("llega tarde y sin presupuesto", "llega tarde y sin presupuesto"),
];
const REQUESTS: [(&str, &str); 4] = [
    ("arreglen la acera de mi calle", "se arregle la acera de su calle"),
    (
        "pongan un paso de peatones delante del colegio",
        "se ponga un paso de peatones delante del colegio",
    ),
    ("limpien el solar de al lado de mi casa", "se limpie el solar contiguo a su vivienda"),
    ("haya más frecuencia en el autobús", "haya más frecuencia en el autobús"),
];

/// Fills `{N}` `{E}` `{H}` in a (transcript, minutes) template pair.
fn fill(rng: &mut Rng, t: &str, m: &str) -> (String, String) {
    let n = rng.range(2, 40);
    let e = rng.range(3, 250) * 1000;
    let h = rng.range(19, 23);
    (
        t.replace("{N}", &spanish_number(n))
            .replace("{E}", &format!("{} euros", spanish_number(e)))
            .replace("{H}", &format!("{} horas", spanish_number(h))),
        m.replace("{N}", &n.to_string())
            .replace("{E}", &format!("{} euros", with_dots(e)))
            .replace("{H}", &format!("{h}:00 horas")),
    )
}

/// Joins spoken parts with fillers and the odd stutter.
fn speak(rng: &mut Rng, parts: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        if rng.chance(0.3) {
            out.push(rng.pick(&FILLERS).to_string());
        }
        for w in p.split(' ') {
            out.push(w.to_string());
            if matches!(w, "que" | "de" | "la" | "el") && rng.chance(0.08) {
                out.push(w.to_string());
            }
        }
    }
    out.join(" ")
}

fn spoken_name(rng: &mut Rng, m: &Member) -> String {
    if m.misspellings.is_empty() || rng.chance(0.3) {
        strip_accents(&m.name.to_lowercase())
    } else {
        rng.pick(&m.misspellings).clone()
    }
}

fn titled(m: &Member) -> String {
    format!("{} {}", if m.female { "Dña." } else { "D." }, m.name)
}

fn the(m: &Member) -> &'static str {
    if m.female {
        "La"
    } else {
        "El"
    }
}

fn councillor(m: &Member) -> String {
    format!("{} {}, {} ({})", the(m), m.role, titled(m), m.group)
}

fn dni(rng: &mut Rng) -> String {
    let n = rng.range(10_000_000, 99_999_999);
    let letter = b"TRWAGMYFPDXBNJZSQVHLCKE"[(n % 23) as usize] as char;
    format!("{n}{}", letter.to_ascii_lowercase())
}

fn time_words(h: u64, m: u64) -> String {
    match m {
        0 => format!("{} horas", spanish_number(h)),
        _ => format!("{} horas y {} minutos", spanish_number(h), spanish_number(m)),
    }
}

/// `n` sessions of `council`.
pub fn sessions(council: &Council, seed: u64, n: usize) -> Vec<Session> {
    (0..n).map(|i| session(council, seed, i)).collect()
}

fn session(c: &Council, seed: u64, i: usize) -> Session {
    let mut rng = Rng::new(seed, 0x5e55 + i as u64);
    let (year, month) = (2019 + (i / 24) as u64, (i / 2) % 12);
    let day = rng.range(1, 28);
    let date = format!("{year}-{:02}-{day:02}", month + 1);
    let id = format!("pleno-{date}-{i:03}");
    let roster = c.roster(i);
    let mayor = &roster[0];
    let secretary = &roster[1];
    let councillors = &roster[2..];
    let mut out: Vec<(&Member, &'static str, String, String, Vec<&'static str>)> = Vec::new();

    let (h, m) = (rng.range(17, 20), *rng.pick(&[0u64, 0, 15, 30, 45]));
    let kind = if rng.chance(0.8) { "ordinaria" } else { "extraordinaria" };
    let t = speak(
        &mut rng,
        &[
            "buenas tardes".into(),
            format!(
                "se abre la sesión {kind} del pleno del día {} de {} de {}",
                spanish_number(day),
                MONTHS[month],
                spanish_number(year)
            ),
            format!("siendo las {}", time_words(h, m)),
        ],
    );
    let mins = format!(
        "{}, {}, abre la sesión {kind} del Pleno del {day} de {} de {year} a las {h}:{m:02} horas.",
        if mayor.female { "La alcaldesa" } else { "El alcalde" },
        titled(mayor),
        MONTHS[month]
    );
    out.push((mayor, "opening", t, mins, vec![]));

    let items = 2 + rng.below(3);
    let agenda: Vec<(&str, &str)> = TOPICS
        .iter()
        .chain(if i >= NEW_TOPICS_FROM { &NEW_TOPICS[..] } else { &[] })
        .copied()
        .collect();
    let mut topics: Vec<usize> = (0..agenda.len()).collect();
    for (k, ordinal) in ORDINALS.iter().enumerate().take(items) {
        let (tt, tm) = agenda[topics.remove(rng.below(topics.len()))];
        let amount = rng.chance(0.4).then(|| rng.range(5, 400) * 1000);
        let (mut t, mut m) = (format!("punto {ordinal} {tt}"), format!("Punto {}. {tm}", k + 1));
        if let Some(a) = amount {
            t += &format!(" por importe de {} euros", spanish_number(a));
            m += &format!(" por importe de {} euros", with_dots(a));
        }
        out.push((secretary, "item", speak(&mut rng, &[t]), m + ".", vec![]));

        let who = rng.pick(councillors);
        let (at, am) = *rng.pick(&ACTIONS);
        let (at, am) = fill(&mut rng, at, am);
        let name = spoken_name(&mut rng, who);
        let t = speak(
            &mut rng,
            &[
                format!(
                    "tiene la palabra {} {name}",
                    if who.female { "la concejala" } else { "el concejal" },
                ),
                "gracias".into(),
                format!("nosotros proponemos que {at}"),
            ],
        );
        out.push((who, "proposal", t, format!("{} propone {am}.", councillor(who)), vec![]));

        for _ in 0..rng.below(3) {
            let other = rng.pick(councillors);
            let favour = rng.chance(0.5);
            let (rt, rm) = *rng.pick(&REASONS);
            let name = spoken_name(&mut rng, other);
            let t = speak(
                &mut rng,
                &[
                    format!(
                        "tiene la palabra {} {name}",
                        if other.female { "la concejala" } else { "el concejal" },
                    ),
                    format!(
                        "vamos a votar {} porque {rt}",
                        if favour { "a favor" } else { "en contra" }
                    ),
                ],
            );
            let m = format!(
                "{} anuncia el voto {} de su grupo porque {rm}.",
                councillor(other),
                if favour { "favorable" } else { "contrario" }
            );
            out.push((other, "debate", t, m, vec![]));
        }

        if rng.chance(0.35) {
            let (qt, qm) = *rng.pick(&REQUESTS);
            let mut pii = Vec::new();
            let mut parts = vec!["buenas tardes soy vecino del barrio".to_string()];
            if rng.chance(0.6) {
                parts.push(format!("mi dni es {}", dni(&mut rng)));
                pii.push("DNI");
            }
            parts.push(format!("quería pedir que {qt}"));
            if pii.is_empty() || rng.chance(0.5) {
                let phone = format!(
                    "6{:02} {:03} {:03}",
                    rng.range(0, 99),
                    rng.range(0, 999),
                    rng.range(0, 999)
                );
                parts.push(format!("mi teléfono es el {phone}"));
                pii.push("PHONE");
            }
            let t = speak(&mut rng, &parts);
            let m = format!("Un vecino interviene para solicitar que {qm} y facilita sus datos de contacto a la Secretaría.");
            out.push((secretary, "citizen", t, m, pii));
        }

        let present = roster.len() as u64 - 1;
        let favour = rng.range(0, present);
        let against = rng.range(0, present - favour);
        let abst = present - favour - against;
        let t = speak(
            &mut rng,
            &[format!(
                "votos a favor {} en contra {} abstenciones {}",
                spanish_number(favour),
                spanish_number(against),
                spanish_number(abst)
            )],
        );
        let m = format!(
            "Sometida a votación, la propuesta queda {} con {favour} votos a favor, {against} en contra y {abst} abstenciones.",
            if favour > against { "aprobada" } else { "rechazada" }
        );
        out.push((mayor, "vote", t, m, vec![]));
    }

    let (h, m) = (rng.range(19, 22), *rng.pick(&[0u64, 10, 20, 40, 50]));
    let t = speak(
        &mut rng,
        &[
            "y no habiendo más asuntos".into(),
            format!("se levanta la sesión a las {}", time_words(h, m)),
        ],
    );
    let mins = format!(
        "No habiendo más asuntos que tratar, {} levanta la sesión a las {h}:{m:02} horas.",
        if mayor.female { "la alcaldesa" } else { "el alcalde" }
    );
    out.push((mayor, "closing", t, mins, vec![]));

    let utterances = out
        .into_iter()
        .enumerate()
        .map(|(index, (who, kind, transcript, minutes, pii))| Utterance {
            session: id.clone(),
            index,
            speaker: if kind == "citizen" { String::new() } else { who.name.clone() },
            kind,
            transcript,
            minutes,
            pii,
        })
        .collect();
    Session { id, date, utterances }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forja_data::pii::{DocScrub, PiiConfig, Scrubber};

    #[test]
    fn deterministic_and_split_by_session() {
        let c = council(7);
        assert_eq!(c, council(7));
        assert_ne!(c, council(8));
        let a = sessions(&c, 7, 30);
        assert_eq!(a, sessions(&c, 7, 30));
        assert_ne!(a, sessions(&c, 8, 30));
        for s in &a {
            assert!((8..=40).contains(&s.utterances.len()), "{}", s.utterances.len());
            assert!(s.utterances.iter().all(|u| u.session == s.id));
        }
        let ids: Vec<String> = sessions(&c, 7, 1000).into_iter().map(|s| s.id).collect();
        let count = |sp| ids.iter().filter(|i| split_of(i) == sp).count();
        let (t, v, g) = (count(Split::Train), count(Split::Validation), count(Split::Golden));
        assert!(
            (600..800).contains(&t) && (50..160).contains(&v) && (130..280).contains(&g),
            "{t} {v} {g}"
        );
        assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), 1000);
    }

    #[test]
    fn later_sessions_bring_new_speakers_and_topics() {
        let c = council(7);
        let all = sessions(&c, 7, 140);
        for (k, (from, seat, m)) in c.newcomers.iter().enumerate() {
            assert_eq!(*from, NEWCOMERS_FROM[k]);
            assert!(c.members.iter().all(|x| x.name != m.name), "{} is new", m.name);
            assert_eq!(c.roster(*from)[*seat].name, m.name);
            assert_eq!(m.group, c.members[*seat].group, "a substitute keeps the seat's group");
            let speaks = |s: &Session| s.utterances.iter().any(|u| u.speaker == m.name);
            assert!(all[..*from].iter().all(|s| !speaks(s)), "{} before {from}", m.name);
            assert!(all[*from..].iter().any(speaks), "{} never speaks", m.name);
        }
        let new_topic = |s: &Session| {
            s.utterances.iter().any(|u| NEW_TOPICS.iter().any(|(t, _)| u.transcript.contains(t)))
        };
        assert!(all[..NEW_TOPICS_FROM].iter().all(|s| !new_topic(s)));
        assert!(all[NEW_TOPICS_FROM..].iter().filter(|s| new_topic(s)).count() > 10);
        assert!(public_names(&c).contains(&c.newcomers[0].2.name));
    }

    #[test]
    fn transcripts_are_asr_and_minutes_are_clean() {
        let c = council(3);
        let scrub =
            Scrubber::new(&PiiConfig { allow_list: public_names(&c), ..Default::default() })
                .unwrap();
        let (mut pii, mut misspelled) = (0, 0);
        for u in sessions(&c, 3, 60).iter().flat_map(|s| &s.utterances) {
            let t = &u.transcript;
            assert_eq!(*t, t.to_lowercase(), "{t}");
            assert!(!t.chars().any(|c| ".,;:¿?¡!()".contains(c)), "{t}");
            let m = &u.minutes;
            assert!(m.starts_with(char::is_uppercase) && m.ends_with('.'), "{m}");
            let words: Vec<&str> = m.split(|c: char| !c.is_alphanumeric()).collect();
            for f in ["eh", "este", "pues", "bueno", "digamos", "mm"] {
                assert!(!words.contains(&f), "filler `{f}` in {m}");
            }
            // Every DNI/phone in a transcript is found; minutes never carry one.
            let found = scrub.analyze(t);
            for kind in &u.pii {
                pii += 1;
                let want = if *kind == "DNI" { "ES_NIF" } else { "PHONE_NUMBER" };
                assert!(
                    found.iter().any(|f| f.kind.as_str() == want),
                    "{kind} not found in {t}: {found:?}"
                );
            }
            // Officials' names stay in the minutes.
            let out = scrub.scrub(m, &mut DocScrub::default()).text;
            assert_eq!(out, *m, "allow-listed minutes changed");
            if let Some(mem) = c.everyone().find(|x| x.name == u.speaker) {
                if mem.misspellings.iter().any(|v| t.contains(v.as_str())) {
                    misspelled += 1;
                }
            }
        }
        assert!(pii > 10 && misspelled > 20, "{pii} {misspelled}");
    }
}
