//! A federation hub in process, on a real SQLite file, a real artifact
//! directory and a tiny model pre-trained by the test to answer its golden
//! set: the golden-set check accepts a delta that leaves the answers alone
//! and refuses one that ruins them (WER worse than the base model's by
//! more than the policy allows) and one with a NaN; the same manifest
//! twice gets the first answer; a file over the size limit, a chunk past
//! the total and bytes that do not hash to their name are refused; a round
//! short of nodes fails at its deadline.

use forja_control::hub::{Hub, HubConfig, HubPolicy};
use forja_core::identity::NodeKey;
use forja_engine::lora::Module;
use forja_engine::{Engine, LoadOptions};
use forja_fed::package::{sign_manifest, PackInfo, FILES};
use forja_store::prelude::*;
use forja_store::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const PAIRS: [(&str, &str); 4] =
    [("fox", "dog"), ("budget", "council"), ("votes", "minutes"), ("hello", "forja")];

/// A tiny model that answers `Question: W\nAnswer:` with the pair's word.
fn pretrained(dir: &std::path::Path) -> std::path::PathBuf {
    let docs: Vec<String> = (0..40)
        .map(|i| {
            let (w, a) = PAIRS[i % PAIRS.len()];
            format!("Question: {w}\nAnswer: {a}")
        })
        .collect();
    let cfg = forja_engine::train::pretrain::PretrainConfig {
        vocab_size: 300,
        hidden: 64,
        intermediate: 128,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        seq_len: 32,
        ..Default::default()
    };
    let tcfg = forja_engine::train::TrainConfig {
        epochs: 30,
        batch_size: 8,
        lr: 3e-3,
        save_every: 0,
        ..Default::default()
    };
    let out = dir.join("model");
    forja_engine::train::pretrain::pretrain(&docs, &cfg, &tcfg, &out, false, &mut |_| Ok(()))
        .unwrap();
    out
}

fn golden(dir: &std::path::Path) -> std::path::PathBuf {
    let text: String = PAIRS
        .iter()
        .enumerate()
        .map(|(i, (w, a))| {
            serde_json::json!({"id": format!("g{i}"), "prompt": format!("Question: {w}\nAnswer:"), "reference": a})
                .to_string()
                + "\n"
        })
        .collect();
    let p = dir.join("golden.jsonl");
    std::fs::write(&p, text).unwrap();
    p
}

struct Bed {
    hub: Arc<Hub>,
    store: Arc<SqliteStore>,
    engine: Engine,
    /// Two approved nodes and their keys.
    nodes: Vec<(FedNode, NodeKey)>,
    base_sha: String,
}

fn bed(tmp: &std::path::Path, deadline_s: i64, min_nodes: usize) -> Bed {
    let model = if tmp.join("model").exists() { tmp.join("model") } else { pretrained(tmp) };
    let base_sha = forja_control::worker::model_sha256(&model).unwrap();
    let data = tmp.join(format!("hub-{deadline_s}"));
    let store =
        Arc::new(SqliteStore::open(&data.join("forja.db"), Duration::from_secs(10)).unwrap());
    let artifacts =
        Artifacts::open(&ArtifactConfig::Local { dir: data.join("artifacts") }).unwrap();
    let cfg = HubConfig {
        base_model: "tiny".into(),
        base_path: model.clone(),
        base_sha256: base_sha.clone(),
        policy: HubPolicy {
            min_nodes,
            deadline_s,
            max_norm: None,
            golden: Some(golden(tmp)),
            max_wer_regression: 0.1,
            aggregation: forja_fed::Options {
                method: forja_fed::Method::Exact,
                rank: None,
                weights: None,
                clip: None,
            },
            max_file_bytes: 1 << 20,
        },
        work_dir: data.join("federation"),
    };

    let hub_key = NodeKey::load_or_create(&data.join("node.key")).unwrap();
    let hub = Arc::new(Hub::new(cfg, store.clone(), artifacts, hub_key).unwrap());
    let nodes = (0..2)
        .map(|i| {
            let key = NodeKey::generate();
            store.join_node(&key.public_hex(), &format!("n{i}")).unwrap();
            (store.set_node_status(&key.public_hex(), "approved", "test").unwrap(), key)
        })
        .collect();
    let engine =
        Engine::load(&model, &LoadOptions { threads: Some(1), ..Default::default() }, &mut |_| {})
            .unwrap();
    Bed { hub, store, engine, nodes, base_sha }
}

/// Uploads an adapter of `alpha` (a scale on a fixed random direction)
/// and submits it from node `n`.
fn submit(
    b: &Bed,
    rt: &tokio::runtime::Runtime,
    n: usize,
    alpha: f64,
    dir: &std::path::Path,
) -> FedDelta {
    let mods = [Module::QProj, Module::VProj, Module::UpProj, Module::DownProj];
    forja_engine::fixtures::random_adapter(b.engine.model(), 4, alpha, &mods, 3).save(dir).unwrap();
    upload_and_submit(b, rt, n, alpha, dir)
}

/// Uploads the adapter in `dir` and submits it from node `n`.
fn upload_and_submit(
    b: &Bed,
    rt: &tokio::runtime::Runtime,
    n: usize,
    alpha: f64,
    dir: &std::path::Path,
) -> FedDelta {
    let mut files = BTreeMap::new();
    for name in FILES {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let sha = sha256_hex(&bytes);
        let total = bytes.len() as u64;
        let up = rt.block_on(b.hub.put_chunk(&sha, 0, total, bytes.into())).unwrap();
        assert!(up.complete);
        files.insert(name.to_string(), sha);
    }
    let info = PackInfo {
        base_model: "tiny".into(),
        base_sha256: b.base_sha.clone(),
        examples: 10,
        created_at: alpha as i64,
        ..Default::default()
    };
    let (node, key) = &b.nodes[n];
    let (_, manifest, sig) = sign_manifest(files, key, &info);
    rt.block_on(b.hub.submit(node, &manifest, &sig)).unwrap()
}

#[test]
fn the_hub_golden_set_refuses_a_delta_that_ruins_the_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let b = bed(tmp.path(), 3600, 3);
    let gentle = submit(&b, &rt, 0, 0.01, &tmp.path().join("gentle"));
    assert_eq!(gentle.status, "accepted", "{:?}", gentle.reason);
    // The same manifest again: the first answer, nothing added.
    let again = submit(&b, &rt, 0, 0.01, &tmp.path().join("gentle-again"));
    assert_eq!(
        (again.sha256.as_str(), again.status.as_str()),
        (gentle.sha256.as_str(), "accepted")
    );
    let (wer, base) =
        (gentle.checks["wer"].as_f64().unwrap(), gentle.checks["base_wer"].as_f64().unwrap());
    assert!(base < 0.5, "the pre-trained model answers its golden set (WER {base})");
    assert!(wer <= base * 1.1 + 1e-9, "{wer} vs {base}");
    // The same direction at 4000 times the scale, from the other node.
    let ruinous = submit(&b, &rt, 1, 40.0, &tmp.path().join("ruinous"));
    assert_eq!(ruinous.status, "rejected");
    let why = ruinous.reason.unwrap();
    assert!(why.contains("WER on the hub's golden set"), "{why}");
    eprintln!("gentle delta: WER {wer:.3} (base {base:.3}); ruinous: {why}");

    // A NaN in the weights (the first f32 of the safetensors data).
    let nan = tmp.path().join("nan");
    let mods = [Module::QProj];
    forja_engine::fixtures::random_adapter(b.engine.model(), 4, 8.0, &mods, 9).save(&nan).unwrap();
    let w = nan.join("adapter_model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[8 + header..8 + header + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&w, &bytes).unwrap();
    let d = upload_and_submit(&b, &rt, 1, 8.0, &nan);
    assert_eq!(d.status, "rejected");
    assert!(d.reason.as_deref().unwrap_or("").contains("NaN"), "{:?}", d.reason);

    // Uploads: too large, past the total, bytes that are not their name.
    let e = rt
        .block_on(b.hub.put_chunk(&"ab".repeat(32), 0, 1 << 30, vec![0u8; 8].into()))
        .unwrap_err();
    assert!(e.to_string().contains("a delta file is 1 to"), "{e}");
    let e = rt.block_on(b.hub.put_chunk(&"ab".repeat(32), 0, 4, vec![0u8; 8].into())).unwrap_err();
    assert!(e.to_string().contains("past the file's total"), "{e}");
    let e = rt.block_on(b.hub.put_chunk(&"ab".repeat(32), 0, 8, vec![0u8; 8].into())).unwrap_err();
    assert!(e.to_string().contains("upload it again from offset 0"), "{e}");
    assert_eq!(rt.block_on(b.hub.upload_status(&"ab".repeat(32))).unwrap().received, 0);
}

#[test]
fn a_round_short_of_nodes_fails_at_its_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let b = bed(tmp.path(), 1, 2);
    let d = submit(&b, &rt, 0, 0.01, &tmp.path().join("one"));
    assert_eq!(d.status, "accepted");
    assert!(rt.block_on(b.hub.round_tick()).unwrap().is_none(), "still open before its deadline");
    std::thread::sleep(Duration::from_millis(2100));
    let r = rt.block_on(b.hub.round_tick()).unwrap().expect("closed");
    assert_eq!(r.status, "failed");
    assert!(r.reason.unwrap().contains("partial round: 1 of the 2 nodes"));
    assert!(b.store.verify_ledger(None).unwrap().is_ok());
}
