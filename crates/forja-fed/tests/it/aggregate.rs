//! Aggregation checked against dense arithmetic on a tiny model's shapes:
//! exact stacking equals the weighted mean of the products (heterogeneous
//! ranks and modules) and FedIT does not; a rank cut reports its true
//! error; a poisoned input is clipped or outvoted by the median; the
//! result is a PEFT directory that loads back; bad inputs are refused.

use candle_core::{Device, Tensor};
use forja_engine::fixtures::{self, Spec};
use forja_engine::lora::{Adapter, LoraPair, Module};
use forja_engine::{Engine, LoadOptions};
use forja_fed::{aggregate, Method, Options};

fn tiny() -> (tempfile::TempDir, Engine) {
    let tmp = tempfile::tempdir().unwrap();
    let spec = Spec::llama();
    fixtures::write_hf(tmp.path(), &spec, &fixtures::weights(&spec, 1));
    let e = Engine::load(
        tmp.path(),
        &LoadOptions { threads: Some(1), ..Default::default() },
        &mut |_| {},
    )
    .unwrap();
    (tmp, e)
}

/// A random adapter of rank `r` over `modules`, shaped for `e`'s model.
fn random(e: &Engine, r: usize, alpha: f64, modules: &[Module], seed: u64) -> Adapter {
    fixtures::random_adapter(e.model(), r, alpha, modules, seed)
}

/// `s · B A` of a module as a flat vector (zeros when not adapted).
fn dense(e: &Engine, a: &Adapter, layer: usize, m: Module) -> Vec<f32> {
    fixtures::dense_update(e.model(), a, layer, m)
}

fn mean_product(e: &Engine, ads: &[&Adapter], w: &[f64], layer: usize, m: Module) -> Vec<f32> {
    let sum: f64 = w.iter().sum();
    let mut out: Vec<f32> = Vec::new();
    for (a, wk) in ads.iter().zip(w) {
        let d = dense(e, a, layer, m);
        if out.is_empty() {
            out = vec![0.0; d.len()];
        }
        for (o, x) in out.iter_mut().zip(d) {
            *o += x * (*wk / sum) as f32;
        }
    }
    out
}

fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn opts(method: Method) -> Options {
    Options { method, rank: None, weights: None, clip: None }
}

#[test]
fn exact_is_the_weighted_mean_of_the_products_and_fedit_is_not() {
    let (_t, e) = tiny();
    let all = Module::ALL.to_vec();
    let qv = [Module::QProj, Module::VProj];
    // Heterogeneous ranks, alphas and modules.
    let ads =
        [random(&e, 2, 4.0, &all, 1), random(&e, 4, 8.0, &qv, 2), random(&e, 8, 8.0, &all, 3)];
    let refs: Vec<&Adapter> = ads.iter().collect();
    let w = [1.0, 2.0, 3.0];
    let o = Options { weights: Some(w.to_vec()), ..opts(Method::Exact) };
    let (agg, report) = aggregate(&refs, &o).unwrap();
    assert_eq!(report.rank, 14);
    assert_eq!(report.modules, 14);
    assert!(report.truncation_error.is_none());
    let fedit =
        aggregate(&refs, &Options { weights: Some(w.to_vec()), ..opts(Method::FedIt) }).unwrap().0;
    let mut fedit_worst: f64 = 0.0;
    for layer in 0..2 {
        for m in Module::ALL {
            let want = mean_product(&e, &refs, &w, layer, m);
            let got = dense(&e, &agg, layer, m);
            let d = rel_diff(&got, &want);
            assert!(d < 1e-5, "{} exact: relative error {d}", m.path(layer));
            fedit_worst = fedit_worst.max(rel_diff(&dense(&e, &fedit, layer, m), &want));
        }
    }
    assert!(fedit_worst > 0.1, "FedIT matched the mean of the products ({fedit_worst})");
}

#[test]
fn a_rank_cut_reports_its_true_error() {
    let (_t, e) = tiny();
    let all = Module::ALL.to_vec();
    let ads =
        [random(&e, 4, 8.0, &all, 4), random(&e, 4, 8.0, &all, 5), random(&e, 4, 8.0, &all, 6)];
    let refs: Vec<&Adapter> = ads.iter().collect();
    let (agg, report) =
        aggregate(&refs, &Options { rank: Some(6), ..opts(Method::Exact) }).unwrap();
    assert_eq!(agg.config().r, 6);
    let mut worst: f64 = 0.0;
    for layer in 0..2 {
        for m in Module::ALL {
            let want = mean_product(&e, &refs, &[1.0, 1.0, 1.0], layer, m);
            worst = worst.max(rel_diff(&dense(&e, &agg, layer, m), &want));
        }
    }
    let reported = report.truncation_error.unwrap();
    assert!(reported > 0.01, "a rank-12 sum cut to 6 lost nothing? {reported}");
    assert!((worst - reported).abs() < 1e-5, "measured {worst}, reported {reported}");
}

#[test]
fn a_poisoned_input_is_clipped_or_outvoted() {
    let (_t, e) = tiny();
    let all = Module::ALL.to_vec();
    // Three honest nodes, and a fourth that sends node 2's update scaled by 50.
    let honest: Vec<Adapter> = (0..3).map(|k| random(&e, 4, 8.0, &all, 10 + k)).collect();
    let poisoned = {
        let p = random(&e, 4, 8.0, &all, 11);
        let pairs = (0..2)
            .map(|layer| {
                let mut row: [Option<LoraPair>; 7] = Default::default();
                for (i, m) in Module::ALL.into_iter().enumerate() {
                    let q = p.pair(layer, m).unwrap();
                    row[i] = Some(LoraPair {
                        a: q.a.clone(),
                        b: (&q.b * 50.0).unwrap(),
                        scale: q.scale,
                    });
                }
                row
            })
            .collect();
        Adapter::from_pairs(p.config().clone(), "tiny", pairs).unwrap()
    };
    let mut refs: Vec<&Adapter> = honest.iter().collect();
    let clean: Vec<Vec<f32>> = (0..2)
        .flat_map(|l| Module::ALL.map(|m| mean_product(&e, &refs, &[1.0; 3], l, m)))
        .collect();
    refs.push(&poisoned);
    let distance = |a: &Adapter| {
        let got: Vec<Vec<f32>> =
            (0..2).flat_map(|l| Module::ALL.map(|m| dense(&e, a, l, m))).collect();
        rel_diff(&got.concat(), &clean.concat())
    };
    let plain = aggregate(&refs, &opts(Method::Exact)).unwrap().0;
    let (clipped, report) =
        aggregate(&refs, &Options { clip: Some(1.5), ..opts(Method::Exact) }).unwrap();
    assert_eq!(report.clipped.iter().map(|c| c.0).collect::<Vec<_>>(), [3], "{report:?}");
    let median = aggregate(&refs, &Options { rank: Some(12), ..opts(Method::Median) }).unwrap().0;
    let (p, c, m) = (distance(&plain), distance(&clipped), distance(&median));
    eprintln!("distance to the honest mean: plain {p:.3}, clipped {c:.3}, median {m:.3}");
    assert!(p > 5.0, "the poisoned input should dominate a plain mean ({p})");
    assert!(c < 1.0 && m < 1.5, "clipping {c}, median {m}");
}

#[test]
fn the_result_is_a_peft_adapter_that_loads_back() {
    let (_t, e) = tiny();
    let all = Module::ALL.to_vec();
    let ads = [random(&e, 2, 4.0, &all, 20), random(&e, 6, 6.0, &all, 21)];
    let refs: Vec<&Adapter> = ads.iter().collect();
    let (agg, _) = aggregate(&refs, &opts(Method::Exact)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    agg.save(dir.path()).unwrap();
    let back = e.load_adapter(dir.path()).unwrap();
    assert_eq!(back.config().r, 8);
    for m in Module::ALL {
        let d = rel_diff(&dense(&e, &back, 1, m), &dense(&e, &agg, 1, m));
        assert!(d < 1e-6, "{m:?}: {d}");
    }
    // And it changes the model's output.
    let adapted = e.logits_at(&[1, 2, 3, 4], &[3], Some(&back)).unwrap();
    assert_ne!(adapted[0], e.logits(&[1, 2, 3, 4]).unwrap());
}

#[test]
fn bad_inputs_are_refused_with_a_reason() {
    let (_t, e) = tiny();
    let all = Module::ALL.to_vec();
    let a = random(&e, 2, 4.0, &all, 30);
    let err = |refs: &[&Adapter], o: Options| aggregate(refs, &o).unwrap_err().to_string();
    assert!(err(&[], opts(Method::Exact)).contains("no adapters"));
    let two = [&a, &a];
    assert!(err(&two, Options { weights: Some(vec![1.0]), ..opts(Method::Exact) })
        .contains("1 weights for 2"));
    assert!(err(&two, Options { weights: Some(vec![1.0, -1.0]), ..opts(Method::Exact) })
        .contains("negative"));
    assert!(err(&two, Options { weights: Some(vec![0.0, 0.0]), ..opts(Method::Exact) })
        .contains("sum to 0"));
    assert!(err(&two, Options { rank: Some(0), ..opts(Method::Exact) }).contains("at least 1"));
    assert!(err(&two, Options { clip: Some(f64::NAN), ..opts(Method::Exact) }).contains("--clip"));
    // A NaN in one input names it.
    let nan = {
        let p = a.pair(0, Module::QProj).unwrap();
        let mut pairs: Vec<[Option<LoraPair>; 7]> =
            (0..2).map(|l| Module::ALL.map(|m| a.pair(l, m).cloned())).collect();
        let bad = Tensor::full(f32::NAN, p.b.shape(), &Device::Cpu).unwrap();
        pairs[0][0] = Some(LoraPair { b: bad, ..p.clone() });
        Adapter::from_pairs(a.config().clone(), "tiny", pairs).unwrap()
    };
    let msg = err(&[&a, &nan], opts(Method::Exact));
    assert!(msg.contains("adapter 1") && msg.contains("NaN"), "{msg}");
    // An adapter for another shape of model.
    let other = {
        let t = |r: usize, c: usize| Tensor::full(0.1f32, (r, c), &Device::Cpu).unwrap();
        let pairs: Vec<[Option<LoraPair>; 7]> = (0..2)
            .map(|_| {
                let mut row: [Option<LoraPair>; 7] = Default::default();
                row[0] = Some(LoraPair { a: t(2, 96), b: t(96, 2), scale: 2.0 });
                row
            })
            .collect();
        Adapter::from_pairs(a.config().clone(), "other", pairs).unwrap()
    };
    let msg = err(&[&a, &other], opts(Method::Exact));
    assert!(msg.contains("different base models"), "{msg}");
}

#[test]
fn update_norm_is_the_dense_norm_and_scales_with_the_update() {
    let (_t, e) = tiny();
    let a = random(&e, 3, 6.0, &[Module::QProj, Module::DownProj], 9);
    let mut dense_sq = 0.0;
    for layer in 0..a.num_layers() {
        for m in Module::ALL {
            if a.pair(layer, m).is_some() {
                dense_sq +=
                    dense(&e, &a, layer, m).iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
            }
        }
    }
    let n = forja_fed::update_norm(&a).unwrap();
    assert!((n - dense_sq.sqrt()).abs() <= 1e-4 * n, "{n} vs {}", dense_sq.sqrt());
    // Scaled by 50 (alpha ×50): the norm is 50 times larger.
    let big = random(&e, 3, 300.0, &[Module::QProj, Module::DownProj], 9);
    let nb = forja_fed::update_norm(&big).unwrap();
    assert!((nb / n - 50.0).abs() < 1e-3, "{}", nb / n);
}
