//! The diff engine on the cases the seed names: a paragraph moved from page
//! 1 to page 2 is `moved`, never deleted + inserted (with and without chunk
//! ids); edits, splits, merges, insertions, deletions and copies.

use forja_docs::diff::{diff, DiffOptions, OpKind, WordEdit};
use forja_docs::Block;

/// Paragraphs about different things, as real minutes are.
fn minutes(n: usize) -> Vec<Block> {
    const WHO: &[&str] = &[
        "La alcaldesa",
        "El secretario",
        "La concejala de Hacienda",
        "El portavoz vecinal",
        "El concejal de Obras",
        "La interventora",
        "El teniente de alcalde",
    ];
    const VERB: &[&str] = &[
        "propone",
        "defiende",
        "critica",
        "explica",
        "pregunta por",
        "solicita aplazar",
        "denuncia",
    ];
    const WHAT: &[&str] = &[
        "el asfaltado",
        "la piscina cubierta",
        "las ayudas al alquiler",
        "el alumbrado",
        "la recogida de residuos",
        "el mercado semanal",
        "la biblioteca",
        "el polideportivo",
        "los presupuestos participativos",
        "la ordenanza de terrazas",
        "el carril bici",
    ];
    const WHERE: &[&str] = &[
        "del barrio norte",
        "de la avenida principal",
        "junto al colegio",
        "en las pedanías",
        "del casco antiguo",
        "cerca del río",
        "en la plaza mayor",
        "del polígono",
        "de la estación",
    ];
    const WHY: &[&str] = &[
        "por su coste",
        "por las quejas recibidas",
        "tras el informe técnico",
        "por razones de seguridad",
        "ante la falta de personal",
        "por el retraso acumulado",
    ];
    (0..n)
        .map(|i| {
            Block::paragraph(format!(
                "{} {} {} {} {}, con un importe de {} euros, y pide que conste en acta su posición sobre el expediente {}.",
                WHO[i % WHO.len()],
                VERB[(i / 2) % VERB.len()],
                WHAT[(i * 5) % WHAT.len()],
                WHERE[(i * 7) % WHERE.len()],
                WHY[(i * 3) % WHY.len()],
                1000 + i * 137,
                2_026_000 + i
            ))
            .with_chunk(format!("s{i:04}"))
        })
        .collect()
}

fn strip_ids(blocks: &[Block]) -> Vec<Block> {
    blocks.iter().map(|b| Block { chunk_ids: vec![], ..b.clone() }).collect()
}

fn kinds(d: &forja_docs::diff::Delta) -> Vec<(&'static str, Vec<usize>, Vec<usize>)> {
    d.ops
        .iter()
        .filter(|o| o.kind != OpKind::Unchanged)
        .map(|o| (o.kind.name(), o.generated.clone(), o.final_.clone()))
        .collect()
}

#[test]
fn a_paragraph_moved_to_another_page_is_moved_with_or_without_ids() {
    let gen = minutes(60);
    let mut fin = gen.clone();
    let moved = fin.remove(3);
    fin.insert(45, moved);
    for (g, f) in [(gen.clone(), fin.clone()), (strip_ids(&gen), strip_ids(&fin))] {
        let d = diff(&g, &f, &DiffOptions::default());
        assert_eq!(kinds(&d), vec![("moved", vec![3], vec![45])]);
        assert_eq!(d.count(OpKind::Unchanged), 59);
        assert_eq!(d.count(OpKind::Deleted) + d.count(OpKind::Inserted), 0);
    }
}

#[test]
fn moved_and_edited_keeps_its_edit() {
    let gen = minutes(20);
    let mut fin = gen.clone();
    let mut p = fin.remove(2);
    p.text = p.text.replace("y pide que conste", "y exige que conste");
    fin.insert(15, p);
    for (g, f) in [(gen.clone(), fin.clone()), (strip_ids(&gen), strip_ids(&fin))] {
        let d = diff(&g, &f, &DiffOptions::default());
        assert_eq!(kinds(&d), vec![("moved_edited", vec![2], vec![15])]);
        let op = d.ops.iter().find(|o| o.kind == OpKind::MovedEdited).unwrap();
        assert_eq!(op.edits, vec![WordEdit { old: "pide".into(), new: "exige".into() }]);
        assert!(op.edit_ratio > 0.0 && op.edit_ratio < 0.2, "{}", op.edit_ratio);
    }
}

#[test]
fn a_rewritten_paragraph_keeps_its_identity_through_the_chunk_id() {
    let gen = minutes(5);
    let mut fin = gen.clone();
    fin[1].text = "Texto totalmente distinto escrito por la secretaria.".into();
    let d = diff(&gen, &fin, &DiffOptions::default());
    assert_eq!(kinds(&d), vec![("edited", vec![1], vec![1])]);
    assert!(d.ops[1].edit_ratio > 0.8);
    // Without ids it is a deletion and an insertion: nothing links them.
    let d = diff(&strip_ids(&gen), &strip_ids(&fin), &DiffOptions::default());
    assert_eq!(kinds(&d), vec![("deleted", vec![1], vec![]), ("inserted", vec![], vec![1])]);
}

#[test]
fn splits_merges_insertions_deletions_and_copies() {
    let gen = minutes(8);
    let mut fin = gen.clone();
    // Split paragraph 1 at its middle; the second half loses the bookmark.
    let text = fin[1].text.clone();
    let (a, b) = text.split_at(text.find(", con un importe").unwrap());
    fin[1].text = a.to_string();
    fin.insert(2, Block::paragraph(b.trim_start_matches(',').trim()));
    // Merge generated 4 and 5 (final 5 and 6): both bookmarks in one paragraph.
    let merged = Block {
        text: format!("{} {}", fin[5].text, fin[6].text),
        chunk_ids: vec!["s0004".into(), "s0005".into()],
        ..fin[5].clone()
    };
    fin.splice(5..7, [merged]);
    // Delete generated 7, insert a new paragraph at the end, copy generated 0.
    fin.retain(|p| p.chunk_ids != ["s0007"]);
    fin.push(Block::paragraph("Se levanta la sesión a las veinte horas."));
    fin.push(gen[0].clone());
    let d = diff(&gen, &fin, &DiffOptions::default());
    assert_eq!(
        kinds(&d),
        vec![
            ("split", vec![1], vec![1, 2]),
            ("merged", vec![4, 5], vec![5]),
            ("deleted", vec![7], vec![]),
            ("inserted", vec![], vec![7]),
            ("inserted", vec![0], vec![8]),
        ]
    );
    assert_eq!(d.ops.last().unwrap().matched_by, "copy");
    // The same without ids: content finds the split and the merge too.
    let d = diff(&strip_ids(&gen), &strip_ids(&fin), &DiffOptions::default());
    let k = kinds(&d);
    assert!(k.contains(&("split", vec![1], vec![1, 2])), "{k:?}");
    assert!(k.contains(&("merged", vec![4, 5], vec![5])), "{k:?}");
    assert!(k.contains(&("deleted", vec![7], vec![])), "{k:?}");
}

#[test]
fn empty_sides() {
    let gen = minutes(3);
    assert_eq!(diff(&gen, &[], &DiffOptions::default()).count(OpKind::Deleted), 3);
    assert_eq!(diff(&[], &gen, &DiffOptions::default()).count(OpKind::Inserted), 3);
    assert!(diff(&[], &[], &DiffOptions::default()).ops.is_empty());
}
