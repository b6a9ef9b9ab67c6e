//! Entity memory end to end against a real `forja serve` with
//! SmolLM2-135M-Instruct: a tenant with memory on (`forja tenants set
//! --memory on`) states a fact in one conversation, the served model
//! extracts it under the memory schema after the answer, and a later
//! conversation gets it in its prompt and lists it as `memory_facts` (in
//! JSON and in the stream's first chunk). A newer holder of the role
//! supersedes it with history; an edit re-keys a fact; extraction from a
//! document; forgetting the person removes every fact and refusal naming
//! them; another tenant sees, edits and forgets none of it; bad requests
//! get field-named 400s.

use crate::common;

use common::server::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

fn chat(s: &Server, key: &str, text: &str, memory: Value) -> Value {
    let mut body = json!({
        "model": "default", "max_tokens": 16, "temperature": 0,
        "messages": [{"role": "user", "content": text}],
    });
    if !memory.is_null() {
        body["memory"] = memory;
    }
    let (st, v, _) = post(s, "/v1/chat/completions", key, body);
    assert_eq!(st, 200, "{v}");
    v
}

fn facts(s: &Server, key: &str, query: &str) -> Vec<Value> {
    let (st, v) = get(s, &format!("/v1/memory/facts{query}"), key);
    assert_eq!(st, 200, "{v}");
    v["data"].as_array().unwrap().clone()
}

fn ids(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect()
}

#[test]
fn a_fact_said_in_one_conversation_is_used_in_a_later_one_and_forgotten_on_request() {
    if forja_engine::fixtures::installed_model("default").is_none() {
        assert!(std::env::var_os("FORJA_REQUIRE_TESTDATA").is_none(), "SmolLM2 is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "acme"]);
    let other = key(&data, &["--tenant", "other"]);
    set_tenant(&data, "acme", &["--memory", "on", "--memory-k", "4"]);
    let s = serve(&data, Path::new("default"), &["--workers", "0"], &[]);

    // Conversation 1 states a fact; the answer comes first, the fact is
    // extracted after it.
    let first = chat(&s, &k, "Pilar Gutiérrez es la secretaria.", Value::Null);
    assert_eq!(first["memory_facts"], json!([]), "recall ran and found nothing yet: {first}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let fact = loop {
        if let Some(f) = facts(&s, &k, "").into_iter().next() {
            break f;
        }
        if std::time::Instant::now() > deadline {
            // What the model answered instead, for the failure's reader.
            let (_, why) = get(&s, "/v1/memory/rejections", &k);
            panic!("no fact was extracted in 120 s; refusals: {why}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (fact["subject"].as_str(), fact["verb"].as_str()),
        (Some("Pilar Gutiérrez"), Some("es")),
        "{fact}"
    );
    assert_eq!(fact["object"], "secretaria", "{fact}");
    assert_eq!(fact["source"], json!({"kind": "conversation", "ref": first["id"]}), "{fact}");
    let pilar = fact["id"].as_str().unwrap().to_string();

    // Conversation 2, with no history, gets the fact in its prompt.
    let question = "¿Quién es la secretaria?";
    let later = chat(&s, &k, question, json!({"remember": false}));
    assert_eq!(ids(&later["memory_facts"]), [pilar.as_str()], "{later}");
    assert_eq!(later["memory_facts"][0]["object"], "secretaria");
    eprintln!("answer with memory: {:?}", later["choices"][0]["message"]["content"]);
    let plain = chat(&s, &k, question, json!(false));
    assert!(plain.get("memory_facts").is_none(), "{plain}");
    // Streamed: the first chunk lists the facts.
    let body = json!({"model": "default", "max_tokens": 4, "stream": true, "memory": {"remember": false},
                      "messages": [{"role": "user", "content": question}]});
    let first_chunk: Value =
        serde_json::from_str(&sse(&s, "/v1/chat/completions", &k, body)[0]).unwrap();
    assert_eq!(ids(&first_chunk["memory_facts"]), [pilar.as_str()], "{first_chunk}");

    // Another tenant sees none of it, and cannot touch it.
    assert!(facts(&s, &other, "?history=true").is_empty());
    let theirs = chat(&s, &other, question, json!(true));
    assert_eq!(theirs["memory_facts"], json!([]), "{theirs}");
    assert_eq!(get(&s, &format!("/v1/memory/facts/{pilar}"), &other).0, 404);
    let (st, _, _) = call(&s, "DELETE", &format!("/v1/memory/facts/{pilar}"), &other, None, "");
    assert_eq!(st, 404);
    let edit = json!({"subject": "X Y", "verb": "es", "object": "secretaria"}).to_string();
    let (st, _, _) = call(
        &s,
        "PATCH",
        &format!("/v1/memory/facts/{pilar}"),
        &other,
        Some(edit.into_bytes()),
        "application/json",
    );
    assert_eq!(st, 404);
    let (st, v, _) = post(&s, "/v1/memory/forget", &other, json!({"entity": "Pilar Gutiérrez"}));
    assert_eq!((st, &v["facts"]), (200, &json!(0)), "{v}");

    // A new holder of the role supersedes Pilar, who stays in the history.
    let (st, v, _) = post(
        &s,
        "/v1/memory/facts",
        &k,
        json!({"subject": "Luis Gil", "verb": "es", "object": "secretario", "since": "2026-06"}),
    );
    assert_eq!(st, 200, "{v}");
    let added = &v["data"][0];
    assert_eq!(
        (added["result"].as_str(), ids(&added["superseded"])),
        (Some("new"), vec![pilar.as_str()]),
        "{v}"
    );
    let luis = added["fact"]["id"].as_str().unwrap().to_string();
    assert_eq!(facts(&s, &k, "").len(), 1);
    let history = facts(&s, &k, "?history=true");
    let old = history.iter().find(|f| f["id"] == pilar.as_str()).unwrap();
    assert_eq!((&old["current"], &old["superseded_by"]), (&json!(false), &json!(luis)), "{old}");
    let now = chat(&s, &k, question, json!({"remember": false}));
    assert_eq!(ids(&now["memory_facts"]), [luis.as_str()], "{now}");
    // An edit re-keys the fact.
    let edit = json!({"subject": "Luis Gil Ortega", "verb": "es", "object": "secretario", "since": "2026-07"}).to_string();
    let (st, v, _) = call(
        &s,
        "PATCH",
        &format!("/v1/memory/facts/{luis}"),
        &k,
        Some(edit.into_bytes()),
        "application/json",
    );
    assert_eq!(
        (st, v["subject"].as_str(), v["since"].as_str()),
        (200, Some("Luis Gil Ortega"), Some("2026-07")),
        "{v}"
    );

    // Facts of a document, by the served model: whatever it finds comes
    // back stored or refused with a reason.
    let text =
        "Gisela Cevallos es la concejala de Servicios Sociales.\n\n¿Cuándo es el próximo pleno?";
    let (st, v, _) =
        post(&s, "/v1/memory/extract", &k, json!({"text": text, "source": "acta de marzo"}));
    assert_eq!(st, 200, "{v}");
    for r in v["stored"].as_array().unwrap() {
        assert_eq!(r["fact"]["source"], json!({"kind": "document", "ref": "acta de marzo"}), "{v}");
    }
    for r in v["rejected"].as_array().unwrap() {
        assert!(r["reason"].as_str().is_some_and(|x| !x.is_empty()), "{v}");
    }
    let (st, v) = get(&s, "/v1/memory/rejections", &k);
    assert_eq!(st, 200, "{v}");

    // Forgetting a person: every fact naming them, current or past, goes.
    let (st, v, _) = post(&s, "/v1/memory/forget", &k, json!({"entity": "pilar gutierrez"}));
    assert_eq!((st, &v["facts"]), (200, &json!(1)), "{v}");
    assert!(facts(&s, &k, "?history=true&entity=Pilar").is_empty());
    assert_eq!(get(&s, &format!("/v1/memory/facts/{pilar}"), &k).0, 404);
    let after = chat(&s, &k, question, json!({"remember": false}));
    assert!(!after["memory_facts"].to_string().contains("Pilar"), "{after}");

    // Bad requests name the field.
    let msg = |m: Value| json!({"model": "default", "max_tokens": 2, "messages": [{"role": "user", "content": "hola"}], "memory": m});
    for (body, param) in [
        (msg(json!("yes")), "memory"),
        (msg(json!({"k": 99})), "memory.k"),
        (msg(json!({"x": 1})), "memory.x"),
        (msg(json!({"remember": "no"})), "memory.remember"),
    ] {
        let (st, v, _) = post(&s, "/v1/chat/completions", &k, body);
        assert_eq!((st, v["error"]["param"].as_str()), (400, Some(param)), "{v}");
    }
    for (path, body, param) in [
        (
            "/v1/memory/facts",
            json!({"subject": "", "verb": "es", "object": "vecina"}),
            Some("facts[0]"),
        ),
        (
            "/v1/memory/facts",
            json!({"subject": "Ana Ruiz", "verb": "tiene correo", "object": "ana@example.org"}),
            Some("facts[0]"),
        ),
        ("/v1/memory/facts", json!({"facts": []}), Some("facts")),
        ("/v1/memory/facts", json!({"subject": "A", "verb": "b"}), None),
        ("/v1/memory/forget", json!({"entity": "¿?"}), Some("entity")),
        ("/v1/memory/extract", json!({"text": "  "}), Some("text")),
    ] {
        let (st, v, _) = post(&s, path, &k, body);
        assert_eq!(st, 400, "{path}: {v}");
        assert_eq!(v["error"]["param"].as_str(), param, "{path}: {v}");
    }
    assert_eq!(get(&s, "/v1/memory/facts?bogus=1", &k).0, 400);
    assert_eq!(get_status(&s, "/v1/memory/facts", ""), 401);
}

fn mem(data: &Path, args: &[&str]) -> std::process::Output {
    let mut a = vec!["memory"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--tenant", "acme", "--data-dir", data.to_str().unwrap()]);
    common::forja(&a, None)
}

fn out(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", common::stderr(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_cli_adds_lists_edits_and_forgets() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    key(&data, &["--tenant", "acme"]);
    let ana = out(&mem(&data, &["add", "Ana Ruiz", "es", "alcaldesa"]));
    let ana_id = ana.split_whitespace().next().unwrap().to_string();
    assert!(ana.contains("Ana Ruiz | es | alcaldesa"), "{ana}");
    let luis = out(&mem(&data, &["add", "Luis Gil", "es", "alcalde", "--since", "2026-06"]));
    assert!(luis.contains(&format!("supersedes {ana_id}")), "{luis}");
    let list = out(&mem(&data, &["list", "--history", "--json"]));
    let rows: Vec<Value> = list.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert_eq!(rows.iter().filter(|r| r["current"] == true).count(), 1);
    let luis_id = rows.iter().find(|r| r["subject"] == "Luis Gil").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let edited = out(&mem(&data, &["edit", &luis_id, "Luis Gil Ortega", "es", "alcalde"]));
    assert!(edited.contains("Luis Gil Ortega | es | alcalde"), "{edited}");
    let gone = out(&mem(&data, &["forget", "--entity", "Luis Gil Ortega"]));
    assert!(
        gone.contains("forgot 1 facts") && gone.contains("1 facts they had superseded"),
        "{gone}"
    );
    assert!(
        out(&mem(&data, &["list"])).contains("Ana Ruiz | es | alcaldesa"),
        "Ana is current again"
    );
    out(&mem(&data, &["forget", &ana_id]));
    assert_eq!(out(&mem(&data, &["list", "--history"])), "");
    // Bad input: one line naming what to do.
    common::check_user_error(&mem(&data, &["add", "", "es", "vecina"]), "`subject` is empty");
    common::check_user_error(&mem(&data, &["forget", "mem-nope"]), "mem-nope");
    let o = common::forja(
        &["memory", "list", "--tenant", "ghost", "--data-dir", data.to_str().unwrap()],
        None,
    );
    common::check_user_error(&o, "no tenant `ghost`");
}
