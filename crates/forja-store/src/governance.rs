//! Governance and the ledger's part of the store: auditors (ed25519 keys
//! with a reputation), their signed votes on model versions, slashing, and
//! the hash-chained ledger every federation and governance event is
//! appended to.
//!
//! The store checks what it can check in one transaction (an active
//! auditor, one vote per auditor and version, a version that awaits
//! audit) and appends the ledger entry in the same transaction as the
//! change it records, so the ledger never says what did not happen. The
//! signature of a vote and its report hash are checked by the control
//! plane before it reaches the store.
//!
//! A ledger entry's hash is the sha256 of [`entry_preimage`]: its sequence
//! number, the previous entry's hash, its time, kind, tenant and body (the
//! stored JSON text, byte for byte). The node signs the hash with its key.
//! [`LedgerVerifier`] recomputes the chain: an edited entry no longer
//! hashes to its `hash`; an inserted or deleted one breaks the sequence
//! and the next entry's `prev_hash`; an entry re-signed by another key is
//! not the node's. Deleting the newest entries leaves a valid shorter
//! chain: only a head kept elsewhere (`forja ledger verify --head`) tells.

use crate::{Result, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Reputation a new auditor starts with.
pub const START_REPUTATION: i64 = 100;
/// Reputation is kept between 0 and this.
pub const MAX_REPUTATION: i64 = 100;
/// What an auditor who approved a version later rolled back loses (seed
/// 000's `SLASH_AMOUNT`).
pub const SLASH: i64 = 10;
/// What an auditor who rejected that version gains.
pub const REWARD: i64 = 5;
/// Below this reputation an auditor is deactivated (its votes no longer
/// count, it can vote no more).
pub const MIN_REPUTATION: i64 = 50;
/// The `prev_hash` of the first ledger entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A registered auditor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Auditor {
    /// `aud-…`.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// 0–100; starts at [`START_REPUTATION`].
    pub reputation: i64,
    /// Whether its votes count.
    pub active: bool,
    /// Registration time.
    pub created_at: Timestamp,
    /// Last change (slash, reward, (de)activation).
    pub updated_at: Timestamp,
}

/// A vote to record (its signature already checked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewVote {
    /// Owner of the version.
    pub tenant_id: String,
    /// The version voted on.
    pub version_id: String,
    /// The auditor.
    pub auditor_id: String,
    /// Approve (`true`) or reject.
    pub approve: bool,
    /// sha256 of the evaluation report reviewed.
    pub report_sha256: String,
    /// When the auditor signed (unix seconds, the auditor's clock).
    pub signed_at: Timestamp,
    /// The auditor's signature, hex.
    pub signature: String,
}

/// A recorded vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// Sequence number.
    pub id: i64,
    /// What was signed.
    #[serde(flatten)]
    pub vote: NewVote,
    /// The auditor's name.
    pub auditor: String,
    /// The auditor's reputation when it voted.
    pub reputation: i64,
    /// When it was recorded.
    pub created_at: Timestamp,
}

/// One entry of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// 1, 2, … without gaps.
    pub seq: i64,
    /// `auditor_added`, `vote`, `promoted`, `rolled_back`, `slashed`, …
    pub kind: String,
    /// The tenant concerned, if any.
    pub tenant_id: Option<String>,
    /// What happened (JSON text, hashed as stored).
    pub body: String,
    /// When.
    pub created_at: Timestamp,
    /// The previous entry's hash ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// sha256 of [`entry_preimage`], hex.
    pub hash: String,
    /// The signing node's public key, hex.
    pub signer: String,
    /// The node's signature of `hash`, hex.
    pub signature: String,
}

/// The bytes an auditor signs to vote: the version, the decision, the
/// sha256 of the evaluation report reviewed and when it was signed. The
/// version id makes a vote for one version useless for another; the report
/// hash ties it to what the auditor read.
pub fn vote_message(
    version_id: &str,
    approve: bool,
    report_sha256: &str,
    signed_at: Timestamp,
) -> Vec<u8> {
    format!(
        "forja-vote-v1\n{version_id}\n{}\n{report_sha256}\n{signed_at}",
        if approve { "approve" } else { "reject" }
    )
    .into_bytes()
}

/// The bytes an entry's hash covers.
pub fn entry_preimage(
    seq: i64,
    prev_hash: &str,
    created_at: Timestamp,
    kind: &str,
    tenant: Option<&str>,
    body: &str,
) -> Vec<u8> {
    format!(
        "forja-ledger-v1\n{seq}\n{prev_hash}\n{created_at}\n{kind}\n{}\n{body}",
        tenant.unwrap_or("")
    )
    .into_bytes()
}

/// The hash of an entry, hex.
pub fn entry_hash(
    seq: i64,
    prev_hash: &str,
    created_at: Timestamp,
    kind: &str,
    tenant: Option<&str>,
    body: &str,
) -> String {
    hex::encode(Sha256::digest(entry_preimage(seq, prev_hash, created_at, kind, tenant, body)))
}

/// Where a ledger's chain ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerHead {
    /// Entries checked.
    pub entries: i64,
    /// The newest entry's hash ([`GENESIS`] for an empty ledger).
    pub hash: String,
}

/// Checks a ledger entry by entry, oldest first, without holding it all:
/// sequence, chain, hashes and the node's signatures.
#[derive(Debug, Clone)]
pub struct LedgerVerifier {
    signers: Vec<String>,
    prev: String,
    next: i64,
}

impl LedgerVerifier {
    /// A verifier accepting entries signed by `signers` (public keys, hex).
    pub fn new(signers: &[String]) -> Self {
        LedgerVerifier { signers: signers.to_vec(), prev: GENESIS.into(), next: 1 }
    }

    /// Checks the next entry; `Err` names it and says how it breaks.
    pub fn push(&mut self, e: &LedgerEntry) -> std::result::Result<(), String> {
        if e.seq != self.next {
            return Err(format!(
                "entry {}: expected sequence number {} (an entry was deleted or inserted)",
                e.seq, self.next
            ));
        }
        if e.prev_hash != self.prev {
            return Err(format!(
                "entry {}: prev_hash does not match entry {}'s hash (the chain was cut or re-ordered)",
                e.seq,
                e.seq - 1
            ));
        }
        let h =
            entry_hash(e.seq, &e.prev_hash, e.created_at, &e.kind, e.tenant_id.as_deref(), &e.body);
        if h != e.hash {
            return Err(format!("entry {}: its content does not hash to its hash (edited)", e.seq));
        }
        if !self.signers.iter().any(|s| s.eq_ignore_ascii_case(&e.signer)) {
            return Err(format!("entry {}: signed by {}, not by this node's key", e.seq, e.signer));
        }
        forja_core::identity::verify(&e.signer, e.hash.as_bytes(), &e.signature)
            .map_err(|err| format!("entry {}: {err}", e.seq))?;
        self.prev = e.hash.clone();
        self.next += 1;
        Ok(())
    }

    /// Where the chain checked so far ends.
    pub fn head(&self) -> LedgerHead {
        LedgerHead { entries: self.next - 1, hash: self.prev.clone() }
    }
}

/// Checks a whole ledger, oldest first (see [`LedgerVerifier`]).
pub fn verify_ledger(
    entries: &[LedgerEntry],
    signers: &[String],
) -> std::result::Result<LedgerHead, String> {
    let mut v = LedgerVerifier::new(signers);
    for e in entries {
        v.push(e)?;
    }
    Ok(v.head())
}

/// What a rollback did to the auditors who voted on the version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settlement {
    /// The auditor.
    pub auditor: String,
    /// Reputation change (−[`SLASH`] or +[`REWARD`], within 0–100).
    pub delta: i64,
    /// Reputation after.
    pub reputation: i64,
    /// Whether this change deactivated it.
    pub deactivated: bool,
}

/// Auditors, votes and the ledger: implemented by every store.
pub trait Governance: Send + Sync {
    /// Checks the whole ledger against this node's key, a page at a time;
    /// with `head` (a hash recorded earlier), that entry must still be in
    /// the chain (what tells a cut tail from a shorter valid ledger).
    fn verify_ledger(&self, head: Option<&str>) -> Result<std::result::Result<LedgerHead, String>> {
        let mut v = LedgerVerifier::new(&[self.node_public_key()]);
        let head = head.map(|h| h.trim().to_ascii_lowercase());
        let mut seen = head.is_none();
        let mut after = 0;
        loop {
            let page = self.ledger(after, 10_000)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in &page {
                if let Err(why) = v.push(e) {
                    return Ok(Err(why));
                }
                seen = seen || head.as_deref() == Some(e.hash.as_str());
            }
        }
        Ok(match head {
            Some(h) if !seen => Err(format!(
                "head {h} recorded earlier is no longer in the chain (entries were deleted from its end, or it is another ledger)"
            )),
            _ => Ok(v.head()),
        })
    }

    /// Registers an auditor (`Conflict` if the name or key is taken).
    fn add_auditor(&self, name: &str, public_key: &str, reputation: i64) -> Result<Auditor>;
    /// Every auditor, by name.
    fn auditors(&self) -> Result<Vec<Auditor>>;
    /// An auditor by id, name or public key.
    fn auditor(&self, key: &str) -> Result<Auditor>;
    /// Activates or deactivates an auditor (an operator's decision).
    fn set_auditor_active(&self, key: &str, active: bool, actor: &str) -> Result<Auditor>;
    /// Records a vote: the version must await audit, the auditor be
    /// active and not have voted on it (`Conflict` otherwise).
    fn record_vote(&self, vote: &NewVote) -> Result<Vote>;
    /// The votes on a version, oldest first.
    fn votes(&self, tenant_id: &str, version_id: &str) -> Result<Vec<Vote>>;
    /// Versions awaiting audit, every tenant's, oldest first.
    fn awaiting_audit(&self) -> Result<Vec<crate::ModelVersion>>;
    /// Appends an event to the ledger.
    fn append_ledger(
        &self,
        kind: &str,
        tenant_id: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<LedgerEntry>;
    /// Ledger entries after `after`, oldest first, at most `limit`.
    fn ledger(&self, after: i64, limit: usize) -> Result<Vec<LedgerEntry>>;
    /// The public key this store signs its ledger with.
    fn node_public_key(&self) -> String;
}
