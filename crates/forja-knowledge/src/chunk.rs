//! Extracted text → passages: paragraphs are packed in reading order into
//! chunks of at most `max_words` words that never cross a heading; a
//! paragraph longer than that is cut into overlapping windows, and a chunk
//! that closes inside a section hands its last paragraph (or its last
//! `overlap_words` words) on to the next, so a fact at a boundary is whole
//! in at least one chunk.

use crate::extract::Extracted;

/// How documents are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkConfig {
    /// Most words in a chunk (MiniLM reads 256 tokens: ~160 words).
    pub max_words: usize,
    /// Words a chunk repeats from the one before it, within a section.
    pub overlap_words: usize,
    /// Most chunks one source may make (embedding them is the bounded
    /// work of one request: 2,000 passages are ~2 minutes of MiniLM on 2
    /// cores).
    pub max_chunks: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig { max_words: 160, overlap_words: 32, max_chunks: 2_000 }
    }
}

/// A passage: a byte range of the source's canonical text.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The heading path it sits under (`""`: none).
    pub heading: String,
    /// Start of its span in [`Extracted::text`].
    pub start: usize,
    /// End of its span (exclusive).
    pub end: usize,
}

/// Words of `text[start..end]` as byte ranges.
fn words(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut w: Option<usize> = None;
    for (i, c) in text[start..end].char_indices() {
        if c.is_whitespace() {
            if let Some(s) = w.take() {
                out.push((start + s, start + i));
            }
        } else if w.is_none() {
            w = Some(i);
        }
    }
    if let Some(s) = w {
        out.push((start + s, end));
    }
    out
}

/// Cuts a document. The result is empty for a document without text; it
/// stops at `max_chunks` (callers refuse a document that reaches it rather
/// than index part of it).
pub fn chunk(doc: &Extracted, cfg: &ChunkConfig) -> Vec<Chunk> {
    let max = cfg.max_words.max(8);
    let overlap = cfg.overlap_words.min(max / 2);
    let mut out = Vec::new();
    // The words of the chunk being built, and its section.
    let mut cur: Vec<(usize, usize)> = Vec::new();
    let mut section = usize::MAX;
    // Where the last whole paragraph of `cur` begins, in words.
    let mut last_para = 0usize;
    let close = |cur: &mut Vec<(usize, usize)>, section: usize, out: &mut Vec<Chunk>| {
        if let (Some(first), Some(last)) = (cur.first(), cur.last()) {
            out.push(Chunk {
                heading: doc.headings.get(section).cloned().unwrap_or_default(),
                start: first.0,
                end: last.1,
            });
        }
        cur.clear();
    };
    for p in &doc.paragraphs {
        if out.len() >= cfg.max_chunks {
            break;
        }
        let ws = words(&doc.text, p.start, p.end);
        if p.section != section {
            close(&mut cur, section, &mut out);
            section = p.section;
        } else if cur.len() + ws.len() > max && !cur.is_empty() {
            // Carry the last paragraph when short, else the last words.
            let carried = if cur.len() - last_para <= overlap {
                cur[last_para..].to_vec()
            } else {
                cur[cur.len() - overlap..].to_vec()
            };
            close(&mut cur, section, &mut out);
            if carried.len() + ws.len() <= max {
                cur = carried;
            }
        }
        if ws.len() <= max - cur.len().min(max) {
            last_para = cur.len();
            cur.extend(ws);
            continue;
        }
        // A long paragraph: windows of `max` words stepping `max - overlap`.
        close(&mut cur, section, &mut out);
        let step = max - overlap;
        let mut i = 0;
        while i < ws.len() && out.len() < cfg.max_chunks {
            let j = (i + max).min(ws.len());
            cur.extend_from_slice(&ws[i..j]);
            if j == ws.len() {
                last_para = 0;
                break;
            }
            close(&mut cur, section, &mut out);
            i += step;
        }
    }
    if out.len() < cfg.max_chunks {
        close(&mut cur, section, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{extract, DocFormat};

    fn cut(md: &str, max_words: usize, overlap_words: usize) -> Vec<(String, String)> {
        let e = extract(DocFormat::Markdown, md.as_bytes()).unwrap();
        let cfg = ChunkConfig { max_words, overlap_words, max_chunks: 100 };
        chunk(&e, &cfg)
            .into_iter()
            .map(|c| (c.heading, e.text[c.start..c.end].to_string()))
            .collect()
    }

    #[test]
    fn paragraphs_pack_within_a_section_and_never_cross_a_heading() {
        let md = "# A\n\none two\n\nthree four\n\n# B\n\nfive";
        assert_eq!(
            cut(md, 10, 2),
            [("A".into(), "one two\n\nthree four".into()), ("B".into(), "five".into())]
        );
    }

    #[test]
    fn a_full_chunk_hands_its_last_short_paragraph_on() {
        let md = "a b c d\n\ne f\n\ng h i j";
        // 4 + 2 fit in 8; adding 4 more does not, so "e f" is carried.
        assert_eq!(
            cut(md, 8, 3),
            [("".into(), "a b c d\n\ne f".into()), ("".into(), "e f\n\ng h i j".into())]
        );
    }

    #[test]
    fn a_long_paragraph_becomes_overlapping_windows() {
        let words: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
        let got = cut(&words.join(" "), 8, 2);
        let texts: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            texts,
            [
                "w0 w1 w2 w3 w4 w5 w6 w7",
                "w6 w7 w8 w9 w10 w11 w12 w13",
                "w12 w13 w14 w15 w16 w17 w18 w19"
            ]
        );
    }

    #[test]
    fn empty_documents_and_the_chunk_cap() {
        assert!(cut("", 8, 2).is_empty());
        let e = extract(DocFormat::Text, "x\n\n".repeat(50).as_bytes()).unwrap();
        let cfg = ChunkConfig { max_words: 8, overlap_words: 0, max_chunks: 3 };
        assert_eq!(chunk(&e, &cfg).len(), 3);
    }
}
