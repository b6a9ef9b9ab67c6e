// The knowledge target's case, shared with
// `crates/forja-knowledge/tests/fuzz_corpus.rs` (which `include!`s it):
// a document as a tenant uploads it. The first byte picks the format
// (text, Markdown, HTML, DOCX), the rest is the document; what it
// extracts is chunked and rendered as prompt passages. An `Err` is a
// clean refusal; only panics, hangs and OOMs are bugs.

fn knowledge_case(data: &[u8]) {
    use forja_knowledge::{chunk, context, extract, ChunkConfig, DocFormat};
    let Some((&pick, doc)) = data.split_first() else { return };
    let format = [DocFormat::Text, DocFormat::Markdown, DocFormat::Html, DocFormat::Docx]
        [pick as usize % 4];
    let Ok(e) = extract(format, doc) else { return };
    for p in &e.paragraphs {
        assert!(p.start <= p.end && p.end <= e.text.len() && p.section < e.headings.len());
    }
    let cfg = ChunkConfig { max_words: 12, overlap_words: 4, max_chunks: 500 };
    let specials = vec!["<|im_start|>".to_string(), "<|im_end|>".to_string()];
    for c in chunk(&e, &cfg) {
        let text = &e.text[c.start..c.end];
        let p = context::Passage { title: e.title.as_deref().unwrap_or(""), heading: &c.heading, text };
        let shown = context::render_one(1, &p, &specials);
        assert!(!shown.contains("<|im_start|>") && !shown.contains("<|im_end|>"));
    }
}
