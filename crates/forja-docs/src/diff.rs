//! Aligns a generated document with its corrected final version, paragraph
//! by paragraph, and says what happened to each: unchanged, edited, moved,
//! moved and edited, inserted, deleted, split or merged.
//!
//! Matching runs in three passes: chunk ids (the hidden bookmarks survive
//! editing, so a paragraph moved to another page is still found), then
//! identical text, then content similarity (Dice over folded words, through
//! an inverted index so a 200-page document stays fast) for documents or
//! paragraphs that lost their ids. Unmatched neighbours of a match are
//! tried as splits and merges. A match is *moved* when it is not on the
//! longest increasing run of matches (the order most paragraphs kept), so
//! moving one paragraph reports one move, not a cascade.

use crate::text::{content_words, is_word, squash, tokens};
use crate::Block;
use similar::{capture_diff_slices, Algorithm, DiffOp};
use std::collections::{HashMap, HashSet};

/// What happened to one paragraph (or group of paragraphs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Same text, same place.
    Unchanged,
    /// Same place, text edited.
    Edited,
    /// Same text, another place.
    Moved,
    /// Another place and edited.
    MovedEdited,
    /// A paragraph of the final version with no source in the generated one.
    Inserted,
    /// A generated paragraph that is gone.
    Deleted,
    /// One generated paragraph became several.
    Split,
    /// Several generated paragraphs became one.
    Merged,
}

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 8] = [
        OpKind::Unchanged,
        OpKind::Edited,
        OpKind::Moved,
        OpKind::MovedEdited,
        OpKind::Inserted,
        OpKind::Deleted,
        OpKind::Split,
        OpKind::Merged,
    ];

    /// Its name in reports: `unchanged`, `edited`, `moved`, `moved_edited`,
    /// `inserted`, `deleted`, `split`, `merged`.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Unchanged => "unchanged",
            OpKind::Edited => "edited",
            OpKind::Moved => "moved",
            OpKind::MovedEdited => "moved_edited",
            OpKind::Inserted => "inserted",
            OpKind::Deleted => "deleted",
            OpKind::Split => "split",
            OpKind::Merged => "merged",
        }
    }
}

/// One changed span of words: `old` replaced by `new` (either may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordEdit {
    /// Words of the generated text (empty for an insertion).
    pub old: String,
    /// Words of the final text (empty for a deletion).
    pub new: String,
}

/// One entry of the delta.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// What happened.
    pub kind: OpKind,
    /// Indices of the generated blocks involved (two or more for a merge;
    /// for an insertion that copies a generated paragraph, its source).
    pub generated: Vec<usize>,
    /// Indices of the final blocks involved (two or more for a split).
    pub final_: Vec<usize>,
    /// How the match was found: `chunk_id`, `text`, `similarity`, `copy`
    /// (an inserted copy of a generated paragraph) or `none`.
    pub matched_by: &'static str,
    /// The chunk ids of the generated side.
    pub chunk_ids: Vec<String>,
    /// Share of tokens changed, 0 (none) to 1 (all).
    pub edit_ratio: f32,
    /// The changed word spans.
    pub edits: Vec<WordEdit>,
    /// For a split or merge, whether the group also left its place.
    pub moved: bool,
}

/// The whole delta, in the order of the final document (deleted paragraphs
/// where they used to be).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// The operations.
    pub ops: Vec<Op>,
}

impl Delta {
    /// How many operations of `kind`.
    pub fn count(&self, kind: OpKind) -> usize {
        self.ops.iter().filter(|o| o.kind == kind).count()
    }
}

/// Knobs of [`diff`].
#[derive(Debug, Clone, Copy)]
pub struct DiffOptions {
    /// Least Dice similarity (over folded words) for a match without a
    /// chunk id.
    pub min_similarity: f32,
    /// Words that occur in more generated paragraphs than this are not
    /// used to find candidates (they still count in the score).
    pub max_postings: usize,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions { min_similarity: 0.5, max_postings: 200 }
    }
}

/// A matched group: generated blocks ↔ final blocks.
struct Group {
    generated: Vec<usize>,
    final_: Vec<usize>,
    by: &'static str,
}

/// The delta from `generated` to `final_`.
pub fn diff(generated: &[Block], final_: &[Block], opts: &DiffOptions) -> Delta {
    let gw: Vec<Vec<String>> = generated.iter().map(|b| content_words(&b.text)).collect();
    let fw: Vec<Vec<String>> = final_.iter().map(|b| content_words(&b.text)).collect();
    let mut g_used = vec![false; generated.len()];
    let mut f_used = vec![false; final_.len()];
    let mut groups: Vec<Group> = Vec::new();

    // 1. Chunk ids. The first id occurrence in generated order is the source.
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (i, b) in generated.iter().enumerate() {
        for id in &b.chunk_ids {
            by_id.entry(id.as_str()).or_insert(i);
        }
    }
    // Final blocks naming each generated block (a copied paragraph names
    // its source twice: the most similar copy wins).
    let mut claims: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut merges: Vec<(usize, Vec<usize>)> = Vec::new();
    for (j, b) in final_.iter().enumerate() {
        let mut srcs: Vec<usize> =
            b.chunk_ids.iter().filter_map(|id| by_id.get(id.as_str()).copied()).collect();
        srcs.sort_unstable();
        srcs.dedup();
        match srcs.len() {
            0 => {}
            1 => claims.entry(srcs[0]).or_default().push(j),
            _ => merges.push((j, srcs)),
        }
    }
    for (j, srcs) in merges {
        if srcs.iter().all(|&g| !claims.contains_key(&g)) {
            srcs.iter().for_each(|&g| g_used[g] = true);
            f_used[j] = true;
            groups.push(Group { generated: srcs, final_: vec![j], by: "chunk_id" });
        } else {
            // Part of it was claimed elsewhere: treat as an ordinary claim of
            // its first free source.
            if let Some(&g) = srcs.iter().find(|g| !claims.contains_key(g)) {
                claims.entry(g).or_default().push(j);
            }
        }
    }
    let mut claimed: Vec<(usize, Vec<usize>)> = claims.into_iter().collect();
    claimed.sort_unstable_by_key(|(g, _)| *g);
    for (g, js) in claimed {
        let best = js
            .iter()
            .copied()
            .max_by(|&a, &b| dice(&gw[g], &fw[a]).total_cmp(&dice(&gw[g], &fw[b])).then(b.cmp(&a)))
            .expect("a claim has a final block");
        g_used[g] = true;
        f_used[best] = true;
        groups.push(Group { generated: vec![g], final_: vec![best], by: "chunk_id" });
    }

    // 2. Identical text (squashed), first free occurrence each.
    let mut by_text: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, b) in generated.iter().enumerate().rev() {
        if !g_used[i] {
            by_text.entry(squash(&b.text)).or_default().push(i);
        }
    }
    for (j, b) in final_.iter().enumerate() {
        if f_used[j] {
            continue;
        }
        if let Some(g) = by_text.get_mut(&squash(&b.text)).and_then(Vec::pop) {
            g_used[g] = true;
            f_used[j] = true;
            groups.push(Group { generated: vec![g], final_: vec![j], by: "text" });
        }
    }

    // Splits and merges of what ids and identical text matched, before
    // similarity can take their pieces.
    extend_splits_and_merges(&mut groups, &gw, &fw, &mut g_used, &mut f_used);

    // A free final block with the text of a generated block matched
    // elsewhere is a copy: an insertion, never a match for another block.
    let mut copies: HashMap<usize, usize> = HashMap::new();
    let mut all_text: HashMap<String, usize> = HashMap::new();
    for (i, b) in generated.iter().enumerate().rev() {
        all_text.insert(squash(&b.text), i);
    }
    for (j, b) in final_.iter().enumerate() {
        if let Some(&g) = all_text.get(&squash(&b.text)).filter(|_| !f_used[j]) {
            if g_used[g] {
                f_used[j] = true;
                copies.insert(j, g);
            }
        }
    }

    // 3. Similarity through an inverted index of the free generated blocks.
    let mut postings: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, words) in gw.iter().enumerate() {
        if g_used[i] {
            continue;
        }
        let uniq: HashSet<&str> = words.iter().map(String::as_str).collect();
        for w in uniq {
            postings.entry(w).or_default().push(i);
        }
    }
    let mut candidates: Vec<(f32, usize, usize)> = Vec::new();
    for (j, words) in fw.iter().enumerate() {
        if f_used[j] || words.is_empty() {
            continue;
        }
        let mut hits: HashMap<usize, u32> = HashMap::new();
        let uniq: HashSet<&str> = words.iter().map(String::as_str).collect();
        for w in uniq {
            if let Some(list) = postings.get(w).filter(|l| l.len() <= opts.max_postings) {
                for &g in list {
                    *hits.entry(g).or_default() += 1;
                }
            }
        }
        for (g, _) in hits {
            let s = dice(&gw[g], words);
            if s >= opts.min_similarity {
                candidates.push((s, g, j));
            }
        }
    }
    candidates.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    for (_, g, j) in candidates {
        if !g_used[g] && !f_used[j] {
            g_used[g] = true;
            f_used[j] = true;
            groups.push(Group { generated: vec![g], final_: vec![j], by: "similarity" });
        }
    }

    extend_splits_and_merges(&mut groups, &gw, &fw, &mut g_used, &mut f_used);

    // 5. Moves: groups off the longest increasing run of final positions.
    groups.sort_unstable_by_key(|g| g.generated[0]);
    let in_order = lis_mask(&groups.iter().map(|g| g.final_[0]).collect::<Vec<_>>());

    let mut ops: Vec<(f64, Op)> = Vec::with_capacity(generated.len() + final_.len());
    for (k, group) in groups.iter().enumerate() {
        let old = join(generated, &group.generated);
        let new = join(final_, &group.final_);
        let (edits, ratio) = word_edits(&old, &new);
        let moved = !in_order[k];
        let kind = match (group.generated.len(), group.final_.len()) {
            (1, 1) => match (moved, edits.is_empty()) {
                (false, true) => OpKind::Unchanged,
                (false, false) => OpKind::Edited,
                (true, true) => OpKind::Moved,
                (true, false) => OpKind::MovedEdited,
            },
            (1, _) => OpKind::Split,
            _ => OpKind::Merged,
        };
        let chunk_ids =
            group.generated.iter().flat_map(|&g| generated[g].chunk_ids.iter().cloned()).collect();
        let key = group.final_[0] as f64;
        ops.push((
            key,
            Op {
                kind,
                generated: group.generated.clone(),
                final_: group.final_.clone(),
                matched_by: group.by,
                chunk_ids,
                edit_ratio: ratio,
                edits,
                moved,
            },
        ));
    }
    for (j, b) in final_.iter().enumerate() {
        let copy = copies.get(&j).copied();
        if !f_used[j] || copy.is_some() {
            let (edits, _) = word_edits("", &b.text);
            ops.push((
                j as f64,
                Op {
                    kind: OpKind::Inserted,
                    generated: copy.into_iter().collect(),
                    final_: vec![j],
                    matched_by: if copy.is_some() { "copy" } else { "none" },
                    chunk_ids: vec![],
                    edit_ratio: 1.0,
                    edits,
                    moved: false,
                },
            ));
        }
    }
    // A deleted block sits just after the final position of the nearest
    // matched generated block before it.
    let mut where_ = vec![-0.5f64; generated.len()];
    for group in &groups {
        for &g in &group.generated {
            where_[g] = *group.final_.last().expect("non-empty") as f64;
        }
    }
    let mut last = -0.5f64;
    for (i, b) in generated.iter().enumerate() {
        if g_used[i] {
            last = where_[i];
            continue;
        }
        let (edits, _) = word_edits(&b.text, "");
        ops.push((
            last + 0.5,
            Op {
                kind: OpKind::Deleted,
                generated: vec![i],
                final_: vec![],
                matched_by: "none",
                chunk_ids: b.chunk_ids.clone(),
                edit_ratio: 1.0,
                edits,
                moved: false,
            },
        ));
    }
    ops.sort_by(|a, b| a.0.total_cmp(&b.0));
    Delta { ops: ops.into_iter().map(|(_, op)| op).collect() }
}

/// Grows 1:1 groups into splits (following free final blocks) and merges
/// (following free generated blocks) while the joined text gets closer.
fn extend_splits_and_merges(
    groups: &mut [Group],
    gw: &[Vec<String>],
    fw: &[Vec<String>],
    g_used: &mut [bool],
    f_used: &mut [bool],
) {
    for group in groups.iter_mut() {
        if group.generated.len() != 1 || group.final_.len() != 1 {
            continue;
        }
        let g = &gw[group.generated[0]];
        // Split: free final neighbours (after, then before) that bring the
        // joined text closer to the generated one.
        grow(&mut group.final_, fw, f_used, |joined| dice(g, joined));
        if group.final_.len() > 1 {
            continue;
        }
        let f = &fw[group.final_[0]];
        // Merge: free generated neighbours absorbed into the final one.
        grow(&mut group.generated, gw, g_used, |joined| dice(joined, f));
    }
}

/// Extends the consecutive run `run` of `words` indices with free
/// neighbours while `score` of the joined words improves by more than 0.05.
fn grow(
    run: &mut Vec<usize>,
    words: &[Vec<String>],
    used: &mut [bool],
    score: impl Fn(&[String]) -> f32,
) {
    let joined =
        |run: &[usize]| run.iter().flat_map(|&i| words[i].iter().cloned()).collect::<Vec<_>>();
    loop {
        let now = score(&joined(run));
        let first = run[0];
        let last = run[run.len() - 1];
        let after = (last + 1 < words.len() && !used[last + 1]).then_some(last + 1);
        let before = (first > 0 && !used[first - 1]).then_some(first.wrapping_sub(1));
        let mut best: Option<(f32, usize)> = None;
        for cand in [after, before].into_iter().flatten() {
            let mut with = run.clone();
            with.push(cand);
            with.sort_unstable();
            let s = score(&joined(&with));
            if s > now + 0.05 && best.is_none_or(|(b, _)| s > b) {
                best = Some((s, cand));
            }
        }
        let Some((_, cand)) = best else { break };
        used[cand] = true;
        run.push(cand);
        run.sort_unstable();
    }
}

fn join(blocks: &[Block], idx: &[usize]) -> String {
    idx.iter().map(|&i| blocks[i].text.as_str()).collect::<Vec<_>>().join(" ")
}

/// Dice coefficient of two word multisets.
pub(crate) fn dice(a: &[String], b: &[String]) -> f32 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let mut counts: HashMap<&str, i32> = HashMap::new();
    for w in a {
        *counts.entry(w).or_default() += 1;
    }
    let mut common = 0;
    for w in b {
        if let Some(c) = counts.get_mut(w.as_str()) {
            if *c > 0 {
                *c -= 1;
                common += 1;
            }
        }
    }
    2.0 * common as f32 / (a.len() + b.len()) as f32
}

/// The changed token spans between two texts and the share of tokens
/// changed (0..=1). Tokens compare exactly: a case or accent fix is an edit.
pub fn word_edits(old: &str, new: &str) -> (Vec<WordEdit>, f32) {
    let a = tokens(old);
    let b = tokens(new);
    if a.is_empty() && b.is_empty() {
        return (Vec::new(), 0.0);
    }
    let mut edits = Vec::new();
    let mut changed = 0usize;
    for op in capture_diff_slices(Algorithm::Myers, &a, &b) {
        let (o, n) = match op {
            DiffOp::Equal { .. } => continue,
            DiffOp::Delete { old_index, old_len, .. } => {
                (&a[old_index..old_index + old_len], &b[0..0])
            }
            DiffOp::Insert { new_index, new_len, .. } => {
                (&a[0..0], &b[new_index..new_index + new_len])
            }
            DiffOp::Replace { old_index, old_len, new_index, new_len } => {
                (&a[old_index..old_index + old_len], &b[new_index..new_index + new_len])
            }
        };
        changed += o.len().max(n.len());
        edits.push(WordEdit { old: detokenize(o), new: detokenize(n) });
    }
    (edits, (changed as f32 / a.len().max(b.len()) as f32).min(1.0))
}

/// Joins tokens with spaces, without a space before closing punctuation.
fn detokenize(tokens: &[&str]) -> String {
    let mut s = String::new();
    for t in tokens {
        if !s.is_empty() && (is_word(t) || matches!(*t, "(" | "¿" | "¡" | "«" | "\"")) {
            s.push(' ');
        }
        s.push_str(t);
    }
    s
}

/// Marks the elements on one longest strictly increasing subsequence.
fn lis_mask(xs: &[usize]) -> Vec<bool> {
    // Patience sorting with predecessor links: O(n log n).
    let mut tails: Vec<usize> = Vec::new(); // indices into xs
    let mut prev = vec![usize::MAX; xs.len()];
    for (i, &x) in xs.iter().enumerate() {
        let pos = tails.partition_point(|&t| xs[t] < x);
        if pos > 0 {
            prev[i] = tails[pos - 1];
        }
        if pos == tails.len() {
            tails.push(i);
        } else {
            tails[pos] = i;
        }
    }
    let mut mask = vec![false; xs.len()];
    let mut cur = tails.last().copied().unwrap_or(usize::MAX);
    while cur != usize::MAX {
        mask[cur] = true;
        cur = prev[cur];
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lis_keeps_the_longest_order() {
        assert_eq!(lis_mask(&[0, 1, 5, 2, 3, 4]), [true, true, false, true, true, true]);
        assert_eq!(lis_mask(&[]), Vec::<bool>::new());
        assert_eq!(lis_mask(&[3, 0, 1, 2]), [false, true, true, true]);
    }

    #[test]
    fn word_edits_group_changed_spans() {
        let (e, r) =
            word_edits("Interviene Jhon Yonson, concejal.", "Interviene John Johnson, concejal.");
        assert_eq!(e, [WordEdit { old: "Jhon Yonson".into(), new: "John Johnson".into() }]);
        assert!((r - 2.0 / 6.0).abs() < 1e-6, "{r}");
        assert_eq!(word_edits("igual", "igual"), (vec![], 0.0));
    }
}
