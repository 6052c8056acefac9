//! A pass's own threads, which spin between its parallel steps.
//!
//! A decoding step of a dozen joined sessions is some 150 parallel steps
//! (products, attention, norms) of 20-200 µs each, with short serial work
//! between them. On the thread pool every step wakes the other threads,
//! which went back to sleep (sched_yield, then a futex) during the serial
//! work: a profile of a 16-session step put 15% of it in those system calls
//! and each step's start waited for them. A [`Team`] is the calling thread
//! plus helpers started for one pass; between steps the helpers spin on an
//! atomic, so a step starts as soon as it is posted, and its tasks are
//! handed out one at a time from a counter, so the threads finish
//! together.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

/// A step's tasks as the helpers see them: `&dyn Fn(usize)` with its
/// lifetime erased ([`Team::for_each`] waits for every helper to be done
/// with it before it returns).
type Job = *const (dyn Fn(usize) + Sync);

/// What the threads of a team share.
struct Shared {
    /// Bumped to post a step; the helpers spin until it moves.
    posted: AtomicUsize,
    /// The posted step's tasks and how many there are.
    job: Mutex<Option<(SendJob, usize)>>,
    /// The next task to hand out.
    next: AtomicUsize,
    /// Helpers done with the posted step.
    done: AtomicUsize,
    /// Set when the pass is over: the helpers return.
    over: AtomicBool,
    /// The first panic of a helper's task, re-raised on the caller.
    panicked: Mutex<Option<Box<dyn Any + Send>>>,
}

/// [`Job`], sent to the helpers.
#[derive(Clone, Copy)]
struct SendJob(Job);
// SAFETY: the closure behind it is `Sync` and outlives every use
// ([`Team::for_each`]).
unsafe impl Send for SendJob {}

/// The threads of one pass ([`run`]).
pub(crate) struct Team {
    shared: Shared,
    helpers: usize,
}

/// How a pass shares its parallel steps out: over a [`Team`], over the
/// global thread pool (a pass too small to be worth a team's start), or
/// not at all (a step too small to be worth waking the pool).
#[derive(Clone, Copy)]
pub(crate) enum Workers<'a> {
    Team(&'a Team),
    Pool,
    Caller,
}

impl Workers<'_> {
    /// Runs `f(i)` for every `i < tasks`, shared out over the threads;
    /// returns when all have run.
    pub(crate) fn for_each(&self, tasks: usize, f: impl Fn(usize) + Sync) {
        match self {
            Workers::Team(team) => team.for_each(tasks, f),
            Workers::Pool => (0..tasks).into_par_iter().for_each(&f),
            Workers::Caller => (0..tasks).for_each(f),
        }
    }

    /// `f(i, item)` for each of `items`, shared out over the threads (each
    /// item to exactly one of them).
    pub(crate) fn for_each_item<T: Send>(&self, items: Vec<T>, f: impl Fn(usize, T) + Sync) {
        let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
        self.for_each(slots.len(), |i| {
            let item = slots[i]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("each task runs once");
            f(i, item);
        });
    }

    /// How many threads share a step.
    pub(crate) fn threads(&self) -> usize {
        match self {
            Workers::Team(team) => team.helpers + 1,
            Workers::Pool => rayon::current_num_threads(),
            Workers::Caller => 1,
        }
    }
}

/// Runs `f` with a team of `threads` (the caller and `threads - 1`
/// helpers, started now and stopped when `f` returns).
pub(crate) fn run<R>(threads: usize, f: impl FnOnce(&Team) -> R) -> R {
    let team = Team {
        shared: Shared {
            posted: AtomicUsize::new(0),
            job: Mutex::new(None),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            over: AtomicBool::new(false),
            panicked: Mutex::new(None),
        },
        helpers: threads.saturating_sub(1),
    };
    std::thread::scope(|scope| {
        for _ in 0..team.helpers {
            let shared = &team.shared;
            scope.spawn(move || help(shared));
        }
        // The helpers stop even if `f` panics.
        struct Over<'a>(&'a AtomicBool);
        impl Drop for Over<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _over = Over(&team.shared.over);
        f(&team)
    })
}

/// A helper's loop: wait for a step, take its tasks, say when done.
fn help(shared: &Shared) {
    let mut seen = 0;
    loop {
        let mut spins = 0u32;
        let posted = loop {
            let posted = shared.posted.load(Ordering::Acquire);
            if posted != seen {
                break posted;
            }
            if shared.over.load(Ordering::Acquire) {
                return;
            }
            // Spin through the short serial work between steps; give the
            // core away only if the caller is gone for long (a pass's
            // serial stretches are tens of microseconds).
            spins += 1;
            if spins < 1 << 14 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        };
        seen = posted;
        let (job, tasks) = shared
            .job
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expect("a posted step");
        // SAFETY: the caller waits for `done` before the closure goes.
        let f = unsafe { &*job.0 };
        if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| take_tasks(shared, tasks, f))) {
            // Let the caller finish the step's other tasks, then raise it.
            shared.next.store(tasks, Ordering::Relaxed);
            shared
                .panicked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(e);
        }
        shared.done.fetch_add(1, Ordering::AcqRel);
    }
}

/// Runs tasks of the posted step until none are left.
fn take_tasks(shared: &Shared, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= tasks {
            return;
        }
        f(i);
    }
}

impl Team {
    /// Runs `f(i)` for every `i < tasks` on the team's threads, the caller
    /// included; returns when all have run. A task's panic is raised here.
    pub(crate) fn for_each(&self, tasks: usize, f: impl Fn(usize) + Sync) {
        let shared = &self.shared;
        if self.helpers == 0 || tasks <= 1 {
            (0..tasks).for_each(f);
            return;
        }
        let f: &(dyn Fn(usize) + Sync) = &f;
        // SAFETY: only the lifetime is erased; this function does not
        // return (nor unwind) before every helper is done with `f`.
        let job: Job = unsafe { std::mem::transmute(f) };
        *shared.job.lock().unwrap_or_else(|e| e.into_inner()) = Some((SendJob(job), tasks));
        shared.next.store(0, Ordering::Relaxed);
        shared.done.store(0, Ordering::Relaxed);
        shared.posted.fetch_add(1, Ordering::AcqRel);
        let mine = panic::catch_unwind(AssertUnwindSafe(|| take_tasks(shared, tasks, f)));
        if mine.is_err() {
            shared.next.store(tasks, Ordering::Relaxed);
        }
        while shared.done.load(Ordering::Acquire) < self.helpers {
            std::hint::spin_loop();
        }
        if let Err(e) = mine {
            panic::resume_unwind(e);
        }
        if let Some(e) = shared
            .panicked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            panic::resume_unwind(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    #[test]
    fn every_task_runs_once_over_many_steps() {
        run(3, |team| {
            for tasks in [0, 1, 2, 7, 100, 1000] {
                let ran: Vec<AtomicU64> = (0..tasks).map(|_| AtomicU64::new(0)).collect();
                team.for_each(tasks, |i| {
                    ran[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(
                    ran.iter().all(|r| r.load(Ordering::Relaxed) == 1),
                    "{tasks} tasks"
                );
            }
        });
    }

    #[test]
    fn items_go_to_their_tasks() {
        let mut out = vec![0usize; 64];
        run(2, |team| {
            let parts: Vec<&mut [usize]> = out.chunks_mut(8).collect();
            Workers::Team(team).for_each_item(parts, |i, part| part.fill(i));
        });
        assert!(out.iter().enumerate().all(|(j, &v)| v == j / 8));
    }

    #[test]
    fn the_pool_runs_the_same_steps() {
        let sum = AtomicU64::new(0);
        Workers::Pool.for_each(100, |i| {
            sum.fetch_add(i as u64, Ordering::Relaxed);
        });
        assert_eq!(sum.into_inner(), 4950);
    }

    #[test]
    fn a_helpers_panic_reaches_the_caller_and_the_team_stops() {
        let caught = panic::catch_unwind(|| {
            run(2, |team| {
                let calls = AtomicU64::new(0);
                team.for_each(64, |i| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    if i == 40 {
                        panic!("task 40 failed");
                    }
                });
            })
        });
        let e = caught.expect_err("the panic comes through");
        assert_eq!(e.downcast_ref::<&str>(), Some(&"task 40 failed"));
    }
}
