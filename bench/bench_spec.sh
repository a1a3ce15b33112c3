#!/usr/bin/env bash
# Speculative decoding benchmark: each configuration runs REPS times with --spec-compare
# (plain decoding and speculative decoding in the same process, back to back, so machine
# load hits both alike) at temperature 0; prints the medians of plain t/s, speculative t/s,
# their ratio, and the acceptance statistics.
#   bench/bench_spec.sh [build-dir] [reps]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
reps=${2:-5}
gen=$build/kiln-generate
smol=$(python3 tools/fetch_models.py smollm2)
gemma=$(python3 tools/fetch_models.py gemma3)
smol_q8=$build/smollm2-q8_0.gguf
[ -f "$smol_q8" ] || "$build/kiln-quantize" "$smol" "$smol_q8" q8_0 >&2
run() {  # label, flags...
  local label=$1
  shift
  for _ in $(seq "$reps"); do
    "$gen" --temp 0 -t 2 --spec-compare --json --quiet "$@"
  done | python3 -c '
import json, statistics, sys
rows = [json.loads(l)["speculative"] for l in sys.stdin if l.strip()]
med = lambda k: statistics.median(r[k] for r in rows)
r = rows[0]
pos = " ".join("%.2f" % p for p in r["acceptance_by_position"])
print("| %s | %.1f | %.1f | **%.2fx** | %.0f%% (%d/%d) | %.2f | %s | %s |" % (sys.argv[1], med("plain_decode_tps"), med("decode_tps"), med("speedup"),
      100 * r["acceptance_rate"], r["accepted"], r["drafted"], r["mean_accepted"], pos, all(x["same_as_plain"] for x in rows)))' "$label"
}
echo "| run | plain t/s | speculative t/s | speedup | accepted | accepted per round | acceptance by position | same tokens |"
echo "|---|---|---|---|---|---|---|---|"
run "Gemma 3 270M, lookup n-gram 8, copy code" -m "$gemma" -f bench/prompts/continue_code.txt -n 160 --lookup-ngram 8 --draft-max 7
run "SmolLM2 135M, lookup n-gram 8, rewrite code (chat)" -m "$smol" -f bench/prompts/rewrite_code.txt --chat -n 200 --lookup-ngram 8 --draft-max 7
# Self-speculation, calibrated on the prompt in each run (skip set and trimmed output head;
# the calibration's time is not part of the decode rate), with the r16 kernels.
for m in "$gemma" "$smol"; do
  chat=()
  [ "$m" = "$smol" ] && chat=(--chat)
  run "$(basename "$m" .gguf), self-spec (calibrated), general" -m "$m" -f bench/prompts/general.txt "${chat[@]}" -n 128 --self-spec --repack
done
run "gemma-3-270m-q4_k_m, self-spec (calibrated), story" -m "$gemma" -f bench/prompts/story.txt -n 128 --self-spec --repack
run "SmolLM2 Q8_0 target, Q4_1 draft model, general (chat)" -m "$smol_q8" -md "$smol" -f bench/prompts/general.txt --chat -n 128 --draft-max 5
