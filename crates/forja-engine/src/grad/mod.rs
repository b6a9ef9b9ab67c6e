//! Differentiable fused CPU kernels for training: candle custom ops with a
//! hand-written backward, where candle's own ops would waste FLOPs or
//! memory (see each module). candle's autograd still drives them; these
//! ops are only nodes with a cheaper forward and backward.
//!
//! Matrix products go through the `gemm` crate (the one candle uses),
//! single-threaded per call and split over [`parallel`], so training uses
//! the same threads as every other kernel.

mod attention;
mod linear;

pub(crate) use attention::causal_attention;
pub(crate) use linear::{cross_entropy, frozen_linear, lora_linear};

use crate::parallel;
use candle_core::{DType, Tensor};

/// A row-major or transposed view of a matrix: element `(i, j)` is
/// `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `[rows, cols]` matrix.
    pub(crate) fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat { data, rs: cols, cs: 1 }
    }
    /// The transpose of a row-major `[rows, cols]` matrix.
    pub(crate) fn t(data: &'a [f32], cols: usize) -> Self {
        Mat { data, rs: 1, cs: cols }
    }
}

/// `dst[m, n] (+)= a[m, k] · b[k, n]` on the calling thread; row `i` of
/// `dst` starts at `i * dst_rs`.
#[allow(unsafe_code)]
pub(crate) fn gemm_into(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    acc: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= (m - 1) * dst_rs + n && dst_rs >= n, "gemm: destination too small");
    if k == 0 {
        if !acc {
            dst.chunks_mut(dst_rs).take(m).for_each(|r| r[..n].fill(0.0));
        }
        return;
    }
    let last = |v: Mat<'_>, rows: usize, cols: usize| (rows - 1) * v.rs + (cols - 1) * v.cs;
    assert!(last(a, m, k) < a.data.len(), "gemm: lhs too small");
    assert!(last(b, k, n) < b.data.len(), "gemm: rhs too small");
    // SAFETY: the asserts above bound every element the kernel reads or
    // writes; `dst` is borrowed mutably, `a` and `b` shared.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            acc,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `dst[m, n] (+)= a[m, k] · b[k, n]`, `dst` row-major, split by rows of
/// `dst` over the current pool's threads.
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    a: Mat<'_>,
    b: Mat<'_>,
    acc: bool,
) {
    assert_eq!(dst.len(), m * n, "matmul: destination size");
    if m == 0 || n == 0 {
        return;
    }
    let threads = parallel::num_threads().max(1);
    // Row blocks of at least 16 rows, at most one per thread.
    let block = m.div_ceil(threads).max(16).min(m);
    parallel::for_chunks_mut(dst, block * n, |i, d| {
        let r0 = i * block;
        let a = Mat { data: &a.data[r0 * a.rs..], ..a };
        gemm_into((d.len() / n, n, k), d, n, a, b, acc);
    });
}

/// Whether the fused training kernels apply to these tensors.
pub(crate) fn usable(xs: &[&Tensor]) -> bool {
    xs.iter().all(|x| x.device().is_cpu() && x.dtype() == DType::F32)
}
