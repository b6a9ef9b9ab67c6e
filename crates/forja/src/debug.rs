//! `forja debug logits`: raw logits as JSON, for interop scripts that
//! compare forja with other implementations (scripts/peft-interop.py).

use crate::models;
use anyhow::{Context, Result};
use forja_engine::LoadOptions;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub fn logits(
    model: &str,
    adapter: Option<&Path>,
    ids: &str,
    dequantize: bool,
    device: &str,
) -> Result<ExitCode> {
    let tokens: Vec<u32> = ids
        .split(',')
        .map(|t| t.trim().parse::<u32>().with_context(|| format!("--ids: `{t}` is not a token id")))
        .collect::<Result<_>>()?;
    let path = models::resolve(model)?;
    let engine = crate::run::load_with(
        &path,
        &LoadOptions { dequantize, device: device.into(), ..Default::default() },
    )?;
    let adapter = adapter.map(|d| engine.load_adapter(d)).transpose()?;
    let positions: Vec<usize> = (0..tokens.len()).collect();
    let rows = engine.logits_at(&tokens, &positions, adapter.as_ref())?;
    let json = serde_json::json!({ "ids": tokens, "logits": rows });
    match writeln!(std::io::stdout().lock(), "{json}") {
        // `forja debug logits ... | head` is fine.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}
