#!/usr/bin/env bash
# Batch throughput of a cluster: the same batch job on 1 node and on 3 local
# nodes joined through one nats-server (issue #7: 3 nodes >= 2.5x one node).
#
# The stage is SLEEP-BOUND, not CPU-bound: every row is the probe test
# guest's `sleep` op (SLEEP_MS per row) in a pipeline with one replica, so a
# node runs one row at a time and is busy sleeping, not computing. On a
# 2-core machine three CPU-bound nodes could not run faster than one; a
# sleeping stage shows what the work queue does (spread blocks, keep every
# node busy) without pretending the machine has more cores than it has.
#
# Reported: rows/s from the job's own start and finish times (on the
# owner), for one node (today's local path), one node through the work
# queue (`"distribute": true`: the queue's overhead), and three nodes.
#
# Usage: bash benches/cluster_batch.sh   (needs nats-server:
# scripts/install-nats.sh, and the probe guest: cargo xtask plugins)
#   BLOCKS=60 ROWS_PER_BLOCK=5 SLEEP_MS=40 PROFILE=debug|release
set -euo pipefail
cd "$(dirname "$0")/.."
BLOCKS=${BLOCKS:-60}
ROWS_PER_BLOCK=${ROWS_PER_BLOCK:-5}
SLEEP_MS=${SLEEP_MS:-40}
PROFILE=${PROFILE:-debug}

if [ "$PROFILE" = release ]; then
  cargo build --release --quiet -p weft
else
  cargo build --quiet -p weft
fi
WEFT=target/$PROFILE/weft
PROBE=target/wasm32-wasip2/release/probe.wasm
[ -f "$PROBE" ] || { echo "missing $PROBE: run cargo xtask plugins" >&2; exit 1; }
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$NATS" ] || { echo "nats-server missing: run scripts/install-nats.sh" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

python3 - "$BLOCKS" "$ROWS_PER_BLOCK" "$SLEEP_MS" > "$WORK/rows.jsonl" <<'PY'
import json, sys
blocks, per, ms = map(int, sys.argv[1:])
for n in range(blocks * per):
    print(json.dumps({"op": "sleep", "ms": ms, "n": n}))
PY
cat > "$WORK/sleepy.toml" <<'TOML'
name = "sleepy"
[[steps]]
stage = "probe"
replicas = { min = 1, max = 1 }
TOML

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; v=json.load(sys.stdin); print($1)"; }

# run NODES DISTRIBUTE -> prints "rows_per_s seconds blocks_by_node"
run() {
  local nodes=$1 distribute=$2 dir port urls=() i url
  dir=$(mktemp -d -p "$WORK")
  port=$(free_port)
  "$NATS" -js -a 127.0.0.1 -p "$port" -sd "$dir/nats" 2>"$dir/nats.log" &
  local nats_pid=$!
  PIDS+=("$nats_pid")
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
  local pids=()
  for i in $(seq "$nodes"); do
    local p
    p=$(free_port)
    "$WEFT" serve --listen 127.0.0.1:"$p" --data-dir "$dir/node-$i" \
      --cluster nats://127.0.0.1:"$port" --node-name "node-$i" \
      --heartbeat-ms 200 --node-ttl-ms 1500 >/dev/null 2>"$dir/node-$i.log" &
    pids+=($!)
    PIDS+=($!)
    urls+=("http://127.0.0.1:$p")
  done
  for url in "${urls[@]}"; do
    for _ in $(seq 200); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.05; done
  done
  local owner=${urls[0]}
  for _ in $(seq 200); do
    [ "$(curl -sf "$owner/v1/cluster" | json 'sum(1 for n in v["nodes"] if n["alive"])')" = "$nodes" ] && break
    sleep 0.05
  done
  curl -sf -X PUT --data-binary @"$PROBE" "$owner/v1/stages/probe" >/dev/null
  curl -sf -X PUT -H 'content-type: application/toml' --data-binary @"$WORK/sleepy.toml" \
    "$owner/v1/pipelines/sleepy" >/dev/null
  for url in "${urls[@]}"; do # the pipeline (and its compiled stage) on every node
    for _ in $(seq 600); do curl -sf "$url/v1/pipelines/sleepy" >/dev/null && break; sleep 0.1; done
  done
  curl -sf --data-binary @"$WORK/rows.jsonl" \
    "$owner/v1/datasets?name=naps&format=jsonl&block_rows=$ROWS_PER_BLOCK" >/dev/null
  local spec id state
  spec="{\"kind\":\"batch\",\"pipeline\":\"sleepy\",\"dataset\":\"naps\"${distribute:+,\"distribute\":$distribute}}"
  id=$(curl -sf -H 'content-type: application/json' -d "$spec" "$owner/v1/jobs" | json 'v["id"]')
  while :; do
    state=$(curl -sf "$owner/v1/jobs/$id" | json 'v["state"]')
    case $state in succeeded) break ;; failed|cancelled) echo "job $state" >&2; exit 1 ;; esac
    sleep 0.1
  done
  curl -sf "$owner/v1/jobs/$id" > "$dir/job.json"
  curl -sf "$owner/v1/jobs/$id/events" > "$dir/events.txt"
  python3 - "$dir/job.json" "$dir/events.txt" <<'PY'
import collections, json, sys
job = json.load(open(sys.argv[1]))
secs = (job["finished_unix_ms"] - job["started_unix_ms"]) / 1000
rows = job["progress"]["items_done"]
nodes = collections.Counter()
for line in open(sys.argv[2]):
    if line.startswith("data: "):
        e = json.loads(line[6:])
        if e.get("type") == "block":
            nodes[e.get("node", "local")] += 1
print(f"{rows / secs:.1f} {secs:.2f}", " ".join(f"{k}={v}" for k, v in sorted(nodes.items())))
PY
  for p in "${pids[@]}" "$nats_pid"; do kill "$p" 2>/dev/null || true; done
  wait "${pids[@]}" "$nats_pid" 2>/dev/null || true
}

ROWS=$((BLOCKS * ROWS_PER_BLOCK))
echo "batch job: $BLOCKS blocks x $ROWS_PER_BLOCK rows, each row sleeps ${SLEEP_MS} ms (sleep-bound), one replica per node, $PROFILE build"
read -r one one_s one_nodes <<<"$(run 1 "")"
read -r queued queued_s queued_nodes <<<"$(run 1 true)"
read -r three three_s three_nodes <<<"$(run 3 "")"
printf '%-36s %10s %9s  %s\n' "" "rows/s" "seconds" "blocks by node"
printf '%-36s %10s %9s  %s\n' "1 node (local path)" "$one" "$one_s" "$one_nodes"
printf '%-36s %10s %9s  %s\n' "1 node through the work queue" "$queued" "$queued_s" "$queued_nodes"
printf '%-36s %10s %9s  %s\n' "3 nodes" "$three" "$three_s" "$three_nodes"
python3 -c "print(f'3 nodes / 1 node: {$three / $one:.2f}x  (ideal 3.00x; {$ROWS} rows)')"
