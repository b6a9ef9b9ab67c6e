//! `forja corrections diff` and `forja bench align` end to end: real DOCX
//! files in, the delta (human and JSON) out, one-line errors for files
//! that are not what they claim; the aligner's quality on demo sessions.

use crate::common;

use common::{check_user_error, forja, stderr};
use forja_docs::docx::{write_docx, DraftMeta};
use forja_docs::Block;
use serde_json::Value;

fn minutes() -> Vec<Block> {
    [
        "La alcaldesa abre la sesión ordinaria del Pleno a las 19:00 horas.",
        "Punto 1. Aprobación del acta de la sesión anterior, que queda aprobada por unanimidad.",
        "Interviene D. Jhon Yonson, portavoz del grupo vecinal, sobre el carril bici.",
        "Punto 2. Modificación de la ordenanza de terrazas del casco antiguo.",
        "La concejala de Hacienda propone destinar 12.000 euros a las fiestas del barrio norte.",
        "Punto 3. Contrato de recogida de residuos y su prórroga por dos años.",
        "No habiendo más asuntos que tratar, se levanta la sesión a las 21:10 horas.",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| Block::paragraph(*t).with_chunk(format!("s{i}")))
    .collect()
}

#[test]
fn corrections_diff_reports_moves_entity_fixes_and_training_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = minutes();
    let mut fin = gen.clone();
    fin[2].text = fin[2].text.replace("Jhon Yonson", "John Johnson");
    fin[4].text = fin[4].text.replace("12.000 euros a las fiestas", "15.000 euros a la biblioteca");
    let moved = fin.remove(1);
    fin.insert(4, moved);
    let (g, f) = (tmp.path().join("acta.docx"), tmp.path().join("acta-final.docx"));
    let meta = DraftMeta { title: Some("Acta"), document_id: Some("d1") };
    std::fs::write(&g, write_docx(&gen, &meta).unwrap()).unwrap();
    std::fs::write(&f, write_docx(&fin, &meta).unwrap()).unwrap();

    let o = forja(&["corrections", "diff", g.to_str().unwrap(), f.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("moved") && out.contains("#2 -> #5"), "{out}");
    assert!(out.contains(r#"dictionary: "Jhon Yonson" -> "John Johnson""#), "{out}");
    assert!(out.contains("training pair"), "{out}");
    assert!(out.contains("learns 1 dictionary fix(es) and 1 training pair(s)"), "{out}");

    let o =
        forja(&["corrections", "diff", g.to_str().unwrap(), f.to_str().unwrap(), "--json"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["object"], "corrections.delta");
    assert_eq!(v["summary"]["moved"], 1);
    assert_eq!(v["summary"]["edited"], 2);
    assert_eq!(v["summary"]["unchanged"], 4);
    assert_eq!(v["learning"]["dictionary"], 1);
    assert_eq!(v["learning"]["training_pair"], 1);
    let fix =
        v["paragraphs"].as_array().unwrap().iter().find(|p| p["learning"] == "dictionary").unwrap();
    assert_eq!(fix["entities"][0]["right"], "John Johnson");
    assert_eq!(fix["chunk_ids"][0], "s2");
    let pair = v["paragraphs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["learning"] == "training_pair")
        .unwrap();
    assert!(pair["final_text"].as_str().unwrap().contains("15.000 euros a la biblioteca"));
}

#[test]
fn corrections_diff_refuses_what_is_not_its_draft() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tmp.path().join("acta.docx");
    std::fs::write(
        &g,
        write_docx(&minutes(), &DraftMeta { title: None, document_id: Some("d1") }).unwrap(),
    )
    .unwrap();
    let other = tmp.path().join("otra.docx");
    std::fs::write(
        &other,
        write_docx(&minutes(), &DraftMeta { title: None, document_id: Some("d2") }).unwrap(),
    )
    .unwrap();
    let o = forja(&["corrections", "diff", g.to_str().unwrap(), other.to_str().unwrap()], None);
    check_user_error(&o, "descends from document d2");
    let text = tmp.path().join("notas.docx");
    std::fs::write(&text, "esto no es un docx").unwrap();
    let o = forja(&["corrections", "diff", g.to_str().unwrap(), text.to_str().unwrap()], None);
    check_user_error(&o, "notas.docx: not a DOCX document (not a zip archive)");
    let o = forja(&["corrections", "diff", g.to_str().unwrap(), "/nonexistent/final.docx"], None);
    check_user_error(&o, "/nonexistent/final.docx: cannot read");
}

#[test]
fn the_aligner_links_demo_minutes_to_their_transcript() {
    let o = forja(&["bench", "align", "--sessions", "12", "--json"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    for case in v["cases"].as_array().unwrap() {
        let get = |k: &str| case[k].as_f64().unwrap();
        assert!(get("link_precision") >= 0.95, "{case}");
        assert!(get("link_recall") >= 0.95, "{case}");
        assert!(get("coverage") > 0.5, "{case}");
        assert!(get("short_recall") >= 0.9, "{case}");
    }
}
