//! The SQLite store against a real database file: the threshold trigger
//! under concurrent writers (separate connections, as separate processes
//! would have), quotas over a moving clock, leases that expire and resume,
//! tenant scoping, a busy and a full database, and the artifact store.

use forja_store::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn open(path: &std::path::Path) -> SqliteStore {
    crate::backend::open(path, Duration::from_secs(10))
}

fn example(text: &str) -> NewExample {
    NewExample {
        source: "test".into(),
        input: serde_json::json!({ "text": text }),
        curated: Ok(Curated {
            record: serde_json::json!({ "messages": [{"role": "user", "content": text}] }),
            content_hash: sha256_hex(text.as_bytes()),
        }),
    }
}

fn tenant(s: &SqliteStore, name: &str, threshold: Option<u32>, max: u32) -> Tenant {
    let settings = TenantSettings { threshold, max_trainings: max, ..TenantSettings::default() };
    s.create_tenant(name, "standard", &settings).unwrap()
}

#[test]
fn threshold_creates_exactly_one_job_per_crossing_under_concurrent_writers() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("forja.db");
        let t = tenant(&open(&db), "acme", Some(50), 100);
        let (threads, per_thread) = (8, 25);
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let (db, tid) = (db.clone(), t.id.clone());
                let pg = crate::backend::on_postgres();
                std::thread::spawn(move || {
                    crate::backend::set_postgres(pg);
                    let s = open(&db); // its own connection
                    let mut jobs = Vec::new();
                    for i in 0..per_thread {
                        let a = s
                            .append_examples(&tid, &[example(&format!("w{w} e{i}"))], "m")
                            .unwrap();
                        jobs.extend(a.job.map(|j| j.id));
                    }
                    jobs
                })
            })
            .collect();
        let created: Vec<String> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let s = open(&db);
        let all = s.jobs(Some(&t.id), None, 100).unwrap();
        assert_eq!(created.len(), threads * per_thread / 50, "{created:?}");
        assert_eq!(all.len(), created.len());
        for j in &all {
            assert_eq!(
                s.job_examples(&j.id).unwrap().len(),
                50,
                "job {} claimed a crossing's worth",
                j.id
            );
            assert_eq!(j.trigger, Trigger::Threshold);
            assert_eq!(j.status, JobStatus::ValidatingFiles);
        }
        assert_eq!(
            s.pending(&t.id).unwrap(),
            PendingCounts { curated: 0, rejected: 0, claimed: 200, held: 0 }
        );
    });
}

#[test]
fn duplicates_and_refusals_are_recorded_not_counted() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir.path().join("f.db"));
        let t = tenant(&s, "acme", Some(3), 10);
        let mut bad = example("x");
        bad.curated = Err("quality: too short".into());
        let a = s
            .append_examples(&t.id, &[example("a"), example("a"), bad, example("b")], "m")
            .unwrap();
        let st: Vec<_> = a.examples.iter().map(|e| e.status).collect();
        assert_eq!(
            st,
            [
                ExampleStatus::Curated,
                ExampleStatus::Rejected,
                ExampleStatus::Rejected,
                ExampleStatus::Curated
            ]
        );
        assert!(a.examples[1].reason.as_deref().unwrap().contains("duplicate of example"));
        assert!(a.job.is_none());
        let a = s.append_examples(&t.id, &[example("c")], "m").unwrap();
        let job = a.job.expect("third curated example crosses the threshold");
        assert_eq!(job.model, "m");
        // A failed job gives its examples back; nothing is lost.
        s.fail_job(&job.id, &JobError { code: "x".into(), message: "y".into(), param: None })
            .unwrap();
        assert_eq!(s.pending(&t.id).unwrap().curated, 3);
    });
}

#[test]
fn quota_blocks_and_frees_with_time() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicI64::new(1_000_000));
        let c = clock.clone();
        let s = open(&dir.path().join("f.db")).with_clock(move || c.load(Ordering::SeqCst));
        let t = tenant(&s, "acme", None, 2);
        let new = manual_job(&t.id);
        let first = s.create_job(&new).unwrap();
        clock.fetch_add(3600, Ordering::SeqCst);
        s.create_job(&new).unwrap();
        let err = s.create_job(&new).unwrap_err();
        let StoreError::QuotaExceeded { frees_at, limit, .. } = err else { panic!("{err}") };
        assert_eq!((limit, frees_at), (2, first.created_at + WEEK_S));
        assert!(err_text(&s, &new).contains("7 days"));
        clock.store(frees_at, Ordering::SeqCst);
        s.create_job(&new).expect("the first job left the window");
        // A job cancelled before it started does not count.
        let t2 = tenant(&s, "beta", None, 1);
        let new2 = NewJob { tenant_id: t2.id.clone(), ..new.clone() };
        let j = s.create_job(&new2).unwrap();
        s.cancel_job(Some(&t2.id), &j.id).unwrap();
        s.create_job(&new2).unwrap();
    });
}

/// A manual job of tenant `tenant_id` on model `m` and `file-1`.
fn manual_job(tenant_id: &str) -> NewJob {
    NewJob {
        tenant_id: tenant_id.into(),
        model: "m".into(),
        training_file: Some("file-1".into()),
        validation_file: None,
        trigger: Trigger::Manual,
        spec: JobSpec::default(),
    }
}

fn err_text(s: &SqliteStore, new: &NewJob) -> String {
    s.create_job(new).unwrap_err().to_string()
}

fn by<'a>(worker: &'a str, key: &'a str, l: &'a Leased) -> LeaseRef<'a> {
    LeaseRef { worker, key, token: &l.token }
}

#[test]
fn leases_expire_resume_and_fence_the_old_worker() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicI64::new(1_000));
        let c = clock.clone();
        let s = open(&dir.path().join("f.db")).with_clock(move || c.load(Ordering::SeqCst));
        let t = tenant(&s, "acme", None, 10);
        let hi = tenant(&s, "vip", None, 10);
        s.update_settings(&hi.id, &TenantSettings { priority: 9, ..hi.settings.clone() }).unwrap();
        let mk = |tid: &str, gpus| NewJob {
            spec: JobSpec { resources: Resources { gpus, memory_gb: 4 }, ..JobSpec::default() },
            ..manual_job(tid)
        };
        let low = s.create_job(&mk(&t.id, 0)).unwrap();
        let gpu = s.create_job(&mk(&hi.id, 1)).unwrap();
        let high = s.create_job(&mk(&hi.id, 0)).unwrap();
        for j in [&low, &gpu, &high] {
            s.job_validated(&j.id, Some("file-1"), None, &hyper(), None).unwrap();
        }
        let cpu = Capacity { gpus: 0, memory_gb: 16, models: None };
        let a = s.lease("w1", "key-1", &cpu, 30).unwrap().unwrap();
        assert_eq!(a.job.id, high.id, "priority first; the GPU job does not fit a CPU worker");
        let id = a.job.id.clone();
        let files = BTreeMap::from([("adapter.safetensors".to_string(), "ab".repeat(32))]);
        let m = serde_json::json!({"train_loss": 1.5});
        s.add_checkpoint(&id, &by("w1", "key-1", &a), 5, &files, &m).unwrap();
        clock.fetch_add(20, Ordering::SeqCst);
        s.heartbeat(&id, &by("w1", "key-1", &a), 30, (5, 10)).unwrap();
        clock.fetch_add(31, Ordering::SeqCst);
        let reaped = s.reap_expired(3).unwrap();
        assert_eq!(
            reaped.iter().map(|j| (j.id.as_str(), j.status)).collect::<Vec<_>>(),
            [(id.as_str(), JobStatus::Queued)]
        );
        let b = s.lease("w2", "key-2", &cpu, 30).unwrap().unwrap();
        assert_eq!((b.job.id.as_str(), b.job.attempts), (id.as_str(), 2));
        assert_eq!(s.checkpoints(&id).unwrap()[0].step, 5, "w2 resumes from the checkpoint");
        let e = s.heartbeat(&id, &by("w1", "key-1", &a), 30, (6, 10)).unwrap_err();
        assert!(matches!(e, StoreError::LeaseLost { .. }), "{e}");
        let done = Finish::Succeeded {
            trained_tokens: 100,
            fine_tuned_model: "ft:m:acme".into(),
            adapter_sha256: "cd".repeat(32),
            result: Box::default(),
        };
        assert!(
            s.finish(&id, &by("w1", "key-1", &a), &done).is_err(),
            "the fenced worker cannot finish it"
        );
        let j = s.finish(&id, &by("w2", "key-2", &b), &done).unwrap();
        assert_eq!((j.status, j.trained_tokens), (JobStatus::Succeeded, Some(100)));
        // Cancelling a running job fences its worker.
        let c2 = s.lease("w3", "key-3", &cpu, 30).unwrap().unwrap();
        assert_eq!(c2.job.id, low.id);
        s.cancel_job(Some(&t.id), &low.id).unwrap();
        let e = s.heartbeat(&low.id, &by("w3", "key-3", &c2), 30, (1, 2)).unwrap_err().to_string();
        assert!(e.contains("cancelled"), "{e}");
        assert!(s
            .cancel_job(Some(&t.id), &low.id)
            .unwrap_err()
            .to_string()
            .contains("already cancelled"));
        // Too many lost leases fail the job.
        let g = s
            .lease(
                "gpu-w",
                "key-4",
                &Capacity { gpus: 1, memory_gb: 80, models: Some(vec!["m".into()]) },
                1,
            )
            .unwrap()
            .unwrap();
        assert_eq!(g.job.id, gpu.id);
        clock.fetch_add(2, Ordering::SeqCst);
        let r = s.reap_expired(1).unwrap();
        assert_eq!(r[0].status, JobStatus::Failed);
        assert_eq!(r[0].error.as_ref().unwrap().code, "worker_lost");
        // Events are newest first with a cursor.
        let ev = s.events(&id, None, 100).unwrap();
        assert!(ev.windows(2).all(|w| w[0].id > w[1].id));
        let older = s.events(&id, Some(ev[1].id), 100).unwrap();
        assert_eq!(older.len(), ev.len() - 2);
    });
}

fn hyper() -> Hyperparameters {
    Hyperparameters {
        n_epochs: 1,
        batch_size: 1,
        learning_rate_multiplier: 1.0,
        learning_rate: 1e-4,
        lora_r: 8,
        lora_alpha: 16.0,
        lora_targets: "q_proj".into(),
        save_every: 5,
        seed: 1,
    }
}

/// Regression (hardening #8): a second worker key that reuses the first
/// worker's name could heartbeat, add events and finish its job. A lease
/// is bound to the key that took it and to a secret token.
#[test]
fn a_lease_answers_only_to_its_key_and_token() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir.path().join("f.db"));
        let t = tenant(&s, "acme", None, 10);
        let j = s.create_job(&manual_job(&t.id)).unwrap();
        s.job_validated(&j.id, Some("file-1"), None, &hyper(), None).unwrap();
        let cap = Capacity { gpus: 0, memory_gb: 16, models: None };
        let l = s.lease("w1", "key-a", &cap, 30).unwrap().unwrap();
        assert_eq!(l.token.len(), 32);
        let impostors = [
            LeaseRef { worker: "w1", key: "key-b", token: &l.token },
            LeaseRef { worker: "w1", key: "key-a", token: "0".repeat(32).as_str() },
            LeaseRef { worker: "w2", key: "key-a", token: &l.token },
        ]
        .map(|r| (r.worker.to_string(), r.key.to_string(), r.token.to_string()));
        for (w, k, tok) in &impostors {
            let by = LeaseRef { worker: w, key: k, token: tok };
            for e in [
                s.heartbeat(&j.id, &by, 30, (1, 2)).map(|_| ()).unwrap_err(),
                s.worker_event(&j.id, &by, Level::Info, "injected", None).map(|_| ()).unwrap_err(),
                s.add_checkpoint(&j.id, &by, 1, &BTreeMap::new(), &serde_json::json!({}))
                    .map(|_| ())
                    .unwrap_err(),
                s.finish(
                    &j.id,
                    &by,
                    &Finish::Failed(JobError {
                        code: "x".into(),
                        message: "junk".into(),
                        param: None,
                    }),
                )
                .map(|_| ())
                .unwrap_err(),
            ] {
                assert!(matches!(e, StoreError::LeaseLost { .. }), "{w}/{k}: {e}");
            }
        }
        assert!(s.events(&j.id, None, 100).unwrap().iter().all(|e| e.message != "injected"));
        let real = LeaseRef { worker: "w1", key: "key-a", token: &l.token };
        s.heartbeat(&j.id, &real, 30, (1, 2)).unwrap();
        assert_eq!(s.job(None, &j.id).unwrap().status, JobStatus::Running);
    });
}

/// Regression (hardening #14): cancelling a threshold job returned its
/// examples to the pool, and the next tick triggered a new job at once.
#[test]
fn a_cancelled_job_holds_its_examples_back_until_released() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir.path().join("f.db"));
        let t = tenant(&s, "acme", Some(2), 10);
        let a = s.append_examples(&t.id, &[example("a"), example("b")], "m").unwrap();
        let job = a.job.expect("threshold reached");
        s.cancel_job(Some(&t.id), &job.id).unwrap();
        assert_eq!(
            s.pending(&t.id).unwrap(),
            PendingCounts { curated: 0, rejected: 0, claimed: 0, held: 2 }
        );
        let new = NewJob { training_file: None, trigger: Trigger::Threshold, ..manual_job(&t.id) };
        assert!(s.job_from_pending(&new, 2, false).unwrap().is_none(), "the cancel re-triggered");
        // Held examples still count as duplicates.
        let d = s.append_examples(&t.id, &[example("a")], "m").unwrap();
        assert_eq!(d.examples[0].status, ExampleStatus::Rejected);
        // A deliberate train-now takes them; or they are released to the pool.
        let manual = NewJob { trigger: Trigger::Manual, ..new.clone() };
        let j = s.job_from_pending(&manual, 1, true).unwrap().expect("train now takes held ones");
        assert_eq!(s.job_examples(&j.id).unwrap().len(), 2);
        s.fail_job(&j.id, &JobError { code: "x".into(), message: "y".into(), param: None })
            .unwrap();
        assert_eq!(s.pending(&t.id).unwrap().curated, 2, "a failed job gives them back");
        let j = s.job_from_pending(&new, 2, false).unwrap().unwrap();
        s.cancel_job(None, &j.id).unwrap();
        assert_eq!(s.release_held(&t.id).unwrap(), 2);
        assert_eq!(s.pending(&t.id).unwrap().curated, 2);
    });
}

/// Regression (hardening #5): a 50 MB feedback post was stored whole. The
/// tenant's stored bytes are counted in the transactions that store and
/// delete them, and refused past its quota.
#[test]
fn storage_is_counted_and_capped_per_tenant() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir.path().join("f.db"));
        let settings =
            TenantSettings { storage_mb: 1, threshold: None, ..TenantSettings::default() };
        let t = s.create_tenant("small", "free", &settings).unwrap();
        let other = tenant(&s, "other", None, 10);
        let half: Vec<NewExample> =
            (0..2).map(|i| example(&format!("{i}{}", "x".repeat(130_000)))).collect();
        s.append_examples(&t.id, &half, "m").unwrap();
        let used = s.storage(&t.id).unwrap();
        assert!(used.used_bytes > 520_000 && used.limit_bytes == Some(1 << 20), "{used:?}");
        let more: Vec<NewExample> =
            (2..6).map(|i| example(&format!("{i}{}", "x".repeat(130_000)))).collect();
        let e = s.append_examples(&t.id, &more, "m").unwrap_err();
        assert!(matches!(e, StoreError::StorageQuota { .. }), "{e}");
        assert!(e.to_string().contains("quota"), "{e}");
        assert_eq!(s.pending(&t.id).unwrap().curated, 2, "the refused append stored nothing");
        assert_eq!(s.storage(&t.id).unwrap(), used);
        // Another tenant is not affected; uploads count, generated files do not.
        s.append_examples(&other.id, &more, "m").unwrap();
        let file = |id: &str, origin, bytes| FileRow {
            id: id.into(),
            tenant_id: t.id.clone(),
            purpose: "fine-tune".into(),
            filename: "x.jsonl".into(),
            bytes,
            sha256: "00".repeat(32),
            lines: 1,
            status: "processed".into(),
            status_details: None,
            created_at: 0,
            origin,
        };
        s.insert_file(&file("file-gen", FileOrigin::Generated, 900_000)).unwrap();
        assert_eq!(s.storage(&t.id).unwrap(), used);
        assert!(matches!(
            s.insert_file(&file("file-big", FileOrigin::Upload, 900_000)),
            Err(StoreError::StorageQuota { .. })
        ));
        s.insert_file(&file("file-up", FileOrigin::Upload, 100_000)).unwrap();
        assert_eq!(s.storage(&t.id).unwrap().used_bytes, used.used_bytes + 100_000);
        s.delete_file(&t.id, "file-up").unwrap();
        assert_eq!(s.storage(&t.id).unwrap(), used);
        assert!(matches!(s.delete_file(&other.id, "file-gen"), Err(StoreError::NotFound { .. })));
    });
}

/// Regression (hardening #9): `revoked_at` was read but never written;
/// keys could not be listed, revoked, expired or rotated, and a tenant key
/// for a missing tenant silently created the tenant.
#[test]
fn keys_are_listed_revoked_and_expire() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicI64::new(1_000));
        let c = clock.clone();
        let s = open(&dir.path().join("f.db")).with_clock(move || c.load(Ordering::SeqCst));
        let t = tenant(&s, "acme", None, 10);
        let new = |tenant_id: Option<String>, role, hash: &str, expires_at| NewKey {
            tenant_id,
            role,
            hash: hash.into(),
            prefix: "forja-sk-123".into(),
            name: Some("ci".into()),
            expires_at,
        };
        let k = s.create_key(&new(Some(t.id.clone()), Role::Tenant, "h1", None)).unwrap();
        let soon = s.create_key(&new(Some(t.id.clone()), Role::Tenant, "h2", Some(1_100))).unwrap();
        let admin = s.create_key(&new(None, Role::Admin, "h3", None)).unwrap();
        assert_eq!(admin.role, Role::Admin);
        assert!(matches!(
            s.create_key(&new(Some("tn-missing".into()), Role::Tenant, "h4", None)),
            Err(StoreError::NotFound { .. })
        ));
        assert!(s.create_key(&new(None, Role::Tenant, "h5", None)).is_err());
        assert!(s.create_key(&new(Some(t.id.clone()), Role::Worker, "h6", None)).is_err());
        assert_eq!(s.key_by_hash("h2").unwrap().unwrap().id, soon.id);
        clock.store(1_100, Ordering::SeqCst);
        assert!(s.key_by_hash("h2").unwrap().is_none(), "expired");
        assert_eq!(s.keys(Some(&t.id)).unwrap().len(), 2, "expired keys are still listed");
        assert_eq!(s.keys(None).unwrap().len(), 3);
        let r = s.revoke_key(Some(&t.id), &k.id).unwrap();
        assert_eq!(r.revoked_at, Some(1_100));
        assert!(s.key_by_hash("h1").unwrap().is_none(), "revoked");
        assert!(!r.is_live(1_100));
        assert!(matches!(s.revoke_key(Some(&t.id), &admin.id), Err(StoreError::NotFound { .. })));
        let e = s.expire_key(&admin.id, 2_000).unwrap();
        assert_eq!(e.expires_at, Some(2_000));
        assert_eq!(s.expire_key(&admin.id, 5_000).unwrap().expires_at, Some(2_000), "never later");
        assert!(s.key_by_hash("h3").unwrap().is_some());
    });
}

#[test]
fn rows_of_other_tenants_are_not_found() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir.path().join("f.db"));
        let a = tenant(&s, "a", None, 10);
        let b = tenant(&s, "b", None, 10);
        let f = FileRow {
            id: "file-1".into(),
            tenant_id: a.id.clone(),
            purpose: "fine-tune".into(),
            filename: "x.jsonl".into(),
            bytes: 3,
            sha256: "00".repeat(32),
            lines: 1,
            status: "processed".into(),
            status_details: None,
            created_at: 0,
            origin: FileOrigin::Upload,
        };
        s.insert_file(&f).unwrap();
        assert!(matches!(s.file(&b.id, "file-1"), Err(StoreError::NotFound { .. })));
        let j = s.create_job(&manual_job(&a.id)).unwrap();
        assert!(matches!(s.job(Some(&b.id), &j.id), Err(StoreError::NotFound { .. })));
        assert!(matches!(s.cancel_job(Some(&b.id), &j.id), Err(StoreError::NotFound { .. })));
        assert!(s.jobs(Some(&b.id), None, 10).unwrap().is_empty());
        assert_eq!(s.jobs(Some(&a.id), None, 10).unwrap().len(), 1);
        assert!(matches!(
            s.create_tenant("a", "free", &TenantSettings::default()),
            Err(StoreError::Conflict(_))
        ));
    });
}

#[test]
fn a_locked_database_is_busy_and_a_full_one_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db");
    let s = SqliteStore::open(&db, Duration::from_millis(200)).unwrap();
    let t = tenant(&s, "a", None, 10);
    let other = rusqlite_lock(&db);
    let e = s.append_examples(&t.id, &[example("x")], "m").unwrap_err();
    assert!(matches!(e, StoreError::Busy { .. }), "{e}");
    assert!(e.to_string().contains("retry"), "{e}");
    drop(other);
    s.append_examples(&t.id, &[example("x")], "m").unwrap();
    s.set_max_pages(1).unwrap();
    let big: Vec<NewExample> =
        (0..200).map(|i| example(&format!("{i} {}", "y".repeat(2000)))).collect();
    let e = s.append_examples(&t.id, &big, "m").unwrap_err();
    assert!(matches!(e, StoreError::Full { .. }), "{e}");
    assert_eq!(s.pending(&t.id).unwrap().curated, 1, "the failed transaction left nothing behind");
}

/// Another process's writer, holding the lock.
fn rusqlite_lock(db: &std::path::Path) -> KillOnDrop {
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3,time,sys\nc=sqlite3.connect({:?},isolation_level=None)\nc.execute('BEGIN IMMEDIATE')\nprint('locked',flush=True)\ntime.sleep(30)",
            db.display().to_string()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    KillOnDrop(child)
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn reopening_keeps_data_and_does_not_remigrate() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub/forja.db");
        let id = tenant(&open(&db), "a", None, 10).id;
        assert_eq!(open(&db).tenant_by_name("a").unwrap().id, id);
        let e = SqliteStore::open(dir.path(), Duration::from_secs(1)).unwrap_err().to_string();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
    });
}

#[tokio::test]
async fn artifacts_are_addressed_by_hash_and_verified_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let a = Artifacts::open(&ArtifactConfig::Local { dir: dir.path().join("art") }).unwrap();
    let sha = a.put(bytes::Bytes::from_static(b"adapter weights")).await.unwrap();
    assert_eq!(sha, sha256_hex(b"adapter weights"));
    assert_eq!(&a.get(&sha).await.unwrap()[..], b"adapter weights");
    assert_eq!(a.put(bytes::Bytes::from_static(b"adapter weights")).await.unwrap(), sha);
    let e = a.put_verified(bytes::Bytes::from_static(b"other"), &sha).await.unwrap_err();
    assert!(matches!(e, StoreError::HashMismatch { .. }), "{e}");
    let path = dir.path().join("art/sha256").join(&sha[..2]).join(&sha);
    std::fs::write(&path, b"tampered").unwrap();
    assert!(matches!(a.get(&sha).await, Err(StoreError::HashMismatch { .. })));
    assert!(matches!(a.get(&"0".repeat(64)).await, Err(StoreError::ArtifactMissing { .. })));
    assert!(matches!(a.get("../../etc/passwd").await, Err(StoreError::ArtifactMissing { .. })));
}

/// Postgres stops under a running store: every call is `Unavailable`
/// (callers answer 503 and retry), nothing half-done; when it is back the
/// store's pool reconnects by itself.
#[test]
fn a_postgres_outage_is_unavailable_and_the_store_recovers() {
    if crate::pg::server().is_none() {
        return;
    }
    let pg = crate::pg::private().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = SqlStore::open_postgres(&pg.database("outage"), dir.path()).unwrap();
    let t = tenant(&s, "a", Some(2), 10);
    s.append_examples(&t.id, &[example("one")], "m").unwrap();
    pg.stop();
    for e in [
        s.tenant(&t.id).unwrap_err(),
        s.append_examples(&t.id, &[example("two")], "m").unwrap_err(),
    ] {
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e}");
        assert!(e.to_string().contains("retry"), "{e}");
    }
    pg.start_again();
    assert_eq!(s.tenant(&t.id).unwrap().name, "a");
    let out = s.append_examples(&t.id, &[example("two")], "m").unwrap();
    assert!(out.job.is_some(), "the second example crosses the threshold: {out:?}");
    assert_eq!(s.pending(&t.id).unwrap().curated, 0);
}
