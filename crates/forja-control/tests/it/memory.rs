//! Entity memory in process over a real SQLite file: extracted facts are
//! grounded in their text or refused with a recorded reason; duplicates
//! merge; a new holder of a role and a new address supersede the old ones,
//! which stay as history; the tenant's dictionary normalises entities;
//! personal data other than names is refused; recall finds facts by the
//! words of a request; forgetting a person removes their facts and the
//! refusals that named them, and restores what they had superseded; one
//! tenant never sees, edits or forgets another's facts.

use crate::common;

use forja_control::memory::{RawFact, Source};
use forja_store::*;

use common::{bed, Bed};

fn fact(s: &str, v: &str, o: &str, since: Option<&str>) -> RawFact {
    RawFact { subject: s.into(), verb: v.into(), object: o.into(), since: since.map(Into::into) }
}

fn conv() -> Source {
    Source::Conversation("chatcmpl-1".into())
}

fn current(bed: &Bed, t: &Tenant) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = bed
        .control
        .facts(t, None, false, 100)
        .unwrap()
        .into_iter()
        .map(|f| (f.subject, f.verb, f.object))
        .collect();
    v.sort();
    v
}

#[test]
fn extracted_facts_are_checked_grounded_and_refusals_recorded() {
    let bed = bed();
    let text =
        "Me llamo Ana Ruiz y vivo en la calle Olmo 4. Mi correo es ana@example.org. ¿Quién es?";
    // (fact, refused because … or stored)
    let cases: Vec<(RawFact, Option<&str>)> = vec![
        (fact("Soy Ana Ruiz", "vivir en la calle Olmo 4", "calle Olmo 4", None), None),
        (
            fact("Marla Ruiz", "vive en", "calle Olmo 4", None),
            Some("subject `Marla Ruiz` is not in the text"),
        ),
        (fact("Ana Ruiz", "vive en", "Madrid", None), Some("object `Madrid` is not in the text")),
        (fact("Ana Ruiz", "es", "Ana Ruiz", None), Some("the subject and the object are the same")),
        (fact("  ", "es", "vecina", None), Some("`subject` is empty")),
        (fact("Quién", "es", "Ana Ruiz", None), Some("`subject` names nothing")),
        (
            fact("Ana Ruiz", "tiene correo", "ana@example.org", None),
            Some("personal data memory does not keep (EMAIL_ADDRESS)"),
        ),
        (
            fact("Ana Ruiz", "vive\u{7}", "calle Olmo 4", None),
            Some("`verb` has control characters"),
        ),
        (fact(&"x".repeat(81), "es", "vecina", None), Some("`subject` is longer than 80")),
    ];
    let facts: Vec<RawFact> = cases.iter().map(|(f, _)| f.clone()).collect();
    let out = bed.control.remember(&bed.a, &facts, &conv(), Some(text)).unwrap();
    assert_eq!(out.stored.len(), 1, "{out:?}");
    let f = out.stored[0].fact();
    assert_eq!(
        (f.subject.as_str(), f.verb.as_str(), f.object.as_str()),
        ("Ana Ruiz", "vivir en", "calle Olmo 4")
    );
    assert_eq!(
        (f.verb_key.as_str(), f.source_kind.as_str(), f.confidence),
        ("vive", "conversation", 0.9)
    );
    let want: Vec<&str> = cases.iter().filter_map(|(_, r)| *r).collect();
    assert_eq!(out.rejected.len(), want.len());
    for ((line, reason), w) in out.rejected.iter().zip(&want) {
        assert!(reason.contains(w), "{reason} / {w}");
        assert!(!line.contains("ana@example.org"), "a refusal is scrubbed: {line}");
    }
    // Recorded, newest first, with the source.
    let recorded = bed.control.store.memory_rejections(&bed.a.id, 100).unwrap();
    assert_eq!(recorded.len(), want.len());
    assert_eq!(recorded[0].source_ref.as_deref(), Some("chatcmpl-1"));
    assert!(recorded.iter().all(|r| !r.text.contains("@example.org")));
    // A since the text does not name is dropped, not the fact.
    let out = bed
        .control
        .remember(
            &bed.a,
            &[fact("Ana Ruiz", "trabaja en", "la biblioteca", Some("2020-01"))],
            &conv(),
            Some("Ana Ruiz trabaja en la biblioteca desde 2021."),
        )
        .unwrap();
    assert_eq!(out.stored[0].fact().since, None);
    // An output that is not the schema's JSON is refused whole, and what
    // is recorded of it is scrubbed too.
    let cut = "{\"facts\": [{\"subject\": \"ana@example.org";
    let why = forja_control::memory::parse(cut).unwrap_err();
    let kept = bed.control.reject(&bed.a, &conv(), cut, &why).unwrap();
    assert!(kept.contains("<EMAIL_ADDRESS>") && !kept.contains("ana@"), "{kept}");
}

#[test]
fn duplicates_merge_and_new_values_supersede_with_history() {
    let bed = bed();
    let c = &bed.control;
    let first = c.add_fact(&bed.a, &fact("Ana Ruiz", "es", "alcaldesa", None)).unwrap();
    // The same fact again (other spelling, article): merged.
    let again = c.add_fact(&bed.a, &fact("ana ruiz", "es", "la Alcaldesa", None)).unwrap();
    assert!(
        matches!(again, Remembered::Merged(ref f) if f.id == first.fact().id && f.mentions == 2),
        "{again:?}"
    );
    // A new mayor (masculine form of the same role, inverted): Ana's fact is history.
    let luis = c.add_fact(&bed.a, &fact("El alcalde", "es", "Luis Gil", Some("2026-06"))).unwrap();
    let Remembered::New { fact: l, superseded } = &luis else { panic!("{luis:?}") };
    assert_eq!(
        (l.subject.as_str(), l.object.as_str(), l.since.as_deref()),
        ("Luis Gil", "El alcalde", Some("2026-06"))
    );
    assert_eq!(superseded.len(), 1);
    assert_eq!(superseded[0].id, first.fact().id);
    let ana = c.store.memory_fact(&bed.a.id, &first.fact().id).unwrap();
    assert_eq!(ana.superseded_by.as_deref(), Some(l.id.as_str()));
    assert!(!ana.is_current());
    assert_eq!(c.facts(&bed.a, None, true, 100).unwrap().len(), 2, "history keeps both");
    // One address per person; roles that are not held alone accumulate.
    c.add_fact(&bed.a, &fact("Luis Gil", "vive en", "Madrid", None)).unwrap();
    c.add_fact(&bed.a, &fact("Luis Gil", "vivo en", "Sevilla", None)).unwrap();
    c.add_fact(&bed.a, &fact("Rosa Vidal", "es", "vecina", None)).unwrap();
    c.add_fact(&bed.a, &fact("Marta Díaz", "es", "vecina", None)).unwrap();
    assert_eq!(
        current(&bed, &bed.a),
        [
            ("Luis Gil".into(), "es".into(), "El alcalde".into()),
            ("Luis Gil".into(), "vivo en".into(), "Sevilla".into()),
            ("Marta Díaz".into(), "es".into(), "vecina".into()),
            ("Rosa Vidal".into(), "es".into(), "vecina".into()),
        ]
    );
    // Forgetting Luis's mayoralty makes Ana's current again.
    c.store.forget_memory_fact(&bed.a.id, &l.id).unwrap();
    assert!(c.store.memory_fact(&bed.a.id, &first.fact().id).unwrap().is_current());
}

#[test]
fn the_dictionary_normalises_entities() {
    let bed = bed();
    bed.control.dictionary_add(&bed.a, &[("Jhon Yonson".into(), "John Johnson".into())]).unwrap();
    let out = bed
        .control
        .remember(
            &bed.a,
            &[fact("jhon yonson", "trabaja en", "el centro de salud", None)],
            &conv(),
            Some("Jhon Yonson trabaja en el centro de salud."),
        )
        .unwrap();
    assert_eq!(out.stored[0].fact().subject, "John Johnson", "{out:?}");
    let again = bed
        .control
        .add_fact(&bed.a, &fact("John Johnson", "trabaja en", "centro de salud", None))
        .unwrap();
    assert!(matches!(again, Remembered::Merged(_)), "{again:?}");
}

#[test]
fn recall_finds_facts_by_the_words_of_a_request() {
    let bed = bed();
    let c = &bed.control;
    for f in [
        fact("Luis Gil", "es", "alcalde", None),
        fact("Luis Gil", "vive en", "calle Mayor 3", None),
        fact("La piscina municipal", "abre a las", "9:00", None),
        fact("Rosa Vidal", "es", "concejala de Cultura", None),
    ] {
        c.add_fact(&bed.a, &f).unwrap();
    }
    let subjects = |q: &str, k: usize| -> Vec<String> {
        c.recall(&bed.a, q, k)
            .unwrap()
            .into_iter()
            .map(|f| format!("{} {}", f.subject, f.object))
            .collect()
    };
    assert_eq!(subjects("¿Quién es la alcaldesa?", 8), ["Luis Gil alcalde"]);
    assert_eq!(subjects("¿A qué hora abre la piscina?", 8), ["La piscina municipal 9:00"]);
    let luis = subjects("¿Dónde vive Luis Gil?", 8);
    assert_eq!(luis.len(), 2, "{luis:?}");
    assert_eq!(subjects("¿Dónde vive Luis Gil?", 1).len(), 1, "bounded by k");
    assert!(subjects("¿Qué tiempo hará mañana?", 8).is_empty());
    assert!(c.recall(&bed.b, "¿Quién es el alcalde?", 8).unwrap().is_empty(), "another tenant");
}

#[test]
fn forgetting_a_person_removes_them_and_nothing_of_another_tenant() {
    let bed = bed();
    let c = &bed.control;
    c.add_fact(&bed.a, &fact("Ana Ruiz", "es", "alcaldesa", None)).unwrap();
    c.add_fact(&bed.a, &fact("Ana Ruiz", "vive en", "calle Olmo 4", None)).unwrap();
    c.add_fact(&bed.a, &fact("Luis Gil", "trabaja con", "Ana Ruiz García", None)).unwrap();
    c.add_fact(&bed.a, &fact("Anabel Ruizo", "es", "vecina", None)).unwrap();
    c.remember(
        &bed.a,
        &[fact("Ana Ruiz", "vive en", "Madrid", None)],
        &conv(),
        Some("Ana Ruiz vive en la calle Olmo."),
    )
    .unwrap();
    c.add_fact(&bed.b, &fact("Ana Ruiz", "es", "vecina", None)).unwrap();
    let before = c.store.storage(&bed.a.id).unwrap();

    let gone = c.forget_entity(&bed.a, "ana RUIZ").unwrap();
    assert_eq!((gone.facts, gone.rejections), (3, 1), "{gone:?}");
    assert_eq!(current(&bed, &bed.a), [("Anabel Ruizo".into(), "es".into(), "vecina".into())]);
    assert!(c.facts(&bed.a, Some("Ana Ruiz"), true, 100).unwrap().is_empty());
    assert!(c.store.memory_rejections(&bed.a.id, 100).unwrap().is_empty());
    assert!(c.store.storage(&bed.a.id).unwrap().used_bytes < before.used_bytes, "refunded");
    // The other tenant's Ana is untouched, and it cannot reach acme's facts.
    assert_eq!(current(&bed, &bed.b).len(), 1);
    let acme = c.facts(&bed.a, None, false, 10).unwrap().remove(0);
    assert!(matches!(c.store.memory_fact(&bed.b.id, &acme.id), Err(StoreError::NotFound { .. })));
    assert!(c.store.forget_memory_fact(&bed.b.id, &acme.id).is_err());
    assert!(c.edit_fact(&bed.b, &acme.id, &fact("X", "es", "Y", None)).is_err());
    assert_eq!(c.forget_entity(&bed.b, "Anabel Ruizo").unwrap().facts, 0);
    assert!(c.forget_entity(&bed.a, " ¿? ").is_err(), "an empty name is refused");
    // An edit is checked like any fact and re-keys it.
    let edited = c.edit_fact(&bed.a, &acme.id, &fact("Anabel Ruiz", "es", "vecina", None)).unwrap();
    assert_eq!(edited.subject_key, "anabel ruiz");
    assert!(c.edit_fact(&bed.a, &acme.id, &fact("", "es", "vecina", None)).is_err());
}
