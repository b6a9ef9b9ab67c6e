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
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
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

/// A node's identity: an ed25519 signing key.
pub struct NodeKey(SigningKey);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.public_hex())
    }
}

impl NodeKey {
    /// A new random key.
    pub fn generate() -> Self {
        NodeKey(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    /// Reads a key file (the 32-byte secret in hex, one line).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
        let bytes: [u8; 32] =
            hex::decode(text.trim()).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| {
                FedError::Invalid(format!(
                    "{}: not a node key (64 hex digits, as `forja federation keygen` writes)",
                    path.display()
                ))
            })?;
        Ok(NodeKey(SigningKey::from_bytes(&bytes)))
    }

    /// Writes the key file, created readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| io(path, e))?;
        writeln!(f, "{}", hex::encode(self.0.to_bytes())).map_err(|e| io(path, e))
    }

    /// The public key in hex (what a hub registers).
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }
}

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
    let sig = key.0.sign(&bytes);
    let (m, s) = (out.join("delta.json"), out.join("delta.sig"));
    std::fs::write(&m, &bytes).map_err(|e| io(&m, e))?;
    std::fs::write(&s, format!("{}\n", hex::encode(sig.to_bytes()))).map_err(|e| io(&s, e))?;
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
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| refuse(format!("delta.json is not a {FORMAT} manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(refuse(format!("format `{}`, expected {FORMAT}", manifest.format)));
    }
    let key: [u8; 32] = hex::decode(&manifest.node)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| refuse("`node` is not a 32-byte public key in hex".into()))?;
    let key = VerifyingKey::from_bytes(&key)
        .map_err(|_| refuse("`node` is not a valid ed25519 public key".into()))?;
    let spath = dir.join("delta.sig");
    let sig_text = std::fs::read_to_string(&spath).map_err(|e| io(&spath, e))?;
    let sig: [u8; 64] = hex::decode(sig_text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| refuse("delta.sig is not a 64-byte signature in hex".into()))?;
    key.verify_strict(&bytes, &Signature::from_bytes(&sig)).map_err(|_| {
        refuse("the signature does not match delta.json (changed after signing, or signed by another key)".into())
    })?;
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
