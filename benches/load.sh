#!/usr/bin/env bash
# HTTP load and deploy latency of a release-built daemon, with in-run baselines:
#   - POST /v1/stages/normalize/invoke (1 KiB JSON) at 1 and 16 connections,
#     against GET /healthz on the same server (HTTP stack without Wasm);
#   - upload -> first successful invoke, with a fresh compile and with the
#     compiled artifact already cached.
# Usage: bash benches/load.sh   (run by `cargo xtask bench`; needs the plugins
# built: `cargo xtask plugins`). Installs wrk from Debian if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi
fi
cargo build --release --quiet -p weft
WEFT=target/release/weft
WASM=target/wasm32-wasip2/release/normalize.wasm
[ -f "$WASM" ] || { echo "missing $WASM: run cargo xtask plugins" >&2; exit 1; }

DATA=$(mktemp -d)
PORT=$((20000 + RANDOM % 20000))
SERVER=http://127.0.0.1:$PORT
$WEFT serve --listen 127.0.0.1:$PORT --data-dir "$DATA" 2>"$DATA/log" &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do curl -sf "$SERVER/healthz" >/dev/null && break; sleep 0.1; done

BODY=$(python3 -c 'import json; print(json.dumps({"text": ("Hello   WÖRLD straße ÉCOLE\t naïve " * 40)[:1000]}))')
echo "$BODY" > "$DATA/body.json"

ms() { python3 -c "print(f'{float(\"$1\")*1000:.1f}')"; }
deploy_then_invoke() { # name -> seconds from upload start to first 200
  local t0 t1
  t0=$(date +%s.%N)
  curl -sf -X PUT --data-binary @"$WASM" "$SERVER/v1/stages/$1" >/dev/null
  curl -sf "$SERVER/v1/stages/$1/invoke" -H 'content-type: application/json' -d @"$DATA/body.json" >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print($t1 - $t0)"
}
SIZE=$(stat -c %s "$WASM")
FRESH=$(deploy_then_invoke normalize)
CACHED=$(deploy_then_invoke normalize-again)   # same bytes: compiled artifact cached
# The probe test guest's echo: the platform's own cost with no stage work.
curl -sf -X PUT --data-binary @target/wasm32-wasip2/release/probe.wasm "$SERVER/v1/stages/probe" >/dev/null
python3 -c 'import json; print(json.dumps({"op": "echo", "pad": "x" * 1000}))' > "$DATA/echo.json"

for name in body echo; do
cat > "$DATA/$name.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local f = io.open("$DATA/$name.json"); wrk.body = f:read("*a"); f:close()
LUA
done

run() { # connections url [script] -> "req/s p50"
  local out
  out=$(wrk -t"$([ "$1" = 1 ] && echo 1 || echo 2)" -c"$1" -d"$DURATION" --latency ${3:+-s "$3"} "$2")
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1 == "50%" {print $2}') $(echo "$out" | awk '$1 == "99%" {print $2}')"
}
printf '\n%-34s %12s %10s %10s\n' "load (wrk, $DURATION)" "req/s" "p50" "p99"
for c in 1 16; do
  read -r hrps hp50 hp99 <<<"$(run $c "$SERVER/healthz")"
  read -r erps ep50 ep99 <<<"$(run $c "$SERVER/v1/stages/probe/invoke" "$DATA/echo.lua")"
  read -r irps ip50 ip99 <<<"$(run $c "$SERVER/v1/stages/normalize/invoke" "$DATA/body.lua")"
  printf '%-34s %12s %10s %10s\n' "GET /healthz, $c conn" "$hrps" "$hp50" "$hp99"
  printf '%-34s %12s %10s %10s\n' "POST echo invoke (1 KiB), $c conn" "$erps" "$ep50" "$ep99"
  printf '%-34s %12s %10s %10s\n' "POST normalize invoke, $c conn" "$irps" "$ip50" "$ip99"
  python3 -c "print(f'  throughput vs healthz at $c conn: echo {float(\"$erps\")/float(\"$hrps\"):.2f}, normalize {float(\"$irps\")/float(\"$hrps\"):.2f}')"
done
# Pipelines over the echo stage: trigger overhead of one step vs three, and
# the first response after a scale-down to zero.
cat > "$DATA/one.toml" <<TOML
name = "one"
[[steps]]
stage = "probe"
[[triggers]]
route = "/one"
TOML
cat > "$DATA/three.toml" <<TOML
name = "three"
[[steps]]
name = "a"
stage = "probe"
[[steps]]
name = "b"
stage = "probe"
[[steps]]
name = "c"
stage = "probe"
[[triggers]]
route = "/three"
TOML
cat > "$DATA/zero.toml" <<TOML
name = "zero"
[[steps]]
stage = "probe"
replicas = { min = 0, max = 1, idle_timeout_s = 1 }
[[triggers]]
route = "/zero"
TOML
for p in one three zero; do $WEFT --server "$SERVER" pipeline apply "$DATA/$p.toml" >/dev/null; done
printf '\n%-34s %12s %10s %10s\n' "pipelines over echo (wrk, $DURATION)" "req/s" "p50" "p99"
for c in 1 16; do
  read -r orps op50 op99 <<<"$(run $c "$SERVER/one" "$DATA/echo.lua")"
  read -r trps tp50 tp99 <<<"$(run $c "$SERVER/three" "$DATA/echo.lua")"
  printf '%-34s %12s %10s %10s\n' "1-step trigger, $c conn" "$orps" "$op50" "$op99"
  printf '%-34s %12s %10s %10s\n' "3-step trigger, $c conn" "$trps" "$tp50" "$tp99"
  python3 -c "print(f'  3-step cost vs 1-step at $c conn: {float(\"$orps\")/float(\"$trps\"):.2f}x (req/s)')"
done
curl -sf "$SERVER/zero" -H 'content-type: application/json' -d @"$DATA/echo.json" >/dev/null
sleep 3   # idle_timeout_s = 1: the replica is gone
COLD=$(curl -sf -o /dev/null -w '%{time_total}' "$SERVER/zero" -H 'content-type: application/json' -d @"$DATA/echo.json")
WARM=$(curl -sf -o /dev/null -w '%{time_total}' "$SERVER/zero" -H 'content-type: application/json' -d @"$DATA/echo.json")
printf 'first response after scale to zero: %s ms (next, warm: %s ms)\n' "$(ms "$COLD")" "$(ms "$WARM")"

printf '\nupload -> first invoke (%s KiB component): fresh compile %s ms, cached artifact %s ms\n' \
  "$((SIZE / 1024))" "$(ms "$FRESH")" "$(ms "$CACHED")"
