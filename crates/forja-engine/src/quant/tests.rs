//! Kernel tests: SIMD against the scalar reference, both against f32 maths,
//! and our block decoding against candle's independent GGML implementation.

use super::*;

const ALL: [QType; 3] = [QType::Q4_0, QType::Q4_1, QType::Q8_0];

/// Deterministic pseudo-random values in [-1, 1) with some outliers.
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            if i % 97 == 0 {
                v * 8.0
            } else {
                v
            }
        })
        .collect()
}

fn reference(w: &QMatrix, x: &[f32], m: usize) -> Vec<f32> {
    let wf = w.dequantize();
    let mut y = vec![0f32; m * w.rows()];
    for i in 0..m {
        for r in 0..w.rows() {
            let xr = &x[i * w.cols()..(i + 1) * w.cols()];
            let wr = &wf[r * w.cols()..(r + 1) * w.cols()];
            y[i * w.rows() + r] = xr.iter().zip(wr).map(|(a, b)| a * b).sum();
        }
    }
    y
}

fn max_rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
    got.iter().zip(want).fold(0f32, |a, (g, w)| a.max((g - w).abs() / scale))
}

#[test]
fn round_trip_error_is_bounded_by_the_format() {
    for (qtype, tol) in [(QType::Q4_0, 0.16), (QType::Q4_1, 0.1), (QType::Q8_0, 0.01)] {
        let w = data(4 * 64, 1);
        let q = QMatrix::quantize(qtype, 4, 64, &w).unwrap();
        assert_eq!(q.to_ggml_bytes().len(), 4 * 2 * qtype.block_bytes());
        let back = q.dequantize();
        for (blk_w, blk_b) in w.chunks(BLOCK).zip(back.chunks(BLOCK)) {
            let amax = blk_w.iter().fold(0f32, |a, v| a.max(v.abs()));
            for (a, b) in blk_w.iter().zip(blk_b) {
                assert!((a - b).abs() <= tol * amax, "{qtype:?}: {a} vs {b} (amax {amax})");
            }
        }
    }
}

#[test]
fn matmul_agrees_with_f32_maths() {
    for qtype in ALL {
        for (m, rows, cols) in [(1, 1, 32), (1, 7, 64), (2, 4, 96), (3, 9, 128), (17, 33, 256)] {
            let w = QMatrix::quantize(qtype, rows, cols, &data(rows * cols, 2)).unwrap();
            let x = data(m * cols, 3);
            let mut y = vec![0f32; m * rows];
            w.matmul(&x, m, &mut y);
            let err = max_rel_err(&y, &reference(&w, &x, m));
            // The only extra error is the 8-bit quantization of activations.
            assert!(err < 0.02, "{qtype:?} m={m} rows={rows} cols={cols}: rel err {err}");
        }
    }
}

/// Every SIMD level this CPU runs (not just the active one, so
/// `FORJA_ISA` cannot hide a level from the tests) against the scalar
/// reference.
#[test]
fn simd_kernels_match_scalar_reference() {
    let kernels: Vec<Kernel> = crate::isa::Isa::available()
        .into_iter()
        .map(Kernel::for_isa)
        .filter(|&k| k != Kernel::Scalar)
        .collect();
    if kernels.is_empty() {
        eprintln!("no SIMD kernel on this CPU; nothing to compare");
        return;
    }
    for kernel in kernels {
        compare_with_scalar(kernel);
    }
}

fn compare_with_scalar(kernel: Kernel) {
    for qtype in ALL {
        // Decode (m = 1) shapes cover passes of four rows and single rows,
        // and groups with 4-block steps, a trailing pair and a single block.
        for (m, rows, cols) in [
            (1, 5, 64),
            (1, 9, 224),
            (1, 13, 576),
            (1, 4, 416),
            (1, 7, 96),
            (2, 8, 128),
            (5, 13, 320),
            (3, 9, 576),
            (2, 4, 96),
            // Whole tiles of the interleaved layout, then grouped rows.
            (1, 16, 64),
            (1, 37, 576),
            (2, 32, 96),
            (3, 21, 320),
            (4, 16, 224),
            (5, 48, 128),
            (9, 33, 64),
        ] {
            let w = QMatrix::quantize(qtype, rows, cols, &data(rows * cols, 4)).unwrap();
            let (ws, wk) = (w.for_kernel(Kernel::Scalar), w.for_kernel(kernel));
            assert_eq!(wk.tiled, if kernel.tiles() { rows / TILE * TILE } else { 0 });
            assert_eq!(wk.to_ggml_bytes(), ws.to_ggml_bytes(), "{kernel:?} {qtype:?}");
            assert_eq!(wk.dequantize(), ws.dequantize(), "{kernel:?} {qtype:?}");
            let x = data(m * cols, 5);
            let natural = QActs::quantize(&x, m, cols, ActLayout::Natural);
            let mut scalar_acts = natural.clone();
            scalar::quantize_acts(
                &x,
                &mut scalar_acts.qs,
                &mut scalar_acts.d,
                &mut scalar_acts.dsum,
            );
            assert_eq!(natural.qs, scalar_acts.qs, "{qtype:?}: activation quantization differs");
            let acts = QActs::quantize(&x, m, cols, kernel.act_layout(qtype));
            for c in 0..m {
                for blk in 0..cols / BLOCK {
                    assert_eq!(
                        acts.block(c, blk),
                        natural.block(c, blk),
                        "{:?} {blk}",
                        acts.layout()
                    );
                }
            }
            let (mut a, mut b) = (vec![0f32; m * rows], vec![0f32; m * rows]);
            scalar::tile(qtype, &ws.data, &acts, &mut a);
            kernel.tile(qtype, &wk.data, wk.tiled, &acts, &mut b);
            assert!(max_rel_err(&b, &a) < 1e-5, "{kernel:?} {qtype:?} m={m} rows={rows}");
        }
    }
}

#[test]
fn block_decoding_matches_candle() {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    for (qtype, gd) in [
        (QType::Q4_0, GgmlDType::Q4_0),
        (QType::Q4_1, GgmlDType::Q4_1),
        (QType::Q8_0, GgmlDType::Q8_0),
    ] {
        let (rows, cols) = (6, 64);
        let t = Tensor::from_vec(data(rows * cols, 6), (rows, cols), &Device::Cpu).unwrap();
        let qt = QTensor::quantize(&t, gd).unwrap();
        let ours = QMatrix::from_bytes(qtype, rows, cols, qt.data().unwrap().into_owned()).unwrap();
        let theirs: Vec<f32> =
            qt.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(ours.dequantize(), theirs, "{qtype:?}");
    }
}

#[test]
fn empty_matrices_load_and_multiply_at_every_level() {
    for kernel in crate::isa::Isa::available().into_iter().map(Kernel::for_isa) {
        for qtype in ALL {
            for (rows, cols) in [(0, 64), (16, 0), (0, 0)] {
                let w = QMatrix::laid_out(qtype, rows, cols, &[], kernel);
                assert_eq!(w.tiled, 0);
                assert!(w.to_ggml_bytes().is_empty() && w.dequantize().is_empty());
            }
        }
    }
}

#[test]
fn wrong_sizes_are_refused() {
    let e = QMatrix::from_bytes(QType::Q4_1, 2, 33, vec![]).unwrap_err();
    assert!(e.to_string().contains("multiple of the 32"), "{e}");
    let e = QMatrix::from_bytes(QType::Q8_0, 2, 32, vec![0; 10]).unwrap_err();
    assert_eq!(e.to_string(), "Q8_0 2x32 needs 68 bytes, got 10");
}

#[test]
fn ggml_bytes_round_trip_through_the_grouped_layout() {
    for qtype in ALL {
        // 18 blocks per row: two full groups and a tail of two.
        let (rows, cols) = (3, 18 * 32);
        let w = QMatrix::quantize(qtype, rows, cols, &data(rows * cols, 7)).unwrap();
        let ggml = w.to_ggml_bytes();
        let again = QMatrix::from_bytes(qtype, rows, cols, ggml.clone()).unwrap();
        assert_eq!(again.to_ggml_bytes(), ggml, "{qtype:?}");
        assert_eq!(again.dequantize(), w.dequantize(), "{qtype:?}");
    }
}
