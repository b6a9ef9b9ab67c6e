//! What a node and a hub sign to each other, apart from delta packages:
//! the proof of key possession when joining, every request a node makes
//! (so the hub knows which approved key sent it), and the round manifest a
//! hub publishes (so a node knows the aggregate is the hub's).

use crate::{FedError, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Header naming the requesting node's public key.
pub const NODE_HEADER: &str = "x-forja-node";
/// Header with the request's signing time (unix seconds).
pub const TIME_HEADER: &str = "x-forja-time";
/// Header with the node's signature of [`request_message`].
pub const SIGNATURE_HEADER: &str = "x-forja-signature";
/// Largest difference between a request's time and the hub's clock.
pub const MAX_SKEW_S: i64 = 300;
/// The round manifest's format name.
pub const ROUND_FORMAT: &str = "forja-round-v1";

/// What a node signs to join: its name and key.
pub fn join_message(name: &str, public_key: &str) -> Vec<u8> {
    format!("forja-join-v1\n{name}\n{public_key}").into_bytes()
}

/// What a node signs for each request: method, path with query, time and
/// the sha256 of the body. A captured request replays only within
/// [`MAX_SKEW_S`], and every hub write is idempotent.
pub fn request_message(method: &str, path_and_query: &str, time: i64, body: &[u8]) -> Vec<u8> {
    format!(
        "forja-request-v1\n{}\n{path_and_query}\n{time}\n{}",
        method.to_ascii_uppercase(),
        hex::encode(Sha256::digest(body))
    )
    .into_bytes()
}

/// One delta in an aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contributor {
    /// The node's public key.
    pub node: String,
    /// sha256 of its delta manifest.
    pub delta: String,
    /// Its example count (its weight).
    pub examples: u64,
    /// Its update norm.
    pub norm: f64,
}

/// What a hub publishes for a round: the aggregate's files and where it
/// came from, signed by the hub's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundManifest {
    /// [`ROUND_FORMAT`].
    pub format: String,
    /// The round number.
    pub round: i64,
    /// The hub's public key.
    pub hub: String,
    /// The base model's name.
    pub base_model: String,
    /// sha256 of the base model's weights.
    pub base_sha256: String,
    /// sha256 of each adapter file, by name.
    pub files: BTreeMap<String, String>,
    /// The aggregation rule (`exact`, `fedit`, `median`).
    pub method: String,
    /// The deltas combined.
    pub contributors: Vec<Contributor>,
    /// The aggregation report.
    pub report: serde_json::Value,
    /// Unix seconds.
    pub created_at: i64,
}

/// Checks a published round: the hub's signature over the manifest's
/// exact bytes, by the key the node trusts, and the manifest's format.
pub fn verify_round(text: &str, signature: &str, hub_key: &str) -> Result<RoundManifest> {
    forja_core::identity::verify(hub_key, text.as_bytes(), signature).map_err(|e| {
        FedError::Invalid(format!("the round manifest's signature by the hub: {e}"))
    })?;
    let m: RoundManifest = serde_json::from_str(text)
        .map_err(|e| FedError::Invalid(format!("not a {ROUND_FORMAT} manifest: {e}")))?;
    if m.format != ROUND_FORMAT || !m.hub.eq_ignore_ascii_case(hub_key) {
        return Err(FedError::Invalid("another format, or another hub's round".into()));
    }
    Ok(m)
}
