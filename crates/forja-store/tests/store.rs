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
    SqliteStore::open(path, Duration::from_secs(10)).unwrap()
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
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("forja.db");
    let t = tenant(&open(&db), "acme", Some(50), 100);
    let (threads, per_thread) = (8, 25);
    let handles: Vec<_> = (0..threads)
        .map(|w| {
            let (db, tid) = (db.clone(), t.id.clone());
            std::thread::spawn(move || {
                let s = open(&db); // its own connection
                let mut jobs = Vec::new();
                for i in 0..per_thread {
                    let a =
                        s.append_examples(&tid, &[example(&format!("w{w} e{i}"))], "m").unwrap();
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
    assert_eq!(s.pending(&t.id).unwrap(), PendingCounts { curated: 0, rejected: 0, claimed: 200 });
}

#[test]
fn duplicates_and_refusals_are_recorded_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir.path().join("f.db"));
    let t = tenant(&s, "acme", Some(3), 10);
    let mut bad = example("x");
    bad.curated = Err("quality: too short".into());
    let a =
        s.append_examples(&t.id, &[example("a"), example("a"), bad, example("b")], "m").unwrap();
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
    s.fail_job(&job.id, &JobError { code: "x".into(), message: "y".into(), param: None }).unwrap();
    assert_eq!(s.pending(&t.id).unwrap().curated, 3);
}

#[test]
fn quota_blocks_and_frees_with_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(1_000_000));
    let c = clock.clone();
    let s = open(&dir.path().join("f.db")).with_clock(move || c.load(Ordering::SeqCst));
    let t = tenant(&s, "acme", None, 2);
    let new = NewJob {
        tenant_id: t.id.clone(),
        model: "m".into(),
        training_file: Some("file-1".into()),
        validation_file: None,
        trigger: Trigger::Manual,
        spec: JobSpec::default(),
    };
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
}

fn err_text(s: &SqliteStore, new: &NewJob) -> String {
    s.create_job(new).unwrap_err().to_string()
}

#[test]
fn leases_expire_resume_and_fence_the_old_worker() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(1_000));
    let c = clock.clone();
    let s = open(&dir.path().join("f.db")).with_clock(move || c.load(Ordering::SeqCst));
    let t = tenant(&s, "acme", None, 10);
    let hi = tenant(&s, "vip", None, 10);
    s.update_settings(&hi.id, &TenantSettings { priority: 9, ..hi.settings.clone() }).unwrap();
    let mk = |tid: &str, gpus| NewJob {
        tenant_id: tid.into(),
        model: "m".into(),
        training_file: Some("file-1".into()),
        validation_file: None,
        trigger: Trigger::Manual,
        spec: JobSpec { resources: Resources { gpus, memory_gb: 4 }, ..JobSpec::default() },
    };
    let hyper = Hyperparameters {
        n_epochs: 1,
        batch_size: 1,
        learning_rate_multiplier: 1.0,
        learning_rate: 1e-4,
        lora_r: 8,
        lora_alpha: 16.0,
        lora_targets: "q_proj".into(),
        save_every: 5,
        seed: 1,
    };
    let low = s.create_job(&mk(&t.id, 0)).unwrap();
    let gpu = s.create_job(&mk(&hi.id, 1)).unwrap();
    let high = s.create_job(&mk(&hi.id, 0)).unwrap();
    for j in [&low, &gpu, &high] {
        s.job_validated(&j.id, "file-1", None, &hyper).unwrap();
    }
    let cpu = Capacity { gpus: 0, memory_gb: 16, models: None };
    let a = s.lease("w1", &cpu, 30).unwrap().unwrap();
    assert_eq!(a.id, high.id, "priority first; the GPU job does not fit a CPU worker");
    let files = BTreeMap::from([("adapter.safetensors".to_string(), "ab".repeat(32))]);
    s.add_checkpoint(&a.id, "w1", 5, &files, &serde_json::json!({"train_loss": 1.5})).unwrap();
    clock.fetch_add(20, Ordering::SeqCst);
    s.heartbeat(&a.id, "w1", 30, (5, 10)).unwrap();
    clock.fetch_add(31, Ordering::SeqCst);
    let reaped = s.reap_expired(3).unwrap();
    assert_eq!(
        reaped.iter().map(|j| (j.id.as_str(), j.status)).collect::<Vec<_>>(),
        [(a.id.as_str(), JobStatus::Queued)]
    );
    let b = s.lease("w2", &cpu, 30).unwrap().unwrap();
    assert_eq!((b.id.as_str(), b.attempts), (a.id.as_str(), 2));
    assert_eq!(s.checkpoints(&b.id).unwrap()[0].step, 5, "w2 resumes from the checkpoint");
    let e = s.heartbeat(&a.id, "w1", 30, (6, 10)).unwrap_err();
    assert!(matches!(e, StoreError::LeaseLost { .. }), "{e}");
    let done = Finish::Succeeded {
        trained_tokens: 100,
        fine_tuned_model: "ft:m:acme".into(),
        adapter_sha256: "cd".repeat(32),
        result: Box::default(),
    };
    assert!(s.finish(&a.id, "w1", &done).is_err(), "the fenced worker cannot finish it");
    let j = s.finish(&a.id, "w2", &done).unwrap();
    assert_eq!((j.status, j.trained_tokens), (JobStatus::Succeeded, Some(100)));
    // Cancelling a running job fences its worker.
    let c2 = s.lease("w3", &cpu, 30).unwrap().unwrap();
    assert_eq!(c2.id, low.id);
    s.cancel_job(Some(&t.id), &c2.id).unwrap();
    let e = s.heartbeat(&c2.id, "w3", 30, (1, 2)).unwrap_err().to_string();
    assert!(e.contains("cancelled"), "{e}");
    assert!(s
        .cancel_job(Some(&t.id), &c2.id)
        .unwrap_err()
        .to_string()
        .contains("already cancelled"));
    // Too many lost leases fail the job.
    let g = s
        .lease("gpu-w", &Capacity { gpus: 1, memory_gb: 80, models: Some(vec!["m".into()]) }, 1)
        .unwrap()
        .unwrap();
    assert_eq!(g.id, gpu.id);
    clock.fetch_add(2, Ordering::SeqCst);
    let r = s.reap_expired(1).unwrap();
    assert_eq!(r[0].status, JobStatus::Failed);
    assert_eq!(r[0].error.as_ref().unwrap().code, "worker_lost");
    // Events are newest first with a cursor.
    let ev = s.events(&a.id, None, 100).unwrap();
    assert!(ev.windows(2).all(|w| w[0].id > w[1].id));
    let older = s.events(&a.id, Some(ev[1].id), 100).unwrap();
    assert_eq!(older.len(), ev.len() - 2);
}

#[test]
fn rows_of_other_tenants_are_not_found() {
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
    };
    s.insert_file(&f).unwrap();
    assert!(matches!(s.file(&b.id, "file-1"), Err(StoreError::NotFound { .. })));
    let j = s
        .create_job(&NewJob {
            tenant_id: a.id.clone(),
            model: "m".into(),
            training_file: Some("file-1".into()),
            validation_file: None,
            trigger: Trigger::Manual,
            spec: JobSpec::default(),
        })
        .unwrap();
    assert!(matches!(s.job(Some(&b.id), &j.id), Err(StoreError::NotFound { .. })));
    assert!(matches!(s.cancel_job(Some(&b.id), &j.id), Err(StoreError::NotFound { .. })));
    assert!(s.jobs(Some(&b.id), None, 10).unwrap().is_empty());
    assert_eq!(s.jobs(Some(&a.id), None, 10).unwrap().len(), 1);
    assert!(matches!(
        s.create_tenant("a", "free", &TenantSettings::default()),
        Err(StoreError::Conflict(_))
    ));
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
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub/forja.db");
    let id = tenant(&open(&db), "a", None, 10).id;
    assert_eq!(open(&db).tenant_by_name("a").unwrap().id, id);
    let e = SqliteStore::open(dir.path(), Duration::from_secs(1)).unwrap_err().to_string();
    assert!(e.contains(&dir.path().display().to_string()), "{e}");
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
