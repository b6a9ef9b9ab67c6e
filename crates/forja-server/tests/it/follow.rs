//! Live job progress over SSE (`/v1/fine_tuning/jobs/{id}/events/stream`)
//! and `/v1/whoami`, through the real router: a job trained by the node's
//! in-process worker is followed to its end, resumed with `Last-Event-ID`,
//! hidden from other tenants, and a tenant's open streams are capped.

use crate::common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::*;
use forja_store::TenantSettings;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::time::Duration;
use tower::ServiceExt;

/// One SSE message: its `event:` name ("message" when none), `id:` and data.
#[derive(Debug)]
struct Message {
    event: String,
    id: Option<String>,
    data: Value,
}

/// Opens a stream; returns its status and, for 200, the body to read.
async fn open(
    router: axum::Router,
    path: &str,
    key: &str,
    last_event_id: Option<&str>,
) -> (StatusCode, Body) {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("authorization", format!("Bearer {key}"));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = router.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    (status, resp.into_body())
}

/// Reads messages until `done` (or the stream ends), within `limit`.
async fn read_all(mut body: Body, limit: Duration) -> Vec<Message> {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let frame =
            tokio::time::timeout_at(deadline, body.frame()).await.expect("stream timed out");
        match frame {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    text.push_str(&String::from_utf8_lossy(d));
                }
                if text.contains("event: done\n") && text.ends_with("\n\n") {
                    break;
                }
            }
            _ => break,
        }
    }
    parse(&text)
}

fn parse(text: &str) -> Vec<Message> {
    text.split("\n\n")
        .filter_map(|block| {
            let (mut event, mut id, mut data) = ("message".to_string(), None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            (!data.is_empty()).then(|| Message {
                event,
                id,
                data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
            })
        })
        .collect()
}

/// A job on `n` fresh examples (queued; trained when the bed has a worker).
fn job(b: &Bed, key: &str, n: usize) -> String {
    for i in 0..n {
        let r = b.post(
            "/v1/feedback",
            key,
            json!({"prompt": format!("pregunta {i}"), "correction": format!("respuesta número {i}")}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let j = b.post("/v1/learning/train", key, json!({}));
    assert_eq!(j.status, 200, "{}", j.body);
    j.body["id"].as_str().unwrap().to_string()
}

#[test]
fn a_training_job_is_followed_live_to_its_end_and_resumed_from_an_event_id() {
    let b = Bed::new(|c| c.workers = 1);
    let key = b.tenant("acme", TenantSettings::default());
    let other = b.tenant("globex", TenantSettings::default());

    let me = b.get("/v1/whoami", &key);
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["tenant"]["name"], "acme");
    assert_eq!(me.body["key"]["role"], "tenant");
    assert!(!me.body.to_string().contains("webhook_secret"), "{}", me.body);
    assert_eq!(b.get("/v1/whoami", "forja-sk-nope").status, 401);

    let id = job(&b, &key, 8);
    let path = format!("/v1/fine_tuning/jobs/{id}/events/stream");
    // Another tenant cannot follow it; a bad cursor is a 400 naming it.
    let router = b.node.router();
    let (st, _) = b.node.block_on(open(router.clone(), &path, &other, None));
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, body) = b.node.block_on(open(router.clone(), &path, &key, Some("ftevent-x")));
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let text = b.node.block_on(body.collect()).unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("Last-Event-ID"));

    let (st, body) = b.node.block_on(open(router.clone(), &path, &key, None));
    assert_eq!(st, StatusCode::OK);
    let msgs = b.node.block_on(read_all(body, Duration::from_secs(300)));
    let events: Vec<&Message> = msgs.iter().filter(|m| m.event == "message").collect();
    let ids: Vec<i64> = events
        .iter()
        .map(|m| m.id.as_deref().unwrap().trim_start_matches("ftevent-").parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first, each once: {ids:?}");
    assert!(
        events.iter().any(|m| m.data["data"]["train_loss"].is_number()),
        "training steps stream live: {msgs:?}"
    );
    let done = msgs.last().unwrap();
    assert_eq!(done.event, "done", "{msgs:?}");
    assert_eq!(done.data["status"], "succeeded", "{:?}", done.data);
    assert!(msgs.iter().any(|m| m.event == "job" && m.data["status"] == "running"), "{msgs:?}");
    // The same events as the paginated list, newest first there.
    let listed = b.get(&format!("/v1/fine_tuning/jobs/{id}/events?limit=100"), &key);
    let mut listed_ids: Vec<String> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().into())
        .collect();
    listed_ids.reverse();
    let streamed: Vec<String> = events.iter().map(|m| m.id.clone().unwrap()).collect();
    assert_eq!(listed_ids, streamed);

    // Resuming after the third event replays only what came after it.
    let (st, body) = b.node.block_on(open(router, &path, &key, Some(&streamed[2])));
    assert_eq!(st, StatusCode::OK);
    let again = b.node.block_on(read_all(body, Duration::from_secs(30)));
    let resumed: Vec<String> =
        again.iter().filter(|m| m.event == "message").map(|m| m.id.clone().unwrap()).collect();
    assert_eq!(resumed, streamed[3..]);
}

#[test]
fn a_tenant_holds_a_bounded_number_of_streams_and_others_are_unaffected() {
    // No worker: the jobs stay queued and their streams stay open.
    let b = Bed::new(|_| {});
    let key = b.tenant("acme", TenantSettings::default());
    let other = b.tenant("globex", TenantSettings::default());
    let (mine, theirs) = (job(&b, &key, 2), job(&b, &other, 2));
    let router = b.node.router();
    let path = |id: &str| format!("/v1/fine_tuning/jobs/{id}/events/stream");
    let mut held = Vec::new();
    for _ in 0..8 {
        let (st, body) = b.node.block_on(open(router.clone(), &path(&mine), &key, None));
        assert_eq!(st, StatusCode::OK);
        held.push(body);
    }
    let (st, body) = b.node.block_on(open(router.clone(), &path(&mine), &key, None));
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let text = b.node.block_on(body.collect()).unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("event streams"), "{text:?}");
    // Another tenant still follows its own job.
    let (st, _theirs) = b.node.block_on(open(router.clone(), &path(&theirs), &other, None));
    assert_eq!(st, StatusCode::OK);
    // Closing one frees a slot (the stream notices within a poll).
    drop(held.pop());
    b.wait(Duration::from_secs(10), "a freed stream slot", || {
        b.node.block_on(open(router.clone(), &path(&mine), &key, None)).0 == StatusCode::OK
    });
    // A job that has ended streams its events and `done` at once.
    let c = b.post(&format!("/v1/fine_tuning/jobs/{mine}/cancel"), &key, json!({}));
    assert_eq!(c.status, 200, "{}", c.body);
    drop(held);
    let (st, body) = b.node.block_on(open(router, &path(&mine), &key, None));
    assert_eq!(st, StatusCode::OK);
    let msgs = b.node.block_on(read_all(body, Duration::from_secs(30)));
    assert_eq!(msgs.last().map(|m| m.event.as_str()), Some("done"), "{msgs:?}");
    assert_eq!(msgs.last().unwrap().data["status"], "cancelled");
}
