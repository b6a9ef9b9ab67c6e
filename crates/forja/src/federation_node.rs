//! `forja federation join|publish|pull|nodes`: a node's side of a hub
//! (join with its key, publish a version as a signed delta through a
//! chunked, resumable upload, pull the newest aggregate as a job that
//! evaluates it on a tenant's golden set, so the node's gate and auditors
//! judge it) and a hub admin's node list.

use crate::admin;
use crate::args::{HubArgs, NodesCommand, PublishArgs};
use anyhow::{bail, Context, Result};
use forja_core::identity::NodeKey;
use forja_fed::package::{self, PackInfo, FILES};
use forja_server::hub_client::{HubClient, Retry};
use forja_store::prelude::*;
use forja_store::{ImportedAdapter, JobSpec, JobStatus, NewJob, Trigger, VersionStatus};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// What a node remembers of its hub: `DATA_DIR/federation-hub.json`.
fn hub_file(h: &HubArgs) -> PathBuf {
    admin::data_dir(&h.data).join("federation-hub.json")
}

/// The node's key: `--key`, or `DATA_DIR/node.key` (made when missing).
fn node_key(h: &HubArgs) -> Result<NodeKey> {
    Ok(match &h.key {
        Some(p) => NodeKey::load(p)?,
        None => {
            let dir = admin::data_dir(&h.data);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            NodeKey::load_or_create(&dir.join(forja_store::NODE_KEY))?
        }
    })
}

fn client(h: &HubArgs, key: NodeKey) -> Result<HubClient> {
    Ok(HubClient::new(&h.hub, key, h.proxy.as_deref(), Retry::default())?)
}

pub fn join(h: HubArgs, name: String) -> Result<ExitCode> {
    let c = client(&h, node_key(&h)?)?;
    let hub = c.describe()?;
    let n = c.join(&name)?;
    let hub_key = hub["public_key"].as_str().unwrap_or_default().to_string();
    let saved = serde_json::json!({ "hub": h.hub, "hub_public_key": hub_key, "name": name });
    std::fs::write(hub_file(&h), serde_json::to_vec_pretty(&saved)?)
        .with_context(|| format!("cannot write {}", hub_file(&h).display()))?;
    println!(
        "{}: node {} ({}) is {}; the hub's key is {hub_key}",
        h.hub,
        n["name"].as_str().unwrap_or_default(),
        c.public_key(),
        n["status"].as_str().unwrap_or_default()
    );
    if n["status"] == "pending" {
        println!(
            "an admin of the hub approves it: forja federation nodes approve {}",
            c.public_key()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Adapter files by name, with their bytes.
type Files = Vec<(String, Vec<u8>)>;

/// The adapter files of what to publish and what the manifest says of them.
fn what_to_publish(a: &PublishArgs) -> Result<(Files, PackInfo)> {
    if let Some(dir) = &a.adapter {
        let mut files = Vec::new();
        for name in FILES {
            let p = dir.join(name);
            files.push((
                name.to_string(),
                std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?,
            ));
        }
        let path = crate::models::resolve(&a.model)?;
        let base_sha256 = forja_control::worker::model_sha256(&path)
            .with_context(|| format!("cannot hash the weights of {}", path.display()))?;
        let info = PackInfo {
            base_model: a.model.clone(),
            base_sha256,
            examples: a.examples,
            created_at: admin::now(),
            lineage: vec![format!("adapter:{}", dir.display())],
            ..Default::default()
        };
        return Ok((files, info));
    }
    let tenant = a.tenant.as_deref().context("--tenant or --adapter")?;
    let store = admin::open(&a.hub.data, Duration::from_secs(10))?;
    let t = store.tenant_by_name(tenant)?;
    let v = store.version_or_alias(&t.id, &a.version)?;
    if v.status() != VersionStatus::Promoted {
        bail!(
            "version {} is {}: only a promoted version is published (it passed this node's gate)",
            v.id,
            v.status().as_str()
        );
    }
    let base_sha256 = v
        .lineage
        .base_sha256
        .clone()
        .with_context(|| format!("version {} does not record its base model's sha256", v.id))?;
    let arts = admin::artifacts(&a.hub.data)?;
    let rt = admin::runtime()?;
    let mut files = Vec::new();
    for name in FILES {
        let sha = v
            .lineage
            .adapter_files
            .get(name)
            .with_context(|| format!("version {} has no {name}", v.id))?;
        files.push((name.to_string(), rt.block_on(arts.get(sha))?.to_vec()));
    }
    let metrics: BTreeMap<String, f64> = v
        .lineage
        .eval
        .as_ref()
        .and_then(|e| e["summary"]["candidate"]["metrics"].as_object().cloned())
        .map(|m| m.into_iter().filter_map(|(k, x)| x.as_f64().map(|x| (k, x))).collect())
        .unwrap_or_default();
    let examples = v.lineage.manifest["examples"].as_u64().unwrap_or(0)
        + v.lineage.manifest["mix"]["replay_examples"].as_u64().unwrap_or(0);
    let mut lineage = vec![v.id.clone()];
    lineage.extend(v.lineage.job_id.clone());
    let info = PackInfo {
        base_model: v.lineage.base_model.clone(),
        base_sha256,
        examples: examples.max(1),
        metrics,
        lineage,
        created_at: admin::now(),
    };
    Ok((files, info))
}

pub fn publish(a: PublishArgs) -> Result<ExitCode> {
    let (files, info) = what_to_publish(&a)?;
    let shas: BTreeMap<String, String> =
        files.iter().map(|(n, b)| (n.clone(), forja_store::sha256_hex(b))).collect();
    let key = node_key(&a.hub)?;
    let (_, manifest, sig) = package::sign_manifest(shas.clone(), &key, &info);
    let c = client(&a.hub, key)?;
    for (name, bytes) in &files {
        let up = c.upload(&shas[name], bytes, a.chunk_kb.max(1) << 10)?;
        let how = if up.already_there {
            "already on the hub".to_string()
        } else if up.resumed_from > 0 {
            format!("resumed at byte {}, {} chunk(s)", up.resumed_from, up.chunks)
        } else {
            format!("{} chunk(s)", up.chunks)
        };
        eprintln!("{name}: {} bytes uploaded ({how})", bytes.len());
    }
    let d = c.submit(&manifest, &sig)?;
    let sha = d["sha256"].as_str().unwrap_or_default();
    if d["status"] == "accepted" {
        println!("delta {sha}: accepted into round {} (norm {})", d["round"], d["checks"]["norm"]);
        Ok(ExitCode::SUCCESS)
    } else {
        println!("delta {sha}: rejected: {}", d["reason"].as_str().unwrap_or("no reason"));
        Ok(ExitCode::FAILURE)
    }
}

pub fn pull(h: HubArgs, tenant: String, model: String) -> Result<ExitCode> {
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hub_file(&h)).with_context(|| {
            format!("{}: join the hub first (forja federation join)", hub_file(&h).display())
        })?)?;
    let hub_key = saved["hub_public_key"]
        .as_str()
        .context("federation-hub.json has no hub_public_key")?
        .to_string();
    let c = client(&h, node_key(&h)?)?;
    let rounds = c.rounds(20)?;
    let Some(r) =
        rounds["data"].as_array().into_iter().flatten().find(|r| r["status"] == "published")
    else {
        println!("{}: no published round yet", h.hub);
        return Ok(ExitCode::SUCCESS);
    };
    let text = r["manifest"].as_str().unwrap_or_default();
    let m = forja_fed::protocol::verify_round(
        text,
        r["signature"].as_str().unwrap_or_default(),
        &hub_key,
    )?;
    let source = crate::serve::model_source(&model)?;
    let local_sha = forja_control::worker::model_sha256(&source.path)
        .with_context(|| format!("cannot hash the weights of {}", source.path.display()))?;
    if local_sha != m.base_sha256 {
        bail!(
            "round {} is for base weights {}, this node's {} are {local_sha}: pull it on a node with the same base model",
            m.round,
            m.base_sha256,
            source.public
        );
    }
    let store = admin::open(&h.data, Duration::from_secs(10))?;
    let t = store.tenant_by_name(&tenant)?;
    let adapter_sha = m.files.get("adapter_model.safetensors").cloned().unwrap_or_default();
    if let Some(v) =
        store.model_versions(&t.id)?.into_iter().find(|v| v.lineage.adapter_sha256 == adapter_sha)
    {
        println!("round {} is already version {} ({})", m.round, v.id, v.status().as_str());
        return Ok(ExitCode::SUCCESS);
    }
    let queued = store.jobs(Some(&t.id), None, 100)?.into_iter().find(|j| {
        j.spec
            .import
            .as_ref()
            .is_some_and(|i| i.files.get("adapter_model.safetensors") == Some(&adapter_sha))
            && !matches!(j.status, JobStatus::Failed | JobStatus::Cancelled)
    });
    if let Some(j) = queued {
        println!("round {} is already job {} ({})", m.round, j.id, j.status.as_str());
        return Ok(ExitCode::SUCCESS);
    }
    let arts = admin::artifacts(&h.data)?;
    let rt = admin::runtime()?;
    for sha in m.files.values() {
        let bytes = c.file(sha)?;
        rt.block_on(arts.put_verified(bytes.into(), sha))?;
    }
    let label = format!("round {} of hub {}", m.round, h.hub);
    let import = ImportedAdapter {
        files: m.files.clone(),
        source: serde_json::json!({
            "federated_round": m.round, "hub": m.hub, "hub_url": h.hub, "method": m.method,
            "contributors": m.contributors, "report": m.report,
            "examples": m.contributors.iter().map(|c| c.examples).sum::<u64>(),
        }),
        label: label.clone(),
    };
    let job = store.create_job(&NewJob {
        tenant_id: t.id.clone(),
        model: source.public.clone(),
        training_file: None,
        validation_file: None,
        trigger: Trigger::Federation,
        spec: JobSpec { import: Some(import), ..Default::default() },
    })?;
    store.append_ledger(
        "federated_candidate",
        Some(&t.id),
        &serde_json::json!({
            "job": job.id, "round": m.round, "hub": m.hub,
            "contributors": m.contributors.iter().map(|c| &c.delta).collect::<Vec<_>>(),
        }),
    )?;
    println!(
        "round {} ({} nodes) → job {}: a running node evaluates it on {tenant}'s golden set and its gate decides",
        m.round,
        m.contributors.len(),
        job.id
    );
    Ok(ExitCode::SUCCESS)
}

pub fn nodes(c: NodesCommand) -> Result<ExitCode> {
    let print =
        |n: &forja_store::FedNode| println!("{:<20} {:<9} {}", n.name, n.status, n.public_key);
    match c {
        NodesCommand::List { data } => {
            for n in admin::open(&data, Duration::from_secs(5))?.fed_nodes()? {
                print(&n);
            }
        }
        NodesCommand::Approve { key, data } => print(
            &admin::open(&data, Duration::from_secs(10))?
                .set_node_status(&key, "approved", "cli")?,
        ),
        NodesCommand::Revoke { key, data } => print(
            &admin::open(&data, Duration::from_secs(10))?
                .set_node_status(&key, "revoked", "cli")?,
        ),
    }
    Ok(ExitCode::SUCCESS)
}
