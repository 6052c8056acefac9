//! Training: a small trainable network — a linear layer or an MLP with ReLU
//! between layers — fitted by backpropagation, for fine-tuning a head on the
//! outputs of a frozen model (say, a classifier over sentence embeddings).
//!
//! `wasi:nn` is inference only; weft exposes this to stages as the
//! `weft:stage/train` interface. A [`Trainer`] holds the weights and the
//! optimizer's state; [`Trainer::save`] and [`Trainer::restore`] checkpoint
//! both, so a job resumes exactly where it stopped, and [`Trainer::export_onnx`]
//! writes the network as an ONNX model that the engine (and any ONNX runtime)
//! serves.
//!
//! Matrix products run on the CPU kernels, or on the GPU for
//! [`Target::Gpu`] when the node has one; everything else is plain f32 on the
//! CPU. The two give the same loss curve up to float rounding.
//!
//! ```
//! use weft_nn::train::{Loss, Optimizer, Trainer, TrainerConfig};
//!
//! // Learn `class = x0 > x1` from four points.
//! let mut trainer = Trainer::new(TrainerConfig {
//!     learning_rate: 0.1,
//!     ..TrainerConfig::new(vec![2, 2], Loss::CrossEntropy, Optimizer::adam())
//! })
//! .unwrap();
//! let x = [1.0, 0.0, 0.0, 1.0, 2.0, 1.0, 1.0, 2.0];
//! let y = [0.0, 1.0, 0.0, 1.0];
//! let first = trainer.step(&x, &y).unwrap();
//! for _ in 0..100 {
//!     trainer.step(&x, &y).unwrap();
//! }
//! let eval = trainer.evaluate(&x, &y).unwrap();
//! assert!(eval.loss < first && eval.accuracy == Some(1.0));
//! ```

mod checkpoint;
pub(crate) mod math;

use std::f32::consts::PI;
use std::sync::Arc;

use crate::gpu::Gpu;
use crate::{NnError, NnErrorKind, Target};
use checkpoint::{MAGIC, Reader, Writer};
use math::{Adam, SplitMix, argmax, cross_entropy, mse, sgd, transpose};

/// How outputs are compared with targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Softmax cross-entropy over the outputs; a target is a class index
    /// (one per row, as f32: `0.0`, `1.0`, …).
    CrossEntropy,
    /// Mean squared error; targets are one value per output per row.
    Mse,
}

/// How gradients update the weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// Stochastic gradient descent, with heavy-ball momentum when non-zero.
    Sgd {
        /// Momentum in `[0, 1)`; 0 is plain SGD.
        momentum: f32,
    },
    /// Adam (with decoupled weight decay, i.e. AdamW, when
    /// [`TrainerConfig::weight_decay`] is set).
    Adam {
        /// First-moment decay, in `[0, 1)`.
        beta1: f32,
        /// Second-moment decay, in `[0, 1)`.
        beta2: f32,
        /// Added to the denominator, > 0.
        epsilon: f32,
    },
}

impl Optimizer {
    /// Adam with the usual defaults (0.9, 0.999, 1e-8).
    pub fn adam() -> Self {
        Self::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }
}

/// What to train and how.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerConfig {
    /// Layer widths: the input, any hidden layers, the output. Two entries
    /// make a linear head; more add ReLU hidden layers.
    pub layers: Vec<usize>,
    /// The loss.
    pub loss: Loss,
    /// The optimizer.
    pub optimizer: Optimizer,
    /// Peak learning rate.
    pub learning_rate: f32,
    /// Decoupled weight decay on the weights (not the biases); 0 for none.
    pub weight_decay: f32,
    /// Steps of linear warm-up from 0 to the peak rate.
    pub warmup_steps: u32,
    /// When set, the rate decays to 0 along a cosine by this step.
    pub total_steps: Option<u32>,
    /// Seeds the initial weights: the same seed, data and config give the
    /// same run.
    pub seed: u64,
    /// Where matrix products run.
    pub target: Target,
}

impl TrainerConfig {
    /// A config with learning rate 1e-3, no decay or schedule, seed 0, CPU.
    pub fn new(layers: Vec<usize>, loss: Loss, optimizer: Optimizer) -> Self {
        Self {
            layers,
            loss,
            optimizer,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            warmup_steps: 0,
            total_steps: None,
            seed: 0,
            target: Target::Cpu,
        }
    }

    fn validate(&self) -> Result<(), NnError> {
        let bad = |m: String| Err(invalid(m));
        if self.layers.len() < 2 {
            return bad(format!(
                "layers: need at least an input and an output width, got {:?}",
                self.layers
            ));
        }
        if let Some(w) = self.layers.iter().find(|&&w| w == 0 || w > MAX_WIDTH) {
            return bad(format!("layers: width {w} is not in 1..={MAX_WIDTH}"));
        }
        let params: usize = self.layers.windows(2).map(|p| p[0] * p[1] + p[1]).sum();
        if params > MAX_PARAMS {
            return bad(format!(
                "layers: {params} parameters is more than the {MAX_PARAMS} a trainer may hold"
            ));
        }
        if self.loss == Loss::CrossEntropy && self.layers[self.layers.len() - 1] < 2 {
            return bad("layers: cross-entropy needs at least 2 outputs (classes)".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "learning-rate: must be a positive number, got {}",
                self.learning_rate
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight-decay: must be 0 or more, got {}",
                self.weight_decay
            ));
        }
        if let Some(total) = self.total_steps
            && total <= self.warmup_steps
        {
            return bad(format!(
                "total-steps: {total} must be more than warmup-steps ({})",
                self.warmup_steps
            ));
        }
        let unit = |name: &str, v: f32| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(invalid(format!("{name}: must be in [0, 1), got {v}")))
            }
        };
        match self.optimizer {
            Optimizer::Sgd { momentum } => unit("momentum", momentum),
            Optimizer::Adam {
                beta1,
                beta2,
                epsilon,
            } => {
                unit("beta1", beta1)?;
                unit("beta2", beta2)?;
                if !(epsilon.is_finite() && epsilon > 0.0) {
                    return bad(format!("epsilon: must be positive, got {epsilon}"));
                }
                Ok(())
            }
        }
    }
}

/// The widest layer a trainer accepts.
const MAX_WIDTH: usize = 1 << 16;
/// The most parameters a trainer holds (256 MiB of f32 weights).
const MAX_PARAMS: usize = 64 << 20;
/// The most rows one step or evaluation takes.
const MAX_ROWS: usize = 1 << 16;

/// A loss (and, for classification, accuracy) over a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean loss per row.
    pub loss: f32,
    /// Share of rows whose highest output is the target class
    /// (cross-entropy only).
    pub accuracy: Option<f32>,
}

/// One layer's parameters (`w` is `[inputs, outputs]`, row-major) or their
/// gradients or optimizer moments, which have the same shapes.
#[derive(Debug, Clone, PartialEq)]
struct Layer {
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Layer {
    fn zeros(inputs: usize, outputs: usize) -> Self {
        Self {
            w: vec![0.0; inputs * outputs],
            b: vec![0.0; outputs],
        }
    }
}

/// A network being trained: weights, optimizer state and step count.
#[derive(Debug, Clone)]
pub struct Trainer {
    config: TrainerConfig,
    layers: Vec<Layer>,
    /// Momentum (SGD) or first moments (Adam).
    m: Vec<Layer>,
    /// Second moments (Adam); empty for SGD.
    v: Vec<Layer>,
    steps: u64,
    /// The GPU the products run on: `None` on the CPU.
    gpu: Option<Arc<Gpu>>,
}

impl Trainer {
    /// A trainer with freshly initialised weights (uniform in
    /// ±1/√fan-in, as PyTorch's `Linear` does), drawn from `config.seed`.
    pub fn new(config: TrainerConfig) -> Result<Self, NnError> {
        config.validate()?;
        let mut rng = SplitMix(config.seed);
        let mut layers = Vec::new();
        for pair in config.layers.windows(2) {
            let (i, o) = (pair[0], pair[1]);
            let bound = 1.0 / (i as f32).sqrt();
            let mut draw = || (rng.next_f32() * 2.0 - 1.0) * bound;
            let w = (0..i * o).map(|_| draw()).collect();
            let b = (0..o).map(|_| draw()).collect();
            layers.push(Layer { w, b });
        }
        let zeros = || {
            config
                .layers
                .windows(2)
                .map(|p| Layer::zeros(p[0], p[1]))
                .collect::<Vec<_>>()
        };
        let v = match config.optimizer {
            Optimizer::Adam { .. } => zeros(),
            Optimizer::Sgd { .. } => Vec::new(),
        };
        // Asked for the GPU but the node has none: the CPU, said once on
        // stderr by the engine.
        let gpu = match config.target {
            Target::Gpu => crate::engine::gpu_or_why().ok(),
            Target::Cpu => None,
        };
        Ok(Self {
            m: zeros(),
            v,
            layers,
            steps: 0,
            config,
            gpu,
        })
    }

    /// The configuration it was created with.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// Whether the products run on a GPU ([`Target::Gpu`] on a node that
    /// has one).
    pub fn on_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Optimisation steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The learning rate the next step uses (after warm-up and decay).
    pub fn learning_rate(&self) -> f32 {
        let c = &self.config;
        let s = self.steps as f32;
        let warmup = c.warmup_steps as f32;
        if s < warmup {
            return c.learning_rate * (s + 1.0) / warmup;
        }
        match c.total_steps {
            Some(total) => {
                let progress = ((s - warmup) / (total as f32 - warmup)).min(1.0);
                c.learning_rate * 0.5 * (1.0 + (PI * progress).cos())
            }
            None => c.learning_rate,
        }
    }

    /// One optimisation step on a batch: `features` holds rows of
    /// `layers[0]` values; `targets` one class index per row
    /// (cross-entropy) or one value per output per row (MSE). Returns the
    /// batch's mean loss before the update.
    pub fn step(&mut self, features: &[f32], targets: &[f32]) -> Result<f32, NnError> {
        let rows = self.check_batch(features, targets)?;
        let (loss, grads) = self.gradients(features, targets, rows)?;
        let lr = self.learning_rate();
        self.steps += 1;
        let t = self.steps as i32;
        let decay = self.config.weight_decay;
        for (l, g) in grads.iter().enumerate() {
            let (p, m) = (&mut self.layers[l], &mut self.m[l]);
            if decay > 0.0 {
                p.w.iter_mut().for_each(|w| *w -= lr * decay * *w);
            }
            match self.config.optimizer {
                Optimizer::Sgd { momentum } => {
                    sgd(&mut p.w, &g.w, &mut m.w, lr, momentum);
                    sgd(&mut p.b, &g.b, &mut m.b, lr, momentum);
                }
                Optimizer::Adam {
                    beta1,
                    beta2,
                    epsilon,
                } => {
                    let v = &mut self.v[l];
                    let adam = Adam {
                        lr,
                        beta1,
                        beta2,
                        epsilon,
                        c1: 1.0 - beta1.powi(t),
                        c2: 1.0 - beta2.powi(t),
                    };
                    adam.update(&mut p.w, &g.w, &mut m.w, &mut v.w);
                    adam.update(&mut p.b, &g.b, &mut m.b, &mut v.b);
                }
            }
        }
        Ok(loss)
    }

    /// The loss (and accuracy, for cross-entropy) on a batch, without
    /// changing anything.
    pub fn evaluate(&self, features: &[f32], targets: &[f32]) -> Result<Evaluation, NnError> {
        let rows = self.check_batch(features, targets)?;
        let acts = self.forward(features, rows)?;
        let out = acts.last().expect("a network has layers");
        let width = self.outputs();
        let loss = match self.config.loss {
            Loss::CrossEntropy => cross_entropy(out, targets, width, None),
            Loss::Mse => mse(out, targets, None),
        };
        let accuracy = (self.config.loss == Loss::CrossEntropy).then(|| {
            let right = out
                .chunks(width)
                .zip(targets)
                .filter(|(row, t)| argmax(row) == **t as usize)
                .count();
            right as f32 / rows as f32
        });
        Ok(Evaluation { loss, accuracy })
    }

    /// The network's outputs for rows of features (logits, for
    /// cross-entropy): `rows * layers.last()` values.
    pub fn predict(&self, features: &[f32]) -> Result<Vec<f32>, NnError> {
        let rows = self.rows(features)?;
        Ok(self
            .forward(features, rows)?
            .pop()
            .expect("a network has layers"))
    }

    /// The network as an ONNX model: input `features` (f32 `[batch,
    /// layers[0]]`), output `logits` (f32 `[batch, outputs]`) and, for
    /// cross-entropy, `probabilities` (their softmax).
    pub fn export_onnx(&self) -> Vec<u8> {
        use crate::onnx::write::GraphWriter;
        let widths = &self.config.layers;
        let mut g = GraphWriter::new("weft-trained-head");
        let mut h = "features".to_string();
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (w, b) = (format!("layer{l}.weight"), format!("layer{l}.bias"));
            g.initializer(&w, &[widths[l] as u64, widths[l + 1] as u64], &layer.w);
            g.initializer(&b, &[widths[l + 1] as u64], &layer.b);
            let product = format!("layer{l}.matmul");
            g.node("MatMul", &[&h, &w], &[&product], &product, &[]);
            let z = if l == last {
                "logits".to_string()
            } else {
                format!("layer{l}.linear")
            };
            g.node("Add", &[&product, &b], &[&z], &format!("layer{l}.add"), &[]);
            h = if l == last {
                z
            } else {
                let a = format!("layer{l}.relu");
                g.node("Relu", &[&z], &[&a], &a, &[]);
                a
            };
        }
        let (inputs, outputs) = (widths[0].to_string(), widths[last + 1].to_string());
        g.input("features", &["batch", &inputs]);
        g.output("logits", &["batch", &outputs]);
        if self.config.loss == Loss::CrossEntropy {
            g.node(
                "Softmax",
                &["logits"],
                &["probabilities"],
                "softmax",
                &[("axis", -1)],
            );
            g.output("probabilities", &["batch", &outputs]);
        }
        g.finish("weft-nn trainer", 17)
    }

    /// Everything needed to continue training later: the config, weights,
    /// optimizer state and step count.
    pub fn save(&self) -> Vec<u8> {
        let c = &self.config;
        let mut w = Writer(MAGIC.to_vec());
        w.u32(c.layers.len() as u32);
        c.layers.iter().for_each(|&n| w.u32(n as u32));
        w.u8(match c.loss {
            Loss::CrossEntropy => 0,
            Loss::Mse => 1,
        });
        match c.optimizer {
            Optimizer::Sgd { momentum } => {
                w.u8(0);
                w.f32(momentum);
            }
            Optimizer::Adam {
                beta1,
                beta2,
                epsilon,
            } => {
                w.u8(1);
                [beta1, beta2, epsilon].into_iter().for_each(|x| w.f32(x));
            }
        }
        w.f32(c.learning_rate);
        w.f32(c.weight_decay);
        w.u32(c.warmup_steps);
        w.u32(c.total_steps.map_or(0, |t| t + 1));
        w.u64(c.seed);
        w.u8(u8::from(c.target == Target::Gpu));
        w.u64(self.steps);
        for set in [&self.layers, &self.m, &self.v] {
            for layer in set.iter() {
                w.floats(&layer.w);
                w.floats(&layer.b);
            }
        }
        w.0
    }

    /// A trainer from [`Trainer::save`]'s bytes, continuing exactly where
    /// that one stopped.
    pub fn restore(bytes: &[u8]) -> Result<Self, NnError> {
        let corrupt = || invalid("not a weft trainer checkpoint (truncated or corrupt)");
        let mut r = Reader(bytes.strip_prefix(MAGIC).ok_or_else(corrupt)?);
        let n = r.u32()? as usize;
        if n > 64 {
            return Err(corrupt());
        }
        let layers = (0..n)
            .map(|_| r.u32().map(|v| v as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let loss = match r.u8()? {
            0 => Loss::CrossEntropy,
            1 => Loss::Mse,
            _ => return Err(corrupt()),
        };
        let optimizer = match r.u8()? {
            0 => Optimizer::Sgd { momentum: r.f32()? },
            1 => Optimizer::Adam {
                beta1: r.f32()?,
                beta2: r.f32()?,
                epsilon: r.f32()?,
            },
            _ => return Err(corrupt()),
        };
        let config = TrainerConfig {
            layers,
            loss,
            optimizer,
            learning_rate: r.f32()?,
            weight_decay: r.f32()?,
            warmup_steps: r.u32()?,
            total_steps: r.u32()?.checked_sub(1),
            seed: r.u64()?,
            target: if r.u8()? == 1 {
                Target::Gpu
            } else {
                Target::Cpu
            },
        };
        let mut trainer = Self::new(config)?;
        trainer.steps = r.u64()?;
        for set in [&mut trainer.layers, &mut trainer.m, &mut trainer.v] {
            for layer in set.iter_mut() {
                r.floats_into(&mut layer.w)?;
                r.floats_into(&mut layer.b)?;
            }
        }
        if !r.0.is_empty() {
            return Err(corrupt());
        }
        Ok(trainer)
    }

    fn outputs(&self) -> usize {
        self.config.layers[self.config.layers.len() - 1]
    }

    fn rows(&self, features: &[f32]) -> Result<usize, NnError> {
        let width = self.config.layers[0];
        if features.is_empty() || !features.len().is_multiple_of(width) {
            return Err(invalid(format!(
                "features: {} values are not whole rows of {width} (the input width)",
                features.len()
            )));
        }
        let rows = features.len() / width;
        if rows > MAX_ROWS {
            return Err(NnError::new(
                NnErrorKind::TooLarge,
                format!("{rows} rows in one batch; split it into batches of at most {MAX_ROWS}"),
            ));
        }
        if features.iter().any(|v| !v.is_finite()) {
            return Err(invalid("features: contain NaN or infinity"));
        }
        Ok(rows)
    }

    fn check_batch(&self, features: &[f32], targets: &[f32]) -> Result<usize, NnError> {
        let rows = self.rows(features)?;
        let width = self.outputs();
        match self.config.loss {
            Loss::CrossEntropy => {
                if targets.len() != rows {
                    return Err(invalid(format!(
                        "targets: {} values for {rows} rows; cross-entropy takes one class index per row",
                        targets.len()
                    )));
                }
                if let Some(t) = targets
                    .iter()
                    .find(|t| !(t.fract() == 0.0 && (0.0..width as f32).contains(*t)))
                {
                    return Err(invalid(format!(
                        "targets: {t} is not a class index in 0..{width}"
                    )));
                }
            }
            Loss::Mse => {
                if targets.len() != rows * width {
                    return Err(invalid(format!(
                        "targets: {} values for {rows} rows of {width} outputs",
                        targets.len()
                    )));
                }
                if targets.iter().any(|v| !v.is_finite()) {
                    return Err(invalid("targets: contain NaN or infinity"));
                }
            }
        }
        Ok(rows)
    }

    /// `c = a · b` for row-major `a` `[m, k]` and `b` `[k, n]`, on the
    /// trainer's target.
    fn matmul(
        &self,
        a: &[f32],
        b: &[f32],
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Vec<f32>, NnError> {
        if let Some(gpu) = &self.gpu {
            return gpu.matmul(a, b, m, k, n);
        }
        let mut c = vec![0.0; m * n];
        crate::kernels::matmul(a, b, &mut c, m, k, n);
        Ok(c)
    }

    /// Activations: the input, then each layer's output (ReLU'd for hidden
    /// layers, raw for the last).
    fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<Vec<f32>>, NnError> {
        let widths = &self.config.layers;
        let mut acts = vec![x.to_vec()];
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (i, o) = (widths[l], widths[l + 1]);
            let mut z = self.matmul(&acts[l], &layer.w, rows, i, o)?;
            for row in z.chunks_mut(o) {
                row.iter_mut().zip(&layer.b).for_each(|(z, b)| *z += b);
                if l != last {
                    row.iter_mut().for_each(|z| *z = z.max(0.0));
                }
            }
            acts.push(z);
        }
        Ok(acts)
    }

    /// The batch's mean loss and each layer's gradients.
    fn gradients(
        &self,
        x: &[f32],
        targets: &[f32],
        rows: usize,
    ) -> Result<(f32, Vec<Layer>), NnError> {
        let widths = &self.config.layers;
        let acts = self.forward(x, rows)?;
        let out = acts.last().expect("a network has layers");
        let mut dz = vec![0.0; out.len()];
        let loss = match self.config.loss {
            Loss::CrossEntropy => cross_entropy(out, targets, self.outputs(), Some(&mut dz)),
            Loss::Mse => mse(out, targets, Some(&mut dz)),
        };
        let mut grads = Vec::with_capacity(self.layers.len());
        for l in (0..self.layers.len()).rev() {
            let (i, o) = (widths[l], widths[l + 1]);
            let w = self.matmul(&transpose(&acts[l], rows, i), &dz, i, rows, o)?;
            let mut b = vec![0.0; o];
            for row in dz.chunks(o) {
                b.iter_mut().zip(row).for_each(|(b, d)| *b += d);
            }
            if l > 0 {
                let mut dh = self.matmul(&dz, &transpose(&self.layers[l].w, i, o), rows, o, i)?;
                // ReLU: no gradient where the activation was clipped.
                dh.iter_mut()
                    .zip(&acts[l])
                    .for_each(|(d, a)| *d = if *a > 0.0 { *d } else { 0.0 });
                dz = dh;
            }
            grads.push(Layer { w, b });
        }
        grads.reverse();
        Ok((loss, grads))
    }
}

fn invalid(message: impl Into<String>) -> NnError {
    NnError::new(NnErrorKind::InvalidArgument, message)
}

#[cfg(test)]
mod tests;
