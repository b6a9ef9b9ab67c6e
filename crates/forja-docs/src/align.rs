//! Aligns the paragraphs of hand-written minutes with spans of the ASR
//! transcript they summarise (seed 003, T01), so minutes written without
//! chunk ids still become training pairs.
//!
//! Monotonic with lookahead: a cursor walks the transcript; each paragraph
//! looks for its best span starting within [`AlignParams::max_lookahead`]
//! segments of the cursor, and the cursor moves past the span it takes. A
//! span grows one segment at a time and never beyond
//! [`AlignParams::word_count_threshold`] times the paragraph's words (no
//! "giant blocks"). A paragraph that finds nothing good ahead (an agenda
//! item the minutes moved) is searched across the whole transcript through
//! an inverted index, without moving the cursor.
//!
//! A span's score is the IDF-weighted share of the paragraph's words found
//! in it (words compare folded and cut to a 5-letter stem, so `aprueba` and
//! `aprobación` do not match but `sesión`/`sesiones` do), minus
//! [`AlignParams::length_penalty_factor`] × ln(1 + extra words per
//! paragraph word).

use crate::text::content_words;
use std::collections::{HashMap, HashSet};

/// One transcript segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// What was said.
    pub text: String,
    /// Start time in seconds, when known.
    pub start: Option<f64>,
    /// End time in seconds, when known.
    pub end: Option<f64>,
}

/// The aligner's knobs (seed 003's names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignParams {
    /// How many segments past the cursor a paragraph may start.
    pub max_lookahead: usize,
    /// A span holds at most this many times the paragraph's words.
    pub word_count_threshold: f32,
    /// Weight of the penalty for words beyond the paragraph's length.
    pub length_penalty_factor: f32,
    /// Least score for a link.
    pub min_score: f32,
}

impl Default for AlignParams {
    fn default() -> Self {
        AlignParams {
            max_lookahead: 12,
            word_count_threshold: 3.0,
            length_penalty_factor: 0.1,
            min_score: 0.3,
        }
    }
}

/// A paragraph's span of segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// First segment.
    pub first: usize,
    /// Last segment (inclusive).
    pub last: usize,
    /// Its score (see the module docs).
    pub score: f32,
    /// Found by the whole-transcript search, out of order.
    pub out_of_order: bool,
}

/// The result: one optional link per paragraph.
#[derive(Debug, Clone, PartialEq)]
pub struct Alignment {
    /// `links[p]` is paragraph `p`'s span.
    pub links: Vec<Option<Link>>,
    /// Mean score of the linked paragraphs (0 when none).
    pub score: f32,
    /// Share of the transcript inside some link: by time when every
    /// segment has times, else by words.
    pub coverage: f32,
}

fn stem(w: &str) -> String {
    w.chars().take(5).collect()
}

struct Prepared {
    /// Stemmed word sets per segment.
    seg_words: Vec<HashSet<String>>,
    seg_len: Vec<usize>,
    idf: HashMap<String, f32>,
    postings: HashMap<String, Vec<usize>>,
}

/// Aligns `paragraphs` to `segments`.
pub fn align(segments: &[Segment], paragraphs: &[&str], params: &AlignParams) -> Alignment {
    let seg_tokens: Vec<Vec<String>> =
        segments.iter().map(|s| content_words(&s.text).iter().map(|w| stem(w)).collect()).collect();
    let mut df: HashMap<String, usize> = HashMap::new();
    let mut postings: HashMap<String, Vec<usize>> = HashMap::new();
    let seg_words: Vec<HashSet<String>> =
        seg_tokens.iter().map(|t| t.iter().cloned().collect()).collect();
    for (i, set) in seg_words.iter().enumerate() {
        for w in set {
            *df.entry(w.clone()).or_default() += 1;
            postings.entry(w.clone()).or_default().push(i);
        }
    }
    let n = segments.len().max(1) as f32;
    let idf = df.into_iter().map(|(w, d)| (w, (1.0 + n / d as f32).ln())).collect();
    let prep =
        Prepared { seg_len: seg_tokens.iter().map(Vec::len).collect(), seg_words, idf, postings };

    let mut links = Vec::with_capacity(paragraphs.len());
    let mut cursor = 0usize;
    for p in paragraphs {
        let words: Vec<String> = content_words(p).iter().map(|w| stem(w)).collect();
        let uniq: Vec<String> = words.iter().cloned().collect::<HashSet<_>>().into_iter().collect();
        if uniq.is_empty() || segments.is_empty() {
            links.push(None);
            continue;
        }
        let cap = ((words.len() as f32 * params.word_count_threshold).ceil() as usize).max(1);
        let ahead =
            (cursor..segments.len().min(cursor + params.max_lookahead + 1)).collect::<Vec<_>>();
        let best = best_span(&prep, &uniq, words.len(), cap, &ahead, params);
        match best {
            Some(l) if l.score >= params.min_score => {
                cursor = l.last + 1;
                links.push(Some(l));
            }
            _ => {
                // Out of order: starts near segments holding the paragraph's rarest words.
                let mut hits: HashMap<usize, f32> = HashMap::new();
                for w in &uniq {
                    let Some(list) = prep.postings.get(w) else { continue };
                    let weight = prep.idf.get(w).copied().unwrap_or(0.0);
                    for &s in list {
                        *hits.entry(s).or_default() += weight;
                    }
                }
                let mut starts: Vec<(f32, usize)> = hits.into_iter().map(|(s, h)| (h, s)).collect();
                starts.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                let starts: Vec<usize> = starts.into_iter().take(32).map(|(_, s)| s).collect();
                let global = best_span(&prep, &uniq, words.len(), cap, &starts, params)
                    .filter(|l| l.score >= params.min_score)
                    .map(|l| Link { out_of_order: true, ..l });
                // Prefer the in-order candidate when it was close.
                links.push(global);
            }
        }
    }
    let linked: Vec<f32> = links.iter().flatten().map(|l| l.score).collect();
    let score =
        if linked.is_empty() { 0.0 } else { linked.iter().sum::<f32>() / linked.len() as f32 };
    let coverage = coverage(segments, &prep.seg_len, &links);
    Alignment { links, score, coverage }
}

/// The best span starting at one of `starts`.
fn best_span(
    prep: &Prepared,
    para: &[String],
    para_len: usize,
    cap: usize,
    starts: &[usize],
    params: &AlignParams,
) -> Option<Link> {
    let total: f32 = para.iter().map(|w| prep.idf.get(w).copied().unwrap_or(1.0)).sum();
    let mut best: Option<Link> = None;
    for &s in starts {
        let mut found: HashSet<&str> = HashSet::new();
        let mut got = 0f32;
        let mut len = 0usize;
        for e in s..prep.seg_words.len() {
            if e > s && len + prep.seg_len[e] > cap {
                break;
            }
            len += prep.seg_len[e];
            for w in para {
                if !found.contains(w.as_str()) && prep.seg_words[e].contains(w) {
                    found.insert(w);
                    got += prep.idf.get(w).copied().unwrap_or(1.0);
                }
            }
            let extra = len.saturating_sub(para_len) as f32 / para_len.max(1) as f32;
            let score = got / total - params.length_penalty_factor * (1.0 + extra).ln();
            if best.as_ref().is_none_or(|b| score > b.score + 1e-6) {
                best = Some(Link { first: s, last: e, score, out_of_order: false });
            }
        }
    }
    best
}

fn coverage(segments: &[Segment], seg_len: &[usize], links: &[Option<Link>]) -> f32 {
    let mut covered = vec![false; segments.len()];
    for l in links.iter().flatten() {
        covered[l.first..=l.last].iter_mut().for_each(|c| *c = true);
    }
    let timed = segments.iter().all(|s| matches!((s.start, s.end), (Some(a), Some(b)) if b >= a));
    let weight = |i: usize| -> f64 {
        if timed {
            segments[i].end.unwrap_or(0.0) - segments[i].start.unwrap_or(0.0)
        } else {
            seg_len[i] as f64
        }
    };
    let total: f64 = (0..segments.len()).map(weight).sum();
    if total <= 0.0 {
        return 0.0;
    }
    ((0..segments.len()).filter(|&i| covered[i]).map(weight).sum::<f64>() / total) as f32
}
