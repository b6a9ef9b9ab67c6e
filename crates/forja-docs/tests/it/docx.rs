//! DOCX round trips and hostile files: what forja writes reads back with
//! its chunk ids; tracked changes, tables, lists and styles from other
//! editors read as they should; bombs, DOCTYPEs, encrypted and non-DOCX
//! files fail with a clear error.

use forja_docs::docx::{read_docx, write_docx, DraftMeta, ReadLimits};
use forja_docs::{Block, BlockKind, DocsError};
use std::io::{Cursor, Write};
use zip::write::SimpleFileOptions;

fn draft() -> Vec<Block> {
    vec![
        Block::paragraph("Acta del Pleno").with_kind(BlockKind::Heading { level: 0 }),
        Block::paragraph("Orden del día").with_kind(BlockKind::Heading { level: 1 }),
        Block::paragraph("Aprobación del acta anterior.")
            .with_kind(BlockKind::ListItem { level: 0 })
            .with_chunk("s0001"),
        Block::paragraph("La alcaldesa abre la sesión a las 19:00 & saluda <a todos>.")
            .with_chunk("s0002"),
        Block::paragraph("Línea uno\nlínea\tdos").with_chunk("s0003").with_chunk("s0004"),
        Block::paragraph("Sin chunk."),
    ]
}

#[test]
fn what_forja_writes_reads_back_with_chunk_ids() {
    let bytes = write_docx(
        &draft(),
        &DraftMeta { title: Some("Acta 2026-12-04"), document_id: Some("doc42") },
    )
    .unwrap();
    let doc = read_docx(&bytes, &ReadLimits::default()).unwrap();
    assert_eq!(doc.document_id.as_deref(), Some("doc42"));
    assert_eq!(doc.title.as_deref(), Some("Acta 2026-12-04"));
    let want: Vec<Block> = draft()
        .into_iter()
        .map(|mut b| {
            b.text = b.text.split_whitespace().collect::<Vec<_>>().join(" ");
            b
        })
        .collect();
    assert_eq!(doc.blocks, want);
}

#[test]
fn bad_chunk_ids_and_tables_are_refused_when_writing() {
    for id in ["", "con espacio", "guion-medio", "sub_rayado", &"x".repeat(37)] {
        let e =
            write_docx(&[Block::paragraph("a").with_chunk(id)], &DraftMeta::default()).unwrap_err();
        assert!(e.to_string().contains("chunk id"), "{e}");
    }
    let cell = Block::paragraph("a").with_kind(BlockKind::TableCell { table: 0, row: 0, col: 0 });
    assert!(write_docx(&[cell], &DraftMeta::default()).is_err());
}

/// A package with `document` as its body, as another editor would write it.
fn package(document: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let styles = r#"<?xml version="1.0"?><w:styles xmlns:w="w"><w:style w:type="paragraph" w:styleId="Ttulo1"><w:name w:val="heading 1"/></w:style><w:style w:type="paragraph" w:styleId="Sub"><w:name w:val="Mi subtítulo"/><w:basedOn w:val="Ttulo1"/></w:style><w:style w:type="paragraph" w:styleId="Vietas"><w:name w:val="List Bullet"/></w:style></w:styles>"#;
    for (name, body) in
        [("word/document.xml", document.as_bytes()), ("word/styles.xml", styles.as_bytes())]
            .into_iter()
            .chain(extra.iter().copied())
    {
        zip.start_file(name, opts).unwrap();
        zip.write_all(body).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn body(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="w" xmlns:mc="mc"><w:body>{inner}</w:body></w:document>"#
    )
}

#[test]
fn tracked_changes_tables_lists_and_foreign_bookmarks_read_right() {
    let xml = body(concat!(
        // Bookmark before the paragraph (some editors put it there).
        r#"<w:bookmarkStart w:id="1" w:name="_fj_a1 Copia 1"/>"#,
        r#"<w:p><w:pPr><w:pStyle w:val="Ttulo1"/></w:pPr><w:r><w:t>Título</w:t></w:r></w:p>"#,
        r#"<w:p><w:pPr><w:pStyle w:val="Sub"/></w:pPr><w:r><w:t>Sub</w:t></w:r></w:p>"#,
        r#"<w:p><w:bookmarkStart w:id="2" w:name="_fj_b2"/><w:r><w:t xml:space="preserve">Interviene </w:t></w:r>"#,
        r#"<w:del w:id="9" w:author="S"><w:r><w:delText>Jhon</w:delText></w:r></w:del>"#,
        r#"<w:ins w:id="10" w:author="S"><w:r><w:t>John</w:t></w:r></w:ins>"#,
        r#"<w:r><w:t xml:space="preserve"> &amp; Ana&#33;</w:t></w:r><w:bookmarkEnd w:id="2"/>"#,
        r#"<w:r><w:commentReference w:id="3"/></w:r>"#,
        r#"<w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText>PAGE</w:instrText></w:r>"#,
        r#"<mc:AlternateContent><mc:Choice><w:r><w:t>dibujo</w:t></w:r></mc:Choice><mc:Fallback><w:r><w:t>dibujo</w:t></w:r></mc:Fallback></mc:AlternateContent></w:p>"#,
        r#"<w:p><w:pPr><w:numPr><w:ilvl w:val="1"/><w:numId w:val="4"/></w:numPr></w:pPr><w:r><w:t>punto</w:t></w:r></w:p>"#,
        r#"<w:p><w:pPr><w:pStyle w:val="Vietas"/></w:pPr><w:r><w:t>viñeta</w:t></w:r></w:p>"#,
        r#"<w:p><w:r><w:t>   </w:t></w:r></w:p>"#,
        r#"<w:tbl><w:tr><w:tc><w:p><w:r><w:t>A1</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>B1</w:t></w:r></w:p></w:tc></w:tr>"#,
        r#"<w:tr><w:tc><w:p><w:r><w:t>A2</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"#,
        r#"<w:p><w:pPr><w:outlineLvl w:val="2"/></w:pPr><w:r><w:t>Nivel 3</w:t></w:r></w:p>"#,
        r#"<w:sectPr/>"#,
    ));
    let doc = read_docx(&package(&xml, &[]), &ReadLimits::default()).unwrap();
    let got: Vec<(BlockKind, &str, Vec<&str>, &str)> = doc
        .blocks
        .iter()
        .map(|b| {
            (
                b.kind,
                b.text.as_str(),
                b.chunk_ids.iter().map(String::as_str).collect(),
                b.rejected.as_str(),
            )
        })
        .collect();
    use BlockKind::*;
    assert_eq!(
        got,
        vec![
            (Heading { level: 1 }, "Título", vec!["a1"], ""),
            (Heading { level: 1 }, "Sub", vec![], ""),
            (Paragraph, "Interviene John & Ana!", vec!["b2"], "Jhon"),
            (ListItem { level: 1 }, "punto", vec![], ""),
            (ListItem { level: 0 }, "viñeta", vec![], ""),
            (TableCell { table: 0, row: 0, col: 0 }, "A1", vec![], ""),
            (TableCell { table: 0, row: 0, col: 1 }, "B1", vec![], ""),
            (TableCell { table: 0, row: 1, col: 0 }, "A2", vec![], ""),
            (Heading { level: 3 }, "Nivel 3", vec![], ""),
        ]
    );
}

fn err(bytes: &[u8], limits: &ReadLimits) -> String {
    read_docx(bytes, limits).unwrap_err().to_string()
}

#[test]
fn hostile_and_wrong_files_fail_with_one_clear_line() {
    let limits = ReadLimits::default();
    assert!(err(b"hola, esto no es un docx", &limits).contains("not a zip archive"));
    let mut ole = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    ole.resize(4096, 0);
    assert!(err(&ole, &limits).contains("encrypted or a legacy .doc"));
    assert!(err(b"PK\x03\x04garbage", &limits).contains("unreadable zip"));
    // An OpenDocument file.
    let odt = package("x", &[("mimetype", b"application/vnd.oasis.opendocument.text")]);
    assert!(err(&odt, &limits).contains("OpenDocument"));
    // A zip without a document part.
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file("hola.txt", SimpleFileOptions::default()).unwrap();
    zip.write_all(b"hola").unwrap();
    assert!(err(&zip.finish().unwrap().into_inner(), &limits).contains("no word/document.xml part"));
    // Entity expansion ("billion laughs") is refused before anything expands.
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE w [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><w:document xmlns:w="w"><w:body><w:p><w:r><w:t>&b;</w:t></w:r></w:p></w:body></w:document>"#;
    let e = err(&package(laughs, &[]), &limits);
    assert!(e.contains("word/document.xml") && e.contains("DOCTYPE"), "{e}");
    // An entity nobody defined.
    let e = err(&package(&body("<w:p><w:r><w:t>&foo;</w:t></w:r></w:p>"), &[]), &limits);
    assert!(e.contains("undefined entity &foo;"), "{e}");
    // Broken XML names the part.
    let e = err(&package(&body("<w:p><w:r><w:t>roto</w:r></w:p>"), &[]), &limits);
    assert!(e.starts_with("word/document.xml: malformed XML"), "{e}");
    // A zip bomb: 64 MiB of zeros in the document part, 64 KiB packed.
    let bomb = format!("{}{}", body(""), " ".repeat(64 << 20));
    let packed = package(&bomb, &[]);
    assert!(packed.len() < 1 << 20, "{}", packed.len());
    let small = ReadLimits { max_part_bytes: 8 << 20, ..ReadLimits::default() };
    let e = err(&packed, &small);
    assert!(e.contains("too large") && e.contains("word/document.xml"), "{e}");
    // Too many entries, too many paragraphs, too many bytes.
    let many: Vec<(String, Vec<u8>)> = (0..50).map(|i| (format!("x/{i}"), vec![])).collect();
    let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let e =
        err(&package(&body(""), &refs), &ReadLimits { max_entries: 10, ..ReadLimits::default() });
    assert!(e.contains("zip entries"), "{e}");
    let paras = body(&"<w:p><w:r><w:t>x</w:t></w:r></w:p>".repeat(20));
    let e = err(&package(&paras, &[]), &ReadLimits { max_blocks: 10, ..ReadLimits::default() });
    assert!(e.contains("more than 10 paragraphs"), "{e}");
    let e =
        err(&package(&paras, &[]), &ReadLimits { max_file_bytes: 100, ..ReadLimits::default() });
    assert!(e.contains("over the limit"), "{e}");
    // Every error is one line.
    assert!(!e.contains('\n'));
    let _: &DocsError = &read_docx(b"", &limits).unwrap_err();
}
