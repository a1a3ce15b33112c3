#!/usr/bin/env python3
"""Records what llama-quantize makes of one input, as kiln's quantization reference.

For each mix it runs llama.cpp's llama-quantize (built from llama-cpp-python's sdist, see
README.md here) on INPUT.gguf and stores, per tensor of the output, [type, RMSE]: its type and its RMSE
against the input, both dequantized by the PyPI `gguf` package (an implementation
independent of kiln's and of ggml's C code):

  PYTHONPATH=$(tools/python_deps.sh) python3 tests/data/make_quantize_reference.py \\
      <llama.cpp>/build/bin/llama-quantize .cache/models/synth/smollm2-f16.gguf tests/data/quantize_smollm2.json \\
      IMATRIX.gguf

tests/test_quantize_mix.cpp holds kiln's quantization of the same input to the same types
and to an RMSE no larger than these. The 1-3 bit IQ mixes (PLAN_MIXES), which llama-quantize
makes (most of them only) with an importance matrix (IMATRIX.gguf, from llama-imatrix on any text: the
types do not depend on it), are stored as each tensor's type and a checksum of its bytes
("plans"): kiln's plan_quantization must name the same types, and where kiln writes the type
with the same importance matrix (tests/data/smollm2-imatrix.gguf: iq2_xxs, iq4_nl) the same
bytes. The checksum is sum((i + 1) * byte[i]) mod 2^64 (test_quantize_mix.cpp computes it too).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf.quants import dequantize

MIXES = ["Q4_K_M", "Q4_K_S", "Q5_K_M", "Q6_K", "Q8_0", "Q4_0", "Q5_1", "IQ4_NL", "IQ4_XS"]
PLAN_MIXES = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M"]
# Runs with --tensor-type overrides, stored as plans are ("overrides"): q2_K and iq3_s
# without an importance matrix (the IQ2_XXS and IQ2_S plans have them with one), iq3_xxs with
# one (IMATRIX_FLAG is replaced by --imatrix IMATRIX.gguf); Q5_K_M and Q4_1 with one (q5_K,
# q6_K, q5_1, q4_1 through ggml's imatrix searches).
IMATRIX_FLAG = "<imatrix>"
OVERRIDE_RUNS = {"Q4_K_M ffn_down=q2_K": ["Q4_K_M", "--tensor-type", "ffn_down=q2_K"],
                 "Q4_K_M ffn_down=iq3_xxs imatrix": ["Q4_K_M", IMATRIX_FLAG, "--tensor-type", "ffn_down=iq3_xxs"],
                 "Q4_K_M ffn_down=iq3_s": ["Q4_K_M", "--tensor-type", "ffn_down=iq3_s"],
                 "Q5_K_M imatrix": ["Q5_K_M", IMATRIX_FLAG],
                 "Q4_1 imatrix": ["Q4_1", IMATRIX_FLAG]}


def type_name(t):
    return t.tensor_type.name.lower().replace("_k", "_K")


def checksum(t):
    b = np.asarray(t.data).view(np.uint8).ravel().astype(np.uint64)
    return str(int(np.sum(b * (np.arange(b.size, dtype=np.uint64) + np.uint64(1)), dtype=np.uint64)))


def tensors(path):
    r = gguf.GGUFReader(path)
    return {t.name: t for t in r.tensors}


def main(quantize_bin, model, out_path, imatrix):
    src = tensors(model)
    src_f32 = {n: dequantize(t.data, t.tensor_type).astype(np.float64).ravel() for n, t in src.items()}
    result = {"input": os.path.basename(model), "mixes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for mix in MIXES:
            out = os.path.join(tmp, f"{mix}.gguf")
            subprocess.run([quantize_bin, model, out, mix, "2"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rows = {}
            for name, t in tensors(out).items():
                q = dequantize(t.data, t.tensor_type).astype(np.float64).ravel()
                rmse = float(np.sqrt(np.mean((q - src_f32[name]) ** 2)))
                rows[name] = [type_name(t), rmse]  # type, RMSE
            result["mixes"][mix] = rows
            print(f"{mix}: {len(rows)} tensors", file=sys.stderr)
        result["plans"] = {}
        for mix in PLAN_MIXES:
            out = os.path.join(tmp, f"{mix}.gguf")
            subprocess.run([quantize_bin, "--imatrix", imatrix, model, out, mix, "2"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result["plans"][mix] = {name: [type_name(t), checksum(t)] for name, t in tensors(out).items()}
            print(f"{mix}: types of {len(result['plans'][mix])} tensors", file=sys.stderr)
        result["overrides"] = {}
        for name, (mix, *flags) in OVERRIDE_RUNS.items():
            out = os.path.join(tmp, "override.gguf")
            flags = [g for f in flags for g in (["--imatrix", imatrix] if f == IMATRIX_FLAG else [f])]
            subprocess.run([quantize_bin, *flags, model, out, mix, "2"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result["overrides"][name] = {n: [type_name(t), checksum(t)] for n, t in tensors(out).items()}
            print(f"{name}: {len(result['overrides'][name])} tensors", file=sys.stderr)
    with open(out_path, "w") as f:
        json.dump(result, f, separators=(",", ":"))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
