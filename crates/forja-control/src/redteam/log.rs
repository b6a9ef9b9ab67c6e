//! The red team's log: append-only JSON lines, each carrying the HMAC of
//! the one before and its own (HMAC-SHA256 under a key kept beside the
//! log, owner-only), so editing, reordering or deleting a line breaks the
//! chain at that line. Truncating the tail is not detectable from the file
//! alone: the last sequence number and MAC are also printed by each run
//! and `verify`, to be kept elsewhere. Personal data never enters the log
//! (detectors replace it by its kind; a leak is kept as a sha256).

use super::{Finding, RedTeamReport};
use crate::webhook::{constant_eq, hmac_hex};
use crate::{ControlError, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const MAC_FIELD: &str = ",\"mac\":\"";

/// One line, without its MAC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// 1, 2, … without gaps.
    pub seq: u64,
    /// Unix seconds.
    pub at: i64,
    /// The run it belongs to.
    pub run: String,
    /// What was attacked.
    pub target: String,
    /// `run` (a summary) or `finding`.
    pub kind: String,
    /// The summary or the finding.
    pub body: serde_json::Value,
    /// The MAC of the line before (zeros for the first).
    pub prev: String,
}

/// The log in a directory (`log.jsonl`, `log.key`).
#[derive(Debug, Clone)]
pub struct Log {
    dir: PathBuf,
}

/// Where the chain stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Head {
    /// Lines in the log.
    pub seq: u64,
    /// The last line's MAC.
    pub mac: String,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ControlError + '_ {
    move |e| ControlError::Internal(format!("red team log {}: {e}", path.display()))
}

impl Log {
    /// The log kept in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Log {
        Log { dir: dir.into() }
    }

    /// The log file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("log.jsonl")
    }

    fn key(&self, create: bool) -> Result<Vec<u8>> {
        let p = self.dir.join("log.key");
        if let Ok(k) = std::fs::read(&p) {
            if k.len() >= 32 {
                return Ok(k);
            }
        }
        if !create {
            return Err(ControlError::Internal(format!(
                "{}: the log's key is missing; the log cannot be verified without it",
                p.display()
            )));
        }
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let k: [u8; 32] = rand::random();
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        o.open(&p).and_then(|mut f| f.write_all(&k)).map_err(io(&p))?;
        Ok(k.to_vec())
    }

    /// Appends a run's summary and its findings, under an exclusive lock
    /// on the file (the scheduler, the gate and the CLI may write at once).
    pub fn record(&self, r: &RedTeamReport, at: i64) -> Result<Head> {
        let key = self.key(true)?;
        let path = self.path();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        fs4::fs_std::FileExt::lock_exclusive(&f).map_err(io(&path))?;
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let mut head = match text.lines().rev().find(|l| !l.trim().is_empty()) {
            None => Head { seq: 0, mac: GENESIS.into() },
            Some(l) => {
                let (e, mac) = split(l).ok_or_else(|| {
                    ControlError::Internal(format!(
                        "{}: the last line is damaged; run `forja redteam verify`",
                        path.display()
                    ))
                })?;
                Head { seq: e.seq, mac }
            }
        };
        let summary = serde_json::json!({
            "probes": r.probes,
            "by_family": r.by_family,
            "findings": r.findings.len(),
            "critical": r.critical(),
            "grown": r.grown,
            "seconds": r.seconds,
        });
        let mut lines = String::new();
        let bodies =
            std::iter::once(("run", summary)).chain(r.findings.iter().map(|f: &Finding| {
                ("finding", serde_json::to_value(f).expect("a finding serialises"))
            }));
        for (kind, body) in bodies {
            let e = Entry {
                seq: head.seq + 1,
                at,
                run: r.run.clone(),
                target: r.target.clone(),
                kind: kind.into(),
                body,
                prev: head.mac.clone(),
            };
            let json = serde_json::to_string(&e).expect("an entry serialises");
            let mac = hmac_hex(&key, json.as_bytes());
            lines.push_str(&format!("{}{MAC_FIELD}{mac}\"}}\n", &json[..json.len() - 1]));
            head = Head { seq: e.seq, mac };
        }
        f.write_all(lines.as_bytes()).and_then(|_| f.sync_data()).map_err(io(&path))?;
        Ok(head)
    }

    /// Checks the whole chain: every line's MAC, sequence and link to the
    /// line before. The error names the first bad line.
    pub fn verify(&self) -> Result<Head> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Head { seq: 0, mac: GENESIS.into() })
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let key = self.key(false)?;
        let mut head = Head { seq: 0, mac: GENESIS.into() };
        for (i, line) in text.lines().enumerate() {
            let bad = |why: &str| ControlError::InvalidFile {
                file: path.display().to_string(),
                line: i + 1,
                reason: format!("{why}; the log was changed after it was written"),
            };
            let (e, mac) = split(line).ok_or_else(|| bad("not a log line"))?;
            let body = &line[..line.rfind(MAC_FIELD).expect("split found it")];
            if !constant_eq(&hmac_hex(&key, format!("{body}}}").as_bytes()), &mac) {
                return Err(bad("its MAC does not match its contents"));
            }
            if e.seq != head.seq + 1 {
                return Err(bad(&format!("sequence {} follows {}", e.seq, head.seq)));
            }
            if e.prev != head.mac {
                return Err(bad("it does not link to the line before"));
            }
            head = Head { seq: e.seq, mac };
        }
        Ok(head)
    }

    /// Every entry (unverified), for reports.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(text.lines().filter_map(|l| split(l).map(|(e, _)| e)).collect())
    }
}

/// A line's entry and MAC.
fn split(line: &str) -> Option<(Entry, String)> {
    let i = line.rfind(MAC_FIELD)?;
    let mac = line[i + MAC_FIELD.len()..].strip_suffix("\"}")?.to_string();
    let e: Entry = serde_json::from_str(&format!("{}}}", &line[..i])).ok()?;
    Some((e, mac))
}
