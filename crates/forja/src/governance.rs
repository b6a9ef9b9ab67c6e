//! `forja auditors add|list|activate|deactivate`, `forja audit vote|show`
//! and `forja ledger verify|show`: governance on the data directory (or, for
//! a vote, through a running node's API with `--url`).

use crate::admin;
use crate::api::Api;
use crate::args::{AuditCommand, AuditorsCommand, DataDirArgs, LedgerCommand, VoteArgs};
use anyhow::{bail, Context, Result};
use forja_control::governance::{Audit, SignedVote};
use forja_core::identity::NodeKey;
use forja_store::prelude::*;
use std::process::ExitCode;
use std::time::Duration;

fn print_auditor(a: &forja_store::Auditor) {
    println!(
        "{:<20} {:<8} {:>10}  {}  {}",
        a.name,
        if a.active { "active" } else { "inactive" },
        a.reputation,
        a.public_key,
        a.id
    );
}

pub fn auditors(c: AuditorsCommand) -> Result<ExitCode> {
    let set = |auditor: &str, data: &DataDirArgs, active: bool| -> Result<()> {
        let store = admin::open(data, Duration::from_secs(10))?;
        print_auditor(&store.set_auditor_active(auditor, active, "cli")?);
        Ok(())
    };
    match &c {
        AuditorsCommand::Add { name, public_key, reputation, data } => {
            let store = admin::open(data, Duration::from_secs(10))?;
            print_auditor(&store.add_auditor(name, public_key, *reputation)?);
        }
        AuditorsCommand::List { data } => {
            let store = admin::open(data, Duration::from_secs(5))?;
            println!(
                "{:<20} {:<8} {:>10}  {:<64}  id",
                "name", "state", "reputation", "public key"
            );
            for a in store.auditors()? {
                print_auditor(&a);
            }
        }
        AuditorsCommand::Activate { auditor, data } => set(auditor, data, true)?,
        AuditorsCommand::Deactivate { auditor, data } => set(auditor, data, false)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_audit(a: &Audit) {
    let t = &a.tally;
    println!(
        "version {}: {} ({})",
        a.version.id,
        a.version.status().as_str(),
        a.version.lineage.status_reason.as_deref().unwrap_or("-")
    );
    println!(
        "votes {} of {} needed, {} approve (share {:.3}, needed {:.3}{}), {} auditor(s) yet to vote, deadline {}: {:?}",
        t.votes,
        t.min_votes,
        t.approvals,
        t.approve_share,
        t.approve_fraction,
        if t.weighted { ", by reputation" } else { "" },
        t.outstanding,
        t.deadline,
        t.verdict
    );
    for v in &a.votes {
        println!(
            "  {:<20} {:<8} report {} signed_at {}",
            v.auditor,
            if v.vote.approve { "approve" } else { "reject" },
            v.vote.report_sha256,
            v.vote.signed_at
        );
    }
}

pub fn audit(c: AuditCommand) -> Result<ExitCode> {
    match c {
        AuditCommand::Vote(a) => vote(a),
        AuditCommand::Show { version, tenant, data } => {
            let (control, rt) = crate::registry::control(&data)?;
            let t = control.store.tenant_by_name(&tenant)?;
            let v = control.store.version_or_alias(&t.id, &version)?;
            print_audit(&rt.block_on(control.audit(&t, &v.id))?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Signs the vote message for `version` with the auditor's key.
fn signed(key: &NodeKey, version: &str, approve: bool, report: &str) -> SignedVote {
    let at = admin::now();
    let msg = forja_store::vote_message(version, approve, report, at);
    SignedVote {
        auditor: key.public_hex(),
        approve,
        report_sha256: report.to_string(),
        signed_at: at,
        signature: key.sign_hex(&msg),
    }
}

fn vote(a: VoteArgs) -> Result<ExitCode> {
    let key = NodeKey::load(&a.key)?;
    let approve = a.approve;
    let Some(url) = &a.url else {
        let tenant = a.tenant.as_deref().context("--tenant names the version's tenant")?;
        let (control, rt) = crate::registry::control(&a.data)?;
        let t = control.store.tenant_by_name(tenant)?;
        let v = control.store.version_or_alias(&t.id, &a.version)?;
        let report = match a.report.clone().or(v.lineage.eval_sha256.clone()) {
            Some(r) => r,
            None => bail!("version {} has no evaluation report to review", v.id),
        };
        let audit = rt.block_on(control.vote(&t, &v.id, signed(&key, &v.id, approve, &report)))?;
        print_audit(&audit);
        return Ok(ExitCode::SUCCESS);
    };
    let api_key = a.api_key.as_deref().context("--api-key (or FORJA_API_KEY) for --url")?;
    let api = Api::new(url, api_key, Duration::from_secs(60)).for_tenant(a.tenant.as_deref());
    let v = api.get(&format!("/v1/registry/models/{}", a.version))?;
    let id = v["id"].as_str().context("the node's answer has no version id")?.to_string();
    let report = match a.report.clone().or(v["eval_sha256"].as_str().map(str::to_string)) {
        Some(r) => r,
        None => bail!("version {id} has no evaluation report to review"),
    };
    let s = signed(&key, &id, approve, &report);
    let body = serde_json::json!({
        "auditor": s.auditor, "decision": if approve { "approve" } else { "reject" },
        "report_sha256": s.report_sha256, "signed_at": s.signed_at, "signature": s.signature,
    });
    let out = api.post(&format!("/v1/registry/models/{id}/votes"), body)?;
    println!(
        "version {id}: {} ({})",
        out["status"].as_str().unwrap_or("-"),
        out["status_reason"].as_str().unwrap_or("-")
    );
    println!("tally: {}", out["tally"]);
    Ok(ExitCode::SUCCESS)
}

pub fn ledger(c: LedgerCommand) -> Result<ExitCode> {
    match c {
        LedgerCommand::Verify { head, data } => {
            let store = admin::open(&data, Duration::from_secs(5))?;
            match store.verify_ledger(head.as_deref())? {
                Err(why) => {
                    eprintln!("ledger broken: {why}");
                    Ok(ExitCode::FAILURE)
                }
                Ok(h) => {
                    println!(
                        "ok: {} entries, head {}, signed by {}",
                        h.entries,
                        h.hash,
                        store.node_public_key()
                    );
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        LedgerCommand::Show { after, limit, data } => {
            let store = admin::open(&data, Duration::from_secs(5))?;
            for e in store.ledger(after, limit)? {
                println!("{}", serde_json::to_string(&e)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
