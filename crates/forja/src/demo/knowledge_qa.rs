//! The knowledge-base measurement's data: the demo council's minutes as
//! Markdown documents (one per session: a dated title, a heading per
//! agenda item) and questions whose answer is in one passage of one
//! document, with the answer text (truth known from the generator).
//!
//! Kinds of question: the amount of an agenda item ("¿Por qué importe se
//! trató el punto 2 en el Pleno del 14 de marzo de 2021?"), the time the
//! session closed, and what a resident asked for (sessions with exactly
//! one such request). Sessions differ mostly by their date, so retrieval
//! must find the right document, not just the right kind of passage.

use super::scenario::{self, Session};
use forja_eval::metrics::MONTHS_ES as MONTHS;

/// A document of the corpus.
pub struct Doc {
    /// File name (`pleno-….md`).
    pub name: String,
    /// Its Markdown.
    pub text: String,
}

/// A question.
#[derive(Clone)]
pub struct Qa {
    /// `amount`, `closing` or `request`.
    pub kind: &'static str,
    /// The question, in Spanish.
    pub question: String,
    /// The answer as the document writes it.
    pub answer: String,
    /// The document it is in.
    pub doc: String,
}

/// "14 de marzo de 2021" for `2021-03-14`.
fn spoken_date(iso: &str) -> String {
    let p: Vec<u32> = iso.split('-').filter_map(|x| x.parse().ok()).collect();
    match p.as_slice() {
        [y, m, d] => format!("{d} de {} de {y}", MONTHS[(*m as usize).clamp(1, 12) - 1]),
        _ => iso.to_string(),
    }
}

fn between<'a>(s: &'a str, from: &str, to: &str) -> Option<&'a str> {
    let a = s.find(from)? + from.len();
    let b = s[a..].find(to)? + a;
    Some(&s[a..b])
}

fn doc_of(municipality: &str, s: &Session) -> (Doc, Vec<Qa>) {
    let date = spoken_date(&s.date);
    let name = format!("{}.md", s.id);
    let mut text = format!("# Acta del Pleno de {municipality}, sesión del {date}\n\n");
    let mut qa = Vec::new();
    let mut point = 0;
    let citizens = s.utterances.iter().filter(|u| u.kind == "citizen").count();
    for u in &s.utterances {
        match u.kind {
            "item" => {
                point += 1;
                text.push_str(&format!("## Punto {point}\n\n"));
                if let Some(amount) = between(&u.minutes, "por importe de ", " euros") {
                    qa.push(Qa {
                        kind: "amount",
                        question: format!(
                            "¿Por qué importe se trató el punto {point} en el Pleno del {date}?"
                        ),
                        answer: format!("{amount} euros"),
                        doc: name.clone(),
                    });
                }
            }
            "closing" => {
                text.push_str("## Cierre\n\n");
                if let Some(time) = between(&u.minutes, "sesión a las ", " horas") {
                    qa.push(Qa {
                        kind: "closing",
                        question: format!("¿A qué hora se levantó la sesión del Pleno del {date}?"),
                        answer: format!("{time} horas"),
                        doc: name.clone(),
                    });
                }
            }
            "citizen" if citizens == 1 => {
                if let Some(req) = between(&u.minutes, "solicitar que ", " y facilita") {
                    qa.push(Qa {
                        kind: "request",
                        question: format!("¿Qué pidió un vecino en el Pleno del {date}?"),
                        answer: req.to_string(),
                        doc: name.clone(),
                    });
                }
            }
            _ => {}
        }
        text.push_str(&u.minutes);
        text.push_str("\n\n");
    }
    (Doc { name, text }, qa)
}

/// `n` sessions of the council of `seed` as documents and their questions.
pub fn corpus(seed: u64, n: usize) -> (Vec<Doc>, Vec<Qa>) {
    let council = scenario::council(seed);
    let (mut docs, mut qa) = (Vec::new(), Vec::new());
    for s in scenario::sessions(&council, seed, n) {
        let (d, q) = doc_of(&council.municipality, &s);
        docs.push(d);
        qa.extend(q);
    }
    (docs, qa)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_is_in_its_document_and_questions_name_the_date() {
        let (docs, qa) = corpus(7, 30);
        assert_eq!(docs.len(), 30);
        assert!(qa.iter().any(|q| q.kind == "amount") && qa.iter().any(|q| q.kind == "request"));
        for q in &qa {
            let d = docs.iter().find(|d| d.name == q.doc).unwrap();
            assert!(d.text.contains(&q.answer), "{}: {}", q.question, q.answer);
            let title = d.text.lines().next().unwrap();
            let date = title.rsplit("sesión del ").next().unwrap();
            assert!(q.question.contains(date), "{} / {title}", q.question);
        }
        assert_eq!(spoken_date("2021-03-14"), "14 de marzo de 2021");
    }
}
