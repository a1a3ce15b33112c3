#!/usr/bin/env bash
# Decoding many sequences at once: kiln-bench -b against llama.cpp's llama-batched-bench on
# the same GGUF files, interleaved rounds (the bandwidth of a shared VM drifts), medians.
# Each of B sequences gets a 16-token prompt, then 64 steps decode one token of each; the
# number is the aggregate tokens/s of those steps (llama-batched-bench's S_TG).
#
#   bench/batched.sh [MODEL.gguf ...]     (default: the 1.1B Q4_K_M and the Qwen2.5-Coder 1.5B)
#
# llama.cpp: the build bench/compare.sh makes from llama-cpp-python's sdist (run that once).
# Env: ROUNDS (3), THREADS (2), NPL (1,2,4,8).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${KILN_CACHE:-$(pwd)/.cache}
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
npl=${NPL:-1,2,4,8}
lcp_dir=$cache/llama.cpp/llama_cpp_python-0.3.36/vendor/llama.cpp
lcp_build=$lcp_dir/build
[ -x "$lcp_dir/build-noamx/bin/llama-bench" ] && lcp_build=$lcp_dir/build-noamx  # compare.sh's fallback where AMX faults
[ -d "$lcp_build" ] || { echo "batched.sh: no llama.cpp build in $lcp_build (run bench/compare.sh once)" >&2; exit 1; }
cmake --build "$lcp_build" -j"$(nproc)" --target llama-batched-bench >&2
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >&2
cmake --build build -j"$(nproc)" --target kiln-bench >&2
files=("$@")
[ ${#files[@]} -gt 0 ] || files=("$cache/models/bench/llama-1.1b-q4_k_m.gguf" "$(python3 tools/fetch_models.py qwen-coder-1.5b)")
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for f in "${files[@]}"; do
  [ -f "$f" ] || { echo "batched.sh: $f is missing (bench/compare.sh writes the 1.1B)" >&2; exit 1; }
  for r in $(seq 1 "$rounds"); do
    "$lcp_build/bin/llama-batched-bench" -m "$f" -c 2048 -npp 16 -ntg 64 -npl "$npl" -t "$threads" 2>/dev/null |
      awk -F'|' -v f="$(basename "$f" .gguf)" '$2 ~ /^ *16 *$/ {gsub(/ /, "", $4); gsub(/ /, "", $9); print f, "llama", $4, $9}' >>"$out"
    build/kiln-bench -m "$f" -p 0 -v 0 -n 64 -d 16 -b "$npl" -r 1 -t "$threads" --repack --no-probe -o json 2>/dev/null |
      python3 -c 'import json, sys
for r in json.load(sys.stdin)["results"]:
    if r.get("sequences"): print(sys.argv[1], "kiln", r["sequences"], r["tps_median"])' "$(basename "$f" .gguf)" >>"$out"
  done
done
python3 - "$out" "$rounds" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f, engine, b, tps = line.split()
    runs.setdefault((f, int(b)), {}).setdefault(engine, []).append(float(tps))
print(f"aggregate decode t/s, medians of {sys.argv[2]} interleaved rounds\n")
print("| model | sequences | llama.cpp t/s | kiln t/s | kiln / llama.cpp | kiln / its one sequence |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for (f, b), e in sorted(runs.items()):
    l, k = statistics.median(e["llama"]), statistics.median(e["kiln"])
    one = statistics.median(runs[(f, 1)]["kiln"]) if (f, 1) in runs else float("nan")
    print(f"| {f} | {b} | {l:.1f} | {k:.1f} | {k / l:.2f}x | {k / one:.2f}x |")
PY
