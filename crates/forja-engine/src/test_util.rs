//! Helpers shared by the engine's unit tests.

use candle_core::{Device, Tensor};

/// A deterministic pseudo-random f32 tensor with values in [-1, 1).
pub(crate) fn rand(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> =
        (0..n).map(|i| ((i as u64 * 2654435761 + seed * 97) % 1009) as f32 / 504.5 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The largest absolute element-wise difference.
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}
