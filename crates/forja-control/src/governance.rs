//! Governance: auditors vote on versions that passed the gate, and a
//! quorum decides.
//!
//! A tenant's gate policy (`[audit] required = true`) sends a version that
//! passed to `awaiting_audit` instead of promoting it. Each active auditor
//! may vote once, signing [`forja_store::vote_message`] (the version, the
//! decision, the sha256 of the evaluation report read, the signing time)
//! with its ed25519 key. [`Control::vote`] checks the signature against the
//! registered key, that the report is the version's, and that the signing
//! time is within [`MAX_SKEW_S`] of the node's clock; the store refuses a
//! second vote of an auditor (or a replayed signature) and a version that
//! no longer awaits audit.
//!
//! [`tally`] decides: nothing before `min_votes` votes of active auditors;
//! then approved when the approving share (of votes, or of reputation with
//! `weighted`) reaches `approve_fraction`, rejected when it cannot reach it
//! even if every active auditor yet to vote approves, pending otherwise.
//! A version still pending at its deadline is rejected (fail-closed): a
//! quorum that never forms never ships a model. The tick re-tallies every
//! waiting version, so a decision lost to a crash after the vote was
//! stored is taken on the next tick.
//!
//! Settlement (slashing) happens in the store, in the rollback's own
//! transaction: see [`forja_store::governance`].

use crate::registry::policy_of;
use crate::{Control, ControlError, Result};
use forja_eval::AuditPolicy;
use forja_store::{Auditor, ModelVersion, NewVote, Tenant, Timestamp, VersionStatus, Vote};
use serde::{Deserialize, Serialize};

/// The actor name governance's promotions and rejections are recorded under.
pub const GOVERNANCE_ACTOR: &str = "governance";
/// Largest difference between a vote's signing time and the node's clock.
pub const MAX_SKEW_S: i64 = 600;

/// A vote as an auditor sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedVote {
    /// The auditor: id, name or public key.
    pub auditor: String,
    /// Approve or reject.
    pub approve: bool,
    /// sha256 of the evaluation report reviewed.
    pub report_sha256: String,
    /// Unix seconds when signed.
    pub signed_at: Timestamp,
    /// Ed25519 signature of the vote message, hex.
    pub signature: String,
}

/// Where a version's audit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not decided yet.
    Pending,
    /// The quorum approves.
    Approved,
    /// The quorum rejects (or cannot approve any more).
    Rejected,
}

/// The count of a version's votes under a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Votes of auditors active now.
    pub votes: u32,
    /// Of which approve.
    pub approvals: u32,
    /// Votes needed before a decision.
    pub min_votes: u32,
    /// The approving share (of votes, or of reputation when weighted).
    pub approve_share: f64,
    /// The share needed.
    pub approve_fraction: f64,
    /// Whether shares are by reputation.
    pub weighted: bool,
    /// Active auditors who have not voted.
    pub outstanding: u32,
    /// When the version is rejected if still pending.
    pub deadline: Timestamp,
    /// The decision.
    pub verdict: Verdict,
}

/// Counts `votes` on a version registered at `since`, given every
/// auditor's current state. Votes of auditors inactive now do not count.
pub fn tally(
    policy: &AuditPolicy,
    votes: &[Vote],
    auditors: &[Auditor],
    since: Timestamp,
) -> Tally {
    let active = |id: &str| auditors.iter().find(|a| a.id == id && a.active);
    let counted: Vec<(&Vote, &Auditor)> =
        votes.iter().filter_map(|v| active(&v.vote.auditor_id).map(|a| (v, a))).collect();
    let weight = |a: &Auditor| if policy.weighted { a.reputation.max(0) as f64 } else { 1.0 };
    let total: f64 = counted.iter().map(|(_, a)| weight(a)).sum();
    let approving: f64 =
        counted.iter().filter(|(v, _)| v.vote.approve).map(|(_, a)| weight(a)).sum();
    let outstanding: Vec<&Auditor> = auditors
        .iter()
        .filter(|a| a.active && !votes.iter().any(|v| v.vote.auditor_id == a.id))
        .collect();
    let rest: f64 = outstanding.iter().map(|a| weight(a)).sum();
    let share = if total > 0.0 { approving / total } else { 0.0 };
    let best = if total + rest > 0.0 { (approving + rest) / (total + rest) } else { 0.0 };
    let eps = 1e-9;
    let n = counted.len() as u32;
    let verdict = if n >= policy.min_votes && share + eps >= policy.approve_fraction {
        Verdict::Approved
    } else if n >= policy.min_votes && best + eps < policy.approve_fraction {
        Verdict::Rejected
    } else {
        Verdict::Pending
    };
    Tally {
        votes: n,
        approvals: counted.iter().filter(|(v, _)| v.vote.approve).count() as u32,
        min_votes: policy.min_votes,
        approve_share: share,
        approve_fraction: policy.approve_fraction,
        weighted: policy.weighted,
        outstanding: outstanding.len() as u32,
        deadline: since.saturating_add(policy.deadline_s.min(i64::MAX as u64) as i64),
        verdict,
    }
}

/// A version's audit: its votes and their count.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    /// The version (its status after the count).
    pub version: ModelVersion,
    /// Its votes, oldest first.
    pub votes: Vec<Vote>,
    /// Their count under the tenant's policy.
    pub tally: Tally,
}

impl Control {
    /// Registers an auditor (an operator's act).
    pub async fn add_auditor(
        &self,
        name: &str,
        public_key: &str,
        reputation: i64,
    ) -> Result<Auditor> {
        let (store, n, k) = (self.store.clone(), name.to_string(), public_key.to_string());
        crate::control::blocking(move || Ok(store.add_auditor(&n, &k, reputation)?)).await
    }

    /// A version's votes and their count now.
    pub async fn audit(&self, tenant: &Tenant, version: &str) -> Result<Audit> {
        let (store, t, id) = (self.store.clone(), tenant.clone(), version.to_string());
        crate::control::blocking(move || {
            let v = store.model_version(&t.id, &id)?;
            let votes = store.votes(&t.id, &id)?;
            let tally = tally(&policy_of(&t).audit, &votes, &store.auditors()?, v.created_at);
            Ok(Audit { version: v, votes, tally })
        })
        .await
    }

    /// Checks and records an auditor's vote on a version, then counts the
    /// votes and promotes or rejects the version when the quorum decides.
    pub async fn vote(&self, tenant: &Tenant, version: &str, vote: SignedVote) -> Result<Audit> {
        let (store, t, id) = (self.store.clone(), tenant.clone(), version.to_string());
        crate::control::blocking(move || {
            let v = store.model_version(&t.id, &id)?;
            if v.status() != VersionStatus::AwaitingAudit {
                return Err(ControlError::conflict(format!(
                    "version {id} is {}, not awaiting audit: votes are closed",
                    v.status().as_str()
                )));
            }
            let a = match store.auditor(&vote.auditor) {
                Err(forja_store::StoreError::NotFound { .. }) => {
                    return Err(ControlError::Forbidden(format!(
                        "`{}` is not a registered auditor",
                        crate::clip(&vote.auditor, 80)
                    )))
                }
                r => r?,
            };
            let msg = forja_store::vote_message(&id, vote.approve, &vote.report_sha256, vote.signed_at);
            forja_core::identity::verify(&a.public_key, &msg, &vote.signature).map_err(|e| {
                ControlError::Forbidden(format!("the vote is not signed by auditor `{}`'s key: {e}", a.name))
            })?;
            let report = v.lineage.eval_sha256.as_deref().unwrap_or("");
            if !vote.report_sha256.eq_ignore_ascii_case(report) {
                return Err(ControlError::conflict(format!(
                    "the vote is about report {}, version {id}'s evaluation report is {report}: review the current report and sign again",
                    crate::clip(&vote.report_sha256, 64)
                )));
            }
            let skew = vote.signed_at - store.now();
            if skew.abs() > MAX_SKEW_S {
                return Err(ControlError::invalid(
                    "signed_at",
                    format!(
                        "the vote was signed {}s {} the node's clock (at most {MAX_SKEW_S}s): check the clock and sign again",
                        skew.abs(),
                        if skew > 0 { "ahead of" } else { "behind" }
                    ),
                ));
            }
            store.record_vote(&NewVote {
                tenant_id: t.id.clone(),
                version_id: id.clone(),
                auditor_id: a.id.clone(),
                approve: vote.approve,
                report_sha256: report.to_string(),
                signed_at: vote.signed_at,
                signature: vote.signature.to_ascii_lowercase(),
            })?;
            Ok(())
        })
        .await?;
        self.settle_audit(tenant, version).await
    }

    /// Counts a waiting version's votes and acts on the verdict (and on a
    /// passed deadline); the audit as it stands after. Idempotent: a
    /// version decided already is left.
    async fn settle_audit(&self, tenant: &Tenant, version: &str) -> Result<Audit> {
        let a = self.audit(tenant, version).await?;
        if a.version.status() != VersionStatus::AwaitingAudit {
            return Ok(a);
        }
        let policy = policy_of(tenant);
        let t = &a.tally;
        let share = |t: &Tally| {
            format!(
                "{} of {} vote(s) approve{}",
                t.approvals,
                t.votes,
                if t.weighted {
                    format!(", {:.0}% of their reputation", 100.0 * t.approve_share)
                } else {
                    String::new()
                }
            )
        };
        let (status, reason) = match t.verdict {
            Verdict::Approved if policy.auto_promote => {
                // Approved is not enough: the adapter must still be intact.
                self.verify_adapter(&a.version).await?;
                let why = format!("approved by the auditors: {}", share(t));
                let (store, tid, id) = (self.store.clone(), tenant.id.clone(), version.to_string());
                let m = crate::control::blocking(move || {
                    Ok(store.promote(&tid, &id, GOVERNANCE_ACTOR, &why)?)
                })
                .await;
                match m {
                    Ok(m) => self.published_move(&tenant.id, &m, true),
                    // The tick and a vote (or two votes) settled it at the
                    // same time and the other promoted first: decided, not
                    // an error for this caller.
                    Err(ControlError::Store(forja_store::StoreError::Conflict(why))) => {
                        let now = self.audit(tenant, version).await?;
                        if now.version.status() == VersionStatus::AwaitingAudit {
                            return Err(ControlError::conflict(why));
                        }
                        return Ok(now);
                    }
                    Err(e) => return Err(e),
                }
                return self.audit(tenant, version).await;
            }
            Verdict::Approved => (
                VersionStatus::Candidate,
                format!("approved by the auditors ({}); waiting for a manual promotion", share(t)),
            ),
            Verdict::Rejected => {
                (VersionStatus::Rejected, format!("rejected by the auditors: {}", share(t)))
            }
            Verdict::Pending if self.store.now() >= t.deadline => (
                VersionStatus::Rejected,
                format!(
                    "no audit decision by the deadline: {} of the {} votes needed ({}); rejected",
                    t.votes,
                    t.min_votes,
                    share(t)
                ),
            ),
            Verdict::Pending => return Ok(a),
        };
        let (store, tid, id) = (self.store.clone(), tenant.id.clone(), version.to_string());
        let version = crate::control::blocking(move || {
            Ok(store.set_version_status(&tid, &id, status, &reason, GOVERNANCE_ACTOR)?)
        })
        .await?;
        Ok(Audit { version, ..a })
    }

    /// Decides every waiting version whose votes or deadline allow it: the
    /// tick's part of governance.
    pub async fn audit_tick(&self) -> Result<()> {
        let store = self.store.clone();
        let waiting = crate::control::blocking(move || {
            let mut out = Vec::new();
            for v in store.awaiting_audit()? {
                out.push((store.tenant(&v.lineage.tenant_id)?, v));
            }
            Ok(out)
        })
        .await?;
        for (tenant, v) in waiting {
            if let Err(e) = self.settle_audit(&tenant, &v.id).await {
                tracing::warn!(version = %v.id, "audit: {e}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auditor(id: &str, reputation: i64, active: bool) -> Auditor {
        Auditor {
            id: id.into(),
            name: id.into(),
            public_key: String::new(),
            reputation,
            active,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn vote(auditor: &str, approve: bool) -> Vote {
        Vote {
            id: 0,
            vote: NewVote {
                tenant_id: "t".into(),
                version_id: "v".into(),
                auditor_id: auditor.into(),
                approve,
                report_sha256: String::new(),
                signed_at: 0,
                signature: String::new(),
            },
            auditor: auditor.into(),
            reputation: 100,
            created_at: 0,
        }
    }

    #[test]
    fn quorum_rules() {
        let p = AuditPolicy::default();
        let three = [auditor("a", 100, true), auditor("b", 100, true), auditor("c", 100, true)];
        let verdict =
            |votes: &[Vote], who: &[Auditor], p: &AuditPolicy| tally(p, votes, who, 0).verdict;
        // (votes, verdict) with three active auditors and 2/3 to approve.
        for (votes, want) in [
            (vec![vote("a", true), vote("b", true)], Verdict::Pending),
            (vec![vote("a", true), vote("b", true), vote("c", false)], Verdict::Approved),
            (vec![vote("a", true), vote("b", false), vote("c", false)], Verdict::Rejected),
            (vec![vote("a", true), vote("b", true), vote("c", true)], Verdict::Approved),
        ] {
            assert_eq!(verdict(&votes, &three, &p), want, "{votes:?}");
        }
        // Five auditors, 1 of 3 approving: at best 3 of 5, under 2/3.
        let five = [&three[..], &[auditor("d", 100, true), auditor("e", 100, true)]].concat();
        let v = [vote("a", true), vote("b", false), vote("c", false)];
        assert_eq!(verdict(&v, &five, &p), Verdict::Rejected);
        // 2 of 3 with two to come: already 2/3.
        let v = [vote("a", true), vote("b", true), vote("c", false)];
        assert_eq!(verdict(&v, &five, &p), Verdict::Approved);
        // 1 approve, 2 reject, 1 to come at fraction 0.5: 2/4 still possible.
        let half = AuditPolicy { approve_fraction: 0.5, ..p.clone() };
        let four = &five[..4];
        let one_of_three = [vote("a", true), vote("b", false), vote("c", false)];
        assert_eq!(verdict(&one_of_three, four, &half), Verdict::Pending);
        // A deactivated auditor's vote no longer counts.
        let slashed = [auditor("a", 100, true), auditor("b", 40, false), auditor("c", 100, true)];
        assert_eq!(
            verdict(&[vote("a", true), vote("b", true), vote("c", false)], &slashed, &p),
            Verdict::Pending
        );
        // Weighted: a high-reputation rejecter outweighs two low approvers.
        let w = AuditPolicy { weighted: true, ..p.clone() };
        let rep = [auditor("a", 50, true), auditor("b", 50, true), auditor("c", 100, true)];
        let t = tally(&w, &[vote("a", true), vote("b", true), vote("c", false)], &rep, 10);
        assert_eq!(
            (t.verdict, t.approve_share, t.deadline),
            (Verdict::Rejected, 0.5, 10 + p.deadline_s as i64)
        );
    }
}
