// Scalar reference of the gated DeltaNet pieces (delta_net.h).
#include "ref/delta_net.h"

#include <cmath>

namespace kiln::ref {

void delta_rule(const float* s_in, float* s_out, const float* q, const float* k, const float* v, float decay, float beta, float scale, float* o, int64_t S) {
    for (int64_t i = 0; i < S * S; ++i) s_out[i] = s_in[i] * decay;
    for (int64_t j = 0; j < S; ++j) {
        float* row = s_out + j * S;
        float sk = 0;
        for (int64_t i = 0; i < S; ++i) sk += row[i] * k[i];
        const float d = (v[j] - sk) * beta;
        float y = 0;
        for (int64_t i = 0; i < S; ++i) {
            row[i] += k[i] * d;
            y += row[i] * q[i];
        }
        o[j] = y * scale;
    }
}

void conv1d_silu(const float* window, const float* x, const float* w, float* y, int64_t n, int64_t C, int64_t K, int64_t c0, int64_t c1) {
    for (int64_t t = 0; t < n; ++t)
        for (int64_t c = c0; c < c1; ++c) {
            float sum = 0;
            for (int64_t i = 0; i < K; ++i) {
                const int64_t r = t + i - (K - 1);  // < 0: the window's rows
                sum += w[c * K + i] * (r < 0 ? window[(K - 1 + r) * C + c] : x[r * C + c]);
            }
            y[t * C + c] = sum / (1.0f + std::exp(-sum));
        }
}

}  // namespace kiln::ref
