#!/usr/bin/env bash
# weft-nn on the node's GPU, in one run, each figure against a baseline
# measured in the same run on the same machine:
#   the GPU matmul (operands sent per call / weights resident) vs the CPU kernel;
#   MiniLM-L6 sentences/s on the GPU (activations resident / one round trip
#     per product) vs weft-nn's CPU path, onnxruntime on the CPU and, where
#     PyTorch sees CUDA, PyTorch's BertModel on the same GPU;
#   SmolLM2-135M decode tok/s on the GPU vs the CPU, one session and 16 joined,
#     with each of the few-row product kernels (WEFT_NN_GEMV, gpu/mod.rs) and
#     with the weights as f32 copies rather than their blocks (WEFT_NN_GPU_WEIGHTS),
#     and where its time goes on the device (WEFT_NN_PROFILE=1);
#   the serving figures (examples/nn_serving and generate_serving) with the
#     model on the GPU: cross-instance batching on vs off, and the Wasm boundary.
# Usage: bash benches/gpu.sh   after `cargo xtask models`, `cargo xtask plugins`
# and `cargo build -p weft-nn --example nn_bench --example gpus -p weft-benches
# --examples` (dev profile: weft-nn is optimised there). The PyTorch row
# needs a PY with torch (CUDA), transformers and safetensors, which the
# models' venv lacks: that step alone fails without them. BIN, PY and
# CARGO_TARGET_DIR move the binaries, the Python and the models; the raw
# output lands in $RESULTS (default target/gpu-bench). On a machine without
# a GPU it runs on llvmpipe (slowly: set ROWS=32).
set -uo pipefail
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-target}
export CARGO_TARGET_DIR=$T
BIN=${BIN:-$T/debug/examples}
M=$T/models
PY=${PY:-$M/venv/bin/python}
RESULTS=${RESULTS:-$T/gpu-bench}
ROWS=${ROWS:-256}
mkdir -p "$RESULTS"
IDS=$RESULTS/minilm_ids.json
PROMPT=$RESULTS/prompt.json
if [ ! -f "$IDS" ]; then
  python3 benches/gen_corpus.py "$RESULTS/corpus.txt" --rows "$ROWS" >/dev/null
  $PY benches/nn_baseline.py prep-ids "$RESULTS/corpus.txt" $M/minilm/tokenizer.json "$RESULTS"
fi
[ -f "$PROMPT" ] || $PY benches/nn_baseline.py prompt $M/smollm2-tokenizer.json "$RESULTS"

# Each step is bounded, and a failed one does not stop the rest; the
# decoder's figures come first (the slowest to reach on a GPU), then the
# serving figures, then MiniLM against its baselines. WEFT_NN_PROFILE=1
# runs add the device time of each kernel ("kernels" in the JSON).
step() {
  echo "== $*" | tee -a "$RESULTS/log.txt"
  timeout "${STEP_TIMEOUT:-240}" "$@" 2>&1 | tee -a "$RESULTS/log.txt"
}
GGUF=$M/smollm2-135m-instruct.gguf
step "$BIN/gpus"
for gemv in split deep columns; do
  step env TARGET=gpu WEFT_NN_GEMV=$gemv "$BIN/nn_bench" llama "$GGUF" "$PROMPT" 64
done
# The same with the weights as f32 copies, as before session 37 (their
# blocks are the default).
step env TARGET=gpu WEFT_NN_GPU_WEIGHTS=f32 "$BIN/nn_bench" llama "$GGUF" "$PROMPT" 64
for gemv in split deep; do
  step env TARGET=gpu WEFT_NN_GEMV=$gemv WEFT_NN_PROFILE=1 "$BIN/nn_bench" llama "$GGUF" "$PROMPT" 16
done
step "$BIN/nn_bench" llama "$GGUF" "$PROMPT" 64
for gemv in split deep; do
  step env TARGET=gpu WEFT_NN_GEMV=$gemv "$BIN/nn_bench" joined "$GGUF" 16 16
done
step "$BIN/nn_bench" joined "$GGUF" 16 16
step env DEVICE=gpu TOKENS="${GEN_TOKENS:-32}" ROUNDS="${GEN_ROUNDS:-1}" "$BIN/generate_serving"
step "$BIN/nn_bench" gpu-matmul 256 1024 2048 4096
step env TARGET=gpu "$BIN/nn_bench" minilm $M/minilm/model.onnx "$IDS" 1 32
step env TARGET=gpu WEFT_NN_PROFILE=1 "$BIN/nn_bench" minilm $M/minilm/model.onnx "$IDS" 32
step env TARGET=gpu WEFT_NN_ONNX_RESIDENT=0 "$BIN/nn_bench" minilm $M/minilm/model.onnx "$IDS" 1 32
step "$BIN/nn_bench" minilm $M/minilm/model.onnx "$IDS" 1 32
step $PY benches/nn_baseline.py ort $M/minilm/model.onnx "$IDS" "$(nproc)" 1 32
step $PY benches/nn_baseline.py torch $M/minilm "$IDS" 1 32
step env TARGET=gpu ROUNDS="${SERVE_ROUNDS:-6}" CALLS="${SERVE_CALLS:-20}" "$BIN/nn_serving"
