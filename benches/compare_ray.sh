#!/usr/bin/env bash
# weft vs Ray Serve, side by side in one run, same machine, same load generator.
#   one step: normalize a 1 KiB JSON document (NFKC, lowercase, whitespace)
#   two steps: normalize -> chunk (64-word chunks; both sides stateless)
# Both are driven by wrk at 1 and 16 connections; the script prints req/s,
# p50 and p99 for each and the weft/Ray ratios.
# Usage: bash benches/compare_ray.sh   (needs `cargo xtask plugins`; creates a
# venv in target/ray-venv and installs ray[serve] from PyPI on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
command -v wrk >/dev/null || { if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi; }

VENV=target/ray-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import ray.serve' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "ray[serve]==2.60.*" || "$VENV/bin/pip" install -q "ray[serve]"
fi
cargo build --release --quiet -p weft
WEFT=target/release/weft
WASM=target/wasm32-wasip2/release

DATA=$(mktemp -d)
WPORT=$((20000 + RANDOM % 10000)); RPORT=$((30000 + RANDOM % 10000))
$WEFT serve --listen 127.0.0.1:$WPORT --data-dir "$DATA/weft" 2>"$DATA/weft.log" &
WPID=$!
RAY_DEDUP_LOGS=0 "$VENV/bin/python" benches/ray_serve_app.py $RPORT >"$DATA/ray.log" 2>&1 &
RPID=$!
cleanup() { kill $WPID 2>/dev/null; kill $RPID 2>/dev/null; "$VENV/bin/ray" stop --force >/dev/null 2>&1 || true; cp "$DATA/ray.log" target/ray-serve.log 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT

for _ in $(seq 100); do curl -sf "http://127.0.0.1:$WPORT/healthz" >/dev/null && break; sleep 0.1; done
W=http://127.0.0.1:$WPORT
$WEFT --server $W stage deploy normalize $WASM/normalize.wasm >/dev/null
$WEFT --server $W stage deploy chunk $WASM/chunk.wasm --config size=64 >/dev/null
cat > "$DATA/one.toml" <<TOML
name = "one"
[[steps]]
stage = "normalize"
[[triggers]]
route = "/one"
TOML
cat > "$DATA/two.toml" <<TOML
name = "two"
[[steps]]
stage = "normalize"
[[steps]]
stage = "chunk"
[[triggers]]
route = "/two"
TOML
$WEFT --server $W pipeline apply "$DATA/one.toml" >/dev/null
$WEFT --server $W pipeline apply "$DATA/two.toml" >/dev/null

echo "waiting for Ray Serve on :$RPORT ..."
for _ in $(seq 600); do grep -q ready "$DATA/ray.log" 2>/dev/null && break; sleep 0.5; done
grep -q ready "$DATA/ray.log" || { echo "Ray Serve did not start:"; tail -30 "$DATA/ray.log"; exit 1; }

python3 -c 'import json; print(json.dumps({"text": ("Hello   WÖRLD straße ÉCOLE\t naïve " * 40)[:1000]}))' > "$DATA/body.json"
cat > "$DATA/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local f = io.open("$DATA/body.json"); wrk.body = f:read("*a"); f:close()
LUA
# Both answer the same document the same way before we measure.
curl -sf "$W/one" -H 'content-type: application/json' -d @"$DATA/body.json" >/dev/null
curl -sf "http://127.0.0.1:$RPORT/one" -H 'content-type: application/json' -d @"$DATA/body.json" >/dev/null

to_ms() { python3 -c "
s='$1'
for unit, f in (('us', 1e-3), ('ms', 1.0), ('s', 1e3)):
    if s.endswith(unit) and not (unit == 's' and (s.endswith('us') or s.endswith('ms'))):
        print(float(s[:-len(unit)]) * f); break"; }
run() { # conns url -> "req/s p50ms p99ms"
  local out
  out=$(wrk -t"$([ "$1" = 1 ] && echo 1 || echo 2)" -c"$1" -d"$DURATION" --latency -s "$DATA/post.lua" "$2")
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')") $(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")"
}
printf '\n%-22s %5s %12s %12s %10s %10s %10s %10s %9s %9s\n' workload conns "weft req/s" "ray req/s" "weft p50" "ray p50" "weft p99" "ray p99" "x req/s" "/ p50"
for path in one two; do
  for c in 1 16; do
    read -r wr wp50 wp99 <<<"$(run $c "$W/$path")"
    read -r rr rp50 rp99 <<<"$(run $c "http://127.0.0.1:$RPORT/$path")"
    python3 -c "
def num(s):
    try: return float(s)
    except ValueError: return 0.0
w, r, wp, rp, w9, r9 = (num(x) for x in '$wr $rr $wp50 $rp50 $wp99 $rp99'.split())
name = {'one': 'normalize (1 step)', 'two': 'normalize->chunk'}['$path']
ratio = f'{w/r:>8.1f}x {rp/wp:>8.1f}x' if r and wp else '  (Ray answered nothing)'
print(f'{name:<22} {$c:>5} {w:>12.0f} {r:>12.0f} {wp:>8.2f}ms {rp:>8.2f}ms {w9:>8.2f}ms {r9:>8.2f}ms {ratio}')"
  done
done
