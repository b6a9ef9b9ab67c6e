//! Parquet (as written by pyarrow / `datasets`): rows are read one row group
//! at a time, turned into JSON objects and mapped like JSONL lines. A file
//! whose footer cannot be read (truncated, not Parquet) stops the run; a row
//! group that cannot be decoded is rejected as a whole, with its row range.

use std::cell::Cell;
use std::fs::File;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Once};

use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use serde_json::Value;

use super::fields::{origin, Mapper};
use super::{Item, Items};
use crate::{DataError, Loc, Rejected, Result};

pub(super) fn open(path: &str, mapper: Mapper, skip: u64) -> Result<Items> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    rows(path, file, mapper, skip)
}

/// Parquet items from bytes in memory (used by the fuzz targets).
pub fn items_from_bytes(source: &str, bytes: Vec<u8>, mapper: Mapper) -> Result<Items> {
    rows(source, bytes::Bytes::from(bytes), mapper, 0)
}

/// Opens the footer of `input` (a file or bytes) and streams its rows.
fn rows<R: ChunkReader + 'static>(
    source: &str,
    input: R,
    mapper: Mapper,
    skip: u64,
) -> Result<Items> {
    let reader = guarded(|| SerializedFileReader::new(input).map_err(|e| e.to_string()))
        .and_then(|r| r)
        .map_err(|message| DataError::Parquet { path: source.into(), message })?;
    Ok(Box::new(Rows {
        source: source.into(),
        reader: Box::new(reader),
        mapper,
        group: 0,
        row: 0,
        pending: Vec::new().into_iter(),
        broken: None,
        fatal: None,
        to_skip: skip,
    }))
}

/// Most rows an undecodable row group may claim before the file is refused.
const MAX_BROKEN_ROWS: u64 = 1 << 24;

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into an error message. The `parquet` crate
/// panics on some corrupt pages (found by fuzzing); a damaged input is the
/// user's problem to fix, not a crash, so the panic message is not printed
/// either (the hook stays silent on this thread while `f` runs).
fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result.map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "decoder panicked".into());
        format!("corrupt data: {msg}")
    })
}

struct Rows {
    source: Arc<str>,
    reader: Box<dyn FileReader>,
    mapper: Mapper,
    group: usize,
    /// Index of the next row of the file.
    row: u64,
    pending: std::vec::IntoIter<Value>,
    /// Rows of an undecodable group still to reject: (reason, rows left).
    broken: Option<(String, u64)>,
    /// An error that ends the stream (reported once).
    fatal: Option<DataError>,
    to_skip: u64,
}

impl Rows {
    /// Loads the next row group into `pending`. A group that cannot be decoded
    /// yields one rejection per row (lazily), so items and rows stay one to
    /// one: a resumed run skips by item count.
    fn load_group(&mut self) {
        let meta = self.reader.metadata();
        while self.group < meta.num_row_groups() {
            let g = self.group;
            let n = meta.row_group(g).num_rows().max(0) as u64;
            self.group += 1;
            if self.to_skip >= n {
                self.to_skip -= n;
                self.row = self.row.saturating_add(n);
                continue;
            }
            let reader = &self.reader;
            let rows: std::result::Result<Vec<_>, String> = guarded(|| {
                reader.get_row_group(g).map_err(|e| e.to_string()).and_then(|rg| {
                    let iter =
                        RowIter::from_row_group(None, rg.as_ref()).map_err(|e| e.to_string())?;
                    iter.map(|r| r.map(|r| r.to_json_value()).map_err(|e| e.to_string())).collect()
                })
            })
            .and_then(|r| r);
            let skip = std::mem::take(&mut self.to_skip);
            self.row = self.row.saturating_add(skip);
            match rows {
                Ok(rows) => {
                    self.pending =
                        rows.into_iter().skip(skip as usize).collect::<Vec<_>>().into_iter()
                }
                // A footer can claim any row count; past this many rows an
                // undecodable group is not rejected row by row but stops the file.
                Err(e) if n > MAX_BROKEN_ROWS => {
                    let message =
                        format!("row group {g} claims {n} rows and cannot be decoded ({e})");
                    self.fatal = Some(DataError::Parquet { path: (*self.source).into(), message });
                }
                Err(e) => {
                    let first = self.row - skip;
                    let reason = format!(
                        "row group {g} (rows {first}..{}) cannot be decoded ({e})",
                        first + n
                    );
                    self.broken = Some((reason, n - skip));
                }
            }
            return;
        }
    }
}

impl Iterator for Rows {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Result<Item>> {
        loop {
            if let Some(e) = self.fatal.take() {
                self.group = usize::MAX;
                return Some(Err(e));
            }
            if let Some(v) = self.pending.next() {
                let o = origin(&self.source, Loc::Row(self.row));
                self.row += 1;
                let item = match v {
                    Value::Object(obj) => self.mapper.item(&obj, o),
                    _ => {
                        Item::Rejected(Rejected { origin: o, reason: "row is not a struct".into() })
                    }
                };
                return Some(Ok(item));
            }
            if let Some((reason, left)) = self.broken.as_mut().filter(|(_, left)| *left > 0) {
                *left -= 1;
                let o = origin(&self.source, Loc::Row(self.row));
                self.row = self.row.saturating_add(1);
                return Some(Ok(Item::Rejected(Rejected { origin: o, reason: reason.clone() })));
            }
            self.broken = None;
            if self.group >= self.reader.metadata().num_row_groups() {
                return None;
            }
            self.load_group();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::InputSpec;

    fn fixture() -> String {
        format!("{}/tests/data/hf.parquet", env!("CARGO_MANIFEST_DIR"))
    }

    fn run(path: &str, skip: u64) -> Vec<String> {
        open(path, Mapper::new(&InputSpec::default()), skip)
            .unwrap()
            .map(|i| match i.unwrap() {
                Item::Record(r) => {
                    format!("{} {} {} {:?}", r.origin, r.id, r.body.joined(), r.meta.license)
                }
                Item::Rejected(r) => format!("bad {} {}", r.origin, r.reason),
            })
            .collect()
    }

    #[test]
    fn reads_what_datasets_writes_and_resumes_across_row_groups() {
        let f = fixture();
        let all = run(&f, 0);
        assert_eq!(
            all,
            [
                format!("{f} row 0 1 Hola, ¿qué tal? Some(\"MIT\")"),
                format!("{f} row 1 2 q\na Some(\"apache-2.0\")"),
                format!("{f} row 2 3 print('hi') None"),
                format!("{f} row 3 4 tres Some(\"GPL-3.0\")"),
            ]
        );
        for skip in 0..=4 {
            assert_eq!(run(&f, skip), all[skip as usize..], "skip {skip}");
        }
    }

    #[test]
    fn corrupt_pages_found_by_fuzzing_are_rejected_not_a_crash() {
        let crash = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/artifacts-found/parquet-dict-page-read_num_bytes.crash-02a7c394.parquet"
        );
        let bytes = std::fs::read(crash).unwrap();
        let got = items_from_bytes("crash", bytes, Mapper::new(&InputSpec::default()));
        if let Ok(items) = got {
            let items: Vec<_> = items.collect();
            assert!(
                items.iter().any(
                    |i| matches!(i, Ok(Item::Rejected(r)) if r.reason.contains("corrupt data"))
                ),
                "{items:?}"
            );
        }
    }

    #[test]
    fn a_truncated_file_is_a_clear_error() {
        let bytes = std::fs::read(fixture()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("cut.parquet");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = open(cut.to_str().unwrap(), Mapper::new(&InputSpec::default()), 0)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cut.parquet: not a readable Parquet file"), "{err}");
        // Damaged pages (footer intact) reject the row group's rows, never panic.
        let mut bad = bytes.clone();
        for b in &mut bad[8..bytes.len() / 3] {
            *b ^= 0x5a;
        }
        if let Ok(items) = items_from_bytes("bad", bad, Mapper::new(&InputSpec::default())) {
            for item in items {
                let _ = item;
            }
        }
    }
}
