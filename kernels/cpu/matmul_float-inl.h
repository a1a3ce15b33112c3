// Float weights (F32, F16, BF16) against f32 activations, for every ISA through xsimd:
// blocks of 4 rows x 4 tokens accumulate with register-blocked FMAs. Decode reads f16 /
// bf16 weights converting in registers; prefill converts a block of rows to f32 once per
// chunk of tokens (the TU's f16_to_f32, a shift for bf16).
// Each (row, token) dot is kW lane-wise partial sums over k in order, a fixed reduction
// tree, then the k % kW tail in order: the same bits whatever the batch or the block a
// token lands in (speculative verification relies on that).

namespace kiln::cpu::KILN_ISA_NS {

namespace floatmm {

using VF = xsimd::batch<float, Arch>;
constexpr int kW = int(VF::size);
constexpr int kRows = 4;    // weight rows per block
constexpr int kTokens = 4;  // activation rows per register block

// One F16 / BF16 row as k floats.
template <DType T>
inline void row_to_f32(const uint8_t* row, int64_t k, float* out) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(row);
    if constexpr (T == DType::F16) f16_to_f32(h, out, k);
    else attn::bf16_to_f32(h, out, k);
}

// kW weights of row r at element i, read from the matrix itself: f32, or f16 / bf16
// converted in registers (decode and verification read each weight once or twice).
template <DType T>
struct RowsInPlace {
    const uint8_t* w;
    size_t stride;  // bytes per row
    VF operator()(int r, int64_t i) const {
        const uint8_t* p = w + size_t(r) * stride;
        if constexpr (T == DType::F32) return VF::load_unaligned(reinterpret_cast<const float*>(p) + i);
        else if constexpr (T == DType::F16) return attn::load_f16(reinterpret_cast<const uint16_t*>(p) + i);
        else {
            alignas(64) float t[kW];
            const uint16_t* h = reinterpret_cast<const uint16_t*>(p) + i;
            attn::bf16_to_f32(h, t, kW);
            return VF::load_aligned(t);
        }
    }
    // Row r's weights at i, kRows rows ahead (the next block), into L1: one prefetch per
    // cache line. Rows this short (a few KB) end before the hardware prefetchers ramp up.
    void ahead(int r, int64_t i) const {
        constexpr int64_t kElem = T == DType::F32 ? 4 : 2, kPerLine = 64 / kElem;
        if (kW >= kPerLine || i % kPerLine == 0) __builtin_prefetch(w + size_t(r + kRows) * stride + size_t(i) * kElem, 0, 3);
    }
    float scalar(int r, int64_t i) const {
        const uint8_t* p = w + size_t(r) * stride;
        if constexpr (T == DType::F32) return reinterpret_cast<const float*>(p)[i];
        else if constexpr (T == DType::F16) return fp16_to_fp32(reinterpret_cast<const uint16_t*>(p)[i]);
        else return bf16_to_fp32(reinterpret_cast<const uint16_t*>(p)[i]);
    }
};
// The same from rows already converted to floats, ld floats apart.
struct RowsF32 {
    const float* w;
    size_t ld;
    VF operator()(int r, int64_t i) const { return VF::load_unaligned(w + size_t(r) * ld + i); }
    void ahead(int, int64_t) const {}  // already in cache
    float scalar(int r, int64_t i) const { return w[size_t(r) * ld + i]; }
};

// y[c][r] for NR rows and NC tokens (x: NC activation rows).
template <int NR, int NC, class Rows>
inline void block(int64_t k, const Rows& w, const float* const* x, float* const* y) {
    VF acc[NR][NC];
    for (int r = 0; r < NR; ++r)
        for (int c = 0; c < NC; ++c) acc[r][c] = VF(0.0f);
    const int64_t kv = k / kW * kW;
    for (int64_t i = 0; i < kv; i += kW) {
        VF xv[NC];
        for (int c = 0; c < NC; ++c) xv[c] = VF::load_unaligned(x[c] + i);
        for (int r = 0; r < NR; ++r) {
            w.ahead(r, i);
            const VF wv = w(r, i);
            for (int c = 0; c < NC; ++c) acc[r][c] = xsimd::fma(wv, xv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < NR; ++r)
        for (int c = 0; c < NC; ++c) {
            float s = xsimd::hadd(acc[r][c]);
            for (int64_t i = kv; i < k; ++i) s = std::fma(w.scalar(r, i), x[c][i], s);
            y[c][r] = s;
        }
}

template <int NR, class Rows>
inline void rows_block(int64_t k, const Rows& w, const ActRows& a, int64_t r, float* y, size_t y_stride) {
    auto x_row = [&](int c) { return reinterpret_cast<const float*>(static_cast<const uint8_t*>(a.data) + size_t(c) * a.stride); };
    for (int c0 = 0; c0 < a.ny; c0 += kTokens) {
        const int nc = std::min(kTokens, a.ny - c0);
        const float* x[kTokens];
        float* out[kTokens];
        for (int c = 0; c < nc; ++c) x[c] = x_row(c0 + c), out[c] = y + size_t(c0 + c) * y_stride + size_t(r);
        switch (nc) {
            case 1: block<NR, 1>(k, w, x, out); break;
            case 2: block<NR, 2>(k, w, x, out); break;
            case 3: block<NR, 3>(k, w, x, out); break;
            default: block<NR, 4>(k, w, x, out); break;
        }
    }
}

template <class Rows>
inline void rows_any(int nr, int64_t k, const Rows& w, const ActRows& a, int64_t r, float* y, size_t y_stride) {
    switch (nr) {
        case 1: rows_block<1>(k, w, a, r, y, y_stride); break;
        case 2: rows_block<2>(k, w, a, r, y, y_stride); break;
        case 3: rows_block<3>(k, w, a, r, y, y_stride); break;
        default: rows_block<4>(k, w, a, r, y, y_stride); break;
    }
}

}  // namespace floatmm

template <DType T>
void matmul_float(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const ActRows& a, float* y, size_t y_stride) {
    using namespace floatmm;
    const uint8_t* W = static_cast<const uint8_t*>(w);
    if (T == DType::F32 || a.ny <= 2 * kTokens) {
        // Decode / verification: each weight is used by at most two token blocks, so it is
        // converted in registers as it streams in.
        for (int64_t r = r0; r < r1; r += kRows)
            rows_any(int(std::min<int64_t>(kRows, r1 - r)), k, RowsInPlace<T>{W + size_t(r) * w_stride, w_stride}, a, r, y, y_stride);
        return;
    }
    // Prefill: (kRows, k) f32, the current rows converted once per chunk of kChunk tokens,
    // whose activations stay in L2 while every row block passes.
    thread_local std::vector<float> buf;
    if (buf.size() < kRows * size_t(k)) buf.resize(kRows * size_t(k));
    constexpr int kChunk = 64;
    for (int c0 = 0; c0 < a.ny; c0 += kChunk) {
        const ActRows chunk{static_cast<const uint8_t*>(a.data) + size_t(c0) * a.stride, a.stride, std::min(kChunk, a.ny - c0)};
        float* yc = y + size_t(c0) * y_stride;
        for (int64_t r = r0; r < r1; r += kRows) {
            const int nr = int(std::min<int64_t>(kRows, r1 - r));
            for (int i = 0; i < nr; ++i) row_to_f32<T>(W + size_t(r + i) * w_stride, k, buf.data() + size_t(i) * size_t(k));
            rows_any(nr, k, RowsF32{buf.data(), size_t(k)}, chunk, r, yc, y_stride);
        }
    }
}

}  // namespace kiln::cpu::KILN_ISA_NS
