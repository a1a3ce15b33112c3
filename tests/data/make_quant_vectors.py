#!/usr/bin/env python3
"""Golden vectors for kiln's scalar reference (de)quantizers (tests/test_quants.cpp).

Writes tests/data/quant_vectors.bin with two kinds of records:

  dequant  random but valid blocks of every GGUF type kiln reads (finite fp16 scales in a
           sensible range, plus a few edge blocks: zero, negative and subnormal scales)
           and the floats they decode to;
  quant    float inputs (Gaussian blocks of many scales, all-zero and constant blocks,
           outliers, and blocks built so that x/d lands exactly on .5 to pin the rounding
           rule) and the bytes a reference quantizer produces for them.

Where the expected values come from (the record's `source` field):
  0  gguf-py (PyPI `gguf`): gguf.quants.dequantize for F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1
     Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ1_S
     IQ1_M (and their grids), gguf.quants.quantize for BF16 Q4_0 Q4_1 Q5_0 Q5_1
     Q8_0, numpy's float32 -> float16 cast for F16;
  1  a one-line numpy formula in this script, for what gguf-py does not implement
     (Q8_1 and Q8_K dequantization: d * q);
  2  ggml's own reference code, called through ctypes in libggml-base.so, when --ggml-lib
     is given: quantize_row_{q8_1,q8_K,q4_K,q5_K,q6_K}_ref (gguf-py has no quantizer for
     these), quantize_iq4_{nl,xs} with and without an importance row, and
     dequantize_row_q8_K. With the library the script also checks that
     gguf-py and ggml agree on every dequant record and on the legacy quantizers.

Regenerate (from the repository root; the committed file was made with gguf 0.19.0,
numpy 2.4.6 and the llama.cpp vendored by llama-cpp-python 0.3.36, built with cmake):

    pip install gguf numpy
    python3 tests/data/make_quant_vectors.py --ggml-lib <llama.cpp>/build/bin/libggml-base.so

Without --ggml-lib the source-2 records are left out (the test then only reports it).
The output depends only on the seed and these versions.

File layout (little endian):
    magic "KQV1", u32 record count, then per record:
    u32 kind (0 dequant, 1 quant, 2 quant with an importance row: the floats are the input
    then as many importance weights; 3 a grid format's lattice: the bytes are its points'
    values as int8, no floats), u32 ggml type id, u32 source, u32 n_elements,
    u32 n_bytes, n_bytes bytes of blocks, n_elements float32 values.
"""

from __future__ import annotations

import argparse
import ctypes
import struct
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES as GGUF_PY_QUANT_SIZES
from gguf import quants

SEED = 20240611
DEQUANT, QUANT, QUANT_WEIGHTED, GRID = 0, 1, 2, 3
GGUF_PY, FORMULA, GGML = 0, 1, 2

rng = np.random.default_rng(SEED)

# gguf-py (0.19.0) still lists Q8_1 as 40 bytes (float d and s); ggml's block_q8_1 has been
# fp16 d and s, 36 bytes, for a long time (static_assert in ggml-common.h).
GGML_QUANT_SIZES = {**GGUF_PY_QUANT_SIZES, T.Q8_1: (32, 2 + 2 + 32)}


def f16_bytes(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float16).reshape(-1, 1).view(np.uint8)


def random_scales(n: int, lo: float = 1e-4, hi: float = 1.0, signed: bool = True) -> np.ndarray:
    """Log-uniform magnitudes in [lo, hi], random signs; as float16."""
    mag = 10.0 ** rng.uniform(np.log10(lo), np.log10(hi), n)
    sign = rng.choice([-1.0, 1.0], n) if signed else np.ones(n)
    return (sign * mag).astype(np.float16)


# ---- random valid blocks ---------------------------------------------------------------

# Byte offsets of the fp16 fields in each block (ggml-common.h).
FP16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0], T.Q8_1: [0, 2],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ4_NL: [0], T.IQ4_XS: [0],
    T.IQ2_XXS: [0], T.IQ2_XS: [0], T.IQ2_S: [0], T.IQ3_XXS: [0], T.IQ3_S: [0], T.IQ1_S: [0],
    T.IQ1_M: [],  # its fp16 d is spread over the top nibbles of its 4 scale words (below)
}
GRID_TYPES = (T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ1_S, T.IQ1_M)


def random_blocks(qtype: T, n_blocks: int) -> np.ndarray:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    if qtype == T.Q8_K:  # f32 d, int8 qs[256], int16 bsums[16] that match qs
        d = (random_scales(n_blocks, 1e-4, 1e-1).astype(np.float32))
        d[0] = 0.0
        raw[:, 0:4] = d.reshape(-1, 1).view(np.uint8)
        qs = raw[:, 4:260].view(np.int8).astype(np.int32)
        bsums = qs.reshape(n_blocks, 16, 16).sum(axis=-1).astype(np.int16)
        raw[:, 260:292] = bsums.view(np.uint8)
        return raw
    for k, off in enumerate(FP16_FIELDS[qtype]):
        # The first fp16 field is a scale d; the second is a min (q4_1, q5_1), a cached
        # sum (q8_1) or dmin (k-quants: positive in real files, but any sign decodes).
        vals = random_scales(n_blocks, 1e-4, 1.0)
        vals[0] = 0.0 if k == 0 else vals[0]                 # a zero scale
        if n_blocks > 1:
            vals[1] = np.uint16(0x0123).view(np.float16)     # a subnormal fp16
        raw[:, off:off + 2] = f16_bytes(vals)
    if qtype == T.IQ1_M:  # nibble k of d is the top nibble of scale word k (bytes 48..55)
        d = random_scales(n_blocks, 1e-4, 1.0).view(np.uint16).astype(np.uint16)
        words = raw[:, 48:56].copy().view(np.uint16)
        for k in range(4):
            words[:, k] = (words[:, k] & 0x0FFF) | (((d >> (4 * k)) & 0xF) << 12)
        raw[:, 48:56] = words.view(np.uint8)
    if qtype == T.Q8_1:  # keep s = d * sum(qs) consistent
        d = raw[:, 0:2].copy().view(np.float16).astype(np.float32).ravel()
        sums = raw[:, 4:36].view(np.int8).astype(np.int32).sum(axis=1)
        raw[:, 2:4] = f16_bytes((d * sums).astype(np.float32))
    return raw


def special_float_bits() -> np.ndarray:
    """Float32 bit patterns that stress fp16/bf16 conversion."""
    bits = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000,   # +-0, +-inf
            0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF,   # quiet and signalling NaNs
            0x7F7FFFFF, 0x00000001, 0x807FFFFF,               # FLT_MAX, float denormals
            0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001,   # 65504 .. fp16 overflow edge
            0x38800000, 0x387FFFFF, 0x33000000, 0x33000001,   # fp16 min normal, half-min subnormal
            0x3F801000, 0x3F803000, 0x3F808000, 0x3F818000,   # fp16 and bf16 ties at 1.0
            0x3F807FFF, 0x3F808001, 0xC0001000, 0xC0003000]
    # fp16 ties: each fp16 value + half an fp16 ulp (mantissa bit 12 set, low bits clear)
    h = rng.integers(0x0400, 0x7BFF, 64, dtype=np.uint32)
    ties = ((h + (127 - 15 << 10)) << 13) | 0x1000
    return np.concatenate([np.array(bits, dtype=np.uint32), ties.astype(np.uint32)])


# ---- float inputs for the quantizers ----------------------------------------------------

def gaussian_blocks(n_blocks: int, block: int, lo: float, hi: float) -> np.ndarray:
    sigma = 10.0 ** rng.uniform(np.log10(lo), np.log10(hi), (n_blocks, 1))
    return (rng.standard_normal((n_blocks, block)) * sigma).astype(np.float32)


def legacy_inputs() -> np.ndarray:
    """32-element blocks for q4_0 q4_1 q5_0 q5_1 q8_0 (one set shared by all five)."""
    blocks = [gaussian_blocks(20, 32, 1e-3, 1e2)]
    special = np.zeros((9, 32), dtype=np.float32)      # row 0: all zero
    special[1] = 0.375                                  # constant
    special[2] = rng.standard_normal(32)
    special[2][7] = 40.0                                # one outlier
    special[3] = rng.standard_normal(32) * 1e-7         # scale below fp16's normal range
    # Ties: x / d lands on k + 0.5 exactly, which pins each quantizer's rounding rule.
    special[4] = rng.integers(-126, 126, 32) + 0.5      # q8_0: amax 127 -> d = 1
    special[4][3] = 127.0
    special[5] = rng.integers(-8, 7, 32) + 0.5          # q4_0: max +8 -> d = -1
    special[5][0] = 8.0
    special[6] = rng.integers(-16, 15, 32) + 0.5        # q5_0: max +16 -> d = -1
    special[6][0] = 16.0
    special[7] = rng.integers(0, 14, 32) + 0.5          # q4_1: min 0, max 15 -> d = 1
    special[7][0], special[7][1] = 0.0, 15.0
    special[8] = rng.integers(0, 30, 32) + 0.5          # q5_1: min 0, max 31 -> d = 1
    special[8][0], special[8][1] = 0.0, 31.0
    blocks.append(special)
    return np.concatenate(blocks).astype(np.float32)


def kquant_inputs() -> np.ndarray:
    """256-element super-blocks for q4_K q5_K q6_K q8_K q8_1."""
    b = np.zeros((8, 256), dtype=np.float32)
    b[0] = rng.standard_normal(256)
    b[1] = rng.standard_normal(256) * 0.02                 # typical LLM weight scale
    b[2] = rng.standard_t(3, 256) * 0.1                    # heavy tails
    b[3] = rng.standard_normal(256); b[3][77] = -30.0      # one outlier
    # b[4]: all zero
    b[5] = rng.standard_normal(256); b[5][64:96] = 0.0     # one zero sub-block
    b[6] = rng.standard_normal(256) * 1e-4                 # d and dmin fp16 subnormal
    b[7] = np.abs(rng.standard_normal(256)) + 0.5          # all positive (min > 0)
    # More ordinary blocks, so that every branch of the scale searches is taken somewhere.
    return np.concatenate([b, gaussian_blocks(8, 256, 1e-3, 1e1), rng.standard_t(4, (4, 256)).astype(np.float32)])


# ---- ggml through ctypes ----------------------------------------------------------------

class Ggml:
    def __init__(self, path: str):
        self.lib = ctypes.CDLL(path)

    def quantize(self, qtype: T, x: np.ndarray) -> np.ndarray:
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        fn = getattr(self.lib, f"quantize_row_{qtype.name.lower().replace('_k', '_K')}_ref")
        x = np.ascontiguousarray(x, dtype=np.float32).ravel()
        # Zeroed: for an all-zero block, ggml's q8_K leaves bsums unwritten (kiln zeroes them).
        out = np.zeros(x.size // block_size * type_size, dtype=np.uint8)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn(x.ctypes.data, out.ctypes.data, x.size)
        return out

    def quantize_searched(self, qtype: T, x: np.ndarray, importance: np.ndarray | None) -> np.ndarray:
        """ggml's quantize_iq4_nl / quantize_iq4_xs (what llama-quantize runs: the scale search
        the _ref functions skip for IQ4_NL), one row, with an importance row or none."""
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        fn = getattr(self.lib, f"quantize_{qtype.name.lower()}")
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        x = np.ascontiguousarray(x, dtype=np.float32).ravel()
        out = np.zeros(x.size // block_size * type_size, dtype=np.uint8)
        w = None if importance is None else np.ascontiguousarray(importance, dtype=np.float32).ravel()
        fn(x.ctypes.data, out.ctypes.data, 1, x.size, None if w is None else w.ctypes.data)
        return out

    def dequantize(self, qtype: T, blocks: np.ndarray) -> np.ndarray | None:
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        name = f"dequantize_row_{qtype.name.lower().replace('_k', '_K')}"
        if not hasattr(self.lib, name):
            return None
        fn = getattr(self.lib, name)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        blocks = np.ascontiguousarray(blocks, dtype=np.uint8)
        n = blocks.size // type_size * block_size
        out = np.empty(n, dtype=np.float32)
        fn(blocks.ctypes.data, out.ctypes.data, n)
        return out


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all(a.view(np.uint32) == b.view(np.uint32)))


# ---- main --------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ggml-lib", help="path to llama.cpp's libggml-base.so (adds source-2 records)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("quant_vectors.bin")))
    args = ap.parse_args()
    ggml = Ggml(args.ggml_lib) if args.ggml_lib else None
    records: list[tuple[int, int, int, np.ndarray, np.ndarray]] = []

    def add(kind: int, qtype: T, source: int, data: np.ndarray, floats: np.ndarray) -> None:
        records.append((kind, int(qtype), source, np.ascontiguousarray(data, dtype=np.uint8).ravel(),
                        np.ascontiguousarray(floats, dtype=np.float32).ravel()))

    # -- dequantization
    f32 = np.concatenate([special_float_bits(), rng.integers(0, 2**32, 32, dtype=np.uint32)]).view(np.float32)
    add(DEQUANT, T.F32, GGUF_PY, f32.view(np.uint8), quants.dequantize(f32.view(np.uint8), T.F32))
    for qtype in (T.F16, T.BF16):  # every exponent, some of every class (NaN, inf, subnormal)
        h = rng.integers(0, 2**16, 512, dtype=np.uint16)
        h[:8] = [0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0x0001, 0x83FF]
        raw = h.view(np.uint8)
        add(DEQUANT, qtype, GGUF_PY, raw, quants.dequantize(raw, qtype))
    def add_random_blocks(qtype: T, n_blocks: int) -> None:  # decoded by gguf-py, checked against ggml
        raw = random_blocks(qtype, n_blocks)
        ref = quants.dequantize(raw.ravel(), qtype)
        if ggml is not None:
            other = ggml.dequantize(qtype, raw)
            assert other is not None and same_bits(ref, other), f"gguf-py and ggml disagree on {qtype.name}"
        add(DEQUANT, qtype, GGUF_PY, raw, ref)

    for qtype, n_blocks in ((T.Q4_0, 16), (T.Q4_1, 16), (T.Q5_0, 16), (T.Q5_1, 16), (T.Q8_0, 16),
                            (T.Q2_K, 6), (T.Q3_K, 6), (T.Q4_K, 6), (T.Q5_K, 6), (T.Q6_K, 6)):
        add_random_blocks(qtype, n_blocks)
    raw = random_blocks(T.Q8_1, 16)
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)
    add(DEQUANT, T.Q8_1, FORMULA, raw, d * raw[:, 4:36].view(np.int8).astype(np.float32))
    raw = random_blocks(T.Q8_K, 4)
    d = raw[:, 0:4].copy().view(np.float32)
    formula = d * raw[:, 4:260].view(np.int8).astype(np.float32)
    if ggml is not None:
        assert same_bits(formula.ravel(), ggml.dequantize(T.Q8_K, raw)), "q8_K formula != ggml"
    add(DEQUANT, T.Q8_K, GGML if ggml is not None else FORMULA, raw, formula)

    # -- quantization
    x = np.concatenate([special_float_bits().view(np.float32), gaussian_blocks(8, 32, 1e-6, 1e6).ravel()])
    with np.errstate(over="ignore", invalid="ignore"):
        add(QUANT, T.F16, GGUF_PY, x.astype(np.float16).view(np.uint8), x)
    add(QUANT, T.BF16, GGUF_PY, quants.quantize(x, T.BF16), x)
    x = legacy_inputs()
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        q = quants.quantize(x, qtype)
        if ggml is not None:
            assert np.array_equal(q.ravel(), ggml.quantize(qtype, x)), f"gguf-py and ggml quantize {qtype.name} differently"
        add(QUANT, qtype, GGUF_PY, q, x)
    if ggml is not None:
        x = kquant_inputs()
        for qtype in (T.Q8_1, T.Q8_K, T.Q4_K, T.Q5_K, T.Q6_K):
            add(QUANT, qtype, GGML, ggml.quantize(qtype, x), x)

    # -- the IQ4 formats, last: the random stream of the records above stays as it was
    for qtype, n_blocks in ((T.IQ4_NL, 16), (T.IQ4_XS, 6)):
        add_random_blocks(qtype, n_blocks)
    if ggml is not None:
        x = kquant_inputs()
        importance = rng.uniform(0.0, 4.0, x.size).astype(np.float32) ** 2  # an imatrix row: mean squared activations
        for qtype in (T.IQ4_NL, T.IQ4_XS):
            add(QUANT, qtype, GGML, ggml.quantize_searched(qtype, x, None), x)
            add(QUANT_WEIGHTED, qtype, GGML, ggml.quantize_searched(qtype, x, importance), np.concatenate([x.ravel(), importance]))

    # -- the grid formats (IQ1-IQ3), last again: each grid as gguf-py expands it (kind 3:
    # the points' values as int8, no floats), then random blocks decoded by gguf-py
    for qtype in GRID_TYPES:
        if qtype != T.IQ1_M:  # IQ1_M shares IQ1_S's grid
            cls = quants._type_traits[qtype]
            cls.init_grid()
            add(GRID, qtype, GGUF_PY, cls.grid.reshape(-1).astype(np.int8).view(np.uint8), np.zeros(0, np.float32))
        add_random_blocks(qtype, 8)

    out = bytearray(b"KQV1") + struct.pack("<I", len(records))
    for kind, qtype, source, data, floats in records:
        out += struct.pack("<5I", kind, qtype, source, floats.size, data.size)
        out += data.tobytes() + floats.astype("<f4").tobytes()
    Path(args.out).write_bytes(out)
    print(f"wrote {args.out}: {len(records)} records, {len(out)} bytes")


if __name__ == "__main__":
    main()
