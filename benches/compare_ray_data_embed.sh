#!/usr/bin/env bash
# weft batch jobs vs Ray Data with a model: sentence embeddings of the same
# corpus, side by side in one run, same machine, same model through each side's
# engine. The model variant of benches/compare_ray_data.sh (CPU only, no model).
#
# Workload: ROWS lines of text (benches/gen_corpus.py, the generator
# compare_ray_data.sh uses: seeded, 8-40 words a line, mixed case, runs of
# whitespace, full-width, accented and decomposed letters, ligatures, Greek),
# each normalised the way plugins/normalize does it (NFKC, lowercase, whitespace
# runs to one space, trimmed), then embedded with all-MiniLM-L6-v2: BERT uncased
# WordPiece, at most 128 tokens, mean of last_hidden_state under the attention
# mask, L2-normalised; one 384-float vector per line.
#   weft: the debug-built daemon (`cargo build -p weft --bin weft`: weft-nn and
#         the Wasm compiler are optimised in the dev profile, see Cargo.toml);
#         `weft model upload minilm`, `weft object put vocab.txt`, `weft stage
#         deploy` normalize and embed (--config vocab=ID), `weft pipeline apply
#         examples/pipelines/embed.toml` as is (normalize batches of 64; embed
#         batches of 32, replicas 1..2; the node merges concurrent wasi-nn calls
#         into engine calls of up to 32 rows), `weft dataset create` of the lines
#         as {"text": line} JSON lines (blocks of BLOCK_ROWS, default 256), then
#         a batch job over it. weft-nn runs the ONNX graph itself (no
#         onnxruntime); the tokenizer is the embed stage's own WordPiece (Wasm).
#   Ray:  ray.init(num_cpus=2), read_text(the .txt, one block per BLOCK_ROWS
#         rows) -> map_batches(batch_size=32) on a pool of 2 actors, each with
#         one onnxruntime session (intra_op_num_threads=1) and HF `tokenizers`
#         (the model's tokenizer.json, truncation 128, padded to the batch's
#         longest) -> write_parquet (benches/ray_data_embed_job.py). The actors
#         ask for 0.5 CPU each, or the read task would never get a logical CPU
#         (ray-project/ray#44687); they still run on the two real cores.
# The two run one after the other, never at once (weft's daemon is stopped first).
#
# Figures (as in compare_ray_data.sh):
#   seconds, job only: weft finished_unix_ms - started_unix_ms from `weft job
#     status` (model load and stage instantiation happen inside it, on first
#     use); Ray read -> map -> write after ray.init (actor start-up and model
#     load inside it).
#   seconds, with start-up: weft daemon start + model upload + vocab + deploys +
#     pipeline apply + dataset upload + job (wall clock); Ray from the driver's
#     first line (before `import ray`) to the end of the write.
#   peak memory: weft VmHWM of the daemon (/proc/PID/status) after the job, model
#     upload included; Ray the largest sums of VmRSS and of Pss over the driver's
#     process tree, sampled every 0.2 s (benches/ray_data_job.py's sampler).
# Check: ROWS rows on both sides; per row, weft's and Ray's token counts and the
# cosine of the two embeddings (weft row i against Ray's row for the normalised
# text of input line i); the script fails if any cosine < 0.999 or a count is off.
#
# Usage: ROWS=2000 bash benches/compare_ray_data_embed.sh   (default 2000 rows;
# WEFT=path/to/weft uses that binary as is; builds the Wasm stages with
# `cargo xtask plugins` and fetches the model with `cargo xtask models` when
# missing; creates target/ray-venv with ray[data], onnxruntime, tokenizers and
# numpy from PyPI on first use; keeps the corpus in target/bench-corpus/ and the
# logs in target/ray-data-embed.log and target/weft-embed.log).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-2000}
BLOCK_ROWS=${BLOCK_ROWS:-256}
MODELS=target/models/minilm

VENV=target/ray-venv
if [ ! -x "$VENV/bin/python" ] ||
   ! "$VENV/bin/python" -c 'import ray.data, onnxruntime, tokenizers, numpy' 2>/dev/null; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "ray[data]==2.60.*" onnxruntime tokenizers numpy ||
    "$VENV/bin/pip" install -q "ray[data]" onnxruntime tokenizers numpy
fi
PY=$VENV/bin/python
if [ -n "${WEFT:-}" ]; then
  echo "using $WEFT as is (no cargo build)"
else
  cargo build --quiet -p weft --bin weft
  WEFT=target/debug/weft
fi
WASM=target/wasm32-wasip2/release
{ [ -f $WASM/normalize.wasm ] && [ -f $WASM/embed.wasm ]; } || cargo xtask plugins
{ [ -f $MODELS/model.onnx ] && [ -f $MODELS/vocab.txt ] && [ -f $MODELS/tokenizer.json ]; } || cargo xtask models

CORPUS=target/bench-corpus/lines-$ROWS
if [ ! -f "$CORPUS.jsonl" ] || [ benches/gen_corpus.py -nt "$CORPUS.jsonl" ]; then
  mkdir -p target/bench-corpus
  python3 benches/gen_corpus.py "$CORPUS.txt.tmp" --rows "$ROWS" --jsonl "$CORPUS.jsonl.tmp"
  mv "$CORPUS.txt.tmp" "$CORPUS.txt"; mv "$CORPUS.jsonl.tmp" "$CORPUS.jsonl"
fi

DATA=$(mktemp -d)
WPID=; RPID=
kill_tree() { # pid: the process and everything below it, children first
  local kid
  for kid in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$kid"; done
  kill "$1" 2>/dev/null || true
}
cleanup() {
  [ -n "$WPID" ] && kill "$WPID" 2>/dev/null
  [ -n "$RPID" ] && kill_tree "$RPID"
  cp "$DATA/ray.log" target/ray-data-embed.log 2>/dev/null
  cp "$DATA/weft.log" target/weft-embed.log 2>/dev/null
  rm -rf "$DATA"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }

# --- weft ---------------------------------------------------------------------
WPORT=$((20000 + RANDOM % 10000))
W=http://127.0.0.1:$WPORT
t_start=$(now_ms)
$WEFT serve --listen 127.0.0.1:$WPORT --data-dir "$DATA/weft" >"$DATA/weft.log" 2>&1 &
WPID=$!
for _ in $(seq 500); do curl -sf "$W/healthz" >/dev/null && break; sleep 0.02; done
curl -sf "$W/healthz" >/dev/null || { echo "weft did not start:"; tail -30 "$DATA/weft.log"; exit 1; }
t_up=$(now_ms)
$WEFT --server $W model upload minilm $MODELS/model.onnx >/dev/null
VOCAB=$($WEFT --server $W object put $MODELS/vocab.txt)
t_model=$(now_ms)
$WEFT --server $W stage deploy normalize $WASM/normalize.wasm >/dev/null
$WEFT --server $W stage deploy embed $WASM/embed.wasm --config "vocab=$VOCAB" >/dev/null
$WEFT --server $W pipeline apply examples/pipelines/embed.toml >/dev/null
t_ready=$(now_ms)
$WEFT --server $W dataset create corpus "$CORPUS.jsonl" --format jsonl --block-rows "$BLOCK_ROWS" >"$DATA/dataset.txt"
t_ingested=$(now_ms)
if ! JOB=$($WEFT --server $W job submit --pipeline embed --dataset corpus --watch 2>"$DATA/watch.log"); then
  echo "weft job failed:"; tail -5 "$DATA/watch.log"; tail -20 "$DATA/weft.log"; exit 1
fi
t_job=$(now_ms)
WEFT_HWM_KIB=$(awk '/^VmHWM:/ {print $2}' /proc/$WPID/status)
$WEFT --server $W job status "$JOB" >"$DATA/status.json"
$WEFT --server $W job output "$JOB" -o "$DATA/weft-out.jsonl"
kill $WPID; wait $WPID 2>/dev/null || true; WPID=
echo "weft: $(cat "$DATA/dataset.txt"); job $JOB done"

# --- Ray Data -----------------------------------------------------------------
echo "Ray Data: running (ray.init takes a while) ..."
t_ray=$(now_ms)
env -u RAY_ADDRESS RAY_DEDUP_LOGS=0 "$PY" benches/ray_data_embed_job.py "$CORPUS.txt" "$DATA/ray-out" \
  $MODELS/model.onnx $MODELS/tokenizer.json --num-cpus 2 --batch-size 32 --actors 2 \
  --num-blocks $(( (ROWS + BLOCK_ROWS - 1) / BLOCK_ROWS )) >"$DATA/ray.json" 2>"$DATA/ray.log" &
RPID=$!
if ! wait $RPID; then RPID=; echo "Ray Data failed:"; tail -30 "$DATA/ray.log"; exit 1; fi
RPID=
t_ray_end=$(now_ms)

# --- check and report ---------------------------------------------------------
"$PY" - "$ROWS" "$CORPUS.txt" "$DATA/weft-out.jsonl" "$DATA/ray-out" "$DATA/status.json" "$DATA/ray.json" \
  "$WEFT_HWM_KIB" "$t_start" "$t_up" "$t_model" "$t_ready" "$t_ingested" "$t_job" "$t_ray" "$t_ray_end" <<'PY'
import json, os, sys, unicodedata
import numpy as np
import pyarrow.parquet as pq

rows, corpus, weft_out, ray_dir, status, ray_json = sys.argv[1:7]
rows = int(rows)
hwm_kib, t_start, t_up, t_model, t_ready, t_ingested, t_job, t_ray, t_ray_end = map(int, sys.argv[7:16])
st = json.load(open(status))
ray = json.loads(open(ray_json).read().strip().splitlines()[-1])

def norm(s):  # plugins/normalize, lowercase=true
    return " ".join(unicodedata.normalize("NFKC", s).lower().split())

with open(corpus, encoding="utf-8") as f:
    lines = [l for l in f.read().split("\n") if l.strip()]
with open(weft_out, encoding="utf-8") as f:
    weft = [json.loads(l) for l in f if l.strip()]
ray_by_text = {}
ray_rows = 0
for name in sorted(os.listdir(ray_dir)):
    if not name.endswith(".parquet"):
        continue
    t = pq.read_table(os.path.join(ray_dir, name))
    col = t.column("embedding").combine_chunks()
    if hasattr(col, "storage"):  # Ray's tensor extension type
        col = col.storage
    for text, emb, tokens in zip(t.column("text").to_pylist(), col.to_pylist(), t.column("tokens").to_pylist()):
        ray_by_text[text] = (emb, tokens)
        ray_rows += 1

problems, notes = [], []
if not (len(lines) == len(weft) == ray_rows == rows):
    problems.append(f"row counts differ: input {len(lines)}, weft {len(weft)}, Ray {ray_rows}, ROWS {rows}")
cosines, token_diffs = [], []
for i, (line, w) in enumerate(zip(lines, weft)):
    r = ray_by_text.get(norm(line))
    if r is None:
        problems.append(f"row {i}: no Ray row for {norm(line)!r}")
        break
    a, b = np.asarray(w["embedding"], dtype=np.float64), np.asarray(r[0], dtype=np.float64)
    if a.shape != (384,) or b.shape != (384,):
        problems.append(f"row {i}: embedding shapes weft {a.shape}, Ray {b.shape}")
        break
    cosines.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    if w["tokens"] != r[1]:
        token_diffs.append((i, w["tokens"], r[1]))
if cosines:
    cos = np.array(cosines)
    low = np.flatnonzero(cos < 0.999)
    if len(low):
        problems.append(f"{len(low)} rows with cosine < 0.999 (lowest {cos.min():.6f}, row {int(cos.argmin())}: "
                        f"{norm(lines[int(cos.argmin())])!r})")
if token_diffs:
    problems.append(f"{len(token_diffs)} rows tokenised to different lengths (row, weft, Ray): {token_diffs[:5]}")

items_done = st["progress"]["items_done"]
if st["state"] != "succeeded" or items_done != rows or st["progress"]["items_failed"]:
    problems.append(f"weft job {st['state']}: {items_done} rows done, {st['progress']['items_failed']} failed")

job_s = (st["finished_unix_ms"] - st["started_unix_ms"]) / 1000
weft_total_s = (t_job - t_start) / 1000
weft_mib = hwm_kib / 1024
ray_run_s, ray_total_s = ray["run_s"], ray["total_s"]
ray_rss, ray_pss = ray["peak_rss_mib"], ray["peak_pss_mib"]

print()
print(f"{rows} rows, normalize -> all-MiniLM-L6-v2 embeddings (batch 32, max 128 tokens), "
      f"{os.cpu_count()} cores")
print()
def n(x):  # 12 345: the README's thousands separator
    return f"{x:,.0f}".replace(",", " ")

print("| | seconds | rows/s | peak memory |")
print("| --- | --- | --- | --- |")
print(f"| weft job (started → finished) | {job_s:.2f} | {n(rows / job_s)} | "
      f"{n(weft_mib)} MiB (daemon VmHWM, incl. model and dataset upload) |")
print(f"| weft with start-up (daemon, model, deploy, apply, upload, job) | {weft_total_s:.2f} | "
      f"{n(rows / weft_total_s)} | |")
print(f"| Ray Data run (after `ray.init`) | {ray_run_s:.2f} | {n(rows / ray_run_s)} | "
      f"{n(ray_rss)} MiB RSS / {n(ray_pss)} MiB PSS ({ray['processes']} processes) |")
print(f"| Ray Data with start-up | {ray_total_s:.2f} | {n(rows / ray_total_s)} | |")
print(f"| **weft / Ray** | | **{ray_run_s / job_s:.2f}×** (job), **{ray_total_s / weft_total_s:.2f}×** "
      f"(with start-up) | **{weft_mib / ray_rss:.2f}×** RSS, {weft_mib / ray_pss:.2f}× PSS |")
print()
print(f"  weft start-up: daemon {(t_up - t_start) / 1000:.2f} s, model + vocab upload {(t_model - t_up) / 1000:.2f} s, "
      f"deploy+apply {(t_ready - t_model) / 1000:.2f} s, dataset upload {(t_ingested - t_ready) / 1000:.2f} s; "
      f"submit+watch wall {(t_job - t_ingested) / 1000:.2f} s")
print(f"  Ray start-up: import {ray['import_s']:.2f} s, ray.init {ray['init_s']:.2f} s; "
      f"process wall incl. shutdown {(t_ray_end - t_ray) / 1000:.2f} s; {ray['rss_samples']} memory samples")
if cosines:
    print(f"  agreement: cosine weft vs Ray over {len(cos)} rows: min {cos.min():.6f}, mean {cos.mean():.6f}; "
          f"token counts equal in {len(cos) - len(token_diffs)}/{len(cos)} rows")
print()
if problems:
    print("CHECK FAILED:")
    for p in problems:
        print("  " + p)
    sys.exit(1)
print(f"check: {rows} rows on both sides; every row's embeddings agree (cosine >= 0.999) "
      f"and tokenise to the same length")
PY
