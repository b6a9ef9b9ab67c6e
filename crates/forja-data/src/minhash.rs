//! MinHash signatures of word n-gram shingles, and the LSH banding that finds
//! near-duplicate candidates among them.
//!
//! Shingles are `ngram` consecutive whitespace-separated words (what datasketch
//! users feed `MinHash.update`). Each shingle is hashed to 32 bits (xxh3 over
//! the words), then `num_perm` hash functions `h_i(x) = a_i·x + b_i mod 2^32`
//! with odd `a_i` (permutations of the 32-bit space) are applied and the
//! minimum of each is kept. The multiply-add form vectorises: eight lanes per
//! instruction on AVX2, which is where the speed over datasketch's
//! `mod (2^61 - 1)` comes from. `a_i`, `b_i` come from a SplitMix64 stream of
//! the seed, so signatures are reproducible across runs and machines.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// How signatures are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MinHashParams {
    /// Number of hash functions (signature length).
    pub num_perm: usize,
    /// Words per shingle.
    pub ngram: usize,
    /// Seed of the hash functions.
    pub seed: u64,
}

impl Default for MinHashParams {
    fn default() -> Self {
        MinHashParams { num_perm: 128, ngram: 5, seed: 1 }
    }
}

/// A MinHash signature: the minimum of each hash function over the shingles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature(pub Vec<u32>);

impl Signature {
    /// The estimated Jaccard similarity: the fraction of equal minima.
    pub fn jaccard(&self, other: &Signature) -> f64 {
        assert_eq!(self.0.len(), other.0.len(), "signatures of different lengths");
        let eq = self.0.iter().zip(&other.0).filter(|(a, b)| a == b).count();
        eq as f64 / self.0.len().max(1) as f64
    }
}

/// Computes signatures with fixed hash functions.
#[derive(Debug, Clone)]
pub struct MinHasher {
    params: MinHashParams,
    a: Vec<u32>,
    b: Vec<u32>,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl MinHasher {
    /// Hash functions for `params`. `num_perm` and `ngram` must be at least 1
    /// (the config layer checks).
    pub fn new(params: &MinHashParams) -> Self {
        let mut state = params.seed;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..params.num_perm.max(1) {
            a.push((splitmix(&mut state) as u32) | 1);
            b.push(splitmix(&mut state) as u32);
        }
        MinHasher { params: *params, a, b }
    }

    /// The parameters.
    pub fn params(&self) -> &MinHashParams {
        &self.params
    }

    /// The 32-bit hashes of the text's shingles. A text with fewer words than
    /// `ngram` is one shingle; an empty text has none.
    pub fn shingles(&self, text: &str) -> Vec<u32> {
        let seed = self.params.seed;
        let words: Vec<u64> =
            text.split_whitespace().map(|w| xxh3_64_with_seed(w.as_bytes(), seed)).collect();
        let n = self.params.ngram.max(1);
        if words.is_empty() {
            return Vec::new();
        }
        let combine = |ws: &[u64]| {
            let mut h = 0x243F_6A88_85A3_08D3u64;
            for &w in ws {
                h = (h.rotate_left(23) ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            }
            ((h >> 32) ^ h) as u32
        };
        if words.len() < n {
            return vec![combine(&words)];
        }
        words.windows(n).map(combine).collect()
    }

    /// The signature of a text.
    pub fn signature(&self, text: &str) -> Signature {
        self.signature_of_shingles(&self.shingles(text))
    }

    /// The signature of pre-hashed shingles.
    pub fn signature_of_shingles(&self, shingles: &[u32]) -> Signature {
        let mut mins = vec![u32::MAX; self.a.len()];
        update(&mut mins, &self.a, &self.b, shingles);
        Signature(mins)
    }
}

fn update(mins: &mut [u32], a: &[u32], b: &[u32], shingles: &[u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        #[allow(unsafe_code)]
        unsafe {
            return update_avx2(mins, a, b, shingles);
        }
    }
    update_portable(mins, a, b, shingles)
}

/// The same loop compiled with AVX2 enabled, so LLVM vectorises it eight wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
unsafe fn update_avx2(mins: &mut [u32], a: &[u32], b: &[u32], shingles: &[u32]) {
    update_portable(mins, a, b, shingles)
}

/// Hash functions per register block: 32 lanes are four AVX2 registers, so
/// the minima and multipliers stay in registers across all shingles.
const BLOCK: usize = 32;

#[inline(always)]
fn update_portable(mins: &mut [u32], a: &[u32], b: &[u32], shingles: &[u32]) {
    let full = mins.len() / BLOCK * BLOCK;
    for start in (0..full).step_by(BLOCK) {
        let mut m: [u32; BLOCK] = mins[start..start + BLOCK].try_into().expect("block");
        let a: [u32; BLOCK] = a[start..start + BLOCK].try_into().expect("block");
        let b: [u32; BLOCK] = b[start..start + BLOCK].try_into().expect("block");
        for &x in shingles {
            for l in 0..BLOCK {
                m[l] = m[l].min(a[l].wrapping_mul(x).wrapping_add(b[l]));
            }
        }
        mins[start..start + BLOCK].copy_from_slice(&m);
    }
    for &x in shingles {
        for ((m, &a), &b) in mins[full..].iter_mut().zip(&a[full..]).zip(&b[full..]) {
            *m = (*m).min(a.wrapping_mul(x).wrapping_add(b));
        }
    }
}

/// LSH banding: `bands` bands of `rows` signature values each. Two signatures
/// are candidates when all rows of at least one band agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Banding {
    /// Number of bands.
    pub bands: usize,
    /// Rows per band.
    pub rows: usize,
}

impl Banding {
    /// The bands × rows that minimise the (equally weighted) areas of false
    /// positives below `threshold` and false negatives above it, for
    /// signatures of `num_perm` values: datasketch's `MinHashLSH` rule.
    pub fn optimal(threshold: f64, num_perm: usize) -> Banding {
        let mut best = (f64::INFINITY, Banding { bands: 1, rows: 1 });
        for bands in 1..=num_perm {
            for rows in 1..=num_perm / bands {
                let (b, r) = (bands as f64, rows as f64);
                let p = |s: f64| 1.0 - (1.0 - s.powf(r)).powf(b);
                let fp = integrate(&p, 0.0, threshold);
                let fneg = integrate(&|s| 1.0 - p(s), threshold, 1.0);
                let err = 0.5 * fp + 0.5 * fneg;
                if err < best.0 {
                    best = (err, Banding { bands, rows });
                }
            }
        }
        best.1
    }

    /// The probability that a pair with Jaccard `s` becomes a candidate.
    pub fn candidate_probability(&self, s: f64) -> f64 {
        1.0 - (1.0 - s.powi(self.rows as i32)).powi(self.bands as i32)
    }

    /// The hash of each band of `sig`, tagged with the band number so equal
    /// values in different bands do not collide.
    pub fn band_keys<'a>(&'a self, sig: &'a Signature) -> impl Iterator<Item = u64> + 'a {
        let mut bytes = Vec::with_capacity(self.rows * 4);
        sig.0.chunks_exact(self.rows).take(self.bands).enumerate().map(move |(i, band)| {
            bytes.clear();
            for v in band {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            xxh3_64_with_seed(&bytes, i as u64)
        })
    }
}

/// Composite Simpson's rule with 256 intervals: plenty for these smooth curves.
fn integrate(f: &dyn Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
    const N: usize = 256;
    let h = (hi - lo) / N as f64;
    let mut sum = f(lo) + f(hi);
    for i in 1..N {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        sum += w * f(lo + i as f64 * h);
    }
    sum * h / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn words(n: usize, seed: u64) -> Vec<String> {
        let mut s = seed;
        (0..n).map(|_| format!("w{}", splitmix(&mut s) % 5000)).collect()
    }

    fn exact_jaccard(h: &MinHasher, a: &str, b: &str) -> f64 {
        let sa: HashSet<u32> = h.shingles(a).into_iter().collect();
        let sb: HashSet<u32> = h.shingles(b).into_iter().collect();
        sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64
    }

    #[test]
    fn estimates_are_unbiased_within_the_binomial_error() {
        let h = MinHasher::new(&MinHashParams::default());
        let mut total_err = 0.0;
        let mut n = 0;
        for seed in 0..200u64 {
            let base = words(300, seed);
            let mut other = base.clone();
            // Replace a seed-dependent share of the words.
            let k = (seed as usize * 7) % 120;
            for (i, w) in words(k, seed + 1000).into_iter().enumerate() {
                other[(i * 37 + seed as usize) % 300] = w;
            }
            let (a, b) = (base.join(" "), other.join(" "));
            let truth = exact_jaccard(&h, &a, &b);
            let est = h.signature(&a).jaccard(&h.signature(&b));
            let sd = (truth * (1.0 - truth) / 128.0).sqrt();
            assert!((est - truth).abs() <= 5.0 * sd + 0.02, "seed {seed}: est {est} truth {truth}");
            total_err += est - truth;
            n += 1;
        }
        let bias = total_err / n as f64;
        assert!(bias.abs() < 0.01, "mean error {bias}");
    }

    #[test]
    fn identical_texts_have_identical_signatures_and_short_texts_one_shingle() {
        let h = MinHasher::new(&MinHashParams::default());
        assert_eq!(h.signature("a b c d e f"), h.signature("a b c d e f"));
        assert_eq!(h.shingles("two words").len(), 1);
        assert!(h.shingles("   ").is_empty());
        assert_eq!(h.signature("").0, vec![u32::MAX; 128]);
        // The seed changes the functions.
        let other = MinHasher::new(&MinHashParams { seed: 2, ..Default::default() });
        assert_ne!(h.signature("a b c d e f"), other.signature("a b c d e f"));
    }

    #[test]
    fn banding_matches_datasketch() {
        // Values printed by datasketch 2.0 `MinHashLSH(threshold, num_perm)` (b, r).
        for (t, perm, want) in [
            (0.8, 128, (9, 13)),
            (0.5, 128, (25, 5)),
            (0.9, 256, (9, 28)),
            (0.85, 128, (8, 16)),
            (0.7, 64, (8, 8)),
        ] {
            let b = Banding::optimal(t, perm);
            assert_eq!((b.bands, b.rows), want, "threshold {t} num_perm {perm}");
        }
    }
}
