//! `forja generate` and `forja chat`.

use crate::args::{ChatArgs, GenerateArgs, ModelArgs};
use crate::{models, progress};
use anyhow::{Context, Result};
use forja_core::ChatMessage;
use forja_engine::{Engine, Timings};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

/// Loads the model named by `--model`, with a progress bar.
pub fn load(a: &ModelArgs) -> Result<Engine> {
    let path = models::resolve(&a.model)?;
    load_with(&path, &a.load_options())
}

/// Loads a model from a resolved path, with a progress bar.
pub fn load_with(path: &std::path::Path, opts: &forja_engine::LoadOptions) -> Result<Engine> {
    let label = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (bar, mut cb) = progress::model_load(&label);
    let engine = Engine::load(path, opts, &mut cb);
    bar.finish_and_clear();
    Ok(engine?)
}

fn load_adapter(
    engine: &Engine,
    dir: Option<&std::path::Path>,
) -> Result<Option<forja_engine::lora::Adapter>> {
    dir.map(|d| engine.load_adapter(d)).transpose().map_err(Into::into)
}

fn print_timings(t: &Timings) {
    eprintln!(
        "prompt: {} tokens in {:.2}s ({:.1} tok/s); generation: {} tokens in {:.2}s ({:.1} tok/s)",
        t.prompt_tokens,
        t.prompt_secs,
        t.prompt_tps(),
        t.decode_tokens,
        t.decode_secs,
        t.decode_tps()
    );
}

pub fn generate(a: GenerateArgs) -> Result<ExitCode> {
    let params = a.sampling.params()?;
    let prompt = if a.prompt == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read the prompt from stdin")?;
        s
    } else {
        a.prompt.clone()
    };
    let engine = load(&a.model)?;
    let adapter = load_adapter(&engine, a.adapter.as_deref())?;
    let stdout_tty = std::io::stdout().is_terminal();
    // When stdout is a file or pipe, a bar on stderr shows progress; on a
    // terminal the streamed text is the progress.
    let bar = (!stdout_tty).then(|| progress::tokens(params.max_tokens));
    let mut out = std::io::stdout();
    let mut io_err = None;
    let (done, timings) = engine.generate(&prompt, &params, adapter.as_ref(), |text| {
        if let Some(b) = &bar {
            b.inc(1);
        }
        match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                io_err = Some(e);
                false
            }
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(e) = io_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("cannot write to stdout");
        }
    }
    if stdout_tty {
        println!();
    }
    tracing::info!(finish = done.finish.as_str(), tokens = done.tokens.len(), "done");
    if a.timings {
        print_timings(&timings);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn chat(a: ChatArgs) -> Result<ExitCode> {
    let params = a.sampling.params()?;
    let engine = load(&a.model)?;
    let adapter = load_adapter(&engine, a.adapter.as_deref())?;
    if !engine.has_chat_template() {
        anyhow::bail!(forja_engine::EngineError::NoChatTemplate);
    }
    let mut history: Vec<ChatMessage> = a.system.iter().map(ChatMessage::system).collect();
    let ask = |history: &mut Vec<ChatMessage>, question: String| -> Result<()> {
        history.push(ChatMessage::user(question));
        let mut out = std::io::stdout();
        let (reply, _) = engine.chat(history, &params, adapter.as_ref(), |t| {
            out.write_all(t.as_bytes()).and_then(|_| out.flush()).is_ok()
        })?;
        println!();
        history.push(ChatMessage::assistant(reply.text));
        Ok(())
    };
    if let Some(p) = a.prompt {
        ask(&mut history, p)?;
        return Ok(ExitCode::SUCCESS);
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "chatting with {} ({} threads, context {} tokens). /reset clears the conversation, /exit or Ctrl-D quits.",
            engine.info().name,
            engine.threads(),
            engine.ctx_size()
        );
    }
    let stdin = std::io::stdin();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush().ok();
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim().to_string();
        match line.as_str() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history.retain(|m| m.role == forja_core::Role::System);
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        if let Err(e) = ask(&mut history, line) {
            // A turn that no longer fits (context full) is reported, and the
            // conversation goes on.
            eprintln!("error: {e:#}");
            history.pop();
        }
    }
    Ok(ExitCode::SUCCESS)
}
