//! The dense side: a tenant's passage embeddings in one contiguous matrix,
//! searched exactly (a dot product per passage; embeddings are unit
//! length, so it is the cosine). Exact search over 100k passages of 384
//! dimensions is ~38M multiply-adds a query; no approximate index is
//! built (BENCHMARKS.md has the latency this gives).

use std::sync::Arc;

/// Embeddings of one tenant's passages.
#[derive(Debug, Default)]
pub struct Vectors {
    dim: usize,
    seqs: Vec<i64>,
    sources: Vec<Arc<str>>,
    data: Vec<f32>,
}

impl Vectors {
    /// An empty set of `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Vectors {
        Vectors { dim, ..Vectors::default() }
    }

    /// Their dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Adds passage `seq`'s vector; one of another dimension is ignored
    /// (written by another embedding model) and `false` is returned.
    pub fn add(&mut self, seq: i64, source: &str, v: &[f32]) -> bool {
        if v.len() != self.dim {
            return false;
        }
        self.seqs.push(seq);
        self.sources.push(match self.sources.last() {
            Some(s) if &**s == source => s.clone(),
            _ => source.into(),
        });
        self.data.extend_from_slice(v);
        true
    }

    /// Drops every vector of `source`.
    pub fn remove_source(&mut self, source: &str) {
        let mut keep = 0;
        for i in 0..self.seqs.len() {
            if &*self.sources[i] != source {
                self.seqs.swap(keep, i);
                self.sources.swap(keep, i);
                let (a, b) = (keep * self.dim, i * self.dim);
                if a != b {
                    self.data.copy_within(b..b + self.dim, a);
                }
                keep += 1;
            }
        }
        self.seqs.truncate(keep);
        self.sources.truncate(keep);
        self.data.truncate(keep * self.dim);
    }

    /// The `k` passages closest to `q`, best first, only from `sources`
    /// when given.
    pub fn search(&self, q: &[f32], sources: Option<&[String]>, k: usize) -> Vec<(i64, f32)> {
        if q.len() != self.dim || k == 0 {
            return Vec::new();
        }
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        for (i, row) in self.data.chunks_exact(self.dim.max(1)).enumerate() {
            if let Some(s) = sources {
                if !s.iter().any(|s| *s == *self.sources[i]) {
                    continue;
                }
            }
            let score = dot(q, row);
            if best.len() == k && best[k - 1].0 >= score {
                continue;
            }
            let at = best.partition_point(|b| b.0 >= score);
            best.insert(at, (score, i));
            best.truncate(k);
        }
        best.into_iter().map(|(s, i)| (self.seqs[i], s)).collect()
    }
}

/// A dot product in eight lanes (the compiler vectorises it).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_top_k_source_filter_and_removal() {
        let mut v = Vectors::new(3);
        assert!(v.add(1, "a", &[1.0, 0.0, 0.0]));
        assert!(v.add(2, "a", &[0.6, 0.8, 0.0]));
        assert!(v.add(3, "b", &[0.0, 1.0, 0.0]));
        assert!(!v.add(4, "b", &[1.0]));
        let q = [0.8, 0.6, 0.0];
        let ids = |h: Vec<(i64, f32)>| h.into_iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(ids(v.search(&q, None, 2)), [2, 1]);
        assert_eq!(ids(v.search(&q, Some(&["b".into()]), 5)), [3]);
        v.remove_source("a");
        assert_eq!(ids(v.search(&q, None, 5)), [3]);
        assert_eq!(v.len(), 1);
        let long: Vec<f32> = (0..19).map(|i| i as f32).collect();
        assert_eq!(dot(&long, &long), (0..19).map(|i| (i * i) as f32).sum::<f32>());
    }
}
