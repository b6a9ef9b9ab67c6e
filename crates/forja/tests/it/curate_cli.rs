//! End-to-end tests of `forja curate`: a mixed corpus (JSONL chats, CSV,
//! Parquet from `datasets`, a code directory, an RSS feed served over
//! loopback) with planted duplicates, malformed lines, license and quality
//! rejects and PII; a run killed with SIGKILL resumes to byte-identical
//! output; a second batch is deduplicated against the first through the
//! persistent index; three shards (one killed and resumed) merge into the
//! single run's dataset byte for byte; bad inputs fail with one clear line.

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{check_user_error, forja, forja_cmd, stderr};
use serde_json::Value;

/// A deterministic stream of lowercase pseudo-words.
struct Words(u64);

impl Words {
    fn next(&mut self) -> String {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let syll =
            ["ka", "lo", "mi", "su", "te", "ra", "no", "vi", "de", "pa", "ri", "zo", "be", "gu"];
        let mut x = self.0 >> 33;
        let n = 2 + (x % 3) as usize;
        let mut w = String::new();
        for _ in 0..n {
            x /= 14;
            w.push_str(syll[(x % 14) as usize]);
        }
        w
    }
    fn text(&mut self, n: usize) -> String {
        (0..n).map(|_| self.next()).collect::<Vec<_>>().join(" ")
    }
}

fn dni(n: u32) -> String {
    format!("{n:08}{}", "TRWAGMYFPDXBNJZSQVHLCKE".as_bytes()[(n % 23) as usize] as char)
}

fn iban_es(bban: &str) -> String {
    let digits: String = format!("{bban}142800"); // E=14 S=28, check 00
    let m = digits.bytes().fold(0u32, |m, d| (m * 10 + (d - b'0') as u32) % 97);
    format!("ES{:02}{bban}", 98 - m)
}

fn luhn_card(prefix: &str) -> String {
    let body = format!("{prefix}{}", &"12345678901234"[..15 - prefix.len()]);
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = (b - b'0') as u32;
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// What the corpus plants, to compare with the manifest.
#[derive(Default, Debug)]
struct Planted {
    read: u64,
    malformed: u64,
    license: u64,
    quality: u64,
    exact: u64,
    near: u64,
    pii: BTreeMap<&'static str, u64>,
}

/// Writes the mixed corpus and its config into `dir`; returns what was planted.
fn corpus(dir: &Path, tickets: usize, feed_url: &str) -> Planted {
    let mut p = Planted::default();
    let mut w = Words(42);
    let mut lines = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..tickets {
        let mut user = w.text(150);
        match i % 10 {
            1 => {
                user.push_str(&format!(" escribir a cliente{i}@correo.es por favor"));
                *p.pii.entry("EMAIL_ADDRESS").or_default() += 1;
            }
            2 => {
                user.push_str(&format!(" mi dni es {} gracias", dni(10_000_000 + i as u32 * 7919)));
                *p.pii.entry("ES_NIF").or_default() += 1;
            }
            3 => {
                user.push_str(&format!(
                    " cuenta {}",
                    iban_es(&format!("{:020}", 21000418450200051332u128 + i as u128))
                ));
                *p.pii.entry("IBAN_CODE").or_default() += 1;
            }
            4 => {
                user.push_str(&format!(" tarjeta {}", luhn_card("4")));
                *p.pii.entry("CREDIT_CARD").or_default() += 1;
            }
            5 => {
                user.push_str(" llamar al +34 612 345 678 mañana");
                *p.pii.entry("PHONE_NUMBER").or_default() += 1;
            }
            6 => {
                user.push_str(" lo atendió ximena zabaleta ayer");
                *p.pii.entry("PERSON").or_default() += 1;
            }
            _ => {}
        }
        let answer = w.text(150);
        bodies.push((user.clone(), answer.clone()));
        let msg = serde_json::json!({"id": format!("t{i}"), "session": format!("s{}", i / 3),
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]});
        lines.push(msg.to_string());
    }
    p.read += tickets as u64;
    // Exact duplicates (another id, same content), after their originals.
    for i in (0..tickets).step_by(17) {
        let (u, a) = &bodies[i];
        let msg = serde_json::json!({"id": format!("dup{i}"), "messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]});
        lines.push(msg.to_string());
        p.read += 1;
        p.exact += 1;
    }
    // Near duplicates: one word of the answer changed.
    for i in (5..tickets).step_by(23) {
        let (u, a) = &bodies[i];
        let a = a.replacen(' ', " cambiada ", 1);
        let msg = serde_json::json!({"id": format!("near{i}"), "messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]});
        lines.push(msg.to_string());
        p.read += 1;
        p.near += 1;
    }
    let mut bytes = lines.join("\n").into_bytes();
    bytes.extend_from_slice(
        b"\n{not json\n{\"text\": \"bad \xff utf8\"}\n{\"title\": \"no text field\"}\n",
    );
    p.read += 3;
    p.malformed += 3;
    std::fs::write(dir.join("tickets.jsonl"), bytes).unwrap();

    // CSV: GPL rows are outside the license allow-list.
    let mut csv = String::from("id,text,license\n");
    for i in 0..40 {
        let license = if i % 8 == 0 { "GPL-3.0" } else { "MIT" };
        csv.push_str(&format!("c{i},\"{}\",{license}\n", w.text(60)));
        p.read += 1;
        p.license += (i % 8 == 0) as u64;
    }
    std::fs::write(dir.join("docs.csv"), csv).unwrap();

    // Parquet written by `datasets`: row 1 is a 3-char chat (quality), row 3 GPL.
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../forja-data/tests/data/hf.parquet");
    std::fs::copy(fixture, dir.join("hf.parquet")).unwrap();
    p.read += 4;
    p.quality += 1;
    p.license += 1;

    // Code: two good files, one that is all comments, one too short.
    let code = dir.join("code");
    std::fs::create_dir_all(code.join("pkg")).unwrap();
    for i in 0..2 {
        let body: String =
            (0..8).map(|k| format!("def f{k}_{i}(x):\n    return x * {k} + {i}\n")).collect();
        std::fs::write(code.join(format!("pkg/mod{i}.py")), body).unwrap();
    }
    std::fs::write(code.join("comments.py"), "# a\n# b\n# c\n# d\n# e\nx = 1\n").unwrap();
    std::fs::write(code.join("short.py"), "x = 1\n").unwrap();
    p.read += 4;
    p.quality += 2;

    // The feed is fetched over HTTP.
    p.read += 5;

    let config = format!(
        r#"
[[input]]
path = "tickets.jsonl"
group_field = "session"

[[input]]
path = "docs.csv"

[[input]]
path = "hf.parquet"

[[input]]
path = "code"

[[input]]
path = "{feed_url}"
format = "feed"

[output]
dir = "out"
shard_records = 100

[dedup]
index = "index"

[license]
allow = ["MIT", "Apache-2.0", "CC-BY-4.0"]

[pii]
deny_list = ["Ximena Zabaleta"]

[format]
system_prompts = ["Eres un asistente de soporte.", "Responde en español, con precisión."]

[split]
validation = 0.2

[run]
chunk_records = 64
"#
    );
    std::fs::write(dir.join("curate.toml"), config).unwrap();
    p
}

fn rss(n: usize) -> String {
    let mut w = Words(7);
    let items: String = (0..n)
        .map(|i| format!("<item><guid>n{i}</guid><title>noticia {i}</title><description>{}</description></item>", w.text(80)))
        .collect();
    format!(
        r#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><copyright>CC-BY-4.0</copyright>{items}</channel></rss>"#
    )
}

/// Serves `body` to every request on a loopback port, forever.
fn serve(body: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body.as_bytes());
        }
    });
    format!("http://127.0.0.1:{port}/feed.xml")
}

fn manifest(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap()
}

fn run_ok(config: &Path, extra: &[&str]) {
    let mut args = vec!["curate", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = forja(&args, None);
    assert!(o.status.success(), "forja curate failed: {}", stderr(&o));
}

#[test]
fn mixed_corpus_counts_match_what_was_planted() {
    let dir = tempfile::tempdir().unwrap();
    let url = serve(rss(5));
    let planted = corpus(dir.path(), 300, &url);
    run_ok(&dir.path().join("curate.toml"), &[]);
    let out = dir.path().join("out");
    let m = manifest(&out);
    let c = &m["counts"];
    let n = |k: &str| c[k].as_u64().unwrap();
    assert_eq!(n("read"), planted.read, "{c}");
    assert_eq!(n("malformed"), planted.malformed, "{c}");
    assert_eq!(n("license"), planted.license, "{c}");
    assert_eq!(n("quality"), planted.quality, "{c}");
    assert_eq!(n("exact_dups"), planted.exact, "{c}");
    assert_eq!(n("near_dups"), planted.near, "{c}");
    let dropped =
        planted.malformed + planted.license + planted.quality + planted.exact + planted.near;
    assert_eq!(n("kept"), planted.read - dropped, "{c}");
    for (kind, count) in &planted.pii {
        assert_eq!(c["pii"][kind].as_u64(), Some(*count), "{kind}: {c}");
    }
    assert_eq!(m["audit_findings"], 0);

    // Every line is accounted for: quarantine + dropped + data = read.
    let lines = |p: PathBuf| std::fs::read_to_string(p).map_or(0, |t| t.lines().count() as u64);
    assert_eq!(lines(out.join("quarantine.jsonl")), planted.malformed);
    assert_eq!(lines(out.join("dropped.jsonl")), dropped - planted.malformed);
    let quarantine = std::fs::read_to_string(out.join("quarantine.jsonl")).unwrap();
    assert!(
        quarantine.contains("tickets.jsonl:") && quarantine.contains("not JSON"),
        "{quarantine}"
    );
    let data_lines: u64 =
        m["outputs"].as_array().unwrap().iter().map(|f| f["records"].as_u64().unwrap()).sum();
    assert_eq!(data_lines, n("kept"));

    // No planted value survives; clusters name the kept record.
    let mut all = String::new();
    for f in m["outputs"].as_array().unwrap() {
        all.push_str(&std::fs::read_to_string(out.join(f["path"].as_str().unwrap())).unwrap());
    }
    for needle in ["@correo.es", "+34 612 345 678", "zabaleta", &dni(10_000_000 + 2 * 7919)] {
        assert!(!all.to_lowercase().contains(&needle.to_lowercase()), "{needle} leaked");
    }
    let clusters = std::fs::read_to_string(out.join("clusters.jsonl")).unwrap();
    assert!(clusters.contains(r#""kept":"t5""#) && clusters.contains("near5"), "{clusters}");

    // Sessions never straddle splits.
    let mut split_of: BTreeMap<String, String> = BTreeMap::new();
    for f in m["outputs"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        let split = path.trim_start_matches("data/").split('-').next().unwrap().to_string();
        for line in std::fs::read_to_string(out.join(path)).unwrap().lines() {
            let id =
                serde_json::from_str::<Value>(line).unwrap()["id"].as_str().unwrap().to_string();
            if let Some(i) = id.strip_prefix('t').and_then(|x| x.parse::<usize>().ok()) {
                let prev = split_of.insert(format!("s{}", i / 3), split.clone());
                assert!(prev.is_none_or(|p| p == split), "session s{} in two splits", i / 3);
            }
        }
    }

    // A second batch is deduplicated against the first through the index.
    let again = dir.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    std::fs::copy(dir.path().join("docs.csv"), again.join("docs.csv")).unwrap();
    let cfg = "[[input]]\npath = \"docs.csv\"\n[output]\ndir = \"out\"\n[dedup]\nindex = \"../index\"\n[license]\nallow = [\"MIT\"]\n";
    std::fs::write(again.join("curate.toml"), cfg).unwrap();
    run_ok(&again.join("curate.toml"), &[]);
    let m2 = manifest(&again.join("out"));
    assert_eq!(m2["index_previous"], m["counts"]["kept"]);
    assert_eq!(m2["counts"]["exact_dups"].as_u64().unwrap(), 40 - 5, "{}", m2["counts"]);
    assert_eq!(m2["counts"]["kept"], 0);
}

fn outputs_of(out: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for rel in ["quarantine.jsonl", "dropped.jsonl", "clusters.jsonl"] {
        files.insert(rel.to_string(), std::fs::read(out.join(rel)).unwrap());
    }
    for e in std::fs::read_dir(out.join("data")).unwrap() {
        let e = e.unwrap();
        files.insert(e.file_name().to_string_lossy().into(), std::fs::read(e.path()).unwrap());
    }
    let mut m = manifest(out);
    m.as_object_mut().unwrap().remove("timings_s");
    m["config"]["output"]["dir"] = Value::Null;
    files.insert("manifest".into(), m.to_string().into_bytes());
    files
}

#[test]
fn sigkill_then_resume_gives_identical_output() {
    // Both runs use the same paths (records without an id are named by
    // their location); the first run's output and index are moved aside.
    let url = serve(rss(5));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    corpus(d, 1500, &url);
    let cfg = d.join("curate.toml");
    run_ok(&cfg, &[]);
    std::fs::rename(d.join("out"), d.join("uninterrupted")).unwrap();
    std::fs::remove_dir_all(d.join("index")).unwrap();

    let mut child = forja_cmd(&["curate", "--config", cfg.to_str().unwrap()])
        .env("FORJA_CURATE_CHUNK_DELAY_MS", "150")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ck = d.join("out/.forja-curate/checkpoint.json");
    let start = Instant::now();
    while !ck.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before it could be killed");
    let partial: Value = serde_json::from_str(&std::fs::read_to_string(&ck).unwrap()).unwrap();
    assert!(
        partial["counts"]["read"].as_u64().unwrap() < 1500,
        "killed too late: {}",
        partial["counts"]
    );

    run_ok(&cfg, &[]);
    let (x, y) = (outputs_of(&d.join("uninterrupted")), outputs_of(&d.join("out")));
    assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
    for (k, v) in &x {
        assert!(v == &y[k], "{k} differs after resume");
    }
}

#[test]
fn sharded_curation_equals_a_single_machine_run() {
    let url = serve(rss(5));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    corpus(d, 900, &url);
    let cfg = d.join("curate.toml");
    let cfg_s = cfg.to_str().unwrap();
    run_ok(&cfg, &[]);
    std::fs::rename(d.join("out"), d.join("single")).unwrap();
    std::fs::remove_dir_all(d.join("index")).unwrap();

    // Three shards; the second is killed midway, and the merge refuses it
    // until it has resumed and finished.
    run_ok(&cfg, &["--shard", "0/3"]);
    run_ok(&cfg, &["--shard", "2/3"]);
    let mut child = forja_cmd(&["curate", "--config", cfg_s, "--shard", "1/3"])
        .env("FORJA_CURATE_CHUNK_DELAY_MS", "150")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let shard1 = d.join("out/shards/00001-of-00003");
    let ck = shard1.join(".forja-curate/checkpoint.json");
    let start = Instant::now();
    while !ck.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success(), "the shard finished before it could be killed");
    check_user_error(&forja(&["curate", "merge", "--config", cfg_s], None), "has not finished");
    run_ok(&cfg, &["--shard", "1/3"]);
    let shard: Value =
        serde_json::from_str(&std::fs::read_to_string(shard1.join("shard.json")).unwrap()).unwrap();
    assert!(shard["candidates"].as_u64().unwrap() > 0, "{shard}");

    let o = forja(&["curate", "merge", "--config", cfg_s], None);
    assert!(o.status.success(), "forja curate merge failed: {}", stderr(&o));
    let (x, y) = (outputs_of(&d.join("single")), outputs_of(&d.join("out")));
    assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
    for (k, v) in &x {
        assert!(v == &y[k], "{k} differs between the single run and the merge");
    }
    // Every shard did part of the work.
    let items: Vec<u64> = (0..3)
        .map(|r| {
            let p = d.join(format!("out/shards/{r:05}-of-00003/shard.json"));
            let m: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            m["items"].as_u64().unwrap()
        })
        .collect();
    assert!(items.iter().all(|&n| n > 0), "{items:?}");
    assert_eq!(items.iter().sum::<u64>(), manifest(&d.join("single"))["counts"]["read"]);

    // A merged dataset is not overwritten; shards of another configuration,
    // a missing shard and a bad --shard are one clear line each.
    check_user_error(&forja(&["curate", "merge", "--config", cfg_s], None), "--restart");
    let other = d.join("other.toml");
    let text =
        std::fs::read_to_string(&cfg).unwrap().replace("validation = 0.2", "validation = 0.3");
    std::fs::write(&other, text).unwrap();
    let shard_dirs: Vec<String> = (0..3)
        .map(|r| d.join(format!("out/shards/{r:05}-of-00003")).to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["curate", "merge", "--config", other.to_str().unwrap(), "--out"];
    let o2 = d.join("o2");
    args.push(o2.to_str().unwrap());
    args.extend(shard_dirs.iter().map(String::as_str));
    check_user_error(&forja(&args, None), "another configuration");
    let mut args = vec!["curate", "merge", "--config", cfg_s, "--out", o2.to_str().unwrap()];
    args.extend(shard_dirs[..2].iter().map(String::as_str));
    check_user_error(&forja(&args, None), "missing [2/3]");
    let o = forja(&["curate", "--config", cfg_s, "--shard", "3/3"], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--shard 3/3: expected R/W with 0 <= R < W"), "{}", stderr(&o));
}

#[test]
fn bad_inputs_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, text: &str| {
        std::fs::write(d.join(name), text).unwrap();
        d.join(name)
    };
    let run = |cfg: &Path| forja(&["curate", "--config", cfg.to_str().unwrap(), "--restart"], None);

    let cfg = write("missing.toml", "[[input]]\npath = \"nope.jsonl\"\n[output]\ndir = \"o1\"\n");
    check_user_error(&run(&cfg), "nope.jsonl: No such file");

    write("empty.jsonl", "");
    let cfg = write("empty.toml", "[[input]]\npath = \"empty.jsonl\"\n[output]\ndir = \"o2\"\n");
    check_user_error(&run(&cfg), "no valid records in the inputs (0 read");

    write("bad.jsonl", "nope\n{\"x\": 1}\n");
    let cfg = write("bad.toml", "[[input]]\npath = \"bad.jsonl\"\n[output]\ndir = \"o3\"\n");
    check_user_error(&run(&cfg), "no valid records in the inputs (2 read, 2 quarantined");
    let cfg = write("strict.toml", "[[input]]\npath = \"bad.jsonl\"\n[output]\ndir = \"o3\"\n[run]\nfail_on_malformed = true\n");
    check_user_error(&run(&cfg), "bad.jsonl:1: not JSON");

    let cfg = write(
        "feed.toml",
        "[[input]]\npath = \"http://127.0.0.1:9/feed.xml\"\n[output]\ndir = \"o4\"\n",
    );
    check_user_error(&run(&cfg), "feed http://127.0.0.1:9/feed.xml: cannot fetch it");

    std::fs::write(
        d.join("cut.parquet"),
        &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../forja-data/tests/data/hf.parquet"))
            .unwrap()[..1000],
    )
    .unwrap();
    let cfg = write("cut.toml", "[[input]]\npath = \"cut.parquet\"\n[output]\ndir = \"o5\"\n");
    check_user_error(&run(&cfg), "cut.parquet: not a readable Parquet file");

    let cfg = write(
        "typo.toml",
        "[[input]]\npath = \"bad.jsonl\"\n[output]\ndir = \"o6\"\n[dedup]\nthreshhold = 0.8\n",
    );
    check_user_error(&run(&cfg), "unknown field `threshhold`");

    // An earlier dataset is not overwritten without --restart.
    write("ok.jsonl", "{\"text\": \"un texto suficientemente largo\"}\n");
    let cfg = write("ok.toml", "[[input]]\npath = \"ok.jsonl\"\n[output]\ndir = \"o7\"\n");
    assert!(run(&cfg).status.success());
    let o = forja(&["curate", "--config", cfg.to_str().unwrap()], None);
    check_user_error(&o, "already holds curated data; pass --restart");
}
