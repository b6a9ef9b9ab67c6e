//! Nightly re-evaluation: each tenant's champion is scored again on the
//! tenant's current golden set, on this node's engine, and compared with
//! what it scored when it was promoted. A primary metric worse by more
//! than the tolerance is drift: the run ends `warning` (an alert rule
//! fires on it) and says which tenant and by how much.

use super::run::{Done, TaskEnv};
use crate::registry::policy_of;
use crate::Result;
use forja_eval::{EvalOptions, GoldenSet};
use forja_store::CHAMPION;

pub(super) fn run(env: &TaskEnv, tolerance: f64) -> Result<Done> {
    let Some(engine) = env.engine.get() else {
        return Ok(Done::ok(
            "no model loaded in this process (run it on the node: POST /v1/admin/tasks/reeval/run)",
        ));
    };
    let control = &env.control;
    let node_model = control.cfg.model.canonical(&control.cfg.model.public).map(str::to_string);
    let (mut checked, mut drifted, mut notes) = (0, Vec::new(), Vec::new());
    for tenant in control.store.tenants()? {
        let Ok(v) = control.store.resolve_alias(&tenant.id, CHAMPION) else { continue };
        let Some(set) = control.store.golden_sets(&tenant.id)?.into_iter().next() else {
            notes.push(format!("{}: no golden set", tenant.name));
            continue;
        };
        if control.cfg.model.canonical(&v.lineage.base_model).map(str::to_string) != node_model {
            notes.push(format!(
                "{}: champion is on {}, not this node's model",
                tenant.name, v.lineage.base_model
            ));
            continue;
        }
        let metric = policy_of(&tenant).primary_metric;
        let recorded = v
            .lineage
            .eval
            .as_ref()
            .and_then(|e| e["summary"]["candidate"]["metrics"][metric.name()].as_f64());
        let Some(recorded) = recorded else {
            notes.push(format!("{}: {} has no recorded {}", tenant.name, v.id, metric.name()));
            continue;
        };
        let golden: GoldenSet = {
            let bytes = env.runtime.block_on(control.artifacts.get(&set.sha256))?;
            forja_eval::parse_golden(&set.name, &bytes)?
        };
        let dir =
            env.runtime.block_on(control.adapter_in_temp_dir(&v.lineage.adapter_files, &v.id))?;
        let adapter = engine.load_adapter(dir.path())?;
        let opts = EvalOptions::default();
        let report = engine.install(|| {
            forja_eval::evaluate(engine, Some(&adapter), &golden, &opts, None, &mut |_, _| {})
        })?;
        let Some(now) = report.get(metric) else { continue };
        checked += 1;
        let worse = if metric.higher_is_better() { recorded - now } else { now - recorded };
        let line = format!(
            "{}: {} {} {recorded:.4} at promotion, {now:.4} now on golden set v{}",
            tenant.name,
            v.id,
            metric.name(),
            set.version
        );
        if worse > tolerance {
            drifted.push(line);
        } else {
            notes.push(line);
        }
    }
    let mut detail = format!("{checked} champion(s) re-evaluated");
    if !drifted.is_empty() {
        detail = format!("DRIFT beyond {tolerance}: {}; {detail}", drifted.join("; "));
    }
    if !notes.is_empty() {
        detail.push_str(&format!("; {}", notes.join("; ")));
    }
    Ok(if drifted.is_empty() { Done::ok(detail) } else { Done::warning(detail) })
}
