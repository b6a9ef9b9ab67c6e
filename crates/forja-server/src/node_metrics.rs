//! The node's own metrics, beside serving's: jobs, the training queue,
//! pending examples, model versions, registry events and the gate's
//! rejection streak, webhook deliveries, knowledge and memory sizes,
//! running jobs' training loss and throughput, store operations and busy
//! errors, and the data directory's disk. They are derived from the store
//! at scrape time (`Store::node_stats`, a few aggregate queries), so every
//! replica and every worker process on the same database reports the same
//! truth, and a restart loses nothing. Tenant names label them only with
//! `--metrics-tenant-labels`.

use forja_store::NodeStats;
use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The node's metrics registry.
pub struct NodeMetrics {
    registry: Registry,
    tenant_labels: bool,
    data_dir: PathBuf,
    jobs: IntGaugeVec,
    jobs_finished: IntCounterVec,
    queue_oldest: IntGauge,
    examples: IntGaugeVec,
    versions: IntGaugeVec,
    registry_events: IntCounterVec,
    rejected_streak: IntGaugeVec,
    webhooks: IntGaugeVec,
    pii_audit: IntCounter,
    auto_rollbacks: IntCounter,
    knowledge_passages: IntGauge,
    memory_facts: IntGauge,
    training_loss: GaugeVec,
    training_tps: GaugeVec,
    training_step: GaugeVec,
    store_ops: IntCounter,
    store_seconds: prometheus::Counter,
    store_busy: IntCounter,
    disk_available: IntGauge,
    disk_size: IntGauge,
    stats_errors: IntCounter,
    task_last: IntGaugeVec,
    champion: GaugeVec,
    curation: IntCounterVec,
    pii_scrubbed: IntCounterVec,
    task_success: IntGaugeVec,
    restarts: IntCounterVec,
    degraded: IntGauge,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeMetrics")
    }
}

/// Job states, terminal ones last.
const JOB_STATES: [&str; 6] =
    ["validating_files", "queued", "running", "succeeded", "failed", "cancelled"];
const EXAMPLE_STATES: [&str; 4] = ["curated", "held", "claimed", "rejected"];
const VERSION_STATES: [&str; 6] =
    ["candidate", "awaiting_audit", "promoted", "rejected", "archived", "failed"];
const REGISTRY_KINDS: [&str; 4] = ["registered", "promoted", "rolled_back", "rejected"];
const WEBHOOK_STATES: [&str; 3] = ["pending", "delivered", "failed"];
const TASK_OUTCOMES: [&str; 5] = ["ok", "warning", "failed", "skipped", "abandoned"];
const LOOPS: [&str; 4] = ["control tick", "webhooks", "scheduler", "worker"];

impl NodeMetrics {
    /// The metrics of a node whose data directory is `data_dir`.
    pub fn new(tenant_labels: bool, data_dir: PathBuf) -> NodeMetrics {
        let registry = Registry::new();
        let labels = |l: &'static str| -> Vec<&'static str> {
            if tenant_labels {
                vec![l, "tenant"]
            } else {
                vec![l]
            }
        };
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        let gauge_vec = |name: &str, help: &str, l: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), l).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };
        let fgauge_vec = |name: &str, help: &str, l: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), l).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };
        let counter_vec = |name: &str, help: &str, l: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), l).expect("valid metric");
            reg(Box::new(c.clone()));
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            reg(Box::new(c.clone()));
            c
        };
        let store_seconds = prometheus::Counter::new(
            "forja_store_operation_seconds_total",
            "Time spent in store operations, lock wait included.",
        )
        .expect("valid metric");
        reg(Box::new(store_seconds.clone()));
        let build = Gauge::with_opts(
            Opts::new("forja_build_info", "1, labelled with the forja version.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        build.set(1.0);
        reg(Box::new(build));
        let m = NodeMetrics {
            tenant_labels,
            data_dir,
            jobs: gauge_vec("forja_jobs", "Fine-tuning jobs by state.", &labels("state")),
            jobs_finished: counter_vec(
                "forja_jobs_finished_total",
                "Fine-tuning jobs that ended, by outcome (succeeded, failed, cancelled).",
                &["outcome"],
            ),
            queue_oldest: gauge(
                "forja_job_queue_oldest_seconds",
                "Age of the oldest job waiting for a worker (0: none waiting).",
            ),
            examples: gauge_vec(
                "forja_examples",
                "Curated feedback examples by state (curated = pending training).",
                &labels("state"),
            ),
            versions: gauge_vec(
                "forja_model_versions",
                "Model versions in the registry by status.",
                &labels("status"),
            ),
            registry_events: counter_vec(
                "forja_registry_events_total",
                "Registry log entries by kind (registered, promoted, rolled_back, rejected).",
                &labels("kind"),
            ),
            rejected_streak: gauge_vec(
                "forja_gate_rejected_streak",
                "Candidates the gate rejected since the last promotion (the largest over tenants \
                 without tenant labels).",
                &if tenant_labels { vec!["tenant"] } else { vec![] },
            ),
            webhooks: gauge_vec(
                "forja_webhook_deliveries",
                "Webhook deliveries by state (pending, delivered, failed).",
                &["state"],
            ),
            auto_rollbacks: counter(
                "forja_auto_rollbacks_total",
                "Champions rolled back automatically because their answers regressed.",
            ),
            pii_audit: counter(
                "forja_pii_audit_failures_total",
                "Jobs failed because the final audit found personal data in their training data.",
            ),
            knowledge_passages: gauge(
                "forja_knowledge_passages",
                "Passages in the knowledge bases of every tenant.",
            ),
            memory_facts: gauge(
                "forja_memory_facts_stored",
                "Current entity-memory facts of every tenant.",
            ),
            training_loss: fgauge_vec(
                "forja_training_loss",
                "A running job's latest training loss.",
                &["job"],
            ),
            training_tps: fgauge_vec(
                "forja_training_tokens_per_second",
                "A running job's latest training throughput.",
                &["job"],
            ),
            training_step: fgauge_vec(
                "forja_training_step",
                "A running job's latest optimizer step.",
                &["job"],
            ),
            store_ops: counter("forja_store_operations_total", "Store operations run."),
            store_seconds,
            store_busy: counter(
                "forja_store_busy_errors_total",
                "Store operations that failed because the database was busy (answered 503).",
            ),
            disk_available: gauge(
                "forja_data_dir_available_bytes",
                "Free space for forja on the data directory's file system.",
            ),
            disk_size: gauge(
                "forja_data_dir_size_bytes",
                "Size of the data directory's file system.",
            ),
            stats_errors: counter(
                "forja_node_stats_errors_total",
                "Scrapes whose store statistics could not be read (values kept from before).",
            ),
            champion: fgauge_vec(
                "forja_champion_metric",
                "Each tenant's champion's golden-set metrics when it was promoted (needs --metrics-tenant-labels).",
                &["tenant", "metric"],
            ),
            curation: counter_vec(
                "forja_curation_examples_total",
                "Feedback examples by curation outcome: kept, rejected (nothing to learn from or failed quality rules), duplicate.",
                &["outcome"],
            ),
            pii_scrubbed: counter_vec(
                "forja_pii_scrubbed_total",
                "Personal data items scrubbed from posted feedback, by kind.",
                &["kind"],
            ),
            task_last: gauge_vec(
                "forja_task_last_run",
                "1 for the outcome of each scheduled task's last finished run (ok, warning, failed, skipped, abandoned), 0 for the others.",
                &["task", "outcome"],
            ),
            task_success: gauge_vec(
                "forja_task_last_success_timestamp_seconds",
                "When each scheduled task last finished ok or with a warning (unix seconds; 0: never).",
                &["task"],
            ),
            restarts: counter_vec(
                "forja_task_restarts_total",
                "Background loops (control tick, webhooks, scheduler, workers) restarted after a crash.",
                &["task"],
            ),
            degraded: gauge(
                "forja_degraded",
                "1 while a background loop has crashed 3 times in 10 minutes (/ready answers 503).",
            ),
            registry,
        };
        // Every series a dashboard or rule names exists from the start.
        let none: &[&str] = &[];
        if !tenant_labels {
            for s in JOB_STATES {
                m.jobs.with_label_values(&[s]);
            }
            for s in EXAMPLE_STATES {
                m.examples.with_label_values(&[s]);
            }
            for s in VERSION_STATES {
                m.versions.with_label_values(&[s]);
            }
            for k in REGISTRY_KINDS {
                m.registry_events.with_label_values(&[k]);
            }
            m.rejected_streak.with_label_values(none);
        }
        for o in &JOB_STATES[3..] {
            m.jobs_finished.with_label_values(&[o]);
        }
        for s in WEBHOOK_STATES {
            m.webhooks.with_label_values(&[s]);
        }
        for k in forja_control::tasks::TaskKind::ALL {
            for o in TASK_OUTCOMES {
                m.task_last.with_label_values(&[k.as_str(), o]);
            }
            m.task_success.with_label_values(&[k.as_str()]);
        }
        for l in LOOPS {
            m.restarts.with_label_values(&[l]);
        }
        for o in ["kept", "rejected", "duplicate"] {
            m.curation.with_label_values(&[o]);
        }
        m
    }

    /// Sets feedback curation's series from its counters.
    pub fn update_curation(&self, s: &forja_control::feedback::CurationStats) {
        use std::sync::atomic::Ordering::Relaxed;
        for (o, n) in [
            ("kept", s.kept.load(Relaxed)),
            ("rejected", s.rejected.load(Relaxed)),
            ("duplicate", s.duplicates.load(Relaxed)),
        ] {
            let c = self.curation.with_label_values(&[o]);
            c.inc_by(n.saturating_sub(c.get()));
        }
        for (kind, n) in s.pii() {
            let c = self.pii_scrubbed.with_label_values(&[kind.as_str()]);
            c.inc_by(n.saturating_sub(c.get()));
        }
    }

    /// Sets the supervisor's series.
    pub fn update_health(&self, h: &crate::supervisor::Health) {
        for (name, n) in h.restarts() {
            let c = self.restarts.with_label_values(&[name]);
            c.inc_by(n.saturating_sub(c.get()));
        }
        self.degraded.set(h.degraded().is_some() as i64);
    }

    /// Sets every series from `s` (`now`: the store's clock).
    pub fn update(&self, s: &NodeStats, now: i64) {
        let set3 = |g: &IntGaugeVec, rows: &[(String, String, u64)], known: &[&str]| {
            if self.tenant_labels {
                g.reset();
                for (t, l, n) in rows {
                    g.with_label_values(&[l.as_str(), t.as_str()]).set(*n as i64);
                }
            } else {
                let mut sum: BTreeMap<&str, u64> = known.iter().map(|k| (*k, 0)).collect();
                for (_, l, n) in rows {
                    *sum.entry(l.as_str()).or_default() += n;
                }
                for (l, n) in sum {
                    g.with_label_values(&[l]).set(n as i64);
                }
            }
        };
        set3(&self.jobs, &s.jobs, &JOB_STATES);
        set3(&self.examples, &s.examples, &EXAMPLE_STATES);
        set3(&self.versions, &s.versions, &VERSION_STATES);
        // Counters follow the store's counts up (a count can only grow:
        // jobs and log entries are never deleted).
        let mut finished: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, state, n) in &s.jobs {
            if JOB_STATES[3..].contains(&state.as_str()) {
                *finished.entry(state.as_str()).or_default() += n;
            }
        }
        for (o, n) in finished {
            let c = self.jobs_finished.with_label_values(&[o]);
            c.inc_by(n.saturating_sub(c.get()));
        }
        for (t, kind, n) in &s.registry_events {
            if !REGISTRY_KINDS.contains(&kind.as_str()) {
                continue;
            }
            if self.tenant_labels {
                let c = self.registry_events.with_label_values(&[kind.as_str(), t.as_str()]);
                c.inc_by(n.saturating_sub(c.get()));
            }
        }
        if !self.tenant_labels {
            let mut sum: BTreeMap<&str, u64> = BTreeMap::new();
            for (_, kind, n) in &s.registry_events {
                *sum.entry(kind.as_str()).or_default() += n;
            }
            for k in REGISTRY_KINDS {
                let c = self.registry_events.with_label_values(&[k]);
                c.inc_by(sum.get(k).copied().unwrap_or(0).saturating_sub(c.get()));
            }
        }
        if self.tenant_labels {
            self.rejected_streak.reset();
            for (t, n) in &s.rejected_streak {
                self.rejected_streak.with_label_values(&[t.as_str()]).set(*n as i64);
            }
        } else {
            let worst = s.rejected_streak.iter().map(|(_, n)| *n).max().unwrap_or(0);
            self.rejected_streak.with_label_values(&[] as &[&str]).set(worst as i64);
        }
        self.queue_oldest.set(s.oldest_queued_at.map_or(0, |t| (now - t).max(0)));
        let mut hooks: BTreeMap<&str, u64> = WEBHOOK_STATES.iter().map(|k| (*k, 0)).collect();
        for (state, n) in &s.webhooks {
            *hooks.entry(state.as_str()).or_default() += n;
        }
        for (state, n) in hooks {
            self.webhooks.with_label_values(&[state]).set(n as i64);
        }
        self.pii_audit.inc_by(s.pii_audit_failures.saturating_sub(self.pii_audit.get()));
        self.auto_rollbacks.inc_by(s.auto_rollbacks.saturating_sub(self.auto_rollbacks.get()));
        self.knowledge_passages.set(s.knowledge_passages as i64);
        self.memory_facts.set(s.memory_facts as i64);
        for g in [&self.training_loss, &self.training_tps, &self.training_step] {
            g.reset();
        }
        for t in &s.training {
            let job = [t.job_id.as_str()];
            self.training_loss.with_label_values(&job).set(t.loss);
            self.training_tps.with_label_values(&job).set(t.tokens_per_second);
            self.training_step.with_label_values(&job).set(t.step);
        }
        self.store_ops.inc_by(s.operations.saturating_sub(self.store_ops.get()));
        let secs = s.operation_seconds - self.store_seconds.get();
        if secs > 0.0 {
            self.store_seconds.inc_by(secs);
        }
        self.store_busy.inc_by(s.busy_errors.saturating_sub(self.store_busy.get()));
        self.champion.reset();
        if self.tenant_labels {
            for (t, metric, v) in &s.champion_metrics {
                self.champion.with_label_values(&[t.as_str(), metric.as_str()]).set(*v);
            }
        }
        for (task, last, success) in &s.tasks {
            for o in TASK_OUTCOMES {
                self.task_last
                    .with_label_values(&[task.as_str(), o])
                    .set((last.as_deref() == Some(o)) as i64);
            }
            self.task_success.with_label_values(&[task.as_str()]).set(success.unwrap_or(0));
        }
        if let Ok(st) = fs4::statvfs(&self.data_dir) {
            self.disk_available.set(st.available_space() as i64);
            self.disk_size.set(st.total_space() as i64);
        }
    }

    /// A scrape whose statistics could not be read.
    pub fn failed(&self) {
        self.stats_errors.inc();
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding into memory cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forja_store::TrainingNow;

    fn stats() -> NodeStats {
        let row = |t: &str, l: &str, n: u64| (t.to_string(), l.to_string(), n);
        NodeStats {
            jobs: vec![
                row("acme", "queued", 2),
                row("beta", "queued", 1),
                row("acme", "failed", 3),
            ],
            oldest_queued_at: Some(1_000),
            examples: vec![row("acme", "curated", 7)],
            versions: vec![row("acme", "rejected", 2)],
            registry_events: vec![row("acme", "rejected", 2), row("beta", "promoted", 1)],
            rejected_streak: vec![("acme".into(), 2), ("beta".into(), 0)],
            webhooks: vec![("failed".into(), 1)],
            pii_audit_failures: 1,
            auto_rollbacks: 1,
            knowledge_passages: 40,
            memory_facts: 5,
            training: vec![TrainingNow {
                job_id: "ftjob-1".into(),
                tenant: "acme".into(),
                step: 3.0,
                loss: 1.25,
                tokens_per_second: 800.0,
            }],
            operations: 10,
            operation_seconds: 0.5,
            busy_errors: 1,
            champion_metrics: vec![("acme".into(), "wer".into(), 0.25)],
            tasks: vec![
                ("backup".into(), Some("failed".into()), Some(1_500)),
                ("reeval".into(), Some("warning".into()), Some(1_550)),
            ],
        }
    }

    #[test]
    fn store_counts_become_series_summed_or_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let m = NodeMetrics::new(false, dir.path().to_path_buf());
        m.update(&stats(), 1_600);
        let text = m.render();
        for want in [
            "forja_jobs{state=\"queued\"} 3",
            "forja_jobs{state=\"running\"} 0",
            "forja_jobs_finished_total{outcome=\"failed\"} 3",
            "forja_job_queue_oldest_seconds 600",
            "forja_examples{state=\"curated\"} 7",
            "forja_registry_events_total{kind=\"promoted\"} 1",
            "forja_gate_rejected_streak 2",
            "forja_webhook_deliveries{state=\"failed\"} 1",
            "forja_task_last_run{outcome=\"failed\",task=\"backup\"} 1",
            "forja_task_last_run{outcome=\"ok\",task=\"backup\"} 0",
            "forja_task_last_run{outcome=\"warning\",task=\"reeval\"} 1",
            "forja_task_last_success_timestamp_seconds{task=\"backup\"} 1500",
            "forja_task_last_success_timestamp_seconds{task=\"gc\"} 0",
            "forja_task_restarts_total{task=\"scheduler\"} 0",
            "forja_degraded 0",
            "forja_curation_examples_total{outcome=\"duplicate\"} 0",
            "forja_pii_audit_failures_total 1",
            "forja_auto_rollbacks_total 1",
            "forja_training_loss{job=\"ftjob-1\"} 1.25",
            "forja_training_tokens_per_second{job=\"ftjob-1\"} 800",
            "forja_store_busy_errors_total 1",
            "forja_data_dir_size_bytes ",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        // Counters never go down; a finished job's series goes away.
        let mut later = stats();
        later.training.clear();
        later.operations = 4; // a store reopened elsewhere
        m.update(&later, 1_700);
        let text = m.render();
        assert!(text.contains("forja_store_operations_total 10"), "{text}");
        assert!(!text.contains("ftjob-1"), "{text}");

        let m = NodeMetrics::new(true, dir.path().to_path_buf());
        m.update(&stats(), 1_600);
        let text = m.render();
        for want in [
            "forja_jobs{state=\"queued\",tenant=\"acme\"} 2",
            "forja_jobs{state=\"queued\",tenant=\"beta\"} 1",
            "forja_gate_rejected_streak{tenant=\"acme\"} 2",
            "forja_registry_events_total{kind=\"rejected\",tenant=\"acme\"} 2",
            "forja_champion_metric{metric=\"wer\",tenant=\"acme\"} 0.25",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
