//! The artifact store on a real S3 API: a node started with `--artifacts
//! s3://bucket/prefix` against moto's S3 server (PyPI `moto[s3]`, on
//! loopback) keeps uploads, datasets and the adapters a training job
//! writes as sha256-addressed objects in the bucket, serves them back, and
//! refuses an object changed behind its back.

use crate::common;

use common::server::{get, get_bytes, serve, upload, wait_for};
use common::tiny_gguf;
use serde_json::json;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// moto's server on a free port, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn start() -> Option<Moto> {
        let path = std::env::var("FORJA_MOTO_PATH").unwrap_or_default();
        let ok = Command::new("python3")
            .args(["-c", "import moto.server, flask_cors"])
            .env("PYTHONPATH", &path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            forja_engine::fixtures::skip_unless_required(
                "moto's S3 server is missing (FORJA_MOTO_PATH; make setup-test installs it)",
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .env("PYTHONPATH", &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let m = Moto { child, port };
        wait_for(
            Duration::from_secs(60),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "moto to listen",
        );
        Some(m)
    }

    /// Writes an object with a signed request (boto3, which moto installs).
    fn put_signed(&self, bucket: &str, key: &str, body: &str) {
        let script = format!(
            "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:{}', \
             aws_access_key_id='testing', aws_secret_access_key='testing', region_name='us-east-1')\
             .put_object(Bucket={bucket:?}, Key={key:?}, Body={body:?}.encode())",
            self.port
        );
        let path = std::env::var("FORJA_MOTO_PATH").unwrap_or_default();
        let o =
            Command::new("python3").args(["-c", &script]).env("PYTHONPATH", path).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// One plain HTTP request to the S3 API (moto takes unsigned bucket
    /// creation and listing).
    fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let status = String::from_utf8_lossy(&out[9..12]).parse().unwrap();
        (status, out[split + 4..].to_vec())
    }
}

#[test]
fn a_node_keeps_its_artifacts_in_s3_and_refuses_a_changed_object() {
    let Some(moto) = Moto::start() else { return };
    assert_eq!(moto.http("PUT", "/forja-artifacts", b"").0, 200);
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let key = common::server::key(&data, &["--tenant", "acme"]);
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ];
    let s = serve(
        &data,
        &model,
        &["--artifacts", "s3://forja-artifacts/node-1", "--embedding-model", "none"],
        &env,
    );

    // An upload and a training job: the file, the dataset and the adapter
    // land in the bucket under the prefix, by sha256.
    let jsonl = common::server::chat_jsonl(24);
    let (st, f) = upload(&s, &key, "train.jsonl", &jsonl);
    assert_eq!(st, 200, "{f}");
    let body = json!({"model": "tiny.gguf", "training_file": f["id"],
        "hyperparameters": {"n_epochs": 1, "batch_size": 8}});
    let (st, j, _) = common::server::post(&s, "/v1/fine_tuning/jobs", &key, body);
    assert_eq!(st, 200, "{j}");
    let job = common::server::wait_job(
        &s,
        &key,
        j["id"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(300),
    );
    let adapter = job["result"]["adapter_sha256"]
        .as_str()
        .or_else(|| job["adapter_sha256"].as_str())
        .map(str::to_string);
    let (st, listing) = moto.http("GET", "/forja-artifacts?list-type=2&prefix=node-1/", b"");
    assert_eq!(st, 200);
    let listing = String::from_utf8_lossy(&listing).into_owned();
    let keys: Vec<&str> =
        listing.split("<Key>").skip(1).map(|k| k.split("</Key>").next().unwrap()).collect();
    // The file as the node keeps it (its lines as stored) is an object.
    let content = format!("/v1/files/{}/content", f["id"].as_str().unwrap());
    let (st, back) = get_bytes(&s, &content, &key);
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&back).contains("tokenizer"));
    let file_sha = forja_store::sha256_hex(&back);
    let file_key = format!("node-1/sha256/{}/{file_sha}", &file_sha[..2]);
    assert!(keys.contains(&file_key.as_str()), "{file_key} not in {keys:?}");
    assert!(keys.len() >= 3, "the upload, the job's dataset and its adapter files: {keys:?}");
    if let Some(a) = adapter {
        assert!(keys.iter().any(|k| k.ends_with(&a)), "{a} not in {keys:?}");
    }

    // Changed behind the node's back: the bytes no longer hash to their
    // address, and the node says so instead of serving them.
    moto.put_signed("forja-artifacts", &file_key, "{\"evil\": 1}\n");
    let (st, e) = get(&s, &content, &key);
    assert_ne!(st, 200, "{e}");
    assert!(!e.to_string().contains("evil"), "{e}");
}

/// What the fault-injecting proxy does with `UploadPart` requests for part 2.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Everything passes.
    None,
    /// The next part-2 request gets a 500 (a transient server error).
    Once500,
    /// Every part-2 request gets a 403 (not retried: the upload fails).
    Always403,
}

/// An HTTP proxy in front of moto that injects [`Fault`]s and logs every
/// request line it sees.
struct FaultProxy {
    port: u16,
    fault: std::sync::Arc<std::sync::Mutex<Fault>>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FaultProxy {
    fn start(upstream: u16) -> FaultProxy {
        use std::io::BufRead;
        use std::sync::{Arc, Mutex};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let fault = Arc::new(Mutex::new(Fault::None));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (f, lg) = (fault.clone(), log.clone());
        std::thread::spawn(move || {
            for c in l.incoming().map_while(Result::ok) {
                let (f, lg) = (f.clone(), lg.clone());
                std::thread::spawn(move || {
                    let mut r = std::io::BufReader::new(c.try_clone().unwrap());
                    let mut c = c;
                    loop {
                        let mut head = Vec::new();
                        let mut len = 0usize;
                        loop {
                            let mut line = String::new();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let lower = line.to_ascii_lowercase();
                            if let Some(v) = lower.strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap();
                            }
                            if lower.starts_with("connection:") {
                                continue;
                            }
                            let end = line == "\r\n";
                            if end {
                                head.extend_from_slice(b"Connection: close\r\n");
                            }
                            head.extend_from_slice(line.as_bytes());
                            if end {
                                break;
                            }
                        }
                        let mut body = vec![0u8; len];
                        if r.read_exact(&mut body).is_err() {
                            return;
                        }
                        let first =
                            String::from_utf8_lossy(&head).lines().next().unwrap().to_string();
                        lg.lock().unwrap().push(first.clone());
                        let part2 = first.starts_with("PUT ") && first.contains("partNumber=2");
                        let inject = {
                            let mut fault = f.lock().unwrap();
                            match *fault {
                                Fault::Once500 if part2 => {
                                    *fault = Fault::None;
                                    Some(500)
                                }
                                Fault::Always403 if part2 => Some(403),
                                _ => None,
                            }
                        };
                        if let Some(status) = inject {
                            let xml = "<Error><Code>Injected</Code><Message>injected by the test</Message></Error>";
                            let resp = format!(
                                "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                                xml.len()
                            );
                            let _ = c.write_all(resp.as_bytes());
                            return;
                        }
                        let mut up = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                        up.write_all(&head).unwrap();
                        up.write_all(&body).unwrap();
                        let mut resp = Vec::new();
                        up.read_to_end(&mut resp).unwrap();
                        if c.write_all(&resp).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FaultProxy { port, fault, log }
    }

    fn set(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }
}

/// A JSONL training file of about `mb` MiB (distinct lines: nothing is deduplicated).
fn big_jsonl(mb: usize, salt: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    while out.len() < mb << 20 {
        let line = json!({"messages": [
            {"role": "user", "content": format!("{salt} question {i}: {}", "x".repeat(200))},
            {"role": "assistant", "content": format!("answer {i}")},
        ]});
        out.push_str(&line.to_string());
        out.push('\n');
        i += 1;
    }
    out
}

#[test]
fn large_artifacts_are_multipart_uploads_retried_or_aborted_and_workers_read_them_presigned() {
    let Some(moto) = Moto::start() else { return };
    assert_eq!(moto.http("PUT", "/forja-mp", b"").0, 200);
    let proxy = FaultProxy::start(moto.port);
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let key = common::server::key(&data, &["--tenant", "acme"]);
    let kw = common::server::key(&data, &["--worker"]);
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("FORJA_S3_PART_MB", "5"),
    ];
    let s = serve(
        &data,
        &model,
        &["--artifacts", "s3://forja-mp/n", "--embedding-model", "none", "--workers", "0"],
        &env,
    );
    // A part size S3 would refuse is a one-line error at startup.
    let o = common::forja_cmd(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--port",
        "0",
        "--artifacts",
        "s3://forja-mp/n",
    ])
    .env("FORJA_S3_PART_MB", "2")
    .output()
    .unwrap();
    common::check_user_error(
        &o,
        "FORJA_S3_PART_MB=2: expected MiB between 5 (S3's smallest part) and 5120",
    );
    let listing = || {
        let (st, l) = moto.http("GET", "/forja-mp?list-type=2&prefix=n/", b"");
        assert_eq!(st, 200);
        String::from_utf8_lossy(&l).into_owned()
    };
    let etag_of = |listing: &str, sha: &str| -> Option<String> {
        let at = listing.find(&format!("n/sha256/{}/{sha}</Key>", &sha[..2]))?;
        let rest = &listing[at..];
        let tag = &rest[rest.find("<ETag>")? + 6..rest.find("</ETag>")?];
        Some(tag.replace("&#34;", "").replace('"', ""))
    };

    // 11 MiB in 5 MiB parts, the second part's first try failing with a
    // 500: retried, and the object is whole (S3 names a multipart
    // object's ETag after its part count).
    proxy.set(Fault::Once500);
    let (st, f) = upload(&s, &key, "big.jsonl", &big_jsonl(11, "a"));
    assert_eq!(st, 200, "{f}");
    let content = format!("/v1/files/{}/content", f["id"].as_str().unwrap());
    let (st, back) = get_bytes(&s, &content, &key);
    assert_eq!(st, 200);
    let sha = forja_store::sha256_hex(&back);
    let etag = etag_of(&listing(), &sha).unwrap_or_else(|| panic!("{sha} not in {}", listing()));
    assert!(etag.ends_with("-3"), "a 3-part upload: {etag}");
    eprintln!("multipart object {sha}: ETag {etag}");
    let log = proxy.log.lock().unwrap().clone();
    let part2 = log.iter().filter(|l| l.starts_with("PUT ") && l.contains("partNumber=2")).count();
    assert_eq!(part2, 2, "part 2 was sent twice (the 500, then the retry): {log:#?}");

    // Part 2 refused for good: the upload fails, is aborted, and nothing
    // of it is visible (no object, no upload left open in the bucket).
    proxy.set(Fault::Always403);
    let (st, e) = upload(&s, &key, "big2.jsonl", &big_jsonl(11, "b"));
    assert!(st >= 500, "{st} {e}");
    assert!(!e.to_string().contains("injected"), "no store internals in the answer: {e}");
    proxy.set(Fault::None);
    let l = listing();
    assert_eq!(l.matches("<Key>").count(), 1, "only the first file: {l}");
    let (st, open) = moto.http("GET", "/forja-mp?uploads", b"");
    assert_eq!(st, 200);
    let open = String::from_utf8_lossy(&open);
    assert!(!open.contains("<UploadId>"), "the failed upload was aborted: {open}");

    // A remote worker: the lease carries presigned URLs and the worker
    // reads the job's dataset straight from the bucket.
    let (st, small) = upload(&s, &key, "t.jsonl", &common::server::chat_jsonl(8));
    assert_eq!(st, 200, "{small}");
    let body = json!({"model": "tiny.gguf", "training_file": small["id"],
        "hyperparameters": {"n_epochs": 1, "batch_size": 8}});
    let (st, j, _) = common::server::post(&s, "/v1/fine_tuning/jobs", &key, body);
    assert_eq!(st, 200, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    let before = proxy.log.lock().unwrap().len();
    let mut w = common::server::worker_cmd(&s, &kw, &model, "w", &["--embedding-model", "none"])
        .spawn()
        .unwrap();
    let done = common::server::wait_job(&s, &key, &id, "succeeded", Duration::from_secs(300));
    let _ = w.kill();
    let _ = w.wait();
    assert!(done["trained_tokens"].as_u64().unwrap() > 0, "{done}");
    let log = proxy.log.lock().unwrap()[before..].to_vec();
    let direct = log.iter().filter(|l| l.contains("X-Amz-Signature=")).count();
    eprintln!("requests after the job started: {}, presigned GETs: {direct}", log.len());
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /forja-mp/n/sha256/") && l.contains("X-Amz-Signature=")),
        "the worker fetched an artifact with a presigned URL: {log:#?}"
    );
}
