//! `classify`: labels texts with a classifier head trained by `finetune`,
//! over sentence embeddings, through `wasi:nn`.
//!
//! Config (the encoder's keys, as for `embed`, plus):
//!
//! | key          | default             | meaning                                                  |
//! |--------------|---------------------|----------------------------------------------------------|
//! | `model`      | `minilm`            | the sentence encoder's name in the registry              |
//! | `vocab`      | required            | object id of its `vocab.txt`                             |
//! | `classifier` | `classifier@latest` | the head: `NAME`, `NAME@latest` or `NAME@N`              |
//! | `labels`     | required            | the class names in class order, comma-separated (the `labels` `finetune` returned) |
//!
//! Input, per item: JSON `{"text": "..."}` or a `text/*` item. Output, per
//! item and keeping its key: `{"label", "score", "scores": {label: p}, ...}` (the
//! input's other fields but `text`, such as an `id`, passed on).
//!
//! The classifier is looked up by name on every batch, so with
//! `classifier@latest` a newly trained version serves from the next request
//! on, without a restart or a redeploy; the engine loads each version once
//! and shares it. A classifier that does not exist yet fails the request
//! with a message saying to run `finetune` first.

use std::collections::BTreeMap;

use serde::Serialize;
use weft_sdk::nn::errors::ErrorCode;
use weft_sdk::nn::graph;
use weft_sdk::nn::tensor::{Tensor, TensorType};
use weft_sdk::{Config, Item, Stage, StageError};

/// The stage: the encoder, the classifier's name and its labels.
#[derive(Debug)]
pub struct Classify {
    encoder: encoder::Encoder,
    classifier: String,
    labels: Vec<String>,
}

#[derive(Serialize)]
struct Output<'a> {
    label: &'a str,
    score: f32,
    scores: BTreeMap<&'a str, f32>,
    /// The input's other fields (an `id`), passed on.
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl Stage for Classify {
    fn init(config: Config) -> Result<Self, String> {
        let [a, b, c, d] = encoder::KEYS;
        config.expect_keys("classify", &["labels", "classifier", a, b, c, d])?;
        let labels: Vec<String> = config
            .parse::<String>("labels")
            .map_err(|e| format!("classify: {e}: the class names in order, e.g. labels=\"business,science,sports\""))?
            .split(',')
            .map(|l| l.trim().to_string())
            .collect();
        if labels.len() < 2 || labels.iter().any(String::is_empty) {
            return Err(format!(
                "classify: `labels` must name at least 2 classes, none empty; got {labels:?}"
            ));
        }
        let classifier = config.get_or("classifier", "classifier@latest").to_string();
        let encoder = encoder::Encoder::from_config(&config, "classify", "")?;
        Ok(Self {
            encoder,
            classifier,
            labels,
        })
    }

    fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let texts = batch
            .iter()
            .enumerate()
            .map(|(i, item)| encoder::text_of("classify", "text", i, item))
            .collect::<Result<Vec<_>, _>>()?;
        let embedded = self.encoder.embed(&texts)?;
        let dim = embedded[0].vector.len();
        let features: Vec<u8> = embedded
            .iter()
            .flat_map(|e| e.vector.iter().flat_map(|v| v.to_le_bytes()))
            .collect();
        let probabilities = self.classify(&features, batch.len(), dim)?;
        let k = self.labels.len();
        batch
            .iter()
            .zip(probabilities.chunks(k))
            .map(|(item, p)| {
                let best = (0..k).fold(0, |b, i| if p[i] > p[b] { i } else { b });
                let out = Output {
                    label: &self.labels[best],
                    score: p[best],
                    scores: self
                        .labels
                        .iter()
                        .map(String::as_str)
                        .zip(p.iter().copied())
                        .collect(),
                    rest: encoder::other_fields(item, &["text", "label", "score", "scores"]),
                };
                Ok(Item::json(&out)?.with_key_from(item))
            })
            .collect()
    }
}

weft_sdk::export_stage!(Classify);

impl Classify {
    /// Runs the classifier on `rows` feature rows; returns `rows × labels`
    /// probabilities.
    fn classify(&self, features: &[u8], rows: usize, dim: usize) -> Result<Vec<f32>, StageError> {
        let name = &self.classifier;
        let failed = |e: weft_sdk::nn::errors::Error| {
            let message = format!("classify: classifier `{name}`: {e}");
            match e.code() {
                ErrorCode::NotFound => StageError::fatal(format!(
                    "{message}; train one first with the `finetune` stage (it registers `classifier@N`)"
                )),
                ErrorCode::Timeout | ErrorCode::RuntimeError | ErrorCode::Unknown => {
                    StageError::retryable(message)
                }
                _ => StageError::fatal(message),
            }
        };
        let graph = graph::load_by_name(name).map_err(failed)?;
        let context = graph.init_execution_context().map_err(failed)?;
        let input = Tensor::new(&[rows as u32, dim as u32], TensorType::Fp32, features);
        let outputs = context
            .compute(vec![("features".to_string(), input)])
            .map_err(failed)?;
        let (_, probs) = outputs
            .into_iter()
            .find(|(n, _)| n == "probabilities")
            .ok_or_else(|| {
                StageError::fatal(format!(
                    "classify: classifier `{name}` has no `probabilities` output; was it made by `finetune`?"
                ))
            })?;
        let k = self.labels.len();
        if probs.dimensions() != [rows as u32, k as u32] || probs.ty() != TensorType::Fp32 {
            return Err(StageError::fatal(format!(
                "classify: classifier `{name}` gave probabilities of shape {:?} for {rows} texts, \
                 but `labels` names {k} classes; set `labels` to the list `finetune` returned",
                probs.dimensions()
            )));
        }
        Ok(probs
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use weft_sdk::testing::Harness;

    use super::*;

    #[test]
    fn labels_are_required_and_need_two_classes() {
        let err = Harness::<Classify>::builder().build().unwrap_err();
        assert!(err.contains("config `labels` is required"), "{err}");
        for labels in ["only", "a,,b"] {
            let err = Harness::<Classify>::builder()
                .config(&[("labels", labels)])
                .build()
                .unwrap_err();
            assert!(err.contains("at least 2 classes, none empty"), "{err}");
        }
        let err = Harness::<Classify>::builder()
            .config(&[("labels", "a, b")])
            .build()
            .unwrap_err();
        assert!(
            err.contains("classify: config `vocab` is required"),
            "{err}"
        );
    }
}
