//! `finetune`: trains a text classifier head on sentence embeddings and
//! registers it as a model, as a long-running job with progress, partial
//! results, checkpoints and resume.
//!
//! Run it as an async job (`POST /v1/jobs {"kind": "invoke", "pipeline": ...,
//! "input": {...}}`). It embeds every labelled text once with a frozen
//! sentence encoder (MiniLM through `wasi:nn`, see the `encoder` crate),
//! then trains a linear (or one-hidden-layer) softmax head on the node with
//! `weft:stage/train`, and finally exports the head as a new version of a
//! model (`classifier@N`) that the `classify` stage serves.
//!
//! Config (the encoder's keys, as for `embed`, plus):
//!
//! | key      | default      | meaning                                          |
//! |----------|--------------|--------------------------------------------------|
//! | `model`  | `minilm`     | the sentence encoder's name in the registry      |
//! | `vocab`  | required     | object id of its `vocab.txt`                     |
//! | `export` | `classifier` | the model name the trained head is registered as |
//! | `device` | `cpu`        | `cpu` or `gpu`: where the trainer's products run |
//!
//! Input: one JSON item.
//!
//! | field              | default  | meaning                                                      |
//! |--------------------|----------|--------------------------------------------------------------|
//! | `data`             | —        | object id of a JSON-lines file of `{"text", "label"}` rows   |
//! | `rows`             | —        | or the rows inline (exactly one of `data` and `rows`)        |
//! | `export`           | config   | model name to register                                       |
//! | `epochs`           | `4`      | passes over the training rows (1–1000)                       |
//! | `batch_size`       | `32`     | rows per step (1–4096)                                       |
//! | `learning_rate`    | `0.05`   | Adam's peak rate; decays along a cosine to 0 by the last step |
//! | `warmup_steps`     | `0`      | linear warm-up steps                                         |
//! | `weight_decay`     | `0`      | AdamW decoupled weight decay                                 |
//! | `hidden`           | `0`      | width of a ReLU hidden layer; 0 trains a linear head         |
//! | `eval_fraction`    | `0.2`    | share of rows held out for evaluation (stable hash split)    |
//! | `checkpoint_every` | `10`     | steps between checkpoints (and one at each epoch's end)      |
//! | `seed`             | `0`      | initial weights and shuffles: a seed replays a run           |
//! | `device`           | config   | `cpu` or `gpu`                                               |
//!
//! Labels are the sorted distinct `label` values: class `i` is `labels[i]`.
//!
//! While it runs it emits a partial `{"step", "epoch", "loss"}` per step and
//! `{"epoch", "train_loss", "eval_loss", "eval_accuracy"}` per epoch, and
//! progress `step of total`. The result is `{"model", "version", "labels",
//! "steps", "epochs", "train_rows", "eval_rows", "eval_loss",
//! "eval_accuracy", "resumed_at_step"}`.
//!
//! Checkpoints (the job's [`checkpoint`](weft_sdk::checkpoint)) hold the
//! trainer's weights and optimizer state, where in which epoch it was, and
//! the id of an object with the embedded features: after a daemon restart
//! the job continues from its last checkpoint without embedding again, and
//! — shuffles being seeded per epoch — ends with the same weights as an
//! uninterrupted run.

mod data;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_sdk::train::{Device, Loss, Trainer, TrainerConfig};
use weft_sdk::{Config, Item, Stage, StageError, checkpoint, emit, objects};

use crate::data::{Features, Row, Split};

/// The stage: an encoder for the texts, and the defaults from the config.
#[derive(Debug)]
pub struct Finetune {
    encoder: encoder::Encoder,
    export: String,
    device: Device,
}

/// Texts embedded per inference call.
const EMBED_BATCH: usize = 32;

/// The job's input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    data: Option<String>,
    rows: Option<Vec<Value>>,
    export: Option<String>,
    #[serde(default = "defaults::epochs")]
    epochs: u32,
    #[serde(default = "defaults::batch_size")]
    batch_size: u32,
    #[serde(default = "defaults::learning_rate")]
    learning_rate: f32,
    #[serde(default)]
    warmup_steps: u32,
    #[serde(default)]
    weight_decay: f32,
    #[serde(default)]
    hidden: u32,
    #[serde(default = "defaults::eval_fraction")]
    eval_fraction: f64,
    #[serde(default = "defaults::checkpoint_every")]
    checkpoint_every: u32,
    #[serde(default)]
    seed: u64,
    device: Option<String>,
}

mod defaults {
    pub(super) fn epochs() -> u32 {
        4
    }
    pub(super) fn batch_size() -> u32 {
        32
    }
    pub(super) fn learning_rate() -> f32 {
        0.05
    }
    pub(super) fn eval_fraction() -> f64 {
        0.2
    }
    pub(super) fn checkpoint_every() -> u32 {
        10
    }
}

/// Where a run is, saved every `checkpoint_every` steps.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    /// Object id of the embedded [`Features`].
    features: String,
    labels: Vec<String>,
    /// [`Trainer::save`]'s bytes.
    trainer: Vec<u8>,
    /// The epoch in progress (0-based) and the next batch in it.
    epoch: u32,
    batch: u32,
}

impl Stage for Finetune {
    fn init(config: Config) -> Result<Self, String> {
        let [a, b, c, d] = encoder::KEYS;
        config.expect_keys("finetune", &["export", "device", a, b, c, d])?;
        let export = config.get_or("export", "classifier").to_string();
        let device = device(config.get_or("device", "cpu"))
            .map_err(|e| format!("finetune: config `device`: {e}"))?;
        let encoder = encoder::Encoder::from_config(&config, "finetune", "")?;
        Ok(Self {
            encoder,
            export,
            device,
        })
    }

    fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
        batch
            .iter()
            .map(|item| Ok(Item::json(&self.run(item)?)?.with_key_from(item)))
            .collect()
    }
}

weft_sdk::export_stage!(Finetune);

fn device(name: &str) -> Result<Device, String> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "gpu" => Ok(Device::Gpu),
        other => Err(format!("`{other}` is not `cpu` or `gpu`")),
    }
}

fn bad(message: impl std::fmt::Display) -> StageError {
    StageError::bad_input(format!("finetune: {message}"))
}

impl Request {
    fn check(&self) -> Result<(), StageError> {
        if self.data.is_some() == self.rows.is_some() {
            return Err(bad(
                "give exactly one of `data` (object id of a JSON-lines file) and `rows`",
            ));
        }
        if !(1..=1000).contains(&self.epochs) {
            return Err(bad(format!("`epochs` ({}) must be 1–1000", self.epochs)));
        }
        if !(1..=4096).contains(&self.batch_size) {
            return Err(bad(format!(
                "`batch_size` ({}) must be 1–4096",
                self.batch_size
            )));
        }
        if !(0.0..0.9).contains(&self.eval_fraction) {
            return Err(bad(format!(
                "`eval_fraction` ({}) must be in [0, 0.9)",
                self.eval_fraction
            )));
        }
        if self.checkpoint_every == 0 {
            return Err(bad("`checkpoint_every` must be at least 1"));
        }
        Ok(())
    }

    fn rows(&self) -> Result<Vec<Row>, StageError> {
        match (&self.data, &self.rows) {
            (Some(id), _) => {
                let bytes = objects::get(id)
                    .map_err(|e| bad(format!("could not read `data` object {id:?}: {e}")))?;
                data::parse_jsonl(&bytes)
            }
            (None, Some(rows)) => rows
                .iter()
                .enumerate()
                .map(|(i, v)| data::row(v).map_err(|m| bad(format!("rows[{i}]: {m}"))))
                .collect(),
            (None, None) => unreachable!("checked"),
        }
    }
}

impl Finetune {
    fn run(&self, item: &Item) -> Result<Value, StageError> {
        let request: Request = item.parse_json().map_err(|e| bad(e.message()))?;
        request.check()?;
        let device = match &request.device {
            Some(d) => device(d).map_err(|e| bad(format!("`device`: {e}")))?,
            None => self.device,
        };
        let export = request
            .export
            .clone()
            .unwrap_or_else(|| self.export.clone());
        let (mut at, resumed) = match checkpoint::load::<Checkpoint>(item)? {
            Some(c) => {
                let steps = Trainer::restore(&c.trainer)?.steps();
                (c, Some(steps))
            }
            None => (self.prepare(&request, device, item)?, None),
        };
        let features = objects::get(&at.features)
            .ok()
            .and_then(|b| Features::from_bytes(&b))
            .ok_or_else(|| StageError::fatal("finetune: the checkpoint's features are gone"))?;
        let trainer = Trainer::restore(&at.trainer)?;
        if let Some(step) = resumed {
            emit::partial(Item::json(&json!({"resumed_at_step": step}))?.with_key_from(item));
        }
        let batch = request.batch_size as usize;
        let batches = features.train.rows().div_ceil(batch);
        let total = u64::from(request.epochs) * batches as u64;
        let mut eval = None;
        while at.epoch < request.epochs {
            let order = data::shuffled(
                features.train.rows(),
                request.seed ^ (u64::from(at.epoch) << 32),
            );
            let mut losses = Vec::new();
            for b in at.batch as usize..batches {
                let rows = &order[b * batch..((b + 1) * batch).min(order.len())];
                let (x, y) = features.train.gather(rows, features.dim);
                let loss = trainer.step(&x, &y)?;
                losses.push(loss);
                let step = trainer.steps();
                let epoch = at.epoch + 1;
                emit::partial(
                    Item::json(&json!({"step": step, "epoch": epoch, "loss": loss}))?
                        .with_key_from(item),
                );
                emit::progress(
                    step,
                    Some(total),
                    format!("epoch {epoch}/{}: loss {loss:.4}", request.epochs),
                );
                at.batch = b as u32 + 1;
                if step % u64::from(request.checkpoint_every) == 0 {
                    at.trainer = trainer.save();
                    checkpoint::save(item, &at)?;
                }
            }
            let train_loss = losses.iter().sum::<f32>() / losses.len().max(1) as f32;
            eval = evaluate(&trainer, &features.eval)?;
            let (eval_loss, eval_accuracy) = eval.unzip();
            emit::partial(
                Item::json(&json!({
                    "epoch": at.epoch + 1,
                    "train_loss": train_loss,
                    "eval_loss": eval_loss,
                    "eval_accuracy": eval_accuracy,
                }))?
                .with_key_from(item),
            );
            at.epoch += 1;
            at.batch = 0;
            at.trainer = trainer.save();
            checkpoint::save(item, &at)?;
        }
        if eval.is_none() {
            eval = evaluate(&trainer, &features.eval)?;
        }
        let exported = trainer.export(&export)?;
        weft_sdk::info!(
            "finetune: registered {}@{} after {} steps",
            exported.name,
            exported.version,
            trainer.steps()
        );
        checkpoint::clear(item);
        let (eval_loss, eval_accuracy) = eval.unzip();
        Ok(json!({
            "model": exported.name,
            "version": exported.version,
            "labels": at.labels,
            "steps": trainer.steps(),
            "epochs": request.epochs,
            "train_rows": features.train.rows(),
            "eval_rows": features.eval.rows(),
            "eval_loss": eval_loss,
            "eval_accuracy": eval_accuracy,
            "resumed_at_step": resumed,
        }))
    }

    /// Reads and embeds the rows, creates the trainer, and saves the first
    /// checkpoint, so that a restart from here on does not embed again.
    fn prepare(
        &self,
        request: &Request,
        device: Device,
        item: &Item,
    ) -> Result<Checkpoint, StageError> {
        let rows = request.rows()?;
        let labels = data::labels(&rows);
        if labels.len() < 2 {
            return Err(bad(format!(
                "need at least 2 distinct labels to classify, found {labels:?}"
            )));
        }
        let mut features = Features::default();
        for (start, chunk) in (0..).step_by(EMBED_BATCH).zip(rows.chunks(EMBED_BATCH)) {
            let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
            let embedded = self.encoder.embed(&texts)?;
            for (i, (row, e)) in chunk.iter().zip(embedded).enumerate() {
                features.dim = e.vector.len();
                let class = labels.binary_search(&row.label).expect("a known label") as f32;
                let split = if data::held_out(start + i, request.eval_fraction) {
                    &mut features.eval
                } else {
                    &mut features.train
                };
                split.features.extend(e.vector);
                split.classes.push(class);
            }
            emit::progress(
                0,
                None,
                format!("embedded {}/{} texts", start + chunk.len(), rows.len()),
            );
        }
        if features.train.rows() == 0 {
            return Err(bad(
                "no rows left to train on; lower `eval_fraction` or add rows",
            ));
        }
        let steps = u64::from(request.epochs)
            * features.train.rows().div_ceil(request.batch_size as usize) as u64;
        let mut layers = vec![features.dim as u32];
        if request.hidden > 0 {
            layers.push(request.hidden);
        }
        layers.push(labels.len() as u32);
        let total_steps = u32::try_from(steps)
            .ok()
            .filter(|&t| t > request.warmup_steps);
        let trainer = Trainer::create(&TrainerConfig {
            learning_rate: request.learning_rate,
            weight_decay: request.weight_decay,
            warmup_steps: request.warmup_steps,
            total_steps,
            seed: request.seed,
            device,
            ..TrainerConfig::new(layers, Loss::CrossEntropy)
        })?;
        let at = Checkpoint {
            features: objects::put(features.to_bytes()),
            labels,
            trainer: trainer.save(),
            epoch: 0,
            batch: 0,
        };
        checkpoint::save(item, &at)?;
        Ok(at)
    }
}

/// Loss and accuracy on the held-out rows, if there are any.
fn evaluate(trainer: &Trainer, eval: &Split) -> Result<Option<(f32, f32)>, StageError> {
    if eval.rows() == 0 {
        return Ok(None);
    }
    let e = trainer.evaluate(&eval.features, &eval.classes)?;
    Ok(Some((e.loss, e.accuracy.unwrap_or(0.0))))
}

#[cfg(test)]
mod tests {
    use weft_sdk::testing::Harness;

    use super::*;

    fn request(value: Value) -> Result<Request, StageError> {
        let r: Request = Item::json(&value)?.parse_json()?;
        r.check()?;
        Ok(r)
    }

    #[test]
    fn requests_default_sensibly() {
        let r = request(json!({"data": "abc"})).unwrap();
        assert_eq!((r.epochs, r.batch_size, r.hidden), (4, 32, 0));
        assert_eq!(r.learning_rate, 0.05);
    }

    #[test]
    fn bad_requests_say_what_to_fix() {
        for (value, says) in [
            (json!({}), "exactly one of `data`"),
            (json!({"data": "a", "rows": []}), "exactly one of `data`"),
            (
                json!({"data": "a", "epochs": 0}),
                "`epochs` (0) must be 1–1000",
            ),
            (json!({"data": "a", "batch_size": 0}), "`batch_size`"),
            (
                json!({"data": "a", "eval_fraction": 0.95}),
                "`eval_fraction`",
            ),
            (
                json!({"data": "a", "checkpoint_every": 0}),
                "`checkpoint_every`",
            ),
            (json!({"data": "a", "epoch": 3}), "unknown field `epoch`"),
        ] {
            let err = request(value).unwrap_err();
            assert!(err.message().contains(says), "{err:?} should say {says}");
        }
        let r = request(json!({"rows": [{"text": "x"}]})).unwrap();
        assert!(
            r.rows()
                .unwrap_err()
                .message()
                .contains("rows[0]: missing `label`")
        );
    }

    #[test]
    fn init_checks_the_config_then_loads_the_encoder() {
        let err = Harness::<Finetune>::builder()
            .config(&[("device", "tpu")])
            .build()
            .unwrap_err();
        assert!(
            err.contains("config `device`: `tpu` is not `cpu` or `gpu`"),
            "{err}"
        );
        let err = Harness::<Finetune>::builder().build().unwrap_err();
        assert!(
            err.contains("finetune: config `vocab` is required"),
            "{err}"
        );
    }
}
