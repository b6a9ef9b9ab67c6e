//! A federation hub: nodes join with an ed25519 key and an admin approves
//! them; an approved node uploads its delta's files in resumable chunks
//! and submits the signed manifest; the hub verifies and validates the
//! delta and adds it to the open round; a round with enough nodes is
//! aggregated and published as a manifest the hub signs.
//!
//! What the hub refuses, with the reason recorded: a manifest not signed
//! by the node sending it, a delta for another base model, files that do
//! not load on the base model (other shapes or modules), NaN or infinite
//! values, an update norm over the policy's bound, and (with a golden set)
//! a delta whose WER on it is worse than the base model's by more than
//! the policy allows. The same manifest sent twice gets the first answer;
//! a second delta from one node in one round is refused; a manifest that
//! names another node is refused without being recorded (no node can
//! answer for another's delta).
//!
//! CPU work (loading adapters, norms, evaluation, aggregation) runs on a
//! blocking thread, one delta or round at a time.

use crate::{ControlError, Result};
use forja_engine::lora::Adapter;
use forja_engine::{Engine, LoadOptions};
use forja_eval::{EvalOptions, EvalReport, GoldenSet, Metric};
use forja_fed::package::{self, Trust, FILES};
use forja_fed::protocol::{self, Contributor, RoundManifest};
use forja_fed::Options;
use forja_store::{Artifacts, FedDelta, FedNode, FedRound, NewDelta, Store, StoreError};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// What a hub accepts and how it aggregates (`forja serve
/// --federation-hub` and its `--hub-*` flags).
#[derive(Debug, Clone)]
pub struct HubPolicy {
    /// Accepted deltas from distinct nodes that make a round.
    pub min_nodes: usize,
    /// Seconds a round may stay open; then it fails if short of nodes.
    pub deadline_s: i64,
    /// Largest update norm `‖ΔW‖_F` accepted (`None`: no bound).
    pub max_norm: Option<f64>,
    /// The hub's golden set (JSONL), for validating deltas.
    pub golden: Option<PathBuf>,
    /// Largest relative WER regression against the base model on it.
    pub max_wer_regression: f64,
    /// Aggregation rule, rank and clipping.
    pub aggregation: Options,
    /// Largest file a node may upload, bytes.
    pub max_file_bytes: u64,
}

/// A hub's base model, policy and scratch space.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The base model's name (what manifests must say).
    pub base_model: String,
    /// Its weights (GGUF file or HF directory).
    pub base_path: PathBuf,
    /// sha256 of its weights.
    pub base_sha256: String,
    /// What it accepts and how it aggregates.
    pub policy: HubPolicy,
    /// Where partial uploads and scratch directories live.
    pub work_dir: PathBuf,
}

/// Where a file upload stands.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Upload {
    /// The file's sha256.
    pub sha256: String,
    /// Bytes the hub holds.
    pub received: u64,
    /// Whether the file is complete and verified.
    pub complete: bool,
}

/// A federation hub.
pub struct Hub {
    cfg: HubConfig,
    store: Arc<dyn Store>,
    artifacts: Artifacts,
    key: forja_core::identity::NodeKey,
    engine: OnceLock<Arc<Engine>>,
    golden: Option<GoldenSet>,
    base_report: Mutex<Option<EvalReport>>,
    work: tokio::sync::Semaphore,
    uploads: Mutex<()>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hub({})", self.key.public_hex())
    }
}

impl Hub {
    /// A hub signing with `key` (the node's key), on `store` and
    /// `artifacts`. Reads the golden set now: a bad one is refused at start.
    pub fn new(
        cfg: HubConfig,
        store: Arc<dyn Store>,
        artifacts: Artifacts,
        key: forja_core::identity::NodeKey,
    ) -> Result<Hub> {
        std::fs::create_dir_all(cfg.work_dir.join("partial"))
            .map_err(|e| ControlError::io(&cfg.work_dir, e))?;
        let golden = match &cfg.policy.golden {
            Some(p) => {
                let bytes = std::fs::read(p).map_err(|e| ControlError::io(p, e))?;
                Some(forja_eval::parse_golden(&p.display().to_string(), &bytes)?)
            }
            None => None,
        };
        if cfg.policy.min_nodes == 0 || cfg.policy.deadline_s <= 0 {
            return Err(ControlError::invalid(
                "federation",
                "min_nodes and the round deadline must be at least 1",
            ));
        }
        Ok(Hub {
            cfg,
            store,
            artifacts,
            key,
            engine: OnceLock::new(),
            golden,
            base_report: Mutex::new(None),
            work: tokio::sync::Semaphore::new(1),
            uploads: Mutex::new(()),
        })
    }

    /// The hub's public key (it signs round manifests).
    pub fn public_key(&self) -> String {
        self.key.public_hex()
    }

    /// The hub's policy, for nodes to read.
    pub fn describe(&self) -> serde_json::Value {
        let c = &self.cfg;
        serde_json::json!({
            "object": "federation.hub",
            "public_key": self.public_key(),
            "base_model": c.base_model,
            "base_sha256": c.base_sha256,
            "min_nodes": c.policy.min_nodes,
            "round_deadline_s": c.policy.deadline_s,
            "max_norm": c.policy.max_norm,
            "golden_set": c.policy.golden.is_some(),
            "max_wer_regression": c.policy.max_wer_regression,
            "method": c.policy.aggregation.method.name(),
            "rank": c.policy.aggregation.rank,
            "clip": c.policy.aggregation.clip,
            "max_file_bytes": c.policy.max_file_bytes,
        })
    }

    /// A node asks to join, proving it holds the key.
    pub async fn join(&self, public_key: &str, name: &str, signature: &str) -> Result<FedNode> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(ControlError::invalid(
                "name",
                "a node's name is 1-64 printable characters",
            ));
        }
        forja_core::identity::verify(
            public_key,
            &protocol::join_message(name, public_key),
            signature,
        )
        .map_err(|e| ControlError::Forbidden(format!("the join request's signature: {e}")))?;
        let (store, k, n) = (self.store.clone(), public_key.to_string(), name.to_string());
        crate::control::blocking(move || Ok(store.join_node(&k, &n)?)).await
    }

    /// The approved node that signed a request; why not, otherwise.
    pub async fn authenticate(
        &self,
        node: &str,
        time: i64,
        signature: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<FedNode> {
        let skew = time - self.store.now();
        if skew.abs() > protocol::MAX_SKEW_S {
            return Err(ControlError::Forbidden(format!(
                "the request was signed {}s away from the hub's clock (at most {}s): check the node's clock",
                skew.abs(),
                protocol::MAX_SKEW_S
            )));
        }
        forja_core::identity::verify(
            node,
            &protocol::request_message(method, path, time, body),
            signature,
        )
        .map_err(|e| ControlError::Forbidden(format!("the request's signature: {e}")))?;
        let (store, k) = (self.store.clone(), node.to_string());
        let n = match crate::control::blocking(move || Ok(store.fed_node(&k)?)).await {
            Err(ControlError::Store(StoreError::NotFound { .. })) => {
                return Err(ControlError::Forbidden(
                    "this node key is unknown to the hub: `forja federation join` first".into(),
                ))
            }
            r => r?,
        };
        match n.status.as_str() {
            "approved" => Ok(n),
            "pending" => {
                Err(ControlError::Forbidden("this node waits for the hub admin's approval".into()))
            }
            _ => Err(ControlError::Forbidden("this node's key was revoked by the hub".into())),
        }
    }

    fn partial(&self, sha: &str) -> PathBuf {
        self.cfg.work_dir.join("partial").join(format!("{sha}.part"))
    }

    /// Where the upload of the file `sha` stands.
    pub async fn upload_status(&self, sha: &str) -> Result<Upload> {
        if !forja_store::valid_sha(sha) {
            return Err(ControlError::invalid("sha256", "64 lowercase hex digits"));
        }
        if self.artifacts.contains(sha).await? {
            return Ok(Upload { sha256: sha.into(), received: 0, complete: true });
        }
        let received = std::fs::metadata(self.partial(sha)).map_or(0, |m| m.len());
        Ok(Upload { sha256: sha.into(), received, complete: false })
    }

    /// Appends a chunk at `offset` of the `total`-byte file `sha`. A chunk
    /// at another offset than what the hub holds is refused with where to
    /// resume; the last chunk is verified against `sha` and the file kept.
    pub async fn put_chunk(
        &self,
        sha: &str,
        offset: u64,
        total: u64,
        chunk: bytes::Bytes,
    ) -> Result<Upload> {
        let now = self.upload_status(sha).await?;
        if now.complete {
            return Ok(now);
        }
        if total == 0 || total > self.cfg.policy.max_file_bytes {
            return Err(ControlError::invalid(
                "total",
                format!(
                    "a delta file is 1 to {} bytes, this one {total}",
                    self.cfg.policy.max_file_bytes
                ),
            ));
        }
        if offset + chunk.len() as u64 > total {
            return Err(ControlError::invalid(
                "total",
                "the chunk runs past the file's total size",
            ));
        }
        let path = self.partial(sha);
        let done = {
            let _guard = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
            use std::io::Write;
            let held = std::fs::metadata(&path).map_or(0, |m| m.len());
            if held != offset {
                return Err(ControlError::conflict(format!(
                    "the hub holds {held} bytes of {sha}; resume at offset {held}"
                )));
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| ControlError::io(&path, e))?;
            f.write_all(&chunk).map_err(|e| ControlError::io(&path, e))?;
            f.sync_data().map_err(|e| ControlError::io(&path, e))?;
            offset + chunk.len() as u64 == total
        };
        if !done {
            return Ok(Upload {
                sha256: sha.into(),
                received: offset + chunk.len() as u64,
                complete: false,
            });
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => bytes::Bytes::from(b),
            // Another request finished the same file first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.upload_status(sha).await
            }
            Err(e) => return Err(ControlError::io(&path, e)),
        };
        let _ = std::fs::remove_file(&path);
        match self.artifacts.put_verified(bytes, sha).await {
            Ok(_) => Ok(Upload { sha256: sha.into(), received: total, complete: true }),
            Err(StoreError::HashMismatch { actual, .. }) => Err(ControlError::conflict(format!(
                "the {total} bytes received hash to {actual}, not {sha} (changed in transit or on disk): upload it again from offset 0"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a file of a published round (nothing else: the hub's other
    /// artifacts are not the nodes' to read).
    pub async fn round_file(&self, sha: &str) -> Result<bytes::Bytes> {
        let store = self.store.clone();
        let rounds = crate::control::blocking(move || Ok(store.rounds(1000)?)).await?;
        let published = rounds.iter().filter_map(|r| r.manifest.as_deref()).any(|m| {
            serde_json::from_str::<RoundManifest>(m)
                .is_ok_and(|m| m.files.values().any(|f| f == sha))
        });
        if !published {
            return Err(ControlError::Store(StoreError::NotFound {
                what: "round file",
                id: sha.into(),
            }));
        }
        Ok(self.artifacts.get(sha).await?)
    }

    fn engine(&self) -> Result<Arc<Engine>> {
        if let Some(e) = self.engine.get() {
            return Ok(e.clone());
        }
        let opts = LoadOptions { threads: Some(1), ..Default::default() };
        let e = Arc::new(Engine::load(&self.cfg.base_path, &opts, &mut |_| {})?);
        Ok(self.engine.get_or_init(|| e).clone())
    }

    /// Writes a delta's files to a scratch directory and loads them on the
    /// base model.
    fn load(&self, files: &[(String, bytes::Bytes)]) -> Result<Adapter> {
        let dir = tempfile::Builder::new()
            .prefix("delta-")
            .tempdir_in(&self.cfg.work_dir)
            .map_err(|e| ControlError::io(&self.cfg.work_dir, e))?;
        for (name, bytes) in files {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).map_err(|e| ControlError::io(&p, e))?;
        }
        Ok(self.engine()?.load_adapter(dir.path())?)
    }

    /// Measures a loaded delta: its norm (NaN/Inf refused) and, with a
    /// golden set, its WER against the base model's.
    fn measure(&self, adapter: &Adapter) -> std::result::Result<serde_json::Value, String> {
        let norm = forja_fed::update_norm(adapter).map_err(|e| e.to_string())?;
        let mut checks = serde_json::json!({ "norm": norm });
        if let Some(bound) = self.cfg.policy.max_norm {
            if norm > bound {
                return Err(format!(
                    "its update norm {norm:.4} is over the hub's bound {bound:.4} (a scaled or poisoned delta)"
                ));
            }
        }
        if let Some(golden) = &self.golden {
            let engine = self.engine().map_err(|e| e.to_string())?;
            let opts = EvalOptions { loss: false, ..Default::default() };
            let base = {
                let mut cached = self.base_report.lock().unwrap_or_else(|e| e.into_inner());
                match &*cached {
                    Some(r) => r.clone(),
                    None => {
                        let r = forja_eval::evaluate(
                            &engine,
                            None,
                            golden,
                            &opts,
                            None,
                            &mut |_, _| {},
                        )
                        .map_err(|e| e.to_string())?;
                        *cached = Some(r.clone());
                        r
                    }
                }
            };
            let cand =
                forja_eval::evaluate(&engine, Some(adapter), golden, &opts, None, &mut |_, _| {})
                    .map_err(|e| e.to_string())?;
            let (b, c) =
                (base.get(Metric::Wer).unwrap_or(0.0), cand.get(Metric::Wer).unwrap_or(0.0));
            checks["wer"] = serde_json::json!(c);
            checks["base_wer"] = serde_json::json!(b);
            let limit = b * (1.0 + self.cfg.policy.max_wer_regression) + 1e-9;
            if c > limit {
                return Err(format!(
                    "its WER on the hub's golden set is {c:.4}, worse than the base model's {b:.4} by more than {:.0}%",
                    100.0 * self.cfg.policy.max_wer_regression
                ));
            }
        }
        Ok(checks)
    }

    /// Receives a delta: `manifest` as signed, and its signature.
    pub async fn submit(
        self: &Arc<Self>,
        node: &FedNode,
        manifest: &[u8],
        signature: &str,
    ) -> Result<FedDelta> {
        let sha = hex::encode(Sha256::digest(manifest));
        // Another node's manifest is refused, not recorded: a node must not
        // be able to answer for (and so block) a delta it did not sign.
        let claimed = serde_json::from_slice::<serde_json::Value>(manifest)
            .ok()
            .and_then(|v| v["node"].as_str().map(str::to_string));
        if claimed.is_some_and(|k| !k.eq_ignore_ascii_case(&node.public_key)) {
            return Err(ControlError::Forbidden(
                "a manifest that names another node: a node sends only its own deltas".into(),
            ));
        }
        let (store, s) = (self.store.clone(), sha.clone());
        if let Some(d) = crate::control::blocking(move || Ok(store.fed_delta(&s)?)).await? {
            if d.node != node.public_key {
                return Err(ControlError::Forbidden("another node's delta".into()));
            }
            return Ok(d);
        }
        // A node already in the open round is told before any work is done.
        let store = self.store.clone();
        if let Some((round, deltas)) =
            crate::control::blocking(move || Ok(store.open_round()?)).await?
        {
            if let Some(d) = deltas.iter().find(|d| d.node == node.public_key) {
                return Err(ControlError::conflict(format!(
                    "node {} already contributed delta {} to round {}; send the next one after it closes",
                    node.public_key, d.sha256, round.id
                )));
            }
        }
        let trust = Trust {
            keys: vec![node.public_key.clone()],
            base_sha256: Some(self.cfg.base_sha256.clone()),
        };
        // What the hub measured, or why it refuses the delta.
        let verdict = match package::verify_manifest(manifest, signature, &trust) {
            Err(e) => Err(e.to_string()),
            Ok(m) => {
                // The files must be here before anything is judged.
                let mut files = Vec::new();
                for name in FILES {
                    let want = &m.files[name];
                    let bytes = match self.artifacts.get(want).await {
                        Err(StoreError::ArtifactMissing { .. }) => {
                            return Err(ControlError::conflict(format!(
                                "{name} ({want}) is not uploaded yet: upload it, then send the manifest again"
                            )))
                        }
                        r => r?,
                    };
                    files.push((name.to_string(), bytes));
                }
                let _permit =
                    self.work.acquire().await.map_err(|e| ControlError::Internal(e.to_string()))?;
                let this = self.clone();
                crate::control::blocking(move || {
                    Ok(match this.load(&files) {
                        Err(e) => Err(format!("it does not load on the base model: {e}")),
                        Ok(a) => this.measure(&a).map(|mut c| {
                            c["examples"] = serde_json::json!(m.examples);
                            c
                        }),
                    })
                })
                .await?
            }
        };
        let (verdict, checks) = match verdict {
            Ok(c) => (Ok(()), c),
            Err(why) => (Err(why), serde_json::json!({})),
        };
        let new = NewDelta {
            sha256: sha,
            node: node.public_key.clone(),
            manifest: String::from_utf8_lossy(manifest).into_owned(),
            signature: signature.trim().to_ascii_lowercase(),
            verdict,
            checks,
        };
        let (store, deadline) = (self.store.clone(), self.cfg.policy.deadline_s);
        let d = crate::control::blocking(move || Ok(store.record_delta(&new, deadline)?)).await?;
        if d.status == "accepted" {
            // The delta is in; a round that fails to close now is retried
            // by the tick, and the node's answer stays "accepted".
            if let Err(e) = self.round_tick().await {
                tracing::warn!("federation round: {e}");
            }
        }
        Ok(d)
    }

    /// Aggregates the open round when it has enough nodes, or fails it
    /// past its deadline: the tick's part (and what follows an accepted
    /// delta).
    pub async fn round_tick(self: &Arc<Self>) -> Result<Option<FedRound>> {
        // One tick at a time (and not during a delta's validation): a round
        // is read, aggregated and closed once.
        let _permit =
            self.work.acquire().await.map_err(|e| ControlError::Internal(e.to_string()))?;
        let store = self.store.clone();
        let Some((round, deltas)) =
            crate::control::blocking(move || Ok(store.open_round()?)).await?
        else {
            return Ok(None);
        };
        let outcome = if deltas.len() >= self.cfg.policy.min_nodes {
            match self.aggregate(round.id, &deltas).await {
                Ok(signed) => Ok(signed),
                Err(e) => Err(format!("aggregation failed: {e}")),
            }
        } else if self.store.now() >= round.deadline {
            Err(format!(
                "partial round: {} of the {} nodes needed by the deadline",
                deltas.len(),
                self.cfg.policy.min_nodes
            ))
        } else {
            return Ok(None);
        };
        let store = self.store.clone();
        let r = crate::control::blocking(move || Ok(store.close_round(round.id, outcome)?)).await?;
        tracing::info!(round = r.id, status = %r.status, "federation round closed");
        Ok(Some(r))
    }

    async fn aggregate(
        self: &Arc<Self>,
        round: i64,
        deltas: &[FedDelta],
    ) -> Result<(String, String)> {
        let mut inputs = Vec::new();
        for d in deltas {
            let m: package::Manifest = serde_json::from_str(&d.manifest)
                .map_err(|e| ControlError::Internal(format!("stored delta {}: {e}", d.sha256)))?;
            let mut files = Vec::new();
            for name in FILES {
                files.push((name.to_string(), self.artifacts.get(&m.files[name]).await?));
            }
            inputs.push((d.clone(), m, files));
        }
        let this = self.clone();
        let (out_files, report, contributors) = crate::control::blocking(move || {
            let hub = &this;
            let adapters =
                inputs.iter().map(|(_, _, f)| hub.load(f)).collect::<Result<Vec<_>>>()?;
            let refs: Vec<&Adapter> = adapters.iter().collect();
            let mut opts = hub.cfg.policy.aggregation.clone();
            opts.weights = Some(inputs.iter().map(|(_, m, _)| m.examples.max(1) as f64).collect());
            let (out, report) = forja_fed::aggregate(&refs, &opts)?;
            let dir = tempfile::Builder::new()
                .prefix("round-")
                .tempdir_in(&hub.cfg.work_dir)
                .map_err(|e| ControlError::io(&hub.cfg.work_dir, e))?;
            out.save(dir.path())?;
            let mut files = Vec::new();
            for name in FILES {
                let p = dir.path().join(name);
                files.push((
                    name.to_string(),
                    std::fs::read(&p).map_err(|e| ControlError::io(&p, e))?,
                ));
            }
            let contributors: Vec<Contributor> = inputs
                .iter()
                .zip(&report.norms)
                .map(|((d, m, _), norm)| Contributor {
                    node: d.node.clone(),
                    delta: d.sha256.clone(),
                    examples: m.examples,
                    norm: *norm,
                })
                .collect();
            Ok((files, serde_json::to_value(&report).unwrap_or_default(), contributors))
        })
        .await?;
        let mut shas = std::collections::BTreeMap::new();
        for (name, bytes) in out_files {
            shas.insert(name, self.artifacts.put(bytes.into()).await?);
        }
        let manifest = RoundManifest {
            format: protocol::ROUND_FORMAT.into(),
            round,
            hub: self.public_key(),
            base_model: self.cfg.base_model.clone(),
            base_sha256: self.cfg.base_sha256.clone(),
            files: shas,
            method: self.cfg.policy.aggregation.method.name().into(),
            contributors,
            report,
            created_at: self.store.now(),
        };
        let text = serde_json::to_string_pretty(&manifest).expect("a manifest serialises");
        let sig = self.key.sign_hex(text.as_bytes());
        Ok((text, sig))
    }

    /// Rounds, newest first.
    pub async fn rounds(&self, limit: usize) -> Result<Vec<FedRound>> {
        let store = self.store.clone();
        crate::control::blocking(move || Ok(store.rounds(limit)?)).await
    }
}
