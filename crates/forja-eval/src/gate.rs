//! The promotion gate: a tenant's policy (TOML) and the decision it gives
//! for a candidate's report against the current model's report on the
//! same golden set.
//!
//! ```toml
//! primary_metric = "wer"     # chooses checkpoints and must not get worse
//! guarded = ["wer", "fact_fidelity"]  # may not regress by more than
//!                            # max_regression (fact fidelity: numbers, dates,
//!                            # names; skipped when the golden set has no facts)
//! max_regression = 0.02      # relative: WER may rise by at most 2 %
//! min_improvement = 0.0      # relative gain on the primary metric needed
//! task = "text"              # "json" / "xml": one invalid output rejects
//! auto_promote = true        # promote on pass; false leaves it READY
//! probe_max_drop = 0.05      # general probe: accuracy may drop by at most
//!                            # 5 points below the base model's
//! probe_max_logprob_drop = 1.0  # and its mean log-probability per token
//!                            # by at most 1 nat (a shift that large is a
//!                            # different model; the demo's adapters move
//!                            # it by ~0.4 with no loss of accuracy)
//! red_team = false           # true: the red team attacks the candidate
//!                            # first; any critical finding (a leak of
//!                            # personal data or the system prompt's secret,
//!                            # a grammar escape, a crash) rejects it
//!
//! [audit]                    # governance: a version that passes waits
//! required = false           # for auditors' signed votes when true
//! min_votes = 3              # votes of active auditors needed
//! approve_fraction = 0.6666666666666666  # share that must approve (2 of 3)
//! weighted = false           # true: shares by the auditors' reputation
//! deadline_s = 259200        # no decision by then (3 days): rejected
//! ```
//! Validity may never drop below the current model's.

use crate::report::{EvalReport, Metric};
use crate::validity::Format;
use crate::{EvalError, Result};
use serde::{Deserialize, Serialize};

/// A tenant's promotion policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatePolicy {
    /// The metric that selects checkpoints and decides "better".
    pub primary_metric: Metric,
    /// Metrics that may not regress by more than `max_regression`.
    pub guarded: Vec<Metric>,
    /// Largest relative regression allowed on a guarded metric.
    pub max_regression: f64,
    /// Relative improvement on the primary metric needed to promote.
    pub min_improvement: f64,
    /// The output format of the task: hard validity rule when structured.
    pub task: Format,
    /// Promote when the gate passes (otherwise the version waits, READY).
    pub auto_promote: bool,
    /// Largest drop of the general probe's accuracy below the base model's
    /// (absolute: 0.05 = 5 points).
    pub probe_max_drop: f64,
    /// Largest drop of the general probe's mean log-probability per token
    /// of the right answers below the base model's, in nats.
    pub probe_max_logprob_drop: f64,
    /// The red team attacks the candidate; a critical finding rejects it.
    pub red_team: bool,
    /// Governance: whether a passing version waits for auditors, and how
    /// their votes decide.
    pub audit: AuditPolicy,
}

/// How auditors' votes decide a version that passed the gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditPolicy {
    /// A version that passes the gate waits in `awaiting_audit`.
    pub required: bool,
    /// Votes of active auditors needed before anything is decided.
    pub min_votes: u32,
    /// Share of the votes (of the reputation, when `weighted`) that must
    /// approve; 2/3 by default, so 2 of 3 approvals pass.
    pub approve_fraction: f64,
    /// Whether shares are of the voters' reputation rather than of votes.
    pub weighted: bool,
    /// Seconds a version may wait; then it is rejected (fail-closed).
    pub deadline_s: u64,
}

impl Default for AuditPolicy {
    fn default() -> Self {
        AuditPolicy {
            required: false,
            min_votes: 3,
            approve_fraction: 2.0 / 3.0,
            weighted: false,
            deadline_s: 3 * 24 * 3600,
        }
    }
}

impl Default for GatePolicy {
    fn default() -> Self {
        GatePolicy {
            primary_metric: Metric::Wer,
            guarded: vec![Metric::Wer, Metric::FactFidelity],
            max_regression: 0.02,
            min_improvement: 0.0,
            task: Format::Text,
            auto_promote: true,
            probe_max_drop: 0.05,
            probe_max_logprob_drop: 1.0,
            red_team: false,
            audit: AuditPolicy::default(),
        }
    }
}

impl GatePolicy {
    /// Parses and checks a TOML policy.
    pub fn from_toml(text: &str) -> Result<GatePolicy> {
        let p: GatePolicy = toml::from_str(text).map_err(|e| EvalError::Policy(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    /// The policy as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a policy always serialises")
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        let frac = |name: &str, v: f64| {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(EvalError::Policy(format!(
                    "`{name}` must be between 0 and 1 (a fraction), got {v}"
                )))
            }
        };
        frac("max_regression", self.max_regression)?;
        frac("min_improvement", self.min_improvement)?;
        frac("probe_max_drop", self.probe_max_drop)?;
        if !(self.probe_max_logprob_drop.is_finite() && self.probe_max_logprob_drop >= 0.0) {
            return Err(EvalError::Policy(format!(
                "`probe_max_logprob_drop` must be a number of nats, 0 or more, got {}",
                self.probe_max_logprob_drop
            )));
        }
        let a = &self.audit;
        if !(a.approve_fraction.is_finite()
            && a.approve_fraction > 0.0
            && a.approve_fraction <= 1.0)
        {
            return Err(EvalError::Policy(format!(
                "`audit.approve_fraction` must be above 0 and at most 1, got {}",
                a.approve_fraction
            )));
        }
        if a.min_votes == 0 || a.deadline_s == 0 {
            return Err(EvalError::Policy(
                "`audit.min_votes` and `audit.deadline_s` must be at least 1".into(),
            ));
        }
        if self.primary_metric == Metric::LatencyMs {
            return Err(EvalError::Policy(
                "`primary_metric` cannot be latency_ms: it measures the machine, not the model"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// What the gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// Passed; waits for a manual promotion.
    Ready,
    /// Passed; promote now.
    Promoted,
    /// Failed; see the reasons.
    Rejected,
}

/// One comparison the gate made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The metric.
    pub metric: Metric,
    /// The candidate's value.
    pub candidate: f64,
    /// The current model's value.
    pub baseline: f64,
    /// Relative change, positive = better.
    pub relative_gain: f64,
    /// Whether the rule held.
    pub passed: bool,
    /// The rule, for people.
    pub rule: String,
}

/// The gate's decision, stored on the model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// READY, PROMOTED or REJECTED.
    pub outcome: Outcome,
    /// Why it was rejected (empty when it passed).
    pub reasons: Vec<String>,
    /// Every comparison made.
    pub checks: Vec<Check>,
    /// The general probe's comparisons with the base model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe_checks: Vec<ProbeCheck>,
}

/// One comparison of the general probe with the base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeCheck {
    /// `accuracy` or `mean_logprob`.
    pub measure: String,
    /// The candidate's value.
    pub candidate: f64,
    /// The base model's value.
    pub base: f64,
    /// Whether the rule held.
    pub passed: bool,
    /// The rule, for people.
    pub rule: String,
}

/// Adds the general probe's checks to `d` (a failed one rejects): the
/// candidate against the base model, so forgetting cannot accumulate
/// over iterations unnoticed.
pub fn decide_probe(
    policy: &GatePolicy,
    candidate: &crate::probe::ProbeReport,
    base: &crate::probe::ProbeReport,
    d: &mut Decision,
) {
    let rows = [
        (
            "accuracy",
            candidate.accuracy,
            base.accuracy,
            policy.probe_max_drop,
            format!(
                "may not drop more than {:.1} points below the base model",
                policy.probe_max_drop * 100.0
            ),
        ),
        (
            "mean_logprob",
            candidate.mean_logprob,
            base.mean_logprob,
            policy.probe_max_logprob_drop,
            format!(
                "may not drop more than {} nats/token below the base model",
                policy.probe_max_logprob_drop
            ),
        ),
    ];
    for (measure, c, b, limit, rule) in rows {
        let passed = c >= b - limit - 1e-12;
        if !passed {
            d.reasons.push(format!("general probe {measure} {b:.4} -> {c:.4}: {rule}"));
        }
        d.probe_checks.push(ProbeCheck {
            measure: measure.into(),
            candidate: c,
            base: b,
            passed,
            rule,
        });
    }
    if !d.reasons.is_empty() {
        d.outcome = Outcome::Rejected;
    }
}

impl Decision {
    /// A rejection that needed no comparison (no golden set, eval failed).
    pub fn rejected(reason: impl Into<String>) -> Decision {
        Decision {
            outcome: Outcome::Rejected,
            reasons: vec![reason.into()],
            checks: Vec::new(),
            probe_checks: Vec::new(),
        }
    }
}

/// Relative gain of `cand` over `base` (positive = better).
fn relative_gain(m: Metric, cand: f64, base: f64) -> f64 {
    let diff = if m.higher_is_better() { cand - base } else { base - cand };
    if base.abs() > 1e-12 {
        diff / base.abs()
    } else if diff.abs() <= 1e-12 {
        0.0
    } else {
        diff.signum() * f64::INFINITY
    }
}

/// The index of the best report by `metric` (ties go to the earlier one);
/// reports without the metric never win.
pub fn best_index(metric: Metric, reports: &[EvalReport]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, r) in reports.iter().enumerate() {
        let Some(v) = r.get(metric).filter(|v| v.is_finite()) else { continue };
        let better = match best {
            None => true,
            Some((_, b)) if metric.higher_is_better() => v > b,
            Some((_, b)) => v < b,
        };
        if better {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// Decides on `candidate` given the current model's `baseline` report.
pub fn decide(policy: &GatePolicy, candidate: &EvalReport, baseline: &EvalReport) -> Decision {
    let mut reasons = Vec::new();
    let mut checks = Vec::new();
    if candidate.golden_sha256 != baseline.golden_sha256 {
        return Decision::rejected(
            "the candidate and the current model were evaluated on different golden sets",
        );
    }
    let pct = |x: f64| format!("{:.2}%", x * 100.0);
    let mut compare = |m: Metric, rule: String, pass: &dyn Fn(f64) -> bool| match (
        candidate.get(m),
        baseline.get(m),
    ) {
        (Some(c), Some(b)) => {
            let gain = relative_gain(m, c, b);
            let passed = pass(gain);
            if !passed {
                let change = if gain.is_finite() {
                    format!("{:+.2}%", gain * 100.0)
                } else {
                    "from a perfect score".into()
                };
                reasons.push(format!("{m} {b:.4} -> {c:.4} ({change}): {rule}"));
            }
            checks.push(Check {
                metric: m,
                candidate: c,
                baseline: b,
                relative_gain: gain,
                passed,
                rule,
            });
        }
        _ => reasons.push(format!("{m} was not measured on both models; cannot check: {rule}")),
    };
    for &m in &policy.guarded {
        // Fact fidelity exists only for golden sets with facts in them.
        if m == Metric::FactFidelity && candidate.get(m).is_none() && baseline.get(m).is_none() {
            continue;
        }
        let limit = policy.max_regression;
        compare(m, format!("may not regress by more than {}", pct(limit)), &|g| {
            g >= -limit - 1e-12
        });
    }
    let need = policy.min_improvement;
    compare(
        policy.primary_metric,
        format!("primary metric must improve by at least {}", pct(need)),
        &|g| g >= need - 1e-12,
    );
    if candidate.get(Metric::Validity).is_some() || baseline.get(Metric::Validity).is_some() {
        compare(Metric::Validity, "validity may not drop".into(), &|g| g >= -1e-12);
    }
    if policy.task.is_structured() {
        let bad: Vec<&str> = candidate
            .examples
            .iter()
            .filter(|e| e.valid == Some(false))
            .map(|e| e.id.as_str())
            .collect();
        let all_checked = candidate.examples.iter().all(|e| e.valid.is_some());
        if !bad.is_empty() {
            reasons.push(format!(
                "the task is {:?} and {} output(s) are invalid (examples {})",
                policy.task,
                bad.len(),
                bad.iter().take(5).copied().collect::<Vec<_>>().join(", ")
            ));
        } else if !all_checked || candidate.examples.is_empty() {
            reasons.push(format!(
                "the task is {:?} but the golden set does not mark every example with that format",
                policy.task
            ));
        }
    }
    reasons.dedup();
    let outcome = match (reasons.is_empty(), policy.auto_promote) {
        (false, _) => Outcome::Rejected,
        (true, true) => Outcome::Promoted,
        (true, false) => Outcome::Ready,
    };
    Decision { outcome, reasons, checks, probe_checks: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Normalization;
    use crate::report::ExampleResult;

    fn report(pairs: &[(&str, &str)], format: Format) -> EvalReport {
        let ex = pairs
            .iter()
            .enumerate()
            .map(|(i, (r, p))| {
                ExampleResult::score(&i.to_string(), r, p, format, None, Normalization::Standard)
            })
            .collect();
        let mut r = EvalReport::new(ex, Normalization::Standard, None);
        r.golden_sha256 = Some("g".into());
        r
    }

    #[test]
    fn decisions() {
        let refs = ["se aprueba la moción", "votos a favor doce"];
        let perfect = report(&[(refs[0], refs[0]), (refs[1], refs[1])], Format::Text);
        let half = report(&[(refs[0], refs[0]), (refs[1], "nada")], Format::Text);
        let p = GatePolicy::default();
        assert_eq!(decide(&p, &perfect, &half).outcome, Outcome::Promoted);
        let d = decide(&p, &half, &perfect);
        assert_eq!(d.outcome, Outcome::Rejected);
        assert!(
            d.reasons[0]
                .starts_with("wer 0.0000 -> 0.5000 (from a perfect score): may not regress"),
            "{:?}",
            d.reasons
        );
        let manual = GatePolicy { auto_promote: false, ..p.clone() };
        assert_eq!(decide(&manual, &perfect, &half).outcome, Outcome::Ready);
        let demanding = GatePolicy { min_improvement: 0.5, ..p.clone() };
        assert_eq!(decide(&demanding, &half, &half).outcome, Outcome::Rejected);
        let mut other = perfect.clone();
        other.golden_sha256 = Some("h".into());
        assert_eq!(decide(&p, &other, &half).outcome, Outcome::Rejected);
    }

    #[test]
    fn a_guarded_fact_fidelity_rejects_a_candidate_that_gets_the_facts_wrong() {
        // Fewer word errors, but the amount and the date are wrong.
        let refs = [
            "Punto 1. Convenio por importe de 242.000 euros.",
            "Se celebra el 22 de febrero de 2019.",
        ];
        let base = report(
            &[(refs[0], "punto uno convenio 242.000 euros"), (refs[1], refs[1])],
            Format::Text,
        );
        let cand = report(
            &[
                (refs[0], "Punto 1. Convenio por importe de 229.000 euros."),
                (refs[1], "Se celebra el 28 de febrero de 2019."),
            ],
            Format::Text,
        );
        assert!(cand.get(Metric::Wer) < base.get(Metric::Wer));
        // Guarded by default; a policy that guards only WER lets it through.
        let d = decide(&GatePolicy::default(), &cand, &base);
        assert_eq!(d.outcome, Outcome::Rejected, "{d:?}");
        assert!(d.reasons.iter().any(|r| r.starts_with("fact_fidelity ")), "{:?}", d.reasons);
        let wer_only = GatePolicy::from_toml("guarded = [\"wer\"]\n").unwrap();
        assert_eq!(decide(&wer_only, &cand, &base).outcome, Outcome::Promoted);
        // A golden set without facts has no fact metric: nothing to guard.
        let plain = report(&[("quick dog", "quick dog")], Format::Text);
        let worse = report(&[("quick dog", "slow dog")], Format::Text);
        assert!(plain.get(Metric::FactFidelity).is_none());
        assert_eq!(decide(&GatePolicy::default(), &plain, &worse).outcome, Outcome::Promoted);
    }

    #[test]
    fn structured_tasks_reject_any_invalid_output() {
        let xml = GatePolicy { task: Format::Xml, ..GatePolicy::default() };
        let good = report(&[("<a>1</a>", "<a>1</a>"), ("<b/>", "<b/>")], Format::Xml);
        let one_bad = report(&[("<a>1</a>", "<a>1</a>"), ("<b/>", "<b>")], Format::Xml);
        assert_eq!(decide(&xml, &good, &one_bad).outcome, Outcome::Promoted);
        let d = decide(&xml, &one_bad, &one_bad);
        assert_eq!(d.outcome, Outcome::Rejected);
        assert!(
            d.reasons.iter().any(|r| r.contains("1 output(s) are invalid (examples 1)")),
            "{:?}",
            d.reasons
        );
    }

    #[test]
    fn policy_toml() {
        let p = GatePolicy::from_toml("primary_metric = \"token_f1\"\nmax_regression = 0.05\n")
            .unwrap();
        assert_eq!(p.primary_metric, Metric::TokenF1);
        assert_eq!(p.guarded, vec![Metric::Wer, Metric::FactFidelity]);
        assert_eq!(GatePolicy::from_toml(&p.to_toml()).unwrap(), p);
        let a = GatePolicy::from_toml("[audit]\nrequired = true\nweighted = true\n").unwrap();
        assert!(a.audit.required && a.audit.weighted && a.audit.min_votes == 3);
        assert_eq!(GatePolicy::from_toml(&a.to_toml()).unwrap(), a);
        for (bad, want) in [
            ("[audit]\napprove_fraction = 0.0", "`audit.approve_fraction` must be above 0"),
            ("[audit]\nmin_votes = 0", "`audit.min_votes`"),
            ("[audit]\nquorum = 3", "unknown field `quorum`"),
            ("max_regression = 2.0", "`max_regression` must be between 0 and 1"),
            ("primary_metric = \"bleu\"", "unknown variant `bleu`"),
            ("colour = 1", "unknown field `colour`"),
        ] {
            let e = GatePolicy::from_toml(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
