//! The curation run: inputs are read in chunks; each chunk goes through
//! normalisation, license and quality filters, dedup, PII scrubbing,
//! formatting and the split, and is appended to the outputs. After each chunk
//! the outputs are synced and a checkpoint records how far every file got, so
//! a killed run resumes by truncating to those lengths: the result is byte
//! for byte what an uninterrupted run writes.
//!
//! Parallel work (normalise + hash + filter, then scrub + format) runs on
//! rayon over the chunk; decisions that depend on order (dedup, shard
//! assignment, replay mixing) are taken sequentially in input order.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::{CurateConfig, FileFormat};
use crate::manifest::{Counts, FileEntry, Manifest};
use crate::pii::{DocScrub, Scrubber};
use crate::read::{self, Item};
use crate::shard::{EVENTS, SHARD_MANIFEST, SIGNATURES};
use crate::{
    content_hash, normalize, Body, DataError, Deduper, Record, Result, Signature, Split, Verdict,
};

/// The stages a progress display shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Items read.
    Read,
    /// Records past the license and quality filters.
    Filter,
    /// Records past dedup.
    Dedup,
    /// Records scrubbed and formatted.
    Pii,
    /// Lines written (replay included).
    Write,
    /// Lines audited.
    Audit,
}

/// Receives progress; the CLI draws bars, tests ignore it.
pub trait Progress: Sync {
    /// `n` more items went through `stage`.
    fn advance(&self, stage: Stage, n: u64);
}

/// No progress display.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _: Stage, _: u64) {}
}

/// Options of one invocation (not part of the configuration).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Discard an unfinished run or an earlier dataset in the output directory.
    pub restart: bool,
    /// Pause after each chunk (lets crash tests kill a run mid-way).
    pub chunk_delay: Duration,
}

pub(crate) const WORK: &str = ".forja-curate";
pub(crate) const CHECKPOINT: &str = "checkpoint.json";
pub(crate) const INDEX_WORK: &str = "index-work.bin";
pub(crate) const QUARANTINE: &str = "quarantine.jsonl";
pub(crate) const DROPPED: &str = "dropped.jsonl";
const CLUSTERS: &str = "clusters.jsonl";
const MANIFEST: &str = "manifest.json";

/// How far a run got: written after each chunk, once its files are synced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    config_sha256: String,
    input: usize,
    consumed: u64,
    /// Chunks read (a shard counts the ones it skipped too).
    #[serde(default)]
    pub(crate) chunks: u64,
    pub(crate) files: BTreeMap<String, u64>,
    shards: BTreeMap<String, (u32, u64)>,
    pub(crate) index_len: u64,
    pub(crate) counts: Counts,
    pub(crate) timings: BTreeMap<String, f64>,
    /// A shard's candidates and repeats so far.
    #[serde(default)]
    pub(crate) candidates: u64,
    #[serde(default)]
    pub(crate) repeats: u64,
}

/// Append-only output files, relative to the output directory.
pub(crate) struct Files {
    dir: PathBuf,
    open: BTreeMap<String, BufWriter<File>>,
}

impl Files {
    pub(crate) fn new(dir: &Path) -> Files {
        Files { dir: dir.to_path_buf(), open: BTreeMap::new() }
    }

    /// Appends `line` and a newline.
    pub(crate) fn append(&mut self, rel: &str, line: &str) -> Result<()> {
        let w = self.writer(rel)?;
        w.write_all(line.as_bytes())
            .and_then(|_| w.write_all(b"\n"))
            .map_err(|e| DataError::io(self.dir.join(rel), e))
    }

    /// Appends bytes as they are.
    pub(crate) fn append_raw(&mut self, rel: &str, bytes: &[u8]) -> Result<()> {
        self.writer(rel)?.write_all(bytes).map_err(|e| DataError::io(self.dir.join(rel), e))
    }

    /// The file's writer, opened (for appending) on first use.
    fn writer(&mut self, rel: &str) -> Result<&mut BufWriter<File>> {
        if !self.open.contains_key(rel) {
            let path = self.dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| DataError::io(&path, e))?;
            self.open.insert(rel.to_string(), BufWriter::with_capacity(1 << 16, f));
        }
        Ok(self.open.get_mut(rel).expect("just inserted"))
    }

    /// Flushes and syncs every file; returns their lengths.
    pub(crate) fn sync(&mut self, lens: &mut BTreeMap<String, u64>) -> Result<()> {
        for (rel, w) in &mut self.open {
            let path = self.dir.join(rel);
            w.flush().map_err(|e| DataError::io(&path, e))?;
            w.get_ref().sync_data().map_err(|e| DataError::io(&path, e))?;
            let len = w.get_ref().metadata().map_err(|e| DataError::io(&path, e))?.len();
            lens.insert(rel.clone(), len);
        }
        Ok(())
    }
}

/// A record after the parallel preparation step.
pub(crate) enum Prepared {
    Drop { rec: Record, stage: &'static str, reason: String },
    Check { rec: Record, content: u128, sig: Option<Signature> },
}

/// Runs a curation. Returns the manifest (also written to the output directory).
pub fn curate(cfg: &CurateConfig, opts: &RunOptions, progress: &dyn Progress) -> Result<Manifest> {
    cfg.validate()?;
    let out = cfg.output.dir.clone();
    let work = out.join(WORK);
    let config_json = serde_json::to_value(cfg).map_err(|e| DataError::Config(e.to_string()))?;
    let config_sha256 = hex(&Sha256::digest(config_json.to_string().as_bytes()));
    let ck_path = work.join(CHECKPOINT);

    let mut ck = prepare_dir(&out, &work, &ck_path, &config_sha256, opts.restart)?;
    let scrubber = Scrubber::new(&cfg.pii)?;
    let mut dedup = Deduper::open(&cfg.dedup, Some(&work.join(INDEX_WORK)), ck.index_len)?;
    let replay = load_replay(cfg)?;
    let mut files = Files::new(&out);
    let mut timer = Timer(ck.timings.clone());

    let mut chunks = Chunks::open(cfg, &ck)?;
    loop {
        let t = Instant::now();
        let items = chunks.next(cfg, &mut ck)?;
        timer.add("read", t);
        if items.is_empty() {
            break;
        }
        progress.advance(Stage::Read, items.len() as u64);
        process_chunk(
            cfg, items, &mut ck, &mut dedup, &scrubber, &replay, &mut files, &mut timer, progress,
        )?;
        ck.index_len = dedup.sync()?;
        files.sync(&mut ck.files)?;
        ck.timings = timer.0.clone();
        save_checkpoint(&ck_path, &ck)?;
        if !opts.chunk_delay.is_zero() {
            std::thread::sleep(opts.chunk_delay);
        }
    }
    files.sync(&mut ck.files)?;
    drop(files);
    finish(cfg, ck, dedup, timer, config_json, progress, None)
}

pub(crate) fn save_checkpoint(path: &Path, ck: &Checkpoint) -> Result<()> {
    write_atomic(path, serde_json::to_string(ck).expect("checkpoint serialises").as_bytes())
}

/// The inputs as one stream, cut into chunks of `run.chunk_records` items
/// (all full but the last), from a checkpoint's position on.
pub(crate) struct Chunks {
    reader: Option<read::Items>,
}

impl Chunks {
    pub(crate) fn open(cfg: &CurateConfig, ck: &Checkpoint) -> Result<Chunks> {
        let reader = match cfg.input.get(ck.input) {
            Some(spec) => Some(read::open(spec, ck.consumed)?),
            None => None,
        };
        Ok(Chunks { reader })
    }

    /// The next chunk (empty at the end), moving on to the next input when
    /// one ends; the checkpoint follows.
    pub(crate) fn next(&mut self, cfg: &CurateConfig, ck: &mut Checkpoint) -> Result<Vec<Item>> {
        let mut items = Vec::with_capacity(cfg.run.chunk_records);
        while items.len() < cfg.run.chunk_records {
            let Some(r) = self.reader.as_mut() else { break };
            match r.next() {
                Some(item) => {
                    items.push(item?);
                    ck.consumed += 1;
                }
                None => {
                    ck.input += 1;
                    ck.consumed = 0;
                    self.reader = match cfg.input.get(ck.input) {
                        Some(spec) => Some(read::open(spec, 0)?),
                        None => None,
                    };
                }
            }
        }
        if !items.is_empty() {
            ck.chunks += 1;
        }
        Ok(items)
    }
}

#[allow(clippy::too_many_arguments)]
fn process_chunk(
    cfg: &CurateConfig,
    items: Vec<Item>,
    ck: &mut Checkpoint,
    dedup: &mut Deduper,
    scrubber: &Scrubber,
    replay: &[Record],
    files: &mut Files,
    timer: &mut Timer,
    progress: &dyn Progress,
) -> Result<()> {
    let c = &mut ck.counts;
    c.read += items.len() as u64;
    let mut records = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Item::Record(r) => records.push(r),
            Item::Rejected(r) => {
                files.append(QUARANTINE, &quarantine_line(cfg, r)?)?;
                c.malformed += 1;
            }
        }
    }

    // Normalise, filter, hash: independent per record.
    let t = Instant::now();
    let prepared = prepare(cfg, records, dedup.hasher());
    timer.add("filter", t);

    // Dedup in input order: the first record of a cluster is the one kept.
    let t = Instant::now();
    let mut kept = Vec::with_capacity(prepared.len());
    let mut passed_filters = 0;
    for p in prepared {
        let (rec, stage, reason, of, jaccard) = match p {
            Prepared::Drop { rec, stage, reason } => {
                if stage == "license" {
                    c.license += 1;
                } else {
                    c.quality += 1;
                }
                (rec, stage, reason, None, None)
            }
            Prepared::Check { rec, content, sig } => {
                passed_filters += 1;
                let Some((stage, reason, of, jaccard)) =
                    verdict_drop(dedup.check(&rec.id, content, sig.as_ref())?)
                else {
                    kept.push(rec);
                    continue;
                };
                if stage == "exact_dup" {
                    c.exact_dups += 1;
                } else {
                    c.near_dups += 1;
                }
                (rec, stage, reason, Some(of), jaccard)
            }
        };
        let line = dropped_line(&rec.id, &rec.origin.to_string(), stage, &reason, of, jaccard);
        files.append(DROPPED, &line)?;
    }
    progress.advance(Stage::Filter, passed_filters);
    progress.advance(Stage::Dedup, kept.len() as u64);
    timer.add("dedup", t);

    // Scrub and format: independent per record again.
    let t = Instant::now();
    let rendered: Vec<(Split, String, BTreeMap<String, u64>)> =
        kept.into_par_iter().map(|rec| render(cfg, scrubber, rec)).collect();
    progress.advance(Stage::Pii, rendered.len() as u64);
    timer.add("pii_format", t);

    let t = Instant::now();
    let mut written = 0;
    for (split, line, found) in rendered {
        let w = write_kept(cfg, ck, files, scrubber, replay, split, &line, found)?;
        written += 1 + w.replay.len() as u64;
    }
    progress.advance(Stage::Write, written);
    timer.add("write", t);
    Ok(())
}

/// A malformed item's line in `quarantine.jsonl`, or the run's end when
/// `run.fail_on_malformed` is set.
pub(crate) fn quarantine_line(cfg: &CurateConfig, r: crate::Rejected) -> Result<String> {
    if cfg.run.fail_on_malformed {
        return Err(DataError::Malformed { location: r.origin.to_string(), reason: r.reason });
    }
    Ok(json!({"location": r.origin.to_string(), "reason": r.reason}).to_string())
}

/// A dropped record's line in `dropped.jsonl`.
pub(crate) fn dropped_line(
    id: &str,
    location: &str,
    stage: &str,
    reason: &str,
    of: Option<String>,
    jaccard: Option<f64>,
) -> String {
    json!({"id": id, "location": location, "stage": stage, "reason": reason, "kept": of, "jaccard": jaccard})
        .to_string()
}

/// A dedup verdict as a drop: stage, reason, the kept record, the Jaccard;
/// `None` keeps the record.
pub(crate) fn verdict_drop(v: Verdict) -> Option<(&'static str, String, String, Option<f64>)> {
    match v {
        Verdict::Keep => None,
        Verdict::Exact { of } => {
            Some(("exact_dup", "same content as a kept record".to_string(), of, None))
        }
        Verdict::Near { of, jaccard } => Some((
            "near_dup",
            format!("near-duplicate (estimated Jaccard {jaccard:.3})"),
            of,
            Some(jaccard),
        )),
    }
}

/// Normalises, filters and hashes records (in parallel, order kept).
pub(crate) fn prepare(
    cfg: &CurateConfig,
    records: Vec<Record>,
    hasher: &crate::MinHasher,
) -> Vec<Prepared> {
    let near = cfg.dedup.near;
    records
        .into_par_iter()
        .map(|mut rec| {
            let kind = rec.meta.kind;
            for t in rec.body.texts_mut() {
                *t = normalize(t, kind);
            }
            let joined = rec.body.joined();
            if let Some(reason) = cfg.license.check(rec.meta.license.as_deref()) {
                return Prepared::Drop { rec, stage: "license", reason };
            }
            if let Some(reason) = cfg.quality.check(&joined, kind, rec.meta.lang.as_deref()) {
                return Prepared::Drop { rec, stage: "quality", reason };
            }
            let content = content_hash(&structural_key(&rec.body));
            let sig = near.then(|| hasher.signature(&joined));
            Prepared::Check { rec, content, sig }
        })
        .collect()
}

/// Scrubs a kept record and renders its line: its split, the line, PII found by kind.
pub(crate) fn render(
    cfg: &CurateConfig,
    scrubber: &Scrubber,
    mut rec: Record,
) -> (Split, String, BTreeMap<String, u64>) {
    let found = if cfg.run.scrub_pii { scrub_record(scrubber, &mut rec) } else { BTreeMap::new() };
    let split = cfg.split.assign(rec.meta.group.as_deref().unwrap_or(&rec.id));
    (split, cfg.format.render(&rec), found)
}

/// Where [`write_kept`] put a kept line and the replay lines mixed in after it.
pub(crate) struct Written {
    /// The data file and line number of the kept line.
    pub(crate) kept: (String, u64),
    /// Each replay line with its file and line number.
    pub(crate) replay: Vec<(String, u64, String)>,
}

/// Writes a kept record's line, counting it, and the replay examples that
/// keep the training split's replay share.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_kept(
    cfg: &CurateConfig,
    ck: &mut Checkpoint,
    files: &mut Files,
    scrubber: &Scrubber,
    replay: &[Record],
    split: Split,
    line: &str,
    found: BTreeMap<String, u64>,
) -> Result<Written> {
    let c = &mut ck.counts;
    c.kept += 1;
    if !found.is_empty() {
        c.records_with_pii += 1;
    }
    for (k, n) in found {
        *c.pii.entry(k).or_default() += n;
    }
    let kept = write_line(cfg, ck, files, split, line)?;
    let mut mixed = Vec::new();
    if split == Split::Train && !replay.is_empty() {
        let ratio = cfg.replay.as_ref().map_or(0.0, |r| r.ratio);
        let train = ck.counts.splits.get("train").copied().unwrap_or(0) - ck.counts.replay;
        let target = (train as f64 * ratio / (1.0 - ratio)).floor() as u64;
        while ck.counts.replay < target {
            let k = ck.counts.replay;
            let mut rec = replay[(k % replay.len() as u64) as usize].clone();
            rec.id = format!("replay/{k}/{}", rec.id);
            if cfg.run.scrub_pii {
                scrub_record(scrubber, &mut rec);
            }
            let line = cfg.format.render(&rec);
            let (rel, n) = write_line(cfg, ck, files, Split::Train, &line)?;
            mixed.push((rel, n, line));
            ck.counts.replay += 1;
        }
    }
    Ok(Written { kept, replay: mixed })
}

/// Appends one line to the current shard of `split`, rolling shards;
/// returns the file and the line's number in it.
fn write_line(
    cfg: &CurateConfig,
    ck: &mut Checkpoint,
    files: &mut Files,
    split: Split,
    line: &str,
) -> Result<(String, u64)> {
    let (shard, n) = ck.shards.entry(split.name().to_string()).or_insert((0, 0));
    if *n == cfg.output.shard_records {
        *shard += 1;
        *n = 0;
    }
    *n += 1;
    let rel = format!("data/{}-{:05}.jsonl", split.name(), shard);
    let n = *n;
    *ck.counts.splits.entry(split.name().to_string()).or_default() += 1;
    files.append(&rel, line)?;
    Ok((rel, n))
}

/// Scrubs every text of a record with one pseudonym table; returns counts by kind.
fn scrub_record(scrubber: &Scrubber, rec: &mut Record) -> BTreeMap<String, u64> {
    let mut doc = DocScrub::default();
    let mut found = BTreeMap::new();
    for t in rec.body.texts_mut() {
        let s = scrubber.scrub(t, &mut doc);
        for (k, n) in s.counts {
            *found.entry(k.as_str().to_string()).or_default() += n as u64;
        }
        *t = s.text;
    }
    found
}

/// What exact dedup compares: texts with their roles, so the same words in
/// other turns are other content.
fn structural_key(body: &Body) -> String {
    match body {
        Body::Text(t) => t.clone(),
        Body::Chat(m) => m.iter().map(|m| format!("{}\u{1}{}\u{2}", m.role, m.content)).collect(),
        Body::Pair { prompt, completion } => {
            format!("user\u{1}{prompt}\u{2}assistant\u{1}{completion}\u{2}")
        }
    }
}

pub(crate) fn load_replay(cfg: &CurateConfig) -> Result<Vec<Record>> {
    let Some(r) = cfg.replay.as_ref().filter(|r| r.ratio > 0.0) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for item in read::open(&r.input, 0)? {
        if let Item::Record(mut rec) = item? {
            let kind = rec.meta.kind;
            for t in rec.body.texts_mut() {
                *t = normalize(t, kind);
            }
            out.push(rec);
        }
    }
    if out.is_empty() {
        return Err(DataError::Config(format!(
            "replay.input {} has no valid records",
            r.input.path
        )));
    }
    Ok(out)
}

/// Opens the output directory: resumes from a matching checkpoint, refuses to
/// overwrite an earlier dataset unless restarting.
pub(crate) fn prepare_dir(
    out: &Path,
    work: &Path,
    ck_path: &Path,
    config_sha256: &str,
    restart: bool,
) -> Result<Checkpoint> {
    let resumable = ck_path.exists() && !restart;
    if resumable {
        let text = std::fs::read_to_string(ck_path).map_err(|e| DataError::io(ck_path, e))?;
        let ck: Checkpoint = serde_json::from_str(&text).map_err(|e| DataError::Checkpoint {
            path: ck_path.into(),
            message: format!("unreadable ({e}); run with --restart to start over"),
        })?;
        if ck.config_sha256 != config_sha256 {
            return Err(DataError::Checkpoint {
                path: ck_path.into(),
                message: "an unfinished run with another configuration is there; run with --restart to discard it, or restore its configuration to resume".into(),
            });
        }
        // Cut every file back to the checkpoint; files born after it go.
        for rel in output_files(out)? {
            let path = out.join(&rel);
            match ck.files.get(&rel) {
                Some(&len) => OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(len))
                    .map_err(|e| DataError::io(&path, e))?,
                None => std::fs::remove_file(&path).map_err(|e| DataError::io(&path, e))?,
            }
        }
        return Ok(ck);
    }
    let earlier = out.join(MANIFEST).exists()
        || out.join(SHARD_MANIFEST).exists()
        || out.join("data").exists()
        || work.exists();
    if earlier && !restart {
        return Err(DataError::Config(format!(
            "{} already holds curated data; pass --restart to replace it, or choose another output.dir",
            out.display()
        )));
    }
    // Replacing a dataset also makes the index forget its records.
    if let Ok(text) = std::fs::read_to_string(out.join(MANIFEST)) {
        let old: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(seg) = old.get("index_segment").and_then(|s| s.as_str()) {
            if Path::new(seg).exists() {
                std::fs::remove_file(seg).map_err(|e| DataError::io(seg, e))?;
            }
        }
    }
    for rel in output_files(out)? {
        std::fs::remove_file(out.join(&rel)).map_err(|e| DataError::io(out.join(&rel), e))?;
    }
    for p in [out.join(MANIFEST), out.join(CLUSTERS), out.join(SHARD_MANIFEST)] {
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| DataError::io(&p, e))?;
        }
    }
    if work.exists() {
        std::fs::remove_dir_all(work).map_err(|e| DataError::io(work, e))?;
    }
    std::fs::create_dir_all(work).map_err(|e| DataError::io(work, e))?;
    Ok(Checkpoint { config_sha256: config_sha256.to_string(), ..Default::default() })
}

/// The appendable files of an output directory, relative to it.
fn output_files(out: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for rel in [QUARANTINE, DROPPED, EVENTS, SIGNATURES] {
        if out.join(rel).exists() {
            v.push(rel.to_string());
        }
    }
    let data = out.join("data");
    if data.exists() {
        for e in std::fs::read_dir(&data).map_err(|e| DataError::io(&data, e))? {
            let e = e.map_err(|e| DataError::io(&data, e))?;
            v.push(format!("data/{}", e.file_name().to_string_lossy()));
        }
    }
    v.sort();
    Ok(v)
}

/// Audits the data (unless `audited` brings the findings of a merge's
/// shards), converts it to Parquet if asked, and writes the manifest.
pub(crate) fn finish(
    cfg: &CurateConfig,
    ck: Checkpoint,
    dedup: Deduper,
    mut timer: Timer,
    config: serde_json::Value,
    progress: &dyn Progress,
    audited: Option<(u64, Option<String>)>,
) -> Result<Manifest> {
    let out = &cfg.output.dir;
    let mut data: Vec<String> =
        output_files(out)?.into_iter().filter(|f| f.starts_with("data/")).collect();
    data.sort();

    let t = Instant::now();
    let audit = match audited {
        _ if !cfg.run.audit => None,
        Some(found) => Some(found),
        None => {
            let auditor = crate::pii::Auditor::from_config(&cfg.pii)?;
            Some(audit_files(out, &data, &auditor, progress)?)
        }
    };
    timer.add("audit", t);

    let t = Instant::now();
    if cfg.output.files == FileFormat::Parquet {
        data = crate::parquet_out::convert(out, &data, cfg.format.format)?;
    }
    write_clusters(out)?;
    let outputs = data.iter().map(|rel| file_entry(out, rel, true)).collect::<Result<Vec<_>>>()?;
    let mut h = Sha256::new();
    for f in &outputs {
        h.update(format!("{} {}\n", f.path, f.sha256));
    }
    let inputs = cfg.input.iter().map(|i| input_entry(&i.path)).collect::<Result<Vec<_>>>()?;
    timer.add("finish", t);

    let audit_failed = audit.as_ref().and_then(|a| a.1.clone());
    let mut manifest = Manifest {
        forja_version: env!("CARGO_PKG_VERSION").to_string(),
        config,
        inputs,
        outputs,
        dataset_sha256: hex(&h.finalize()),
        counts: ck.counts.clone(),
        lsh: dedup.banding(),
        index_previous: dedup.previous() as u64,
        index_segment: None,
        audit_findings: audit.as_ref().map(|a| a.0),
        timings_s: timer.0.clone(),
    };
    let work = out.join(WORK);
    let failure = if let Some(first) = audit_failed {
        Some(DataError::AuditFailed { count: audit.map_or(0, |a| a.0 as usize), first })
    } else if ck.counts.kept == 0 && ck.counts.read == ck.counts.malformed {
        Some(DataError::NothingValid {
            read: ck.counts.read,
            quarantined: ck.counts.malformed,
            quarantine: out.join(QUARANTINE).display().to_string(),
        })
    } else {
        None
    };
    if failure.is_none() {
        // The index learns the run's records only from a usable dataset.
        manifest.index_segment = dedup.commit()?.map(|p| p.display().to_string());
    }
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    write_atomic(&out.join(MANIFEST), text.as_bytes())?;
    std::fs::remove_dir_all(&work).map_err(|e| DataError::io(&work, e))?;
    match failure {
        Some(e) => Err(e),
        None => Ok(manifest),
    }
}

/// Scans every string of every data line; returns the number of findings and
/// the first one's location.
fn audit_files(
    out: &Path,
    data: &[String],
    auditor: &crate::pii::Auditor,
    progress: &dyn Progress,
) -> Result<(u64, Option<String>)> {
    let mut total = 0;
    let mut first = None;
    for rel in data {
        let path = out.join(rel);
        let f = File::open(&path).map_err(|e| DataError::io(&path, e))?;
        let lines: Vec<String> = BufReader::new(f)
            .lines()
            .collect::<std::io::Result<_>>()
            .map_err(|e| DataError::io(&path, e))?;
        let findings: Vec<(usize, String)> = lines
            .par_iter()
            .enumerate()
            .flat_map_iter(|(i, line)| audit_line(auditor, line).into_iter().map(move |k| (i, k)))
            .collect();
        progress.advance(Stage::Audit, lines.len() as u64);
        if let (None, Some((i, kind))) = (&first, findings.first()) {
            first = Some(format!("{rel}:{}: {kind}", i + 1));
        }
        total += findings.len() as u64;
    }
    Ok((total, first))
}

/// The kinds of PII the audit finds in every string of a data line, in order.
pub(crate) fn audit_line(auditor: &crate::pii::Auditor, line: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or(serde_json::Value::Null);
    let mut texts = Vec::new();
    strings(&v, &mut texts);
    texts.into_iter().flat_map(|t| auditor.audit(t)).map(|f| f.kind.as_str().to_string()).collect()
}

fn strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Groups `dropped.jsonl`'s duplicates by the record that was kept.
fn write_clusters(out: &Path) -> Result<()> {
    let path = out.join(DROPPED);
    let mut clusters: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    if path.exists() {
        let f = File::open(&path).map_err(|e| DataError::io(&path, e))?;
        for line in BufReader::new(f).lines() {
            let line = line.map_err(|e| DataError::io(&path, e))?;
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(kept) = v.get("kept").and_then(|k| k.as_str()) {
                clusters.entry(kept.to_string()).or_default().push(json!({
                    "id": v["id"], "location": v["location"], "stage": v["stage"], "jaccard": v["jaccard"]
                }));
            }
        }
    }
    let mut text = String::new();
    for (kept, dropped) in clusters {
        text.push_str(&json!({"kept": kept, "dropped": dropped}).to_string());
        text.push('\n');
    }
    write_atomic(&out.join(CLUSTERS), text.as_bytes())
}

fn file_entry(out: &Path, rel: &str, count_records: bool) -> Result<FileEntry> {
    let path = out.join(rel);
    let (sha256, bytes, lines) = hash_file(&path)?;
    let records =
        count_records
            .then(|| {
                if rel.ends_with(".parquet") {
                    crate::parquet_out::rows(&path)
                } else {
                    Some(lines)
                }
            })
            .flatten();
    Ok(FileEntry { path: rel.to_string(), sha256, bytes, records })
}

fn input_entry(path: &str) -> Result<FileEntry> {
    let p = Path::new(path);
    if read::is_url(path) || p.is_dir() {
        // A directory's hash covers the names and hashes of the files the
        // reader reads, in order.
        let mut h = Sha256::new();
        let mut bytes = 0;
        if p.is_dir() {
            let mut files = Vec::new();
            read::walk(p, &mut files)?;
            files.sort();
            for f in files {
                let (sha, b, _) = hash_file(&f)?;
                bytes += b;
                h.update(format!("{} {sha}\n", f.strip_prefix(p).unwrap_or(&f).display()));
            }
        }
        let sha256 =
            if p.is_dir() { hex(&h.finalize()) } else { "not hashed: fetched from a URL".into() };
        return Ok(FileEntry { path: path.to_string(), sha256, bytes, records: None });
    }
    let (sha256, bytes, _) = hash_file(p)?;
    Ok(FileEntry { path: path.to_string(), sha256, bytes, records: None })
}

fn hash_file(path: &Path) -> Result<(String, u64, u64)> {
    let mut f = BufReader::new(File::open(path).map_err(|e| DataError::io(path, e))?);
    let mut h = Sha256::new();
    let (mut bytes, mut lines) = (0u64, 0u64);
    loop {
        let buf = f.fill_buf().map_err(|e| DataError::io(path, e))?;
        if buf.is_empty() {
            break;
        }
        h.update(buf);
        lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let n = buf.len();
        bytes += n as u64;
        f.consume(n);
    }
    Ok((hex(&h.finalize()), bytes, lines))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a file so that it is either the old or the new content after a crash.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

/// Seconds per stage, accumulated across chunks (and resumed runs).
pub(crate) struct Timer(pub(crate) BTreeMap<String, f64>);

impl Timer {
    pub(crate) fn add(&mut self, stage: &str, since: Instant) {
        *self.0.entry(stage.to_string()).or_default() += since.elapsed().as_secs_f64();
    }
}
