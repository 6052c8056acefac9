//! The real host: thin calls into the `weft:stage` imports, converting between
//! the SDK's plain types and the generated ones by moving, never copying, payloads.

use crate::__private::bindings::weft::stage::{emit, log as wit_log, objects, state, types};
use crate::log::Level;
use crate::{Item, StageError};

pub(crate) fn emit_partial(item: Item) {
    emit::partial(&item.into());
}

pub(crate) fn emit_progress(done: u64, total: Option<u64>, message: &str) {
    emit::progress(done, total, message);
}

pub(crate) fn state_get(key: &str) -> Option<Vec<u8>> {
    state::get(key)
}

pub(crate) fn state_set(key: &str, value: &[u8]) {
    state::set(key, value);
}

pub(crate) fn state_delete(key: &str) {
    state::delete(key);
}

pub(crate) fn objects_put(data: &[u8]) -> String {
    objects::put(data)
}

pub(crate) fn objects_get(id: &str) -> Result<Vec<u8>, String> {
    objects::get(id)
}

pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => wit_log::Level::Trace,
        Level::Debug => wit_log::Level::Debug,
        Level::Info => wit_log::Level::Info,
        Level::Warn => wit_log::Level::Warn,
        Level::Error => wit_log::Level::Error,
    };
    wit_log::log(level, message);
}

impl From<Item> for types::Item {
    fn from(item: Item) -> Self {
        types::Item {
            key: item.key,
            content_type: item.content_type,
            payload: item.payload,
        }
    }
}

impl From<types::Item> for Item {
    fn from(item: types::Item) -> Self {
        Item {
            key: item.key,
            content_type: item.content_type,
            payload: item.payload,
        }
    }
}

impl From<StageError> for types::StageError {
    fn from(err: StageError) -> Self {
        match err {
            StageError::BadInput(m) => types::StageError::BadInput(m),
            StageError::Retryable(m) => types::StageError::Retryable(m),
            StageError::Fatal(m) => types::StageError::Fatal(m),
        }
    }
}
