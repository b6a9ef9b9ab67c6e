//! `forja doctor`: is this machine and data directory fit to run a node?
//! CPU and vector ISA, cores, memory, the data directory's disk, a GPU if
//! `nvidia-smi` sees one, the installed models with their sha256, and the
//! data directory's health (writable, owner-only, database integrity and
//! schema version, the node key's permissions). Each check is `ok`,
//! `warn` or `fail`; the exit code is 0 unless one failed. Nothing is
//! changed: the database is opened read-only.

use crate::args::DoctorArgs;
use crate::install;
use anyhow::Result;
use forja_core::catalog::{self, ModelKind, BUILTIN};
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;

/// One line of the report.
struct Check {
    area: &'static str,
    state: &'static str,
    what: String,
}

fn ok(area: &'static str, what: impl Into<String>) -> Check {
    Check { area, state: "ok", what: what.into() }
}

fn warn(area: &'static str, what: impl Into<String>) -> Check {
    Check { area, state: "warn", what: what.into() }
}

fn fail(area: &'static str, what: impl Into<String>) -> Check {
    Check { area, state: "fail", what: what.into() }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The vector extensions forja's kernels use that this CPU has.
fn isa() -> Vec<&'static str> {
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(if std::arch::is_x86_feature_detected!($f) { v.push($f); })*};
        }
        probe!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            v.push("neon");
        }
    }
    v
}

fn cpu(checks: &mut Vec<Check>, facts: &mut Value) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".to_string(), |s| s.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let isa = isa();
    use forja_engine::isa::Isa;
    let (active, best) = (Isa::active(), Isa::detected());
    facts["cpu"] = json!({"model": model, "cores": cores, "isa": isa,
        "kernels": active.name(), "kernels_best": best.name()});
    let line = format!("{model}, {cores} cores, {}; kernels: {active}", isa.join(" "));
    if let Err(e) = forja_engine::isa::check_env() {
        checks.push(fail("cpu", format!("{line}: {e}")));
    } else if cfg!(target_arch = "x86_64") && best == Isa::Scalar {
        checks.push(warn("cpu", format!("{line}: no AVX2, forja's kernels run their slow paths")));
    } else if active < best {
        checks.push(warn("cpu", format!("{line} (FORJA_ISA lowers it from {best})")));
    } else {
        checks.push(ok("cpu", line));
    }
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| {
        mem.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    match (kib("MemTotal:"), kib("MemAvailable:")) {
        (Some(total), Some(avail)) => {
            facts["memory"] = json!({"total_bytes": total, "available_bytes": avail});
            let line = format!("{} available of {}", gib(avail), gib(total));
            checks.push(if avail < 1 << 30 {
                warn(
                    "memory",
                    format!("{line}: serving SmolLM2 needs about 0.5 GiB, training more"),
                )
            } else {
                ok("memory", line)
            });
        }
        _ => checks.push(warn("memory", "cannot read /proc/meminfo")),
    }
}

fn gpu(checks: &mut Vec<Check>, facts: &mut Value) {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total", "--format=csv,noheader"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let gpus: Vec<String> =
                String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_string()).collect();
            facts["gpus"] = json!(gpus);
            checks.push(ok(
                "gpu",
                if cfg!(feature = "cuda") {
                    format!("{} (this build has CUDA: --device cuda:N)", gpus.join("; "))
                } else {
                    format!(
                        "{} (this build has no CUDA: rebuild with --features cuda, or train with `forja worker --backend trl`)",
                        gpus.join("; ")
                    )
                },
            ));
        }
        _ => {
            facts["gpus"] = json!([]);
            checks.push(ok("gpu", "none (forja runs on the CPU)"));
        }
    }
}

fn models(checks: &mut Vec<Check>, facts: &mut Value) {
    let dir = catalog::models_dir();
    let mut listed = Vec::new();
    let mut llm = false;
    for m in BUILTIN {
        let installed = install::is_installed(m, &dir);
        let entry = m.entry_in(&dir);
        let file = if entry.is_dir() { entry.join("model.safetensors") } else { entry.clone() };
        let sha = installed.then(|| forja_store::sha256_file(&file).ok()).flatten();
        llm |= installed && m.kind == ModelKind::Llm;
        listed.push(json!({"name": m.name, "installed": installed, "path": entry, "sha256": sha}));
        let what = match &sha {
            Some(s) => format!("{} installed, sha256 {}", m.name, &s[..16]),
            None if installed => {
                format!("{} installed but {} cannot be read", m.name, file.display())
            }
            None => format!("{} not installed (forja models install {})", m.name, m.name),
        };
        checks.push(match (installed, &sha) {
            (true, Some(_)) => ok("model", what),
            (true, None) => fail("model", what),
            (false, _) => warn("model", what),
        });
    }
    facts["models"] = json!({"dir": dir, "builtin": listed});
    if !llm {
        checks.push(fail(
            "model",
            "no chat model is installed: `forja models install default` (or pass --model PATH)",
        ));
    }
}

#[cfg(unix)]
fn mode(p: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).ok().map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode(_: &Path) -> Option<u32> {
    None
}

/// A database migrated by a newer forja than this one.
fn newer_schema(h: &forja_store::DbHealth, checks: &mut Vec<Check>) {
    if h.schema > h.newest {
        checks.push(fail(
            "database",
            format!("schema {} is newer than this forja's {}: upgrade forja", h.schema, h.newest),
        ));
    }
}

/// The Postgres database of `--database`: reachable, a primary, and its
/// schema against this forja's.
fn postgres(url: &str, checks: &mut Vec<Check>, facts: &mut Value) {
    match forja_store::check_postgres(url) {
        Ok((h, server)) => {
            facts["database"] = json!({"kind": "postgres", "server": server,
                "integrity": h.integrity, "schema": h.schema, "newest": h.newest});
            checks.push(if h.integrity != "ok" {
                fail("database", format!("PostgreSQL {server}: {}", h.integrity))
            } else if h.schema == 0 {
                ok("database", format!("PostgreSQL {server}, empty (the first command that needs it migrates it to schema {})", h.newest))
            } else {
                ok("database", format!("PostgreSQL {server}, schema {} of {}", h.schema, h.newest))
            });
            newer_schema(&h, checks);
        }
        Err(e) => {
            facts["database"] = json!({"kind": "postgres", "error": e.to_string()});
            checks.push(fail("database", e.to_string()));
        }
    }
}

fn data_dir(dir: &Path, sqlite: bool, checks: &mut Vec<Check>, facts: &mut Value) {
    facts["data_dir"] = json!({"path": dir});
    if !dir.exists() {
        checks.push(warn(
            "data",
            format!("{} does not exist yet (forja serve creates it)", dir.display()),
        ));
        return;
    }
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    match std::fs::write(&probe, b"x") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            checks.push(ok("data", format!("{} is writable", dir.display())));
        }
        Err(e) => checks.push(fail("data", format!("{} is not writable: {e}", dir.display()))),
    }
    if let Some(m) = mode(dir) {
        facts["data_dir"]["mode"] = json!(format!("{m:o}"));
        checks.push(if m & 0o077 != 0 {
            warn(
                "data",
                format!("{} is mode {m:o}; the node makes it 700 when it starts", dir.display()),
            )
        } else {
            ok("data", format!("{} is owner-only ({m:o})", dir.display()))
        });
    }
    if let Ok(st) = fs4::statvfs(dir) {
        let (avail, total) = (st.available_space(), st.total_space());
        facts["data_dir"]["available_bytes"] = json!(avail);
        facts["data_dir"]["size_bytes"] = json!(total);
        let line = format!("{} free of {}", gib(avail), gib(total));
        checks.push(if avail < 1 << 30 {
            fail("disk", format!("{line}: under 1 GiB, a full database answers 507"))
        } else if (avail as f64) < 0.1 * total as f64 {
            warn("disk", format!("{line}: under 10% free"))
        } else {
            ok("disk", line)
        });
    }
    let db = dir.join("forja.db");
    if !sqlite {
        // The database is Postgres (checked on its own).
    } else if db.exists() {
        match forja_store::check_database(&db) {
            Ok(h) => {
                facts["database"] =
                    json!({"integrity": h.integrity, "schema": h.schema, "newest": h.newest});
                checks.push(if h.integrity == "ok" {
                    ok("database", format!("integrity ok, schema {} of {}", h.schema, h.newest))
                } else {
                    fail("database", format!("integrity check: {}", h.integrity))
                });
                newer_schema(&h, checks);
            }
            Err(e) => checks.push(fail("database", format!("{}: {e}", db.display()))),
        }
    } else {
        checks.push(ok("database", "none yet (created by the first command that needs it)"));
    }
    let key = dir.join(forja_store::NODE_KEY);
    if let Some(m) = mode(&key) {
        checks.push(if m & 0o077 != 0 {
            fail(
                "key",
                format!(
                    "{} is mode {m:o}; it must be readable by its owner only (chmod 600)",
                    key.display()
                ),
            )
        } else {
            ok("key", format!("{} is owner-only ({m:o})", key.display()))
        });
    }
}

/// Runs `forja doctor`.
pub fn run(a: DoctorArgs) -> Result<ExitCode> {
    let dir = crate::admin::data_dir(&a.data);
    let mut checks = Vec::new();
    let mut facts = json!({"forja": env!("CARGO_PKG_VERSION")});
    cpu(&mut checks, &mut facts);
    gpu(&mut checks, &mut facts);
    models(&mut checks, &mut facts);
    data_dir(&dir, a.data.database.is_none(), &mut checks, &mut facts);
    if let Some(url) = &a.data.database {
        postgres(url, &mut checks, &mut facts);
    }
    let fit = !checks.iter().any(|c| c.state == "fail");
    if a.json {
        facts["fit"] = json!(fit);
        facts["checks"] = checks
            .iter()
            .map(|c| json!({"area": c.area, "state": c.state, "what": c.what}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&facts)?);
    } else {
        println!("forja {}", env!("CARGO_PKG_VERSION"));
        for c in &checks {
            println!("{:<4}  {:<8}  {}", c.state, c.area, c.what);
        }
        println!("{}", if fit { "fit to run" } else { "NOT fit to run: fix the `fail` lines" });
    }
    Ok(if fit { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
