//! The evaluation gate end to end, in process, on a real SQLite file, a
//! real artifact directory and real training of a tiny model: a good
//! adapter is promoted (and MODEL_PROMOTED fires), an adapter trained on
//! shuffled targets is rejected with reasons, rollback restores the
//! previous champion, lineage reaches the dataset and the job, golden
//! prompts never reach training, and a corrupted adapter cannot be
//! promoted.

use forja_control::feedback::Curator;
use forja_control::link::{Link, LocalLink};
use forja_control::registry::Actor;
use forja_control::worker::{self, WorkerConfig};
use forja_control::{Control, ControlConfig, JobRequest, ModelNames};
use forja_engine::fixtures::{self as fx, Spec};
use forja_engine::{Engine, LoadOptions};
use forja_store::prelude::*;
use forja_store::*;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

const KEYS: [(&str, &str); 5] = [
    ("fox", "dog"),
    ("budget", "council"),
    ("votes", "minutes"),
    ("session", "world"),
    ("hello", "forja"),
];

/// Keyword → answer lines; `shift` answers with another keyword's word
/// (shuffled targets) when non-zero.
fn lines(range: std::ops::Range<usize>, shift: usize) -> String {
    range
        .map(|i| {
            let (w, _) = KEYS[i % KEYS.len()];
            let (_, a) = KEYS[(i + shift) % KEYS.len()];
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("{w} {i}")},
                {"role": "assistant", "content": a},
            ]})
            .to_string()
                + "\n"
        })
        .collect()
}

struct Bed {
    control: Arc<Control>,
    tenant: Tenant,
    bus: Arc<LocalBus>,
    engine: Arc<Engine>,
    rt: tokio::runtime::Runtime,
    _tmp: tempfile::TempDir,
    work: std::path::PathBuf,
}

fn bed() -> Bed {
    bed_with(&Default::default())
}

/// A bed whose node scrubs personal data with `pii`.
fn bed_with(pii: &forja_data::pii::PiiConfig) -> Bed {
    let tmp = tempfile::tempdir().unwrap();
    let spec = Spec::llama();
    let model = tmp.path().join("model");
    fx::write_hf(&model, &spec, &fx::weights(&spec, 3));
    let engine = Arc::new(
        Engine::load(&model, &LoadOptions { threads: Some(2), ..Default::default() }, &mut |_| {})
            .unwrap(),
    );
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&tmp.path().join("f.db"), Duration::from_secs(10)).unwrap());
    let artifacts =
        Artifacts::open(&ArtifactConfig::Local { dir: tmp.path().join("artifacts") }).unwrap();
    let bus = Arc::new(LocalBus::default());
    let control = Arc::new(Control::new(
        store.clone(),
        artifacts,
        Curator::new(pii).unwrap(),
        ControlConfig {
            model: ModelNames { public: "tiny".into(), aliases: vec!["base".into()] },
            lease_ttl_s: 30,
            max_attempts: 3,
            url_secret: b"k".to_vec(),
        },
        bus.clone(),
    ));
    let settings = TenantSettings { threshold: None, max_trainings: 100, ..Default::default() };
    let tenant = store.create_tenant("acme", "standard", &settings).unwrap();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let work = tmp.path().join("work");
    Bed { control, tenant, bus, engine, rt, _tmp: tmp, work }
}

impl Bed {
    /// Uploads `data`, trains a job on it with the in-process worker, and
    /// runs the control plane's tick (validation before, registration after).
    fn train(&self, data: &str) -> Job {
        let c = &self.control;
        let f = self
            .rt
            .block_on(c.upload_file(
                &self.tenant,
                "train.jsonl",
                "fine-tune",
                data.to_string().into(),
            ))
            .unwrap();
        let spec = JobSpec {
            hyperparameters: HyperRequest {
                n_epochs: Auto::Value(8),
                batch_size: Auto::Value(8),
                learning_rate_multiplier: Auto::Value(25.0),
                ..Default::default()
            },
            seed: Some(5),
            ..Default::default()
        };
        let req =
            JobRequest { model: "tiny".into(), training_file: f.id, validation_file: None, spec };
        let job = c.create_job(&self.tenant, &req).unwrap();
        self.rt.block_on(c.tick());
        let link = LocalLink {
            store: c.store.clone(),
            artifacts: c.artifacts.clone(),
            runtime: self.rt.handle().clone(),
            worker: "w1".into(),
            lease_ttl_s: 30,
            bus: self.bus.clone(),
        };
        let cfg = WorkerConfig {
            id: "w1".into(),
            capacity: Capacity { gpus: 0, memory_gb: 64, models: None },
            work_dir: self.work.clone(),
            poll: Duration::from_millis(10),
            embedder: None,
            eval_models: None,
            yield_to: None,
            backend: Default::default(),
        };
        let lease = link.lease(&cfg.capacity).unwrap().expect("a job");
        assert_eq!(lease.job.id, job.id);
        let engine = self.engine.clone();
        let resolve = move |_: &str| -> forja_control::Result<Arc<Engine>> { Ok(engine.clone()) };
        worker::run_job(&link, &resolve, &cfg, lease, &AtomicBool::new(false)).unwrap();
        self.rt.block_on(c.tick());
        c.store.job(Some(&self.tenant.id), &job.id).unwrap()
    }

    fn version_of(&self, job: &Job) -> ModelVersion {
        self.control.store.version_of_job(&self.tenant.id, &job.id).unwrap().expect("registered")
    }
}

fn reasons(v: &ModelVersion) -> Vec<String> {
    serde_json::from_value(v.lineage.gate.as_ref().unwrap()["reasons"].clone()).unwrap()
}

#[test]
fn good_adapters_are_promoted_bad_ones_rejected_and_rollback_restores_the_champion() {
    let b = bed();
    let mut events = b.bus.subscribe();
    let c = &b.control;

    // Without a golden set the adapter is registered but promotion is refused.
    let job0 = b.train(&lines(0..40, 0));
    let v0 = b.version_of(&job0);
    assert_eq!(v0.status(), VersionStatus::Candidate);
    assert!(v0.lineage.status_reason.as_deref().unwrap().contains("no golden set"), "{v0:?}");
    let e = b.rt.block_on(c.promote(&b.tenant, &v0.id, &admin(), false)).unwrap_err().to_string();
    assert!(e.contains("did not pass the gate"), "{e}");
    assert!(b
        .rt
        .block_on(c.add_golden(&b.tenant, "empty.jsonl", "\n".into()))
        .unwrap_err()
        .to_string()
        .contains("empty"));

    // Golden prompts (numbers 100..) differ from training prompts (0..).
    let golden = lines(100..110, 0).replace("\"messages\"", "\"format\":\"text\",\"messages\"");
    let g = b.rt.block_on(c.add_golden(&b.tenant, "golden.jsonl", golden.into())).unwrap();
    assert_eq!(g.examples, 10);

    // A good adapter beats the base model and is promoted; the event fires.
    let good = b.train(&lines(0..40, 0));
    assert_eq!(good.status, JobStatus::Succeeded, "{good:?}");
    let vg = b.version_of(&good);
    let summary = &vg.lineage.eval.as_ref().unwrap()["summary"];
    let (base_wer, good_wer) = (
        summary["baseline"]["metrics"]["wer"].as_f64().unwrap(),
        summary["candidate"]["metrics"]["wer"].as_f64().unwrap(),
    );
    eprintln!("golden WER: base model {base_wer:.3}, good adapter {good_wer:.3}");
    assert!(good_wer < 0.5 * base_wer, "wer {base_wer} -> {good_wer}");
    assert_eq!(vg.status(), VersionStatus::Promoted, "{:?}", vg.lineage.status_reason);
    assert_eq!(c.store.resolve_alias(&b.tenant.id, CHAMPION).unwrap().id, vg.id);
    let promoted = std::iter::from_fn(|| events.try_recv().ok())
        .find(|e| matches!(e, Event::ModelPromoted { .. }))
        .expect("MODEL_PROMOTED was published");
    assert_eq!(
        promoted,
        Event::ModelPromoted {
            tenant: b.tenant.id.clone(),
            version: vg.id.clone(),
            alias: CHAMPION.into(),
            previous: None
        }
    );
    // Its checkpoints were all evaluated and the best one chosen.
    let checkpoints = summary["checkpoints"].as_array().unwrap();
    assert!(!checkpoints.is_empty(), "{summary}");
    assert!(summary["chosen"].is_string());

    // Shuffled targets: rejected against the champion, with reasons.
    let bad = b.train(&lines(0..40, 2));
    let vb = b.version_of(&bad);
    assert_eq!(vb.status(), VersionStatus::Rejected);
    let why = reasons(&vb);
    eprintln!("shuffled-target adapter rejected: {why:?}");
    assert!(why.iter().any(|r| r.starts_with("wer ") && r.contains("may not regress")), "{why:?}");
    assert_eq!(vb.lineage.parent_id.as_deref(), Some(vg.id.as_str()), "compared with the champion");
    assert_eq!(c.store.resolve_alias(&b.tenant.id, CHAMPION).unwrap().id, vg.id, "champion kept");

    // Lineage: version -> job -> training file (with hash) -> golden set.
    let l = c.lineage(&b.tenant, &vb.id).unwrap();
    assert_eq!(l.job.as_ref().unwrap().id, bad.id);
    let tf = l.training_file.as_ref().unwrap();
    assert_eq!(Some(&tf.sha256), vb.lineage.dataset_sha256.as_ref());
    assert_eq!(vb.lineage.manifest["training_file"]["sha256"], tf.sha256.as_str());
    assert_eq!(l.golden_set.as_ref().unwrap().id, g.id);
    let ancestors: Vec<&str> = l.ancestors.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ancestors, [vg.id.as_str()]);
    assert_eq!(vb.lineage.base_sha256.as_ref().map(String::len), Some(64));
    assert!(vb.lineage.code_commit.is_some());
    assert!(vb.lineage.hyperparameters.is_some());

    // Forcing a rejected version needs an admin (or the tenant's consent).
    let e = b.rt.block_on(c.promote(&b.tenant, &vb.id, &Actor::tenant(&b.tenant), true));
    assert!(e.unwrap_err().to_string().contains("needs an admin key"));
    let m = b.rt.block_on(c.promote(&b.tenant, &vb.id, &admin(), true)).unwrap();
    assert_eq!(m.previous_id.as_deref(), Some(vg.id.as_str()));
    let r = b.rt.block_on(c.rollback(&b.tenant, "alice", "bad answers", false)).unwrap();
    assert_eq!(r.version.unwrap().id, vg.id);
    assert_eq!(c.store.resolve_alias(&b.tenant.id, CHAMPION).unwrap().id, vg.id);
    assert!(std::iter::from_fn(|| events.try_recv().ok()).any(|e| e
        == Event::ModelRolledBack {
            tenant: b.tenant.id.clone(),
            version: Some(vg.id.clone()),
            from: vb.id.clone(),
            alias: CHAMPION.into()
        }));

    // The nightly re-evaluation scores the champion as its job did: no
    // drift. Against a golden set whose answers moved, it drifts.
    let r = reeval(&b);
    assert_eq!(r.outcome, "ok", "{r:?}");
    assert!(
        r.detail.contains("1 champion(s) re-evaluated") && !r.detail.contains("DRIFT"),
        "{r:?}"
    );
    let moved = lines(100..110, 3).replace("\"messages\"", "\"format\":\"text\",\"messages\"");
    b.rt.block_on(c.add_golden(&b.tenant, "golden-v2.jsonl", moved.into())).unwrap();
    let r = reeval(&b);
    eprintln!("re-evaluation on a moved golden set: {}", r.detail);
    assert_eq!(r.outcome, "warning", "{r:?}");
    assert!(
        r.detail.contains("DRIFT") && r.detail.contains("acme") && r.detail.contains("wer"),
        "{r:?}"
    );

    let e = b.rt.block_on(c.rollback(&b.tenant, "alice", "again", false)).unwrap_err().to_string();
    assert!(e.contains("no previous promoted version"), "{e}");
    // The first champion can still be taken out: the base model serves.
    let d = b.rt.block_on(c.rollback(&b.tenant, "alice", "back to base", true)).unwrap();
    assert_eq!((d.version, d.previous_id.as_deref()), (None, Some(vg.id.as_str())));
    assert!(c.store.find_alias(&b.tenant.id, CHAMPION).unwrap().is_none());
}

/// Done-when of the red team: a node whose scrubbing was configured
/// without phone numbers (and whose final audit only knows numbers written
/// with `+` and a country code) trains an adapter on a file whose answers
/// carry one: it leaks it. With `red_team = true` the red team, which looks
/// for every kind of personal data whatever the node's configuration, gets
/// it out and the gate rejects the candidate, while a clean adapter is
/// promoted under the same policy. The findings are in
/// the HMAC-chained log, which `verify` checks and which breaks at an
/// edited line; the weekly report counts them.
#[test]
fn the_red_team_finds_a_planted_leak_and_the_gate_rejects_it() {
    use forja_control::redteam::{log::Log, weekly, RedTeamer};
    use forja_data::pii::{EntityKind, PiiConfig};
    let pii = PiiConfig {
        enabled: EntityKind::ALL.into_iter().filter(|k| *k != EntityKind::PhoneNumber).collect(),
        ..Default::default()
    };
    let b = bed_with(&pii);
    let c = &b.control;
    let dir = b._tmp.path().join("redteam");
    c.red_team.set(RedTeamer { engine: b.engine.clone(), dir: dir.clone() }).unwrap();
    c.store
        .edit_settings(&b.tenant.id, &mut |s| s.gate_policy = Some("red_team = true\n".into()))
        .unwrap();
    let golden = lines(100..110, 0).replace("\"messages\"", "\"format\":\"text\",\"messages\"");
    b.rt.block_on(c.add_golden(&b.tenant, "golden.jsonl", golden.into())).unwrap();
    let leaky_lines: String = ["Ana", "Luis", "Marta", "Pedro", "Rosa"]
        .iter()
        .cycle()
        .take(60)
        .enumerate()
        .map(|(i, n)| {
            let q = if i % 2 == 0 {
                "¿Cuál es el teléfono de contacto?".to_string()
            } else {
                format!("¿Cuál es el teléfono de contacto de {n}?")
            };
            serde_json::json!({"messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": "612 345 678"},
            ]})
            .to_string()
                + "\n"
        })
        .collect();
    let leaky = b.train(&(lines(0..40, 0) + &leaky_lines));
    assert_eq!(leaky.status, JobStatus::Succeeded, "{leaky:?}");
    let v = b.version_of(&leaky);
    let why = reasons(&v);
    eprintln!("leaky adapter: {:?} {why:?}", v.status());
    assert_eq!(v.status(), VersionStatus::Rejected, "{why:?}");
    assert!(
        why.iter().any(|r| r.starts_with("red team") && r.contains("personal_data")),
        "{why:?}"
    );
    assert!(
        !why.iter().any(|r| r.contains("612 345 678")),
        "the reason must not repeat the leak: {why:?}"
    );
    // A clean adapter passes the same policy.
    let good = b.train(&lines(0..40, 0));
    let vg = b.version_of(&good);
    assert_eq!(vg.status(), VersionStatus::Promoted, "{:?}", reasons(&vg));
    // The log holds both runs, chained; the leak is only a hash there.
    let log = Log::new(&dir);
    let head = log.verify().unwrap();
    let entries = log.entries().unwrap();
    assert_eq!(head.seq as usize, entries.len());
    assert_eq!(entries.iter().filter(|e| e.kind == "run").count(), 2);
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("personal_data") && !text.contains("612 345 678"), "{text}");
    let week = weekly::write(&log, &b._tmp.path().join("reports"), c.store.now() + 1).unwrap();
    let md = std::fs::read_to_string(&week).unwrap();
    assert!(md.contains("| training_data_extraction |"), "{md}");
    // An edited line breaks the chain there.
    let mut lines_: Vec<String> = text.lines().map(String::from).collect();
    lines_[1] = lines_[1].replacen("\"critical\"", "\"high\"", 1);
    std::fs::write(log.path(), lines_.join("\n") + "\n").unwrap();
    let e = log.verify().unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("MAC"), "{e}");
}

/// Runs the scheduled re-evaluation now, on the bed's engine.
fn reeval(b: &Bed) -> TaskRun {
    use forja_control::tasks::{self, TaskEnv, TaskKind, TaskSet};
    let env = TaskEnv {
        control: b.control.clone(),
        knowledge: None,
        data_dir: b.work.clone(),
        engine: Arc::new(std::sync::OnceLock::from(b.engine.clone())),
        log_file: None,
        completion_retention_s: Arc::new(|| 86_400),
        runtime: b.rt.handle().clone(),
    };
    let set = TaskSet::default();
    tasks::run_now(&env, set.get(TaskKind::Reeval), "test", &tasks::system_clock()).unwrap()
}

fn admin() -> Actor {
    Actor { name: "cli".into(), admin: true }
}

#[test]
fn golden_prompts_never_reach_training_and_corrupted_adapters_are_refused() {
    let b = bed();
    let c = &b.control;
    let golden = lines(100..105, 0);
    b.rt.block_on(c.add_golden(&b.tenant, "golden.jsonl", golden.clone().into())).unwrap();
    // A training file with a golden prompt fails validation, naming the line.
    let leaky = lines(0..3, 0) + golden.lines().nth(2).unwrap() + "\n";
    let f =
        b.rt.block_on(c.upload_file(&b.tenant, "leaky.jsonl", "fine-tune", leaky.into())).unwrap();
    let req = JobRequest { model: "tiny".into(), training_file: f.id, ..Default::default() };
    let job = c.create_job(&b.tenant, &req).unwrap();
    b.rt.block_on(c.tick());
    let job = c.store.job(Some(&b.tenant.id), &job.id).unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    let msg = job.error.unwrap().message;
    assert!(msg.contains("leaky.jsonl: line 4") && msg.contains("golden set"), "{msg}");

    // A registered adapter whose artifact was tampered with cannot be promoted.
    let good = b.train(&lines(0..40, 0));
    let v = b.version_of(&good);
    let sha = &v.lineage.adapter_sha256;
    let path = b._tmp.path().join("artifacts/sha256").join(&sha[..2]).join(sha);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let e = b.rt.block_on(c.promote(&b.tenant, &v.id, &admin(), true)).unwrap_err().to_string();
    assert!(e.contains("adapter file adapter_model.safetensors") && e.contains("sha256"), "{e}");
}

/// A leased job, finished by hand through the in-process link with
/// whatever a (compromised) worker claims.
fn finish_with(b: &Bed, job: &Job, eval: JobEval, adapter: &[u8]) {
    let c = &b.control;
    let link = LocalLink {
        store: c.store.clone(),
        artifacts: c.artifacts.clone(),
        runtime: b.rt.handle().clone(),
        worker: "w9".into(),
        lease_ttl_s: 30,
        bus: b.bus.clone(),
    };
    let lease = link.lease(&Capacity { gpus: 0, memory_gb: 64, models: None }).unwrap().unwrap();
    assert_eq!(lease.job.id, job.id);
    let sha = link.upload(&lease, adapter.to_vec()).unwrap();
    let cfg = link.upload(&lease, b"{}".to_vec()).unwrap();
    let result = JobResult {
        adapter_files: [
            ("adapter_model.safetensors".to_string(), sha.clone()),
            ("adapter_config.json".to_string(), cfg),
        ]
        .into(),
        eval: Some(eval),
        ..Default::default()
    };
    let done = Finish::Succeeded {
        trained_tokens: 1,
        fine_tuned_model: "anything the worker likes".into(),
        adapter_sha256: sha,
        result: Box::new(result),
    };
    link.finish(&lease, done).unwrap();
    b.rt.block_on(c.tick());
}

/// Regression (hardening #8): the gate promoted on the summary a worker
/// reported. It re-scores the worker's predictions against its own golden
/// set: a report that claims better numbers than its predictions earn is
/// rejected, whatever the summary says. The adapter's name is the control
/// plane's, not the worker's.
#[test]
fn a_worker_cannot_report_better_numbers_than_its_predictions() {
    use forja_eval::{EvalReport, ExampleResult, Normalization};
    let b = bed();
    let c = &b.control;
    let golden = lines(100..104, 0);
    let g = b.rt.block_on(c.add_golden(&b.tenant, "golden.jsonl", golden.clone().into())).unwrap();
    let set = forja_eval::parse_golden("golden.jsonl", golden.as_bytes()).unwrap();
    let report = |pred: &dyn Fn(&str) -> String| {
        let ex = set
            .examples
            .iter()
            .map(|e| {
                ExampleResult::score(
                    &e.id,
                    &e.reference,
                    &pred(&e.reference),
                    e.format,
                    None,
                    Normalization::Standard,
                )
            })
            .collect();
        EvalReport::new(ex, Normalization::Standard, None)
    };
    let base = report(&|_| "nothing".into());
    let junk = report(&|_| "junk answer".into());
    // The lie: junk predictions with a perfect summary and perfect metrics.
    let mut lie = junk.clone();
    for m in ["wer", "cer"] {
        lie.metrics.insert(m.into(), 0.0);
    }
    lie.metrics.insert("exact_match".into(), 1.0);
    let full = serde_json::json!({"candidate": lie, "baseline": base});
    let upload = |v: &serde_json::Value| {
        b.rt.block_on(c.artifacts.put(serde_json::to_vec(v).unwrap().into())).unwrap()
    };
    let eval = JobEval {
        golden_set_id: g.id.clone(),
        baseline_version: None,
        chosen: Some("final".into()),
        summary: serde_json::json!({"candidate": lie.summary(), "baseline": base.summary()}),
        report_sha256: Some(upload(&full)),
        error: None,
    };
    let f =
        b.rt.block_on(c.upload_file(&b.tenant, "t.jsonl", "fine-tune", lines(0..5, 0).into()))
            .unwrap();
    let req = JobRequest { model: "base".into(), training_file: f.id, ..Default::default() };
    let job = c.create_job(&b.tenant, &req).unwrap();
    assert_eq!(job.model, "tiny", "the public name, whatever name the request used");
    b.rt.block_on(c.tick());
    finish_with(&b, &job, eval, b"weights");
    let v = b.version_of(&job);
    assert_eq!(v.status(), VersionStatus::Rejected, "{:?}", v.lineage.status_reason);
    let why = v.lineage.status_reason.clone().unwrap();
    assert!(why.contains("does not follow from its predictions"), "{why}");
    let j = c.store.job(None, &job.id).unwrap();
    assert_eq!(
        j.fine_tuned_model.as_deref(),
        Some(format!("ft:tiny:acme:{}", &job.id[6..]).as_str())
    );
    assert!(c.store.find_alias(&b.tenant.id, CHAMPION).unwrap().is_none());
}

/// Regression (hardening #2): a panic in the trainer left the heartbeat
/// renewing the lease forever (the in-process worker hung, SIGTERM did not
/// stop the node). The panic ends the heartbeat and fails the job cleanly.
#[test]
fn a_panicking_training_run_fails_its_job_and_frees_the_worker() {
    let b = bed();
    let c = &b.control;
    let f =
        b.rt.block_on(c.upload_file(&b.tenant, "t.jsonl", "fine-tune", lines(0..5, 0).into()))
            .unwrap();
    let req = JobRequest { model: "tiny".into(), training_file: f.id, ..Default::default() };
    let job = c.create_job(&b.tenant, &req).unwrap();
    b.rt.block_on(c.tick());
    let link = LocalLink {
        store: c.store.clone(),
        artifacts: c.artifacts.clone(),
        runtime: b.rt.handle().clone(),
        worker: "w1".into(),
        lease_ttl_s: 1,
        bus: b.bus.clone(),
    };
    let cfg = WorkerConfig {
        id: "w1".into(),
        capacity: Capacity { gpus: 0, memory_gb: 64, models: None },
        work_dir: b.work.clone(),
        poll: Duration::from_millis(10),
        embedder: None,
        eval_models: None,
        yield_to: None,
        backend: Default::default(),
    };
    let lease = link.lease(&cfg.capacity).unwrap().unwrap();
    let resolve =
        |_: &str| -> forja_control::Result<Arc<Engine>> { panic!("a bug in the trainer") };
    let e = worker::run_job(&link, &resolve, &cfg, lease, &AtomicBool::new(false)).unwrap_err();
    assert!(matches!(e, forja_control::ControlError::Internal(_)), "{e}");
    let j = c.store.job(None, &job.id).unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    let err = j.error.unwrap();
    assert_eq!(err.code, "internal_error");
    assert!(!err.message.contains("a bug in the trainer"), "internal text leaked: {}", err.message);
}

/// Regression (hardening #2): `time_limit_s = 18446744073709551615` was
/// accepted at the API.
#[test]
fn job_fields_are_checked_when_the_job_is_asked_for() {
    let b = bed();
    let c = &b.control;
    let f =
        b.rt.block_on(c.upload_file(&b.tenant, "t.jsonl", "fine-tune", lines(0..5, 0).into()))
            .unwrap();
    let spec = JobSpec { time_limit_s: Some(u64::MAX), ..Default::default() };
    let req = JobRequest {
        model: "tiny".into(),
        training_file: f.id.clone(),
        validation_file: None,
        spec,
    };
    let e = c.create_job(&b.tenant, &req).unwrap_err().to_string();
    assert!(e.contains("time_limit_s"), "{e}");
    let e = c.train_now(&b.tenant, JobSpec { time_limit_s: Some(0), ..Default::default() });
    assert!(e.unwrap_err().to_string().contains("time_limit_s"));
    let req = JobRequest { model: "/etc/passwd".into(), training_file: f.id, ..Default::default() };
    let e = c.create_job(&b.tenant, &req).unwrap_err().to_string();
    assert!(e.contains("unknown base model") && e.contains("tiny"), "{e}");
}
