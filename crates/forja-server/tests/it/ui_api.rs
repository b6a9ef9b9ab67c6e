//! Endpoints the web UI needs besides conversations and live progress:
//! `/v1/whoami` for an admin key, `/v1/admin/node`, and a golden set's
//! examples page by page (`/v1/registry/golden/{id}`), each scoped as the
//! rest of the API.

use crate::common;

use axum::body::Body;
use common::*;
use forja_store::TenantSettings;

#[test]
fn an_admin_key_sees_the_node_and_a_tenant_key_does_not() {
    let b = Bed::new(|c| c.workers = 0);
    let key = b.tenant("acme", TenantSettings::default());
    let me = b.get("/v1/whoami", &b.admin);
    assert_eq!(me.status, 200, "{}", me.body);
    assert!(me.body["tenant"].is_null() && me.body["key"]["role"] == "admin", "{}", me.body);
    // Acting for a tenant, it is that tenant.
    let r = b.call("GET", "/v1/whoami", &b.admin, &[("x-forja-tenant", "acme")], Body::empty());
    assert_eq!(r.body["tenant"]["name"], "acme", "{}", r.body);

    let n = b.get("/v1/admin/node", &b.admin);
    assert_eq!(n.status, 200, "{}", n.body);
    assert_eq!(n.body["ready"], true);
    assert_eq!(n.body["tenants"], 1);
    assert_eq!(n.body["workers"], 0);
    assert!(n.body["model"].as_str().is_some_and(|m| m.contains("tiny")), "{}", n.body);
    assert!(n.body["memory"]["rss_bytes"].as_u64().unwrap_or(0) > 1 << 20, "{}", n.body);
    // A serving-only node serves the weights as stored (a Q8_0 file).
    assert_eq!(n.body["serving"]["weights"], serde_json::json!(["Q8_0"]), "{}", n.body);
    assert_eq!(b.get("/v1/admin/node", &key).status, 403);
    assert_eq!(b.get("/v1/admin/node", "").status, 401);
}

#[test]
fn a_node_that_trains_serves_a_quantized_copy() {
    // An f32 model: training keeps the dense weights, serving decodes a
    // Q8_0 copy quantized at load; `AsLoaded` and a serving-only node
    // serve the f32 weights.
    let tmp = tempfile::tempdir().unwrap();
    let spec = forja_engine::fixtures::Spec::llama();
    let model = tmp.path().join("tiny-f32.gguf");
    let w = forja_engine::fixtures::weights(&spec, 1);
    forja_engine::fixtures::write_gguf(&model, &spec, &w, candle_core::quantized::GgmlDType::F32);
    let weights = |edit: &dyn Fn(&mut forja_server::node::NodeConfig)| {
        let b = Bed::with_model(&model, |c| edit(c));
        let n = b.get("/v1/admin/node", &b.admin);
        n.body["serving"]["weights"].clone()
    };
    assert_eq!(weights(&|c| c.workers = 1), serde_json::json!(["Q8_0"]));
    assert_eq!(weights(&|c| c.workers = 0), serde_json::json!(["F32"]));
    let as_loaded = |c: &mut forja_server::node::NodeConfig| {
        c.workers = 1;
        c.serving_weights = forja_server::node::ServingWeights::AsLoaded;
    };
    assert_eq!(weights(&as_loaded), serde_json::json!(["F32"]));
}

#[test]
fn a_golden_set_is_inspected_page_by_page_by_its_tenant_only() {
    let b = Bed::new(|_| {});
    let key = b.tenant("acme", TenantSettings::default());
    let other = b.tenant("globex", TenantSettings::default());
    let jsonl: String = (0..45)
        .map(|i| {
            serde_json::json!({"messages": [{"role": "user", "content": format!("pregunta {i}")},
                {"role": "assistant", "content": format!("respuesta {i}")}]})
            .to_string()
                + "\n"
        })
        .collect();
    let up = b.call("POST", "/v1/registry/golden?name=actas.jsonl", &key, &[], Body::from(jsonl));
    assert_eq!(up.status, 200, "{}", up.body);
    let id = up.body["id"].as_str().unwrap().to_string();

    let p1 = b.get(&format!("/v1/registry/golden/{id}?limit=20"), &key);
    assert_eq!(p1.status, 200, "{}", p1.body);
    assert_eq!((p1.body["total"].as_u64(), p1.body["offset"].as_u64()), (Some(45), Some(0)));
    let data = p1.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 20);
    assert_eq!(data[0]["reference"], "respuesta 0");
    assert_eq!(data[0]["messages"][0]["content"], "pregunta 0");
    let p3 = b.get(&format!("/v1/registry/golden/{id}?offset=40&limit=20"), &key);
    assert_eq!(p3.body["data"].as_array().unwrap().len(), 5);
    assert_eq!(p3.body["data"][4]["reference"], "respuesta 44");
    // Bounded pages; another tenant's set is not found; a bad cursor says so.
    let big = b.get(&format!("/v1/registry/golden/{id}?limit=100000"), &key);
    assert_eq!(big.body["data"].as_array().unwrap().len(), 45);
    assert_eq!(b.get(&format!("/v1/registry/golden/{id}"), &other).status, 404);
    assert_eq!(b.get("/v1/registry/golden/nope", &key).status, 404);
    assert_eq!(b.get(&format!("/v1/registry/golden/{id}?offset=-1"), &key).status, 400);
}
