//! Continual learning through the HTTP API on a tiny model with the
//! in-process worker: three loop iterations, each on a fresh batch of
//! feedback. The second and third warm-start from the champion and replay
//! earlier examples and general rows (the lineage names them); the current
//! model's report is computed once per golden-set version and reused
//! after (counted in the job events and the evaluation summary); a
//! candidate that forgets the general probe is rejected.
//!
//! The model is pre-trained by the test (seconds): it knows the general
//! probe's answers and answers general requests briefly, so forgetting and
//! self-distilled replay rows are real, not artefacts of random weights.

use crate::common;

use common::learning::{iteration, messages, pretrained, settings, upload_golden, version_of};
use common::Bed;
use serde_json::Value;

#[test]
fn three_iterations_warm_start_replay_and_evaluate_the_champion_once() {
    let b = Bed::with_model(pretrained(), |c| c.workers = 1);
    // Any result promotes: this test is about the mix and the evaluations.
    let key = b.tenant(
        "acme",
        settings(Some(
            "min_improvement = 0.0\nmax_regression = 1.0\nprobe_max_drop = 1.0\nprobe_max_logprob_drop = 100.0",
        ), 4, 20.0),
    );
    upload_golden(&b, &key);

    let mut jobs = Vec::new();
    for k in 0..3 {
        jobs.push(iteration(&b, &key, 1000 * (k + 1), 24));
    }
    let versions: Vec<Value> = jobs.iter().map(|j| version_of(&b, &key, j).unwrap()).collect();
    let job = |i: usize| b.get(&format!("/v1/fine_tuning/jobs/{}", jobs[i]), &key).body;

    // Iteration 1: nothing to replay or start from; 20 % general rows.
    let mix1 = &job(0)["training_mix"];
    assert_eq!(mix1["new_examples"], 24, "{mix1}");
    assert_eq!(mix1["replay_examples"], 0);
    assert_eq!(mix1["general_rows"], 6);
    assert!(mix1["warm_start_from"].is_null());
    assert_eq!(versions[0]["status"], "promoted", "{}", versions[0]["status_reason"]);

    // Iterations 2 and 3: warm start from the champion of the time, half
    // as many earlier examples replayed as new ones, general rows on top.
    for i in 1..3 {
        let mix = &job(i)["training_mix"];
        let champion =
            versions[..i].iter().rev().find(|v| v["status"] == "promoted").expect("a champion")
                ["id"]
                .clone();
        assert_eq!(mix["warm_start_from"], champion, "{mix}");
        assert_eq!(mix["replay_examples"], 12, "{mix}");
        assert_eq!(mix["general_rows"], 9, "{mix}");
        let m = &versions[i]["manifest"];
        assert_eq!(m["warm_started_from"], champion, "{m}");
        let replayed: Vec<i64> = m["mix"]["replay_example_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let new: Vec<i64> =
            m["example_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(replayed.len(), 12);
        assert!(replayed.iter().all(|id| !new.contains(id)), "replay is of earlier examples");
        let general = &m["general_replay"];
        assert_eq!(general["set"], "general-replay-v1", "{m}");
        let rows = general["row_ids"].as_array().unwrap();
        eprintln!(
            "iteration {}: {} general rows, probe {}",
            i + 1,
            rows.len(),
            versions[i]["eval"]["summary"]["probe"]
        );
        assert!(!rows.is_empty() && rows.len() <= 9, "{general}");
        let events = messages(&b, &key, &jobs[i]);
        assert!(events
            .iter()
            .any(|e| e.starts_with("Warm start: training continues from version")));
        assert!(events
            .iter()
            .any(|e| e.starts_with("Added ") && e.contains("general replay rows")));
    }

    // The current model is evaluated once per golden-set version: job 1
    // evaluates the base model, later jobs reuse the champion's report
    // made when it was the candidate.
    let e1 = messages(&b, &key, &jobs[0]);
    assert!(e1.iter().any(|e| e.starts_with("Evaluating the base model")), "{e1:?}");
    for (i, j) in jobs.iter().enumerate().skip(1) {
        let e = messages(&b, &key, j);
        assert!(!e.iter().any(|e| e.starts_with("Evaluating ")), "job {i}: {e:?}");
        assert!(e.iter().any(|e| e.starts_with("Reusing the evaluation of champion")), "{e:?}");
        assert_eq!(versions[i]["eval"]["summary"]["full_evaluations"], 1, "job {i}");
    }
    assert_eq!(versions[0]["eval"]["summary"]["full_evaluations"], 2);
    // A node that trains serves a quantized copy (the model is f32), and
    // evaluation generates on it; reused reports were made on it too.
    let served = b.get("/v1/admin/node", &b.admin).body["serving"]["weights"].clone();
    assert_eq!(served, serde_json::json!(["Q8_0"]));
    for v in &versions {
        assert_eq!(v["eval"]["summary"]["weights"], "Q8_0", "{}", v["eval"]["summary"]);
    }
    assert!(
        e1.iter().any(|e| e.contains("generated on the serving copy's Q8_0 weights")),
        "{e1:?}"
    );
    // Every report carries the probe of the candidate and the base model.
    for v in &versions {
        let p = &v["eval"]["summary"]["probe"];
        assert_eq!(p["candidate"]["items"], 60, "{p}");
        assert!(p["base"]["accuracy"].as_f64().is_some(), "{p}");
        assert_eq!(v["gate"]["probe_checks"].as_array().map(Vec::len), Some(2), "{v}");
    }
}

#[test]
fn a_candidate_that_forgets_the_general_probe_is_rejected() {
    let b = Bed::with_model(pretrained(), |c| c.workers = 1);
    // A strict probe rule; narrow training makes the model forget.
    let policy = "min_improvement = 0.0\nmax_regression = 1.0\nprobe_max_logprob_drop = 0.25";
    let key = b.tenant("acme", settings(Some(policy), 8, 40.0));
    upload_golden(&b, &key);
    let job = iteration(&b, &key, 0, 24);
    let v = version_of(&b, &key, &job).unwrap();
    let checks = v["gate"]["probe_checks"].as_array().unwrap();
    let lp = checks.iter().find(|c| c["measure"] == "mean_logprob").unwrap();
    let (cand, base) = (lp["candidate"].as_f64().unwrap(), lp["base"].as_f64().unwrap());
    assert!(cand < base - 0.25, "training moved the probe by {}: {v}", cand - base);
    eprintln!(
        "probe mean log-probability: base {base:.3}, candidate {cand:.3}; accuracy {}",
        v["eval"]["summary"]["probe"]
    );
    assert_eq!(v["status"], "rejected", "{v}");
    let reasons = v["gate"]["reasons"].to_string();
    assert!(reasons.contains("general probe mean_logprob"), "{reasons}");
}

#[test]
fn a_report_made_on_other_weights_is_not_reused() {
    // Job 1 evaluates on the f32 training weights; after a restart the node
    // evaluates on its Q8_0 serving copy, so the champion's f32 report
    // cannot stand in for the current model: job 2 evaluates it again.
    let lenient = "min_improvement = 0.0\nmax_regression = 1.0\nprobe_max_drop = 1.0\nprobe_max_logprob_drop = 100.0";
    let b = Bed::with_model(pretrained(), |c| {
        c.workers = 1;
        c.eval_on_serving_weights = false;
    });
    let key = b.tenant("acme", settings(Some(lenient), 2, 20.0));
    upload_golden(&b, &key);
    let first = iteration(&b, &key, 1000, 24);
    let v1 = version_of(&b, &key, &first).unwrap();
    assert_eq!(v1["eval"]["summary"]["weights"], "F32", "{}", v1["eval"]["summary"]);
    assert_eq!(v1["status"], "promoted", "{}", v1["status_reason"]);

    let b = b.restart(|c| c.workers = 1);
    let second = iteration(&b, &key, 2000, 24);
    let v2 = version_of(&b, &key, &second).unwrap();
    assert_eq!(v2["eval"]["summary"]["weights"], "Q8_0", "{}", v2["eval"]["summary"]);
    let events = messages(&b, &key, &second);
    assert!(events.iter().any(|e| e.starts_with("Evaluating champion")), "{events:?}");
    assert!(!events.iter().any(|e| e.starts_with("Reusing the evaluation")), "{events:?}");
    assert_eq!(v2["eval"]["summary"]["full_evaluations"], 2);
}
