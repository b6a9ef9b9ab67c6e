//! Chat history over HTTP (`/v1/conversations`), through the real router:
//! stored scrubbed, listed and searched per tenant, renamed, appended to,
//! exported, deleted with its storage refunded; bounded per request and
//! per conversation; invisible to other tenants.

use crate::common;

use axum::body::Body;
use common::*;
use forja_store::TenantSettings;
use serde_json::json;

fn patch(b: &Bed, path: &str, key: &str, body: serde_json::Value) -> Resp {
    b.call(
        "PATCH",
        path,
        key,
        &[("content-type", "application/json")],
        Body::from(body.to_string()),
    )
}

#[test]
fn conversations_are_kept_scrubbed_searched_exported_and_deleted_per_tenant() {
    let b = Bed::new(|_| {});
    let key = b.tenant("acme", TenantSettings::default());
    let other = b.tenant("globex", TenantSettings::default());
    let tenant = b.node.store.tenant_by_name("acme").unwrap();
    let before = b.node.store.storage(&tenant.id).unwrap();

    let r = b.post(
        "/v1/conversations",
        &key,
        json!({"model": "tiny@champion", "mode": "technical", "messages": [
            {"role": "system", "content": "Eres un asistente técnico."},
            {"role": "user", "content": "Mi DNI es 12345678Z y quiero saber el 100% del presupuesto de la piscina municipal para este año"},
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("conv-"));
    assert_eq!(r.body["messages_count"], 2);
    assert_eq!(r.body["pii_scrubbed"]["ES_NIF"], 1, "{}", r.body);
    let title = r.body["title"].as_str().unwrap();
    assert!(title.ends_with('…') && !title.contains("12345678Z"), "{title}");

    let a = b.post(
        &format!("/v1/conversations/{id}/messages"),
        &key,
        json!({"messages": [{"role": "assistant", "content": "Son 250.000 euros.", "completion_id": "chatcmpl-1"}]}),
    );
    assert_eq!(
        (a.status.as_u16(), a.body["messages_count"].as_u64()),
        (200, Some(3)),
        "{}",
        a.body
    );
    let g = b.get(&format!("/v1/conversations/{id}"), &key);
    let msgs = g.body["messages"].as_array().unwrap();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant"]);
    assert!(!msgs[1]["content"].as_str().unwrap().contains("12345678Z"), "stored scrubbed");
    assert_eq!(msgs[2]["completion_id"], "chatcmpl-1");

    // A second conversation; search finds by title or content, `%` is literal.
    let r2 = b.post("/v1/conversations", &key, json!({"title": "Plenos de enero"}));
    assert_eq!(r2.status, 200, "{}", r2.body);
    let id2 = r2.body["id"].as_str().unwrap().to_string();
    let ids = |path: &str, k: &str| -> Vec<String> {
        let l = b.get(path, k);
        assert_eq!(l.status, 200, "{}", l.body);
        l.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().into())
            .collect()
    };
    assert_eq!(ids("/v1/conversations", &key).len(), 2);
    assert_eq!(ids("/v1/conversations?search=piscina", &key), [id.as_str()]);
    assert_eq!(ids("/v1/conversations?search=ENERO", &key), [id2.as_str()]);
    assert_eq!(ids("/v1/conversations?search=100%25", &key), [id.as_str()]);
    assert!(ids("/v1/conversations?search=%25%25%25", &key).is_empty());
    assert_eq!(ids("/v1/conversations?limit=1", &key).len(), 1);

    // Rename; export as JSON and Markdown.
    let p = patch(&b, &format!("/v1/conversations/{id}"), &key, json!({"title": "Presupuesto"}));
    assert_eq!(
        (p.status.as_u16(), p.body["title"].as_str()),
        (200, Some("Presupuesto")),
        "{}",
        p.body
    );
    let md = b.get(&format!("/v1/conversations/{id}/export?format=markdown"), &key);
    assert_eq!(md.status, 200);
    let text = md.body.as_str().unwrap();
    assert!(
        text.starts_with("# Presupuesto\n") && text.contains("## assistant\n\nSon 250.000 euros."),
        "{text}"
    );
    assert!(md.headers["content-disposition"].to_str().unwrap().contains(&format!("{id}.md")));
    let js = b.get(&format!("/v1/conversations/{id}/export"), &key);
    assert_eq!(js.body["messages"].as_array().unwrap().len(), 3);

    // Another tenant sees none of it.
    assert!(ids("/v1/conversations", &other).is_empty());
    for (m, path) in [
        ("GET", format!("/v1/conversations/{id}")),
        ("DELETE", format!("/v1/conversations/{id}")),
        ("GET", format!("/v1/conversations/{id}/export")),
    ] {
        assert_eq!(b.call(m, &path, &other, &[], Body::empty()).status, 404, "{m} {path}");
    }
    let x = b.post(
        &format!("/v1/conversations/{id}/messages"),
        &other,
        json!({"messages": [{"role": "user", "content": "hola"}]}),
    );
    assert_eq!(x.status, 404);
    assert_eq!(
        patch(&b, &format!("/v1/conversations/{id}"), &other, json!({"title": "mío"})).status,
        404
    );

    // Deleting refunds its storage.
    let used = b.node.store.storage(&tenant.id).unwrap();
    assert!(used.used_bytes > before.used_bytes, "{used:?}");
    for i in [&id, &id2] {
        assert_eq!(
            b.call("DELETE", &format!("/v1/conversations/{i}"), &key, &[], Body::empty()).status,
            200
        );
    }
    assert_eq!(b.get(&format!("/v1/conversations/{id}"), &key).status, 404);
    assert_eq!(b.node.store.storage(&tenant.id).unwrap().used_bytes, before.used_bytes);
}

#[test]
fn bad_conversation_requests_get_a_clear_error_and_store_nothing() {
    let b = Bed::new(|_| {});
    let key = b.tenant("acme", TenantSettings::default());
    let cases = [
        (json!({"messages": [{"role": "tool", "content": "x"}]}), "messages[0].role"),
        (
            json!({"messages": [{"role": "user", "content": "x".repeat(70_000)}]}),
            "messages[0].content",
        ),
        (json!({"title": "   "}), "title"),
        (json!({"title": "a\u{7}b"}), "title"),
        (json!({"titel": "x"}), ""),
    ];
    for (body, param) in cases {
        let r = b.post("/v1/conversations", &key, body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.param(), param, "{}", r.body);
    }
    assert!(b.get("/v1/conversations", &key).body["data"].as_array().unwrap().is_empty());
    let id = b.post("/v1/conversations", &key, json!({})).body["id"].as_str().unwrap().to_string();
    let path = format!("/v1/conversations/{id}/messages");
    assert_eq!(b.post(&path, &key, json!({"messages": []})).param(), "messages");
    let many: Vec<_> =
        (0..65).map(|i| json!({"role": "user", "content": format!("m{i}")})).collect();
    assert_eq!(b.post(&path, &key, json!({ "messages": many })).param(), "messages");
    assert_eq!(b.get(&format!("/v1/conversations/{id}/export?format=pdf"), &key).param(), "format");
    assert_eq!(b.get("/v1/conversations?search=".to_string().as_str(), &key).status, 200);
    // A conversation holds at most 1000 messages: the 16th batch of 64 is refused whole.
    let batch: Vec<_> =
        (0..64).map(|i| json!({"role": "user", "content": format!("m{i}")})).collect();
    for _ in 0..15 {
        assert_eq!(b.post(&path, &key, json!({ "messages": batch })).status, 200);
    }
    let full = b.post(&path, &key, json!({ "messages": batch }));
    assert_eq!(full.status, 409, "{}", full.body);
    assert!(full.message().contains("start a new one"), "{}", full.body);
    assert_eq!(b.get(&format!("/v1/conversations/{id}"), &key).body["messages_count"], 960);
}

#[test]
fn chat_modes_are_built_in_until_a_tenant_saves_its_own() {
    let b = Bed::new(|_| {});
    let key = b.tenant("acme", TenantSettings { threshold: Some(7), ..Default::default() });
    let other = b.tenant("globex", TenantSettings::default());
    let ids = |k: &str| -> (Vec<String>, bool) {
        let r = b.get("/v1/modes", k);
        assert_eq!(r.status, 200, "{}", r.body);
        let ids = r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().into())
            .collect();
        (ids, r.body["custom"].as_bool().unwrap())
    };
    assert_eq!(
        ids(&key),
        (vec!["technical".into(), "simplified".into(), "narrated".into()], false)
    );

    let put = |k: &str, body: serde_json::Value| {
        b.call(
            "PUT",
            "/v1/modes",
            k,
            &[("content-type", "application/json")],
            Body::from(body.to_string()),
        )
    };
    let mine = json!({"modes": [
        {"id": "technical", "name": "Técnico", "prompt": "Sé preciso."},
        {"id": "acta", "name": "Acta del Pleno", "prompt": "Redacta como el acta oficial."},
    ]});
    let r = put(&key, mine);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ids(&key), (vec!["technical".into(), "acta".into()], true));
    assert!(!ids(&other).1, "another tenant keeps the built-in modes");
    // Saving modes leaves the rest of the tenant's policy as it was.
    assert_eq!(b.get("/v1/whoami", &key).body["policy"]["threshold"], 7);

    let bad = [
        (json!({"modes": []}), "modes"),
        (json!({"modes": [{"id": "A b", "name": "x", "prompt": ""}]}), "modes[0].id"),
        (
            json!({"modes": [{"id": "a", "name": "x", "prompt": ""}, {"id": "a", "name": "y", "prompt": ""}]}),
            "modes[1].id",
        ),
        (json!({"modes": [{"id": "a", "name": " ", "prompt": ""}]}), "modes[0].name"),
        (
            json!({"modes": [{"id": "a", "name": "x", "prompt": "p".repeat(4001)}]}),
            "modes[0].prompt",
        ),
        (json!({"modes": [{"id": "a", "name": "x", "prompt": "", "color": "red"}]}), ""),
    ];
    for (body, param) in bad {
        let r = put(&key, body.clone());
        assert_eq!((r.status.as_u16(), r.param()), (400, param), "{body}: {}", r.body);
    }
    assert_eq!(ids(&key).0, ["technical", "acta"], "a refused save changes nothing");
    let r = b.call("DELETE", "/v1/modes", &key, &[], Body::empty());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ids(&key),
        (vec!["technical".into(), "simplified".into(), "narrated".into()], false)
    );
}
