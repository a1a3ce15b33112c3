#!/usr/bin/env bash
# Writes the small random-weight models the architecture tests compare with llama.cpp
# (tests/data/reference_synth-*.json): one per architecture feature kiln implements
# beyond SmolLM2 and Gemma 3 — Llama 3.1 rope_freqs scaling, Qwen2's QKV bias and Qwen3's
# QK norm, and the three mixture-of-experts layouts (Mixtral = llama with experts,
# Qwen3-MoE, Qwen2-MoE with its shared expert) — with real vocabularies from llama.cpp's test files. Deterministic (seeded).
#   tools/make_synthetic_models.sh [path/to/kiln-synth]
set -euo pipefail
cd "$(dirname "$0")/.."
synth=${1:-build/kiln-synth}
cache=${KILN_CACHE:-.cache}
python3 tools/fetch_models.py vocab >/dev/null
out=$cache/models/synth
mkdir -p "$out"
common=(--n-embd 256 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 512 --type q8_0 --out-std 0.5 --seed 3)
make() {  # name arch vocab extra...
  local name=$1 arch=$2 vocab=$3
  shift 3
  [ -f "$out/$name.gguf" ] || "$synth" --arch "$arch" --vocab-from "$cache/vocab/ggml-vocab-$vocab.gguf" "${common[@]}" "$@" -o "$out/$name.gguf" >&2
}
make synth-llama3 llama llama-bpe --rope-theta 500000 --llama3-rope
make synth-qwen2 qwen2 qwen2 --rope-theta 1000000
make synth-qwen3 qwen3 qwen2 --rope-theta 1000000
make synth-mixtral llama llama-spm --n-expert 8 --n-expert-used 2 --n-ff-exp 256
make synth-qwen3moe qwen3moe qwen2 --rope-theta 1000000 --n-expert 16 --n-expert-used 4 --n-ff-exp 128
make synth-qwen2moe qwen2moe qwen2 --rope-theta 1000000 --n-expert 8 --n-expert-used 2 --n-ff-exp 128 --n-ff-shexp 256
# Qwen3.5 hybrids: DeltaNet layers 0-2, gated full attention at 3 (more attention layers make
# llama.cpp's own flash-attention noise part its greedy runs from one another within 64 tokens).
hybrid=(--head-dim 64 --ssm-state 32 --ssm-k-heads 2 --ssm-v-heads 4 --rope-theta 1000000)
make synth-qwen35 qwen35 qwen2 "${hybrid[@]}" --n-layer 4
make synth-qwen35moe qwen35moe qwen2 "${hybrid[@]}" --n-layer 4 --n-expert 16 --n-expert-used 4 --n-ff-exp 128 --n-ff-shexp 256
make synth-qwen3next qwen3next qwen2 "${hybrid[@]}" --n-layer 4 --n-expert 16 --n-expert-used 4 --n-ff-exp 128 --n-ff-shexp 256
# The 1-2 bit IQ mixes, as random lattice blocks (kiln-synth has no quantizer for them):
# IQ2_M puts iq2_s, iq3_s and q4_K/q5_K in the file, IQ1_M iq1_m, iq2_xxs, q2_K and q5_K.
make synth-qwen2-iq2_m qwen2 qwen2 --rope-theta 1000000 --type iq2_m
make synth-qwen3-iq1_m qwen3 qwen2 --rope-theta 1000000 --type iq1_m

# SmolLM2's own weights in F16 (dequantized from the Q4_1 file by kiln-quantize): F16
# matmuls keep activations in f32, so the KV-cache quality test (tests/test_attention.cpp)
# sees the cache's rounding alone, not 8-bit activation noise it would set off.
quantize=$(dirname "$synth")/kiln-quantize
[ -f "$out/smollm2-f16.gguf" ] || "$quantize" "$(python3 tools/fetch_models.py smollm2)" "$out/smollm2-f16.gguf" f16 >&2

# kiln-quantize's Q4_K_M and Q8_0 of that F16 file: tests/data/reference_smollm2-{q4_k_m,q8_0}.json
# hold llama.cpp's tokens on these very files (it loads them: same types and bytes as llama-quantize's).
for mix in q4_k_m q8_0; do
  [ -f "$out/smollm2-$mix.gguf" ] || "$quantize" "$out/smollm2-f16.gguf" "$out/smollm2-$mix.gguf" "$mix" >&2
done

# Gemma 3 270M with the 4B-27B models' linear RoPE scaling (factor 8, global layers only):
# tests/data/reference_gemma3-rope-linear8.json holds llama.cpp's tokens on it.
[ -f "$out/gemma3-rope-linear8.gguf" ] || "$quantize" --override-kv gemma3.rope.scaling.type=str:linear \
    --override-kv gemma3.rope.scaling.factor=float:8 "$(python3 tools/fetch_models.py gemma3)" "$out/gemma3-rope-linear8.gguf" COPY >&2

# Hugging Face checkpoint directories made from GGUF files (tools/make_hf_checkpoint.py:
# dequantized by the PyPI gguf package, written by safetensors and tokenizers), for
# tests/test_hf_checkpoint.cpp: SmolLM2 in F16 across two shards, Gemma 3 in BF16 (also in the
# image+text checkpoints' layout), and every
# synthetic architecture in F32.
pylib=$(tools/python_deps.sh)
hf=$cache/models/hf
hf_make() {  # name source.gguf flags...
  local name=$1 src=$2
  shift 2
  [ -f "$hf/$name/config.json" ] || PYTHONPATH="$pylib" python3 tools/make_hf_checkpoint.py "$src" "$hf/$name" "$@"
}
hf_make smollm2 "$(python3 tools/fetch_models.py smollm2)" --dtype f16 --shards 2
hf_make gemma3 "$(python3 tools/fetch_models.py gemma3)" --dtype bf16
hf_make gemma3-multimodal "$(python3 tools/fetch_models.py gemma3)" --dtype bf16 --multimodal  # the 4B-27B layout
for name in synth-llama3 synth-qwen2 synth-qwen3 synth-mixtral synth-qwen3moe synth-qwen2moe; do
  hf_make "$name" "$out/$name.gguf" --dtype f32
done
