//! Governance over the HTTP API, with real training on a tiny pre-trained
//! model: a tenant whose policy requires audit gets versions that wait in
//! `awaiting_audit`; three auditors vote with ed25519 signatures. Forged,
//! replayed, stale, skewed and malformed votes are refused with the
//! reason; 2 of 3 approvals promote, 1 of 3 rejects; a rollback slashes
//! the approvers and deactivates one under the threshold; a version with
//! no quorum by its deadline is rejected; the ledger records it all and
//! its verification finds an edit made behind the node's back.

use crate::common;

use common::learning::{iteration, pretrained, settings, upload_golden, version_of};
use common::Bed;
use forja_core::identity::NodeKey;
use serde_json::{json, Value};
use std::time::Duration;

const LENIENT: &str = "guarded = [\"wer\"]\nmin_improvement = 0.0\nmax_regression = 1.0\nprobe_max_drop = 1.0\nprobe_max_logprob_drop = 100.0\n";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A vote body signed by `key`, in the name of `auditor`.
fn vote(
    key: &NodeKey,
    auditor: &str,
    version: &str,
    approve: bool,
    report: &str,
    at: i64,
) -> Value {
    let sig = key.sign_hex(&forja_store::vote_message(version, approve, report, at));
    json!({ "auditor": auditor, "decision": if approve { "approve" } else { "reject" },
        "report_sha256": report, "signed_at": at, "signature": sig })
}

#[test]
fn auditors_decide_promotion_and_answer_for_it() {
    let b = Bed::with_model(pretrained(), |c| c.workers = 1);
    let policy = format!("{LENIENT}[audit]\nrequired = true\n");
    let key = b.tenant("acme", settings(Some(&policy), 2, 20.0));
    upload_golden(&b, &key);
    let names = ["ana", "bo", "cy"];
    let keys: Vec<NodeKey> = names.iter().map(|_| NodeKey::generate()).collect();
    for (i, (n, k)) in names.iter().zip(&keys).enumerate() {
        let rep = if i == 1 { 55 } else { 100 };
        let r = b.post(
            "/v1/admin/auditors",
            &b.admin,
            json!({ "name": n, "public_key": k.public_hex(), "reputation": rep }),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Only an admin registers auditors; tenants see them.
    let r = b.post(
        "/v1/admin/auditors",
        &key,
        json!({ "name": "x", "public_key": keys[0].public_hex() }),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(b.get("/v1/registry/auditors", &key).body["data"].as_array().unwrap().len(), 3);

    // Version 1 passes the gate and waits.
    let v1 = version_of(&b, &key, &iteration(&b, &key, 1000, 24)).unwrap();
    assert_eq!(v1["status"], "awaiting_audit", "{}", v1["status_reason"]);
    let id = v1["id"].as_str().unwrap();
    let report = v1["eval_sha256"].as_str().unwrap();
    let votes = format!("/v1/registry/models/{id}/votes");
    let r = b.post(&format!("/v1/registry/models/{id}/promote"), &key, json!({}));
    assert_eq!(r.status, 409, "a tenant cannot skip the audit: {}", r.body);
    assert!(r.message().contains("awaits its auditors"), "{}", r.message());

    // Bad votes, each refused with its reason; none is recorded.
    let forger = NodeKey::generate();
    for (body, status, want) in [
        (vote(&forger, "ana", id, true, report, now()), 403, "not signed by auditor `ana`"),
        (vote(&forger, "mallory", id, true, report, now()), 403, "not a registered auditor"),
        (vote(&keys[0], "ana", id, true, &"0".repeat(64), now()), 409, "review the current report"),
        (vote(&keys[0], "ana", id, true, report, now() - 3600), 400, "behind the node's clock"),
        (vote(&keys[0], "ana", "another-version", true, report, now()), 403, "not signed"),
        (
            json!({ "auditor": "ana", "decision": "maybe", "report_sha256": report, "signed_at": 1, "signature": "00" }),
            400,
            "`decision`",
        ),
        (json!({ "auditor": "ana" }), 400, "invalid JSON body"),
    ] {
        let r = b.post(&votes, &key, body.clone());
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.body);
        assert!(r.message().contains(want), "{body}: {}", r.message());
    }
    assert_eq!(b.get(&votes, &key).body["tally"]["votes"], 0);

    // ana and bo approve, ana's vote replayed is refused, cy rejects: 2 of 3.
    let ana = vote(&keys[0], "ana", id, true, report, now());
    let r = b.post(&votes, &key, ana.clone());
    assert_eq!(
        (r.status.as_u16(), &r.body["tally"]["verdict"]),
        (200, &json!("pending")),
        "{}",
        r.body
    );
    let r = b.post(&votes, &key, ana);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.message().contains("already voted"), "{}", r.message());
    let r = b.post(&votes, &key, vote(&keys[1], "bo", id, true, report, now()));
    assert_eq!(r.body["tally"]["verdict"], "pending", "2 votes < 3: {}", r.body);
    let r = b.post(&votes, &key, vote(&keys[2], &keys[2].public_hex(), id, false, report, now()));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["tally"]["verdict"], "approved", "{}", r.body);
    assert_eq!(r.body["status"], "promoted", "{}", r.body);
    assert!(r.body["status_reason"].as_str().unwrap().contains("2 of 3 vote(s) approve"));
    let champion = b.get("/v1/registry/models/champion", &key).body;
    assert_eq!(champion["id"], id);
    assert_eq!(champion["promoted_by"], "governance");
    let r = b.post(&votes, &key, vote(&keys[2], "cy", id, true, report, now()));
    assert_eq!(r.status, 409, "votes are closed: {}", r.body);

    // Version 2: one approval of three rejects it.
    let v2 = version_of(&b, &key, &iteration(&b, &key, 2000, 24)).unwrap();
    let (id2, report2) = (v2["id"].as_str().unwrap(), v2["eval_sha256"].as_str().unwrap());
    assert_eq!(v2["status"], "awaiting_audit");
    let votes2 = format!("/v1/registry/models/{id2}/votes");
    for (i, approve) in [(0, true), (1, false), (2, false)] {
        let r = b.post(&votes2, &key, vote(&keys[i], names[i], id2, approve, report2, now()));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let a2 = b.get(&votes2, &key).body;
    assert_eq!(
        (a2["status"].as_str(), a2["tally"]["verdict"].as_str()),
        (Some("rejected"), Some("rejected")),
        "{a2}"
    );
    assert_eq!(b.get("/v1/registry/models/champion", &key).body["id"], id, "still version 1");

    // Version 1 regresses in production: rolled back, its approvers pay.
    let r = b.post(
        "/v1/registry/rollback",
        &key,
        json!({ "to_base": true, "reason": "live feedback regressed" }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let auditors: Vec<(String, i64, bool)> = b.get("/v1/registry/auditors", &key).body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().into(),
                a["reputation"].as_i64().unwrap(),
                a["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        auditors,
        [("ana".into(), 90, true), ("bo".into(), 45, false), ("cy".into(), 100, true)]
    );

    // Version 3: bo is out, so two votes cannot make a quorum of three; a
    // short deadline rejects it (fail-closed).
    let short = format!("{LENIENT}[audit]\nrequired = true\ndeadline_s = 5\n");
    let t = b.node.store.tenant_by_name("acme").unwrap();
    b.node.store.edit_settings(&t.id, &mut |s| s.gate_policy = Some(short.clone())).unwrap();
    let v3 = version_of(&b, &key, &iteration(&b, &key, 3000, 24)).unwrap();
    assert_eq!(v3["status"], "awaiting_audit", "{}", v3["status_reason"]);
    let id3 = v3["id"].as_str().unwrap().to_string();
    let r = b.post(
        &format!("/v1/registry/models/{id3}/votes"),
        &key,
        vote(&keys[1], "bo", &id3, true, v3["eval_sha256"].as_str().unwrap(), now()),
    );
    assert_eq!(r.status, 409, "bo is inactive: {}", r.body);
    assert!(r.message().contains("not active"), "{}", r.message());
    b.wait(Duration::from_secs(30), "the audit deadline", || {
        b.get(&format!("/v1/registry/models/{id3}"), &key).body["status"] == "rejected"
    });
    let v3 = b.get(&format!("/v1/registry/models/{id3}"), &key).body;
    assert!(
        v3["status_reason"].as_str().unwrap().contains("no audit decision by the deadline"),
        "{v3}"
    );

    // The ledger has it all, and its chain holds.
    let l = b.get("/v1/admin/ledger?limit=1000", &b.admin).body;
    let kinds: Vec<&str> =
        l["data"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in
        ["auditor_added", "audit_opened", "vote", "promoted", "audit_closed", "demoted", "slashed"]
    {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "vote").count(), 6);
    assert_eq!(b.get("/v1/admin/ledger", &key).status, 403, "the ledger is the operator's");
    let ok = b.get("/v1/admin/ledger/verify", &b.admin).body;
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["entries"].as_u64().unwrap() as usize, kinds.len());

    // An edit behind the node's back: a rejection turned into an approval.
    let n = b.db_exec("UPDATE ledger SET body = replace(body, '\"approve\":false', '\"approve\":true') WHERE kind = 'vote'");
    assert!(n > 0);
    let bad = b.get("/v1/admin/ledger/verify", &b.admin).body;
    assert_eq!(bad["ok"], false, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("edited"), "{bad}");
}
