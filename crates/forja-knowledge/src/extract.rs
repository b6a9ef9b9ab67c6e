//! Document bytes → plain text with structure: the paragraphs of a
//! source, each under the path of headings it sits in, and where each
//! paragraph lies in the source's canonical text (what a citation's span
//! points into).
//!
//! Markdown is parsed by `pulldown-cmark`, HTML rendered to text by
//! `html2text` (html5ever's parser), DOCX read by forja-docs (the same
//! reader corrected minutes go through, with its limits). PDF is not
//! read: no well-kept pure-Rust crate extracts its text reliably.

use crate::{KnowledgeError, Result};

/// Largest document accepted, bytes.
pub const MAX_DOCUMENT_BYTES: usize = 16 << 20;
/// Most paragraphs one document may have.
pub const MAX_PARAGRAPHS: usize = 200_000;

/// The formats a document may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocFormat {
    /// Plain UTF-8 text; blank lines separate paragraphs.
    Text,
    /// CommonMark.
    Markdown,
    /// HTML.
    Html,
    /// A Word document.
    Docx,
}

impl DocFormat {
    /// `text`, `markdown`, `html` or `docx` (also `txt`, `md`, `htm`).
    pub fn parse(s: &str) -> Option<DocFormat> {
        Some(match s.to_ascii_lowercase().as_str() {
            "text" | "txt" | "plain" => DocFormat::Text,
            "markdown" | "md" => DocFormat::Markdown,
            "html" | "htm" => DocFormat::Html,
            "docx" => DocFormat::Docx,
            _ => return None,
        })
    }

    /// The format a file name's extension names.
    pub fn from_name(name: &str) -> Option<DocFormat> {
        DocFormat::parse(name.rsplit_once('.')?.1)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            DocFormat::Text => "text",
            DocFormat::Markdown => "markdown",
            DocFormat::Html => "html",
            DocFormat::Docx => "docx",
        }
    }
}

/// A paragraph of the canonical text.
#[derive(Debug, Clone, PartialEq)]
pub struct Paragraph {
    /// Byte range in [`Extracted::text`].
    pub start: usize,
    /// End of that range (exclusive).
    pub end: usize,
    /// Index into [`Extracted::headings`] of the heading path it sits
    /// under (`0`: none).
    pub section: usize,
}

/// A document as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// Its title, when the document names one (the first top heading).
    pub title: Option<String>,
    /// The canonical text: headings and paragraphs, a blank line apart.
    pub text: String,
    /// Body paragraphs in reading order (headings are not paragraphs).
    pub paragraphs: Vec<Paragraph>,
    /// Heading paths (`"Ordinances > Fees"`); index 0 is the empty path.
    pub headings: Vec<String>,
}

impl Extracted {
    /// The same document with every heading and paragraph passed through
    /// `f` (PII scrubbing), spans recomputed.
    pub fn rewrite(&self, mut f: impl FnMut(&str) -> String) -> Extracted {
        let mut b = Builder::new();
        b.title = self.title.as_deref().map(&mut f);
        let mut section = 0;
        for p in &self.paragraphs {
            if p.section != section {
                section = p.section;
                // The path's last element is the heading itself.
                let path = &self.headings[section];
                let last = path.rsplit(" > ").next().unwrap_or(path);
                let level = path.matches(" > ").count() as u8 + 1;
                b.heading(level, &f(last));
            }
            // Under the cap already: a rewrite cannot add paragraphs.
            let _ = b.paragraph(&f(&self.text[p.start..p.end]));
        }
        b.finish()
    }
}

/// Builds an [`Extracted`] block by block.
#[derive(Default)]
struct Builder {
    title: Option<String>,
    text: String,
    paragraphs: Vec<Paragraph>,
    headings: Vec<String>,
    /// The open headings, by level.
    stack: Vec<(u8, String)>,
    section: usize,
}

impl Builder {
    fn new() -> Builder {
        Builder { headings: vec![String::new()], ..Builder::default() }
    }

    fn push_text(&mut self, s: &str) -> (usize, usize) {
        if !self.text.is_empty() {
            self.text.push_str("\n\n");
        }
        let start = self.text.len();
        self.text.push_str(s);
        (start, self.text.len())
    }

    fn heading(&mut self, level: u8, s: &str) {
        let s = squash(s);
        if s.is_empty() {
            return;
        }
        if self.title.is_none() && level <= 1 {
            self.title = Some(s.clone());
        }
        self.push_text(&s);
        while self.stack.last().is_some_and(|(l, _)| *l >= level) {
            self.stack.pop();
        }
        self.stack.push((level, s));
        let path: Vec<&str> = self.stack.iter().map(|(_, h)| h.as_str()).collect();
        self.headings.push(path.join(" > "));
        self.section = self.headings.len() - 1;
    }

    fn paragraph(&mut self, s: &str) -> Result<()> {
        let s = squash(s);
        if s.is_empty() {
            return Ok(());
        }
        if self.paragraphs.len() >= MAX_PARAGRAPHS {
            return Err(KnowledgeError::Document(format!(
                "more than {MAX_PARAGRAPHS} paragraphs; split the document"
            )));
        }
        let (start, end) = self.push_text(&s);
        self.paragraphs.push(Paragraph { start, end, section: self.section });
        Ok(())
    }

    fn finish(self) -> Extracted {
        Extracted {
            title: self.title,
            text: self.text,
            paragraphs: self.paragraphs,
            headings: self.headings,
        }
    }
}

/// Whitespace runs (line breaks included) become one space; control
/// characters go.
fn squash(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split(|c: char| c.is_whitespace() || c.is_control()) {
        if !w.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(w);
        }
    }
    out
}

/// Reads a document. A document that is not of `format` (invalid UTF-8,
/// a broken DOCX) fails with what is wrong; an empty one has no
/// paragraphs.
pub fn extract(format: DocFormat, bytes: &[u8]) -> Result<Extracted> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(KnowledgeError::Document(format!(
            "{} bytes is over the {} MiB limit for one document; split it",
            bytes.len(),
            MAX_DOCUMENT_BYTES >> 20
        )));
    }
    match format {
        DocFormat::Text => text(utf8(bytes)?),
        DocFormat::Markdown => markdown(utf8(bytes)?),
        DocFormat::Html => html(bytes),
        DocFormat::Docx => docx(bytes),
    }
}

fn utf8(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| {
        KnowledgeError::Document(format!(
            "not UTF-8 text (invalid byte at offset {}); convert it to UTF-8",
            e.valid_up_to()
        ))
    })
}

/// Blank lines separate paragraphs.
fn text(s: &str) -> Result<Extracted> {
    let mut b = Builder::new();
    for p in blocks(s) {
        b.paragraph(&p)?;
    }
    Ok(b.finish())
}

/// Runs of non-blank lines.
fn blocks(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in s.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn markdown(s: &str) -> Result<Extracted> {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let mut b = Builder::new();
    let mut cur = String::new();
    let mut heading: Option<u8> = None;
    // Nesting of blocks whose text is collected (items hold paragraphs).
    let mut depth = 0usize;
    for ev in Parser::new(s) {
        match ev {
            Event::Start(Tag::Heading { level, .. }) => {
                heading = Some(level as u8);
                cur.clear();
            }
            Event::End(TagEnd::Heading(_)) => {
                b.heading(heading.take().unwrap_or(1), &cur);
                cur.clear();
            }
            Event::Start(
                Tag::Paragraph
                | Tag::Item
                | Tag::CodeBlock(_)
                | Tag::TableCell
                | Tag::BlockQuote(_),
            ) => {
                if depth == 0 {
                    cur.clear();
                }
                depth += 1;
            }
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Item
                | TagEnd::CodeBlock
                | TagEnd::TableCell
                | TagEnd::BlockQuote(_),
            ) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    b.paragraph(&cur)?;
                    cur.clear();
                } else {
                    cur.push(' ');
                }
            }
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) => {
                cur.push_str(&t)
            }
            Event::SoftBreak | Event::HardBreak => cur.push(' '),
            _ => {}
        }
    }
    if !cur.trim().is_empty() {
        b.paragraph(&cur)?;
    }
    Ok(b.finish())
}

/// HTML rendered to text on a thread with a large stack (a deeply nested
/// page must not overflow the caller's), then read as headed blocks.
fn html(bytes: &[u8]) -> Result<Extracted> {
    let owned = bytes.to_vec();
    let rendered = std::thread::Builder::new()
        .name("forja-html".into())
        .stack_size(256 << 20)
        .spawn(move || {
            html2text::config::plain_no_decorate()
                .raw_mode(true)
                .allow_width_overflow()
                .string_from_read(&owned[..], 1 << 20)
        })
        .map_err(|e| KnowledgeError::Document(format!("cannot start the HTML reader: {e}")))?
        .join()
        .map_err(|_| KnowledgeError::Document("the HTML reader failed on this page".into()))?
        .map_err(|e| KnowledgeError::Document(format!("not readable HTML ({e})")))?;
    let mut b = Builder::new();
    for block in blocks(&rendered) {
        let mut para = String::new();
        for line in block.lines() {
            let hashes = line.bytes().take_while(|&c| c == b'#').count();
            if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
                b.paragraph(&std::mem::take(&mut para))?;
                b.heading(hashes as u8, &line[hashes + 1..]);
            } else if let Some(item) = line.strip_prefix("* ").or_else(|| line.strip_prefix("- ")) {
                b.paragraph(&std::mem::take(&mut para))?;
                para.push_str(item);
            } else {
                para.push(' ');
                para.push_str(line);
            }
        }
        b.paragraph(&para)?;
    }
    Ok(b.finish())
}

fn docx(bytes: &[u8]) -> Result<Extracted> {
    use forja_docs::BlockKind;
    let doc = forja_docs::docx::read_docx(bytes, &Default::default())
        .map_err(|e| KnowledgeError::Document(e.to_string()))?;
    let mut b = Builder::new();
    if let Some(t) = &doc.title {
        b.title = Some(squash(t)).filter(|t| !t.is_empty());
    }
    for block in &doc.blocks {
        match block.kind {
            BlockKind::Heading { level } => b.heading(level.max(1), &block.text),
            _ => b.paragraph(&block.text)?,
        }
    }
    Ok(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paras(e: &Extracted) -> Vec<(&str, &str)> {
        e.paragraphs
            .iter()
            .map(|p| (e.headings[p.section].as_str(), &e.text[p.start..p.end]))
            .collect()
    }

    #[test]
    fn markdown_keeps_heading_paths_and_spans() {
        let md = "# Ordenanzas\n\nIntro text.\n\n## Tasas\n\nLa piscina cuesta\n35 euros.\n\n- uno\n- dos\n\n# Otra\n\nFin.";
        let e = extract(DocFormat::Markdown, md.as_bytes()).unwrap();
        assert_eq!(e.title.as_deref(), Some("Ordenanzas"));
        assert_eq!(
            paras(&e),
            [
                ("Ordenanzas", "Intro text."),
                ("Ordenanzas > Tasas", "La piscina cuesta 35 euros."),
                ("Ordenanzas > Tasas", "uno"),
                ("Ordenanzas > Tasas", "dos"),
                ("Otra", "Fin."),
            ]
        );
    }

    #[test]
    fn rewrite_keeps_structure_and_recomputes_spans() {
        let md = "# T\n\nAna 600 123 456.\n\n## Sub\n\nFin.";
        let e = extract(DocFormat::Markdown, md.as_bytes()).unwrap();
        let r = e.rewrite(|s| s.replace("600 123 456", "<PHONE>"));
        assert_eq!(paras(&r), [("T", "Ana <PHONE>."), ("T > Sub", "Fin.")]);
        assert_eq!(r.title.as_deref(), Some("T"));
    }

    #[test]
    fn html_headings_lists_and_entities() {
        let html = b"<html><head><title>x</title><script>var a = 1;</script></head><body>\
            <h1>Agenda</h1><p>Pleno &amp; comisi\xc3\xb3n.</p><h2>Puntos</h2><ul><li>Primero</li><li>Segundo</li></ul></body></html>";
        let e = extract(DocFormat::Html, html).unwrap();
        assert_eq!(e.title.as_deref(), Some("Agenda"));
        assert_eq!(
            paras(&e),
            [
                ("Agenda", "Pleno & comisión."),
                ("Agenda > Puntos", "Primero"),
                ("Agenda > Puntos", "Segundo"),
            ]
        );
    }

    #[test]
    fn deeply_nested_html_is_read_or_refused_without_a_crash() {
        let mut page = "<div>".repeat(50_000);
        page.push_str("deep text");
        let _ = extract(DocFormat::Html, page.as_bytes());
    }

    #[test]
    fn text_paragraphs_and_bad_input() {
        let e = extract(DocFormat::Text, b"one\ntwo\n\n\n three \n").unwrap();
        assert_eq!(paras(&e), [("", "one two"), ("", "three")]);
        let err = extract(DocFormat::Text, b"ok\xff").unwrap_err().to_string();
        assert!(err.contains("not UTF-8") && err.contains("offset 2"), "{err}");
        let err = extract(DocFormat::Docx, b"not a zip").unwrap_err().to_string();
        assert!(!err.is_empty());
        assert_eq!(DocFormat::from_name("a/b.MD"), Some(DocFormat::Markdown));
        assert_eq!(DocFormat::from_name("a.pdf"), None);
    }

    #[test]
    fn docx_headings_from_forja_docs() {
        use forja_docs::{Block, BlockKind};
        let blocks = vec![
            Block::paragraph("Acta").with_kind(BlockKind::Heading { level: 1 }),
            Block::paragraph("Se abre la sesión."),
        ];
        let bytes = forja_docs::docx::write_docx(&blocks, &Default::default()).unwrap();
        let e = extract(DocFormat::Docx, &bytes).unwrap();
        assert_eq!(paras(&e), [("Acta", "Se abre la sesión.")]);
    }
}
