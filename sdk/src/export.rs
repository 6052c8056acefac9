//! [`export_stage!`](crate::export_stage): turns a [`Stage`] into the component's
//! `init` and `process` exports.
//!
//! The macro expands, in the author's crate, to a type alias for
//! [`__private::Adapter<S>`], which implements the generated `Guest` trait, and to
//! wit-bindgen's export macro for it. The instance built by `init` lives in a
//! thread-local slot: a component instance is single-threaded and the host never
//! re-enters it, so a `RefCell` is enough.
//!
//! `init` also copies panic messages to the `log` import at error level, then
//! runs the default hook (which writes them to stderr, where the runtime may
//! attach them to the trap): a panic traps the instance, and the log makes the
//! message visible even when stderr goes nowhere.

/// Exports a [`Stage`](crate::Stage) type as the component's `init` and `process`.
///
/// Invoke it once, at the top level of the crate that builds the component
/// (a `cdylib` built for `wasm32-wasip2`). On other targets it only checks that
/// the type implements `Stage`, so the same crate builds natively for tests.
///
/// # Example
///
/// ```
/// use weft_sdk::{Config, Item, Stage, StageError};
///
/// struct Echo;
///
/// impl Stage for Echo {
///     fn init(_config: Config) -> Result<Self, String> {
///         Ok(Echo)
///     }
///
///     fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
///         Ok(batch)
///     }
/// }
///
/// weft_sdk::export_stage!(Echo);
/// ```
#[macro_export]
macro_rules! export_stage {
    ($stage:ty) => {
        const _: () = {
            fn __weft_assert_stage<S: $crate::Stage>() {}
            let _ = __weft_assert_stage::<$stage>;
        };

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __WeftStageExport = $crate::__private::Adapter<$stage>;
            $crate::__private::bindings::__weft_export_stage_world!(
                __WeftStageExport with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Support for [`export_stage!`](crate::export_stage); not a public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use component::Adapter;

    /// The generated bindings of the `weft:stage/stage` world.
    #[cfg(target_arch = "wasm32")]
    #[allow(missing_docs, missing_debug_implementations, clippy::all)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "weft:stage/stage",
            pub_export_macro: true,
            export_macro_name: "__weft_export_stage_world",
            default_bindings_module: "weft_sdk::__private::bindings",
            // wasi:nn is another package; generate it here too, as `wasi::nn`.
            generate_all,
        });
    }

    #[cfg(target_arch = "wasm32")]
    mod component {
        use std::any::Any;
        use std::cell::RefCell;
        use std::marker::PhantomData;
        use std::sync::Once;

        use super::bindings;
        use crate::{Config, Item, Stage, StageError};

        thread_local! {
            /// The stage built by the last successful `init`.
            static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
        }

        /// Implements the generated `Guest` trait for any stage `S`.
        pub struct Adapter<S>(PhantomData<S>);

        impl<S> std::fmt::Debug for Adapter<S> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Adapter")
            }
        }

        /// Logs panic messages (`panicked at src/lib.rs:7:9:\n<message>`) at error
        /// level before the panic traps. In Wasm that is all: the host keeps
        /// the logged message for the trap's error, and the default hook's
        /// copy on stderr (which it keeps too) said it twice. Natively the
        /// default hook prints it as well.
        fn log_panics() {
            static HOOK: Once = Once::new();
            HOOK.call_once(|| {
                let default = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| {
                    crate::log::log(crate::log::Level::Error, &info.to_string());
                    if !cfg!(target_arch = "wasm32") {
                        default(info);
                    }
                }));
            });
        }

        impl<S: Stage> bindings::Guest for Adapter<S> {
            fn init(config: Vec<(String, String)>) -> Result<(), String> {
                log_panics();
                // A failed re-init must not leave the old instance answering.
                INSTANCE.with(|slot| slot.borrow_mut().take());
                let stage = S::init(Config::from(config))?;
                INSTANCE.with(|slot| *slot.borrow_mut() = Some(Box::new(stage)));
                Ok(())
            }

            fn process(
                batch: Vec<bindings::Item>,
            ) -> Result<Vec<bindings::Item>, bindings::StageError> {
                INSTANCE.with(|slot| {
                    let mut slot = slot.borrow_mut();
                    let Some(stage) = slot.as_mut().and_then(|s| s.downcast_mut::<S>()) else {
                        return Err(StageError::fatal(
                            "weft-sdk: process was called before a successful init; \
                             the host must call init (and it must return Ok) first",
                        )
                        .into());
                    };
                    let batch = batch.into_iter().map(Item::from).collect();
                    match stage.process(batch) {
                        Ok(items) => Ok(items.into_iter().map(Into::into).collect()),
                        Err(err) => Err(err.into()),
                    }
                })
            }
        }
    }
}
