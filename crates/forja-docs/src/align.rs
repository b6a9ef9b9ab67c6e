//! Aligns the paragraphs of hand-written minutes with spans of the ASR
//! transcript they summarise (seed 003, T01), so minutes written without
//! chunk ids still become training pairs.
//!
//! Monotonic with lookahead, solved exactly: dynamic programming over
//! (paragraph, cursor) finds the in-order links of highest total score,
//! where each paragraph's span starts within [`AlignParams::max_lookahead`]
//! segments past the end of the previous one (or the paragraph stays
//! unlinked). A greedy cursor drifts after one wrong pick among look-alike
//! paragraphs (vote results); the optimum does not. A span grows one
//! segment at a time and never beyond [`AlignParams::word_count_threshold`]
//! times the paragraph's words (no "giant blocks"). Then every paragraph is
//! also searched across the whole transcript through an inverted index: a
//! span that scores clearly better out of order (an agenda item the minutes
//! moved) replaces its in-order link.
//!
//! A span's score is the weighted Dice coefficient of the paragraph's and
//! the span's words (each distinct word weighted by its IDF over the
//! transcript; words compare folded and cut to a 5-letter stem, so
//! `sesión`/`sesiones` match), minus [`AlignParams::length_penalty_factor`]
//! × ln(1 + span words beyond the paragraph's, per paragraph word). Dice
//! already punishes a span for words the paragraph does not have, which is
//! what keeps spans tight when minutes are longer than what was said.

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
    /// Found by the whole-transcript search, replacing a missing or weaker
    /// in-order link: a paragraph the minutes moved.
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

/// β² of the F-measure: how much more the paragraph's words found in a
/// span count than the span's words missing from the paragraph (minutes
/// rephrase and add titles, so a span rarely holds every paragraph word).
const RECALL_WEIGHT: f32 = 2.0;

/// Score lost per segment skipped past the cursor: between two equally
/// good spans, the nearer one wins.
const SKIP_PENALTY: f32 = 0.005;

/// How much better a span out of order must score to replace the in-order
/// link (a paragraph the minutes moved).
const MOVED_MARGIN: f32 = 0.15;

/// A word's comparison key: small Spanish and English number words become
/// digits (transcripts spell out what minutes write as figures: "votos a
/// favor cuatro" / "4 votos a favor"), anything else its 5-letter stem.
fn stem(w: &str) -> String {
    const NUMBERS: &[(&str, &str)] = &[
        ("cero", "0"),
        ("uno", "1"),
        ("una", "1"),
        ("un", "1"),
        ("dos", "2"),
        ("tres", "3"),
        ("cuatro", "4"),
        ("cinco", "5"),
        ("seis", "6"),
        ("siete", "7"),
        ("ocho", "8"),
        ("nueve", "9"),
        ("diez", "10"),
        ("once", "11"),
        ("doce", "12"),
        ("trece", "13"),
        ("catorce", "14"),
        ("quince", "15"),
        ("dieciseis", "16"),
        ("diecisiete", "17"),
        ("dieciocho", "18"),
        ("diecinueve", "19"),
        ("veinte", "20"),
        ("veintiuno", "21"),
        ("veintidos", "22"),
        ("veintitres", "23"),
        ("veinticuatro", "24"),
        ("veinticinco", "25"),
        ("treinta", "30"),
        ("zero", "0"),
        ("one", "1"),
        ("two", "2"),
        ("three", "3"),
        ("four", "4"),
        ("five", "5"),
        ("six", "6"),
        ("seven", "7"),
        ("eight", "8"),
        ("nine", "9"),
        ("ten", "10"),
        ("eleven", "11"),
        ("twelve", "12"),
        ("twenty", "20"),
        ("thirty", "30"),
    ];
    match NUMBERS.iter().find(|(word, _)| *word == w) {
        Some((_, digits)) => (*digits).to_string(),
        None => w.chars().take(5).collect(),
    }
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

    struct Para {
        uniq: Vec<String>,
        len: usize,
        cap: usize,
    }
    let paras: Vec<Para> = paragraphs
        .iter()
        .map(|p| {
            let words: Vec<String> = content_words(p).iter().map(|w| stem(w)).collect();
            let uniq: Vec<String> =
                words.iter().cloned().collect::<HashSet<_>>().into_iter().collect();
            let cap = ((words.len() as f32 * params.word_count_threshold).ceil() as usize).max(1);
            Para { uniq, len: words.len(), cap }
        })
        .collect();
    let n_seg = segments.len();
    // Each paragraph's best span from each start.
    let best: Vec<Vec<Option<Link>>> = paras
        .iter()
        .map(|p| {
            (0..n_seg)
                .map(|s| {
                    if p.uniq.is_empty() {
                        return None;
                    }
                    best_span(&prep, &p.uniq, p.len, p.cap, &[s], s, params)
                        .filter(|l| l.score >= params.min_score)
                })
                .collect()
        })
        .collect();

    // Monotonic alignment by dynamic programming: dp[j] is the best total
    // score of the paragraphs so far with the cursor at segment j. A
    // paragraph either links a span starting at most `max_lookahead`
    // segments past the cursor (paying SKIP_PENALTY per skipped segment)
    // or stays unlinked.
    let mut dp = vec![0f32; n_seg + 1];
    let mut back: Vec<Vec<(u32, u32)>> = Vec::with_capacity(paras.len());
    for row in &best {
        let mut next = dp.clone();
        let mut bp: Vec<(u32, u32)> = (0..=n_seg as u32).map(|j| (j, u32::MAX)).collect();
        for (j, &here) in dp.iter().enumerate() {
            let window = row.iter().enumerate().skip(j).take(params.max_lookahead + 1);
            for (s, l) in window {
                let Some(l) = l else { continue };
                let total = here + l.score - SKIP_PENALTY * (s - j) as f32;
                if total > next[l.last + 1] {
                    next[l.last + 1] = total;
                    bp[l.last + 1] = (j as u32, s as u32);
                }
            }
        }
        back.push(bp);
        dp = next;
    }
    let mut j = (0..=n_seg).max_by(|&a, &b| dp[a].total_cmp(&dp[b]).then(b.cmp(&a))).unwrap_or(0);
    let mut links: Vec<Option<Link>> = vec![None; paras.len()];
    for p in (0..paras.len()).rev() {
        let (prev, s) = back[p][j];
        if s != u32::MAX {
            links[p] = best[p][s as usize].clone();
        }
        j = prev as usize;
    }

    // Moved paragraphs: a much better span anywhere else (searched from the
    // segments holding the paragraph's rarest words) replaces an in-order
    // link that is missing or weak.
    for (p, para) in paras.iter().enumerate() {
        if para.uniq.is_empty() {
            continue;
        }
        let mut hits: HashMap<usize, f32> = HashMap::new();
        for w in &para.uniq {
            let Some(list) = prep.postings.get(w) else { continue };
            let weight = prep.idf.get(w).copied().unwrap_or(0.0);
            for &s in list {
                *hits.entry(s).or_default() += weight;
            }
        }
        let mut starts: Vec<(f32, usize)> = hits.into_iter().map(|(s, h)| (h, s)).collect();
        starts.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let starts: Vec<usize> = starts.into_iter().take(32).map(|(_, s)| s).collect();
        let Some(global) = best_span(&prep, &para.uniq, para.len, para.cap, &starts, 0, params)
        else {
            continue;
        };
        let current = links[p].as_ref().map_or(params.min_score - MOVED_MARGIN, |l| l.score);
        if global.score >= params.min_score && global.score > current + MOVED_MARGIN {
            links[p] = Some(Link { out_of_order: true, ..global });
        }
    }
    let linked: Vec<f32> = links.iter().flatten().map(|l| l.score).collect();
    let score =
        if linked.is_empty() { 0.0 } else { linked.iter().sum::<f32>() / linked.len() as f32 };
    let coverage = coverage(segments, &prep.seg_len, &links);
    Alignment { links, score, coverage }
}

/// The best span starting at one of `starts`: the highest weighted Dice
/// of the paragraph's words and the span's (IDF weights), less the length
/// penalty, growing each span up to `cap` words.
fn best_span(
    prep: &Prepared,
    para: &[String],
    para_len: usize,
    cap: usize,
    starts: &[usize],
    skip_from: usize,
    params: &AlignParams,
) -> Option<Link> {
    let weight = |w: &str| prep.idf.get(w).copied().unwrap_or(1.0);
    let para_set: HashSet<&str> = para.iter().map(String::as_str).collect();
    let para_total: f32 = para_set.iter().map(|w| weight(w)).sum();
    let mut best: Option<Link> = None;
    for &s in starts {
        let mut seen: HashSet<&str> = HashSet::new();
        let (mut common, mut span_total) = (0f32, 0f32);
        let mut len = 0usize;
        for e in s..prep.seg_words.len() {
            if e > s && len + prep.seg_len[e] > cap {
                break;
            }
            len += prep.seg_len[e];
            for w in &prep.seg_words[e] {
                if seen.insert(w.as_str()) {
                    let x = weight(w);
                    span_total += x;
                    if para_set.contains(w.as_str()) {
                        common += x;
                    }
                }
            }
            let extra = len.saturating_sub(para_len) as f32 / para_len.max(1) as f32;
            let b2 = RECALL_WEIGHT;
            let f = (1.0 + b2) * common / (b2 * para_total + span_total).max(f32::MIN_POSITIVE);
            let skipped = s.saturating_sub(skip_from) as f32;
            let score =
                f - params.length_penalty_factor * (1.0 + extra).ln() - SKIP_PENALTY * skipped;
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
