//! Reciprocal rank fusion (Cormack, Clarke and Büttcher, 2009): a passage
//! scores `Σ 1 / (K + rank)` over the ranked lists it appears in, so BM25
//! and dense scores, which are on different scales, never need to be
//! compared.

use std::collections::HashMap;

/// The constant of the original paper.
pub const RRF_K: f32 = 60.0;

/// Fuses ranked lists of `(id, score)` (best first) into one, best first;
/// ties go to the smaller id so the order is deterministic.
pub fn rrf(lists: &[&[(i64, f32)]], k: usize) -> Vec<(i64, f32)> {
    let mut score: HashMap<i64, f32> = HashMap::new();
    for list in lists {
        for (rank, (id, _)) in list.iter().enumerate() {
            *score.entry(*id).or_default() += 1.0 / (RRF_K + rank as f32 + 1.0);
        }
    }
    let mut out: Vec<(i64, f32)> = score.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(k);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_wins_and_order_is_deterministic() {
        let bm25 = [(1, 9.0), (2, 5.0), (3, 1.0)];
        let dense = [(3, 0.9), (2, 0.8), (4, 0.1)];
        let fused = rrf(&[&bm25, &dense], 10);
        // 3 (first and third) edges out 2 (second twice); both beat 1,
        // first in one list only.
        assert_eq!(fused.iter().map(|f| f.0).collect::<Vec<_>>(), [3, 2, 1, 4]);
        assert_eq!(rrf(&[&bm25], 1)[0].0, 1);
        assert!(rrf(&[], 5).is_empty());
    }
}
