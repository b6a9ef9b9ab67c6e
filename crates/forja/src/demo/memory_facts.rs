//! The entity-memory measurement's data: what residents of the demo
//! municipality tell its assistant, with the facts each utterance states
//! (truth known from the generator), and questions whose answer is one of
//! those facts as it stands after every utterance (a role that changed
//! hands is asked about its last holder).
//!
//! Kinds: a council role and who holds it (some change hands later, with
//! the month they did), where a resident lives, where one works, when a
//! public building opens, and questions that state nothing.

use super::scenario::{self, Rng, MEN, SURNAMES, WOMEN};
use forja_eval::metrics::MONTHS_ES as MONTHS;

/// A fact an utterance states.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    /// Who or what.
    pub subject: String,
    /// The relation.
    pub verb: String,
    /// The other side.
    pub object: String,
    /// Since when (`YYYY-MM`).
    pub since: Option<String>,
}

/// What a resident says, and the facts in it.
#[derive(Debug, Clone)]
pub struct Utterance {
    /// In Spanish.
    pub text: String,
    /// What it states (empty for a question).
    pub facts: Vec<Truth>,
}

/// A question that needs a remembered fact.
#[derive(Debug, Clone)]
pub struct Question {
    /// In Spanish.
    pub question: String,
    /// The answer as the fact writes it.
    pub answer: String,
}

const STREETS: [&str; 8] =
    ["Olmo", "Mayor", "Real", "del Sol", "de la Iglesia", "Nueva", "de Cervantes", "del Río"];
const BUILDINGS: [&str; 6] = [
    "La biblioteca municipal",
    "La piscina municipal",
    "El registro del ayuntamiento",
    "El polideportivo",
    "La oficina de turismo",
    "El centro cultural",
];
const WORKPLACES: [&str; 6] = [
    "la farmacia de la plaza",
    "el colegio público",
    "la cooperativa agrícola",
    "el centro de salud",
    "la panadería del mercado",
    "la residencia de mayores",
];
const ASKS: [&str; 5] = [
    "¿Cuándo es el próximo pleno?",
    "¿Qué documentos necesito para empadronarme?",
    "¿Se puede pagar el IBI en dos plazos?",
    "Quería saber si hay ayudas para el alquiler.",
    "¿Dónde se tira el aceite usado?",
];

fn truth(subject: &str, verb: &str, object: &str, since: Option<String>) -> Truth {
    Truth { subject: subject.into(), verb: verb.into(), object: object.into(), since }
}

/// `la` for a feminine role (`alcaldesa`, `concejala de …`), else `el`.
fn article(role: &str) -> &'static str {
    if role.split(' ').next().is_some_and(|w| w.ends_with('a')) {
        "la"
    } else {
        "el"
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
}

/// `n` utterances of the municipality of `seed`, and the questions they
/// make answerable.
pub fn corpus(seed: u64, n: usize) -> (Vec<Utterance>, Vec<Question>) {
    let council = scenario::council(seed);
    let mut rng = Rng::new(seed, 0x3e3);
    let mut used = std::collections::HashSet::new();
    let mut person = |rng: &mut Rng| loop {
        let first = if rng.chance(0.5) { rng.pick(&WOMEN) } else { rng.pick(&MEN) };
        let name = format!("{first} {}", rng.pick(&SURNAMES));
        if used.insert(name.clone()) && !council.everyone().any(|m| m.name == name) {
            break name;
        }
    };
    let (mut out, mut roles) = (Vec::new(), Vec::<(String, String)>::new());
    let (mut questions, mut opening) = (Vec::new(), Vec::<(String, String)>::new());
    for i in 0..n {
        let u = match i % 6 {
            0 => {
                // A role and its holder; from the second round on, some
                // roles change hands.
                let m = &council.members[rng.below(council.members.len().min(6))];
                let (name, since) = if i >= n / 2 && rng.chance(0.5) {
                    let month = 1 + rng.below(12);
                    (person(&mut rng), Some((2025 + rng.below(2), month)))
                } else {
                    (m.name.clone(), None)
                };
                let role = &m.role;
                let art = article(role);
                let text = match (since, rng.below(2)) {
                    (Some((y, mo)), _) => {
                        let new = if art == "la" { "nueva" } else { "nuevo" };
                        format!("Desde {} de {y}, {name} es {art} {new} {role}.", MONTHS[mo - 1])
                    }
                    (None, 0) => format!("{name} es {art} {role}."),
                    (None, _) => {
                        format!("{} {role} es {name}.", if art == "la" { "La" } else { "El" })
                    }
                };
                roles.retain(|(r, _)| r != role);
                roles.push((role.clone(), name.clone()));
                let since = since.map(|(y, mo)| format!("{y}-{mo:02}"));
                Utterance { text, facts: vec![truth(&name, "es", role, since)] }
            }
            1 => {
                let name = person(&mut rng);
                let street = format!("calle {} {}", rng.pick(&STREETS), 1 + rng.below(40));
                questions.push(Question {
                    question: format!("¿Dónde vive {name}?"),
                    answer: street.clone(),
                });
                Utterance {
                    text: format!("Me llamo {name} y vivo en la {street}."),
                    facts: vec![truth(&name, "vive en", &street, None)],
                }
            }
            2 => {
                let b = rng.pick(&BUILDINGS).to_string();
                let hour =
                    format!("{}:{}", 7 + rng.below(4), if rng.chance(0.5) { "00" } else { "30" });
                opening.retain(|(x, _)| *x != b);
                opening.push((b.clone(), hour.clone()));
                Utterance {
                    text: format!("{b} abre a las {hour}."),
                    facts: vec![truth(&b, "abre a las", &hour, None)],
                }
            }
            3 => {
                let name = person(&mut rng);
                let place = rng.pick(&WORKPLACES).to_string();
                questions.push(Question {
                    question: format!("¿Dónde trabaja {name}?"),
                    answer: place.clone(),
                });
                Utterance {
                    text: format!("Soy {name} y trabajo en {place}."),
                    facts: vec![truth(&name, "trabaja en", &place, None)],
                }
            }
            _ => Utterance { text: rng.pick(&ASKS).to_string(), facts: Vec::new() },
        };
        out.push(u);
    }
    for (role, name) in roles {
        questions.push(Question {
            question: format!("¿Quién es {} {role} del ayuntamiento?", article(&role)),
            answer: name,
        });
    }
    for (b, hour) in opening {
        questions.push(Question {
            question: format!("¿A qué hora abre {}?", lower_first(&b)),
            answer: hour,
        });
    }
    (out, questions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fact_is_in_its_utterance_and_questions_have_answers() {
        let (us, qs) = corpus(7, 60);
        assert_eq!(us.len(), 60);
        for u in &us {
            for f in &u.facts {
                assert!(
                    u.text.contains(&f.subject) || u.text.contains(&lower_first(&f.subject)),
                    "{u:?}"
                );
                assert!(u.text.contains(&f.object), "{u:?}");
            }
        }
        assert!(
            us.iter().any(|u| u.facts.iter().any(|f| f.since.is_some())),
            "some role changes hands"
        );
        assert!(qs.len() >= 20, "{}", qs.len());
        assert!(qs.iter().all(|q| !q.answer.is_empty()));
    }
}
