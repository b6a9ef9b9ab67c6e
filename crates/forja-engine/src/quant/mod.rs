//! Block-quantized weight matrices (GGML `Q4_0`, `Q4_1`, `Q8_0`) and their
//! CPU matrix multiplication.
//!
//! Why this exists instead of candle's `QMatMul`: candle 0.11 has no SIMD
//! path for `Q4_1` (the default model's format) and multiplies one
//! activation row at a time. Here the activations are quantized once to
//! 8-bit blocks, then a micro-kernel computes a tile of weight rows ×
//! activation rows per pass, so each unpacked weight block is reused for
//! several tokens during prompt prefill and batched decode, and each
//! activation block for several weight rows. Work is split across threads
//! by weight rows. Formats without a kernel here (k-quants, ...) fall back
//! to candle.
//!
//! Memory layout: GGML blocks are rearranged at load time, same byte
//! count, in one of two layouts chosen by the active kernel level:
//! - grouped (scalar, AVX2, NEON; `scalar.rs`, `avx2.rs`, `neon.rs`): a
//!   row is a run of groups of up to [`GROUP`] consecutive blocks; a group
//!   of `n` blocks stores its `n` f16 scales, then (`Q4_1`) its `n` f16
//!   minimums, then the `n` blocks' quants, so one 128-bit load yields
//!   eight scales for the SIMD kernel;
//! - tiled (AVX-512 VNNI; `tiled.rs`): rows in tiles of sixteen (`TILE`)
//!   interleaved so that a register's lanes are sixteen rows; the rows
//!   after the last whole tile stay grouped.
//!
//! `dequantize_row` and `to_ggml_bytes` read either.

mod avx2;
mod neon;
mod scalar;
mod tiled;

use crate::parallel;
use half::f16;

/// Number of weights in one block, for every format here.
pub const BLOCK: usize = 32;

/// Blocks per scale group in forja's layout.
pub const GROUP: usize = 8;

/// Slack after the data so SIMD loads of a tail group stay in bounds.
const PAD: usize = 64;

/// Rows per tile of the interleaved layout (`tiled.rs`).
pub(crate) const TILE: usize = 16;

/// A GGML block format with a kernel in this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QType {
    /// 4-bit, one f16 scale: `w = (q - 8) * d`. 18 bytes per block.
    Q4_0,
    /// 4-bit, f16 scale and minimum: `w = q * d + m`. 20 bytes per block.
    Q4_1,
    /// 8-bit, one f16 scale: `w = q * d`. 34 bytes per block.
    Q8_0,
}

impl QType {
    /// Bytes per block of 32 weights.
    pub const fn block_bytes(self) -> usize {
        match self {
            QType::Q4_0 => 18,
            QType::Q4_1 => 20,
            QType::Q8_0 => 34,
        }
    }

    /// Bytes of a `rows × cols` matrix in this format (`cols` a multiple
    /// of [`BLOCK`]).
    pub const fn matrix_bytes(self, rows: usize, cols: usize) -> usize {
        rows * cols / BLOCK * self.block_bytes()
    }

    /// Bytes of quants per block (after the f16 scale and minimum).
    pub(crate) const fn quant_bytes(self) -> usize {
        match self {
            QType::Q4_0 | QType::Q4_1 => 16,
            QType::Q8_0 => 32,
        }
    }

    /// f16 header fields per block: scale, plus minimum for `Q4_1`.
    pub(crate) const fn header_halves(self) -> usize {
        match self {
            QType::Q4_1 => 2,
            QType::Q4_0 | QType::Q8_0 => 1,
        }
    }

    /// The GGML name (`Q4_0`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            QType::Q4_0 => "Q4_0",
            QType::Q4_1 => "Q4_1",
            QType::Q8_0 => "Q8_0",
        }
    }
}

impl std::str::FromStr for QType {
    type Err = String;

    /// `q8_0`, `q4_0` or `q4_1` (any case).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "Q4_0" => Ok(QType::Q4_0),
            "Q4_1" => Ok(QType::Q4_1),
            "Q8_0" => Ok(QType::Q8_0),
            _ => Err(format!("unknown block format `{s}`; use q8_0, q4_0 or q4_1")),
        }
    }
}

/// A `rows × cols` matrix in a GGML block format: row-major and grouped,
/// or (at the AVX-512 level) its first `tiled` rows interleaved in tiles
/// of sixteen rows (`tiled.rs`) and the rest grouped.
#[derive(Clone)]
pub struct QMatrix {
    qtype: QType,
    rows: usize,
    cols: usize,
    /// Leading rows stored in tiles (a multiple of [`TILE`]; 0 when the
    /// active kernel reads only the grouped layout).
    tiled: usize,
    data: Vec<u8>,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QMatrix({} {}x{})", self.qtype.name(), self.rows, self.cols)
    }
}

/// Why raw bytes cannot be a [`QMatrix`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QMatrixError {
    /// `cols` is not a multiple of the 32-weight block.
    #[error("{cols} columns is not a multiple of the {BLOCK}-weight block")]
    Columns {
        /// The offending column count.
        cols: usize,
    },
    /// The byte count does not match `rows × cols` in this format.
    #[error("{qtype} {rows}x{cols} needs {expected} bytes, got {got}")]
    Size {
        /// Format name.
        qtype: &'static str,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
}

impl QMatrix {
    /// Takes GGML block data (as stored in GGUF files).
    pub fn from_bytes(
        qtype: QType,
        rows: usize,
        cols: usize,
        ggml: Vec<u8>,
    ) -> Result<Self, QMatrixError> {
        if !cols.is_multiple_of(BLOCK) {
            return Err(QMatrixError::Columns { cols });
        }
        let expected = qtype.matrix_bytes(rows, cols);
        if ggml.len() != expected {
            return Err(QMatrixError::Size {
                qtype: qtype.name(),
                rows,
                cols,
                expected,
                got: ggml.len(),
            });
        }
        Ok(Self::laid_out(qtype, rows, cols, &ggml, Kernel::detect()))
    }

    /// GGML bytes (sizes checked) in the layout `kernel` reads: whole tiles
    /// interleaved, the other rows grouped, then [`PAD`] bytes of slack.
    fn laid_out(qtype: QType, rows: usize, cols: usize, ggml: &[u8], kernel: Kernel) -> Self {
        let (nb, bb) = (cols / BLOCK, qtype.block_bytes());
        let tiled = if kernel.tiles() && nb > 0 { rows / TILE * TILE } else { 0 };
        let mut data = vec![0u8; ggml.len() + PAD];
        if nb > 0 {
            for (r, row) in ggml.chunks_exact(nb * bb).enumerate() {
                for (b, g) in row.chunks_exact(bb).enumerate() {
                    spot(qtype, nb, tiled, r, b).put(qtype, g, &mut data);
                }
            }
        }
        QMatrix { qtype, rows, cols, tiled, data }
    }

    /// The same matrix in the layout `kernel` reads (tests run every level
    /// on one machine).
    #[cfg(test)]
    fn for_kernel(&self, kernel: Kernel) -> Self {
        Self::laid_out(self.qtype, self.rows, self.cols, &self.to_ggml_bytes(), kernel)
    }

    /// Quantizes a row-major f32 matrix (GGML's reference rounding).
    pub fn quantize(
        qtype: QType,
        rows: usize,
        cols: usize,
        w: &[f32],
    ) -> Result<Self, QMatrixError> {
        if !cols.is_multiple_of(BLOCK) {
            return Err(QMatrixError::Columns { cols });
        }
        assert_eq!(w.len(), rows * cols, "quantize: data is not rows x cols");
        let mut ggml = vec![0u8; qtype.matrix_bytes(rows, cols)];
        for (x, out) in w.chunks_exact(BLOCK).zip(ggml.chunks_exact_mut(qtype.block_bytes())) {
            scalar::quantize_block(qtype, x, out);
        }
        Self::from_bytes(qtype, rows, cols, ggml)
    }

    /// The matrix as GGML block data (as stored in GGUF files).
    pub fn to_ggml_bytes(&self) -> Vec<u8> {
        let (nb, bb) = (self.cols / BLOCK, self.qtype.block_bytes());
        let mut out = vec![0u8; self.rows * nb * bb];
        if nb == 0 {
            return out;
        }
        for (r, row) in out.chunks_exact_mut(nb * bb).enumerate() {
            for (b, blk) in row.chunks_exact_mut(bb).enumerate() {
                self.ggml_block(r, b, blk);
            }
        }
        out
    }

    /// Copies block `b` of row `r` out as one GGML block, from either layout.
    fn ggml_block(&self, r: usize, b: usize, out: &mut [u8]) {
        spot(self.qtype, self.cols / BLOCK, self.tiled, r, b).get(self.qtype, &self.data, out);
    }

    /// The block format.
    pub fn qtype(&self) -> QType {
        self.qtype
    }
    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    fn row_bytes(&self) -> usize {
        self.cols / BLOCK * self.qtype.block_bytes()
    }

    /// Dequantizes row `r` into `out` (`cols` long).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let mut blk = [0u8; 34];
        let blk = &mut blk[..self.qtype.block_bytes()];
        for (b, o) in out.chunks_exact_mut(BLOCK).enumerate() {
            self.ggml_block(r, b, blk);
            scalar::dequantize_block(self.qtype, blk, o);
        }
    }

    /// Dequantizes the whole matrix, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        parallel::for_chunks_mut(&mut out, self.cols, |r, o| self.dequantize_row(r, o));
        out
    }

    /// `y[m × rows] = x[m × cols] · selfᵀ`, with `x` quantized to 8 bits
    /// per block first (as GGML does), in parallel.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        let acts = self.quantize_input(x, m);
        self.matmul_q(&acts, y);
    }

    /// Quantizes `m` input rows in the layout this matrix's kernel reads.
    pub fn quantize_input(&self, x: &[f32], m: usize) -> QActs {
        QActs::quantize(x, m, self.cols, self.act_layout())
    }

    /// The activation layout this matrix's kernel reads.
    pub fn act_layout(&self) -> ActLayout {
        Kernel::detect().act_layout(self.qtype)
    }

    /// Like [`QMatrix::matmul`] with activations already quantized, so one
    /// quantization serves several matrices that read the same input.
    pub fn matmul_q(&self, acts: &QActs, y: &mut [f32]) {
        Self::matmul_many(&[self], acts, &mut [y]);
    }

    /// Several products with the same quantized input in one parallel pass
    /// (q/k/v, or gate/up): one fork-join instead of one per matrix.
    pub fn matmul_many(mats: &[&QMatrix], acts: &QActs, ys: &mut [&mut [f32]]) {
        let m = acts.m;
        let kernel = Kernel::detect();
        assert_eq!(mats.len(), ys.len(), "matmul_many: one output per matrix");
        for (w, y) in mats.iter().zip(ys.iter()) {
            assert_eq!(acts.k, w.cols, "matmul: activation width != matrix columns");
            assert_eq!(y.len(), m * w.rows, "matmul: output is not m x rows");
            assert_eq!(acts.layout, w.act_layout(), "matmul: activations in the wrong layout");
        }
        let total_rows: usize = mats.iter().map(|w| w.rows).sum();
        let chunk = row_chunk(total_rows, m);
        // For m > 1 each task writes a transposed [rows × m] tile.
        let mut yts: Vec<Vec<f32>> =
            if m == 1 { Vec::new() } else { mats.iter().map(|w| vec![0f32; m * w.rows]).collect() };
        let mut tasks: Vec<(&QMatrix, usize, &mut [f32])> = Vec::new();
        if m == 1 {
            for (w, y) in mats.iter().zip(ys.iter_mut()) {
                for (ci, out) in y.chunks_mut(chunk).enumerate() {
                    tasks.push((w, ci * chunk, out));
                }
            }
        } else {
            for (w, yt) in mats.iter().zip(yts.iter_mut()) {
                for (ci, out) in yt.chunks_mut(chunk * m).enumerate() {
                    tasks.push((w, ci * chunk, out));
                }
            }
        }
        parallel::for_each_mut(&mut tasks, |_, (w, r0, out)| {
            // Tasks start on tile boundaries (`row_chunk`), so a task's
            // rows are whole tiles, then grouped rows.
            let tiled = w.tiled.saturating_sub(*r0).min(out.len() / m);
            kernel.tile(w.qtype, &w.data[*r0 * w.row_bytes()..], tiled, acts, out);
        });
        for ((w, yt), y) in mats.iter().zip(&yts).zip(ys.iter_mut()) {
            transpose_into(yt, w.rows, m, y);
        }
    }
}

/// How many weight rows one task takes: enough work to beat the scheduling
/// cost, and enough tasks to keep every thread busy.
fn row_chunk(rows: usize, m: usize) -> usize {
    let threads = parallel::num_threads().max(1);
    // A few tasks per thread: short enough to balance at the join, long
    // enough that each streams its rows with the prefetcher ramped up.
    let tasks_per_thread = 4;
    let min_rows = (64 / m.max(1)).max(16);
    let per_task = rows.div_ceil(threads * tasks_per_thread).max(min_rows);
    // Whole tiles of the interleaved layout (and passes of four rows).
    per_task.div_ceil(TILE) * TILE
}

fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    // src is [rows × cols]; dst is [cols × rows].
    parallel::for_chunks_mut(dst, rows, |c, out| {
        for (r, o) in out.iter_mut().enumerate() {
            *o = src[r * cols + c];
        }
    });
}

/// How the 8-bit activation quants of a row are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActLayout {
    /// Block after block, 32 values each.
    Natural,
    /// Blocks in pairs `(2p, 2p+1)` stored as the first halves of both, then
    /// the second halves: the order a 32-byte load of two 4-bit blocks'
    /// nibbles produces. A trailing odd block stays natural.
    Paired,
}

/// Activations quantized to signed 8-bit blocks: per block a scale `d` and
/// `d * Σq` (used by the formats with an offset).
#[derive(Debug, Clone)]
pub struct QActs {
    m: usize,
    k: usize,
    layout: ActLayout,
    qs: Vec<i8>,
    d: Vec<f32>,
    dsum: Vec<f32>,
}

impl QActs {
    /// Quantizes `m` rows of `k` values (`k` a multiple of 32).
    pub fn quantize(x: &[f32], m: usize, k: usize, layout: ActLayout) -> Self {
        assert_eq!(x.len(), m * k, "QActs::quantize: input is not m x k");
        assert_eq!(k % BLOCK, 0, "QActs::quantize: k is not a multiple of 32");
        let nb = m * k / BLOCK;
        // d and dsum get GROUP floats of slack for whole-group SIMD loads.
        let mut acts = QActs {
            m,
            k,
            layout,
            qs: vec![0; m * k],
            d: vec![0.0; nb + GROUP],
            dsum: vec![0.0; nb + GROUP],
        };
        let kernel = Kernel::detect();
        let row_blocks = k / BLOCK;
        // Tasks of whole rows (pairs never straddle tasks), about 64 blocks each.
        let rows_per = (64 / row_blocks).max(1);
        if m <= rows_per {
            // One task's worth: skip the fork-join.
            kernel.quantize_acts(x, &mut acts.qs, &mut acts.d[..nb], &mut acts.dsum[..nb]);
            if layout == ActLayout::Paired {
                acts.qs.chunks_mut(k).for_each(pair_blocks);
            }
            return acts;
        }
        let mut tasks: Vec<_> = acts
            .qs
            .chunks_mut(rows_per * k)
            .zip(acts.d[..nb].chunks_mut(rows_per * row_blocks))
            .zip(acts.dsum[..nb].chunks_mut(rows_per * row_blocks))
            .collect();
        parallel::for_each_mut(&mut tasks, |i, ((qs, d), dsum)| {
            let x = &x[i * rows_per * k..][..qs.len()];
            kernel.quantize_acts(x, qs, d, dsum);
            if layout == ActLayout::Paired {
                qs.chunks_mut(k).for_each(pair_blocks);
            }
        });
        acts
    }

    /// Rows.
    pub fn m(&self) -> usize {
        self.m
    }

    /// The quant order.
    pub fn layout(&self) -> ActLayout {
        self.layout
    }

    /// The 32 quants of block `b` of row `c`, in natural order.
    fn block(&self, c: usize, b: usize) -> [i8; BLOCK] {
        let nb = self.k / BLOCK;
        let row = &self.qs[c * self.k..][..self.k];
        let mut out = [0i8; BLOCK];
        if self.layout == ActLayout::Paired && (b | 1) < nb {
            let base = (b & !1) * BLOCK;
            let side = (b & 1) * 16;
            out[..16].copy_from_slice(&row[base + side..][..16]);
            out[16..].copy_from_slice(&row[base + 32 + side..][..16]);
        } else {
            out.copy_from_slice(&row[b * BLOCK..][..BLOCK]);
        }
        out
    }
}

/// Reorders one row's blocks into [`ActLayout::Paired`].
fn pair_blocks(row: &mut [i8]) {
    for pair in row.chunks_exact_mut(2 * BLOCK) {
        let mut tmp = [0i8; 2 * BLOCK];
        tmp[..16].copy_from_slice(&pair[..16]);
        tmp[16..32].copy_from_slice(&pair[32..48]);
        tmp[32..48].copy_from_slice(&pair[16..32]);
        tmp[48..].copy_from_slice(&pair[48..]);
        pair.copy_from_slice(&tmp);
    }
}

/// The kernel of the active [`crate::isa::Isa`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// The AVX2 kernel with each block's int8 dot product as AVX-512 VNNI's
    /// `vpdpbusd` (one instruction for `vpmaddubsw` + `vpmaddwd`).
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    /// aarch64 NEON: one weight row against up to four activation rows.
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Kernel {
    fn detect() -> Kernel {
        Kernel::for_isa(crate::isa::Isa::active())
    }

    fn for_isa(isa: crate::isa::Isa) -> Kernel {
        use crate::isa::Isa;
        match isa {
            Isa::Scalar => Kernel::Scalar,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Kernel::Avx2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Kernel::Avx512Vnni,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Kernel::Neon,
            // A level of another architecture (Isa::active never returns one).
            #[allow(unreachable_patterns)]
            _ => Kernel::Scalar,
        }
    }

    /// Whether matrices for this kernel store whole tiles of rows
    /// interleaved (`tiled.rs`).
    fn tiles(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Avx512Vnni {
            return true;
        }
        false
    }

    /// The activation layout this kernel wants for a weight format.
    fn act_layout(self, qtype: QType) -> ActLayout {
        match (self, qtype) {
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2 | Kernel::Avx512Vnni, QType::Q4_0 | QType::Q4_1) => ActLayout::Paired,
            _ => ActLayout::Natural,
        }
    }

    fn quantize_acts(self, x: &[f32], qs: &mut [i8], d: &mut [f32], dsum: &mut [f32]) {
        match self {
            Kernel::Scalar => scalar::quantize_acts(x, qs, d, dsum),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Avx512Vnni => avx2::quantize_acts(x, qs, d, dsum),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => neon::quantize_acts(x, qs, d, dsum),
        }
    }

    /// Computes `out[r * m + c] = w_r · a_c` for the `out.len() / m` weight
    /// rows at the start of `w` (the first `tiled` in tiles, the rest
    /// grouped) and all `m` activation rows.
    fn tile(self, qtype: QType, w: &[u8], tiled: usize, acts: &QActs, out: &mut [f32]) {
        if tiled > 0 {
            assert!(self.tiles(), "{self:?} does not read the tiled layout");
            let (t, rest) = out.split_at_mut(tiled * acts.m);
            tiled::tiles(qtype, w, acts, t);
            let rb = acts.k / BLOCK * qtype.block_bytes();
            return self.tile(qtype, &w[tiled * rb..], 0, acts, rest);
        }
        if out.is_empty() {
            return;
        }
        match self {
            Kernel::Scalar => scalar::tile(qtype, w, acts, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::tile(qtype, w, acts, out, false),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => avx2::tile(qtype, w, acts, out, true),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => neon::tile(qtype, w, acts, out),
        }
    }
}

#[inline]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Byte offsets of block `b`'s scale, minimum (Q4_1) and quants within a
/// row of `nb` blocks in forja's grouped layout.
#[inline]
fn block_offsets(qtype: QType, nb: usize, b: usize) -> (usize, usize, usize) {
    let (g, i) = (b / GROUP, b % GROUP);
    let n = GROUP.min(nb - g * GROUP);
    let base = g * GROUP * qtype.block_bytes();
    let d = base + 2 * i;
    let m = base + 2 * n + 2 * i;
    let q = base + 2 * qtype.header_halves() * n + qtype.quant_bytes() * i;
    (d, m, q)
}

/// Byte offsets, within a tile, of tile row `i`'s scale, minimum (`Q4_1`)
/// and first quant byte in block `b`; quant byte `j` of the block is at
/// `q + 64 * (j / 4) + j % 4`.
#[inline]
fn tile_offsets(qtype: QType, b: usize, i: usize) -> (usize, usize, usize) {
    let base = b * TILE * qtype.block_bytes();
    let q = base + 2 * TILE * qtype.header_halves() + 4 * i;
    (base + 2 * i, base + 2 * TILE + 2 * i, q)
}

/// Where block `b` of row `r` lives in a matrix's data, given its first
/// `tiled` rows are in tiles and the rest grouped.
fn spot(qtype: QType, nb: usize, tiled: usize, r: usize, b: usize) -> Spot {
    let rb = nb * qtype.block_bytes();
    let (base, (d, m, q)) = if r < tiled {
        (r / TILE * TILE * rb, tile_offsets(qtype, b, r % TILE))
    } else {
        (r * rb, block_offsets(qtype, nb, b))
    };
    Spot { d: base + d, m: base + m, q: base + q, tiled: r < tiled }
}

/// Byte offsets of one block's scale, minimum (`Q4_1`) and first quant in
/// a matrix's data, and whether its quants are tiled (four bytes, then
/// the next row's four; `Q8_0`'s stored plus 128) or contiguous.
struct Spot {
    d: usize,
    m: usize,
    q: usize,
    tiled: bool,
}

impl Spot {
    /// Where quant byte `j` of a tiled block is, and what it is XORed
    /// with (`vpdpbusd` wants unsigned bytes on its left: `Q8_0`'s are
    /// stored plus 128).
    fn tiled_quant(&self, qtype: QType, j: usize) -> (usize, u8) {
        let flip = if qtype == QType::Q8_0 { 0x80 } else { 0 };
        (self.q + j / 4 * 64 + j % 4, flip)
    }

    /// Stores one GGML block `g` here.
    fn put(&self, qtype: QType, g: &[u8], data: &mut [u8]) {
        data[self.d..self.d + 2].copy_from_slice(&g[..2]);
        if qtype == QType::Q4_1 {
            data[self.m..self.m + 2].copy_from_slice(&g[2..4]);
        }
        let quants = &g[2 * qtype.header_halves()..];
        if !self.tiled {
            return data[self.q..self.q + quants.len()].copy_from_slice(quants);
        }
        for (j, &v) in quants.iter().enumerate() {
            let (at, flip) = self.tiled_quant(qtype, j);
            data[at] = v ^ flip;
        }
    }

    /// Copies the block out as one GGML block.
    fn get(&self, qtype: QType, data: &[u8], out: &mut [u8]) {
        out[..2].copy_from_slice(&data[self.d..self.d + 2]);
        if qtype == QType::Q4_1 {
            out[2..4].copy_from_slice(&data[self.m..self.m + 2]);
        }
        let quants = &mut out[2 * qtype.header_halves()..];
        if !self.tiled {
            return quants.copy_from_slice(&data[self.q..self.q + quants.len()]);
        }
        for (j, o) in quants.iter_mut().enumerate() {
            let (at, flip) = self.tiled_quant(qtype, j);
            *o = data[at] ^ flip;
        }
    }
}

#[cfg(test)]
mod tests;
