//! The `weft:stage/train` import: fine-tuning a small head on weft-nn's
//! trainer. Every call that computes runs on a blocking thread, off the
//! async executor; `export` registers the trained network in the node's model
//! registry, where `wasi:nn` `load-by-name` finds it.

use std::sync::{Arc, Mutex};

use wasmtime::component::Resource;
use weft_nn::train::{Evaluation, Loss, Optimizer, Trainer, TrainerConfig};
use weft_nn::{Encoding, NnError, NnErrorKind, Target};

use crate::bindings::weft::stage::train::{
    self as wit, Device, Exported, TrainError, TrainerConfig as WitConfig,
};
use crate::host::HostState;

/// Host-side representation of the `trainer` resource: shared with the
/// blocking thread that runs a step.
pub type TrainerRes = Arc<Mutex<Trainer>>;

impl From<NnError> for TrainError {
    fn from(e: NnError) -> Self {
        match e.kind {
            NnErrorKind::InvalidArgument | NnErrorKind::InvalidEncoding => {
                Self::InvalidArgument(e.message)
            }
            NnErrorKind::TooLarge | NnErrorKind::UnsupportedOperation => {
                Self::Unsupported(e.message)
            }
            NnErrorKind::NotFound | NnErrorKind::RuntimeError => Self::Runtime(e.message),
        }
    }
}

fn config(c: WitConfig) -> TrainerConfig {
    TrainerConfig {
        layers: c.layers.into_iter().map(|w| w as usize).collect(),
        loss: match c.loss {
            wit::Loss::CrossEntropy => Loss::CrossEntropy,
            wit::Loss::Mse => Loss::Mse,
        },
        optimizer: match c.optimizer {
            wit::Optimizer::Sgd(momentum) => Optimizer::Sgd { momentum },
            wit::Optimizer::Adam(a) => Optimizer::Adam {
                beta1: a.beta1,
                beta2: a.beta2,
                epsilon: a.epsilon,
            },
        },
        learning_rate: c.learning_rate,
        weight_decay: c.weight_decay,
        warmup_steps: c.warmup_steps,
        total_steps: c.total_steps,
        seed: c.seed,
        target: match c.device {
            Device::Cpu => Target::Cpu,
            Device::Gpu => Target::Gpu,
        },
    }
}

/// Runs `f` on the trainer on a blocking thread.
async fn with_trainer<T: Send + 'static>(
    trainer: &TrainerRes,
    f: impl FnOnce(&mut Trainer) -> Result<T, NnError> + Send + 'static,
) -> Result<T, TrainError> {
    let trainer = Arc::clone(trainer);
    tokio::task::spawn_blocking(move || {
        let mut guard = trainer.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    })
    .await
    .map_err(|e| TrainError::Runtime(format!("trainer task failed: {e}")))?
    .map_err(TrainError::from)
}

impl HostState {
    fn push_trainer(
        &mut self,
        made: Result<Trainer, TrainError>,
    ) -> wasmtime::Result<Result<Resource<TrainerRes>, TrainError>> {
        Ok(match made {
            Ok(t) => Ok(self.table.push(Arc::new(Mutex::new(t)))?),
            Err(e) => Err(e),
        })
    }
}

impl wit::Host for HostState {}

impl wit::HostTrainer for HostState {
    async fn create(
        &mut self,
        c: WitConfig,
    ) -> wasmtime::Result<Result<Resource<TrainerRes>, TrainError>> {
        let c = config(c);
        let made = tokio::task::spawn_blocking(move || Trainer::new(c))
            .await
            .map_err(|e| TrainError::Runtime(e.to_string()))
            .and_then(|r| r.map_err(TrainError::from));
        self.push_trainer(made)
    }

    async fn restore(
        &mut self,
        checkpoint: Vec<u8>,
    ) -> wasmtime::Result<Result<Resource<TrainerRes>, TrainError>> {
        let made = tokio::task::spawn_blocking(move || Trainer::restore(&checkpoint))
            .await
            .map_err(|e| TrainError::Runtime(e.to_string()))
            .and_then(|r| r.map_err(TrainError::from));
        self.push_trainer(made)
    }

    async fn step(
        &mut self,
        t: Resource<TrainerRes>,
        features: Vec<f32>,
        targets: Vec<f32>,
    ) -> wasmtime::Result<Result<f32, TrainError>> {
        let trainer = self.table.get(&t)?.clone();
        Ok(with_trainer(&trainer, move |t| t.step(&features, &targets)).await)
    }

    async fn evaluate(
        &mut self,
        t: Resource<TrainerRes>,
        features: Vec<f32>,
        targets: Vec<f32>,
    ) -> wasmtime::Result<Result<wit::Evaluation, TrainError>> {
        let trainer = self.table.get(&t)?.clone();
        let eval = with_trainer(&trainer, move |t| t.evaluate(&features, &targets)).await;
        Ok(eval.map(|Evaluation { loss, accuracy }| wit::Evaluation { loss, accuracy }))
    }

    async fn predict(
        &mut self,
        t: Resource<TrainerRes>,
        features: Vec<f32>,
    ) -> wasmtime::Result<Result<Vec<f32>, TrainError>> {
        let trainer = self.table.get(&t)?.clone();
        Ok(with_trainer(&trainer, move |t| t.predict(&features)).await)
    }

    async fn steps(&mut self, t: Resource<TrainerRes>) -> wasmtime::Result<u64> {
        let trainer = self.table.get(&t)?;
        Ok(trainer.lock().unwrap_or_else(|p| p.into_inner()).steps())
    }

    async fn save(&mut self, t: Resource<TrainerRes>) -> wasmtime::Result<Vec<u8>> {
        let trainer = self.table.get(&t)?.clone();
        Ok(with_trainer(&trainer, |t| Ok(t.save()))
            .await
            .unwrap_or_default())
    }

    async fn export(
        &mut self,
        t: Resource<TrainerRes>,
        name: String,
    ) -> wasmtime::Result<Result<Exported, TrainError>> {
        let trainer = self.table.get(&t)?.clone();
        let store = self.store.clone();
        let stage = self.stage.clone();
        let onnx = match with_trainer(&trainer, |t| Ok(t.export_onnx())).await {
            Ok(bytes) => bytes,
            Err(e) => return Ok(Err(e)),
        };
        let registered = tokio::task::spawn_blocking(move || {
            let info = weft_nn::inspect(&onnx, Encoding::Onnx)
                .map_err(|e| TrainError::Runtime(format!("exported model is invalid: {e}")))?;
            let summary = crate::model_summary(&info).to_string();
            store
                .put_model(&name, Encoding::Onnx.as_str(), &onnx, &summary)
                .map(|(rec, _)| Exported {
                    name: rec.name.clone(),
                    version: rec.latest().version,
                })
                .map_err(|e| match e {
                    weft_store::StoreError::Invalid { what, reason } => {
                        TrainError::InvalidArgument(format!("{what}: {reason}"))
                    }
                    e => TrainError::Runtime(format!("node store failed: {e}")),
                })
        })
        .await
        .map_err(|e| TrainError::Runtime(e.to_string()))
        .and_then(|r| r);
        if let Ok(e) = &registered {
            tracing::info!(stage = &*stage, model = %e.name, version = e.version, "trained model registered");
        }
        Ok(registered)
    }

    async fn drop(&mut self, t: Resource<TrainerRes>) -> wasmtime::Result<()> {
        self.table.delete(t)?;
        Ok(())
    }
}
