//! The proactive scheduler and self-repair, end to end on a real `forja
//! serve`: scheduled tasks run on an accelerated clock (a day in 24 s) and
//! their effects are checked (a backup that restores, garbage collection
//! that removed only the unreferenced artifact, a daily report that counts
//! what was served); fires missed while the node was down are caught up
//! once or skipped per task; `forja tasks list|run|history`; a configuration
//! reloaded on change and on SIGHUP, a bad one refused with the last good
//! one kept; and a scheduler that crashes is restarted, and marks the node
//! degraded in `/ready` and the metrics when it keeps crashing.

use crate::common;

use common::server::*;
use common::{forja, stderr, tiny_gguf};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn history(data: &Path, task: &str) -> Vec<Value> {
    let o = forja(
        &[
            "tasks",
            "history",
            task,
            "--json",
            "--limit",
            "500",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn ran(data: &Path, task: &str, outcome: &str) -> bool {
    history(data, task).iter().any(|r| r["outcome"] == outcome)
}

/// Writes an artifact straight into the local store (as an upload that was
/// never recorded would leave it); returns its address.
fn plant_artifact(data: &Path, bytes: &[u8]) -> PathBuf {
    let sha = forja_store::sha256_hex(bytes);
    let dir = data.join("artifacts").join("sha256").join(&sha[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(&sha);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn scheduled_tasks_back_up_collect_garbage_and_report_on_an_accelerated_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let model = tiny_gguf(tmp.path());
    std::fs::create_dir_all(&data).unwrap();
    // A clock from now, a day in 24 s (artifacts age at the same pace);
    // the second start is 4 days and 5 hours later.
    let start = now();
    let later = start + 4 * 86_400 + 5 * 3600;
    // A daily task with the skip policy whose last fire before `later` is
    // 3 hours late by then.
    let skip_hour = ((later.rem_euclid(86_400) / 3600) + 21) % 24;
    // GC's first fire 9-10 clock hours (seconds) after the start, when the
    // orphan planted below is past its 2 h grace. With the default time
    // (04:30) a run starting between 02:30 and 04:30 fired GC before the
    // orphan was old enough, and that run satisfied the wait below.
    let gc_hour = ((start.rem_euclid(86_400) / 3600) + 10) % 24;
    std::fs::write(
        data.join("forja.toml"),
        format!(
            "[tasks.gc]\ngrace_hours = 2\ncron = \"0 {gc_hour} * * *\"\n[tasks.backup]\nkeep = 2\n\
             [tasks.report]\ntz = \"Europe/Madrid\"\ncron = \"0 8 * * *\"\n\
             [tasks.compact]\ncron = \"0 {skip_hour} * * *\"\nmissed = \"skip\"\n"
        ),
    )
    .unwrap();
    let k = key(&data, &["--tenant", "acme"]);
    let clock = format!("{start}x3600");
    let env = [("FORJA_SCHEDULER_CLOCK", clock.as_str())];
    let s = serve(&data, &model, &["--embedding-model", "none", "--workers", "0"], &env);
    // Something to serve, something referenced, something not.
    let (st, v, _) = post(
        &s,
        "/v1/chat/completions",
        &k,
        json!({"model": "tiny", "messages": [{"role": "user", "content": "hola"}], "max_tokens": 2}),
    );
    assert_eq!(st, 200, "{v}");
    let (st, f) = upload(&s, &k, "train.jsonl", &chat_jsonl(4));
    assert_eq!(st, 200, "{f}");
    let file_id = f["id"].as_str().unwrap().to_string();
    let orphan = plant_artifact(&data, b"an upload nobody recorded");
    wait_for(
        Duration::from_secs(90),
        || ["backup", "gc", "report"].iter().all(|t| ran(&data, t, "ok")),
        "backup, gc and report to run",
    );
    // GC: the orphan is gone, the uploaded file's bytes are not.
    assert!(!orphan.exists(), "gc kept an unreferenced artifact: {:?}", history(&data, "gc"));
    let (st, bytes) = get_bytes(&s, &format!("/v1/files/{file_id}/content"), &k);
    assert_eq!(st, 200, "gc deleted a referenced artifact: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(String::from_utf8_lossy(&bytes).trim_end(), chat_jsonl(4).trim_end());
    // The report counts the completion served.
    let reports: Vec<PathBuf> = walk(&data.join("reports/daily"));
    let md = reports.iter().find(|p| p.extension().is_some_and(|e| e == "md")).expect("a report");
    let text = std::fs::read_to_string(md).unwrap();
    assert!(text.contains("## Completions served") && text.contains("- acme: 1"), "{text}");
    let json_report: Value =
        serde_json::from_slice(&std::fs::read(md.with_extension("json")).unwrap()).unwrap();
    assert_eq!(json_report["activity"]["completions served"]["acme"], 1, "{json_report}");
    drop(s);
    // The backup restores: a node on a copy of it has the tenant and its file.
    let backup = walk(&data.join("backups")).into_iter().max().expect("a backup");
    let restored = tmp.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(&backup, restored.join("forja.db")).unwrap();
    let o = forja(&["tenants", "list", "--data-dir", restored.to_str().unwrap()], None);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("acme"),
        "{}",
        stderr(&o)
    );
    let o = forja(&["doctor", "--json", "--data-dir", restored.to_str().unwrap()], None);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(doc["database"]["integrity"], "ok", "{doc}");

    // Down for three days: backup (catch up) runs once for the latest
    // fire; feeds (skip) records the missed fires as skipped.
    let s = serve(
        &data,
        &model,
        &["--embedding-model", "none", "--workers", "0"],
        &[("FORJA_SCHEDULER_CLOCK", format!("{later}x3600").as_str())],
    );
    let caught_up = || {
        history(&data, "backup")
            .into_iter()
            .find(|r| r["started_at"].as_i64().unwrap() >= later && r["outcome"] != "running")
    };
    wait_for(Duration::from_secs(30), || caught_up().is_some(), "the catch-up backup");
    let caught = caught_up().unwrap();
    assert_eq!(caught["outcome"], "ok", "{caught}");
    assert!(caught["detail"].as_str().unwrap().contains("caught up once"), "{caught}");
    assert!(caught["missed"].as_u64().unwrap() >= 2, "{caught}");
    wait_for(
        Duration::from_secs(30),
        || ran(&data, "compact", "skipped"),
        "the skipped compaction",
    );
    let skipped = history(&data, "compact");
    let r = skipped.iter().find(|r| r["outcome"] == "skipped").unwrap();
    assert!(r["missed"].as_u64().unwrap() >= 3, "{r}");
    assert!(r["detail"].as_str().unwrap().contains("skips missed fires"), "{r}");
    let feeds = &history(&data, "feeds")[0];
    assert!(feeds["detail"].as_str().unwrap().contains("missed fires skipped"), "{feeds}");
    // Monday's red team was missed too: caught up, its weekly report written.
    wait_for(
        Duration::from_secs(60),
        || {
            history(&data, "redteam")
                .iter()
                .any(|r| r["outcome"] == "ok" || r["outcome"] == "warning")
        },
        "the weekly red team",
    );
    assert!(walk(&data.join("reports/redteam"))
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "md")));
    // Backups beyond `keep` were pruned.
    assert_eq!(walk(&data.join("backups")).len(), 2);
    // The CLI lists and runs tasks (a run by hand beside the node's
    // scheduler: the lease keeps them apart).
    let o = forja(&["tasks", "list", "--json", "--data-dir", data.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let report = list.as_array().unwrap().iter().find(|t| t["name"] == "report").unwrap();
    assert_eq!(report["tz"], "Europe/Madrid");
    assert_eq!(list.as_array().unwrap().len(), 10);
    let o = forja(&["redteam", "verify", "--data-dir", data.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = forja(&["tasks", "run", "purge", "--data-dir", data.to_str().unwrap()], None);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with("purge ok"),
        "{}",
        stderr(&o)
    );
    let o = forja(&["tasks", "run", "nightly", "--data-dir", data.to_str().unwrap()], None);
    common::check_user_error(&o, "there is no task `nightly`");
    drop(s);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn config(s: &Server, admin: &str) -> Value {
    let (st, v) = get(s, "/v1/admin/config", admin);
    assert_eq!(st, 200, "{v}");
    v
}

#[test]
fn configuration_reloads_on_change_and_sighup_and_a_bad_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let model = tiny_gguf(tmp.path());
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("forja.toml");
    std::fs::write(&file, "max_tokens_cap = 64\n").unwrap();
    let admin = key(&data, &["--admin"]);
    let k = key(&data, &["--tenant", "acme"]);
    let s = serve(&data, &model, &["--embedding-model", "none", "--workers", "0"], &[]);
    assert_eq!(config(&s, &admin)["hot"]["max_tokens_cap"], 64);
    let chat = |n: u64| {
        post(&s, "/v1/chat/completions", &k, json!({"model": "tiny", "messages": [{"role": "user", "content": "hola"}], "max_tokens": n})).0
    };
    assert_eq!(chat(50), 200);
    // A good change applies on its own (the file is watched).
    std::fs::write(&file, "max_tokens_cap = 32\n[tasks.backup]\ncron = \"0 5 * * *\"\n").unwrap();
    wait_for(
        Duration::from_secs(20),
        || config(&s, &admin)["reload"]["applied"] == 1,
        "the change to apply",
    );
    assert_eq!(config(&s, &admin)["hot"]["max_tokens_cap"], 32);
    assert_eq!(chat(50), 400);
    let (_, tasks) = get(&s, "/v1/admin/tasks", &admin);
    let backup = tasks["data"].as_array().unwrap().iter().find(|t| t["name"] == "backup").unwrap();
    assert_eq!(backup["cron"], "0 5 * * *", "{backup}");
    // A bad file is refused with the reason; the last good one stays.
    for (bad, why) in [
        ("max_tokens_cap = \"lots\"\n", "max-tokens-cap"),
        ("max_tokens_cap = 16\n[tasks.backup]\ncron = \"0 25 * * *\"\n", "tasks.backup.cron"),
        ("max_tokens_kap = 16\n", "unknown key `max_tokens_kap`"),
    ] {
        let refused = config(&s, &admin)["reload"]["refused"].as_u64().unwrap();
        std::fs::write(&file, bad).unwrap();
        wait_for(
            Duration::from_secs(20),
            || config(&s, &admin)["reload"]["refused"].as_u64().unwrap() > refused,
            "the bad file to be refused",
        );
        let c = config(&s, &admin);
        let e = c["reload"]["last_error"].as_str().unwrap();
        assert!(e.contains(why), "{why}: {e}");
        assert_eq!(c["hot"]["max_tokens_cap"], 32, "{c}");
        assert_eq!(chat(50), 400);
        assert_eq!(chat(20), 200);
    }
    // SIGHUP reads the file again (unchanged contents: only the signal);
    // a key that needs a restart is applied later, and said so.
    std::fs::write(&file, "max_tokens_cap = 48\nmax_batch = 4\n").unwrap();
    wait_for(
        Duration::from_secs(20),
        || config(&s, &admin)["reload"]["applied"] == 2,
        "the good file",
    );
    let c = config(&s, &admin);
    assert_eq!(c["reload"]["restart_needed"], json!(["max_batch"]), "{c}");
    let pid = s.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for(
        Duration::from_secs(20),
        || config(&s, &admin)["reload"]["applied"] == 3,
        "SIGHUP to reload",
    );
    assert_eq!(get_status(&s, "/ready", ""), 200, "SIGHUP must not stop the node");
    let (st, v, _) = post(&s, "/v1/admin/config/reload", &admin, json!({}));
    assert_eq!((st, &v["reload"]["applied"]), (200, &json!(4)), "{v}");
}

#[test]
fn a_crashing_scheduler_restarts_and_keeps_crashing_into_degraded() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let model = tiny_gguf(tmp.path());
    // Two crashes: restarted, not degraded; the scheduler then works.
    let s = serve(
        &data,
        &model,
        &["--embedding-model", "none", "--workers", "0"],
        &[("FORJA_FAULT_SCHEDULER_PANICS", "2")],
    );
    let metric = |s: &Server, name: &str| -> f64 {
        let (_, body) = get_bytes(s, "/metrics", "");
        let text = String::from_utf8(body).unwrap();
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(-1.0)
    };
    wait_for(
        Duration::from_secs(30),
        || metric(&s, "forja_task_restarts_total{task=\"scheduler\"}") == 2.0,
        "two restarts",
    );
    wait_for(
        Duration::from_secs(30),
        || {
            ran(&data, "feeds", "ok") || !history(&data, "feeds").is_empty() || {
                // The first round only starts the schedule; any task state means it ran.
                let o =
                    forja(&["tasks", "list", "--json", "--data-dir", data.to_str().unwrap()], None);
                serde_json::from_slice::<Value>(&o.stdout).is_ok_and(|v| v[0]["last_fire"].is_i64())
            }
        },
        "the restarted scheduler to run",
    );
    assert_eq!(get_status(&s, "/ready", ""), 200);
    assert_eq!(metric(&s, "forja_degraded"), 0.0);
    drop(s);
    // It keeps crashing: degraded. Started without waiting for /ready 200:
    // under load the third crash can come before the model has loaded.
    let d = data.to_str().unwrap();
    let m = model.to_str().unwrap();
    let args =
        ["serve", "--port", "0", "--data-dir", d, "--model", m, "--tick-ms", "200", "-t", "1"];
    let args = [&args[..], &["--embedding-model", "none", "--workers", "0"]].concat();
    let s = spawn(&args, &[("FORJA_FAULT_SCHEDULER_PANICS", "1000")], |_| {});
    // /ready also answers 503 while the model loads: wait for what it says.
    wait_for(
        Duration::from_secs(30),
        || {
            get(&s, "/ready", "").1["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("crashed"))
        },
        "/ready to say degraded",
    );
    let (st, v) = get(&s, "/ready", "");
    assert_eq!(st, 503);
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("scheduler crashed 3 times") && msg.contains("injected scheduler fault"),
        "{v}"
    );
    assert_eq!(metric(&s, "forja_degraded"), 1.0);
    // Serving goes on (once the model has loaded: /ready no longer says).
    let k = key(&data, &["--tenant", "acme"]);
    let chat = json!({"model": "tiny", "messages": [{"role": "user", "content": "hola"}], "max_tokens": 1});
    wait_for(
        Duration::from_secs(60),
        || post(&s, "/v1/chat/completions", &k, chat.clone()).0 != 503,
        "the model to load",
    );
    let (st, v, _) = post(
        &s,
        "/v1/chat/completions",
        &k,
        json!({"model": "tiny", "messages": [{"role": "user", "content": "hola"}], "max_tokens": 2}),
    );
    assert_eq!(st, 200, "{v}");
}

/// `forja redteam run|verify|report` on a data directory: a run is logged
/// and the chain verifies; a line edited afterwards is named by `verify`,
/// in one line, exit 1.
#[test]
fn redteam_cli_runs_logs_and_detects_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let model = tiny_gguf(tmp.path());
    let d = data.to_str().unwrap();
    let o = forja(
        &[
            "redteam",
            "run",
            "--model",
            model.to_str().unwrap(),
            "--max-probes",
            "12",
            "--json",
            "--data-dir",
            d,
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(report["probes"].as_u64().unwrap() <= 12, "{report}");
    assert_eq!(
        report["by_family"].as_object().unwrap().len(),
        7,
        "every family is probed: {report}"
    );
    let o = forja(&["redteam", "verify", "--data-dir", d], None);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("chain intact"),
        "{}",
        stderr(&o)
    );
    let o = forja(&["redteam", "report", "--data-dir", d], None);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("| jailbreak |"),
        "{}",
        stderr(&o)
    );
    let log = data.join("redteam/log.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("\"kind\":\"run\"", "\"kind\":\"nothing\"", 1)).unwrap();
    let o = forja(&["redteam", "verify", "--data-dir", d], None);
    common::check_user_error(&o, "line 1");
    assert!(stderr(&o).contains("changed after it was written"), "{}", stderr(&o));
}
