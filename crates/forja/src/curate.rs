//! `forja curate` (the data pipeline of forja-data with progress bars and a
//! summary; `--shard R/W` and `merge` for a curation over many machines) and the curation benchmarks `forja bench minhash|pii`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use forja_data::pii::{PiiConfig, Scrubber};
use forja_data::{Banding, CurateConfig, MinHashParams, MinHasher, Progress, RunOptions, Stage};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

use crate::args::{BenchMinhashArgs, BenchPiiArgs, CurateArgs, CurateCommand, CurateMergeArgs};

/// One spinner per stage, counting records with their rate.
struct Bars {
    _multi: MultiProgress,
    bars: Vec<(Stage, ProgressBar)>,
}

impl Bars {
    fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("{spinner} {prefix:>8} {pos:>9} {per_sec:>12} {elapsed}")
                .expect("valid template");
        let bars = [
            (Stage::Read, "read"),
            (Stage::Filter, "filtered"),
            (Stage::Dedup, "unique"),
            (Stage::Pii, "scrubbed"),
            (Stage::Write, "written"),
            (Stage::Audit, "audited"),
        ]
        .into_iter()
        .map(|(stage, name)| {
            let bar =
                multi.add(ProgressBar::new_spinner().with_style(style.clone()).with_prefix(name));
            (stage, bar)
        })
        .collect();
        Bars { _multi: multi, bars }
    }

    fn finish(&self) {
        for (_, b) in &self.bars {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bars {
    fn advance(&self, stage: Stage, n: u64) {
        if let Some((_, b)) = self.bars.iter().find(|(s, _)| *s == stage) {
            b.inc(n);
        }
    }
}

pub fn run(args: CurateArgs) -> Result<ExitCode> {
    if let Some(CurateCommand::Merge(m)) = args.command {
        return merge(m);
    }
    let Some(config) = args.config else { bail!("forja curate needs --config <FILE>") };
    let mut cfg = load_config(&config, args.out.as_deref())?;
    let opts = RunOptions { restart: args.restart, chunk_delay: chunk_delay() };
    if let Some(shard) = args.shard {
        if args.out.is_none() {
            cfg.output.dir = cfg.output.dir.join("shards").join(shard.dir_name());
        }
        let bars = Bars::new();
        let result = forja_data::curate_shard(&cfg, shard, &opts, &bars);
        bars.finish();
        let m = result.with_context(|| format!("shard {shard} of {} failed", config.display()))?;
        let c = &m.counts;
        let summary = format!(
            "shard {shard}: read {}  malformed {}  license {}  quality {}  candidates {} ({} repeats)\n\
             merge all {} shards with: forja curate merge --config {}\n",
            c.read,
            c.malformed,
            c.license,
            c.quality,
            m.candidates,
            m.repeats,
            shard.count,
            config.display()
        );
        return print(&summary);
    }
    let bars = Bars::new();
    let result = forja_data::curate(&cfg, &opts, &bars);
    bars.finish();
    let m = result.with_context(|| format!("curation of {} failed", config.display()))?;
    print(&summary(&m, &cfg))
}

/// `forja curate merge`.
fn merge(args: CurateMergeArgs) -> Result<ExitCode> {
    let cfg = load_config(&args.config, args.out.as_deref())?;
    let dirs = if args.shards.is_empty() {
        forja_data::shard_dirs(&cfg.output.dir).with_context(|| {
            "no shards to merge: run `forja curate --shard R/W` first, or name the shard directories"
        })?
    } else {
        args.shards
    };
    let opts = RunOptions { restart: args.restart, chunk_delay: Duration::ZERO };
    let bars = Bars::new();
    let result = forja_data::merge(&cfg, &dirs, &opts, &bars);
    bars.finish();
    let m = result.with_context(|| format!("merge of {} shards failed", dirs.len()))?;
    print(&summary(&m, &cfg))
}

/// Reads a curation config; relative paths in it are relative to the file.
fn load_config(path: &Path, out: Option<&Path>) -> Result<CurateConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut cfg = CurateConfig::from_toml(&text).with_context(|| format!("{}", path.display()))?;
    let base = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    resolve_paths(&mut cfg, &base);
    if let Some(out) = out {
        cfg.output.dir = out.to_path_buf();
    }
    Ok(cfg)
}

/// A test hook: crash tests slow the run down to kill it mid-way.
fn chunk_delay() -> Duration {
    std::env::var("FORJA_CURATE_CHUNK_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or_default()
}

fn summary(m: &forja_data::Manifest, cfg: &CurateConfig) -> String {
    let c = &m.counts;
    let pii: Vec<String> = c.pii.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let splits: Vec<String> = c.splits.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let splits = if splits.is_empty() { "none".to_string() } else { splits.join(", ") };
    format!(
        "read {}  malformed {}  license {}  quality {}  exact dups {}  near dups {}  kept {}\n\
         pii: {}\nsplits: {splits}  (replay {})\naudit: {}\ndataset {}  in {}\n",
        c.read,
        c.malformed,
        c.license,
        c.quality,
        c.exact_dups,
        c.near_dups,
        c.kept,
        if pii.is_empty() { "none found".to_string() } else { pii.join(", ") },
        c.replay,
        m.audit_findings.map_or("skipped".into(), |n| format!("{n} findings")),
        &m.dataset_sha256[..16],
        cfg.output.dir.join("data").display()
    )
}

fn print(text: &str) -> Result<ExitCode> {
    // A closed pipe (`| head`) is not an error worth a message.
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn resolve_paths(cfg: &mut CurateConfig, base: &std::path::Path) {
    let fix = |p: &mut String| {
        if !p.is_empty()
            && !p.starts_with("http://")
            && !p.starts_with("https://")
            && std::path::Path::new(p).is_relative()
        {
            *p = base.join(&*p).to_string_lossy().into_owned();
        }
    };
    for i in &mut cfg.input {
        fix(&mut i.path);
    }
    if let Some(r) = &mut cfg.replay {
        fix(&mut r.input.path);
    }
    if cfg.output.dir.is_relative() {
        cfg.output.dir = base.join(&cfg.output.dir);
    }
    if let Some(idx) = &mut cfg.dedup.index {
        if idx.is_relative() {
            *idx = base.join(&*idx);
        }
    }
}

/// `(id, text)` of each JSONL line.
fn read_docs(path: &std::path::Path) -> Result<Vec<(String, String)>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut docs = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        let Some(text) = v.get("text").and_then(|t| t.as_str()) else {
            bail!("{}:{}: no string field `text`", path.display(), i + 1)
        };
        let id = v
            .get("id")
            .map(|i| i.as_str().map_or(i.to_string(), str::to_string))
            .unwrap_or_else(|| i.to_string());
        docs.push((id, text.to_string()));
    }
    if docs.is_empty() {
        bail!("{}: no documents", path.display());
    }
    Ok(docs)
}

fn pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    let mut b = rayon::ThreadPoolBuilder::new();
    if let Some(t) = threads {
        b = b.num_threads(t);
    }
    b.build().context("cannot start the thread pool")
}

pub fn bench_minhash(args: BenchMinhashArgs) -> Result<ExitCode> {
    let docs = read_docs(&args.input)?;
    if args.num_perm == 0 || args.ngram == 0 {
        bail!("--num-perm and --ngram must be at least 1");
    }
    let hasher =
        MinHasher::new(&MinHashParams { num_perm: args.num_perm, ngram: args.ngram, seed: 1 });
    let banding = Banding::optimal(args.threshold, args.num_perm);
    let pool = pool(args.threads)?;
    let t = Instant::now();
    let sigs: Vec<_> =
        pool.install(|| docs.par_iter().map(|(_, text)| hasher.signature(text)).collect());
    let sig_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut buckets: Vec<HashMap<u64, Vec<u32>>> = vec![HashMap::new(); banding.bands];
    for (i, sig) in sigs.iter().enumerate() {
        for (b, key) in banding.band_keys(sig).enumerate() {
            buckets[b].entry(key).or_default().push(i as u32);
        }
    }
    let mut pairs = std::collections::BTreeSet::new();
    for bucket in buckets.iter().flat_map(|b| b.values()) {
        for (x, &i) in bucket.iter().enumerate() {
            for &j in &bucket[x + 1..] {
                pairs.insert((i.min(j), i.max(j)));
            }
        }
    }
    let lsh_s = t.elapsed().as_secs_f64();
    if let Some(path) = &args.pairs {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        );
        for (i, j) in &pairs {
            writeln!(w, "{i}\t{j}")?;
        }
        w.flush()?;
    }
    let out = serde_json::json!({
        "docs": docs.len(), "sig_seconds": sig_s, "sig_docs_per_s": docs.len() as f64 / sig_s,
        "lsh_seconds": lsh_s, "bands": banding.bands, "rows": banding.rows, "pairs": pairs.len(),
    });
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

pub fn bench_pii(args: BenchPiiArgs) -> Result<ExitCode> {
    let docs = read_docs(&args.input)?;
    let scrubber = Scrubber::new(&PiiConfig::default())?;
    let pool = pool(args.threads)?;
    let t = Instant::now();
    let found: Vec<_> =
        pool.install(|| docs.par_iter().map(|(_, text)| scrubber.analyze(text)).collect());
    let secs = t.elapsed().as_secs_f64();
    if let Some(path) = &args.out {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        );
        for ((id, text), findings) in docs.iter().zip(&found) {
            // Python character offsets, as the scorer and Presidio use.
            let chars = |byte: usize| text[..byte].chars().count();
            let ents: Vec<_> = findings
                .iter()
                .map(|f| serde_json::json!({"type": f.kind.as_str(), "start": chars(f.start), "end": chars(f.end), "score": f.score}))
                .collect();
            writeln!(w, "{}", serde_json::json!({"id": id, "entities": ents}))?;
        }
        w.flush()?;
    }
    println!(
        "{}",
        serde_json::json!({"docs": docs.len(), "seconds": secs, "docs_per_s": docs.len() as f64 / secs})
    );
    Ok(ExitCode::SUCCESS)
}
