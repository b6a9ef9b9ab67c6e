//! Signed delta packages: what a node publishes to a hub.
//!
//! A package is a directory holding the PEFT adapter as trained
//! (`adapter_config.json`, `adapter_model.safetensors`), a manifest
//! (`delta.json`: the node's public key, the base model's name and content
//! hash, the sha256 of each adapter file, the example count, metrics on the
//! node's own golden set and lineage ids; never data) and `delta.sig`, the
//! node's ed25519 signature over the manifest's exact bytes, in hex. No
//! canonical JSON is needed: the bytes signed are the bytes stored.
//!
//! [`verify`] refuses, with the reason: a manifest that is not this format
//! (unknown fields included), a signature that does not match, a key that
//! is not trusted, another base model, and any adapter file whose bytes do
//! not hash to the manifest's value (tampered or truncated).

use crate::{FedError, Result};
use forja_core::identity;
pub use forja_core::identity::NodeKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The manifest's format name.
pub const FORMAT: &str = "forja-delta-v1";
/// The adapter files a package carries.
pub const FILES: [&str; 2] = ["adapter_config.json", "adapter_model.safetensors"];
/// Largest manifest read, bytes.
const MAX_MANIFEST: u64 = 1 << 20;

/// What a package says about its adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The signing node's public key, hex.
    pub node: String,
    /// The base model's name.
    pub base_model: String,
    /// sha256 of the base model's weights file.
    pub base_sha256: String,
    /// sha256 of each adapter file, by name.
    pub files: BTreeMap<String, String>,
    /// Training examples behind the adapter (the aggregation weight).
    pub examples: u64,
    /// Metrics on the node's own golden set.
    pub metrics: BTreeMap<String, f64>,
    /// Ids of the versions and jobs it came from.
    pub lineage: Vec<String>,
    /// Unix seconds when it was packed.
    pub created_at: i64,
}

/// What the node states when packing.
#[derive(Debug, Clone, Default)]
pub struct PackInfo {
    /// The base model's name.
    pub base_model: String,
    /// sha256 of the base model's weights file.
    pub base_sha256: String,
    /// Training examples.
    pub examples: u64,
    /// Metrics on the node's golden set.
    pub metrics: BTreeMap<String, f64>,
    /// Version and job ids.
    pub lineage: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

fn io(path: &Path, e: std::io::Error) -> FedError {
    FedError::Invalid(format!("{}: {e}", path.display()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The manifest of adapter files with these sha256s (by name), signed by
/// `key`: the manifest's exact bytes and the signature, hex.
pub fn sign_manifest(
    files: BTreeMap<String, String>,
    key: &NodeKey,
    info: &PackInfo,
) -> (Manifest, Vec<u8>, String) {
    let manifest = Manifest {
        format: FORMAT.into(),
        node: key.public_hex(),
        base_model: info.base_model.clone(),
        base_sha256: info.base_sha256.clone(),
        files,
        examples: info.examples,
        metrics: info.metrics.clone(),
        lineage: info.lineage.clone(),
        created_at: info.created_at,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    let sig = key.sign_hex(&bytes);
    (manifest, bytes, sig)
}

/// Packs the adapter in `adapter` into `out`, signed by `key`.
pub fn pack(adapter: &Path, out: &Path, key: &NodeKey, info: &PackInfo) -> Result<Manifest> {
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let mut files = BTreeMap::new();
    for name in FILES {
        let src = adapter.join(name);
        let bytes = std::fs::read(&src).map_err(|e| io(&src, e))?;
        files.insert(name.to_string(), sha256_hex(&bytes));
        let dst = out.join(name);
        std::fs::write(&dst, &bytes).map_err(|e| io(&dst, e))?;
    }
    let (manifest, bytes, sig) = sign_manifest(files, key, info);
    let (m, s) = (out.join("delta.json"), out.join("delta.sig"));
    std::fs::write(&m, &bytes).map_err(|e| io(&m, e))?;
    std::fs::write(&s, format!("{sig}\n")).map_err(|e| io(&s, e))?;
    Ok(manifest)
}

/// Who and what a verifier accepts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Public keys (hex) allowed to sign; empty: any key (only the
    /// signature and the hashes are checked).
    pub keys: Vec<String>,
    /// The base model's sha256 the adapter must be for, if known.
    pub base_sha256: Option<String>,
}

/// Checks a manifest's bytes and signature: its format, the signature by
/// the key it names, that key's trust and the base model. The files it
/// lists are the caller's to hash.
pub fn verify_manifest(bytes: &[u8], signature: &str, trust: &Trust) -> Result<Manifest> {
    let refuse = |why: String| FedError::Invalid(why);
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(refuse(format!(
            "the manifest is {} bytes, over the {MAX_MANIFEST} limit",
            bytes.len()
        )));
    }
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| refuse(format!("delta.json is not a {FORMAT} manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(refuse(format!("format `{}`, expected {FORMAT}", manifest.format)));
    }
    identity::verify(&manifest.node, bytes, signature)
        .map_err(|e| refuse(format!("delta.json's signature by `node` does not hold: {e}")))?;
    if !trust.keys.is_empty() && !trust.keys.iter().any(|k| k.eq_ignore_ascii_case(&manifest.node))
    {
        return Err(refuse(format!(
            "node key {} is not trusted here (unknown or revoked)",
            manifest.node
        )));
    }
    if let Some(want) = &trust.base_sha256 {
        if !want.eq_ignore_ascii_case(&manifest.base_sha256) {
            return Err(refuse(format!(
                "the adapter is for base model sha256 {}, this one is {want}",
                manifest.base_sha256
            )));
        }
    }
    let names: Vec<&str> = manifest.files.keys().map(String::as_str).collect();
    if names != FILES {
        return Err(refuse(format!("the manifest lists {names:?}, a package holds {FILES:?}")));
    }
    Ok(manifest)
}

/// Checks the package in `dir`; returns its manifest when every check
/// passes.
pub fn verify(dir: &Path, trust: &Trust) -> Result<Manifest> {
    let refuse = |why: String| FedError::Invalid(format!("{}: {why}", dir.display()));
    let mpath = dir.join("delta.json");
    let len = std::fs::metadata(&mpath).map_err(|e| io(&mpath, e))?.len();
    if len > MAX_MANIFEST {
        return Err(refuse(format!("delta.json is {len} bytes, over the {MAX_MANIFEST} limit")));
    }
    let bytes = std::fs::read(&mpath).map_err(|e| io(&mpath, e))?;
    let spath = dir.join("delta.sig");
    let sig = std::fs::read_to_string(&spath).map_err(|e| io(&spath, e))?;
    let manifest = verify_manifest(&bytes, &sig, trust).map_err(|e| refuse(e.to_string()))?;
    for (name, want) in &manifest.files {
        let p = dir.join(name);
        let got = sha256_hex(&std::fs::read(&p).map_err(|e| io(&p, e))?);
        if !got.eq_ignore_ascii_case(want) {
            return Err(refuse(format!(
                "{name} does not hash to the signed sha256 (tampered or truncated)"
            )));
        }
    }
    Ok(manifest)
}
