//! The knowledge base end to end against a real `forja serve` with
//! SmolLM2-135M-Instruct and all-MiniLM-L6-v2: a document added over HTTP
//! is found by search, and a chat answer that needs its fact gets it right
//! with `rag` (citing the source, in JSON and in the stream) where the base
//! model alone does not; another tenant sees none of it; removal removes;
//! bad requests get field-named 400s. On the CLI: `forja knowledge`
//! add/search/list/remove, and a `forja knowledge add` killed with SIGKILL
//! mid-ingest loses nothing it committed: every source the store lists is
//! found by search after a restart.

use crate::common;

use common::server::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const ARCHIVE: &str = "# Council archive\n\nThe access code for the council archive room is 7391. The room is on the second floor.\n\n# Parking\n\nThe town hall car park closes at 22:00 every day.";
const QUESTION: &str = "What is the access code for the council archive room?";

fn ask(s: &Server, key: &str, rag: Value) -> Value {
    let body = json!({
        "model": "default", "max_tokens": 24, "temperature": 0, "rag": rag,
        "messages": [{"role": "user", "content": QUESTION}],
    });
    let (st, v, _) = post(s, "/v1/chat/completions", key, body);
    assert_eq!(st, 200, "{v}");
    v
}

fn answer(v: &Value) -> &str {
    v["choices"][0]["message"]["content"].as_str().unwrap()
}

#[test]
fn a_chat_answer_needs_the_retrieved_fact_and_cites_it() {
    for m in ["default", "minilm"] {
        if forja_engine::fixtures::installed_model(m).is_none() {
            assert!(std::env::var_os("FORJA_REQUIRE_TESTDATA").is_none(), "{m} is not installed");
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "acme"]);
    let other = key(&data, &["--tenant", "other"]);
    let s = serve(&data, Path::new("default"), &["--workers", "0"], &[]);

    let doc = json!({"name": "archive.md", "text": ARCHIVE, "pii": "keep", "url": "https://example.org/archive"});
    let (st, src, _) = post(&s, "/v1/knowledge/sources", &k, doc);
    assert_eq!(st, 200, "{src}");
    assert_eq!((src["chunks"].as_u64(), src["title"].as_str()), (Some(2), Some("Council archive")));
    let id = src["id"].as_str().unwrap().to_string();
    // A plain-text upload as a multipart file.
    let boundary = "kb7";
    let body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n\r\nThe library opens on Sundays.\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"pii\"\r\n\r\nkeep\r\n--{boundary}--\r\n");
    let ctype = format!("multipart/form-data; boundary={boundary}");
    let (st, v, _) = call(&s, "POST", "/v1/knowledge/sources", &k, Some(body.into_bytes()), &ctype);
    assert_eq!((st, v["format"].as_str()), (200, Some("text")), "{v}");

    // Search: the passage with the fact, hybrid by default.
    let (st, v, _) =
        post(&s, "/v1/knowledge/search", &k, json!({"query": "archive room code", "k": 3}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["mode"], "hybrid");
    let top = &v["data"][0];
    assert!(top["text"].as_str().unwrap().contains("7391"), "{v}");
    assert_eq!(top["source_id"], id.as_str());
    let (st, text) = get_bytes(&s, &format!("/v1/knowledge/sources/{id}/content"), &k);
    let (a, b) = (
        top["span"]["start"].as_u64().unwrap() as usize,
        top["span"]["end"].as_u64().unwrap() as usize,
    );
    assert_eq!((st, &text[a..b]), (200, top["text"].as_str().unwrap().as_bytes()));

    // The base model alone does not know the code; with retrieval it does,
    // and says where it came from.
    let plain = ask(&s, &k, json!(false));
    assert!(!answer(&plain).contains("7391"), "{plain}");
    assert!(plain.get("citations").is_none());
    let with = ask(&s, &k, json!({"k": 2}));
    assert!(answer(&with).contains("7391"), "{with}");
    assert_eq!(with["citations"][0]["source_id"], id.as_str(), "{with}");
    assert_eq!(with["citations"][0]["index"], 1);
    assert_eq!(with["citations"][0]["url"], "https://example.org/archive");
    // Streamed: the first chunk carries the citations.
    let body = json!({
        "model": "default", "max_tokens": 8, "temperature": 0, "stream": true, "rag": true,
        "messages": [{"role": "user", "content": QUESTION}],
    });
    let first: Value = serde_json::from_str(&sse(&s, "/v1/chat/completions", &k, body)[0]).unwrap();
    assert_eq!(first["citations"][0]["source_id"], json!(id), "{first}");

    // The tenant's default: retrieval without asking.
    let o = common::forja(
        &["tenants", "set", "acme", "--data-dir", data.to_str().unwrap(), "--rag-k", "2"],
        None,
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    wait_for(
        Duration::from_secs(10),
        || answer(&ask(&s, &k, Value::Null)).contains("7391"),
        "the tenant's default retrieval",
    );

    // Another tenant finds nothing and gets no citations.
    let (_, v, _) = post(&s, "/v1/knowledge/search", &other, json!({"query": "archive room code"}));
    assert_eq!(v["data"], json!([]), "{v}");
    let theirs = ask(&s, &other, json!(true));
    assert_eq!(theirs["citations"], json!([]));
    assert!(!answer(&theirs).contains("7391"), "{theirs}");
    let (st, _) = get(&s, &format!("/v1/knowledge/sources/{id}"), &other);
    assert_eq!(st, 404);

    // Bad requests name the field.
    for (body, param) in [
        (json!({"query": "x", "k": 0}), "k"),
        (json!({"query": "x", "mode": "magic"}), "mode"),
        (json!({"query": "x", "extra": 1}), ""),
    ] {
        let (st, v, _) = post(&s, "/v1/knowledge/search", &k, body);
        assert_eq!(st, 400, "{v}");
        if !param.is_empty() {
            assert_eq!(v["error"]["param"], param, "{v}");
        }
    }
    let bad_rag = json!({"model": "default", "messages": [{"role": "user", "content": "x"}], "rag": {"k": 2, "top": 1}});
    let (st, v, _) = post(&s, "/v1/chat/completions", &k, bad_rag);
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("rag.top")), "{v}");
    let (st, v, _) = post(&s, "/v1/knowledge/sources", &k, json!({"text": "x", "format": "pdf"}));
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("format")), "{v}");
    let (st, v, _) = post(&s, "/v1/knowledge/feeds", &k, json!({"url": "file:///etc/passwd"}));
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("url")), "{v}");
    assert_eq!(get_status(&s, "/v1/knowledge/sources", ""), 401);

    // Removal: the fact is gone from search and from answers.
    let (st, v, _) = call(&s, "DELETE", &format!("/v1/knowledge/sources/{id}"), &k, None, "");
    assert_eq!((st, &v["deleted"]), (200, &json!(true)), "{v}");
    let (_, v, _) = post(&s, "/v1/knowledge/search", &k, json!({"query": "archive room code"}));
    assert!(v["data"].as_array().unwrap().iter().all(|h| h["source_id"] != id.as_str()), "{v}");
}

fn kb(data: &Path, args: &[&str]) -> std::process::Output {
    let mut a = vec!["knowledge"];
    a.extend(args);
    a.extend([
        "--tenant",
        "acme",
        "--embedding-model",
        "none",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    common::forja(&a, None)
}

#[test]
fn the_cli_adds_searches_lists_removes_and_survives_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::server::tenant(&data, "acme", &[]);
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let mut files = Vec::new();
    for i in 0..1000 {
        let p = docs.join(format!("d{i}.md"));
        std::fs::write(
            &p,
            format!("# Nota {i}\n\nEl expediente código{i}x trata de la calle número {i}."),
        )
        .unwrap();
        files.push(p.to_str().unwrap().to_string());
    }
    let o = kb(&data, &["add", &files[0], "--pii", "keep"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let o = kb(&data, &["search", "código0x", "--json"]);
    let hits: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let id = hits[0]["source_id"].as_str().unwrap().to_string();
    let o = kb(&data, &["list"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&id));
    let o = kb(&data, &["remove", &id]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let o = kb(&data, &["search", "código0x", "--json"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "");
    let o = kb(&data, &["add", "nope.pdf"]);
    assert!(!o.status.success());
    assert!(common::stderr(&o).contains("nope.pdf"), "{}", common::stderr(&o));

    // Killed mid-ingest: whatever the store committed is searchable.
    let mut args = vec![
        "knowledge",
        "add",
        "--pii",
        "keep",
        "--tenant",
        "acme",
        "--embedding-model",
        "none",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend(files[1..].iter().map(String::as_str));
    let mut child = common::forja_cmd(&args).stdout(std::process::Stdio::null()).spawn().unwrap();
    wait_for(
        Duration::from_secs(60),
        || {
            let o = kb(&data, &["list", "--json"]);
            String::from_utf8_lossy(&o.stdout).lines().count() >= 20
        },
        "the ingest to commit some sources",
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let o = kb(&data, &["list", "--json"]);
    let listed: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(listed.len() >= 20 && listed.len() < 999, "killed too late: {}", listed.len());
    // The newest sources (the last commits before the kill) and a sample.
    let check = listed.iter().take(8).chain(listed.iter().step_by(25));
    for s in check {
        let n = s["title"].as_str().unwrap().trim_start_matches("Nota ");
        let o = kb(&data, &["search", &format!("código{n}x"), "--json", "-k", "1"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(s["id"].as_str().unwrap()), "{n}: {out} {}", common::stderr(&o));
    }
}
