//! The in-process test host used off Wasm: it records what a stage emits and
//! logs, and keeps state and objects in memory.
//!
//! Each thread has a current host (a fresh, empty one by default, so helper
//! calls outside a harness are harmless). [`crate::testing::Harness`] installs its
//! own host around every call into the stage, so two harnesses never share state
//! even on one thread, and Rust's one-thread-per-test keeps tests apart.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::Item;
use crate::log::Level;
use crate::testing::{LogRecord, Progress};

/// Everything a stage did through its host capabilities.
#[derive(Debug, Default)]
pub(crate) struct TestHost {
    pub(crate) partials: Vec<Item>,
    pub(crate) progress: Vec<Progress>,
    pub(crate) logs: Vec<LogRecord>,
    pub(crate) state: BTreeMap<String, Vec<u8>>,
    pub(crate) objects: BTreeMap<String, Vec<u8>>,
}

/// A host shared between a harness and the thread-local slot.
pub(crate) type SharedHost = Rc<RefCell<TestHost>>;

thread_local! {
    static CURRENT: RefCell<SharedHost> = RefCell::new(SharedHost::default());
}

/// Runs `f` with `host` as this thread's host, restoring the previous one after,
/// even when `f` panics (a test may catch the panic and go on).
pub(crate) fn with_host<R>(host: &SharedHost, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<SharedHost>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                CURRENT.with(|current| current.replace(previous));
            }
        }
    }
    let previous = CURRENT.with(|current| current.replace(Rc::clone(host)));
    let _restore = Restore(Some(previous));
    f()
}

/// Applies `f` to this thread's current host.
fn current<R>(f: impl FnOnce(&mut TestHost) -> R) -> R {
    let host = CURRENT.with(|current| Rc::clone(&current.borrow()));
    let mut host = host.borrow_mut();
    f(&mut host)
}

/// A content-addressed id for test objects: FNV-1a (64-bit) in hex. Stable and
/// dependency-free, but not the blake3 ids the daemon hands out, so tests must
/// not hard-code daemon ids.
pub(crate) fn object_id(data: &[u8]) -> String {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

pub(crate) fn emit_partial(item: Item) {
    current(|host| host.partials.push(item));
}

pub(crate) fn emit_progress(done: u64, total: Option<u64>, message: &str) {
    let message = message.to_string();
    current(|host| {
        host.progress.push(Progress {
            done,
            total,
            message,
        })
    });
}

pub(crate) fn state_get(key: &str) -> Option<Vec<u8>> {
    current(|host| host.state.get(key).cloned())
}

pub(crate) fn state_set(key: &str, value: &[u8]) {
    current(|host| host.state.insert(key.to_string(), value.to_vec()));
}

pub(crate) fn state_delete(key: &str) {
    current(|host| host.state.remove(key));
}

pub(crate) fn objects_put(data: &[u8]) -> String {
    let id = object_id(data);
    current(|host| host.objects.insert(id.clone(), data.to_vec()));
    id
}

pub(crate) fn objects_get(id: &str) -> Result<Vec<u8>, String> {
    current(|host| host.objects.get(id).cloned())
        .ok_or_else(|| format!("object {id:?} not found in the test host"))
}

pub(crate) fn log(level: Level, message: &str) {
    // Printed too, so `cargo test` shows a failing test's stage logs.
    eprintln!("[stage {level}] {message}");
    let message = message.to_string();
    current(|host| host.logs.push(LogRecord { level, message }));
}
