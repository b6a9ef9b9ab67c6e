//! One DOCX fuzz case, shared by the `docx` fuzz target and the stable
//! replay test (`crates/forja-docs/tests/it/fuzz_corpus.rs`): the bytes are
//! read as a DOCX file, then as the main part of a well-formed package
//! (where the XML walker is), and what reads back is diffed against a
//! fixed draft. An `Err` is a clean failure; only panics, hangs and OOMs
//! are bugs.

use forja_docs::diff::{diff, DiffOptions};
use forja_docs::docx::{read_docx, ReadLimits};
use forja_docs::Block;
use std::io::{Cursor, Write};

pub fn run(data: &[u8]) {
    let limits =
        ReadLimits { max_part_bytes: 1 << 20, max_blocks: 10_000, ..ReadLimits::default() };
    let _ = read_docx(data, &limits);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    if zip.start_file("word/document.xml", opts).is_err() || zip.write_all(data).is_err() {
        return;
    }
    let Ok(pkg) = zip.finish() else { return };
    if let Ok(doc) = read_docx(&pkg.into_inner(), &limits) {
        let draft: Vec<Block> =
            ["Se abre la sesión.", "Interviene Jhon Yonson.", "Se levanta la sesión."]
                .iter()
                .enumerate()
                .map(|(i, t)| Block::paragraph(*t).with_chunk(format!("s{i}")))
                .collect();
        let _ = diff(&draft, &doc.blocks, &DiffOptions::default());
    }
}
