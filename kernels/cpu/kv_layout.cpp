// KV cache layouts (see kv_layout.h): scalar store / load / query preparation.
#include "cpu/kv_layout.h"

#include <cmath>
#include <cstring>

#include "ref/quants.h"

namespace kiln::cpu {

namespace {
constexpr int kQ = 32;  // elements per quantized block
// Bytes of one 32-dim block of a quantized K panel: 16 fp16 scales + 16 keys x 32 dims.
size_t k_block_bytes(DType t) { return 2 * kKvPanel + (t == DType::Q8_0 ? kKvPanel * kQ : kKvPanel * kQ / 2); }
// Byte offset, inside a block's payload, of dim e (0..31) of key `slot`; for Q4_0 also
// whether it is the high nibble.
size_t quad_offset(DType t, int e, int slot, bool* high) {
    int quad = e / 4;
    *high = t == DType::Q4_0 && quad >= 4;
    if (*high) quad -= 4;
    return (size_t(quad) * kKvPanel + slot) * 4 + e % 4;
}
// Element offset of dim d of position pos in BF16 V rows (pairs of positions interleaved).
size_t bf16_v_offset(size_t v_row, int pos, int d) { return size_t(pos & ~1) * (v_row / 2) + size_t(d) * 2 + (pos & 1); }
}  // namespace

bool kv_type_supported(DType t, int dim) {
    switch (t) {
        case DType::F32: case DType::F16: return true;
        case DType::BF16: return dim % 2 == 0;
        case DType::Q8_0: case DType::Q4_0: return dim % kQ == 0;
        default: return false;
    }
}

size_t k_panel_bytes(DType t, int D) {
    switch (t) {
        case DType::F32: return size_t(D) * kKvPanel * 4;
        case DType::F16: case DType::BF16: return size_t(D) * kKvPanel * 2;
        default: return size_t(D / kQ) * k_block_bytes(t);
    }
}

size_t v_row_bytes(DType t, int Dv) { return row_bytes(t, Dv); }

void store_k(DType t, const float* k, int D, uint8_t* panel, int slot, ToF16Fn to_f16) {
    if (t == DType::F16 && to_f16 && D <= 512) {
        uint16_t h[512];  // (D) the key in fp16, then one element per 16-slot row of the panel
        to_f16(k, h, D);
        uint16_t* p = reinterpret_cast<uint16_t*>(panel);
        for (int d = 0; d < D; ++d) p[float_k_offset(t, d, slot)] = h[d];
        return;
    }
    if (t == DType::F32 || t == DType::F16 || t == DType::BF16) {
        for (int d = 0; d < D; ++d) {
            uint8_t* p = panel + float_k_offset(t, d, slot) * (t == DType::F32 ? 4 : 2);
            if (t == DType::F32) std::memcpy(p, &k[d], 4);
            else {
                const uint16_t h = t == DType::F16 ? fp32_to_fp16(k[d]) : fp32_to_bf16(k[d]);
                std::memcpy(p, &h, 2);
            }
        }
        return;
    }
    for (int b = 0; b < D / kQ; ++b) {
        uint8_t* blk = panel + size_t(b) * k_block_bytes(t);
        uint16_t d;
        uint8_t nib[kQ];  // unsigned codes: q8 + 128 or the q4_0 nibble
        if (t == DType::Q8_0) {
            block_q8_0 q;
            ref::quantize_row_q8_0(k + b * kQ, &q, kQ);
            d = q.d;
            for (int e = 0; e < kQ; ++e) nib[e] = uint8_t(q.qs[e] + 128);
        } else {
            block_q4_0 q;
            ref::quantize_row_q4_0(k + b * kQ, &q, kQ);
            d = q.d;
            for (int e = 0; e < kQ / 2; ++e) nib[e] = q.qs[e] & 0x0F, nib[e + kQ / 2] = q.qs[e] >> 4;
        }
        std::memcpy(blk + 2 * slot, &d, 2);
        uint8_t* payload = blk + 2 * kKvPanel;
        for (int e = 0; e < kQ; ++e) {
            bool high;
            uint8_t& byte = payload[quad_offset(t, e, slot, &high)];
            if (t == DType::Q8_0) byte = nib[e];
            else byte = high ? uint8_t((byte & 0x0F) | (nib[e] << 4)) : uint8_t((byte & 0xF0) | nib[e]);
        }
    }
}

void load_k(DType t, const uint8_t* panel, int slot, int D, float* k) {
    if (t == DType::F32 || t == DType::F16 || t == DType::BF16) {
        for (int d = 0; d < D; ++d) {
            const uint8_t* p = panel + float_k_offset(t, d, slot) * (t == DType::F32 ? 4 : 2);
            if (t == DType::F32) std::memcpy(&k[d], p, 4);
            else {
                uint16_t h;
                std::memcpy(&h, p, 2);
                k[d] = t == DType::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
            }
        }
        return;
    }
    const int bias = t == DType::Q8_0 ? 128 : 8;
    for (int b = 0; b < D / kQ; ++b) {
        const uint8_t* blk = panel + size_t(b) * k_block_bytes(t);
        uint16_t dh;
        std::memcpy(&dh, blk + 2 * slot, 2);
        const float d = fp16_to_fp32(dh);
        for (int e = 0; e < kQ; ++e) {
            bool high;
            const uint8_t byte = blk[2 * kKvPanel + quad_offset(t, e, slot, &high)];
            const int code = t == DType::Q8_0 ? byte : high ? byte >> 4 : byte & 0x0F;
            k[b * kQ + e] = d * float(code - bias);
        }
    }
}

void store_v(DType t, const float* v, int Dv, uint8_t* v0, size_t v_row, int pos, ToF16Fn to_f16) {
    if (t == DType::F16 && to_f16) {
        to_f16(v, reinterpret_cast<uint16_t*>(v0 + size_t(pos) * v_row), Dv);
        return;
    }
    if (t != DType::BF16) {
        ref::quantize_row(t, v, v0 + size_t(pos) * v_row, Dv);
        return;
    }
    uint16_t* h = reinterpret_cast<uint16_t*>(v0);
    for (int d = 0; d < Dv; ++d) h[bf16_v_offset(v_row, pos, d)] = fp32_to_bf16(v[d]);
}
void load_v(DType t, const uint8_t* v0, size_t v_row, int pos, int Dv, float* v) {
    if (t != DType::BF16) {
        ref::dequantize_row(t, v0 + size_t(pos) * v_row, v, Dv);
        return;
    }
    const uint16_t* h = reinterpret_cast<const uint16_t*>(v0);
    for (int d = 0; d < Dv; ++d) v[d] = bf16_to_fp32(h[bf16_v_offset(v_row, pos, d)]);
}

size_t attn_q_bytes(DType k_type, int D) {
    return k_type == DType::Q8_0 || k_type == DType::Q4_0 ? size_t(D / kQ) * sizeof(AttnQ8) : size_t(D) * sizeof(float);
}

void prepare_q(DType k_type, const float* q, int D, uint8_t* out) {
    if (k_type == DType::Q8_0 || k_type == DType::Q4_0) {
        AttnQ8* y = reinterpret_cast<AttnQ8*>(out);
        for (int b = 0; b < D / kQ; ++b) {
            block_q8_0 blk;
            ref::quantize_row_q8_0(q + b * kQ, &blk, kQ);
            y[b].d = fp16_to_fp32(blk.d);
            y[b].sum = 0;
            for (int e = 0; e < kQ; ++e) y[b].qs[e] = blk.qs[e], y[b].sum += blk.qs[e];
        }
        return;
    }
    float* y = reinterpret_cast<float*>(out);
    for (int d = 0; d < D; ++d)
        y[d] = k_type == DType::F16 ? fp16_to_fp32(fp32_to_fp16(q[d])) : k_type == DType::BF16 ? bf16_to_fp32(fp32_to_bf16(q[d])) : q[d];
}

void hadamard(float* x, int n) {
    for (int h = 1; h < n; h *= 2)  // log2(n) butterfly stages
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; ++j) {
                const float a = x[j], b = x[j + h];
                x[j] = a + b, x[j + h] = a - b;
            }
    const float norm = 1.0f / std::sqrt(float(n));
    for (int i = 0; i < n; ++i) x[i] *= norm;
}

}  // namespace kiln::cpu
