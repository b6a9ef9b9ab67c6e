//! Ed25519 identities: a node's key (it signs its ledger and its delta
//! packages) and an auditor's key (it signs votes). A key file holds the
//! 32-byte secret in hex on one line and is created readable by its owner
//! only; public keys and signatures travel as hex.

use crate::{CoreError, Result};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::path::Path;

/// An ed25519 signing key.
pub struct NodeKey(SigningKey);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.public_hex())
    }
}

fn bad(why: String) -> CoreError {
    CoreError::Identity(why)
}

impl NodeKey {
    /// A new random key.
    pub fn generate() -> Self {
        NodeKey(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let bytes: [u8; 32] =
            hex::decode(text.trim()).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| {
                bad(format!(
                    "{}: not a node key (64 hex digits, as `forja federation keygen` writes)",
                    path.display()
                ))
            })?;
        Ok(NodeKey(SigningKey::from_bytes(&bytes)))
    }

    /// Writes the key file, created readable by its owner only; refuses to
    /// overwrite one.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let fail = |e: std::io::Error| bad(format!("{}: {e}", path.display()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(fail)?;
        writeln!(f, "{}", hex::encode(self.0.to_bytes())).map_err(fail)?;
        f.sync_all().map_err(fail)
    }

    /// The key in `path`, created there first when there is none.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        if path.exists() {
            return NodeKey::load(path);
        }
        let key = NodeKey::generate();
        match key.save(path) {
            Ok(()) => Ok(key),
            // Another process created it first: use that one.
            Err(_) if path.exists() => NodeKey::load(path),
            Err(e) => Err(e),
        }
    }

    /// The public key in hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }

    /// The signature of `msg`, in hex.
    pub fn sign_hex(&self, msg: &[u8]) -> String {
        hex::encode(self.0.sign(msg).to_bytes())
    }
}

/// Checks that `public` is an ed25519 public key in hex; returns it in
/// lowercase.
pub fn public_key(public: &str) -> Result<String> {
    parse_public(public)?;
    Ok(public.trim().to_ascii_lowercase())
}

fn parse_public(public: &str) -> Result<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(public.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("a public key is 64 hex digits (32 bytes)".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not a valid ed25519 public key".into()))
}

/// Checks `signature` (hex) of `msg` by `public` (hex), strictly (no
/// malleable or small-order forms).
pub fn verify(public: &str, msg: &[u8], signature: &str) -> Result<()> {
    let key = parse_public(public)?;
    let sig: [u8; 64] = hex::decode(signature.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("a signature is 128 hex digits (64 bytes)".into()))?;
    key.verify_strict(msg, &Signature::from_bytes(&sig))
        .map_err(|_| bad("the signature does not match (another key, or changed bytes)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_key_and_bytes() {
        let (a, b) = (NodeKey::generate(), NodeKey::generate());
        let sig = a.sign_hex(b"vote");
        verify(&a.public_hex(), b"vote", &sig).unwrap();
        assert!(verify(&b.public_hex(), b"vote", &sig).is_err());
        assert!(verify(&a.public_hex(), b"vote!", &sig).is_err());
        assert!(verify(&a.public_hex(), b"vote", "zz").is_err());
        assert!(public_key("abc").is_err());
        assert_eq!(public_key(&a.public_hex().to_uppercase()).unwrap(), a.public_hex());
    }

    #[test]
    fn key_files_round_trip_are_owner_only_and_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("forja-id-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("node.key");
        let k = NodeKey::load_or_create(&p).unwrap();
        assert_eq!(NodeKey::load_or_create(&p).unwrap().public_hex(), k.public_hex());
        assert!(NodeKey::generate().save(&p).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&p, "nope").unwrap();
        assert!(NodeKey::load(&p).unwrap_err().to_string().contains("not a node key"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
