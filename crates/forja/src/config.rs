//! The node's configuration file. `forja up`, `forja serve` and
//! `forja config show` read a TOML file whose keys are their flags' long
//! names (`port = 8080`, `max_batch = 8`, `pii_allow = ["Ana Ruiz"]`).
//! Precedence: built-in defaults < the file < `FORJA_*` environment
//! variables < command-line flags. The file is applied by rewriting the
//! command line before clap parses it, so every key is checked exactly as
//! its flag is, and an unknown key is an error naming the file and key.
//! The one table that is not a flag, `[tasks.<name>]`, configures the
//! node's scheduled tasks ([`tasks`]). A running node reads the file again
//! on change or SIGHUP ([`reloader`]).

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, CommandFactory};
use forja_control::tasks::{TaskSet, TaskSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Subcommands that read the file (`config` reads it for `show`).
const READERS: &[&str] = &["up", "serve", "config"];

/// The command line with the file's values inserted, and the keys that
/// came from the file (for `config show`).
pub struct Applied {
    pub argv: Vec<OsString>,
    pub from_file: BTreeSet<String>,
    pub file: Option<PathBuf>,
    /// The file's `[tasks.<name>]` tables.
    pub tasks: BTreeMap<String, TaskSpec>,
}

/// Inserts the configuration file's values into `argv` as flags, for the
/// subcommands that read it; other command lines are returned unchanged.
pub fn apply(argv: Vec<OsString>) -> Result<Applied> {
    let unchanged =
        |argv| Applied { argv, from_file: BTreeSet::new(), file: None, tasks: BTreeMap::new() };
    let strs: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    // The subcommand: the first word that is not a (global) flag.
    let Some(pos) = strs.iter().skip(1).position(|a| !a.starts_with('-')).map(|p| p + 1) else {
        return Ok(unchanged(argv));
    };
    if !READERS.contains(&strs[pos].as_str()) {
        return Ok(unchanged(argv));
    }
    // `config show`: the flags are those of `up`, after `show`.
    let insert_at = if strs[pos] == "config" { pos + 2 } else { pos + 1 };
    if insert_at > strs.len() {
        return Ok(unchanged(argv));
    }
    let cmd = crate::args::Cli::command();
    let sub = if strs[pos] == "serve" { "serve" } else { "up" };
    let sub = cmd.find_subcommand(sub).expect("the subcommand exists");
    let given = flag_value(&strs[insert_at..], "config");
    let (path, explicit) = match given.or_else(|| std::env::var("FORJA_CONFIG").ok()) {
        Some(p) => (PathBuf::from(p), true),
        None => {
            let data = flag_value(&strs[insert_at..], "data-dir")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("FORJA_DATA_DIR").map(PathBuf::from));
            let dir = crate::admin::data_dir(&crate::args::DataDirArgs {
                data_dir: data,
                database: None,
            });
            (dir.join("forja.toml"), false)
        }
    };
    if !explicit && !path.exists() {
        return Ok(unchanged(argv));
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    let mut extra: Vec<OsString> = Vec::new();
    let mut from_file = BTreeSet::new();
    let mut tasks = BTreeMap::new();
    for (key, value) in &table {
        if key == "tasks" {
            tasks = task_specs(&path, value)?;
            continue;
        }
        let long = key.replace('_', "-");
        let arg = sub
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: unknown key `{key}` (keys are the long flags of `forja {}`; `forja config show` lists them)",
                    path.display(),
                    sub.get_name()
                )
            })?;
        let on_command_line = strs[insert_at..]
            .iter()
            .any(|a| *a == format!("--{long}") || a.starts_with(&format!("--{long}=")));
        let in_env = arg.get_env().is_some_and(|e| std::env::var_os(e).is_some());
        if on_command_line || in_env {
            continue;
        }
        for v in values(&path, key, value, arg)? {
            match v {
                Some(v) => extra.extend([OsString::from(format!("--{long}")), OsString::from(v)]),
                None => extra.push(OsString::from(format!("--{long}"))),
            }
        }
        from_file.insert(arg.get_id().to_string());
    }
    let mut out = argv;
    out.splice(insert_at..insert_at, extra);
    Ok(Applied { argv: out, from_file, file: Some(path), tasks })
}

/// The `[tasks.<name>]` tables; an error names the file and the key.
fn task_specs(path: &Path, v: &toml::Value) -> Result<BTreeMap<String, TaskSpec>> {
    let toml::Value::Table(t) = v else {
        bail!(
            "{}: `tasks` must be a table of tables ([tasks.backup] cron = \"0 3 * * *\")",
            path.display()
        )
    };
    let mut out = BTreeMap::new();
    for (name, spec) in t {
        let spec: TaskSpec = spec.clone().try_into().map_err(|e: toml::de::Error| {
            anyhow::anyhow!("{}: tasks.{name}: {}", path.display(), e.message())
        })?;
        out.insert(name.clone(), spec);
    }
    Ok(out)
}

/// The scheduled tasks of `applied`'s file over the built-in ones.
pub fn tasks(applied: &Applied) -> Result<TaskSet> {
    let file =
        applied.file.as_deref().map_or("the configuration".into(), |f| f.display().to_string());
    TaskSet::new(&applied.tasks).map_err(|e| anyhow::anyhow!("{file}: {e}"))
}

/// The scheduled tasks of the file at `path` (the built-in ones when it
/// does not exist and was not named).
pub fn tasks_of_file(path: &Path, named: bool) -> Result<TaskSet> {
    if !named && !path.exists() {
        return Ok(TaskSet::default());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    let specs = match table.get("tasks") {
        Some(v) => task_specs(path, v)?,
        None => BTreeMap::new(),
    };
    TaskSet::new(&specs).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Flags a reload applies without a restart.
const HOT: &[&str] = &["max_tokens_cap", "request_timeout_s", "completion_retention_days"];

/// The subcommand's matches of a command line (`serve`, or `up`'s).
fn serve_matches(argv: &[OsString]) -> std::result::Result<ArgMatches, String> {
    let m = crate::args::Cli::command().try_get_matches_from(argv).map_err(|e| {
        e.to_string().lines().next().unwrap_or("invalid").trim_start_matches("error: ").to_string()
    })?;
    match m.subcommand() {
        Some(("serve" | "up", sub)) => Ok(sub.clone()),
        _ => Err("not a serve command line".into()),
    }
}

fn raw(m: &ArgMatches, id: &str) -> Option<Vec<OsString>> {
    m.try_get_raw(id).ok().flatten().map(|v| v.map(OsString::from).collect())
}

/// Reads the configuration file again for the node started with
/// `started` (the command line as given, and as the file extended it):
/// the whole file is checked as at start (keys, values, tasks); the hot
/// settings come back, with the other keys whose value changed.
pub fn reloader(
    given: Vec<OsString>,
    started: &Applied,
) -> Result<forja_server::live_config::Reloader> {
    let before = serve_matches(&started.argv).map_err(|e| anyhow::anyhow!(e))?;
    Ok(std::sync::Arc::new(move || {
        let applied = apply(given.clone()).map_err(|e| format!("{e:#}"))?;
        let file = applied.file.as_deref().map(|f| f.display().to_string()).unwrap_or_default();
        let m = serve_matches(&applied.argv).map_err(|e| format!("{file}: {e}"))?;
        let tasks = tasks(&applied).map_err(|e| format!("{e:#}"))?;
        let mut restart = Vec::new();
        for id in
            m.ids().chain(before.ids()).map(|i| i.as_str().to_string()).collect::<BTreeSet<_>>()
        {
            if !HOT.contains(&id.as_str()) && raw(&m, &id) != raw(&before, &id) {
                restart.push(id);
            }
        }
        let get = |id: &str| m.get_one::<u64>(id).copied();
        let cap = m.get_one::<usize>("max_tokens_cap").copied().unwrap_or(2048);
        let days = m.get_one::<i64>("completion_retention_days").copied().unwrap_or(7);
        Ok(forja_server::live_config::Reloaded {
            hot: forja_server::live_config::HotSettings {
                max_tokens_cap: cap.max(1),
                request_timeout: std::time::Duration::from_secs(
                    get("request_timeout_s").unwrap_or(300).max(1),
                ),
                completion_retention_s: days.max(0) * 86_400,
                tasks,
            },
            restart_needed: restart,
        })
    }))
}

/// `--name value` or `--name=value` in a command line.
fn flag_value(args: &[String], name: &str) -> Option<String> {
    let flag = format!("--{name}");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if *a == flag {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
            return Some(v.to_string());
        }
    }
    None
}

/// A TOML value as flag values: `None` is a bare switch.
fn values(path: &Path, key: &str, v: &toml::Value, arg: &Arg) -> Result<Vec<Option<String>>> {
    let switch = !arg.get_action().takes_values();
    let scalar = |v: &toml::Value| -> Result<String> {
        Ok(match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => bail!("{}: `{key}` must be a string, number or boolean", path.display()),
        })
    };
    match v {
        toml::Value::Boolean(b) if switch => Ok(if *b { vec![None] } else { vec![] }),
        _ if switch => bail!("{}: `{key}` is a switch: use true or false", path.display()),
        toml::Value::Array(items) => items.iter().map(|i| scalar(i).map(Some)).collect(),
        other => Ok(vec![Some(scalar(other)?)]),
    }
}

/// Prints the effective configuration of `forja up` as TOML, each value
/// with where it came from.
pub fn show(applied: &Applied) -> Result<std::process::ExitCode> {
    let cmd = crate::args::Cli::command();
    let matches = cmd.get_matches_from(&applied.argv);
    let Some(("config", m)) = matches.subcommand() else { bail!("expected `config show`") };
    let Some(("show", m)) = m.subcommand() else { bail!("expected `config show`") };
    let up = crate::args::Cli::command();
    let up = up.find_subcommand("up").expect("up exists");
    println!("# effective configuration of `forja up`");
    if let Some(f) = &applied.file {
        println!("# file: {}", f.display());
    }
    for arg in up.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version" | "verbose" | "config") {
            continue;
        }
        let Some(line) = render(m, arg) else { continue };
        let source = match m.value_source(id) {
            _ if applied.from_file.contains(id) => "file".to_string(),
            Some(ValueSource::EnvVariable) => {
                format!("env {}", arg.get_env().map(|e| e.to_string_lossy()).unwrap_or_default())
            }
            Some(ValueSource::CommandLine) => "flag".into(),
            _ => "default".into(),
        };
        println!("{line:<48} # {source}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn render(m: &ArgMatches, arg: &Arg) -> Option<String> {
    let id = arg.get_id().as_str();
    let key = id.replace('-', "_");
    if !arg.get_action().takes_values() {
        return Some(format!("{key} = {}", m.get_flag(id)));
    }
    let raw: Vec<String> =
        m.get_raw(id)?.map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>();
    let quote = |v: &String| {
        if v.parse::<f64>().is_ok() || v == "true" || v == "false" {
            v.clone()
        } else {
            toml::Value::String(v.clone()).to_string()
        }
    };
    Some(if matches!(arg.get_action(), clap::ArgAction::Append) {
        format!("{key} = [{}]", raw.iter().map(quote).collect::<Vec<_>>().join(", "))
    } else {
        format!("{key} = {}", quote(raw.first()?))
    })
}
