#!/usr/bin/env bash
# weft batch jobs vs Ray Data, side by side in one run, same machine, same input,
# CPU only (preprocessing, no model).
#
# Workload: ROWS lines of text (benches/gen_corpus.py: seeded, 8-40 words a line,
# mixed case, runs of whitespace, full-width letters, accented and decomposed
# letters, ligatures, Greek) each normalised the way plugins/normalize does it:
# NFKC, lowercase, every run of whitespace to one space, ends trimmed; one output
# row {"text": normalised} per input line. No word count: the normalize stage
# does not count, and the count stage (running totals in stage state, no text in
# its output) is not the same job, so neither side counts.
#   weft: `weft dataset create` uploads the lines as JSON lines {"text": line}
#         (the stage takes JSON items), then a batch job runs the one-step
#         pipeline `normalize` (replicas 1..2, batches of up to 64) over it.
#   Ray:  ray.init(num_cpus=2), read_text(the .txt) -> map_batches(batch_size=256)
#         in Python -> write_json (benches/ray_data_job.py).
# The two run one after the other, never at once (weft's daemon is stopped first).
#
# Figures:
#   seconds, job only: weft finished_unix_ms - started_unix_ms from `weft job
#     status` (also shown: wall clock around `job submit --watch`, which polls every
#     0.5 s); Ray read -> map -> write after ray.init.
#   seconds, with start-up: weft daemon start to healthy + stage deploy + pipeline
#     apply + dataset upload + job (wall clock); Ray from the driver's first line
#     (before `import ray`) to the end of the write.
#   peak RSS: weft VmHWM of the daemon process (/proc/PID/status, the kernel's
#     exact peak) after the job; it includes the upload. Ray: a sampler walks the
#     driver's process tree (gcs_server, raylet, workers, agents) every 0.2 s and
#     keeps the largest sum of VmRSS ("RSS sum", counts shared memory such as the
#     object store once per process that maps it, so it overstates) and of Pss from
#     smaps_rollup ("PSS sum", shared pages split between their users). Sampling
#     can miss short peaks, which understates Ray a little.
# Correctness: both sides must output ROWS rows, the same multiset of normalised
# strings, and weft's rows (in input order) must equal Python's normalisation of
# the input line for a sample of 2000 rows; the script fails otherwise.
#
# Usage: ROWS=200000 bash benches/compare_ray_data.sh   (default 200000 rows;
# WEFT=path/to/weft uses that binary instead of building target/release/weft;
# needs `cargo xtask plugins`, run here when normalize.wasm is missing; creates a
# venv in target/ray-venv and installs ray[data] from PyPI on first use; keeps the
# generated corpus in target/bench-corpus/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-200000}

VENV=target/ray-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import ray.data' 2>/dev/null; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "ray[data]==2.60.*" || "$VENV/bin/pip" install -q "ray[data]"
fi
PY=$VENV/bin/python
if [ -n "${WEFT:-}" ]; then
  echo "using $WEFT as is (no cargo build)"
else
  cargo build --release --quiet -p weft
  WEFT=target/release/weft
fi
WASM=target/wasm32-wasip2/release
[ -f $WASM/normalize.wasm ] || cargo xtask plugins

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
  cp "$DATA/ray.log" target/ray-data.log 2>/dev/null
  cp "$DATA/weft.log" target/weft-batch.log 2>/dev/null
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
for _ in $(seq 300); do curl -sf "$W/healthz" >/dev/null && break; sleep 0.02; done
curl -sf "$W/healthz" >/dev/null || { echo "weft did not start:"; tail -30 "$DATA/weft.log"; exit 1; }
t_up=$(now_ms)
$WEFT --server $W stage deploy normalize $WASM/normalize.wasm >/dev/null
cat > "$DATA/norm.toml" <<TOML
name = "norm"
[[steps]]
stage = "normalize"
replicas = { min = 1, max = 2 }
batch = { max_size = 64, max_wait_ms = 2 }
TOML
$WEFT --server $W pipeline apply "$DATA/norm.toml" >/dev/null
t_ready=$(now_ms)
$WEFT --server $W dataset create corpus "$CORPUS.jsonl" --format jsonl --block-rows 2048 >"$DATA/dataset.txt"
t_ingested=$(now_ms)
if ! JOB=$($WEFT --server $W job submit --pipeline norm --dataset corpus --watch 2>"$DATA/watch.log"); then
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
env -u RAY_ADDRESS RAY_DEDUP_LOGS=0 "$PY" benches/ray_data_job.py "$CORPUS.txt" "$DATA/ray-out" \
  --num-cpus 2 --batch-size 256 >"$DATA/ray.json" 2>"$DATA/ray.log" &
RPID=$!
if ! wait $RPID; then RPID=; echo "Ray Data failed:"; tail -30 "$DATA/ray.log"; exit 1; fi
RPID=
t_ray_end=$(now_ms)

# --- check and report ---------------------------------------------------------
"$PY" - "$ROWS" "$CORPUS.txt" "$DATA/weft-out.jsonl" "$DATA/ray-out" "$DATA/status.json" "$DATA/ray.json" \
  "$WEFT_HWM_KIB" "$t_start" "$t_up" "$t_ready" "$t_ingested" "$t_job" "$t_ray" "$t_ray_end" <<'PY'
import collections, json, os, random, sys, unicodedata

rows, corpus, weft_out, ray_dir, status, ray_json = sys.argv[1:7]
rows = int(rows)
hwm_kib, t_start, t_up, t_ready, t_ingested, t_job, t_ray, t_ray_end = map(int, sys.argv[7:15])
st = json.load(open(status))
ray = json.loads(open(ray_json).read().strip().splitlines()[-1])

def norm(s):  # plugins/normalize, lowercase=true
    return " ".join(unicodedata.normalize("NFKC", s).lower().split())

with open(corpus, encoding="utf-8") as f:
    lines = f.read().split("\n")
lines = [l for l in lines if l.strip()]
with open(weft_out, encoding="utf-8") as f:
    weft = [json.loads(l)["text"] for l in f if l.strip()]
ray_rows = []
for name in sorted(os.listdir(ray_dir)):
    with open(os.path.join(ray_dir, name), encoding="utf-8") as f:
        ray_rows += [json.loads(l)["text"] for l in f if l.strip()]

problems = []
if not (len(lines) == len(weft) == len(ray_rows) == rows):
    problems.append(f"row counts differ: input {len(lines)}, weft {len(weft)}, Ray {len(ray_rows)}, ROWS {rows}")
if len(weft) == len(lines):
    rng = random.Random(7)
    for i in sorted(rng.sample(range(len(lines)), min(2000, len(lines)))):
        if weft[i] != norm(lines[i]):
            problems.append(f"row {i}: weft {weft[i]!r} != Python {norm(lines[i])!r}")
            if len(problems) > 5:
                break
cw, cr = collections.Counter(weft), collections.Counter(ray_rows)
if cw != cr:
    only_w = list((cw - cr).elements())[:3]
    only_r = list((cr - cw).elements())[:3]
    problems.append(f"weft and Ray outputs differ: only weft {only_w!r}, only Ray {only_r!r}")

items_done = st["progress"]["items_done"]
if st["state"] != "succeeded" or items_done != rows or st["progress"]["items_failed"]:
    problems.append(f"weft job {st['state']}: {items_done} rows done, {st['progress']['items_failed']} failed")

job_s = (st["finished_unix_ms"] - st["started_unix_ms"]) / 1000
watch_s = (t_job - t_ingested) / 1000
weft_total_s = (t_job - t_start) / 1000
weft_mib = hwm_kib / 1024
ray_run_s, ray_total_s = ray["run_s"], ray["total_s"]
ray_rss, ray_pss = ray["peak_rss_mib"], ray["peak_pss_mib"]

print()
print(f"{rows} rows, normalize (NFKC + lowercase + whitespace), CPU only, {os.cpu_count()} cores")
print(f"{'':34} {'rows':>8} {'seconds':>9} {'rows/s':>10} {'peak MiB':>10}")
def line(name, s, mib=None):
    m = f"{mib:>10.0f}" if mib is not None else f"{'':>10}"
    print(f"{name:34} {rows:>8} {s:>9.2f} {rows / s:>10.0f} {m}")
line("weft job (started->finished)", job_s, weft_mib)
line("weft job (submit+watch, wall)", watch_s)
line("weft upload + job (wall)", (t_job - t_ready) / 1000)
line("weft with start-up", weft_total_s)
line("Ray Data run (after ray.init)", ray_run_s, ray_rss)
line("Ray Data with start-up", ray_total_s)
print(f"  weft start-up: daemon {(t_up - t_start) / 1000:.2f} s, deploy+apply {(t_ready - t_up) / 1000:.2f} s, "
      f"dataset upload {(t_ingested - t_ready) / 1000:.2f} s")
print(f"  Ray start-up: import {ray['import_s']:.2f} s, ray.init {ray['init_s']:.2f} s; "
      f"process wall incl. shutdown {(t_ray_end - t_ray) / 1000:.2f} s")
print(f"  peak memory: weft VmHWM {weft_mib:.0f} MiB (one process); Ray sum over {ray['processes']} "
      f"processes: RSS {ray_rss:.0f} MiB, PSS {ray_pss:.0f} MiB ({ray['rss_samples']} samples)")
print()
print(f"weft/Ray throughput: job {ray_run_s / job_s:.1f}x, with start-up {ray_total_s / weft_total_s:.1f}x")
print(f"weft/Ray peak memory: {weft_mib / ray_rss:.2f} of Ray's RSS sum, {weft_mib / ray_pss:.2f} of its PSS sum")
print()
if problems:
    print("CHECK FAILED:")
    for p in problems:
        print("  " + p)
    sys.exit(1)
print(f"check: {rows} rows on both sides, same normalised strings; weft rows match Python's "
      f"normalisation in input order (2000-row sample)")
PY
