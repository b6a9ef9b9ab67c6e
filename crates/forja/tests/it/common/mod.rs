//! Helpers shared by the binary's end-to-end tests: run `forja`, make a
//! tiny model, check that user errors are one line.
#![allow(dead_code)]

pub mod server;

use candle_core::quantized::GgmlDType;
use forja_engine::fixtures::{self, Spec};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn forja_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forja"));
    cmd.args(args).env("RUST_BACKTRACE", "1").env_remove("FORJA_MODEL");
    cmd
}

pub fn forja(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = forja_cmd(args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run forja");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

pub fn tiny_gguf(dir: &Path) -> PathBuf {
    let spec = Spec::llama();
    let p = dir.join("tiny.gguf");
    fixtures::write_gguf(&p, &spec, &fixtures::weights(&spec, 1), GgmlDType::Q8_0);
    p
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A user error: exit code 1 and one line `error: ...` containing `want`.
pub fn check_user_error(o: &Output, want: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(o.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&o.stdout));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(want), "{err:?} lacks {want:?}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

/// `promtool check metrics` on `text` (Prometheus' own linter). Skipped
/// when promtool is missing, unless `FORJA_REQUIRE_TESTDATA` is set (CI,
/// where `make setup-test` installs it).
pub fn promtool_check(text: &str) {
    let tool = std::env::var("FORJA_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let child = Command::new(&tool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return fixtures::skip_unless_required(&format!("promtool is missing ({tool}: {e})"))
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");
}

/// `FORJA_PYTHONPATH` when `python3` can import `module` with it (the
/// official clients `make setup-test` installs), else `None` after
/// [`fixtures::skip_unless_required`].
pub fn python_path_with(module: &str) -> Option<String> {
    let py = std::env::var("FORJA_PYTHONPATH").unwrap_or_default();
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .env("PYTHONPATH", &py)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    fixtures::skip_unless_required(&format!("the `{module}` Python package is missing"));
    None
}
