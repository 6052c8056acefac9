//! `probe`: a test stage whose input says what to do, so the daemon's end-to-end
//! tests can provoke each behaviour (traps, timeouts, memory limits, host calls,
//! each error case) with one component.
//!
//! Every item is JSON `{"op": "<op>", ...}`; items run in order, and each op
//! answers with one JSON item carrying the input's key:
//!
//! | op | input fields | output or effect |
//! | --- | --- | --- |
//! | `echo` | | the input item, unchanged |
//! | `batch` | | `{"batch_size", "index", "input"}`: how the host batched this item |
//! | `log` | | logs at info, then echoes |
//! | `trap` | | panics: "probe: deliberate trap" |
//! | `spin` | | loops forever (for deadlines) |
//! | `sleep` | `ms` | sleeps `ms` milliseconds (an I/O-bound stage), then echoes |
//! | `count_to` | `n`, `ms` | counts to `n`, one step per `ms`, checkpointing and reporting progress each step; `{"counted", "resumed_from"}` |
//! | `alloc` | `mb` | allocates and fills `mb` MiB in 1 MiB blocks, `{"allocated_mb": mb}` |
//! | `put` | `data` (string) | `objects::put`, `{"id": id}` |
//! | `get` | `id` | `{"data": "<utf8>"}`, or bad-input with the host's error |
//! | `state_set` | `key`, `value` | stores `value` (a string's bytes, else its JSON), `{"ok": true}` |
//! | `state_get` | `key` | `{"value": "<utf8>"}` or `{"value": null}` |
//! | `env` | | `{"env": n, "args": n, "root_readable": bool}`: what the sandbox lets through |
//! | `nn` | `name` | `wasi:nn` `load-by-name`: `{"loaded": true}` or `{"error": "<error-code>"}` |
//! | `nn_compute` | `name`, `inputs`: `[{"name", "shape", "type" (`fp32`, `i64`, `i32`, `u8`), "data" (numbers)}]` | loads, computes once: `{"outputs": [{"name", "shape", "data"}]}` (fp32 outputs as numbers) or `{"error": "<error-code>", "message"}` |
//! | `fatal`, `retryable`, `bad` | | fails the batch with that stage error |
//!
//! Config `fail_init=true` makes `init` fail with "probe: init refused by config".

use std::hint::black_box;

use serde_json::{Value, json};
use weft_sdk::nn::{graph, tensor};
use weft_sdk::{Config, Item, Stage, StageError, checkpoint, emit, objects, state};

/// One mebibyte, the block size of the `alloc` op.
const MIB: usize = 1 << 20;

/// The stage; it keeps nothing between batches.
#[derive(Debug)]
pub struct Probe;

impl Stage for Probe {
    fn init(config: Config) -> Result<Self, String> {
        if config.parse_or("fail_init", false)? {
            return Err("probe: init refused by config".to_string());
        }
        Ok(Probe)
    }

    fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
        let size = batch.len();
        batch
            .into_iter()
            .enumerate()
            .map(|(index, item)| run(index, size, item))
            .collect()
    }
}

weft_sdk::export_stage!(Probe);

/// Runs the op of one item; `size` is the length of the batch it came in.
fn run(index: usize, size: usize, item: Item) -> Result<Item, StageError> {
    let input: Value = item.parse_json()?;
    let op = input["op"].as_str().ok_or_else(|| {
        StageError::bad_input(format!(
            "probe: item {index}: expected JSON {{\"op\": string, ...}}"
        ))
    })?;
    let output = match op {
        "echo" => return Ok(item),
        // Records how the host batched this item: its batch's size and its
        // position in it, with the input echoed back.
        "batch" => json!({ "batch_size": size, "index": index, "input": input }),
        "log" => {
            weft_sdk::info!("probe: log op on item {index}");
            return Ok(item);
        }
        "trap" => panic!("probe: deliberate trap"),
        "spin" => spin(),
        "count_to" => {
            let n = field_u64(&input, "n")?;
            let ms = field_u64(&input, "ms")?;
            let start: u64 = checkpoint::load(&item)?.unwrap_or(0);
            for step in start..n {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                checkpoint::save(&item, &(step + 1))?;
                emit::progress(step + 1, Some(n), "counting");
            }
            checkpoint::clear(&item);
            json!({ "counted": n, "resumed_from": start })
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_millis(field_u64(&input, "ms")?));
            return Ok(item);
        }
        "alloc" => json!({ "allocated_mb": alloc(field_u64(&input, "mb")?) }),
        "put" => json!({ "id": objects::put(field_str(&input, "data")?) }),
        "get" => {
            let data = objects::get(field_str(&input, "id")?).map_err(StageError::bad_input)?;
            let data = String::from_utf8(data)
                .map_err(|_| StageError::bad_input("probe: object is not UTF-8"))?;
            json!({ "data": data })
        }
        "state_set" => {
            let value = match &input["value"] {
                Value::String(s) => s.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            state::set(field_str(&input, "key")?, value);
            json!({ "ok": true })
        }
        "state_get" => {
            let value = state::get(field_str(&input, "key")?)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
            json!({ "value": value })
        }
        "env" => json!({
            "env": std::env::vars_os().count(),
            "args": std::env::args_os().count(),
            "root_readable": std::fs::read_dir("/").is_ok(),
        }),
        "nn" => match graph::load_by_name(field_str(&input, "name")?) {
            Ok(_graph) => json!({ "loaded": true }),
            Err(err) => json!({ "error": err.code().name() }),
        },
        "nn_compute" => nn_compute(&input)?,
        "fatal" => return Err(StageError::fatal("probe: fatal requested")),
        "retryable" => return Err(StageError::retryable("probe: retryable requested")),
        "bad" => return Err(StageError::bad_input("probe: bad input requested")),
        other => {
            return Err(StageError::bad_input(format!(
                "probe: item {index}: unknown op {other:?}"
            )));
        }
    };
    Ok(Item::json(&output)?.with_key_from(&item))
}

/// The `nn_compute` op: one `wasi:nn` computation with tensors from JSON.
fn nn_compute(input: &Value) -> Result<Value, StageError> {
    let mut inputs = Vec::new();
    for t in input["inputs"].as_array().into_iter().flatten() {
        let shape: Vec<u32> = t["shape"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_u64().map(|d| d as u32))
            .collect();
        let values = t["data"].as_array().cloned().unwrap_or_default();
        let (ty, data): (_, Vec<u8>) = match t["type"].as_str().unwrap_or("fp32") {
            "i64" => (
                tensor::TensorType::I64,
                values
                    .iter()
                    .flat_map(|v| v.as_i64().unwrap_or(0).to_le_bytes())
                    .collect(),
            ),
            "i32" => (
                tensor::TensorType::I32,
                values
                    .iter()
                    .flat_map(|v| (v.as_i64().unwrap_or(0) as i32).to_le_bytes())
                    .collect(),
            ),
            "u8" => (
                tensor::TensorType::U8,
                values
                    .iter()
                    .map(|v| v.as_u64().unwrap_or(0) as u8)
                    .collect(),
            ),
            _ => (
                tensor::TensorType::Fp32,
                values
                    .iter()
                    .flat_map(|v| (v.as_f64().unwrap_or(0.0) as f32).to_le_bytes())
                    .collect(),
            ),
        };
        let name = t["name"].as_str().unwrap_or("").to_string();
        inputs.push((name, tensor::Tensor::new(&shape, ty, &data)));
    }
    let result = graph::load_by_name(field_str(input, "name")?)
        .and_then(|g| g.init_execution_context())
        .and_then(|ctx| ctx.compute(inputs));
    Ok(match result {
        Ok(outputs) => {
            let outputs: Vec<Value> = outputs
                .into_iter()
                .map(|(name, t)| {
                    let data: Vec<f32> = t
                        .data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    json!({ "name": name, "shape": t.dimensions(), "data": data })
                })
                .collect();
            json!({ "outputs": outputs })
        }
        Err(err) => json!({ "error": err.code().name(), "message": err.data() }),
    })
}

/// Never returns; `black_box` keeps the optimiser from proving the loop empty.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates `mb` MiB in 1 MiB blocks, writing every byte, and keeps all blocks
/// alive until it returns; past the store's memory limit the allocation traps.
fn alloc(mb: u64) -> u64 {
    let blocks: Vec<Vec<u8>> = (0..mb).map(|_| black_box(vec![0xa5u8; MIB])).collect();
    black_box(&blocks);
    blocks.len() as u64
}

fn field_str<'a>(input: &'a Value, name: &str) -> Result<&'a str, StageError> {
    input[name]
        .as_str()
        .ok_or_else(|| StageError::bad_input(format!("probe: `{name}` must be a string")))
}

fn field_u64(input: &Value, name: &str) -> Result<u64, StageError> {
    input[name]
        .as_u64()
        .ok_or_else(|| StageError::bad_input(format!("probe: `{name}` must be a whole number")))
}

#[cfg(test)]
mod tests {
    use weft_sdk::testing::Harness;

    use super::*;

    fn op(value: Value) -> Item {
        Item::json(&value).unwrap().with_key("k")
    }

    fn one(harness: &mut Harness<Probe>, value: Value) -> Result<Value, StageError> {
        let out = harness.process(vec![op(value)])?;
        assert_eq!(out[0].key.as_deref(), Some("k"));
        Ok(out[0].parse_json().unwrap())
    }

    #[test]
    fn echo_and_log_return_the_input() {
        let mut h = Harness::<Probe>::new(&[]);
        let input = op(json!({"op": "echo", "extra": 1}));
        assert_eq!(h.process(vec![input.clone()]).unwrap(), vec![input]);
        one(&mut h, json!({"op": "log"})).unwrap();
        assert_eq!(h.logs()[0].message, "probe: log op on item 0");
    }

    #[test]
    fn objects_and_state_round_trip() {
        let mut h = Harness::<Probe>::new(&[]);
        let id = one(&mut h, json!({"op": "put", "data": "héllo"})).unwrap()["id"].clone();
        let got = one(&mut h, json!({"op": "get", "id": id})).unwrap();
        assert_eq!(got, json!({"data": "héllo"}));
        let err = one(&mut h, json!({"op": "get", "id": "nope"})).unwrap_err();
        assert!(
            matches!(&err, StageError::BadInput(m) if m.contains("not found")),
            "{err:?}"
        );

        one(&mut h, json!({"op": "state_set", "key": "a", "value": "1"})).unwrap();
        let got = one(&mut h, json!({"op": "state_get", "key": "a"})).unwrap();
        assert_eq!(got, json!({"value": "1"}));
        let got = one(&mut h, json!({"op": "state_get", "key": "b"})).unwrap();
        assert_eq!(got, json!({"value": null}));
    }

    #[test]
    fn alloc_reports_what_it_allocated() {
        let mut h = Harness::<Probe>::new(&[]);
        let got = one(&mut h, json!({"op": "alloc", "mb": 2})).unwrap();
        assert_eq!(got, json!({"allocated_mb": 2}));
    }

    #[test]
    fn nn_is_unsupported_natively() {
        let mut h = Harness::<Probe>::new(&[]);
        let got = one(&mut h, json!({"op": "nn", "name": "minilm"})).unwrap();
        assert_eq!(got, json!({"error": "unsupported-operation"}));
    }

    #[test]
    fn error_ops_and_unknown_ops() {
        let mut h = Harness::<Probe>::new(&[]);
        let fatal = one(&mut h, json!({"op": "fatal"})).unwrap_err();
        assert!(matches!(fatal, StageError::Fatal(_)));
        let retry = one(&mut h, json!({"op": "retryable"})).unwrap_err();
        assert!(matches!(retry, StageError::Retryable(_)));
        let bad = one(&mut h, json!({"op": "bad"})).unwrap_err();
        assert!(matches!(bad, StageError::BadInput(_)));
        let unknown = one(&mut h, json!({"op": "dance"})).unwrap_err();
        assert!(matches!(&unknown, StageError::BadInput(m) if m.contains("dance")));
    }

    #[test]
    fn fail_init_refuses() {
        let err = Harness::<Probe>::try_new(&[("fail_init", "true")]).unwrap_err();
        assert_eq!(err, "probe: init refused by config");
    }

    #[test]
    #[should_panic(expected = "probe: deliberate trap")]
    fn trap_panics() {
        let mut h = Harness::<Probe>::new(&[]);
        let _ = h.process(vec![op(json!({"op": "trap"}))]);
    }
}
