//! MiniLM serving through `wasi:nn`, in-process, two measurements against
//! baselines from the same run:
//!
//! 1. **Cross-instance batching**: 16 instances of the `embed` stage each
//!    `invoke`d with one text, all at once, with the node's batcher on
//!    (`max_batch` 32, `max_wait` 2 ms) and off (`max_batch` 1): items/s
//!    and the ratio, for texts of one length, of varied lengths in one
//!    bucket, and of varied lengths without bucketing (`pad_to_multiple_of=1`).
//! 2. **The Wasm boundary**: one `invoke` with one text, batching off, one
//!    call after another, against the same work done natively (the same
//!    `tok` tokenizer, weft-nn on the same model with the same padded
//!    shapes, mean pooling, the JSON out); the outputs are checked equal.
//!
//! ```text
//! cargo xtask models && cargo xtask plugins   # once: MiniLM and embed.wasm
//! cargo run -p weft-benches --example nn_serving            # dev profile
//! cargo run -p weft-benches --example nn_serving --release  # release
//! ```
//!
//! The dev profile is fine for the ratios (weft-nn, Cranelift, wasmtime
//! and weft-runtime are optimised there too; see the root `Cargo.toml`),
//! but this file and the tokenizer's native side are not, so the native
//! baseline is slower there than in a release build. `ROUNDS` (default
//! 20) sets the rounds of 16 calls per batching case and `CALLS` (default
//! 60) the calls per boundary case. The compared variants alternate round
//! by round and medians are reported, so a noisy neighbour hits both.
//! A last batching row times weft-nn alone on the same texts (16 batch-1
//! calls on 16 threads vs one batch-16 call): the ceiling for what
//! batching in the node can gain on this machine. `TARGET=gpu` runs the
//! model on the node's GPU (llvmpipe, software Vulkan, where there is none):
//! the engine then has the large per-call cost of a device round trip that
//! batching exists to amortise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tok::WordPiece;
use weft_runtime::{BatchConfig, EngineBackend, Item, Runtime, RuntimeConfig, StagePool};
use weft_store::{StageMeta, Store};

/// Concurrent single-text callers in the batching measurement.
const CALLERS: usize = 16;
/// The stage's `pad_to_multiple_of` in the bucketed cases.
const BUCKET: usize = 16;
/// The stage's default `max_tokens`.
const MAX_TOKENS: usize = 128;
/// How long the batcher's first call waits for others.
const MAX_WAIT: Duration = Duration::from_millis(2);
/// Words the MiniLM vocab has whole, so `n` of them are `n + 2` tokens.
const WORDS: &str = "the quick brown fox jumps over a lazy dog while small birds sing \
    in an old tree near the river and children play on green grass under blue sky \
    as people walk home from work after long day in busy city full of cars";

fn main() {
    let rounds = env_or("ROUNDS", 20);
    let gpu = std::env::var("TARGET").is_ok_and(|t| t == "gpu");
    let (target, engine_target) = if gpu {
        (weft_runtime::ExecutionTarget::Gpu, weft_nn::Target::Gpu)
    } else {
        (weft_runtime::ExecutionTarget::Cpu, weft_nn::Target::Cpu)
    };
    let calls = env_or("CALLS", 60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let _guard = rt.enter();
    let setup = Instant::now();
    let node = Node::new();
    let on = node.runtime(BatchConfig {
        max_batch: 32,
        max_wait: MAX_WAIT,
        registry_target: target,
        ..BatchConfig::default()
    });
    let off = node.runtime(BatchConfig {
        max_batch: 1,
        max_wait: MAX_WAIT,
        registry_target: target,
        ..BatchConfig::default()
    });
    let words = node.words();
    // Text `i` is `n` words from offset `3 i`: `n + 2` tokens.
    let text = |i: usize, n: usize| -> String {
        let w: Vec<&str> = (0..n).map(|k| words[(3 * i + k) % words.len()]).collect();
        w.join(" ")
    };
    let same: Vec<String> = (0..CALLERS).map(|i| text(i, 30)).collect();
    let varied: Vec<String> = (0..CALLERS).map(|i| text(i, 15 + i)).collect();
    for (t, want) in same
        .iter()
        .zip([32; CALLERS])
        .chain(varied.iter().zip(17..))
    {
        assert_eq!(node.tokens(t), want, "{t:?}");
    }
    let bucketed = [on.pool("embed", &node), off.pool("embed", &node)];
    let unbucketed = [
        on.pool("embed-exact", &node),
        off.pool("embed-exact", &node),
    ];
    for pool in bucketed.iter().chain(&unbucketed) {
        rt.block_on(pool.prewarm(CALLERS)).expect("instances start");
    }
    eprintln!("set up in {:.1} s", setup.elapsed().as_secs_f64());

    let cases = [
        ("16 texts of 32 tokens", &same, &bucketed),
        (
            "16 texts of 17–32 tokens, bucketed (all run as 32)",
            &varied,
            &bucketed,
        ),
        (
            "16 texts of 17–32 tokens, unbucketed (`pad_to_multiple_of=1`)",
            &varied,
            &unbucketed,
        ),
    ];
    let mut batching = Vec::new();
    for (name, texts, [pool_on, pool_off]) in cases {
        let items: Vec<Item> = texts.iter().map(|t| item(t)).collect();
        // Each answer must be one embedding; a warm-up round of each.
        for pool in [pool_on, pool_off] {
            rt.block_on(round(pool, &items));
        }
        let before = on.backend.stats();
        let (computes, calls0) = (load(&before.computes), load(&before.engine_calls));
        let (mut t_on, mut t_off) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            t_on.push(rt.block_on(round(pool_on, &items)));
            t_off.push(rt.block_on(round(pool_off, &items)));
        }
        let stats = on.backend.stats();
        let rows = (load(&stats.computes) - computes) as f64
            / (load(&stats.engine_calls) - calls0).max(1) as f64;
        let per_s = |t: &mut Vec<f64>| CALLERS as f64 / median(t);
        batching.push((name, per_s(&mut t_off), per_s(&mut t_on), rows));
        eprintln!("{name}: done");
    }

    let engine = &off.backend;
    let model = engine
        .engine()
        .load(&node.model, weft_nn::Encoding::Onnx, engine_target)
        .expect("MiniLM loads");
    let engine_only = engine_batching(&*model, &node, &same, rounds);
    let mut session = model.session();
    let pool = &bucketed[1];
    let mut boundary = Vec::new();
    for n in [7, 98] {
        let item = item(&text(0, n));
        let tokens = n + 2;
        let native = |session: &mut Box<dyn weft_nn::Session>| {
            native_embed(session, &node.tokenizer, &item.payload)
        };
        // Equal work: the same answer both ways.
        let wasm_out = rt
            .block_on(pool.invoke(vec![item.clone()], None))
            .expect("embed runs");
        assert_same(&wasm_out[0].payload, &native(&mut session));
        let (mut t_native, mut t_wasm) = (Vec::new(), Vec::new());
        for _ in 0..calls {
            let t = Instant::now();
            std::hint::black_box(native(&mut session));
            t_native.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let out = rt.block_on(pool.invoke(vec![item.clone()], None));
            std::hint::black_box(out.expect("embed runs"));
            t_wasm.push(t.elapsed().as_secs_f64());
        }
        let padded = padded_len(tokens);
        boundary.push((tokens, padded, median(&mut t_native), median(&mut t_wasm)));
    }
    batching.push(engine_only);
    report(&batching, &boundary, rounds, calls);
}

/// A store with MiniLM registered as `minilm`, its vocab as an object and
/// the `embed` component deployed twice: bucketed (`embed`, the default
/// `pad_to_multiple_of`) and padded to the longest only (`embed-exact`).
struct Node {
    store: Store,
    component: Vec<u8>,
    model: Vec<u8>,
    tokenizer: WordPiece,
    stages: Vec<(&'static str, weft_store::StageVersion)>,
    _dir: tempfile::TempDir,
}

/// One runtime over the node's store with its own inference backend.
struct Serving {
    runtime: Arc<Runtime>,
    backend: Arc<EngineBackend>,
}

impl Node {
    fn new() -> Self {
        let models = weft_benches::target_dir().join("models/minilm");
        let read = weft_benches::read_input;
        let model = read(models.join("model.onnx"));
        let vocab = read(models.join("vocab.txt"));
        let component = read(weft_benches::wasm_path("embed.wasm"));
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("weft.redb")).expect("store");
        // What `PUT /v1/models/minilm?encoding=onnx` stores.
        let summary = json!({"format": "onnx"}).to_string();
        store
            .put_model("minilm", "onnx", &model, &summary)
            .expect("model stored");
        let vocab_id = store.put_object(&vocab).expect("vocab stored");
        let stages = [("embed", BUCKET), ("embed-exact", 1)]
            .into_iter()
            .map(|(name, multiple)| {
                let meta = StageMeta {
                    config: vec![
                        ("vocab".into(), vocab_id.clone()),
                        ("pad_to_multiple_of".into(), multiple.to_string()),
                    ],
                    env: Vec::new(),
                };
                let version = store.put_stage(name, &component, meta).expect("stored");
                (name, version)
            })
            .collect();
        Node {
            store,
            component,
            model,
            tokenizer: WordPiece::from_bytes(&vocab).expect("vocab.txt parses"),
            stages,
            _dir: dir,
        }
    }

    fn runtime(&self, batch: BatchConfig) -> Serving {
        let config = RuntimeConfig {
            max_instances_per_stage: CALLERS,
            ..RuntimeConfig::default()
        };
        let backend = Arc::new(EngineBackend::new(batch));
        let runtime =
            Runtime::with_nn(self.store.clone(), config, backend.clone()).expect("runtime");
        Serving { runtime, backend }
    }

    /// The words of [`WORDS`] that are one token each.
    fn words(&self) -> Vec<&'static str> {
        let words: Vec<&str> = WORDS
            .split_whitespace()
            .filter(|w| self.tokenizer.tokenize(w).len() == 1)
            .collect();
        assert!(words.len() > 40, "too few one-token words: {words:?}");
        words
    }

    fn tokens(&self, text: &str) -> usize {
        self.tokenizer.encode(text, MAX_TOKENS).ids.len()
    }
}

impl Serving {
    fn pool(&self, stage: &str, node: &Node) -> Arc<StagePool> {
        let (_, version) = node
            .stages
            .iter()
            .find(|(name, _)| *name == stage)
            .expect("deployed");
        let compiled = self.runtime.compile(&node.component).expect("valid stage");
        self.runtime.pool_from(stage, version, compiled)
    }
}

fn item(text: &str) -> Item {
    Item {
        key: None,
        content_type: "application/json".into(),
        payload: json!({ "text": text }).to_string().into_bytes(),
    }
}

/// Seconds for one text to each of [`CALLERS`] instances, all at once.
async fn round(pool: &Arc<StagePool>, items: &[Item]) -> f64 {
    let t = Instant::now();
    let calls: Vec<_> = items
        .iter()
        .map(|item| {
            let (pool, item) = (pool.clone(), item.clone());
            tokio::spawn(async move { pool.invoke(vec![item], None).await })
        })
        .collect();
    for call in calls {
        let out = call.await.expect("task").expect("embed runs");
        assert_eq!(out.len(), 1);
    }
    t.elapsed().as_secs_f64()
}

/// weft-nn alone on `texts`: one batch-1 call per text on its own thread
/// and session, all at once (what batching off does), against one call on
/// all of them; the most cross-instance batching can gain.
fn engine_batching(
    model: &dyn weft_nn::Model,
    node: &Node,
    texts: &[String],
    rounds: usize,
) -> (&'static str, f64, f64, f64) {
    let rows: Vec<Vec<(String, weft_nn::Tensor)>> = texts
        .iter()
        .map(|t| {
            let enc = node.tokenizer.encode(t, MAX_TOKENS);
            padded_inputs(&enc, node.tokenizer.pad_id(), 1)
        })
        .collect();
    let merged: Vec<(String, weft_nn::Tensor)> = (0..rows[0].len())
        .map(|k| {
            let (name, mut t) = rows[0][k].clone();
            for row in &rows[1..] {
                t.shape[0] += 1;
                t.data.extend_from_slice(&row[k].1.data);
            }
            (name, t)
        })
        .collect();
    let mut sessions: Vec<_> = rows.iter().map(|_| model.session()).collect();
    let mut batch_session = model.session();
    let (mut t_one, mut t_each) = (Vec::new(), Vec::new());
    for _ in 0..rounds.div_ceil(2) {
        let t = Instant::now();
        batch_session.compute(&merged).expect("MiniLM runs");
        t_one.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::thread::scope(|scope| {
            for (session, row) in sessions.iter_mut().zip(&rows) {
                scope.spawn(move || session.compute(row).expect("MiniLM runs"));
            }
        });
        t_each.push(t.elapsed().as_secs_f64());
    }
    let per_s = |t: &mut Vec<f64>| texts.len() as f64 / median(t);
    (
        "weft-nn alone, no Wasm: the 16 texts of 32 tokens, 16 batch-1 calls at once vs one call",
        per_s(&mut t_each),
        per_s(&mut t_one),
        texts.len() as f64,
    )
}

/// The three model inputs for one encoding, padded to the stage's bucket.
fn padded_inputs(enc: &tok::Encoding, pad_id: u32, batch: usize) -> Vec<(String, weft_nn::Tensor)> {
    let (len, seq) = (enc.ids.len(), padded_len(enc.ids.len()));
    let pad = |v: &[u32], fill: u32| -> Vec<i64> {
        v.iter()
            .copied()
            .chain(std::iter::repeat_n(fill, seq - len))
            .map(i64::from)
            .collect()
    };
    let shape = vec![batch, seq];
    [
        ("input_ids", pad(&enc.ids, pad_id)),
        ("attention_mask", pad(&enc.attention_mask, 0)),
        ("token_type_ids", pad(&enc.type_ids, 0)),
    ]
    .map(|(name, v)| {
        (
            name.to_string(),
            weft_nn::Tensor::from_i64(shape.clone(), &v),
        )
    })
    .into()
}

/// The stage's sequence length for `tokens`: the next multiple of
/// [`BUCKET`], at most [`MAX_TOKENS`].
fn padded_len(tokens: usize) -> usize {
    tokens.next_multiple_of(BUCKET).min(MAX_TOKENS)
}

/// What the `embed` stage does with one JSON item, natively.
fn native_embed(
    session: &mut Box<dyn weft_nn::Session>,
    tokenizer: &WordPiece,
    payload: &[u8],
) -> Vec<u8> {
    let doc: Value = serde_json::from_slice(payload).expect("json");
    let enc = tokenizer.encode(doc["text"].as_str().expect("text"), MAX_TOKENS);
    let (len, seq) = (enc.ids.len(), padded_len(enc.ids.len()));
    let inputs = padded_inputs(&enc, tokenizer.pad_id(), 1);
    let mask = inputs[1].1.to_i64().expect("i64 mask");
    let outputs = session.compute(&inputs).expect("MiniLM runs");
    let (_, hidden) = outputs
        .iter()
        .find(|(name, _)| name == "last_hidden_state")
        .expect("last_hidden_state");
    let hidden = hidden.to_f32().expect("f32");
    let dim = hidden.len() / seq;
    let mut sum = vec![0f32; dim];
    let mut count = 0f32;
    for (&m, row) in mask.iter().zip(hidden.chunks(dim)) {
        if m != 0 {
            sum.iter_mut().zip(row).for_each(|(s, &x)| *s += x);
            count += 1.0;
        }
    }
    sum.iter_mut().for_each(|s| *s /= count.max(1e-9));
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    sum.iter_mut().for_each(|x| *x /= norm);
    serde_json::to_vec(&json!({"embedding": sum, "tokens": len})).expect("encode")
}

/// The stage's answer and the native one hold the same embedding.
fn assert_same(wasm: &[u8], native: &[u8]) {
    let (a, b): (Value, Value) = (
        serde_json::from_slice(wasm).expect("stage json"),
        serde_json::from_slice(native).expect("native json"),
    );
    assert_eq!(a["tokens"], b["tokens"]);
    let (a, b) = (
        a["embedding"].as_array().expect("embedding"),
        b["embedding"].as_array().expect("embedding"),
    );
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(0.0)).abs())
        .fold(0f64, f64::max);
    assert!(worst <= 1e-6, "stage and native differ by {worst}");
}

fn report(
    batching: &[(&str, f64, f64, f64)],
    boundary: &[(usize, usize, f64, f64)],
    rounds: usize,
    calls: usize,
) {
    let profile = if cfg!(debug_assertions) {
        "dev profile (weft-nn, Cranelift, wasmtime and weft-runtime optimised)"
    } else {
        "release profile"
    };
    println!(
        "MiniLM-L6 through `wasi:nn`, {profile}, {} cores\n",
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    println!(
        "**Cross-instance batching**: {CALLERS} `embed` instances, one text each, all at once; \
         median of {rounds} rounds; batching on = `max_batch` 32, `max_wait` {} ms\n",
        MAX_WAIT.as_millis()
    );
    println!(
        "| texts | batching off items/s | batching on items/s | on / off | rows per engine call (on) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, off, on, rows) in batching {
        println!(
            "| {name} | {off:.0} | {on:.0} | **{:.2}×** | {rows:.1} |",
            on / off
        );
    }
    println!(
        "\n**Wasm boundary**: one `invoke` of `embed` with one text (batching off, sequential) \
         vs tokenise + weft-nn + mean-pool + JSON natively, same padded shape; median of {calls} calls\n"
    );
    println!("| text | native | `embed` stage | stage / native |");
    println!("| --- | ---: | ---: | ---: |");
    for (tokens, padded, native, wasm) in boundary {
        println!(
            "| {tokens} tokens (run as {padded}) | {:.2} ms | {:.2} ms | **{:.2}×** |",
            native * 1e3,
            wasm * 1e3,
            wasm / native
        );
    }
    println!(
        "\nReproduce: `cargo xtask models && cargo xtask plugins`, then \
         `cargo run -p weft-benches --example nn_serving` (add `--release` for the release \
         profile; `ROUNDS=`, `CALLS=` set the sample sizes)."
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::Relaxed)
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}
