#!/usr/bin/env bash
# Does a batch job's throughput hold, and its memory stay flat, as the dataset
# grows? The CPU-only job of benches/compare_ray_data.sh (the one-step
# `normalize` pipeline, 2 replicas, batches of 64, blocks of 2048 rows) over
# 10k, 100k and 1M generated lines, each on a fresh daemon (release build) so
# that each peak RSS is that run's own.
#
# Each size's job runs RUNS times (default 3) on its daemon, one after the
# other: a 10k-row job lasts ~0.15 s, and on a shared machine one such run
# moves by ±15%, so the median is what is compared. The first run (fresh
# daemon: cold instances and caches) is shown too.
#
# Figures per size: the job's seconds (finished_unix_ms - started_unix_ms from
# the job record, median of the runs), rows/s and its ratio to the smallest
# size's, the first run's rows/s, and the daemon's VmHWM (the kernel's exact
# peak RSS) after the upload and after the runs.
#
# Usage: bash benches/batch_scaling.sh   (SIZES="10000 100000 1000000" and
# RUNS=3 by default; WEFT=path uses that binary instead of building
# target/release/weft; the corpora are kept in target/bench-corpus/, ~170 MB
# for 1M lines).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"10000 100000 1000000"}
RUNS=${RUNS:-3}
# Two replicas from the start, so that autoscaling's ramp from one to two
# (which a 0.2 s job does not outlast) is not what is measured;
# REPLICAS="min = 1, max = 2" shows it.
REPLICAS=${REPLICAS:-"min = 2, max = 2"}
if [ -z "${WEFT:-}" ]; then
  cargo build --release --quiet -p weft
  WEFT=target/release/weft
fi
WASM=target/wasm32-wasip2/release
[ -f $WASM/normalize.wasm ] || cargo xtask plugins

DATA=$(mktemp -d)
WPID=
cleanup() {
  [ -n "$WPID" ] && kill "$WPID" 2>/dev/null
  rm -rf "$DATA"
}
trap cleanup EXIT

RESULTS=$DATA/results.tsv
: >"$RESULTS"
for ROWS in $SIZES; do
  CORPUS=target/bench-corpus/lines-$ROWS
  if [ ! -f "$CORPUS.jsonl" ] || [ benches/gen_corpus.py -nt "$CORPUS.jsonl" ]; then
    mkdir -p target/bench-corpus
    python3 benches/gen_corpus.py "$CORPUS.txt.tmp" --rows "$ROWS" --jsonl "$CORPUS.jsonl.tmp"
    mv "$CORPUS.txt.tmp" "$CORPUS.txt"; mv "$CORPUS.jsonl.tmp" "$CORPUS.jsonl"
  fi
  PORT=$((20000 + RANDOM % 10000))
  W=http://127.0.0.1:$PORT
  rm -rf "$DATA/weft" "$DATA"/status-*.json
  $WEFT serve --listen 127.0.0.1:$PORT --data-dir "$DATA/weft" >"$DATA/weft-$ROWS.log" 2>&1 &
  WPID=$!
  for _ in $(seq 300); do curl -sf "$W/healthz" >/dev/null && break; sleep 0.02; done
  $WEFT --server $W stage deploy normalize $WASM/normalize.wasm >/dev/null
  cat >"$DATA/norm.toml" <<TOML
name = "norm"
[[steps]]
stage = "normalize"
replicas = { $REPLICAS }
batch = { max_size = 64, max_wait_ms = 2 }
TOML
  $WEFT --server $W pipeline apply "$DATA/norm.toml" >/dev/null
  $WEFT --server $W dataset create corpus "$CORPUS.jsonl" --format jsonl --block-rows 2048 >/dev/null
  HWM_UPLOAD=$(awk '/^VmHWM:/ {print $2}' /proc/$WPID/status)
  for RUN in $(seq "$RUNS"); do
    JOB=$($WEFT --server $W job submit --pipeline norm --dataset corpus --watch 2>"$DATA/watch.log")
    $WEFT --server $W job status "$JOB" >"$DATA/status-$RUN.json"
  done
  HWM=$(awk '/^VmHWM:/ {print $2}' /proc/$WPID/status)
  python3 - "$ROWS" "$HWM" "$HWM_UPLOAD" "$DATA"/status-*.json >>"$RESULTS" <<'PY'
import json, statistics, sys
rows, hwm, up = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
secs = []
for path in sorted(sys.argv[4:], key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0])):
    status = json.load(open(path))
    assert status["state"] == "succeeded", status
    assert status["progress"]["rows_out"] == rows, status
    secs.append((status["finished_unix_ms"] - status["started_unix_ms"]) / 1000)
median = statistics.median(secs)
print(f"{rows}\t{median:.3f}\t{rows / median:.0f}\t{rows / secs[0]:.0f}\t{up / 1024:.0f}\t{hwm / 1024:.0f}")
PY
  kill $WPID; wait $WPID 2>/dev/null || true; WPID=
  echo "  $(tail -1 "$RESULTS")" >&2
done

python3 - "$RESULTS" <<'PY'
import sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
base = float(rows[0][2])
print("| rows | job seconds (median) | rows/s | vs smallest | first run rows/s | peak RSS after upload | after the jobs |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for n, secs, rate, first, up, hwm in rows:
    print(f"| {int(n):,} | {float(secs):.2f} | {int(rate):,} | {float(rate) / base:.2f} | {int(first):,} | {up} MiB | {hwm} MiB |")
PY
