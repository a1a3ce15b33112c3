#!/usr/bin/env bash
# Speculative decoding on the real Qwen2.5-Coder pair (1.5B target, 0.5B draft: same
# tokenizer), kiln against llama.cpp's llama-speculative, on code-editing prompts (rewrite,
# refactor, continue a file), a general prompt and a story prompt, at temperature 0.
#
#   bench/spec.sh [ROUNDS]      (default 3; prints one markdown table of medians)
#
# Each round runs every prompt through, in turn:
#  - kiln -md 0.5B (prompt lookup of 4..8-token matches in front of the draft model, the
#    default), kiln -md 0.5B --lookup-ngram 0 (the draft model alone) and kiln
#    --lookup-ngram 8 (prompt lookup alone), each with --spec-compare: a second session
#    decodes plainly, interleaved with the speculative run, so each speedup is measured
#    within seconds (a shared VM's memory bandwidth drifts by tens of percent between
#    minutes) and the tokens are checked equal to plain decoding;
#  - llama.cpp's llama-speculative with the same pair, prompt tokens and --spec-draft-n-max 7
#    (kiln's largest draft), and llama-bench tg at the prompt's depth as its plain decoding.
# Both engines get the same text: chat prompts are rendered here with Qwen2.5's ChatML
# template and default system prompt, and parsed with special tokens by both.
# llama.cpp is the pinned llama-cpp-python sdist build of bench/compare.sh (built there if
# missing). Env: THREADS (2), N (256 tokens), KILN_FLAGS (--repack).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
threads=${THREADS:-2}
n=${N:-256}
kiln_flags=${KILN_FLAGS:---repack}
cache=${KILN_CACHE:-$PWD/.cache}

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >&2
cmake --build build -j"$(nproc)" --target kiln-generate >&2
target=$(python3 tools/fetch_models.py qwen-coder-1.5b)
draft=$(python3 tools/fetch_models.py qwen-coder-0.5b)
lcp=$cache/llama.cpp/llama_cpp_python-0.3.36/vendor/llama.cpp
if [ ! -x "$lcp/build/bin/llama-speculative" ] || [ ! -x "$lcp/build/bin/llama-bench" ]; then
  [ -d "$lcp" ] || { python3 -m pip download --no-deps --no-binary :all: -d "$cache/llama.cpp" llama-cpp-python==0.3.36 >&2 &&
                     tar xzf "$cache/llama.cpp/llama_cpp_python-0.3.36.tar.gz" -C "$cache/llama.cpp"; }
  cmake -S "$lcp" -B "$lcp/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF >&2
  cmake --build "$lcp/build" -j"$(nproc)" --target llama-speculative llama-bench >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# name:chat (1: rendered as a ChatML turn) : prompt file
prompts=(rewrite:1:bench/prompts/rewrite_code.txt refactor:1:bench/prompts/refactor_code.txt
         continue:0:bench/prompts/continue_code.txt general:1:bench/prompts/general.txt story:1:bench/prompts/story.txt)
render() {  # $1 = chat flag, $2 = file: the exact prompt text both engines see
  if [ "$1" = 1 ]; then
    printf '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n' "$(cat "$2")"
  else
    cat "$2"
  fi
}

for ((round = 1; round <= rounds; round++)); do
  for p in "${prompts[@]}"; do
    IFS=: read -r name chat file <<< "$p"
    text=$(render "$chat" "$file"; echo x)
    text=${text%x}
    printf '%s' "$text" > "$tmp/$name.txt"
    for mode in hybrid model lookup; do
      case $mode in
        hybrid) flags=(-md "$draft") ;;
        model) flags=(-md "$draft" --lookup-ngram 0) ;;
        lookup) flags=(--lookup-ngram 8) ;;
      esac
      # shellcheck disable=SC2086
      build/kiln-generate -m "$target" "${flags[@]}" -f "$tmp/$name.txt" --special -n "$n" --temp 0 -t "$threads" --spec-compare --json --quiet \
          $kiln_flags > "$tmp/kiln.$name.$mode.$round.json"
    done
    n_prompt=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['prompt_tokens'])" "$tmp/kiln.$name.hybrid.$round.json")
    "$lcp/build/bin/llama-speculative" -m "$target" -md "$draft" -p "$text" -n "$n" --temp 0 -t "$threads" -c 4096 \
        --spec-draft-n-max 7 > "$tmp/llama.$name.$round.log" 2>&1 || { echo "spec.sh: llama-speculative failed:" >&2; tail -5 "$tmp/llama.$name.$round.log" >&2; exit 1; }
    "$lcp/build/bin/llama-bench" -m "$target" -p 0 -n "$n" -d "$n_prompt" -t "$threads" -r 1 -o json > "$tmp/llama-plain.$name.$round.json" 2>/dev/null
  done
done

python3 - "$tmp" "$rounds" "${prompts[@]}" <<'EOF'
import json, re, statistics, sys
tmp, rounds, prompts = sys.argv[1], int(sys.argv[2]), [p.split(":")[0] for p in sys.argv[3:]]
med = statistics.median
def kiln(name, mode, r):
    return json.load(open(f"{tmp}/kiln.{name}.{mode}.{r}.json"))["speculative"]
print("| prompt | kiln plain t/s | kiln -md (+lookup) | kiln -md alone | kiln lookup | llama.cpp plain t/s | llama-speculative -md | kiln -md (+lookup) / llama-speculative | kiln -md alone / llama-speculative | acceptance kiln -md alone / llama.cpp | same tokens |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for name in prompts:
    rs = range(1, rounds + 1)
    k = {m: [kiln(name, m, r) for r in rs] for m in ("hybrid", "model", "lookup")}
    plain = med(x["plain_decode_tps"] for m in k for x in k[m])
    speed = {m: med(x["speedup"] for x in k[m]) for m in k}
    tps = {m: med(x["decode_tps"] for x in k[m]) for m in k}
    ll_spec, ll_acc, ll_plain = [], [], []
    for r in rs:
        log = open(f"{tmp}/llama.{name}.{r}.log").read()
        ll_spec.append(float(re.search(r"decoded\s+\d+ tokens in\s+[\d.]+ seconds, speed:\s+([\d.]+)", log).group(1)))
        ll_acc.append(float(re.search(r"accept\s+=\s+([\d.]+)%", log).group(1)))
        ll_plain.append(json.load(open(f"{tmp}/llama-plain.{name}.{r}.json"))[0]["avg_ts"])
    same = all(x["same_as_plain"] for m in k for x in k[m])
    print(f"| {name} | {plain:.1f} | {tps['hybrid']:.1f} (**{speed['hybrid']:.2f}x**) | {tps['model']:.1f} ({speed['model']:.2f}x) | "
          f"{tps['lookup']:.1f} ({speed['lookup']:.2f}x) | {med(ll_plain):.1f} | {med(ll_spec):.1f} ({med(ll_spec) / med(ll_plain):.2f}x) | "
          f"{tps['hybrid'] / med(ll_spec):.2f}x | {tps['model'] / med(ll_spec):.2f}x | "
          f"{100 * med(x['acceptance_rate'] for x in k['model']):.0f}% / {med(ll_acc):.0f}% | {'yes' if same else 'NO'} |")
print()
print(f"{rounds} rounds, medians; {len(prompts)} prompts, {sys.argv[0] and ''}temperature 0; kiln speedups against its own interleaved plain decoding, "
      "llama.cpp's against llama-bench tg at the prompt's depth")
EOF
