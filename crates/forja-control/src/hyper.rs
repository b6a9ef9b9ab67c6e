//! Hyperparameters: "auto" resolved from the dataset size, explicit values
//! checked.

use crate::{ControlError, Result};
use forja_store::{Auto, HyperRequest, Hyperparameters};

/// forja's base learning rate for LoRA (× `learning_rate_multiplier`).
pub const BASE_LR: f64 = 2e-4;

fn pick<T: Copy>(a: &Auto<T>, auto: T) -> T {
    match a {
        Auto::Auto => auto,
        Auto::Value(v) => *v,
    }
}

/// Resolves `req` for a dataset of `n` examples. Auto: batch size grows
/// with the data (1 to 8), epochs aim at ~200 example passes (1 to 10),
/// LoRA r=16 α=32 on every linear layer, a checkpoint every tenth of the
/// run.
pub fn resolve(req: &HyperRequest, n: u64, seed: u64) -> Result<Hyperparameters> {
    let batch_size = pick(
        &req.batch_size,
        match n {
            0..16 => 1,
            16..64 => 2,
            64..512 => 4,
            _ => 8,
        },
    );
    let n_epochs = pick(&req.n_epochs, (200u64.div_ceil(n.max(1))).clamp(1, 10) as u32);
    let mult = pick(&req.learning_rate_multiplier, 1.0);
    let lora_r = pick(&req.lora_r, 16);
    let lora_alpha = pick(&req.lora_alpha, 2.0 * lora_r as f64);
    let lora_targets = match &req.lora_targets {
        Auto::Auto => "all-linear".to_string(),
        Auto::Value(t) => t.clone(),
    };
    if !(1..=50).contains(&n_epochs) {
        return Err(ControlError::invalid("hyperparameters.n_epochs", "must be in 1..=50"));
    }
    if !(1..=256).contains(&batch_size) {
        return Err(ControlError::invalid("hyperparameters.batch_size", "must be in 1..=256"));
    }
    if !(mult.is_finite() && mult > 0.0 && mult <= 100.0) {
        return Err(ControlError::invalid(
            "hyperparameters.learning_rate_multiplier",
            "must be a number in (0, 100]",
        ));
    }
    if !(1..=256).contains(&lora_r) {
        return Err(ControlError::invalid("hyperparameters.lora_r", "must be in 1..=256"));
    }
    if !(lora_alpha.is_finite() && lora_alpha > 0.0) {
        return Err(ControlError::invalid("hyperparameters.lora_alpha", "must be positive"));
    }
    forja_engine::lora::parse_targets(&lora_targets)
        .map_err(|e| ControlError::invalid("hyperparameters.lora_targets", e.to_string()))?;
    let steps = (n.div_ceil(batch_size as u64) * n_epochs as u64).max(1);
    Ok(Hyperparameters {
        n_epochs,
        batch_size,
        learning_rate_multiplier: mult,
        learning_rate: BASE_LR * mult,
        lora_r,
        lora_alpha,
        lora_targets,
        save_every: (steps / 10).clamp(1, 50) as u32,
        seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_dataset_size_and_values_are_checked() {
        let auto = HyperRequest::default();
        for (n, epochs, batch) in [(5, 10, 1), (30, 7, 2), (100, 2, 4), (500, 1, 4), (5000, 1, 8)] {
            let h = resolve(&auto, n, 1).unwrap();
            assert_eq!((h.n_epochs, h.batch_size), (epochs, batch), "n={n}");
        }
        let req: HyperRequest = serde_json::from_str(
            r#"{"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": 0.5, "lora_targets": "q_proj,v_proj"}"#,
        )
        .unwrap();
        let h = resolve(&req, 100, 1).unwrap();
        assert_eq!((h.n_epochs, h.batch_size, h.learning_rate), (3, 4, 1e-4));
        for (json, param) in [
            (r#"{"n_epochs": 0}"#, "n_epochs"),
            (r#"{"learning_rate_multiplier": -1}"#, "learning_rate_multiplier"),
            (r#"{"lora_targets": "attn"}"#, "lora_targets"),
            (r#"{"lora_r": 0}"#, "lora_r"),
        ] {
            let req: HyperRequest = serde_json::from_str(json).unwrap();
            let e = resolve(&req, 10, 1).unwrap_err().to_string();
            assert!(e.contains(param), "{json}: {e}");
        }
        assert!(serde_json::from_str::<HyperRequest>(r#"{"n_epochs": "many"}"#).is_err());
    }
}
