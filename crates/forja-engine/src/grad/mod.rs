//! Differentiable fused CPU kernels for training: candle custom ops with a
//! hand-written backward, where candle's own ops would waste FLOPs or
//! memory (see each module). candle's autograd still drives them; these
//! ops are only nodes with a cheaper forward and backward.
//!
//! Matrix products go through the `gemm` crate (the one candle uses),
//! single-threaded per call and split over [`parallel`], so training uses
//! the same threads as every other kernel.

mod amx;
mod attention;
mod linear;

pub(crate) use amx::available as bf16_available;
pub(crate) use amx::Bf16Weight;
pub(crate) use attention::causal_attention;
pub(crate) use linear::{cross_entropy, frozen_linear, lora_linear};

use crate::parallel;
use candle_core::{DType, Tensor};
use std::mem::MaybeUninit;

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
    dims: (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    acc: bool,
) {
    // SAFETY: same memory, viewed as possibly uninitialised; `gemm_uninit`
    // only ever stores initialised floats into it.
    let dst = unsafe { &mut *(dst as *mut [f32] as *mut [MaybeUninit<f32>]) };
    // SAFETY: `dst` is initialised, so accumulating into it reads floats.
    unsafe { gemm_uninit(dims, dst, dst_rs, a, b, acc) }
}

/// [`gemm_into`] into memory that may be uninitialised: every element of
/// the `m × n` window is written.
///
/// # Safety
/// With `acc`, the window must be initialised.
#[allow(unsafe_code)]
unsafe fn gemm_uninit(
    (m, n, k): (usize, usize, usize),
    dst: &mut [MaybeUninit<f32>],
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
            dst.chunks_mut(dst_rs).take(m).for_each(|r| r[..n].fill(MaybeUninit::new(0.0)));
        }
        return;
    }
    let last = |v: Mat<'_>, rows: usize, cols: usize| (rows - 1) * v.rs + (cols - 1) * v.cs;
    assert!(last(a, m, k) < a.data.len(), "gemm: lhs too small");
    assert!(last(b, k, n) < b.data.len(), "gemm: rhs too small");
    // SAFETY: the asserts above bound every element the kernel reads or
    // writes; `dst` is borrowed mutably, `a` and `b` shared; without `acc`
    // the kernel does not read `dst` (`read_dst` false), with it the caller
    // guarantees `dst` is initialised.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr() as *mut f32,
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
    // SAFETY: as in `gemm_into`: initialised floats viewed as maybe-uninit.
    #[allow(unsafe_code)]
    let dst = unsafe { &mut *(dst as *mut [f32] as *mut [MaybeUninit<f32>]) };
    // SAFETY: `dst` is initialised.
    #[allow(unsafe_code)]
    unsafe {
        matmul_uninit(m, n, k, dst, a, b, acc)
    }
}

/// `a[m, k] · b[k, n]` as a new row-major `Vec`, in parallel. The output is
/// written once by the products (no zero-filling first: for the `[tokens,
/// hidden]` outputs of a training step that was a serial pass over memory
/// while the other threads waited).
pub(crate) fn matmul_new(m: usize, n: usize, k: usize, a: Mat<'_>, b: Mat<'_>) -> Vec<f32> {
    let mut dst = Vec::with_capacity(m * n);
    // SAFETY: without `acc` every element of the `m × n` window is written.
    #[allow(unsafe_code)]
    unsafe {
        matmul_uninit(m, n, k, &mut dst.spare_capacity_mut()[..m * n], a, b, false);
        dst.set_len(m * n);
    }
    dst
}

/// # Safety
/// With `acc`, `dst` must be initialised.
#[allow(unsafe_code)]
unsafe fn matmul_uninit(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [MaybeUninit<f32>],
    a: Mat<'_>,
    b: Mat<'_>,
    acc: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let threads = parallel::num_threads().max(1);
    // Row blocks of at least 16 rows, at most one per thread.
    let block = m.div_ceil(threads).max(16).min(m);
    parallel::for_chunks_mut(dst, block * n, |i, d| {
        let r0 = i * block;
        let a = Mat { data: &a.data[r0 * a.rs..], ..a };
        // SAFETY: the caller's promise, for this block of rows.
        unsafe { gemm_uninit((d.len() / n, n, k), d, n, a, b, acc) };
    });
}

/// Whether the fused training kernels apply to these tensors.
pub(crate) fn usable(xs: &[&Tensor]) -> bool {
    xs.iter().all(|x| x.device().is_cpu() && x.dtype() == DType::F32)
}
