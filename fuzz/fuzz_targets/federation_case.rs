// The federation target's case, shared with
// `crates/forja-fed/tests/it/fuzz_corpus.rs` (which `include!`s it): the
// parsers of what a hub or a node receives from the other side. The first
// 128 bytes (lossy UTF-8) stand for a signature, the rest for a manifest;
// the whole input is also tried as a manifest, a round manifest, a public
// key and a signature. An `Err` is a clean refusal; only panics, hangs and
// OOMs are bugs.

fn federation_case(data: &[u8]) {
    use forja_fed::package::{verify_manifest, Trust};
    let (sig, manifest) = data.split_at(data.len().min(128));
    let sig = String::from_utf8_lossy(sig);
    let trust = Trust { keys: vec!["00".repeat(32)], base_sha256: Some("ab".repeat(32)) };
    let _ = verify_manifest(manifest, &sig, &trust);
    let _ = verify_manifest(data, &sig, &Trust::default());
    let text = String::from_utf8_lossy(data);
    let _ = forja_fed::protocol::verify_round(&text, &sig, &text);
    let _ = serde_json::from_slice::<forja_fed::protocol::RoundManifest>(data);
    let _ = forja_core::identity::public_key(&text);
    let _ = forja_core::identity::verify(&text, data, &sig);
}
