//! Background work (training, evaluation) giving way to foreground work
//! (serving) on the same cores.
//!
//! A node that trains and serves on one machine has one set of cores. The
//! kernels of both are fork-join loops over every core, and two of them at
//! once make each other's barriers wait on descheduled threads: measured
//! on 2 cores, chat latency rose 13.8× while a job trained. So background
//! work runs inside [`Yield::run`]: before each parallel loop of the
//! kernels (a few ms of work at most) the thread asks the [`Foreground`]
//! whether it is busy and, while it is, sleeps instead of competing.
//!
//! The policy is bounded so that sustained serving cannot starve training
//! for ever: a background thread waits at most [`Yield::max_wait`] in one go,
//! then runs [`Yield::burst`] without yielding before it yields again. Under
//! a saturating load, training keeps `burst / (max_wait + burst)` of the
//! time (5 % with the defaults); with gaps between requests it runs in the
//! gaps.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Work that background threads give way to.
pub trait Foreground: Send + Sync {
    /// Whether the foreground has work queued or running now.
    fn busy(&self) -> bool;
}

/// How a background thread shares the cores with a [`Foreground`].
#[derive(Clone)]
pub struct Yield {
    to: Arc<dyn Foreground>,
    /// Longest wait in one go.
    pub max_wait: Duration,
    /// Time run without yielding after a wait reached `max_wait`.
    pub burst: Duration,
    /// How often a waiting thread looks again.
    pub poll: Duration,
    paused_us: Arc<AtomicU64>,
}

impl std::fmt::Debug for Yield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Yield(max_wait {:?}, burst {:?})", self.max_wait, self.burst)
    }
}

impl Yield {
    /// Gives way to `to` with the default limits (wait up to 10 s, then run
    /// 0.5 s).
    pub fn new(to: Arc<dyn Foreground>) -> Self {
        Yield {
            to,
            max_wait: Duration::from_secs(10),
            burst: Duration::from_millis(500),
            poll: Duration::from_millis(1),
            paused_us: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Total time threads of this policy (and its clones) spent waiting.
    pub fn paused(&self) -> Duration {
        Duration::from_micros(self.paused_us.load(Ordering::Relaxed))
    }

    /// Runs `f` on this thread as background work: every parallel loop it
    /// starts first waits while the foreground is busy (within the limits).
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<State>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let prev = self.0.take();
                ACTIVE.with(|a| *a.borrow_mut() = prev);
            }
        }
        let state = State { policy: self.clone(), burst_until: None };
        let prev = ACTIVE.with(|a| a.borrow_mut().replace(state));
        let _restore = Restore(prev);
        f()
    }
}

struct State {
    policy: Yield,
    /// Runs without yielding until then.
    burst_until: Option<Instant>,
}

impl State {
    fn wait(&mut self) {
        let p = &self.policy;
        if let Some(until) = self.burst_until {
            if Instant::now() < until {
                return;
            }
            self.burst_until = None;
        }
        if !p.to.busy() {
            return;
        }
        let start = Instant::now();
        while p.to.busy() {
            if start.elapsed() >= p.max_wait {
                self.burst_until = Some(Instant::now() + p.burst);
                break;
            }
            std::thread::sleep(p.poll);
        }
        p.paused_us.fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

thread_local! {
    static ACTIVE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Called before each parallel loop: waits if this thread runs background
/// work and the foreground is busy.
pub(crate) fn point() {
    ACTIVE.with(|a| {
        if let Ok(mut a) = a.try_borrow_mut() {
            if let Some(s) = a.as_mut() {
                s.wait();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    struct Flag(AtomicBool);
    impl Foreground for Flag {
        fn busy(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn background_waits_while_the_foreground_is_busy_and_not_otherwise() {
        let flag = Arc::new(Flag(AtomicBool::new(true)));
        let y = Yield::new(flag.clone());
        let released = Arc::new(AtomicBool::new(false));
        let t = {
            let (flag, released) = (flag.clone(), released.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                released.store(true, Ordering::SeqCst);
                flag.0.store(false, Ordering::SeqCst);
            })
        };
        // The parallel loop starts only once the foreground is idle.
        y.run(|| crate::parallel::for_each(4, |_| assert!(released.load(Ordering::SeqCst))));
        t.join().unwrap();
        assert!(y.paused() >= Duration::from_millis(40), "{:?}", y.paused());
        // Outside `run` nothing waits, even with a busy foreground.
        flag.0.store(true, Ordering::SeqCst);
        let before = y.paused();
        crate::parallel::for_each(4, |_| ());
        assert_eq!(y.paused(), before);
    }

    #[test]
    fn a_busy_foreground_cannot_starve_the_background() {
        let flag = Arc::new(Flag(AtomicBool::new(true)));
        let mut y = Yield::new(flag);
        y.max_wait = Duration::from_millis(20);
        y.burst = Duration::from_secs(60);
        // The first loop waits max_wait; the burst lets the rest through.
        let loops = std::sync::atomic::AtomicUsize::new(0);
        y.run(|| {
            for _ in 0..100 {
                crate::parallel::for_each(2, |_| {
                    loops.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        assert_eq!(loops.load(Ordering::Relaxed), 200);
        assert!(y.paused() >= Duration::from_millis(20), "{:?}", y.paused());
    }
}
