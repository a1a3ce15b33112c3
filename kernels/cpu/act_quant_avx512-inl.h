// AVX-512 activation quantizers: the same arithmetic as act_quant-inl.h (the same products
// rounded with the same mode), so the bytes are identical; only vectorized.
// Included only by isa_avx512.cpp.

namespace kiln::cpu::KILN_ISA_NS {

inline void quantize_q8x32_avx512(const float* x, block_q8_x32* y, int64_t k) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < k / 32; ++b, x += 32) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
        const float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
        // cvtps rounds with MXCSR's default, round-half-to-even, as nearbyint does
        const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
        const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs), _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16), _mm512_cvtsepi32_epi8(q1));
        const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        y[b].d = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
        y[b].s = _cvtss_sh(d * float(sum), _MM_FROUND_TO_NEAREST_INT);
        y[b].sum = int16_t(sum);
    }
}

inline void quantize_q8K_avx512(const float* x, block_q8_K* y, int64_t k) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < k / QK_K; ++b, x += QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int i = 0; i < QK_K; i += 16) m = _mm512_max_ps(m, _mm512_andnot_ps(sign, _mm512_loadu_ps(x + i)));
        const float amax = _mm512_reduce_max_ps(m);
        if (amax == 0) {
            std::memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        // The first element of largest magnitude, with its sign (as the scalar loop finds it).
        float max = 0;
        for (int i = 0; i < QK_K; i += 16) {
            const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_andnot_ps(sign, _mm512_loadu_ps(x + i)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (hit) {
                max = x[i + __builtin_ctz(hit)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m512 vs = _mm512_set1_ps(iscale);
        for (int g = 0; g < QK_K / 16; ++g) {
            const __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(vs, _mm512_loadu_ps(x + 16 * g))), _mm512_set1_epi32(127));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16 * g), _mm512_cvtsepi32_epi8(q));
            y[b].bsums[g] = int16_t(_mm512_reduce_add_epi32(q));
        }
        y[b].d = 1.0f / iscale;
    }
}

}  // namespace kiln::cpu::KILN_ISA_NS
