//! Serving metrics in Prometheus' text format (the `prometheus` crate):
//! requests by route and status, latency histograms (total, time to first
//! token, per output token), tokens in and out, active requests, requests
//! refused by admission control, the batcher's queue, preemptions and
//! dropped work, the adapter cache, hot-swaps and their failures (the
//! alert), speculative decoding, constrained decoding and grammar
//! compilation.
//!
//! Tenant names are a label only when the operator opts in
//! (`Metrics::new(true)`, `--metrics-tenant-labels`): by default a scrape
//! reveals no tenant and the series count does not grow with tenants.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every serving metric, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Whether per-tenant series carry a `tenant` label.
    tenant_labels: bool,
    /// Tenants degraded now (without tenant labels the gauge counts them).
    degraded_now: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Requests answered, by route, HTTP status (and tenant name).
    requests: IntCounterVec,
    /// Request latency by route (seconds, whole request).
    pub latency: HistogramVec,
    /// Time to the first generated token (seconds).
    pub ttft: Histogram,
    /// Decode time per output token after the first (seconds).
    pub per_token: Histogram,
    /// Prompt tokens processed (by tenant).
    prompt_tokens: IntCounterVec,
    /// Tokens generated (by tenant).
    generated_tokens: IntCounterVec,
    /// Requests in flight.
    pub active: IntGauge,
    /// Sequences the batcher is generating.
    pub batch_live: IntGauge,
    /// Requests waiting for a batch slot.
    pub queued: IntGauge,
    /// Adapter cache lookups that found the adapter loaded.
    pub cache_hits: IntCounter,
    /// Adapter cache lookups that had to load.
    pub cache_misses: IntCounter,
    /// Adapters loaded from the artifact store.
    pub adapter_loads: IntCounter,
    /// Adapter loads (or smoke checks) that failed.
    pub adapter_failures: IntCounter,
    /// Bytes of adapters held by the cache.
    pub cache_bytes: IntGauge,
    /// Adapters evicted from the cache.
    pub evictions: IntCounter,
    /// Alias switches to a newly promoted version, by result (`ok`, `failed`).
    pub swaps: IntCounterVec,
    /// 1 while a tenant's newest promotion failed to load and an older
    /// version (or the base model) is served instead (the alert).
    degraded: IntGaugeVec,
    /// Requests refused by admission control, by reason
    /// (`tenant_in_flight`, `queue_full`).
    pub rejected: IntCounterVec,
    /// Sequences paused to give their batch slot to another tenant.
    pub preempted: IntCounter,
    /// Queued or running sequences dropped because their client left.
    pub dropped: IntCounter,
    /// Generation passes that panicked (their requests failed).
    pub panics: IntCounter,
    /// Grammar compilations (seconds), cache misses only.
    pub grammar_compile: Histogram,
    /// Draft tokens proposed by speculative decoding.
    pub spec_drafted: IntCounter,
    /// Draft tokens the target accepted.
    pub spec_accepted: IntCounter,
    /// Sequences that stopped speculating (acceptance too low).
    pub spec_fallbacks: IntCounter,
    /// Requests with a grammar, by kind (`json_object`, `json_schema`, `regex`, `lark`).
    pub constrained: IntCounterVec,
    /// Entity-memory facts by outcome (`new`, `merged`, `superseded`,
    /// `rejected`).
    pub memory_facts: IntCounterVec,
    /// Entity-memory extractions by outcome (`done`, `failed`, `dropped`).
    pub memory_extractions: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const LATENCY_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
const TOKEN_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64];

impl Metrics {
    /// Creates and registers every metric; with `tenant_labels`, per-tenant
    /// series carry the tenant's name.
    pub fn new(tenant_labels: bool) -> Metrics {
        let registry = Registry::new();
        let with_tenant = |labels: &[&'static str]| -> Vec<&'static str> {
            let mut l = labels.to_vec();
            if tenant_labels {
                l.push("tenant");
            }
            l
        };
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            reg(Box::new(c.clone()));
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            reg(Box::new(c.clone()));
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("valid metric");
            reg(Box::new(h.clone()));
            h
        };
        let latency = HistogramVec::new(
            HistogramOpts::new("forja_request_duration_seconds", "Request latency by route.")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        reg(Box::new(latency.clone()));
        let degraded = IntGaugeVec::new(
            Opts::new(
                "forja_serving_degraded",
                "1 while a promotion failed to load and an older version (or the base model) is served.",
            ),
            &with_tenant(&[]),
        )
        .expect("valid metric");
        reg(Box::new(degraded.clone()));
        let m = Metrics {
            requests: counter_vec(
                "forja_requests_total",
                "Inference requests answered, by route and HTTP status.",
                &with_tenant(&["route", "status"]),
            ),
            latency,
            ttft: histogram(
                "forja_time_to_first_token_seconds",
                "Time from request to first generated token.",
                LATENCY_BUCKETS,
            ),
            per_token: histogram(
                "forja_time_per_output_token_seconds",
                "Decode time per output token after the first.",
                TOKEN_BUCKETS,
            ),
            prompt_tokens: counter_vec(
                "forja_prompt_tokens_total",
                "Prompt tokens processed.",
                &with_tenant(&[]),
            ),
            generated_tokens: counter_vec(
                "forja_generation_tokens_total",
                "Tokens generated.",
                &with_tenant(&[]),
            ),
            active: gauge("forja_requests_active", "Inference requests in flight."),
            batch_live: gauge("forja_batch_sequences", "Sequences the batcher is generating."),
            queued: gauge("forja_batch_queue_depth", "Requests waiting for a batch slot."),
            cache_hits: counter("forja_adapter_cache_hits_total", "Adapter cache hits."),
            cache_misses: counter("forja_adapter_cache_misses_total", "Adapter cache misses."),
            adapter_loads: counter(
                "forja_adapter_loads_total",
                "Adapters loaded from the artifact store.",
            ),
            adapter_failures: counter(
                "forja_adapter_load_failures_total",
                "Adapter loads or smoke checks that failed.",
            ),
            cache_bytes: gauge("forja_adapter_cache_bytes", "Bytes of adapters in the cache."),
            evictions: counter("forja_adapter_evictions_total", "Adapters evicted from the cache."),
            swaps: counter_vec(
                "forja_hot_swaps_total",
                "Alias switches to a newly promoted version, by result.",
                &["result"],
            ),
            degraded,
            spec_drafted: counter(
                "forja_speculative_draft_tokens_total",
                "Draft tokens proposed by speculative decoding.",
            ),
            spec_accepted: counter(
                "forja_speculative_accepted_tokens_total",
                "Draft tokens accepted by the target model.",
            ),
            spec_fallbacks: counter(
                "forja_speculative_fallbacks_total",
                "Sequences that fell back to plain decoding (low acceptance).",
            ),
            constrained: counter_vec(
                "forja_constrained_requests_total",
                "Requests decoded under a grammar, by kind.",
                &["kind"],
            ),
            memory_facts: counter_vec(
                "forja_memory_facts_total",
                "Entity-memory facts by outcome (new, merged, superseded, rejected).",
                &["outcome"],
            ),
            memory_extractions: counter_vec(
                "forja_memory_extractions_total",
                "Entity-memory extractions from chat turns by outcome (done, failed, dropped).",
                &["outcome"],
            ),
            rejected: counter_vec(
                "forja_requests_rejected_total",
                "Requests refused by admission control (answered 429), by reason.",
                &["reason"],
            ),
            preempted: counter(
                "forja_batch_preemptions_total",
                "Sequences paused to give their batch slot to another tenant.",
            ),
            dropped: counter(
                "forja_batch_dropped_total",
                "Queued or running sequences dropped because their client left.",
            ),
            panics: counter(
                "forja_generation_panics_total",
                "Generation passes that panicked; their requests failed, serving went on.",
            ),
            grammar_compile: histogram(
                "forja_grammar_compile_seconds",
                "Time to compile a response_format grammar (cache misses).",
                LATENCY_BUCKETS,
            ),
            tenant_labels,
            degraded_now: Default::default(),
            registry,
        };
        // The series dashboards and alert rules name exist from the start
        // (a labelled family without a series is not exported at all).
        for k in ["json_object", "json_schema", "regex", "lark"] {
            m.constrained.with_label_values(&[k]);
        }
        for r in ["ok", "failed"] {
            m.swaps.with_label_values(&[r]);
        }
        for r in ["tenant_in_flight", "queue_full"] {
            m.rejected.with_label_values(&[r]);
        }
        for o in ["new", "merged", "superseded", "rejected"] {
            m.memory_facts.with_label_values(&[o]);
        }
        for o in ["done", "failed", "dropped"] {
            m.memory_extractions.with_label_values(&[o]);
        }
        if !tenant_labels {
            m.degraded.with_label_values::<&str>(&[]).set(0);
        }
        m
    }

    fn values<'a>(&self, mut labels: Vec<&'a str>, tenant: &'a str) -> Vec<&'a str> {
        if self.tenant_labels {
            labels.push(tenant);
        }
        labels
    }

    /// Counts an answered request.
    pub fn request(&self, route: &str, status: &str, tenant: &str) {
        self.requests.with_label_values(&self.values(vec![route, status], tenant)).inc();
    }

    /// Counts prompt tokens of `tenant`.
    pub fn prompt_tokens(&self, tenant: &str, n: u64) {
        self.prompt_tokens.with_label_values(&self.values(vec![], tenant)).inc_by(n);
    }

    /// Counts generated tokens of `tenant`.
    pub fn generated_tokens(&self, tenant: &str, n: u64) {
        self.generated_tokens.with_label_values(&self.values(vec![], tenant)).inc_by(n);
    }

    /// Raises or clears the degraded alert of `tenant` (without tenant
    /// labels, the gauge is the number of degraded tenants).
    pub fn set_degraded(&self, tenant: &str, degraded: bool) {
        if self.tenant_labels {
            self.degraded.with_label_values(&[tenant]).set(i64::from(degraded));
            return;
        }
        let mut now = self.degraded_now.lock().unwrap_or_else(|e| e.into_inner());
        if degraded {
            now.insert(tenant.to_string());
        } else {
            now.remove(tenant);
        }
        self.degraded.with_label_values::<&str>(&[]).set(now.len() as i64);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding into memory cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(false)
    }
}
