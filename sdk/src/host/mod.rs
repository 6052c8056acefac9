//! Where the host capabilities go: the component's imports inside Wasm, the
//! in-process test host everywhere else. Both expose the same functions, so the
//! public helper modules ([`crate::emit`], [`crate::state`], …) are written once.

#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(target_arch = "wasm32")]
pub(crate) use component::*;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::{
    emit_partial, emit_progress, log, objects_get, objects_put, state_delete, state_get, state_set,
};
