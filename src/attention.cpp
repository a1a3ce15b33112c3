// Causal (optionally sliding-window) attention over the KV cache, one (token, head) pair
// per task. Scores for one query are a GEMV over that KV head's contiguous keys.
// (The tiled flash-attention kernel of the long-context work replaces this loop.)
#include <algorithm>
#include <cstring>

#include "session_impl.h"

namespace kiln {

void attention(Session::Impl& s, ThreadPool& pool, const ModelConfig& c, int il, int pos0, int n, const float* q, float* out,
               float kq_scale, int window) {
    const int H = c.n_head, group = c.n_head / c.n_head_kv, D = c.head_dim, Dv = c.head_dim_v;
    const bool f16 = s.kv.type == DType::F16;
    const cpu::KernelTable& kt = *s.kt;
    const int n_ctx = s.kv.n_ctx;
    pool.parallel_for(int64_t(n) * H, 1, [&](int64_t t0, int64_t t1, int ti) {
        float* scores = s.scores() + size_t(ti) * size_t(n_ctx);   // (n_ctx)
        float* acc = s.out_f32() + size_t(ti) * size_t(Dv + 16);    // (head_dim_v)
        for (int64_t t = t0; t < t1; ++t) {
            const int i = int(t / H), h = int(t % H), g = h / group, pos = pos0 + i;
            const int lo = window > 0 ? std::max(0, pos - window + 1) : 0, len = pos - lo + 1;
            const float* qv = q + (size_t(i) * H + h) * D;
            for (int j = 0; j < len; ++j) {
                const uint8_t* kr = s.kv.k_at(il, g, lo + j);
                scores[j] = kq_scale * (f16 ? kt.dot_f16(reinterpret_cast<const uint16_t*>(kr), qv, D)
                                            : kt.dot_f32(reinterpret_cast<const float*>(kr), qv, D));
            }
            kt.softmax(scores, len);
            if (f16) kt.round_f16(scores, len);  // llama.cpp multiplies V by f16 probabilities
            std::memset(acc, 0, sizeof(float) * size_t(Dv));
            for (int j = 0; j < len; ++j) {
                const uint8_t* vr = s.kv.v_at(il, g, lo + j);
                if (f16) kt.axpy_f16(acc, scores[j], reinterpret_cast<const uint16_t*>(vr), Dv);
                else kt.axpy_f32(acc, scores[j], reinterpret_cast<const float*>(vr), Dv);
            }
            std::memcpy(out + (size_t(i) * H + h) * Dv, acc, sizeof(float) * size_t(Dv));
        }
    });
}

}  // namespace kiln
