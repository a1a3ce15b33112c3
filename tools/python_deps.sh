#!/usr/bin/env bash
# Installs the Python packages kiln's fixture scripts use (pinned, wheels from PyPI) into
# .cache/pylib, not the system, and prints that directory for PYTHONPATH:
#   PYTHONPATH=$(tools/python_deps.sh) python3 tools/make_hf_checkpoint.py ...
# gguf reads and dequantizes GGUF files, safetensors and tokenizers write Hugging Face
# checkpoints exactly as the Hugging Face libraries do.
#   tools/python_deps.sh server    the official openai client (kiln-server's tests), in .cache/pylib-server
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${KILN_CACHE:-$PWD/.cache}/pylib
pins=(numpy==2.4.6 gguf==0.19.0 safetensors==0.8.0 tokenizers==0.23.3)
if [ "${1:-}" = server ]; then
  dir=$dir-server
  pins=(openai==3.63.0)
fi
stamp="$dir/.complete-$(echo "${pins[*]}" | tr ' ' '_')"
if [ ! -f "$stamp" ]; then
  rm -rf "$dir"
  PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check --only-binary :all: --target "$dir" "${pins[@]}" >&2
  touch "$stamp"
fi
echo "$dir"
