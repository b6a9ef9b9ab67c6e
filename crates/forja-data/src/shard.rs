//! Sharded curation: [`curate_shard`] (`forja curate --shard R/W`) does the
//! independent, expensive work of a curation (normalisation, filters,
//! content hashes, MinHash signatures, PII scrubbing, formatting, the audit)
//! on a deterministic slice of the inputs; [`merge`] (`forja curate merge`)
//! takes the decisions that depend on every record before it (exact and near
//! dedup, replay mixing, data files) in input order, and writes one dataset
//! and manifest identical to a single-machine [`crate::curate`] of the same
//! inputs and configuration.
//!
//! The slice: the inputs, read as one stream, are cut into chunks of
//! `run.chunk_records` items, and chunk `k` belongs to shard `k mod W`. Every
//! shard reads every input (reading is a small share of the work) and
//! processes its own chunks with the pipeline's checkpoints, so a killed
//! shard resumes where it stopped. A shard writes into its own directory:
//! - `events.jsonl`: one line per item of its chunks, in input order, with the
//!   item's ordinal in the stream: quarantined, dropped by a filter, or a
//!   candidate for dedup with its id, split, rendered line, PII counts and
//!   audit findings;
//! - `signatures.bin`: each candidate's content hash and MinHash signature, in
//!   the dedup index's segment format (the merge's LSH runs over these);
//! - `shard.json` once it has finished.
//!
//! Why the merge is exact: dedup keeps a record unless its content or its
//! signature matches a record kept before it, so the merge replays that
//! greedy pass over the signatures in input order. A shard renders every
//! candidate except a repeat of content it already saw in its own chunks:
//! a repeat is dropped whatever the merge decides about the first one (it is
//! an exact duplicate of it, or, if the first was dropped, a near duplicate of
//! what the first matched, with the same Jaccard), so its line is never needed.
//!
//! The merge holds the kept records' signatures in memory, as a single
//! machine's run does: about `4 × num_perm` bytes plus the id per record.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dedup::{segment_header, write_entry, SegmentReader};
use crate::manifest::{Counts, Manifest};
use crate::pii::{Auditor, Scrubber};
use crate::pipeline::{
    self, audit_line, dropped_line, hex, prepare, prepare_dir, quarantine_line, render,
    verdict_drop, write_atomic, Checkpoint, Chunks, Files, Prepared, Timer, WORK,
};
use crate::read::Item;
use crate::{CurateConfig, DataError, Deduper, MinHasher, Progress, Result, RunOptions, Split};
use crate::{Signature, Stage};

/// A shard's events, in input order.
pub(crate) const EVENTS: &str = "events.jsonl";
/// A shard's candidates' content hashes and signatures.
pub(crate) const SIGNATURES: &str = "signatures.bin";
/// A finished shard's report.
pub(crate) const SHARD_MANIFEST: &str = "shard.json";

/// Which slice of a curation a shard run takes: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    /// This shard, from 0.
    pub index: u32,
    /// How many shards the job has.
    pub count: u32,
}

impl ShardSpec {
    /// Parses `R/W` (shard R of W, counting from 0: `0/4` … `3/4`).
    pub fn parse(s: &str) -> std::result::Result<ShardSpec, String> {
        let bad = || {
            format!("--shard {s}: expected R/W with 0 <= R < W <= 65536, e.g. 0/4 for the first of four shards")
        };
        let (r, w) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = r.trim().parse().map_err(|_| bad())?;
        let count: u32 = w.trim().parse().map_err(|_| bad())?;
        if count == 0 || count > 65_536 || index >= count {
            return Err(bad());
        }
        Ok(ShardSpec { index, count })
    }

    /// Whether chunk `k` of the input stream is this shard's.
    pub fn owns(&self, chunk: u64) -> bool {
        chunk % u64::from(self.count) == u64::from(self.index)
    }

    /// The shard's directory name under `<output.dir>/shards/`.
    pub fn dir_name(&self) -> String {
        format!("{:05}-of-{:05}", self.index, self.count)
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What a finished shard reports (`shard.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardManifest {
    /// forja's version.
    pub forja_version: String,
    /// This shard, from 0.
    pub shard: u32,
    /// Shards in the job.
    pub shards: u32,
    /// sha256 of the configuration without `output.dir`: the shards and the
    /// merge of one job agree on it.
    pub job_sha256: String,
    /// Items of this shard's chunks (lines of `events.jsonl`).
    pub items: u64,
    /// Records past the filters (entries of `signatures.bin`).
    pub candidates: u64,
    /// Candidates not rendered: repeats of content seen earlier in this shard.
    pub repeats: u64,
    /// Items read, quarantined and filtered in this shard (dedup is the merge's).
    pub counts: Counts,
    /// Seconds spent per stage.
    pub timings_s: BTreeMap<String, f64>,
}

/// One line of `events.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
struct Event {
    /// The item's ordinal in the input stream.
    o: u64,
    #[serde(flatten)]
    what: What,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum What {
    /// A malformed item: its `quarantine.jsonl` line.
    Quarantine { line: String },
    /// Dropped by the license or quality filter: its `dropped.jsonl` line.
    Dropped { stage: String, line: String },
    /// A record for dedup to decide on; `line` is absent for a repeat.
    Candidate {
        id: String,
        location: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        split: Option<Split>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pii: BTreeMap<String, u64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        audit: Vec<String>,
    },
}

/// sha256 of the configuration with `output.dir` left out.
pub(crate) fn job_sha256(cfg: &CurateConfig) -> Result<String> {
    let mut c = cfg.clone();
    c.output.dir = PathBuf::new();
    let json = serde_json::to_string(&c).map_err(|e| DataError::Config(e.to_string()))?;
    Ok(hex(&Sha256::digest(json.as_bytes())))
}

/// Runs one shard of a curation into `cfg.output.dir` (the shard's own
/// directory). Resumes a killed run of the same shard and configuration.
pub fn curate_shard(
    cfg: &CurateConfig,
    shard: ShardSpec,
    opts: &RunOptions,
    progress: &dyn Progress,
) -> Result<ShardManifest> {
    cfg.validate()?;
    let job = job_sha256(cfg)?;
    let out = cfg.output.dir.clone();
    let work = out.join(WORK);
    let ck_path = work.join(pipeline::CHECKPOINT);
    let mut ck = prepare_dir(&out, &work, &ck_path, &format!("{job} shard {shard}"), opts.restart)?;
    let scrubber = Scrubber::new(&cfg.pii)?;
    let auditor = if cfg.run.audit { Some(Auditor::from_config(&cfg.pii)?) } else { None };
    let hasher = MinHasher::new(&cfg.dedup.params());
    let mut files = Files::new(&out);
    let mut timer = Timer(ck.timings.clone());
    // The content of the candidates so far (a resumed run's are in its
    // signatures) tells a repeat.
    let mut seen = HashSet::new();
    match ck.files.get(SIGNATURES).copied().filter(|&n| n > 0) {
        Some(len) => {
            let path = out.join(SIGNATURES);
            let mut r = SegmentReader::open(&path, &cfg.dedup.params(), Some(len))?;
            while let Some((_, content, _)) = r.next_entry()? {
                seen.insert(content);
            }
        }
        None => files.append_raw(SIGNATURES, &segment_header(&cfg.dedup.params()))?,
    }

    let chunk_records = cfg.run.chunk_records as u64;
    let mut chunks = Chunks::open(cfg, &ck)?;
    loop {
        let t = Instant::now();
        let k = ck.chunks;
        let items = chunks.next(cfg, &mut ck)?;
        timer.add("read", t);
        if items.is_empty() {
            break;
        }
        if !shard.owns(k) {
            continue;
        }
        progress.advance(Stage::Read, items.len() as u64);
        shard_chunk(
            cfg,
            k * chunk_records,
            items,
            &mut ck,
            &scrubber,
            auditor.as_ref(),
            &hasher,
            &mut seen,
            &mut files,
            &mut timer,
            progress,
        )?;
        files.sync(&mut ck.files)?;
        ck.timings = timer.0.clone();
        pipeline::save_checkpoint(&ck_path, &ck)?;
        if !opts.chunk_delay.is_zero() {
            std::thread::sleep(opts.chunk_delay);
        }
    }
    files.sync(&mut ck.files)?;
    drop(files);
    let manifest = ShardManifest {
        forja_version: env!("CARGO_PKG_VERSION").to_string(),
        shard: shard.index,
        shards: shard.count,
        job_sha256: job,
        items: ck.counts.read,
        candidates: ck.candidates,
        repeats: ck.repeats,
        counts: ck.counts,
        timings_s: timer.0,
    };
    let text = serde_json::to_string_pretty(&manifest).expect("shard manifest serialises");
    write_atomic(&out.join(SHARD_MANIFEST), text.as_bytes())?;
    std::fs::remove_dir_all(&work).map_err(|e| DataError::io(&work, e))?;
    Ok(manifest)
}

/// One chunk of a shard: events in input order, signatures of its candidates.
#[allow(clippy::too_many_arguments)]
fn shard_chunk(
    cfg: &CurateConfig,
    first: u64,
    items: Vec<Item>,
    ck: &mut Checkpoint,
    scrubber: &Scrubber,
    auditor: Option<&Auditor>,
    hasher: &MinHasher,
    seen: &mut HashSet<u128>,
    files: &mut Files,
    timer: &mut Timer,
    progress: &dyn Progress,
) -> Result<()> {
    let c = &mut ck.counts;
    c.read += items.len() as u64;
    let mut slots: Vec<Option<What>> = (0..items.len()).map(|_| None).collect();
    let mut positions = Vec::with_capacity(items.len());
    let mut records = Vec::with_capacity(items.len());
    for (pos, item) in items.into_iter().enumerate() {
        match item {
            Item::Record(r) => {
                positions.push(pos);
                records.push(r);
            }
            Item::Rejected(r) => {
                slots[pos] = Some(What::Quarantine { line: quarantine_line(cfg, r)? });
                c.malformed += 1;
            }
        }
    }

    let t = Instant::now();
    let prepared = prepare(cfg, records, hasher);
    timer.add("filter", t);

    let t = Instant::now();
    let dedups = cfg.dedup.exact || cfg.dedup.near;
    let empty = Signature(vec![u32::MAX; cfg.dedup.num_perm]);
    let mut sigs = Vec::new();
    let mut to_render = Vec::new();
    let (mut passed, mut repeats) = (0, 0);
    for (pos, p) in positions.into_iter().zip(prepared) {
        match p {
            Prepared::Drop { rec, stage, reason } => {
                if stage == "license" {
                    c.license += 1;
                } else {
                    c.quality += 1;
                }
                let line =
                    dropped_line(&rec.id, &rec.origin.to_string(), stage, &reason, None, None);
                slots[pos] = Some(What::Dropped { stage: stage.to_string(), line });
            }
            Prepared::Check { rec, content, sig } => {
                passed += 1;
                write_entry(&mut sigs, &rec.id, content, sig.as_ref().unwrap_or(&empty))
                    .expect("writing to memory");
                if dedups && !seen.insert(content) {
                    repeats += 1;
                    slots[pos] = Some(What::Candidate {
                        id: rec.id,
                        location: rec.origin.to_string(),
                        split: None,
                        line: None,
                        pii: BTreeMap::new(),
                        audit: Vec::new(),
                    });
                } else {
                    to_render.push((pos, rec));
                }
            }
        }
    }
    files.append_raw(SIGNATURES, &sigs)?;
    ck.candidates += passed;
    ck.repeats += repeats;
    progress.advance(Stage::Filter, passed);
    timer.add("dedup", t);

    let t = Instant::now();
    let rendered: Vec<(usize, What)> = to_render
        .into_par_iter()
        .map(|(pos, rec)| {
            let (id, location) = (rec.id.clone(), rec.origin.to_string());
            let (split, line, pii) = render(cfg, scrubber, rec);
            let audit = auditor.map(|a| audit_line(a, &line)).unwrap_or_default();
            (
                pos,
                What::Candidate { id, location, split: Some(split), line: Some(line), pii, audit },
            )
        })
        .collect();
    progress.advance(Stage::Pii, rendered.len() as u64);
    for (pos, what) in rendered {
        slots[pos] = Some(what);
    }
    timer.add("pii_format", t);

    let t = Instant::now();
    let n = slots.len() as u64;
    for (i, what) in slots.into_iter().enumerate() {
        let what = what.expect("every item has an event");
        let event = Event { o: first + i as u64, what };
        files.append(EVENTS, &serde_json::to_string(&event).expect("event serialises"))?;
    }
    progress.advance(Stage::Write, n);
    timer.add("write", t);
    Ok(())
}

/// A finished shard's events and signatures, read in step.
struct ShardReader {
    index: u32,
    dir: PathBuf,
    events: std::io::Lines<BufReader<File>>,
    line: u64,
    sigs: SegmentReader,
    peeked: Option<Event>,
}

impl ShardReader {
    fn peek(&mut self) -> Result<Option<&Event>> {
        if self.peeked.is_none() {
            if let Some(line) = self.events.next() {
                let path = self.dir.join(EVENTS);
                let line = line.map_err(|e| DataError::io(&path, e))?;
                self.line += 1;
                let event = serde_json::from_str(&line).map_err(|e| DataError::Shard {
                    dir: self.dir.clone(),
                    message: format!("{EVENTS} line {}: {e}", self.line),
                })?;
                self.peeked = Some(event);
            }
        }
        Ok(self.peeked.as_ref())
    }

    fn next_signature(&mut self) -> Result<Option<(String, u128, Signature)>> {
        self.sigs.next_entry().map_err(|e| segment_error(&self.dir, e))
    }

    fn bad(&self, message: String) -> DataError {
        DataError::Shard { dir: self.dir.clone(), message }
    }
}

/// A shard's damaged signatures are the shard's problem, not the index's.
fn segment_error(dir: &Path, e: DataError) -> DataError {
    match e {
        DataError::Index { message, .. } => DataError::Shard {
            dir: dir.to_path_buf(),
            message: format!("{SIGNATURES} {message}; run the shard again with --restart"),
        },
        other => other,
    }
}

/// Reads the finished shards in `dirs`: all `W` of one job, each once.
pub fn read_shards(cfg: &CurateConfig, dirs: &[PathBuf]) -> Result<Vec<(PathBuf, ShardManifest)>> {
    let job = job_sha256(cfg)?;
    let mut shards: Vec<(PathBuf, ShardManifest)> = Vec::new();
    for dir in dirs {
        let bad = |message: String| DataError::Shard { dir: dir.clone(), message };
        let path = dir.join(SHARD_MANIFEST);
        if !path.exists() {
            let why = if dir.join(WORK).exists() {
                "has not finished: run its `forja curate --shard` command again to resume it"
            } else {
                "holds no shard (no shard.json)"
            };
            return Err(bad(why.into()));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        let m: ShardManifest = serde_json::from_str(&text)
            .map_err(|e| bad(format!("shard.json is unreadable: {e}")))?;
        if m.job_sha256 != job {
            return Err(bad(
                "was curated with another configuration than this merge's (everything but output.dir must be the same)".into(),
            ));
        }
        shards.push((dir.clone(), m));
    }
    let Some(count) = shards.first().map(|s| s.1.shards) else {
        return Err(DataError::Config("no shards to merge".into()));
    };
    shards.sort_by_key(|s| s.1.shard);
    for (dir, m) in &shards {
        if m.shards != count {
            return Err(DataError::Shard {
                dir: dir.clone(),
                message: format!("is shard {}/{} but others are of {count}", m.shard, m.shards),
            });
        }
    }
    let have: Vec<u32> = shards.iter().map(|s| s.1.shard).collect();
    let want: Vec<u32> = (0..count).collect();
    if have != want {
        let missing: Vec<String> =
            want.iter().filter(|i| !have.contains(i)).map(|i| format!("{i}/{count}")).collect();
        let twice: Vec<String> =
            have.windows(2).filter(|w| w[0] == w[1]).map(|w| format!("{}/{count}", w[0])).collect();
        return Err(DataError::Config(format!(
            "the merge needs each of the {count} shards once: missing [{}], given twice [{}]",
            missing.join(", "),
            twice.join(", ")
        )));
    }
    Ok(shards)
}

/// Merges finished shards into one dataset in `cfg.output.dir`: the same
/// files and manifest a single-machine run writes. A merge killed midway
/// starts over when run again (its index segment is committed only at the end).
pub fn merge(
    cfg: &CurateConfig,
    dirs: &[PathBuf],
    opts: &RunOptions,
    progress: &dyn Progress,
) -> Result<Manifest> {
    cfg.validate()?;
    let shards = read_shards(cfg, dirs)?;
    let out = cfg.output.dir.clone();
    let work = out.join(WORK);
    let config_json = serde_json::to_value(cfg).map_err(|e| DataError::Config(e.to_string()))?;
    let config_sha256 = hex(&Sha256::digest(config_json.to_string().as_bytes()));
    let restart = opts.restart || work.exists();
    let mut ck =
        prepare_dir(&out, &work, &work.join(pipeline::CHECKPOINT), &config_sha256, restart)?;
    let scrubber = Scrubber::new(&cfg.pii)?;
    let auditor = if cfg.run.audit { Some(Auditor::from_config(&cfg.pii)?) } else { None };
    let mut dedup = Deduper::open(&cfg.dedup, Some(&work.join(pipeline::INDEX_WORK)), 0)?;
    let replay = pipeline::load_replay(cfg)?;
    let mut files = Files::new(&out);
    let mut timer = Timer(BTreeMap::new());
    let mut audit = AuditTally::default();

    let mut readers = Vec::with_capacity(shards.len());
    for (dir, m) in &shards {
        let path = dir.join(EVENTS);
        let f = File::open(&path).map_err(|e| DataError::io(&path, e))?;
        let sigs = SegmentReader::open(&dir.join(SIGNATURES), &cfg.dedup.params(), None)
            .map_err(|e| segment_error(dir, e))?;
        readers.push(ShardReader {
            index: m.shard,
            dir: dir.clone(),
            events: BufReader::new(f).lines(),
            line: 0,
            sigs,
            peeked: None,
        });
    }

    let t = Instant::now();
    let w = readers.len() as u64;
    debug_assert!(readers.iter().enumerate().all(|(i, r)| r.index as usize == i));
    let chunk_records = cfg.run.chunk_records as u64;
    let near = cfg.dedup.near;
    let mut ordinal = 0u64;
    for k in 0.. {
        let r = &mut readers[(k % w) as usize];
        let end = (k + 1) * chunk_records;
        let start = ordinal;
        while ordinal < end {
            let Some(ev) = r.peek()? else { break };
            if ev.o != ordinal {
                let o = ev.o;
                return Err(r.bad(format!(
                    "{EVENTS} line {} is item {o} of the input where item {ordinal} was expected: the shards were not cut from the same inputs",
                    r.line
                )));
            }
            let ev = r.peeked.take().expect("peeked");
            ordinal += 1;
            progress.advance(Stage::Read, 1);
            let c = &mut ck.counts;
            c.read += 1;
            match ev.what {
                What::Quarantine { line } => {
                    c.malformed += 1;
                    files.append(pipeline::QUARANTINE, &line)?;
                }
                What::Dropped { stage, line } => {
                    if stage == "license" {
                        c.license += 1;
                    } else {
                        c.quality += 1;
                    }
                    files.append(pipeline::DROPPED, &line)?;
                }
                What::Candidate { id, location, split, line, pii, audit: findings } => {
                    progress.advance(Stage::Filter, 1);
                    let Some((sig_id, content, sig)) = r.next_signature()? else {
                        return Err(r.bad(format!("{SIGNATURES} ends before the candidate {id}")));
                    };
                    if sig_id != id {
                        return Err(r.bad(format!(
                            "{SIGNATURES} has {sig_id} where {EVENTS} has the candidate {id}"
                        )));
                    }
                    let verdict = dedup.check(&id, content, near.then_some(&sig))?;
                    match verdict_drop(verdict) {
                        None => {
                            let (Some(split), Some(line)) = (split, line) else {
                                return Err(r.bad(format!(
                                    "the candidate {id} was not rendered (a repeat in its shard) but the merge keeps it: the shard was curated with another dedup configuration"
                                )));
                            };
                            progress.advance(Stage::Dedup, 1);
                            progress.advance(Stage::Pii, 1);
                            let written = pipeline::write_kept(
                                cfg, &mut ck, &mut files, &scrubber, &replay, split, &line, pii,
                            )?;
                            audit.add(&written.kept.0, written.kept.1, &findings);
                            for (rel, n, line) in &written.replay {
                                if let Some(a) = &auditor {
                                    audit.add(rel, *n, &audit_line(a, line));
                                }
                            }
                            progress.advance(Stage::Write, 1 + written.replay.len() as u64);
                        }
                        Some((stage, reason, of, jaccard)) => {
                            if stage == "exact_dup" {
                                ck.counts.exact_dups += 1;
                            } else {
                                ck.counts.near_dups += 1;
                            }
                            let line =
                                dropped_line(&id, &location, stage, &reason, Some(of), jaccard);
                            files.append(pipeline::DROPPED, &line)?;
                        }
                    }
                }
            }
        }
        if ordinal == start || ordinal < end {
            break; // the stream's last chunk
        }
    }
    for r in &mut readers {
        if let Some(ev) = r.peek()? {
            let o = ev.o;
            return Err(r.bad(format!(
                "{EVENTS} line {} is item {o}, past the end of the stream (item {ordinal}): the shards were not cut from the same inputs",
                r.line
            )));
        }
        if r.next_signature()?.is_some() {
            return Err(
                r.bad(format!("{SIGNATURES} has more entries than {EVENTS} has candidates"))
            );
        }
    }
    timer.add("merge", t);
    files.sync(&mut ck.files)?;
    drop(files);
    ck.index_len = dedup.sync()?;
    let audit = auditor
        .map(|_| (audit.total, audit.first.map(|(rel, n, kind)| format!("{rel}:{n}: {kind}"))));
    pipeline::finish(cfg, ck, dedup, timer, config_json, progress, audit)
}

/// The audit's findings over the data files: how many, and the first in
/// file-name then line order (what a single machine's audit reports).
#[derive(Default)]
struct AuditTally {
    total: u64,
    first: Option<(String, u64, String)>,
}

impl AuditTally {
    fn add(&mut self, rel: &str, line: u64, kinds: &[String]) {
        let Some(kind) = kinds.first() else { return };
        self.total += kinds.len() as u64;
        if self.first.as_ref().is_none_or(|(r, n, _)| (rel, line) < (r.as_str(), *n)) {
            self.first = Some((rel.to_string(), line, kind.clone()));
        }
    }
}

/// The shard directories of a job under `<output.dir>/shards/`, in name order.
pub fn shard_dirs(output_dir: &Path) -> Result<Vec<PathBuf>> {
    let root = output_dir.join("shards");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(|e| DataError::io(&root, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}
