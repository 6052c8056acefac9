//! A pass's threads, which spin between its parallel steps.
//!
//! A decoding step of a dozen joined sessions is some 150 parallel steps
//! (products, attention) of 20-200 µs each, with short serial work between
//! them. Run as the thread pool's jobs, every step wakes the other threads,
//! which went back to sleep (sched_yield, then a futex) during the serial
//! work: a profile of a 16-session step put 15% of it in those system calls,
//! and each step's start waited for them. A [`Team`] is the thread running
//! the pass plus the pool's other threads, each taken for the whole pass
//! by one job ([`run`]); between steps they spin on an atomic, so a step
//! starts as soon as it is posted, and its tasks are claimed one at a time
//! from a counter, so the threads finish together. A helper that is late
//! (its thread busy with other work) joins at the next step: a step waits
//! only for its own tasks, never for a helper.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use rayon::prelude::*;

/// A step's tasks as the helpers see them: `&dyn Fn(usize)` with its
/// lifetime erased ([`Team::for_each`] returns only once every claimed task
/// has run, and a task can be claimed only while its step is posted).
#[derive(Clone, Copy)]
struct Job(*const (dyn Fn(usize) + Sync));
// SAFETY: the closure behind it is `Sync`, and it is called only while the
// step that posted it waits (above).
unsafe impl Send for Job {}

/// The posted step: its tasks, how many, and its number.
#[derive(Clone, Copy)]
struct Step {
    job: Job,
    tasks: usize,
    number: u32,
}

/// What the threads of a team share.
struct Shared {
    /// The number of the posted step; helpers spin until it moves.
    posted: AtomicU32,
    step: Mutex<Option<Step>>,
    /// The posted step's number (high half) and next task (low half): a
    /// task is claimed only with its step's number, so a helper that read
    /// an older step cannot run a newer one's task with the old closure.
    claim: AtomicU64,
    /// Tasks of the posted step that have run.
    finished: AtomicUsize,
    /// Set when the pass is over: the helpers return.
    over: AtomicBool,
    /// The first panic of a task, raised on the pass's thread.
    panicked: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Shared {
    /// The next task of step `number`, if any is left.
    fn claim(&self, number: u32, tasks: usize) -> Option<usize> {
        let mut c = self.claim.load(Ordering::Acquire);
        loop {
            let (step, next) = ((c >> 32) as u32, (c & 0xffff_ffff) as usize);
            if step != number || next >= tasks {
                return None;
            }
            match self
                .claim
                .compare_exchange_weak(c, c + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(next),
                Err(now) => c = now,
            }
        }
    }

    /// Runs tasks of `step` until none are left to claim.
    fn work(&self, step: Step) {
        while let Some(i) = self.claim(step.number, step.tasks) {
            // SAFETY: a task of this step is claimed, and its poster waits
            // for it before the closure goes (`Team::for_each`). (Not made
            // a reference before: a helper may read a step that is over.)
            let f = unsafe { &*step.job.0 };
            if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| f(i))) {
                self.panicked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
            }
            self.finished.fetch_add(1, Ordering::Release);
        }
    }
}

/// The threads of one pass ([`run`]).
pub(crate) struct Team {
    shared: Shared,
    threads: usize,
    /// The last step's number.
    steps: AtomicU32,
}

/// How a pass shares its parallel steps out: over a [`Team`], over the
/// thread pool's jobs, or not at all (a step too small to share).
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

    /// `f(i, row)` for each row of `data` (`width` values each): in a few
    /// runs of rows on a team; in order on this thread otherwise
    /// (elementwise work between products is not worth waking the pool
    /// for).
    pub(crate) fn rows<T: Send>(
        &self,
        data: &mut [T],
        width: usize,
        f: impl Fn(usize, &mut [T]) + Sync,
    ) {
        let n = data.len() / width;
        match self {
            Workers::Team(team) if n > 1 => {
                let per = n.div_ceil(team.threads * 2);
                let runs: Vec<&mut [T]> = data.chunks_mut(per * width).collect();
                self.for_each_item(runs, |r, run| {
                    for (i, row) in run.chunks_exact_mut(width).enumerate() {
                        f(r * per + i, row);
                    }
                });
            }
            _ => data
                .chunks_exact_mut(width)
                .enumerate()
                .for_each(|(i, row)| f(i, row)),
        }
    }

    /// How many threads share a step.
    pub(crate) fn threads(&self) -> usize {
        match self {
            Workers::Team(team) => team.threads,
            Workers::Pool => rayon::current_num_threads(),
            Workers::Caller => 1,
        }
    }
}

/// Runs `f` on a thread of the pool with a team of all the pool's threads:
/// the others are taken, one job each, until `f` returns.
pub(crate) fn run<R: Send>(f: impl FnOnce(&Team) -> R + Send) -> R {
    let team = Team {
        shared: Shared {
            posted: AtomicU32::new(0),
            step: Mutex::new(None),
            claim: AtomicU64::new(0),
            finished: AtomicUsize::new(0),
            over: AtomicBool::new(false),
            panicked: Mutex::new(None),
        },
        threads: rayon::current_num_threads(),
        steps: AtomicU32::new(0),
    };
    rayon::scope(|scope| {
        for _ in 1..team.threads {
            let shared = &team.shared;
            scope.spawn(move |_| help(shared));
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

/// Spins through a wait of the length of a pass's serial stretches (tens
/// of microseconds); past that, lets the OS run something else meanwhile.
fn pause(spins: &mut u32) {
    *spins += 1;
    if *spins < 1 << 14 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// A helper's loop: wait for a step, take its tasks, until the pass ends.
fn help(shared: &Shared) {
    let mut seen = 0;
    loop {
        let mut spins = 0;
        while shared.posted.load(Ordering::Acquire) == seen {
            if shared.over.load(Ordering::Acquire) {
                return;
            }
            pause(&mut spins);
        }
        let step = shared
            .step
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expect("a posted step");
        seen = step.number;
        shared.work(step);
    }
}

impl Team {
    /// Runs `f(i)` for every `i < tasks` on the team's threads, the pass's
    /// own included; returns when all have run. A task's panic is raised
    /// here, once the others have run.
    pub(crate) fn for_each(&self, tasks: usize, f: impl Fn(usize) + Sync) {
        let shared = &self.shared;
        if self.threads == 1 || tasks <= 1 {
            (0..tasks).for_each(f);
            return;
        }
        assert!(tasks < 1 << 32, "fewer tasks than the claim counter holds");
        let f: &(dyn Fn(usize) + Sync) = &f;
        // SAFETY: only the lifetime is erased; this function does not
        // return before every claimed task has run, and nothing can be
        // claimed after the last task.
        let job = Job(unsafe {
            std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f)
        });
        let number = self.steps.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let step = Step { job, tasks, number };
        *shared.step.lock().unwrap_or_else(|e| e.into_inner()) = Some(step);
        shared.finished.store(0, Ordering::Relaxed);
        shared
            .claim
            .store(u64::from(number) << 32, Ordering::Release);
        shared.posted.store(number, Ordering::Release);
        shared.work(step);
        let mut spins = 0;
        while shared.finished.load(Ordering::Acquire) < tasks {
            pause(&mut spins);
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
        run(|team| {
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
        run(|team| {
            let parts: Vec<&mut [usize]> = out.chunks_mut(8).collect();
            Workers::Team(team).for_each_item(parts, |i, part| part.fill(i));
        });
        assert!(out.iter().enumerate().all(|(j, &v)| v == j / 8));
    }

    #[test]
    fn rows_get_their_own_index_on_a_team_and_alone() {
        for rows in [1, 2, 3, 16, 17] {
            let want: Vec<usize> = (0..rows * 4).map(|i| i / 4 * 10).collect();
            let mut alone = vec![0usize; rows * 4];
            Workers::Caller.rows(&mut alone, 4, |i, row| row.fill(i * 10));
            assert_eq!(alone, want);
            let mut shared = vec![0usize; rows * 4];
            run(|team| Workers::Team(team).rows(&mut shared, 4, |i, row| row.fill(i * 10)));
            assert_eq!(shared, want, "{rows} rows");
        }
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
            run(|team| {
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
