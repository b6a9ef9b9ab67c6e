//! `forja auditors`, `forja audit vote|show` and `forja ledger verify` on a
//! data directory: auditors registered from their public keys, a signed
//! vote cast once (a second, or one by an unregistered key, refused with
//! one line), and a ledger whose edits and cut tail `verify` reports.

use crate::common;

use common::{check_user_error, forja, stderr};
use forja_store::prelude::*;
use forja_store::{NewVersion, SqliteStore, TenantSettings, VersionStatus};
use std::collections::BTreeMap;
use std::time::Duration;

fn out(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", stderr(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn auditors_vote_from_the_cli_and_the_ledger_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let keyfile = |n: &str| tmp.path().join(format!("{n}.key")).to_str().unwrap().to_string();
    let public: Vec<String> = ["ana", "bo", "eve"]
        .iter()
        .map(|n| {
            out(&forja(&["federation", "keygen", "--out", &keyfile(n)], None)).trim().to_string()
        })
        .collect();
    for (n, pk) in [("ana", &public[0]), ("bo", &public[1])] {
        let o = forja(&["auditors", "add", "--name", n, "--public-key", pk, "--data-dir", d], None);
        assert!(out(&o).contains(n));
    }
    let o = forja(
        &["auditors", "add", "--name", "ana", "--public-key", &public[2], "--data-dir", d],
        None,
    );
    check_user_error(&o, "already has this name or public key");
    let o =
        forja(&["auditors", "add", "--name", "x", "--public-key", "12ab", "--data-dir", d], None);
    check_user_error(&o, "64 hex digits");
    let list = out(&forja(&["auditors", "list", "--data-dir", d], None));
    assert!(list.contains("ana") && list.contains("bo") && list.contains("100"), "{list}");

    // A version awaiting audit (registered straight in the store).
    let store = SqliteStore::open(&data.join("forja.db"), Duration::from_secs(10)).unwrap();
    let t = store.create_tenant("acme", "standard", &TenantSettings::default()).unwrap();
    let files = BTreeMap::from([("adapter_model.safetensors".to_string(), "a".repeat(64))]);
    let new = NewVersion {
        eval_sha256: Some("e".repeat(64)),
        status: VersionStatus::AwaitingAudit,
        ..NewVersion::candidate(&t.id, "tiny", files)
    };
    let v = store.register_version(&new, "test").unwrap().0;
    drop(store);

    let vote = |who: &str, flag: &str| {
        forja(
            &[
                "audit",
                "vote",
                &v.id,
                "--tenant",
                "acme",
                "--key",
                &keyfile(who),
                flag,
                "--data-dir",
                d,
            ],
            None,
        )
    };
    let shown = out(&vote("ana", "--approve"));
    assert!(
        shown.contains("votes 1 of 3 needed, 1 approve") && shown.contains("Pending"),
        "{shown}"
    );
    check_user_error(&vote("ana", "--reject"), "already voted");
    check_user_error(&vote("eve", "--approve"), "not a registered auditor");
    let o = forja(
        &["audit", "vote", &v.id, "--tenant", "acme", "--key", &keyfile("bo"), "--data-dir", d],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "--approve or --reject is required: {}", stderr(&o));
    let shown = out(&forja(&["audit", "show", &v.id, "--tenant", "acme", "--data-dir", d], None));
    assert!(
        shown.contains("ana") && shown.contains("approve") && shown.contains("awaiting_audit"),
        "{shown}"
    );

    // The ledger: auditor_added ×2, audit_opened, vote.
    let ok = out(&forja(&["ledger", "verify", "--data-dir", d], None));
    assert!(ok.starts_with("ok: 4 entries, head "), "{ok}");
    let head = ok.split_whitespace().nth(4).unwrap().trim_end_matches(',').to_string();
    assert_eq!(head.len(), 64, "{ok}");
    assert!(out(&forja(&["ledger", "verify", "--head", &head, "--data-dir", d], None))
        .starts_with("ok"));
    let lines = out(&forja(&["ledger", "show", "--data-dir", d], None));
    assert_eq!(lines.lines().count(), 4);
    assert!(lines.lines().nth(3).unwrap().contains("\"kind\":\"vote\""), "{lines}");

    let broken = |args: &[&str], want: &str| {
        let o = forja(&[&["ledger", "verify"], args, &["--data-dir", d]].concat(), None);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
    };
    // The newest entry removed: the chain that is left holds; the head
    // recorded earlier tells.
    let db = rusqlite::Connection::open(data.join("forja.db")).unwrap();
    db.execute("DELETE FROM ledger WHERE seq = 4", []).unwrap();
    assert!(out(&forja(&["ledger", "verify", "--data-dir", d], None)).starts_with("ok: 3 entries"));
    broken(&["--head", &head], "no longer in the chain");
    // An edited entry.
    db.execute("UPDATE ledger SET body = replace(body, 'ana', 'eve') WHERE seq = 1", []).unwrap();
    broken(&[], "entry 1: its content does not hash to its hash (edited)");
}
