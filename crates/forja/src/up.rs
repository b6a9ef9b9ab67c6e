//! `forja up`: a node on the embedded default (SQLite, local artifacts,
//! CPU, the built-in model) with a default tenant whose key is printed
//! once; with `--demo`, the demo tenant and one learning-loop iteration
//! (`--iterations N`: N of them, charted; see `demo/`).

use crate::args::UpArgs;
use crate::demo::{self, DemoConfig};
use anyhow::{Context, Result};
use forja_control::keys;
use forja_server::node::Node;
use forja_store::{
    Auto, HyperRequest, JobSpec, Role, Store, StoreError, Tenant, TenantSettings, Tier,
};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub fn up(a: UpArgs, applied: &crate::config::Applied) -> Result<ExitCode> {
    let settings = demo_settings(&a);
    let cfg = DemoConfig {
        seed: a.demo_seed,
        corrections: a.demo_corrections,
        golden: a.demo_golden,
        model: a.serve.model.clone(),
        documents: a.demo_documents,
        itn: !a.demo_raw_numbers,
    };
    let iterations = a.iterations;
    let UpArgs { mut serve, tenant: tenant_name, demo, demo_seed, exit_after_loop, .. } = a;
    let mut run_demo = demo;
    // First start with nobody to ask: no demo. With a terminal: ask.
    let db = crate::admin::data_dir(&serve.data).join("forja.db");
    if !run_demo && !db.exists() && std::io::stdin().is_terminal() {
        eprint!(
            "forja: first start. Seed the demo tenant (Spanish council minutes) and run one \
             learning loop now (about 20 minutes on 2 CPU cores)? [y/N] "
        );
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        run_demo = line.trim().eq_ignore_ascii_case("y");
    }
    let council = run_demo.then(|| demo::scenario::council(demo_seed));
    if let Some(c) = &council {
        // Officials' names are public in minutes: the scrubber keeps them.
        serve.pii_allow.extend(demo::scenario::public_names(c));
        if serve.embedding_model == "auto" {
            // The report's semantic similarity needs the embedder.
            serve.embedding_model = "minilm".into();
        }
    }
    let node = Node::start(crate::serve::node_config(&serve, applied)?)?;
    let store = node.store.clone();
    let (tenant, new_key) = ensure_tenant(&*store, &tenant_name, TenantSettings::default())?;
    let url = format!("http://{}", node.addr);
    eprintln!("forja: listening on {url} (data: {})", node.dir.display());
    eprintln!("forja is up");
    if forja_server::web::embedded() {
        eprintln!("  web UI (chat, learning)  {url}/");
    }
    eprintln!("  API (OpenAI-compatible)  {url}/v1");
    eprintln!("  health / ready / metrics {url}/health  {url}/ready  {url}/metrics");
    eprintln!("  data directory           {}", node.dir.display());
    eprintln!("  model                    {}", serve.model);
    match &new_key {
        Some(k) => {
            eprintln!("  tenant `{}` API key      {k}", tenant.name);
            eprintln!("    (shown once; `forja keys create --tenant {}` makes another)", tenant.name);
        }
        None => eprintln!(
            "  tenant `{}`: key shown at first start (`forja keys create --tenant {}` for a new one)",
            tenant.name, tenant.name
        ),
    }
    eprintln!(
        "  try: curl {url}/v1/chat/completions -H 'Authorization: Bearer KEY' \\\n       \
         -H 'Content-Type: application/json' -d '{{\"model\":\"{}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hola\"}}]}}'",
        serve.model
    );

    let demo_thread = council.map(|_| {
        let (addr, dir, shutdown, exit, ready) =
            (node.addr, node.dir.clone(), node.shutdown.clone(), exit_after_loop, node.ready.clone());
        std::thread::spawn(move || -> Result<()> {
            let r = (|| {
                let key = demo_key(&*store, &dir, settings)?;
                demo::wait_ready(&ready, Duration::from_secs(1800))?;
                let mut reports = Vec::new();
                for i in 0..iterations {
                    if iterations > 1 {
                        eprintln!("demo: iteration {} of {iterations}", i + 1);
                    }
                    let report = demo::run(addr, &key, &dir, &cfg)?;
                    eprintln!("\n{}", demo::markdown(&report));
                    reports.push(report);
                }
                if iterations > 1 {
                    let md = demo::iterations::write(&dir.join("demo"), &reports)?;
                    eprintln!("\n{md}");
                    eprintln!("iterations: {}", dir.join("demo/iterations.md").display());
                }
                reports.pop().context("no demo iteration ran")
            })();
            match &r {
                Ok(report) => {
                    eprintln!("report: {}", dir.join("demo/report.json").display());
                    if !exit {
                        eprintln!(
                            "forja keeps serving {} (`{}@champion` is the demo tenant's model); Ctrl-C stops it",
                            addr,
                            report["base_model"].as_str().unwrap_or("default")
                        );
                        if forja_server::web::embedded() {
                            eprintln!(
                                "web UI: http://{addr}/ (sign in with the demo tenant's key, in {})",
                                dir.join("demo/key").display()
                            );
                        }
                    }
                }
                Err(e) => eprintln!("demo: {e:#}"),
            }
            if exit || r.is_err() {
                shutdown.notify_one();
            }
            r.map(|_| ())
        })
    });
    node.run()?;
    if let Some(t) = demo_thread {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context("the demo loop failed")),
            Err(_) => anyhow::bail!("the demo loop panicked"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The tenant `name`, created with `settings` when missing; the key is
/// returned only when it was created now.
fn ensure_tenant(
    store: &dyn Store,
    name: &str,
    settings: TenantSettings,
) -> Result<(Tenant, Option<String>)> {
    match store.tenant_by_name(name) {
        Ok(t) => Ok((t, None)),
        Err(StoreError::NotFound { .. }) => {
            let t = store.create_tenant(name, Tier::Standard.name(), &settings)?;
            let spec = keys::KeySpec { tenant_id: Some(t.id.clone()), ..Default::default() };
            let (key, _) = keys::create(store, Role::Tenant, &spec)?;
            Ok((t, Some(key)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The demo tenant's policy: train when one iteration's corrections are
/// in, with the demo's hyperparameters.
fn demo_settings(a: &UpArgs) -> TenantSettings {
    let mut s = TenantSettings::for_tier(Tier::Pro);
    s.threshold = Some(a.demo_corrections.max(1) as u32);
    s.max_trainings = 1000;
    s.job_spec = Some(JobSpec {
        hyperparameters: HyperRequest {
            n_epochs: Auto::Value(a.demo_epochs),
            batch_size: Auto::Value(a.demo_batch_size),
            learning_rate_multiplier: Auto::Value(a.demo_lr_multiplier),
            lora_r: Auto::Value(a.demo_lora_r),
            lora_alpha: Auto::Auto,
            lora_targets: Auto::Auto,
        },
        time_limit_s: Some(a.demo_time_limit_s),
        seed: Some(a.demo_seed),
        ..Default::default()
    });
    s
}

/// The demo tenant (settings refreshed from the flags) and its key, kept
/// in DATA_DIR/demo/key (mode 0600) so a restarted demo reuses it.
fn demo_key(store: &dyn Store, dir: &Path, settings: TenantSettings) -> Result<String> {
    let (t, created) = ensure_tenant(store, demo::TENANT, settings.clone())?;
    if created.is_none() {
        store.update_settings(&t.id, &settings)?;
    }
    let path = dir.join("demo").join("key");
    std::fs::create_dir_all(dir.join("demo"))?;
    if let (None, Ok(k)) = (&created, std::fs::read_to_string(&path)) {
        let stored = store.key_by_hash(&keys::hash(k.trim()))?;
        if stored.is_some_and(|k| k.tenant_id.as_deref() == Some(t.id.as_str())) {
            return Ok(k.trim().to_string());
        }
    }
    let key = match created {
        Some(k) => k,
        None => {
            let spec = keys::KeySpec { tenant_id: Some(t.id.clone()), ..Default::default() };
            keys::create(store, Role::Tenant, &spec)?.0
        }
    };
    write_private(&path, &key)?;
    Ok(key)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}
