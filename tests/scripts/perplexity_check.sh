#!/usr/bin/env bash
# kiln-perplexity end to end on SmolLM2: a perplexity run and its --json line, a base-logits
# file written and read back (KLD ~ 0 against itself, > 0 against a q8_0 KV cache), the
# multiple-choice modes on the test fixtures, and bad inputs as one-line errors (exit 1).
#   tests/scripts/perplexity_check.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
ppl=$build/kiln-perplexity
smol=$(python3 tools/fetch_models.py smollm2)
qwen=$(python3 tools/fetch_models.py qwen-coder-0.5b)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat docs/*.md > "$tmp/text.txt"
last_json() { tail -n 1 | python3 -c "import json, sys; j = json.load(sys.stdin); $1"; }

"$ppl" -m "$smol" -f "$tmp/text.txt" -c 128 --chunks 3 -t 2 --json 2>/dev/null |
  last_json 'assert j["chunks"] == 3 and j["n_ctx"] == 128 and j["scored"] == 3 * 63 and 1 < j["ppl"] < 1000 and j["ppl_err"] > 0, j
print("  PPL %.3f +/- %.3f over 3 chunks of 128" % (j["ppl"], j["ppl_err"]))'
"$ppl" -m "$smol" -f "$tmp/text.txt" -c 128 --chunks 3 -t 2 --kl-divergence-base "$tmp/base.bin" >/dev/null 2>&1
python3 -c 'import os, sys; n = os.path.getsize(sys.argv[1]); want = 20 + 4 * 3 * 128 + 2 * 3 * 63 * (2 * ((49152 + 1) // 2) + 4); assert n == want, (n, want)' "$tmp/base.bin"
"$ppl" -m "$smol" -t 2 --kl-divergence-base "$tmp/base.bin" --kl-divergence --json 2>/dev/null |
  last_json 'k = j["kld"]; assert abs(k["mean"]) < 1e-4 and k["same_top"] > 0.99 and k["ppl"] == j["ppl"], k
# the base rows hold the top 16 nats: a target further down reads as -16 nats, so PPL(base) <= PPL
assert k["ppl"] / 1.1 < k["ppl_base"] <= k["ppl"] * 1.0001, k'
"$ppl" -m "$smol" -t 2 --kl-divergence-base "$tmp/base.bin" --kl-divergence -ctk q8_0 -ctv q8_0 --json 2>/dev/null |
  last_json 'k = j["kld"]; assert 0 < k["mean"] < 0.5 and k["max"] >= k["p99"] >= k["median"], k
print("  q8_0 KV cache against the F16 base: KLD %.5f, same top %.1f%%" % (k["mean"], 100 * k["same_top"]))'

if [ -n "${VK_ICD_FILENAMES:-}" ]; then  # tools/test.sh points it at lavapipe
  "$ppl" -m "$smol" --kl-divergence-base "$tmp/base.bin" --kl-divergence --backend vulkan --json 2>/dev/null |
    last_json 'k = j["kld"]; assert 0 <= k["mean"] < 0.05 and k["same_top"] > 0.8, k
print("  Vulkan against the CPU base: KLD %.5f, same top %.1f%%" % (k["mean"], 100 * k["same_top"]))'
fi

# Expert counts on the synthetic Qwen3-MoE (4 of 16 experts): its own count gives the base's
# logits back, fewer experts move them.
moe=${KILN_CACHE:-.cache}/models/synth/synth-qwen3moe.gguf  # written by tools/make_synthetic_models.sh
"$ppl" -m "$moe" -f "$tmp/text.txt" -c 128 --chunks 2 -t 2 --kl-divergence-base "$tmp/moe.bin" >/dev/null 2>&1
"$ppl" -m "$moe" -t 2 --kl-divergence-base "$tmp/moe.bin" --kl-divergence --experts-per-token 4 --json 2>/dev/null |
  last_json 'assert abs(j["kld"]["mean"]) < 1e-4, j'
"$ppl" -m "$moe" -t 2 --kl-divergence-base "$tmp/moe.bin" --kl-divergence --experts-per-token 2 --json 2>/dev/null |
  last_json 'assert j["kld"]["mean"] > 1e-3, j
print("  synthetic MoE, 2 of its 4 experts: KLD %.4f" % j["kld"]["mean"])'

for mode in "--hellaswag -f tests/data/choice_hellaswag.txt --hellaswag-tasks 5" "--winogrande -f tests/data/choice_winogrande.csv" \
            "--multiple-choice -f tests/data/choice_mc.bin"; do
  # shellcheck disable=SC2086
  "$ppl" -m "$smol" $mode -t 2 --json 2>/dev/null |
    last_json 'assert j["tasks"] in (5, 16, 12) and 0 <= j["right"] <= j["tasks"] and 0 < j["chance"] < 1, j
print("  %s: %d of %d right" % (j["task"], j["right"], j["tasks"]))'
done

# Bad inputs: exit 1 and a message naming what is wrong.
: > "$tmp/empty.txt"
echo "only a few words" > "$tmp/short.txt"
expect_error() {  # expect_error WHAT -- ARGS...
  local what=$1
  shift
  if out=$("$ppl" "$@" 2>&1); then echo "perplexity_check: '$*' succeeded; expected an error with '$what'" >&2; exit 1; fi
  if ! grep -q -- "$what" <<<"$out"; then echo "perplexity_check: '$*' said '$out'; expected '$what'" >&2; exit 1; fi
}
expect_error "-f TEXT is required" -m "$smol"
expect_error "empty" -m "$smol" -f "$tmp/empty.txt"
expect_error "less than one chunk" -m "$smol" -f "$tmp/short.txt" -c 128
expect_error "cannot be read" -m "$smol" -f "$tmp/none.txt"
expect_error "not the same vocabulary" -m "$qwen" --kl-divergence-base "$tmp/base.bin" --kl-divergence
expect_error "differs from the base file" -m "$smol" --kl-divergence-base "$tmp/base.bin" --kl-divergence -c 256
expect_error "not a llama.cpp logits file" -m "$smol" --kl-divergence-base "$tmp/text.txt" --kl-divergence
expect_error "separate runs" -m "$smol" -f "$tmp/text.txt" --hellaswag --winogrande
expect_error "not a positive multiple of 6" -m "$smol" -f "$tmp/short.txt" --hellaswag
expect_error "tasks announced, the file is 17 bytes" -m "$smol" -f "$tmp/short.txt" --multiple-choice
expect_error "--chunks" -m "$smol" -f "$tmp/text.txt" --chunks 0
echo "perplexity_check: ok"
