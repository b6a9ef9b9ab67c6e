//! Plain text: a file, or a directory walked recursively in sorted order; one
//! record per file, its id the path relative to the directory. Files that are
//! not UTF-8 or look binary are rejected; hidden files and directories are
//! not read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fields::{origin, Mapper};
use super::{Item, Items};
use crate::{Body, DataError, Loc, Meta, Record, Rejected, Result};

/// Files larger than this are rejected rather than read into memory.
const MAX_FILE_BYTES: u64 = 64 << 20;

const CODE_EXTENSIONS: &[&str] = &[
    "c", "cc", "cpp", "cxx", "h", "hh", "hpp", "cs", "go", "java", "js", "jsx", "mjs", "ts", "tsx",
    "kt", "kts", "php", "py", "rb", "rs", "scala", "sh", "bash", "zsh", "sql", "swift", "lua",
    "pl", "r", "m", "hs", "ml", "ex", "exs", "erl", "clj", "dart", "jl", "vue", "svelte", "toml",
    "yaml", "yml", "css", "scss",
];

/// Whether a file name looks like source code (by extension).
pub fn is_code_path(path: &str) -> bool {
    let ext = Path::new(path).extension().and_then(|e| e.to_str()).unwrap_or("");
    CODE_EXTENSIONS.iter().any(|c| c.eq_ignore_ascii_case(ext))
}

pub(super) fn open(path: &str, mapper: Mapper, skip: u64) -> Result<Items> {
    let root = PathBuf::from(path);
    let meta = std::fs::metadata(&root).map_err(|e| DataError::io(&root, e))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        walk(&root, &mut files)?;
    } else {
        files.push(root.clone());
    }
    files.sort();
    let base =
        if meta.is_dir() { root } else { root.parent().map(Path::to_path_buf).unwrap_or_default() };
    let iter =
        files.into_iter().skip(skip as usize).map(move |file| Ok(read_one(&base, &file, &mapper)));
    Ok(Box::new(iter))
}

/// The files under `dir` that the reader reads (hidden ones are not), unsorted.
pub(crate) fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type().map_err(|e| DataError::io(&path, e))?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if ft.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn read_one(base: &Path, file: &Path, mapper: &Mapper) -> Item {
    let source: Arc<str> = file.to_string_lossy().into();
    let o = origin(&source, Loc::Whole);
    let reject = |reason: String| Item::Rejected(Rejected { origin: o.clone(), reason });
    match std::fs::metadata(file) {
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            return reject(format!(
                "{} bytes is over the {MAX_FILE_BYTES}-byte limit for one record",
                m.len()
            ))
        }
        Ok(_) => {}
        Err(e) => return reject(format!("unreadable ({e})")),
    }
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return reject(format!("unreadable ({e})")),
    };
    let rel = file.strip_prefix(base).unwrap_or(file).to_string_lossy().into_owned();
    record(o, rel, bytes, mapper)
}

/// One in-memory file as a record named `name`.
pub(super) fn from_bytes(name: &str, bytes: Vec<u8>, mapper: &Mapper) -> Item {
    let source: Arc<str> = name.into();
    record(origin(&source, Loc::Whole), name.to_string(), bytes, mapper)
}

fn record(o: crate::Origin, rel: String, bytes: Vec<u8>, mapper: &Mapper) -> Item {
    let reject = |reason: String| Item::Rejected(Rejected { origin: o.clone(), reason });
    if bytes.contains(&0) {
        return reject("binary file (contains NUL bytes)".into());
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => return reject(format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to())),
    };
    let meta = Meta {
        license: mapper.default_license(),
        kind: mapper.kind_for(Some(&rel), false),
        group: Some(rel.clone()),
        path: Some(rel.clone()),
        lang: None,
    };
    Item::Record(Record { origin: o, id: rel, body: Body::Text(text), meta })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::InputSpec;
    use crate::Kind;

    #[test]
    fn walks_sorted_and_rejects_binary_and_bad_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("b.txt"), "bee").unwrap();
        std::fs::write(d.join("a.py"), "print(1)").unwrap();
        std::fs::write(d.join("sub/c.md"), "see").unwrap();
        std::fs::write(d.join("bin.dat"), b"\x00\x01").unwrap();
        std::fs::write(d.join("latin1.txt"), b"caf\xe9").unwrap();
        std::fs::write(d.join(".hidden"), "no").unwrap();
        let m = Mapper::new(&InputSpec::default());
        let got: Vec<String> = open(d.to_str().unwrap(), m.clone(), 0)
            .unwrap()
            .map(|i| match i.unwrap() {
                Item::Record(r) => format!("{} {:?} {}", r.id, r.meta.kind, r.body.joined()),
                Item::Rejected(r) => format!("bad {}", r.reason),
            })
            .collect();
        assert_eq!(
            got,
            [
                format!("a.py {:?} print(1)", Kind::Code),
                "b.txt Text bee".into(),
                "bad binary file (contains NUL bytes)".into(),
                "bad invalid UTF-8 at byte 3".into(),
                "sub/c.md Text see".into(),
            ]
        );
        assert_eq!(open(d.to_str().unwrap(), m, 4).unwrap().count(), 1);
    }
}
