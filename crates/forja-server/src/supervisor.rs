//! Supervision of the node's background work: a loop (the control tick,
//! webhook delivery, the scheduler) or an in-process worker that crashes
//! is started again after a backoff (1 s, doubling to 60 s), and the crash
//! is counted. Three crashes of one loop within ten minutes mark the node
//! degraded: `/ready` answers 503 naming it and `forja_degraded` is 1,
//! until ten minutes pass without a crash.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Crashes within this window count toward degradation.
const WINDOW: Duration = Duration::from_secs(600);
/// Crashes within [`WINDOW`] that mark the node degraded.
const DEGRADED_AFTER: usize = 3;

#[derive(Debug, Default)]
struct Crashes {
    total: u64,
    recent: VecDeque<Instant>,
    last: String,
}

/// What the supervisor knows of the node's background work.
#[derive(Debug, Default)]
pub struct Health {
    crashes: Mutex<BTreeMap<&'static str, Crashes>>,
}

impl Health {
    fn crashed(&self, name: &'static str, why: String) {
        let mut all = self.crashes.lock().unwrap_or_else(|e| e.into_inner());
        let c = all.entry(name).or_default();
        c.total += 1;
        c.recent.push_back(Instant::now());
        c.last = why;
    }

    /// Why the node is degraded, if it is.
    pub fn degraded(&self) -> Option<String> {
        let mut all = self.crashes.lock().unwrap_or_else(|e| e.into_inner());
        let mut why = Vec::new();
        for (name, c) in all.iter_mut() {
            while c.recent.front().is_some_and(|t| t.elapsed() > WINDOW) {
                c.recent.pop_front();
            }
            if c.recent.len() >= DEGRADED_AFTER {
                why.push(format!(
                    "{name} crashed {} times in {} minutes (last: {})",
                    c.recent.len(),
                    WINDOW.as_secs() / 60,
                    c.last
                ));
            }
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Restarts so far, by loop.
    pub fn restarts(&self) -> Vec<(&'static str, u64)> {
        let all = self.crashes.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().map(|(n, c)| (*n, c.total)).collect()
    }
}

/// The text of a panic's payload.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    forja_core::panic_message(p).unwrap_or("a panic").to_string()
}

fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.min(6)).min(Duration::from_secs(60))
}

/// Runs the future `make` returns on `rt`, again after a backoff each
/// time it panics, until it returns or `stop` is set.
pub fn supervise<F, Fut>(
    rt: &tokio::runtime::Handle,
    health: Arc<Health>,
    name: &'static str,
    stop: Arc<AtomicBool>,
    make: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    rt.spawn(async move {
        let mut n = 0;
        loop {
            match tokio::spawn(make()).await {
                Ok(()) => return,
                Err(e) if e.is_cancelled() => return,
                Err(e) => {
                    let why = panic_text(&*e.into_panic());
                    tracing::error!(task = name, "crashed: {why}; restarting");
                    health.crashed(name, why);
                }
            }
            tokio::time::sleep(backoff(n)).await;
            n += 1;
            if stop.load(Ordering::SeqCst) {
                return;
            }
        }
    })
}

/// [`supervise`] for a blocking loop on its own thread (a training worker).
pub fn supervise_thread(
    health: Arc<Health>,
    name: &'static str,
    stop: Arc<AtomicBool>,
    run: impl Fn() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let mut n = 0;
        loop {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&run)) {
                Ok(()) => return,
                Err(p) => {
                    let why = panic_text(&*p);
                    tracing::error!(task = name, "crashed: {why}; restarting");
                    health.crashed(name, why);
                }
            }
            let until = Instant::now() + backoff(n);
            while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            n += 1;
            if stop.load(Ordering::SeqCst) {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_recent_crashes_degrade() {
        let h = Health::default();
        h.crashed("scheduler", "boom".into());
        h.crashed("scheduler", "boom".into());
        assert_eq!(h.degraded(), None);
        h.crashed("scheduler", "boom again".into());
        let why = h.degraded().unwrap();
        assert!(why.contains("scheduler crashed 3 times") && why.contains("boom again"), "{why}");
        assert_eq!(h.restarts(), vec![("scheduler", 3)]);
    }
}
