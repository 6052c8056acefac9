#!/usr/bin/env bash
# weft-nn against the CPU engines people would otherwise use, in one run on
# the same machine, same models, same token ids:
#   MiniLM-L6 (ONNX) sentences/s at batch 1 and 32 vs onnxruntime, 2 and 1 threads
#   SmolLM2-135M (GGUF Q4_1) prompt latency and decode tok/s vs llama.cpp (2 threads),
#   and decode tok/s of the same weights in K-quant formats (Q4_K/Q5_K/Q6_K/Q5_0/Q5_1,
#   which weft transcodes at load; llama.cpp reads them natively)
#   a 1024x1024 f32 matmul vs a plain triple loop and numpy's BLAS
# Prints a markdown table of weft/baseline ratios (>1: weft is faster).
# Usage: bash benches/nn.sh   (fetches models with `cargo xtask models` if
# missing; ~3 minutes on 2 cores). The raw measurements land in target/nn-bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
M=target/models
PY=$M/venv/bin/python
OUT=target/nn-bench
TOKENS=${TOKENS:-64}
ROWS=${ROWS:-256}
MATN=${MATN:-1024}

if [ ! -f $M/minilm/model.onnx ] || [ ! -f $M/smollm2-135m-instruct.gguf ] \
   || [ ! -f $M/smollm2-135m-kquants.gguf ] || [ ! -x $PY ]; then
  cargo xtask models
fi
# The baselines: llama-cpp-python (built from source for this CPU, several
# minutes the first time and whenever the venv was built on another CPU; see
# scripts/llama_venv.py) and onnxruntime, into the models' venv.
python3 scripts/llama_venv.py --dest $M
if ! $PY -c "import onnxruntime" 2>/dev/null; then
  echo "installing onnxruntime into $M/venv" >&2
  $PY -m pip install --quiet --disable-pip-version-check onnxruntime
fi
mkdir -p $OUT
# weft-nn is optimised in the dev profile (see the root Cargo.toml).
cargo build --quiet -p weft-nn --example nn_bench
BENCH=target/debug/examples/nn_bench

python3 benches/gen_corpus.py $OUT/corpus.txt --rows "$ROWS" >/dev/null
$PY benches/nn_baseline.py prep $OUT/corpus.txt $M/minilm/tokenizer.json $M/smollm2-135m-instruct.gguf $OUT

: >$OUT/results.jsonl
run() { echo "  $*" >&2; "$@" | tee -a $OUT/results.jsonl >&2; }
echo "MiniLM" >&2
run $BENCH minilm $M/minilm/model.onnx $OUT/minilm_ids.json 1 32
run env RAYON_NUM_THREADS=1 $BENCH minilm $M/minilm/model.onnx $OUT/minilm_ids.json 1 32
run $PY benches/nn_baseline.py ort $M/minilm/model.onnx $OUT/minilm_ids.json 2 1 32
run $PY benches/nn_baseline.py ort $M/minilm/model.onnx $OUT/minilm_ids.json 1 1 32
echo "SmolLM2" >&2
run $BENCH llama $M/smollm2-135m-instruct.gguf $OUT/prompt.json "$TOKENS"
run $PY benches/nn_baseline.py llama $M/smollm2-135m-instruct.gguf $OUT/prompt.json "$TOKENS"
run $BENCH llama $M/smollm2-135m-kquants.gguf $OUT/prompt.json "$TOKENS"
run $PY benches/nn_baseline.py llama $M/smollm2-135m-kquants.gguf $OUT/prompt.json "$TOKENS"
echo "matmul" >&2
run $BENCH matmul "$MATN"
run $PY benches/nn_baseline.py numpy "$MATN"

# The table: weft's line and the baseline's line for each row.
$PY - $OUT/results.jsonl <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
# In file order: weft and llama.cpp on the Q4_1 file, then on the K-quant one.
weft_llama, cpp_llama, weft_kq, cpp_kq = [r for r in rows if r["bench"] == "llama"]
def minilm(threads, batch, ort):
    # weft's lines come first in the file, then onnxruntime's.
    ms = [r for r in rows if r["bench"] == "minilm" and r["threads"] == threads and r["batch"] == batch]
    return ms[1 if ort else 0]["sentences_per_s"]
mat = [r for r in rows if r["bench"] == "matmul"]
w, np_ = mat[0], mat[1]
same = 0
for a, b in zip(weft_llama["generated"], cpp_llama["generated"]):
    if a != b:
        break
    same += 1
print("| benchmark | weft-nn | baseline | weft / baseline |")
print("|---|---:|---:|---:|")
for threads in (2, 1):
    for batch in (1, 32):
        a, b = minilm(threads, batch, False), minilm(threads, batch, True)
        print(f"| MiniLM-L6 sentences/s, batch {batch}, {threads} thread{'s' if threads > 1 else ''} (vs onnxruntime) | {a:.1f} | {b:.1f} | {a / b:.2f} |")
a, b = weft_llama["tokens_per_s"], cpp_llama["tokens_per_s"]
print(f"| SmolLM2-135M Q4_1 decode tok/s, 2 threads (vs llama.cpp) | {a:.1f} | {b:.1f} | {a / b:.2f} |")
a, b = weft_kq["tokens_per_s"], cpp_kq["tokens_per_s"]
print(f"| SmolLM2-135M in K-quants (Q4_K/Q5_K/Q6_K/Q5_0/Q5_1) decode tok/s, 2 threads (vs llama.cpp) | {a:.1f} | {b:.1f} | {a / b:.2f} |")
a, b = weft_llama["prompt_ms"], cpp_llama["prompt_ms"]
print(f"| SmolLM2 first token, {weft_llama['prompt_tokens']}-token prompt, ms (vs llama.cpp; ratio = baseline / weft) | {a:.1f} | {b:.1f} | {b / a:.2f} |")
a = w["weft_gflops"]
print(f"| {w['n']}² f32 matmul GFLOP/s, {w['threads']} threads (vs plain 1-thread triple loop) | {a:.1f} | {w['naive_gflops']:.2f} | {a / w['naive_gflops']:.1f} |")
print(f"| {w['n']}² f32 matmul GFLOP/s, {w['threads']} threads (vs numpy's BLAS) | {a:.1f} | {np_['numpy_gflops']:.1f} | {a / np_['numpy_gflops']:.2f} |")
print(f"\nSmolLM2: greedy tokens identical to llama.cpp's for the first {same} of {len(cpp_llama['generated'])}.")
PY
