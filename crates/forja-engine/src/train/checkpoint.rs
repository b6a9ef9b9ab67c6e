//! Checkpoints and the event log of a training run.
//!
//! A checkpoint directory `checkpoints/step-000120/` holds the trained
//! weights (a PEFT adapter, or `model.safetensors` for full training), the
//! optimizer moments (`optimizer.safetensors`) and `trainer_state.json`
//! (position in the data, best validation loss, fingerprint of the config
//! and data). It is written under a temporary name and renamed, so a kill
//! leaves either the whole checkpoint or none of it.

use super::data::Example;
use super::optim::AdamW;
use super::{Event, TrainConfig};
use crate::lora::Adapter;
use crate::{EngineError, Result};
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a run is, and what it has seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct State {
    pub fingerprint: String,
    pub step: usize,
    pub epoch: usize,
    pub batch_in_epoch: usize,
    pub tokens: usize,
    pub first_loss: Option<f64>,
    pub last_loss: f64,
    pub best_val: Option<(usize, f64)>,
    pub evals_since_best: usize,
    pub initial_val_loss: Option<f64>,
    pub adam_t: u64,
}

impl State {
    pub fn fresh(fingerprint: String) -> Self {
        State {
            fingerprint,
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            tokens: 0,
            first_loss: None,
            last_loss: f64::NAN,
            best_val: None,
            evals_since_best: 0,
            initial_val_loss: None,
            adam_t: 0,
        }
    }
}

/// What the weights are.
pub(crate) enum Kind<'a> {
    Lora(&'a Adapter),
    Full,
}

/// FNV-1a over everything that shapes the loss curve: hyper-parameters,
/// data, parameter names and shapes.
pub(crate) fn fingerprint(
    cfg: &TrainConfig,
    train: &[Example],
    val: &[Example],
    vars: &[(String, Var)],
) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let shaping = serde_json::json!([
        cfg.epochs,
        cfg.max_steps,
        cfg.batch_size,
        cfg.grad_accum,
        cfg.lr,
        cfg.min_lr_ratio,
        cfg.warmup_steps,
        cfg.weight_decay,
        cfg.beta1,
        cfg.beta2,
        cfg.max_grad_norm,
        cfg.max_len,
        cfg.seed,
    ]);
    eat(shaping.to_string().as_bytes());
    for set in [train, val] {
        eat(&(set.len() as u64).to_le_bytes());
        for e in set {
            for (&id, &t) in e.ids.iter().zip(&e.target) {
                eat(&id.to_le_bytes());
                eat(&[t as u8]);
            }
            eat(b"|");
        }
    }
    for (n, v) in vars {
        eat(n.as_bytes());
        for d in v.dims() {
            eat(&(*d as u64).to_le_bytes());
        }
    }
    format!("{h:016x}")
}

fn write_weights(dir: &Path, kind: &Kind<'_>, vars: &[(String, Var)]) -> Result<()> {
    match kind {
        Kind::Lora(a) => a.save(dir),
        Kind::Full => {
            let tensors: Vec<(String, Tensor)> =
                vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
            crate::safetensors_io::save(&tensors, &dir.join("model.safetensors"))
        }
    }
}

/// Sets `vars` from the weights saved in `dir`.
pub(crate) fn restore_weights(dir: &Path, kind: Kind<'_>, vars: &[(String, Var)]) -> Result<()> {
    let file = match kind {
        Kind::Lora(_) => dir.join("adapter_model.safetensors"),
        Kind::Full => dir.join("model.safetensors"),
    };
    let tensors = crate::safetensors_io::load(
        &file,
        vars.first().map_or(&candle_core::Device::Cpu, |v| v.1.device()),
    )?;
    let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
    for (name, var) in vars {
        let t = map.get(name).ok_or_else(|| EngineError::MissingTensor {
            path: file.clone(),
            tensor: name.clone(),
        })?;
        if t.dims() != var.dims() {
            return Err(EngineError::ShapeMismatch {
                path: file.clone(),
                tensor: name.clone(),
                expected: var.dims().to_vec(),
                got: t.dims().to_vec(),
            });
        }
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// Writes `dir` atomically (temporary sibling, then rename).
fn atomically(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| EngineError::io(parent, e))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
    write(&tmp)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| EngineError::io(dir, e))
}

/// Saves the trained weights alone (the best-so-far copy).
pub(crate) fn save_weights_atomic(
    dir: &Path,
    kind: Kind<'_>,
    vars: &[(String, Var)],
) -> Result<()> {
    atomically(dir, |tmp| write_weights(tmp, &kind, vars))
}

/// Writes a full checkpoint for `state` under `root`; returns its path.
pub(crate) fn save(
    root: &Path,
    state: &State,
    kind: Kind<'_>,
    vars: &[(String, Var)],
    opt: &AdamW,
) -> Result<PathBuf> {
    let dir = root.join(format!("step-{:06}", state.step));
    atomically(&dir, |tmp| {
        write_weights(tmp, &kind, vars)?;
        let mut moments = Vec::new();
        for ((name, var), (m, v)) in vars.iter().zip(opt.m.iter().zip(&opt.v)) {
            moments.push((
                format!("m.{name}"),
                Tensor::from_slice(m, var.shape(), &candle_core::Device::Cpu)?,
            ));
            moments.push((
                format!("v.{name}"),
                Tensor::from_slice(v, var.shape(), &candle_core::Device::Cpu)?,
            ));
        }
        crate::safetensors_io::save(&moments, &tmp.join("optimizer.safetensors"))?;
        let st = State { adam_t: opt.t, ..state.clone() };
        let p = tmp.join("trainer_state.json");
        std::fs::write(&p, serde_json::to_string_pretty(&st).expect("json"))
            .map_err(|e| EngineError::io(&p, e))
    })?;
    Ok(dir)
}

/// The newest complete checkpoint under `root`.
pub(crate) fn latest(root: &Path) -> Result<Option<PathBuf>> {
    let Ok(rd) = std::fs::read_dir(root) else { return Ok(None) };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-"))
                && p.join("trainer_state.json").is_file()
        })
        .collect();
    dirs.sort();
    Ok(dirs.pop())
}

/// Deletes all but the newest `keep` checkpoints.
pub(crate) fn prune(root: &Path, keep: usize) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(root) else { return Ok(()) };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")))
        .collect();
    dirs.sort();
    let n = dirs.len().saturating_sub(keep.max(1));
    for d in &dirs[..n] {
        std::fs::remove_dir_all(d).map_err(|e| EngineError::io(d, e))?;
    }
    Ok(())
}

/// Restores weights, optimizer moments and the run state from `dir`.
pub(crate) fn load(
    dir: &Path,
    vars: &[(String, Var)],
    opt: &mut AdamW,
    fingerprint: String,
) -> Result<State> {
    let p = dir.join("trainer_state.json");
    let text = std::fs::read_to_string(&p).map_err(|e| EngineError::io(&p, e))?;
    let state: State = serde_json::from_str(&text)
        .map_err(|e| EngineError::malformed(&p, format!("invalid trainer state: {e}")))?;
    if state.fingerprint != fingerprint {
        return Err(EngineError::Training(format!(
            "{} was made with other data or hyper-parameters; resume with the same ones, or use a new --out",
            dir.display()
        )));
    }
    let weights = if dir.join("adapter_model.safetensors").is_file() {
        dir.join("adapter_model.safetensors")
    } else {
        dir.join("model.safetensors")
    };
    let tensors: std::collections::HashMap<String, Tensor> =
        crate::safetensors_io::load(&weights, &candle_core::Device::Cpu)?.into_iter().collect();
    let moments: std::collections::HashMap<String, Tensor> =
        crate::safetensors_io::load(&dir.join("optimizer.safetensors"), &candle_core::Device::Cpu)?
            .into_iter()
            .collect();
    for (i, (name, var)) in vars.iter().enumerate() {
        let get = |map: &std::collections::HashMap<String, Tensor>, key: &str, file: &Path| {
            map.get(key).cloned().ok_or_else(|| EngineError::MissingTensor {
                path: file.to_path_buf(),
                tensor: key.to_string(),
            })
        };
        let t = get(&tensors, name, &weights)?;
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        let opt_file = dir.join("optimizer.safetensors");
        opt.m[i] = get(&moments, &format!("m.{name}"), &opt_file)?.flatten_all()?.to_vec1()?;
        opt.v[i] = get(&moments, &format!("v.{name}"), &opt_file)?.flatten_all()?.to_vec1()?;
    }
    opt.t = state.adam_t;
    Ok(state)
}

/// `events.jsonl`: one JSON object per line, flushed as written.
pub(crate) struct EventLog {
    path: PathBuf,
    file: std::fs::File,
}

impl EventLog {
    pub fn open(path: &Path, fresh: bool) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(!fresh)
            .write(true)
            .truncate(fresh)
            .open(path)
            .map_err(|e| EngineError::io(path, e))?;
        Ok(EventLog { path: path.to_path_buf(), file })
    }

    pub fn append(&mut self, e: &Event) -> Result<()> {
        let line = serde_json::to_string(e).expect("event serializes");
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .map_err(|err| EngineError::io(&self.path, err))
    }

    /// Drops events of steps after `step` (what a killed run did past its
    /// last checkpoint is redone on resume).
    pub fn truncate_after(&mut self, step: usize) -> Result<()> {
        let text =
            std::fs::read_to_string(&self.path).map_err(|e| EngineError::io(&self.path, e))?;
        let mut kept = String::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let s = v.get("step").and_then(serde_json::Value::as_u64).map(|s| s as usize);
            let keep = match v.get("event").and_then(serde_json::Value::as_str) {
                Some("step" | "eval" | "checkpoint") => s.is_some_and(|s| s <= step),
                Some("warning" | "start") => true,
                _ => false,
            };
            if keep {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        std::fs::write(&self.path, kept).map_err(|e| EngineError::io(&self.path, e))?;
        *self = EventLog::open(&self.path, false)?;
        Ok(())
    }
}
