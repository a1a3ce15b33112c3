#!/usr/bin/env bash
# Speculative decoding end to end through kiln-generate: for every drafting source, greedy
# output must equal plain decoding (--spec-compare checks it) and bad combinations must be
# one-line errors. The draft-model pair is built here: SmolLM2 requantized to Q8_0 by
# kiln-quantize (the target) drafted by the original Q4_1 file.
#   tests/scripts/spec_check.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
gen=$build/kiln-generate
smol=$(python3 tools/fetch_models.py smollm2)
gemma=$(python3 tools/fetch_models.py gemma3)
target=$build/smollm2-q8_0.gguf
[ -f "$target" ] || "$build/kiln-quantize" "$smol" "$target" q8_0
prompt="Repeat this list exactly, then add two more fruits: apple, banana, cherry, date, elderberry, fig, grape."
check() {  # label, flags...
  local label=$1
  shift
  "$gen" -m "$target" -p "$prompt" --chat --temp 0 -n 48 -t 2 --spec-compare --json --quiet "$@" |
    python3 -c 'import json, sys
s = json.load(sys.stdin)["speculative"]
print("  %-12s drafted %3d accepted %3d (%.0f%%), same tokens as plain: %s" % (sys.argv[1], s["drafted"], s["accepted"], 100 * s["acceptance_rate"], s["same_as_plain"]))
sys.exit(0 if s["same_as_plain"] else 1)' "$label"
}
check lookup --lookup-ngram 3
check self-spec --skip-layers 12,13,14
check draft-model -md "$smol" --draft-max 7                 # with prompt lookup in front (the default)
check draft-alone -md "$smol" --lookup-ngram 0
check draft-head -md "$gemma" --draft-head 4096 --lookup-ngram 0 -m "$gemma"   # Gemma 3 drafting for itself from a trimmed head
check pard -md "$smol" --pard --pard-mask-id 2
expect_error() {  # pattern, flags...
  local pattern=$1
  shift
  if out=$("$gen" "$@" 2>&1 >/dev/null); then echo "expected an error from: $*" >&2; exit 1; fi
  grep -q -- "$pattern" <<<"$out" || { echo "error '$out' does not mention '$pattern'" >&2; exit 1; }
}
expect_error "incompatible" -m "$smol" -md "$gemma" -p hi
expect_error "smaller than the target context" -m "$smol" -md "$smol" -c 512 --ctx-draft 256 -p hi
expect_error "one drafting source" -m "$smol" --self-spec --lookup-ngram 3 -p hi
expect_error "at least 4 tokens" -m "$smol" -md "$smol" --lookup-ngram 2 -p hi
expect_error "needs a draft model" -m "$smol" --lookup-ngram 3 --draft-head 100 -p hi
expect_error "--draft-max" -m "$smol" --lookup-ngram 2 --draft-max 9 -p hi
expect_error "--pard-mask-id" -m "$smol" -md "$smol" --pard -p hi
echo "  bad combinations: clear errors"
