//! Errors of the runtime: at upload ([`RuntimeError`]) and per call ([`InvokeError`]).

/// Why a component could not be accepted or loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bytes are not a Wasm component (a core module, or not Wasm at all).
    #[error("not a Wasm component: {0}")]
    NotComponent(String),
    /// A component that does not implement the `weft:stage` world.
    #[error("component does not implement the weft:stage world: {0}")]
    WrongWorld(String),
    /// wasmtime could not compile or load the component.
    #[error("compiling the component failed: {0}")]
    Compile(String),
    /// The node store failed.
    #[error(transparent)]
    Store(#[from] weft_store::StoreError),
    /// The stored component for this version is missing (store damaged).
    #[error("component {digest} of stage `{stage}` is missing from the object store")]
    MissingComponent {
        /// Stage name.
        stage: String,
        /// Object id of the component.
        digest: String,
    },
    /// The engine could not be configured.
    #[error("engine setup: {0}")]
    Engine(String),
}

/// Why one call to a stage failed. Each variant maps to its own HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// The stage rejected its input (`stage-error::bad-input`).
    #[error("stage `{stage}` rejected the input: {message}")]
    BadInput {
        /// Stage name.
        stage: String,
        /// The stage's explanation.
        message: String,
    },
    /// A transient failure the caller may retry (`stage-error::retryable`).
    #[error("stage `{stage}` failed transiently: {message}")]
    Retryable {
        /// Stage name.
        stage: String,
        /// The stage's explanation.
        message: String,
    },
    /// The stage gave up (`stage-error::fatal`); its instance was discarded.
    #[error("stage `{stage}` failed: {message}")]
    Fatal {
        /// Stage name.
        stage: String,
        /// The stage's explanation.
        message: String,
    },
    /// `init` returned an error: the stage cannot start with this config.
    #[error("stage `{stage}` refused to start: {message}")]
    InitFailed {
        /// Stage name.
        stage: String,
        /// What `init` returned.
        message: String,
    },
    /// The guest trapped (panic, unreachable, out-of-bounds...).
    #[error("stage `{stage}` trapped: {message}")]
    Trap {
        /// Stage name.
        stage: String,
        /// The trap and whatever the guest wrote to stderr before it.
        message: String,
    },
    /// The guest tried to grow its memory past the configured limit.
    #[error("stage `{stage}` exceeded its memory limit of {limit_mib} MiB")]
    MemoryLimit {
        /// Stage name.
        stage: String,
        /// The limit in MiB.
        limit_mib: usize,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("stage `{stage}` exceeded its deadline of {deadline_ms} ms")]
    Deadline {
        /// Stage name.
        stage: String,
        /// The deadline in milliseconds.
        deadline_ms: u128,
    },
    /// No instance became free within the acquire timeout.
    #[error("stage `{stage}` is busy: all {max} instances are in use")]
    Busy {
        /// Stage name.
        stage: String,
        /// The pool bound.
        max: usize,
    },
    /// The host failed (store I/O, instantiation resources).
    #[error("host error while running stage `{stage}`: {message}")]
    Host {
        /// Stage name.
        stage: String,
        /// What failed.
        message: String,
    },
}
