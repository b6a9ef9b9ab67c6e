//! The `forja` binary: parses the command line and dispatches. Logic lives
//! in the library crates; this crate only wires them to a terminal.

mod admin;
mod api;
mod args;
mod bench;
mod bench_knowledge;
mod bench_memory;
mod config;
mod curate;
mod debug;
mod demo;
mod docs;
mod doctor;
mod eval;
mod federation;
mod federation_node;
mod governance;
mod install;
mod knowledge;
mod memory;
mod models;
mod pretrain_emit;
mod progress;
mod redteam;
mod registry;
mod run;
mod serve;
mod tasks;
mod train;
mod up;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    tune_malloc();
    whole_lines_on_panic();
    let applied = match config::apply(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let cli = match args::Cli::try_parse_from(&applied.argv) {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            if let (Some(f), false) = (&applied.file, applied.from_file.is_empty()) {
                eprintln!("note: values of {} came from {}", list(&applied.from_file), f.display());
            }
            std::process::exit(code);
        }
    };
    if cli.command.trains() {
        quiet_candle_pool();
    }
    if let Err(err) = init_logging(cli.verbose, cli.command.log_file()) {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    match dispatch(cli, &applied) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn list(keys: &std::collections::BTreeSet<String>) -> String {
    keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

fn dispatch(cli: args::Cli, applied: &config::Applied) -> anyhow::Result<ExitCode> {
    match cli.command {
        args::Command::Up(a) => up::up(a, applied),
        args::Command::Config(args::ConfigCommand::Show(_)) => config::show(applied),
        args::Command::Generate(a) => run::generate(a),
        args::Command::Chat(a) => run::chat(a),
        args::Command::Train(a) => train::train(a),
        args::Command::Pretrain(a) => train::pretrain(a),
        args::Command::Merge(a) => train::merge(a),
        args::Command::Curate(a) => curate::run(a),
        args::Command::Models(a) => models::run(a),
        args::Command::Eval(a) => eval::run(a),
        args::Command::Golden(c) => registry::golden(c),
        args::Command::Serve(a) => serve::serve(a, applied),
        args::Command::Worker(a) => serve::worker_cmd(a),
        args::Command::Tenants(c) => admin::tenants(c),
        args::Command::Keys(c) => admin::keys(c),
        args::Command::Jobs(c) => admin::jobs(c),
        args::Command::Federation(c) => federation::run(c),
        args::Command::Auditors(c) => governance::auditors(c),
        args::Command::Audit(c) => governance::audit(c),
        args::Command::Ledger(c) => governance::ledger(c),
        args::Command::Knowledge(c) => knowledge::run(c),
        args::Command::Memory(c) => memory::run(c),
        args::Command::Tasks(c) => tasks::run(c),
        args::Command::Redteam(c) => redteam::run(c),
        args::Command::Doctor(a) => doctor::run(a),
        args::Command::Bench(args::BenchCommand::Generate(a)) => bench::generate(a),
        args::Command::Bench(args::BenchCommand::Speculative(a)) => bench::speculative(a),
        args::Command::Bench(args::BenchCommand::Train(a)) => bench::train(a),
        args::Command::Bench(args::BenchCommand::Minhash(a)) => curate::bench_minhash(a),
        args::Command::Bench(args::BenchCommand::Pii(a)) => curate::bench_pii(a),
        args::Command::Bench(args::BenchCommand::Align(a)) => docs::bench_align(a),
        args::Command::Bench(args::BenchCommand::Knowledge(a)) => bench_knowledge::run(a),
        args::Command::Bench(args::BenchCommand::Memory(a)) => bench_memory::run(a),
        args::Command::Bench(args::BenchCommand::Diff(a)) => docs::bench_diff(a),
        args::Command::Corrections(args::CorrectionsCommand::Diff(a)) => docs::corrections_diff(a),
        args::Command::Draft(a) => docs::draft(a),
        args::Command::Dictionary(c) => docs::dictionary(c),
        args::Command::Debug(args::DebugCommand::DemoData { out, per_slice, golden, seed }) => {
            let cfg = demo::DemoConfig {
                seed,
                corrections: 0,
                golden,
                model: "default".into(),
                documents: false,
                itn: true,
            };
            demo::federated::write(&out, &cfg, per_slice)?;
            Ok(ExitCode::SUCCESS)
        }
        args::Command::Debug(args::DebugCommand::Logits {
            model,
            adapter,
            ids,
            dequantize,
            device,
        }) => debug::logits(&model, adapter.as_deref(), &ids, dequantize, &device),
    }
}

/// Keeps a panic's message from cutting into other lines on stderr. The
/// default hook writes to stderr without its lock, a piece at a time, and
/// `eprintln!` writes a formatted line a piece at a time too: a background
/// loop panicking at start-up (a supervised loop, restarted) could land
/// inside "forja: listening on http://…", the line scripts read the
/// address from. The hook holds the lock while the default one prints.
fn whole_lines_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _whole = std::io::stderr().lock();
        default(info)
    }));
}

/// Training allocates and frees tensors of a few MB hundreds of times per
/// step. With glibc's defaults each one is a fresh `mmap`, or lands in a
/// worker thread's arena that is unmapped when it empties, and the kernel
/// zero-fills it again page by page: half of a LoRA step's time went to
/// page faults. One arena that keeps freed memory lets the next step reuse
/// it (SmolLM2 LoRA step: 51 -> 150 tok/s on 2 threads).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_malloc() {
    // SAFETY: mallopt only changes allocator tunables; called first thing
    // in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1); // never trim
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

/// candle runs its element-wise ops on its own pool, whose threads spin
/// after each op; during training they spin while forja's pool runs the big
/// kernels, on the same cores. Parking them at once made LoRA steps ~10 %
/// faster on 2 cores. Inference keeps candle's default (its ops are rare
/// there and a wake-up per op would cost latency). Called before any
/// thread or candle op exists; an explicit setting wins.
fn quiet_candle_pool() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        std::env::set_var(VAR, "0");
    }
}

/// The log file of `--log-file`, which the `logs` task rotates.
pub(crate) static LOG_FILE: std::sync::OnceLock<std::sync::Arc<forja_control::tasks::LogFile>> =
    std::sync::OnceLock::new();

/// Writes log lines to [`LOG_FILE`].
struct ToLogFile(std::sync::Arc<forja_control::tasks::LogFile>);

impl std::io::Write for ToLogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logging(verbose: u8, log_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FORJA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    match log_file {
        None => fmt.with_writer(std::io::stderr).init(),
        Some(p) => {
            use anyhow::Context;
            let f = std::sync::Arc::new(
                forja_control::tasks::LogFile::open(p.to_path_buf()).with_context(|| {
                    format!("--log-file {}: cannot open it for appending", p.display())
                })?,
            );
            let _ = LOG_FILE.set(f.clone());
            fmt.with_writer(move || ToLogFile(f.clone())).with_ansi(false).init()
        }
    }
    Ok(())
}
