//! `forja up --demo --iterations N`: what N loop iterations did, one row
//! per iteration (golden metrics of the model serving after it, the
//! general probe, the training mix, training and evaluation time, the
//! gate's decision), written as `demo/iterations.json`, a Markdown table
//! and a PNG chart of the metrics over the iterations (plotters).

use anyhow::{Context, Result};
use forja_eval::plot::{self, Chart, Series};
use serde_json::{json, Value};
use std::path::Path;

/// One iteration's row, from its report. `serving` is the model serving
/// after it: the new version when promoted, else the one before.
pub fn row(r: &Value, serving: &Value) -> Value {
    let promoted = r["promoted"].as_bool().unwrap_or(false);
    let m = if promoted { &r["metrics_after"] } else { serving };
    let mix = &r["training_mix"];
    json!({
        "iteration": r["iteration"],
        "decision": r["gate"]["decision"],
        "promoted": promoted,
        "candidate": {
            "wer": r["metrics_after"]["wer"], "fact_fidelity": r["metrics_after"]["fact_fidelity"],
        },
        "serving": {
            "wer": m["wer"], "cer": m["cer"], "similarity": m["similarity"],
            "fact_fidelity": m["fact_fidelity"],
        },
        "probe": {
            "candidate": r["probe"]["candidate"]["accuracy"],
            "base": r["probe"]["base"]["accuracy"],
        },
        "examples": {
            "new": mix["new_examples"], "replayed": mix["replay_examples"],
            "general": r["general_rows_used"], "warm_start_from": mix["warm_start_from"],
        },
        "training_seconds": r["training"]["seconds"],
        "evaluation_seconds": r["evaluation"]["seconds"],
        "job_seconds": r["training"]["job_seconds"],
        "reasons": r["gate"]["reasons"],
    })
}

/// The rows of `reports` (in order), starting from the base model's
/// metrics as the first iteration measured them.
pub fn rows(reports: &[Value]) -> Vec<Value> {
    let mut serving = reports.first().map(|r| r["metrics_before"].clone()).unwrap_or(Value::Null);
    reports
        .iter()
        .map(|r| {
            let row = row(r, &serving);
            if row["promoted"] == true {
                serving = r["metrics_after"].clone();
            }
            row
        })
        .collect()
}

fn f(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// The Markdown table.
pub fn markdown(reports: &[Value], rows: &[Value], chart: Option<&str>) -> String {
    let mut s = format!(
        "# forja demo: {} learning-loop iterations\n\nGolden metrics are those of the model serving after each iteration (the new version when the gate promoted it). Base model: WER {}, fact fidelity {}.\n\n",
        rows.len(),
        f(&reports.first().map_or(Value::Null, |r| r["metrics_before"]["wer"].clone()), 3),
        f(&reports.first().map_or(Value::Null, |r| r["metrics_before"]["fact_fidelity"].clone()), 3),
    );
    s += "| it. | gate | WER | CER | similarity | fact fidelity | probe (base) | new + replayed + general | train s | eval s |\n|---|---|---|---|---|---|---|---|---|---|\n";
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} ({}) | {} + {} + {} | {} | {} |\n",
            r["iteration"],
            r["decision"].as_str().unwrap_or("?"),
            f(&r["serving"]["wer"], 3),
            f(&r["serving"]["cer"], 3),
            f(&r["serving"]["similarity"], 3),
            f(&r["serving"]["fact_fidelity"], 3),
            f(&r["probe"]["candidate"], 3),
            f(&r["probe"]["base"], 3),
            r["examples"]["new"],
            r["examples"]["replayed"],
            r["examples"]["general"],
            f(&r["training_seconds"], 0),
            f(&r["evaluation_seconds"], 0),
        );
    }
    if let Some(c) = chart {
        s += &format!("\n![metrics over iterations]({c})\n");
    }
    s
}

/// Draws the metrics over iterations: golden WER and fact fidelity of the
/// serving model (iteration 0 is the base model) and the candidates'
/// general-probe accuracy. Returns whether labels could be drawn.
pub fn chart(path: &Path, reports: &[Value], rows: &[Value]) -> Result<bool> {
    let base = reports.first().map_or(Value::Null, |r| r["metrics_before"].clone());
    let series = |get: &dyn Fn(&Value) -> Option<f64>, with_base: Option<f64>| -> Vec<(f64, f64)> {
        with_base
            .map(|b| (0.0, b))
            .into_iter()
            .chain(rows.iter().enumerate().filter_map(|(i, r)| get(r).map(|v| ((i + 1) as f64, v))))
            .collect()
    };
    let line = |name: &str, points| Series { name: name.into(), points };
    let c = Chart {
        title: "forja demo: the loop over iterations".into(),
        x_desc: "iteration (0: base model)".into(),
        y_desc: "value".into(),
        series: vec![
            line(
                "golden WER (serving model)",
                series(&|r| r["serving"]["wer"].as_f64(), base["wer"].as_f64()),
            ),
            line(
                "fact fidelity (serving model)",
                series(&|r| r["serving"]["fact_fidelity"].as_f64(), base["fact_fidelity"].as_f64()),
            ),
            line(
                "general probe accuracy (candidate)",
                series(
                    &|r| r["probe"]["candidate"].as_f64(),
                    reports.first().and_then(|r| r["probe"]["base"]["accuracy"].as_f64()),
                ),
            ),
        ],
        integer_x: true,
        size: (900, 540),
    };
    let png =
        plot::render(&c).map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    std::fs::write(path, &png.bytes).with_context(|| path.display().to_string())?;
    Ok(png.labelled)
}

/// Writes `iterations.json`, `iterations.md` and `iterations.png` into
/// `out`; returns the Markdown.
pub fn write(out: &Path, reports: &[Value]) -> Result<String> {
    let rows = rows(reports);
    let png = out.join("iterations.png");
    let labelled = match chart(&png, reports, &rows) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("demo: no chart: {e:#}");
            None
        }
    };
    let mut md = markdown(reports, &rows, labelled.map(|_| "iterations.png"));
    if labelled == Some(false) {
        md += "\n(No system font was found, so the chart has no labels: red is golden WER, blue fact fidelity, green the general probe. `apt install fonts-dejavu-core` adds one.)\n";
    }
    let json_text = serde_json::to_string_pretty(&json!({ "iterations": rows }))?;
    for (name, text) in [("iterations.json", &json_text), ("iterations.md", &md)] {
        let p = out.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(it: u64, promoted: bool, wer: f64) -> Value {
        json!({
            "iteration": it, "promoted": promoted,
            "gate": {"decision": if promoted { "PROMOTED" } else { "REJECTED" }, "reasons": []},
            "metrics_before": {"wer": 2.0, "fact_fidelity": 0.1},
            "metrics_after": {"wer": wer, "fact_fidelity": 0.9, "cer": 0.1, "similarity": 0.9},
            "probe": {"candidate": {"accuracy": 0.6}, "base": {"accuracy": 0.63}},
            "training_mix": {"new_examples": 300, "replay_examples": 150 * (it - 1), "warm_start_from": null},
            "general_rows_used": 100,
            "training": {"seconds": 600, "job_seconds": 700},
            "evaluation": {"seconds": 100},
        })
    }

    #[test]
    fn a_rejected_iteration_keeps_the_serving_models_metrics_and_the_chart_draws() {
        let reports = [report(1, true, 0.1), report(2, false, 0.3), report(3, true, 0.05)];
        let rows = rows(&reports);
        let wers: Vec<f64> = rows.iter().map(|r| r["serving"]["wer"].as_f64().unwrap()).collect();
        assert_eq!(wers, [0.1, 0.1, 0.05]);
        assert_eq!(rows[1]["candidate"]["wer"], 0.3);
        let tmp = tempfile::tempdir().unwrap();
        let md = write(tmp.path(), &reports).unwrap();
        assert!(md.contains("| 2 | REJECTED | 0.100 |"), "{md}");
        let png = std::fs::read(tmp.path().join("iterations.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let j: Value =
            serde_json::from_slice(&std::fs::read(tmp.path().join("iterations.json")).unwrap())
                .unwrap();
        assert_eq!(j["iterations"].as_array().unwrap().len(), 3);
    }
}
