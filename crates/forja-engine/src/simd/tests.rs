//! Every level this CPU runs (not only the active one, so `FORJA_ISA`
//! cannot hide a level) against plain loops.

use super::*;

fn levels() -> Vec<Isa> {
    Isa::available()
}

fn wave(n: usize, f: f32, amp: f32) -> Vec<f32> {
    (0..n).map(|i| amp * (i as f32 * f).sin()).collect()
}

/// f16 cache rows: every level widens them exactly as `half` does, so the
/// results match plain loops over the widened values.
#[test]
fn row_kernels_over_f16_rows_match_plain_loops() {
    for isa in levels() {
        for (d, n) in [1, 8, 15, 16, 24, 33, 64, 67, 128].into_iter().flat_map(|d| [(d, 3), (d, 9)])
        {
            let stride = d + 5;
            let q = wave(d, 0.3, 1.0);
            // Values from every f16 range: normals, subnormals, large ones.
            let rows: Vec<f16> = (0..n * stride)
                .map(|i| {
                    let x = (i as f32 * 0.17).cos();
                    f16::from_f32(match i % 7 {
                        0 => x * 1e-6,
                        1 => x * 3e4,
                        _ => x,
                    })
                })
                .collect();
            let wide: Vec<f32> = rows.iter().map(|h| h.to_f32()).collect();
            let mut got = vec![0f32; n];
            dot_rows_at(isa, &q, &rows, stride, 0.5, &mut got);
            let mut want = vec![0f32; n];
            dot_rows_at(Isa::Scalar, &q, &wide, stride, 0.5, &mut want);
            for j in 0..n {
                let tol = 1e-5 * want[j].abs().max(1.0) * d as f32;
                assert!((got[j] - want[j]).abs() <= tol, "{isa} f16 dot_rows d={d} j={j}");
            }
            let p: Vec<f32> = (0..n).map(|j| j as f32 * 0.1).collect();
            let mut out: Vec<f32> = (0..d).map(|i| i as f32).collect();
            let mut want = out.clone();
            axpy_rows_at(isa, &p, &rows, stride, &mut out);
            axpy_rows_at(Isa::Scalar, &p, &wide, stride, &mut want);
            for i in 0..d {
                let tol = 1e-5 * want[i].abs().max(1.0) * n as f32;
                assert!((out[i] - want[i]).abs() <= tol, "{isa} f16 axpy_rows d={d} i={i}");
            }
        }
    }
}

#[test]
fn row_kernels_match_plain_loops() {
    for isa in levels() {
        // Rows in passes of four and leftovers; heads of one and several
        // registers, in passes of four registers and single ones, and tails.
        for (d, n) in [1, 8, 15, 16, 24, 33, 64, 67, 80, 128, 130]
            .into_iter()
            .flat_map(|d| [(d, 3), (d, 5), (d, 9)])
        {
            let stride = d + 3;
            let q = wave(d, 0.3, 1.0);
            let rows: Vec<f32> = (0..n * stride).map(|i| (i as f32 * 0.17).cos()).collect();
            let mut got = vec![0f32; n];
            dot_rows_at(isa, &q, &rows, stride, 0.5, &mut got);
            for j in 0..n {
                let want: f32 =
                    0.5 * q.iter().zip(&rows[j * stride..]).map(|(a, b)| a * b).sum::<f32>();
                assert!((got[j] - want).abs() < 1e-5, "{isa} dot_rows d={d} j={j}");
            }
            let p: Vec<f32> = (0..n).map(|j| j as f32 * 0.1).collect();
            let mut out: Vec<f32> = (0..d).map(|i| i as f32).collect();
            let mut want = out.clone();
            axpy_rows_at(isa, &p, &rows, stride, &mut out);
            for (j, &w) in p.iter().enumerate() {
                for i in 0..d {
                    want[i] += w * rows[j * stride + i];
                }
            }
            for i in 0..d {
                assert!((out[i] - want[i]).abs() < 1e-4, "{isa} axpy_rows d={d} i={i}");
            }
        }
    }
}

#[test]
fn sum_sq_matches_a_plain_loop_at_every_tail_length() {
    for isa in levels() {
        for n in [0, 1, 3, 4, 5, 8, 67] {
            let a = wave(n, 0.37, 1.0);
            let want: f64 = a.iter().map(|&v| v as f64 * v as f64).sum();
            assert!((sum_sq_at(isa, &a) - want).abs() < 1e-9, "{isa} sum_sq n={n}");
        }
    }
}

/// Relative error, with values below `floor` compared absolutely.
fn rel(got: f32, want: f32, floor: f32) -> f32 {
    (got - want).abs() / want.abs().max(floor)
}

#[test]
fn vector_exp_is_within_a_few_ulp_of_libm() {
    // Softmax inputs (≤ 0, down to far below the clamp) and a few positive.
    let x: Vec<f32> = (0..2000).map(|i| -100.0 + i as f32 * 0.0937).chain([0.0, -0.0]).collect();
    for isa in levels() {
        for n in [x.len(), 1, 7, 15, 17] {
            let mut got = x[..n].to_vec();
            let sum = exp_affine_at(isa, &mut got, 1.0, 0.0);
            let mut want_sum = 0f64;
            for (i, (&g, &v)) in got.iter().zip(&x).enumerate() {
                let want = v.exp();
                want_sum += want as f64;
                // 2–3 ulp where the result is normal; about 0 below the clamp.
                let ok = if v > -87.0 {
                    rel(g, want, f32::MIN_POSITIVE) < 3e-7
                } else {
                    (0.0..2e-38).contains(&g)
                };
                assert!(ok, "{isa} exp({v}) = {g}, libm {want} (i={i})");
            }
            assert!((sum - want_sum).abs() <= 1e-6 * want_sum.max(1.0), "{isa} sum n={n}");
        }
        // The affine form: exp(a·x + b).
        let mut got = vec![1.0f32, 2.0, -3.0, 0.5, 4.0, -1.0, 0.0, 2.5, -2.0];
        let want: Vec<f32> = got.iter().map(|&v| (0.125 * v - 0.5).exp()).collect();
        exp_affine_at(isa, &mut got, 0.125, -0.5);
        for (g, w) in got.iter().zip(&want) {
            assert!(rel(*g, *w, 1e-30) < 3e-7, "{isa} affine {g} vs {w}");
        }
    }
}

#[test]
fn silu_and_its_gradient_match_plain_loops() {
    for isa in levels() {
        for n in [1, 7, 8, 16, 33, 1000] {
            // Gates from −100 to 100: both tails of the sigmoid.
            let g: Vec<f32> = (0..n).map(|i| -100.0 + 200.0 * i as f32 / n as f32).collect();
            let u = wave(n, 0.41, 2.0);
            let gy = wave(n, 0.23, 1.5);
            let mut out = vec![0f32; n];
            silu_mul_at(isa, &g, &u, &mut out);
            let (mut dg, mut du) = (vec![0f32; n], vec![0f32; n]);
            silu_mul_bwd_at(isa, &g, &u, &gy, &mut dg, &mut du);
            let (mut rout, mut rdg, mut rdu) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
            silu_mul_at(Isa::Scalar, &g, &u, &mut rout);
            silu_mul_bwd_at(Isa::Scalar, &g, &u, &gy, &mut rdg, &mut rdu);
            for (what, got, want) in [("silu", &out, &rout), ("dg", &dg, &rdg), ("du", &du, &rdu)] {
                for i in 0..n {
                    let (a, b) = (got[i], want[i]);
                    assert!(rel(a, b, 1e-6) < 1e-5, "{isa} {what} at g={}: {a} vs {b}", g[i]);
                }
            }
        }
    }
}
