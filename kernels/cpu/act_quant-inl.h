// Activation quantization (portable body, included by each isa_*.cpp inside its namespace).
// Rounding follows what llama.cpp does on x86 so logits stay comparable: q8_0-style
// blocks use id = 127 / amax and round-half-even; q8_K follows ggml's reference.

namespace kiln::cpu::KILN_ISA_NS {

// x (k floats, k % 32 == 0) -> k / 32 blocks.
inline void quantize_q8x32(const float* x, block_q8_x32* y, int64_t k) {
    for (int64_t b = 0; b < k / 32; ++b, x += 32) {
        float amax = 0;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
        const float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
        y[b].d = fp16_to_fp32(fp32_to_fp16(d));  // ggml stores the scale as fp16
        int sum = 0;
        for (int i = 0; i < 32; ++i) {
            int q = int(std::nearbyint(x[i] * id));  // round half to even (default FP mode)
            y[b].qs[i] = int8_t(q);
            sum += q;
        }
        y[b].s = fp32_to_fp16(d * float(sum));
        y[b].sum = int16_t(sum);
    }
}

// x (k floats, k % 256 == 0) -> k / 256 ggml q8_K blocks.
inline void quantize_q8K(const float* x, block_q8_K* y, int64_t k) {
    for (int64_t b = 0; b < k / QK_K; ++b, x += QK_K) {
        float amax = 0, max = 0;  // max: the element with the largest magnitude, signed
        for (int i = 0; i < QK_K; ++i) {
            float a = std::fabs(x[i]);
            if (a > amax) amax = a, max = x[i];
        }
        if (amax == 0) {
            std::memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int i = 0; i < QK_K; ++i) y[b].qs[i] = int8_t(std::min(127, int(std::nearbyint(iscale * x[i]))));
        for (int g = 0; g < QK_K / 16; ++g) {
            int s = 0;
            for (int i = 0; i < 16; ++i) s += y[b].qs[g * 16 + i];
            y[b].bsums[g] = int16_t(s);
        }
        y[b].d = 1.0f / iscale;
    }
}

}  // namespace kiln::cpu::KILN_ISA_NS
