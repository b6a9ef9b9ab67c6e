//! Serving metrics in Prometheus' text format (the `prometheus` crate):
//! requests by route, status and tenant, latency histograms (total, time
//! to first token, per output token), tokens in and out, active requests,
//! the batcher's queue, the adapter cache, hot-swaps and their failures
//! (the alert), speculative decoding and constrained decoding.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every serving metric, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route, HTTP status and tenant name.
    pub requests: IntCounterVec,
    /// Request latency by route (seconds, whole request).
    pub latency: HistogramVec,
    /// Time to the first generated token (seconds).
    pub ttft: Histogram,
    /// Decode time per output token after the first (seconds).
    pub per_token: Histogram,
    /// Prompt tokens processed, by tenant.
    pub prompt_tokens: IntCounterVec,
    /// Tokens generated, by tenant.
    pub generated_tokens: IntCounterVec,
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
    /// version is served instead (the alert).
    pub degraded: IntGaugeVec,
    /// Draft tokens proposed by speculative decoding.
    pub spec_drafted: IntCounter,
    /// Draft tokens the target accepted.
    pub spec_accepted: IntCounter,
    /// Sequences that stopped speculating (acceptance too low).
    pub spec_fallbacks: IntCounter,
    /// Requests with a grammar, by kind (`json_object`, `json_schema`, `regex`, `lark`).
    pub constrained: IntCounterVec,
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
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
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
                "1 while a tenant's newest promotion failed to load and an older version is served.",
            ),
            &["tenant"],
        )
        .expect("valid metric");
        reg(Box::new(degraded.clone()));
        Metrics {
            requests: counter_vec(
                "forja_requests_total",
                "Inference requests answered, by route, HTTP status and tenant.",
                &["route", "status", "tenant"],
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
                &["tenant"],
            ),
            generated_tokens: counter_vec(
                "forja_generation_tokens_total",
                "Tokens generated.",
                &["tenant"],
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
            registry,
        }
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
        Metrics::new()
    }
}
