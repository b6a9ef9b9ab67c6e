//! The model registry on a real SQLite file: promotion and rollback move
//! `champion` as a stack, concurrent moves from separate connections stay
//! consistent, other tenants' versions are never resolvable, and the
//! generation counter (the NEW_MODEL_AVAILABLE flag) follows every move.

use forja_store::*;
use std::collections::BTreeMap;
use std::time::Duration;

fn open(path: &std::path::Path) -> SqliteStore {
    crate::backend::open(path, Duration::from_secs(30))
}

fn version(tenant: &str, n: u32) -> NewVersion {
    let files = BTreeMap::from([("adapter_model.safetensors".into(), format!("{n:064}"))]);
    NewVersion {
        base_sha256: Some("b".repeat(64)),
        dataset_sha256: Some("d".repeat(64)),
        manifest: serde_json::json!({ "n": n }),
        code_commit: Some("abc".into()),
        ..NewVersion::candidate(tenant, "tiny", files)
    }
}

fn generation(s: &SqliteStore, tenant: &str) -> i64 {
    s.model_generations().unwrap().into_iter().find(|(t, _)| t == tenant).unwrap().1
}

#[test]
fn promote_and_rollback_move_the_champion_as_a_stack() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir.path().join("f.db"));
        let t = s.create_tenant("acme", "standard", &TenantSettings::default()).unwrap();
        let e = s.rollback(&t.id, "op", "x").unwrap_err().to_string();
        assert!(e.contains("no champion yet"), "{e}");
        let v: Vec<ModelVersion> =
            (1..=3).map(|n| s.register_version(&version(&t.id, n), "test").unwrap().0).collect();
        assert_eq!(v[0].id.len(), 36, "a UUID");
        assert_eq!(s.resolve_alias(&t.id, CANDIDATE).unwrap().id, v[2].id);
        let m = s.promote(&t.id, &v[0].id, "gate", "first").unwrap();
        assert_eq!((m.previous_id, m.generation), (None, 1));
        let e = s.rollback(&t.id, "op", "x").unwrap_err().to_string();
        assert!(e.contains("no previous promoted version"), "{e}");
        assert!(s.promote(&t.id, &v[0].id, "gate", "again").is_err(), "already champion");
        s.promote(&t.id, &v[1].id, "gate", "better").unwrap();
        let m = s.promote(&t.id, &v[2].id, "gate", "better still").unwrap();
        assert_eq!(m.previous_id.as_deref(), Some(v[1].id.as_str()));
        let r = s.rollback(&t.id, "alice", "bad answers").unwrap();
        assert_eq!(
            (r.version.as_ref().unwrap().id.as_str(), r.previous_id.as_deref()),
            (v[1].id.as_str(), Some(v[2].id.as_str()))
        );
        assert_eq!(s.model_version(&t.id, &v[2].id).unwrap().status(), VersionStatus::Archived);
        let r = s.rollback(&t.id, "alice", "still bad").unwrap();
        assert_eq!(r.version.unwrap().id, v[0].id);
        assert_eq!(s.resolve_alias(&t.id, CHAMPION).unwrap().id, v[0].id);
        assert!(s.promote(&t.id, &v[2].id, "x", "y").unwrap_err().to_string().contains("archived"));
        assert_eq!(generation(&s, &t.id), 5);
        let kinds: Vec<String> =
            s.registry_log(&t.id, 0).unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                "registered",
                "registered",
                "registered",
                "promoted",
                "promoted",
                "promoted",
                "rolled_back",
                "rolled_back"
            ]
        );
        assert!(s.set_alias(&t.id, CHAMPION, &v[1].id, "x").is_err());
        s.set_alias(&t.id, "staging", &v[1].id, "bob").unwrap();
        assert_eq!(s.resolve_alias(&t.id, "staging").unwrap().id, v[1].id);
        assert!(s.set_alias(&t.id, "bad name!", &v[1].id, "bob").is_err());
        let e =
            s.set_version_status(&t.id, &v[0].id, VersionStatus::Rejected, "no", "x").unwrap_err();
        assert!(e.to_string().contains("is the champion"), "{e}");
    });
}

#[test]
fn versions_of_other_tenants_cannot_be_resolved() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir.path().join("f.db"));
        let a = s.create_tenant("a", "standard", &TenantSettings::default()).unwrap();
        let b = s.create_tenant("b", "standard", &TenantSettings::default()).unwrap();
        let va = s.register_version(&version(&a.id, 1), "t").unwrap().0;
        assert!(matches!(s.model_version(&b.id, &va.id), Err(StoreError::NotFound { .. })));
        assert!(matches!(s.promote(&b.id, &va.id, "x", "y"), Err(StoreError::NotFound { .. })));
        assert!(matches!(
            s.set_alias(&b.id, "mine", &va.id, "x"),
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(s.resolve_alias(&b.id, CANDIDATE), Err(StoreError::NotFound { .. })));
        let mut parent_elsewhere = version(&b.id, 2);
        parent_elsewhere.parent_id = Some(va.id.clone());
        assert!(matches!(
            s.register_version(&parent_elsewhere, "t"),
            Err(StoreError::NotFound { .. })
        ));
        assert!(s.model_versions(&b.id).unwrap().is_empty());
    });
}

#[test]
fn concurrent_promotions_and_rollbacks_stay_consistent() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("f.db");
        let s = open(&db);
        let t = s.create_tenant("acme", "standard", &TenantSettings::default()).unwrap();
        let ids: Vec<String> =
            (0..6).map(|n| s.register_version(&version(&t.id, n), "t").unwrap().0.id).collect();
        s.promote(&t.id, &ids[0], "seed", "base").unwrap();
        let handles: Vec<_> = (0..6)
            .map(|w| {
                let (db, tid, ids) = (db.clone(), t.id.clone(), ids.clone());
                let pg = crate::backend::on_postgres();
                std::thread::spawn(move || {
                    crate::backend::set_postgres(pg);
                    let s = open(&db); // its own connection
                    let mut moves = 0;
                    for i in 0..10 {
                        let r = if (w + i) % 3 == 0 {
                            s.rollback(&tid, "w", "r").map(|_| ())
                        } else {
                            s.promote(&tid, &ids[1 + (w + i) % 5], "w", "p").map(|_| ())
                        };
                        match r {
                            Ok(()) => moves += 1,
                            Err(StoreError::Conflict(_)) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    moves
                })
            })
            .collect();
        let moves: i64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let champion = s.resolve_alias(&t.id, CHAMPION).unwrap();
        assert_eq!(champion.status(), VersionStatus::Promoted, "the champion is always promoted");
        assert_eq!(generation(&s, &t.id), 1 + moves, "one generation per successful move");
        let log = s.registry_log(&t.id, 0).unwrap();
        let last = log.iter().rev().find(|e| e.alias.as_deref() == Some(CHAMPION)).unwrap();
        assert_eq!(last.version_id.as_deref(), Some(champion.id.as_str()), "log and alias agree");
        // Every move's `previous` is the champion the move before set.
        let moves_log: Vec<_> =
            log.iter().filter(|e| e.alias.as_deref() == Some(CHAMPION)).collect();
        for w in moves_log.windows(2) {
            assert_eq!(w[1].previous_id, w[0].version_id, "{w:?}");
        }
    });
}

#[test]
fn golden_sets_are_versioned_per_tenant() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir.path().join("f.db"));
        let t = s.create_tenant("acme", "standard", &TenantSettings::default()).unwrap();
        s.add_golden_set(&t.id, "g.jsonl", &"1".repeat(64), 3, 10, &["k1".into()]).unwrap();
        let g2 =
            s.add_golden_set(&t.id, "g.jsonl", &"2".repeat(64), 4, 10, &["k2".into()]).unwrap();
        assert_eq!(g2.version, 2);
        let all = s.golden_sets(&t.id).unwrap();
        assert_eq!(all.iter().map(|g| g.version).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(all[0].prompt_keys, ["k2"]);
        assert!(s.add_golden_set("tn-nope", "g", "x", 1, 1, &[]).is_err());
    });
}

/// Regression (hardening #9): a forced junk first champion stayed champion
/// while serving fell back to the base model; nothing could take it out.
/// Demotion archives it and removes `champion` (the base model serves).
#[test]
fn a_first_champion_can_be_demoted_and_failed_versions_say_so() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir.path().join("f.db"));
        let t = s.create_tenant("acme", "standard", &TenantSettings::default()).unwrap();
        assert!(s.demote(&t.id, "op", "x").unwrap_err().to_string().contains("no champion"));
        let v = s.register_version(&version(&t.id, 1), "test").unwrap().0;
        s.promote(&t.id, &v.id, "op", "forced").unwrap();
        let e = s.set_version_status(&t.id, &v.id, VersionStatus::Failed, "x", "serving");
        assert!(e.is_err(), "the champion cannot be marked failed before it is taken out");
        let m = s.demote(&t.id, "serving", "failed to load").unwrap();
        assert_eq!((m.version, m.previous_id.as_deref()), (None, Some(v.id.as_str())));
        assert!(s.find_alias(&t.id, CHAMPION).unwrap().is_none());
        assert_eq!(s.model_version(&t.id, &v.id).unwrap().status(), VersionStatus::Archived);
        let f = s
            .set_version_status(
                &t.id,
                &v.id,
                VersionStatus::Failed,
                "failed to load in serving: x",
                "serving",
            )
            .unwrap();
        assert_eq!(f.status(), VersionStatus::Failed);
        let kinds: Vec<String> =
            s.registry_log(&t.id, 0).unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["registered", "promoted", "demoted", "failed"]);
        assert_eq!(generation(&s, &t.id), 2);
    });
}

/// A database made by the previous schema (3) upgrades in place: keys,
/// examples (raw inputs replaced by the curated line), versions (a
/// serving failure recorded as `rejected` becomes `failed`) and storage
/// counts survive, with foreign keys intact.
#[test]
fn a_schema_3_database_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);",
        )
        .unwrap();
        for (n, sql) in [
            (1, include_str!("../../migrations/sqlite/0001_init.sql")),
            (2, include_str!("../../migrations/sqlite/0002_registry.sql")),
            (3, include_str!("../../migrations/sqlite/0003_completions.sql")),
        ] {
            c.execute_batch(sql).unwrap();
            c.execute("INSERT INTO schema_migrations VALUES (?1, 0)", [n]).unwrap();
        }
        c.execute_batch(
            r#"INSERT INTO tenants (id, name, tier, settings, created_at) VALUES ('tn-1', 'acme', 'standard', '{}', 0);
            INSERT INTO api_keys (id, tenant_id, role, hash, prefix, created_at) VALUES ('key-1', 'tn-1', 'tenant', 'h', 'p', 0);
            INSERT INTO examples (tenant_id, created_at, source, input, record, content_hash, status)
              VALUES ('tn-1', 0, 'api', '{"prompt":"DNI 12345678Z"}', '{"messages":[]}', 'c1', 'curated');
            INSERT INTO examples (tenant_id, created_at, source, input, status, reason)
              VALUES ('tn-1', 0, 'api', '{"prompt":"call +34 612 345 678"}', 'rejected', 'short');
            INSERT INTO files VALUES ('file-1', 'tn-1', 'fine-tune', 'a.jsonl', 100, 'x', 1, 'processed', NULL, 0);
            INSERT INTO model_versions (id, tenant_id, base_model, adapter_sha256, adapter_files, manifest, status, status_reason, created_at)
              VALUES ('v1', 'tn-1', 'tiny', 'a', '{}', '{}', 'rejected', 'failed to load in serving: bad', 0);
            INSERT INTO model_versions (id, tenant_id, parent_id, base_model, adapter_sha256, adapter_files, manifest, status, created_at)
              VALUES ('v2', 'tn-1', 'v1', 'tiny', 'a', '{}', '{}', 'promoted', 0);
            INSERT INTO aliases VALUES ('tn-1', 'champion', 'v2', 0, 'op');"#,
        )
        .unwrap();
    }
    let s = open(&db);
    assert_eq!(s.key_by_hash("h").unwrap().unwrap().role, Role::Tenant);
    assert_eq!(s.model_version("tn-1", "v1").unwrap().status(), VersionStatus::Failed);
    assert_eq!(s.resolve_alias("tn-1", CHAMPION).unwrap().id, "v2");
    let c = rusqlite::Connection::open(&db).unwrap();
    let inputs: Vec<String> = c
        .prepare("SELECT input FROM examples ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<std::result::Result<_, _>>()
        .unwrap();
    assert!(inputs.iter().all(|i| !i.contains("12345678Z") && !i.contains("612")), "{inputs:?}");
    let used = s.storage("tn-1").unwrap().used_bytes;
    assert!(used >= 100, "{used}");
    let broken: Option<String> = c.query_row("PRAGMA foreign_key_check", [], |r| r.get(0)).ok();
    assert_eq!(broken, None);
}
