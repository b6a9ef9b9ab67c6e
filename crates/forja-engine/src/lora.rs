//! LoRA adapters in the Hugging Face PEFT format.
//!
//! An [`Adapter`] is a set of low-rank pairs `(A [r, in], B [out, r])`, one
//! per adapted linear module, applied as `y = W x + scale · B (A x)` on top
//! of a frozen base. Adapters live beside the model, not inside it: a
//! forward pass takes the adapter to use, so one loaded base serves several
//! adapters at once (per request in serving). On disk an adapter is PEFT's
//! `adapter_config.json` + `adapter_model.safetensors`, tensor names and
//! shapes exactly as PEFT writes them
//! (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`), so
//! adapters move freely between forja and `peft`.

use crate::models::llama::Llama;
use crate::{EngineError, Result};
use candle_core::{DType, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

/// A linear module of a decoder layer that LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    /// `self_attn.q_proj`
    QProj,
    /// `self_attn.k_proj`
    KProj,
    /// `self_attn.v_proj`
    VProj,
    /// `self_attn.o_proj`
    OProj,
    /// `mlp.gate_proj`
    GateProj,
    /// `mlp.up_proj`
    UpProj,
    /// `mlp.down_proj`
    DownProj,
}

impl Module {
    /// Every module, in layer order.
    pub const ALL: [Module; 7] = [
        Module::QProj,
        Module::KProj,
        Module::VProj,
        Module::OProj,
        Module::GateProj,
        Module::UpProj,
        Module::DownProj,
    ];

    /// The Hugging Face / PEFT module name (`q_proj`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Module::QProj => "q_proj",
            Module::KProj => "k_proj",
            Module::VProj => "v_proj",
            Module::OProj => "o_proj",
            Module::GateProj => "gate_proj",
            Module::UpProj => "up_proj",
            Module::DownProj => "down_proj",
        }
    }

    /// The module's path in layer `layer` (`model.layers.3.mlp.up_proj`).
    pub fn path(self, layer: usize) -> String {
        let block = match self {
            Module::QProj | Module::KProj | Module::VProj | Module::OProj => "self_attn",
            _ => "mlp",
        };
        format!("model.layers.{layer}.{block}.{}", self.name())
    }

    /// Parses a module name.
    pub fn from_name(name: &str) -> Option<Module> {
        Module::ALL.into_iter().find(|m| m.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Parses `all-linear` or a comma-separated list of module names.
pub fn parse_targets(spec: &str) -> Result<Vec<Module>> {
    let spec = spec.trim();
    if spec == "all-linear" || spec == "all" {
        return Ok(Module::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let m = Module::from_name(name).ok_or_else(|| {
            EngineError::Params(forja_core::CoreError::InvalidParam {
                name: "target_modules",
                reason: format!(
                    "unknown module `{name}` (use all-linear or some of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
                ),
            })
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err(EngineError::Params(forja_core::CoreError::InvalidParam {
            name: "target_modules",
            reason: "no module given".into(),
        }));
    }
    out.sort();
    Ok(out)
}

/// Hyper-parameters of a LoRA adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank.
    pub r: usize,
    /// Scaling numerator: `scale = alpha / r` (or `alpha / sqrt(r)` with rsLoRA).
    pub alpha: f64,
    /// Dropout on the adapter's input during training.
    pub dropout: f64,
    /// Adapted modules.
    pub targets: Vec<Module>,
    /// rsLoRA scaling.
    pub rslora: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: Module::ALL.to_vec(),
            rslora: false,
        }
    }
}

impl LoraConfig {
    /// The scale applied to `B (A x)` for rank `r` and `alpha`.
    pub fn scale_for(&self, r: usize, alpha: f64) -> f64 {
        if self.rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        }
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| {
            Err(EngineError::Params(forja_core::CoreError::InvalidParam {
                name,
                reason: reason.into(),
            }))
        };
        if self.r == 0 {
            return bad("lora_r", "must be at least 1");
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad("lora_alpha", "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("lora_dropout", "must be in [0, 1)");
        }
        if self.targets.is_empty() {
            return bad("target_modules", "no module given");
        }
        Ok(())
    }
}

/// One adapted module: `scale · B (A x)`.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// `[r, in]`
    pub a: Tensor,
    /// `[out, r]`
    pub b: Tensor,
    /// Multiplier of `B A`.
    pub scale: f64,
}

/// Dropout on adapter inputs during training, from a seeded generator.
#[derive(Debug)]
pub struct Dropout {
    p: f64,
    rng: RefCell<ChaCha8Rng>,
}

impl Dropout {
    /// Drops each input with probability `p`, masks drawn from `seed`.
    pub fn new(p: f64, seed: u64) -> Self {
        Dropout { p, rng: RefCell::new(ChaCha8Rng::seed_from_u64(seed)) }
    }

    /// The next mask for `n` inputs (values `0` or `1 / keep`), `None`
    /// when nothing is dropped.
    pub(crate) fn mask(&self, n: usize) -> Option<Vec<f32>> {
        if self.p == 0.0 {
            return None;
        }
        let keep = 1.0 - self.p;
        let mut rng = self.rng.borrow_mut();
        Some(
            (0..n)
                .map(|_| if rng.random::<f64>() < keep { (1.0 / keep) as f32 } else { 0.0 })
                .collect(),
        )
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let Some(mask) = self.mask(x.elem_count()) else { return Ok(x.clone()) };
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok((x * mask)?)
    }
}

/// A LoRA adapter for one base model.
#[derive(Debug)]
pub struct Adapter {
    config: LoraConfig,
    base_model: String,
    /// Per layer, per [`Module`].
    pairs: Vec<[Option<LoraPair>; 7]>,
    /// Trainable parameters under their PEFT tensor names.
    vars: Vec<(String, Var)>,
}

fn peft_name(layer: usize, m: Module, ab: &str) -> String {
    format!("base_model.model.{}.lora_{ab}.weight", m.path(layer))
}

impl Adapter {
    /// A fresh trainable adapter for `model`, initialised like PEFT: `A`
    /// uniform in ±1/sqrt(in) (Kaiming-uniform with a = sqrt 5), `B` zero, so
    /// the adapted model starts equal to the base.
    pub fn new(model: &Llama, config: &LoraConfig, base_model: &str, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dev = model.device();
        let scale = config.scale_for(config.r, config.alpha);
        let mut pairs = Vec::new();
        let mut vars = Vec::new();
        for layer in 0..model.config().num_hidden_layers {
            let mut row: [Option<LoraPair>; 7] = Default::default();
            for &m in &config.targets {
                let lin = model.linear(layer, m);
                let (inp, out) = (lin.in_dim(), lin.out_dim());
                let bound = 1.0 / (inp as f64).sqrt();
                let a: Vec<f32> =
                    (0..config.r * inp).map(|_| rng.random_range(-bound..bound) as f32).collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (config.r, inp), dev)?)?;
                let b = Var::zeros((out, config.r), DType::F32, dev)?;
                row[m.index()] =
                    Some(LoraPair { a: a.as_tensor().clone(), b: b.as_tensor().clone(), scale });
                vars.push((peft_name(layer, m, "A"), a));
                vars.push((peft_name(layer, m, "B"), b));
            }
            pairs.push(row);
        }
        Ok(Adapter { config: config.clone(), base_model: base_model.to_string(), pairs, vars })
    }

    /// A frozen adapter from its pairs (`pairs[layer][module]`, indexed as
    /// [`Module::ALL`]); every pair must have rank `config.r` and the scale
    /// `config` gives it (what [`Adapter::save`] writes). Aggregation and
    /// merging tools build adapters this way.
    pub fn from_pairs(
        config: LoraConfig,
        base_model: &str,
        pairs: Vec<[Option<LoraPair>; 7]>,
    ) -> Result<Self> {
        let scale = config.scale_for(config.r, config.alpha);
        let bad = |why: String| {
            EngineError::Params(forja_core::CoreError::InvalidParam { name: "lora", reason: why })
        };
        let mut targets = Vec::new();
        for (layer, row) in pairs.iter().enumerate() {
            for m in Module::ALL {
                let Some(p) = &row[m.index()] else { continue };
                let (ar, _) = p.a.dims2()?;
                let (_, br) = p.b.dims2()?;
                if ar != config.r || br != config.r {
                    return Err(bad(format!(
                        "{}: rank {ar}/{br}, the config says {}",
                        m.path(layer),
                        config.r
                    )));
                }
                if (p.scale - scale).abs() > 1e-9 * scale.abs().max(1.0) {
                    return Err(bad(format!(
                        "{}: scale {}, the config gives {scale}",
                        m.path(layer),
                        p.scale
                    )));
                }
                if !targets.contains(&m) {
                    targets.push(m);
                }
            }
        }
        if targets.is_empty() {
            return Err(bad("no LoRA pairs".into()));
        }
        targets.sort();
        let config = LoraConfig { targets, ..config };
        Ok(Adapter { config, base_model: base_model.to_string(), pairs, vars: Vec::new() })
    }

    /// Decoder layers the adapter has rows for (the base model's).
    pub fn num_layers(&self) -> usize {
        self.pairs.len()
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// What `base_model_name_or_path` says.
    pub fn base_model(&self) -> &str {
        &self.base_model
    }

    /// Trainable parameters with their PEFT names (empty for a loaded adapter
    /// until [`Adapter::make_trainable`]).
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Number of adapter parameters.
    pub fn num_params(&self) -> usize {
        self.pairs.iter().flatten().flatten().map(|p| p.a.elem_count() + p.b.elem_count()).sum()
    }

    /// The pair adapting `module` of `layer`, if any.
    pub fn pair(&self, layer: usize, module: Module) -> Option<&LoraPair> {
        self.pairs.get(layer)?[module.index()].as_ref()
    }

    /// `scale · B (A dropout(x))` for the adapted module, `None` if it is not
    /// adapted. `x` is `[m, in]`.
    pub(crate) fn delta(
        &self,
        layer: usize,
        module: Module,
        x: &Tensor,
        dropout: Option<&Dropout>,
    ) -> Result<Option<Tensor>> {
        let Some(p) = self.pair(layer, module) else { return Ok(None) };
        let x = match dropout {
            Some(d) => d.apply(x)?,
            None => x.clone(),
        };
        let h = x.matmul(&p.a.t()?)?;
        Ok(Some((h.matmul(&p.b.t()?)? * p.scale)?))
    }

    /// A copy sharing the weights but outside any gradient graph (evaluation
    /// and generation with an adapter being trained use it).
    pub fn frozen(&self) -> Result<Adapter> {
        let pairs = self
            .pairs
            .iter()
            .map(|row| {
                row.clone().map(|p| {
                    p.map(|p| LoraPair { a: p.a.detach(), b: p.b.detach(), scale: p.scale })
                })
            })
            .collect();
        Ok(Adapter {
            config: self.config.clone(),
            base_model: self.base_model.clone(),
            pairs,
            vars: Vec::new(),
        })
    }

    /// Turns a loaded adapter into a trainable one (continued training).
    pub fn make_trainable(&mut self) -> Result<()> {
        self.vars.clear();
        for (layer, row) in self.pairs.iter_mut().enumerate() {
            for m in Module::ALL {
                if let Some(p) = &mut row[m.index()] {
                    let a = Var::from_tensor(&p.a)?;
                    let b = Var::from_tensor(&p.b)?;
                    p.a = a.as_tensor().clone();
                    p.b = b.as_tensor().clone();
                    self.vars.push((peft_name(layer, m, "A"), a));
                    self.vars.push((peft_name(layer, m, "B"), b));
                }
            }
        }
        Ok(())
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` (PEFT
    /// format) into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        let cfg = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": self.config.r,
            "lora_alpha": self.config.alpha,
            "lora_dropout": self.config.dropout,
            "target_modules": self.config.targets.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "bias": "none",
            "use_rslora": self.config.rslora,
            "use_dora": false,
            "fan_in_fan_out": false,
            "init_lora_weights": true,
            "inference_mode": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "base_model_name_or_path": self.base_model,
            "revision": null,
        });
        let cfg_path = dir.join("adapter_config.json");
        let text = serde_json::to_string_pretty(&cfg).expect("json");
        std::fs::write(&cfg_path, text).map_err(|e| EngineError::io(&cfg_path, e))?;
        let mut tensors = Vec::new();
        for (layer, row) in self.pairs.iter().enumerate() {
            for m in Module::ALL {
                if let Some(p) = &row[m.index()] {
                    tensors.push((peft_name(layer, m, "A"), p.a.to_dtype(DType::F32)?));
                    tensors.push((peft_name(layer, m, "B"), p.b.to_dtype(DType::F32)?));
                }
            }
        }
        crate::safetensors_io::save(&tensors, &dir.join("adapter_model.safetensors"))
    }

    /// Loads a PEFT LoRA adapter from `dir` for `model`, checking every
    /// tensor's name and shape against the base.
    pub fn load(dir: &Path, model: &Llama) -> Result<Self> {
        let cfg_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                EngineError::malformed(dir, "no adapter_config.json: not a PEFT adapter directory")
            }
            _ => EngineError::io(&cfg_path, e),
        })?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| EngineError::malformed(&cfg_path, format!("invalid JSON: {e}")))?;
        let field = |k: &str, why: &str| EngineError::field(&cfg_path, k, why);
        match raw.get("peft_type").and_then(Value::as_str) {
            Some("LORA") => {}
            Some(other) => {
                return Err(field("peft_type", &format!("is `{other}`; forja loads LORA adapters")))
            }
            None => return Err(field("peft_type", "is missing")),
        }
        if let Some(b) = raw.get("bias").and_then(Value::as_str) {
            if b != "none" {
                return Err(field("bias", &format!("is `{b}`; forja supports bias \"none\"")));
            }
        }
        if raw.get("use_dora").and_then(Value::as_bool) == Some(true) {
            return Err(field("use_dora", "is true; DoRA adapters are not supported"));
        }
        if raw.get("fan_in_fan_out").and_then(Value::as_bool) == Some(true) {
            return Err(field(
                "fan_in_fan_out",
                "is true; forja expects Linear (not Conv1D) layouts",
            ));
        }
        let r =
            raw.get("r").and_then(Value::as_u64).ok_or_else(|| field("r", "is missing"))? as usize;
        let alpha = raw.get("lora_alpha").and_then(Value::as_f64).unwrap_or(r as f64);
        let dropout = raw.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0);
        let rslora = raw.get("use_rslora").and_then(Value::as_bool).unwrap_or(false);
        let pattern = |k: &str| -> HashMap<String, f64> {
            raw.get(k)
                .and_then(Value::as_object)
                .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect())
                .unwrap_or_default()
        };
        let (rank_pattern, alpha_pattern) = (pattern("rank_pattern"), pattern("alpha_pattern"));
        let weights = dir.join("adapter_model.safetensors");
        if !weights.is_file() {
            let hint = if dir.join("adapter_model.bin").is_file() {
                "; adapter_model.bin (pickle) is not supported: save with safe_serialization=True"
            } else {
                ""
            };
            return Err(EngineError::malformed(
                dir,
                format!("adapter_model.safetensors is missing{hint}"),
            ));
        }
        let tensors = crate::safetensors_io::load(&weights, model.device())?;
        let layers = model.config().num_hidden_layers;
        let mut pairs: Vec<[Option<LoraPair>; 7]> =
            (0..layers).map(|_| Default::default()).collect();
        let mut halves: HashMap<(usize, Module), (Option<Tensor>, Option<Tensor>)> = HashMap::new();
        for (name, t) in tensors {
            let bad =
                |why: String| EngineError::malformed(&weights, format!("tensor `{name}` {why}"));
            let Some((layer, m, ab)) = parse_peft_name(&name) else {
                return Err(bad(
                    "is not a LoRA weight of a decoder layer's q/k/v/o/gate/up/down projection"
                        .into(),
                ));
            };
            if layer >= layers {
                return Err(bad(format!(
                    "targets layer {layer}, but the base model has {layers} layers"
                )));
            }
            let slot = halves.entry((layer, m)).or_default();
            if ab == 'A' {
                slot.0 = Some(t.to_dtype(DType::F32)?);
            } else {
                slot.1 = Some(t.to_dtype(DType::F32)?);
            }
        }
        let mut targets: Vec<Module> = Vec::new();
        for ((layer, m), (a, b)) in halves {
            let path = m.path(layer);
            let (Some(a), Some(b)) = (a, b) else {
                return Err(EngineError::malformed(
                    &weights,
                    format!("`{path}` has only one of lora_A / lora_B"),
                ));
            };
            let lin = model.linear(layer, m);
            let (ar, ain) = a.dims2()?;
            let (bout, br) = b.dims2()?;
            let shape_err =
                |which: &str, got: Vec<usize>, want: Vec<usize>| EngineError::ShapeMismatch {
                    path: weights.clone(),
                    tensor: format!("base_model.model.{path}.lora_{which}.weight"),
                    expected: want,
                    got,
                };
            if ain != lin.in_dim() {
                return Err(shape_err("A", vec![ar, ain], vec![ar, lin.in_dim()]));
            }
            if bout != lin.out_dim() || br != ar {
                return Err(shape_err("B", vec![bout, br], vec![lin.out_dim(), ar]));
            }
            let key = |pat: &HashMap<String, f64>| {
                pat.iter()
                    .find(|(k, _)| path.ends_with(k.as_str()) || k.as_str() == m.name())
                    .map(|(_, v)| *v)
            };
            let rank = key(&rank_pattern).map(|v| v as usize).unwrap_or(r);
            if rank != ar {
                return Err(shape_err("A", vec![ar, ain], vec![rank, ain]));
            }
            let alpha_m = key(&alpha_pattern).unwrap_or(alpha);
            let config = LoraConfig { r, alpha, dropout, targets: vec![], rslora };
            let scale = config.scale_for(rank, alpha_m);
            pairs[layer][m.index()] = Some(LoraPair { a, b, scale });
            if !targets.contains(&m) {
                targets.push(m);
            }
        }
        if targets.is_empty() {
            return Err(EngineError::malformed(&weights, "holds no LoRA tensors"));
        }
        targets.sort();
        let base_model =
            raw.get("base_model_name_or_path").and_then(Value::as_str).unwrap_or("").to_string();
        let config = LoraConfig { r, alpha, dropout, targets, rslora };
        Ok(Adapter { config, base_model, pairs, vars: Vec::new() })
    }
}

/// `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight` →
/// (3, QProj, 'A'). Also accepts PEFT's in-memory form with an adapter name
/// (`lora_A.default.weight`).
fn parse_peft_name(name: &str) -> Option<(usize, Module, char)> {
    let rest = name.strip_prefix("base_model.model.")?.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (block, rest) = rest.split_once('.')?;
    let (module, rest) = rest.split_once('.')?;
    let m = Module::from_name(module)?;
    let want_block = if matches!(m, Module::QProj | Module::KProj | Module::VProj | Module::OProj) {
        "self_attn"
    } else {
        "mlp"
    };
    if block != want_block {
        return None;
    }
    let ab = match rest.split('.').next()? {
        "lora_A" => 'A',
        "lora_B" => 'B',
        _ => return None,
    };
    if !rest.ends_with("weight") {
        return None;
    }
    Some((layer, m, ab))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_names_parse() {
        let check = |n: &str, want: Option<(usize, Module, char)>| {
            assert_eq!(parse_peft_name(n), want, "{n}")
        };
        check(
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            Some((0, Module::QProj, 'A')),
        );
        check(
            "base_model.model.model.layers.12.mlp.down_proj.lora_B.weight",
            Some((12, Module::DownProj, 'B')),
        );
        check(
            "base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight",
            Some((1, Module::VProj, 'B')),
        );
        check("base_model.model.model.layers.1.mlp.q_proj.lora_A.weight", None);
        check("base_model.model.lm_head.lora_A.weight", None);
        check("base_model.model.model.layers.1.self_attn.q_proj.lora_embedding_A", None);
        for layer in [0, 7] {
            for m in Module::ALL {
                assert_eq!(parse_peft_name(&peft_name(layer, m, "B")), Some((layer, m, 'B')));
            }
        }
    }

    #[test]
    fn targets_parse() {
        assert_eq!(parse_targets("all-linear").unwrap(), Module::ALL.to_vec());
        assert_eq!(parse_targets("v_proj, q_proj").unwrap(), vec![Module::QProj, Module::VProj]);
        let e = parse_targets("q_proj,lm_head").unwrap_err().to_string();
        assert!(e.contains("unknown module `lm_head`"), "{e}");
    }

    #[test]
    fn scales() {
        let c = LoraConfig { r: 16, alpha: 32.0, ..Default::default() };
        assert_eq!(c.scale_for(16, 32.0), 2.0);
        let c = LoraConfig { rslora: true, ..c };
        assert_eq!(c.scale_for(16, 32.0), 8.0);
    }
}
