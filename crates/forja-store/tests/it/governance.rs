//! Governance and the ledger on a real SQLite file: one vote per auditor
//! on a version that awaits audit, settlement after a rollback (approvers
//! slashed, rejecters rewarded, deactivation below the threshold), and a
//! ledger whose every edit, insertion or deletion `verify_ledger` finds.

use forja_core::identity::NodeKey;
use forja_store::governance::{MIN_REPUTATION, REWARD, SLASH};
use forja_store::*;
use std::collections::BTreeMap;
use std::time::Duration;

fn open(path: &std::path::Path) -> SqliteStore {
    crate::backend::open(path, Duration::from_secs(30))
}

fn awaiting(s: &SqliteStore, tenant: &str, n: u32) -> ModelVersion {
    let files = BTreeMap::from([("adapter_model.safetensors".into(), format!("{n:064}"))]);
    let new = NewVersion {
        eval_sha256: Some(format!("{n:0>64}")),
        status: VersionStatus::AwaitingAudit,
        ..NewVersion::candidate(tenant, "tiny", files)
    };
    s.register_version(&new, "gate").unwrap().0
}

fn vote(tenant: &str, version: &ModelVersion, auditor: &Auditor, approve: bool) -> NewVote {
    NewVote {
        tenant_id: tenant.into(),
        version_id: version.id.clone(),
        auditor_id: auditor.id.clone(),
        approve,
        report_sha256: version.lineage.eval_sha256.clone().unwrap(),
        signed_at: 1,
        signature: format!("{}{}", auditor.id, version.id),
    }
}

#[test]
fn votes_are_one_per_active_auditor_and_rollbacks_settle_them() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir.path().join("f.db"));
        let t = s.create_tenant("acme", "standard", &TenantSettings::default()).unwrap();
        let keys: Vec<NodeKey> = (0..3).map(|_| NodeKey::generate()).collect();
        let a = s.add_auditor("ana", &keys[0].public_hex(), 100).unwrap();
        let b = s.add_auditor("bo", &keys[1].public_hex(), 55).unwrap();
        let c = s.add_auditor("cy", &keys[2].public_hex(), 100).unwrap();
        assert!(a.active && b.active && a.reputation == 100);
        let e = s.add_auditor("ana", &NodeKey::generate().public_hex(), 100).unwrap_err();
        assert!(e.to_string().contains("already"), "{e}");
        let e = s.add_auditor("dup", &keys[0].public_hex().to_uppercase(), 100).unwrap_err();
        assert!(e.to_string().contains("already"), "same key in capitals: {e}");
        assert!(s.add_auditor("bad", "xyz", 100).is_err());
        assert!(s.add_auditor("high", &NodeKey::generate().public_hex(), 101).is_err());
        assert_eq!(s.auditor(&keys[1].public_hex()).unwrap().name, "bo");

        let v = awaiting(&s, &t.id, 1);
        s.record_vote(&vote(&t.id, &v, &a, true)).unwrap();
        let e = s.record_vote(&vote(&t.id, &v, &a, false)).unwrap_err().to_string();
        assert!(e.contains("already voted"), "{e}");
        s.record_vote(&vote(&t.id, &v, &b, true)).unwrap();
        s.record_vote(&vote(&t.id, &v, &c, false)).unwrap();
        let votes = s.votes(&t.id, &v.id).unwrap();
        assert_eq!(
            votes.iter().map(|v| (v.auditor.as_str(), v.vote.approve)).collect::<Vec<_>>(),
            [("ana", true), ("bo", true), ("cy", false)]
        );
        // Another tenant sees none of it.
        let other = s.create_tenant("other", "standard", &TenantSettings::default()).unwrap();
        assert!(s.votes(&other.id, &v.id).is_err());

        // Promoted, then rolled back (to the base): approvers pay, rejecters gain.
        s.promote(&t.id, &v.id, "governance", "2 of 3 approve").unwrap();
        let e = s.record_vote(&vote(&t.id, &v, &c, true)).unwrap_err().to_string();
        assert!(e.contains("not awaiting audit"), "{e}");
        s.demote(&t.id, "op", "regressed on live feedback").unwrap();
        let after: BTreeMap<String, (i64, bool)> =
            s.auditors().unwrap().into_iter().map(|a| (a.name, (a.reputation, a.active))).collect();
        assert_eq!(after["ana"], (100 - SLASH, true));
        assert_eq!(after["bo"], (55 - SLASH, 55 - SLASH >= MIN_REPUTATION));
        assert!(!after["bo"].1, "bo fell under {MIN_REPUTATION}: deactivated");
        assert_eq!(after["cy"], (100, true), "capped at 100 (+{REWARD})");
        // An inactive auditor cannot vote, nor be reactivated under the threshold.
        let v2 = awaiting(&s, &t.id, 2);
        let e = s.record_vote(&vote(&t.id, &v2, &b, true)).unwrap_err().to_string();
        assert!(e.contains("not active"), "{e}");
        assert!(s.set_auditor_active("bo", true, "op").is_err());
        s.set_auditor_active("ana", false, "op").unwrap();
        assert!(!s.auditor("ana").unwrap().active);

        let ledger = s.ledger(0, 1000).unwrap();
        let kinds: Vec<&str> = ledger.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "auditor_added",
                "auditor_added",
                "auditor_added",
                "audit_opened",
                "vote",
                "vote",
                "vote",
                "promoted",
                "demoted",
                "slashed",
                "audit_opened",
                "auditor_deactivated"
            ]
        );
        let head = verify_ledger(&ledger, &[s.node_public_key()]).unwrap();
        assert_eq!((head.entries, head.hash.as_str()), (12, ledger[11].hash.as_str()));
        // The node's key is in node.key beside the database; reopening keeps it.
        drop(s);
        let s = open(&dir.path().join("f.db"));
        assert_eq!(
            s.node_public_key(),
            NodeKey::load(&dir.path().join(NODE_KEY)).unwrap().public_hex()
        );
        verify_ledger(&s.ledger(0, 1000).unwrap(), &[s.node_public_key()]).unwrap();
    });
}

#[test]
fn every_edit_insertion_and_deletion_of_the_ledger_is_detected() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("f.db");
        let s = open(&db);
        for i in 0..5 {
            s.append_ledger("round", None, &serde_json::json!({ "round": i })).unwrap();
        }
        let key = s.node_public_key();
        let good = s.ledger(0, 100).unwrap();
        verify_ledger(&good, std::slice::from_ref(&key)).unwrap();
        let broken = |f: &dyn Fn(&mut Vec<LedgerEntry>)| {
            let mut l = good.clone();
            f(&mut l);
            verify_ledger(&l, std::slice::from_ref(&key)).unwrap_err()
        };
        let e = broken(&|l| l[2].body = r#"{"round":7}"#.into());
        assert!(e.starts_with("entry 3:") && e.contains("edited"), "{e}");
        let e = broken(&|l| l[1].created_at += 1);
        assert!(e.contains("entry 2") && e.contains("edited"), "{e}");
        let e = broken(&|l| {
            l.remove(2);
        });
        assert!(e.contains("deleted or inserted"), "{e}");
        let e = broken(&|l| {
            let extra = l[1].clone();
            l.insert(2, extra);
        });
        assert!(e.contains("deleted or inserted"), "{e}");
        // Re-hashed and renumbered after an edit: the chain still breaks.
        let e = broken(&|l| {
            l[2].body = "{}".into();
            l[2].hash = forja_store::governance::entry_hash(
                3,
                &l[2].prev_hash,
                l[2].created_at,
                &l[2].kind,
                None,
                "{}",
            );
        });
        assert!(e.contains("entry 3") && e.contains("signature"), "{e}");
        // Re-hashed and re-signed with another key: not this node's.
        let forger = NodeKey::generate();
        let e = broken(&|l| {
            l[4].signer = forger.public_hex();
            l[4].signature = forger.sign_hex(l[4].hash.as_bytes());
        });
        assert!(e.contains("not by this node's key"), "{e}");

        // In the database itself, with SQL behind the store's back.
        drop(s);
        let tamper = "UPDATE ledger SET body = '{\"round\":9}' WHERE seq = 4";
        if crate::backend::on_postgres() {
            crate::pg::server().unwrap().psql(&crate::pg::name_for(&db), tamper);
        } else {
            rusqlite::Connection::open(&db).unwrap().execute(tamper, []).unwrap();
        }
        let s = open(&db);
        let e = verify_ledger(&s.ledger(0, 100).unwrap(), &[s.node_public_key()]).unwrap_err();
        assert!(e.starts_with("entry 4:"), "{e}");
    });
}
