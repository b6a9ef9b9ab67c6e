//! The transcript aligner's edge cases: very short paragraphs, a very long
//! transcript, reordered items, and the "giant block" regression (a
//! paragraph must never swallow a huge span). Its quality on the demo
//! generator's sessions is measured by `forja bench align`.

use forja_docs::align::{align, AlignParams, Segment};

fn seg(text: &str, t: f64) -> Segment {
    Segment { text: text.into(), start: Some(t), end: Some(t + 4.0) }
}

fn filler(n: usize, t0: f64) -> Vec<Segment> {
    (0..n)
        .map(|i| {
            seg(
                &format!("bueno pues eso es lo que hay que decir número {i} vale"),
                t0 + 4.0 * i as f64,
            )
        })
        .collect()
}

#[test]
fn a_short_paragraph_never_swallows_a_giant_block() {
    // One matching segment, then 500 segments of chatter; far away, one
    // segment holds the paragraph's missing words, which tempts the span to
    // grow over everything in between.
    let mut segments = vec![seg("se levanta la sesión siendo las nueve", 0.0)];
    segments.extend(filler(500, 4.0));
    segments[300].text = "a las veintiuna horas en punto".into();
    for penalty in [AlignParams::default().length_penalty_factor, 0.0] {
        let params = AlignParams { length_penalty_factor: penalty, ..AlignParams::default() };
        let a = align(&segments, &["Se levanta la sesión a las veintiuna horas."], &params);
        let link = a.links[0].as_ref().expect("linked");
        assert_eq!(link.first, 0);
        let words: usize = segments[link.first..=link.last]
            .iter()
            .map(|s| s.text.split_whitespace().count())
            .sum();
        assert!(
            words as f32 <= 8.0 * params.word_count_threshold,
            "penalty {penalty}: {link:?} spans {words} words"
        );
        assert!(a.coverage < 0.01, "{}", a.coverage);
    }
}

#[test]
fn paragraphs_follow_the_transcript_and_find_moved_items() {
    let segments = vec![
        seg("buenas tardes se abre la sesión ordinaria del pleno", 0.0),
        seg("punto primero aprobación del acta de la sesión anterior", 4.0),
        seg("queda aprobada por unanimidad", 8.0),
        seg("punto segundo modificación de la ordenanza de terrazas", 12.0),
        seg("con el voto en contra del grupo vecinal", 16.0),
        seg("punto tercero contrato de recogida de residuos urbanos", 20.0),
        seg("se aprueba la prórroga por dos años", 24.0),
        seg("sin más asuntos se levanta la sesión", 28.0),
    ];
    let minutes = [
        "Se abre la sesión ordinaria del Pleno.",
        // Item 3 written before item 2: out of order.
        "Punto 3. Contrato de recogida de residuos urbanos: se aprueba la prórroga por dos años.",
        "Punto 1. Aprobación del acta de la sesión anterior: queda aprobada por unanimidad.",
        "Punto 2. Modificación de la ordenanza de terrazas, con el voto en contra del grupo vecinal.",
        "Se levanta la sesión.",
    ];
    let a = align(&segments, &minutes, &AlignParams::default());
    let spans: Vec<Option<(usize, usize)>> =
        a.links.iter().map(|l| l.as_ref().map(|l| (l.first, l.last))).collect();
    assert_eq!(spans, [Some((0, 0)), Some((5, 6)), Some((1, 2)), Some((3, 4)), Some((7, 7))]);
    assert!(a.links.iter().flatten().filter(|l| l.out_of_order).count() >= 1);
    assert!(a.score > 0.6, "{}", a.score);
    assert!((a.coverage - 1.0).abs() < 1e-6, "{}", a.coverage);
}

#[test]
fn empty_and_unrelated_inputs_link_nothing() {
    let a = align(&[], &["Punto 1."], &AlignParams::default());
    assert_eq!(a.links, [None]);
    let a = align(&filler(10, 0.0), &["Xilófono zoológico"], &AlignParams::default());
    assert_eq!(a.links, [None]);
    assert_eq!(a.score, 0.0);
    let a = align(&filler(3, 0.0), &[], &AlignParams::default());
    assert!(a.links.is_empty() && a.coverage == 0.0);
}
