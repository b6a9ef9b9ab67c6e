//! Exact and near-duplicate detection over a growing set of kept records,
//! persisted across runs.
//!
//! Exact duplicates: equal xxh3-128 of the normalised content. Near
//! duplicates: LSH candidates (a shared band) whose estimated Jaccard reaches
//! the threshold; the earliest kept record wins. The index of a tenant is a
//! directory of immutable segment files, one per finished run; a run writes
//! its entries to a work segment that is truncated on resume to the length
//! its checkpoint recorded, and moved into the index only when the run ends.
//!
//! Segment layout: the magic `FJDX1\n`, one JSON line of [`MinHashParams`],
//! then entries `u32 id length | id | u128 content hash | num_perm × u32`, all
//! little-endian.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Banding, DataError, MinHashParams, MinHasher, Result, Signature};

const MAGIC: &[u8] = b"FJDX1\n";

/// Dedup settings (`[dedup]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// Drop exact duplicates.
    pub exact: bool,
    /// Drop near duplicates.
    pub near: bool,
    /// Estimated Jaccard at or above which two records are near duplicates.
    pub threshold: f64,
    /// Signature length.
    pub num_perm: usize,
    /// Words per shingle.
    pub ngram: usize,
    /// Seed of the hash functions.
    pub seed: u64,
    /// LSH bands (with `rows`); by default chosen from the threshold as datasketch does.
    pub bands: Option<usize>,
    /// LSH rows per band.
    pub rows: Option<usize>,
    /// Directory of the persistent index (per tenant); none: dedup within the run only.
    pub index: Option<PathBuf>,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            exact: true,
            near: true,
            threshold: 0.8,
            num_perm: 128,
            ngram: 5,
            seed: 1,
            bands: None,
            rows: None,
            index: None,
        }
    }
}

impl DedupConfig {
    /// The MinHash parameters.
    pub fn params(&self) -> MinHashParams {
        MinHashParams { num_perm: self.num_perm, ngram: self.ngram, seed: self.seed }
    }

    /// Checks the numbers and picks the banding.
    pub fn banding(&self) -> Result<Banding> {
        let bad = |m: String| Err(DataError::Config(m));
        if !(0.0..=1.0).contains(&self.threshold) || self.threshold == 0.0 {
            return bad(format!("dedup.threshold = {} must be in (0, 1]", self.threshold));
        }
        if self.num_perm == 0 || self.num_perm > 1024 || self.ngram == 0 {
            return bad("dedup.num_perm must be in 1..=1024 and dedup.ngram at least 1".into());
        }
        match (self.bands, self.rows) {
            (None, None) => Ok(Banding::optimal(self.threshold, self.num_perm)),
            (Some(bands), Some(rows)) if bands * rows <= self.num_perm && bands * rows > 0 => {
                Ok(Banding { bands, rows })
            }
            (Some(b), Some(r)) => bad(format!(
                "dedup.bands × dedup.rows = {} must be in 1..=num_perm ({})",
                b * r,
                self.num_perm
            )),
            _ => bad("set both dedup.bands and dedup.rows, or neither".into()),
        }
    }
}

/// What dedup decided about a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// New content: kept and added to the index.
    Keep,
    /// Same content as a kept record.
    Exact {
        /// The kept record's id.
        of: String,
    },
    /// Near-duplicate of a kept record.
    Near {
        /// The kept record's id.
        of: String,
        /// Estimated Jaccard similarity.
        jaccard: f64,
    },
}

/// The index: kept records' content hashes, signatures and LSH buckets.
pub struct Deduper {
    cfg: DedupConfig,
    hasher: MinHasher,
    banding: Banding,
    ids: Vec<String>,
    sigs: Vec<u32>,
    exact: HashMap<u128, u32>,
    buckets: Vec<HashMap<u64, Vec<u32>>>,
    work: Option<(PathBuf, BufWriter<File>)>,
    /// Entries loaded from earlier runs.
    previous: usize,
}

impl Deduper {
    /// Loads the persistent index (if configured) and opens the work segment
    /// at `work` truncated to `work_len` bytes (0 for a fresh run).
    pub fn open(cfg: &DedupConfig, work: Option<&Path>, work_len: u64) -> Result<Deduper> {
        let banding = cfg.banding()?;
        let mut d = Deduper {
            cfg: cfg.clone(),
            hasher: MinHasher::new(&cfg.params()),
            banding,
            ids: Vec::new(),
            sigs: Vec::new(),
            exact: HashMap::new(),
            buckets: vec![HashMap::new(); banding.bands],
            work: None,
            previous: 0,
        };
        if let Some(dir) = &cfg.index {
            for seg in segments(dir)? {
                d.load(&seg, None)?;
            }
        }
        d.previous = d.ids.len();
        if let Some(path) = work {
            let exists = path.exists();
            if exists && work_len > 0 {
                d.load(path, Some(work_len))?;
            }
            let mut f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(path)
                .map_err(|e| DataError::io(path, e))?;
            f.set_len(work_len).map_err(|e| DataError::io(path, e))?;
            f.seek(std::io::SeekFrom::End(0)).map_err(|e| DataError::io(path, e))?;
            let mut w = BufWriter::new(f);
            if work_len == 0 {
                w.write_all(&segment_header(&cfg.params())).map_err(|e| DataError::io(path, e))?;
            }
            d.work = Some((path.to_path_buf(), w));
        }
        Ok(d)
    }

    /// The banding in use.
    pub fn banding(&self) -> Banding {
        self.banding
    }

    /// The hasher in use.
    pub fn hasher(&self) -> &MinHasher {
        &self.hasher
    }

    /// Records in the index from earlier runs.
    pub fn previous(&self) -> usize {
        self.previous
    }

    /// Decides on a record and, when kept, adds it. `sig` must come from
    /// [`Deduper::hasher`] (or be `None` when near dedup is off).
    pub fn check(&mut self, id: &str, content: u128, sig: Option<&Signature>) -> Result<Verdict> {
        if self.cfg.exact {
            if let Some(&i) = self.exact.get(&content) {
                return Ok(Verdict::Exact { of: self.ids[i as usize].clone() });
            }
        }
        let n = self.cfg.num_perm;
        let keys: Vec<u64> = match sig.filter(|_| self.cfg.near) {
            Some(sig) => self.banding.band_keys(sig).collect(),
            None => Vec::new(),
        };
        if let Some(sig) = sig.filter(|_| self.cfg.near) {
            let mut best: Option<(f64, u32)> = None;
            for (band, key) in keys.iter().enumerate() {
                for &c in self.buckets[band].get(key).into_iter().flatten() {
                    let other = &self.sigs[c as usize * n..(c as usize + 1) * n];
                    let eq = sig.0.iter().zip(other).filter(|(a, b)| a == b).count();
                    let j = eq as f64 / n as f64;
                    if j >= self.cfg.threshold
                        && best.is_none_or(|(bj, bc)| j > bj || (j == bj && c < bc))
                    {
                        best = Some((j, c));
                    }
                }
            }
            if let Some((jaccard, c)) = best {
                return Ok(Verdict::Near { of: self.ids[c as usize].clone(), jaccard });
            }
        }
        let empty = Signature(vec![u32::MAX; n]);
        self.add(id, content, sig.unwrap_or(&empty), &keys);
        if let Some((path, w)) = &mut self.work {
            write_entry(w, id, content, sig.unwrap_or(&empty))
                .map_err(|e| DataError::io(&*path, e))?;
        }
        Ok(Verdict::Keep)
    }

    fn add(&mut self, id: &str, content: u128, sig: &Signature, keys: &[u64]) {
        let i = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.sigs.extend_from_slice(&sig.0);
        self.exact.entry(content).or_insert(i);
        for (band, &key) in keys.iter().enumerate() {
            self.buckets[band].entry(key).or_default().push(i);
        }
    }

    /// Flushes the work segment and returns its length (for the checkpoint).
    pub fn sync(&mut self) -> Result<u64> {
        let Some((path, w)) = &mut self.work else { return Ok(0) };
        w.flush().map_err(|e| DataError::io(&*path, e))?;
        let f = w.get_ref();
        f.sync_data().map_err(|e| DataError::io(&*path, e))?;
        f.metadata().map(|m| m.len()).map_err(|e| DataError::io(&*path, e))
    }

    /// Moves the work segment into the index directory: the run's records are
    /// now part of the tenant's history. Returns the segment's path.
    pub fn commit(mut self) -> Result<Option<PathBuf>> {
        self.sync()?;
        let (Some(dir), Some((work, _))) = (self.cfg.index.clone(), self.work.take()) else {
            return Ok(None);
        };
        std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        let number = |p: &PathBuf| -> usize {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.trim_start_matches("seg-").trim_end_matches(".bin").parse().unwrap_or(0)
        };
        let next = segments(&dir)?.iter().map(number).max().map_or(0, |n| n + 1);
        let dest = dir.join(format!("seg-{next:06}.bin"));
        std::fs::copy(&work, dir.join(".incoming")).map_err(|e| DataError::io(&dest, e))?;
        File::open(dir.join(".incoming"))
            .and_then(|f| f.sync_all())
            .map_err(|e| DataError::io(&dest, e))?;
        std::fs::rename(dir.join(".incoming"), &dest).map_err(|e| DataError::io(&dest, e))?;
        std::fs::remove_file(&work).map_err(|e| DataError::io(&work, e))?;
        Ok(Some(dest))
    }

    fn load(&mut self, path: &Path, limit: Option<u64>) -> Result<()> {
        let mut r = SegmentReader::open(path, &self.cfg.params(), limit)?;
        while let Some((id, content, sig)) = r.next_entry()? {
            let keys: Vec<u64> =
                if self.cfg.near { self.banding.band_keys(&sig).collect() } else { Vec::new() };
            self.add(&id, content, &sig, &keys);
        }
        Ok(())
    }
}

/// Reads a segment's entries one at a time (a whole index is loaded this
/// way, and a sharded curation's merge streams its shards' segments).
pub(crate) struct SegmentReader {
    path: PathBuf,
    r: BufReader<std::io::Take<File>>,
    num_perm: usize,
    pos: u64,
}

impl SegmentReader {
    /// Opens a segment (its first `limit` bytes when given), checking that
    /// its header names `params`.
    pub(crate) fn open(
        path: &Path,
        params: &MinHashParams,
        limit: Option<u64>,
    ) -> Result<SegmentReader> {
        let bad = |message: String| DataError::Index { path: path.into(), message };
        let f = File::open(path).map_err(|e| DataError::io(path, e))?;
        let len = match limit {
            Some(n) => n,
            None => f.metadata().map_err(|e| DataError::io(path, e))?.len(),
        };
        let mut r = BufReader::new(f.take(len));
        let want = segment_header(params);
        let mut got = vec![0u8; want.len()];
        r.read_exact(&mut got).map_err(|_| bad("too short for a header".into()))?;
        if got != want {
            let theirs = String::from_utf8_lossy(&got);
            return Err(bad(format!(
                "was built with other MinHash parameters ({}) than dedup's ({})",
                theirs.trim(),
                String::from_utf8_lossy(&want).trim()
            )));
        }
        let pos = want.len() as u64;
        Ok(SegmentReader { path: path.to_path_buf(), r, num_perm: params.num_perm, pos })
    }

    /// The next entry: id, content hash, signature; `None` at the end.
    pub(crate) fn next_entry(&mut self) -> Result<Option<(String, u128, Signature)>> {
        let path = &self.path;
        let pos = self.pos;
        let bad = |message: String| DataError::Index { path: path.clone(), message };
        let mut buf4 = [0u8; 4];
        match self.r.read_exact(&mut buf4) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(DataError::io(path, e)),
        }
        let id_len = u32::from_le_bytes(buf4) as usize;
        if id_len > 1 << 20 {
            return Err(bad(format!("entry at byte {pos} has an id of {id_len} bytes")));
        }
        let mut rest = vec![0u8; id_len + 16 + 4 * self.num_perm];
        self.r
            .read_exact(&mut rest)
            .map_err(|_| bad(format!("entry at byte {pos} is cut short")))?;
        let id = String::from_utf8(rest[..id_len].to_vec())
            .map_err(|_| bad(format!("entry at byte {pos}: id is not UTF-8")))?;
        let content = u128::from_le_bytes(rest[id_len..id_len + 16].try_into().expect("16 bytes"));
        let sig = Signature(
            rest[id_len + 16..]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
                .collect(),
        );
        self.pos += 4 + rest.len() as u64;
        Ok(Some((id, content, sig)))
    }
}

/// The first bytes of a segment: the magic and the MinHash parameters.
pub(crate) fn segment_header(p: &MinHashParams) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(
        format!("{{\"num_perm\":{},\"ngram\":{},\"seed\":{}}}\n", p.num_perm, p.ngram, p.seed)
            .as_bytes(),
    );
    h
}

pub(crate) fn write_entry(
    w: &mut impl Write,
    id: &str,
    content: u128,
    sig: &Signature,
) -> std::io::Result<()> {
    w.write_all(&(id.len() as u32).to_le_bytes())?;
    w.write_all(id.as_bytes())?;
    w.write_all(&content.to_le_bytes())?;
    for v in &sig.0 {
        w.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

/// The finished segments of an index directory, in order.
fn segments(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg-") && n.ends_with(".bin"))
        })
        .collect();
    segs.sort();
    Ok(segs)
}

/// The content hash used for exact dedup.
pub fn content_hash(text: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(seed: u64, n: usize) -> String {
        (0..n)
            .map(|i| format!("w{}", (i as u64 * 2654435761 + seed * 97) % 1000))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn exact_near_and_persistent() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DedupConfig { index: Some(dir.path().join("idx")), ..Default::default() };
        let work = dir.path().join("work.bin");
        let mut d = Deduper::open(&cfg, Some(&work), 0).unwrap();
        let a = doc(1, 300);
        let mut near = a.clone();
        near.push_str(" one two three");
        let b = doc(2, 300);
        let sig = |d: &Deduper, t: &str| d.hasher().signature(t);
        let (sa, sn, sb) = (sig(&d, &a), sig(&d, &near), sig(&d, &b));
        assert_eq!(d.check("a", content_hash(&a), Some(&sa)).unwrap(), Verdict::Keep);
        assert_eq!(
            d.check("a2", content_hash(&a), Some(&sa)).unwrap(),
            Verdict::Exact { of: "a".into() }
        );
        assert!(
            matches!(d.check("n", content_hash(&near), Some(&sn)).unwrap(), Verdict::Near { of, jaccard } if of == "a" && jaccard > 0.9)
        );
        assert_eq!(d.check("b", content_hash(&b), Some(&sb)).unwrap(), Verdict::Keep);
        let len = d.sync().unwrap();
        d.commit().unwrap();
        assert!(!work.exists());

        // A later run sees both kept records, and resuming truncates its work segment.
        let mut d = Deduper::open(&cfg, Some(&work), 0).unwrap();
        assert_eq!(d.previous(), 2);
        assert_eq!(
            d.check("b-again", content_hash(&b), Some(&sb)).unwrap(),
            Verdict::Exact { of: "b".into() }
        );
        let c = doc(3, 300);
        let sc = sig(&d, &c);
        let before = d.sync().unwrap();
        assert_eq!(d.check("c", content_hash(&c), Some(&sc)).unwrap(), Verdict::Keep);
        d.sync().unwrap();
        drop(d);
        let mut d = Deduper::open(&cfg, Some(&work), before).unwrap();
        assert_eq!(
            d.check("c", content_hash(&c), Some(&sc)).unwrap(),
            Verdict::Keep,
            "c was cut from the work segment"
        );
        assert!(len > 0);

        // Other parameters cannot read the index.
        let other = DedupConfig { num_perm: 64, ..cfg };
        let err = Deduper::open(&other, None, 0).err().unwrap().to_string();
        assert!(err.contains("was built with other MinHash parameters"), "{err}");
    }

    #[test]
    fn config_errors_name_the_field() {
        let bad = |c: DedupConfig| c.banding().unwrap_err().to_string();
        assert!(
            bad(DedupConfig { threshold: 1.5, ..Default::default() }).contains("dedup.threshold")
        );
        assert!(bad(DedupConfig { bands: Some(20), rows: Some(20), ..Default::default() })
            .contains("dedup.bands"));
        assert!(bad(DedupConfig { bands: Some(2), ..Default::default() }).contains("set both"));
    }
}
