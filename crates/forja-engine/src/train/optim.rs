//! AdamW with decoupled weight decay (as `torch.optim.AdamW`), a linear
//! warm-up + cosine learning-rate schedule, and gradient-norm clipping.
//! Written here rather than taken from candle-nn because a resumable run
//! must save and restore the optimizer's moments, which candle-nn keeps
//! private.

use crate::Result;
use candle_core::{Tensor, Var};

/// AdamW hyper-parameters and state.
#[derive(Debug)]
pub struct AdamW {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Steps taken.
    pub t: u64,
    /// First moments, one per parameter (flattened).
    pub m: Vec<Vec<f32>>,
    /// Second moments.
    pub v: Vec<Vec<f32>>,
}

impl AdamW {
    /// Zero state for `vars`.
    pub fn new(
        vars: &[(String, Var)],
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    ) -> Self {
        let zeros = || vars.iter().map(|(_, v)| vec![0f32; v.elem_count()]).collect();
        AdamW { beta1, beta2, eps, weight_decay, t: 0, m: zeros(), v: zeros() }
    }

    /// One update of every parameter with `grads` (same order) at `lr`.
    pub fn step(&mut self, vars: &[(String, Var)], grads: &[Tensor], lr: f64) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let c1 = 1.0 - self.beta1.powi(self.t as i32);
        let c2 = 1.0 - self.beta2.powi(self.t as i32);
        let step = (lr / c1) as f32;
        let c2s = c2.sqrt() as f32;
        let decay = 1.0 - (lr * self.weight_decay) as f32;
        let eps = self.eps as f32;
        for (((_, var), g), (m, v)) in
            vars.iter().zip(grads).zip(self.m.iter_mut().zip(self.v.iter_mut()))
        {
            let g: Vec<f32> = g.flatten_all()?.to_vec1()?;
            let mut p: Vec<f32> = var.as_tensor().flatten_all()?.to_vec1()?;
            for i in 0..p.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                p[i] = p[i] * decay - step * m[i] / (v[i].sqrt() / c2s + eps);
            }
            var.set(&Tensor::from_vec(p, var.shape(), var.device())?)?;
        }
        Ok(())
    }
}

/// Learning rate at optimizer step `step` (0-based): linear warm-up to
/// `peak` over `warmup` steps, then cosine decay to `peak * min_ratio` at
/// `total`.
pub fn lr_at(step: usize, peak: f64, warmup: usize, total: usize, min_ratio: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / span as f64).min(1.0);
    let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    peak * (min_ratio + (1.0 - min_ratio) * cos)
}

/// The global L2 norm of `grads`, and the grads scaled so it is at most
/// `max_norm` (unchanged when `max_norm` is 0).
pub fn clip(grads: Vec<Tensor>, max_norm: f64) -> Result<(f64, Vec<Tensor>)> {
    let mut sq = 0f64;
    for g in &grads {
        sq += g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let k = max_norm / (norm + 1e-6);
        let scaled = grads.iter().map(|g| g * k).collect::<candle_core::Result<Vec<_>>>()?;
        return Ok((norm, scaled));
    }
    Ok((norm, grads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let lr = |s| lr_at(s, 1.0, 4, 14, 0.1);
        assert_eq!(lr(0), 0.25);
        assert_eq!(lr(3), 1.0);
        assert!((lr(4) - 1.0).abs() < 1e-12);
        assert!((lr(9) - 0.55).abs() < 1e-12, "{}", lr(9));
        assert!((lr(14) - 0.1).abs() < 1e-12);
        assert!((lr(100) - 0.1).abs() < 1e-12);
        assert!((1..14).all(|s| lr(s) <= lr(s - 1) || s < 4));
    }

    #[test]
    fn adamw_matches_the_reference_update() {
        // One parameter, two steps, against torch.optim.AdamW's formulas.
        let v = Var::from_vec(vec![1.0f32, -2.0], 2, &Device::Cpu).unwrap();
        let vars = vec![("p".to_string(), v.clone())];
        let mut opt = AdamW::new(&vars, 0.9, 0.999, 1e-8, 0.1);
        let g = Tensor::new(&[0.5f32, -1.0], &Device::Cpu).unwrap();
        opt.step(&vars, std::slice::from_ref(&g), 0.01).unwrap();
        opt.step(&vars, &[g], 0.01).unwrap();
        let got: Vec<f32> = v.as_tensor().to_vec1().unwrap();
        // Reference computed in f64 with the same recurrences.
        let reference = |mut p: f64, g: f64| {
            let (mut m, mut s) = (0.0, 0.0);
            for t in 1..=2 {
                p *= 1.0 - 0.01 * 0.1;
                m = 0.9 * m + 0.1 * g;
                s = 0.999 * s + 0.001 * g * g;
                let mh = m / (1.0 - 0.9f64.powi(t));
                let sh = s / (1.0 - 0.999f64.powi(t));
                p -= 0.01 * mh / (sh.sqrt() + 1e-8);
            }
            p
        };
        assert!((got[0] as f64 - reference(1.0, 0.5)).abs() < 1e-6);
        assert!((got[1] as f64 - reference(-2.0, -1.0)).abs() < 1e-6);
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let g = vec![
            Tensor::new(&[3.0f32, 0.0], &Device::Cpu).unwrap(),
            Tensor::new(&[4.0f32], &Device::Cpu).unwrap(),
        ];
        let (norm, clipped) = clip(g.clone(), 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        let (after, _) = clip(clipped, 0.0).unwrap();
        assert!((after - 1.0).abs() < 1e-5);
        let (_, same) = clip(g, 10.0).unwrap();
        assert_eq!(same[1].to_vec1::<f32>().unwrap(), vec![4.0]);
    }
}
