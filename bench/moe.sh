#!/usr/bin/env bash
# MoE speed: a random-weight Qwen3-MoE-shaped model (n_embd 2048, 24 layers, 32 heads of
# 128, 4 KV heads, 64 experts of width 768, 8 active, Qwen2 vocabulary, Q4_K_M, ~4.3 GB)
# through bench/compare.sh (llama.cpp, ik_llama.cpp with its MoE flags, kiln), then kiln
# with 8 and 4 experts per token and the KL divergence between the two.
#
#   bench/moe.sh              writes .cache/models/bench/qwen3moe-64x768-q4_k_m.gguf once
#                             (a minute: each matrix's rows are drawn from 4096 random ones), then benchmarks it
# Env: IK_LLAMA_BENCH (ik_llama.cpp's llama-bench; its column is left out otherwise),
#      IK_FLAGS (-fmoe 1 -rtr 1 -fa 1), KILN_FLAGS (--repack), THREADS (2), REPS (3), KL (128).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${KILN_CACHE:-.cache}
threads=${THREADS:-2}
reps=${REPS:-3}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >&2
cmake --build build -j"$(nproc)" --target kiln-bench kiln-synth >&2
python3 tools/fetch_models.py vocab >/dev/null
f=$cache/models/bench/qwen3moe-64x768-q4_k_m.gguf
mkdir -p "$cache/models/bench"
[ -f "$f" ] || build/kiln-synth --arch qwen3moe --vocab-from "$cache/vocab/ggml-vocab-qwen2.gguf" --n-embd 2048 --n-layer 24 \
    --n-head 32 --n-head-kv 4 --head-dim 128 --n-ff 6144 --n-expert 64 --n-expert-used 8 --n-ff-exp 768 \
    --rope-theta 1000000 --out-std 0.5 --type q4_k_m --seed 1 --row-pool 4096 -o "$f" >&2

IK_FLAGS=${IK_FLAGS:--fmoe 1 -rtr 1 -fa 1} bench/compare.sh "$f"
echo
# shellcheck disable=SC2086
build/kiln-bench -m "$f" -t "$threads" -p 0 -n 128 -v 0 -r "$reps" --experts-per-token 8,4 --kl "${KL:-128}" ${KILN_FLAGS:---repack}
