//! Signed delta packages: a packed adapter verifies; every kind of
//! tampering, an untrusted or revoked key, another base model and a
//! malformed manifest are refused with the reason.

use forja_fed::package::{self, NodeKey, PackInfo, Trust};
use std::path::Path;

fn adapter(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("adapter_config.json"), br#"{"peft_type":"LORA","r":2}"#).unwrap();
    std::fs::write(dir.join("adapter_model.safetensors"), vec![7u8; 4096]).unwrap();
}

fn info() -> PackInfo {
    PackInfo {
        base_model: "smollm2-135m-instruct".into(),
        base_sha256: "ab".repeat(32),
        examples: 1200,
        metrics: [("wer".to_string(), 0.05)].into(),
        lineage: vec!["ftjob-1".into()],
        created_at: 1_796_000_000,
    }
}

fn packed(tmp: &Path) -> (NodeKey, std::path::PathBuf) {
    let key = NodeKey::generate();
    adapter(&tmp.join("adapter"));
    let out = tmp.join("pkg");
    package::pack(&tmp.join("adapter"), &out, &key, &info()).unwrap();
    (key, out)
}

fn refused(dir: &Path, trust: &Trust) -> String {
    package::verify(dir, trust).unwrap_err().to_string()
}

#[test]
fn a_packed_adapter_verifies_and_says_what_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, pkg) = packed(tmp.path());
    let trust = Trust { keys: vec![key.public_hex()], base_sha256: Some("AB".repeat(32)) };
    let m = package::verify(&pkg, &trust).unwrap();
    assert_eq!(m.examples, 1200);
    assert_eq!(m.node, key.public_hex());
    assert_eq!(m.lineage, ["ftjob-1"]);
    // A key file round-trips and signs the same identity.
    let kf = tmp.path().join("node.key");
    key.save(&kf).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kf).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a node key is its owner's only");
    }
    assert_eq!(NodeKey::load(&kf).unwrap().public_hex(), key.public_hex());
    std::fs::write(&kf, "not hex").unwrap();
    assert!(NodeKey::load(&kf).unwrap_err().to_string().contains("not a node key"));
}

#[test]
fn tampering_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, pkg) = packed(tmp.path());
    let any = Trust::default();
    // One byte of the weights.
    let w = pkg.join("adapter_model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&w, &bytes).unwrap();
    let e = refused(&pkg, &any);
    assert!(e.contains("adapter_model.safetensors") && e.contains("tampered"), "{e}");
    bytes[100] ^= 1;
    std::fs::write(&w, &bytes[..2000]).unwrap();
    assert!(refused(&pkg, &any).contains("tampered or truncated"));
    std::fs::write(&w, &bytes).unwrap();
    package::verify(&pkg, &any).unwrap();

    // The manifest: a better metric than measured, re-hashed files or not.
    let mpath = pkg.join("delta.json");
    let original = std::fs::read_to_string(&mpath).unwrap();
    let edited = original.replace("\"examples\": 1200,", "\"examples\": 9200,");
    assert_ne!(edited, original);
    std::fs::write(&mpath, edited).unwrap();
    assert!(refused(&pkg, &any).contains("signature does not match"));
    // Re-signed by another key: the signature holds, the key is not trusted.
    let other = NodeKey::generate();
    package::pack(&tmp.path().join("adapter"), &pkg, &other, &info()).unwrap();
    let trusted = Trust { keys: vec![key.public_hex()], base_sha256: None };
    let e = refused(&pkg, &trusted);
    assert!(e.contains("not trusted") && e.contains(&other.public_hex()), "{e}");
    // Another base model.
    let trust = Trust { keys: vec![], base_sha256: Some("cd".repeat(32)) };
    assert!(refused(&pkg, &trust).contains("is for base model sha256"));
    // A manifest with a field the format does not have, or none at all.
    std::fs::write(&mpath, original.replacen('{', "{\"extra\": 1,", 1)).unwrap();
    assert!(refused(&pkg, &any).contains("not a forja-delta-v1 manifest"));
    std::fs::remove_file(&mpath).unwrap();
    assert!(refused(&pkg, &any).contains("delta.json"));
    // A signature that is not one.
    package::pack(&tmp.path().join("adapter"), &pkg, &key, &info()).unwrap();
    std::fs::write(pkg.join("delta.sig"), "zz").unwrap();
    assert!(refused(&pkg, &any).contains("128 hex digits"));
}
