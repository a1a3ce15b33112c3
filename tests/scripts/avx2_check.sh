#!/usr/bin/env bash
# The binaries built here (on an AVX-512 machine) must run on a CPU without AVX-512: only
# the AVX-512 translation unit may use it, and only after CPUID says so. QEMU's user-mode
# emulator pretends to be an AMD EPYC Rome (Zen 2: AVX2 + FMA, no AVX-512) and traps any
# instruction that CPU lacks, so a stray AVX-512 instruction in common code is a crash here.
# Checks: the kernel and quantization suites pass on the levels that CPU has (avx2,
# generic), and kiln-generate picks the avx2 kernels and writes the same tokens as the
# native run forced to avx2, on SmolLM2 (dense) and on the synthetic Qwen3-MoE (experts,
# QK norm). The flash-attention and grouped-MoE suites are not run emulated: their avx2
# kernels run natively in the suite (every ISA), their common code runs in the two
# generations here, and emulated they were still running after 27 minutes on a 2-core Xeon
# host (natively: 25 s).
#   tests/scripts/avx2_check.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
emulate=(qemu-x86_64 -cpu EPYC-Rome)
smol=$(python3 tools/fetch_models.py smollm2)
moe=${KILN_CACHE:-.cache}/models/synth/synth-qwen3moe.gguf  # written by tools/make_synthetic_models.sh
if [ ! -f "$moe" ]; then echo "avx2_check: $moe is missing (run tools/make_synthetic_models.sh)" >&2; exit 1; fi
quiet_qemu() { grep -v "TCG doesn't support requested feature" >&2 || true; }

KILN_SOURCE_DIR=$(pwd) "${emulate[@]}" "$build/kiln_tests" -tc='kernels:*,quants:*' 2> >(quiet_qemu) >&2

for model in "$smol" "$moe"; do
  args=(-m "$model" -p "The capital of France is" -n 4 --temp 0 -t 2 --json)
  emulated=$("${emulate[@]}" "$build/kiln-generate" "${args[@]}" 2> >(quiet_qemu))
  native=$(KILN_ISA=avx2 "$build/kiln-generate" "${args[@]}" 2>/dev/null)
  python3 - "$emulated" "$native" "$(basename "$model")" <<'EOF'
import json, sys
emulated, native = (json.loads(s) for s in sys.argv[1:3])
name = sys.argv[3]
if emulated["isa"] != "avx2":
    sys.exit(f"{name}: on an AVX2-only CPU kiln chose the {emulated['isa']} kernels, not avx2")
if emulated["tokens"] != native["tokens"]:
    sys.exit(f"{name}: AVX2-only CPU tokens {emulated['tokens']} differ from the native avx2 run's {native['tokens']}")
print(f"  AVX2-only CPU (QEMU EPYC-Rome), {name}: avx2 kernels, {len(native['tokens'])} tokens equal the native avx2 run")
EOF
done
