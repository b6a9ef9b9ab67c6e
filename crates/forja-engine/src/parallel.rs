//! Fork-join for the inference hot path.
//!
//! Decoding one token runs ~150 parallel loops of 5–50 µs each (one per
//! matrix product or attention layer). A work-stealing pool that lets idle
//! workers sleep pays a wake-up on many of them; llama.cpp spins instead,
//! and so does [`SpinPool`]: its workers busy-wait for the next job while
//! generation runs and park after a few milliseconds without one.
//!
//! Kernels call [`for_each`] / [`for_each_mut`], which use the pool
//! installed on the calling thread ([`SpinPool::install`]) and fall back to
//! rayon's global pool elsewhere (tests, tools), so kernel code does not
//! care which runs it. Each loop is also where background work gives way
//! to serving ([`crate::yielding`]). This is written by hand because no maintained crate
//! offers a spinning fork-join pool with parking.

#![allow(unsafe_code)]

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
const SPIN: Duration = Duration::from_millis(3);

/// Pause-spins (tens of µs: `pause` takes ~40-140 cycles) before an idle
/// worker under [`IdleYield`] starts yielding its core on every spin instead.
const YIELD_AFTER: u32 = 1 << 10;

thread_local! {
    static CURRENT: Cell<*const Inner> = const { Cell::new(std::ptr::null()) };
    /// Whether the loops this thread submits come from training (see
    /// [`IdleYield`]).
    static TRAINING: Cell<bool> = const { Cell::new(false) };
}

/// While alive, the pool's workers, between this thread's parallel loops,
/// give their core away (`yield`) after a short spin instead of spinning
/// until they park. A training step runs candle's element-wise ops (on
/// rayon) between its kernels: a spinning worker took a core they wanted
/// (a BF16 step: 445–479 → 538–540 tok/s). Inference keeps the pure spin: its gaps
/// are short, and a yielded core can go to a busy server thread for a
/// whole time slice (4 concurrent streams lost ~10 % with it).
pub(crate) struct IdleYield {
    prev: bool,
}

impl IdleYield {
    /// Turns yielding on for this thread's loops until the guard drops.
    pub(crate) fn on() -> Self {
        IdleYield { prev: TRAINING.with(|t| t.replace(true)) }
    }
}

impl Drop for IdleYield {
    fn drop(&mut self) {
        TRAINING.with(|t| t.set(self.prev));
    }
}

/// Runs `f(i)` for `i` in `0..n`, in parallel when a pool is installed on
/// this thread (else on rayon's pool).
pub(crate) fn for_each(n: usize, f: impl Fn(usize) + Sync) {
    if n == 0 {
        return;
    }
    crate::yielding::point();
    if n == 1 {
        return f(0);
    }
    let cur = CURRENT.with(Cell::get);
    if cur.is_null() {
        use rayon::prelude::*;
        return (0..n).into_par_iter().for_each(&f);
    }
    // SAFETY: CURRENT is set only inside `SpinPool::install`, which keeps the
    // pool (and so `Inner`) alive until it resets CURRENT.
    unsafe { &*cur }.run(n, &f);
}

/// Runs `f(i, &mut items[i])` for every item, in parallel.
pub(crate) fn for_each_mut<T: Send>(items: &mut [T], f: impl Fn(usize, &mut T) + Sync) {
    let base = SendPtr(items.as_mut_ptr());
    for_each(items.len(), |i| {
        let p = &base;
        // SAFETY: `for_each` calls every index in 0..len exactly once, so each
        // item is borrowed mutably by one task only, while `items` is
        // borrowed for the whole call.
        f(i, unsafe { &mut *p.0.add(i) })
    });
}

/// Runs `f(i, chunk_i)` over `chunk`-sized pieces of `data`, in parallel.
pub(crate) fn for_chunks_mut<T: Send>(
    data: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let mut pieces: Vec<&mut [T]> = data.chunks_mut(chunk.max(1)).collect();
    for_each_mut(&mut pieces, |i, c| f(i, c));
}

/// Threads that [`for_each`] spreads work over on this thread.
pub(crate) fn num_threads() -> usize {
    let cur = CURRENT.with(Cell::get);
    if cur.is_null() {
        rayon::current_num_threads()
    } else {
        // SAFETY: as in `for_each`.
        unsafe { &*cur }.threads
    }
}

struct SendPtr<T>(*mut T);
// SAFETY: used only to hand out disjoint `&mut` items to tasks (above).
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// A job published to the workers. Lives on the submitting thread's stack.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    n: usize,
    next: AtomicUsize,
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl Job<'_> {
    /// Claims and runs tasks until none are left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.n {
                return;
            }
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| (self.f)(i))) {
                self.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(p);
            }
        }
    }
}

struct Inner {
    threads: usize,
    /// Bumped once per job; workers wait for it to change.
    epoch: AtomicUsize,
    /// The current job, valid while `busy` > 0.
    job: AtomicPtr<Job<'static>>,
    /// Workers that have not finished the current job.
    busy: AtomicUsize,
    /// Idle workers yield their core after a short spin ([`IdleYield`] of
    /// the last submitter).
    idle_yield: AtomicBool,
    shutdown: AtomicBool,
    /// One submitter at a time; others (and nested calls) run serially.
    submit: Mutex<()>,
    parked: Mutex<usize>,
    wake: Condvar,
}

impl Inner {
    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        let Ok(_guard) = self.submit.try_lock() else {
            (0..n).for_each(f);
            return;
        };
        let job = Job { f, n, next: AtomicUsize::new(0), panic: Mutex::new(None) };
        let workers = self.threads - 1;
        self.busy.store(workers, Ordering::Relaxed);
        self.idle_yield.store(TRAINING.with(Cell::get), Ordering::Relaxed);
        // SAFETY (lifetime erasure): workers dereference this pointer only
        // between seeing the new epoch and decrementing `busy`, and this
        // function does not return before `busy` is back to 0.
        let ptr = &job as *const Job<'_> as *mut Job<'static>;
        self.job.store(ptr, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::Release);
        if *self.parked.lock().unwrap_or_else(|e| e.into_inner()) > 0 {
            self.wake.notify_all();
        }
        job.work();
        while self.busy.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        self.job.store(std::ptr::null_mut(), Ordering::Relaxed);
        if let Some(p) = job.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
            resume_unwind(p);
        }
    }

    fn worker(&self) {
        let mut seen = 0;
        loop {
            let mut idle_since = None;
            let mut spins = 0u32;
            let epoch = loop {
                let e = self.epoch.load(Ordering::Acquire);
                if e != seen || self.shutdown.load(Ordering::Relaxed) {
                    break e;
                }
                spins += 1;
                if spins >= YIELD_AFTER && self.idle_yield.load(Ordering::Relaxed) {
                    // A gap longer than a join, in training: give the core
                    // to whatever else wants it while still answering fast.
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                if spins.is_multiple_of(1024) {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > SPIN {
                        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
                        *parked += 1;
                        while self.epoch.load(Ordering::Acquire) == seen
                            && !self.shutdown.load(Ordering::Relaxed)
                        {
                            parked = self.wake.wait(parked).unwrap_or_else(|e| e.into_inner());
                        }
                        *parked -= 1;
                        idle_since = None;
                    }
                }
            };
            if self.shutdown.load(Ordering::Relaxed) {
                return;
            }
            seen = epoch;
            let job = self.job.load(Ordering::Relaxed);
            // SAFETY: the submitter published `job` before bumping the epoch
            // (Release/Acquire) and keeps it alive until we decrement `busy`.
            unsafe { &*job }.work();
            self.busy.fetch_sub(1, Ordering::Release);
        }
    }
}

/// A pool of spinning workers for the engine's kernels.
pub struct SpinPool {
    inner: Arc<Inner>,
    handles: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for SpinPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpinPool({} threads)", self.inner.threads)
    }
}

impl SpinPool {
    /// A pool using `threads` threads in all: the submitting thread plus
    /// `threads - 1` workers.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let inner = Arc::new(Inner {
            threads,
            epoch: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            busy: AtomicUsize::new(0),
            idle_yield: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            submit: Mutex::new(()),
            parked: Mutex::new(0),
            wake: Condvar::new(),
        });
        let handles = (1..threads)
            .map(|i| {
                let inner = inner.clone();
                std::thread::Builder::new()
                    .name(format!("forja-worker-{i}"))
                    .spawn(move || inner.worker())
            })
            .collect::<std::io::Result<_>>()?;
        Ok(SpinPool { inner, handles })
    }

    /// Threads in the pool, the submitting one included.
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// Runs `f` on this thread with the pool serving every parallel loop
    /// inside it.
    pub fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Reset(*const Inner);
        impl Drop for Reset {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let prev = CURRENT.with(|c| c.replace(Arc::as_ptr(&self.inner)));
        let _reset = Reset(prev);
        f()
    }
}

impl Drop for SpinPool {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::Relaxed);
        {
            let _parked = self.inner.parked.lock().unwrap_or_else(|e| e.into_inner());
            self.inner.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_task_runs_once_on_the_pool_and_without_it() {
        let pool = SpinPool::new(3).unwrap();
        for installed in [true, false] {
            for n in [0, 1, 2, 7, 1000] {
                let hits: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
                let go = || {
                    for_each(n, |i| {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                    })
                };
                if installed {
                    pool.install(go);
                } else {
                    go();
                }
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "n={n}");
            }
        }
        let mut v = vec![0usize; 100];
        pool.install(|| for_each_mut(&mut v, |i, x| *x = i * 2));
        assert!(v.iter().enumerate().all(|(i, &x)| x == i * 2));
    }

    #[test]
    fn nested_loops_run_serially_instead_of_deadlocking() {
        let pool = SpinPool::new(2).unwrap();
        let total = AtomicU64::new(0);
        pool.install(|| {
            for_each(4, |_| {
                for_each(5, |_| {
                    total.fetch_add(1, Ordering::Relaxed);
                })
            })
        });
        assert_eq!(total.load(Ordering::Relaxed), 20);
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_pool_survives() {
        let pool = SpinPool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.install(|| for_each(8, |i| assert!(i != 5, "task 5 fails")))
        }));
        assert!(r.is_err());
        let hits = AtomicU64::new(0);
        pool.install(|| {
            for_each(8, |_| {
                hits.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(hits.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn yielding_workers_still_take_every_task_and_the_guard_restores() {
        let pool = SpinPool::new(2).unwrap();
        let hits = AtomicU64::new(0);
        pool.install(|| {
            let guard = IdleYield::on();
            assert!(TRAINING.with(Cell::get));
            for _ in 0..3 {
                // A gap long enough for the worker to start yielding.
                std::thread::sleep(Duration::from_micros(300));
                for_each(16, |_| {
                    hits.fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(pool.inner.idle_yield.load(Ordering::Relaxed));
            drop(guard);
            assert!(!TRAINING.with(Cell::get));
            for_each(16, |_| {
                hits.fetch_add(1, Ordering::Relaxed);
            });
            assert!(!pool.inner.idle_yield.load(Ordering::Relaxed));
        });
        assert_eq!(hits.load(Ordering::Relaxed), 64);
    }

    #[test]
    fn parked_workers_wake_up() {
        let pool = SpinPool::new(2).unwrap();
        std::thread::sleep(SPIN * 3);
        let hits = AtomicU64::new(0);
        pool.install(|| {
            for_each(64, |_| {
                hits.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(hits.load(Ordering::Relaxed), 64);
    }
}
