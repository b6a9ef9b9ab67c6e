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
