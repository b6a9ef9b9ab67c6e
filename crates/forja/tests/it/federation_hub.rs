//! A federation over real HTTP on loopback: a `forja serve --federation-hub`
//! and three nodes (data directories with their own keys) using the CLI.
//!
//! Nodes join and wait for the hub admin's approval; an unknown, pending
//! or revoked key is refused. Deltas travel as signed manifests after a
//! chunked upload that resumes after the node or the hub died mid-way (the
//! hub is killed with SIGKILL and restarted). The hub refuses a tampered
//! manifest, a manifest signed by another node, another base model, an
//! adapter of other shapes, and a delta scaled by 50 (its norm is over the
//! bound); the same delta sent twice gets the first answer, a second delta
//! of one node in a round is refused. One node publishes through a real
//! SOCKS5 proxy (microsocks) on loopback. The third accepted delta closes
//! the round: its published aggregate is the exact example-weighted mean
//! of the three updates (FedIT is not), each node pulls it into its
//! registry as a candidate with lineage, and the hub's ledger verifies.

use crate::common;

use common::server::*;
use common::{forja, stderr, tiny_gguf};
use forja_core::identity::NodeKey;
use forja_engine::fixtures::{self, Spec};
use forja_engine::lora::{Adapter, Module};
use forja_engine::{Engine, LoadOptions};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn run_ok(args: &[&str]) -> String {
    let o = forja(args, None);
    assert!(o.status.success(), "forja {args:?}: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o)
}

/// A signed request to the hub, as a node makes it (for the cases the
/// CLI never produces: a half-sent upload, a tampered manifest).
fn signed(hub: &str, key: &NodeKey, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    use forja_fed::protocol::*;
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    let sig = key.sign_hex(&request_message(method, path, t, body));
    let a = agent();
    let url = format!("{hub}{path}");
    let req = |r: ureq::RequestBuilder<ureq::typestate::WithBody>| {
        r.header(NODE_HEADER, key.public_hex())
            .header(TIME_HEADER, t.to_string())
            .header(SIGNATURE_HEADER, &sig)
            .send(body)
    };
    let mut resp = match method {
        "GET" => a
            .get(&url)
            .header(NODE_HEADER, key.public_hex())
            .header(TIME_HEADER, t.to_string())
            .header(SIGNATURE_HEADER, &sig)
            .call(),
        "PUT" => req(a.put(&url)),
        _ => req(a.post(&url)),
    }
    .unwrap();
    let st = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

struct Node {
    dir: PathBuf,
    key: NodeKey,
}

fn node_args<'a>(hub: &'a str, d: &'a str) -> Vec<&'a str> {
    vec!["--hub", hub, "--data-dir", d]
}

fn dense(e: &Engine, a: &Adapter, layer: usize, m: Module) -> Vec<f32> {
    fixtures::dense_update(e.model(), a, layer, m)
}

/// Largest relative Frobenius difference over modules between `got` and
/// the weighted mean of `inputs`' products.
fn distance_to_mean(e: &Engine, got: &Adapter, inputs: &[&Adapter], w: &[f64]) -> f64 {
    let total: f64 = w.iter().sum();
    let mut worst: f64 = 0.0;
    for layer in 0..got.num_layers() {
        for m in Module::ALL {
            let mut want = vec![0f64; 0];
            for (a, wk) in inputs.iter().zip(w) {
                let d = dense(e, a, layer, m);
                if want.is_empty() {
                    want = vec![0.0; d.len()];
                }
                for (o, x) in want.iter_mut().zip(d) {
                    *o += x as f64 * wk / total;
                }
            }
            let g = dense(e, got, layer, m);
            let num: f64 = g.iter().zip(&want).map(|(a, b)| (*a as f64 - b).powi(2)).sum();
            let den: f64 = want.iter().map(|b| b * b).sum();
            if den > 0.0 {
                worst = worst.max((num / den).sqrt());
            }
        }
    }
    worst
}

fn microsocks() -> Option<(std::process::Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    match std::process::Command::new("microsocks")
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(c) => {
            wait_for(
                Duration::from_secs(10),
                || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
                "microsocks to listen",
            );
            Some((c, port))
        }
        Err(e) => {
            assert!(
                std::env::var_os("FORJA_REQUIRE_TESTDATA").is_none(),
                "microsocks is missing ({e}); `make setup-test` installs it"
            );
            eprintln!("skipping the SOCKS5 leg: microsocks is missing ({e})");
            None
        }
    }
}

#[test]
fn a_hub_and_three_nodes_federate_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let m = s(&model);
    let engine =
        Engine::load(&model, &LoadOptions { threads: Some(1), ..Default::default() }, &mut |_| {})
            .unwrap();
    // Three honest deltas (ranks 2, 4, 2) and a poisoned one (×50).
    let mods = [Module::QProj, Module::VProj, Module::DownProj];
    let adapters: Vec<Adapter> = [(2, 11), (4, 12), (2, 13)]
        .iter()
        .map(|&(r, seed)| fixtures::random_adapter(engine.model(), r, 2.0 * r as f64, &mods, seed))
        .collect();
    let dirs: Vec<PathBuf> = (0..3).map(|i| tmp.path().join(format!("adapter{i}"))).collect();
    for (a, d) in adapters.iter().zip(&dirs) {
        a.save(d).unwrap();
    }
    let poisoned = tmp.path().join("poisoned");
    fixtures::random_adapter(engine.model(), 2, 200.0, &mods, 11).save(&poisoned).unwrap();
    let norms: Vec<f64> = adapters.iter().map(|a| forja_fed::update_norm(a).unwrap()).collect();
    let bound = 5.0 * norms.iter().cloned().fold(0.0, f64::max);
    // An adapter for a model of other shapes (three layers).
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let spec3 = Spec { layers: 3, ..Spec::llama() };
    fixtures::write_gguf(
        &other.join("tiny3.gguf"),
        &spec3,
        &fixtures::weights(&spec3, 1),
        candle_core::quantized::GgmlDType::Q8_0,
    );
    let e3 = Engine::load(&other.join("tiny3.gguf"), &LoadOptions::default(), &mut |_| {}).unwrap();
    let misshapen = tmp.path().join("misshapen");
    fixtures::random_adapter(e3.model(), 2, 4.0, &mods, 5).save(&misshapen).unwrap();

    // The hub.
    let hub_data = tmp.path().join("hub");
    let hub_flags = ["--federation-hub", "--hub-min-nodes", "3", "--hub-clip", "0"];
    let bound_s = format!("{bound}");
    let mut flags: Vec<&str> = hub_flags.to_vec();
    flags.extend(["--hub-max-norm", bound_s.as_str()]);
    let mut hub = serve(&hub_data, &model, &flags, &[]);
    let admin = key(&hub_data, &["--admin"]);
    let (st, info) = get(&hub, "/v1/federation/hub", "");
    assert_eq!(st, 200, "{info}");
    assert_eq!(info["min_nodes"], 3);

    // Three nodes join; none may send anything before approval.
    let nodes: Vec<Node> = (0..3)
        .map(|i| {
            let dir = tmp.path().join(format!("node{i}"));
            let name = format!("node{i}");
            let d = s(&dir);
            let out = run_ok(&[
                "federation",
                "join",
                "--name",
                &name,
                "--hub",
                &hub.url,
                "--data-dir",
                &d,
            ]);
            assert!(out.contains("is pending"), "{out}");
            let key = NodeKey::load(&dir.join("node.key")).unwrap();
            Node { dir, key }
        })
        .collect();
    let publish_on =
        |hub_url: &str, n: &Node, adapter: &Path, examples: u64, model: &str, extra: &[&str]| {
            let mut a: Vec<String> = vec![
                "federation".into(),
                "publish".into(),
                "--adapter".into(),
                s(adapter),
                "-m".into(),
                model.to_string(),
                "--examples".into(),
                examples.to_string(),
                "--chunk-kb".into(),
                "4".into(),
            ];
            a.extend(node_args_owned(hub_url, &n.dir));
            a.extend(extra.iter().map(|x| x.to_string()));
            forja(&a.iter().map(String::as_str).collect::<Vec<_>>(), None)
        };
    let publish = |hub_url: &str, n: &Node, adapter: &Path, examples: u64, extra: &[&str]| {
        publish_on(hub_url, n, adapter, examples, &m, extra)
    };
    let o = publish(&hub.url, &nodes[0], &dirs[0], 100, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("waits for the hub admin's approval"), "{}", stderr(&o));
    let stranger = NodeKey::generate();
    let (st, v) = signed(&hub.url, &stranger, "GET", "/v1/federation/whoami", b"");
    assert_eq!(st, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("unknown to the hub"), "{v}");
    for n in &nodes {
        let (st, v, _) = post(
            &hub,
            &format!("/v1/admin/federation/nodes/{}/approve", n.key.public_hex()),
            &admin,
            json!({}),
        );
        assert_eq!(st, 200, "{v}");
    }
    let (st, v, _) = post(
        &hub,
        &format!("/v1/admin/federation/nodes/{}/approve", nodes[0].key.public_hex()),
        "",
        json!({}),
    );
    assert_eq!(st, 401, "only an admin approves: {v}");

    // Node 0: half an upload, then the hub is killed and restarted; the
    // publish resumes where the hub's bytes end.
    let weights = std::fs::read(dirs[0].join("adapter_model.safetensors")).unwrap();
    let sha = forja_store::sha256_hex(&weights);
    let half = 4096;
    let (st, v) = signed(
        &hub.url,
        &nodes[0].key,
        "PUT",
        &format!("/v1/federation/blobs/{sha}?offset=0&total={}", weights.len()),
        &weights[..half],
    );
    assert_eq!((st, v["received"].as_u64()), (200, Some(half as u64)), "{v}");
    let (st, v) = signed(
        &hub.url,
        &nodes[0].key,
        "PUT",
        &format!("/v1/federation/blobs/{sha}?offset=0&total={}", weights.len()),
        &weights[..half],
    );
    assert_eq!(st, 409, "a chunk at the wrong offset: {v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(&format!("resume at offset {half}")),
        "{v}"
    );
    drop(hub);
    hub = serve(&hub_data, &model, &flags, &[]);
    let o = publish(&hub.url, &nodes[0], &dirs[0], 100, &[]);
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "{out}");
    assert!(out.contains(&format!("resumed at byte {half}")), "{out}");
    assert!(out.contains("accepted into round 1"), "{out}");
    // Published again a second later: a new manifest (its time) of the
    // same files, refused as a second delta of node 0 in round 1.
    std::thread::sleep(Duration::from_millis(1100));
    let o = publish(&hub.url, &nodes[0], &dirs[0], 100, &[]);
    assert!(stderr(&o).contains("already contributed"), "{}", stderr(&o));

    // Tampering and impersonation, straight on the API.
    let info = forja_fed::PackInfo {
        base_model: "tiny".into(),
        base_sha256: forja_store::sha256_file(&model).unwrap(),
        examples: 200,
        created_at: 1,
        ..Default::default()
    };
    let files: std::collections::BTreeMap<String, String> = forja_fed::package::FILES
        .iter()
        .map(|f| (f.to_string(), forja_store::sha256_hex(&std::fs::read(dirs[1].join(f)).unwrap())))
        .collect();
    let (_, manifest, sig) = forja_fed::package::sign_manifest(files.clone(), &nodes[1].key, &info);
    // The example count raised after signing (only that field: a random
    // key or hash must not be touched by the edit).
    let text = String::from_utf8(manifest.clone()).unwrap();
    let tampered = text.replace("\"examples\": 200,", "\"examples\": 900,");
    assert_ne!(tampered, text);
    let submit = |k: &NodeKey, text: &str, sig: &str| {
        signed(
            &hub.url,
            k,
            "POST",
            "/v1/federation/deltas",
            json!({ "manifest": text, "signature": sig }).to_string().as_bytes(),
        )
    };
    let (st, v) = submit(&nodes[1].key, &tampered, &sig);
    assert_eq!((st, v["status"].as_str()), (200, Some("rejected")), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("signature"), "{v}");
    let (st, v) = submit(&nodes[2].key, std::str::from_utf8(&manifest).unwrap(), &sig);
    assert_eq!(st, 403, "another node's manifest: {v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("names another node"), "{v}");
    // Files not uploaded yet: nothing recorded, the node is told.
    let (st, v) = submit(&nodes[1].key, std::str::from_utf8(&manifest).unwrap(), &sig);
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("not uploaded yet"), "{v}");

    // Node 1: another base model, other shapes, then a poisoned delta: all refused.
    let o3 = s(&other.join("tiny3.gguf"));
    let o = publish_on(&hub.url, &nodes[1], &misshapen, 50, &o3, &[]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("is for base model sha256"),
        "{}",
        stderr(&o)
    );
    let o = publish(&hub.url, &nodes[1], &misshapen, 50, &[]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("does not load on the base model"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = publish(&hub.url, &nodes[1], &poisoned, 200, &[]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!o.status.success() && out.contains("over the hub's bound"), "{out}");

    // Node 1's honest delta through a SOCKS5 proxy on loopback.
    match microsocks() {
        Some((mut proxy, port)) => {
            let p = format!("socks5h://127.0.0.1:{port}");
            let o = publish(&hub.url, &nodes[1], &dirs[1], 200, &["--proxy", &p]);
            assert!(
                o.status.success()
                    && String::from_utf8_lossy(&o.stdout).contains("accepted into round 1"),
                "{}",
                stderr(&o)
            );
            proxy.kill().unwrap();
            proxy.wait().unwrap();
            // With the proxy gone the same path fails: the requests went through it.
            let o = publish(&hub.url, &nodes[2], &dirs[2], 300, &["--proxy", &p]);
            assert!(!o.status.success(), "the proxy was not on the path");
            assert!(stderr(&o).contains("gave up after"), "{}", stderr(&o));
        }
        None => assert!(publish(&hub.url, &nodes[1], &dirs[1], 200, &[]).status.success()),
    }

    // Node 2 closes the round.
    let o = publish(&hub.url, &nodes[2], &dirs[2], 300, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rounds = Value::Null;
    wait_for(
        Duration::from_secs(60),
        || {
            let (_, r) =
                signed(&hub.url, &nodes[0].key, "GET", "/v1/federation/rounds?limit=5", b"");
            rounds = r;
            rounds["data"][0]["status"] == "published"
        },
        "the round to be published",
    );
    let manifest: forja_fed::protocol::RoundManifest =
        serde_json::from_str(rounds["data"][0]["manifest"].as_str().unwrap()).unwrap();
    assert_eq!(
        manifest.contributors.iter().map(|c| c.examples).collect::<Vec<_>>(),
        [100, 200, 300]
    );

    // Every node pulls it: a job that evaluates it on the tenant's golden
    // set, once.
    let golden: String = (0..6)
        .map(|i| {
            json!({"messages": [{"role": "user", "content": format!("fox {i}")},
                {"role": "assistant", "content": "quick dog"}]})
            .to_string()
                + "\n"
        })
        .collect();
    let golden_file = tmp.path().join("golden.jsonl");
    std::fs::write(&golden_file, golden).unwrap();
    for (i, n) in nodes.iter().enumerate() {
        let d = s(&n.dir);
        run_ok(&["tenants", "create", "acme", "--data-dir", &d]);
        let pull =
            [&["federation", "pull", "--tenant", "acme", "-m", &m], &node_args(&hub.url, &d)[..]]
                .concat();
        let out = run_ok(&pull);
        assert!(out.contains("round 1 (3 nodes) → job"), "node {i}: {out}");
        let again = run_ok(&pull);
        assert!(again.contains("is already job"), "{again}");
    }
    let o = forja(
        &[
            &["federation", "pull", "--tenant", "acme", "-m", &s(&other.join("tiny3.gguf"))],
            &node_args(&hub.url, &s(&nodes[1].dir))[..],
        ]
        .concat(),
        None,
    );
    assert!(stderr(&o).contains("is for base weights"), "another base model: {}", stderr(&o));

    // Node 0 runs: its worker evaluates the aggregate and its gate decides,
    // with the lineage of the round.
    let d0 = s(&nodes[0].dir);
    run_ok(&["golden", "add", &s(&golden_file), "--tenant", "acme", "--data-dir", &d0]);
    let node0 = serve(&nodes[0].dir, &model, &["--workers", "1", "--embedding-model", "none"], &[]);
    let k0 = key(&nodes[0].dir, &["--tenant", "acme"]);
    let mut version = Value::Null;
    wait_for(
        Duration::from_secs(120),
        || {
            let (_, l) = get(&node0, "/v1/registry/models", &k0);
            version = l["data"][0].clone();
            !version.is_null()
        },
        "node 0's evaluation of the aggregate",
    );
    assert_eq!(version["manifest"]["imported"]["source"]["federated_round"], 1, "{version}");
    assert_eq!(
        version["manifest"]["imported"]["source"]["contributors"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(version["eval"]["summary"]["candidate"]["metrics"]["wer"].is_number(), "{version}");
    assert!(version["gate"]["outcome"].is_string(), "the gate decided: {version}");
    let (_, job) =
        get(&node0, &format!("/v1/fine_tuning/jobs/{}", version["job_id"].as_str().unwrap()), &k0);
    assert_eq!(job["status"], "succeeded", "{job}");
    drop(node0);

    // The aggregate is the exact example-weighted mean of the products; FedIT is not.
    let pulled = tmp.path().join("pulled");
    std::fs::create_dir_all(&pulled).unwrap();
    for (name, sha) in &manifest.files {
        let p = nodes[0].dir.join(format!("artifacts/sha256/{}/{sha}", &sha[..2]));
        std::fs::copy(&p, pulled.join(name)).unwrap();
    }
    let agg = engine.load_adapter(&pulled).unwrap();
    let refs: Vec<&Adapter> = adapters.iter().collect();
    let w = [100.0, 200.0, 300.0];
    let exact = distance_to_mean(&engine, &agg, &refs, &w);
    assert!(
        exact < 1e-5,
        "the published aggregate is {exact} from the weighted mean of the products"
    );
    let opts = forja_fed::Options {
        method: forja_fed::Method::FedIt,
        rank: None,
        weights: Some(w.to_vec()),
        clip: None,
    };
    let (fedit, _) = forja_fed::aggregate(&refs, &opts).unwrap();
    let off = distance_to_mean(&engine, &fedit, &refs, &w);
    assert!(off > 0.1, "FedIT is {off} from the mean of the products");
    eprintln!("published aggregate: {exact:.2e} from the mean of the products; FedIT {off:.3}");

    // Revoked: refused from now on. The hub's ledger holds it all, intact.
    let (st, _, _) = post(
        &hub,
        &format!("/v1/admin/federation/nodes/{}/revoke", nodes[2].key.public_hex()),
        &admin,
        json!({}),
    );
    assert_eq!(st, 200);
    let (st, v) = signed(&hub.url, &nodes[2].key, "GET", "/v1/federation/whoami", b"");
    assert!(st == 403 && v["error"]["message"].as_str().unwrap().contains("revoked"), "{v}");
    let (_, l) = get(&hub, "/v1/admin/ledger?limit=1000", &admin);
    let kinds: Vec<&str> =
        l["data"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for (k, n) in [
        ("node_joined", 3),
        ("node_approved", 3),
        ("round_opened", 1),
        ("delta_accepted", 3),
        ("round_published", 1),
        ("node_revoked", 1),
    ] {
        assert_eq!(kinds.iter().filter(|x| **x == k).count(), n, "{k} in {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|x| **x == "delta_rejected").count(), 4, "{kinds:?}");
    let (_, ok) = get(&hub, "/v1/admin/ledger/verify", &admin);
    assert_eq!(ok["ok"], true, "{ok}");
    let ok = run_ok(&["ledger", "verify", "--data-dir", &s(&nodes[0].dir)]);
    assert!(ok.starts_with("ok: "), "node 0's ledger: {ok}");
    let shown = run_ok(&["ledger", "show", "--data-dir", &s(&nodes[0].dir)]);
    assert!(shown.contains("\"kind\":\"federated_candidate\""), "{shown}");
}

fn node_args_owned(hub: &str, dir: &Path) -> Vec<String> {
    vec!["--hub".into(), hub.into(), "--data-dir".into(), s(dir)]
}
