//! Replicas: three `forja serve` processes on one Postgres database (and
//! one artifact directory, as they would share a bucket). What must
//! happen once happens once across them: feedback posted to all three at
//! the same time crosses the tenant's threshold into exactly one job per
//! crossing, the quota stops the crossings past it on every replica, and
//! workers racing for leases through different replicas never get the same
//! job. A promotion through one replica and a rollback through another
//! reach all three while clients keep asking, with no failed request.

use crate::common;

use common::server::{post, spawn, wait_for, Server};
use common::{forja_cmd, stderr, tiny_gguf};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

fn cli(url: &str, data: &Path, args: &[&str]) -> String {
    let mut a = args.to_vec();
    a.extend(["--data-dir", data.to_str().unwrap()]);
    let o = forja_cmd(&a).env("FORJA_DATABASE", url).output().unwrap();
    assert!(o.status.success(), "forja {args:?}: {}", stderr(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// A replica: `workers` in-process training workers, a control tick of
/// `tick_ms`.
fn replica(url: &str, data: &Path, model: &Path, art: &Path, workers: u32, tick_ms: u32) -> Server {
    let (workers, tick_ms) = (workers.to_string(), tick_ms.to_string());
    let args = [
        "serve",
        "--port",
        "0",
        "--data-dir",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--artifacts",
        art.to_str().unwrap(),
        "--workers",
        &workers,
        "--tick-ms",
        &tick_ms,
        "-t",
        "1",
        "--embedding-model",
        "none",
    ];
    spawn(&args, &[("FORJA_DATABASE", url)], |_| {})
}

#[test]
fn three_replicas_on_one_postgres_trigger_count_and_lease_exactly_once() {
    let Some(pg) = crate::pg::server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = pg.database(&crate::pg::name_for(d));
    let model = tiny_gguf(d);
    let art = d.join("artifacts");
    let data: Vec<_> = (0..3).map(|i| d.join(format!("replica{i}"))).collect();
    // One node, three replicas: the first makes the node's key, the others get a copy.
    cli(&url, &data[0], &["tenants", "create", "acme", "--threshold", "10"]);
    cli(
        &url,
        &data[0],
        &["tenants", "create", "capped", "--threshold", "5", "--max-trainings", "3"],
    );
    for r in &data[1..] {
        std::fs::create_dir_all(r).unwrap();
        std::fs::copy(data[0].join("node.key"), r.join("node.key")).unwrap();
    }
    let acme = cli(&url, &data[1], &["keys", "create", "--tenant", "acme"]);
    let capped = cli(&url, &data[2], &["keys", "create", "--tenant", "capped"]);
    let worker = cli(&url, &data[0], &["keys", "create", "--worker"]);
    let replicas: Vec<Server> =
        data.iter().map(|r| replica(&url, r, &model, &art, 0, 200)).collect();
    for s in &replicas {
        wait_for(
            Duration::from_secs(60),
            || common::server::get_status(s, "/ready", "") == 200,
            "a replica to be ready",
        );
    }

    // Eight clients post 40 corrections each to both tenants, one at a
    // time, spread over the replicas.
    std::thread::scope(|scope| {
        for c in 0..8 {
            let (replicas, acme, capped) = (&replicas, &acme, &capped);
            scope.spawn(move || {
                for i in 0..5 {
                    let s = &replicas[(c + i) % 3];
                    for (key, tenant) in [(acme, "acme"), (capped, "capped")] {
                        let ex = json!({"prompt": format!("{tenant} question {c} {i}"),
                            "correction": format!("the answer to {c} {i} for {tenant}")});
                        let (st, r, _) = post(s, "/v1/feedback", key, ex);
                        assert_eq!(st, 200, "{r}");
                    }
                }
            });
        }
    });
    let jobs = |s: &Server, key: &str| -> Vec<Value> {
        let (st, r) = common::server::get(s, "/v1/fine_tuning/jobs?limit=100", key);
        assert_eq!(st, 200, "{r}");
        r["data"].as_array().unwrap().clone()
    };
    // 40 examples at a threshold of 10: four crossings, four jobs, seen
    // alike from every replica.
    let acme_jobs = jobs(&replicas[2], &acme);
    assert_eq!(acme_jobs.len(), 4, "{acme_jobs:?}");
    for s in &replicas[..2] {
        assert_eq!(jobs(s, &acme).len(), 4);
    }
    // A threshold of 5 would cross eight times; the quota allows three.
    assert_eq!(jobs(&replicas[0], &capped).len(), 3);
    let (_, status) = common::server::get(&replicas[1], "/v1/learning/status", &capped);
    assert_eq!(status["pending"]["curated"], 25, "{status}");

    // Twelve workers race for the seven jobs, once the control ticks have
    // validated their files, through all replicas.
    wait_for(
        Duration::from_secs(60),
        || {
            let queued = |key: &str| {
                jobs(&replicas[0], key).iter().filter(|j| j["status"] == "queued").count()
            };
            queued(&acme) + queued(&capped) == 7
        },
        "the seven jobs to be queued",
    );
    let leased: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|w| {
                let (replicas, worker) = (&replicas, &worker);
                scope.spawn(move || {
                    let body = json!({"worker": format!("w{w}"), "capacity": {"gpus": 0, "memory_gb": 8, "models": null}});
                    let (st, r, _) = post(&replicas[w % 3], "/v1/worker/lease", worker, body);
                    assert!(st == 200 || st == 204, "{st} {r}");
                    (st == 200).then(|| r["job"]["id"].as_str().unwrap().to_string())
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().unwrap()).collect()
    });
    let distinct: BTreeSet<&String> = leased.iter().collect();
    assert_eq!(leased.len(), 7, "every queued job leased: {leased:?}");
    assert_eq!(distinct.len(), 7, "no job leased twice: {leased:?}");
}

/// Trains one version through `s` (its in-process worker) and returns its id.
fn train_version(s: &Server, key: &str) -> String {
    let (st, f) = common::server::upload(s, key, "train.jsonl", &common::server::chat_jsonl(24));
    assert_eq!(st, 200, "{f}");
    let body = json!({"model": "tiny.gguf", "training_file": f["id"],
        "hyperparameters": {"n_epochs": 2, "batch_size": 8}});
    let (st, j, _) = post(s, "/v1/fine_tuning/jobs", key, body);
    assert_eq!(st, 200, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    common::server::wait_job(s, key, &id, "succeeded", Duration::from_secs(300));
    let mut version = String::new();
    wait_for(
        Duration::from_secs(60),
        || {
            let (_, l) = common::server::get(s, "/v1/registry/models", key);
            version = l["data"]
                .as_array()
                .and_then(|d| d.iter().find(|v| v["job_id"] == id.as_str()))
                .and_then(|v| v["id"].as_str())
                .unwrap_or_default()
                .to_string();
            !version.is_empty()
        },
        "the job's version",
    );
    version
}

/// What `tiny@champion` is served by on `s` (a version id, or the base).
fn served(s: &Server, key: &str) -> (u16, String) {
    let body = json!({"model": "tiny@champion", "max_tokens": 2, "temperature": 0,
        "messages": [{"role": "user", "content": "hello"}]});
    let (st, r, _) = post(s, "/v1/chat/completions", key, body);
    (st, r["model"].as_str().unwrap_or_default().to_string())
}

/// Three replicas' data directories on one fresh database of `pg`, a
/// tenant `acme` whose gate never promotes by itself (forced promotions
/// allowed), and its key; replicas share the node key.
struct Replicas {
    dir: tempfile::TempDir,
    url: String,
    model: std::path::PathBuf,
    art: std::path::PathBuf,
    data: Vec<std::path::PathBuf>,
    key: String,
}

fn replicas(pg: &crate::pg::Server) -> Replicas {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = pg.database(&crate::pg::name_for(d));
    let model = tiny_gguf(d);
    let art = d.join("artifacts");
    let data: Vec<_> = (0..3).map(|i| d.join(format!("replica{i}"))).collect();
    let policy = d.join("gate.toml");
    std::fs::write(&policy, "auto_promote = false\n").unwrap();
    cli(&url, &data[0], &["tenants", "create", "acme"]);
    let p = policy.to_str().unwrap();
    let flags = ["--gate-policy", p, "--allow-forced-promotion", "true"];
    cli(&url, &data[0], &[&["tenants", "set", "acme"][..], &flags[..]].concat());
    for r in &data[1..] {
        std::fs::create_dir_all(r).unwrap();
        std::fs::copy(data[0].join("node.key"), r.join("node.key")).unwrap();
    }
    let key = cli(&url, &data[0], &["keys", "create", "--tenant", "acme"]);
    Replicas { dir, url, model, art, data, key }
}

/// A promotion made through one replica, and a rollback through another,
/// reach the others while clients keep asking all three: every request is
/// answered, and each replica serves the new champion soon after the move
/// commits (the time is printed: Postgres' NOTIFY carries the move, the
/// control tick's poll is the fallback).
#[test]
fn promotion_and_rollback_reach_every_replica_under_load() {
    let Some(pg) = crate::pg::server() else { return };
    let Replicas { dir: _dir, url, model, art, data, key } = replicas(pg);
    // Replica 0 trains; the tick is slow (5 s) so that only the registry
    // listener can bring a move sooner.
    let replicas: Vec<Server> = data
        .iter()
        .enumerate()
        .map(|(i, r)| replica(&url, r, &model, &art, u32::from(i == 0), 5000))
        .collect();
    for s in &replicas {
        wait_for(
            Duration::from_secs(60),
            || common::server::get_status(s, "/ready", "") == 200,
            "a replica to be ready",
        );
    }
    let v1 = train_version(&replicas[0], &key);
    let base = served(&replicas[1], &key).1;
    assert_ne!(base, v1);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (answered, failed) =
        (std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0));
    std::thread::scope(|scope| {
        for c in 0..6 {
            let (replicas, key, stop, answered, failed) =
                (&replicas, &key, &stop, &answered, &failed);
            scope.spawn(move || {
                use std::sync::atomic::Ordering::SeqCst;
                while !stop.load(SeqCst) {
                    let (st, _) = served(&replicas[c % 3], key);
                    let n = if st == 200 { answered } else { failed };
                    n.fetch_add(1, SeqCst);
                }
            });
        }
        // How long after a move each replica serves `want`.
        let converge = |want: &str| -> Vec<f64> {
            let t = std::time::Instant::now();
            let mut took = vec![None; 3];
            while took.iter().any(Option::is_none) {
                for (i, s) in replicas.iter().enumerate() {
                    if took[i].is_none() && served(s, &key).1 == want {
                        took[i] = Some(t.elapsed().as_secs_f64());
                    }
                }
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "no convergence on {want}: {took:?}"
                );
            }
            took.into_iter().map(Option::unwrap).collect()
        };
        let (st, m, _) = post(
            &replicas[0],
            &format!("/v1/registry/models/{v1}/promote"),
            &key,
            json!({"force": true}),
        );
        assert_eq!(st, 200, "{m}");
        let promoted = converge(&v1);
        let (st, m, _) = post(
            &replicas[2],
            "/v1/registry/rollback",
            &key,
            json!({"reason": "test", "to_base": true}),
        );
        assert_eq!(st, 200, "{m}");
        let rolled = converge(&base);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        eprintln!(
            "replicas: promotion served after {promoted:.3?} s, rollback after {rolled:.3?} s \
             (replica 0, 1, 2; tick 5 s)"
        );
    });
    let (answered, failed) = (answered.into_inner(), failed.into_inner());
    eprintln!("replicas: {answered} requests answered under load, {failed} failed");
    assert!(answered > 0);
    assert_eq!(failed, 0, "no request fails while the champion moves");
}

/// Replicas that were not there when the champion moved catch up: one
/// that starts late serves the current champion at once, and one whose
/// database connections were cut by an outage (the server stopped and
/// started again) serves the move made while it was reconnecting. Their
/// control tick is 10 minutes, so only the registry listener (its
/// reconnection and the re-read that follows) can bring them the moves.
#[test]
fn a_late_replica_and_one_back_from_a_database_outage_catch_up() {
    let Some(pg) = crate::pg::private() else { return };
    let Replicas { dir: _dir, url, model, art, data, key } = replicas(&pg);
    let ready = |s: &Server| {
        wait_for(
            Duration::from_secs(60),
            || common::server::get_status(s, "/ready", "") == 200,
            "a replica to be ready",
        )
    };
    let r0 = replica(&url, &data[0], &model, &art, 1, 200);
    let r1 = replica(&url, &data[1], &model, &art, 0, 600_000);
    ready(&r0);
    ready(&r1);
    let v1 = train_version(&r0, &key);
    let v2 = train_version(&r0, &key);
    let base = served(&r1, &key).1;
    // Retried while the database (or the replica's pool) is coming back.
    let post_until_ok = |s: &Server, path: &str, body: Value| {
        let t = std::time::Instant::now();
        loop {
            let (st, m, _) = post(s, path, &key, body.clone());
            if st == 200 {
                return m;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "POST {path}: {st} {m}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let serves = |s: &Server, want: &str, what: &str| {
        wait_for(Duration::from_secs(60), || served(s, &key).1 == want, what)
    };
    let promote = format!("/v1/registry/models/{v1}/promote");
    post_until_ok(&r0, &promote, json!({"force": true}));
    serves(&r1, &v1, "replica 1 to serve the promoted version");

    // A replica started after the promotion serves it from its first answer.
    let r2 = replica(&url, &data[2], &model, &art, 0, 600_000);
    ready(&r2);
    assert_eq!(served(&r2, &key), (200, v1.clone()), "the late replica serves the champion");

    // An outage cuts every connection; the next promotion is made through
    // replica 0 as soon as the database is back, while 1 and 2 are still
    // reconnecting their listeners.
    pg.stop();
    let (st, _) = served(&r1, &key);
    assert!(st == 200 || st == 503, "during the outage: {st}");
    pg.start_again();
    let t = std::time::Instant::now();
    post_until_ok(&r0, &format!("/v1/registry/models/{v2}/promote"), json!({"force": true}));
    let promoted = t.elapsed();
    serves(&r1, &v2, "replica 1 to serve the promotion made while it reconnected");
    serves(&r2, &v2, "replica 2 to serve the promotion made while it reconnected");
    eprintln!(
        "replicas after an outage: promotion accepted {:.0} ms after the restart, served by replicas 1 and 2 {:.0} ms after it",
        promoted.as_secs_f64() * 1e3,
        (t.elapsed() - promoted).as_secs_f64() * 1e3
    );
    // And their listeners work again: the next move reaches them too.
    post_until_ok(&r0, "/v1/registry/rollback", json!({"reason": "test", "to_base": true}));
    serves(&r1, &base, "replica 1 to serve the rollback");
    serves(&r2, &base, "replica 2 to serve the rollback");
}

/// `forja doctor --database URL` checks the Postgres database replicas
/// share: reachable, a primary, its schema; a database it cannot reach is
/// a `fail` line naming it (without its password), and exit status 1.
#[test]
fn doctor_checks_the_postgres_database() {
    let Some(pg) = crate::pg::server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = pg.database(&crate::pg::name_for(d));
    let doctor = |url: &str| {
        let o = forja_cmd(&["doctor", "--data-dir", d.to_str().unwrap(), "--database", url])
            .output()
            .unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let (code, out) = doctor(&url);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("ok    database  PostgreSQL ") && out.contains(", empty (the first command"),
        "{out}"
    );
    cli(&url, d, &["tenants", "create", "acme"]);
    let (_, out) = doctor(&url);
    let line = out.lines().find(|l| l.contains("database")).unwrap();
    let (have, newest) = line.rsplit_once(", schema ").unwrap().1.split_once(" of ").unwrap();
    assert_eq!(have, newest, "migrated to the newest schema: {line}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, out) = doctor(&format!("postgres://forja:s3cret@127.0.0.1:{port}/nowhere"));
    assert_eq!(code, Some(1), "{out}");
    let line = out.lines().find(|l| l.contains("database")).unwrap();
    assert!(line.starts_with("fail  database"), "{out}");
    assert!(!out.contains("s3cret"), "no password in the report: {out}");
}
