// Portable quantized matmul: unpack each weight block once (unpack-inl.h), then take its
// integer dot product with every activation row. Written as plain loops for the compiler
// to vectorize under each ISA's flags; it is the generic ISA's kernel, the fallback for
// formats without a hand-written kernel, and the structure the fast kernels follow.

namespace kiln::cpu::KILN_ISA_NS {

// Integer dot of 16 weights with 16 activations.
inline int32_t dot16(const int8_t* q, const int8_t* a) {
    int32_t s = 0;
    for (int i = 0; i < 16; ++i) s += int32_t(q[i]) * int32_t(a[i]);
    return s;
}

// Activation sub-block sb (32 elements) of one row: scale, values, and the real-valued
// sums of its halves that multiply the weights' mins.
struct ActSub {
    float d;
    const int8_t* qs;
    float sum0, sum1;
};

inline ActSub act_sub_q8x32(const void* row, int64_t sb) {
    const auto& b = static_cast<const block_q8_x32*>(row)[sb];
    return {b.d, b.qs, fp16_to_fp32(b.s), 0.0f};  // one sum for both halves: 32-wide formats share one min
}

inline ActSub act_sub_q8K(const void* row, int64_t sb) {
    const auto& b = static_cast<const block_q8_K*>(row)[sb / 8];
    const int j = int(sb % 8);
    return {b.d, b.qs + 32 * j, b.d * float(b.bsums[2 * j]), b.d * float(b.bsums[2 * j + 1])};
}

template <DType T>
void matmul_portable(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const ActRows& a, float* y, size_t y_stride) {
    using F = WeightFormat<T>;
    constexpr int kBlockElems = 32 * F::kSub;
    const int64_t n_blocks = k / kBlockElems;
    auto act = F::kSub == 8 ? act_sub_q8K : act_sub_q8x32;
    SubBlock sub[F::kSub];
    constexpr int kCols = 8;  // activation rows handled per pass, so a weight block is unpacked once per 8
    for (int c0 = 0; c0 < a.ny; c0 += kCols) {
        const int nc = std::min(kCols, a.ny - c0);
        for (int64_t r = r0; r < r1; ++r) {
            const auto* blocks = reinterpret_cast<const typename F::Block*>(static_cast<const uint8_t*>(w) + size_t(r) * w_stride);
            float acc[kCols] = {};
            for (int64_t ib = 0; ib < n_blocks; ++ib) {
                F::unpack(blocks[ib], sub);
                for (int c = 0; c < nc; ++c) {
                    const void* arow = static_cast<const uint8_t*>(a.data) + size_t(c0 + c) * a.stride;
                    float sum = 0;
                    for (int s = 0; s < F::kSub; ++s) {
                        const ActSub as = act(arow, ib * F::kSub + s);
                        const SubBlock& q = sub[s];
                        const float dots = q.scale[0] * float(dot16(q.q, as.qs)) + q.scale[1] * float(dot16(q.q + 16, as.qs + 16));
                        sum += as.d * dots + q.min[0] * as.sum0 + q.min[1] * as.sum1;
                    }
                    acc[c] += sum;
                }
            }
            for (int c = 0; c < nc; ++c) y[size_t(c0 + c) * y_stride + size_t(r)] = acc[c];
        }
    }
}

inline void fill_matmul_portable(KernelTable& t) {
    t.matmul[int(DType::Q4_0)] = matmul_portable<DType::Q4_0>;
    t.matmul[int(DType::Q4_1)] = matmul_portable<DType::Q4_1>;
    t.matmul[int(DType::Q5_0)] = matmul_portable<DType::Q5_0>;
    t.matmul[int(DType::Q5_1)] = matmul_portable<DType::Q5_1>;
    t.matmul[int(DType::Q8_0)] = matmul_portable<DType::Q8_0>;
    t.matmul[int(DType::Q2_K)] = matmul_portable<DType::Q2_K>;
    t.matmul[int(DType::Q3_K)] = matmul_portable<DType::Q3_K>;
    t.matmul[int(DType::Q4_K)] = matmul_portable<DType::Q4_K>;
    t.matmul[int(DType::Q5_K)] = matmul_portable<DType::Q5_K>;
    t.matmul[int(DType::Q6_K)] = matmul_portable<DType::Q6_K>;
    t.matmul[int(DType::IQ4_NL)] = matmul_portable<DType::IQ4_NL>;
    t.matmul[int(DType::IQ4_XS)] = matmul_portable<DType::IQ4_XS>;
    t.matmul[int(DType::IQ2_XXS)] = matmul_portable<DType::IQ2_XXS>;
    t.matmul[int(DType::IQ2_XS)] = matmul_portable<DType::IQ2_XS>;
    t.matmul[int(DType::IQ2_S)] = matmul_portable<DType::IQ2_S>;
    t.matmul[int(DType::IQ3_XXS)] = matmul_portable<DType::IQ3_XXS>;
    t.matmul[int(DType::IQ3_S)] = matmul_portable<DType::IQ3_S>;
    t.matmul[int(DType::IQ1_S)] = matmul_portable<DType::IQ1_S>;
    t.matmul[int(DType::IQ1_M)] = matmul_portable<DType::IQ1_M>;
}

}  // namespace kiln::cpu::KILN_ISA_NS
