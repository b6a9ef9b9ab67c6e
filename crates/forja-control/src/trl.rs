//! The TRL backend: a job's optimisation loop run by TRL + PEFT (with
//! accelerate, and DeepSpeed ZeRO when configured) in a child process, for
//! the models and machines forja's own engine should not attempt (8B+
//! models, several GPUs, 4-bit QLoRA). The worker still does everything
//! around it: it tokenizes the job's data with the model's chat template
//! (the same loss masks as the native trainer), hands the child a plan,
//! uploads its checkpoints, evaluates the adapter it writes on the golden
//! set and uploads it, so the control plane, the gate and serving do not
//! know which backend trained a version.
//!
//! The child is `trainers/trl_sft.py` (built into the binary, written next
//! to the job's data; `--trainer` replaces it). It reports progress as
//! lines `forja-event {json}` on standard output, translated here into the
//! engine's [`Event`]s; its other output goes to `trainer.log` in the
//! job's directory. Exit status 75 means the GPU is gone: the job is left
//! for its lease to expire and be requeued, not failed.

use crate::{ControlError, Result};
use forja_engine::train::{Event, LoraData, LoraPlan, TrainReport};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The trainer script forja ships.
pub const SCRIPT: &str = include_str!("../trainers/trl_sft.py");

/// The Python packages the script imports.
pub const PACKAGES: &[&str] = &["torch", "transformers", "trl", "peft", "accelerate", "datasets"];

/// The script's exit status for a plan or data it cannot use.
const EXIT_BAD_INPUT: i32 = 2;
/// The script's exit status when the GPU is gone.
const EXIT_GPU_LOST: i32 = 75;
/// How a lost GPU's error starts.
const GPU_LOST: &str = "the trainer lost its GPU";
/// The prefix of the script's progress lines.
const EVENT: &str = "forja-event ";

/// How a worker trains.
#[derive(Debug, Clone, Default)]
pub enum Backend {
    /// forja's engine, on the CPU.
    #[default]
    Native,
    /// TRL + PEFT in a child process.
    Trl(TrlBackend),
}

/// Settings of the TRL backend.
#[derive(Debug, Clone)]
pub struct TrlBackend {
    /// A Python with the [`PACKAGES`].
    pub python: PathBuf,
    /// The trainer script (`None`: [`SCRIPT`]).
    pub script: Option<PathBuf>,
    /// The job's first GPU (`None`: the CPU); its processes take the GPUs
    /// from there on.
    pub gpu: Option<u32>,
    /// Processes for one job, one per GPU: more than one runs the script
    /// under `accelerate launch` (data parallel, or ZeRO with `deepspeed`).
    pub processes: u32,
    /// A DeepSpeed configuration file (ZeRO stage, offload).
    pub deepspeed: Option<PathBuf>,
    /// Loads the frozen base in 4-bit NF4 (QLoRA; needs `bitsandbytes`
    /// and a GPU).
    pub load_in_4bit: bool,
}

impl TrlBackend {
    /// Where the job trains, as forja names devices (`cpu`, `cuda:N`).
    pub fn device(&self) -> String {
        self.gpu.map_or("cpu".into(), |n| format!("cuda:{n}"))
    }

    /// Checks that the Python imports the packages (and sees the GPU the
    /// device names); returns their versions, e.g. `torch 2.5.1, trl 0.12.0`.
    pub fn probe(&self) -> Result<String> {
        let gpu = match self.gpu {
            None => String::new(),
            Some(n) => {
                let d = self.device();
                let need = n + self.processes.max(1);
                format!(
                    "\nimport torch\nc = torch.cuda.device_count() if torch.cuda.is_available() else 0\n\
                     if c < {need}: sys.exit('{d} with {p} process(es) needs {need} CUDA GPU(s); torch sees ' + str(c))",
                    p = self.processes.max(1)
                )
            }
        };
        let code = format!(
            "import importlib, sys\nv = []\nfor m in {PACKAGES:?}:\n    \
             try:\n        v.append(m + ' ' + importlib.import_module(m).__version__)\n    \
             except Exception as e:\n        sys.exit('cannot import ' + m + ': ' + str(e))\n\
             print(', '.join(v)){gpu}"
        );
        let out =
            Command::new(&self.python).args(["-c", &code]).stdin(Stdio::null()).output().map_err(
                |e| ControlError::invalid("python", format!("{}: {e}", self.python.display())),
            )?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
            return Err(ControlError::invalid(
                "python",
                format!(
                    "{}: {last} (install {} for it, or pass another --python)",
                    self.python.display(),
                    PACKAGES.join(", ")
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// One job's training under the TRL backend.
pub(crate) struct Run<'a> {
    /// The job (for errors).
    pub job: &'a str,
    /// The base model's name (the adapter's `base_model_name_or_path`).
    pub base: &'a str,
    /// The base model's file or directory.
    pub model: &'a Path,
    /// The id padding uses (the model's EOS).
    pub pad_token_id: u32,
    /// Settings (the job's resolved hyperparameters).
    pub plan: &'a LoraPlan,
    /// The job's data, tokenized by the engine.
    pub data: &'a LoraData,
    /// The job's directory (the plan, the data and the log go here).
    pub dir: &'a Path,
    /// Where the adapter and checkpoints go.
    pub out: &'a Path,
    /// Continue from the newest checkpoint under `out`.
    pub resume: bool,
    /// A warm start's adapter directory.
    pub init: Option<&'a Path>,
}

/// Trains `run` with the TRL script, passing its progress to `on_event`
/// and killing it when `on_event` fails or `stopped` says so.
pub(crate) fn fine_tune(
    be: &TrlBackend,
    run: &Run<'_>,
    stopped: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(&Event) -> Result<()>,
) -> Result<TrainReport> {
    let plan_path = write_inputs(be, run)?;
    let script = match &be.script {
        Some(s) => s.clone(),
        None => {
            let p = run.dir.join("trl_sft.py");
            crate::link::write(&p, SCRIPT.as_bytes())?;
            p
        }
    };
    let log_path = run.dir.join("trainer.log");
    let log = std::fs::File::create(&log_path).map_err(|e| ControlError::io(&log_path, e))?;
    let mut cmd = Command::new(&be.python);
    if be.processes > 1 {
        cmd.args(["-m", "accelerate.commands.launch", "--num_processes"])
            .arg(be.processes.to_string());
    }
    cmd.arg(&script).arg("--plan").arg(&plan_path);
    // GPUs N.. for the job's processes (the script sees them as 0..);
    // none on the CPU.
    let visible: Vec<String> = match be.gpu {
        Some(first) => (first..first + be.processes.max(1)).map(|i| i.to_string()).collect(),
        None => Vec::new(),
    };
    cmd.env("CUDA_VISIBLE_DEVICES", visible.join(","));
    // Nothing is fetched from a hub at run time.
    cmd.env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("TOKENIZERS_PARALLELISM", "false")
        .env("HF_DATASETS_CACHE", run.dir.join("hf-datasets"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    die_with_worker(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| ControlError::invalid("python", format!("{}: {e}", be.python.display())))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel::<String>();
    // Reads every byte the child writes (a line that is not UTF-8 is
    // decoded lossily, never left unread: a child blocked on a full pipe
    // would never exit).
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut done = None;
    let outcome = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let Some(json) = line.strip_prefix(EVENT) else {
                    tracing::debug!(job = run.job, "trainer: {line}");
                    continue;
                };
                let r = parse_event(json, run.out).and_then(|e| match e {
                    Parsed::Event(e) => on_event(&e),
                    Parsed::Done(r) => {
                        done = Some(r);
                        Ok(())
                    }
                });
                if let Err(e) = r {
                    break Err(e);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) if stopped() => {
                break Err(ControlError::Stopped { job: run.job.into(), why: "stopped".into() })
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
        }
    };
    if outcome.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| ControlError::io(&be.python, e))?;
    let _ = reader.join();
    outcome?;
    let last = last_line(&log_path);
    match (status.code(), done) {
        (Some(0), Some(report)) => {
            name_base(run.out, run.base)?;
            Ok(report)
        }
        (Some(0), None) => Err(failed("exited without reporting the end of training", &last)),
        (Some(EXIT_GPU_LOST), _) => Err(ControlError::Stopped {
            job: run.job.into(),
            why: format!("{GPU_LOST} ({last}); the job is requeued"),
        }),
        (Some(EXIT_BAD_INPUT), _) => Err(ControlError::invalid("trainer", last)),
        (Some(c), _) => Err(failed(&format!("exited with status {c}"), &last)),
        (None, _) => Err(failed("was killed by a signal", &last)),
    }
}

/// Whether `e` says the trainer lost its GPU (the worker should stop
/// leasing: every job would fail the same way).
pub fn lost_gpu(e: &ControlError) -> bool {
    matches!(e, ControlError::Stopped { why, .. } if why.starts_with(GPU_LOST))
}

/// A worker killed with SIGKILL cannot stop its trainer: the kernel does
/// (PR_SET_PDEATHSIG), so a GPU is never held by an orphan. The script
/// does the same for its own children under `accelerate launch`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_worker(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl, which is async-signal-safe; it touches no memory of the
    // parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_worker(_: &mut Command) {}

fn failed(what: &str, last: &str) -> ControlError {
    ControlError::Engine(forja_engine::EngineError::Training(format!(
        "the TRL trainer {what}: {last}"
    )))
}

/// The last non-empty line of the trainer's log (its error), cut short.
fn last_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no output");
    let line = line.strip_prefix("error: ").unwrap_or(line);
    crate::clip(line, 300)
}

/// Writes the tokenized data and the plan; returns the plan's path.
fn write_inputs(be: &TrlBackend, run: &Run<'_>) -> Result<PathBuf> {
    let write_examples = |name: &str, examples: &[forja_engine::train::data::Example]| {
        let p = run.dir.join(name);
        let f = std::fs::File::create(&p).map_err(|e| ControlError::io(&p, e))?;
        let mut w = std::io::BufWriter::new(f);
        for e in examples {
            let labels: Vec<i64> = e
                .ids
                .iter()
                .zip(&e.target)
                .map(|(&t, &y)| if y { t as i64 } else { -100 })
                .collect();
            let line = json!({ "input_ids": e.ids, "labels": labels });
            writeln!(w, "{line}").map_err(|e| ControlError::io(&p, e))?;
        }
        w.flush().map_err(|e| ControlError::io(&p, e))?;
        Ok::<_, ControlError>(p)
    };
    let train = write_examples("train.tokens.jsonl", &run.data.train)?;
    let val = if run.data.val.is_empty() {
        None
    } else {
        Some(write_examples("validation.tokens.jsonl", &run.data.val)?)
    };
    let (t, l) = (&run.plan.train, &run.plan.lora);
    let plan = json!({
        "model": run.model,
        "train": train,
        "validation": val,
        "out": run.out,
        "resume": run.resume,
        "init_adapter": run.init,
        "pad_token_id": run.pad_token_id,
        // The script sees the job's GPUs from 0.
        "device": if be.gpu.is_some() { "cuda:0" } else { "cpu" },
        "deepspeed": be.deepspeed,
        "load_in_4bit": be.load_in_4bit,
        "lora": {
            "r": l.r, "alpha": l.alpha, "dropout": l.dropout, "rslora": l.rslora,
            "targets": l.targets.iter().map(|m| m.name()).collect::<Vec<_>>(),
        },
        "train_cfg": {
            "epochs": t.epochs, "max_steps": t.max_steps, "batch_size": t.batch_size,
            "grad_accum": t.grad_accum, "lr": t.lr, "min_lr_ratio": t.min_lr_ratio,
            "warmup_steps": t.warmup_steps, "weight_decay": t.weight_decay,
            "beta1": t.beta1, "beta2": t.beta2, "max_grad_norm": t.max_grad_norm,
            "max_len": t.max_len, "eval_every": t.eval_every, "patience": t.patience,
            "save_every": t.save_every, "keep_checkpoints": t.keep_checkpoints,
            "time_limit_secs": t.time_limit_secs, "seed": t.seed,
        },
    });
    let p = run.dir.join("trl-plan.json");
    crate::link::write(&p, plan.to_string().as_bytes())?;
    Ok(p)
}

/// PEFT names the base by the path it loaded; forja names it by the job's
/// model, as the native trainer does.
fn name_base(out: &Path, base: &str) -> Result<()> {
    let p = out.join("adapter_config.json");
    let text = std::fs::read_to_string(&p).map_err(|e| ControlError::io(&p, e))?;
    let mut cfg: Value = serde_json::from_str(&text)
        .map_err(|e| ControlError::invalid("trainer", format!("{}: {e}", p.display())))?;
    cfg["base_model_name_or_path"] = base.into();
    crate::link::write(&p, cfg.to_string().as_bytes())
}

enum Parsed {
    Event(Event),
    Done(TrainReport),
}

/// One progress line of the script.
fn parse_event(json: &str, out: &Path) -> Result<Parsed> {
    let bad = |why: String| failed("printed a bad progress line", &why);
    let v: Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let u = |k: &str| v[k].as_u64().map(|n| n as usize).ok_or_else(|| bad(format!("no `{k}`")));
    let f = |k: &str| v[k].as_f64().ok_or_else(|| bad(format!("no `{k}`")));
    Ok(match v["event"].as_str().unwrap_or_default() {
        "start" => Parsed::Event(Event::Start {
            total_steps: u("total_steps")?,
            steps_per_epoch: u("steps_per_epoch")?,
            trainable_params: u("trainable_params")?,
            resumed_from: u("resumed_from")?,
        }),
        "step" => Parsed::Event(Event::Step {
            step: u("step")?,
            epoch: u("epoch")?,
            loss: f("loss")?,
            lr: f("lr")?,
            grad_norm: f("grad_norm")?,
            tokens: u("tokens")?,
            tok_per_s: f("tok_per_s")?,
        }),
        "eval" => Parsed::Event(Event::Eval {
            step: u("step")?,
            loss: f("loss")?,
            perplexity: f("perplexity")?,
            token_accuracy: f("token_accuracy")?,
            best: v["best"].as_bool().unwrap_or(false),
        }),
        "checkpoint" => {
            let rel = v["path"].as_str().ok_or_else(|| bad("no `path`".into()))?;
            if !crate::link::stays_below(rel) {
                return Err(bad(format!("checkpoint path `{rel}` is not under the output")));
            }
            Parsed::Event(Event::Checkpoint { step: u("step")?, path: out.join(rel) })
        }
        "done" => Parsed::Done(TrainReport {
            steps: u("steps")?,
            stopped_by: v["stopped_by"].as_str().unwrap_or("completed").to_string(),
            kept_step: u("kept_step")?,
            best_val_loss: v["best_val_loss"].as_f64(),
            initial_val_loss: None,
            first_loss: v["first_loss"].as_f64().unwrap_or(f64::NAN),
            last_loss: v["last_loss"].as_f64().unwrap_or(f64::NAN),
            tokens: u("tokens")?,
            seconds: f("seconds")?,
        }),
        other => return Err(bad(format!("unknown event `{other}`"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_become_engine_events() {
        let out = Path::new("/job/out");
        let e = parse_event(
            r#"{"event":"checkpoint","step":4,"path":"checkpoints/checkpoint-4"}"#,
            out,
        );
        match e.unwrap() {
            Parsed::Event(Event::Checkpoint { step, path }) => {
                assert_eq!((step, path), (4, out.join("checkpoints/checkpoint-4")))
            }
            _ => panic!("not a checkpoint"),
        }
        for bad in [
            r#"{"event":"checkpoint","step":4,"path":"../../etc"}"#,
            r#"{"event":"checkpoint","step":4,"path":"/etc"}"#,
            r#"{"event":"step","step":1}"#,
            r#"{"event":"launch"}"#,
            "not json",
        ] {
            let e = parse_event(bad, out).err().unwrap().to_string();
            assert!(e.contains("bad progress line"), "{bad}: {e}");
        }
        let done = r#"{"event":"done","steps":8,"stopped_by":"completed","kept_step":8,"best_val_loss":null,"first_loss":2.5,"last_loss":1.0,"tokens":640,"seconds":3.5}"#;
        match parse_event(done, out).unwrap() {
            Parsed::Done(r) => {
                assert_eq!((r.steps, r.kept_step, r.tokens, r.best_val_loss), (8, 8, 640, None))
            }
            _ => panic!("not done"),
        }
    }
}
