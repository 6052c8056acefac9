//! SmolLM2 generation through `wasi:nn`, in-process: 16 instances of the
//! `generate` stage, each asked a different question at once (greedy, up
//! to `TOKENS` tokens each), with the node's batcher on (`max_batch` 32:
//! concurrent decoder calls join one pass over the weights, each on its own
//! KV cache) and off (`max_batch` 1: each instance's calls run on their
//! own). Reports generated tokens/s both ways, the ratio and the calls per
//! engine pass; the answers are checked equal. A last row times one caller alone both ways (what a
//! lone generation pays for the batcher).
//!
//! ```text
//! cargo xtask models && cargo xtask plugins   # once: SmolLM2 and generate.wasm
//! cargo run -p weft-benches --example generate_serving --release
//! ```
//!
//! `ROUNDS` (default 3) sets the rounds per case, `TOKENS` (default 64)
//! the most tokens per answer and `MAX_WAIT_US` (default 1000, the node's
//! `--nn-max-wait-us`) how long a pass waits for the last pass's callers;
//! `DEVICE=gpu` runs the model on the GPU (the node's `--nn-device gpu`;
//! Mesa's llvmpipe where there is no GPU). On and off alternate round by round and
//! medians are reported, so a noisy neighbour hits both.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use weft_runtime::{
    BatchConfig, EngineBackend, ExecutionTarget, Item, Runtime, RuntimeConfig, StagePool,
};
use weft_store::{StageMeta, Store};

/// Concurrent callers.
const CALLERS: usize = 16;
/// Open questions: each answer runs to `TOKENS` tokens, so decoding, not
/// the prompts, is most of the work, as in a chat service.
const QUESTIONS: [&str; CALLERS] = [
    "Tell me about the history of Paris.",
    "Explain how rain forms.",
    "Describe a day at the beach.",
    "Why do leaves change colour in autumn?",
    "Write a short poem about the sea.",
    "Explain how a bicycle works.",
    "Tell me about the planet Jupiter.",
    "Describe how bread is made.",
    "Why is exercise good for you?",
    "Tell me a story about a brave cat.",
    "Explain what a computer does.",
    "Describe the water cycle.",
    "What makes a good friend?",
    "Tell me about the history of trains.",
    "Explain how plants grow.",
    "Describe a busy city street.",
];

fn main() {
    let rounds = env_or("ROUNDS", 3);
    let tokens = env_or("TOKENS", 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let _guard = rt.enter();
    let setup = Instant::now();
    let node = Node::new();
    let max_wait = std::time::Duration::from_micros(env_or("MAX_WAIT_US", 1000) as u64);
    let gpu = std::env::var("DEVICE").is_ok_and(|d| d == "gpu");
    let registry_target = if gpu {
        ExecutionTarget::Gpu
    } else {
        ExecutionTarget::Cpu
    };
    let (on, backend) = node.pool(BatchConfig {
        max_batch: 32,
        max_wait,
        registry_target,
        ..BatchConfig::default()
    });
    let (off, _) = node.pool(BatchConfig {
        max_batch: 1,
        registry_target,
        ..BatchConfig::default()
    });
    for pool in [&on, &off] {
        rt.block_on(pool.prewarm(CALLERS)).expect("instances start");
    }
    let items: Vec<Item> = QUESTIONS
        .iter()
        .map(|q| item(&json!({"prompt": q, "max_tokens": tokens})))
        .collect();
    // A warm-up round each (the model loads), and the same answers both ways.
    let (a, _) = rt.block_on(round(&on, &items));
    let (b, _) = rt.block_on(round(&off, &items));
    assert_eq!(a, b, "batching changed an answer");
    let generated: usize = a
        .iter()
        .map(|v| v["tokens"].as_u64().unwrap() as usize)
        .sum();
    eprintln!(
        "set up in {:.1} s; {generated} tokens a round",
        setup.elapsed().as_secs_f64()
    );

    let mut rows = Vec::new();
    for (name, items) in [
        ("16 callers at once", &items[..]),
        ("1 caller alone", &items[..1]),
    ] {
        let stats = backend.stats();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let (computes, passes) = (load(&stats.computes), load(&stats.engine_calls));
        let generated: usize = rt
            .block_on(round(&on, items))
            .0
            .iter()
            .map(|v| v["tokens"].as_u64().unwrap() as usize)
            .sum();
        let (mut t_on, mut t_off) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            t_on.push(rt.block_on(round(&on, items)).1);
            t_off.push(rt.block_on(round(&off, items)).1);
        }
        let per_pass = (load(&stats.computes) - computes) as f64
            / (load(&stats.engine_calls) - passes).max(1) as f64;
        let per_s = |t: &mut Vec<f64>| generated as f64 / median(t);
        rows.push((name, per_s(&mut t_off), per_s(&mut t_on), per_pass));
        eprintln!("{name}: done");
    }
    let target = if gpu {
        weft_nn::Target::Gpu
    } else {
        weft_nn::Target::Cpu
    };
    let (alone, joined) = engine_ceiling(&node.model, target, rounds.max(5));
    rows.push((
        "weft-nn alone: one step of 16 sessions",
        16.0 / alone,
        16.0 / joined,
        16.0,
    ));
    let device = if gpu { ", on the GPU" } else { "" };
    println!(
        "\n| SmolLM2-135M Q4_1{device}, greedy, up to {tokens} tokens each | batching off tok/s | \
         batching on tok/s | on / off | calls per pass (on) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, off, on, per_pass) in rows {
        println!(
            "| {name} | {off:.1} | {on:.1} | {:.2}x | {per_pass:.1} |",
            on / off
        );
    }
    println!(
        "\n(medians of {rounds} rounds; `cargo run -p weft-benches --example generate_serving \
         --release`)"
    );
}

/// Seconds (medians) for one decoding step of 16 primed sessions: each on
/// its own thread, all at once (batching off), and joined in one call.
fn engine_ceiling(bytes: &[u8], target: weft_nn::Target, rounds: usize) -> (f64, f64) {
    use weft_nn::{Encoding, Engine, Session, Tensor};
    let engine = Engine::default();
    let model = engine
        .load(bytes, Encoding::Ggml, target)
        .expect("SmolLM2 loads");
    eprintln!("engine ceiling: SmolLM2 on {:?}", model.placement());
    let ids = |ids: &[i64]| {
        vec![(
            "input_ids".to_string(),
            Tensor::from_i64(vec![ids.len()], ids),
        )]
    };
    let mut sessions: Vec<Box<dyn Session>> = (0..CALLERS).map(|_| model.session()).collect();
    let prompt: Vec<i64> = (0..30).map(|i| 500 + i).collect();
    for s in &mut sessions {
        s.compute(&ids(&prompt)).expect("prompt");
    }
    let step = ids(&[504]);
    let (mut alone, mut joined) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        std::thread::scope(|scope| {
            for s in &mut sessions {
                let step = &step;
                scope.spawn(move || s.compute(step).expect("step"));
            }
        });
        alone.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut calls: Vec<weft_nn::Joined<'_>> = sessions
            .iter_mut()
            .map(|s| (&mut **s, step.as_slice()))
            .collect();
        for r in model.compute_joined(&mut calls) {
            r.expect("step");
        }
        joined.push(t.elapsed().as_secs_f64());
    }
    (median(&mut alone), median(&mut joined))
}

/// A store with SmolLM2 registered as `smollm2`, its tokenizer as an
/// object, and the `generate` stage deployed.
struct Node {
    store: Store,
    model: Vec<u8>,
    component: Vec<u8>,
    version: weft_store::StageVersion,
    runtimes: std::sync::Mutex<Vec<Arc<Runtime>>>,
    _dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        let read = weft_benches::read_input;
        let models = weft_benches::target_dir().join("models");
        let model = read(models.join("smollm2-135m-instruct.gguf"));
        let tokenizer = read(models.join("smollm2-tokenizer.json"));
        let component = read(weft_benches::wasm_path("generate.wasm"));
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("weft.redb")).expect("store");
        // What `PUT /v1/models/smollm2?encoding=ggml` stores.
        let summary = json!({"format": "gguf"}).to_string();
        store
            .put_model("smollm2", "ggml", &model, &summary)
            .expect("model stored");
        let tokenizer = store.put_object(&tokenizer).expect("tokenizer stored");
        let meta = StageMeta {
            config: vec![("tokenizer".into(), tokenizer)],
            env: Vec::new(),
        };
        let version = store
            .put_stage("generate", &component, meta)
            .expect("stored");
        Node {
            store,
            model,
            component,
            version,
            runtimes: std::sync::Mutex::new(Vec::new()),
            _dir: dir,
        }
    }

    /// The stage's pool on a runtime of its own with the given batching.
    fn pool(&self, batch: BatchConfig) -> (Arc<StagePool>, Arc<EngineBackend>) {
        let config = RuntimeConfig {
            max_instances_per_stage: CALLERS,
            // A software GPU answers 16 unbatched callers slowly.
            deadline: std::time::Duration::from_secs(600),
            acquire_timeout: std::time::Duration::from_secs(600),
            ..RuntimeConfig::default()
        };
        let backend = Arc::new(EngineBackend::new(batch));
        let runtime =
            Runtime::with_nn(self.store.clone(), config, backend.clone()).expect("runtime");
        let compiled = runtime.compile(&self.component).expect("valid stage");
        let pool = runtime.pool_from("generate", &self.version, compiled);
        self.runtimes.lock().unwrap().push(runtime);
        (pool, backend)
    }
}

fn item(body: &Value) -> Item {
    Item {
        key: None,
        content_type: "application/json".into(),
        payload: body.to_string().into_bytes(),
    }
}

/// Every item to its own instance at once: the answers, and the seconds
/// until the last one.
async fn round(pool: &Arc<StagePool>, items: &[Item]) -> (Vec<Value>, f64) {
    let t = Instant::now();
    let calls: Vec<_> = items
        .iter()
        .map(|item| {
            let (pool, item) = (pool.clone(), item.clone());
            tokio::spawn(async move { pool.invoke(vec![item], None).await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        let out = call.await.expect("task").expect("generate runs");
        let v: Value = serde_json::from_slice(&out[0].payload).expect("JSON answer");
        answers.push(v);
    }
    (answers, t.elapsed().as_secs_f64())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
