#!/usr/bin/env bash
# kiln-imatrix end to end on SmolLM2 F16: an importance matrix from the calibration text,
# kiln-quantize --imatrix writing an IQ2_XXS file from it that kiln then runs, and bad
# inputs as one-line errors (exit 1).
#   tests/scripts/imatrix_check.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
f16=${KILN_CACHE:-.cache}/models/synth/smollm2-f16.gguf  # written by tools/make_synthetic_models.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$build/kiln-imatrix" -m "$f16" -f tests/data/imatrix_text.txt -c 128 --chunks 2 -t 2 -o "$tmp/im.gguf" > "$tmp/out.txt" 2>/dev/null
grep -q "Final estimate: PPL" "$tmp/out.txt"
PYTHONPATH=$(tools/python_deps.sh) python3 - "$tmp/im.gguf" <<'PY'
import sys, gguf
r = gguf.GGUFReader(sys.argv[1])
names = [t.name for t in r.tensors]
assert len(names) == 2 * 30 * 7 and "blk.0.ffn_down.weight.in_sum2" in names, len(names)
assert int(r.fields["imatrix.chunk_count"].parts[-1][0]) == 2 and int(r.fields["imatrix.chunk_size"].parts[-1][0]) == 128
print("  kiln-imatrix: %d tensors (in_sum2 + counts of 210 weights), 2 chunks of 128" % len(names))
PY
"$build/kiln-quantize" --imatrix "$tmp/im.gguf" -t 2 "$f16" "$tmp/iq2.gguf" IQ2_XXS 2>/dev/null
out=$("$build/kiln-generate" -m "$tmp/iq2.gguf" -p "The kiln was" -n 8 --temp 0 -t 2 2>/dev/null)
[ -n "$out" ]
echo "  kiln-quantize IQ2_XXS with it: $(du -m "$tmp/iq2.gguf" | cut -f1) MiB, generates: ${out//$'\n'/ }"

fails() {  # the command must fail with a one-line error naming $1
  local want=$1; shift
  local err
  if err=$("$@" 2>&1 >/dev/null); then echo "expected failure: $*" >&2; exit 1; fi
  [[ $err == *"$want"* ]] || { echo "error '$err' lacks '$want'" >&2; exit 1; }
}
fails "-f TEXT is required" "$build/kiln-imatrix" -m "$f16"
fails "imatrix_text.txt" "$build/kiln-imatrix" -m "$f16" -f tests/data/imatrix_text.txt -c 4096
fails "/nonexistent.txt: cannot be read" "$build/kiln-imatrix" -m "$f16" -f /nonexistent.txt
fails "CPU backend" "$build/kiln-imatrix" -m "$f16" -f tests/data/imatrix_text.txt --backend vulkan
echo "  bad inputs: clear errors"
