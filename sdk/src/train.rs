//! Fine-tuning through weft's `weft:stage/train` interface (`wasi:nn` is
//! inference only): train a small network — a linear head, or an MLP with
//! ReLU between layers — on features your stage computes, usually the
//! outputs of a frozen `wasi:nn` graph such as sentence embeddings.
//!
//! The node runs the arithmetic (on its GPU when [`Device::Gpu`] is asked
//! for and it has one, else on the CPU) off the Wasm instance, so a step
//! costs one host call. [`Trainer::save`] returns the weights and optimizer
//! state for a [`checkpoint`](crate::checkpoint); [`Trainer::restore`]
//! continues exactly where it stopped. [`Trainer::export`] registers the
//! network as a new version of a model; other stages load it with
//! [`nn::graph::load_by_name`](crate::nn::graph::load_by_name) (`NAME`,
//! `NAME@latest` or `NAME@N`): input `features` (f32 `[rows, layers[0]]`),
//! outputs `logits` and, for cross-entropy, `probabilities`.
//!
//! Off Wasm (the native test harness) there is no node to train on:
//! [`Trainer::create`] fails with [`TrainError::Unsupported`].
//!
//! # Example
//!
//! ```
//! use weft_sdk::train::{Loss, TrainError, Trainer, TrainerConfig};
//!
//! // 384-wide embeddings → 4 topics.
//! let config = TrainerConfig { learning_rate: 1e-2, ..TrainerConfig::new(vec![384, 4], Loss::CrossEntropy) };
//! match Trainer::create(&config) {
//!     Ok(trainer) => {
//!         let features = vec![0.0f32; 2 * 384]; // two rows
//!         let loss = trainer.step(&features, &[0.0, 3.0])?;
//!         assert!(loss > 0.0);
//!     }
//!     // Always the case in the native test harness.
//!     Err(e) => assert!(matches!(e, TrainError::Unsupported(_))),
//! }
//! # Ok::<(), TrainError>(())
//! ```

use std::fmt;

use crate::StageError;

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::weft::stage::train as raw;

/// How outputs are compared with targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Softmax cross-entropy; one target per row: the class index as f32
    /// (`0.0`, `1.0`, …).
    CrossEntropy,
    /// Mean squared error; one target per output per row.
    Mse,
}

/// How gradients update the weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// Stochastic gradient descent with heavy-ball momentum (0 for none).
    Sgd {
        /// In `[0, 1)`.
        momentum: f32,
    },
    /// Adam (AdamW with [`TrainerConfig::weight_decay`]).
    Adam {
        /// First-moment decay, in `[0, 1)`.
        beta1: f32,
        /// Second-moment decay, in `[0, 1)`.
        beta2: f32,
        /// Added to the denominator, > 0.
        epsilon: f32,
    },
}

impl Default for Optimizer {
    /// Adam with 0.9, 0.999, 1e-8.
    fn default() -> Self {
        Self::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }
}

/// Where the matrix products run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The node's CPU.
    #[default]
    Cpu,
    /// The node's GPU when it has one, else its CPU.
    Gpu,
}

/// What to train and how. Start from [`TrainerConfig::new`] and override
/// fields with struct update syntax.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerConfig {
    /// Widths: input, hidden layers (if any), output. `[384, 4]` is a linear
    /// head from 384 features to 4 classes; `[384, 64, 4]` adds a hidden
    /// layer.
    pub layers: Vec<u32>,
    /// The loss.
    pub loss: Loss,
    /// The optimizer.
    pub optimizer: Optimizer,
    /// Peak learning rate (> 0).
    pub learning_rate: f32,
    /// Decoupled weight decay on weights (not biases); 0 for none.
    pub weight_decay: f32,
    /// Linear warm-up from 0 over this many steps.
    pub warmup_steps: u32,
    /// When set, the rate decays to 0 along a cosine by this step.
    pub total_steps: Option<u32>,
    /// Seeds the initial weights: the same seed, data and config give the
    /// same run.
    pub seed: u64,
    /// Where the products run.
    pub device: Device,
}

impl TrainerConfig {
    /// Adam at learning rate 1e-3, no weight decay or schedule, seed 0, CPU.
    ///
    /// ```
    /// use weft_sdk::train::{Loss, TrainerConfig};
    /// let c = TrainerConfig::new(vec![384, 4], Loss::CrossEntropy);
    /// assert_eq!(c.learning_rate, 1e-3);
    /// ```
    pub fn new(layers: Vec<u32>, loss: Loss) -> Self {
        Self {
            layers,
            loss,
            optimizer: Optimizer::default(),
            learning_rate: 1e-3,
            weight_decay: 0.0,
            warmup_steps: 0,
            total_steps: None,
            seed: 0,
            device: Device::Cpu,
        }
    }
}

/// Loss on a batch, and accuracy for cross-entropy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean loss per row.
    pub loss: f32,
    /// Share of rows whose highest output is the target class.
    pub accuracy: Option<f32>,
}

/// The model version [`Trainer::export`] registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// The model name.
    pub name: String,
    /// Its new version (`NAME@version`).
    pub version: u32,
}

/// Why a training call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainError {
    /// A bad config, batch or checkpoint; the message names the field.
    InvalidArgument(String),
    /// The node cannot do it (too large; or no node, off Wasm).
    Unsupported(String),
    /// Failed while running.
    Runtime(String),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Self::Unsupported(m) => write!(f, "unsupported: {m}"),
            Self::Runtime(m) => write!(f, "runtime error: {m}"),
        }
    }
}

impl std::error::Error for TrainError {}

/// Bad training input is the caller's ([`StageError::BadInput`]); a runtime
/// failure may pass ([`StageError::Retryable`]); the rest is
/// [`StageError::Fatal`].
///
/// ```
/// use weft_sdk::{StageError, train::TrainError};
/// let e: StageError = TrainError::InvalidArgument("targets".into()).into();
/// assert!(matches!(e, StageError::BadInput(_)));
/// ```
impl From<TrainError> for StageError {
    fn from(e: TrainError) -> Self {
        match e {
            TrainError::InvalidArgument(_) => StageError::BadInput(e.to_string()),
            TrainError::Runtime(_) => StageError::Retryable(e.to_string()),
            TrainError::Unsupported(_) => StageError::Fatal(e.to_string()),
        }
    }
}

/// A network being trained on the node, with its optimizer state. Dropping
/// it frees it; [`Trainer::save`] first to keep it.
#[derive(Debug)]
pub struct Trainer {
    #[cfg(target_arch = "wasm32")]
    inner: raw::Trainer,
    #[cfg(not(target_arch = "wasm32"))]
    _never: std::convert::Infallible,
}

#[cfg(not(target_arch = "wasm32"))]
const NATIVE: &str = "training runs on the weft node; the native test harness has none (run the stage in the daemon)";

impl Trainer {
    /// A trainer with freshly initialised weights.
    pub fn create(config: &TrainerConfig) -> Result<Self, TrainError> {
        #[cfg(target_arch = "wasm32")]
        {
            let inner = raw::Trainer::create(&wire::config(config)).map_err(wire::error)?;
            Ok(Self { inner })
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = config;
            Err(TrainError::Unsupported(NATIVE.into()))
        }
    }

    /// A trainer from [`Trainer::save`]'s bytes.
    pub fn restore(checkpoint: &[u8]) -> Result<Self, TrainError> {
        #[cfg(target_arch = "wasm32")]
        {
            let inner = raw::Trainer::restore(checkpoint).map_err(wire::error)?;
            Ok(Self { inner })
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = checkpoint;
            Err(TrainError::Unsupported(NATIVE.into()))
        }
    }

    /// One optimisation step: `features` holds whole rows of `layers[0]`
    /// values, `targets` a class index per row (cross-entropy) or a value
    /// per output per row (MSE). Returns the batch's mean loss before the
    /// update.
    pub fn step(&self, features: &[f32], targets: &[f32]) -> Result<f32, TrainError> {
        #[cfg(target_arch = "wasm32")]
        return self.inner.step(features, targets).map_err(wire::error);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (features, targets);
            match self._never {}
        }
    }

    /// Loss (and accuracy) on a batch, changing nothing.
    pub fn evaluate(&self, features: &[f32], targets: &[f32]) -> Result<Evaluation, TrainError> {
        #[cfg(target_arch = "wasm32")]
        return self
            .inner
            .evaluate(features, targets)
            .map(|e| Evaluation {
                loss: e.loss,
                accuracy: e.accuracy,
            })
            .map_err(wire::error);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (features, targets);
            match self._never {}
        }
    }

    /// The outputs (logits, for cross-entropy) for rows of features.
    pub fn predict(&self, features: &[f32]) -> Result<Vec<f32>, TrainError> {
        #[cfg(target_arch = "wasm32")]
        return self.inner.predict(features).map_err(wire::error);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = features;
            match self._never {}
        }
    }

    /// Steps taken so far (restored with a checkpoint).
    pub fn steps(&self) -> u64 {
        #[cfg(target_arch = "wasm32")]
        return self.inner.steps();
        #[cfg(not(target_arch = "wasm32"))]
        match self._never {}
    }

    /// Weights, optimizer state and step count: store them with
    /// [`checkpoint::save`](crate::checkpoint::save) or
    /// [`objects::put`](crate::objects::put).
    pub fn save(&self) -> Vec<u8> {
        #[cfg(target_arch = "wasm32")]
        return self.inner.save();
        #[cfg(not(target_arch = "wasm32"))]
        match self._never {}
    }

    /// Registers the network as a new version of model `name` in the node's
    /// registry (ONNX).
    pub fn export(&self, name: &str) -> Result<Exported, TrainError> {
        #[cfg(target_arch = "wasm32")]
        return self
            .inner
            .export(name)
            .map(|e| Exported {
                name: e.name,
                version: e.version,
            })
            .map_err(wire::error);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = name;
            match self._never {}
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod wire {
    use super::{Device, Loss, Optimizer, TrainError, TrainerConfig, raw};

    pub(super) fn config(c: &TrainerConfig) -> raw::TrainerConfig {
        raw::TrainerConfig {
            layers: c.layers.clone(),
            loss: match c.loss {
                Loss::CrossEntropy => raw::Loss::CrossEntropy,
                Loss::Mse => raw::Loss::Mse,
            },
            optimizer: match c.optimizer {
                Optimizer::Sgd { momentum } => raw::Optimizer::Sgd(momentum),
                Optimizer::Adam {
                    beta1,
                    beta2,
                    epsilon,
                } => raw::Optimizer::Adam(raw::AdamOptions {
                    beta1,
                    beta2,
                    epsilon,
                }),
            },
            learning_rate: c.learning_rate,
            weight_decay: c.weight_decay,
            warmup_steps: c.warmup_steps,
            total_steps: c.total_steps,
            seed: c.seed,
            device: match c.device {
                Device::Cpu => raw::Device::Cpu,
                Device::Gpu => raw::Device::Gpu,
            },
        }
    }

    pub(super) fn error(e: raw::TrainError) -> TrainError {
        match e {
            raw::TrainError::InvalidArgument(m) => TrainError::InvalidArgument(m),
            raw::TrainError::Unsupported(m) => TrainError::Unsupported(m),
            raw::TrainError::Runtime(m) => TrainError::Runtime(m),
        }
    }
}
