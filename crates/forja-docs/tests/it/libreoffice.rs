//! The chunk ids survive a real editor: forja writes minutes, LibreOffice
//! (headless, driven through UNO by `scripts/libreoffice-edit.py`) edits
//! and saves them as DOCX, and forja reads them back and diffs them.
//!
//! Needs Debian's `libreoffice-writer-nogui` and `python3-uno` (`make
//! setup-test` installs them); without them the test says so and passes,
//! unless FORJA_REQUIRE_TESTDATA is set.

use forja_docs::diff::{diff, DiffOptions, OpKind};
use forja_docs::docx::{read_docx, write_docx, DraftMeta, ReadLimits};
use forja_docs::entity::{classify, EditClass, EntityRule};
use forja_docs::{Block, BlockKind};
use std::path::Path;
use std::process::Command;

fn libreoffice() -> bool {
    let ok = Path::new("/usr/bin/python3").exists()
        && Command::new("/usr/bin/python3")
            .args(["-c", "import uno"])
            .output()
            .is_ok_and(|o| o.status.success())
        && Command::new("soffice").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("FORJA_REQUIRE_TESTDATA").is_none(),
            "LibreOffice is missing: apt-get install libreoffice-writer-nogui python3-uno (make setup-test does)"
        );
        eprintln!("skipped: no soffice or python3-uno");
    }
    ok
}

fn draft() -> Vec<Block> {
    let mut blocks = vec![Block::paragraph("Acta de la sesión ordinaria del Pleno")
        .with_kind(BlockKind::Heading { level: 1 })];
    let topics = [
        "la aprobación del acta de la sesión anterior, que se aprueba por unanimidad",
        "la modificación de la ordenanza de terrazas en el casco antiguo",
        "las ayudas al alquiler para jóvenes del municipio",
        "el contrato de recogida de residuos y su prórroga",
        "la moción del grupo vecinal sobre el carril bici",
        "el informe de la interventora sobre el remanente de tesorería",
        "la piscina cubierta y su horario de invierno",
        "los presupuestos participativos de los barrios",
        "el alumbrado de la avenida principal",
        "el mercado semanal y los puestos vacantes",
        "la biblioteca municipal y su ampliación",
        "el polideportivo del barrio norte",
    ];
    for (i, t) in topics.iter().enumerate() {
        let who = if i == 4 { "Jhon Yonson, portavoz del grupo vecinal" } else { "la alcaldesa" };
        blocks.push(
            Block::paragraph(format!(
                "Punto {}. Interviene {who} sobre {t}. Tras el debate, se somete a votación.",
                i + 1
            ))
            .with_chunk(format!("s{:04}", i + 1)),
        );
    }
    blocks
}

#[test]
fn chunk_ids_survive_editing_and_saving_in_libreoffice() {
    if !libreoffice() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gen = draft();
    let input = dir.path().join("acta.docx");
    let output = dir.path().join("acta-final.docx");
    std::fs::write(
        &input,
        write_docx(&gen, &DraftMeta { title: Some("Acta"), document_id: Some("doc7") }).unwrap(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/libreoffice-edit.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .args([
            "pagebreak:8", // paragraphs 8.. on page 2
            "move:2:10",   // point 2 cut from page 1, pasted on page 2
            "copy:7:12",   // point 8 (paragraph 7 by now) copied to the end
            "replace:Jhon Yonson:John Johnson",
            "delete:11", // a point dropped
            "insert:3:Se incorpora a la sesión el concejal de Obras.",
            "split:1:Tras el debate",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "libreoffice-edit.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fin = read_docx(&std::fs::read(&output).unwrap(), &ReadLimits::default()).unwrap();
    for (i, b) in fin.blocks.iter().enumerate() {
        eprintln!("{i:2} {:?} {:?} {}", b.kind, b.chunk_ids, b.text);
    }
    // Every paragraph forja wrote still carries its id, the copy included;
    // both halves of the split paragraph carry the original's.
    let ids: Vec<&str> =
        fin.blocks.iter().flat_map(|b| b.chunk_ids.iter().map(String::as_str)).collect();
    assert_eq!(
        ids,
        [
            "s0001", "s0001", "s0003", "s0004", "s0005", "s0006", "s0007", "s0008", "s0009",
            "s0010", "s0002", "s0012", "s0008"
        ]
    );
    assert_eq!(fin.document_id.as_deref(), Some("doc7"), "the custom property survives");
    let d = diff(&gen, &fin.blocks, &DiffOptions::default());
    for op in &d.ops {
        eprintln!(
            "{:12} {:?} -> {:?} by {} {:?}",
            op.kind.name(),
            op.generated,
            op.final_,
            op.matched_by,
            op.edits
        );
    }
    let find = |g: usize| {
        d.ops
            .iter()
            .find(|o| o.generated.first() == Some(&g) && o.kind != OpKind::Inserted)
            .unwrap()
    };
    // The moved paragraph is found by its chunk id and reported as moved.
    let moved = find(2);
    assert_eq!((moved.kind, moved.matched_by), (OpKind::Moved, "chunk_id"));
    // The entity fix is an edit the dictionary path takes.
    let fixed = find(5);
    assert_eq!((fixed.kind, fixed.matched_by), (OpKind::Edited, "chunk_id"));
    assert!(
        matches!(classify(&fixed.edits, &EntityRule::default()), EditClass::EntityFix(_)),
        "{:?}",
        fixed.edits
    );
    // The copy is an insertion that names its source; the original stays.
    assert!(d
        .ops
        .iter()
        .any(|o| o.kind == OpKind::Inserted && o.generated == [8] && o.matched_by == "copy"));
    assert_eq!(find(8).kind, OpKind::Unchanged);
    assert_eq!(find(11).kind, OpKind::Deleted);
    assert_eq!(find(1).kind, OpKind::Split);
    assert_eq!(d.count(OpKind::Inserted), 2, "the copy and the new paragraph");
    // Everything else kept its place, text and id.
    assert_eq!(d.count(OpKind::Unchanged), gen.len() - 4);
}
