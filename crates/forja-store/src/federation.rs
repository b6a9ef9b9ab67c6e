//! A federation hub's part of the store: member nodes (public keys an
//! admin approves or revokes), the deltas they sent (accepted into a round
//! or rejected, with the reason), and rounds (open, published with the
//! hub's signed manifest, or failed). Every change is one transaction with
//! its ledger entry.

use crate::{Result, Timestamp};
use serde::{Deserialize, Serialize};

/// A member node of the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FedNode {
    /// Ed25519 public key, hex: the node's identity.
    pub public_key: String,
    /// The name it joined with.
    pub name: String,
    /// `pending`, `approved` or `revoked`.
    pub status: String,
    /// When it asked to join.
    pub created_at: Timestamp,
    /// Last status change.
    pub updated_at: Timestamp,
}

/// A delta the hub received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FedDelta {
    /// sha256 of the manifest's bytes.
    pub sha256: String,
    /// The sending node's public key.
    pub node: String,
    /// The round it joined (accepted deltas).
    pub round_id: Option<i64>,
    /// The manifest, as signed.
    pub manifest: String,
    /// The node's signature of it.
    pub signature: String,
    /// `accepted` or `rejected`.
    pub status: String,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// What the hub measured (norm, evaluation).
    pub checks: serde_json::Value,
    /// When received.
    pub created_at: Timestamp,
}

/// A round of aggregation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FedRound {
    /// 1, 2, …
    pub id: i64,
    /// `open`, `published` or `failed`.
    pub status: String,
    /// When its first delta arrived.
    pub opened_at: Timestamp,
    /// When it fails if still short of nodes.
    pub deadline: Timestamp,
    /// When it was published or failed.
    pub closed_at: Option<Timestamp>,
    /// Why it failed.
    pub reason: Option<String>,
    /// The published round manifest, as signed.
    pub manifest: Option<String>,
    /// The hub's signature of it.
    pub signature: Option<String>,
}

/// A delta to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelta {
    /// sha256 of the manifest's bytes.
    pub sha256: String,
    /// The sending node.
    pub node: String,
    /// The manifest, as signed.
    pub manifest: String,
    /// The node's signature.
    pub signature: String,
    /// `Err(reason)`: rejected.
    pub verdict: std::result::Result<(), String>,
    /// What the hub measured.
    pub checks: serde_json::Value,
}

/// The hub's state: implemented by every store.
pub trait Federation: Send + Sync {
    /// A node asks to join (`pending`); joining again changes nothing.
    fn join_node(&self, public_key: &str, name: &str) -> Result<FedNode>;
    /// A node by public key.
    fn fed_node(&self, public_key: &str) -> Result<FedNode>;
    /// Every node, by name.
    fn fed_nodes(&self) -> Result<Vec<FedNode>>;
    /// Approves (`approved`) or revokes (`revoked`) a node.
    fn set_node_status(&self, public_key: &str, status: &str, actor: &str) -> Result<FedNode>;
    /// A delta by the sha256 of its manifest.
    fn fed_delta(&self, sha256: &str) -> Result<Option<FedDelta>>;
    /// Records a delta. An accepted one joins the open round (opened now,
    /// with `deadline_s`, when there is none); `Conflict` if its node
    /// already has a delta in that round.
    fn record_delta(&self, delta: &NewDelta, deadline_s: i64) -> Result<FedDelta>;
    /// The open round and its accepted deltas.
    fn open_round(&self) -> Result<Option<(FedRound, Vec<FedDelta>)>>;
    /// Publishes the open round `id` with its signed manifest, or fails it
    /// (`Err(reason)`); `Conflict` if it is not open.
    fn close_round(
        &self,
        id: i64,
        outcome: std::result::Result<(String, String), String>,
    ) -> Result<FedRound>;
    /// Rounds newest first, at most `limit`.
    fn rounds(&self, limit: usize) -> Result<Vec<FedRound>>;
    /// A round by number.
    fn round(&self, id: i64) -> Result<FedRound>;
}
