#!/usr/bin/env bash
# Side-by-side speed: llama.cpp, ik_llama.cpp and kiln on the same GGUF files, same machine,
# one run. Prints one markdown table (medians over REPS rounds) with kiln's ratio to each.
# The engines take turns, one repetition each per round: on a shared VM whose memory
# bandwidth drifts by tens of percent between minutes, back-to-back blocks of one engine
# would measure the drift, not the engines.
#
#   bench/compare.sh [MODEL.gguf ...]          (default: the benchmark models below)
#
# - llama.cpp is built once from llama-cpp-python's source distribution on PyPI (pinned),
#   outside the repository, in $KILN_CACHE/llama.cpp (default .cache/llama.cpp).
# - ik_llama.cpp is not built here: set IK_LLAMA_BENCH to the llama-bench binary of a build
#   you made from its public repository (its column is left out otherwise).
# - The default models are SmolLM2-135M and the real Qwen2.5-Coder-0.5B and -1.5B Q4_K_M
#   (tools/fetch_models.py), a random-weight
#   Llama-architecture 1.1B (n_embd 2048, 16 layers, 32 heads, 8 KV heads, n_ff 8192,
#   32000-token vocab) in Q4_K_M and Q8_0, and a random-weight Qwen2 7B of
#   DeepSeek-R1-Distill-Qwen-7B's shapes (n_embd 3584, 28 layers, 28 heads, 4 KV heads,
#   n_ff 18944, Qwen2 vocab) in Q4_K_M (4.5 GiB: the real file is not on PyPI), written by
#   kiln-synth with seed 1.
# Env: THREADS (2), REPS (5), PP (512), TG (128), KILN_FLAGS (--repack), IK_FLAGS (-rtr 1),
# KEEP (a folder for each round's JSON, else a temporary one).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cache=${KILN_CACHE:-$root/.cache}
threads=${THREADS:-2}
reps=${REPS:-5}
pp=${PP:-512}
tg=${TG:-128}
kiln_flags=${KILN_FLAGS:---repack}
ik_flags=${IK_FLAGS:--rtr 1}

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >&2
cmake --build build -j"$(nproc)" --target kiln-bench kiln-synth >&2

# llama.cpp from the pinned PyPI sdist, built for this CPU (GGML_NATIVE). Where its AMX
# kernels fault (a guest whose CPUID lists AMX but whose first tilezero is an illegal
# instruction: seen on a 2-vCPU Xeon VM, 1 thread or 2), it is built a second time without
# AMX, in build-noamx, and that build is used.
lcp_version=0.3.36
lcp_dir=$cache/llama.cpp/llama_cpp_python-$lcp_version/vendor/llama.cpp
build_lcp() {  # $1 = build folder under $lcp_dir, $2... = extra cmake arguments
  cmake -S "$lcp_dir" -B "$lcp_dir/$1" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF "${@:2}" >&2
  cmake --build "$lcp_dir/$1" -j"$(nproc)" --target llama-bench >&2
}
lcp_runs() { "$lcp_bench" -m "$smol" -t 1 -p 16 -n 0 -r 1 >/dev/null; }  # 16 tokens of SmolLM2
lcp_bench=$lcp_dir/build/bin/llama-bench
if [ ! -x "$lcp_bench" ]; then
  mkdir -p "$cache/llama.cpp"
  python3 -m pip download --no-deps --no-binary :all: -d "$cache/llama.cpp" "llama-cpp-python==$lcp_version" >&2
  tar xzf "$cache/llama.cpp/llama_cpp_python-$lcp_version.tar.gz" -C "$cache/llama.cpp"
  build_lcp build
fi
smol=$(python3 tools/fetch_models.py smollm2)
if ! lcp_runs 2>/dev/null; then
  echo "compare.sh: llama.cpp's native build fails here (AMX?); using a build without AMX" >&2
  lcp_bench=$lcp_dir/build-noamx/bin/llama-bench
  # explicit -mno- flags win over -march=native
  no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  [ -x "$lcp_bench" ] || build_lcp build-noamx -DCMAKE_C_FLAGS="$no_amx" -DCMAKE_CXX_FLAGS="$no_amx"
  lcp_runs || { echo "compare.sh: llama.cpp's llama-bench (without AMX too) fails on $smol" >&2; exit 1; }
fi

models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  python3 tools/fetch_models.py vocab >/dev/null
  mkdir -p "$cache/models/bench"
  for q in q4_k_m q8_0; do
    f=$cache/models/bench/llama-1.1b-$q.gguf
    [ -f "$f" ] || build/kiln-synth --vocab-from "$cache/vocab/ggml-vocab-llama-spm.gguf" --n-embd 2048 --n-layer 16 \
        --n-head 32 --n-head-kv 8 --n-ff 8192 --type "$q" --seed 1 -o "$f" >&2
  done
  # each matrix's rows drawn from 512 random ones: a minute instead of an hour of k-quant search
  f7=$cache/models/bench/qwen2-7b-q4_k_m.gguf
  [ -f "$f7" ] || build/kiln-synth --arch qwen2 --vocab-from "$cache/vocab/ggml-vocab-qwen2.gguf" --n-embd 3584 --n-layer 28 \
      --n-head 28 --n-head-kv 4 --n-ff 18944 --n-ctx 32768 --rope-theta 1000000 --type q4_k_m --seed 1 --row-pool 512 -o "$f7" >&2
  models=("$smol" "$(python3 tools/fetch_models.py qwen-coder-0.5b)" "$(python3 tools/fetch_models.py qwen-coder-1.5b)"
          "$cache/models/bench/llama-1.1b-q4_k_m.gguf" "$cache/models/bench/llama-1.1b-q8_0.gguf" "$f7")
fi

# llama-bench's JSON (one file per round): a list of {test params, samples_ts}; the median
# over the rounds' samples.
median_llama() {  # $1 = n_prompt, $2 = n_gen, $3... = json files
  python3 - "$@" <<'EOF'
import json, statistics, sys
samples = []
for f in sys.argv[3:]:
    for r in json.load(open(f)):
        if r["n_prompt"] == int(sys.argv[1]) and r["n_gen"] == int(sys.argv[2]):
            samples += r["samples_ts"]
print(f"{statistics.median(samples):.2f}" if samples else "-")
EOF
}
median_kiln() {  # $1 = test name, $2... = json files
  python3 - "$@" <<'EOF'
import json, statistics, sys
samples = [r["tps_median"] for f in sys.argv[2:] for r in json.load(open(f))["results"] if r["test"] == sys.argv[1]]
print(f"{statistics.median(samples):.2f}" if samples else "-")
EOF
}
# kiln / ik_llama.cpp round by round, median, and the rounds kiln won ("1.04x (8/12)"):
# the two run back to back in each round, so a paired ratio cancels most of the drift
# between minutes that a ratio of medians keeps.
paired_kiln() {  # $1 = n_prompt, $2 = n_gen, $3 = test name, $4 = tmp dir, $5 = rounds
  python3 - "$@" <<'EOF'
import json, statistics, sys
np, ng, test, tmp, reps = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
ratios = []
for r in range(1, reps + 1):
    ik = [s for x in json.load(open(f"{tmp}/ik.{r}.json")) if x["n_prompt"] == np and x["n_gen"] == ng for s in x["samples_ts"]]
    kl = [x["tps_median"] for x in json.load(open(f"{tmp}/kiln.{r}.json"))["results"] if x["test"] == test]
    if ik and kl:
        ratios.append(kl[0] / ik[0])
print(f"{statistics.median(ratios):.2f}x ({sum(x > 1 for x in ratios)}/{len(ratios)})" if ratios else "-")
EOF
}
ratio() { python3 -c "import sys; a, b = sys.argv[1], sys.argv[2]; print('-' if '-' in (a, b) else f'{float(a) / float(b):.2f}x')" "$1" "$2"; }

if [ -n "${KEEP:-}" ]; then  # each round's JSON kept there
  tmp=$KEEP
  mkdir -p "$tmp"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
fi
run_ik() {
  if [ -n "${IK_LLAMA_BENCH:-}" ]; then
    # shellcheck disable=SC2086
    "$IK_LLAMA_BENCH" -m "$m" -t "$threads" -p "$pp" -n "$tg" -r 1 $ik_flags -o json > "$tmp/ik.$round.json" 2>/dev/null || echo "[]" > "$tmp/ik.$round.json"
  else
    echo "[]" > "$tmp/ik.$round.json"
  fi
}
run_kiln() {
  # shellcheck disable=SC2086
  build/kiln-bench -m "$m" -t "$threads" -p "$pp" -n "$tg" -v 0 -r 1 -o json $kiln_flags > "$tmp/kiln.$round.json" 2>/dev/null
}
bw=""
echo "| model | test | llama.cpp t/s | ik_llama.cpp t/s | kiln t/s | kiln / llama.cpp | kiln / ik_llama.cpp | kiln / ik by round: median (rounds kiln faster) |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for m in "${models[@]}"; do
  name=$(basename "$m" .gguf)
  for ((round = 1; round <= reps; round++)); do
    "$lcp_bench" -m "$m" -t "$threads" -p "$pp" -n "$tg" -r 1 -o json > "$tmp/lcp.$round.json" 2>/dev/null
    # ik_llama.cpp and kiln back to back, each first in every other round
    if ((round % 2 == 0)); then run_kiln; run_ik; else run_ik; run_kiln; fi
  done
  bw=$(python3 -c "import json, statistics, sys; print(round(statistics.median(json.load(open(f))['read_bandwidth_gbps'] for f in sys.argv[1:]), 1))" "$tmp"/kiln.*.json)
  for t in "pp$pp:$pp:0" "tg$tg:0:$tg"; do
    IFS=: read -r test np ng <<< "$t"
    l=$(median_llama "$np" "$ng" "$tmp"/lcp.*.json)
    i=$(median_llama "$np" "$ng" "$tmp"/ik.*.json)
    k=$(median_kiln "$test" "$tmp"/kiln.*.json)
    echo "| $name | $test | $l | $i | $k | $(ratio "$k" "$l") | $(ratio "$k" "$i") | $(paired_kiln "$np" "$ng" "$test" "$tmp" "$reps") |"
  done
done
echo
echo "threads $threads, medians of $reps interleaved rounds; kiln flags: $kiln_flags; ik_llama.cpp flags: ${IK_LLAMA_BENCH:+$ik_flags}; read bandwidth (kiln probe, median of the rounds): $bw GB/s"
