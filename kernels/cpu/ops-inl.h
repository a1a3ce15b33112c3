// Row and elementwise ops over floats, written once with xsimd for the TU's `Arch`
// (sse2, fma3<avx2> or avx512bw). Included by each isa_*.cpp inside its namespace.

namespace kiln::cpu::KILN_ISA_NS {

using VF = xsimd::batch<float, Arch>;

// Per-thread scratch for gelu_mul's saved inputs.
inline std::vector<float>& gelu_scratch() {
    static thread_local std::vector<float> v;
    return v;
}
constexpr int64_t kW = int64_t(VF::size);

inline float hsum(VF v) { return xsimd::hadd(v); }

inline float dot_f32(const float* a, const float* b, int64_t n) {
    VF s0(0.0f), s1(0.0f);
    int64_t i = 0;
    for (; i + 2 * kW <= n; i += 2 * kW) {  // two accumulators hide the FMA latency
        s0 = xsimd::fma(VF::load_unaligned(a + i), VF::load_unaligned(b + i), s0);
        s1 = xsimd::fma(VF::load_unaligned(a + i + kW), VF::load_unaligned(b + i + kW), s1);
    }
    for (; i + kW <= n; i += kW) s0 = xsimd::fma(VF::load_unaligned(a + i), VF::load_unaligned(b + i), s0);
    float s = hsum(s0 + s1);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

inline void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
    // Squares in float summed in double, then the scale in float: ggml's exact recipe, so
    // that norms (whose output feeds an 8-bit quantizer) round the way llama.cpp's do.
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += double(x[i] * x[i]);
    const float mean = float(sum / double(n));
    const float s = 1.0f / std::sqrt(mean + eps);
    int64_t i = 0;
    const VF vs(s);
    for (; i + kW <= n; i += kW) {
        VF v = VF::load_unaligned(x + i) * vs;
        if (w) v = v * VF::load_unaligned(w + i);
        v.store_unaligned(y + i);
    }
    for (; i < n; ++i) y[i] = x[i] * s * (w ? w[i] : 1.0f);
}

inline void softmax(float* x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
    if (mx == -INFINITY) return;  // fully masked row: leave as is
    VF vmx(mx), acc(0.0f);
    int64_t i = 0;
    for (; i + kW <= n; i += kW) {
        VF e = xsimd::exp(VF::load_unaligned(x + i) - vmx);
        e.store_unaligned(x + i);
        acc += e;
    }
    float sum = hsum(acc);
    for (; i < n; ++i) sum += (x[i] = std::exp(x[i] - mx));
    const VF inv(1.0f / sum);
    for (i = 0; i + kW <= n; i += kW) (VF::load_unaligned(x + i) * inv).store_unaligned(x + i);
    for (; i < n; ++i) x[i] *= 1.0f / sum;
}

inline void silu_mul(float* g, const float* u, int64_t n) {
    int64_t i = 0;
    const VF one(1.0f);
    for (; i + kW <= n; i += kW) {
        VF x = VF::load_unaligned(g + i);
        (x / (one + xsimd::exp(-x)) * VF::load_unaligned(u + i)).store_unaligned(g + i);
    }
    for (; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

inline void gelu_mul(float* g, const float* u, int64_t n) {
    // GELU, tanh approximation (what Gemma uses): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
    // evaluated as ggml does on CPU: input and result rounded to fp16 (its lookup table),
    // 0 below -10 and x above 10, so Gemma's logits follow llama.cpp's. round_f16 is the
    // TU's own (F16C where available).
    constexpr float kC = 0.7978845608028654f, kA = 0.044715f;
    std::vector<float>& x = gelu_scratch();
    x.assign(g, g + n);
    round_f16(g, n);
    const VF half(0.5f), one(1.0f), two(2.0f), c(kC), a(kA);
    int64_t i = 0;
    for (; i + kW <= n; i += kW) {
        VF v = VF::load_unaligned(g + i);
        // tanh(z) = 1 - 2 / (1 + exp(2z)): exact enough before the fp16 rounding below
        VF z = c * v * (one + a * v * v);
        VF t = one - two / (one + xsimd::exp(two * z));
        (half * v * (one + t)).store_unaligned(g + i);
    }
    for (; i < n; ++i) g[i] = 0.5f * g[i] * (1.0f + std::tanh(kC * g[i] * (1.0f + kA * g[i] * g[i])));
    round_f16(g, n);
    for (i = 0; i < n; ++i) {
        const float xi = x[size_t(i)];
        g[i] = (xi <= -10.0f ? 0.0f : xi >= 10.0f ? xi : g[i]) * u[i];
    }
}

inline void add(float* y, const float* x, int64_t n) {
    int64_t i = 0;
    for (; i + kW <= n; i += kW) (VF::load_unaligned(y + i) + VF::load_unaligned(x + i)).store_unaligned(y + i);
    for (; i < n; ++i) y[i] += x[i];
}

inline void scale(float* y, float s, int64_t n) {
    int64_t i = 0;
    const VF vs(s);
    for (; i + kW <= n; i += kW) (VF::load_unaligned(y + i) * vs).store_unaligned(y + i);
    for (; i < n; ++i) y[i] *= s;
}

inline void axpy_f32(float* y, float a, const float* x, int64_t n) {
    int64_t i = 0;
    const VF va(a);
    for (; i + kW <= n; i += kW) xsimd::fma(va, VF::load_unaligned(x + i), VF::load_unaligned(y + i)).store_unaligned(y + i);
    for (; i < n; ++i) y[i] += a * x[i];
}

inline int64_t argmax(const float* x, int64_t n) {
    // First index of the maximum, like llama.cpp's greedy sampler.
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return best;
}

}  // namespace kiln::cpu::KILN_ISA_NS
