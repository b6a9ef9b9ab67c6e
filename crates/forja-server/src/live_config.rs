//! Configuration that changes without a restart. The node's file is
//! watched (its contents polled every second) and re-read on SIGHUP or
//! `POST /v1/admin/config/reload`; the reader (the binary's, which parses
//! the file exactly as at start) validates the whole file first. A valid
//! file's hot settings apply at once (the schedule, the generation cap and
//! timeout, completion retention); settings that need a restart are named
//! and left as they are; an invalid file is refused with the reason and
//! the last good configuration stays. `GET /v1/admin/config` shows which.

use forja_control::tasks::TaskSet;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The settings a reload applies.
#[derive(Debug, Clone, PartialEq)]
pub struct HotSettings {
    /// Largest `max_tokens` accepted.
    pub max_tokens_cap: usize,
    /// A generation still running after this is cancelled.
    pub request_timeout: Duration,
    /// Seconds completions are kept.
    pub completion_retention_s: i64,
    /// The scheduled tasks.
    pub tasks: TaskSet,
}

/// A configuration file read again.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// Its hot settings.
    pub hot: HotSettings,
    /// Keys that differ from the running node's and need a restart.
    pub restart_needed: Vec<String>,
}

/// Reads the configuration file again (`Err`: why it is refused, one line).
pub type Reloader = Arc<dyn Fn() -> Result<Reloaded, String> + Send + Sync>;

/// What the last reloads did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// The file watched, if any.
    pub file: Option<PathBuf>,
    /// Reloads applied.
    pub applied: u64,
    /// Reloads refused.
    pub refused: u64,
    /// When the last good file was applied (unix seconds).
    pub applied_at: Option<i64>,
    /// Why the last reload was refused, if the last one was.
    pub last_error: Option<String>,
    /// Keys changed in the file that wait for a restart.
    pub restart_needed: Vec<String>,
}

/// The node's hot settings and its reload history.
pub struct LiveConfig {
    max_tokens_cap: AtomicUsize,
    request_timeout_ms: AtomicU64,
    completion_retention_s: AtomicI64,
    tasks: RwLock<TaskSet>,
    status: Mutex<ReloadStatus>,
    reloader: Option<Reloader>,
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveConfig")
    }
}

impl LiveConfig {
    /// The settings a node starts with; `reloader` reads `file` again.
    pub fn new(hot: HotSettings, file: Option<PathBuf>, reloader: Option<Reloader>) -> LiveConfig {
        LiveConfig {
            max_tokens_cap: AtomicUsize::new(hot.max_tokens_cap),
            request_timeout_ms: AtomicU64::new(hot.request_timeout.as_millis() as u64),
            completion_retention_s: AtomicI64::new(hot.completion_retention_s),
            tasks: RwLock::new(hot.tasks),
            status: Mutex::new(ReloadStatus { file, ..Default::default() }),
            reloader,
        }
    }

    /// Largest `max_tokens` accepted now.
    pub fn max_tokens_cap(&self) -> usize {
        self.max_tokens_cap.load(Ordering::Relaxed)
    }

    /// The generation timeout now.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.load(Ordering::Relaxed))
    }

    /// Seconds completions are kept now.
    pub fn completion_retention_s(&self) -> i64 {
        self.completion_retention_s.load(Ordering::Relaxed)
    }

    /// The schedule now.
    pub fn tasks(&self) -> TaskSet {
        self.tasks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The reload history.
    pub fn status(&self) -> ReloadStatus {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether there is a file to reload.
    pub fn reloadable(&self) -> bool {
        self.reloader.is_some()
    }

    /// Reads the file again and applies it, or refuses it; `why` is what
    /// asked (a signal, the API, the watcher), for the log.
    pub fn reload(&self, why: &str, now: i64) -> ReloadStatus {
        let Some(read) = &self.reloader else { return self.status() };
        let outcome = read();
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(r) => {
                self.max_tokens_cap.store(r.hot.max_tokens_cap, Ordering::Relaxed);
                self.request_timeout_ms
                    .store(r.hot.request_timeout.as_millis() as u64, Ordering::Relaxed);
                self.completion_retention_s.store(r.hot.completion_retention_s, Ordering::Relaxed);
                *self.tasks.write().unwrap_or_else(|e| e.into_inner()) = r.hot.tasks;
                st.applied += 1;
                st.applied_at = Some(now);
                st.last_error = None;
                st.restart_needed = r.restart_needed;
                if st.restart_needed.is_empty() {
                    tracing::info!("configuration reloaded ({why})");
                } else {
                    tracing::warn!(
                        "configuration reloaded ({why}); these keys changed and need a restart: {}",
                        st.restart_needed.join(", ")
                    );
                }
            }
            Err(e) => {
                st.refused += 1;
                tracing::error!(
                    "configuration reload refused ({why}): {e}; the last good one stays"
                );
                st.last_error = Some(e);
            }
        }
        st.clone()
    }
}

/// Reloads on SIGHUP and whenever the file's contents change (polled every
/// second), until `stop`. SIGHUP never ends the node, file or not.
pub(crate) async fn watch(
    live: Arc<LiveConfig>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    now: impl Fn() -> i64 + Send + 'static,
) {
    let file = live.status().file;
    let read = |f: &Option<PathBuf>| f.as_ref().and_then(|f| std::fs::read(f).ok());
    let mut seen = read(&file);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        #[cfg(unix)]
        let signalled = match hup.as_mut() {
            Some(h) => tokio::select! {
                _ = h.recv() => true,
                _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            },
            None => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                false
            }
        };
        #[cfg(not(unix))]
        let signalled = {
            tokio::time::sleep(Duration::from_secs(1)).await;
            false
        };
        let current = read(&file);
        let changed = current != seen;
        if signalled && file.is_none() {
            tracing::warn!(
                "SIGHUP: this node was started without a configuration file; nothing to reload"
            );
            continue;
        }
        if signalled || changed {
            seen = current;
            let l = live.clone();
            let why = if signalled { "SIGHUP" } else { "the file changed" };
            let at = now();
            let _ = tokio::task::spawn_blocking(move || l.reload(why, at)).await;
        }
    }
}
