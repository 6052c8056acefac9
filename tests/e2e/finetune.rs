//! Fine-tuning end to end: the `finetune` stage trains a topic classifier on
//! MiniLM embeddings as an async job (loss per step, accuracy per epoch,
//! checkpoints, resume after a restart), registers `classifier@N`, and the
//! `classify` pipeline serves each new version without a restart.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_e2e::{TestDaemon, model_file};

fn example(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)).unwrap()
}

async fn put_object(d: &TestDaemon, bytes: Vec<u8>) -> String {
    let r = d
        .http
        .put(d.url("/v1/objects"))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A daemon with MiniLM, the finetune and classify stages and their
/// example pipelines; returns it with the training data's object id.
async fn daemon() -> (TestDaemon, String) {
    let d = TestDaemon::start().await;
    let model = std::fs::read(model_file("minilm/model.onnx")).unwrap();
    let r = d
        .http
        .put(d.url("/v1/models/minilm?encoding=onnx"))
        .body(model)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let vocab = put_object(&d, std::fs::read(model_file("minilm/vocab.txt")).unwrap()).await;
    for stage in ["finetune", "classify"] {
        d.deploy_query(
            stage,
            &format!("{stage}.wasm"),
            &format!("config.vocab={vocab}"),
        )
        .await;
        crate::jobs::apply(
            &d,
            stage,
            &example(&format!("examples/pipelines/{stage}.toml")),
        )
        .await;
    }
    let data = put_object(&d, example("examples/data/topics.jsonl").into_bytes()).await;
    (d, data)
}

async fn train(d: &TestDaemon, input: Value) -> String {
    let (status, job, _) = crate::jobs::submit(
        d,
        &json!({"kind": "invoke", "pipeline": "finetune", "input": input}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    job["id"].as_str().unwrap().to_string()
}

async fn classify(d: &TestDaemon, text: &str) -> Value {
    let (status, v, _) = d.post("/classify", &json!({"text": text})).await;
    assert_eq!(status, 200, "{v}");
    v
}

const SPORTS: &str = "The goalkeeper saved a penalty in the cup final.";
const FOOD: &str = "The chef baked bread with rosemary and garlic.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finetune_trains_registers_and_serving_switches_versions() {
    let (d, data) = daemon().await;

    // Before any training there is no classifier: the error says what to do.
    let (status, v, _) = d.post("/classify", &json!({"text": SPORTS})).await;
    assert!(status >= 500, "{status} {v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("finetune"),
        "{v}"
    );

    let id = train(&d, json!({"data": data, "epochs": 3, "batch_size": 16})).await;
    let job = crate::jobs::finished(&d, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let result = &job["result"][0];
    assert_eq!(result["model"], "classifier", "{result}");
    assert_eq!(result["version"], 1, "{result}");
    assert_eq!(
        result["labels"],
        json!(["business", "food", "science", "sports"])
    );
    assert!(result["eval_rows"].as_u64().unwrap() >= 30, "{result}");
    assert!(result["eval_accuracy"].as_f64().unwrap() >= 0.9, "{result}");
    assert!(result["resumed_at_step"].is_null(), "{result}");

    // Loss per step, falling; accuracy per epoch; progress as steps.
    let events = d.get_text(&format!("/v1/jobs/{id}/events")).await;
    let partials: Vec<Value> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "partial")
        .map(|v| v["item"].clone())
        .collect();
    let losses: Vec<f64> = partials.iter().filter_map(|p| p["loss"].as_f64()).collect();
    let steps = result["steps"].as_u64().unwrap() as usize;
    assert_eq!(losses.len(), steps, "{events}");
    assert!(losses[steps - 1] < losses[0] * 0.5, "{losses:?}");
    let epochs: Vec<&Value> = partials
        .iter()
        .filter(|p| p["eval_accuracy"].is_number())
        .collect();
    assert_eq!(epochs.len(), 3, "{events}");
    assert_eq!(epochs[2]["epoch"], 3);
    assert!(events.contains("epoch 3/3"), "{events}");

    // The registry has it, and the classify pipeline serves it.
    let model = d.get_json("/v1/models/classifier").await;
    assert_eq!(model["versions"].as_array().unwrap().len(), 1, "{model}");
    assert_eq!(
        model["versions"][0]["summary"]["outputs"],
        json!(["logits", "probabilities"])
    );
    let v = classify(&d, SPORTS).await;
    assert_eq!(v["label"], "sports", "{v}");
    assert!(v["score"].as_f64().unwrap() > 0.5, "{v}");
    assert_eq!(classify(&d, FOOD).await["label"], "food");

    // Version 2 is trained on the same texts with every label moved one
    // class on (sports texts labelled "business", …): once it is registered
    // the same pipeline answers with it, without a restart or a redeploy.
    let shifted: Vec<Value> = example("examples/data/topics.jsonl")
        .lines()
        .map(|l| {
            let mut row: Value = serde_json::from_str(l).unwrap();
            let next = match row["label"].as_str().unwrap() {
                "business" => "food",
                "food" => "science",
                "science" => "sports",
                _ => "business",
            };
            row["label"] = json!(next);
            row
        })
        .collect();
    let id = train(&d, json!({"rows": shifted, "epochs": 3, "batch_size": 16})).await;
    let job = crate::jobs::finished(&d, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"][0]["version"], 2, "{job}");
    assert_eq!(classify(&d, SPORTS).await["label"], "business");
    assert_eq!(classify(&d, FOOD).await["label"], "science");

    // The same run with the trainer on the GPU (llvmpipe in CI): the same
    // loss curve and result within float tolerance.
    let gpu_products = |metrics: String| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("weft_gpu_matmuls_total "))
            .map_or(0, |n| n.parse().unwrap())
    };
    let before = gpu_products(d.get_text("/metrics").await);
    let id = train(
        &d,
        json!({"data": data, "epochs": 3, "batch_size": 16, "device": "gpu", "export": "on-gpu"}),
    )
    .await;
    let job = crate::jobs::finished(&d, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let gpu = &job["result"][0];
    let close = |a: &Value, b: &Value| {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        (a - b).abs() <= 1e-4 * (1.0 + a.abs())
    };
    assert!(
        close(&gpu["eval_loss"], &result["eval_loss"]),
        "{gpu} vs {result}"
    );
    assert_eq!(gpu["eval_accuracy"], result["eval_accuracy"]);
    let products = gpu_products(d.get_text("/metrics").await) - before;
    assert!(products >= 3 * 18, "the GPU ran {products} products");
    let events = d.get_text(&format!("/v1/jobs/{id}/events")).await;
    let gpu_losses: Vec<f64> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["item"]["loss"].as_f64())
        .collect();
    assert_eq!(gpu_losses.len(), losses.len());
    for (g, c) in gpu_losses.iter().zip(&losses) {
        assert!(
            (g - c).abs() <= 1e-4 * (1.0 + c.abs()),
            "{gpu_losses:?} vs {losses:?}"
        );
    }

    // Mistakes in the job input are explained.
    let id = train(&d, json!({"data": data, "epochs": 0})).await;
    let job = crate::jobs::finished(&d, &id).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["error"]
            .to_string()
            .contains("`epochs` (0) must be 1–1000"),
        "{job}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_job_resumes_from_its_checkpoint_with_the_same_result() {
    let (mut d, data) = daemon().await;
    let input = json!({
        "data": data, "epochs": 8, "batch_size": 4, "hidden": 32,
        "checkpoint_every": 5, "export": "topics", "seed": 3,
    });

    // Interrupted by a restart part-way through training.
    let id = train(&d, input.clone()).await;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let v = d.get_json(&format!("/v1/jobs/{id}")).await;
        if v["progress"]["done"].as_u64().unwrap_or(0) >= 20 {
            break;
        }
        assert!(Instant::now() < until, "{v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    d.restart().await;
    let resumed = crate::jobs::finished(&d, &id).await;
    assert_eq!(resumed["state"], "succeeded", "{resumed}");
    let resumed = &resumed["result"][0];
    assert!(
        resumed["resumed_at_step"].as_u64().unwrap() >= 20,
        "{resumed}"
    );

    // The same run uninterrupted ends with the same weights: seeded
    // shuffles and an exact checkpoint of the optimizer state.
    let id = train(&d, input).await;
    let straight = crate::jobs::finished(&d, &id).await;
    let straight = &straight["result"][0];
    assert!(straight["resumed_at_step"].is_null(), "{straight}");
    assert_eq!(straight["steps"], resumed["steps"]);
    assert_eq!(
        straight["eval_loss"], resumed["eval_loss"],
        "{straight} vs {resumed}"
    );
    // Bit-identical weights make identical model bytes: no new version.
    assert_eq!(straight["version"], 1, "{straight}");
    assert_eq!(resumed["version"], 1, "{resumed}");
}
