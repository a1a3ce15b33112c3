#!/usr/bin/env bash
# Serving: kiln-server against llama.cpp's llama-server on the same GGUF file and the same
# load (bench/server_load.py: C clients x R streamed greedy chat requests of mixed prompt
# lengths sharing a system prompt, each reply MAX tokens), one server at a time, rounds
# interleaved (the bandwidth of a shared VM drifts), medians.
#
#   bench/server.sh [MODEL.gguf]      (default: Qwen2.5-Coder-1.5B Q4_K_M)
#
# llama.cpp: the build bench/compare.sh makes from llama-cpp-python's sdist (run that once).
# Env: ROUNDS (3), THREADS (2), NP (4: slots of both servers), CLIENTS (8), REQUESTS (4), MAX (64).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${KILN_CACHE:-$(pwd)/.cache}
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
np=${NP:-4}
clients=${CLIENTS:-8}
requests=${REQUESTS:-4}
max=${MAX:-64}
lcp_dir=$cache/llama.cpp/llama_cpp_python-0.3.36/vendor/llama.cpp
lcp_build=$lcp_dir/build
[ -x "$lcp_dir/build-noamx/bin/llama-bench" ] && lcp_build=$lcp_dir/build-noamx  # compare.sh's fallback where AMX faults
[ -d "$lcp_build" ] || { echo "server.sh: no llama.cpp build in $lcp_build (run bench/compare.sh once)" >&2; exit 1; }
cmake --build "$lcp_build" -j"$(nproc)" --target llama-server >&2
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >&2
cmake --build build -j"$(nproc)" --target kiln-server >&2
model=${1:-$(python3 tools/fetch_models.py qwen-coder-1.5b)}
ctx=$((np * 2048))
port=$((20000 + RANDOM % 20000))
out=$(mktemp)
trap 'rm -f "$out"; kill $pid 2>/dev/null || true' EXIT
pid=
serve() {  # engine: starts its server, waits for /health, runs the load, stops it
  local engine=$1
  if [ "$engine" = kiln ]; then
    build/kiln-server -m "$model" --port $port -np "$np" -c $ctx -t "$threads" --repack 2>/dev/null &
  else
    "$lcp_build/bin/llama-server" -m "$model" --port $port -np "$np" -c $ctx -t "$threads" --host 127.0.0.1 2>/dev/null &
  fi
  pid=$!
  for _ in $(seq 1 600); do
    curl -sf "127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  # One short request first: the first one llama-server serves is slow (page faults, first-use setup).
  curl -s "127.0.0.1:$port/v1/chat/completions" -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4}' >/dev/null
  echo "$engine $(python3 bench/server_load.py --port $port --clients "$clients" --requests "$requests" --max-tokens "$max")" >>"$out"
  kill -INT $pid
  wait $pid 2>/dev/null || true
  port=$((port + 1))
}
for r in $(seq 1 "$rounds"); do
  serve llama
  serve kiln
done
python3 - "$out" "$(basename "$model" .gguf)" "$rounds" "$clients" "$requests" "$max" "$np" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    engine, js = line.split(" ", 1)
    runs.setdefault(engine, []).append(json.loads(js))
model, rounds, clients, requests, mx, np = sys.argv[2:]
print(f"{model}: {clients} clients x {requests} streamed chat requests, {mx} tokens each, -np {np}; medians of {rounds} interleaved rounds\n")
print("| server | errors | aggregate t/s | time to first token | per-request decode t/s |")
print("| --- | ---: | ---: | ---: | ---: |")
med = lambda e, k: statistics.median(r[k] for r in runs[e])
for e, name in (("llama", "llama-server"), ("kiln", "kiln-server")):
    print(f"| {name} | {sum(r['errors'] for r in runs[e])} | {med(e, 'aggregate_tps'):.1f} | {med(e, 'ttft_median_s'):.2f} s | {med(e, 'decode_tps_median'):.1f} |")
print(f"\nkiln / llama.cpp: aggregate {med('kiln', 'aggregate_tps') / med('llama', 'aggregate_tps'):.2f}x, "
      f"time to first token {med('llama', 'ttft_median_s') / med('kiln', 'ttft_median_s'):.2f}x faster")
PY
