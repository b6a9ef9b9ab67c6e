//! What operators run forja with, checked: the alert rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`),
//! the example Prometheus config passes `promtool check config`, the
//! Grafana dashboards are what `ops/grafana/make_dashboards.py` writes and
//! are well formed, and every metric a dashboard panel or an alert rule
//! queries is exported by a live node's `/metrics`.

use crate::common;

use common::server::*;
use common::tiny_gguf;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops")
}

/// `promtool ARGS` in `dir`; `None` when promtool is missing (allowed only
/// without `FORJA_REQUIRE_TESTDATA`).
fn promtool(dir: &Path, args: &[&str]) -> Option<String> {
    let tool = std::env::var("FORJA_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    match Command::new(&tool).args(args).current_dir(dir).output() {
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(o.status.success(), "promtool {args:?} failed:\n{text}");
            Some(text)
        }
        Err(e) => {
            assert!(std::env::var_os("FORJA_REQUIRE_TESTDATA").is_none(), "promtool: {e}");
            eprintln!("skipping: promtool not found ({e})");
            None
        }
    }
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = ops().join("prometheus");
    let Some(out) = promtool(&dir, &["check", "rules", "forja.rules.yml"]) else { return };
    assert!(out.contains("SUCCESS: 14 rules found"), "{out}");
    let out = promtool(&dir, &["test", "rules", "forja.rules.test.yml"]).unwrap();
    assert!(out.contains("SUCCESS"), "{out}");
    promtool(&dir, &["check", "config", "prometheus.yml"]).unwrap();
}

/// The forja metric names in a PromQL expression (histogram series named by
/// their family).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in expr.match_indices("forja_") {
        if i > 0 && expr[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String =
            expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_string();
        out.insert(family);
    }
    out
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = ops().join("grafana/dashboards");
    let mut v: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn dashboards_are_generated_and_well_formed() {
    // The files are what the generator writes (edit the generator, not the JSON).
    let tmp = tempfile::tempdir().unwrap();
    let gen = tmp.path().join("grafana");
    std::fs::create_dir_all(gen.join("dashboards")).unwrap();
    std::fs::copy(ops().join("grafana/make_dashboards.py"), gen.join("make_dashboards.py"))
        .unwrap();
    let o = Command::new("python3").arg(gen.join("make_dashboards.py")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let boards = dashboards();
    assert_eq!(boards.len(), 3, "node, learning, serving");
    let mut uids = BTreeSet::new();
    for (name, d) in &boards {
        let fresh = std::fs::read_to_string(gen.join("dashboards").join(name)).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&fresh).unwrap(),
            *d,
            "{name} differs from make_dashboards.py's output"
        );
        assert!(uids.insert(d["uid"].as_str().unwrap().to_string()), "{name}: duplicate uid");
        let panels = d["panels"].as_array().unwrap();
        let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
        assert_eq!(ids.len(), panels.len(), "{name}: panel ids repeat");
        for p in panels {
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: {} has no query", p["title"]);
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}");
                assert!(
                    !metric_names(t["expr"].as_str().unwrap()).is_empty()
                        || t["expr"].as_str().unwrap().starts_with("up"),
                    "{name}: {t}"
                );
            }
        }
    }
}

#[test]
fn every_queried_metric_is_exported_by_a_live_node() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "acme"]);
    let s = serve(&data, &model, &["--embedding-model", "none"], &[]);
    // Some traffic, so that histograms and per-route series have samples.
    let chat = json!({"model": "base", "max_tokens": 4, "messages": [{"role": "user", "content": "hola"}]});
    let (st, v, _) = post(&s, "/v1/chat/completions", &k, chat);
    assert_eq!(st, 200, "{v}");
    // Feedback: one kept (with a phone number scrubbed), the same again (a
    // duplicate), one with nothing to learn from.
    let ex =
        json!({"prompt": "¿A qué hora abre?", "correction": "A las nueve; llame al 612 345 678."});
    let examples = json!({"examples": [ex, ex, {"prompt": "hola", "rating": 2}]});
    let (st, v, _) = post(&s, "/v1/feedback", &k, examples);
    assert_eq!(st, 200, "{v}");
    let (_, m) = get(&s, "/metrics", "");
    let text = m.as_str().unwrap();
    for want in [
        "forja_curation_examples_total{outcome=\"kept\"} 1",
        "forja_curation_examples_total{outcome=\"duplicate\"} 1",
        "forja_curation_examples_total{outcome=\"rejected\"} 1",
        "forja_pii_scrubbed_total{kind=\"PHONE_NUMBER\"} 2",
    ] {
        assert!(text.contains(want), "{want} missing from /metrics:\n{text}");
    }
    let (_, m) = get(&s, "/metrics", "");
    let m = m.as_str().unwrap().to_string();
    let exported: BTreeSet<String> = m
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let mut wanted = BTreeSet::new();
    for (name, d) in dashboards() {
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                for n in metric_names(t["expr"].as_str().unwrap()) {
                    wanted.insert((n, name.clone()));
                }
            }
        }
    }
    let rules = std::fs::read_to_string(ops().join("prometheus/forja.rules.yml")).unwrap();
    for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for n in metric_names(line) {
            wanted.insert((n, "forja.rules.yml".into()));
        }
    }
    assert!(wanted.len() > 30, "{wanted:?}");
    // Series labelled by a running job exist only while one runs, and a
    // champion's metrics only with tenant labels and a champion (their
    // rendering is unit-tested in forja-server's node_metrics).
    let while_training =
        ["forja_training_loss", "forja_training_tokens_per_second", "forja_champion_metric"];
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(n, _)| !exported.contains(n) && !while_training.contains(&n.as_str()))
        .map(|(n, f)| format!("{n} ({f})"))
        .collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}\n/metrics:\n{m}");
}

fn doctor(data: &Path) -> (Option<i32>, Value) {
    let o = common::forja(&["doctor", "--json", "--data-dir", data.to_str().unwrap()], None);
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::stderr(&o)));
    (o.status.code(), v)
}

fn failed<'a>(v: &'a Value, area: &str) -> Vec<&'a str> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["area"] == area && c["state"] == "fail")
        .map(|c| c["what"].as_str().unwrap())
        .collect()
}

#[cfg(unix)]
#[test]
fn doctor_reports_the_machine_and_finds_a_broken_data_directory() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    key(&data, &["--tenant", "acme"]);
    let (code, v) = doctor(&data);
    assert!(v["cpu"]["cores"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["database"]["integrity"], "ok", "{v}");
    assert_eq!(v["database"]["schema"], v["database"]["newest"], "{v}");
    assert!(v["data_dir"]["available_bytes"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(code, Some(if v["fit"] == true { 0 } else { 1 }), "the exit code says fit: {v}");
    assert!(failed(&v, "key").is_empty() && failed(&v, "database").is_empty(), "{v}");

    // A node key others can read: not fit.
    let key_file = data.join("node.key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, v) = doctor(&data);
    assert_eq!((code, v["fit"].as_bool()), (Some(1), Some(false)), "{v}");
    assert!(failed(&v, "key")[0].contains("chmod 600"), "{v}");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A damaged database: not fit, and said so.
    let db = data.join("forja.db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[4096 * 3..4096 * 6] {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();
    let (code, v) = doctor(&data);
    assert_eq!(code, Some(1), "{v}");
    assert!(!failed(&v, "database").is_empty(), "{v}");
}
