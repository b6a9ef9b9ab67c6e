//! The corrections loop on the real default model over HTTP: a transcript
//! becomes a DOCX draft (`POST /v1/documents`), a secretary fixes a name's
//! spelling in it, the upload (`POST /v1/corrections`) puts the fix in the
//! tenant's dictionary, and the tenant's very next draft writes the fixed
//! name, while another tenant's draft of the same transcript does not.

use crate::common;

use common::server::*;
use forja_docs::docx::{read_docx, write_docx, DraftMeta, ReadLimits};
use forja_docs::BlockKind;
use serde_json::{json, Value};
use std::path::Path;

fn transcript() -> Value {
    json!([
        {"text": "buenas tardes se abre la sesión ordinaria del pleno del ayuntamiento de villanueva", "start": 0.0, "end": 5.0, "speaker": "alcaldesa"},
        {"text": "tiene la palabra el concejal jhon yonson del grupo vecinal", "start": 5.0, "end": 8.0, "speaker": "alcaldesa"},
        {"text": "gracias nosotros proponemos arreglar el alumbrado de la calle mayor de villanueva", "start": 8.0, "end": 13.0, "speaker": "jhon"},
    ])
}

fn draft(s: &Server, key: &str) -> Value {
    let body = json!({"transcript": transcript(), "title": "Acta del Pleno", "session": "pleno-2026-12-04", "max_tokens": 48});
    let (st, v, _) = post(s, "/v1/documents", key, body);
    assert_eq!(st, 200, "{v}");
    v
}

fn texts(v: &Value) -> Vec<String> {
    v["paragraphs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect()
}

/// A multipart body with the corrected file.
fn correction(s: &Server, key: &str, file: &[u8]) -> (u16, Value) {
    let b = "forjab0undary";
    let mut body = format!("--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"acta-final.docx\"\r\n\r\n").into_bytes();
    body.extend(file);
    body.extend(format!("\r\n--{b}--\r\n").as_bytes());
    let (st, v, _) = call(
        s,
        "POST",
        "/v1/corrections",
        key,
        Some(body),
        &format!("multipart/form-data; boundary={b}"),
    );
    (st, v)
}

#[test]
fn a_name_fixed_in_the_docx_is_fixed_in_the_next_draft_of_that_tenant_only() {
    if forja_engine::fixtures::installed_model("default").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let acme = key(&data, &["--tenant", "acme"]);
    let beta = key(&data, &["--tenant", "beta"]);
    let s =
        serve(&data, Path::new("default"), &["--workers", "0", "--embedding-model", "none"], &[]);

    let first = draft(&s, &acme);
    assert_eq!(first["kind"], "generated");
    assert_eq!(first["version"], 1);
    let before = texts(&first);
    assert_eq!(before.len(), 2, "two speakers, two paragraphs: {before:?}");

    // The DOCX carries the paragraphs with their chunk ids.
    let (st, bytes) = get_bytes(&s, first["content_url"].as_str().unwrap(), &acme);
    assert_eq!(st, 200);
    let doc = read_docx(&bytes, &ReadLimits::default()).unwrap();
    assert_eq!(doc.document_id.as_deref(), first["id"].as_str());
    assert_eq!(doc.blocks[0].kind, BlockKind::Heading { level: 1 });
    let body: Vec<_> = doc.blocks.iter().filter(|b| !b.chunk_ids.is_empty()).collect();
    assert_eq!(
        body.iter().map(|b| b.chunk_ids[0].as_str()).collect::<Vec<_>>(),
        ["c0001", "c0002"]
    );

    // The secretary fixes the spelling of the name the model copied from
    // the ASR ("jhon yonson" -> "John Johnson"), or else respells one
    // capitalised word it wrote.
    let (word, fixed) = if before.iter().any(|p| p.contains("jhon yonson")) {
        ("jhon yonson".to_string(), "John Johnson".to_string())
    } else {
        let word = before
            .iter()
            .flat_map(|p| p.split(|c: char| !c.is_alphabetic()))
            .find(|w| {
                w.chars().count() >= 5
                    && w.chars().next().unwrap().is_uppercase()
                    && w.chars().skip(1).all(char::is_lowercase)
            })
            .unwrap_or_else(|| panic!("no name to fix in {before:?}"))
            .to_string();
        let mut chars: Vec<char> = word.chars().collect();
        let k = chars.len() - 2;
        chars[k] = if chars[k] == 'z' { 'x' } else { 'z' };
        (word, chars.into_iter().collect())
    };
    let mut blocks = doc.blocks.clone();
    let at = blocks.iter().position(|b| b.text.contains(&word)).unwrap();
    blocks[at].text = blocks[at].text.replace(&word, &fixed);
    let final_docx = write_docx(
        &blocks,
        &DraftMeta { title: Some("Acta del Pleno"), document_id: first["id"].as_str() },
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let (st, up) = correction(&s, &acme, &final_docx);
    eprintln!("correction upload answered in {:.0} ms", t0.elapsed().as_secs_f64() * 1e3);
    assert_eq!(st, 200, "{up}");
    assert_eq!(up["dictionary_updated"], 1, "{up}");
    // The approved minutes join the tenant's knowledge base (scrubbed: the
    // name itself may be masked, so search by a plain word of its text),
    // found by this tenant only.
    let src = up["knowledge_source"].as_str().unwrap_or_else(|| panic!("{up}"));
    let plain = blocks[at]
        .text
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| w.chars().count() >= 6 && w.chars().all(char::is_lowercase))
        .max_by_key(|w| w.len())
        .unwrap_or_else(|| panic!("no plain word in {:?}", blocks[at].text))
        .to_string();
    let q = json!({"query": plain, "mode": "bm25"});
    let (_, hits, _) = post(&s, "/v1/knowledge/search", &acme, q.clone());
    assert_eq!(hits["data"][0]["source_id"], src, "{hits}");
    assert!(hits["data"][0]["text"].as_str().unwrap().contains(&plain), "{hits}");
    let (_, theirs, _) = post(&s, "/v1/knowledge/search", &beta, q);
    assert_eq!(theirs["data"], json!([]), "{theirs}");
    let (_, dict) = get(&s, "/v1/dictionary", &acme);
    assert_eq!(dict["data"][0]["wrong"], word.as_str());
    assert_eq!(dict["data"][0]["right"], fixed.as_str());

    // The very next draft (no waiting) writes the fix, as a new version
    // of the session; the other tenant's draft is the model's own text.
    let t1 = std::time::Instant::now();
    let second = draft(&s, &acme);
    eprintln!("next draft (2 paragraphs) in {:.0} ms", t1.elapsed().as_secs_f64() * 1e3);
    assert_eq!(second["version"], 2);
    let after = texts(&second);
    let want: Vec<String> = before.iter().map(|p| replace_word(p, &word, &fixed)).collect();
    assert_eq!(after, want);
    assert!(after.iter().any(|p| p.contains(&fixed)));
    let theirs = texts(&draft(&s, &beta));
    assert_eq!(theirs, before);

    // Lineage: transcript → V1, V2 (acme's), the final under V1.
    let (_, docs) = get(&s, "/v1/documents", &acme);
    let kinds: Vec<&str> =
        docs["data"].as_array().unwrap().iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "generated").count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "final").count(), 1, "{kinds:?}");
    assert_eq!(up["document"]["parent_id"], first["id"]);

    // The CLI: `forja dictionary` on the data directory (a running node
    // re-reads within 2 s), `forja draft` through the API.
    let d = data.to_str().unwrap();
    let o = common::forja(&["dictionary", "list", "--tenant", "acme", "--data-dir", d], None);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let listed = String::from_utf8(o.stdout).unwrap();
    assert!(
        listed.starts_with(&format!("{word}\t{fixed}\t{}", up["document"]["id"].as_str().unwrap())),
        "{listed}"
    );
    let o = common::forja(
        &["dictionary", "add", "--tenant", "beta", &word, "Zacarías", "--data-dir", d],
        None,
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let mut seen = Vec::new();
    wait_for(
        std::time::Duration::from_secs(30),
        || {
            seen = texts(&draft(&s, &beta));
            seen.iter().any(|p| p.contains("Zacarías"))
        },
        "beta's CLI entry to reach serving",
    );
    let o =
        common::forja(&["dictionary", "remove", "--tenant", "beta", "nada", "--data-dir", d], None);
    common::check_user_error(&o, "beta: no entry `nada`");

    let file = tmp.path().join("transcript.json");
    std::fs::write(&file, json!({"segments": transcript()}).to_string()).unwrap();
    let out = tmp.path().join("acta.docx");
    // `forja draft` with a key in FORJA_API_KEY (or none at all).
    let draft_cli = |transcript: &str, key: Option<&str>, extra: &[&str]| {
        let mut cmd = common::forja_cmd(&["draft", "--transcript", transcript, "--url", &s.url]);
        cmd.args(["--out", out.to_str().unwrap()]).args(extra);
        match key {
            Some(k) => cmd.env("FORJA_API_KEY", k),
            None => cmd.env_remove("FORJA_API_KEY"),
        };
        cmd.output().unwrap()
    };
    let transcript_file = file.to_str().unwrap();
    let o = draft_cli(transcript_file, None, &["--max-tokens", "48"]);
    assert!(!o.status.success(), "no API key given");
    let o = draft_cli(
        transcript_file,
        Some(&acme),
        &["--max-tokens", "48", "--session", "pleno-2026-12-04"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc = read_docx(&std::fs::read(&out).unwrap(), &ReadLimits::default()).unwrap();
    let drafted: Vec<String> = doc.blocks.iter().map(|b| b.text.clone()).collect();
    assert_eq!(drafted, after, "the CLI's draft is the API's");
    let o = draft_cli("/nonexistent.json", Some(&acme), &[]);
    common::check_user_error(&o, "/nonexistent.json: cannot read");
}

/// `text` with whole-word `from` replaced by `to`.
fn replace_word(text: &str, from: &str, to: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + from.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(char::is_alphanumeric) || after.is_some_and(char::is_alphanumeric) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}
