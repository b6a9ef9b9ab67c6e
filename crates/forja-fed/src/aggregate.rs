//! Aggregating LoRA adapters of one base model into one adapter.
//!
//! Each input `k` adapts a module with `ΔW_k = s_k · B_k A_k` (`B_k` is
//! `[out, r_k]`, `A_k` is `[r_k, in]`). The federated update is the
//! weighted mean `ΔW = Σ w_k ΔW_k` (weights normalised to sum to 1, by
//! example count when a hub has them).
//!
//! - [`Method::Exact`] stacks the factors, `B = [w_1 s_1 B_1 | … ]` and
//!   `A = [A_1; …]`, so `B A = Σ w_k s_k B_k A_k` exactly, at rank
//!   `Σ r_k` (FLoRA, Wang et al. 2024). Ranks may differ between inputs.
//!   With a target rank the product is cut back by a truncated SVD done in
//!   the factors' space (QR of both stacks, SVD of the small core), and
//!   the relative Frobenius error of the cut is reported.
//! - [`Method::FedIt`] averages `A` and `B` separately (FedIT), which is
//!   *not* the mean of the products (`mean(B) mean(A) ≠ mean(B A)`); it is
//!   here to compare with. Smaller ranks are padded with zeros.
//! - [`Method::Median`] takes the coordinate-wise median of the dense
//!   updates (weights unused) and brings it back to low rank with a
//!   randomized SVD (fixed seed, two power iterations). It costs one dense
//!   `[out, in]` matrix per input per module, and resists a minority of
//!   poisoned inputs.
//!
//! Against a poisoned node, [`Options::clip`] scales every input whose
//! whole update norm `‖ΔW_k‖_F` exceeds `clip ×` the median of the inputs'
//! norms down to that bound, before any method. Norms are computed in the
//! factors' space (`‖sBA‖² = s² tr(BᵀB · AAᵀ)`), never densely.
//!
//! The output adapter carries every scale in `B` (`lora_alpha = r`, so
//! PEFT's scale is 1) and has one rank for all modules; a module missing
//! from an input counts as a zero update from it.

use crate::{FedError, Result};
use candle_core::{Device, Tensor};
use forja_engine::lora::{Adapter, LoraConfig, LoraPair, Module};
use nalgebra::DMatrix;
use serde::Serialize;

/// How to combine the inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Stacked factors: the exact weighted mean of the products.
    Exact,
    /// The separate means of `A` and `B` (FedIT), for comparison.
    #[serde(rename = "fedit")]
    FedIt,
    /// The coordinate-wise median of the dense updates, at low rank.
    Median,
}

impl Method {
    /// The name the CLI takes and reports print (`exact`, `fedit`, `median`).
    pub fn name(self) -> &'static str {
        match self {
            Method::Exact => "exact",
            Method::FedIt => "fedit",
            Method::Median => "median",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "exact" => Ok(Method::Exact),
            "fedit" => Ok(Method::FedIt),
            "median" => Ok(Method::Median),
            _ => Err(format!("unknown method `{s}`; use exact, fedit or median")),
        }
    }
}

/// What to aggregate how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The rule.
    pub method: Method,
    /// Rank of the result (`None`: `Σ r_k` for exact, the largest `r_k`
    /// otherwise).
    pub rank: Option<usize>,
    /// One weight per input (`None`: equal); normalised to sum to 1.
    pub weights: Option<Vec<f64>>,
    /// Clip each input's update norm to this multiple of the median norm.
    pub clip: Option<f64>,
}

/// What an aggregation did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The rule.
    pub method: Method,
    /// Adapters combined.
    pub inputs: usize,
    /// Normalised weights.
    pub weights: Vec<f64>,
    /// Each input's update norm `‖ΔW_k‖_F` over all modules, before clipping.
    pub norms: Vec<f64>,
    /// Inputs scaled down by clipping, with their factor.
    pub clipped: Vec<(usize, f64)>,
    /// Rank of the result.
    pub rank: usize,
    /// Modules (layer × projection) in the result.
    pub modules: usize,
    /// Largest relative Frobenius error of a rank cut over the modules
    /// (`None`: nothing was cut).
    pub truncation_error: Option<f64>,
    /// Mean of those errors.
    pub mean_truncation_error: Option<f64>,
}

/// A module's factors as `f64` matrices: `A [r, in]` and `s·B [out, r]`.
struct Factors {
    a: DMatrix<f64>,
    sb: DMatrix<f64>,
}

/// One module (layer × projection) of the result, with each input's
/// factors (`None`: that input does not adapt it) and its `[out, in]`.
struct ModuleInputs {
    layer: usize,
    module: Module,
    inputs: Vec<Option<Factors>>,
    dims: (usize, usize),
}

fn to_mat(t: &Tensor) -> Result<DMatrix<f64>> {
    let (r, c) = t.dims2()?;
    let v = t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(DMatrix::from_fn(r, c, |i, j| v[i * c + j] as f64))
}

fn to_tensor(m: &DMatrix<f64>) -> Result<Tensor> {
    let (r, c) = m.shape();
    let mut v = Vec::with_capacity(r * c);
    for i in 0..r {
        for j in 0..c {
            v.push(m[(i, j)] as f32);
        }
    }
    Ok(Tensor::from_vec(v, (r, c), &Device::Cpu)?)
}

/// `‖s B A‖_F²` without forming the product.
fn norm2(f: &Factors) -> f64 {
    let btb = f.sb.transpose() * &f.sb;
    let aat = &f.a * f.a.transpose();
    btb.component_mul(&aat).sum()
}

/// An adapter's whole update norm `‖ΔW‖_F` over all its modules (computed
/// in the factors' space); `Err` when a factor holds NaN or infinity.
/// What a hub bounds before it accepts a delta.
pub fn update_norm(adapter: &Adapter) -> Result<f64> {
    let mut total = 0.0;
    for layer in 0..adapter.num_layers() {
        for m in Module::ALL {
            let Some(p) = adapter.pair(layer, m) else { continue };
            let f = Factors { a: to_mat(&p.a)?, sb: to_mat(&p.b)? * p.scale };
            if f.a.iter().chain(f.sb.iter()).any(|x| !x.is_finite()) {
                return Err(invalid(format!("{} holds NaN or infinite values", m.path(layer))));
            }
            total += norm2(&f);
        }
    }
    Ok(total.sqrt())
}

fn invalid(why: String) -> FedError {
    FedError::Invalid(why)
}

/// Combines `adapters` (of one base model) into one adapter.
pub fn aggregate(adapters: &[&Adapter], opts: &Options) -> Result<(Adapter, Report)> {
    let n = adapters.len();
    if n == 0 {
        return Err(invalid("no adapters to aggregate".into()));
    }
    let weights = normalised_weights(opts.weights.as_deref(), n)?;
    if opts.rank == Some(0) {
        return Err(invalid("--rank must be at least 1".into()));
    }
    if let Some(c) = opts.clip {
        if !(c.is_finite() && c > 0.0) {
            return Err(invalid(format!("--clip must be a positive number, not {c}")));
        }
    }
    let layers = adapters[0].num_layers();
    // Every module any input adapts, with each input's factors.
    let mut modules: Vec<ModuleInputs> = Vec::new();
    for layer in 0..layers {
        for m in Module::ALL {
            let mut dims = None;
            let mut row = Vec::with_capacity(n);
            for (k, ad) in adapters.iter().enumerate() {
                if ad.num_layers() != layers {
                    return Err(invalid(format!(
                        "adapter {k} has {} layers, adapter 0 has {layers}: they are for different base models",
                        ad.num_layers()
                    )));
                }
                let Some(p) = ad.pair(layer, m) else {
                    row.push(None);
                    continue;
                };
                let f = Factors { a: to_mat(&p.a)?, sb: to_mat(&p.b)? * p.scale };
                if f.a.iter().chain(f.sb.iter()).any(|x| !x.is_finite()) {
                    return Err(invalid(format!(
                        "adapter {k}: {} holds NaN or infinite values",
                        m.path(layer)
                    )));
                }
                let d = (f.sb.nrows(), f.a.ncols());
                match dims {
                    None => dims = Some(d),
                    Some(want) if want != d => {
                        return Err(invalid(format!(
                            "adapter {k}: {} is [{}, {}], another input's is [{}, {}]: they are for different base models",
                            m.path(layer),
                            d.0,
                            d.1,
                            want.0,
                            want.1
                        )))
                    }
                    Some(_) => {}
                }
                row.push(Some(f));
            }
            if let Some(dims) = dims {
                modules.push(ModuleInputs { layer, module: m, inputs: row, dims });
            }
        }
    }
    if modules.is_empty() {
        return Err(invalid("the adapters hold no LoRA pairs".into()));
    }
    // Update norms over all modules, and clipping factors.
    let norms: Vec<f64> = (0..n)
        .map(|k| {
            modules.iter().filter_map(|mi| mi.inputs[k].as_ref()).map(norm2).sum::<f64>().sqrt()
        })
        .collect();
    let mut factor = vec![1.0; n];
    let mut clipped = Vec::new();
    if let Some(c) = opts.clip {
        let mut sorted = norms.clone();
        sorted.sort_by(f64::total_cmp);
        let bound = c * sorted[sorted.len() / 2];
        for k in 0..n {
            if norms[k] > bound && norms[k] > 0.0 {
                factor[k] = bound / norms[k];
                clipped.push((k, factor[k]));
            }
        }
    }
    let ranks: Vec<usize> = adapters.iter().map(|a| a.config().r).collect();
    let max_r = *ranks.iter().max().expect("non-empty");
    let rank = opts.rank.unwrap_or(match opts.method {
        Method::Exact => ranks.iter().sum(),
        Method::FedIt | Method::Median => max_r,
    });
    let mut errors = Vec::new();
    let mut pairs: Vec<[Option<LoraPair>; 7]> = (0..layers).map(|_| Default::default()).collect();
    let count = modules.len();
    for ModuleInputs { layer, module: m, inputs: row, dims: (out, inp) } in modules {
        let scaled = |k: usize| weights[k] * factor[k];
        let (b, a, err) = match opts.method {
            Method::Exact => {
                // A module an input does not adapt adds nothing to the stack.
                let total: usize = row.iter().flatten().map(|f| f.a.nrows()).sum();
                let mut sb = DMatrix::zeros(out, total);
                let mut a = DMatrix::zeros(total, inp);
                let mut at = 0;
                for (k, f) in row.iter().enumerate() {
                    if let Some(f) = f {
                        let r = f.a.nrows();
                        sb.columns_mut(at, r).copy_from(&(&f.sb * scaled(k)));
                        a.rows_mut(at, r).copy_from(&f.a);
                        at += r;
                    }
                }
                fit_rank(sb, a, rank)
            }
            Method::FedIt => {
                let widest = row.iter().flatten().map(|f| f.a.nrows()).max().unwrap_or(0);
                let mut sb = DMatrix::zeros(out, widest);
                let mut a = DMatrix::zeros(widest, inp);
                for (k, f) in row.iter().enumerate() {
                    if let Some(f) = f {
                        let r = f.a.nrows();
                        let mut cols = sb.columns_mut(0, r);
                        cols += &f.sb * scaled(k);
                        let mut rows = a.rows_mut(0, r);
                        rows += &f.a * weights[k];
                    }
                }
                fit_rank(sb, a, rank)
            }
            Method::Median => {
                let dense: Vec<DMatrix<f64>> = row
                    .iter()
                    .enumerate()
                    .map(|(k, f)| match f {
                        Some(f) => &f.sb * &f.a * factor[k],
                        None => DMatrix::zeros(out, inp),
                    })
                    .collect();
                let med = median(&dense);
                low_rank(&med, rank, (layer * 7 + m as usize) as u64)
            }
        };
        if let Some(e) = err {
            errors.push(e);
        }
        pairs[layer][Module::ALL.iter().position(|x| *x == m).expect("a module")] =
            Some(LoraPair { a: to_tensor(&a)?, b: to_tensor(&b)?, scale: 1.0 });
    }
    let config = LoraConfig {
        r: rank,
        alpha: rank as f64,
        dropout: 0.0,
        targets: Vec::new(),
        rslora: false,
    };
    let adapter = Adapter::from_pairs(config, adapters[0].base_model(), pairs)?;
    let report = Report {
        method: opts.method,
        inputs: n,
        weights,
        norms,
        clipped,
        rank,
        modules: count,
        truncation_error: errors.iter().copied().reduce(f64::max),
        mean_truncation_error: (!errors.is_empty())
            .then(|| errors.iter().sum::<f64>() / errors.len() as f64),
    };
    Ok((adapter, report))
}

fn normalised_weights(given: Option<&[f64]>, n: usize) -> Result<Vec<f64>> {
    let w = match given {
        None => vec![1.0; n],
        Some(w) if w.len() != n => {
            return Err(invalid(format!("{} weights for {n} adapters", w.len())))
        }
        Some(w) => w.to_vec(),
    };
    if w.iter().any(|x| !x.is_finite() || *x < 0.0) {
        return Err(invalid("weights must be finite and not negative".into()));
    }
    let sum: f64 = w.iter().sum();
    if sum <= 0.0 {
        return Err(invalid("the weights sum to 0".into()));
    }
    Ok(w.into_iter().map(|x| x / sum).collect())
}

/// `B A` at exactly `rank`: cut by a truncated SVD in the factors' space
/// when its rank is higher (with the relative error of the cut), padded
/// with zeros when lower.
fn fit_rank(
    b: DMatrix<f64>,
    a: DMatrix<f64>,
    rank: usize,
) -> (DMatrix<f64>, DMatrix<f64>, Option<f64>) {
    let r = b.ncols();
    if rank >= r {
        let mut bp = DMatrix::zeros(b.nrows(), rank);
        bp.columns_mut(0, r).copy_from(&b);
        let mut ap = DMatrix::zeros(rank, a.ncols());
        ap.rows_mut(0, r).copy_from(&a);
        return (bp, ap, None);
    }
    // B = Qb Rb, Aᵀ = Qa Ra, so B A = Qb (Rb Raᵀ) Qaᵀ; the SVD of the small
    // core gives the SVD of the product.
    let (qb, rb) = b.qr().unpack();
    let (qa, ra) = a.transpose().qr().unpack();
    let core = rb * ra.transpose();
    let svd = core.svd(true, true);
    let (u, v_t) = (svd.u.expect("u"), svd.v_t.expect("v_t"));
    let s = &svd.singular_values;
    let mut order: Vec<usize> = (0..s.len()).collect();
    order.sort_by(|&i, &j| s[j].total_cmp(&s[i]));
    let total: f64 = s.iter().map(|x| x * x).sum();
    let kept: f64 = order.iter().take(rank).map(|&i| s[i] * s[i]).sum();
    let err = if total > 0.0 { ((total - kept).max(0.0) / total).sqrt() } else { 0.0 };
    let mut bo = DMatrix::zeros(qb.nrows(), rank);
    let mut ao = DMatrix::zeros(rank, qa.nrows());
    let (left, right) = (&qb * &u, &qa * v_t.transpose());
    for (c, &i) in order.iter().take(rank).enumerate() {
        let root = s[i].sqrt();
        bo.set_column(c, &(left.column(i) * root));
        ao.set_row(c, &(right.column(i).transpose() * root));
    }
    (bo, ao, Some(err))
}

/// Coordinate-wise median of equally shaped matrices.
fn median(ms: &[DMatrix<f64>]) -> DMatrix<f64> {
    let (r, c) = ms[0].shape();
    let mut buf = vec![0.0; ms.len()];
    DMatrix::from_fn(r, c, |i, j| {
        for (b, m) in buf.iter_mut().zip(ms) {
            *b = m[(i, j)];
        }
        buf.sort_by(f64::total_cmp);
        let h = buf.len() / 2;
        if buf.len() % 2 == 1 {
            buf[h]
        } else {
            (buf[h - 1] + buf[h]) / 2.0
        }
    })
}

/// A rank-`rank` factorisation `B A` of dense `m` by a randomized SVD
/// (Rademacher test matrix from `seed`, two power iterations), with the
/// relative Frobenius error of the approximation.
fn low_rank(m: &DMatrix<f64>, rank: usize, seed: u64) -> (DMatrix<f64>, DMatrix<f64>, Option<f64>) {
    let (out, inp) = m.shape();
    let p = (rank + 8).min(out.min(inp));
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let omega = DMatrix::from_fn(inp, p, |_, _| {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        if (z ^ (z >> 31)) & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    });
    let mut q = (m * omega).qr().q();
    for _ in 0..2 {
        let z = (m.transpose() * &q).qr().q();
        q = (m * z).qr().q();
    }
    let small = q.transpose() * m;
    let (b, a, _) = fit_rank(q, small, rank);
    let total = m.norm_squared();
    let err = if total > 0.0 { (m - &b * &a).norm() / total.sqrt() } else { 0.0 };
    (b, a, Some(err))
}
