//! BF16 products on Intel AMX tiles, for training's frozen-weight products
//! when the trainer asks for BF16 (`Precision::Bf16`).
//!
//! An AMX tile is a 16 × 64-byte register; `tdpbf16ps` multiplies a tile
//! of 16 rows × 32 BF16 values of `a` with a tile of 16 pairs of `b` rows
//! (16 columns × 2 BF16 values, the "VNNI" layout) into 16 × 16 f32
//! accumulators: 16 · 16 · 32 multiply-adds per instruction. On the Xeon
//! this was written on one core ran 3.1 TFLOP/s of them against 0.21 for
//! AVX-512 f32 FMAs (`bench/isa-peak.sh`). Inputs are rounded to BF16 (8
//! bits of mantissa), sums stay f32: the trade PyTorch's CPU autocast
//! makes, and why it is opt-in.
//!
//! `b` is packed once ([`Packed`]: frozen weights live for a whole job);
//! `a` (activations, gradients) is rounded per call by each thread for its
//! own rows. The micro-kernel computes 32 × 32 blocks of the output with
//! four accumulator tiles. Nothing in Rust's `std::arch` covers AMX on
//! stable, so the instructions are inline assembly; the tile registers are
//! never touched by compiled code, so they carry no state between blocks
//! that the compiler could disturb.

use super::Mat;
use crate::parallel;
use std::mem::MaybeUninit;

/// Values of `k` per tile step (one tile row of BF16).
const KSTEP: usize = 32;
/// Rows (and columns) of one tile.
const T: usize = 16;

/// Whether AMX-BF16 can run in this process: the CPU has it and Linux lets
/// this process use the tile data (asked once, process-wide).
pub(crate) fn available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[allow(unsafe_code)]
fn detect() -> bool {
    // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
    let leaf = std::arch::x86_64::__cpuid_count(7, 0);
    if leaf.edx & (1 << 22) == 0 || leaf.edx & (1 << 24) == 0 {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments; it only changes
    // which register state the kernel saves for this process.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// `x` rounded to the nearest BF16 (ties to even).
fn bf16(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// The right-hand side of a product, `b[k, n]`, in BF16 column panels of
/// 16 (pairs of `k` rows interleaved), `k` padded to 32 and the panels to
/// an even count with zeros.
pub(crate) struct Packed {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    data: Vec<u16>,
    k: usize,
    n: usize,
    /// `k` rounded up to [`KSTEP`].
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    kp: usize,
}

/// Shapes only: the values are millions of numbers.
impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed").field("k", &self.k).field("n", &self.n).finish_non_exhaustive()
    }
}

impl Packed {
    /// Packs `b` (`[k, n]`, any strides).
    pub(crate) fn new(k: usize, n: usize, b: Mat<'_>) -> Packed {
        let kp = k.div_ceil(KSTEP) * KSTEP;
        let panels = n.div_ceil(2 * T) * 2;
        let panel = kp * T;
        let mut data = vec![0u16; panels * panel];
        if data.is_empty() {
            return Packed { data, k, n, kp };
        }
        assert!((k - 1) * b.rs + (n - 1) * b.cs < b.data.len(), "amx: rhs too small");
        parallel::for_chunks_mut(&mut data, panel, |q, out| {
            for j in 0..T.min(n.saturating_sub(q * T)) {
                let col = q * T + j;
                for kk in 0..k {
                    out[(kk / 2) * 2 * T + j * 2 + kk % 2] = bf16(b.data[kk * b.rs + col * b.cs]);
                }
            }
        });
        Packed { data, k, n, kp }
    }
}

/// A frozen weight `w` `[out, in]` packed for both products of a step:
/// `x · wᵀ` forward and `∂y · w` backward.
#[derive(Debug)]
pub(crate) struct Bf16Weight {
    pub(crate) fwd: Packed,
    pub(crate) bwd: Packed,
}

impl Bf16Weight {
    /// Packs `w` (`out × in`, row-major).
    pub(crate) fn new(w: &[f32], out: usize, inp: usize) -> Bf16Weight {
        Bf16Weight {
            fwd: Packed::new(inp, out, Mat::t(w, inp)),
            bwd: Packed::new(out, inp, Mat::rows(w, inp)),
        }
    }
}

/// `a[m, k] · b` as a new row-major `Vec`.
#[allow(unsafe_code)]
pub(crate) fn matmul_new(m: usize, a: Mat<'_>, b: &Packed) -> Vec<f32> {
    let mut dst = Vec::with_capacity(m * b.n);
    // SAFETY: without `acc` every element is written.
    unsafe {
        matmul_uninit(m, &mut dst.spare_capacity_mut()[..m * b.n], a, b, false);
        dst.set_len(m * b.n);
    }
    dst
}

/// `dst[m, n] (+)= a[m, k] · b` into initialised memory.
#[allow(unsafe_code)]
pub(crate) fn matmul_into(m: usize, dst: &mut [f32], a: Mat<'_>, b: &Packed, acc: bool) {
    // SAFETY: initialised floats viewed as maybe-uninit; only floats are
    // stored into them.
    let dst = unsafe { &mut *(dst as *mut [f32] as *mut [MaybeUninit<f32>]) };
    // SAFETY: `dst` is initialised.
    unsafe { matmul_uninit(m, dst, a, b, acc) }
}

/// `dst[m, n] (+)= a[m, k] · b`, in parallel over blocks of rows, `dst`
/// row-major with `n` columns. Needs [`available`].
///
/// # Safety
/// With `acc`, `dst` must be initialised.
#[allow(unsafe_code)]
pub(crate) unsafe fn matmul_uninit(
    m: usize,
    dst: &mut [MaybeUninit<f32>],
    a: Mat<'_>,
    b: &Packed,
    acc: bool,
) {
    let (n, k) = (b.n, b.k);
    assert!(available(), "amx: not available");
    assert_eq!(dst.len(), m * n, "amx: destination size");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !acc {
            dst.fill(MaybeUninit::new(0.0));
        }
        return;
    }
    assert!((m - 1) * a.rs + (k - 1) * a.cs < a.data.len(), "amx: lhs too small");
    let threads = parallel::num_threads().max(1);
    let block = m.div_ceil(threads).div_ceil(2 * T).max(1) * 2 * T;
    parallel::for_chunks_mut(dst, block * n, |i, d| {
        let rows = d.len() / n;
        // SAFETY: the caller's promise, for this block of rows.
        unsafe { rows_block(i * block, rows, d, a, b, acc) };
    });
}

/// Tile configuration: palette 1, every tile used 16 rows × 64 bytes.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

#[cfg(target_arch = "x86_64")]
impl TileConfig {
    fn new() -> TileConfig {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
            c[48 + t] = T as u8;
        }
        TileConfig(c)
    }
}

/// Rows `r0..r0 + rows` of the product on this thread.
///
/// # Safety
/// With `acc`, `dst` must be initialised; [`available`] must hold.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
unsafe fn rows_block(
    r0: usize,
    rows: usize,
    dst: &mut [MaybeUninit<f32>],
    a: Mat<'_>,
    b: &Packed,
    acc: bool,
) {
    let (n, k, kp) = (b.n, b.k, b.kp);
    let mp = rows.div_ceil(2 * T) * 2 * T;
    // This thread's rows of `a`, rounded, zero-padded to whole tiles.
    let mut ap = vec![0u16; mp * kp];
    for (i, row) in ap.chunks_mut(kp).take(rows).enumerate() {
        let base = (r0 + i) * a.rs;
        if a.cs == 1 {
            round_into(&mut row[..k], &a.data[base..base + k]);
        } else {
            for (kk, v) in row[..k].iter_mut().enumerate() {
                *v = bf16(a.data[base + kk * a.cs]);
            }
        }
    }
    let cfg = TileConfig::new();
    let mut scratch = [0f32; 4 * T * T];
    let panel = kp * T;
    let dp = dst.as_mut_ptr() as *mut f32;
    // SAFETY: AMX is available and the tile data permitted (`available`).
    unsafe { tile_config(&cfg) };
    for q in (0..n.div_ceil(T)).step_by(2) {
        let (b0, b1) = (b.data[q * panel..].as_ptr(), b.data[(q + 1) * panel..].as_ptr());
        for i0 in (0..mp).step_by(2 * T) {
            let (a0, a1) = (ap[i0 * kp..].as_ptr(), ap[(i0 + T) * kp..].as_ptr());
            let srcs = Sources { a0, a1, b0, b1, kp };
            if i0 + 2 * T <= rows && (q + 2) * T <= n {
                // Whole tiles: accumulators loaded from and stored to `dst`.
                // SAFETY: rows i0..i0 + 32 and columns q·16..q·16 + 32 lie in
                // `dst` (`rows × n`); with `acc` they are initialised.
                unsafe {
                    let c = dp.add(i0 * n + q * T);
                    let tiles = [c, c.add(T), c.add(T * n), c.add(T * n + T)];
                    block(&srcs, tiles, n * 4, acc);
                }
                continue;
            }
            // A ragged edge: through a scratch block, then the valid part.
            let p = scratch.as_mut_ptr();
            // SAFETY: four 16 × 16 tiles of `scratch`, rows of 64 bytes.
            unsafe {
                let tiles = [p, p.add(T * T), p.add(2 * T * T), p.add(3 * T * T)];
                block(&srcs, tiles, T * 4, false);
            }
            for (t, c) in scratch.chunks(T * T).enumerate() {
                let (ti, tj) = (t / 2, t % 2);
                let col0 = (q + tj) * T;
                if col0 >= n {
                    continue;
                }
                let cols = T.min(n - col0);
                for r in 0..T {
                    let row = i0 + ti * T + r;
                    if row >= rows {
                        break;
                    }
                    let d = &mut dst[row * n + col0..row * n + col0 + cols];
                    for (d, v) in d.iter_mut().zip(&c[r * T..r * T + cols]) {
                        // SAFETY: with `acc` the caller initialised `dst`.
                        let prev = if acc { unsafe { d.assume_init() } } else { 0.0 };
                        *d = MaybeUninit::new(prev + v);
                    }
                }
            }
        }
    }
    // SAFETY: releases this thread's tile state.
    unsafe { std::arch::asm!("tilerelease", options(nostack)) };
}

/// Never called: [`available`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
#[allow(unsafe_code)]
unsafe fn rows_block(
    _r0: usize,
    _rows: usize,
    _dst: &mut [MaybeUninit<f32>],
    _a: Mat<'_>,
    _b: &Packed,
    _acc: bool,
) {
    unreachable!("amx: AMX off x86-64")
}

/// `dst[i] = bf16(src[i])`, vectorised where the CPU has AVX-512 (every
/// CPU with AMX has).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn round_into(dst: &mut [u16], src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512bw") {
        // SAFETY: the CPU has AVX-512 F/BW.
        return unsafe { round_avx512(dst, src) };
    }
    dst.iter_mut().zip(src).for_each(|(d, &x)| *d = bf16(x));
}

/// [`round_into`] compiled for AVX-512: the same rounding as [`bf16`] in
/// integer steps the compiler turns into 512-bit instructions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn round_avx512(dst: &mut [u16], src: &[f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        let b = x.to_bits();
        let r = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
        *d = if b & 0x7fff_ffff > 0x7f80_0000 { (b >> 16) as u16 | 0x40 } else { r };
    }
}

/// Where one 32 × 32 block reads: two 16-row slices of the rounded `a`
/// (rows of `kp` values) and two panels of the packed `b`.
#[cfg(target_arch = "x86_64")]
struct Sources {
    a0: *const u16,
    a1: *const u16,
    b0: *const u16,
    b1: *const u16,
    kp: usize,
}

/// # Safety
/// AMX must be available and permitted.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
unsafe fn tile_config(cfg: &TileConfig) {
    // SAFETY: the caller's promise; `cfg` is a valid 64-byte configuration.
    unsafe { std::arch::asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack)) };
}

/// One 32 × 32 block: accumulators 0–3 (`a0|a1 · b0|b1`) start at zero or,
/// with `load`, from `c` (four 16 × 16 tiles, rows `stride` bytes apart),
/// sum over `kp`, and are stored back to `c`.
///
/// # Safety
/// The tile configuration is loaded; the sources point at 16 rows of `kp`
/// BF16 values each (`a`) and `kp / 2` rows of 32 (`b`); each `c` at 16
/// rows of 16 floats `stride` bytes apart, initialised with `load`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
unsafe fn block(s: &Sources, c: [*mut f32; 4], stride: usize, load: bool) {
    let sa = s.kp * 2;
    let sb = 2 * T * 2;
    // SAFETY: the caller's promise bounds every tile load and store.
    unsafe {
        if load {
            std::arch::asm!(
                "tileloadd tmm0, [{p0} + {st}*1]",
                "tileloadd tmm1, [{p1} + {st}*1]",
                "tileloadd tmm2, [{p2} + {st}*1]",
                "tileloadd tmm3, [{p3} + {st}*1]",
                p0 = in(reg) c[0],
                p1 = in(reg) c[1],
                p2 = in(reg) c[2],
                p3 = in(reg) c[3],
                st = in(reg) stride,
                options(nostack, readonly)
            );
        } else {
            std::arch::asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
        }
        for kk in (0..s.kp).step_by(KSTEP) {
            std::arch::asm!(
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) s.a0.add(kk),
                a1 = in(reg) s.a1.add(kk),
                b0 = in(reg) s.b0.add(kk * T),
                b1 = in(reg) s.b1.add(kk * T),
                sa = in(reg) sa,
                sb = in(reg) sb,
                options(nostack, readonly)
            );
        }
        std::arch::asm!(
            "tilestored [{p0} + {st}*1], tmm0",
            "tilestored [{p1} + {st}*1], tmm1",
            "tilestored [{p2} + {st}*1], tmm2",
            "tilestored [{p3} + {st}*1], tmm3",
            p0 = in(reg) c[0],
            p1 = in(reg) c[1],
            p2 = in(reg) c[2],
            p3 = in(reg) c[3],
            st = in(reg) stride,
            options(nostack)
        );
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn reference(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], round: bool) -> Vec<f32> {
        let r = |x: f32| if round { f32::from_bits((bf16(x) as u32) << 16) } else { x };
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|kk| r(a[i * k + kk]) as f64 * r(b[kk * n + j]) as f64)
                    .sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16(1.0), 0x3f80);
        assert_eq!(bf16(f32::from_bits(0x3f80_8000)), 0x3f80, "a tie goes to even");
        assert_eq!(bf16(f32::from_bits(0x3f81_8000)), 0x3f82, "a tie goes to even");
        assert_eq!(bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(bf16(-2.0), 0xc000);
        assert!(half::bf16::from_bits(bf16(f32::NAN)).is_nan());
        // The vectorised rounding agrees with `half` on every class of
        // input: ties, subnormals, infinities, NaNs, a spread of bits.
        let mut seed = 1u32;
        let mut xs: Vec<f32> = (0..100_003)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                f32::from_bits(seed)
            })
            .collect();
        xs.extend([0.0, -0.0, 1.0, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN_POSITIVE]);
        xs.extend(
            [0x3f80_8000u32, 0x3f81_8000, 0x0000_8000, 0x7f7f_ffff, 0x7f80_0001, 0xff80_0001]
                .map(f32::from_bits),
        );
        let mut got = vec![0u16; xs.len()];
        round_into(&mut got, &xs);
        for (x, g) in xs.iter().zip(&got) {
            if x.is_nan() {
                assert!(half::bf16::from_bits(*g).is_nan(), "{:#x}", x.to_bits());
            } else {
                assert_eq!(*g, bf16(*x), "{:#x}", x.to_bits());
            }
        }
    }

    /// Every shape class (whole tiles, ragged rows, columns and depth, a
    /// single row or column, empty) against the product of the rounded
    /// inputs; `b` read row-major and transposed; with and without `acc`.
    #[test]
    #[allow(unsafe_code)]
    fn products_match_the_rounded_reference() {
        if !available() {
            eprintln!("amx: no AMX-BF16 on this CPU; the kernel is not tested here");
            return;
        }
        let mut seed = 7u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        for (m, n, k) in [
            (32, 32, 32),
            (64, 48, 96),
            (37, 21, 45),
            (1, 5, 3),
            (5, 1, 70),
            (33, 17, 1),
            (0, 4, 4),
            (4, 0, 4),
            (3, 4, 0),
            (100, 70, 130),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let want = reference(m, n, k, &a, &b, true);
            for (packed, how) in [
                (Packed::new(k, n, Mat::rows(&b, n)), "row-major"),
                (Packed::new(k, n, Mat::t(&bt, k)), "transposed"),
            ] {
                for acc in [false, true] {
                    let mut dst: Vec<f32> = (0..m * n).map(|i| i as f32).collect();
                    // SAFETY: `dst` is initialised.
                    let d = unsafe {
                        &mut *(dst.as_mut_slice() as *mut [f32] as *mut [MaybeUninit<f32>])
                    };
                    // SAFETY: `dst` is initialised.
                    unsafe { matmul_uninit(m, d, Mat::rows(&a, k), &packed, acc) };
                    for (i, (got, want)) in dst.iter().zip(&want).enumerate() {
                        let want = want + if acc { i as f32 } else { 0.0 };
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{m}x{n}x{k} {how} acc={acc} [{i}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
