#!/usr/bin/env python3
"""Writes forja's Grafana dashboards (dashboards/*.json) from the panel lists
below, so the three stay consistent. Run it after editing; CI checks that
every metric a panel queries exists in a live node's /metrics
(crates/forja/tests/ops.rs)."""
import json
import pathlib

DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(i, title, exprs, unit="short", kind="timeseries", desc="", legend=None):
    x, y = (i % 2) * 12, (i // 2) * 8
    targets = []
    for j, e in enumerate(exprs):
        expr, leg = e if isinstance(e, tuple) else (e, legend or "")
        targets.append({"refId": chr(65 + j), "datasource": DS, "expr": expr, "legendFormat": leg})
    return {
        "id": i + 1, "type": kind, "title": title, "description": desc, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": 12, "h": 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": targets,
    }


def dashboard(uid, title, desc, panels, tenant_var=False):
    templating = [{
        "name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus",
        "current": {}, "hide": 0,
    }, {
        "name": "instance", "type": "query", "datasource": DS, "label": "Node",
        "query": {"query": "label_values(forja_build_info, instance)", "refId": "instance"},
        "definition": "label_values(forja_build_info, instance)",
        "includeAll": True, "multi": True, "current": {}, "refresh": 2,
    }]
    if tenant_var:
        templating.append({
            "name": "tenant", "type": "query", "datasource": DS, "label": "Tenant",
            "query": {"query": "label_values(forja_examples, tenant)", "refId": "tenant"},
            "definition": "label_values(forja_examples, tenant)",
            "includeAll": True, "multi": True, "current": {}, "refresh": 2,
        })
    return {
        "uid": uid, "title": title, "description": desc, "tags": ["forja"],
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"}, "timezone": "",
        "templating": {"list": templating}, "annotations": {"list": []},
        "panels": [panel(i, *p[:3], **p[3]) if len(p) > 3 else panel(i, *p) for i, p in enumerate(panels)],
    }


I = 'instance=~"$instance"'
T = 'tenant=~"$tenant"'

node = dashboard("forja-node", "forja: node overview",
    "One forja node: is it up, is it keeping up, is its disk and database healthy.", [
    ("Up", [(f'up{{job="forja",{I}}}', "{{instance}}")], "short", {"kind": "stat"}),
    ("Requests per second by status", [(f'sum by (status) (rate(forja_requests_total{{{I}}}[5m]))', "{{status}}")], "reqps"),
    ("Jobs by state", [(f'sum by (state) (forja_jobs{{{I}}})', "{{state}}")]),
    ("Oldest queued job", [(f'max(forja_job_queue_oldest_seconds{{{I}}})', "age")], "s"),
    ("Jobs ended per hour", [(f'sum by (outcome) (increase(forja_jobs_finished_total{{{I}}}[1h]))', "{{outcome}}")]),
    ("Data directory free", [(f'forja_data_dir_available_bytes{{{I}}} / forja_data_dir_size_bytes{{{I}}}', "{{instance}}")], "percentunit"),
    ("Store: mean operation time", [(f'rate(forja_store_operation_seconds_total{{{I}}}[5m]) / rate(forja_store_operations_total{{{I}}}[5m])', "{{instance}}")], "s"),
    ("Store: busy errors per minute", [(f'rate(forja_store_busy_errors_total{{{I}}}[5m]) * 60', "{{instance}}")]),
    ("Webhook deliveries", [(f'sum by (state) (forja_webhook_deliveries{{{I}}})', "{{state}}")]),
    ("Knowledge passages and memory facts", [(f'sum(forja_knowledge_passages{{{I}}})', "passages"), (f'sum(forja_memory_facts_stored{{{I}}})', "facts")]),
    ("Scheduled tasks: last run failed or warned", [(f'max by (task, outcome) (forja_task_last_run{{outcome=~"failed|abandoned|warning",{I}}})', "{{task}} {{outcome}}")]),
    ("Scheduled tasks: hours since last success", [(f'(time() - max by (task) (forja_task_last_success_timestamp_seconds{{{I}}} > 0)) / 3600', "{{task}}")], "h"),
    ("Background loops restarted, and degraded", [(f'sum by (task) (increase(forja_task_restarts_total{{{I}}}[1h]))', "{{task}} restarts/h"), (f'max(forja_degraded{{{I}}})', "degraded")]),
])

learning = dashboard("forja-learning", "forja: learning per tenant",
    "What each tenant's learning loop is doing: pending examples, training, the gate, the registry. "
    "Per-tenant series need the node started with --metrics-tenant-labels.", [
    ("Pending examples (curated)", [(f'sum by (tenant) (forja_examples{{state="curated",{I},{T}}})', "{{tenant}}")]),
    ("Examples by state", [(f'sum by (state) (forja_examples{{{I},{T}}})', "{{state}}")]),
    ("Training loss (running jobs)", [(f'forja_training_loss{{{I}}}', "{{job}}")]),
    ("Training tokens/s (running jobs)", [(f'forja_training_tokens_per_second{{{I}}}', "{{job}}")]),
    ("Jobs by state", [(f'sum by (tenant, state) (forja_jobs{{{I},{T}}})', "{{tenant}} {{state}}")]),
    ("Model versions by status", [(f'sum by (tenant, status) (forja_model_versions{{{I},{T}}})', "{{tenant}} {{status}}")]),
    ("Registry events per day", [(f'sum by (tenant, kind) (increase(forja_registry_events_total{{{I},{T}}}[1d]))', "{{tenant}} {{kind}}")]),
    ("Gate: rejections since last promotion", [(f'forja_gate_rejected_streak{{{I},{T}}}', "{{tenant}}")]),
    ("Final PII audit failures and automatic rollbacks", [(f'increase(forja_pii_audit_failures_total{{{I}}}[1d])', "PII audit {{instance}}"), (f'increase(forja_auto_rollbacks_total{{{I}}}[1d])', "auto-rollback {{instance}}")]),
    ("Memory facts extracted", [(f'sum by (outcome) (rate(forja_memory_facts_total{{{I}}}[1h]) * 3600)', "{{outcome}}")]),
    ("Champion's golden-set metrics at promotion", [(f'forja_champion_metric{{{I},{T}}}', "{{tenant}} {{metric}}")]),
    ("Feedback curation per hour, and personal data scrubbed", [(f'sum by (outcome) (increase(forja_curation_examples_total{{{I}}}[1h]))', "{{outcome}}"), (f'sum by (kind) (increase(forja_pii_scrubbed_total{{{I}}}[1h]))', "PII {{kind}}")]),
], tenant_var=True)

serving = dashboard("forja-serving", "forja: serving",
    "Inference: throughput, latency, batching, admission, adapters and hot-swaps.", [
    ("p50 / p99 latency (completions)", [
        (f'histogram_quantile(0.5, sum by (le) (rate(forja_request_duration_seconds_bucket{{route=~"/v1/chat/completions|/v1/completions",{I}}}[5m])))', "p50"),
        (f'histogram_quantile(0.99, sum by (le) (rate(forja_request_duration_seconds_bucket{{route=~"/v1/chat/completions|/v1/completions",{I}}}[5m])))', "p99")], "s"),
    ("Time to first token p50 / p99", [
        (f'histogram_quantile(0.5, sum by (le) (rate(forja_time_to_first_token_seconds_bucket{{{I}}}[5m])))', "p50"),
        (f'histogram_quantile(0.99, sum by (le) (rate(forja_time_to_first_token_seconds_bucket{{{I}}}[5m])))', "p99")], "s"),
    ("Generated tokens/s", [(f'sum(rate(forja_generation_tokens_total{{{I}}}[1m]))', "generated"), (f'sum(rate(forja_prompt_tokens_total{{{I}}}[1m]))', "prompt")]),
    ("Time per output token p50", [(f'histogram_quantile(0.5, sum by (le) (rate(forja_time_per_output_token_seconds_bucket{{{I}}}[5m])))', "p50")], "s"),
    ("Batch: live sequences and queue", [(f'sum(forja_batch_sequences{{{I}}})', "live"), (f'sum(forja_batch_queue_depth{{{I}}})', "queued"), (f'sum(forja_requests_active{{{I}}})', "in flight")]),
    ("Refused (429) by reason", [(f'sum by (reason) (rate(forja_requests_rejected_total{{{I}}}[5m]))', "{{reason}}")], "reqps"),
    ("Adapter cache", [(f'rate(forja_adapter_cache_hits_total{{{I}}}[5m])', "hits"), (f'rate(forja_adapter_cache_misses_total{{{I}}}[5m])', "misses"), (f'rate(forja_adapter_evictions_total{{{I}}}[5m])', "evictions")]),
    ("Hot-swaps and degraded", [(f'sum by (result) (increase(forja_hot_swaps_total{{{I}}}[1h]))', "swap {{result}}"), (f'max(forja_serving_degraded{{{I}}})', "degraded")]),
    ("Grammar-constrained requests", [(f'sum by (kind) (rate(forja_constrained_requests_total{{{I}}}[5m]))', "{{kind}}")], "reqps"),
    ("Contained panics and dropped work", [(f'increase(forja_generation_panics_total{{{I}}}[1h])', "panics"), (f'increase(forja_batch_dropped_total{{{I}}}[1h])', "dropped (client left)")]),
])

out = pathlib.Path(__file__).parent / "dashboards"
for name, d in [("forja-node", node), ("forja-learning", learning), ("forja-serving", serving)]:
    (out / f"{name}.json").write_text(json.dumps(d, indent=2, ensure_ascii=False) + "\n")
print("wrote", ", ".join(sorted(p.name for p in out.glob("*.json"))))
