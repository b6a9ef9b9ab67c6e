//! AVX-512 VNNI kernel over weight rows interleaved in tiles of sixteen
//! (`QMatrix`'s tiled layout, used at `Kernel::Avx512Vnni`).
//!
//! The row-major kernel (`avx2.rs`) dots one weight row with one
//! activation row per register: every block then costs an int-to-float
//! conversion, a scale permute and an FMA per (row, activation row) pair,
//! about ten multiply-adds per instruction. Here a register's sixteen
//! 32-bit lanes are sixteen weight rows: one `vpdpbusd` multiplies four
//! consecutive weights of each of the sixteen rows with the same four
//! activation bytes (broadcast from memory, a load-port operation), so a
//! block of sixteen rows against one activation row is eight `vpdpbusd`,
//! one conversion and two FMAs, and the unpacked weights are shared by up
//! to four activation rows. The scales of sixteen rows convert with one
//! `vcvtph2ps`. The idea is that of llama.cpp's "repacked" `Q4_0` weights
//! (rows interleaved for the SIMD lanes); the layout is forja's own, for
//! its three formats.
//!
//! Tile layout (16 rows × all blocks, `16 × row_bytes` bytes); block `b`
//! of the tile takes `16 × block_bytes` bytes: the sixteen rows' f16 scales,
//! (`Q4_1`) their sixteen f16 minimums, then the quants in 64-byte chunks:
//! chunk `k` holds bytes `4k..4k+4` of each row's quants, row after row.
//! For 4-bit formats the low nibbles of chunk `k` are weights `4k..4k+4`
//! of the block, the high nibbles weights `16+4k..16+4k+4`; `Q8_0` bytes
//! are stored plus 128 (as unsigned, what `vpdpbusd` wants on its left),
//! and the `128 · Σa` that adds is taken back with the activation sums,
//! as `Q4_0`'s `8 · Σa`.
//!
//! Reached only through `Kernel::Avx512Vnni` (features detected at run
//! time); `QMatrix::matmul_many` hands it whole tiles.
#![allow(unsafe_code)]
#![allow(clippy::needless_range_loop)]

use super::{QActs, QType};

/// Other architectures never store tiles (`Kernel::tiles`).
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn tiles(_: QType, _: &[u8], _: &QActs, _: &mut [f32]) {
    unreachable!("the tiled layout is x86-64 only")
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::tiles;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::avx2::{Fmt, Q40, Q41, Q80};
    use super::super::{Kernel, BLOCK, TILE};
    use super::{QActs, QType};
    use std::arch::x86_64::*;

    /// `out[r * m + c] = w_r · a_c` for the `out.len() / m` rows at the start
    /// of `w`, all in tiles of [`TILE`] rows, and all `m` activation rows.
    pub(in super::super) fn tiles(qtype: QType, w: &[u8], acts: &QActs, out: &mut [f32]) {
        let (m, nb) = (acts.m, acts.k / BLOCK);
        let nrows = out.len() / m.max(1);
        assert!(nrows.is_multiple_of(TILE) && out.len() == nrows * m);
        assert!(w.len() >= nrows * nb * qtype.block_bytes());
        assert!(acts.qs.len() >= m * acts.k && acts.d.len() >= m * nb && acts.dsum.len() >= m * nb);
        let want = Kernel::Avx512Vnni.act_layout(qtype);
        assert_eq!(acts.layout, want, "tiled kernel: activation layout");
        // SAFETY: only reached through Kernel::Avx512Vnni (features detected);
        // the asserts above bound every weight, activation and output access.
        unsafe {
            match qtype {
                QType::Q4_0 => run::<Q40>(w, nrows, acts, out),
                QType::Q4_1 => run::<Q41>(w, nrows, acts, out),
                QType::Q8_0 => run::<Q80>(w, nrows, acts, out),
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn run<F: Fmt>(w: &[u8], nrows: usize, acts: &QActs, out: &mut [f32]) {
        let (m, nb) = (acts.m, acts.k / BLOCK);
        let tile_bytes = TILE * nb * F::TYPE.block_bytes();
        for t in 0..nrows / TILE {
            let wt = w.as_ptr().add(t * tile_bytes);
            let o = out.as_mut_ptr().add(t * TILE * m);
            let mut c = 0;
            while c < m {
                match m - c {
                    1 => micro::<F, 1>(wt, acts, c, o, m),
                    2 => micro::<F, 2>(wt, acts, c, o, m),
                    3 => micro::<F, 3>(wt, acts, c, o, m),
                    _ => micro::<F, 4>(wt, acts, c, o, m),
                }
                c += 4;
            }
        }
    }

    #[inline(always)]
    unsafe fn bcast(p: *const i8) -> __m512i {
        _mm512_set1_epi32((p as *const i32).read_unaligned())
    }

    /// One tile of sixteen rows against activation rows `c0..c0 + C` (all
    /// inside `m`: loops of constant length keep the accumulators in
    /// registers).
    #[inline(always)]
    unsafe fn micro<F: Fmt, const C: usize>(
        wt: *const u8,
        acts: &QActs,
        c0: usize,
        out: *mut f32,
        m: usize,
    ) {
        let nb = acts.k / BLOCK;
        debug_assert!(c0 + C <= m);
        let rows = Rows {
            q: acts.qs.as_ptr().add(c0 * acts.k),
            k: acts.k,
            d: acts.d.as_ptr().add(c0 * nb),
            dsum: acts.dsum.as_ptr().add(c0 * nb),
            nb,
            stream: c0 == 0,
        };
        let mut acc = [_mm512_setzero_ps(); C];
        // Where block `b`'s activation bytes for a chunk's low and high
        // nibbles start (4-bit formats, paired layout: a pair `(2p, 2p + 1)`
        // stores the first halves of both blocks, then the second halves),
        // or for chunks `0..4` and `4..8` (`Q8_0`, natural layout).
        let mut b = 0;
        if F::PAIRED {
            while b + 2 <= nb {
                let at = b * BLOCK;
                block::<F, C>(wt, b, &rows, (at, at + 32), &mut acc);
                block::<F, C>(wt, b + 1, &rows, (at + 16, at + 48), &mut acc);
                b += 2;
            }
        }
        while b < nb {
            block::<F, C>(wt, b, &rows, (b * BLOCK, b * BLOCK + 16), &mut acc);
            b += 1;
        }
        if m == 1 {
            _mm512_storeu_ps(out, acc[0]);
            return;
        }
        for j in 0..C {
            let mut lanes = [0f32; TILE];
            _mm512_storeu_ps(lanes.as_mut_ptr(), acc[j]);
            for (r, v) in lanes.iter().enumerate() {
                *out.add(r * m + c0 + j) = *v;
            }
        }
    }

    /// `C` activation rows from the first one on: quants (`k` apart), and
    /// the per-block scales and sums (`nb` apart).
    struct Rows {
        q: *const i8,
        k: usize,
        d: *const f32,
        dsum: *const f32,
        nb: usize,
        /// Whether this pass is the first over the tile (the weights come
        /// from memory; later passes find them in cache).
        stream: bool,
    }

    /// Block `b` of a tile against the rows, whose bytes for the low and
    /// the high half of the block start at offsets `halves`.
    #[inline(always)]
    unsafe fn block<F: Fmt, const C: usize>(
        wt: *const u8,
        b: usize,
        rows: &Rows,
        halves: (usize, usize),
        acc: &mut [__m512; C],
    ) {
        let t = F::TYPE;
        let bb = TILE * t.block_bytes();
        let bp = wt.add(b * bb);
        if rows.stream {
            // The weights stream (contiguous tiles): ask for the block eight
            // ahead; the hardware prefetcher alone runs too short a
            // distance. A hint past the end is harmless.
            let ahead = bp.wrapping_add(8 * bb);
            let mut at = 0;
            while at < bb {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(at) as *const i8);
                at += 64;
            }
        }
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(bp as *const __m256i));
        let off = match t {
            QType::Q4_0 => _mm512_mul_ps(d, _mm512_set1_ps(-8.0)),
            QType::Q4_1 => _mm512_cvtph_ps(_mm256_loadu_si256(bp.add(2 * TILE) as *const __m256i)),
            QType::Q8_0 => _mm512_mul_ps(d, _mm512_set1_ps(-128.0)),
        };
        let qp = bp.add(2 * TILE * t.header_halves());
        let (lo, hi) = (rows.q.add(halves.0), rows.q.add(halves.1));
        // Two independent chains per activation row (low/high nibbles, or
        // the block's two halves), summed at the end of the block.
        let mut s0 = [_mm512_setzero_si512(); C];
        let mut s1 = [_mm512_setzero_si512(); C];
        let m4 = _mm512_set1_epi8(0x0F);
        for k in 0..4 {
            let (w0, w1) = if F::PAIRED {
                let v = _mm512_loadu_si512(qp.add(64 * k) as *const _);
                (_mm512_and_si512(v, m4), _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4))
            } else {
                (
                    _mm512_loadu_si512(qp.add(64 * k) as *const _),
                    _mm512_loadu_si512(qp.add(64 * (k + 4)) as *const _),
                )
            };
            for j in 0..C {
                let r = j * rows.k + 4 * k;
                s0[j] = _mm512_dpbusd_epi32(s0[j], w0, bcast(lo.add(r)));
                s1[j] = _mm512_dpbusd_epi32(s1[j], w1, bcast(hi.add(r)));
            }
        }
        for j in 0..C {
            let at = j * rows.nb + b;
            let da = _mm512_set1_ps(*rows.d.add(at));
            let dsa = _mm512_set1_ps(*rows.dsum.add(at));
            let p = _mm512_cvtepi32_ps(_mm512_add_epi32(s0[j], s1[j]));
            acc[j] = _mm512_fmadd_ps(p, _mm512_mul_ps(d, da), acc[j]);
            acc[j] = _mm512_fmadd_ps(off, dsa, acc[j]);
        }
    }
}
